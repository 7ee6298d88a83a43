/* SPDX-License-Identifier: MIT */
/*
 * perf_throughput: converting 1 GiB shared -> private -> shared with real
 * backings, cvmconv against the QEMU-like baseline (tools/sim/qemu_like.h).
 *
 * Guest memory: one 1 GiB region at gpa 0 that starts shared; shared side a
 * 2 MiB MFD_HUGETLB memfd (512 huge pages reserved, tools/hugepool.h, and
 * restored), private side a shmem memfd standing in for guest_memfd. There
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
 * costs it no faults. Best of --rounds rounds (default 5); GiB/s counts the
 * 2 GiB converted per round.
 *
 *   perf_throughput [--rounds N]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "hugepool.h"
#include "perf.h"
#include "qemu_like.h"

#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif
#define GUEST PERF_1G

struct host {
	bool lib; /* cvmconv, else the baseline */
	struct cvmconv *c;
	struct qemu_like *q;
};

static int noop_attr(void *opaque, uint64_t gpa, uint64_t size, uint64_t attributes)
{
	(void)opaque;
	(void)gpa;
	(void)size;
	(void)attributes;
	return 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "perf_throughput: %s: %s\n", what, strerror(err < 0 ? -err : err));
	hugepool_restore();
	exit(1);
}

static void on_signal(int sig)
{
	hugepool_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void host_init(struct host *h, int shared_fd, int private_fd)
{
	int ret;

	if (h->lib) {
		static const struct cvmconv_ops ops = { .set_memory_attributes = noop_attr };
		struct cvmconv_config cfg = { .sz = sizeof(cfg), .vm_fd = -1, .ops = &ops };
		struct cvmconv_region r = { .sz = sizeof(r),
					    .gpa = 0,
					    .size = GUEST,
					    .private_fd = private_fd,
					    .shared_fd = shared_fd,
					    .unaligned = -1 };

		ret = cvmconv_create(&cfg, &h->c);
		if (!ret)
			ret = cvmconv_add_region(h->c, &r);
	} else {
		struct qemu_like_region r = {
			.gpa = 0, .size = GUEST, .private_fd = private_fd, .shared_fd = shared_fd
		};

		ret = qemu_like_create(noop_attr, NULL, &h->q);
		if (!ret)
			ret = qemu_like_add_region(h->q, &r);
	}
	if (ret)
		die("host setup", ret);
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
		uint64_t attrs = to_private ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0, hc = 0;
		int ret;

		if (h->lib) {
			ret = cvmconv_map_gpa_range(h->c, gpa, chunk / PERF_4K, attrs, &hc);
			if (!ret && hc)
				ret = -EPROTO;
		} else {
			ret = qemu_like_map_gpa_range(h->q, gpa, chunk / PERF_4K, attrs);
		}
		if (ret)
			die("conversion", ret);
	}
}

static void write_pages(uint8_t *map)
{
	for (uint64_t off = 0; off < GUEST; off += PERF_4K)
		((volatile uint8_t *)map)[off] = 1;
}

struct best {
	double to_private, to_shared, cycle, rewrite;
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
	char why[256];
	int shared_fd, private_fd;
	uint8_t *map;
	struct best best[2][2];

	if (argc == 3 && !strcmp(argv[1], "--rounds"))
		rounds = (unsigned)strtoul(argv[2], NULL, 0);
	else if (argc != 1) {
		fprintf(stderr, "usage: perf_throughput [--rounds N]\n");
		return 2;
	}
	if (!rounds)
		rounds = 1;
	perf_print_machine(stdout);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (hugepool_reserve(PERF_2M, GUEST / PERF_2M + 8, why, sizeof(why))) {
		printf("skipped: %s\n", why);
		return 77;
	}
	shared_fd =
		memfd_create("perf-shared", MFD_CLOEXEC | MFD_HUGETLB | (21u << MFD_HUGE_SHIFT));
	private_fd = memfd_create("perf-private", MFD_CLOEXEC);
	if (shared_fd < 0 || private_fd < 0)
		die("memfd_create", errno);
	if (ftruncate(shared_fd, (off_t)GUEST) || ftruncate(private_fd, (off_t)GUEST))
		die("ftruncate", errno);
	map = mmap(NULL, GUEST, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, shared_fd, 0);
	if (map == MAP_FAILED)
		die("mmap", errno);
	memset(best, 0, sizeof(best));
	for (unsigned r = 0; r < rounds; r++) {
		for (int lib = 1; lib >= 0; lib--) {
			for (size_t s = 0; s < 2; s++) {
				struct host h = { .lib = lib != 0 };
				struct best *b = &best[lib][s];
				double t0, t1, t2, t3;

				/* a clean start: nothing allocated, then the guest's
				 * shared memory populated */
				if (fallocate(shared_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					      0, (off_t)GUEST) ||
				    fallocate(private_fd,
					      FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
					      (off_t)GUEST))
					die("reset", errno);
				write_pages(map);
				host_init(&h, shared_fd, private_fd);
				t0 = now();
				convert(&h, shapes[s].chunk, true);
				t1 = now();
				convert(&h, shapes[s].chunk, false);
				t2 = now();
				write_pages(map);
				t3 = now();
				host_fini(&h);
				keep_min(&b->to_private, t1 - t0);
				keep_min(&b->to_shared, t2 - t1);
				keep_min(&b->cycle, t2 - t0);
				keep_min(&b->rewrite, t3 - t0);
			}
		}
	}
	printf("\n1 GiB shared -> private -> shared, 2 MiB MFD_HUGETLB shared side, best of %u; "
	       "ms and GiB/s (2 GiB converted per cycle)\n",
	       rounds);
	printf("%-12s %-9s | %9s %9s %9s %7s | %16s %7s\n", "shape", "host", "->private",
	       "->shared", "cycle", "GiB/s", "cycle+rewrite ms", "GiB/s");
	for (size_t s = 0; s < 2; s++) {
		for (int lib = 1; lib >= 0; lib--) {
			const struct best *b = &best[lib][s];

			printf("%-12s %-9s | %9.3f %9.3f %9.3f %7.1f | %16.3f %7.1f\n",
			       shapes[s].name, lib ? "cvmconv" : "baseline", b->to_private * 1e3,
			       b->to_shared * 1e3, b->cycle * 1e3, 2.0 / b->cycle, b->rewrite * 1e3,
			       2.0 / b->rewrite);
		}
		printf("%-12s %-9s | %9.2f %9.2f %9.2f %7s | %16.2f\n", shapes[s].name, "ratio",
		       best[0][s].to_private / best[1][s].to_private,
		       best[0][s].to_shared / best[1][s].to_shared,
		       best[0][s].cycle / best[1][s].cycle, "",
		       best[0][s].rewrite / best[1][s].rewrite);
	}
	printf("ratio = cvmconv GiB/s / baseline GiB/s (baseline time / cvmconv time); target: "
	       "cycle ratio >= 1.0\n");
	munmap(map, GUEST);
	close(shared_fd);
	close(private_fd);
	hugepool_restore();
	return 0;
}
