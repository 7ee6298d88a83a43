/* SPDX-License-Identifier: MIT */
/*
 * Layer 4, pools: the device registry. A device is a name, its DMA mask
 * (dma_bits: the highest address it reaches) and its min_align_mask
 * (dma_get_min_align_mask(), which SWIOTLB keeps in bounce buffers).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "util.h"

static bool valid_mask(uint32_t mask)
{
	return !(mask & (mask + 1u)); /* 2^k - 1 */
}

int devices_add(struct devices *ds, const struct cvmg_device_opts *o, uint32_t *id)
{
	struct cvmg_device_opts opts = { 0 };
	struct device *d;
	int ret;

	if (o) {
		if (o->sz < offsetof(struct cvmg_device_opts, min_align_mask) + sizeof(uint32_t))
			return -EINVAL;
		if (o->sz > sizeof(opts)) {
			for (size_t i = sizeof(opts); i < o->sz; i++)
				if (((const unsigned char *)o)[i])
					return -E2BIG;
		}
		memcpy(&opts, o, MIN(o->sz, sizeof(opts)));
	}
	if (!opts.dma_bits)
		opts.dma_bits = 64;
	if (opts.dma_bits < 24 || opts.dma_bits > 64 || !valid_mask(opts.min_align_mask))
		return -EINVAL;
	ret = grow_array((void **)&ds->v, sizeof(*ds->v), &ds->cap, ds->n + 1);
	if (ret)
		return ret;
	d = &ds->v[ds->n];
	memset(d, 0, sizeof(*d));
	strncpy(d->name, opts.name ? opts.name : "dev", sizeof(d->name) - 1);
	d->dma_bits = opts.dma_bits;
	d->dma_limit = opts.dma_bits == 64 ? UINT64_MAX : (1ULL << opts.dma_bits) - 1;
	d->min_align_mask = opts.min_align_mask;
	*id = ds->n++;
	return 0;
}

struct device *devices_get(struct devices *ds, uint32_t id)
{
	return id < ds->n ? &ds->v[id] : NULL;
}

void devices_destroy(struct devices *ds)
{
	free(ds->v);
	memset(ds, 0, sizeof(*ds));
}
