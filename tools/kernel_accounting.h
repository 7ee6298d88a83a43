/* SPDX-License-Identifier: MIT */
/* What the kernel holds, where a file's st_blocks cannot tell. */
#ifndef CVMCONV_KERNEL_ACCOUNTING_H
#define CVMCONV_KERNEL_ACCOUNTING_H

#include <stdint.h>

/* /proc/meminfo Unevictable in bytes, read after the per-CPU LRU batches of
 * every CPU this process may run on are drained and the per-CPU vmstat
 * deltas folded (root), so that a few pages added just now show. guest_memfd
 * keeps no st_blocks; its pages are counted here (it marks its mapping
 * unevictable). 0 when /proc/meminfo cannot be read.
 * Thread safety: not thread-safe (changes this thread's CPU affinity and
 * restores it). */
uint64_t meminfo_unevictable_bytes(void);

#endif
