/* SPDX-License-Identifier: MIT */
/*
 * Layer 5, DMA API.
 *
 * dma-direct for a device that needs unencrypted DMA (kernel/dma/direct.c,
 * force_dma_unencrypted() is true for every device of a CVM):
 *
 * dma_direct_alloc(), legacy: a non-blocking request is served from the
 * atomic pools (dma_direct_use_pool, memory already shared); otherwise a
 * buddy block of get_order(size) from the zone the coherent mask allows
 * (dma_direct_optimal_gfp_mask) and dma_set_decrypted() of PFN_UP(size)
 * pages: one conversion per allocation. A failed decryption leaks the pages
 * (out_leak_pages). No CMA area is modelled, so requests above MAX_ORDER
 * (4 MiB) fail.
 * dma_direct_free(): pool memory goes back to its pool; buddy memory is
 * dma_set_encrypted() first and leaked if that fails.
 * RFC patch 1/4 (SWIOTLB_ALLOC): every dma_alloc_* is swiotlb_alloc(): slots
 * aligned to (PAGE_SIZE << get_order(size)) - 1, no conversion; nothing
 * larger than a 256 KiB segment can be served.
 * Streaming DMA (dma_map_single/page) always bounces (SWIOTLB_FORCE).
 *
 * Allocations and frees run on CPU 0 (driver probe); mappings name a CPU.
 * Background work (swiotlb_dyn_alloc, atomic_pool_work) runs when the call
 * that scheduled it returns.
 */
#include <errno.h>

#include "dma.h"
#include "set_memory.h"
#include "util.h"

int run_workers(struct cvmg *m)
{
	int ret = 0;

	if (m->swiotlb.dyn_pending)
		ret = swiotlb_run_worker(&m->swiotlb);
	if (!ret && m->ap.work_pending)
		ret = atomic_pool_run_worker(&m->ap, &m->mem);
	if (ret == -ENOTRECOVERABLE || m->mem.terminated)
		return -ENOTRECOVERABLE;
	return 0;
}

int cvmg_device_add(struct cvmg *m, const struct cvmg_device_opts *o, uint32_t *id)
{
	if (!m || !id)
		return -EINVAL;
	return devices_add(&m->devs, o, id);
}

/* dma_direct_optimal_gfp_mask(): the zonelist a coherent allocation uses. */
static void coherent_zones(const struct device *d, enum zone_id *hi, enum zone_id *lo)
{
	if (d->dma_limit < SZ_16M) {
		*hi = *lo = ZONE_DMA;
	} else if (d->dma_limit < SZ_4G) {
		*hi = *lo = ZONE_DMA32;
	} else {
		*hi = ZONE_NORMAL;
		*lo = ZONE_DMA32;
	}
}

static int check(struct cvmg *m, uint32_t dev, uint64_t size)
{
	if (!m)
		return -EINVAL;
	if (m->mem.terminated)
		return -ENOTRECOVERABLE;
	if (!m->booted || !devices_get(&m->devs, dev) || !size)
		return -EINVAL;
	return 0;
}

static int finish(struct cvmg *m, int ret)
{
	int w = run_workers(m);

	return w ? w : ret;
}

static int legacy_alloc(struct cvmg *m, struct device *d, uint64_t size, uint64_t *gpa)
{
	unsigned order = get_order(size);
	enum zone_id hi, lo;
	uint64_t pfn;
	int ret;

	if (order > MAX_ORDER)
		return -ENOMEM;
	coherent_zones(d, &hi, &lo);
	if (buddy_alloc(&m->mem.buddy, hi, lo, order, &pfn))
		return -ENOMEM;
	if ((pfn << PAGE_SHIFT) + size - 1 > d->dma_limit) {
		/* !dma_coherent_ok(): retry from DMA32 (__dma_direct_alloc_pages) */
		buddy_free(&m->mem.buddy, pfn, order);
		if (buddy_alloc(&m->mem.buddy, ZONE_DMA32, ZONE_DMA32, order, &pfn))
			return -ENOMEM;
	}
	ret = set_memory(&m->mem, pfn << PAGE_SHIFT, ALIGN_UP(size, PAGE_SZ) / PAGE_SZ, false,
			 CVMG_SITE_DMA_ALLOC);
	if (ret) {
		m->mem.n.dma_leaked_pages += 1ULL << order;
		return ret == -ENOTRECOVERABLE ? ret : -ENOMEM;
	}
	ret = addr_set_add(&m->coherent, pfn << PAGE_SHIFT);
	if (ret)
		return ret;
	*gpa = pfn << PAGE_SHIFT;
	return 0;
}

int cvmg_dma_alloc(struct cvmg *m, uint32_t dev, uint64_t size, uint32_t flags, uint64_t *gpa)
{
	struct device *d;
	uint64_t addr = 0;
	int ret;

	ret = check(m, dev, size);
	if (ret || !gpa || (flags & ~CVMG_DMA_ATOMIC))
		return ret ? ret : -EINVAL;
	d = devices_get(&m->devs, dev);
	if (m->cfg.mode == CVMG_MODE_RFC) {
		uint64_t align = (PAGE_SZ << get_order(size)) - 1;

		/* swiotlb_alloc() has no size check of its own: swiotlb_find_slots()
		 * decides (refusing > 256 KiB up front in 6.12) */
		ret = swiotlb_map_slots(&m->swiotlb, d, 0, 0, size, align, &addr);
	} else if (flags & CVMG_DMA_ATOMIC) {
		ret = atomic_pool_alloc(&m->ap, d->dma_limit, size, &addr);
	} else {
		ret = legacy_alloc(m, d, size, &addr);
	}
	if (ret) {
		m->mem.n.dma_alloc_failures++;
		return finish(m, ret == -ENOTRECOVERABLE ? ret : -ENOMEM);
	}
	m->mem.n.dma_allocs++;
	*gpa = addr;
	return finish(m, 0);
}

int cvmg_dma_free(struct cvmg *m, uint32_t dev, uint64_t gpa, uint64_t size)
{
	unsigned order;
	int ret;

	ret = check(m, dev, size);
	if (ret)
		return ret;
	/* dma_direct_free(): dma_free_from_pool() comes first. An RFC
	 * allocation served by a transient SWIOTLB pool lives in atomic-pool
	 * memory, so it goes back there; swiotlb_free() is never reached and
	 * the transient pool (slots still taken) stays for good. */
	if (swiotlb_in_transient(&m->swiotlb, gpa) && atomic_pool_free(&m->ap, gpa, size)) {
		m->mem.n.dma_frees++;
		m->mem.n.sw_transient_stale++;
		return finish(m, 0);
	}
	if (atomic_pool_free(&m->ap, gpa, size)) {
		m->mem.n.dma_frees++;
		return finish(m, 0);
	}
	if (swiotlb_owns(&m->swiotlb, gpa)) {
		ret = swiotlb_free_slots(&m->swiotlb, gpa); /* swiotlb_free(): slots only */
		if (!ret)
			m->mem.n.dma_frees++;
		return finish(m, ret);
	}
	order = get_order(size);
	if (order > MAX_ORDER || !addr_set_has(&m->coherent, gpa))
		return -EINVAL;
	addr_set_del(&m->coherent, gpa);
	ret = set_memory(&m->mem, gpa, ALIGN_UP(size, PAGE_SZ) / PAGE_SZ, true, CVMG_SITE_DMA_FREE);
	m->mem.n.dma_frees++;
	if (ret) {
		m->mem.n.dma_leaked_pages += 1ULL << order; /* "purposely leak" */
		return finish(m, ret);
	}
	ret = buddy_free(&m->mem.buddy, gpa >> PAGE_SHIFT, order);
	return finish(m, ret);
}

int cvmg_swiotlb_map(struct cvmg *m, uint32_t dev, uint32_t cpu, uint64_t orig_addr, uint64_t size,
		     uint64_t alloc_align_mask, uint64_t *tlb_addr)
{
	int ret = check(m, dev, size);

	if (ret || !tlb_addr)
		return ret ? ret : -EINVAL;
	ret = swiotlb_map_slots(&m->swiotlb, devices_get(&m->devs, dev), cpu, orig_addr, size,
				alloc_align_mask, tlb_addr);
	if (ret)
		m->mem.n.sw_map_failures++;
	else
		m->mem.n.sw_maps++;
	return finish(m, ret);
}

int cvmg_dma_map(struct cvmg *m, uint32_t dev, uint32_t cpu, uint64_t orig_addr, uint64_t size,
		 uint64_t *tlb_addr)
{
	return cvmg_swiotlb_map(m, dev, cpu, orig_addr, size, 0, tlb_addr);
}

int cvmg_dma_unmap(struct cvmg *m, uint32_t dev, uint64_t tlb_addr, uint64_t size)
{
	int ret = check(m, dev, size);

	if (ret)
		return ret;
	return finish(m, swiotlb_unmap_slots(&m->swiotlb, tlb_addr));
}
