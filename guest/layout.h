/* SPDX-License-Identifier: MIT */
/*
 * Layer 2, physical memory: RAM layout, zones and memblock (boot-time
 * placement). Uses only the utilities.
 */
#ifndef CVMG_LAYOUT_H
#define CVMG_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

#include <cvmconv/guest.h>

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
/* The q35 layout of a normalised configuration, its first reservations. */
int layout_init(struct layout *l, const struct cvmg_config *c);
bool layout_is_ram(const struct layout *l, uint64_t start, uint64_t end);
int layout_reserve(struct layout *l, uint64_t start, uint64_t size);
/* memblock_free(): give [start, start + size) back (splits a reserved range). */
int layout_unreserve(struct layout *l, uint64_t start, uint64_t size);
/* memblock_alloc_range_nid() top-down: highest fit below @limit. */
int layout_alloc_top_down(struct layout *l, uint64_t size, uint64_t align, uint64_t limit,
			  uint64_t *out);
enum zone_id zone_of(uint64_t pfn);

#endif /* CVMG_LAYOUT_H */
