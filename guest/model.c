/* SPDX-License-Identifier: MIT */
/*
 * The model's glue: configuration, boot sequence, counters.
 *
 * Boot follows start_kernel() on x86-64 in the order that matters for where
 * things land and in which order they convert:
 *   setup_arch(): e820/memblock (layout.c), sparse_init() allocating the
 *     memmap top-down (2 MiB of struct pages per 128 MiB section, PMD
 *     aligned), the per-CPU shared pages (GHCB on SNP, the
 *     __decrypted per-CPU data of arch/x86/kernel/kvm.c on SNP and KVM PV;
 *     none on TDX), converted one page each;
 *   mm_core_init(): swiotlb_init_remap() (swiotlb.c), memblock_free_all()
 *     (__free_pages_memory: largest aligned blocks, to the tail);
 *   mem_encrypt_init(): swiotlb_update_mem_attributes();
 *   postcore_initcall dma_atomic_pool_init() (atomic_pool.c);
 *   device probe: early DMA (a virtio-rng virtqueue of 8 entries).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define offsetofend(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

int grow_array(void **arr, size_t elem, size_t *cap, size_t need)
{
	size_t ncap;
	void *n;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap : 16;
	while (ncap < need)
		ncap *= 2;
	n = realloc(*arr, ncap * elem);
	if (!n)
		return -ENOMEM;
	*arr = n;
	*cap = ncap;
	return 0;
}

static int normalise(struct cvmg_config *c)
{
	uint64_t ram = c->ram_size;

	if (ram < SZ_256M || !IS_ALIGNED(ram, SZ_1M) || ram > (64ULL << 40))
		return -EINVAL;
	if (!c->cpus)
		c->cpus = 1;
	if (c->cpus > 8192)
		return -EINVAL;
	if ((unsigned)c->mode > CVMG_MODE_RFC || (unsigned)c->platform > CVMG_PLATFORM_KVM_PV)
		return -EINVAL;
	if (c->flags & ~CVMG_F_ALL)
		return -EINVAL;
	if (!c->lowmem_size) /* pc_q35_init(): 0xb0000000 and up -> 2 GiB below 4 GiB */
		c->lowmem_size = ram >= 0xb0000000ULL ? 2 * SZ_1G : ram;
	if (c->lowmem_size > ram || c->lowmem_size > 0xe0000000ULL || c->lowmem_size < SZ_256M ||
	    !IS_ALIGNED(c->lowmem_size, SZ_1M))
		return -EINVAL;
	if (!c->fw_reserved)
		c->fw_reserved = 0x1711000;
	if (!c->kernel_size)
		c->kernel_size = 48 * SZ_1M;
	if (!IS_ALIGNED(c->fw_reserved, PAGE_SZ) || !IS_ALIGNED(c->kernel_size, PAGE_SZ) ||
	    SZ_16M + c->kernel_size + c->fw_reserved + SZ_64M > c->lowmem_size)
		return -EINVAL;
	if (!c->churn_fill_pct)
		c->churn_fill_pct = 90;
	if (c->churn_fill_pct > 95)
		return -EINVAL;
	if (!c->checker_max_records)
		c->checker_max_records = 65536;
	return 0;
}

int cvmg_create(const struct cvmg_config *cfg, struct cvmg **out)
{
	struct cvmg *m;
	int ret;

	if (!cfg || !out || cfg->sz < offsetofend(struct cvmg_config, exit_opaque))
		return -EINVAL;
	for (size_t i = sizeof(*cfg); i < cfg->sz; i++)
		if (((const unsigned char *)cfg)[i])
			return -E2BIG;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	memcpy(&m->cfg, cfg, MIN(cfg->sz, sizeof(*cfg)));
	m->cfg.sz = sizeof(m->cfg);
	ret = normalise(&m->cfg);
	if (!ret) {
		rng_seed(&m->rng, m->cfg.seed);
		m->n.exit_hash = 0xcbf29ce484222325ULL; /* FNV-1a 64 offset basis */
		m->checker.max = m->cfg.checker_max_records;
		ret = layout_init(m);
	}
	if (!ret)
		ret = buddy_init(&m->buddy, &m->rng, m->cfg.flags & CVMG_F_SHUFFLE);
	if (!ret)
		ret = directmap_init(m);
	if (ret) {
		cvmg_destroy(m);
		return ret;
	}
	*out = m;
	return 0;
}

void cvmg_destroy(struct cvmg *m)
{
	if (!m)
		return;
	buddy_destroy(&m->buddy);
	directmap_destroy(&m->dm);
	checker_destroy(&m->checker);
	swiotlb_destroy(&m->swiotlb);
	atomic_pools_destroy(&m->ap);
	coherent_set_destroy(&m->coherent);
	free(m->devs);
	free(m->churn);
	free(m);
}

/* __free_pages_memory(): largest naturally aligned blocks, ascending. */
static int free_range(struct buddy *b, uint64_t start, uint64_t end)
{
	uint64_t s = ALIGN_UP(start, PAGE_SZ) >> PAGE_SHIFT, e = end >> PAGE_SHIFT;

	while (s < e) {
		unsigned order = s ? MIN((unsigned)__builtin_ctzll(s), (unsigned)MAX_ORDER)
				   : (unsigned)MAX_ORDER;
		int ret;

		while (s + (1ULL << order) > e)
			order--;
		ret = buddy_free_boot(b, s, order);
		if (ret)
			return ret;
		s += 1ULL << order;
	}
	return 0;
}

static int memblock_free_all(struct cvmg *m)
{
	const struct layout *l = &m->layout;

	for (int i = 0; i < l->nram; i++) {
		uint64_t cur = l->ram[i].start;
		int ret;

		for (int k = 0; k < l->nresv; k++) {
			const struct range *r = &l->resv[k];

			if (r->end <= cur || r->start >= l->ram[i].end)
				continue;
			if (r->start > cur) {
				ret = free_range(&m->buddy, cur, r->start);
				if (ret)
					return ret;
			}
			cur = MAX(cur, r->end);
		}
		if (cur < l->ram[i].end) {
			ret = free_range(&m->buddy, cur, l->ram[i].end);
			if (ret)
				return ret;
		}
	}
	return 0;
}

static uint32_t percpu_shared_pages(const struct cvmg *m)
{
	if (m->cfg.flags & CVMG_F_NO_EARLY_PERCPU)
		return 0;
	switch (m->cfg.platform) {
	case CVMG_PLATFORM_SNP:
		return 2; /* GHCB page + __decrypted per-CPU data */
	case CVMG_PLATFORM_KVM_PV:
		return 1; /* __decrypted per-CPU data (apf, steal time, PV EOI) */
	case CVMG_PLATFORM_TDX:
		break;
	}
	return 0;
}

/* vring_size() of a split virtqueue with SMP_CACHE_BYTES (64) alignment. */
static uint64_t vring_bytes(uint64_t num)
{
	return ALIGN_UP(16 * num + 2 * (3 + num), 64) + 2 * 3 + 8 * num;
}

int cvmg_boot(struct cvmg *m)
{
	struct layout *l;
	uint64_t *percpu = NULL, sections = 0, addr;
	uint32_t npercpu;
	uint32_t rng_dev;
	int ret;

	if (!m)
		return -EINVAL;
	if (m->terminated)
		return -ENOTRECOVERABLE;
	if (m->booted)
		return -EALREADY;
	l = &m->layout;
	/* sparse_init(): one PMD-aligned buffer for all present sections */
	for (int i = 0; i < l->nram; i++)
		sections +=
			(ALIGN_UP(l->ram[i].end, SZ_128M) - ALIGN_DOWN(l->ram[i].start, SZ_128M)) /
			SZ_128M;
	ret = layout_alloc_top_down(l, sections * SZ_2M, SZ_2M, UINT64_MAX, &addr);
	if (ret)
		return ret;
	npercpu = percpu_shared_pages(m) * m->cfg.cpus;
	if (npercpu) {
		percpu = calloc(npercpu, sizeof(*percpu));
		if (!percpu)
			return -ENOMEM;
	}
	for (uint32_t i = 0; i < npercpu && !ret; i++)
		ret = layout_alloc_top_down(l, PAGE_SZ, PAGE_SZ, UINT64_MAX, &percpu[i]);
	if (!ret)
		ret = swiotlb_boot_reserve(m);
	if (!ret)
		ret = memblock_free_all(m);
	if (!ret && (m->cfg.flags & CVMG_F_SHUFFLE))
		buddy_shuffle(&m->buddy);
	m->booted = !ret;
	for (uint32_t i = 0; i < npercpu && !ret; i++) {
		ret = set_memory(m, percpu[i], 1, false, CVMG_SITE_EARLY_PERCPU);
		if (ret != -ENOTRECOVERABLE)
			ret = 0; /* early_set_memory_decrypted() failures are not fatal */
	}
	free(percpu);
	if (!ret)
		ret = swiotlb_boot_decrypt(m);
	if (!ret)
		ret = atomic_pools_init(m);
	if (!ret)
		ret = run_workers(m);
	if (!ret) {
		struct cvmg_device_opts o = { .sz = sizeof(o), .name = "virtio-rng" };
		uint64_t gpa;

		ret = cvmg_device_add(m, &o, &rng_dev);
		if (!ret)
			ret = cvmg_dma_alloc(m, rng_dev, vring_bytes(8), 0, &gpa);
		if (ret == -ENOMEM)
			ret = 0; /* the device fails to probe; the guest boots */
	}
	return ret;
}

int cvmg_get_stats(const struct cvmg *m, struct cvmg_stats *st)
{
	struct cvmg_stats s;
	size_t sz;

	if (!m || !st || st->sz < offsetofend(struct cvmg_stats, terminated))
		return -EINVAL;
	memset(&s, 0, sizeof(s));
	sz = st->sz;
	s.conversions = m->n.conversions;
	s.conversions_to_shared = m->n.conv_shared;
	s.conversions_to_private = m->n.conv_private;
	s.pages_to_shared = m->n.pages_shared;
	s.pages_to_private = m->n.pages_private;
	s.exits = m->n.exits;
	s.exits_failed = m->n.exits_failed;
	s.exit_hash = m->n.exit_hash;
	s.unaligned = m->checker.total;
	memcpy(s.unaligned_by_site, m->checker.by_site, sizeof(s.unaligned_by_site));
	s.checker_rejected = m->n.checker_rejected;
	s.tdx_accept_calls = m->n.tdx_accepts;
	s.terminated = m->terminated;
	s.swiotlb_boot_start = m->n.sw_boot_start;
	s.swiotlb_boot_bytes = m->n.sw_boot_bytes;
	s.swiotlb_boot_alloc_bytes = m->n.sw_boot_alloc;
	s.swiotlb_nareas = m->n.sw_nareas;
	s.swiotlb_dyn_pools = m->n.sw_dyn_pools;
	s.swiotlb_dyn_bytes = m->n.sw_dyn_bytes;
	s.swiotlb_transient_pools = m->n.sw_transient;
	s.swiotlb_growth_attempts = m->n.sw_growth_attempts;
	s.swiotlb_growth_failures = m->n.sw_growth_failures;
	s.swiotlb_maps = m->n.sw_maps;
	s.swiotlb_map_failures = m->n.sw_map_failures;
	s.swiotlb_used_slots = m->n.sw_used;
	s.atomic_pool_size = m->ap.atomic_pool_size;
	for (int k = 0; k < 3; k++)
		s.atomic_pool_bytes[k] = m->ap.pool[k].size;
	s.atomic_pool_expansions = m->n.ap_expansions;
	s.atomic_pool_expand_failures = m->n.ap_expand_failures;
	s.dma_allocs = m->n.dma_allocs;
	s.dma_alloc_failures = m->n.dma_alloc_failures;
	s.dma_frees = m->n.dma_frees;
	s.dma_leaked_pages = m->n.dma_leaked_pages;
	s.managed_pages = m->buddy.managed;
	s.free_pages = m->buddy.free_pages;
	for (unsigned o = 0; o <= MAX_ORDER; o++) {
		s.free_blocks[o] = buddy_free_blocks(&m->buddy, o);
		if (o >= 9)
			s.free_2m_blocks += s.free_blocks[o] << (o - 9);
		for (int z = 0; z < NR_ZONES; z++)
			s.free_blocks_zone[z][o] = m->buddy.lists[z][o].count;
	}
	s.churn_live_pages = m->churn_pages;
	memcpy(st, &s, MIN(sz, sizeof(s)));
	st->sz = sz;
	return 0;
}

size_t cvmg_checker_records(const struct cvmg *m)
{
	return m ? m->checker.len : 0;
}

int cvmg_checker_get(const struct cvmg *m, size_t i, struct cvmg_unaligned *rec)
{
	size_t sz;

	if (!m || !rec || rec->sz < offsetofend(struct cvmg_unaligned, to_private))
		return -EINVAL;
	if (i >= m->checker.len)
		return -ENOENT;
	sz = rec->sz;
	memcpy(rec, &m->checker.recs[i], MIN(sz, sizeof(*rec)));
	rec->sz = sz;
	return 0;
}

const char *cvmg_site_name(enum cvmg_site site)
{
	static const char *const names[CVMG_SITE_COUNT] = {
		"user",	       "early_percpu", "swiotlb_boot", "swiotlb_dynamic",
		"atomic_pool", "dma_alloc",    "dma_free",
	};

	return (unsigned)site < CVMG_SITE_COUNT ? names[site] : "?";
}

const char *cvmg_platform_name(enum cvmg_platform p)
{
	switch (p) {
	case CVMG_PLATFORM_SNP:
		return "snp";
	case CVMG_PLATFORM_TDX:
		return "tdx";
	case CVMG_PLATFORM_KVM_PV:
		return "kvm_pv";
	}
	return "?";
}

const char *cvmg_mode_name(enum cvmg_mode mode)
{
	switch (mode) {
	case CVMG_MODE_LEGACY:
		return "legacy";
	case CVMG_MODE_RFC:
		return "rfc";
	}
	return "?";
}
