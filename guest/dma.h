/* SPDX-License-Identifier: MIT */
/*
 * Layer 5, DMA API: dma-direct coherent allocations, streaming maps, the
 * background work they schedule (cvmg_dma_*, cvmg_swiotlb_map,
 * cvmg_device_add in include/cvmconv/guest.h).
 */
#ifndef CVMG_DMA_H
#define CVMG_DMA_H

#include "cvmg.h"

/* Runs scheduled background work (swiotlb growth, atomic pool expansion). */
int run_workers(struct cvmg *m);

#endif /* CVMG_DMA_H */
