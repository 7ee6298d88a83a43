/* SPDX-License-Identifier: MIT */
/*
 * Layer 2, physical memory: uptime churn, page cache and unmovable kernel
 * allocations that fragment the buddy allocator (cvmg_churn()).
 */
#ifndef CVMG_CHURN_H
#define CVMG_CHURN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buddy.h"
#include "rng.h"

struct churn_alloc {
	uint64_t pfn;
	uint32_t order;
	bool kernel; /* unmovable kernel memory, else page cache */
};
struct churn {
	struct churn_alloc *v;
	size_t len, cap;
	uint64_t pages, kernel_pages;
};
/* @steps steps of churn on @b at @fill_pct % of managed memory in use. */
int churn_run(struct churn *c, struct buddy *b, struct rng *r, uint32_t fill_pct, uint64_t steps);
void churn_destroy(struct churn *c);

#endif /* CVMG_CHURN_H */
