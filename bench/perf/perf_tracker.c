/* SPDX-License-Identifier: MIT */
/*
 * perf_tracker: the library's tracker memory (cvmconv_get_stats()
 * .tracker_bytes) against the number of state boundaries and the guest
 * size. One region at gpa 0 without backings (private_fd -1, shared_fd -1,
 * shared_hva NULL: no memory behind it) starts private; K disjoint ranges
 * are converted to shared, one per K-th slice of the guest, at a random
 * place in it, never adjacent to another: 2K boundaries.
 *   4k ranges: 1-64 pages at any 4 KiB offset (each makes 1-2 mixed extents)
 *   2m ranges: 1-4 whole 2 MiB extents (no mixed extent)
 * The target: a 16 TiB guest with 1,000 converted ranges under 1 MiB.
 *
 *   perf_tracker
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cvmconv.h"
#include "perf_inline.h"

#define SZ_4K 4096ULL
#define SZ_2M (2ULL << 20)
#define TARGET_BYTES (1ULL << 20)

/* tracker_bytes and mixed extents after @k ranges; -errno on failure. */
static int measure(uint64_t guest, uint64_t k, bool huge, struct cvmconv_stats *st)
{
	static const struct cvmconv_ops ops = { .set_memory_attributes = perf_attr_accept };
	struct cvmconv_config cfg = { .sz = sizeof(cfg), .vm_fd = -1, .ops = &ops };
	struct cvmconv_region r = { .sz = sizeof(r),
				    .gpa = 0,
				    .size = guest,
				    .private_fd = -1,
				    .shared_fd = -1,
				    .flags = CVMCONV_REGION_PRIVATE | CVMCONV_REGION_ATTRS_ONLY,
				    .unaligned = -1 };
	uint64_t seed = 7, unit = huge ? SZ_2M : SZ_4K, max = huge ? 4 : 64;
	struct cvmconv *c;
	int ret = cvmconv_create(&cfg, &c);

	if (!ret)
		ret = cvmconv_add_region(c, &r);
	for (uint64_t i = 0; i < k && !ret; i++) {
		uint64_t slice = guest / k / unit; /* in units, >= 8 */
		uint64_t n = 1 + perf_rng(&seed) % (max < slice - 2 ? max : slice - 2);
		/* a unit of gap on each side keeps ranges apart */
		uint64_t at = 1 + perf_rng(&seed) % (slice - n - 1);

		ret = cvmconv_convert(c, (i * slice + at) * unit, n * unit, false);
	}
	st->sz = sizeof(*st);
	if (!ret)
		ret = cvmconv_get_stats(c, st);
	cvmconv_destroy(c);
	return ret;
}

int main(void)
{
	static const struct {
		const char *name;
		uint64_t size;
	} guests[] = { { "1 GiB", 1ULL << 30 },
		       { "1 TiB", 1ULL << 40 },
		       { "16 TiB", 16ULL << 40 } };
	static const uint64_t counts[] = { 0, 1, 10, 100, 1000, 10000 };
	uint64_t at_target = 0;
	int ret;

	printf("cvmconv %s: tracker_bytes of one region starting private, K disjoint ranges "
	       "converted to shared (2K boundaries)\n",
	       cvmconv_version());
	printf("%-7s %-6s %6s | %13s %10s %7s | %15s\n", "guest", "ranges", "K", "tracker_bytes",
	       "bytes/bnd", "mixed", "page bitmap");
	for (size_t h = 0; h < 2; h++) {
		for (size_t g = 0; g < sizeof(guests) / sizeof(guests[0]); g++) {
			for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
				struct cvmconv_stats st;
				uint64_t k = counts[i];

				if (h && guests[g].size / SZ_2M < 8 * k)
					continue; /* 2 MiB ranges do not fit */
				ret = measure(guests[g].size, k, h, &st);
				if (ret) {
					fprintf(stderr, "perf_tracker: %s, %llu ranges: %s\n",
						guests[g].name, (unsigned long long)k,
						strerror(-ret));
					return 1;
				}
				if (!h && g == 2 && k == 1000)
					at_target = st.tracker_bytes;
				printf("%-7s %-6s %6llu | %13llu %10.1f %7llu | %11llu KiB\n",
				       guests[g].name, h ? "2m" : "4k", (unsigned long long)k,
				       (unsigned long long)st.tracker_bytes,
				       k ? (double)st.tracker_bytes / (double)(2 * k) : 0.0,
				       (unsigned long long)st.mixed_extents,
				       (unsigned long long)(guests[g].size / SZ_4K / 8 >> 10));
			}
		}
	}
	printf("\ntarget: 16 TiB guest, 1000 converted 4 KiB-granular ranges: %llu bytes "
	       "(%s 1 MiB)\n",
	       (unsigned long long)at_target, at_target < TARGET_BYTES ? "under" : "NOT under");
	printf("page bitmap = what one bit per 4 KiB page of the guest would take\n");
	return at_target < TARGET_BYTES ? 0 : 1;
}
