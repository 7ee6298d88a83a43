/* SPDX-License-Identifier: MIT */
/*
 * Layer 5, DMA API: struct cvmg, one modelled guest. It holds the guest
 * memory (layers 2-3), the pools and devices (layer 4) and what the DMA API
 * and the boot keep; the DMA API (dma.c) is the lowest code that sees it.
 */
#ifndef CVMG_CVMG_H
#define CVMG_CVMG_H

#include <stdbool.h>
#include <stdint.h>

#include <cvmconv/guest.h>

#include "addr_set.h"
#include "atomic_pool.h"
#include "churn.h"
#include "device.h"
#include "guest_mem.h"
#include "rng.h"
#include "swiotlb.h"

struct cvmg {
	struct cvmg_config cfg; /* normalised copy; mem.cfg points here */
	struct rng rng;
	struct guest_mem mem;
	struct swiotlb swiotlb;
	struct atomic_pools ap;
	struct devices devs;
	struct addr_set coherent; /* live buddy-backed coherent allocations */
	struct churn churn;
	uint64_t bss_dec_start, bss_dec_unused; /* .bss..decrypted; its unused tail (pages) */
	bool booted;
};

#endif /* CVMG_CVMG_H */
