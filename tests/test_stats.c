/* SPDX-License-Identifier: MIT */
/*
 * The figures of cvmconv_get_stats() against plain references:
 *   - extents and mixed_extents when many small regions share 2 MiB frames
 *     (x86 frame 0 can hold low memory, option ROMs and RAM from 1 MiB):
 *     a frame is one extent however many regions it holds, mixed when its
 *     pages inside regions are not all in one state;
 *   - a snapshot taken while another thread converts is consistent:
 *     punch_pending_bytes never exceeds double_alloc_bytes (pending memory
 *     is part of the double allocation).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cvmconv.h"
#include "fake_kvm.h"
#include "conv_util.h" /* stats_of() */

#define FRAMES 4
#define FRAME_PAGES 512

/* The example of the issue: three 4 KiB regions in frame 0, private /
 * shared / private: one extent, mixed once. */
static void test_stats_three_regions_one_frame(void **state)
{
	struct fake_kvm f;
	struct cvmconv_config cfg;
	struct cvmconv *c;
	struct cvmconv_stats st;

	(void)state;
	fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&f, CVMCONV_UNALIGNED_ALLOW);
	assert_int_equal(cvmconv_create(&cfg, &c), 0);
	for (int i = 0; i < 3; i++) {
		struct cvmconv_region r = { .sz = sizeof(r),
					    .gpa = (uint64_t)i * SZ_4K,
					    .size = SZ_4K,
					    .private_fd = -1,
					    .shared_fd = -1,
					    .flags = i == 1 ? 0 : CVMCONV_REGION_PRIVATE,
					    .unaligned = -1 };

		assert_int_equal(cvmconv_add_region(c, &r), 0);
	}
	st = stats_of(c);
	assert_int_equal(st.extents, 1);
	assert_int_equal(st.mixed_extents, 1);
	/* all private: no longer mixed */
	assert_int_equal(cvmconv_convert(c, SZ_4K, SZ_4K, true), 0);
	st = stats_of(c);
	assert_int_equal(st.mixed_extents, 0);
	cvmconv_destroy(c);
	fake_kvm_fini(&f);
}

/* Random layouts: up to a dozen regions over four frames, some inside one
 * frame, some across frame boundaries, random page states; the reference
 * is one bool per page. */
static void test_stats_shared_frames_random(void **state)
{
	uint64_t seed = 0x5eed5u;

	(void)state;
	for (int round = 0; round < 300; round++) {
		struct fake_kvm f;
		struct cvmconv_config cfg;
		struct cvmconv *c;
		struct cvmconv_stats st;
		signed char page[FRAMES * FRAME_PAGES]; /* -1 no region, 0 shared, 1 private */
		uint64_t p = 0, want_extents = 0, want_mixed = 0;

		memset(page, -1, sizeof(page));
		fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
		cfg = fake_kvm_config(&f, CVMCONV_UNALIGNED_ALLOW);
		assert_int_equal(cvmconv_create(&cfg, &c), 0);
		while (p < FRAMES * FRAME_PAGES) {
			uint64_t gap, n;

			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			gap = (seed >> 33) % 3 == 0 ? (seed >> 40) % 300 : 0;
			n = 1 + (seed >> 20) % ((seed >> 60) & 1 ? 700 : 4);
			p += gap;
			if (p + n > FRAMES * FRAME_PAGES)
				break;
			struct cvmconv_region r = { .sz = sizeof(r),
						    .gpa = p * SZ_4K,
						    .size = n * SZ_4K,
						    .private_fd = -1,
						    .shared_fd = -1,
						    .unaligned = -1 };

			assert_int_equal(cvmconv_add_region(c, &r), 0);
			for (uint64_t q = p; q < p + n; q++)
				page[q] = 0;
			/* a few pages of it private */
			for (int k = 0; k < 3; k++) {
				seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
				if ((seed >> 62) == 0)
					continue;
				uint64_t a = p + (seed >> 24) % n, b = a + 1 + (seed >> 44) % 3;

				if (b > p + n)
					b = p + n;
				assert_int_equal(
					cvmconv_convert(c, a * SZ_4K, (b - a) * SZ_4K, true), 0);
				for (uint64_t q = a; q < b; q++)
					page[q] = 1;
			}
			p += n;
		}
		for (int fr = 0; fr < FRAMES; fr++) {
			bool any = false, priv = false, shared = false;

			for (int q = fr * FRAME_PAGES; q < (fr + 1) * FRAME_PAGES; q++) {
				any |= page[q] >= 0;
				priv |= page[q] == 1;
				shared |= page[q] == 0;
			}
			want_extents += any;
			want_mixed += priv && shared;
		}
		st = stats_of(c);
		if (st.extents != want_extents || st.mixed_extents != want_mixed)
			fail_msg("round %d: extents %llu mixed %llu, reference %llu and %llu",
				 round, (unsigned long long)st.extents,
				 (unsigned long long)st.mixed_extents,
				 (unsigned long long)want_extents, (unsigned long long)want_mixed);
		cvmconv_destroy(c);
		fake_kvm_fini(&f);
	}
}

/* ---- snapshot consistency ---- */

struct race {
	struct cvmconv *c;
	atomic_bool stop;
	_Atomic uint64_t conversions;
};

#define RACE_PAGES 64

static void *converter(void *arg)
{
	struct race *r = arg;
	uint64_t k = 0;

	while (!atomic_load(&r->stop)) {
		/* every other page to private and back: each one joins and
		 * leaves the deferred (pending) memory of the shared side */
		uint64_t page = (k % RACE_PAGES) * 2;
		bool to_private = (k / RACE_PAGES) % 2 == 0;

		if (cvmconv_convert(r->c, SZ_1G + page * SZ_4K, SZ_4K, to_private))
			abort();
		if (k % (4 * RACE_PAGES) == 0)
			cvmconv_flush(r->c);
		k++;
		atomic_store(&r->conversions, k);
		if (k % 16 == 0)
			sched_yield(); /* a mutex is not fair: let the snapshots in */
	}
	return NULL;
}

static void test_stats_snapshot_consistent(void **state)
{
	struct fake_kvm f;
	struct cvmconv_config cfg;
	struct race r = { 0 };
	pthread_t t;
	int fds[2];
	uint64_t snapshots = 0, bad = 0;
	const char *quick = getenv("CVMCONV_TEST_QUICK");
	const uint64_t want = quick && *quick == '1' ? 20000 : 300000;

	(void)state;
	fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&f, CVMCONV_UNALIGNED_ALLOW);
	cfg.flags = CVMCONV_DEFER_PUNCH;
	assert_int_equal(cvmconv_create(&cfg, &r.c), 0);
	fds[0] = cvmconv_memfd_create("stats-shared", 2 * RACE_PAGES * SZ_4K, SZ_4K);
	fds[1] = test_private_fd(2 * RACE_PAGES * SZ_4K);
	assert_true(fds[0] >= 0 && fds[1] >= 0);
	struct cvmconv_region reg = { .sz = sizeof(reg),
				      .gpa = SZ_1G,
				      .size = 2 * RACE_PAGES * SZ_4K,
				      .private_fd = fds[1],
				      .shared_fd = fds[0],
				      .unaligned = -1 };

	assert_int_equal(fake_kvm_add_region(&f, r.c, &reg), 0);
	assert_int_equal(pthread_create(&t, NULL, converter, &r), 0);
	/* both sides must have run a while (valgrind runs one thread at a time) */
	while (snapshots < want || atomic_load(&r.conversions) < want / 10) {
		struct cvmconv_stats st = stats_of(r.c);

		bad += st.punch_pending_bytes > st.double_alloc_bytes;
		snapshots++;
		if (snapshots % 1024 == 0 && atomic_load(&r.conversions) < want / 10)
			sched_yield(); /* let the converter in */
	}
	atomic_store(&r.stop, true);
	pthread_join(t, NULL);
	print_message("%llu snapshots during %llu conversions: %llu inconsistent\n",
		      (unsigned long long)snapshots,
		      (unsigned long long)atomic_load(&r.conversions), (unsigned long long)bad);
	assert_int_equal(bad, 0);
	assert_true(atomic_load(&r.conversions) > 0);
	cvmconv_destroy(r.c);
	close(fds[0]);
	close(fds[1]);
	fake_kvm_fini(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stats_three_regions_one_frame),
		cmocka_unit_test(test_stats_shared_frames_random),
		cmocka_unit_test(test_stats_snapshot_consistent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
