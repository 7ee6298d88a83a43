/* SPDX-License-Identifier: MIT */
/* One guest region on real backings, for perf_throughput and perf_latency
 * (perf.h, "one guest on real backings"). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hugepool.h"
#include "perf.h"
#include "perf_inline.h"
#include "private_backing.h"
#include "qemu_like.h"

static const char *prog_name = "perf";

int perf_noop_attr(void *opaque, uint64_t gpa, uint64_t size, uint64_t attributes)
{
	return perf_attr_accept(opaque, gpa, size, attributes);
}

void perf_die(const char *what, int err)
{
	fprintf(stderr, "%s: %s: %s\n", prog_name, what, strerror(err < 0 ? -err : err));
	hugepool_restore();
	exit(1);
}

static void on_signal(int sig)
{
	hugepool_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

int perf_gib_open(struct perf_gib *g, uint64_t size, const char *prog)
{
	char why[256];

	memset(g, 0, sizeof(*g));
	prog_name = prog;
	g->size = size;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (hugepool_reserve(PERF_2M, size / PERF_2M + 8, why, sizeof(why))) {
		printf("skipped: %s\n", why);
		return 77;
	}
	g->shared_fd = cvmconv_memfd_create("perf-shared", size, PERF_2M);
	/* a real guest_memfd where the host's KVM makes one, else a stand-in */
	g->private_fd = private_backing_fd(size);
	if (g->shared_fd < 0)
		perf_die("cvmconv_memfd_create", g->shared_fd);
	if (g->private_fd < 0)
		perf_die("private side", -g->private_fd);
	g->shared_map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			     g->shared_fd, 0);
	if (g->shared_map == MAP_FAILED)
		perf_die("mmap", errno);
	return 0;
}

void perf_gib_close(struct perf_gib *g)
{
	munmap(g->shared_map, g->size);
	close(g->shared_fd);
	close(g->private_fd);
	hugepool_restore();
}

void perf_gib_reset(const struct perf_gib *g)
{
	if (fallocate(g->shared_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
		      (off_t)g->size) ||
	    fallocate(g->private_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)g->size))
		perf_die("reset", errno);
	for (uint64_t off = 0; off < g->size; off += PERF_4K)
		((volatile uint8_t *)g->shared_map)[off] = 1;
}

int perf_gib_map(struct cvmconv *c, struct qemu_like *q, uint64_t gpa, uint64_t npages,
		 uint64_t attrs)
{
	uint64_t hc = 0;
	int ret;

	if (!c)
		return qemu_like_map_gpa_range(q, gpa, npages, attrs);
	ret = cvmconv_map_gpa_range(c, gpa, npages, attrs, &hc);
	return !ret && hc ? -EPROTO : ret;
}

void perf_gib_host(const struct perf_gib *g, bool lib, uint32_t flags, struct cvmconv **c,
		   struct qemu_like **q)
{
	int ret;

	*c = NULL;
	*q = NULL;
	if (lib) {
		static const struct cvmconv_ops ops = { .set_memory_attributes = perf_noop_attr };
		struct cvmconv_config cfg = {
			.sz = sizeof(cfg), .vm_fd = -1, .ops = &ops, .flags = flags
		};
		struct cvmconv_region r = { .sz = sizeof(r),
					    .gpa = 0,
					    .size = g->size,
					    .private_fd = g->private_fd,
					    .shared_fd = g->shared_fd,
					    .unaligned = -1 };

		ret = cvmconv_create(&cfg, c);
		if (!ret)
			ret = cvmconv_add_region(*c, &r);
	} else {
		struct qemu_like_region r = { .gpa = 0,
					      .size = g->size,
					      .private_fd = g->private_fd,
					      .shared_fd = g->shared_fd };

		ret = qemu_like_create(perf_noop_attr, NULL, q);
		if (!ret)
			ret = qemu_like_add_region(*q, &r);
	}
	if (ret)
		perf_die("host setup", ret);
}
