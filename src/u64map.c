/* SPDX-License-Identifier: MIT */
/*
 * A small open-addressing hash map from 64-bit keys to 64-bit values: the
 * extent -> boundary-count map of the tracker and the set of retained huge
 * pages of a backing. Linear probing at load <= 1/2; deletion shifts later
 * entries back instead of leaving tombstones, so probe lengths stay bounded
 * however long a VM runs. Growth happens only in u64map_reserve(), so an
 * insert after a successful reserve cannot fail.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static uint64_t home(uint64_t key, uint64_t cap)
{
	return ((key * 0x9E3779B97F4A7C15ULL) >> 17) & (cap - 1);
}

uint64_t *u64map_find(const struct u64map *m, uint64_t key)
{
	if (!m->cap)
		return NULL;
	for (uint64_t i = home(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->slots[i].key == key)
			return &m->slots[i].value;
		if (m->slots[i].key == U64MAP_EMPTY)
			return NULL;
	}
}

uint64_t *u64map_insert(struct u64map *m, uint64_t key)
{
	uint64_t i = home(key, m->cap);

	while (m->slots[i].key != U64MAP_EMPTY) {
		if (m->slots[i].key == key)
			return &m->slots[i].value;
		i = (i + 1) & (m->cap - 1);
	}
	m->slots[i].key = key;
	m->slots[i].value = 0;
	m->count++;
	return &m->slots[i].value;
}

void u64map_remove(struct u64map *m, uint64_t *value)
{
	struct u64map_slot *s =
		(struct u64map_slot *)((char *)value - offsetof(struct u64map_slot, value));
	uint64_t mask = m->cap - 1, hole = (uint64_t)(s - m->slots);

	for (uint64_t i = (hole + 1) & mask; m->slots[i].key != U64MAP_EMPTY; i = (i + 1) & mask) {
		uint64_t h = home(m->slots[i].key, m->cap);
		/* the entry at i may fill the hole unless its home lies
		 * cyclically in (hole, i] */
		bool stays = hole <= i ? (h > hole && h <= i) : (h > hole || h <= i);

		if (!stays) {
			m->slots[hole] = m->slots[i];
			hole = i;
		}
	}
	m->slots[hole].key = U64MAP_EMPTY;
	m->count--;
}

int u64map_reserve(struct u64map *m, uint64_t extra)
{
	uint64_t cap = m->cap ? m->cap : 8, old_cap = m->cap;
	struct u64map_slot *old = m->slots, *fresh;

	while ((m->count + extra) * 2 > cap)
		cap *= 2;
	if (cap == m->cap)
		return 0;
	fresh = malloc(cap * sizeof(*fresh));
	if (!fresh)
		return -ENOMEM;
	for (uint64_t i = 0; i < cap; i++)
		fresh[i].key = U64MAP_EMPTY;
	m->slots = fresh;
	m->cap = cap;
	m->count = 0;
	for (uint64_t i = 0; i < old_cap; i++)
		if (old[i].key != U64MAP_EMPTY)
			*u64map_insert(m, old[i].key) = old[i].value;
	free(old);
	return 0;
}

void u64map_fini(struct u64map *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = m->count = 0;
}
