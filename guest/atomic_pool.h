/* SPDX-License-Identifier: MIT */
/*
 * Layer 4, pools: the DMA atomic pools (kernel/dma/pool.c), memory decrypted
 * once and handed out without a conversion. Uses the buddy allocator and
 * set_memory() of the guest memory.
 */
#ifndef CVMG_ATOMIC_POOL_H
#define CVMG_ATOMIC_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"
#include "layout.h"

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
int atomic_pools_init(struct atomic_pools *a, struct guest_mem *g);
/* dma_alloc_from_pool(): first pool guessed from the device's zone. */
int atomic_pool_alloc(struct atomic_pools *a, uint64_t dma_limit, uint64_t size, uint64_t *addr);
bool atomic_pool_free(struct atomic_pools *a, uint64_t addr, uint64_t size);
int atomic_pool_run_worker(struct atomic_pools *a, struct guest_mem *g);
void atomic_pools_destroy(struct atomic_pools *a);

#endif /* CVMG_ATOMIC_POOL_H */
