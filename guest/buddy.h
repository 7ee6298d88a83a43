/* SPDX-License-Identifier: MIT */
/*
 * Layer 2, physical memory: the buddy allocator, free lists per zone and
 * order 0..10. Uses the utilities and the layout's zones.
 */
#ifndef CVMG_BUDDY_H
#define CVMG_BUDDY_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"
#include "rng.h"
#include "util.h"

struct buddy_node {
	uint64_t pfn;
	int32_t prev, next; /* list links; next doubles as the recycle link */
	uint8_t order, zone;
};
struct buddy_list {
	int32_t head, tail;
	uint64_t count;
};
struct buddy {
	struct buddy_node *nodes;
	uint32_t nodes_len, nodes_cap;
	int32_t recycle;
	uint32_t *hash; /* node index + 1, 0 = empty; open addressing on pfn */
	uint64_t hash_cap, hash_len;
	struct buddy_list lists[NR_ZONES][MAX_ORDER + 1];
	uint64_t free_pages;
	uint64_t managed;
	bool shuffle;
	struct rng *rng;
};
int buddy_init(struct buddy *b, struct rng *rng, bool shuffle);
void buddy_destroy(struct buddy *b);
/* __free_pages_core(): boot release, FPI_TO_TAIL. */
int buddy_free_boot(struct buddy *b, uint64_t pfn, unsigned order);
void buddy_shuffle(struct buddy *b);
int buddy_free(struct buddy *b, uint64_t pfn, unsigned order);
/* alloc_pages() on a zonelist (highest zone first, falling back down to
 * @lowest). */
int buddy_alloc(struct buddy *b, enum zone_id highest, enum zone_id lowest, unsigned order,
		uint64_t *pfn);
uint64_t buddy_free_blocks(const struct buddy *b, unsigned order);
unsigned get_order(uint64_t size);

#endif /* CVMG_BUDDY_H */
