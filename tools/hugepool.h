/* SPDX-License-Identifier: MIT */
/*
 * The kernel's huge page pool for tools: make N huge pages of a size
 * available, raising nr_hugepages when root, and put the old value back.
 * While pages are reserved this way, an exclusive flock is held on
 * /tmp/cvmconv-hugepages.lock, the lock the test fixtures and the demo take,
 * so that nothing reading HugePages_Free races with the change.
 */
#ifndef CVMCONV_HUGEPOOL_H
#define CVMCONV_HUGEPOOL_H

#include <stddef.h>
#include <stdint.h>

#define HUGEPOOL_LOCK "/tmp/cvmconv-hugepages.lock"

/*
 * hugepool_reserve() - make at least @n pages of @page_size free (and not
 * reserved by someone else). For the default huge page size the knob is
 * /proc/sys/vm/nr_hugepages, for other sizes
 * /sys/kernel/mm/hugepages/hugepages-<kB>kB/nr_hugepages; the count of free
 * pages is that directory's free_hugepages minus resv_hugepages.
 * Call once per process; hugepool_restore() undoes it.
 * Return: 0, or -errno with a one-line reason written to @why.
 */
int hugepool_reserve(uint64_t page_size, uint64_t n, char *why, size_t why_len);

/* The pool size before hugepool_reserve() raised it and after, or -1 when it
 * did not have to raise it. */
void hugepool_raised(long *before, long *after);

/* Put nr_hugepages back and drop the lock. Async-signal-safe (open, write,
 * close only), idempotent. Call it after the huge pages were released
 * (fds closed), else the kernel keeps the in-use pages as surplus until then. */
void hugepool_restore(void);

#endif
