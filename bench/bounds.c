/* SPDX-License-Identifier: MIT */
/*
 * bench_bounds: what one KVM_HC_MAP_GPA_RANGE request costs the host, by
 * its size, against the strict fake KVM (tests/fake_kvm.c) and one region
 * of 1 TiB without backings (so the numbers are the library's own work and
 * one fake attribute update, no memory traffic).
 *
 * For npages = 1, 2^20, 2^40, 2^52 and 2^64 - 1 it prints the mean time of
 *   toggle    the range alternates private/shared (each request converts),
 *   in-state  the range is asked to be what it already is (no kernel call),
 *   refused   the same size ending one page past the region (refused),
 * where a size cannot be valid (beyond 2^52 bytes) every kind is a refusal.
 * The claim checked by eye: refusals and in-state requests cost the same
 * whatever the size, and no request costs in proportion to its pages.
 *
 *   bench_bounds [ITERATIONS]     (default 200000 per cell)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cvmconv.h"
#include "fake_kvm.h"

#define BASE (1ULL << 40)
#define REGION (1ULL << 40) /* 1 TiB */

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

enum kind { TOGGLE, IN_STATE, REFUSED };

static double per_request(struct cvmconv *c, uint64_t npages, enum kind k, unsigned long iters,
			  unsigned *refused)
{
	/* refused: ends one page past the region (sizes that fit at all) */
	uint64_t gpa = BASE, hc;

	if (k == REFUSED)
		gpa = npages <= REGION / 4096 ? BASE + REGION - (npages - 1) * 4096 : BASE + REGION;
	double t0;

	*refused = 0;
	t0 = now_ns();
	for (unsigned long i = 0; i < iters; i++) {
		uint64_t attrs = k == TOGGLE && (i & 1) == 0 ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0;

		if (cvmconv_map_gpa_range(c, gpa, npages, attrs, &hc) != 0) {
			fprintf(stderr, "host failure\n");
			exit(1);
		}
		*refused += hc != 0;
	}
	return (now_ns() - t0) / (double)iters;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		uint64_t npages;
	} sizes[] = {
		{ "1", 1 },
		{ "2^20", 1ULL << 20 },
		{ "2^40", 1ULL << 40 },
		{ "2^52", 1ULL << 52 },
		{ "2^64-1", UINT64_MAX },
	};
	static const char *const kinds[] = { "toggle", "in-state", "refused" };
	unsigned long iters = argc > 1 ? strtoul(argv[1], NULL, 0) : 200000;
	struct fake_kvm f;
	struct cvmconv_config cfg;
	struct cvmconv_region r = { .sz = sizeof(r),
				    .gpa = BASE,
				    .size = REGION,
				    .private_fd = -1,
				    .shared_fd = -1,
				    .flags = CVMCONV_REGION_ATTRS_ONLY, /* attributes only */
				    .unaligned = -1 };
	struct cvmconv *c;

	if (!iters)
		iters = 1;
	fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&f, CVMCONV_UNALIGNED_ALLOW);
	if (cvmconv_create(&cfg, &c) || cvmconv_add_region(c, &r)) {
		fprintf(stderr, "bench_bounds: setup failed\n");
		return 1;
	}
	printf("bench_bounds: ns per KVM_HC_MAP_GPA_RANGE request, %lu requests per cell, "
	       "region 1 TiB at 1 TiB (cvmconv %s)\n",
	       iters, cvmconv_version());
	printf("%-8s %12s %12s %12s   %s\n", "npages", kinds[0], kinds[1], kinds[2], "answers");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		double ns[3];
		unsigned ref[3];
		/* a 4 GiB toggle walks 2048 extents: fewer iterations */
		unsigned long n = sizes[s].npages == (1ULL << 20) ? iters / 100 + 2 : iters;

		n = n < 2 ? 2 : n & ~1UL; /* toggles end shared: in-state asks for shared */

		for (int k = 0; k < 3; k++)
			ns[k] = per_request(c, sizes[s].npages, (enum kind)k, n, &ref[k]);
		printf("%-8s %12.1f %12.1f %12.1f   %s\n", sizes[s].name, ns[0], ns[1], ns[2],
		       ref[0] == n   ? "all refused"
		       : ref[2] == n ? "converted / in state / refused"
				     : "?");
	}
	cvmconv_destroy(c);
	fake_kvm_fini(&f);
	return 0;
}
