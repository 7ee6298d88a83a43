/* SPDX-License-Identifier: MIT */
/*
 * Layer 4, pools: SWIOTLB, the boot pool's sizing and placement, the slot
 * allocator and the dynamic pools. Uses the guest memory (layout, buddy,
 * set_memory()), the atomic pools (transient pools) and the devices' masks.
 */
#ifndef CVMG_SWIOTLB_H
#define CVMG_SWIOTLB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomic_pool.h"
#include "device.h"
#include "guest_mem.h"
#include "util.h"

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
	struct guest_mem *mem;	 /* where pools are placed, converted and counted */
	struct atomic_pools *ap; /* where transient pools take their memory */
};
/* Before any other call: the guest memory and atomic pools it works on. */
void swiotlb_init(struct swiotlb *s, struct guest_mem *mem, struct atomic_pools *ap);
int swiotlb_boot_reserve(struct swiotlb *s); /* memblock part (swiotlb_init_remap) */
int swiotlb_boot_decrypt(struct swiotlb *s); /* swiotlb_update_mem_attributes() */
int swiotlb_map_slots(struct swiotlb *s, const struct device *d, uint32_t cpu, uint64_t orig_addr,
		      uint64_t size, uint64_t alloc_align_mask, uint64_t *tlb_addr);
int swiotlb_unmap_slots(struct swiotlb *s, uint64_t tlb_addr);
/* swiotlb_free(): release the slots only; a transient pool is never deleted. */
int swiotlb_free_slots(struct swiotlb *s, uint64_t tlb_addr);
/* Whether @addr lies in a transient pool. */
bool swiotlb_in_transient(const struct swiotlb *s, uint64_t addr);
bool swiotlb_owns(const struct swiotlb *s, uint64_t addr);
int swiotlb_run_worker(struct swiotlb *s);
void swiotlb_destroy(struct swiotlb *s);

#endif /* CVMG_SWIOTLB_H */
