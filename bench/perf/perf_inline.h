/* SPDX-License-Identifier: MIT */
/*
 * Header-only pieces of the benchmarks that link the shared library and
 * nothing else (perf_instr, perf_tracker, perf_concurrency): a seeded
 * random number generator and attribute / punch operations that do
 * nothing, so that only the library's own work is measured.
 * Thread safety: thread-safe (each caller owns its seed).
 */
#ifndef CVMCONV_PERF_INLINE_H
#define CVMCONV_PERF_INLINE_H

#include <stdint.h>

/* splitmix64: the next number of the sequence @x seeds. */
static inline uint64_t perf_rng(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* cvmconv_ops.set_memory_attributes that accepts everything. */
static inline int perf_attr_accept(void *opaque, uint64_t gpa, uint64_t size, uint64_t attributes)
{
	(void)opaque;
	(void)gpa;
	(void)size;
	(void)attributes;
	return 0;
}

/* cvmconv_ops.punch that frees nothing. */
static inline int perf_punch_none(void *opaque, int fd, uint64_t offset, uint64_t len)
{
	(void)opaque;
	(void)fd;
	(void)offset;
	(void)len;
	return 0;
}

#endif /* CVMCONV_PERF_INLINE_H */
