/* SPDX-License-Identifier: MIT */
/*
 * Layer 3, conversions: set_memory_{de,en}crypted() and the early
 * (pre-checker) variant: checker, direct-map split, exit shaping.
 */
#ifndef CVMG_SET_MEMORY_H
#define CVMG_SET_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

#include <cvmconv/guest.h>

#include "guest_mem.h"

int set_memory(struct guest_mem *g, uint64_t gpa, uint64_t npages, bool to_private,
	       enum cvmg_site site);
/* early_set_memory_{de,en}crypted() on @size bytes at @addr: no checker. */
int set_memory_early(struct guest_mem *g, uint64_t addr, uint64_t size, bool to_private);

#endif /* CVMG_SET_MEMORY_H */
