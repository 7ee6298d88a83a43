/* SPDX-License-Identifier: MIT */
/* Real-kernel fixtures: huge page reservation, kernel accounting and the
 * page patterns tests use to prove that live data survived a conversion. */
#include "fixture.h"
#include "private_backing.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HUGEPAGES_LOCK "/tmp/cvmconv-hugepages.lock"
#define NR_HUGEPAGES "/proc/sys/vm/nr_hugepages"

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

static int read_ulong(const char *path, unsigned long *out)
{
	FILE *fp = fopen(path, "re");
	int ok;

	if (!fp)
		return -errno;
	ok = fscanf(fp, "%lu", out) == 1;
	fclose(fp);
	return ok ? 0 : -EIO;
}

static int write_ulong(const char *path, unsigned long val)
{
	char buf[32];
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	int len, err = 0;

	if (fd < 0)
		return -errno;
	len = snprintf(buf, sizeof(buf), "%lu\n", val);
	if (write(fd, buf, (size_t)len) != len)
		err = errno ? -errno : -EIO;
	close(fd);
	return err;
}

/* Reservation state: the lock is taken by the outermost reserve and held
 * until the matching release; nested reserves only raise the pool. */
static int lock_fd = -1;
static unsigned depth;
static bool raised;
static unsigned long saved_nr;

/* Free pages not promised to existing mappings (HugePages_Rsvd). */
static long hugepages_available(void)
{
	long free_ = meminfo_value("HugePages_Free");
	long rsvd = meminfo_value("HugePages_Rsvd");

	if (free_ < 0 || rsvd < 0)
		return -1;
	return free_ - rsvd;
}

static void unlock_pool(void)
{
	if (lock_fd >= 0) {
		flock(lock_fd, LOCK_UN);
		close(lock_fd);
		lock_fd = -1;
	}
}

int hugepages_reserve(unsigned long n, const char **why)
{
	static const char *dummy;
	unsigned long cur, want;
	long avail, pagesize_kb;
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
	if (depth == 0) {
		/* flock needs no write access: another user's lock file will do */
		lock_fd = open(HUGEPAGES_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
		if (lock_fd >= 0)
			(void)fchmod(lock_fd, 0666);
		else if (errno == EACCES)
			lock_fd = open(HUGEPAGES_LOCK, O_RDONLY | O_CLOEXEC);
		if (lock_fd < 0) {
			err = -errno;
			*why = "cannot open " HUGEPAGES_LOCK;
			return err;
		}
		while (flock(lock_fd, LOCK_EX) < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			*why = "cannot flock " HUGEPAGES_LOCK;
			unlock_pool();
			return err;
		}
	}
	err = read_ulong(NR_HUGEPAGES, &cur);
	if (err) {
		*why = "cannot read " NR_HUGEPAGES;
		goto fail;
	}
	avail = hugepages_available();
	if (avail < 0) {
		err = -EIO;
		*why = "cannot parse HugePages_Free/HugePages_Rsvd in /proc/meminfo";
		goto fail;
	}
	if ((unsigned long)avail >= n)
		goto done;
	if (geteuid() != 0) {
		err = -EPERM;
		*why = "not root: cannot raise " NR_HUGEPAGES;
		goto fail;
	}
	want = cur + (n - (unsigned long)avail);
	if (!raised) {
		saved_nr = cur;
		raised = true;
	}
	err = write_ulong(NR_HUGEPAGES, want);
	avail = hugepages_available();
	if (avail < 0 || (unsigned long)avail < n) {
		/* the kernel may have given part of the pages: give them back */
		if (depth == 0) {
			write_ulong(NR_HUGEPAGES, saved_nr);
			raised = false;
		}
		if (!err)
			err = -ENOMEM;
		*why = "the kernel could not allocate enough 2 MiB huge pages";
		goto fail;
	}
done:
	depth++;
	return 0;
fail:
	if (depth == 0)
		unlock_pool();
	return err;
}

void hugepages_release(void)
{
	if (depth == 0)
		return;
	if (--depth > 0)
		return;
	if (raised) {
		/* pages still in use become surplus and are freed on unmap */
		write_ulong(NR_HUGEPAGES, saved_nr);
		raised = false;
	}
	unlock_pool();
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
