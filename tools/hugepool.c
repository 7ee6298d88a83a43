/* SPDX-License-Identifier: MIT */
/* Raising and restoring the huge page pool (see hugepool.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hugepool.h"
#include "kernel_accounting.h"

static char knob_path[128];    /* nr_hugepages file written */
static char restore_path[128]; /* ... and the one restore_text belongs to */
static char restore_text[32];  /* old value, preformatted for the signal path */
static size_t restore_len;
static int lock_fd = -1;
static long raised_from = -1, raised_to = -1;

static long read_long(const char *path)
{
	FILE *f = fopen(path, "re");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static int write_long(const char *path, long v)
{
	FILE *f = fopen(path, "we");
	int err = 0;

	if (!f)
		return -errno;
	if (fprintf(f, "%ld\n", v) < 0)
		err = -EIO;
	if (fclose(f) != 0 && !err)
		err = -errno;
	return err;
}

/* Pages of the pool in @dir that nobody has claimed yet. */
static long available(const char *dir)
{
	char path[160];
	long free_pages, resv;

	snprintf(path, sizeof(path), "%s/free_hugepages", dir);
	free_pages = read_long(path);
	snprintf(path, sizeof(path), "%s/resv_hugepages", dir);
	resv = read_long(path);
	if (free_pages < 0 || resv < 0)
		return -1;
	return free_pages - resv;
}

static void take_lock(void)
{
	if (lock_fd >= 0)
		return; /* held since an earlier reserve */
	/* flock needs no write access: another user's lock file will do */
	lock_fd = open(HUGEPOOL_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (lock_fd >= 0)
		(void)fchmod(lock_fd, 0666);
	else if (errno == EACCES)
		lock_fd = open(HUGEPOOL_LOCK, O_RDONLY | O_CLOEXEC); /* flock needs no write */
	if (lock_fd < 0)
		return; /* no lock: still correct for this process, only racier */
	while (flock(lock_fd, LOCK_EX) != 0) {
		if (errno != EINTR) {
			close(lock_fd);
			lock_fd = -1;
			return;
		}
	}
}

int hugepool_reserve(uint64_t page_size, uint64_t n, char *why, size_t why_len)
{
	char dir[96];
	long have, old;
	bool outer = lock_fd < 0; /* a failure undoes only what this call began */
	int err;

	snprintf(dir, sizeof(dir), "/sys/kernel/mm/hugepages/hugepages-%" PRIu64 "kB",
		 page_size >> 10);
	if (access(dir, F_OK) != 0) {
		snprintf(why, why_len, "this kernel has no %" PRIu64 " KiB huge pages (%s missing)",
			 page_size >> 10, dir);
		return -ENODEV;
	}
	if (n > (uint64_t)(LONG_MAX / 2)) {
		snprintf(why, why_len, "%" PRIu64 " huge pages is more than the kernel can count",
			 n);
		return -E2BIG;
	}
	take_lock();
	have = available(dir);
	if (have < 0) {
		snprintf(why, why_len, "cannot read %s/free_hugepages and resv_hugepages", dir);
		if (outer)
			hugepool_restore();
		return -EIO;
	}
	if ((uint64_t)have >= n)
		return 0;
	/* Never take more than half of the memory still available: a replay
	 * of a large guest must fail with a message, not push the machine
	 * into the OOM killer (seen with --touch on a 16 GiB guest). */
	{
		long kb = meminfo_count("MemAvailable:");

		if (kb > 0 && (n - (uint64_t)have) * (page_size >> 10) > (uint64_t)kb / 2) {
			snprintf(why, why_len,
				 "%" PRIu64 " more huge pages of %" PRIu64
				 " KiB is more than half of MemAvailable (%ld KiB)",
				 n - (uint64_t)have, page_size >> 10, kb);
			if (outer)
				hugepool_restore();
			return -ENOMEM;
		}
	}
	/* Every size's pool through its sysfs knob: for the default size that
	 * is the counter /proc/sys/vm/nr_hugepages also sets (both end in
	 * __nr_hugepages_store_common() for the hstate, without the mempolicy,
	 * mm/hugetlb.c), so the default size needs no probe here. */
	snprintf(knob_path, sizeof(knob_path), "%s/nr_hugepages", dir);
	old = read_long(knob_path);
	if (geteuid() != 0 || old < 0) {
		snprintf(why, why_len,
			 "%ld free %" PRIu64 " KiB huge pages, %" PRIu64 " needed, and %s", have,
			 page_size >> 10, n,
			 geteuid() != 0 ? "not root to raise nr_hugepages"
					: "cannot read nr_hugepages");
		if (outer)
			hugepool_restore();
		return -EPERM;
	}
	if (restore_len && strcmp(knob_path, restore_path)) {
		snprintf(why, why_len, "a pool of another page size is raised already");
		return -EBUSY;
	}
	if (!restore_len) {
		restore_len = (size_t)snprintf(restore_text, sizeof(restore_text), "%ld\n", old);
		snprintf(restore_path, sizeof(restore_path), "%s", knob_path);
		raised_from = old;
	}
	err = write_long(knob_path, old + (long)(n - (uint64_t)have));
	have = available(dir);
	if (err || have < 0 || (uint64_t)have < n) {
		snprintf(why, why_len,
			 "raised %s from %ld, but only %ld huge pages are free of the %" PRIu64
			 " needed (memory short or fragmented?)",
			 knob_path, old, have < 0 ? 0 : have, n);
		if (outer)
			hugepool_restore();
		return err ? err : -ENOMEM;
	}
	raised_to = read_long(knob_path);
	return 0;
}

void hugepool_raised(long *before, long *after)
{
	if (before)
		*before = raised_from;
	if (after)
		*after = raised_to;
}

void hugepool_restore(void)
{
	if (restore_len) {
		int fd = open(restore_path, O_WRONLY | O_CLOEXEC);

		if (fd >= 0) {
			if (write(fd, restore_text, restore_len) < 0) {
				/* nothing more can be done here; the pool keeps its size */
			}
			close(fd);
		}
		restore_len = 0;
	}
	if (lock_fd >= 0) {
		close(lock_fd); /* drops the flock */
		lock_fd = -1;
	}
	raised_from = raised_to = -1;
}

bool hugepool_held(void)
{
	return lock_fd >= 0;
}

long hugepool_free(uint64_t page_size)
{
	char path[128];

	snprintf(path, sizeof(path),
		 "/sys/kernel/mm/hugepages/hugepages-%" PRIu64 "kB/free_hugepages",
		 page_size >> 10);
	return read_long(path);
}

static void restore_and_raise(int sig)
{
	hugepool_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

void hugepool_restore_on_signals(void)
{
	signal(SIGINT, restore_and_raise);
	signal(SIGTERM, restore_and_raise);
	signal(SIGHUP, restore_and_raise);
}
