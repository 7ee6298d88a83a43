/* SPDX-License-Identifier: MIT */
/*
 * The model's glue: configuration, boot sequence, counters.
 *
 * Boot follows start_kernel() on x86-64 in the order that matters for where
 * things land and in which order they convert:
 *   startup_64: sme_postprocess_startup() makes .bss..decrypted shared (SNP:
 *     512 MSR-protocol exits);
 *   setup_arch(): e820/memblock (layout.c), kvm_init_platform() (KVM PV:
 *     hypercalls per e820 RAM entry and for .bss..decrypted), sparse_init()
 *     allocating the memmap top-down (2 MiB of struct pages per 128 MiB
 *     section, PMD aligned);
 *   setup_per_cpu_areas(): the per-CPU first chunk (pcpu_embed_first_chunk);
 *   smp_prepare_boot_cpu(): sev_map_percpu_data() (SNP, KVM PV), three
 *     early_set_memory_decrypted() per CPU on its __decrypted page;
 *   trap_init(): sev_es_init_vc_handling() (SNP), a memblock block and an
 *     early-decrypted GHCB page per CPU;
 *   mm_core_init(): swiotlb_init_remap() (swiotlb.c), memblock_free_all()
 *     (__free_pages_memory: largest aligned blocks, to the tail);
 *   mem_encrypt_init(): swiotlb_update_mem_attributes();
 *   postcore_initcall dma_atomic_pool_init() (atomic_pool.c);
 *   device probe: early DMA (a virtio-rng virtqueue of 8 entries);
 *   free_initmem(): mem_encrypt_free_decrypted_mem() converts the unused
 *     tail of .bss..decrypted back (SNP, KVM PV) and frees it.
 * Early conversions (set_memory_early, shape_snp_msr_psc, shape_raw_exit)
 * never pass the RFC patch 5 checker.
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
	coherent_set_destroy(&m->early_shared);
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

/* The per-CPU first chunk (mm/percpu.c: pcpu_embed_first_chunk, called by
 * arch/x86/kernel/setup_percpu.c: setup_per_cpu_areas with atom_size =
 * PMD_SIZE). A Debian-like 6.12 kernel has ~220 KiB of static per-CPU data
 * ("s225280"), 8 KiB reserved and 28 KiB dynamic (include/linux/percpu.h
 * without CONFIG_RANDOM_KMALLOC_CACHES / CONFIG_MEM_ALLOC_PROFILING): 256 KiB
 * per CPU. .data..percpu..decrypted is the last page of the static area
 * (PERCPU_DECRYPTED_SECTION at the end of PERCPU_INPUT,
 * include/asm-generic/vmlinux.lds.h). */
#define PCPU_STATIC (220 * 1024ULL)
#define PCPU_SIZE_SUM (256 * 1024ULL)
#define PCPU_DECRYPTED_OFF (PCPU_STATIC - PAGE_SZ)
/* struct sev_es_runtime_data (arch/x86/coco/sev/core.c): ghcb_page,
 * backup_ghcb, two bools and dr7 */
#define SEV_RUNTIME_DATA_SIZE (2 * PAGE_SZ + 16)
/* .bss..decrypted (arch/x86/kernel/vmlinux.lds.S: BSS_DECRYPTED), one PMD;
 * in use: kvmclock.c's hv_clock_boot (a page) and wall_clock, core.c's
 * boot_ghcb_page (a page): 3 pages; the rest is __start_bss_decrypted_unused
 * .. __end_bss_decrypted */
#define BSS_DECRYPTED_USED_PAGES 3
#define KERNEL_IMAGE_MAX (48 * SZ_1M)

/* pcpu_build_alloc_info(): units per 2 MiB allocation (one group, no NUMA):
 * the smallest waste-acceptable count that keeps the allocations fewest. */
static uint32_t pcpu_upa(uint32_t cpus)
{
	uint64_t last = UINT64_MAX;
	uint32_t best = 1;

	for (uint32_t upa = (uint32_t)(SZ_2M / PCPU_SIZE_SUM); upa; upa--) {
		uint64_t allocs, wasted;

		if (SZ_2M % upa || (SZ_2M / upa) % PAGE_SZ)
			continue;
		allocs = (cpus + upa - 1) / upa;
		wasted = allocs * upa - cpus;
		if (wasted > cpus / 3)
			continue;
		if (allocs > last)
			break;
		last = allocs;
		best = upa;
	}
	return best;
}

/* pcpu_embed_first_chunk(): one 2 MiB-aligned block of nr_units units
 * (pcpu_fc_alloc: memblock, top-down), then the unused units and each unit's
 * tail beyond size_sum go back to memblock (pcpu_fc_free). */
static int percpu_first_chunk(struct cvmg *m, uint64_t *base, uint64_t *unit)
{
	uint32_t cpus = m->cfg.cpus, upa = pcpu_upa(cpus);
	uint64_t u = SZ_2M / upa, nunits = (cpus + upa - 1) / upa * upa;
	int ret = layout_alloc_top_down(&m->layout, nunits * u, SZ_2M, UINT64_MAX, base);

	for (uint64_t i = 0; !ret && i < nunits; i++) {
		uint64_t b = *base + i * u;

		if (i >= cpus)
			ret = layout_unreserve(&m->layout, b, u);
		else if (u > PCPU_SIZE_SUM)
			ret = layout_unreserve(&m->layout, b + PCPU_SIZE_SUM, u - PCPU_SIZE_SUM);
	}
	*unit = u;
	return ret;
}

/* What the freed unit tails still hold after the model's own memblock
 * allocations (the GHCB blocks take the highest) is treated as taken by the
 * early memblock and slab allocations the model does not make (log buffer,
 * hash tables, page tables, slab caches): reserved again, so the buddy
 * allocator does not get a few small blocks that a real kernel would have
 * used long before the first DMA allocation. */
static int percpu_tails_taken(struct cvmg *m, uint64_t base, uint64_t u)
{
	uint64_t nunits = SZ_2M / u * ((m->cfg.cpus + SZ_2M / u - 1) / (SZ_2M / u));
	int ret = 0;

	for (uint64_t i = 0; !ret && i < nunits; i++) {
		uint64_t b = base + i * u;

		if (i >= m->cfg.cpus)
			ret = layout_reserve(&m->layout, b, u);
		else if (u > PCPU_SIZE_SUM)
			ret = layout_reserve(&m->layout, b + PCPU_SIZE_SUM, u - PCPU_SIZE_SUM);
	}
	return ret;
}

static uint64_t bss_decrypted_start(const struct cvmg *m)
{
	uint64_t img = ALIGN_DOWN(MIN(m->cfg.kernel_size, KERNEL_IMAGE_MAX), SZ_2M);

	return img >= SZ_2M ? SZ_16M + img - SZ_2M : 0;
}

static void count_early(struct cvmg *m, uint64_t npages, bool to_private)
{
	m->n.conversions++;
	m->n.early_conversions++;
	if (to_private) {
		m->n.conv_private++;
		m->n.pages_private += npages;
	} else {
		m->n.conv_shared++;
		m->n.pages_shared += npages;
	}
}

/* Before setup_arch()'s memory setup: on SNP, startup_64 ->
 * sme_postprocess_startup() (arch/x86/kernel/head64.c) makes
 * .bss..decrypted shared, early_snp_set_memory_shared() per PMD: one
 * MSR-protocol exit per page. On KVM PV, kvm_init_platform()
 * (arch/x86/kernel/kvm.c) sends KVM_HC_MAP_GPA_RANGE(encrypted, 4K hint)
 * for each e820 RAM entry (the model's: [0, 640 KiB), [1 MiB, lowmem) and
 * the RAM above 4 GiB), then early_set_mem_enc_dec_hypercall() for the
 * section: one hypercall per leaf of the kernel mapping, a 2 MiB PMD. TDX
 * clears no C-bit (sme_me_mask is 0): nothing. */
static int boot_bss_decrypted(struct cvmg *m)
{
	const struct layout *l = &m->layout;
	uint64_t bss = m->bss_dec_start;

	if (!bss)
		return 0;
	if (m->cfg.platform == CVMG_PLATFORM_SNP) {
		count_early(m, 512, false);
		return shape_snp_msr_psc(m, bss, 512, false);
	}
	if (m->cfg.platform != CVMG_PLATFORM_KVM_PV)
		return 0;
	for (int i = 0; i < l->nram; i++) {
		uint64_t s = l->ram[i].start, e = l->ram[i].end;

		if (s == 0) {
			shape_raw_exit(m, 0, 0xa0000 / PAGE_SZ,
				       CVMG_MAP_GPA_RANGE_ENCRYPTED |
					       CVMG_MAP_GPA_RANGE_PAGE_SZ_4K);
			count_early(m, 0, true);
			s = SZ_1M;
		}
		shape_raw_exit(m, s, (e - s) / PAGE_SZ,
			       CVMG_MAP_GPA_RANGE_ENCRYPTED | CVMG_MAP_GPA_RANGE_PAGE_SZ_4K);
		count_early(m, 0, true);
	}
	return set_memory_early(m, bss, SZ_2M, false);
}

/* free_initmem() -> mem_encrypt_free_decrypted_mem()
 * (arch/x86/mm/mem_encrypt_amd.c): with sme_me_mask set (SNP, KVM PV) the
 * unused tail is set_memory_encrypted() — the regular path, which RFC
 * patch 5's checker sees (never 2 MiB aligned); if that fails the pages stay
 * shared and reserved ("failed to free unused decrypted pages"); else, and
 * on TDX, free_init_pages() hands them to the buddy allocator. */
static int free_initmem(struct cvmg *m)
{
	uint64_t tail = m->bss_dec_start + BSS_DECRYPTED_USED_PAGES * PAGE_SZ;
	uint64_t np = SZ_2M / PAGE_SZ - BSS_DECRYPTED_USED_PAGES;
	int ret = 0;

	if (!m->bss_dec_start)
		return 0;
	if (m->cfg.platform != CVMG_PLATFORM_TDX)
		ret = set_memory(m, tail, np, true, CVMG_SITE_BSS_DECRYPTED);
	if (ret)
		return ret == -ENOTRECOVERABLE ? ret : 0;
	m->bss_dec_unused = np;
	return free_range(&m->buddy, tail, m->bss_dec_start + SZ_2M);
}

/* Per-CPU shared pages at early boot, in start_kernel() order:
 * smp_prepare_boot_cpu() -> kvm_smp_prepare_boot_cpu() -> sev_map_percpu_data()
 * (arch/x86/kernel/kvm.c; SNP and KVM PV): for every possible CPU three
 * early_set_memory_decrypted() calls, apf_reason, steal_time and
 * kvm_apic_eoi, all on the CPU's .data..percpu..decrypted page; then, SNP
 * only, trap_init() -> sev_es_init_vc_handling() (arch/x86/coco/sev/core.c):
 * per CPU alloc_runtime_data() (memblock_alloc_node, its own block) and
 * init_ghcb(): early_set_memory_decrypted() of the GHCB page. */
static int boot_early_percpu(struct cvmg *m, uint64_t pcpu_base, uint64_t unit)
{
	bool snp = m->cfg.platform == CVMG_PLATFORM_SNP;
	int ret = 0;

	if ((m->cfg.flags & CVMG_F_NO_EARLY_PERCPU) || m->cfg.platform == CVMG_PLATFORM_TDX)
		return 0;
	for (uint32_t cpu = 0; cpu < m->cfg.cpus; cpu++) {
		uint64_t page = pcpu_base + cpu * unit + PCPU_DECRYPTED_OFF;
		static const uint64_t off[3] = { 0, 64, 128 }, len[3] = { 64, 64, 8 };

		for (int k = 0; k < 3; k++) {
			ret = set_memory_early(m, page + off[k], len[k], false);
			if (ret == -ENOTRECOVERABLE)
				return ret;
		}
	}
	for (uint32_t cpu = 0; snp && cpu < m->cfg.cpus; cpu++) {
		uint64_t data;

		/* memblock reserves the 16 bytes past two pages; the rest of
		 * that page is never a whole free page, so reserve it whole */
		ret = layout_alloc_top_down(&m->layout, ALIGN_UP(SEV_RUNTIME_DATA_SIZE, PAGE_SZ),
					    PAGE_SZ, UINT64_MAX, &data);
		if (ret)
			return ret; /* "Can't allocate SEV-ES runtime data": panic */
		ret = set_memory_early(m, data, PAGE_SZ, false);
		if (ret == -ENOTRECOVERABLE)
			return ret;
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
	uint64_t sections = 0, addr, pcpu_base = 0, pcpu_unit = 0;
	uint32_t rng_dev;
	int ret;

	if (!m)
		return -EINVAL;
	if (m->terminated)
		return -ENOTRECOVERABLE;
	if (m->booted)
		return -EALREADY;
	l = &m->layout;
	m->bss_dec_start = (m->cfg.flags & CVMG_F_NO_BSS_DECRYPTED) ? 0 : bss_decrypted_start(m);
	ret = boot_bss_decrypted(m);
	if (ret == -ENOTRECOVERABLE)
		return ret;
	/* sparse_init(): one PMD-aligned buffer for all present sections */
	for (int i = 0; i < l->nram; i++)
		sections +=
			(ALIGN_UP(l->ram[i].end, SZ_128M) - ALIGN_DOWN(l->ram[i].start, SZ_128M)) /
			SZ_128M;
	ret = layout_alloc_top_down(l, sections * SZ_2M, SZ_2M, UINT64_MAX, &addr);
	if (!ret)
		ret = percpu_first_chunk(m, &pcpu_base, &pcpu_unit);
	if (!ret)
		ret = boot_early_percpu(m, pcpu_base, pcpu_unit);
	if (!ret)
		ret = percpu_tails_taken(m, pcpu_base, pcpu_unit);
	if (ret)
		return ret;
	ret = swiotlb_boot_reserve(m);
	if (!ret)
		ret = memblock_free_all(m);
	if (!ret && (m->cfg.flags & CVMG_F_SHUFFLE))
		buddy_shuffle(&m->buddy);
	m->booted = !ret;
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
	if (!ret)
		ret = free_initmem(m);
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
	s.early_conversions = m->n.early_conversions;
	s.early_exits = m->n.early_exits;
	s.bss_decrypted_start = m->bss_dec_start;
	s.bss_decrypted_unused_pages = m->bss_dec_unused;
	s.swiotlb_transient_stale_pools = m->n.sw_transient_stale;
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
