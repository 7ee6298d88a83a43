/* SPDX-License-Identifier: MIT */
/* Layer 1, utilities: the model's only source of randomness. */
#ifndef CVMG_RNG_H
#define CVMG_RNG_H

#include <stdint.h>

struct rng {
	uint64_t s[4];
};
void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_next(struct rng *r);
uint64_t rng_below(struct rng *r, uint64_t n); /* uniform in [0, n), n > 0 */

#endif /* CVMG_RNG_H */
