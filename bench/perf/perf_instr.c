/* SPDX-License-Identifier: MIT */
/*
 * perf_instr: what the handler costs per exit with no-op kernel ops, for
 * callgrind (instr.sh runs it as
 *   valgrind --tool=callgrind --collect-atstart=no
 *            --toggle-collect=cvmconv_map_gpa_range --toggle-collect=cvmconv_convert_batch
 * so that only the library's entry points and what they call are counted).
 *
 * Each configuration creates a context whose attribute and punch ops return
 * 0 at once, adds one region of 1 GiB or 16 TiB at gpa 0 that starts
 * private, runs W warm-up exits, then two blocks of N exits; before the
 * first block the counters are zeroed and after each block they are dumped
 * (CALLGRIND_ZERO_STATS, CALLGRIND_DUMP_STATS_AT("<config> a|b")). Block b
 * is "the exits N+1 .. 2N": the difference between a run of 2N and one of
 * N exits. Outside valgrind the client requests do nothing and the program
 * prints nanoseconds per exit instead.
 *
 * Backings: "none" (private_fd -1, shared_fd -1, shared_hva NULL: the
 * tracker alone) or "memfd" (a sparse 2 MiB MFD_HUGETLB shared memfd and a
 * sparse shmem private memfd as large as the guest; the punch op does
 * nothing, so no memory is ever used).
 *
 * Patterns:
 *   steady-4k  a guest with 300 existing shared runs (1-8 pages each) whose
 *              vCPU converts a page to shared and back, repeatedly: each
 *              pair of exits leaves the tracker as it found it
 *   steady-2m  the same with 2 MiB-aligned extents and the 2M hint
 *   random-4k  every exit toggles a random page (the run count grows)
 *   random-2m  every exit toggles a random 2 MiB extent
 *   psc-253    SNP page state changes of 253 mixed entries in 256 MiB
 *              (cvmconv_convert_batch), costs per batch
 *
 *   perf_instr [--exits N] [--warmup W] [--only SUBSTRING] [--list]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#ifdef CVMCONV_PERF_HAVE_CALLGRIND_H
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS_AT(label) ((void)(label))
#define RUNNING_ON_VALGRIND 0
#endif

#include "cvmconv.h"
#include "perf_inline.h"

#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif
#define SZ_4K 4096ULL
#define SZ_2M (2ULL << 20)
#define SZ_1G (1ULL << 30)
#define SZ_16T (16ULL << 40)
#define EXISTING_RUNS 300
#define PSC_ENTRIES 253
#define PSC_WINDOW (256ULL << 20)

enum pattern { STEADY_4K, STEADY_2M, RANDOM_4K, RANDOM_2M, PSC_253 };

struct config {
	const char *name;
	enum pattern pattern;
	uint64_t guest;
	bool memfd;
};

static const struct config configs[] = {
	{ "steady-4k/1g/none", STEADY_4K, SZ_1G, false },
	{ "steady-4k/16t/none", STEADY_4K, SZ_16T, false },
	{ "steady-4k/1g/memfd", STEADY_4K, SZ_1G, true },
	{ "steady-4k/16t/memfd", STEADY_4K, SZ_16T, true },
	{ "steady-2m/1g/none", STEADY_2M, SZ_1G, false },
	{ "steady-2m/16t/none", STEADY_2M, SZ_16T, false },
	{ "steady-2m/1g/memfd", STEADY_2M, SZ_1G, true },
	{ "steady-2m/16t/memfd", STEADY_2M, SZ_16T, true },
	{ "random-4k/1g/none", RANDOM_4K, SZ_1G, false },
	{ "random-4k/1g/memfd", RANDOM_4K, SZ_1G, true },
	{ "random-4k/16t/memfd", RANDOM_4K, SZ_16T, true },
	{ "random-2m/1g/memfd", RANDOM_2M, SZ_1G, true },
	{ "random-2m/16t/memfd", RANDOM_2M, SZ_16T, true },
	{ "psc-253/1g/memfd", PSC_253, SZ_1G, true },
	{ "psc-253/16t/memfd", PSC_253, SZ_16T, true },
};

struct bench {
	const struct config *cfg;
	struct cvmconv *c;
	int fds[2];
	uint64_t seed;
	/* steady patterns: the extents of the existing runs, and the pairs */
	uint64_t busy[2 * EXISTING_RUNS]; /* first and last extent of each */
	uint64_t nbusy;
	uint64_t *target; /* per exit (pairs: per pair), drawn before timing */
	struct cvmconv_range psc[PSC_ENTRIES];
};

static void die(const char *what, int err)
{
	fprintf(stderr, "perf_instr: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static int setup(struct bench *b, const struct config *cfg)
{
	static const struct cvmconv_ops ops = { .set_memory_attributes = perf_attr_accept,
						.punch = perf_punch_none };
	struct cvmconv_config cc = {
		.sz = sizeof(cc), .vm_fd = -1, .unaligned = CVMCONV_UNALIGNED_ALLOW, .ops = &ops
	};
	struct cvmconv_region r = { .sz = sizeof(r),
				    .gpa = 0,
				    .size = cfg->guest,
				    .private_fd = -1,
				    .shared_fd = -1,
				    .flags = CVMCONV_REGION_PRIVATE | CVMCONV_REGION_ATTRS_ONLY,
				    .unaligned = -1 };
	int ret;

	memset(b, 0, sizeof(*b));
	b->cfg = cfg;
	b->fds[0] = b->fds[1] = -1;
	b->seed = 42;
	if (cfg->memfd) {
		b->fds[0] = memfd_create("perf-shared",
					 MFD_CLOEXEC | MFD_HUGETLB | (21u << MFD_HUGE_SHIFT));
		b->fds[1] = memfd_create("perf-private", MFD_CLOEXEC);
		if (b->fds[0] < 0 || b->fds[1] < 0)
			return -errno;
		if (ftruncate(b->fds[0], (off_t)cfg->guest) ||
		    ftruncate(b->fds[1], (off_t)cfg->guest))
			return -errno;
		r.shared_fd = b->fds[0];
		r.private_fd = b->fds[1];
		r.flags &= ~CVMCONV_REGION_ATTRS_ONLY; /* it has a private backing now */
	}
	ret = cvmconv_create(&cc, &b->c);
	if (!ret)
		ret = cvmconv_add_region(b->c, &r);
	if (ret)
		return ret;
	if (cfg->pattern == STEADY_4K || cfg->pattern == STEADY_2M) {
		/* existing shared runs, one per slice of the guest, 1-8 pages */
		uint64_t slice = cfg->guest / EXISTING_RUNS / SZ_4K * SZ_4K;

		for (unsigned i = 0; i < EXISTING_RUNS; i++) {
			uint64_t pages = 1 + perf_rng(&b->seed) % 8;
			uint64_t gpa =
				i * slice + (perf_rng(&b->seed) % (slice / SZ_4K - 8)) * SZ_4K;

			ret = cvmconv_convert(b->c, gpa, pages * SZ_4K, false);
			if (ret)
				return ret;
			b->busy[b->nbusy++] = gpa / SZ_2M;
			b->busy[b->nbusy++] = (gpa + pages * SZ_4K - 1) / SZ_2M;
		}
	}
	return 0;
}

static void teardown(struct bench *b)
{
	free(b->target);
	cvmconv_destroy(b->c);
	for (int i = 0; i < 2; i++)
		if (b->fds[i] >= 0)
			close(b->fds[i]);
}

/* A uniformly private extent: none of the existing runs in it. */
static uint64_t clean_extent(struct bench *b)
{
	for (;;) {
		uint64_t e = perf_rng(&b->seed) % (b->cfg->guest / SZ_2M);
		bool ok = true;

		for (uint64_t i = 0; i < b->nbusy && ok; i++)
			ok = b->busy[i] != e;
		if (ok)
			return e;
	}
}

static void psc_fill(struct bench *b)
{
	uint64_t window = b->cfg->guest / 2;
	uint64_t ext_used[PSC_ENTRIES];
	unsigned n2m = PSC_ENTRIES / 4, k = 0;

	/* 2M entries in distinct extents, 4K entries elsewhere, sorted */
	while (k < n2m) {
		uint64_t e = perf_rng(&b->seed) % (PSC_WINDOW / SZ_2M);
		bool dup = false;

		for (unsigned i = 0; i < k; i++)
			dup |= ext_used[i] == e;
		if (dup)
			continue;
		ext_used[k] = e;
		b->psc[k++] = (struct cvmconv_range){ window + e * SZ_2M, SZ_2M,
						      (uint32_t)(perf_rng(&b->seed) & 1), 0 };
	}
	while (k < PSC_ENTRIES) {
		uint64_t p = perf_rng(&b->seed) % (PSC_WINDOW / SZ_4K);
		bool dup = false;

		for (unsigned i = 0; i < n2m; i++)
			dup |= ext_used[i] == p / 512;
		for (unsigned i = n2m; i < k; i++)
			dup |= b->psc[i].gpa == window + p * SZ_4K;
		if (dup)
			continue;
		b->psc[k++] = (struct cvmconv_range){ window + p * SZ_4K, SZ_4K,
						      (uint32_t)(perf_rng(&b->seed) & 1), 0 };
	}
	for (unsigned i = 1; i < PSC_ENTRIES; i++)
		for (unsigned j = i; j > 0 && b->psc[j - 1].gpa > b->psc[j].gpa; j--) {
			struct cvmconv_range t = b->psc[j];

			b->psc[j] = b->psc[j - 1];
			b->psc[j - 1] = t;
		}
}

/* Where each exit goes, drawn before anything is timed. */
static int draw_targets(struct bench *b, uint64_t exits)
{
	b->target = malloc((exits + 1) * sizeof(*b->target));
	if (!b->target)
		return -ENOMEM;
	for (uint64_t i = 0; i <= exits; i++) {
		switch (b->cfg->pattern) {
		case STEADY_4K:
			b->target[i] = clean_extent(b) * SZ_2M + (perf_rng(&b->seed) % 512) * SZ_4K;
			break;
		case STEADY_2M:
			b->target[i] = clean_extent(b) * SZ_2M;
			break;
		case RANDOM_4K:
			b->target[i] = perf_rng(&b->seed) % (b->cfg->guest / SZ_4K);
			break;
		case RANDOM_2M:
			b->target[i] = perf_rng(&b->seed) % (b->cfg->guest / SZ_2M);
			break;
		case PSC_253:
			break;
		}
	}
	return 0;
}

/* One exit of the pattern (@i counts exits from the start). */
static void one_exit(struct bench *b, uint64_t i)
{
	uint64_t hc = 1, gpa;
	int ret;

	switch (b->cfg->pattern) {
	case STEADY_4K:
		ret = cvmconv_map_gpa_range(b->c, b->target[i / 2], 1,
					    (i & 1) ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0, &hc);
		break;
	case STEADY_2M:
		ret = cvmconv_map_gpa_range(b->c, b->target[i / 2], 512,
					    CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M |
						    ((i & 1) ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0),
					    &hc);
		break;
	case RANDOM_4K:
		gpa = b->target[i] * SZ_4K;
		ret = cvmconv_map_gpa_range(
			b->c, gpa, 1,
			cvmconv_is_private(b->c, gpa) ? 0 : CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &hc);
		break;
	case RANDOM_2M:
		gpa = b->target[i] * SZ_2M;
		ret = cvmconv_map_gpa_range(b->c, gpa, 512,
					    CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M |
						    (cvmconv_is_private(b->c, gpa)
							     ? 0
							     : CVMCONV_MAP_GPA_RANGE_ENCRYPTED),
					    &hc);
		break;
	case PSC_253:
	default:
		psc_fill(b);
		ret = cvmconv_convert_batch(b->c, b->psc, PSC_ENTRIES, CVMCONV_BATCH_GUEST, &hc);
		break;
	}
	if (ret || hc)
		die(b->cfg->name, ret ? ret : EPROTO);
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = { { "exits", required_argument, NULL, 'n' },
					    { "warmup", required_argument, NULL, 'w' },
					    { "only", required_argument, NULL, 'o' },
					    { "list", no_argument, NULL, 'l' },
					    { NULL, 0, NULL, 0 } };
	uint64_t n = 5000, w = 5000;
	const char *only = NULL;
	bool list = false;
	int ch;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'n':
			n = strtoull(optarg, NULL, 0);
			break;
		case 'w':
			w = strtoull(optarg, NULL, 0);
			break;
		case 'o':
			only = optarg;
			break;
		case 'l':
			list = true;
			break;
		default:
			fprintf(stderr, "usage: perf_instr [--exits N] [--warmup W] "
					"[--only SUBSTRING] [--list]\n");
			return 2;
		}
	}
	if (!n)
		n = 1;
	printf("# perf_instr: cvmconv %s; N = %llu exits per block, %llu warm-up exits%s\n",
	       cvmconv_version(), (unsigned long long)n, (unsigned long long)w,
	       RUNNING_ON_VALGRIND ? " (under valgrind)" : "");
	printf("# config                exits  ns/exit(a) ns/exit(b)  tracker_bytes\n");
	for (size_t k = 0; k < sizeof(configs) / sizeof(configs[0]); k++) {
		const struct config *cfg = &configs[k];
		struct cvmconv_stats st = { .sz = sizeof(st) };
		uint64_t scale = cfg->pattern == PSC_253 ? 50 : 1; /* batches are 250x the work */
		uint64_t nn = n / scale ? n / scale : 1, ww = w / scale, i = 0;
		struct bench b;
		char label[96];
		double t0, t1, t2;
		int ret;

		if (only && !strstr(cfg->name, only))
			continue;
		if (list) {
			printf("%s %llu\n", cfg->name, (unsigned long long)nn);
			continue;
		}
		printf("%-22s ", cfg->name);
		fflush(stdout); /* a crash below names its configuration */
		ret = setup(&b, cfg);
		if (!ret)
			ret = draw_targets(&b, ww + 2 * nn);
		if (ret)
			die(cfg->name, ret);
		for (; i < ww; i++)
			one_exit(&b, i);
		CALLGRIND_ZERO_STATS;
		t0 = now_ns();
		for (; i < ww + nn; i++)
			one_exit(&b, i);
		t1 = now_ns();
		snprintf(label, sizeof(label), "%s a %llu", cfg->name, (unsigned long long)nn);
		CALLGRIND_DUMP_STATS_AT(label);
		for (; i < ww + 2 * nn; i++)
			one_exit(&b, i);
		t2 = now_ns();
		snprintf(label, sizeof(label), "%s b %llu", cfg->name, (unsigned long long)nn);
		CALLGRIND_DUMP_STATS_AT(label);
		cvmconv_get_stats(b.c, &st);
		printf("%6llu %10.0f %10.0f %14llu\n", (unsigned long long)nn,
		       (t1 - t0) / (double)nn, (t2 - t1) / (double)nn,
		       (unsigned long long)st.tracker_bytes);
		teardown(&b);
	}
	return 0;
}
