/* SPDX-License-Identifier: MIT */
/*
 * Layer 3, conversions: the 2 MiB alignment checker of RFC patch 5, with the
 * call sites of what it flagged. Uses only the utilities.
 */
#ifndef CVMG_CHECKER_H
#define CVMG_CHECKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cvmconv/guest.h>

struct checker {
	struct cvmg_unaligned *recs;
	size_t len, cap, max;
	uint64_t by_site[CVMG_SITE_SLOTS];
	uint64_t total;
};
/* Returns true when the conversion is not 2 MiB aligned in start or size;
 * a record keeps @seq, the number of the set_memory() call. */
bool checker_note(struct checker *c, uint64_t seq, uint64_t gpa, uint64_t npages, bool to_private,
		  enum cvmg_site site);
void checker_destroy(struct checker *c);

#endif /* CVMG_CHECKER_H */
