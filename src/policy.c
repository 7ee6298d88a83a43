/* SPDX-License-Identifier: MIT */
/*
 * The alignment policy: what happens to a guest request whose start or size
 * is not a multiple of the granule (2 MiB by default). Such a request splits
 * host huge pages and the guest's EPT/NPT large mappings, so a host can
 * allow it, log it, or refuse it — per region, so that e.g. only
 * huge-page-backed regions refuse.
 */
#include <syslog.h>

#include "internal.h"

static const char *const policy_names[] = { "allow", "log", "reject" };

enum cvmconv_unaligned policy_strictest(struct cvmconv *c, uint32_t first, uint32_t last)
{
	enum cvmconv_unaligned mode = CVMCONV_UNALIGNED_ALLOW;

	for (uint32_t i = first; i <= last; i++)
		if ((enum cvmconv_unaligned)c->regions[i]->unaligned > mode)
			mode = (enum cvmconv_unaligned)c->regions[i]->unaligned;
	return mode;
}

bool policy_allows(struct cvmconv *c, uint64_t gpa, uint64_t size, bool to_private,
		   enum cvmconv_unaligned mode)
{
	if (!((gpa | size) & (c->granule - 1)))
		return true;
	COUNT(c, unaligned, 1);
	switch (mode) {
	case CVMCONV_UNALIGNED_ALLOW:
		return true;
	case CVMCONV_UNALIGNED_LOG:
		log_guest(c, LOG_NOTICE,
			  "unaligned conversion to %s: gpa 0x%llx size 0x%llx (granule 0x%llx, "
			  "policy %s)",
			  to_private ? "private" : "shared", (unsigned long long)gpa,
			  (unsigned long long)size, (unsigned long long)c->granule,
			  policy_names[mode]);
		return true;
	case CVMCONV_UNALIGNED_REJECT:
	default:
		/* the refusal is logged once, with its reason, by convert.c */
		return false;
	}
}
