/* SPDX-License-Identifier: MIT */
/*
 * The extent tracker: which 4 KiB pages of a region are private.
 *
 * Guest memory is tracked in 2 MiB extents aligned in guest physical address
 * space (the size of an x86 EPT/NPT large page: a 2 MiB frame range whose
 * pages disagree is "mixed" and KVM must map it with 4 KiB pages, see
 * arch/x86/kvm/mmu/mmu.c hugepage_has_attrs). A uniform extent costs one
 * byte; only mixed extents carry a 512-bit page map, kept in an
 * open-addressing hash keyed by extent index. A 4 TiB region with no mixed
 * extent therefore needs 2 MiB of state.
 *
 * Pages are region-relative indices. Map bits for pages outside the region
 * (in the partial first/last extent of a region that is not 2 MiB aligned)
 * are always clear.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define EMPTY_SLOT UINT64_MAX
#define MAP_WORDS 8

static uint64_t abs_first(const struct tracker *t)
{
	return t->gpa >> PAGE_SHIFT_4K;
}

/* Region-relative page span [*lo, *hi) of extent @e. */
static void extent_span(const struct tracker *t, uint64_t e, uint64_t *lo, uint64_t *hi)
{
	uint64_t start = (t->first_extent + e) * PAGES_PER_EXTENT;
	uint64_t end = start + PAGES_PER_EXTENT;
	uint64_t first = abs_first(t);

	*lo = start > first ? start - first : 0;
	*hi = end - first < t->npages ? end - first : t->npages;
}

static uint64_t extent_of(const struct tracker *t, uint64_t p)
{
	return ((abs_first(t) + p) / PAGES_PER_EXTENT) - t->first_extent;
}

static unsigned bit_of(const struct tracker *t, uint64_t p)
{
	return (unsigned)((abs_first(t) + p) % PAGES_PER_EXTENT);
}

/* ---- 512-bit maps ---- */

static void map_set_range(uint64_t *map, unsigned lo, unsigned hi, bool value)
{
	while (lo < hi) {
		unsigned w = lo / 64, b = lo % 64;
		unsigned n = hi - lo < 64 - b ? hi - lo : 64 - b;
		uint64_t mask = (n == 64 ? ~0ULL : ((1ULL << n) - 1)) << b;

		if (value)
			map[w] |= mask;
		else
			map[w] &= ~mask;
		lo += n;
	}
}

static uint64_t map_count_range(const uint64_t *map, unsigned lo, unsigned hi)
{
	uint64_t count = 0;

	while (lo < hi) {
		unsigned w = lo / 64, b = lo % 64;
		unsigned n = hi - lo < 64 - b ? hi - lo : 64 - b;
		uint64_t mask = (n == 64 ? ~0ULL : ((1ULL << n) - 1)) << b;

		count += (uint64_t)__builtin_popcountll(map[w] & mask);
		lo += n;
	}
	return count;
}

/* First bit in [lo, hi) equal to @value, or hi. */
static unsigned map_find(const uint64_t *map, unsigned lo, unsigned hi, bool value)
{
	while (lo < hi) {
		unsigned w = lo / 64, b = lo % 64;
		uint64_t word = value ? map[w] : ~map[w];

		word &= ~0ULL << b;
		if (word) {
			unsigned found = w * 64 + (unsigned)__builtin_ctzll(word);
			return found < hi ? found : hi;
		}
		lo = (w + 1) * 64;
	}
	return hi;
}

/* ---- mixed-map hash ---- */

static uint64_t slot_hash(uint64_t extent, uint64_t cap)
{
	return (extent * 0x9E3779B97F4A7C15ULL) >> 7 & (cap - 1);
}

static struct mixed_slot *slot_find(const struct tracker *t, uint64_t e)
{
	if (!t->mixed_cap)
		return NULL;
	for (uint64_t i = slot_hash(e, t->mixed_cap);; i = (i + 1) & (t->mixed_cap - 1)) {
		if (t->mixed[i].extent == e)
			return &t->mixed[i];
		if (t->mixed[i].extent == EMPTY_SLOT)
			return NULL;
	}
}

/* Insert without growing; tracker_reserve() guaranteed the room. */
static struct mixed_slot *slot_insert(struct tracker *t, uint64_t e)
{
	uint64_t i = slot_hash(e, t->mixed_cap);

	while (t->mixed[i].extent != EMPTY_SLOT)
		i = (i + 1) & (t->mixed_cap - 1);
	t->mixed[i].extent = e;
	memset(t->mixed[i].map, 0, sizeof(t->mixed[i].map));
	t->mixed_count++;
	return &t->mixed[i];
}

/* Linear-probing delete by shifting later entries back (no tombstones, so
 * lookups stay bounded by the load factor however long the VM runs). */
static void slot_remove(struct tracker *t, struct mixed_slot *s)
{
	uint64_t mask = t->mixed_cap - 1;
	uint64_t hole = (uint64_t)(s - t->mixed);

	for (uint64_t i = (hole + 1) & mask; t->mixed[i].extent != EMPTY_SLOT; i = (i + 1) & mask) {
		uint64_t home = slot_hash(t->mixed[i].extent, t->mixed_cap);
		/* move i into the hole unless its home lies cyclically in (hole, i] */
		bool stays = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);

		if (!stays) {
			t->mixed[hole] = t->mixed[i];
			hole = i;
		}
	}
	t->mixed[hole].extent = EMPTY_SLOT;
	t->mixed_count--;
}

int tracker_reserve(struct tracker *t, uint64_t extra)
{
	uint64_t need = t->mixed_count + extra, cap = t->mixed_cap ? t->mixed_cap : 8;
	struct mixed_slot *old = t->mixed, *fresh;
	uint64_t old_cap = t->mixed_cap;

	while (need * 2 > cap)
		cap *= 2;
	if (cap == t->mixed_cap)
		return 0;
	fresh = malloc(cap * sizeof(*fresh));
	if (!fresh)
		return -ENOMEM;
	for (uint64_t i = 0; i < cap; i++)
		fresh[i].extent = EMPTY_SLOT;
	t->mixed = fresh;
	t->mixed_cap = cap;
	t->mixed_count = 0;
	for (uint64_t i = 0; i < old_cap; i++) {
		if (old[i].extent != EMPTY_SLOT) {
			struct mixed_slot *s = slot_insert(t, old[i].extent);
			memcpy(s->map, old[i].map, sizeof(s->map));
		}
	}
	free(old);
	return 0;
}

/* ---- tracker ---- */

int tracker_init(struct tracker *t, uint64_t gpa, uint64_t size, bool private)
{
	memset(t, 0, sizeof(*t));
	t->gpa = gpa;
	t->npages = size >> PAGE_SHIFT_4K;
	t->first_extent = gpa >> EXTENT_SHIFT;
	t->nextents = ((gpa + size - 1) >> EXTENT_SHIFT) - t->first_extent + 1;
	t->state = malloc(t->nextents);
	if (!t->state)
		return -ENOMEM;
	memset(t->state, private ? EXTENT_PRIVATE : EXTENT_SHARED, t->nextents);
	t->private_pages = private ? t->npages : 0;
	return 0;
}

void tracker_fini(struct tracker *t)
{
	free(t->state);
	free(t->mixed);
	memset(t, 0, sizeof(*t));
}

bool tracker_page_private(const struct tracker *t, uint64_t p)
{
	uint64_t e = extent_of(t, p);
	const struct mixed_slot *s;

	if (t->state[e] != EXTENT_MIXED)
		return t->state[e] == EXTENT_PRIVATE;
	s = slot_find(t, e);
	return (s->map[bit_of(t, p) / 64] >> (bit_of(t, p) % 64)) & 1;
}

uint64_t tracker_find(const struct tracker *t, uint64_t from, uint64_t to, bool private)
{
	while (from < to) {
		uint64_t e = extent_of(t, from), lo, hi;

		extent_span(t, e, &lo, &hi);
		if (hi > to)
			hi = to;
		if (t->state[e] == EXTENT_MIXED) {
			const struct mixed_slot *s = slot_find(t, e);
			unsigned b0 = bit_of(t, from);
			unsigned b = map_find(s->map, b0, b0 + (unsigned)(hi - from), private);

			if (b < b0 + (hi - from))
				return from + (b - b0);
		} else if ((t->state[e] == EXTENT_PRIVATE) == private) {
			return from;
		}
		from = hi;
	}
	return to;
}

uint64_t tracker_count_private(const struct tracker *t, uint64_t from, uint64_t to)
{
	uint64_t count = 0;

	while (from < to) {
		uint64_t e = extent_of(t, from), lo, hi;

		extent_span(t, e, &lo, &hi);
		if (hi > to)
			hi = to;
		if (t->state[e] == EXTENT_MIXED) {
			unsigned b0 = bit_of(t, from);
			count += map_count_range(slot_find(t, e)->map, b0,
						 b0 + (unsigned)(hi - from));
		} else if (t->state[e] == EXTENT_PRIVATE) {
			count += hi - from;
		}
		from = hi;
	}
	return count;
}

void tracker_set(struct tracker *t, uint64_t from, uint64_t to, bool private)
{
	while (from < to) {
		uint64_t e = extent_of(t, from), lo, hi, before;
		uint8_t target = private ? EXTENT_PRIVATE : EXTENT_SHARED;
		struct mixed_slot *s = NULL;

		extent_span(t, e, &lo, &hi);
		before = tracker_count_private(t, lo, hi);
		if (from == lo && to >= hi) {
			/* whole extent: becomes uniform */
			if (t->state[e] == EXTENT_MIXED)
				slot_remove(t, slot_find(t, e));
			t->state[e] = target;
		} else if (t->state[e] != target) {
			uint64_t end = to < hi ? to : hi;
			unsigned blo = bit_of(t, lo), bhi = blo + (unsigned)(hi - lo);

			if (t->state[e] == EXTENT_MIXED) {
				s = slot_find(t, e);
			} else {
				s = slot_insert(t, e);
				if (t->state[e] == EXTENT_PRIVATE)
					map_set_range(s->map, blo, bhi, true);
			}
			map_set_range(s->map, bit_of(t, from),
				      bit_of(t, from) + (unsigned)(end - from), private);
			t->state[e] = EXTENT_MIXED;
			/* all valid pages agree again: back to a uniform byte */
			uint64_t now = map_count_range(s->map, blo, bhi);
			if (now == 0 || now == hi - lo) {
				slot_remove(t, s);
				t->state[e] = now ? EXTENT_PRIVATE : EXTENT_SHARED;
			}
		}
		t->private_pages += tracker_count_private(t, lo, hi) - before;
		from = hi;
	}
}

uint64_t tracker_mixed(const struct tracker *t)
{
	return t->mixed_count;
}

uint64_t tracker_uniform_full_extents(const struct tracker *t)
{
	/* Interior extents are always whole; only the first and last may be
	 * partial (region not 2 MiB aligned), and those never count. */
	uint64_t edges[2] = { 0, t->nextents - 1 };
	uint64_t whole = t->nextents > 2 ? t->nextents - 2 : 0, partial_mixed = 0;

	for (unsigned i = 0; i < (t->nextents > 1 ? 2u : 1u); i++) {
		uint64_t lo, hi;

		extent_span(t, edges[i], &lo, &hi);
		if (hi - lo == PAGES_PER_EXTENT)
			whole++;
		else if (t->state[edges[i]] == EXTENT_MIXED)
			partial_mixed++;
	}
	return whole - (t->mixed_count - partial_mixed);
}

uint64_t tracker_heap_bytes(const struct tracker *t)
{
	return t->nextents + t->mixed_cap * sizeof(struct mixed_slot);
}
