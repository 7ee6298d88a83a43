/* SPDX-License-Identifier: MIT */
/*
 * Layer 1, utilities: the model's event counters, one struct that every
 * part from the conversions up adds to and cvmg_get_stats() reports.
 */
#ifndef CVMG_COUNTERS_H
#define CVMG_COUNTERS_H

#include <stdbool.h>
#include <stdint.h>

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

/* One conversion of @npages pages to private or shared (@early: one that
 * bypasses __set_memory_enc_pgtable() and its checker). */
static inline void counters_conversion(struct counters *n, uint64_t npages, bool to_private,
				       bool early)
{
	n->conversions++;
	if (early)
		n->early_conversions++;
	if (to_private) {
		n->conv_private++;
		n->pages_private += npages;
	} else {
		n->conv_shared++;
		n->pages_shared += npages;
	}
}

#endif /* CVMG_COUNTERS_H */
