/* SPDX-License-Identifier: MIT */
/*
 * Layer 4, pools.
 *
 * SWIOTLB of the guest (kernel/dma/swiotlb.c, include/linux/swiotlb.h; the
 * slot search follows 6.12's swiotlb_search_pool_area(), v6.6's
 * swiotlb_area_find_slots() under CVMG_F_SWIOTLB_OLD_ALIGN).
 *
 * Boot pool size: confidential guests ask for 6 % of memblock_phys_mem_size()
 * (layout.c; CVMG_F_SWIOTLB_TOTAL_RAM: of all RAM) clamped
 * to [IO_TLB_DEFAULT_SIZE = 64 MiB, 1 GiB] (arch/x86/mm/mem_encrypt.c:
 * mem_encrypt_setup_arch). RFC patch 4 asks for 8 % clamped to
 * [64 MiB, 1 GiB + 256 MiB] — the clamp does apply to the 8 %, with the
 * higher ceiling — and patch 2 allocates the pool ALIGN(bytes, 2 MiB) with
 * 2 MiB alignment. swiotlb_adjust_size() rounds to whole 128-slot segments;
 * then swiotlb_init_remap() sets the areas (num_possible_cpus() rounded up to
 * a power of two) and round_up_default_nslabs() rounds the slot count up to
 * a power of two (since v6.0; CVMG_F_SWIOTLB_EXACT_SIZE skips this). The
 * pool is memblock_alloc_low(): top-down below 4 GiB (no SWIOTLB_ANY on x86
 * CVMs); if it does not fit, the slot count is halved, down to 1 MiB.
 * swiotlb_update_mem_attributes() decrypts PAGE_ALIGN(nslabs << 11) bytes
 * once, ignoring the result.
 *
 * Slots are 2 KiB; a mapping never crosses a 128-slot segment (256 KiB);
 * each area is searched next-fit from its index, areas round-robin from the
 * current CPU's; pools newest first (list_add_rcu).
 *
 * Dynamic SWIOTLB (CONFIG_SWIOTLB_DYNAMIC; RFC patch 3 selects it): when
 * every pool is full, swiotlb_find_slots() schedules swiotlb_dyn_alloc() and
 * at once creates a transient pool sized to the request with GFP_NOWAIT,
 * which in a CVM comes from the DMA atomic pool (swiotlb_alloc_tlb: memory
 * already decrypted, no conversion) and is freed at unmap. The worker
 * allocates min(default_nslabs, 4 MiB) from the buddy (GFP_DMA32: the pool's
 * phys_limit is 4 GiB), halving on failure down to IO_TLB_MIN_SLABS = 1 MiB,
 * and decrypts PFN_UP(bytes) pages of a buddy block of get_order(bytes)
 * (alloc_dma_pages; if that fails it encrypts them again and frees them, or
 * leaks them when that fails too — under an enforcing checker a 1 MiB pool
 * is refused both ways and leaked). The RFC keeps IO_TLB_MIN_SLABS: its
 * growth also halves down to 1 MiB (swiotlb_dyn_alloc is unchanged by it).
 * Slot search and the 256 KiB refusal: see slot_masks() and
 * swiotlb_map_slots() (6.12 by default, CVMG_F_SWIOTLB_OLD_ALIGN and
 * CVMG_F_SWIOTLB_GROW_ANY_SIZE for older kernels). swiotlb_free() never
 * deletes a transient pool (release_slots); an RFC coherent allocation that
 * a transient pool served does not even reach it: dma_direct_free() first
 * tries dma_free_from_pool() (kernel/dma/direct.c), which takes the memory
 * back into the atomic pool, and the transient pool stays (dma.c).
 * When no block of the needed order is free, growth fails (counted) and the
 * mapping fails unless the transient pool could serve it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "swiotlb.h"
#include "atomic_pool.h"
#include "set_memory.h"
#include "util.h"

static uint64_t nr_slots(uint64_t size)
{
	return (size + IO_TLB_SIZE - 1) >> IO_TLB_SHIFT;
}

static uint64_t roundup_pow2(uint64_t x)
{
	return x <= 1 ? 1 : 1ULL << (64 - __builtin_clzll(x - 1));
}

static bool is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static uint32_t limit_nareas(uint32_t nareas, uint64_t nslots)
{
	if (nslots < (uint64_t)nareas * IO_TLB_SEGSIZE)
		return (uint32_t)(nslots / IO_TLB_SEGSIZE);
	return nareas;
}

static struct swiotlb_pool *pool_new(uint64_t start, uint32_t nslabs, uint32_t nareas,
				     bool transient)
{
	struct swiotlb_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->list = malloc(nslabs);
	p->alloc_nslots = calloc(nslabs, 1);
	p->areas = calloc(nareas, sizeof(*p->areas));
	if (!p->list || !p->alloc_nslots || !p->areas) {
		free(p->list);
		free(p->alloc_nslots);
		free(p->areas);
		free(p);
		return NULL;
	}
	p->start = start;
	p->nslabs = nslabs;
	p->nareas = nareas;
	p->area_nslabs = nslabs / nareas;
	p->transient = transient;
	/* free slots to the segment end; a transient pool of fewer slots
	 * than a segment counts only what it has */
	for (uint32_t i = 0; i < nslabs; i++)
		p->list[i] = (uint8_t)MIN(IO_TLB_SEGSIZE - (i % IO_TLB_SEGSIZE), nslabs - i);
	return p;
}

static void pool_free(struct swiotlb_pool *p)
{
	if (!p)
		return;
	free(p->list);
	free(p->alloc_nslots);
	free(p->areas);
	free(p);
}

static int pool_add(struct swiotlb *s, struct swiotlb_pool *p)
{
	int ret = grow_array((void **)&s->pools, sizeof(*s->pools), &s->cap, s->npools + 1);

	if (ret)
		return ret;
	s->pools[s->npools++] = p;
	return 0;
}

static void pool_remove(struct swiotlb *s, struct swiotlb_pool *p)
{
	for (size_t i = 0; i < s->npools; i++) {
		if (s->pools[i] == p) {
			memmove(&s->pools[i], &s->pools[i + 1],
				(s->npools - i - 1) * sizeof(*s->pools));
			s->npools--;
			return;
		}
	}
}

void swiotlb_init(struct swiotlb *s, struct guest_mem *mem, struct atomic_pools *ap)
{
	memset(s, 0, sizeof(*s));
	s->mem = mem;
	s->ap = ap;
}

/* The boot pool's size in bytes, before the slot-count rounding. */
static uint64_t boot_size_request(const struct guest_mem *g)
{
	uint64_t total = g->layout.total, size;

	if (g->cfg->mode == CVMG_MODE_RFC) {
		size = total / 100 * 8 + total % 100 * 8 / 100;
		return MIN(MAX(size, IO_TLB_DEFAULT_SIZE), SZ_1G + SZ_256M);
	}
	size = total / 100 * 6 + total % 100 * 6 / 100;
	return MIN(MAX(size, IO_TLB_DEFAULT_SIZE), SZ_1G);
}

int swiotlb_boot_reserve(struct swiotlb *s)
{
	struct guest_mem *g = s->mem;
	bool rfc = g->cfg->mode == CVMG_MODE_RFC;
	uint64_t size = ALIGN_UP(boot_size_request(g), IO_TLB_SIZE);
	uint64_t nslabs = ALIGN_UP(size >> IO_TLB_SHIFT, IO_TLB_SEGSIZE);
	uint32_t nareas = (uint32_t)roundup_pow2(g->cfg->cpus);
	uint64_t start = 0, bytes = 0;
	struct swiotlb_pool *p;

	if (!(g->cfg->flags & CVMG_F_SWIOTLB_EXACT_SIZE)) {
		/* round_up_default_nslabs() */
		if (nslabs < (uint64_t)IO_TLB_SEGSIZE * nareas)
			nslabs = (uint64_t)IO_TLB_SEGSIZE * nareas;
		if (!is_pow2(nslabs))
			nslabs = roundup_pow2(nslabs);
	}
	s->default_nareas = nareas;
	s->can_grow = rfc || (g->cfg->flags & CVMG_F_SWIOTLB_DYNAMIC);
	s->phys_limit = SZ_4G - 1; /* ARCH_LOW_ADDRESS_LIMIT */
	nareas = limit_nareas(nareas, nslabs);
	for (;;) {
		uint64_t align = rfc ? SZ_2M : PAGE_SZ;

		bytes = ALIGN_UP(nslabs << IO_TLB_SHIFT, align);
		if (!layout_alloc_top_down(&g->layout, bytes, align, SZ_4G, &start))
			break;
		if (nslabs <= IO_TLB_MIN_SLABS)
			return 0; /* no bounce buffer at all: every mapping fails */
		nslabs = ALIGN_UP(nslabs >> 1, IO_TLB_SEGSIZE);
		nareas = limit_nareas(nareas, nslabs);
	}
	s->default_nslabs = nslabs;
	p = pool_new(start, (uint32_t)nslabs, nareas, false);
	if (!p || pool_add(s, p)) {
		pool_free(p);
		return -ENOMEM;
	}
	g->n.sw_boot_start = start;
	g->n.sw_boot_bytes = nslabs << IO_TLB_SHIFT;
	g->n.sw_boot_alloc = bytes;
	g->n.sw_nareas = nareas;
	return 0;
}

int swiotlb_boot_decrypt(struct swiotlb *s)
{
	struct swiotlb_pool *p;
	int ret;

	if (!s->npools)
		return 0;
	p = s->pools[0];
	ret = set_memory(s->mem, p->start,
			 ALIGN_UP((uint64_t)p->nslabs << IO_TLB_SHIFT, PAGE_SZ) / PAGE_SZ, false,
			 CVMG_SITE_SWIOTLB_BOOT);
	/* swiotlb_update_mem_attributes() ignores the result; only a
	 * terminated guest stops the boot. */
	return ret == -ENOTRECOVERABLE ? ret : 0;
}

/* swiotlb_area_find_slots(): the first slot at or after the area's index
 * (wrapping inside the area) whose address matches @orig_addr under @mask
 * and that starts @nslots free slots within its segment. */
static int64_t area_find(struct swiotlb_pool *p, uint32_t a, uint64_t want_addr,
			 uint64_t alloc_size, uint64_t mask)
{
	struct swiotlb_area *area = &p->areas[a];
	uint64_t nslots = nr_slots(alloc_size);
	uint64_t base = (uint64_t)a * p->area_nslabs;
	uint64_t stride = (mask >> IO_TLB_SHIFT) + 1;
	uint64_t want = ((want_addr & mask) >> IO_TLB_SHIFT) & (stride - 1);
	uint64_t have = ((p->start >> IO_TLB_SHIFT) + base) & (stride - 1);
	uint64_t first = (want - have) & (stride - 1); /* first matching index */
	uint64_t idx = area->index, i;

	if (nslots > p->area_nslabs - area->used)
		return -1;
	for (int pass = 0; pass < 2; pass++) {
		uint64_t lo = pass ? 0 : idx, hi = pass ? idx : p->area_nslabs;

		i = lo + ((first - lo) & (stride - 1));
		for (; i < hi; i += stride)
			if (p->list[base + i] >= nslots)
				goto found;
	}
	return -1;
found:
	for (uint64_t k = base + i; k < base + i + nslots; k++)
		p->list[k] = 0;
	p->alloc_nslots[base + i] = (uint8_t)nslots;
	{
		uint8_t count = 0;

		for (int64_t k = (int64_t)(base + i) - 1;
		     k >= 0 && (k % IO_TLB_SEGSIZE) != IO_TLB_SEGSIZE - 1 && p->list[k]; k--)
			p->list[k] = ++count;
	}
	area->index = (uint32_t)(i + nslots >= p->area_nslabs ? 0 : i + nslots);
	area->used += (uint32_t)nslots;
	p->used += (uint32_t)nslots;
	return (int64_t)(base + i);
}

static int64_t pool_find(struct swiotlb_pool *p, uint32_t cpu, uint64_t want_addr,
			 uint64_t alloc_size, uint64_t mask)
{
	uint32_t start = cpu & (p->nareas - 1), a = start;

	do {
		int64_t idx = area_find(p, a, want_addr, alloc_size, mask);

		if (idx >= 0)
			return idx;
		if (++a >= p->nareas)
			a = 0;
	} while (a != start);
	return -1;
}

/*
 * The slot constraint as two masks folded into one: the slot address must
 * equal @want under @mask. 6.12 (swiotlb_search_pool_area, since v6.9):
 * alloc_align_mask, or PAGE_SIZE - 1 for >= 4 KiB when neither it nor the
 * device's min_align_mask is set, plus the slot bits, must be zero; the
 * min_align_mask bits above those must match orig_addr (not checked for
 * orig_addr 0); the offset kept is orig_addr & min_align_mask &
 * (alloc_align_mask | slot bits) (swiotlb_align_offset).
 * CVMG_F_SWIOTLB_OLD_ALIGN: v6.6 swiotlb_area_find_slots(), one mask
 * (min_align_mask | alloc_align_mask | PAGE_SIZE - 1 for >= 4 KiB, slot bits
 * cleared) under which the slot must match orig_addr, offset
 * orig_addr & min_align_mask & slot bits.
 */
static void slot_masks(uint32_t flags, const struct device *d, uint64_t orig_addr, uint64_t size,
		       uint64_t alloc_align_mask, uint64_t *offset, uint64_t *alloc_size,
		       uint64_t *mask, uint64_t *want)
{
	if (flags & CVMG_F_SWIOTLB_OLD_ALIGN) {
		*offset = orig_addr & d->min_align_mask & (IO_TLB_SIZE - 1);
		*alloc_size = size + *offset;
		*mask = (uint64_t)d->min_align_mask | alloc_align_mask;
		if (*alloc_size >= PAGE_SZ)
			*mask |= PAGE_SZ - 1;
		*mask &= ~(IO_TLB_SIZE - 1);
		*want = orig_addr & *mask;
	} else {
		uint64_t amask = alloc_align_mask, imask = d->min_align_mask;

		*offset = orig_addr & imask & (amask | (IO_TLB_SIZE - 1));
		*alloc_size = size + *offset;
		if (!amask && !imask && *alloc_size >= PAGE_SZ)
			amask = PAGE_SZ - 1;
		amask |= IO_TLB_SIZE - 1;
		imask = orig_addr ? imask & ~amask : 0;
		*mask = (amask | imask) & ~(IO_TLB_SIZE - 1);
		*want = orig_addr & imask;
	}
}

int swiotlb_map_slots(struct swiotlb *s, const struct device *d, uint32_t cpu, uint64_t orig_addr,
		      uint64_t size, uint64_t alloc_align_mask, uint64_t *tlb_addr)
{
	struct guest_mem *g = s->mem;
	uint64_t offset, alloc_size, mask, want;
	struct swiotlb_pool *p;
	uint64_t backing;
	int64_t idx;

	slot_masks(g->cfg->flags, d, orig_addr, size, alloc_align_mask, &offset, &alloc_size, &mask,
		   &want);
	/* swiotlb_find_slots() in 6.12 refuses more than one segment before
	 * searching (so before scheduling growth); older kernels searched,
	 * grew and tried a transient pool that could not serve it either */
	if (alloc_size > IO_TLB_SIZE * IO_TLB_SEGSIZE &&
	    !(g->cfg->flags & CVMG_F_SWIOTLB_GROW_ANY_SIZE))
		return -ENOMEM;
	for (size_t i = s->npools; i-- > 0;) {
		p = s->pools[i];
		if (p->transient)
			continue;
		idx = pool_find(p, cpu, want, alloc_size, mask);
		if (idx >= 0)
			goto found;
	}
	if (!s->can_grow)
		return -ENOMEM;
	s->dyn_pending = true; /* schedule_work(&mem->dyn_alloc) */
	/* transient pool: GFP_NOWAIT -> dma_alloc_from_pool() in a CVM */
	if (atomic_pool_alloc(s->ap, d->dma_limit, nr_slots(alloc_size) << IO_TLB_SHIFT, &backing))
		return -ENOMEM;
	p = pool_new(backing, (uint32_t)nr_slots(alloc_size), 1, true);
	if (!p || pool_add(s, p)) {
		pool_free(p);
		atomic_pool_free(s->ap, backing, nr_slots(alloc_size) << IO_TLB_SHIFT);
		return -ENOMEM;
	}
	p->backing_bytes = nr_slots(alloc_size) << IO_TLB_SHIFT;
	g->n.sw_transient++;
	idx = pool_find(p, 0, want, alloc_size, mask);
	if (idx < 0) {
		pool_remove(s, p);
		atomic_pool_free(s->ap, p->start, p->backing_bytes);
		pool_free(p);
		return -ENOMEM;
	}
found:
	g->n.sw_used += nr_slots(alloc_size);
	*tlb_addr = p->start + ((uint64_t)idx << IO_TLB_SHIFT) + offset;
	return 0;
}

static struct swiotlb_pool *pool_of(const struct swiotlb *s, uint64_t addr)
{
	for (size_t i = 0; i < s->npools; i++) {
		struct swiotlb_pool *p = s->pools[i];

		if (addr >= p->start && addr < p->start + ((uint64_t)p->nslabs << IO_TLB_SHIFT))
			return p;
	}
	return NULL;
}

bool swiotlb_in_transient(const struct swiotlb *s, uint64_t addr)
{
	const struct swiotlb_pool *p = pool_of(s, addr);

	return p && p->transient;
}

bool swiotlb_owns(const struct swiotlb *s, uint64_t addr)
{
	return pool_of(s, addr) != NULL;
}

/* swiotlb_release_slots() / swiotlb_tbl_unmap_single(): a mapping's
 * transient pool is deleted whole (swiotlb_del_transient) when @del_transient;
 * swiotlb_free() (the RFC's coherent frees) only releases the slots, so a
 * transient pool stays, unsearchable, and its atomic-pool memory leaks. */
static int release_slots(struct swiotlb *s, uint64_t tlb_addr, bool del_transient)
{
	struct swiotlb_pool *p = pool_of(s, tlb_addr);
	uint64_t idx, nslots, seg_end;
	uint8_t count;

	if (!p)
		return -EINVAL;
	idx = (tlb_addr - p->start) >> IO_TLB_SHIFT;
	nslots = p->alloc_nslots[idx];
	if (!nslots)
		return -EINVAL;
	s->mem->n.sw_used -= nslots;
	if (p->transient && del_transient) {
		pool_remove(s, p);
		atomic_pool_free(s->ap, p->start, p->backing_bytes);
		pool_free(p);
		return 0;
	}
	seg_end = MIN(ALIGN_UP(idx + 1, IO_TLB_SEGSIZE), p->nslabs);
	count = idx + nslots < seg_end ? p->list[idx + nslots] : 0;
	for (uint64_t k = idx + nslots; k-- > idx;)
		p->list[k] = ++count;
	p->alloc_nslots[idx] = 0;
	for (int64_t k = (int64_t)idx - 1;
	     k >= 0 && (k % IO_TLB_SEGSIZE) != IO_TLB_SEGSIZE - 1 && p->list[k]; k--)
		p->list[k] = ++count;
	p->areas[idx / p->area_nslabs].used -= (uint32_t)nslots;
	p->used -= (uint32_t)nslots;
	return 0;
}

int swiotlb_unmap_slots(struct swiotlb *s, uint64_t tlb_addr)
{
	return release_slots(s, tlb_addr, true);
}

int swiotlb_free_slots(struct swiotlb *s, uint64_t tlb_addr)
{
	return release_slots(s, tlb_addr, false);
}

/* swiotlb_dyn_alloc() -> swiotlb_alloc_pool(NULL, IO_TLB_MIN_SLABS,
 * default_nslabs, default_nareas, phys_limit, GFP_KERNEL) */
int swiotlb_run_worker(struct swiotlb *s)
{
	struct guest_mem *g = s->mem;
	uint64_t nslabs =
		s->default_nslabs ? s->default_nslabs : IO_TLB_DEFAULT_SIZE >> IO_TLB_SHIFT;
	const uint64_t minslabs = IO_TLB_MIN_SLABS; /* also in RFC mode */
	uint32_t nareas = s->default_nareas ? s->default_nareas : 1;
	const uint64_t max_slabs = (PAGE_SZ >> IO_TLB_SHIFT) << MAX_ORDER;
	struct swiotlb_pool *p;
	uint64_t pfn, bytes;
	int ret;

	s->dyn_pending = false;
	g->n.sw_growth_attempts++;
	if (nslabs > max_slabs) {
		nslabs = max_slabs;
		nareas = limit_nareas(nareas, nslabs);
	}
	for (;;) {
		unsigned order;

		bytes = nslabs << IO_TLB_SHIFT;
		order = get_order(bytes);
		/* alloc_dma_pages(): buddy block, then decrypt PFN_UP(bytes) */
		if (!buddy_alloc(&g->buddy, ZONE_DMA32, ZONE_DMA32, order, &pfn)) {
			uint64_t np = ALIGN_UP(bytes, PAGE_SZ) / PAGE_SZ;

			ret = set_memory(g, pfn << PAGE_SHIFT, np, false,
					 CVMG_SITE_SWIOTLB_DYNAMIC);
			if (!ret)
				break;
			if (ret == -ENOTRECOVERABLE)
				return ret;
			/* "Intentional leak if pages cannot be encrypted again." */
			ret = set_memory(g, pfn << PAGE_SHIFT, np, true, CVMG_SITE_SWIOTLB_DYNAMIC);
			if (ret == -ENOTRECOVERABLE)
				return ret;
			if (!ret)
				buddy_free(&g->buddy, pfn, order);
			else
				g->n.dma_leaked_pages += 1ULL << order;
		}
		if (nslabs <= minslabs) {
			g->n.sw_growth_failures++;
			return 0;
		}
		nslabs = ALIGN_UP(nslabs >> 1, IO_TLB_SEGSIZE);
		nareas = limit_nareas(nareas, nslabs);
	}
	p = pool_new(pfn << PAGE_SHIFT, (uint32_t)nslabs, nareas ? nareas : 1, false);
	if (!p || pool_add(s, p)) {
		pool_free(p);
		return -ENOMEM;
	}
	g->n.sw_dyn_pools++;
	g->n.sw_dyn_bytes += bytes;
	return 0;
}

void swiotlb_destroy(struct swiotlb *s)
{
	for (size_t i = 0; i < s->npools; i++)
		pool_free(s->pools[i]);
	free(s->pools);
	memset(s, 0, sizeof(*s));
}
