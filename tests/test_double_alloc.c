/* SPDX-License-Identifier: MIT */
/*
 * The library's double-allocation figure equals the kernel's.
 *
 * Shared side: an MFD_HUGETLB memfd of 16 real 2 MiB huge pages, all
 * touched; private side: guest_memfd where the host has one, else a shmem
 * memfd (4 KiB either way, punched at once, so it never
 * holds stale memory). A seeded sequence of random guest conversions (single
 * pages, unaligned multi-page runs, 2 MiB aligned runs, both directions,
 * including no-ops) runs through the library; after each one:
 *   A = huge pages of the shared memfd the kernel still has allocated,
 *       probed exactly per huge page (hpage_allocated(), see conv_util.h:
 *       hugetlbfs has no SEEK_DATA/SEEK_HOLE support on this kernel),
 *   P = private pages per cvmconv_is_private() (also checked against the
 *       fake KVM's attributes),
 *   kernel double allocation = 4 KiB * |{p in P : huge page of p in A}|,
 * and stats.double_alloc_bytes must equal it, the peak must be at least
 * every value seen, and A must be exactly the huge pages with a shared page.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "conv_util.h"

#define GPA_BASE (2 * SZ_1G)
#define MAX_HP 16u
#define MAX_PAGES (MAX_HP * PAGES_PER_2M)
#define NSTEPS 200
#define SEED 0x5eed0c0dULL

/* Where the region lies in the shared memfd. */
struct geom {
	uint64_t size;	    /* region bytes */
	uint64_t offset;    /* shared_offset in the memfd */
	uint64_t file_size; /* memfd bytes, whole huge pages */
};

static const struct geom aligned_geom = { 16 * SZ_2M, 0, 16 * SZ_2M };
/* The region starts 1 MiB into a huge page and ends 1 MiB into another:
 * the two edge huge pages are partly outside the region (they may belong
 * to someone else) and must never be punched, only the 14 inner ones. */
static const struct geom offset_geom = { 15 * SZ_2M, SZ_2M / 2, 16 * SZ_2M };

struct rnd {
	uint64_t s;
};

static uint64_t rnd_next(struct rnd *r) /* xorshift64* */
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 2685821657736338717ULL;
}

static uint64_t rnd_below(struct rnd *r, uint64_t n)
{
	return rnd_next(r) % n;
}

struct state {
	struct geom g;
	uint64_t npages, nhp;
	bool priv[MAX_PAGES];
	uint64_t peak_seen;
};

/* memfd huge page holding region page @p */
static unsigned hp_of(const struct state *s, uint64_t p)
{
	return (unsigned)((s->g.offset + p * SZ_4K) / SZ_2M);
}

/* Is memfd huge page @h wholly inside the region? */
static bool hp_whole(const struct state *s, unsigned h)
{
	uint64_t start = (uint64_t)h * SZ_2M;

	return start >= s->g.offset && start + SZ_2M <= s->g.offset + s->g.size;
}

static void check_step(struct conv_env *e, struct state *s, unsigned step, const char *what)
{
	bool in_a[MAX_HP], any_shared[MAX_HP];
	uint64_t na = 0, kernel_dbl = 0;
	struct cvmconv_stats st;

	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, GPA_BASE, s->g.size), 0);
	memset(any_shared, 0, sizeof(any_shared));
	for (uint64_t p = 0; p < s->npages; p++)
		any_shared[hp_of(s, p)] |= !s->priv[p];
	for (unsigned h = 0; h < s->nhp; h++) {
		/* Every live shared page was touched, and a huge page wholly in
		 * the region whose pages are all private must have been punched,
		 * one partly outside never: the kernel holds exactly the huge
		 * pages that have a shared page or are not wholly inside. */
		bool expect = any_shared[h] || !hp_whole(s, h);

		in_a[h] = hpage_allocated(e->shared_fd, (uint64_t)h * SZ_2M, SZ_2M);
		na += in_a[h];
		if (in_a[h] != expect)
			fail_msg("step %u (%s): huge page %u: kernel %s it, expected %s", step,
				 what, h, in_a[h] ? "holds" : "freed", expect ? "held" : "freed");
	}
	assert_int_equal(fd_allocated_bytes(e->shared_fd), na * SZ_2M);

	for (uint64_t p = 0; p < s->npages; p++) {
		int r = cvmconv_is_private(e->c, GPA_BASE + p * SZ_4K);

		assert_true(r == 0 || r == 1);
		if (r != (int)s->priv[p])
			fail_msg("step %u (%s): page %llu: library %d, model %d", step, what,
				 (unsigned long long)p, r, (int)s->priv[p]);
		if (r == 1 && in_a[hp_of(s, p)])
			kernel_dbl += SZ_4K;
	}
	/* the private stand-in never holds a stale page */
	st = stats_of(e->c);
	if (st.double_alloc_bytes != kernel_dbl)
		fail_msg("step %u (%s): library double_alloc_bytes %llu, kernel %llu", step, what,
			 (unsigned long long)st.double_alloc_bytes, (unsigned long long)kernel_dbl);
	if (kernel_dbl > s->peak_seen)
		s->peak_seen = kernel_dbl;
	assert_true(st.double_alloc_peak_bytes >= s->peak_seen);
	assert_true(st.double_alloc_peak_bytes <= s->g.size);
	assert_int_equal(st.punch_failures, 0);
	assert_int_equal(st.punch_pending_bytes, 0);
}

static void run_random(struct conv_env *e, const struct geom *g, uint64_t seed)
{
	struct state *s = calloc(1, sizeof(*s));
	struct cvmconv_region r;
	struct rnd rng = { seed };
	uint64_t to_priv = 0, to_shared = 0;
	const uint64_t NPAGES = g->size / SZ_4K;
	const uint64_t NHP = g->file_size / SZ_2M;

	assert_non_null(s);
	e->extra = s;
	s->g = *g;
	s->npages = NPAGES;
	s->nhp = NHP;
	assert_true(e->reserved); /* the test called ENV_RESERVE */
	env_ctx(e, CVMCONV_UNALIGNED_ALLOW);
	ENV_SHARED(e, g->file_size, true);
	env_private(e, g->size);
	r = region_desc(GPA_BASE, g->size, e->private_fd, e->shared_fd, NULL);
	r.shared_offset = g->offset;
	assert_int_equal(fake_kvm_add_region(&e->fake, e->c, &r), 0);
	/* the guest (and whoever owns the rest of the edge huge pages) touched
	 * all of it */
	for (unsigned h = 0; h < NHP; h++)
		((volatile uint8_t *)e->shared_map)[(uint64_t)h * SZ_2M] = 1;
	assert_int_equal(fd_allocated_bytes(e->shared_fd), g->file_size);
	print_message("double_alloc: offset %llu, seed 0x%llx, %d steps\n",
		      (unsigned long long)g->offset, (unsigned long long)seed, NSTEPS);
	check_step(e, s, 0, "start");

	for (unsigned step = 1; step <= NSTEPS; step++) {
		unsigned kind = (unsigned)rnd_below(&rng, 4);
		bool to_private = rnd_below(&rng, 100) < 55; /* drift towards private */
		uint64_t first, n, hint = CVMCONV_MAP_GPA_RANGE_PAGE_SZ_4K;
		const char *what;

		switch (kind) {
		case 0: /* one 4 KiB page */
			first = rnd_below(&rng, NPAGES);
			n = 1;
			what = "4K";
			break;
		case 1: /* unaligned multi-page run */
			first = rnd_below(&rng, NPAGES - 1);
			n = 2 + rnd_below(&rng, 1500);
			what = "unaligned";
			break;
		case 2: /* 2 MiB aligned, 1..3 huge pages, with the 2M hint as SEV-SNP
			 * sends it for 2 MiB entries */
			first = rnd_below(&rng, NPAGES / PAGES_PER_2M) * PAGES_PER_2M;
			n = (1 + rnd_below(&rng, 3)) * PAGES_PER_2M;
			hint = CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M;
			what = "2M";
			break;
		default: /* the rest of a huge page from a random page: completes
			  * (or re-breaks) huge pages left mixed earlier */
			first = rnd_below(&rng, NPAGES);
			n = PAGES_PER_2M - first % PAGES_PER_2M;
			what = "tail";
			break;
		}
		if (first + n > NPAGES)
			n = NPAGES - first;
		if (hint == CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M && n % PAGES_PER_2M)
			hint = CVMCONV_MAP_GPA_RANGE_PAGE_SZ_4K;

		guest_map(e->c, GPA_BASE + first * SZ_4K, n * SZ_4K, to_private, hint);

		/*
		 * The library counts a huge page as allocated from the moment any
		 * of its pages is live, but the kernel allocates a punched huge
		 * page again only when it is touched. A guest writes the memory it
		 * converted to shared (that is why it converted it), so do the same:
		 * write one byte of every page that became shared. Then the
		 * library's figure is not just an upper bound but the kernel's
		 * exact truth, which is what this test compares.
		 */
		for (uint64_t p = first; p < first + n; p++) {
			if (s->priv[p] == to_private)
				continue;
			s->priv[p] = to_private;
			if (to_private) {
				to_priv += SZ_4K;
			} else {
				to_shared += SZ_4K;
				((volatile uint8_t *)e->shared_map)[g->offset + p * SZ_4K] = 0xa5;
			}
		}
		check_step(e, s, step, what);
		assert_int_equal(stats_of(e->c).to_private_bytes, to_priv);
		assert_int_equal(stats_of(e->c).to_shared_bytes, to_shared);
	}
	/* the sequence must have exercised double allocation at all */
	assert_true(s->peak_seen > 0);
	/* ...and whole huge pages must have been freed along the way */
	assert_true(stats_of(e->c).punches > 0);
	print_message("double_alloc: peak %llu bytes, final %llu bytes\n",
		      (unsigned long long)s->peak_seen,
		      (unsigned long long)stats_of(e->c).double_alloc_bytes);
}

static void test_double_alloc_matches_kernel(void **state)
{
	struct conv_env *e = *state;

	/* the memfd's huge pages, margin for the probe */
	ENV_RESERVE(e, aligned_geom.file_size / SZ_2M + 4);
	run_random(e, &aligned_geom, SEED);
}

static void test_double_alloc_offset_region(void **state)
{
	struct conv_env *e = *state;
	const struct geom *g = &offset_geom;
	const uint64_t edge = (SZ_2M - g->offset) / SZ_4K; /* region pages in hp 0 */

	ENV_RESERVE(e, g->file_size / SZ_2M + 4);
	run_random(e, g, SEED + 1);

	/* Then everything private: only the 14 inner huge pages are freed;
	 * the edge ones stay allocated and their region pages (256 each)
	 * count as double allocated. */
	guest_map(e->c, GPA_BASE, g->size, true, 0);
	memset(((struct state *)e->extra)->priv, 1, sizeof(bool) * (g->size / SZ_4K));
	assert_int_equal(fd_allocated_bytes(e->shared_fd), 2 * SZ_2M);
	assert_int_equal(stats_of(e->c).double_alloc_bytes, 2 * edge * SZ_4K);
	check_step(e, e->extra, NSTEPS + 1, "all private");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_double_alloc_matches_kernel, conv_env_setup,
						conv_env_teardown),
		cmocka_unit_test_setup_teardown(test_double_alloc_offset_region, conv_env_setup,
						conv_env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
