/* SPDX-License-Identifier: MIT */
/* fuzz_exits_fast: the input's values (gpas, sizes, attributes, injection
 * masks), read with fuzz_common.h's reader; below both the dispatch
 * (fuzz_exits_fast_input.c) and the operations that take values of their
 * own (fuzz_exits_fast_operations.c). Mirrored by fuzz/seeds.py. */
#include "fuzz_exits_fast.h"

/* no coverage in the harness: see fuzz_exits_fast.h */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#endif

/* ---- input decoding (the reader: fuzz_common.h) ---- */

static const uint64_t odd_gpas[] = { 0,		 GPA_LIMIT, GPA_LIMIT - HPG, UINT64_MAX & ~(PG - 1),
				     1ULL << 63, 1ULL << 30 };
static const uint64_t odd_npages[] = {
	0, 1ULL << 40, (1ULL << 40) + 1, GPA_LIMIT / PG, UINT64_MAX, UINT64_MAX / PG + 1
};

/* A region boundary: region k % 3, its end when k / 3 is odd. */
static uint64_t boundary(unsigned k)
{
	const struct fz_region *r = &R[k % NREG];

	return r->gpa + ((k / NREG) & 1) * r->npages * PG;
}

uint64_t pick_gpa(struct rd *r)
{
	uint8_t s = u8(r);
	int64_t d = (int8_t)u8(r);

	switch (s & 7) {
	case 0:
		return u64(r);
	case 1:
	case 2:
		return boundary(u8(r)) + (uint64_t)(d * (int64_t)PG);
	case 3:
		return (win_lo & ~(HPG - 1)) + (u8(r) % 6) * HPG + (uint64_t)(d * (int64_t)PG);
	case 4:
		return boundary(u8(r)) + (uint64_t)d;
	case 5:
		return odd_gpas[u8(r) % ARRAY_LEN(odd_gpas)] + (uint64_t)(d * (int64_t)PG);
	default:
		return win_lo + u16(r) % win_pages * PG;
	}
}

uint64_t pick_npages(struct rd *r)
{
	uint8_t s = u8(r);

	switch (s & 7) {
	case 0:
		return u64(r);
	case 1:
	case 2:
		return 1 + u8(r) % 16;
	case 3:
		return 512 * (1 + u8(r) % 3) + (uint64_t)((int8_t)u8(r) / 16);
	case 4:
		return R[u8(r) % NREG].npages + (uint64_t)((int8_t)u8(r) / 16);
	case 5:
		return odd_npages[u8(r) % ARRAY_LEN(odd_npages)];
	default:
		return 1 + u16(r) % 1536;
	}
}

uint64_t pick_size(struct rd *r)
{
	uint8_t s = u8(r);

	if ((s & 7) == 0)
		return u64(r);
	return pick_npages(r) * PG + ((s & 7) == 1 ? (uint64_t)(int8_t)u8(r) : 0);
}

uint64_t pick_attrs(struct rd *r)
{
	uint8_t s = u8(r);

	switch (s & 7) {
	case 0:
		return u64(r);
	case 1:
		return 1ULL << (u8(r) % 64);
	case 2:
		return (s >> 3) & 0x13; /* hints, with or without encrypted */
	default:
		return s & 8 ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0;
	}
}

uint32_t pick_mask(struct rd *in)
{
	uint8_t s = u8(in);

	return s & 3 ? 1u << (s & 3) >> 1 : u16(in);
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
