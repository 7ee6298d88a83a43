/* SPDX-License-Identifier: MIT */
/*
 * Dynamic SWIOTLB growth on a fragmented guest (the RFC review's question:
 * what happens when growth cannot find a free 2 MiB block at runtime).
 * All guests: 1 GiB, 1 CPU, TDX. Low RAM is the whole 1 GiB: ZONE_DMA
 * [1M,16M) and ZONE_DMA32 above; dynamic pools come from ZONE_DMA32 (their
 * phys_limit is 4 GiB).
 */
#include "guest_test_util.h"

static struct cvmg *setup(enum cvmg_mode mode, uint32_t flags, uint32_t *dev)
{
	struct cvmg_config c = test_config(1 * GiB, 1, mode, CVMG_PLATFORM_TDX, NULL);
	struct cvmg_device_opts o = { .sz = sizeof(o), .name = "t" };
	struct cvmg *m;

	c.flags = flags;
	m = make_model(&c, 1);
	assert_int_equal(cvmg_device_add(m, &o, dev), 0);
	return m;
}

/* Map 256 KiB (a whole segment) until a mapping fails; that failure is
 * the one that schedules growth. Returns the mappings that succeeded. */
static uint64_t fill_pool(struct cvmg *m, uint32_t dev)
{
	uint64_t n = 0, tlb;
	int ret;

	while ((ret = cvmg_dma_map(m, dev, 0, 0x100000, 256 * KiB, &tlb)) == 0)
		n++;
	assert_int_equal(ret, -ENOMEM);
	return n;
}

static uint64_t dma32_free_at_least(const struct cvmg_stats *st, unsigned order)
{
	uint64_t n = 0;

	for (unsigned o = order; o <= CVMG_MAX_ORDER; o++)
		n += st->free_blocks_zone[1][o];
	return n;
}

/*
 * RFC guest after enough uptime: the page cache has filled RAM once
 * (~250k pages, so within 400k churn steps), reclaim frees scattered pages,
 * and no free block of order >= 9 is left in ZONE_DMA32. The 128 MiB pool
 * (8 % of 1 GiB, rounded up) full, a 256 KiB mapping schedules growth,
 * which wants 4 MiB, 2 MiB, then 1 MiB (IO_TLB_MIN_SLABS; the model's RFC
 * stopped at 2 MiB before issue 18) and fails. The transient
 * pool would come from the atomic pools, 128 KiB each on a 1 GiB guest
 * (1 GiB / 8192 < 32 pages -> the 128 KiB minimum): too small for 256 KiB,
 * so the mapping fails.
 */
static void test_rfc_growth_fails_when_fragmented(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(CVMG_MODE_RFC, 0, &dev);
	struct cvmg_stats st;
	uint64_t tlb;

	(void)state;
	assert_int_equal(cvmg_churn(m, 400000), 0);
	st = get_stats(m);
	assert_int_equal(dma32_free_at_least(&st, 9), 0);
	assert_int_equal(st.atomic_pool_size, 128 * KiB);
	/* 512 segments, the first one holds the virtio-rng ring (RFC: from
	 * SWIOTLB), so 511 whole-segment mappings fit */
	assert_int_equal(fill_pool(m, dev), 511);
	st = get_stats(m);
	assert_int_equal(st.swiotlb_growth_attempts, 1);
	assert_int_equal(st.swiotlb_growth_failures, 1);
	assert_int_equal(st.swiotlb_dyn_pools, 0);
	assert_int_equal(st.swiotlb_transient_pools, 0);
	/* slots 1..127 of segment 0 still take small mappings ... */
	for (int i = 0; i < 127; i++)
		assert_int_equal(cvmg_dma_map(m, dev, 0, 0x100000, 1536, &tlb), 0);
	assert_int_equal(get_stats(m).swiotlb_transient_pools, 0);
	/* ... and then a small mapping gets a transient pool from the atomic
	 * pool (1 slot -> 4 KiB of it; no conversion), and growth fails again */
	assert_int_equal(cvmg_dma_map(m, dev, 0, 0x100000, 1536, &tlb), 0);
	st = get_stats(m);
	assert_int_equal(st.swiotlb_transient_pools, 1);
	assert_int_equal(st.swiotlb_growth_failures, 2);
	assert_int_equal(cvmg_dma_unmap(m, dev, tlb, 1536), 0);
	cvmg_destroy(m);
}

/* An unfragmented RFC guest grows by a 4 MiB pool: a 4 MiB buddy block,
 * 4 MiB aligned, so its conversion is 2 MiB aligned (not flagged). */
static void test_rfc_growth_4m(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(CVMG_MODE_RFC, 0, &dev);
	struct cvmg_stats st;
	uint64_t tlb;

	(void)state;
	assert_int_equal(fill_pool(m, dev), 511);
	st = get_stats(m);
	assert_int_equal(st.swiotlb_dyn_pools, 1);
	assert_int_equal(st.swiotlb_dyn_bytes, 4 * MiB);
	assert_int_equal(st.unaligned_by_site[CVMG_SITE_SWIOTLB_DYNAMIC], 0);
	/* the new pool serves the retry */
	assert_int_equal(cvmg_dma_map(m, dev, 0, 0x100000, 256 * KiB, &tlb), 0);
	assert_int_equal(tlb % (4 * MiB), 0);
	cvmg_destroy(m);
}

/* Take every free block of order >= 9 in ZONE_DMA32 with 2 MiB coherent
 * allocations (legacy: buddy blocks of order 9). */
static size_t eat_2m_blocks(struct cvmg *m, uint32_t dev, uint64_t *held, size_t max)
{
	size_t n = 0;

	while (n < max && cvmg_dma_alloc(m, dev, 2 * MiB, 0, &held[n]) == 0)
		n++;
	return n;
}

/* Then the free 1 MiB blocks that are left: the one in .bss..decrypted's
 * unused tail (free_initmem frees [62 MiB + 12 KiB, 64 MiB)), and any other.
 * Kept until the model is destroyed. */
static void eat_1m_blocks(struct cvmg *m, uint32_t dev)
{
	struct cvmg_stats st = get_stats(m);
	uint64_t gpa;

	while (dma32_free_at_least(&st, 8)) {
		assert_int_equal(cvmg_dma_alloc(m, dev, 1 * MiB, 0, &gpa), 0);
		st = get_stats(m);
	}
}

/*
 * Legacy with CONFIG_SWIOTLB_DYNAMIC: no free 2 MiB block, but one free
 * 1 MiB block (a 2 MiB block freed and half re-allocated). The worker tries
 * 4 MiB (order 10), 2 MiB (order 9), then 1 MiB (order 8): success, a pool
 * whose conversion (256 pages at an odd MiB) the checker flags.
 * Once the 2 MiB blocks are gone, the 1 GiB layout's other order-8 blocks
 * in ZONE_DMA32 are taken too (eat_1m_blocks); what is left are
 * 239 pages below the firmware area and the per-CPU chunk's smaller pieces.
 */
static void test_legacy_halving_succeeds(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(CVMG_MODE_LEGACY, CVMG_F_SWIOTLB_DYNAMIC, &dev);
	static uint64_t held[1024];
	struct cvmg_stats st;
	uint64_t half, tlb;
	size_t n;

	(void)state;
	n = eat_2m_blocks(m, dev, held, 1024);
	assert_true(n > 400);
	eat_1m_blocks(m, dev);
	st = get_stats(m);
	assert_int_equal(dma32_free_at_least(&st, 8), 0);
	assert_int_equal(cvmg_dma_free(m, dev, held[--n], 2 * MiB), 0);
	assert_int_equal(cvmg_dma_alloc(m, dev, 1 * MiB, 0, &half), 0);
	assert_int_equal(half, held[n]); /* the low half; the high half is free */
	st = get_stats(m);
	assert_int_equal(dma32_free_at_least(&st, 8), 1);
	assert_int_equal(fill_pool(m, dev), 256); /* 64 MiB / 256 KiB */
	st = get_stats(m);
	assert_int_equal(st.swiotlb_growth_failures, 0);
	assert_int_equal(st.swiotlb_dyn_pools, 1);
	assert_int_equal(st.swiotlb_dyn_bytes, 1 * MiB);
	assert_int_equal(st.unaligned_by_site[CVMG_SITE_SWIOTLB_DYNAMIC], 1);
	assert_int_equal(cvmg_dma_map(m, dev, 0, 0x100000, 256 * KiB, &tlb), 0);
	assert_int_equal(tlb, held[n] + 1 * MiB);
	cvmg_destroy(m);
}

/* Same, without the 1 MiB hole: every size fails, growth fails. */
static void test_legacy_halving_fails(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(CVMG_MODE_LEGACY, CVMG_F_SWIOTLB_DYNAMIC, &dev);
	static uint64_t held[1024];
	struct cvmg_stats st;

	(void)state;
	eat_2m_blocks(m, dev, held, 1024);
	eat_1m_blocks(m, dev);
	assert_int_equal(fill_pool(m, dev), 256);
	st = get_stats(m);
	assert_int_equal(st.swiotlb_growth_attempts, 1);
	assert_int_equal(st.swiotlb_growth_failures, 1);
	assert_int_equal(st.swiotlb_dyn_pools, 0);
	cvmg_destroy(m);
}

/* Without CONFIG_SWIOTLB_DYNAMIC (legacy default) a full pool just fails. */
static void test_legacy_static(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(CVMG_MODE_LEGACY, 0, &dev);
	uint64_t tlb;

	(void)state;
	assert_int_equal(fill_pool(m, dev), 256);
	assert_int_equal(cvmg_dma_map(m, dev, 0, 0x100000, 1536, &tlb), -ENOMEM);
	assert_int_equal(get_stats(m).swiotlb_growth_attempts, 0);
	cvmg_destroy(m);
}

/* Uptime fragments: free 2 MiB blocks outside ZONE_DMA drop to none. */
static void test_churn_fragments(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(CVMG_MODE_LEGACY, 0, &dev);
	struct cvmg_stats before = get_stats(m), after;

	(void)state;
	assert_true(dma32_free_at_least(&before, 9) > 200); /* ~230 4 MiB blocks */
	assert_int_equal(cvmg_churn(m, 50000), 0);
	after = get_stats(m);
	assert_true(dma32_free_at_least(&after, 9) < dma32_free_at_least(&before, 9));
	assert_int_equal(cvmg_churn(m, 350000), 0);
	after = get_stats(m);
	assert_int_equal(dma32_free_at_least(&after, 9), 0);
	assert_true(after.free_pages > 0);
	cvmg_destroy(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc_growth_fails_when_fragmented),
		cmocka_unit_test(test_rfc_growth_4m),
		cmocka_unit_test(test_legacy_halving_succeeds),
		cmocka_unit_test(test_legacy_halving_fails),
		cmocka_unit_test(test_legacy_static),
		cmocka_unit_test(test_churn_fragments),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
