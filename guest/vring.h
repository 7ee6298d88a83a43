/* SPDX-License-Identifier: MIT */
/* Layer 1, utilities: the size of a virtio ring, for the boot's virtio-rng
 * and the virtio workloads. */
#ifndef CVMG_VRING_H
#define CVMG_VRING_H

#include <stdint.h>

#include "util.h"

/* vring_size() of a split virtqueue with SMP_CACHE_BYTES (64) alignment. */
static inline uint64_t vring_bytes(uint64_t num)
{
	return ALIGN_UP(16 * num + 2 * (3 + num), 64) + 2 * 3 + 8 * num;
}

#endif /* CVMG_VRING_H */
