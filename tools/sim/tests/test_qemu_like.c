/* SPDX-License-Identifier: MIT */
/*
 * The QEMU-like handler over real memfds: attributes first for exactly the
 * range, then the old side discarded for exactly the range — except the
 * shared side of a huge-page RAM block on to-private, which stays allocated
 * (KVM-FACTS.md, "What other VMMs do"). Attributes go to the strict
 * recorder of tools/attr_recorder.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "attr_recorder.h"
#include "hugepool.h"
#include "qemu_like.h"

#define SZ_4K 4096ULL
#define SZ_2M (2ULL << 20)
#define GPA 0x100000000ULL
#define SIZE (4 * SZ_2M)

#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif

struct env {
	int shared_fd, private_fd;
	uint8_t *shared, *private_;
	struct attr_recorder *rec;
	struct qemu_like *q;
};

static char skip_buf[256];
static bool huge_ok;

static int group_setup(void **state)
{
	(void)state;
	huge_ok = hugepool_reserve(SZ_2M, 4, skip_buf, sizeof(skip_buf)) == 0;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	hugepool_restore();
	return 0;
}

static uint64_t blocks(int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

static void env_init(struct env *e, bool huge)
{
	struct attr_recorder_range range = { GPA, SIZE };
	struct qemu_like_region r;
	unsigned flags = MFD_CLOEXEC | (huge ? MFD_HUGETLB | (21u << MFD_HUGE_SHIFT) : 0);

	memset(e, 0, sizeof(*e));
	e->shared_fd = memfd_create("ql-shared", flags);
	e->private_fd = memfd_create("ql-private", MFD_CLOEXEC);
	assert_true(e->shared_fd >= 0 && e->private_fd >= 0);
	assert_int_equal(ftruncate(e->shared_fd, SIZE), 0);
	assert_int_equal(ftruncate(e->private_fd, SIZE), 0);
	e->shared = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			 e->shared_fd, 0);
	e->private_ = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, e->private_fd, 0);
	assert_true(e->shared != MAP_FAILED && e->private_ != MAP_FAILED);
	assert_int_equal(attr_recorder_create(&range, 1, 1 << 20, &e->rec), 0);
	assert_int_equal(qemu_like_create(attr_recorder_set, e->rec, &e->q), 0);
	r = (struct qemu_like_region){ .gpa = GPA,
				       .size = SIZE,
				       .private_fd = e->private_fd,
				       .shared_fd = e->shared_fd,
				       .start_private = true };
	assert_int_equal(qemu_like_add_region(e->q, &r), 0);
	assert_int_equal(qemu_like_shared_is_huge(e->q, 0), huge);
}

static void env_fini(struct env *e)
{
	qemu_like_destroy(e->q);
	attr_recorder_destroy(e->rec);
	munmap(e->shared, SIZE);
	munmap(e->private_, SIZE);
	close(e->shared_fd);
	close(e->private_fd);
}

static struct qemu_like_counts counts(const struct env *e)
{
	struct qemu_like_counts c;

	qemu_like_get_counts(e->q, &c);
	return c;
}

static void test_shmem_round_trip(void **state)
{
	struct env e;
	struct qemu_like_memory m;

	(void)state;
	env_init(&e, false);
	assert_int_equal(counts(&e).attr_calls, 1); /* the region starts private */
	assert_int_equal(attr_recorder_is_private(e.rec, GPA), 1);
	/* the guest uses two private pages, then shares them (4K hint) */
	e.private_[0] = e.private_[SZ_4K] = 1;
	assert_int_equal(blocks(e.private_fd), 2 * SZ_4K);
	assert_int_equal(qemu_like_map_gpa_range(e.q, GPA, 2, 0), 0);
	assert_int_equal(attr_recorder_is_private(e.rec, GPA + SZ_4K), 0);
	assert_int_equal(attr_recorder_is_private(e.rec, GPA + 2 * SZ_4K), 1);
	assert_int_equal(blocks(e.private_fd), 0); /* guest_memfd punched */
	e.shared[0] = e.shared[SZ_4K] = 1;
	assert_int_equal(qemu_like_measure(e.q, 2 * SZ_4K, &m), 0);
	assert_int_equal(m.shared_alloc_bytes, 2 * SZ_4K);
	assert_int_equal(m.double_alloc_bytes, 0);
	/* back to private with the encrypted bit and the 4K hint: shared discarded */
	assert_int_equal(qemu_like_map_gpa_range(e.q, GPA, 2, QEMU_LIKE_MAP_GPA_RANGE_ENCRYPTED),
			 0);
	assert_int_equal(blocks(e.shared_fd), 0);
	assert_int_equal(attr_recorder_is_private(e.rec, GPA), 1);
	/* no tracking: converting again costs an attribute update and a discard */
	assert_int_equal(qemu_like_convert(e.q, GPA, SZ_4K, true), 0);
	assert_int_equal(counts(&e).attr_calls, 4);
	assert_int_equal(counts(&e).discards, 3);
	assert_int_equal(counts(&e).discards_skipped, 0);
	assert_int_equal(counts(&e).errors, 0);
	env_fini(&e);
}

static void test_refusals_change_nothing(void **state)
{
	struct env e;

	(void)state;
	env_init(&e, false);
	assert_int_equal(qemu_like_convert(e.q, GPA + 1, SZ_4K, false), -EINVAL);
	assert_int_equal(qemu_like_convert(e.q, GPA, 100, false), -EINVAL);
	assert_int_equal(qemu_like_convert(e.q, GPA, 0, false), -EINVAL);
	assert_int_equal(qemu_like_convert(e.q, GPA + SIZE - SZ_4K, 2 * SZ_4K, false), -EINVAL);
	assert_int_equal(qemu_like_convert(e.q, 0, SZ_4K, false), -EINVAL);
	assert_int_equal(qemu_like_map_gpa_range(e.q, GPA, UINT64_MAX, 0), -EINVAL);
	assert_int_equal(counts(&e).attr_calls, 1);
	assert_int_equal(counts(&e).discards, 0);
	assert_int_equal(counts(&e).errors, 6);
	assert_int_equal(attr_recorder_is_private(e.rec, GPA), 1);
	env_fini(&e);
}

/* A 4 KiB page shared and made private again inside a 2 MiB page: QEMU keeps
 * the shared huge page, so 511 + 1 pages are allocated twice. */
static void test_hugetlb_keeps_shared_huge_page(void **state)
{
	struct env e;
	struct qemu_like_memory m;
	struct qemu_like_counts c;

	(void)state;
	if (!huge_ok) {
		fprintf(stderr, "SKIP: %s: %s\n", __func__, skip_buf);
		skip();
	}
	env_init(&e, true);
	assert_int_equal(qemu_like_convert(e.q, GPA + SZ_4K, SZ_4K, false), 0);
	e.shared[SZ_4K] = 1; /* the guest writes its shared page */
	assert_int_equal(blocks(e.shared_fd), SZ_2M);
	assert_int_equal(qemu_like_measure(e.q, SZ_4K, &m), 0);
	assert_int_equal(m.double_alloc_bytes, SZ_2M - SZ_4K);
	assert_int_equal(qemu_like_convert(e.q, GPA + SZ_4K, SZ_4K, true), 0);
	assert_int_equal(blocks(e.shared_fd), SZ_2M); /* not discarded */
	assert_int_equal(qemu_like_measure(e.q, 0, &m), 0);
	assert_int_equal(m.double_alloc_bytes, SZ_2M);
	/* even a whole 2 MiB page converted back stays */
	assert_int_equal(qemu_like_convert(e.q, GPA + SZ_2M, SZ_2M, false), 0);
	e.shared[SZ_2M] = 1;
	assert_int_equal(qemu_like_convert(e.q, GPA + SZ_2M, SZ_2M, true), 0);
	assert_int_equal(blocks(e.shared_fd), 2 * SZ_2M);
	c = counts(&e);
	assert_int_equal(c.discards, 2); /* guest_memfd, on each to-shared */
	assert_int_equal(c.discards_skipped, 2);
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shmem_round_trip),
		cmocka_unit_test(test_refusals_change_nothing),
		cmocka_unit_test(test_hugetlb_keeps_shared_huge_page),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
