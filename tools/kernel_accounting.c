/* SPDX-License-Identifier: MIT */
/* Reading what the kernel holds (see kernel_accounting.h). */
#include "kernel_accounting.h"

#include <fcntl.h>
#include <string.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* New page cache folios reach the LRU lists (and their counters) through
 * per-CPU batches (mm/swap.c): a few guest_memfd pages can sit there unseen.
 * madvise(MADV_COLD) drains the batch of the CPU it runs on (mm/madvise.c,
 * madvise_cold calls lru_add_drain), so it runs once on every CPU. */
static void drain_lru_batches(void)
{
	static char page[4096] __attribute__((aligned(4096)));
	cpu_set_t old, one;

	page[0] = 1; /* an anonymous page of ours to advise */
	if (sched_getaffinity(0, sizeof(old), &old) < 0)
		return;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &old))
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		if (sched_setaffinity(0, sizeof(one), &one) == 0)
			(void)madvise(page, sizeof(page), MADV_COLD);
	}
	(void)sched_setaffinity(0, sizeof(old), &old);
}

uint64_t meminfo_unevictable_bytes(void)
{
	long kb;
	int fd;

	drain_lru_batches();
	/* fold the per-CPU vmstat deltas (mm/vmstat.c, vmstat_refresh) */
	fd = open("/proc/sys/vm/stat_refresh", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "1", 1) < 0) {
			/* not root: the figure may lag by the per-CPU batches */
		}
		close(fd);
	}
	kb = meminfo_count("Unevictable:");
	return kb > 0 ? (uint64_t)kb * 1024 : 0;
}

long meminfo_count(const char *name)
{
	char line[128];
	size_t n = strlen(name);
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, name, n)) {
			v = strtol(line + n, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

bool fd_is_guest_memfd(int fd)
{
	char path[64], link[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0)
		return false;
	link[n] = '\0';
	return !strcmp(link, "anon_inode:[kvm-gmem]");
}

/* guest_memfd pages never show in st_blocks (virt/kvm/guest_memfd.c keeps no
 * block count); mincore() on a mapping counts them exactly (measured on the
 * host's 6.18, shared/docs/KVM-FACTS.md). UINT64_MAX when it cannot be mapped
 * (Linux 6.12: no GUEST_MEMFD_FLAG_MMAP). */
static uint64_t gmem_resident_bytes(int fd, uint64_t size)
{
	/* no heap: callers count allocations (tests/fault_injection/) */
	unsigned char vec[4096];
	uint64_t resident = 0;
	uint8_t *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);

	if (map == MAP_FAILED)
		return UINT64_MAX;
	for (uint64_t off = 0; off < size; off += sizeof(vec) * 4096) {
		uint64_t len = size - off < sizeof(vec) * 4096 ? size - off : sizeof(vec) * 4096;

		if (mincore(map + off, len, vec) < 0) {
			munmap(map, size);
			return UINT64_MAX;
		}
		for (uint64_t i = 0; i < (len + 4095) / 4096; i++)
			resident += vec[i] & 1;
	}
	munmap(map, size);
	return resident * 4096;
}

uint64_t fd_allocated_bytes(int fd)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return UINT64_MAX;
	if (fd_is_guest_memfd(fd))
		return st.st_size ? gmem_resident_bytes(fd, (uint64_t)st.st_size) : 0;
	return (uint64_t)st.st_blocks * 512;
}
