/* SPDX-License-Identifier: MIT */
/*
 * Layer 4, pools.
 *
 * DMA atomic pools (kernel/dma/pool.c). dma_atomic_pool_init() sizes each
 * pool at totalram_pages() / (1 GiB / 128 KiB) pages, at most
 * MAX_ORDER_NR_PAGES (4 MiB) and at least 128 KiB, and creates the kernel
 * pool (GFP_KERNEL; unconditionally in 6.12, pool.c:dma_atomic_pool_init;
 * newer kernels only when ZONE_NORMAL has managed pages, has_managed_zone:
 * CVMG_F_AP_NEEDS_NORMAL, so a q35 guest below 2.75 GiB has two pools), the
 * DMA pool (when ZONE_DMA has managed pages) and the DMA32 pool. atomic_pool_expand() takes one buddy block of
 * min(get_order(size), MAX_ORDER), retrying lower orders down to 0, and
 * decrypts the whole block (1 << order pages): one conversion per chunk,
 * never converted back (the pools do not shrink). If the decryption fails
 * the block is leaked (x86 has no DMA_DIRECT_REMAP, so nothing frees it).
 * An allocation leaving less than atomic_pool_size available schedules
 * atomic_pool_work, which grows each such pool by its current size.
 * Allocation is gen_pool first-fit with order alignment
 * (gen_pool_first_fit_order_align), newest chunk first; the first pool is
 * guessed from the device's zone, then kernel -> DMA32 -> DMA
 * (dma_guess_pool), keeping only memory the device can address.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_pool.h"
#include "set_memory.h"
#include "util.h"

enum { AP_DMA = 0, AP_DMA32 = 1, AP_KERNEL = 2 };

static bool bit_test(const uint64_t *b, uint32_t i)
{
	return (b[i / 64] >> (i % 64)) & 1;
}

static void bits_set(uint64_t *b, uint32_t start, uint32_t n, bool v)
{
	for (uint32_t i = start; i < start + n; i++) {
		if (v)
			b[i / 64] |= 1ULL << (i % 64);
		else
			b[i / 64] &= ~(1ULL << (i % 64));
	}
}

static int pool_expand(struct guest_mem *g, struct atomic_pool *p, uint64_t size)
{
	unsigned order = MIN(get_order(size), (unsigned)MAX_ORDER);
	enum zone_id hi = p->zone, lo = p->zone;
	struct ap_chunk *c;
	uint64_t pfn;
	int ret;

	if (p->zone == ZONE_NORMAL)
		lo = ZONE_DMA32; /* GFP_KERNEL may fall back to DMA32 */
	for (;;) {
		if (!buddy_alloc(&g->buddy, hi, lo, order, &pfn))
			break;
		if (order == 0) {
			g->n.ap_expand_failures++;
			return -ENOMEM;
		}
		order--;
	}
	ret = set_memory(g, pfn << PAGE_SHIFT, 1ULL << order, false, CVMG_SITE_ATOMIC_POOL);
	if (ret) {
		g->n.dma_leaked_pages += 1ULL << order;
		return ret;
	}
	ret = grow_array((void **)&p->chunks, sizeof(*p->chunks), &p->cap, p->n + 1);
	if (ret)
		return ret;
	memmove(&p->chunks[1], &p->chunks[0], p->n * sizeof(*p->chunks));
	c = &p->chunks[0];
	c->start = pfn << PAGE_SHIFT;
	c->npages = 1u << order;
	c->used = 0;
	c->bits = calloc((c->npages + 63) / 64, sizeof(uint64_t));
	if (!c->bits)
		return -ENOMEM;
	p->n++;
	p->size += PAGE_SZ << order;
	p->avail += PAGE_SZ << order;
	return 0;
}

int atomic_pools_init(struct atomic_pools *a, struct guest_mem *g)
{
	uint64_t pages = g->buddy.managed / (SZ_1G / (128 * 1024));
	static const int order[3] = { AP_KERNEL, AP_DMA, AP_DMA32 };
	bool has_dma = false, has_normal = false;
	int ret;

	pages = MIN(pages, 1ULL << MAX_ORDER);
	a->atomic_pool_size = MAX(pages << PAGE_SHIFT, 128 * 1024);
	for (int i = 0; i <= MAX_ORDER; i++) {
		has_dma = has_dma || g->buddy.lists[ZONE_DMA][i].count;
		has_normal = has_normal || g->buddy.lists[ZONE_NORMAL][i].count;
	}
	a->pool[AP_DMA].zone = ZONE_DMA;
	a->pool[AP_DMA32].zone = ZONE_DMA32;
	a->pool[AP_KERNEL].zone = ZONE_NORMAL;
	for (int k = 0; k < 3; k++) {
		struct atomic_pool *p = &a->pool[order[k]];

		if (order[k] == AP_DMA && !has_dma)
			continue;
		if (order[k] == AP_KERNEL && !has_normal &&
		    (g->cfg->flags & CVMG_F_AP_NEEDS_NORMAL))
			continue; /* newer pool.c: has_managed_zone(ZONE_NORMAL) */
		p->present = true;
		ret = pool_expand(g, p, a->atomic_pool_size);
		if (ret == -ENOTRECOVERABLE)
			return ret;
		if (ret) /* "DMA: failed to allocate ... pool": the pool is gone */
			p->present = false;
	}
	return 0;
}

static int chunk_alloc(struct ap_chunk *c, uint32_t nr, uint64_t *addr)
{
	uint32_t align = (uint32_t)1 << (nr > 1 ? 32 - __builtin_clz(nr - 1) : 0);

	for (uint32_t s = 0; s + nr <= c->npages; s += align) {
		uint32_t i;

		for (i = 0; i < nr && !bit_test(c->bits, s + i); i++)
			;
		if (i == nr) {
			bits_set(c->bits, s, nr, true);
			c->used += nr;
			*addr = c->start + ((uint64_t)s << PAGE_SHIFT);
			return 0;
		}
	}
	return -ENOMEM;
}

static int pool_alloc(struct atomic_pools *a, struct atomic_pool *p, uint64_t dma_limit,
		      uint64_t size, uint64_t *addr)
{
	uint32_t nr = (uint32_t)(size >> PAGE_SHIFT);

	for (size_t i = 0; i < p->n; i++) {
		if (chunk_alloc(&p->chunks[i], nr, addr))
			continue;
		p->avail -= size;
		if (*addr + size - 1 > dma_limit) { /* !dma_coherent_ok(): give it back */
			atomic_pool_free(a, *addr, size);
			return -ENOMEM;
		}
		if (p->avail < a->atomic_pool_size)
			a->work_pending = true;
		return 0;
	}
	return -ENOMEM;
}

int atomic_pool_alloc(struct atomic_pools *a, uint64_t dma_limit, uint64_t size, uint64_t *addr)
{
	int first = dma_limit < SZ_16M ? AP_DMA : dma_limit < SZ_4G ? AP_DMA32 : AP_KERNEL;
	static const int next[3] = { -1, AP_DMA, AP_DMA32 }; /* kernel -> DMA32 -> DMA */

	size = ALIGN_UP(size, PAGE_SZ);
	if (!size || size > (PAGE_SZ << MAX_ORDER))
		return -ENOMEM;
	for (int k = first; k >= 0; k = next[k]) {
		struct atomic_pool *p = &a->pool[k];

		if (p->present && !pool_alloc(a, p, dma_limit, size, addr))
			return 0;
	}
	return -ENOMEM;
}

bool atomic_pool_free(struct atomic_pools *a, uint64_t addr, uint64_t size)
{
	size = ALIGN_UP(size, PAGE_SZ);
	for (int k = 0; k < 3; k++) {
		struct atomic_pool *p = &a->pool[k];

		for (size_t i = 0; i < p->n; i++) {
			struct ap_chunk *c = &p->chunks[i];
			uint32_t s, nr = (uint32_t)(size >> PAGE_SHIFT);

			if (addr < c->start ||
			    addr >= c->start + ((uint64_t)c->npages << PAGE_SHIFT))
				continue;
			s = (uint32_t)((addr - c->start) >> PAGE_SHIFT);
			if (s + nr > c->npages)
				return false;
			for (uint32_t j = 0; j < nr; j++)
				if (!bit_test(c->bits, s + j))
					return false;
			bits_set(c->bits, s, nr, false);
			c->used -= nr;
			p->avail += size;
			return true;
		}
	}
	return false;
}

/* atomic_pool_work_fn(): DMA, DMA32, then kernel */
int atomic_pool_run_worker(struct atomic_pools *a, struct guest_mem *g)
{
	a->work_pending = false;
	for (int k = 0; k < 3; k++) {
		struct atomic_pool *p = &a->pool[k];
		int ret;

		if (!p->present || p->avail >= a->atomic_pool_size)
			continue;
		ret = pool_expand(g, p, p->size);
		if (ret == -ENOTRECOVERABLE)
			return ret;
		if (!ret)
			g->n.ap_expansions++;
	}
	return 0;
}

void atomic_pools_destroy(struct atomic_pools *a)
{
	for (int k = 0; k < 3; k++) {
		for (size_t i = 0; i < a->pool[k].n; i++)
			free(a->pool[k].chunks[i].bits);
		free(a->pool[k].chunks);
	}
	memset(a, 0, sizeof(*a));
}
