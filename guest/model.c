/* SPDX-License-Identifier: MIT */
/*
 * Layer 6, the composed model: configuration, create/destroy, the public
 * conversions, statistics, checker records and names. The boot sequence is
 * boot.c's; each part is its own file (see guest/README.md for the layers).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cvmg.h"
#include "set_memory.h"
#include "util.h"

#define offsetofend(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

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
	m->mem.cfg = &m->cfg;
	swiotlb_init(&m->swiotlb, &m->mem, &m->ap);
	ret = normalise(&m->cfg);
	if (!ret) {
		rng_seed(&m->rng, m->cfg.seed);
		m->mem.n.exit_hash = 0xcbf29ce484222325ULL; /* FNV-1a 64 offset basis */
		m->mem.checker.max = m->cfg.checker_max_records;
		ret = layout_init(&m->mem.layout, &m->cfg);
	}
	if (!ret)
		ret = buddy_init(&m->mem.buddy, &m->rng, m->cfg.flags & CVMG_F_SHUFFLE);
	if (!ret)
		ret = directmap_init(&m->mem.dm, &m->mem.layout,
				     !(m->cfg.flags & CVMG_F_NO_GBPAGES));
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
	buddy_destroy(&m->mem.buddy);
	directmap_destroy(&m->mem.dm);
	checker_destroy(&m->mem.checker);
	swiotlb_destroy(&m->swiotlb);
	atomic_pools_destroy(&m->ap);
	addr_set_destroy(&m->coherent);
	addr_set_destroy(&m->mem.early_shared);
	devices_destroy(&m->devs);
	churn_destroy(&m->churn);
	free(m);
}

int cvmg_set_memory_decrypted(struct cvmg *m, uint64_t gpa, uint64_t npages)
{
	if (!m)
		return -EINVAL;
	return set_memory(&m->mem, gpa, npages, false, CVMG_SITE_USER);
}

int cvmg_set_memory_encrypted(struct cvmg *m, uint64_t gpa, uint64_t npages)
{
	if (!m)
		return -EINVAL;
	return set_memory(&m->mem, gpa, npages, true, CVMG_SITE_USER);
}

int cvmg_get_stats(const struct cvmg *m, struct cvmg_stats *st)
{
	struct cvmg_stats s;
	size_t sz;

	if (!m || !st || st->sz < offsetofend(struct cvmg_stats, terminated))
		return -EINVAL;
	memset(&s, 0, sizeof(s));
	sz = st->sz;
	s.conversions = m->mem.n.conversions;
	s.conversions_to_shared = m->mem.n.conv_shared;
	s.conversions_to_private = m->mem.n.conv_private;
	s.pages_to_shared = m->mem.n.pages_shared;
	s.pages_to_private = m->mem.n.pages_private;
	s.exits = m->mem.n.exits;
	s.exits_failed = m->mem.n.exits_failed;
	s.exit_hash = m->mem.n.exit_hash;
	s.unaligned = m->mem.checker.total;
	memcpy(s.unaligned_by_site, m->mem.checker.by_site, sizeof(s.unaligned_by_site));
	s.checker_rejected = m->mem.n.checker_rejected;
	s.tdx_accept_calls = m->mem.n.tdx_accepts;
	s.terminated = m->mem.terminated;
	s.swiotlb_boot_start = m->mem.n.sw_boot_start;
	s.swiotlb_boot_bytes = m->mem.n.sw_boot_bytes;
	s.swiotlb_boot_alloc_bytes = m->mem.n.sw_boot_alloc;
	s.swiotlb_nareas = m->mem.n.sw_nareas;
	s.swiotlb_dyn_pools = m->mem.n.sw_dyn_pools;
	s.swiotlb_dyn_bytes = m->mem.n.sw_dyn_bytes;
	s.swiotlb_transient_pools = m->mem.n.sw_transient;
	s.swiotlb_growth_attempts = m->mem.n.sw_growth_attempts;
	s.swiotlb_growth_failures = m->mem.n.sw_growth_failures;
	s.swiotlb_maps = m->mem.n.sw_maps;
	s.swiotlb_map_failures = m->mem.n.sw_map_failures;
	s.swiotlb_used_slots = m->mem.n.sw_used;
	s.atomic_pool_size = m->ap.atomic_pool_size;
	for (int k = 0; k < 3; k++)
		s.atomic_pool_bytes[k] = m->ap.pool[k].size;
	s.atomic_pool_expansions = m->mem.n.ap_expansions;
	s.atomic_pool_expand_failures = m->mem.n.ap_expand_failures;
	s.dma_allocs = m->mem.n.dma_allocs;
	s.dma_alloc_failures = m->mem.n.dma_alloc_failures;
	s.dma_frees = m->mem.n.dma_frees;
	s.dma_leaked_pages = m->mem.n.dma_leaked_pages;
	s.managed_pages = m->mem.buddy.managed;
	s.free_pages = m->mem.buddy.free_pages;
	for (unsigned o = 0; o <= MAX_ORDER; o++) {
		s.free_blocks[o] = buddy_free_blocks(&m->mem.buddy, o);
		if (o >= 9)
			s.free_2m_blocks += s.free_blocks[o] << (o - 9);
		for (int z = 0; z < NR_ZONES; z++)
			s.free_blocks_zone[z][o] = m->mem.buddy.lists[z][o].count;
	}
	s.churn_live_pages = m->churn.pages;
	s.early_conversions = m->mem.n.early_conversions;
	s.early_exits = m->mem.n.early_exits;
	s.bss_decrypted_start = m->bss_dec_start;
	s.bss_decrypted_unused_pages = m->bss_dec_unused;
	s.swiotlb_transient_stale_pools = m->mem.n.sw_transient_stale;
	memcpy(st, &s, MIN(sz, sizeof(s)));
	st->sz = sz;
	return 0;
}

size_t cvmg_checker_records(const struct cvmg *m)
{
	return m ? m->mem.checker.len : 0;
}

int cvmg_checker_get(const struct cvmg *m, size_t i, struct cvmg_unaligned *rec)
{
	size_t sz;

	if (!m || !rec || rec->sz < offsetofend(struct cvmg_unaligned, to_private))
		return -EINVAL;
	if (i >= m->mem.checker.len)
		return -ENOENT;
	sz = rec->sz;
	memcpy(rec, &m->mem.checker.recs[i], MIN(sz, sizeof(*rec)));
	rec->sz = sz;
	return 0;
}

const char *cvmg_site_name(enum cvmg_site site)
{
	static const char *const names[CVMG_SITE_COUNT] = {
		"user",	       "early_percpu", "swiotlb_boot", "swiotlb_dynamic",
		"atomic_pool", "dma_alloc",    "dma_free",     "bss_decrypted",
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
