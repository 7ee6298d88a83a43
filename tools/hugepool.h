/* SPDX-License-Identifier: MIT */
/*
 * The kernel's huge page pool for the tests, tools, examples and benches:
 * make N huge pages of a size available, raising nr_hugepages when root,
 * and put the old value back. While pages are reserved this way, an
 * exclusive flock is held on /tmp/cvmconv-hugepages.lock, so that nothing
 * reading HugePages_Free (another test, tool, example or bench, in this or
 * another build) races with the change.
 *
 * Thread safety: none; one reservation per process at a time, made and
 * undone from one thread (hugepool_restore() may also run in a signal
 * handler).
 */
#ifndef CVMCONV_HUGEPOOL_H
#define CVMCONV_HUGEPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HUGEPOOL_LOCK "/tmp/cvmconv-hugepages.lock"

/*
 * hugepool_reserve() - make at least @n pages of @page_size free (and not
 * reserved by someone else). The knob is
 * /sys/kernel/mm/hugepages/hugepages-<kB>kB/nr_hugepages for every size
 * (for the default size the same counter as /proc/sys/vm/nr_hugepages,
 * mm/hugetlb.c); the count of free
 * pages is that directory's free_hugepages minus resv_hugepages. Never
 * more than half of MemAvailable is taken.
 * A second call before hugepool_restore() keeps the lock and the value to
 * restore, and only raises the pool further; hugepool_restore() undoes all.
 * Return: 0, or -errno with a one-line reason written to @why: -ENODEV (no
 * pages of that size), -E2BIG, -EIO (pool unreadable), -ENOMEM (memory
 * short), -EPERM (not root to raise it), -EBUSY (a pool of another page
 * size raised by an earlier call), or the write's error.
 */
int hugepool_reserve(uint64_t page_size, uint64_t n, char *why, size_t why_len);

/* The pool size before hugepool_reserve() raised it and after, or -1 when it
 * did not have to raise it. */
void hugepool_raised(long *before, long *after);

/* Put nr_hugepages back and drop the lock. Async-signal-safe (open, write,
 * close only), idempotent. Call it after the huge pages were released
 * (fds closed), else the kernel keeps the in-use pages as surplus until then. */
void hugepool_restore(void);

/* Whether the lock is held (a reservation is in force). */
bool hugepool_held(void);

/* Free pages of @page_size (that size's free_hugepages), -1 if unreadable. */
long hugepool_free(uint64_t page_size);

/* On SIGINT, SIGTERM and SIGHUP: hugepool_restore(), then the signal's
 * default action. */
void hugepool_restore_on_signals(void);

#endif
