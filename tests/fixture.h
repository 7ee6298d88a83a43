/* SPDX-License-Identifier: MIT */
/* Real-kernel fixtures for tests: memfds, huge page reservation, kernel
 * accounting (st_blocks, /proc/meminfo), and visible skips. */
#ifndef CVMCONV_TEST_FIXTURE_H
#define CVMCONV_TEST_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SZ_4K 4096ULL
#define SZ_2M (2ULL << 20)
#define SZ_1G (1ULL << 30)

/* Print "SKIP: <test>: <reason>" to stderr and skip the current CMocka test. */
#define FIXTURE_SKIP(...)                                  \
	do {                                               \
		fixture_print_skip(__func__, __VA_ARGS__); \
		skip();                                    \
	} while (0)
void fixture_print_skip(const char *test, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Make sure at least @n free 2 MiB huge pages exist, raising
 * /proc/sys/vm/nr_hugepages if needed (root). Returns 0, or -errno with a
 * reason in *why (static string). Every successful call must be paired with
 * hugepages_release(), which restores the old nr_hugepages value. Holds an
 * exclusive flock on /tmp/cvmconv-hugepages.lock between the two, so that
 * tests reading HugePages_Free do not race with each other. */
int hugepages_reserve(unsigned long n, const char **why);
void hugepages_release(void);
/* HugePages_Free from /proc/meminfo for the default (2 MiB) size; -1 on error */
long hugepages_free(void);

/* fd_allocated_bytes(), fd_is_guest_memfd() (tools/kernel_accounting.h) */
#include "kernel_accounting.h"
/* The private side tests use (tools/private_backing.h); the first call
 * prints which one this machine gives. */
int test_private_fd(uint64_t size);

/* Fill / check a per-page pattern in a mapping: page i of the mapping holds
 * the 64-bit tag (seed << 32 | i) in every 8-byte word. */
void pattern_fill(void *map, uint64_t first_page, uint64_t npages, uint32_t seed);
bool pattern_check(const void *map, uint64_t page, uint32_t seed);
bool page_is_zero(const void *map, uint64_t page);

/* Shared mapping of a whole fd (MAP_SHARED, PROT_READ|PROT_WRITE); NULL on error */
void *map_fd(int fd, uint64_t size);

#endif
