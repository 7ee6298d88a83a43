/* SPDX-License-Identifier: MIT */
/*
 * Layer 2, physical memory: the kernel direct map's leaves (1 GiB, 2 MiB or
 * 4 KiB) and their splitting by conversions. Uses the layout.
 */
#ifndef CVMG_DIRECTMAP_H
#define CVMG_DIRECTMAP_H

#include <stdbool.h>
#include <stdint.h>

#include "layout.h"

struct directmap {
	uint8_t *gib;	   /* per GiB: 0 no RAM leaf, 1 one 1G leaf, 2 split into 2M */
	uint64_t *split2m; /* bit per 2 MiB: 1 = mapped with 4 KiB leaves */
	uint64_t ngib;
};
/* The boot mapping of @l: 1 GiB leaves unless !@gbpages, the first 2 MiB
 * 4 KiB-mapped. */
int directmap_init(struct directmap *d, const struct layout *l, bool gbpages);
void directmap_destroy(struct directmap *d);
/* One leaf covering @addr: its base and size (after any split). */
void directmap_leaf(const struct directmap *d, uint64_t addr, uint64_t *base, uint64_t *size);
/* split_large_page() of the leaves that [start, end) covers only partly. */
void directmap_split(struct directmap *d, uint64_t start, uint64_t end);

#endif /* CVMG_DIRECTMAP_H */
