/* SPDX-License-Identifier: MIT */
/*
 * The 2 MiB huge page pool: raise /proc/sys/vm/nr_hugepages by what the run
 * needs (root only) and put it back at exit, also on SIGINT/SIGTERM. The
 * lock file is the one the convert demo and the test fixtures take, so runs
 * that count free huge pages do not race.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>

#include "mini-vmm.h"

#define HP_SYSFS "/sys/kernel/mm/hugepages/hugepages-2048kB/"
#define HP_LOCK "/tmp/cvmconv-hugepages.lock"

static int lock_fd = -1;
static char restore_text[32]; /* old nr_hugepages, preformatted for the signal path */
static size_t restore_len;

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

/* Async-signal-safe: open/write/close only. */
void hugepages_restore(void)
{
	if (restore_len) {
		int fd = open(HP_SYSFS "nr_hugepages", O_WRONLY | O_CLOEXEC);

		if (fd >= 0) {
			if (write(fd, restore_text, restore_len) < 0) {
				/* nothing else to do: the pool keeps its size */
			}
			close(fd);
		}
		restore_len = 0;
	}
	if (lock_fd >= 0) {
		close(lock_fd); /* drops the flock */
		lock_fd = -1;
	}
}

bool hugepages_reserve(long need, char *why, size_t len)
{
	long old, have;
	FILE *f;

	if (access(HP_SYSFS "nr_hugepages", F_OK) != 0) {
		snprintf(why, len, "this kernel has no 2 MiB huge pages");
		return false;
	}
	lock_fd = open(HP_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (lock_fd >= 0 && flock(lock_fd, LOCK_EX) != 0) {
		close(lock_fd);
		lock_fd = -1;
	}
	have = read_long(HP_SYSFS "free_hugepages");
	if (have >= need)
		return true;
	old = read_long(HP_SYSFS "nr_hugepages");
	if (geteuid() != 0 || old < 0) {
		snprintf(why, len, "%ld free 2 MiB huge pages, %ld needed, and not root", have,
			 need);
		hugepages_restore();
		return false;
	}
	restore_len = (size_t)snprintf(restore_text, sizeof(restore_text), "%ld\n", old);
	f = fopen(HP_SYSFS "nr_hugepages", "we");
	if (f) {
		fprintf(f, "%ld\n", old + (need - have));
		fclose(f);
	}
	if (read_long(HP_SYSFS "free_hugepages") < need) {
		hugepages_restore();
		snprintf(why, len, "the kernel could not provide %ld huge pages", need);
		return false;
	}
	printf("huge pages     : raised nr_hugepages %ld -> %ld (restored at exit)\n", old,
	       old + (need - have));
	return true;
}
