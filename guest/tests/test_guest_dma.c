/* SPDX-License-Identifier: MIT */
/*
 * dma-direct coherent allocations (legacy and RFC), the atomic pools, and
 * how failed conversions are handled.
 */
#include "guest_test_util.h"

static struct cvmg *setup(uint64_t ram, enum cvmg_mode mode, struct recorder *rec, uint32_t *dev)
{
	struct cvmg_config c = test_config(ram, 1, mode, CVMG_PLATFORM_TDX, rec);
	struct cvmg_device_opts o = { .sz = sizeof(o), .name = "d" };
	struct cvmg *m = make_model(&c, 1);

	assert_int_equal(cvmg_device_add(m, &o, dev), 0);
	return m;
}

/* Legacy: a buddy block of get_order(size), PFN_UP(size) pages converted,
 * one conversion per allocation; free converts the same pages back. */
static void test_legacy_get_order(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(16 * GiB, CVMG_MODE_LEGACY, NULL, &dev);
	struct cvmg_stats a = get_stats(m), b;
	uint64_t gpa;

	(void)state;
	assert_int_equal(cvmg_dma_alloc(m, dev, 12 * KiB, 0, &gpa), 0); /* order 2 */
	assert_int_equal(gpa % (16 * KiB), 0);
	b = get_stats(m);
	assert_int_equal(b.conversions - a.conversions, 1);
	assert_int_equal(b.pages_to_shared - a.pages_to_shared, 3);
	assert_int_equal(cvmg_dma_free(m, dev, gpa, 12 * KiB), 0);
	a = get_stats(m);
	assert_int_equal(a.pages_to_private - b.pages_to_private, 3);
	assert_int_equal(cvmg_dma_free(m, dev, gpa, 12 * KiB), -EINVAL); /* double free */

	assert_int_equal(cvmg_dma_alloc(m, dev, 4097, 0, &gpa), 0); /* order 1, 2 pages */
	assert_int_equal(gpa % (8 * KiB), 0);
	assert_int_equal(get_stats(m).pages_to_shared - a.pages_to_shared, 2);
	a = get_stats(m);
	assert_int_equal(cvmg_dma_alloc(m, dev, 2 * MiB, 0, &gpa), 0); /* order 9 */
	assert_int_equal(gpa % (2 * MiB), 0);
	b = get_stats(m);
	assert_int_equal(b.pages_to_shared - a.pages_to_shared, 512);
	assert_int_equal(b.unaligned, a.unaligned); /* a 2 MiB block converts aligned */
	/* above MAX_ORDER (4 MiB) there is no buddy block (and no CMA) */
	assert_int_equal(cvmg_dma_alloc(m, dev, 4 * MiB + 1, 0, &gpa), -ENOMEM);
	cvmg_destroy(m);
}

/* Legacy GFP_ATOMIC: from the (already shared) atomic pool, no conversion. */
static void test_legacy_atomic(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(16 * GiB, CVMG_MODE_LEGACY, NULL, &dev);
	struct cvmg_stats a = get_stats(m);
	uint64_t gpa;

	(void)state;
	assert_int_equal(cvmg_dma_alloc(m, dev, 8 * KiB, CVMG_DMA_ATOMIC, &gpa), 0);
	assert_int_equal(gpa % (8 * KiB), 0); /* order-aligned first fit */
	assert_int_equal(cvmg_dma_free(m, dev, gpa, 8 * KiB), 0);
	assert_int_equal(get_stats(m).conversions, a.conversions);
	cvmg_destroy(m);
}

/* RFC: served from SWIOTLB slots aligned to the allocation's order, no
 * conversion, at most one 256 KiB segment. */
static void test_rfc_from_swiotlb(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(16 * GiB, CVMG_MODE_RFC, NULL, &dev);
	struct cvmg_stats a = get_stats(m);
	uint64_t gpa;

	(void)state;
	assert_int_equal(cvmg_dma_alloc(m, dev, 12 * KiB, 0, &gpa), 0);
	assert_int_equal(gpa % (16 * KiB), 0);
	assert_true(gpa >= a.swiotlb_boot_start &&
		    gpa < a.swiotlb_boot_start + a.swiotlb_boot_bytes);
	assert_int_equal(cvmg_dma_alloc(m, dev, 256 * KiB, 0, &gpa), 0);
	assert_int_equal(gpa % (256 * KiB), 0);
	assert_int_equal(cvmg_dma_alloc(m, dev, 256 * KiB + 1, 0, &gpa), -ENOMEM);
	assert_int_equal(cvmg_dma_alloc(m, dev, 2 * MiB, CVMG_DMA_ATOMIC, &gpa), -ENOMEM);
	assert_int_equal(get_stats(m).conversions, a.conversions);
	assert_int_equal(get_stats(m).dma_alloc_failures, 2);
	cvmg_destroy(m);
}

/* TDX: a failed MapGPA fails the conversion. dma_alloc leaks the block and
 * fails; dma_free leaks the block and reports the error. */
static void test_failed_conversions_leak(void **state)
{
	struct recorder rec = { 0 };
	uint32_t dev;
	struct cvmg *m = setup(16 * GiB, CVMG_MODE_LEGACY, &rec, &dev);
	uint64_t gpa;

	(void)state;
	rec.fail_at = rec.len + 1;
	rec.fail_ret = -22;
	assert_int_equal(cvmg_dma_alloc(m, dev, 12 * KiB, 0, &gpa), -ENOMEM);
	assert_int_equal(get_stats(m).dma_leaked_pages, 4); /* the order-2 block */
	rec.fail_at = 0;
	assert_int_equal(cvmg_dma_alloc(m, dev, 12 * KiB, 0, &gpa), 0);
	rec.fail_at = rec.len + 1;
	assert_int_equal(cvmg_dma_free(m, dev, gpa, 12 * KiB), -EIO);
	assert_int_equal(get_stats(m).dma_leaked_pages, 8);
	cvmg_destroy(m);
	recorder_free(&rec);
}

/*
 * Atomic pool size: totalram_pages() / 8192 pages, in [128 KiB, 4 MiB].
 *   1 GiB: < 32 pages -> 128 KiB, an order-5 chunk per pool.
 *   16 GiB (TDX, 1 CPU): managed = 16 GiB - 1 MiB - 48 MiB (kernel)
 *     - 0x1711000 (firmware) - 256 MiB (memmap) - 1 GiB (SWIOTLB)
 *     - 2 MiB (the per-CPU first chunk: one CPU, one 2 MiB unit, its tail
 *     taken by early allocations the model does not make) + 509 pages (the
 *     unused tail of .bss..decrypted, freed by free_initmem after the pools
 *     were sized) = 3848172 pages (was 3848175 without the chunk and the
 *     tail); the pools were sized from 3847663 -> 469 pages = 1876 KiB;
 *     get_order -> 2 MiB chunks.
 *   64 GiB: >= 1024 pages -> 4 MiB.
 */
static void test_atomic_pool_sizes(void **state)
{
	uint32_t dev;
	struct cvmg *m;
	struct cvmg_stats st;

	(void)state;
	m = setup(1 * GiB, CVMG_MODE_LEGACY, NULL, &dev);
	st = get_stats(m);
	assert_int_equal(st.atomic_pool_size, 128 * KiB);
	for (int k = 0; k < 3; k++)
		assert_int_equal(st.atomic_pool_bytes[k], 128 * KiB);
	cvmg_destroy(m);
	m = setup(16 * GiB, CVMG_MODE_LEGACY, NULL, &dev);
	st = get_stats(m);
	assert_int_equal(st.managed_pages, 3848172);
	assert_int_equal(st.atomic_pool_size, 469 * 4096);
	for (int k = 0; k < 3; k++)
		assert_int_equal(st.atomic_pool_bytes[k], 2 * MiB);
	cvmg_destroy(m);
	m = setup(64 * GiB, CVMG_MODE_LEGACY, NULL, &dev);
	st = get_stats(m);
	assert_int_equal(st.atomic_pool_size, 4 * MiB);
	assert_int_equal(st.atomic_pool_bytes[2], 4 * MiB);
	cvmg_destroy(m);
}

/* A pool left with less than atomic_pool_size available grows by its
 * current size in the background, one more conversion. 1 GiB: the kernel
 * pool is 128 KiB; after a 64 KiB allocation 64 KiB are left -> +128 KiB. */
static void test_atomic_pool_growth(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(1 * GiB, CVMG_MODE_LEGACY, NULL, &dev);
	struct cvmg_stats a = get_stats(m), b;
	uint64_t gpa;

	(void)state;
	assert_int_equal(cvmg_dma_alloc(m, dev, 64 * KiB, CVMG_DMA_ATOMIC, &gpa), 0);
	b = get_stats(m);
	assert_int_equal(b.atomic_pool_expansions, 1);
	assert_int_equal(b.atomic_pool_bytes[2], 256 * KiB);
	assert_int_equal(b.conversions - a.conversions, 1);
	assert_int_equal(b.unaligned_by_site[CVMG_SITE_ATOMIC_POOL] -
				 a.unaligned_by_site[CVMG_SITE_ATOMIC_POOL],
			 1);
	/* 192 KiB available now: another 64 KiB leaves 128 KiB, no growth */
	assert_int_equal(cvmg_dma_alloc(m, dev, 64 * KiB, CVMG_DMA_ATOMIC, &gpa), 0);
	assert_int_equal(get_stats(m).atomic_pool_expansions, 1);
	cvmg_destroy(m);
}

/* A 32-bit device gets memory below 4 GiB. */
static void test_dma32_device(void **state)
{
	struct cvmg_config c = test_config(16 * GiB, 1, CVMG_MODE_LEGACY, CVMG_PLATFORM_TDX, NULL);
	struct cvmg_device_opts o = { .sz = sizeof(o), .name = "old", .dma_bits = 32 };
	struct cvmg *m = make_model(&c, 1);
	uint32_t dev;
	uint64_t gpa;

	(void)state;
	assert_int_equal(cvmg_device_add(m, &o, &dev), 0);
	assert_int_equal(cvmg_dma_alloc(m, dev, 64 * KiB, 0, &gpa), 0);
	assert_true(gpa + 64 * KiB <= 4 * GiB);
	assert_int_equal(cvmg_dma_alloc(m, dev, 64 * KiB, CVMG_DMA_ATOMIC, &gpa), 0);
	assert_true(gpa + 64 * KiB <= 4 * GiB);
	o.dma_bits = 12;
	assert_int_equal(cvmg_device_add(m, &o, &dev), -EINVAL);
	o.dma_bits = 64;
	o.min_align_mask = 4096; /* not 2^k - 1 */
	assert_int_equal(cvmg_device_add(m, &o, &dev), -EINVAL);
	cvmg_destroy(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_legacy_get_order),
		cmocka_unit_test(test_legacy_atomic),
		cmocka_unit_test(test_rfc_from_swiotlb),
		cmocka_unit_test(test_failed_conversions_leak),
		cmocka_unit_test(test_atomic_pool_sizes),
		cmocka_unit_test(test_atomic_pool_growth),
		cmocka_unit_test(test_dma32_device),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
