/* SPDX-License-Identifier: MIT */
/*
 * SWIOTLB slot allocator rules. Every case uses a legacy TDX guest of 1 GiB
 * with 4 CPUs: its 64 MiB boot pool sits at 0x39600000 (see
 * test_guest_swiotlb_size; 0x39800000 before the per-CPU first chunk was
 * modelled) and has 4 areas of 8192 slots (16 MiB), area k at
 * 0x39600000 + k * 16 MiB. The pool is empty after boot (legacy coherent
 * memory comes from the buddy allocator).
 */
#include "guest_test_util.h"

#define POOL 0x39600000ULL
#define AREA (16 * MiB)

static struct cvmg *setup(uint32_t flags, uint32_t min_align, uint32_t *dev)
{
	struct cvmg_config c = test_config(1 * GiB, 4, CVMG_MODE_LEGACY, CVMG_PLATFORM_TDX, NULL);
	struct cvmg_device_opts o = { .sz = sizeof(o), .name = "t", .min_align_mask = min_align };
	struct cvmg *m;

	c.flags = flags;
	m = make_model(&c, 1);
	assert_int_equal(get_stats(m).swiotlb_boot_start, POOL);
	assert_int_equal(cvmg_device_add(m, &o, dev), 0);
	return m;
}

static uint64_t map_ok(struct cvmg *m, uint32_t dev, uint32_t cpu, uint64_t orig, uint64_t size)
{
	uint64_t tlb = 0;

	assert_int_equal(cvmg_dma_map(m, dev, cpu, orig, size, &tlb), 0);
	return tlb;
}

/* A mapping is at most one 128-slot segment: 256 KiB fits, one byte more
 * cannot be placed anywhere; without dynamic SWIOTLB nothing grows. The
 * odd-offset part is the pre-6.9 search (CVMG_F_SWIOTLB_OLD_ALIGN). */
static void test_segment_limit(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(CVMG_F_SWIOTLB_OLD_ALIGN, 0, &dev);
	uint64_t tlb;

	(void)state;
	assert_int_equal(map_ok(m, dev, 0, 0x100000, 256 * KiB), POOL);
	assert_int_equal(cvmg_dma_map(m, dev, 0, 0x100000, 256 * KiB + 1, &tlb), -ENOMEM);
	assert_int_equal(get_stats(m).swiotlb_map_failures, 1);
	assert_int_equal(get_stats(m).swiotlb_growth_attempts, 0);
	/* a 1-slot mapping followed by a full segment: the segment cannot start
	 * at slot 129 (it would cross into the next segment), so it takes the
	 * next whole segment, slot 256 */
	assert_int_equal(map_ok(m, dev, 0, 0x100000, 2048), POOL + 128 * 2048);
	assert_int_equal(map_ok(m, dev, 0, 0x100000, 256 * KiB), POOL + 256 * 2048);
	/* >= 4 KiB adds the page mask, and the slot must match orig_addr under
	 * it: a buffer at an odd 2 KiB offset needs an odd slot, from which no
	 * 128 free slots remain in the segment. Such a 256 KiB mapping can
	 * never be bounced (v6.6 swiotlb_area_find_slots semantics). */
	assert_int_equal(cvmg_dma_map(m, dev, 0, 0x100800, 256 * KiB, &tlb), -ENOMEM);
	assert_int_equal(map_ok(m, dev, 0, 0x100800, 254 * KiB), POOL + 385 * 2048);
	cvmg_destroy(m);
}

/* 6.12 (swiotlb_search_pool_area, since v6.9): without min_align_mask the
 * slot is only page aligned for >= 4 KiB, orig_addr is not matched, so the
 * 256 KiB buffer at an odd 2 KiB offset takes a whole segment. The old
 * model (v6.6 search only) refused it with -ENOMEM. Dynamic SWIOTLB or
 * not, more than a segment is refused before growth is scheduled
 * (swiotlb_find_slots); CVMG_F_SWIOTLB_GROW_ANY_SIZE schedules it first,
 * as kernels before that check did (the old model always did). */
static void test_odd_offset_and_oversize_612(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(0, 0, &dev);
	uint64_t tlb;

	(void)state;
	assert_int_equal(map_ok(m, dev, 0, 0x100800, 256 * KiB), POOL);
	assert_int_equal(map_ok(m, dev, 0, 0x100800, 254 * KiB), POOL + 128 * 2048);
	cvmg_destroy(m);
	m = setup(CVMG_F_SWIOTLB_DYNAMIC, 0, &dev);
	assert_int_equal(cvmg_dma_map(m, dev, 0, 0x100000, 256 * KiB + 1, &tlb), -ENOMEM);
	assert_int_equal(get_stats(m).swiotlb_growth_attempts, 0);
	cvmg_destroy(m);
	m = setup(CVMG_F_SWIOTLB_DYNAMIC | CVMG_F_SWIOTLB_GROW_ANY_SIZE, 0, &dev);
	assert_int_equal(cvmg_dma_map(m, dev, 0, 0x100000, 256 * KiB + 1, &tlb), -ENOMEM);
	assert_int_equal(get_stats(m).swiotlb_growth_attempts, 1);
	assert_int_equal(get_stats(m).swiotlb_dyn_pools, 1);
	cvmg_destroy(m);
}

/* Next-fit inside an area; the search starts in the current CPU's area
 * (cpu & (nareas - 1)). */
static void test_areas_next_fit(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(0, 0, &dev);

	(void)state;
	assert_int_equal(map_ok(m, dev, 0, 0x100000, 1536), POOL);
	assert_int_equal(map_ok(m, dev, 0, 0x100000, 1536), POOL + 2048);
	assert_int_equal(map_ok(m, dev, 1, 0x100000, 1536), POOL + AREA);
	assert_int_equal(map_ok(m, dev, 5, 0x100000, 1536), POOL + AREA + 2048); /* 5 & 3 = 1 */
	assert_int_equal(map_ok(m, dev, 3, 0x100000, 1536), POOL + 3 * AREA);
	assert_int_equal(get_stats(m).swiotlb_used_slots, 5);
	cvmg_destroy(m);
}

/* Requests of 4 KiB or more get page-aligned slots; smaller ones any slot. */
static void test_page_alignment(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(0, 0, &dev);

	(void)state;
	assert_int_equal(map_ok(m, dev, 0, 0x100000, 1536), POOL);	    /* slot 0 */
	assert_int_equal(map_ok(m, dev, 0, 0x100000, 4096), POOL + 0x1000); /* 1 -> 2 */
	assert_int_equal(map_ok(m, dev, 0, 0x100000, 2048), POOL + 0x2000); /* slot 4 */
	assert_int_equal(map_ok(m, dev, 0, 0x100000, 3000), POOL + 0x2800); /* 5..6 */
	assert_int_equal(map_ok(m, dev, 0, 0x100000, 4097), POOL + 0x4000); /* 7 -> 8 */
	cvmg_destroy(m);
}

/* min_align_mask 4095 (NVMe): the offset of orig_addr within a slot is
 * kept (orig & 4095 & 2047) and bit 11 of the slot address must equal bit
 * 11 of orig_addr (mask = 4095 with the low 11 bits cleared = 0x800). */
static void test_min_align_mask(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(0, 4095, &dev);

	(void)state;
	/* 0x...678: bit 11 clear -> even slot; 512 + 0x678 bytes = 2 slots */
	assert_int_equal(map_ok(m, dev, 0, 0x12345678, 512), POOL + 0x678);
	/* 0x...e78: bit 11 set -> odd slot; next index 2 -> slot 3 */
	assert_int_equal(map_ok(m, dev, 0, 0x12345e78, 512), POOL + 3 * 2048 + 0x678);
	/* 4 KiB + offset: page alignment adds nothing beyond bit 11 here;
	 * next index 5 -> slot 6 (bit 11 clear) */
	assert_int_equal(map_ok(m, dev, 0, 0x7000, 4096), POOL + 6 * 2048);
	cvmg_destroy(m);
}

/* alloc_align_mask (swiotlb_alloc / IOMMU granules): 64 KiB alignment. */
static void test_alloc_align_mask(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(0, 0, &dev);
	uint64_t tlb;

	(void)state;
	assert_int_equal(map_ok(m, dev, 0, 0x100000, 1536), POOL);
	assert_int_equal(cvmg_swiotlb_map(m, dev, 0, 0, 2048, 0xffff, &tlb), 0);
	assert_int_equal(tlb, POOL + 64 * KiB); /* slot 32 */
	cvmg_destroy(m);
}

/* A full area sends the search round-robin to the next one. */
static void test_round_robin(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(0, 0, &dev);

	(void)state;
	for (int i = 0; i < 64; i++) /* 64 x 128 slots = area 0 full */
		assert_int_equal(map_ok(m, dev, 0, 0x100000, 256 * KiB), POOL + i * 256 * KiB);
	assert_int_equal(map_ok(m, dev, 0, 0x100000, 256 * KiB), POOL + AREA);
	assert_int_equal(map_ok(m, dev, 2, 0x100000, 256 * KiB), POOL + 2 * AREA);
	/* area 3 from CPU 3, then wraps to 0 (full) and 1 */
	for (int i = 0; i < 64; i++)
		map_ok(m, dev, 3, 0x100000, 256 * KiB);
	assert_int_equal(map_ok(m, dev, 3, 0x100000, 256 * KiB), POOL + AREA + 256 * KiB);
	cvmg_destroy(m);
}

/* Unmap returns the slots (used count), next-fit continues after them,
 * unknown addresses are refused. */
static void test_unmap(void **state)
{
	uint32_t dev;
	struct cvmg *m = setup(0, 0, &dev);
	uint64_t a = map_ok(m, dev, 0, 0x100000, 256 * KiB);

	(void)state;
	assert_int_equal(get_stats(m).swiotlb_used_slots, 128);
	assert_int_equal(cvmg_dma_unmap(m, dev, a, 256 * KiB), 0);
	assert_int_equal(get_stats(m).swiotlb_used_slots, 0);
	assert_int_equal(cvmg_dma_unmap(m, dev, a, 256 * KiB), -EINVAL);
	assert_int_equal(map_ok(m, dev, 0, 0x100000, 256 * KiB), POOL + 256 * KiB);
	assert_int_equal(cvmg_dma_unmap(m, dev, 0x1000, 4096), -EINVAL);
	cvmg_destroy(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_segment_limit),
		cmocka_unit_test(test_odd_offset_and_oversize_612),
		cmocka_unit_test(test_areas_next_fit),
		cmocka_unit_test(test_page_alignment),
		cmocka_unit_test(test_min_align_mask),
		cmocka_unit_test(test_alloc_align_mask),
		cmocka_unit_test(test_round_robin),
		cmocka_unit_test(test_unmap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
