/* SPDX-License-Identifier: MIT */
/* Small header-only helpers shared by the real-kernel conversion suites
 * (test_selftest_pattern, test_hugepage_tdx, test_double_alloc,
 * test_punch_failure, test_backing). Include after <cmocka.h>. */
#ifndef CVMCONV_TEST_CONV_UTIL_H
#define CVMCONV_TEST_CONV_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/memfd.h>

#include "cvmconv.h"
#include "fake_kvm.h"
#include "fixture.h"

#define PAGES_OF(bytes) ((bytes) / SZ_4K)
#define PAGES_PER_2M 512u

/* Everything one test owns; env_free() releases it in teardown, also after
 * a failed assertion or a skip (both leave the test with longjmp). */
struct conv_env {
	struct fake_kvm fake;
	bool fake_ready;
	struct cvmconv *c;
	int shared_fd, private_fd;
	void *shared_map, *private_map;
	uint64_t shared_size, private_size;
	bool reserved; /* hugepages_reserve() succeeded: release in teardown */
	void *extra;   /* suite-specific heap state, free()d */
};

static inline struct conv_env *env_new(void)
{
	struct conv_env *e = calloc(1, sizeof(*e));

	if (e) {
		e->shared_fd = -1;
		e->private_fd = -1;
	}
	return e;
}

static inline void env_free(struct conv_env *e)
{
	if (!e)
		return;
	cvmconv_destroy(e->c);
	if (e->fake_ready)
		fake_kvm_fini(&e->fake);
	if (e->shared_map)
		munmap(e->shared_map, e->shared_size);
	if (e->private_map)
		munmap(e->private_map, e->private_size);
	if (e->shared_fd >= 0)
		close(e->shared_fd);
	if (e->private_fd >= 0)
		close(e->private_fd);
	/* only after every huge page of ours is gone */
	if (e->reserved)
		hugepages_release();
	free(e->extra);
	free(e);
}

static inline int conv_env_setup(void **state)
{
	*state = env_new();
	return *state ? 0 : -1;
}

static inline int conv_env_teardown(void **state)
{
	env_free(*state);
	*state = NULL;
	return 0;
}

/* A context over a strict fake KVM (SW_PROTECTED VM type). */
static inline void env_ctx(struct conv_env *e, enum cvmconv_unaligned policy)
{
	struct cvmconv_config cfg;

	fake_kvm_init(&e->fake, FAKE_VM_SW_PROTECTED);
	e->fake_ready = true;
	cfg = fake_kvm_config(&e->fake, policy);
	assert_int_equal(cvmconv_create(&cfg, &e->c), 0);
	assert_non_null(e->c);
}

/* Reserve huge pages or skip the test visibly. A macro so that the skip
 * names the test, not this helper. */
#define ENV_RESERVE(e, n)                                                                    \
	do {                                                                                 \
		const char *why_ = NULL;                                                     \
		int rr_ = hugepages_reserve((n), &why_);                                     \
		if (rr_ != 0)                                                                \
			FIXTURE_SKIP("cannot reserve %lu 2 MiB huge pages: %s (%s)",         \
				     (unsigned long)(n), why_ ? why_ : "?", strerror(-rr_)); \
		(e)->reserved = true;                                                        \
	} while (0)

static inline int memfd_shmem(uint64_t size)
{
	int fd = memfd_create("cvmconv-test-shmem", MFD_CLOEXEC);

	if (fd >= 0 && ftruncate(fd, (off_t)size) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static inline int memfd_huge2m(uint64_t size)
{
	int fd = memfd_create("cvmconv-test-huge", MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB);

	if (fd >= 0 && ftruncate(fd, (off_t)size) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Create the shared backing (shmem or 2 MiB hugetlb), map it; skip visibly
 * when the hugetlb memfd cannot be created. */
#define ENV_SHARED(e, size, huge)                                                  \
	do {                                                                       \
		(e)->shared_size = (size);                                         \
		(e)->shared_fd = (huge) ? memfd_huge2m(size) : memfd_shmem(size);  \
		if ((e)->shared_fd < 0 && (huge))                                  \
			FIXTURE_SKIP("memfd_create(MFD_HUGETLB|MFD_HUGE_2MB): %s", \
				     strerror(errno));                             \
		assert_true((e)->shared_fd >= 0);                                  \
		(e)->shared_map = map_fd((e)->shared_fd, (size));                  \
		assert_non_null((e)->shared_map);                                  \
	} while (0)

static inline void env_private(struct conv_env *e, uint64_t size)
{
	e->private_size = size;
	e->private_fd = test_private_fd(size); /* guest_memfd where the host has it */
	assert_true(e->private_fd >= 0);
	e->private_map = map_fd(e->private_fd, size);
	assert_non_null(e->private_map);
}

static inline struct cvmconv_region region_desc(uint64_t gpa, uint64_t size, int private_fd,
						int shared_fd, void *shared_hva)
{
	struct cvmconv_region r;

	memset(&r, 0, sizeof(r));
	r.sz = sizeof(r);
	r.gpa = gpa;
	r.size = size;
	r.private_fd = private_fd;
	r.private_offset = 0;
	r.shared_fd = shared_fd;
	r.shared_offset = 0;
	r.shared_hva = shared_hva;
	r.flags = 0;
	r.unaligned = -1;
	return r;
}

static inline struct cvmconv_stats stats_of(struct cvmconv *c)
{
	struct cvmconv_stats st;

	memset(&st, 0, sizeof(st));
	st.sz = sizeof(st);
	assert_int_equal(cvmconv_get_stats(c, &st), 0);
	return st;
}

/* One guest KVM_HC_MAP_GPA_RANGE that must be accepted. */
static inline void guest_map(struct cvmconv *c, uint64_t gpa, uint64_t size, bool to_private,
			     uint64_t hint)
{
	uint64_t ret = 0xdeadbeefULL;
	uint64_t attrs = (to_private ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0) | hint;

	assert_int_equal(cvmconv_map_gpa_range(c, gpa, size / SZ_4K, attrs, &ret), 0);
	assert_int_equal(ret, 0);
}

/* The whole file through pread(): unlike a read fault on a MAP_SHARED
 * mapping (which allocates a page on shmem and a whole huge page on
 * hugetlbfs), read() of a hole returns zeros without allocating, so the
 * check does not disturb the kernel accounting it checks. */
static inline void read_into(int fd, uint8_t *buf, uint64_t size)
{
	uint64_t done = 0;

	if (fd_is_guest_memfd(fd)) {
		/* guest_memfd has no read(): copy the pages mincore() shows
		 * resident through a mapping (no fault allocates), zeros else */
		uint64_t pages = (size + SZ_4K - 1) / SZ_4K;
		unsigned char *vec = malloc(pages);
		uint8_t *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);

		if (!vec || map == MAP_FAILED || mincore(map, size, vec) < 0)
			fail_msg("reading guest_memfd %d: %s", fd, strerror(errno));
		for (uint64_t p = 0; p < pages; p++) {
			uint64_t n = size - p * SZ_4K < SZ_4K ? size - p * SZ_4K : SZ_4K;

			if (vec[p] & 1)
				memcpy(buf + p * SZ_4K, map + p * SZ_4K, n);
			else
				memset(buf + p * SZ_4K, 0, n);
		}
		munmap(map, size);
		free(vec);
		return;
	}
	while (done < size) {
		ssize_t n = pread(fd, buf + done, size - done, (off_t)done);

		if (n <= 0)
			fail_msg("pread at %llu: %s", (unsigned long long)done,
				 n < 0 ? strerror(errno) : "EOF");
		done += (uint64_t)n;
	}
}

/*
 * Is the huge page at byte offset @off of hugetlb fd @fd allocated?
 * hugetlbfs on 6.18 has no SEEK_DATA/SEEK_HOLE support (it uses the default
 * llseek: SEEK_DATA returns the offset, SEEK_HOLE returns i_size, checked on
 * this machine), and mincore() on a hugetlb mapping reports this process's
 * page table, not the page cache. So probe exactly: fallocate(KEEP_SIZE)
 * the huge page; st_blocks rises iff it was a hole, and then punching it
 * again restores the hole. Allocated pages are left untouched (fallocate
 * does not change their data). Needs one free huge page of margin.
 */
static inline bool hpage_allocated(int fd, uint64_t off, uint64_t hsize)
{
	uint64_t before = fd_allocated_bytes(fd), after;

	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)hsize) != 0)
		fail_msg("probe fallocate at %llu: %s", (unsigned long long)off, strerror(errno));
	after = fd_allocated_bytes(fd);
	if (after == before)
		return true;
	assert_int_equal(after, before + hsize);
	assert_int_equal(
		fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)hsize),
		0);
	assert_int_equal(fd_allocated_bytes(fd), before);
	return false;
}

#endif
