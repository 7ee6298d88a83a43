/* SPDX-License-Identifier: MIT */
/* The real-kernel fixtures other suites measure with: huge page reservation
 * must give free pages and restore the pool; st_blocks must follow the
 * kernel's allocation. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"

static long nr_hugepages(void)
{
	long v = -1;
	FILE *fp = fopen("/proc/sys/vm/nr_hugepages", "re");

	if (!fp)
		return -1;
	if (fscanf(fp, "%ld", &v) != 1)
		v = -1;
	fclose(fp);
	return v;
}

static void test_hugepages_reserve_release(void **state)
{
	const char *why = NULL;
	long before;
	int err;
	(void)state;

	/* an empty reserve takes the pool's lock: nobody else (another test
	 * or tool, of this build or another) changes nr_hugepages while it is
	 * read and raised here */
	err = hugepages_reserve(0, &why);
	if (err)
		FIXTURE_SKIP("no huge page pool: %s (%s)", why, strerror(-err));
	before = nr_hugepages();
	err = hugepages_reserve(4, &why);
	if (err) {
		hugepages_release();
		FIXTURE_SKIP("no huge pages: %s (%s)", why, strerror(-err));
	}
	assert_true(hugepages_free() >= 4);
	/* nested: more pages, one restore at the outermost release */
	err = hugepages_reserve(6, &why);
	assert_int_equal(err, 0);
	assert_true(hugepages_free() >= 6);
	hugepages_release();
	assert_true(hugepages_free() >= 4);
	hugepages_release();
	hugepages_release();
	assert_int_equal(nr_hugepages(), before);
}

static void test_hugepage_memfd_blocks(void **state)
{
	const char *why = NULL;
	int err, fd;
	long free0;
	char *map;
	(void)state;

	err = hugepages_reserve(2, &why);
	if (err)
		FIXTURE_SKIP("no huge pages: %s (%s)", why, strerror(-err));
	fd = memfd_create("fixture-huge", MFD_CLOEXEC | MFD_HUGETLB);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)(2 * SZ_2M)), 0);
	map = map_fd(fd, 2 * SZ_2M);
	assert_non_null(map);
	free0 = hugepages_free();
	pattern_fill(map, 0, 1, 3);
	assert_int_equal(hugepages_free(), free0 - 1);
	assert_int_equal(fd_allocated_bytes(fd), SZ_2M);
	assert_true(pattern_check(map, 0, 3));
	assert_true(page_is_zero(map, 1));
	munmap(map, 2 * SZ_2M);
	close(fd);
	hugepages_release();
}

static void test_blocks_and_patterns(void **state)
{
	int fd = memfd_create("fixture", MFD_CLOEXEC);
	char *map;
	(void)state;

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)(8 * SZ_4K)), 0);
	assert_int_equal(fd_allocated_bytes(fd), 0);
	assert_int_equal(fd_allocated_bytes(-1), UINT64_MAX);
	assert_null(map_fd(-1, SZ_4K));
	assert_null(map_fd(fd, 0));
	map = map_fd(fd, 8 * SZ_4K);
	assert_non_null(map);
	pattern_fill(map, 2, 3, 0xabcd);
	assert_int_equal(fd_allocated_bytes(fd), 3 * SZ_4K);
	for (uint64_t p = 2; p < 5; p++) {
		assert_true(pattern_check(map, p, 0xabcd));
		assert_false(pattern_check(map, p, 0xabce));
		assert_false(page_is_zero(map, p));
	}
	assert_int_equal(*(uint64_t *)(map + 3 * SZ_4K + 8), 0xabcd00000003ULL);
	assert_true(page_is_zero(map, 5));
	assert_false(pattern_check(map, 5, 0xabcd));
	munmap(map, 8 * SZ_4K);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hugepages_reserve_release),
		cmocka_unit_test(test_hugepage_memfd_blocks),
		cmocka_unit_test(test_blocks_and_patterns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
