/* SPDX-License-Identifier: MIT */
/*
 * Layer 1, utilities: a set of addresses (open addressing, key + 1 stored,
 * 0 = empty). Holds the live buddy-backed coherent allocations (so a bad free
 * cannot corrupt the buddy allocator) and the pages that
 * early_set_memory_decrypted() made shared.
 */
#ifndef CVMG_ADDR_SET_H
#define CVMG_ADDR_SET_H

#include <stdbool.h>
#include <stdint.h>

struct addr_set {
	uint64_t *keys;
	uint64_t cap, len;
};
void addr_set_destroy(struct addr_set *s);
int addr_set_add(struct addr_set *s, uint64_t key);
bool addr_set_has(const struct addr_set *s, uint64_t key);
void addr_set_del(struct addr_set *s, uint64_t key); /* absent: nothing */

#endif /* CVMG_ADDR_SET_H */
