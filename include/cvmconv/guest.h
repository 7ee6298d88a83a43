/* SPDX-License-Identifier: MIT */
/*
 * cvmconv guest model — a deterministic model of what a Linux confidential
 * guest converts between private and shared memory, and when, with the
 * changes of the RFC "x86: CVMs: Align memory conversions to 2M granularity"
 * (Jan 2024) as a switch.
 *
 * The model owns a simulated guest: RAM layout and memblock, a buddy
 * allocator, the boot SWIOTLB pool and its dynamic growth, the DMA atomic
 * pools, dma-direct coherent allocations, a few device drivers' DMA demand,
 * the 2 MiB alignment checker of RFC patch 5, and the platform code that turns
 * set_memory_decrypted()/set_memory_encrypted() into the exits KVM delivers
 * to the VMM (SEV-SNP page state changes, TDX MapGPA, KVM_HC_MAP_GPA_RANGE).
 * Every exit is handed to a callback with the KVM_HC_MAP_GPA_RANGE argument
 * encoding (args[0..2]), so it can be fed to cvmconv_map_gpa_range().
 *
 * Conventions as in <cvmconv.h>: 0 or a negative errno; structs passed in or
 * out begin with `sz`; addresses and sizes are bytes unless named npages
 * (4 KiB pages). The model allocates no memory proportional to guest RAM
 * beyond small per-GiB / per-2 MiB tables; everything else grows with the work
 * asked of it. It is deterministic: the same config (seed included) and the
 * same calls give the same exit stream.
 *
 * Thread safety: a model is not thread-safe; use one thread per model.
 * Distinct models share nothing (the library has no global mutable state).
 *
 * This header needs only libc headers and compiles as C11 and C++.
 */
#ifndef CVMCONV_GUEST_H
#define CVMCONV_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CVMG_VERSION_MAJOR 0
#define CVMG_VERSION_MINOR 1
#define CVMG_VERSION_PATCH 0

/* KVM_HC_MAP_GPA_RANGE args[2] encoding; identical to CVMCONV_MAP_GPA_RANGE_*
 * of <cvmconv.h> (include/uapi/linux/kvm_para.h). */
#define CVMG_MAP_GPA_RANGE_PAGE_SZ_MASK 3ULL
#define CVMG_MAP_GPA_RANGE_PAGE_SZ_4K 0ULL
#define CVMG_MAP_GPA_RANGE_PAGE_SZ_2M 1ULL
#define CVMG_MAP_GPA_RANGE_PAGE_SZ_1G 2ULL
#define CVMG_MAP_GPA_RANGE_ENCRYPTED (1ULL << 4) /* to private */

#define CVMG_PAGE_SIZE 4096ULL
#define CVMG_HUGE_SIZE (2ULL << 20)
#define CVMG_MAX_ORDER 10 /* buddy orders 0..10: the largest block is 4 MiB */

struct cvmg; /* opaque model of one guest */

/* What the guest kernel does: mainline behaviour, or the RFC's changes
 * (patch 1+4: every dma_alloc_* from SWIOTLB; patch 4: pool 8 % clamped to
 * [64 MiB, 1 GiB + 256 MiB] and 2 MiB aligned; patch 3: dynamic SWIOTLB;
 * patch 5: the 2 MiB conversion check). */
enum cvmg_mode {
	CVMG_MODE_LEGACY = 0,
	CVMG_MODE_RFC = 1,
};

/* How set_memory_{de,en}crypted() reaches the host. */
enum cvmg_platform {
	CVMG_PLATFORM_SNP = 0, /* SEV-SNP GHCB page state change (arch/x86/coco/sev/core.c) */
	CVMG_PLATFORM_TDX = 1, /* TDG.VP.VMCALL<MapGPA> (arch/x86/coco/tdx/tdx.c) */
	CVMG_PLATFORM_KVM_PV =
		2, /* KVM_HC_MAP_GPA_RANGE per mapping leaf (arch/x86/kernel/kvm.c) */
};

/* Which model function asked for a conversion (the checker's call site). */
enum cvmg_site {
	CVMG_SITE_USER = 0,	       /* cvmg_set_memory_{de,en}crypted() called directly */
	CVMG_SITE_EARLY_PERCPU = 1,    /* per-CPU shared pages at early boot (GHCB, PV data);
	                                * early_set_memory_decrypted() bypasses the checker,
	                                * so this site never counts (kept for the ABI) */
	CVMG_SITE_SWIOTLB_BOOT = 2,    /* swiotlb_update_mem_attributes(): the boot pool */
	CVMG_SITE_SWIOTLB_DYNAMIC = 3, /* swiotlb_dyn_alloc(): a dynamic pool */
	CVMG_SITE_ATOMIC_POOL = 4,     /* atomic_pool_expand(): a DMA atomic pool chunk */
	CVMG_SITE_DMA_ALLOC = 5,       /* dma_direct_alloc(): dma_set_decrypted() */
	CVMG_SITE_DMA_FREE = 6,	       /* dma_direct_free(): dma_set_encrypted() */
	CVMG_SITE_BSS_DECRYPTED = 7,   /* free_initmem(): mem_encrypt_free_decrypted_mem() */
	CVMG_SITE_COUNT = 8,
};
#define CVMG_SITE_SLOTS 16 /* array size in struct cvmg_stats; sites are < this */

/* cvmg_config.flags */
#define CVMG_F_SWIOTLB_DYNAMIC (1u << 0)    /* legacy: CONFIG_SWIOTLB_DYNAMIC=y (RFC: always) */
#define CVMG_F_SWIOTLB_EXACT_SIZE (1u << 1) /* no power-of-two round-up of the boot pool */
#define CVMG_F_CHECKER_ENFORCE (1u << 2)    /* RFC patch 5 as posted: unaligned -> -EINVAL */
#define CVMG_F_TDX_SPLIT_ALIGNED (1u << 3)  /* KVM variant: MapGPA chunks end at 2 MiB GPAs */
#define CVMG_F_SHUFFLE (1u << 4)	    /* page_alloc.shuffle=1 (seeded free-list order) */
#define CVMG_F_NO_GBPAGES (1u << 5)	    /* direct map without 1 GiB leaves */
#define CVMG_F_NO_EARLY_PERCPU (1u << 6)    /* skip the early per-CPU shared pages */
#define CVMG_F_NO_BSS_DECRYPTED (1u << 7)   /* skip the .bss..decrypted section's exits */
/*
 * Kernel-version switches; the default (flag clear) is Linux 6.12.
 * CVMG_F_AP_NEEDS_NORMAL: newer kernel/dma/pool.c, the kernel atomic pool
 *   only when ZONE_NORMAL has managed pages (has_managed_zone).
 * CVMG_F_SWIOTLB_GROW_ANY_SIZE: swiotlb_find_slots() without its 256 KiB
 *   check (older kernels): a larger request schedules growth first.
 * CVMG_F_SWIOTLB_OLD_ALIGN: the pre-6.9 slot search, orig_addr matched
 *   under the page mask too (not under min_align_mask only).
 * CVMG_F_SWIOTLB_TOTAL_RAM: the boot pool sized from all RAM instead of
 *   memblock_phys_mem_size() (what the model did before issue 18).
 */
#define CVMG_F_AP_NEEDS_NORMAL (1u << 8)
#define CVMG_F_SWIOTLB_GROW_ANY_SIZE (1u << 9)
#define CVMG_F_SWIOTLB_OLD_ALIGN (1u << 10)
#define CVMG_F_SWIOTLB_TOTAL_RAM (1u << 11)
#define CVMG_F_ALL                                                                                \
	(CVMG_F_SWIOTLB_DYNAMIC | CVMG_F_SWIOTLB_EXACT_SIZE | CVMG_F_CHECKER_ENFORCE |            \
	 CVMG_F_TDX_SPLIT_ALIGNED | CVMG_F_SHUFFLE | CVMG_F_NO_GBPAGES | CVMG_F_NO_EARLY_PERCPU | \
	 CVMG_F_NO_BSS_DECRYPTED | CVMG_F_AP_NEEDS_NORMAL | CVMG_F_SWIOTLB_GROW_ANY_SIZE |        \
	 CVMG_F_SWIOTLB_OLD_ALIGN | CVMG_F_SWIOTLB_TOTAL_RAM)

/*
 * The VMM side of one exit: @gpa, @npages (4 KiB units, also for 2 MiB
 * entries) and @attrs exactly as KVM puts them in hypercall.args[0..2].
 * Return the value the VMM would write to hypercall.ret: 0, or a negative
 * KVM error (e.g. -CVMCONV_KVM_EINVAL). The guest reacts as Linux does: SNP
 * terminates, TDX fails the conversion (-EIO), KVM PV ignores it.
 */
typedef int (*cvmg_exit_fn)(void *opaque, uint64_t gpa, uint64_t npages, uint64_t attrs);

struct cvmg_config {
	size_t sz;	   /* sizeof(struct cvmg_config) */
	uint64_t ram_size; /* guest RAM: multiple of 1 MiB, 256 MiB .. 64 TiB */
	uint32_t cpus;	   /* possible CPUs, 0 = 1, at most 8192 */
	uint64_t seed;	   /* seeds every random choice of the model */
	enum cvmg_mode mode;
	enum cvmg_platform platform;
	uint32_t flags;	   /* CVMG_F_* */
	cvmg_exit_fn exit; /* NULL: every exit succeeds */
	void *exit_opaque;
	uint64_t lowmem_size;	      /* RAM below 4 GiB, 1 MiB multiple; 0 = QEMU q35 rule
	                               * (2 GiB when RAM >= 2.75 GiB, else all); <= 3.5 GiB */
	uint64_t fw_reserved;	      /* firmware area at the top of low RAM, 4 KiB multiple;
	                               * 0 = 23.07 MiB (0x1711000, OVMF-like, not 2 MiB sized) */
	uint64_t kernel_size;	      /* kernel image reserved at 16 MiB; 0 = 48 MiB */
	uint32_t churn_fill_pct;      /* cvmg_churn(): % of managed RAM in use; 0 = 90 */
	uint32_t checker_max_records; /* unaligned records kept (counts are exact); 0 = 65536 */
};

/**
 * cvmg_create() - create a guest model (nothing is booted yet).
 * @cfg: configuration; copied.
 * @out: receives the model.
 *
 * Return: 0, or -EINVAL (bad sz, RAM size, cpus, mode, platform, flags,
 * lowmem, fw_reserved or kernel_size), -E2BIG (cfg->sz larger than known
 * with a non-zero tail), -ENOMEM.
 * Thread safety: safe (touches no shared state).
 */
int cvmg_create(const struct cvmg_config *cfg, struct cvmg **out);

/**
 * cvmg_destroy() - free a model. No exits are produced.
 * @m: model or NULL.
 * Thread safety: not thread-safe.
 */
void cvmg_destroy(struct cvmg *m);

/**
 * cvmg_boot() - boot the guest in start_kernel() order: .bss..decrypted made
 * shared (SNP: sme_postprocess_startup; KVM PV: kvm_init_platform's
 * hypercalls), memblock layout (firmware, kernel image, memmap, the per-CPU
 * first chunk), the early per-CPU shared pages (sev_map_percpu_data; SNP:
 * also the GHCBs) through early_set_memory_decrypted() (never seen by the
 * checker), the SWIOTLB boot pool placed top-down below 4 GiB,
 * memblock_free_all() into the buddy allocator, the SWIOTLB boot pool
 * decryption, the DMA atomic pools, early DMA (a virtio-rng virtqueue), and
 * free_initmem() (the unused tail of .bss..decrypted converted back and
 * freed).
 *
 * Return: 0, -EALREADY (booted before), -ENOMEM (the layout does not fit),
 * -ENOTRECOVERABLE (an SNP page state change failed: the guest terminated),
 * or a conversion's error (-EINVAL under CVMG_F_CHECKER_ENFORCE).
 * Thread safety: not thread-safe.
 */
int cvmg_boot(struct cvmg *m);

/**
 * cvmg_set_memory_decrypted() / cvmg_set_memory_encrypted() - convert
 * @npages 4 KiB pages at @gpa to shared / private through the model's
 * set_memory path (checker, direct-map split, platform exits). Works before
 * cvmg_boot() too (the direct map then only knows the RAM layout).
 *
 * Return: 0; -EINVAL (unaligned, zero, outside RAM; or refused by the
 * enforcing checker); -EIO (TDX: the VMM failed a MapGPA chunk);
 * -ENOTRECOVERABLE (SNP: a PSC failed, the guest terminated, and every later
 * call fails the same way).
 * Thread safety: not thread-safe.
 */
int cvmg_set_memory_decrypted(struct cvmg *m, uint64_t gpa, uint64_t npages);
int cvmg_set_memory_encrypted(struct cvmg *m, uint64_t gpa, uint64_t npages);

struct cvmg_device_opts {
	size_t sz;		 /* sizeof(struct cvmg_device_opts) */
	const char *name;	 /* copied (31 characters kept); NULL = "dev" */
	uint32_t dma_bits;	 /* DMA mask width, 24..64; 0 = 64 */
	uint32_t min_align_mask; /* dma_set_min_align_mask(); e.g. 4095 for NVMe */
};

/**
 * cvmg_device_add() - add a DMA-capable device (force_dma_unencrypted()).
 * @dev: receives the device id used by the DMA calls.
 * Return: 0, -EINVAL, -E2BIG (unknown non-zero tail), -ENOMEM.
 * Thread safety: not thread-safe.
 */
int cvmg_device_add(struct cvmg *m, const struct cvmg_device_opts *o, uint32_t *dev);

/* cvmg_dma_alloc() flags */
#define CVMG_DMA_ATOMIC (1u << 0) /* GFP_ATOMIC: must not block */

/**
 * cvmg_dma_alloc() - dma_alloc_coherent() of @size bytes for @dev.
 * Legacy: non-blocking requests come from the atomic pools (already shared);
 * blocking ones take a buddy block of get_order(size) and convert
 * PFN_UP(size) pages (one conversion). RFC: served from SWIOTLB slots
 * aligned to the allocation's order (no conversion; at most 256 KiB, the
 * SWIOTLB segment, like swiotlb_alloc()).
 * @gpa: receives the guest physical address.
 *
 * Return: 0, -EINVAL (bad device, size 0), -ENOMEM (no memory, no slots,
 * larger than the buddy's 4 MiB or a segment, or the conversion failed: the
 * pages are then leaked, as dma-direct does), -ENOTRECOVERABLE.
 * Thread safety: not thread-safe.
 */
int cvmg_dma_alloc(struct cvmg *m, uint32_t dev, uint64_t size, uint32_t flags, uint64_t *gpa);

/**
 * cvmg_dma_free() - dma_free_coherent() of what cvmg_dma_alloc() returned
 * (same @size). Buddy-backed memory is converted back first; if that fails
 * the pages are leaked (counted), as dma_direct_free() does.
 * Return: 0, -EINVAL (not an allocation of this model), -ENOTRECOVERABLE,
 * or the conversion's error (the memory is leaked then).
 * Thread safety: not thread-safe.
 */
int cvmg_dma_free(struct cvmg *m, uint32_t dev, uint64_t gpa, uint64_t size);

/**
 * cvmg_swiotlb_map() - swiotlb_tbl_map_single(): bounce @size bytes of the
 * buffer at @orig_addr through SWIOTLB slots, searching the areas from
 * @cpu's area round-robin, as 6.12's swiotlb_search_pool_area(): the slot is
 * aligned to @alloc_align_mask (to 4 KiB for >= 4 KiB when neither it nor
 * the device's min_align_mask is set) and matches @orig_addr under the
 * min_align_mask bits above that (CVMG_F_SWIOTLB_OLD_ALIGN: v6.6, one mask
 * of both plus the page bit, matched against @orig_addr). A mapping never
 * crosses a 128-slot (256 KiB) segment; a larger one fails at once
 * (CVMG_F_SWIOTLB_GROW_ANY_SIZE: after scheduling growth). With dynamic
 * SWIOTLB a full pool schedules growth and tries a transient pool.
 * dma_map_single()/dma_map_page() use @alloc_align_mask 0.
 * @tlb_addr: receives the bounce address (slot + orig offset under the
 * device's min_align_mask within a slot).
 *
 * Return: 0, -EINVAL (bad device, size 0), -ENOMEM (no slots: the mapping
 * fails), -ENOTRECOVERABLE.
 * Thread safety: not thread-safe.
 */
int cvmg_swiotlb_map(struct cvmg *m, uint32_t dev, uint32_t cpu, uint64_t orig_addr, uint64_t size,
		     uint64_t alloc_align_mask, uint64_t *tlb_addr);

/** cvmg_dma_map() - dma_map_single(): cvmg_swiotlb_map() with no alloc_align_mask. */
int cvmg_dma_map(struct cvmg *m, uint32_t dev, uint32_t cpu, uint64_t orig_addr, uint64_t size,
		 uint64_t *tlb_addr);

/**
 * cvmg_dma_unmap() - release a mapping (a transient pool is freed with it;
 * a coherent free, cvmg_dma_free(), never deletes one: swiotlb_free()).
 * Return: 0, -EINVAL (not a live mapping), -ENOTRECOVERABLE.
 * Thread safety: not thread-safe.
 */
int cvmg_dma_unmap(struct cvmg *m, uint32_t dev, uint64_t tlb_addr, uint64_t size);

/**
 * cvmg_churn() - advance uptime by @steps seeded kernel allocations or frees
 * (unmovable, orders 0..10 weighted towards small ones), holding about
 * cfg.churn_fill_pct % of managed RAM. Free 2 MiB blocks become rare as the
 * steps accumulate. Memory used grows with the live allocations, ~16 bytes
 * each.
 * Return: 0, -EINVAL (not booted), -ENOMEM (host allocation failed).
 * Thread safety: not thread-safe.
 */
int cvmg_churn(struct cvmg *m, uint64_t steps);

/* ---- workloads (guest/workload.c) ---- */

struct cvmg_wl_result {
	size_t sz;	 /* sizeof(struct cvmg_wl_result) */
	uint64_t allocs; /* coherent allocations that succeeded */
	uint64_t alloc_failures;
	uint64_t alloc_bytes; /* bytes requested by the successful ones */
	uint64_t maps;	      /* streaming mappings that succeeded */
	uint64_t map_failures;
	uint64_t map_bytes;
};

struct cvmg_virtio_net_opts {
	size_t sz;
	uint32_t queue_pairs; /* 0 = 1 */
	uint32_t ring_size;   /* 0 = 256 (split ring) */
	uint32_t rx_buf_size; /* mergeable rx buffer; 0 = 1536 */
};
struct cvmg_virtio_blk_opts {
	size_t sz;
	uint32_t queues;    /* 0 = cpus (QEMU num-queues default) */
	uint32_t ring_size; /* 0 = 256 */
};
struct cvmg_nvme_opts {
	size_t sz;
	uint32_t io_queues;   /* 0 = cpus */
	uint32_t queue_depth; /* IO queue entries; 0 = 1024 */
	uint32_t prp_pages;   /* PRP list pages allocated at bring-up; 0 = 1 per IO queue */
};
struct cvmg_gpu_opts {
	size_t sz;
	uint64_t total_bytes; /* coherent memory wanted; 0 = 256 MiB */
	uint64_t chunk_bytes; /* per dma_alloc_coherent(); 0 = 2 MiB */
};
struct cvmg_runtime_opts {
	size_t sz;
	uint64_t cycles;	  /* allocate/map-then-free cycles; 0 = 10000 */
	uint32_t churn_per_cycle; /* kernel churn steps per cycle; 0 = 4 */
	uint32_t max_inflight;	  /* live coherent buffers / mappings; 0 = 64 */
};

/*
 * Device bring-up as the drivers do it (split virtqueues, dma_alloc_coherent
 * per ring; rx rings filled with mapped buffers; NVMe admin queue of 32 and
 * IO queues of 1024 x 64 B SQEs / 16 B CQEs, shadow doorbell buffers and
 * PRP-list dma_pool pages). @o NULL = defaults; @res may be NULL.
 * Return: 0; -ENOMEM when an allocation the driver needs failed (what was
 * allocated is freed again, as a failed probe does); -EINVAL;
 * -ENOTRECOVERABLE.
 * The GPU workload keeps what it got and returns -ENOMEM if any chunk
 * failed. The runtime workload frees everything it allocated before it
 * returns and returns 0 unless the guest terminated.
 * Thread safety: not thread-safe.
 */
int cvmg_wl_virtio_net(struct cvmg *m, const struct cvmg_virtio_net_opts *o,
		       struct cvmg_wl_result *res);
int cvmg_wl_virtio_blk(struct cvmg *m, const struct cvmg_virtio_blk_opts *o,
		       struct cvmg_wl_result *res);
int cvmg_wl_nvme(struct cvmg *m, const struct cvmg_nvme_opts *o, struct cvmg_wl_result *res);
int cvmg_wl_gpu(struct cvmg *m, const struct cvmg_gpu_opts *o, struct cvmg_wl_result *res);
int cvmg_wl_runtime(struct cvmg *m, const struct cvmg_runtime_opts *o, struct cvmg_wl_result *res);

/* ---- counters ---- */

struct cvmg_stats {
	size_t sz; /* sizeof(struct cvmg_stats), set by the caller */
	/* conversions (set_memory_* calls that reached the platform) */
	uint64_t conversions, conversions_to_shared, conversions_to_private;
	uint64_t pages_to_shared, pages_to_private;
	uint64_t exits, exits_failed;
	uint64_t exit_hash; /* FNV-1a 64 (offset basis 0xcbf29ce484222325) over the
	                              * little-endian bytes of gpa, npages, attrs of each exit */
	uint64_t unaligned; /* conversions not 2 MiB aligned in start or size */
	uint64_t unaligned_by_site[CVMG_SITE_SLOTS];
	uint64_t checker_rejected; /* refused under CVMG_F_CHECKER_ENFORCE */
	uint64_t tdx_accept_calls; /* TDG.MEM.PAGE.ACCEPT calls (1G, 2M, then 4K tries) */
	uint64_t terminated;	   /* 1 once an SNP PSC failed */
	/* SWIOTLB */
	uint64_t swiotlb_boot_start, swiotlb_boot_bytes; /* the pool's slots, bytes */
	uint64_t swiotlb_boot_alloc_bytes;		 /* memblock reservation */
	uint64_t swiotlb_nareas;
	uint64_t swiotlb_dyn_pools, swiotlb_dyn_bytes;
	uint64_t swiotlb_transient_pools; /* created (they live for one mapping) */
	uint64_t swiotlb_growth_attempts, swiotlb_growth_failures;
	uint64_t swiotlb_maps, swiotlb_map_failures, swiotlb_used_slots;
	/* atomic pools: [0] DMA, [1] DMA32, [2] kernel */
	uint64_t atomic_pool_size; /* the per-pool target (128 KiB per GiB, clamped) */
	uint64_t atomic_pool_bytes[3];
	uint64_t atomic_pool_expansions, atomic_pool_expand_failures;
	/* dma-direct */
	uint64_t dma_allocs, dma_alloc_failures, dma_frees, dma_leaked_pages;
	/* buddy allocator */
	uint64_t managed_pages; /* totalram_pages(): what memblock_free_all() released */
	uint64_t free_pages;
	uint64_t free_blocks[CVMG_MAX_ORDER + 1];
	uint64_t free_2m_blocks; /* free 2 MiB-aligned 2 MiB blocks (order >= 9) */
	uint64_t churn_live_pages;
	uint64_t free_blocks_zone[3][CVMG_MAX_ORDER + 1]; /* [0] DMA, [1] DMA32, [2] Normal */
	/* early boot paths (no checker): early_set_memory_{de,en}crypted(), the SNP
	 * MSR-protocol page state changes and kvm_init_platform()'s hypercalls; their
	 * exits are also in `exits`, their calls in `conversions` */
	uint64_t early_conversions, early_exits;
	uint64_t bss_decrypted_start;		/* .bss..decrypted (one PMD in the image) */
	uint64_t bss_decrypted_unused_pages;	/* its tail given back at free_initmem() */
	uint64_t swiotlb_transient_stale_pools; /* transient pools that served a coherent
	                                         * allocation: dma_direct_free() gave the
	                                         * memory back to the atomic pool, the
	                                         * pool itself is never deleted */
};

/**
 * cvmg_get_stats() - copy the counters; at most st->sz bytes are written.
 * Return: 0, -EINVAL (NULL, or st->sz smaller than up to `terminated`).
 * Thread safety: not thread-safe.
 */
int cvmg_get_stats(const struct cvmg *m, struct cvmg_stats *st);

/* One conversion the 2 MiB checker flagged. */
struct cvmg_unaligned {
	size_t sz; /* sizeof(struct cvmg_unaligned), set by the caller */
	uint64_t gpa;
	uint64_t npages;
	uint32_t site; /* enum cvmg_site */
	uint32_t to_private;
	uint64_t seq; /* conversion number (0-based) */
};

/** cvmg_checker_records() - records kept (at most cfg.checker_max_records). */
size_t cvmg_checker_records(const struct cvmg *m);

/**
 * cvmg_checker_get() - record @i (oldest first).
 * Return: 0, -EINVAL (NULL or small sz), -ENOENT (no such record).
 */
int cvmg_checker_get(const struct cvmg *m, size_t i, struct cvmg_unaligned *rec);

/** cvmg_site_name(), cvmg_platform_name(), cvmg_mode_name() - "swiotlb_boot" etc.;
 * "?" for unknown values. Thread safety: safe. */
const char *cvmg_site_name(enum cvmg_site site);
const char *cvmg_platform_name(enum cvmg_platform p);
const char *cvmg_mode_name(enum cvmg_mode mode);

#ifdef __cplusplus
}
#endif

#endif /* CVMCONV_GUEST_H */
