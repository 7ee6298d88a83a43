/* SPDX-License-Identifier: MIT */
/*
 * Layer 6, the composed model: cvmg_boot(), the guest's boot. It follows
 * start_kernel() on x86-64 in the order that matters for where things land
 * and in which order they convert:
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

#include "dma.h"
#include "set_memory.h"
#include "shape.h"
#include "util.h"
#include "vring.h"

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
	const struct layout *l = &m->mem.layout;

	for (int i = 0; i < l->nram; i++) {
		uint64_t cur = l->ram[i].start;
		int ret;

		for (int k = 0; k < l->nresv; k++) {
			const struct range *r = &l->resv[k];

			if (r->end <= cur || r->start >= l->ram[i].end)
				continue;
			if (r->start > cur) {
				ret = free_range(&m->mem.buddy, cur, r->start);
				if (ret)
					return ret;
			}
			cur = MAX(cur, r->end);
		}
		if (cur < l->ram[i].end) {
			ret = free_range(&m->mem.buddy, cur, l->ram[i].end);
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
	int ret = layout_alloc_top_down(&m->mem.layout, nunits * u, SZ_2M, UINT64_MAX, base);

	for (uint64_t i = 0; !ret && i < nunits; i++) {
		uint64_t b = *base + i * u;

		if (i >= cpus)
			ret = layout_unreserve(&m->mem.layout, b, u);
		else if (u > PCPU_SIZE_SUM)
			ret = layout_unreserve(&m->mem.layout, b + PCPU_SIZE_SUM,
					       u - PCPU_SIZE_SUM);
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
			ret = layout_reserve(&m->mem.layout, b, u);
		else if (u > PCPU_SIZE_SUM)
			ret = layout_reserve(&m->mem.layout, b + PCPU_SIZE_SUM, u - PCPU_SIZE_SUM);
	}
	return ret;
}

static uint64_t bss_decrypted_start(const struct cvmg *m)
{
	uint64_t img = ALIGN_DOWN(MIN(m->cfg.kernel_size, KERNEL_IMAGE_MAX), SZ_2M);

	return img >= SZ_2M ? SZ_16M + img - SZ_2M : 0;
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
	const struct layout *l = &m->mem.layout;
	uint64_t bss = m->bss_dec_start;

	if (!bss)
		return 0;
	if (m->cfg.platform == CVMG_PLATFORM_SNP) {
		counters_conversion(&m->mem.n, 512, false, true);
		return shape_snp_msr_psc(&m->mem, bss, 512, false);
	}
	if (m->cfg.platform != CVMG_PLATFORM_KVM_PV)
		return 0;
	for (int i = 0; i < l->nram; i++) {
		uint64_t s = l->ram[i].start, e = l->ram[i].end;

		if (s == 0) {
			shape_raw_exit(&m->mem, 0, 0xa0000 / PAGE_SZ,
				       CVMG_MAP_GPA_RANGE_ENCRYPTED |
					       CVMG_MAP_GPA_RANGE_PAGE_SZ_4K);
			counters_conversion(&m->mem.n, 0, true, true);
			s = SZ_1M;
		}
		shape_raw_exit(&m->mem, s, (e - s) / PAGE_SZ,
			       CVMG_MAP_GPA_RANGE_ENCRYPTED | CVMG_MAP_GPA_RANGE_PAGE_SZ_4K);
		counters_conversion(&m->mem.n, 0, true, true);
	}
	return set_memory_early(&m->mem, bss, SZ_2M, false);
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
		ret = set_memory(&m->mem, tail, np, true, CVMG_SITE_BSS_DECRYPTED);
	if (ret)
		return ret == -ENOTRECOVERABLE ? ret : 0;
	m->bss_dec_unused = np;
	return free_range(&m->mem.buddy, tail, m->bss_dec_start + SZ_2M);
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
			ret = set_memory_early(&m->mem, page + off[k], len[k], false);
			if (ret == -ENOTRECOVERABLE)
				return ret;
		}
	}
	for (uint32_t cpu = 0; snp && cpu < m->cfg.cpus; cpu++) {
		uint64_t data;

		/* memblock reserves the 16 bytes past two pages; the rest of
		 * that page is never a whole free page, so reserve it whole */
		ret = layout_alloc_top_down(&m->mem.layout,
					    ALIGN_UP(SEV_RUNTIME_DATA_SIZE, PAGE_SZ), PAGE_SZ,
					    UINT64_MAX, &data);
		if (ret)
			return ret; /* "Can't allocate SEV-ES runtime data": panic */
		ret = set_memory_early(&m->mem, data, PAGE_SZ, false);
		if (ret == -ENOTRECOVERABLE)
			return ret;
	}
	return 0;
}

int cvmg_boot(struct cvmg *m)
{
	struct layout *l;
	uint64_t sections = 0, addr, pcpu_base = 0, pcpu_unit = 0;
	uint32_t rng_dev;
	int ret;

	if (!m)
		return -EINVAL;
	if (m->mem.terminated)
		return -ENOTRECOVERABLE;
	if (m->booted)
		return -EALREADY;
	l = &m->mem.layout;
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
	ret = swiotlb_boot_reserve(&m->swiotlb);
	if (!ret)
		ret = memblock_free_all(m);
	if (!ret && (m->cfg.flags & CVMG_F_SHUFFLE))
		buddy_shuffle(&m->mem.buddy);
	m->booted = !ret;
	if (!ret)
		ret = swiotlb_boot_decrypt(&m->swiotlb);
	if (!ret)
		ret = atomic_pools_init(&m->ap, &m->mem);
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
