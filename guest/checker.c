/* SPDX-License-Identifier: MIT */
/*
 * Layer 3, conversions.
 *
 * The 2 MiB alignment checker of RFC patch 5 ("x86: CVMs: Ensure that memory
 * conversions happen at 2M alignment"), which hooks
 * __set_memory_enc_pgtable() in arch/x86/mm/pat/set_memory.c and flags a
 * conversion whose address or size (numpages << PAGE_SHIFT) is not a
 * multiple of HPAGE_SIZE. The patch as posted WARNs and returns -EINVAL; the
 * model records and counts every such conversion with the model function
 * that asked for it, and refuses it only under CVMG_F_CHECKER_ENFORCE
 * (decided in set_memory.c).
 */
#include <stdlib.h>
#include <string.h>

#include "checker.h"
#include "util.h"

bool checker_note(struct checker *c, uint64_t seq, uint64_t gpa, uint64_t npages, bool to_private,
		  enum cvmg_site site)
{
	struct cvmg_unaligned *r;

	if (IS_ALIGNED(gpa, SZ_2M) && IS_ALIGNED(npages << PAGE_SHIFT, SZ_2M))
		return false;
	c->total++;
	c->by_site[site]++;
	if (c->len < c->max &&
	    !grow_array((void **)&c->recs, sizeof(*c->recs), &c->cap, c->len + 1)) {
		r = &c->recs[c->len++];
		memset(r, 0, sizeof(*r));
		r->sz = sizeof(*r);
		r->gpa = gpa;
		r->npages = npages;
		r->site = (uint32_t)site;
		r->to_private = to_private;
		r->seq = seq;
	}
	return true;
}

void checker_destroy(struct checker *c)
{
	free(c->recs);
	memset(c, 0, sizeof(*c));
}
