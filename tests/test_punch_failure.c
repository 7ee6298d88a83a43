/* SPDX-License-Identifier: MIT */
/*
 * Punch failures and cvmconv_flush(), over real backings (the fake KVM
 * injects the failure; every other punch reaches the real kernel):
 *   - a failed punch never undoes a conversion: the guest is answered 0, the
 *     attributes changed, the stale memory stays allocated (st_blocks) and
 *     is counted (punch_failures, punch_pending_bytes, double_alloc_bytes);
 *   - cvmconv_flush() punches it later: st_blocks drops by exactly the
 *     pending bytes; a failing flush reports the error and keeps it pending;
 *   - a page that became live again after the failed punch is never punched
 *     by flush (data written after it became live survives);
 *   - the madvise path (shared side given only as a MAP_SHARED mapping):
 *     MADV_REMOVE of stale 4 KiB pages on shmem, whole huge pages only on a
 *     hugetlb mapping, never a live page.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "conv_util.h"

#define GPA_BASE SZ_1G
#define HUGE_RESERVE (2 + 3) /* 2 huge pages of backing, margin */

/* Region and backings: shmem = 2 MiB (512 pages), hugetlb = 2 huge pages.
 * @by_hva: the shared side is passed as shared_hva only (shared_fd -1); the
 * test keeps the fd to read the kernel's accounting. */
static uint64_t setup_region(struct conv_env *e, bool huge, bool by_hva)
{
	uint64_t size = huge ? 2 * SZ_2M : SZ_2M;
	struct cvmconv_region r;

	assert_true(!huge || e->reserved); /* the test called ENV_RESERVE */
	env_ctx(e, CVMCONV_UNALIGNED_ALLOW);
	ENV_SHARED(e, size, huge);
	env_private(e, size);
	r = region_desc(GPA_BASE, size, e->private_fd, by_hva ? -1 : e->shared_fd,
			by_hva ? e->shared_map : NULL);
	assert_int_equal(fake_kvm_add_region(&e->fake, e->c, &r), 0);
	/* the guest filled all of its (shared) memory */
	pattern_fill(e->shared_map, 0, PAGES_OF(size), 1);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size);
	return size;
}

static void check_shared_pages(struct conv_env *e, uint64_t first, uint64_t n, uint32_t seed)
{
	uint8_t *buf = malloc(e->shared_size);

	assert_non_null(buf);
	read_into(e->shared_fd, buf, e->shared_size);
	for (uint64_t p = first; p < first + n; p++)
		if (seed ? !pattern_check(buf, p, seed) : !page_is_zero(buf, p)) {
			free(buf);
			fail_msg("shared page %llu should hold %s %u", (unsigned long long)p,
				 seed ? "pattern" : "zeros", seed);
		}
	free(buf);
}

static void expect_private(struct conv_env *e, uint64_t first, uint64_t n, int want)
{
	for (uint64_t p = first; p < first + n; p++) {
		assert_int_equal(cvmconv_is_private(e->c, GPA_BASE + p * SZ_4K), want);
		assert_int_equal(fake_kvm_is_private(&e->fake, GPA_BASE + p * SZ_4K), want);
	}
}

/* ---- 4 KiB backing ---- */

static void test_punch_failure_shmem_flush(void **state)
{
	struct conv_env *e = *state;
	uint64_t size = setup_region(e, false, false);
	struct cvmconv_stats st;

	/* one page: the punch of its stale shared page fails */
	fake_kvm_fail_nth(&e->fake, FAKE_CALL_PUNCH, 1, EIO);
	guest_map(e->c, GPA_BASE + 3 * SZ_4K, SZ_4K, true, 0);
	expect_private(e, 3, 1, 1);
	st = stats_of(e->c);
	assert_int_equal(st.punch_failures, 1);
	assert_int_equal(st.punches, 1);
	assert_int_equal(st.punch_pending_bytes, SZ_4K);
	assert_int_equal(st.double_alloc_bytes, SZ_4K);
	assert_true(st.double_alloc_peak_bytes >= SZ_4K);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size);
	check_shared_pages(e, 3, 1, 1); /* not punched */

	assert_int_equal(cvmconv_flush(e->c), 0);
	st = stats_of(e->c);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size - SZ_4K);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(st.double_alloc_bytes, 0);
	assert_int_equal(st.punch_failures, 1);
	check_shared_pages(e, 3, 1, 0);
	check_shared_pages(e, 0, 3, 1);
	check_shared_pages(e, 4, PAGES_OF(size) - 4, 1);

	/* a run of 10 pages: pending is the whole run, flush frees all of it */
	fake_kvm_fail_nth(&e->fake, FAKE_CALL_PUNCH, 1, EIO);
	guest_map(e->c, GPA_BASE + 10 * SZ_4K, 10 * SZ_4K, true, 0);
	expect_private(e, 10, 10, 1);
	st = stats_of(e->c);
	assert_int_equal(st.punch_failures, 2);
	assert_int_equal(st.punch_pending_bytes, 10 * SZ_4K);
	assert_int_equal(st.double_alloc_bytes, 10 * SZ_4K);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size - SZ_4K);
	assert_int_equal(cvmconv_flush(e->c), 0);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size - 11 * SZ_4K);
	st = stats_of(e->c);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(st.double_alloc_bytes, 0);
	check_shared_pages(e, 10, 10, 0);
	check_shared_pages(e, 20, PAGES_OF(size) - 20, 1);

	/* nothing pending: flush issues no call */
	{
		uint64_t calls = e->fake.calls[FAKE_CALL_PUNCH];

		assert_int_equal(cvmconv_flush(e->c), 0);
		assert_int_equal(e->fake.calls[FAKE_CALL_PUNCH], calls);
	}
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, GPA_BASE, size), 0);
}

/* ---- huge page backing ---- */

static void test_punch_failure_hugetlb_flush(void **state)
{
	struct conv_env *e = *state;
	uint64_t size;

	ENV_RESERVE(e, HUGE_RESERVE);
	size = setup_region(e, true, false);
	struct cvmconv_stats st;
	long free0 = hugepages_free();

	/* a whole huge page goes private; its punch fails */
	fake_kvm_fail_nth(&e->fake, FAKE_CALL_PUNCH, 1, EIO);
	guest_map(e->c, GPA_BASE, SZ_2M, true, CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M);
	expect_private(e, 0, PAGES_PER_2M, 1);
	st = stats_of(e->c);
	assert_int_equal(st.punch_failures, 1);
	assert_int_equal(st.punch_pending_bytes, SZ_2M);
	assert_int_equal(st.double_alloc_bytes, SZ_2M);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size);
	assert_int_equal(hugepages_free(), free0);

	assert_int_equal(cvmconv_flush(e->c), 0);
	st = stats_of(e->c);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size - SZ_2M);
	assert_int_equal(hugepages_free(), free0 + 1);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(st.double_alloc_bytes, 0);
	check_shared_pages(e, PAGES_PER_2M, PAGES_PER_2M, 1); /* huge page 1 intact */
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, GPA_BASE, size), 0);
}

/* Flush fails too: error returned, still pending; the next flush works. */
static void flush_fails_again(struct conv_env *e, bool huge)
{
	uint64_t size = setup_region(e, huge, false);
	uint64_t len = huge ? SZ_2M : SZ_4K;
	struct cvmconv_stats st;

	fake_kvm_fail_nth(&e->fake, FAKE_CALL_PUNCH, 1, EIO);
	guest_map(e->c, GPA_BASE, len, true, 0);
	assert_int_equal(stats_of(e->c).punch_pending_bytes, len);

	fake_kvm_fail_nth(&e->fake, FAKE_CALL_PUNCH, 1, EIO);
	assert_int_equal(cvmconv_flush(e->c), -EIO);
	st = stats_of(e->c);
	assert_int_equal(st.punch_failures, 2);
	assert_int_equal(st.punch_pending_bytes, len);
	assert_int_equal(st.double_alloc_bytes, len);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size);
	check_shared_pages(e, 0, PAGES_OF(len), 1);

	assert_int_equal(cvmconv_flush(e->c), 0);
	st = stats_of(e->c);
	assert_int_equal(st.punch_failures, 2);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(st.double_alloc_bytes, 0);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size - len);
	check_shared_pages(e, 0, PAGES_OF(len), 0);
	check_shared_pages(e, PAGES_OF(len), PAGES_OF(size - len), 1);
}

static void test_flush_fails_again_shmem(void **state)
{
	flush_fails_again(*state, false);
}

static void test_flush_fails_again_hugetlb(void **state)
{
	struct conv_env *e = *state;

	ENV_RESERVE(e, HUGE_RESERVE);
	flush_fails_again(e, true);
}

/* After a failed punch the page goes back to shared (live again): flush
 * must not punch it, its new data survives, nothing is pending. */
static void test_failed_punch_then_live_shmem(void **state)
{
	struct conv_env *e = *state;
	uint64_t size = setup_region(e, false, false);
	struct cvmconv_stats st;
	uint64_t calls;

	fake_kvm_fail_nth(&e->fake, FAKE_CALL_PUNCH, 1, EIO);
	guest_map(e->c, GPA_BASE + 3 * SZ_4K, SZ_4K, true, 0);
	assert_int_equal(stats_of(e->c).punch_pending_bytes, SZ_4K);

	guest_map(e->c, GPA_BASE + 3 * SZ_4K, SZ_4K, false, 0);
	expect_private(e, 3, 1, 0);
	pattern_fill(e->shared_map, 3, 1, 2); /* written after it became live */
	st = stats_of(e->c);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(st.double_alloc_bytes, 0);

	calls = e->fake.calls[FAKE_CALL_PUNCH];
	assert_int_equal(cvmconv_flush(e->c), 0);
	assert_int_equal(e->fake.calls[FAKE_CALL_PUNCH], calls);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size);
	check_shared_pages(e, 3, 1, 2);
	check_shared_pages(e, 0, 3, 1);
	check_shared_pages(e, 4, PAGES_OF(size) - 4, 1);
	st = stats_of(e->c);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(st.double_alloc_bytes, 0);
	assert_int_equal(st.punch_failures, 1);

	/* A failed 10-page run whose middle page goes live again: flush
	 * punches the 9 still-stale pages and not the live one. */
	fake_kvm_fail_nth(&e->fake, FAKE_CALL_PUNCH, 1, EIO);
	guest_map(e->c, GPA_BASE + 10 * SZ_4K, 10 * SZ_4K, true, 0);
	assert_int_equal(stats_of(e->c).punch_pending_bytes, 10 * SZ_4K);
	guest_map(e->c, GPA_BASE + 15 * SZ_4K, SZ_4K, false, 0);
	pattern_fill(e->shared_map, 15, 1, 3);
	st = stats_of(e->c);
	assert_int_equal(st.punch_pending_bytes, 9 * SZ_4K);
	assert_int_equal(st.double_alloc_bytes, 9 * SZ_4K);
	assert_int_equal(cvmconv_flush(e->c), 0);
	st = stats_of(e->c);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(st.double_alloc_bytes, 0);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size - 9 * SZ_4K);
	check_shared_pages(e, 10, 5, 0);
	check_shared_pages(e, 15, 1, 3);
	check_shared_pages(e, 16, 4, 0);
	check_shared_pages(e, 20, PAGES_OF(size) - 20, 1);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, GPA_BASE, size), 0);
}

static void test_failed_punch_then_live_hugetlb(void **state)
{
	struct conv_env *e = *state;
	uint64_t size;

	ENV_RESERVE(e, HUGE_RESERVE);
	size = setup_region(e, true, false);
	struct cvmconv_stats st;
	uint64_t calls;

	fake_kvm_fail_nth(&e->fake, FAKE_CALL_PUNCH, 1, EIO);
	guest_map(e->c, GPA_BASE, SZ_2M, true, CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M);
	assert_int_equal(stats_of(e->c).punch_pending_bytes, SZ_2M);

	/* page 5 of huge page 0 is live again: the huge page is held again */
	guest_map(e->c, GPA_BASE + 5 * SZ_4K, SZ_4K, false, 0);
	pattern_fill(e->shared_map, 5, 1, 2);
	st = stats_of(e->c);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(st.double_alloc_bytes, (PAGES_PER_2M - 1) * SZ_4K);

	calls = e->fake.calls[FAKE_CALL_PUNCH];
	assert_int_equal(cvmconv_flush(e->c), 0);
	assert_int_equal(e->fake.calls[FAKE_CALL_PUNCH], calls);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size);
	check_shared_pages(e, 5, 1, 2);
	/* no 4 KiB punch into the huge page either: stale pages keep data */
	check_shared_pages(e, 0, 5, 1);
	check_shared_pages(e, 6, PAGES_OF(size) - 6, 1);

	/* the last live page goes private again: now the huge page is freed */
	guest_map(e->c, GPA_BASE + 5 * SZ_4K, SZ_4K, true, 0);
	st = stats_of(e->c);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size - SZ_2M);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(st.double_alloc_bytes, 0);
	assert_int_equal(st.punch_failures, 1);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, GPA_BASE, size), 0);
}

/* ---- madvise path ---- */

static void test_madvise_shmem(void **state)
{
	struct conv_env *e = *state;
	uint64_t size = setup_region(e, false, true);
	struct cvmconv_stats st;

	guest_map(e->c, GPA_BASE + 3 * SZ_4K, SZ_4K, true, 0);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size - SZ_4K);
	guest_map(e->c, GPA_BASE + 10 * SZ_4K, 3 * SZ_4K, true, 0);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size - 4 * SZ_4K);
	assert_true(e->fake.calls[FAKE_CALL_DISCARD] >= 2);
	/* the shared side has no fd for the library: it never punches it, and
	 * the private side is not stale on a shared->private conversion */
	assert_int_equal(e->fake.calls[FAKE_CALL_PUNCH], 0);
	check_shared_pages(e, 3, 1, 0);
	check_shared_pages(e, 10, 3, 0);
	check_shared_pages(e, 0, 3, 1);
	check_shared_pages(e, 4, 6, 1);
	check_shared_pages(e, 13, PAGES_OF(size) - 13, 1);

	/* back to shared: the live shared page is not discarded */
	guest_map(e->c, GPA_BASE + 10 * SZ_4K, SZ_4K, false, 0);
	pattern_fill(e->shared_map, 10, 1, 3);
	guest_map(e->c, GPA_BASE + 11 * SZ_4K, SZ_4K, true, 0); /* already private */
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size - 3 * SZ_4K);
	check_shared_pages(e, 10, 1, 3);

	/* a failed discard is pending and flushed like a punch */
	fake_kvm_fail_nth(&e->fake, FAKE_CALL_DISCARD, 1, EIO);
	guest_map(e->c, GPA_BASE + 100 * SZ_4K, 2 * SZ_4K, true, 0);
	st = stats_of(e->c);
	assert_int_equal(st.punch_failures, 1);
	assert_int_equal(st.punch_pending_bytes, 2 * SZ_4K);
	assert_int_equal(st.double_alloc_bytes, 2 * SZ_4K);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size - 3 * SZ_4K);
	assert_int_equal(cvmconv_flush(e->c), 0);
	st = stats_of(e->c);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(st.double_alloc_bytes, 0);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size - 5 * SZ_4K);
	check_shared_pages(e, 100, 2, 0);
	check_shared_pages(e, 102, PAGES_OF(size) - 102, 1);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, GPA_BASE, size), 0);
}

static void test_madvise_hugetlb(void **state)
{
	struct conv_env *e = *state;
	uint64_t size;

	ENV_RESERVE(e, HUGE_RESERVE);
	size = setup_region(e, true, true);
	long free0 = hugepages_free();

	/* one page of huge page 0: nothing can be freed, nothing is discarded
	 * (a 4 KiB MADV_REMOVE would only zero it) */
	guest_map(e->c, GPA_BASE + 3 * SZ_4K, SZ_4K, true, 0);
	assert_int_equal(e->fake.calls[FAKE_CALL_DISCARD], 0);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size);
	check_shared_pages(e, 0, PAGES_OF(size), 1);
	assert_int_equal(stats_of(e->c).double_alloc_bytes, SZ_4K);

	/* the rest of huge page 0 except its last page: still held */
	guest_map(e->c, GPA_BASE, SZ_2M - SZ_4K, true, 0);
	assert_int_equal(e->fake.calls[FAKE_CALL_DISCARD], 0);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size);
	assert_int_equal(stats_of(e->c).double_alloc_bytes, SZ_2M - SZ_4K);

	/* its last page: the whole huge page is discarded, once */
	guest_map(e->c, GPA_BASE + SZ_2M - SZ_4K, SZ_4K, true, 0);
	assert_int_equal(e->fake.calls[FAKE_CALL_DISCARD], 1);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), size - SZ_2M);
	assert_int_equal(hugepages_free(), free0 + 1);
	assert_int_equal(stats_of(e->c).double_alloc_bytes, 0);
	check_shared_pages(e, PAGES_PER_2M, PAGES_PER_2M, 1);
	assert_int_equal(e->fake.calls[FAKE_CALL_PUNCH], 0);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, GPA_BASE, size), 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, conv_env_setup, conv_env_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_punch_failure_shmem_flush),
		T(test_punch_failure_hugetlb_flush),
		T(test_flush_fails_again_shmem),
		T(test_flush_fails_again_hugetlb),
		T(test_failed_punch_then_live_shmem),
		T(test_failed_punch_then_live_hugetlb),
		T(test_madvise_shmem),
		T(test_madvise_hugetlb),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
