/* SPDX-License-Identifier: MIT */
/*
 * Layer 4, pools: the DMA devices, each with the DMA mask and
 * min_align_mask that the pools and the DMA API serve it by.
 */
#ifndef CVMG_DEVICE_H
#define CVMG_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include <cvmconv/guest.h>

struct device {
	char name[32];
	uint32_t dma_bits;
	uint64_t dma_limit; /* highest DMA-able physical address */
	uint32_t min_align_mask;
};
struct devices {
	struct device *v;
	uint32_t n;
	size_t cap;
};
/* cvmg_device_add()'s checks and registration; @id is the new device's. */
int devices_add(struct devices *ds, const struct cvmg_device_opts *o, uint32_t *id);
struct device *devices_get(struct devices *ds, uint32_t id); /* NULL: no such device */
void devices_destroy(struct devices *ds);

#endif /* CVMG_DEVICE_H */
