/* SPDX-License-Identifier: MIT */
/*
 * Layer 2, physical memory: uptime churn on the buddy allocator (buddy.c).
 *
 * Two populations share the allocator, as in a guest that has
 * been up a while:
 * - page cache: order-0 pages that grow until no free block is left; then
 *   reclaim frees cache pages in random order (LRU order is unrelated to
 *   address) until (100 - churn_fill_pct) % of managed memory is free again
 *   (kswapd's low/high watermarks, coarsened);
 * - unmovable kernel memory (slab, page tables, skbs...): about 1/8 of the
 *   fill level, orders 0..3 weighted to small ones, allocated and freed at
 *   random.
 * A quarter of the steps touch kernel memory, the rest grow the cache. Once
 * the cache has filled RAM, free pages exist only where reclaim made them:
 * scattered, so new allocations land scattered and free 2 MiB blocks
 * disappear as uptime grows. Compaction, which could migrate cache pages,
 * is not modelled.
 */
#include <stdlib.h>
#include <string.h>

#include "churn.h"
#include "util.h"

static const uint16_t churn_order_weight[4] = { 700, 150, 100, 50 }; /* per mille */

static unsigned churn_pick_order(struct rng *r)
{
	uint64_t x = rng_below(r, 1000);
	unsigned o = 0;

	while (o < 3 && x >= churn_order_weight[o])
		x -= churn_order_weight[o++];
	return o;
}

static int churn_push(struct churn *c, uint64_t pfn, unsigned order, bool kernel)
{
	int ret = grow_array((void **)&c->v, sizeof(*c->v), &c->cap, c->len + 1);

	if (ret)
		return ret;
	c->v[c->len++] = (struct churn_alloc){ pfn, order, kernel };
	c->pages += 1ULL << order;
	if (kernel)
		c->kernel_pages += 1ULL << order;
	return 0;
}

/* Free a random live allocation of one population; false if none was found
 * in a few tries (both populations share one array). */
static bool churn_free_one(struct churn *c, struct buddy *b, struct rng *r, bool kernel)
{
	for (int tries = 0; tries < 64 && c->len; tries++) {
		uint64_t i = rng_below(r, c->len);
		struct churn_alloc a = c->v[i];

		if (a.kernel != kernel)
			continue;
		c->v[i] = c->v[--c->len];
		c->pages -= 1ULL << a.order;
		if (kernel)
			c->kernel_pages -= 1ULL << a.order;
		(void)buddy_free(b, a.pfn, a.order);
		return true;
	}
	return false;
}

int churn_run(struct churn *c, struct buddy *b, struct rng *r, uint32_t fill_pct, uint64_t steps)
{
	uint64_t kern_target = b->managed * fill_pct / 100 / 8;
	uint64_t free_target = b->managed * (100 - fill_pct) / 100;

	for (uint64_t s = 0; s < steps; s++) {
		bool kernel = rng_below(r, 4) == 0;
		unsigned order = kernel ? churn_pick_order(r) : 0;
		uint64_t pfn;
		int ret;

		if (kernel && c->kernel_pages >= kern_target) {
			churn_free_one(c, b, r, true);
			continue;
		}
		ret = buddy_alloc(b, ZONE_NORMAL, ZONE_DMA32, order, &pfn);
		if (ret) {
			/* reclaim down to the watermark, then retry once */
			while (b->free_pages < free_target && churn_free_one(c, b, r, false))
				;
			ret = buddy_alloc(b, ZONE_NORMAL, ZONE_DMA32, order, &pfn);
			if (ret)
				continue;
		}
		ret = churn_push(c, pfn, order, kernel);
		if (ret) {
			buddy_free(b, pfn, order);
			return ret;
		}
	}
	return 0;
}

void churn_destroy(struct churn *c)
{
	free(c->v);
	memset(c, 0, sizeof(*c));
}
