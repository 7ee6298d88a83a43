/* SPDX-License-Identifier: MIT */
/*
 * perf_throughput: converting 1 GiB shared -> private -> shared with real
 * backings, cvmconv against the QEMU-like baseline (tools/engine/qemu_like.h).
 *
 * Guest memory: one 1 GiB region at gpa 0 that starts shared; shared side a
 * 2 MiB MFD_HUGETLB memfd (512 huge pages reserved, tools/hugepool.h, and
 * restored), private side a real guest_memfd where the host's KVM makes one
 * (tools/private_backing.c), else a shmem memfd standing in for it. There
 * is no KVM: the attribute update is a no-op for both hosts, so the figures
 * are each host's own work plus its real fallocate() calls.
 *
 * One round, per host and per exit shape:
 *   the guest writes every page of the shared side (not timed; huge pages
 *   are faulted in);
 *   to private: the 1 GiB as one request, or as 512 exits of 2 MiB (TDX);
 *   to shared:  the same back.
 *   Then (timed apart) the guest writes every shared page again.
 * cvmconv punches the shared huge pages on the way to private (1 GiB given
 * back) and the private side on the way back; the baseline punches only
 * the private side (QEMU keeps huge-page shared memory), so the rewrite
 * costs it no faults. "deferred" is cvmconv with CVMCONV_DEFER_PUNCH:
 * nothing is punched during the conversions, cvmconv_flush() after them
 * punches what is still stale (the private side; the huge pages came back
 * before it), and its time is part of the cycle. Best of --rounds rounds
 * (default 5); GiB/s counts the 2 GiB converted per round.
 *
 *   perf_throughput [--rounds N]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "perf.h"
#include "qemu_like.h"

#define GUEST PERF_1G

enum kind { BASELINE, CVMCONV, DEFERRED, KINDS };

static const char *const kind_name[KINDS] = { "baseline", "cvmconv", "deferred" };

struct host {
	bool lib;   /* cvmconv, else the baseline */
	bool defer; /* CVMCONV_DEFER_PUNCH */
	struct cvmconv *c;
	struct qemu_like *q;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void host_init(struct host *h, const struct perf_gib *g)
{
	perf_gib_host(g, h->lib, h->defer ? CVMCONV_DEFER_PUNCH : 0, &h->c, &h->q);
}

static void host_fini(struct host *h)
{
	cvmconv_destroy(h->c);
	qemu_like_destroy(h->q);
	h->c = NULL;
	h->q = NULL;
}

static void convert(struct host *h, uint64_t chunk, bool to_private)
{
	for (uint64_t gpa = 0; gpa < GUEST; gpa += chunk) {
		uint64_t attrs = to_private ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0;
		int ret = perf_gib_map(h->c, h->q, gpa, chunk / PERF_4K, attrs);

		if (ret)
			perf_die("conversion", ret);
	}
}

static void write_pages(uint8_t *map)
{
	for (uint64_t off = 0; off < GUEST; off += PERF_4K)
		((volatile uint8_t *)map)[off] = 1;
}

struct best {
	double to_private, to_shared, flush, cycle, rewrite;
};

static void keep_min(double *a, double b)
{
	if (*a == 0 || b < *a)
		*a = b;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		uint64_t chunk;
	} shapes[] = { { "1 x 1 GiB", GUEST }, { "512 x 2 MiB", PERF_2M } };
	unsigned rounds = 5;
	struct perf_gib g;
	struct best best[KINDS][2];
	struct host hosts[KINDS][2];

	if (argc == 3 && !strcmp(argv[1], "--rounds"))
		rounds = (unsigned)strtoul(argv[2], NULL, 0);
	else if (argc != 1) {
		fprintf(stderr, "usage: perf_throughput [--rounds N]\n");
		return 2;
	}
	if (!rounds)
		rounds = 1;
	perf_print_machine(stdout);
	if (perf_gib_open(&g, GUEST, "perf_throughput"))
		return 77;
	memset(best, 0, sizeof(best));
	/* one host per kind and shape for all rounds: a VMM's converter is
	 * warm after the first conversions, so the best round is the steady
	 * state for both hosts */
	for (int k = 0; k < KINDS; k++)
		for (size_t s = 0; s < 2; s++) {
			hosts[k][s] = (struct host){ .lib = k != BASELINE, .defer = k == DEFERRED };
			host_init(&hosts[k][s], &g);
		}
	for (unsigned r = 0; r < rounds; r++) {
		for (int k = KINDS - 1; k >= 0; k--) {
			for (size_t s = 0; s < 2; s++) {
				struct host h = hosts[k][s];
				struct best *b = &best[k][s];
				double t0, t1, t2, t3, t4;
				int ret;

				/* a clean start: nothing allocated, then the guest's
				 * shared memory populated (all of it is shared and
				 * live for the host between rounds) */
				perf_gib_reset(&g);
				t0 = now();
				convert(&h, shapes[s].chunk, true);
				t1 = now();
				convert(&h, shapes[s].chunk, false);
				t2 = now();
				ret = h.lib ? cvmconv_flush(h.c) : 0;
				t3 = now();
				if (ret)
					perf_die("flush", ret);
				write_pages(g.shared_map);
				t4 = now();
				keep_min(&b->to_private, t1 - t0);
				keep_min(&b->to_shared, t2 - t1);
				keep_min(&b->flush, t3 - t2);
				keep_min(&b->cycle, t3 - t0);
				keep_min(&b->rewrite, t4 - t0);
			}
		}
	}
	for (int k = 0; k < KINDS; k++)
		for (size_t s = 0; s < 2; s++)
			host_fini(&hosts[k][s]);
	printf("\n1 GiB shared -> private -> shared, 2 MiB MFD_HUGETLB shared side, best of %u; "
	       "ms and GiB/s (2 GiB converted per cycle; cycle = both ways + flush)\n",
	       rounds);
	printf("%-12s %-14s | %9s %9s %7s %9s %8s | %16s %7s\n", "shape", "host", "->private",
	       "->shared", "flush", "cycle", "GiB/s", "cycle+rewrite ms", "GiB/s");
	for (size_t s = 0; s < 2; s++) {
		for (int k = BASELINE; k < KINDS; k++) {
			const struct best *b = &best[k][s];

			printf("%-12s %-14s | %9.3f %9.3f %7.3f %9.3f %8.1f | %16.3f %7.1f\n",
			       shapes[s].name, kind_name[k], b->to_private * 1e3,
			       b->to_shared * 1e3, b->flush * 1e3, b->cycle * 1e3, 2.0 / b->cycle,
			       b->rewrite * 1e3, 2.0 / b->rewrite);
		}
		for (int k = CVMCONV; k < KINDS; k++) {
			char name[32];

			snprintf(name, sizeof(name), "ratio %s", kind_name[k]);
			printf("%-12s %-14s | %9.2f %9.2f %7s %9.2f %8s | %16.2f\n", shapes[s].name,
			       name, best[BASELINE][s].to_private / best[k][s].to_private,
			       best[BASELINE][s].to_shared / best[k][s].to_shared, "",
			       best[BASELINE][s].cycle / best[k][s].cycle, "",
			       best[BASELINE][s].rewrite / best[k][s].rewrite);
		}
	}
	printf("ratio = cvmconv GiB/s / baseline GiB/s (baseline time / cvmconv time); target: "
	       "cycle ratio >= 1.0\n");
	perf_gib_close(&g);
	return 0;
}
