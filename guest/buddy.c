/* SPDX-License-Identifier: MIT */
/*
 * Layer 2, physical memory.
 *
 * Buddy allocator of the guest (mm/page_alloc.c), per zone, orders 0..10:
 * - allocation takes the head of the smallest non-empty free list of order
 *   >= the request (__rmqueue_smallest) and returns the upper halves of a
 *   split block to the heads of the lower lists (expand), so the low part of
 *   a block is handed out first;
 * - a freed block merges with its buddy while the buddy is free at the same
 *   order (__free_one_page) and is queued at the tail when the next-higher
 *   buddy is free too (buddy_merge_likely), else at the head;
 * - boot release goes to the tail (__free_pages_core, FPI_TO_TAIL), so the
 *   lists start in ascending address order;
 * - page_alloc.shuffle=1 randomises the order-10 lists at boot and the
 *   head/tail choice for order-10 frees (mm/shuffle.c).
 * Not modelled: migrate types and pageblock stealing, per-CPU page lists,
 * watermarks, compaction and reclaim (see guest/README.md).
 *
 * Free blocks are kept in a hash keyed by pfn plus per-(zone, order) lists,
 * so memory grows with the number of free blocks, not with RAM.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buddy.h"

unsigned get_order(uint64_t size)
{
	uint64_t x = (size - 1) >> PAGE_SHIFT;

	return x ? (unsigned)(64 - __builtin_clzll(x)) : 0;
}

static unsigned hash_bits(uint64_t cap)
{
	return (unsigned)__builtin_ctzll(cap);
}

static uint64_t hash_slot(const struct buddy *b, uint64_t pfn)
{
	return (pfn * 0x9e3779b97f4a7c15ULL) >> (64 - hash_bits(b->hash_cap));
}

static int32_t hash_find(const struct buddy *b, uint64_t pfn)
{
	uint64_t mask = b->hash_cap - 1;

	for (uint64_t i = hash_slot(b, pfn);; i = (i + 1) & mask) {
		uint32_t v = b->hash[i];

		if (!v)
			return -1;
		if (b->nodes[v - 1].pfn == pfn)
			return (int32_t)(v - 1);
	}
}

static void hash_put(struct buddy *b, uint64_t pfn, uint32_t idx)
{
	uint64_t mask = b->hash_cap - 1;
	uint64_t i = hash_slot(b, pfn);

	while (b->hash[i])
		i = (i + 1) & mask;
	b->hash[i] = idx + 1;
	b->hash_len++;
}

static int hash_grow(struct buddy *b)
{
	uint64_t old_cap = b->hash_cap;
	uint32_t *old = b->hash;
	uint64_t cap = old_cap ? old_cap * 2 : 1024;
	uint32_t *h = calloc(cap, sizeof(*h));

	if (!h)
		return -ENOMEM;
	b->hash = h;
	b->hash_cap = cap;
	b->hash_len = 0;
	for (uint64_t i = 0; i < old_cap; i++)
		if (old[i])
			hash_put(b, b->nodes[old[i] - 1].pfn, old[i] - 1);
	free(old);
	return 0;
}

/* Linear probing with backward-shift deletion (no tombstones). */
static void hash_del(struct buddy *b, uint64_t pfn)
{
	uint64_t mask = b->hash_cap - 1;
	uint64_t i = hash_slot(b, pfn);

	while (b->nodes[b->hash[i] - 1].pfn != pfn)
		i = (i + 1) & mask;
	for (uint64_t j = (i + 1) & mask; b->hash[j]; j = (j + 1) & mask) {
		uint64_t home = hash_slot(b, b->nodes[b->hash[j] - 1].pfn);

		/* move j back to i unless its home lies cyclically in (i, j] */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			b->hash[i] = b->hash[j];
			i = j;
		}
	}
	b->hash[i] = 0;
	b->hash_len--;
}

static int node_new(struct buddy *b, int32_t *out)
{
	if (b->recycle >= 0) {
		*out = b->recycle;
		b->recycle = b->nodes[*out].next;
		return 0;
	}
	if (b->nodes_len == b->nodes_cap) {
		uint32_t cap = b->nodes_cap ? b->nodes_cap * 2 : 1024;
		struct buddy_node *n;

		if (cap > INT32_MAX / 2)
			return -ENOMEM;
		n = realloc(b->nodes, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		b->nodes = n;
		b->nodes_cap = cap;
	}
	*out = (int32_t)b->nodes_len++;
	return 0;
}

static void list_unlink(struct buddy *b, int32_t idx)
{
	struct buddy_node *n = &b->nodes[idx];
	struct buddy_list *l = &b->lists[n->zone][n->order];

	if (n->prev >= 0)
		b->nodes[n->prev].next = n->next;
	else
		l->head = n->next;
	if (n->next >= 0)
		b->nodes[n->next].prev = n->prev;
	else
		l->tail = n->prev;
	l->count--;
}

static void list_link(struct buddy *b, int32_t idx, bool tail)
{
	struct buddy_node *n = &b->nodes[idx];
	struct buddy_list *l = &b->lists[n->zone][n->order];

	if (tail) {
		n->next = -1;
		n->prev = l->tail;
		if (l->tail >= 0)
			b->nodes[l->tail].next = idx;
		else
			l->head = idx;
		l->tail = idx;
	} else {
		n->prev = -1;
		n->next = l->head;
		if (l->head >= 0)
			b->nodes[l->head].prev = idx;
		else
			l->tail = idx;
		l->head = idx;
	}
	l->count++;
}

static int add_free(struct buddy *b, uint64_t pfn, unsigned order, enum zone_id zone, bool tail)
{
	int32_t idx;
	int ret;

	if ((b->hash_len + 1) * 2 > b->hash_cap) {
		ret = hash_grow(b);
		if (ret)
			return ret;
	}
	ret = node_new(b, &idx);
	if (ret)
		return ret;
	b->nodes[idx].pfn = pfn;
	b->nodes[idx].order = (uint8_t)order;
	b->nodes[idx].zone = (uint8_t)zone;
	hash_put(b, pfn, (uint32_t)idx);
	list_link(b, idx, tail);
	return 0;
}

static void remove_free(struct buddy *b, int32_t idx)
{
	list_unlink(b, idx);
	hash_del(b, b->nodes[idx].pfn);
	b->nodes[idx].next = b->recycle;
	b->recycle = idx;
}

static bool is_free_block(const struct buddy *b, uint64_t pfn, unsigned order, enum zone_id zone,
			  int32_t *idx)
{
	int32_t i = hash_find(b, pfn);

	if (i < 0 || b->nodes[i].order != order || b->nodes[i].zone != zone)
		return false;
	if (idx)
		*idx = i;
	return true;
}

static int free_one(struct buddy *b, uint64_t pfn, unsigned order, bool boot)
{
	enum zone_id zone = zone_of(pfn);
	uint64_t pages = 1ULL << order;
	int32_t idx;
	bool tail;
	int ret;

	while (order < MAX_ORDER) {
		uint64_t bpfn = pfn ^ (1ULL << order);

		if (!is_free_block(b, bpfn, order, zone, &idx))
			break;
		remove_free(b, idx);
		pfn &= ~(1ULL << order);
		order++;
	}
	if (boot) {
		tail = true;
	} else if (b->shuffle && order >= MAX_ORDER) {
		tail = rng_next(b->rng) & 1; /* shuffle_pick_tail() */
	} else if (order >= MAX_ORDER - 1) {
		tail = false;
	} else {
		uint64_t higher = pfn & ~(1ULL << order);

		tail = is_free_block(b, higher ^ (1ULL << (order + 1)), order + 1, zone, NULL);
	}
	ret = add_free(b, pfn, order, zone, tail);
	if (!ret)
		b->free_pages += pages;
	return ret;
}

int buddy_free_boot(struct buddy *b, uint64_t pfn, unsigned order)
{
	int ret = free_one(b, pfn, order, true);

	if (!ret)
		b->managed += 1ULL << order;
	return ret;
}

int buddy_free(struct buddy *b, uint64_t pfn, unsigned order)
{
	return free_one(b, pfn, order, false);
}

int buddy_alloc(struct buddy *b, enum zone_id highest, enum zone_id lowest, unsigned order,
		uint64_t *pfn)
{
	if (order > MAX_ORDER)
		return -ENOMEM;
	for (int z = (int)highest; z >= (int)lowest; z--) {
		for (unsigned o = order; o <= MAX_ORDER; o++) {
			int32_t idx = b->lists[z][o].head;
			uint64_t p;

			if (idx < 0)
				continue;
			p = b->nodes[idx].pfn;
			remove_free(b, idx);
			while (o > order) {
				int ret;

				o--;
				ret = add_free(b, p + (1ULL << o), o, (enum zone_id)z, false);
				if (ret) /* host OOM: the model cannot go on */
					return ret;
			}
			b->free_pages -= 1ULL << order;
			*pfn = p;
			return 0;
		}
	}
	return -ENOMEM;
}

uint64_t buddy_free_blocks(const struct buddy *b, unsigned order)
{
	uint64_t n = 0;

	for (int z = 0; z < NR_ZONES; z++)
		n += b->lists[z][order].count;
	return n;
}

void buddy_shuffle(struct buddy *b)
{
	for (int z = 0; z < NR_ZONES; z++) {
		struct buddy_list *l = &b->lists[z][MAX_ORDER];
		uint64_t n = l->count, i = 0;
		int32_t *v;

		if (n < 2)
			continue;
		v = malloc(n * sizeof(*v));
		if (!v)
			continue; /* leave the order as is: shuffling is best effort */
		for (int32_t idx = l->head; idx >= 0; idx = b->nodes[idx].next)
			v[i++] = idx;
		for (i = n - 1; i > 0; i--) {
			uint64_t j = rng_below(b->rng, i + 1);
			int32_t t = v[i];

			v[i] = v[j];
			v[j] = t;
		}
		l->head = l->tail = -1;
		l->count = 0;
		for (i = 0; i < n; i++)
			list_link(b, v[i], true);
		free(v);
	}
}

int buddy_init(struct buddy *b, struct rng *rng, bool shuffle)
{
	memset(b, 0, sizeof(*b));
	b->recycle = -1;
	b->rng = rng;
	b->shuffle = shuffle;
	for (int z = 0; z < NR_ZONES; z++)
		for (int o = 0; o <= MAX_ORDER; o++)
			b->lists[z][o].head = b->lists[z][o].tail = -1;
	return hash_grow(b);
}

void buddy_destroy(struct buddy *b)
{
	free(b->nodes);
	free(b->hash);
	memset(b, 0, sizeof(*b));
}
