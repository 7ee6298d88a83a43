/* SPDX-License-Identifier: MIT */
/*
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
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct device *dev_get(struct cvmg *m, uint32_t id)
{
	return id < m->ndevs ? &m->devs[id] : NULL;
}

int run_workers(struct cvmg *m)
{
	int ret = 0;

	if (m->swiotlb.dyn_pending)
		ret = swiotlb_run_worker(m);
	if (!ret && m->ap.work_pending)
		ret = atomic_pool_run_worker(m);
	if (ret == -ENOTRECOVERABLE || m->terminated)
		return -ENOTRECOVERABLE;
	return 0;
}

static uint64_t set_slot(const struct coherent_set *s, uint64_t key)
{
	return (key * 0x9e3779b97f4a7c15ULL) >> (64 - __builtin_ctzll(s->cap));
}

static bool set_has(const struct coherent_set *s, uint64_t key)
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

static void set_put_nogrow(struct coherent_set *s, uint64_t key)
{
	uint64_t i = set_slot(s, key);

	while (s->keys[i])
		i = (i + 1) & (s->cap - 1);
	s->keys[i] = key + 1;
	s->len++;
}

static int set_add(struct coherent_set *s, uint64_t key)
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

static void set_del(struct coherent_set *s, uint64_t key)
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

int coherent_set_add(struct coherent_set *s, uint64_t key)
{
	return set_add(s, key);
}

bool coherent_set_has(const struct coherent_set *s, uint64_t key)
{
	return set_has(s, key);
}

void coherent_set_del(struct coherent_set *s, uint64_t key)
{
	if (set_has(s, key))
		set_del(s, key);
}

void coherent_set_destroy(struct coherent_set *s)
{
	free(s->keys);
	memset(s, 0, sizeof(*s));
}

static bool valid_mask(uint32_t mask)
{
	return !(mask & (mask + 1u)); /* 2^k - 1 */
}

int cvmg_device_add(struct cvmg *m, const struct cvmg_device_opts *o, uint32_t *id)
{
	struct cvmg_device_opts opts = { 0 };
	struct device *d;
	size_t cap = m ? m->devs_cap : 0;
	int ret;

	if (!m || !id)
		return -EINVAL;
	if (o) {
		if (o->sz < offsetof(struct cvmg_device_opts, min_align_mask) + sizeof(uint32_t))
			return -EINVAL;
		if (o->sz > sizeof(opts)) {
			for (size_t i = sizeof(opts); i < o->sz; i++)
				if (((const unsigned char *)o)[i])
					return -E2BIG;
		}
		memcpy(&opts, o, MIN(o->sz, sizeof(opts)));
	}
	if (!opts.dma_bits)
		opts.dma_bits = 64;
	if (opts.dma_bits < 24 || opts.dma_bits > 64 || !valid_mask(opts.min_align_mask))
		return -EINVAL;
	ret = grow_array((void **)&m->devs, sizeof(*m->devs), &cap, m->ndevs + 1);
	m->devs_cap = (uint32_t)cap;
	if (ret)
		return ret;
	d = &m->devs[m->ndevs];
	memset(d, 0, sizeof(*d));
	strncpy(d->name, opts.name ? opts.name : "dev", sizeof(d->name) - 1);
	d->dma_bits = opts.dma_bits;
	d->dma_limit = opts.dma_bits == 64 ? UINT64_MAX : (1ULL << opts.dma_bits) - 1;
	d->min_align_mask = opts.min_align_mask;
	*id = m->ndevs++;
	return 0;
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
	if (m->terminated)
		return -ENOTRECOVERABLE;
	if (!m->booted || !dev_get(m, dev) || !size)
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
	if (buddy_alloc(&m->buddy, hi, lo, order, &pfn))
		return -ENOMEM;
	if ((pfn << PAGE_SHIFT) + size - 1 > d->dma_limit) {
		/* !dma_coherent_ok(): retry from DMA32 (__dma_direct_alloc_pages) */
		buddy_free(&m->buddy, pfn, order);
		if (buddy_alloc(&m->buddy, ZONE_DMA32, ZONE_DMA32, order, &pfn))
			return -ENOMEM;
	}
	ret = set_memory(m, pfn << PAGE_SHIFT, ALIGN_UP(size, PAGE_SZ) / PAGE_SZ, false,
			 CVMG_SITE_DMA_ALLOC);
	if (ret) {
		m->n.dma_leaked_pages += 1ULL << order;
		return ret == -ENOTRECOVERABLE ? ret : -ENOMEM;
	}
	ret = set_add(&m->coherent, pfn << PAGE_SHIFT);
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
	d = dev_get(m, dev);
	if (m->cfg.mode == CVMG_MODE_RFC) {
		uint64_t align = (PAGE_SZ << get_order(size)) - 1;

		/* swiotlb_alloc() has no size check of its own: swiotlb_find_slots()
		 * decides (refusing > 256 KiB up front in 6.12) */
		ret = swiotlb_map_slots(m, dev, 0, 0, size, align, &addr);
	} else if (flags & CVMG_DMA_ATOMIC) {
		ret = atomic_pool_alloc(m, d->dma_limit, size, &addr);
	} else {
		ret = legacy_alloc(m, d, size, &addr);
	}
	if (ret) {
		m->n.dma_alloc_failures++;
		return finish(m, ret == -ENOTRECOVERABLE ? ret : -ENOMEM);
	}
	m->n.dma_allocs++;
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
	if (swiotlb_in_transient(m, gpa) && atomic_pool_free(m, gpa, size)) {
		m->n.dma_frees++;
		m->n.sw_transient_stale++;
		return finish(m, 0);
	}
	if (atomic_pool_free(m, gpa, size)) {
		m->n.dma_frees++;
		return finish(m, 0);
	}
	if (swiotlb_owns(m, gpa)) {
		ret = swiotlb_free_slots(m, gpa); /* swiotlb_free(): slots only */
		if (!ret)
			m->n.dma_frees++;
		return finish(m, ret);
	}
	order = get_order(size);
	if (order > MAX_ORDER || !set_has(&m->coherent, gpa))
		return -EINVAL;
	set_del(&m->coherent, gpa);
	ret = set_memory(m, gpa, ALIGN_UP(size, PAGE_SZ) / PAGE_SZ, true, CVMG_SITE_DMA_FREE);
	m->n.dma_frees++;
	if (ret) {
		m->n.dma_leaked_pages += 1ULL << order; /* "purposely leak" */
		return finish(m, ret);
	}
	ret = buddy_free(&m->buddy, gpa >> PAGE_SHIFT, order);
	return finish(m, ret);
}

int cvmg_swiotlb_map(struct cvmg *m, uint32_t dev, uint32_t cpu, uint64_t orig_addr, uint64_t size,
		     uint64_t alloc_align_mask, uint64_t *tlb_addr)
{
	int ret = check(m, dev, size);

	if (ret || !tlb_addr)
		return ret ? ret : -EINVAL;
	ret = swiotlb_map_slots(m, dev, cpu, orig_addr, size, alloc_align_mask, tlb_addr);
	if (ret)
		m->n.sw_map_failures++;
	else
		m->n.sw_maps++;
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
	return finish(m, swiotlb_unmap_slots(m, tlb_addr));
}
