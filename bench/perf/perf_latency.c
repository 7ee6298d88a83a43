/* SPDX-License-Identifier: MIT */
/*
 * perf_latency: how long a vCPU thread waits in each conversion exit, and
 * how long until the stale memory the exit made is really freed, for the
 * QEMU-like baseline (tools/engine/qemu_like.h), cvmconv's default mode, and
 * cvmconv with CVMCONV_DEFER_PUNCH and a thread serving
 * cvmconv_get_poll_fd() (poll(), then cvmconv_flush()).
 *
 * Guest memory: one 1 GiB region at gpa 0 that starts shared and written;
 * shared side a 2 MiB MFD_HUGETLB memfd (tools/hugepool.h reserves and
 * restores the pool), private side a real guest_memfd where the host's KVM
 * makes one (tools/private_backing.c), else a shmem stand-in (the output
 * says which). The attribute update is a no-op for every host: this
 * machine's KVM has no memory attributes, and the update costs every host
 * the same. Every punch is a real fallocate().
 *
 * Streams, each exit timed on its own (CLOCK_MONOTONIC around the call):
 *   512 x 2 MiB: the TDX MapGPA shape, 1 GiB to private in 512 exits of
 *     2 MiB, then back, three times; the guest writes what it converted
 *     (not timed);
 *   random 4 KiB: single pages of the 1 GiB flipped at random (a seeded
 *     stream, the same for every host), the guest writing each page on its
 *     new side (not timed).
 * "freed" is the time from the start of an exit until the memory it made
 * stale (and freeable) is punched: the end of the exit when it punches
 * itself, else the end of the first flush of the poll thread that began
 * after the exit returned (an upper bound: a flush punches at least what
 * waited when it began). Counted over the exits that make freeable
 * memory: every exit of the 512 x 2 MiB stream (a whole huge page or 2 MiB
 * of guest_memfd), and the to-shared exits of the random stream (a
 * guest_memfd page; a 4 KiB page going private frees no huge page). An
 * exit whose stale memory a host never frees counts as "never".
 *
 *   perf_latency [--random N]     (default 20000 random exits)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "perf.h"
#include "private_backing.h"
#include "qemu_like.h"

#define GUEST PERF_1G
#define NPAGES (GUEST / PERF_4K)
#define TDX_CYCLES 3
#define MAX_FLUSHES (1u << 20)

enum kind { BASELINE, CVMCONV, DEFERRED, KINDS };

static const char *const kind_name[KINDS] = { "baseline (QEMU-like)", "cvmconv",
					      "cvmconv deferred + poll thread" };

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- the poll thread: flush whenever the poll fd says work waits ---- */

struct flusher {
	struct cvmconv *c;
	pthread_t thread;
	_Atomic bool stop;
	/* start and end of every flush, in order */
	uint64_t (*span)[2];
	_Atomic uint32_t n;
};

static void *flusher_main(void *arg)
{
	struct flusher *f = arg;
	struct pollfd p = { .fd = cvmconv_get_poll_fd(f->c), .events = POLLIN };

	while (!atomic_load(&f->stop)) {
		if (poll(&p, 1, 20) <= 0 || !(p.revents & POLLIN))
			continue;
		uint32_t i = atomic_load(&f->n);
		uint64_t t0 = now_ns();
		int ret = cvmconv_flush(f->c);

		if (ret)
			perf_die("cvmconv_flush", ret);
		if (i < MAX_FLUSHES) {
			f->span[i][0] = t0;
			f->span[i][1] = now_ns();
			atomic_store(&f->n, i + 1);
		}
	}
	return NULL;
}

/* ---- one host ---- */

struct host {
	enum kind kind;
	struct cvmconv *c;
	struct qemu_like *q;
	struct flusher fl;
};

static void host_init(struct host *h, enum kind kind, const struct perf_gib *g)
{
	memset(h, 0, sizeof(*h));
	h->kind = kind;
	perf_gib_host(g, kind != BASELINE, kind == DEFERRED ? CVMCONV_DEFER_PUNCH : 0, &h->c,
		      &h->q);
	if (kind == DEFERRED) {
		h->fl.c = h->c;
		h->fl.span = calloc(MAX_FLUSHES, sizeof(*h->fl.span));
		if (!h->fl.span)
			perf_die("calloc", -ENOMEM);
		if (pthread_create(&h->fl.thread, NULL, flusher_main, &h->fl))
			perf_die("pthread_create", errno);
	}
}

/* The poll thread stops (after its flush in progress, if any). */
static void host_stop(struct host *h)
{
	if (h->kind == DEFERRED && !atomic_exchange(&h->fl.stop, true))
		pthread_join(h->fl.thread, NULL);
}

static void host_fini(struct host *h)
{
	host_stop(h);
	free(h->fl.span);
	cvmconv_destroy(h->c);
	qemu_like_destroy(h->q);
}

/* One exit; returns its latency in ns. */
static uint64_t host_exit(struct host *h, uint64_t gpa, uint64_t size, bool to_private,
			  uint64_t *start, uint64_t *end)
{
	uint64_t attrs = to_private ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0;
	int ret;

	if (size == PERF_2M)
		attrs |= CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M;
	*start = now_ns();
	ret = perf_gib_map(h->c, h->q, gpa, size / PERF_4K, attrs);
	*end = now_ns();
	if (ret)
		perf_die("conversion", ret);
	return *end - *start;
}

/* ---- figures ---- */

struct sample {
	uint64_t start, end;
	bool frees; /* the exit makes freeable memory */
	bool self;  /* ... and punches it itself */
	bool never; /* ... which this host never frees */
	bool to_private;
};

struct figures {
	uint64_t exits, lat_p50, lat_p99, lat_max;
	uint64_t freed, freed_p50, freed_p99, freed_max, never;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void percentiles(uint64_t *v, uint64_t n, uint64_t *p50, uint64_t *p99, uint64_t *max)
{
	*p50 = *p99 = *max = 0;
	if (!n)
		return;
	qsort(v, n, sizeof(*v), cmp_u64);
	*p50 = v[(n - 1) / 2];
	*p99 = v[(n - 1) * 99 / 100];
	*max = v[n - 1];
}

/* The figures of the exits of @s[0..n) going @dir (0 to shared, 1 to
 * private, 2 both). */
static struct figures figures_of(const struct host *h, const struct sample *s, uint64_t n, int dir)
{
	struct figures f = { 0 };
	uint64_t *lat = malloc(n * sizeof(*lat)), *freed = malloc(n * sizeof(*freed));
	uint32_t nflush = h->kind == DEFERRED ? atomic_load(&h->fl.n) : 0, j = 0;

	if (!lat || !freed)
		perf_die("malloc", -ENOMEM);
	for (uint64_t i = 0; i < n; i++) {
		if (dir != 2 && s[i].to_private != (dir == 1))
			continue;
		lat[f.exits++] = s[i].end - s[i].start;
		if (!s[i].frees)
			continue;
		if (s[i].never) {
			f.never++;
			continue;
		}
		if (s[i].self) {
			freed[f.freed++] = s[i].end - s[i].start;
			continue;
		}
		/* the first flush that began after the exit returned (it
		 * punches at least what waited when it began) */
		while (j < nflush && h->fl.span[j][0] < s[i].end)
			j++;
		if (j < nflush) {
			freed[f.freed++] = h->fl.span[j][1] - s[i].start;
		} else if (nflush && h->fl.span[nflush - 1][1] > s[i].end) {
			/* no flush began after it, and settle() saw nothing
			 * pending: the last flush, running then, punched it */
			freed[f.freed++] = h->fl.span[nflush - 1][1] - s[i].start;
		} else {
			f.never++;
		}
	}
	percentiles(lat, f.exits, &f.lat_p50, &f.lat_p99, &f.lat_max);
	percentiles(freed, f.freed, &f.freed_p50, &f.freed_p99, &f.freed_max);
	free(lat);
	free(freed);
	return f;
}

/* The deferred host: wait until the poll thread has flushed everything,
 * so that the last exits' memory counts as freed. */
static void settle(struct host *h)
{
	struct cvmconv_stats st = { .sz = sizeof(st) };

	if (h->kind != DEFERRED)
		return;
	for (int i = 0; i < 1000; i++) {
		cvmconv_get_stats(h->c, &st);
		if (!st.punch_pending_bytes)
			break;
		usleep(1000);
	}
	usleep(30000); /* and the flush that emptied it has been recorded */
}

/* ---- the streams ---- */

static struct perf_gib G;
static uint8_t *private_map;

static void guest_writes(uint64_t gpa, uint64_t size, bool private_side)
{
	uint8_t *map = private_side ? private_map : G.shared_map;

	if (!map)
		return;
	for (uint64_t off = gpa; off < gpa + size; off += PERF_4K)
		((volatile uint8_t *)map)[off] = 2;
}

static uint64_t run_tdx(struct host *h, struct sample *s)
{
	uint64_t n = 0;

	for (int cycle = 0; cycle < TDX_CYCLES; cycle++)
		for (int dir = 0; dir < 2; dir++)
			for (uint64_t gpa = 0; gpa < GUEST; gpa += PERF_2M) {
				bool to_private = dir == 0;

				host_exit(h, gpa, PERF_2M, to_private, &s[n].start, &s[n].end);
				s[n].frees = true;
				/* the baseline keeps huge-page shared memory */
				s[n].never = h->kind == BASELINE && to_private;
				s[n].self = h->kind != DEFERRED;
				s[n].to_private = to_private;
				n++;
				guest_writes(gpa, PERF_2M, to_private);
			}
	return n;
}

static uint64_t run_random(struct host *h, struct sample *s, uint64_t nexits, bool *priv)
{
	uint64_t rng = 0x9e3779b97f4a7c15ULL;

	memset(priv, 0, NPAGES);
	for (uint64_t i = 0; i < nexits; i++) {
		uint64_t p;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		p = rng % NPAGES;
		priv[p] = !priv[p];
		host_exit(h, p * PERF_4K, PERF_4K, priv[p], &s[i].start, &s[i].end);
		/* a page going shared frees its guest_memfd page */
		s[i].frees = !priv[p];
		s[i].self = h->kind != DEFERRED;
		s[i].never = false;
		s[i].to_private = priv[p];
		guest_writes(p * PERF_4K, PERF_4K, priv[p]);
	}
	return nexits;
}

static void print_row(const char *stream, const char *host, const struct figures *f)
{
	printf("%-13s %-31s %6llu | %8.1f %8.1f %9.1f | %9.1f %9.1f %10.1f %6llu\n", stream, host,
	       (unsigned long long)f->exits, f->lat_p50 / 1e3, f->lat_p99 / 1e3, f->lat_max / 1e3,
	       f->freed_p50 / 1e3, f->freed_p99 / 1e3, f->freed_max / 1e3,
	       (unsigned long long)f->never);
}

static double ratio(uint64_t base, uint64_t x)
{
	return x ? (double)base / (double)x : 0;
}

int main(int argc, char **argv)
{
	uint64_t nrandom = 20000;
	struct figures fig[3][KINDS];
	struct sample *s;
	bool *priv;
	const char *streams[3] = { "2 MiB ->priv", "2 MiB ->shared", "random 4 KiB" };

	if (argc == 3 && !strcmp(argv[1], "--random"))
		nrandom = strtoull(argv[2], NULL, 0);
	else if (argc != 1) {
		fprintf(stderr, "usage: perf_latency [--random N]\n");
		return 2;
	}
	if (nrandom < 100)
		nrandom = 100;
	perf_print_machine(stdout);
	if (perf_gib_open(&G, GUEST, "perf_latency"))
		return 77;
	private_map = mmap(NULL, GUEST, PROT_READ | PROT_WRITE, MAP_SHARED, G.private_fd, 0);
	if (private_map == MAP_FAILED)
		private_map = NULL; /* the guest's private writes are skipped */
	printf("shared side: 2 MiB MFD_HUGETLB memfd; private side: %s%s\n", private_backing_name(),
	       private_map ? "" : " (not mappable: no private writes)");
	s = calloc(nrandom > TDX_CYCLES * 1024 ? nrandom : TDX_CYCLES * 1024, sizeof(*s));
	priv = malloc(NPAGES);
	if (!s || !priv)
		perf_die("calloc", -ENOMEM);

	for (int st = 0; st < 2; st++)
		for (int k = 0; k < KINDS; k++) {
			struct host h;
			uint64_t n;

			perf_gib_reset(&G);
			host_init(&h, (enum kind)k, &G);
			n = st == 0 ? run_tdx(&h, s) : run_random(&h, s, nrandom, priv);
			settle(&h);
			host_stop(&h);
			if (st == 0) {
				fig[0][k] = figures_of(&h, s, n, 1);
				fig[1][k] = figures_of(&h, s, n, 0);
			} else {
				fig[2][k] = figures_of(&h, s, n, 2);
			}
			host_fini(&h);
		}

	printf("\nexit latency on the vCPU thread and time until the stale memory is freed, "
	       "microseconds (one run)\n");
	printf("%-13s %-31s %6s | %8s %8s %9s | %9s %9s %10s %6s\n", "stream", "host", "exits",
	       "p50", "p99", "max", "freed p50", "freed p99", "freed max", "never");
	for (int st = 0; st < 3; st++) {
		for (int k = 0; k < KINDS; k++)
			print_row(streams[st], kind_name[k], &fig[st][k]);
		for (int k = CVMCONV; k < KINDS; k++)
			printf("%-13s ratio %-25s %6s | %8.2f %8.2f %9.2f |\n", streams[st],
			       k == CVMCONV ? "cvmconv" : "deferred", "",
			       ratio(fig[st][BASELINE].lat_p50, fig[st][k].lat_p50),
			       ratio(fig[st][BASELINE].lat_p99, fig[st][k].lat_p99),
			       ratio(fig[st][BASELINE].lat_max, fig[st][k].lat_max));
	}
	printf("ratio = baseline latency / host latency (above 1: the vCPU waits less); "
	       "never = exits whose stale memory the host keeps\n");
	if (private_map)
		munmap(private_map, GUEST);
	free(s);
	free(priv);
	perf_gib_close(&G);
	return 0;
}
