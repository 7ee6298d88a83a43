/* SPDX-License-Identifier: MIT */
/*
 * Guest model internals. One struct cvmg per modelled guest; every piece of
 * state hangs off it. Files, one concern each:
 *   rng.c         splitmix64/xoshiro256** (the only source of randomness)
 *   layout.c      RAM layout, zones, memblock (boot-time placement)
 *   buddy.c       buddy allocator: free lists per zone and order 0..10
 *   set_memory.c  set_memory_{de,en}crypted: checker, direct-map split, hooks
 *   checker.c     the 2 MiB alignment checker of RFC patch 5
 *   shape.c       platform exit shaping (SNP PSC, TDX MapGPA, KVM PV)
 *   swiotlb.c     boot pool sizing/placement, slot allocator, dynamic pools
 *   atomic_pool.c DMA atomic pools (kernel/dma/pool.c)
 *   dma.c         dma-direct coherent allocations and streaming maps
 *   workload.c    device bring-up, GPU, runtime churn
 *   model.c       create/destroy/boot/stats glue
 */
#ifndef CVMG_INTERNAL_H
#define CVMG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cvmconv/guest.h>

#define PAGE_SHIFT 12
#define PAGE_SZ (1ULL << PAGE_SHIFT)
#define SZ_1M (1ULL << 20)
#define SZ_2M (1ULL << 21)
#define SZ_4M (1ULL << 22)
#define SZ_16M (1ULL << 24)
#define SZ_64M (1ULL << 26)
#define SZ_128M (1ULL << 27)
#define SZ_256M (1ULL << 28)
#define SZ_1G (1ULL << 30)
#define SZ_4G (1ULL << 32)
#define MAX_ORDER CVMG_MAX_ORDER

#define ALIGN_UP(x, a) (((x) + (a)-1) & ~((uint64_t)(a)-1))
#define ALIGN_DOWN(x, a) ((x) & ~((uint64_t)(a)-1))
#define IS_ALIGNED(x, a) (((x) & ((uint64_t)(a)-1)) == 0)
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- rng.c ---- */
struct rng {
	uint64_t s[4];
};
void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_next(struct rng *r);
uint64_t rng_below(struct rng *r, uint64_t n); /* uniform in [0, n), n > 0 */

/* ---- layout.c ---- */
enum zone_id { ZONE_DMA = 0, ZONE_DMA32 = 1, ZONE_NORMAL = 2, NR_ZONES = 3 };

struct range {
	uint64_t start, end; /* [start, end) */
};

#define MAX_RAM_RANGES 2
#define MAX_RESERVED 64

struct layout {
	struct range ram[MAX_RAM_RANGES];
	int nram;
	struct range resv[MAX_RESERVED]; /* memblock.reserved, sorted, merged */
	int nresv;
	uint64_t lowmem;  /* RAM below 4 GiB */
	uint64_t ram_end; /* end of the highest RAM range */
	uint64_t total;	  /* memblock_phys_mem_size() */
};
int layout_init(struct cvmg *m);
bool layout_is_ram(const struct layout *l, uint64_t start, uint64_t end);
int layout_reserve(struct layout *l, uint64_t start, uint64_t size);
/* memblock_free(): give [start, start + size) back (splits a reserved range). */
int layout_unreserve(struct layout *l, uint64_t start, uint64_t size);
/* memblock_alloc_range_nid() top-down: highest fit below @limit. */
int layout_alloc_top_down(struct layout *l, uint64_t size, uint64_t align, uint64_t limit,
			  uint64_t *out);
enum zone_id zone_of(uint64_t pfn);

/* ---- buddy.c ---- */
struct buddy_node {
	uint64_t pfn;
	int32_t prev, next; /* list links; next doubles as the recycle link */
	uint8_t order, zone;
};
struct buddy_list {
	int32_t head, tail;
	uint64_t count;
};
struct buddy {
	struct buddy_node *nodes;
	uint32_t nodes_len, nodes_cap;
	int32_t recycle;
	uint32_t *hash; /* node index + 1, 0 = empty; open addressing on pfn */
	uint64_t hash_cap, hash_len;
	struct buddy_list lists[NR_ZONES][MAX_ORDER + 1];
	uint64_t free_pages;
	uint64_t managed;
	bool shuffle;
	struct rng *rng;
};
int buddy_init(struct buddy *b, struct rng *rng, bool shuffle);
void buddy_destroy(struct buddy *b);
/* __free_pages_core(): boot release, FPI_TO_TAIL. */
int buddy_free_boot(struct buddy *b, uint64_t pfn, unsigned order);
void buddy_shuffle(struct buddy *b);
int buddy_free(struct buddy *b, uint64_t pfn, unsigned order);
/* alloc_pages() on a zonelist (highest zone first, falling back down to
 * @lowest). */
int buddy_alloc(struct buddy *b, enum zone_id highest, enum zone_id lowest, unsigned order,
		uint64_t *pfn);
uint64_t buddy_free_blocks(const struct buddy *b, unsigned order);
unsigned get_order(uint64_t size);

/* ---- checker.c ---- */
struct checker {
	struct cvmg_unaligned *recs;
	size_t len, cap, max;
	uint64_t by_site[CVMG_SITE_SLOTS];
	uint64_t total;
};
/* Returns true when the conversion is not 2 MiB aligned in start or size. */
bool checker_note(struct cvmg *m, uint64_t gpa, uint64_t npages, bool to_private,
		  enum cvmg_site site);
void checker_destroy(struct checker *c);

/* ---- set_memory.c (direct map + platform dispatch) ---- */
struct directmap {
	uint8_t *gib;	   /* per GiB: 0 no RAM leaf, 1 one 1G leaf, 2 split into 2M */
	uint64_t *split2m; /* bit per 2 MiB: 1 = mapped with 4 KiB leaves */
	uint64_t ngib;
};
int directmap_init(struct cvmg *m);
void directmap_destroy(struct directmap *d);
/* One leaf covering @addr: its base and size (after any split). */
void directmap_leaf(const struct directmap *d, uint64_t addr, uint64_t *base, uint64_t *size);
int set_memory(struct cvmg *m, uint64_t gpa, uint64_t npages, bool to_private, enum cvmg_site site);
/* early_set_memory_{de,en}crypted() on @size bytes at @addr: no checker. */
int set_memory_early(struct cvmg *m, uint64_t addr, uint64_t size, bool to_private);

/* ---- shape.c ---- */
int shape_exits(struct cvmg *m, uint64_t gpa, uint64_t npages, bool to_private);
/* SNP early_set_pages_state(): the GHCB MSR protocol, one exit per 4 KiB page;
 * a failure terminates the guest (-ENOTRECOVERABLE). */
int shape_snp_msr_psc(struct cvmg *m, uint64_t gpa, uint64_t npages, bool to_private);
/* KVM PV enc_dec_hypercall() over [gpa, gpa + size): one exit per direct-map leaf. */
void shape_pv_hypercalls(struct cvmg *m, uint64_t gpa, uint64_t size, bool to_private);
/* One KVM_HC_MAP_GPA_RANGE exactly as given (kvm_init_platform); result ignored. */
void shape_raw_exit(struct cvmg *m, uint64_t gpa, uint64_t npages, uint64_t attrs);

/* ---- swiotlb.c ---- */
#define IO_TLB_SHIFT 11
#define IO_TLB_SIZE (1ULL << IO_TLB_SHIFT)
#define IO_TLB_SEGSIZE 128
#define IO_TLB_MIN_SLABS ((1u << 20) >> IO_TLB_SHIFT)
#define IO_TLB_DEFAULT_SIZE SZ_64M

struct swiotlb_area {
	uint32_t index;
	uint32_t used;
};
struct swiotlb_pool {
	uint64_t start;
	uint32_t nslabs, nareas, area_nslabs;
	uint8_t *list;	       /* free slots from here to the segment end (io_tlb_slot.list) */
	uint8_t *alloc_nslots; /* at an allocation's first slot: its slot count */
	uint64_t *orig;	       /* at an allocation's first slot: orig_addr + 1 (0 = free) */
	struct swiotlb_area *areas;
	bool transient;
	uint32_t used;
	uint64_t backing_bytes; /* transient: bytes taken from the atomic pool */
};
struct swiotlb {
	struct swiotlb_pool **pools; /* search order: newest first (list_add_rcu) */
	size_t npools, cap;
	uint64_t default_nslabs;
	uint32_t default_nareas;
	bool can_grow;
	bool dyn_pending; /* swiotlb_dyn_alloc work scheduled */
	uint64_t phys_limit;
};
uint64_t swiotlb_boot_size_request(const struct cvmg *m); /* bytes, before nslabs rounding */
int swiotlb_boot_reserve(struct cvmg *m);		  /* memblock part (swiotlb_init_remap) */
int swiotlb_boot_decrypt(struct cvmg *m);		  /* swiotlb_update_mem_attributes() */
int swiotlb_map_slots(struct cvmg *m, uint32_t dev, uint32_t cpu, uint64_t orig_addr, uint64_t size,
		      uint64_t alloc_align_mask, uint64_t *tlb_addr);
int swiotlb_unmap_slots(struct cvmg *m, uint64_t tlb_addr);
/* swiotlb_free(): release the slots only; a transient pool is never deleted. */
int swiotlb_free_slots(struct cvmg *m, uint64_t tlb_addr);
/* The transient pool holding @addr, or NULL. */
bool swiotlb_in_transient(const struct cvmg *m, uint64_t addr);
bool swiotlb_owns(const struct cvmg *m, uint64_t addr);
int swiotlb_run_worker(struct cvmg *m);
void swiotlb_destroy(struct swiotlb *s);

/* ---- atomic_pool.c ---- */
struct ap_chunk {
	uint64_t start;
	uint32_t npages;
	uint32_t used;
	uint64_t *bits;
};
struct atomic_pool {
	struct ap_chunk *chunks; /* search order: newest first (gen_pool_add) */
	size_t n, cap;
	uint64_t size, avail;
	enum zone_id zone;
	bool present;
};
struct atomic_pools {
	struct atomic_pool pool[3]; /* [0] DMA, [1] DMA32, [2] kernel */
	uint64_t atomic_pool_size;
	bool work_pending;
};
int atomic_pools_init(struct cvmg *m);
/* dma_alloc_from_pool(): first pool guessed from the device's zone. */
int atomic_pool_alloc(struct cvmg *m, uint64_t dma_limit, uint64_t size, uint64_t *addr);
bool atomic_pool_free(struct cvmg *m, uint64_t addr, uint64_t size);
int atomic_pool_run_worker(struct cvmg *m);
void atomic_pools_destroy(struct atomic_pools *a);

/* ---- dma.c ---- */
struct device {
	char name[32];
	uint32_t dma_bits;
	uint64_t dma_limit; /* highest DMA-able physical address */
	uint32_t min_align_mask;
};
struct device *dev_get(struct cvmg *m, uint32_t id);
/* Live buddy-backed coherent allocations (so a bad free cannot corrupt the
 * buddy allocator): open addressing on gpa, key + 1 stored, 0 = empty. */
struct coherent_set {
	uint64_t *keys;
	uint64_t cap, len;
};
void coherent_set_destroy(struct coherent_set *s);
int coherent_set_add(struct coherent_set *s, uint64_t key);
bool coherent_set_has(const struct coherent_set *s, uint64_t key);
void coherent_set_del(struct coherent_set *s, uint64_t key); /* absent: nothing */
/* Runs scheduled background work (swiotlb growth, atomic pool expansion). */
int run_workers(struct cvmg *m);

/* ---- model.c: the model ---- */
struct counters {
	uint64_t conversions, conv_shared, conv_private, pages_shared, pages_private;
	uint64_t exits, exits_failed, exit_hash;
	uint64_t setmem_calls, checker_rejected, tdx_accepts;
	uint64_t sw_boot_start, sw_boot_bytes, sw_boot_alloc, sw_nareas;
	uint64_t sw_dyn_pools, sw_dyn_bytes, sw_transient, sw_growth_attempts, sw_growth_failures;
	uint64_t sw_maps, sw_map_failures, sw_used;
	uint64_t ap_expansions, ap_expand_failures;
	uint64_t dma_allocs, dma_alloc_failures, dma_frees, dma_leaked_pages;
	uint64_t early_conversions, early_exits, sw_transient_stale;
};

struct churn_alloc {
	uint64_t pfn;
	uint32_t order;
	bool kernel; /* unmovable kernel memory, else page cache */
};

struct cvmg {
	struct cvmg_config cfg; /* normalised copy */
	struct rng rng;
	struct layout layout;
	struct buddy buddy;
	struct directmap dm;
	struct checker checker;
	struct swiotlb swiotlb;
	struct atomic_pools ap;
	struct device *devs;
	uint32_t ndevs, devs_cap;
	struct coherent_set coherent;
	struct coherent_set early_shared;	/* pages early_set_memory_decrypted() made shared */
	uint64_t bss_dec_start, bss_dec_unused; /* .bss..decrypted; its unused tail (pages) */
	struct churn_alloc *churn;
	size_t churn_len, churn_cap;
	uint64_t churn_pages, churn_kernel_pages;
	struct counters n;
	bool booted;
	bool terminated;
};

/* Growable array helper: ensures room for one more element. */
int grow_array(void **arr, size_t elem, size_t *cap, size_t need);

#endif /* CVMG_INTERNAL_H */
