/* SPDX-License-Identifier: MIT */
/*
 * The 2 MiB huge page pool: raise nr_hugepages by what the run needs (root
 * only) and put it back at exit, also on SIGINT/SIGTERM, with the tools'
 * helper (tools/hugepool.h), under the lock the convert demo and the test
 * fixtures take, so that runs counting free huge pages do not race.
 */
#include <stdio.h>

#include "hugepool.h"
#include "mini-vmm.h"

#define HUGE_2M (2ULL << 20)

void hugepages_restore(void)
{
	hugepool_restore();
}

bool hugepages_reserve(long need, char *why, size_t len)
{
	long before, after;

	if (need < 0 || hugepool_reserve(HUGE_2M, (uint64_t)need, why, len))
		return false;
	hugepool_raised(&before, &after);
	if (before >= 0)
		printf("huge pages     : raised nr_hugepages %ld -> %ld (restored at exit)\n",
		       before, after);
	return true;
}
