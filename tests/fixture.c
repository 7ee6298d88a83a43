/* SPDX-License-Identifier: MIT */
/* Real-kernel fixtures: huge page reservation, kernel accounting and the
 * page patterns tests use to prove that live data survived a conversion. */
#include "fixture.h"
#include "hugepool.h"
#include "private_backing.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void fixture_print_skip(const char *test, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "SKIP: %s: ", test);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The value of "<key>:" in /proc/meminfo (first number on the line), or -1. */
static long meminfo_value(const char *key)
{
	char name[64];

	snprintf(name, sizeof(name), "%s:", key);
	return meminfo_count(name);
}

long hugepages_free(void)
{
	return meminfo_value("HugePages_Free");
}

/* Reservation state: tools/hugepool.h takes the lock with the outermost
 * reserve and holds it until the matching release; nested reserves only
 * raise the pool. */
static unsigned depth;
static char why_buf[256];

int hugepages_reserve(unsigned long n, const char **why)
{
	static const char *dummy;
	long pagesize_kb;
	int err;

	if (!why)
		why = &dummy;
	*why = NULL;
	pagesize_kb = meminfo_value("Hugepagesize");
	if (pagesize_kb < 0) {
		*why = "kernel has no hugetlb support (no Hugepagesize in /proc/meminfo)";
		return -EOPNOTSUPP;
	}
	if (pagesize_kb != 2048) {
		*why = "default huge page size is not 2 MiB";
		return -EOPNOTSUPP;
	}
	err = hugepool_reserve(SZ_2M, n, why_buf, sizeof(why_buf));
	if (err) {
		*why = why_buf;
		return err;
	}
	depth++;
	return 0;
}

void hugepages_release(void)
{
	if (depth == 0)
		return;
	if (--depth > 0)
		return;
	/* pages still in use become surplus and are freed on unmap */
	hugepool_restore();
}

int test_private_fd(uint64_t size)
{
	static bool told;

	if (!told) {
		fprintf(stderr, "private side: %s\n", private_backing_name());
		told = true;
	}
	return private_backing_fd(size);
}

static inline uint64_t pattern_tag(uint64_t page, uint32_t seed)
{
	return (uint64_t)seed << 32 | (uint32_t)page;
}

void pattern_fill(void *map, uint64_t first_page, uint64_t npages, uint32_t seed)
{
	for (uint64_t p = first_page; p < first_page + npages; p++) {
		uint64_t *w = (uint64_t *)((char *)map + p * SZ_4K);
		uint64_t tag = pattern_tag(p, seed);

		for (size_t i = 0; i < SZ_4K / sizeof(*w); i++)
			w[i] = tag;
	}
}

bool pattern_check(const void *map, uint64_t page, uint32_t seed)
{
	const uint64_t *w = (const uint64_t *)((const char *)map + page * SZ_4K);
	uint64_t tag = pattern_tag(page, seed);

	for (size_t i = 0; i < SZ_4K / sizeof(*w); i++)
		if (w[i] != tag)
			return false;
	return true;
}

bool page_is_zero(const void *map, uint64_t page)
{
	const uint64_t *w = (const uint64_t *)((const char *)map + page * SZ_4K);

	for (size_t i = 0; i < SZ_4K / sizeof(*w); i++)
		if (w[i])
			return false;
	return true;
}

void *map_fd(int fd, uint64_t size)
{
	void *p;

	if (fd < 0 || size == 0 || size > SIZE_MAX)
		return NULL;
	p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	return p == MAP_FAILED ? NULL : p;
}
