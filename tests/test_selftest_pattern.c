/* SPDX-License-Identifier: MIT */
/*
 * The conversion pattern of the KVM selftest
 * tools/testing/selftests/kvm/x86/private_mem_conversions_test.c, replayed
 * through the library over real backings:
 *   (a) a shmem memfd as the shared side (4 KiB punches at once),
 *   (b) an MFD_HUGETLB 2 MiB memfd as the shared side (whole huge pages only).
 * The private side is a real guest_memfd from the host's /dev/kvm where it
 * offers one (mmap-able, GUEST_MEMFD_FLAG_INIT_SHARED; accounted with
 * mincore()), else a shmem memfd standing in for it; the run says which. The
 * only fake is the attribute ioctl; punches reach the real kernel.
 *
 * Shape (as in the selftest): fill the data range, then for ranges of
 * 4 KiB, 2 MiB and 2 MiB + 4 KiB at offsets 0, 4 KiB and 2 MiB: write the
 * range, convert it to private, write the private data, convert it back to
 * shared and write it again. Finally convert a range of more than 2 MiB to
 * private and convert its odd pages back to shared one by one (holes).
 *
 * A model of every page (live side, expected content of both backings,
 * what the kernel holds allocated) is checked against the kernel (pread of
 * both fds, st_blocks), the library (cvmconv_is_private, stats) and the
 * fake KVM (attributes) after every step.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "conv_util.h"

#define GPA_BASE SZ_1G
#define REGION_SIZE (8ULL << 20)
#define NPAGES PAGES_OF(REGION_SIZE)
#define NHP (REGION_SIZE / SZ_2M)

enum content { C_ZERO, C_PAT };

struct expect {
	uint8_t kind; /* enum content */
	uint32_t seed;
};

struct model {
	bool huge; /* shared side is 2 MiB hugetlb */
	bool priv[NPAGES];
	struct expect sh[NPAGES], pv[NPAGES];
	bool sh_alloc[NPAGES]; /* shmem shared side: page allocated */
	bool hp_alloc[NHP];    /* hugetlb shared side: huge page allocated */
	bool pv_alloc[NPAGES]; /* private stand-in: page allocated */
	uint64_t to_private_bytes, to_shared_bytes;
	uint32_t seed;
	unsigned steps;
	uint8_t shbuf[REGION_SIZE], pvbuf[REGION_SIZE]; /* pread targets */
};

static uint64_t hp_of(uint64_t p)
{
	return p / PAGES_PER_2M;
}

/* "held" as the library defines it for a huge page of the shared side:
 * allocated, or any page of it live (the library cannot know whether a
 * live page was touched yet). */
static bool hp_held(const struct model *m, uint64_t h)
{
	if (m->hp_alloc[h])
		return true;
	for (uint64_t p = h * PAGES_PER_2M; p < (h + 1) * PAGES_PER_2M; p++)
		if (!m->priv[p])
			return true;
	return false;
}

static uint64_t mixed_extents(const struct model *m)
{
	uint64_t n = 0;

	for (uint64_t h = 0; h < NHP; h++) {
		uint64_t np = 0;

		for (uint64_t p = h * PAGES_PER_2M; p < (h + 1) * PAGES_PER_2M; p++)
			np += m->priv[p];
		n += np != 0 && np != PAGES_PER_2M;
	}
	return n;
}

static void check_content(const uint8_t *buf, uint64_t p, const struct expect *x, const char *side,
			  const struct model *m)
{
	bool ok = x->kind == C_ZERO ? page_is_zero(buf, p) : pattern_check(buf, p, x->seed);

	if (!ok)
		fail_msg("step %u: %s side of page %llu (gpa 0x%llx, %s) should hold %s%.0u",
			 m->steps, side, (unsigned long long)p,
			 (unsigned long long)(GPA_BASE + p * SZ_4K),
			 m->priv[p] ? "private" : "shared",
			 x->kind == C_ZERO ? "zeros" : "pattern seed ", x->seed);
}

static void check_all(struct conv_env *e, struct model *m)
{
	struct cvmconv_stats st;
	uint8_t *sh, *pv;
	uint64_t sh_expect = 0, pv_expect = 0, dbl = 0;

	m->steps++;
	/* attributes: the fake KVM and the library agree page by page */
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, GPA_BASE, REGION_SIZE), 0);
	for (uint64_t p = 0; p < NPAGES; p++) {
		int r = cvmconv_is_private(e->c, GPA_BASE + p * SZ_4K);

		if (r != (int)m->priv[p])
			fail_msg("step %u: page %llu: library says %d, expected %d", m->steps,
				 (unsigned long long)p, r, (int)m->priv[p]);
	}

	/* contents of both backings: live data survived, stale data went */
	sh = m->shbuf;
	pv = m->pvbuf;
	read_into(e->shared_fd, sh, REGION_SIZE);
	read_into(e->private_fd, pv, REGION_SIZE);
	for (uint64_t p = 0; p < NPAGES; p++) {
		check_content(sh, p, &m->sh[p], "shared", m);
		check_content(pv, p, &m->pv[p], "private", m);
	}

	/* kernel accounting: st_blocks of both fds */
	if (m->huge) {
		for (uint64_t h = 0; h < NHP; h++)
			sh_expect += m->hp_alloc[h] ? SZ_2M : 0;
		assert_int_equal(fd_allocated_bytes(e->shared_fd) % SZ_2M, 0);
	} else {
		for (uint64_t p = 0; p < NPAGES; p++)
			sh_expect += m->sh_alloc[p] ? SZ_4K : 0;
	}
	assert_int_equal(fd_allocated_bytes(e->shared_fd), sh_expect);
	for (uint64_t p = 0; p < NPAGES; p++)
		pv_expect += m->pv_alloc[p] ? SZ_4K : 0;
	assert_int_equal(fd_allocated_bytes(e->private_fd), pv_expect);

	/* library accounting. Both 4 KiB backings are punched at once, so only
	 * private pages inside a held shared huge page are double allocated. */
	if (m->huge)
		for (uint64_t p = 0; p < NPAGES; p++)
			if (m->priv[p] && hp_held(m, hp_of(p)))
				dbl += SZ_4K;
	st = stats_of(e->c);
	assert_int_equal(st.extents, NHP);
	assert_int_equal(st.mixed_extents, mixed_extents(m));
	assert_int_equal(st.double_alloc_bytes, dbl);
	assert_true(st.double_alloc_peak_bytes >= st.double_alloc_bytes);
	assert_int_equal(st.to_private_bytes, m->to_private_bytes);
	assert_int_equal(st.to_shared_bytes, m->to_shared_bytes);
	assert_int_equal(st.punch_failures, 0);
	assert_int_equal(st.punch_pending_bytes, 0);
}

/* The guest writes fresh data into [first, first + n) on the live side. */
static void guest_write(struct conv_env *e, struct model *m, uint64_t first, uint64_t n)
{
	uint32_t seed = ++m->seed;

	for (uint64_t p = first; p < first + n; p++) {
		if (m->priv[p]) {
			pattern_fill(e->private_map, p, 1, seed);
			m->pv[p] = (struct expect){ C_PAT, seed };
			m->pv_alloc[p] = true;
		} else {
			pattern_fill(e->shared_map, p, 1, seed);
			m->sh[p] = (struct expect){ C_PAT, seed };
			m->sh_alloc[p] = true;
			m->hp_alloc[hp_of(p)] = true;
		}
	}
}

/* Guest conversion of region bytes [off, off + size), and what the contract
 * says must happen to the backings. */
static void convert(struct conv_env *e, struct model *m, uint64_t off, uint64_t size,
		    bool to_private)
{
	uint64_t first = off / SZ_4K, n = size / SZ_4K;

	guest_map(e->c, GPA_BASE + off, size, to_private, CVMCONV_MAP_GPA_RANGE_PAGE_SZ_4K);
	for (uint64_t p = first; p < first + n; p++) {
		if (m->priv[p] == to_private)
			continue;
		m->priv[p] = to_private;
		if (to_private) {
			m->to_private_bytes += SZ_4K;
			if (!m->huge) {
				/* stale shmem page: punched at once */
				m->sh[p] = (struct expect){ C_ZERO, 0 };
				m->sh_alloc[p] = false;
			}
			/* hugetlb: the page keeps its data until its whole
			 * huge page is stale (below) */
		} else {
			m->to_shared_bytes += SZ_4K;
			/* stale private stand-in page: punched at once */
			m->pv[p] = (struct expect){ C_ZERO, 0 };
			m->pv_alloc[p] = false;
		}
	}
	if (to_private && m->huge) {
		for (uint64_t h = hp_of(first); h <= hp_of(first + n - 1); h++) {
			bool all = true;

			for (uint64_t p = h * PAGES_PER_2M; p < (h + 1) * PAGES_PER_2M; p++)
				all = all && m->priv[p];
			if (all && m->hp_alloc[h]) {
				m->hp_alloc[h] = false;
				for (uint64_t p = h * PAGES_PER_2M; p < (h + 1) * PAGES_PER_2M; p++)
					m->sh[p] = (struct expect){ C_ZERO, 0 };
			}
		}
	}
}

/* One selftest stage: write the range, convert to private, private data,
 * back to shared, shared data; checking after every step. */
static void stage(struct conv_env *e, struct model *m, uint64_t off, uint64_t size)
{
	uint64_t first = off / SZ_4K, n = size / SZ_4K;

	guest_write(e, m, first, n);
	check_all(e, m);
	convert(e, m, off, size, true);
	check_all(e, m);
	guest_write(e, m, first, n);
	check_all(e, m);
	convert(e, m, off, size, false);
	check_all(e, m);
	guest_write(e, m, first, n);
	check_all(e, m);
}

static void run_pattern(struct conv_env *e, bool huge)
{
	static const struct {
		uint64_t off, size;
	} ranges[] = {
		{ 0, SZ_4K },	  { 0, SZ_2M },	    { 0, SZ_2M + SZ_4K },
		{ SZ_4K, SZ_4K }, { SZ_4K, SZ_2M }, { SZ_4K, SZ_2M + SZ_4K },
		{ SZ_2M, SZ_4K }, { SZ_2M, SZ_2M }, { SZ_2M, SZ_2M + SZ_4K },
	};
	struct model *m = calloc(1, sizeof(*m));
	struct cvmconv_region r;
	uint64_t hole_off, hole_size;

	assert_non_null(m);
	e->extra = m;
	m->huge = huge;

	env_ctx(e, CVMCONV_UNALIGNED_ALLOW);
	ENV_SHARED(e, REGION_SIZE, huge);
	env_private(e, REGION_SIZE);
	r = region_desc(GPA_BASE, REGION_SIZE, e->private_fd, e->shared_fd, e->shared_map);
	assert_int_equal(fake_kvm_add_region(&e->fake, e->c, &r), 0);

	/* memory is shared by default: the guest fills the whole data range */
	guest_write(e, m, 0, NPAGES);
	check_all(e, m);

	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
		stage(e, m, ranges[i].off, ranges[i].size);

	/* Holes: a range of more than 2 MiB that covers the last page of huge
	 * page 0, all of huge page 1 (punched at once on hugetlb) and the first
	 * page of huge page 2; then its odd pages go back to shared one by
	 * one, so huge page 1 comes back as a live huge page with holes. */
	hole_off = SZ_2M - SZ_4K;
	hole_size = SZ_2M + 2 * SZ_4K;
	guest_write(e, m, hole_off / SZ_4K, hole_size / SZ_4K);
	convert(e, m, hole_off, hole_size, true);
	check_all(e, m);
	guest_write(e, m, hole_off / SZ_4K, hole_size / SZ_4K);
	check_all(e, m);
	for (uint64_t j = 0; j < hole_size; j += SZ_4K) {
		if (!((j / SZ_4K) & 1))
			continue;
		convert(e, m, hole_off + j, SZ_4K, false);
		check_all(e, m);
		guest_write(e, m, (hole_off + j) / SZ_4K, 1);
	}
	check_all(e, m);
	if (huge) {
		/* the holes left huge pages 0 and 1 mixed, both allocated */
		assert_true(m->hp_alloc[0] && m->hp_alloc[1]);
	}
	assert_int_equal(stats_of(e->c).mixed_extents, 2);
}

static void test_pattern_shmem(void **state)
{
	run_pattern(*state, false);
}

static void test_pattern_hugetlb(void **state)
{
	struct conv_env *e = *state;

	/* 4 huge pages for the region, 4 of margin */
	ENV_RESERVE(e, NHP + 4);
	run_pattern(e, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pattern_shmem, conv_env_setup,
						conv_env_teardown),
		cmocka_unit_test_setup_teardown(test_pattern_hugetlb, conv_env_setup,
						conv_env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
