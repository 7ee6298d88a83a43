/* SPDX-License-Identifier: MIT */
/*
 * Layer 1, utilities: the address set (addr_set.h). Linear probing with
 * backward-shift deletion (no tombstones), Fibonacci hashing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "addr_set.h"

static uint64_t set_slot(const struct addr_set *s, uint64_t key)
{
	return (key * 0x9e3779b97f4a7c15ULL) >> (64 - __builtin_ctzll(s->cap));
}

static bool set_has(const struct addr_set *s, uint64_t key)
{
	if (!s->cap)
		return false;
	for (uint64_t i = set_slot(s, key);; i = (i + 1) & (s->cap - 1)) {
		if (!s->keys[i])
			return false;
		if (s->keys[i] == key + 1)
			return true;
	}
}

static void set_put_nogrow(struct addr_set *s, uint64_t key)
{
	uint64_t i = set_slot(s, key);

	while (s->keys[i])
		i = (i + 1) & (s->cap - 1);
	s->keys[i] = key + 1;
	s->len++;
}

static int set_add(struct addr_set *s, uint64_t key)
{
	if ((s->len + 1) * 2 > s->cap) {
		uint64_t old_cap = s->cap, *old = s->keys;
		uint64_t cap = old_cap ? old_cap * 2 : 256;

		s->keys = calloc(cap, sizeof(*s->keys));
		if (!s->keys) {
			s->keys = old;
			return -ENOMEM;
		}
		s->cap = cap;
		s->len = 0;
		for (uint64_t i = 0; i < old_cap; i++)
			if (old[i])
				set_put_nogrow(s, old[i] - 1);
		free(old);
	}
	set_put_nogrow(s, key);
	return 0;
}

static void set_del(struct addr_set *s, uint64_t key)
{
	uint64_t mask = s->cap - 1, i = set_slot(s, key);

	while (s->keys[i] != key + 1)
		i = (i + 1) & mask;
	for (uint64_t j = (i + 1) & mask; s->keys[j]; j = (j + 1) & mask) {
		uint64_t home = set_slot(s, s->keys[j] - 1);

		if (((j - home) & mask) >= ((j - i) & mask)) {
			s->keys[i] = s->keys[j];
			i = j;
		}
	}
	s->keys[i] = 0;
	s->len--;
}

int addr_set_add(struct addr_set *s, uint64_t key)
{
	return set_add(s, key);
}

bool addr_set_has(const struct addr_set *s, uint64_t key)
{
	return set_has(s, key);
}

void addr_set_del(struct addr_set *s, uint64_t key)
{
	if (set_has(s, key))
		set_del(s, key);
}

void addr_set_destroy(struct addr_set *s)
{
	free(s->keys);
	memset(s, 0, sizeof(*s));
}
