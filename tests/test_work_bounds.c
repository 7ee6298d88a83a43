/* SPDX-License-Identifier: MIT */
/*
 * The work of one request stays bounded whatever failed before: counted,
 * not timed, in kernel calls (the fake's counters) and in the library's
 * bookkeeping_steps (tracker lookups and updates, searches of the waiting
 * and failed punch runs, punch calls; each O(log n)).
 *
 *   - Punches that always fail, one-page exits on alternating pages (each
 *     leaves one more failed range behind): every exit makes at most
 *     CVMCONV_DEFER_RANGES + 1 punch calls with CVMCONV_DEFER_PUNCH and 1
 *     without, and a constant number of steps (plus one per waiting range
 *     it punches), however many failed ranges wait: failed ones are retried
 *     by cvmconv_flush() only.
 *   - A 4 TiB region whose shared side (2 MiB hugetlb) starts at file
 *     offset 0x1000, so that both edge huge pages are only partly inside it
 *     and stay held with no live page; and the same after a failed punch of
 *     the whole region: a whole-region conversion to shared costs a constant
 *     number of steps, not one per huge page.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cvmconv.h"
#include "fake_kvm.h"
#include "conv_util.h" /* stats_of() */

#define BASE (64 * SZ_1G)
#define FAIL_EXITS 8000
/* Steps one exit may take here: a handful of tracker calls, the run-set
 * searches of both sides and the punch calls counted above. */
#define STEPS_PER_EXIT 16

static void always_fail_punches(struct fake_kvm *f)
{
	f->fail_at[FAKE_CALL_PUNCH] = f->calls[FAKE_CALL_PUNCH] + 1;
	f->fail_errno[FAKE_CALL_PUNCH] = EIO;
	f->fail_every[FAKE_CALL_PUNCH] = true;
}

/* A context over the fake KVM with @cfg's flags and log, one region of
 * @size at BASE on two shmem memfds, and punches that always fail. */
struct failing {
	struct fake_kvm f;
	struct cvmconv *c;
	int fds[2];
};

static void failing_open(struct failing *w, uint64_t size, uint32_t flags,
			 void (*log)(void *, int, const char *))
{
	struct cvmconv_config cfg;

	fake_kvm_init(&w->f, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&w->f, CVMCONV_UNALIGNED_ALLOW);
	cfg.flags = flags;
	cfg.log = log;
	assert_int_equal(cvmconv_create(&cfg, &w->c), 0);
	w->fds[0] = cvmconv_memfd_create("bounds-shared", size, SZ_4K);
	w->fds[1] = test_private_fd(size);
	assert_true(w->fds[0] >= 0 && w->fds[1] >= 0);
	struct cvmconv_region r = { .sz = sizeof(r),
				    .gpa = BASE,
				    .size = size,
				    .private_fd = w->fds[1],
				    .shared_fd = w->fds[0],
				    .unaligned = -1 };

	assert_int_equal(fake_kvm_add_region(&w->f, w->c, &r), 0);
	always_fail_punches(&w->f);
}

static void failing_close(struct failing *w)
{
	cvmconv_destroy(w->c);
	close(w->fds[0]);
	close(w->fds[1]);
	fake_kvm_fini(&w->f);
}

static void failing_punches(bool defer)
{
	const uint64_t size = 2 * FAIL_EXITS * SZ_4K;
	struct failing w;
	uint64_t max_punches = 0, max_steps = 0, last_punches = 0, hc;

	failing_open(&w, size, defer ? CVMCONV_DEFER_PUNCH : 0, NULL);
	struct cvmconv *c = w.c;
	struct fake_kvm *f = &w.f;

	for (uint64_t k = 0; k < FAIL_EXITS; k++) {
		struct cvmconv_stats before = stats_of(c), after;
		uint64_t punches = f->calls[FAKE_CALL_PUNCH];

		assert_int_equal(cvmconv_map_gpa_range(c, BASE + 2 * k * SZ_4K, 1,
						       CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &hc),
				 0);
		assert_int_equal(hc, 0);
		after = stats_of(c);
		punches = f->calls[FAKE_CALL_PUNCH] - punches;
		if (punches > max_punches)
			max_punches = punches;
		if (after.bookkeeping_steps - before.bookkeeping_steps - punches > max_steps)
			max_steps = after.bookkeeping_steps - before.bookkeeping_steps - punches;
		last_punches = punches;
	}
	struct cvmconv_stats st = stats_of(c);

	print_message("%s, punches always failing, %u one-page exits on alternating pages: "
		      "punch calls per exit max %llu (last %llu), other steps per exit max %llu, "
		      "%llu bytes pending\n",
		      defer ? "deferred" : "immediate", FAIL_EXITS, (unsigned long long)max_punches,
		      (unsigned long long)last_punches, (unsigned long long)max_steps,
		      (unsigned long long)st.punch_pending_bytes);
	assert_true(max_punches <= (defer ? CVMCONV_DEFER_RANGES + 1 : 1));
	/* the exit that finds more than CVMCONV_DEFER_RANGES ranges waiting
	 * moves each of them to the failed runs */
	assert_true(max_steps <= STEPS_PER_EXIT + (defer ? CVMCONV_DEFER_RANGES + 1 : 0));
	/* nothing lost track of: every stale page is pending and counted */
	assert_int_equal(st.punch_pending_bytes, FAIL_EXITS * SZ_4K);
	assert_int_equal(st.double_alloc_bytes, FAIL_EXITS * SZ_4K);
	/* the flush retries them all (the VMM's call, off the vCPU threads) */
	fake_kvm_fail_clear(f);
	assert_int_equal(cvmconv_flush(c), 0);
	st = stats_of(c);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(st.double_alloc_bytes, 0);
	assert_int_equal(fake_kvm_mismatches(f, c, BASE, size), 0);
	failing_close(&w);
}

static void test_work_failing_punches_deferred(void **state)
{
	(void)state;
	failing_punches(true);
}

static void test_work_failing_punches_immediate(void **state)
{
	(void)state;
	failing_punches(false);
}

/* More failed ranges than a side can remember (65,536 runs): the one
 * beyond is logged (rate limited) and leaves the figures (it stays allocated, untracked,
 * until one of its pages is live and stale again), nothing is counted twice,
 * and the work per exit stays the same. */
static unsigned untracked_lines;

static void count_untracked(void *opaque, int level, const char *msg)
{
	(void)opaque;
	(void)level;
	if (strstr(msg, "untracked"))
		untracked_lines++;
}

static void test_work_failed_runs_full(void **state)
{
	const uint64_t n = 65536 + 1, size = 2 * n * SZ_4K;
	struct failing w;
	struct cvmconv_stats st;
	uint64_t hc, max_steps = 0;

	(void)state;
	failing_open(&w, size, 0, count_untracked);
	struct cvmconv *c = w.c;
	struct fake_kvm *f = &w.f;

	untracked_lines = 0;
	for (uint64_t k = 0; k < n; k++) {
		uint64_t s0 = stats_of(c).bookkeeping_steps, s1;

		assert_int_equal(cvmconv_map_gpa_range(c, BASE + 2 * k * SZ_4K, 1,
						       CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &hc),
				 0);
		s1 = stats_of(c).bookkeeping_steps;
		if (s1 - s0 > max_steps)
			max_steps = s1 - s0;
	}
	st = stats_of(c);
	print_message("%llu failed one-page punches: %llu bytes pending, %u untracked, steps per "
		      "exit max %llu\n",
		      (unsigned long long)n, (unsigned long long)st.punch_pending_bytes,
		      untracked_lines, (unsigned long long)max_steps);
	/* the line is rate limited with the punch failures before it */
	assert_true(untracked_lines == 1 || st.log_suppressed > 0);
	assert_int_equal(st.punch_pending_bytes, (n - 1) * SZ_4K);
	assert_int_equal(st.double_alloc_bytes, (n - 1) * SZ_4K);
	assert_true(max_steps <= STEPS_PER_EXIT);
	/* converting the untracked page back and forth frees it again */
	fake_kvm_fail_clear(f);
	assert_int_equal(cvmconv_flush(c), 0);
	assert_int_equal(stats_of(c).punch_pending_bytes, 0);
	assert_int_equal(cvmconv_map_gpa_range(c, BASE + 2 * (n - 1) * SZ_4K, 1, 0, &hc), 0);
	assert_int_equal(cvmconv_map_gpa_range(c, BASE + 2 * (n - 1) * SZ_4K, 1,
					       CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &hc),
			 0);
	st = stats_of(c);
	assert_int_equal(st.double_alloc_bytes, 0);
	assert_int_equal(fake_kvm_mismatches(f, c, BASE, size), 0);
	failing_close(&w);
}

/* ---- a 4 TiB region with held edge huge pages ---- */

struct counted {
	struct fake_kvm f;
	uint64_t punches;
	bool fail;
};

static int c_attrs(void *opaque, uint64_t gpa, uint64_t size, uint64_t attrs)
{
	return fake_kvm_ops.set_memory_attributes(&((struct counted *)opaque)->f, gpa, size, attrs);
}

/* checked by the oracle, not executed: 4 TiB of hugetlb file is never
 * allocated here */
static int c_punch(void *opaque, int fd, uint64_t off, uint64_t len)
{
	struct counted *k = opaque;

	fake_kvm_live_in_punch(&k->f, fd, NULL, off, len);
	k->punches++;
	return k->fail ? -EIO : 0;
}

static const struct cvmconv_ops c_ops = { .set_memory_attributes = c_attrs, .punch = c_punch };

static void whole_region_steps(bool fail_first)
{
	const uint64_t size = 4ULL << 40; /* 4 TiB */
	struct counted k;
	struct cvmconv_config cfg;
	struct cvmconv *c;
	struct cvmconv_stats a, b;
	uint64_t hc, steps_private, steps_shared, steps_page;
	int fd;

	memset(&k, 0, sizeof(k));
	fake_kvm_init(&k.f, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&k.f, CVMCONV_UNALIGNED_ALLOW);
	cfg.ops = &c_ops;
	cfg.ops_opaque = &k;
	assert_int_equal(cvmconv_create(&cfg, &c), 0);
	fd = cvmconv_memfd_create("bounds-4t", size + SZ_2M, SZ_2M);
	if (fd < 0)
		FIXTURE_SKIP("no MFD_HUGETLB memfd with 2 MiB pages: %s", strerror(-fd));
	struct cvmconv_region r = {
		.sz = sizeof(r),
		.gpa = BASE,
		.size = size,
		.private_fd = -1,
		.shared_fd = fd,
		.shared_offset = 0x1000,
		.flags = CVMCONV_REGION_ATTRS_ONLY, /* the shared side is measured */
		.unaligned = -1
	};

	assert_int_equal(fake_kvm_add_region(&k.f, c, &r), 0);
	k.fail = fail_first;
	a = stats_of(c);
	assert_int_equal(
		cvmconv_map_gpa_range(c, BASE, size / SZ_4K, CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &hc),
		0);
	assert_int_equal(hc, 0);
	b = stats_of(c);
	steps_private = b.bookkeeping_steps - a.bookkeeping_steps;
	/* the whole huge pages inside went in one punch; both edges stay held
	 * (or, after a failed punch, everything does) */
	assert_int_equal(k.punches, 1);
	/* edges: 511 pages of the first huge page, 1 of the last */
	assert_int_equal(b.double_alloc_bytes, fail_first ? size : SZ_2M);
	k.fail = false;
	/* back to shared, the whole region: one search, not 2 million */
	a = stats_of(c);
	assert_int_equal(cvmconv_map_gpa_range(c, BASE, size / SZ_4K, 0, &hc), 0);
	assert_int_equal(hc, 0);
	b = stats_of(c);
	steps_shared = b.bookkeeping_steps - a.bookkeeping_steps;
	assert_int_equal(b.double_alloc_bytes, 0);
	assert_int_equal(b.punch_pending_bytes, 0);
	/* and a 4 KiB exit in the middle, there and back */
	a = stats_of(c);
	assert_int_equal(cvmconv_map_gpa_range(c, BASE + size / 2 + SZ_4K, 1,
					       CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &hc),
			 0);
	assert_int_equal(cvmconv_map_gpa_range(c, BASE + size / 2 + SZ_4K, 1, 0, &hc), 0);
	b = stats_of(c);
	steps_page = b.bookkeeping_steps - a.bookkeeping_steps;
	print_message("4 TiB region, shared side 2 MiB hugetlb at offset 0x1000%s: steps of a "
		      "whole-region exit to private %llu, back to shared %llu; two 4 KiB exits "
		      "%llu\n",
		      fail_first ? ", first punch failing" : "", (unsigned long long)steps_private,
		      (unsigned long long)steps_shared, (unsigned long long)steps_page);
	assert_true(steps_private <= STEPS_PER_EXIT);
	assert_true(steps_shared <= STEPS_PER_EXIT);
	assert_true(steps_page <= 2 * STEPS_PER_EXIT);
	assert_int_equal(k.f.live_punches, 0);
	cvmconv_destroy(c);
	close(fd);
	fake_kvm_fini(&k.f);
}

static void test_work_held_edges_4t(void **state)
{
	(void)state;
	whole_region_steps(false);
}

static void test_work_failed_punch_4t(void **state)
{
	(void)state;
	whole_region_steps(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_work_failing_punches_deferred),
		cmocka_unit_test(test_work_failing_punches_immediate),
		cmocka_unit_test(test_work_failed_runs_full),
		cmocka_unit_test(test_work_held_edges_4t),
		cmocka_unit_test(test_work_failed_punch_4t),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
