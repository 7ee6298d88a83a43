/* SPDX-License-Identifier: MIT */
/*
 * Layer 1, utilities.
 *
 * The model's only randomness: xoshiro256** seeded through splitmix64 (the
 * public-domain generators by Blackman and Vigna). Same seed, same stream.
 */
#include "rng.h"

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void rng_seed(struct rng *r, uint64_t seed)
{
	uint64_t x = seed;

	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t v, int k)
{
	return (v << k) | (v >> (64 - k));
}

uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* Lemire's multiply-shift with rejection: unbiased and deterministic. */
uint64_t rng_below(struct rng *r, uint64_t n)
{
	for (;;) {
		uint64_t x = rng_next(r);
		unsigned __int128 p = (unsigned __int128)x * n;
		uint64_t lo = (uint64_t)p;

		if (lo >= n || lo >= (uint64_t)(-n) % n)
			return (uint64_t)(p >> 64);
	}
}
