/* SPDX-License-Identifier: MIT */
/*
 * Issue 18, facts 4, 5, 6 and 8: dynamic SWIOTLB growth and frees in RFC
 * mode, and the kernel-version switches (default: Linux 6.12). Each test
 * says what the model before issue 18 gave.
 */
#include "guest_test_util.h"

static struct cvmg *setup(uint64_t ram, enum cvmg_mode mode, uint32_t flags, uint32_t *dev)
{
	struct cvmg_config c = test_config(ram, 1, mode, CVMG_PLATFORM_TDX, NULL);
	struct cvmg_device_opts o = { .sz = sizeof(o), .name = "t" };
	struct cvmg *m;

	c.flags = flags;
	m = make_model(&c, 1);
	assert_int_equal(cvmg_device_add(m, &o, dev), 0);
	return m;
}

/* Whole-segment mappings until one fails (that one schedules growth). */
static uint64_t fill_pool(struct cvmg *m, uint32_t dev)
{
	uint64_t n = 0, tlb;

	while (cvmg_dma_map(m, dev, 0, 0x100000, 256 * KiB, &tlb) == 0)
		n++;
	return n;
}

/*
 * Fact 6 (kernel/dma/swiotlb.c: swiotlb_dyn_alloc passes IO_TLB_MIN_SLABS
 * to swiotlb_alloc_pool; the RFC leaves it): after 239500 churn steps a
 * 1 GiB RFC guest has no free 2 MiB block in ZONE_DMA32 but one of 1 MiB, so
 * growth halves 4 MiB -> 2 MiB -> 1 MiB and adds a 1 MiB pool, whose
 * conversion the checker flags. Under an enforcing checker the conversion
 * is refused, alloc_dma_pages() cannot encrypt the pages again either
 * (also refused) and leaks them: growth fails, as the old model's RFC did
 * for every case (it stopped at 2 MiB: dyn_pools 0, growth_failures 1).
 */
static void test_rfc_growth_down_to_1m(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(1 * GiB, CVMG_MODE_RFC, 0, &dev);
	struct cvmg_stats st;

	(void)state;
	assert_int_equal(cvmg_churn(m, 239500), 0);
	st = get_stats(m);
	assert_int_equal(st.free_blocks_zone[1][9] + st.free_blocks_zone[1][10], 0);
	assert_int_equal(st.free_blocks_zone[1][8], 1);
	assert_true(fill_pool(m, dev) > 500);
	st = get_stats(m);
	assert_int_equal(st.swiotlb_growth_failures, 0);
	assert_int_equal(st.swiotlb_dyn_pools, 1);
	assert_int_equal(st.swiotlb_dyn_bytes, 1 * MiB);
	assert_int_equal(st.unaligned_by_site[CVMG_SITE_SWIOTLB_DYNAMIC], 1);
	cvmg_destroy(m);

	m = setup(1 * GiB, CVMG_MODE_RFC, CVMG_F_CHECKER_ENFORCE, &dev);
	assert_int_equal(cvmg_churn(m, 239500), 0);
	fill_pool(m, dev);
	st = get_stats(m);
	assert_int_equal(st.swiotlb_dyn_pools, 0);
	assert_int_equal(st.swiotlb_growth_failures, 1);
	assert_int_equal(st.unaligned_by_site[CVMG_SITE_SWIOTLB_DYNAMIC], 2);
	/* 256 leaked by the refused pool, 3 x 32 by the refused 128 KiB atomic
	 * pool chunks at boot (atomic_pool_expand leaks on x86) */
	assert_int_equal(st.dma_leaked_pages, 256 + 3 * 32);
	cvmg_destroy(m);
}

/*
 * Fact 5, as the sources have it (kernel/dma/swiotlb.c: swiotlb_free only
 * calls swiotlb_release_slots; kernel/dma/direct.c: dma_direct_free tries
 * dma_free_from_pool first): an RFC coherent allocation served by a
 * transient pool lives in atomic-pool memory, so dma_free_coherent() gives
 * that memory back to the atomic pool and never reaches swiotlb_free(); the
 * transient pool, slots still taken, is never deleted. Nothing of the
 * atomic pool leaks. The old model did the same (it freed to the atomic pool
 * first), without counting the stale pool; the fact as stated ("its
 * atomic-pool memory leaks") does not hold. A streaming unmap does delete
 * its transient pool.
 */
static void test_rfc_free_keeps_transient_pool(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(1 * GiB, CVMG_MODE_RFC, 0, &dev);
	struct cvmg_stats st;
	uint64_t tlb, gpa, gpa2;

	(void)state;
	assert_int_equal(cvmg_churn(m, 400000), 0);
	assert_int_equal(fill_pool(m, dev), 511);
	for (int i = 0; i < 127; i++)
		assert_int_equal(cvmg_dma_map(m, dev, 0, 0x100000, 1536, &tlb), 0);
	assert_int_equal(cvmg_dma_alloc(m, dev, 4 * KiB, 0, &gpa), 0);
	st = get_stats(m);
	assert_int_equal(st.swiotlb_transient_pools, 1);
	assert_int_equal(cvmg_dma_free(m, dev, gpa, 4 * KiB), 0);
	st = get_stats(m);
	assert_int_equal(st.swiotlb_transient_stale_pools, 1);
	/* the stale pool's slots are never searched: the next allocation gets a
	 * new transient pool */
	assert_int_equal(cvmg_dma_alloc(m, dev, 4 * KiB, 0, &gpa2), 0);
	assert_int_equal(get_stats(m).swiotlb_transient_pools, 2);
	/* a streaming unmap deletes its transient pool */
	assert_int_equal(cvmg_dma_map(m, dev, 0, 0x100000, 1536, &tlb), 0);
	assert_int_equal(cvmg_dma_unmap(m, dev, tlb, 1536), 0);
	assert_int_equal(cvmg_dma_unmap(m, dev, tlb, 1536), -EINVAL);
	cvmg_destroy(m);
}

/*
 * Fact 4 (kernel/dma/swiotlb.c: swiotlb_alloc has no size check, but 6.12's
 * swiotlb_find_slots returns -1 for more than IO_TLB_SEGSIZE slots before
 * it searches or grows): a 2 MiB RFC coherent allocation fails without
 * growth by default — what the old model also did, so the fact is wrong for
 * 6.12; CVMG_F_SWIOTLB_GROW_ANY_SIZE models kernels without that check: the
 * failure schedules swiotlb_dyn_alloc (a 4 MiB pool, converted) and the
 * allocation still fails (no pool serves more than a segment).
 */
static void test_rfc_oversize_alloc(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(4 * GiB, CVMG_MODE_RFC, 0, &dev);
	struct cvmg_stats st;
	uint64_t gpa;

	(void)state;
	assert_int_equal(cvmg_dma_alloc(m, dev, 2 * MiB, 0, &gpa), -ENOMEM);
	st = get_stats(m);
	assert_int_equal(st.swiotlb_growth_attempts, 0);
	assert_int_equal(st.swiotlb_dyn_pools, 0);
	cvmg_destroy(m);
	m = setup(4 * GiB, CVMG_MODE_RFC, CVMG_F_SWIOTLB_GROW_ANY_SIZE, &dev);
	assert_int_equal(cvmg_dma_alloc(m, dev, 2 * MiB, 0, &gpa), -ENOMEM);
	st = get_stats(m);
	assert_int_equal(st.swiotlb_growth_attempts, 1);
	assert_int_equal(st.swiotlb_dyn_pools, 1);
	assert_int_equal(st.swiotlb_dyn_bytes, 4 * MiB);
	cvmg_destroy(m);
}

/*
 * Fact 8 (kernel/dma/pool.c: dma_atomic_pool_init): 6.12 creates the
 * kernel pool unconditionally (GFP_KERNEL falls back to DMA32 on a guest
 * without ZONE_NORMAL); newer kernels only when has_managed_zone(ZONE_NORMAL)
 * (CVMG_F_AP_NEEDS_NORMAL): a 2 GiB q35 guest (all RAM below 4 GiB) then
 * has the DMA and DMA32 pools only, a 4 GiB one still three.
 * Old model: three pools always, no switch.
 */
static void test_atomic_pool_needs_normal(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(2 * GiB, CVMG_MODE_LEGACY, 0, &dev);
	struct cvmg_stats st = get_stats(m);

	(void)state;
	for (int k = 0; k < 3; k++)
		assert_int_not_equal(st.atomic_pool_bytes[k], 0);
	cvmg_destroy(m);
	m = setup(2 * GiB, CVMG_MODE_LEGACY, CVMG_F_AP_NEEDS_NORMAL, &dev);
	st = get_stats(m);
	assert_int_not_equal(st.atomic_pool_bytes[0], 0);
	assert_int_not_equal(st.atomic_pool_bytes[1], 0);
	assert_int_equal(st.atomic_pool_bytes[2], 0);
	cvmg_destroy(m);
	m = setup(4 * GiB, CVMG_MODE_LEGACY, CVMG_F_AP_NEEDS_NORMAL, &dev);
	st = get_stats(m);
	for (int k = 0; k < 3; k++)
		assert_int_not_equal(st.atomic_pool_bytes[k], 0);
	cvmg_destroy(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc_growth_down_to_1m),
		cmocka_unit_test(test_rfc_free_keeps_transient_pool),
		cmocka_unit_test(test_rfc_oversize_alloc),
		cmocka_unit_test(test_atomic_pool_needs_normal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
