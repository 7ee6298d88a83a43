/* SPDX-License-Identifier: MIT */
/*
 * Device bring-up, GPU-like demand and runtime churn: what each converts
 * and maps. Legacy vs RFC on a 2 GiB, 2-CPU TDX guest.
 * vring_size(256, 64) = ALIGN(16*256 + 2*259, 64) + 6 + 8*256 = 6726 B:
 * order 1, 2 pages converted. vring_size(64, 64) = 1734 B: 1 page.
 */
#include "guest_test_util.h"

static struct cvmg *setup(enum cvmg_mode mode)
{
	struct cvmg_config c = test_config(2 * GiB, 2, mode, CVMG_PLATFORM_TDX, NULL);

	return make_model(&c, 1);
}

static void test_virtio_net(void **state)
{
	struct cvmg *m = setup(CVMG_MODE_LEGACY);
	struct cvmg_virtio_net_opts o = { .sz = sizeof(o), .queue_pairs = 2 };
	struct cvmg_wl_result r = { .sz = sizeof(r) };
	struct cvmg_stats a = get_stats(m), b;

	(void)state;
	assert_int_equal(cvmg_wl_virtio_net(m, &o, &r), 0);
	b = get_stats(m);
	/* 2 x (rx + tx) rings of 2 pages + the control ring of 1 page */
	assert_int_equal(r.allocs, 5);
	assert_int_equal(b.conversions - a.conversions, 5);
	assert_int_equal(b.pages_to_shared - a.pages_to_shared, 9);
	/* 2 rx rings x 256 posted buffers of 1536 B: one slot each */
	assert_int_equal(r.maps, 512);
	assert_int_equal(b.swiotlb_used_slots - a.swiotlb_used_slots, 512);
	cvmg_destroy(m);
}

static void test_virtio_blk_and_nvme(void **state)
{
	struct cvmg *m = setup(CVMG_MODE_LEGACY);
	struct cvmg_wl_result r = { .sz = sizeof(r) };
	struct cvmg_stats a = get_stats(m), b;

	(void)state;
	assert_int_equal(cvmg_wl_virtio_blk(m, NULL, &r), 0); /* one ring per CPU */
	b = get_stats(m);
	assert_int_equal(b.conversions - a.conversions, 2);
	assert_int_equal(b.pages_to_shared - a.pages_to_shared, 4);
	assert_int_equal(cvmg_wl_nvme(m, NULL, &r), 0);
	a = get_stats(m);
	/* admin CQ 512 B + SQ 2 KiB, 2 doorbell pages, 2 x (16 KiB CQ + 64 KiB
	 * SQ): 8 conversions, 1 + 1 + 2 + 2 * (4 + 16) = 44 pages; the three
	 * PRP-list pool pages are GFP_ATOMIC (atomic pool, no conversion) */
	assert_int_equal(a.conversions - b.conversions, 8);
	assert_int_equal(a.pages_to_shared - b.pages_to_shared, 44);
	assert_int_equal(r.allocs, 11);
	assert_int_equal(r.maps, 2); /* identify controller + namespace */
	assert_int_equal(a.swiotlb_used_slots, b.swiotlb_used_slots);
	cvmg_destroy(m);
}

/* RFC: the same bring-up converts nothing: everything is in SWIOTLB. */
static void test_rfc_bringup_converts_nothing(void **state)
{
	struct cvmg *m = setup(CVMG_MODE_RFC);
	struct cvmg_stats a = get_stats(m);

	(void)state;
	assert_int_equal(cvmg_wl_virtio_net(m, NULL, NULL), 0);
	assert_int_equal(cvmg_wl_virtio_blk(m, NULL, NULL), 0);
	assert_int_equal(cvmg_wl_nvme(m, NULL, NULL), 0);
	assert_int_equal(get_stats(m).conversions, a.conversions);
	cvmg_destroy(m);
}

/*
 * GPU: 64 MiB of 2 MiB coherent buffers. Legacy: 32 order-9 blocks, 32
 * aligned conversions. RFC: 2 MiB is more than a SWIOTLB segment: all 32
 * fail. With 256 KiB chunks RFC serves all 256 from the pool (8 % of
 * 2 GiB = 163.8 MiB, rounded up to 256 MiB).
 */
static void test_gpu(void **state)
{
	struct cvmg_gpu_opts o = { .sz = sizeof(o), .total_bytes = 64 * MiB };
	struct cvmg_wl_result r = { .sz = sizeof(r) };
	struct cvmg *m = setup(CVMG_MODE_LEGACY);
	struct cvmg_stats a = get_stats(m), b;

	(void)state;
	assert_int_equal(cvmg_wl_gpu(m, &o, &r), 0);
	b = get_stats(m);
	assert_int_equal(r.allocs, 32);
	assert_int_equal(b.conversions - a.conversions, 32);
	assert_int_equal(b.unaligned, a.unaligned);
	cvmg_destroy(m);

	m = setup(CVMG_MODE_RFC);
	assert_int_equal(get_stats(m).swiotlb_boot_bytes, 256 * MiB);
	assert_int_equal(cvmg_wl_gpu(m, &o, &r), -ENOMEM);
	assert_int_equal(r.allocs, 0);
	assert_int_equal(r.alloc_failures, 32);
	o.chunk_bytes = 256 * KiB;
	assert_int_equal(cvmg_wl_gpu(m, &o, &r), 0);
	assert_int_equal(r.allocs, 256);
	cvmg_destroy(m);
}

/* Runtime churn gives everything back when it returns. */
static void test_runtime(void **state)
{
	struct cvmg_runtime_opts o = { .sz = sizeof(o), .cycles = 3000 };
	struct cvmg_wl_result r = { .sz = sizeof(r) };

	(void)state;
	for (int mode = CVMG_MODE_LEGACY; mode <= CVMG_MODE_RFC; mode++) {
		struct cvmg *m = setup((enum cvmg_mode)mode);
		struct cvmg_stats a = get_stats(m), b;

		assert_int_equal(cvmg_wl_runtime(m, &o, &r), 0);
		b = get_stats(m);
		assert_true(r.allocs > 100 && r.maps > 500);
		assert_int_equal(b.swiotlb_used_slots, a.swiotlb_used_slots);
		assert_int_equal(b.dma_allocs - a.dma_allocs, b.dma_frees - a.dma_frees);
		/* RFC never converts back; legacy converts back every page it
		 * converted for coherent buffers (what remains shared is atomic
		 * pool growth) */
		if (mode == CVMG_MODE_RFC) {
			assert_int_equal(b.pages_to_private, a.pages_to_private);
			assert_int_equal(b.unaligned_by_site[CVMG_SITE_DMA_ALLOC], 0);
		} else {
			assert_int_equal(b.pages_to_private - a.pages_to_private,
					 b.pages_to_shared - a.pages_to_shared -
						 (b.atomic_pool_bytes[0] + b.atomic_pool_bytes[1] +
						  b.atomic_pool_bytes[2] - a.atomic_pool_bytes[0] -
						  a.atomic_pool_bytes[1] - a.atomic_pool_bytes[2]) /
							 4096);
		}
		cvmg_destroy(m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_virtio_net),
		cmocka_unit_test(test_virtio_blk_and_nvme),
		cmocka_unit_test(test_rfc_bringup_converts_nothing),
		cmocka_unit_test(test_gpu),
		cmocka_unit_test(test_runtime),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
