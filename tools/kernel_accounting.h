/* SPDX-License-Identifier: MIT */
/* What the kernel holds, where a file's st_blocks cannot tell. */
#ifndef CVMCONV_KERNEL_ACCOUNTING_H
#define CVMCONV_KERNEL_ACCOUNTING_H

#include <stdbool.h>
#include <stdint.h>

/* /proc/meminfo Unevictable in bytes, read after the per-CPU LRU batches of
 * every CPU this process may run on are drained and the per-CPU vmstat
 * deltas folded (root), so that a few pages added just now show. guest_memfd
 * keeps no st_blocks; its pages are counted here (it marks its mapping
 * unevictable). 0 when /proc/meminfo cannot be read.
 * Thread safety: not thread-safe (changes this thread's CPU affinity and
 * restores it). */
uint64_t meminfo_unevictable_bytes(void);

/* The number of a /proc/meminfo field (@name with its colon, e.g.
 * "HugePages_Free:" or "MemAvailable:"; sizes in kB), or -1: the tools'
 * one reader of that file. Thread safety: thread-safe. */
long meminfo_count(const char *name);

/* Bytes the kernel has allocated to the file: st_blocks * 512, or for a
 * guest_memfd (which keeps no block count) its pages resident by mincore()
 * on a mapping of it; UINT64_MAX when neither can be had (a guest_memfd
 * that cannot be mapped: use meminfo_unevictable_bytes()).
 * Thread safety: thread-safe. */
uint64_t fd_allocated_bytes(int fd);
/* Whether @fd is a guest_memfd (anon_inode:[kvm-gmem]). Thread-safe. */
bool fd_is_guest_memfd(int fd);

#endif
