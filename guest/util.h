/* SPDX-License-Identifier: MIT */
/*
 * Layer 1, utilities: sizes, alignment helpers and grow_array(). Knows no
 * part of the model; every other file may include it.
 */
#ifndef CVMG_UTIL_H
#define CVMG_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <cvmconv/guest.h>

#define PAGE_SHIFT 12
#define PAGE_SZ (1ULL << PAGE_SHIFT)
#define SZ_1M (1ULL << 20)
#define SZ_2M (1ULL << 21)
#define SZ_4M (1ULL << 22)
#define SZ_16M (1ULL << 24)
#define SZ_64M (1ULL << 26)
#define SZ_128M (1ULL << 27)
#define SZ_256M (1ULL << 28)
#define SZ_1G (1ULL << 30)
#define SZ_4G (1ULL << 32)
#define MAX_ORDER CVMG_MAX_ORDER

#define ALIGN_UP(x, a) (((x) + (a)-1) & ~((uint64_t)(a)-1))
#define ALIGN_DOWN(x, a) ((x) & ~((uint64_t)(a)-1))
#define IS_ALIGNED(x, a) (((x) & ((uint64_t)(a)-1)) == 0)
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Growable array helper: ensures room for @need elements of @elem bytes
 * (capacity doubles from 16). */
int grow_array(void **arr, size_t elem, size_t *cap, size_t need);

#endif /* CVMG_UTIL_H */
