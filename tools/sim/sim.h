/* SPDX-License-Identifier: MIT */
/*
 * cvmconv-sim's scenarios: a guest model (cvmconv_guest) run through one
 * host of the host engine (tools/engine/host_engine.h: libcvmconv with two
 * backings or in place, the QEMU-like handler) over real backings,
 * measured by the host library and by the kernel; or a dry run with no
 * host (SIM_HOST_NONE) that counts the huge pages touched.
 *
 * Guest memory follows the model's q35 layout: [0, lowmem) and, for RAM of
 * 2.75 GiB and more, [4 GiB, 4 GiB + RAM - lowmem). The engine lays each
 * region's shared side in one shared memfd (an MFD_HUGETLB memfd with
 * 2 MiB pages, or shmem) and its private side in a guest_memfd (or a shmem
 * stand-in); both are sized to the RAM but only what is touched costs
 * memory. There is no /dev/kvm: attribute updates go to the engine's
 * strict recorder, and the engine keeps, from the accepted updates, which
 * pages are shared (the truth every host is measured against).
 *
 * Touching: the kernel allocates only touched pages, so every 4 KiB page
 * is written the moment the attributes make it shared (a hugetlb fault
 * allocates the whole 2 MiB page at the first write). That is what a guest
 * using its shared buffers would cause, and it makes the kernel's count
 * comparable with cvmconv's double_alloc_bytes, which counts a huge page
 * from the moment one of its pages is live (an upper bound for untouched
 * memory). Private memory is never touched: the double allocation
 * measured is the shared side's memory held for private pages.
 *
 * Not thread-safe; one scenario at a time per process (SIGBUS guard).
 */
#ifndef CVMCONV_SIM_H
#define CVMCONV_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cvmconv.h"
#include <cvmconv/guest.h>

#define SIM_SZ_4K 4096ULL
#define SIM_SZ_2M (2ULL << 20)
#define SIM_MAX_PHASES 8

/* Guest policy. */
enum sim_guest {
	SIM_GUEST_LEGACY = 0, /* mainline Linux (CVMG_MODE_LEGACY) */
	SIM_GUEST_RFC = 1,    /* the RFC's changes (CVMG_MODE_RFC) */
	SIM_GUEST_CMA = 2,    /* RFC guest plus a boot-time CMA-style reservation that
	                       * serves the GPU's coherent buffers, converted on demand
	                       * in 2 MiB units (driven by the simulator, see sim.c) */
	SIM_GUEST_COUNT = 3,
};

/* Host handling the exits. */
enum sim_host {
	SIM_HOST_QEMU_LIKE = 0, /* qemu_like.h */
	SIM_HOST_CVMCONV = 1,	/* libcvmconv, two backings */
	/* libcvmconv with CVMCONV_REGION_INPLACE: one guest_memfd for both
	 * sides (a real one from the host's /dev/kvm, GUEST_MEMFD_FLAG_MMAP |
	 * INIT_SHARED, where it makes one; 4 KiB pages: no kernel here has
	 * huge pages in guest_memfd), KVM_SET_MEMORY_ATTRIBUTES2 served by the
	 * engine with the uAPI's rules (no kernel here has it either) */
	SIM_HOST_INPLACE = 2,
	SIM_HOST_NONE = 3, /* dry run: no backings; counts the huge pages touched */
	SIM_HOST_COUNT = 4,
};

/* Workload phases after boot, in the order given. */
enum sim_phase {
	SIM_PHASE_DEVICES = 0, /* virtio-net (cpus queue pairs), virtio-blk, NVMe bring-up */
	SIM_PHASE_CHURN = 1,   /* cvmg_wl_runtime(): DMA alloc/map/free cycles + kernel churn */
	SIM_PHASE_FRAG = 2,    /* cvmg_churn(): kernel allocations only, fragmenting RAM */
	SIM_PHASE_GPU = 3,     /* large coherent buffers (cvmg_wl_gpu, or CMA for SIM_GUEST_CMA) */
	SIM_PHASE_STREAM = 4,  /* streaming mappings held until the SWIOTLB overflows */
	SIM_PHASE_COUNT = 5,
};

struct sim_scenario {
	uint64_t ram; /* bytes, a multiple of 2 MiB, >= 256 MiB */
	uint32_t cpus;
	uint64_t seed;
	enum sim_guest guest;
	enum cvmg_platform platform;
	enum sim_host host;
	enum cvmconv_unaligned policy; /* cvmconv host only */
	enum sim_phase phases[SIM_MAX_PHASES];
	size_t nphases;
	const char *workload;  /* label */
	bool shared_huge;      /* shared side: MFD_HUGETLB 2 MiB (else shmem) */
	bool populate_all;     /* shared side starts populated, converted private before boot */
	bool swiotlb_dynamic;  /* legacy guest: CONFIG_SWIOTLB_DYNAMIC=y */
	bool enforce_checker;  /* rfc/cma guests: patch 5 refuses unaligned conversions */
	uint64_t churn_cycles; /* 0 = the model's default (10000) */
	uint64_t frag_steps;   /* SIM_PHASE_FRAG steps; 0 = 1000000 */
	uint64_t gpu_total;    /* 0 = 256 MiB */
	uint64_t gpu_chunk;    /* 0 = 2 MiB */
	uint64_t stream_bytes; /* SIM_PHASE_STREAM: bytes mapped; 0 = 2 x boot pool */
	uint64_t stream_chunk; /* 0 = 256 KiB (one SWIOTLB segment) */
	uint64_t cma_bytes;    /* SIM_GUEST_CMA reservation, 2 MiB multiple; 0 = gpu_total */
	/* SIM_HOST_INPLACE: every Nth to-private guest_memfd update finds a
	 * transient host reference (a VMM thread reading the page) and is
	 * refused once with EAGAIN; 0 = never */
	uint32_t gmem_busy_every;
	FILE *trace;  /* exits appended (docs/trace-format.md), or NULL */
	bool verbose; /* library log lines to stderr */
};

struct sim_result {
	/* the guest (cvmg_get_stats and the workloads) */
	uint64_t conversions, exits, exits_failed, unaligned, checker_records;
	uint64_t unaligned_by_site[CVMG_SITE_COUNT];
	bool terminated;
	int first_error; /* first failing workload call (negative errno) or 0 */
	uint64_t dma_allocs, dma_alloc_failures, maps, map_failures;
	uint64_t gpu_bytes_wanted, gpu_bytes_got, gpu_failures;
	uint64_t swiotlb_boot_start, swiotlb_boot_bytes;
	uint64_t swiotlb_growth_attempts, swiotlb_growth_failures;
	uint64_t swiotlb_dyn_pools, swiotlb_dyn_bytes, swiotlb_transient_pools;
	uint64_t swiotlb_used_bytes; /* slots in use at the end (all pools) */
	uint64_t checker_rejected;   /* conversions refused by the enforcing checker */
	uint64_t free_2m_blocks;     /* guest buddy at the end: free 2 MiB blocks */
	uint64_t free_dma32_1m;	     /* ... in ZONE_DMA32 (where SWIOTLB grows), */
	uint64_t free_dma32_2m;	     /* counted in 1 MiB / 2 MiB units */
	uint64_t cma_reserved_bytes, cma_shared_bytes, cma_allocs, cma_failures;
	/* the host */
	uint64_t attr_calls;	   /* attribute updates caused by exits */
	uint64_t attr_setup_calls; /* ... before the guest ran (region setup) */
	uint64_t attr_refused;	   /* refused by the strict recorder (a host bug) */
	uint64_t punches, punch_failures;
	uint64_t host_errors; /* requests the host failed (a VMM would stop the VM) */
	uint64_t rejected;    /* refused by cvmconv's policy */
	/* cvmconv's own figures (have_lib) */
	bool have_lib;
	uint64_t lib_da, lib_da_peak, lib_mixed, lib_huge_mappable;
	uint64_t lib_kernel_mismatches; /* exits after which lib != kernel */
	uint64_t gmem_calls;		/* SIM_HOST_INPLACE: guest_memfd updates (tries) */
	uint64_t gmem_busy_retries, gmem_busy_failures;
	uint64_t first_mismatch_gpa;
	/* the kernel's figures */
	bool have_kernel;
	uint64_t shared_alloc_bytes, private_alloc_bytes; /* st_blocks * 512, at the end */
	uint64_t kernel_da, kernel_da_peak;		  /* from st_blocks */
	int64_t hugepages_used;				  /* HugePages_Free drop; -1 n/a */
	int64_t kernel_da_hpfree;			  /* from HugePages_Free; -1 n/a */
	uint64_t touched_hugepages; /* SIM_HOST_NONE: distinct huge pages made shared */
	/* the attributes as set (both hosts) */
	uint64_t guest_bytes, live_shared_bytes;
	uint64_t mixed_extents, huge_mappable_bytes;
	uint64_t vmemmap_lost_bytes; /* 28 KiB per mixed 2 MiB extent */
	uint64_t ept_table_pages;    /* one 4 KiB table page per mixed 2 MiB extent */
	double seconds;
};

/* Phase names ("devices", ...), guest names ("legacy", "rfc", "cma"), host
 * names ("qemu-like", "cvmconv", "in-place", "none"). */
const char *sim_phase_name(enum sim_phase p);
const char *sim_guest_name(enum sim_guest g);
const char *sim_host_name(enum sim_host h);

/* Fill @sc with the defaults (16 GiB, 4 CPUs, seed 1, legacy, SNP, cvmconv,
 * ALLOW, phases "devices", huge shared side). */
void sim_scenario_defaults(struct sim_scenario *sc);

/*
 * sim_run() - run one scenario.
 * Return: 0 (the result is filled even when the guest failed or terminated:
 * that is a result), or -errno when the simulation itself could not run
 * (bad scenario, backings, host setup, huge pages exhausted: SIGBUS on a
 * touch); @why then says what failed.
 */
int sim_run(const struct sim_scenario *sc, struct sim_result *res, char *why, size_t why_len);

/*
 * sim_hugepages_needed() - how many 2 MiB pages the scenario can hold at
 * once on a huge shared side: a dry run of the same guest counting the
 * distinct huge pages made shared (all of them with populate_all).
 * Return: 0 or -errno (@why says).
 */
int sim_hugepages_needed(const struct sim_scenario *sc, uint64_t *n, char *why, size_t why_len);

/* HugePages_Free of /proc/meminfo; -1 if unreadable. */
long sim_hugepages_free(void);

#endif /* CVMCONV_SIM_H */
