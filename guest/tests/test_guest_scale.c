/* SPDX-License-Identifier: MIT */
/*
 * Scale: a 1 TiB guest boots in well under a second per configuration, and
 * the model's memory does not grow with RAM beyond small tables (the buddy
 * keeps free blocks, ~262144 of 4 MiB for 1 TiB; the direct map one byte per
 * GiB and one bit per 2 MiB).
 */
#include <sys/resource.h>
#include <time.h>

#include "guest_test_util.h"

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void test_1tib_boot(void **state)
{
	(void)state;
	for (int mode = CVMG_MODE_LEGACY; mode <= CVMG_MODE_RFC; mode++) {
		for (int p = CVMG_PLATFORM_SNP; p <= CVMG_PLATFORM_KVM_PV; p++) {
			struct cvmg_config c = test_config(1 * TiB, 64, (enum cvmg_mode)mode,
							   (enum cvmg_platform)p, NULL);
			double t0 = now();
			struct cvmg *m = make_model(&c, 1);
			struct cvmg_stats st = get_stats(m);

			assert_true(now() - t0 < 2.0);
			assert_int_equal(st.swiotlb_boot_bytes, 1 * GiB);
			assert_int_equal(st.atomic_pool_size, 4 * MiB);
			assert_true(st.free_2m_blocks > 500000);
			cvmg_destroy(m);
		}
	}
}

static void test_1tib_no_gbpages_and_workloads(void **state)
{
	struct cvmg_config c =
		test_config(1 * TiB, 64, CVMG_MODE_LEGACY, CVMG_PLATFORM_KVM_PV, NULL);
	struct cvmg_runtime_opts rt = { .sz = sizeof(rt), .cycles = 2000 };
	struct rusage ru;
	double t0 = now();
	struct cvmg *m;

	(void)state;
	c.flags = CVMG_F_NO_GBPAGES;
	m = make_model(&c, 1);
	assert_int_equal(cvmg_wl_virtio_net(m, NULL, NULL), 0);
	assert_int_equal(cvmg_wl_nvme(m, NULL, NULL), 0);
	assert_int_equal(cvmg_wl_runtime(m, &rt, NULL), 0);
	assert_true(now() - t0 < 3.0);
	cvmg_destroy(m);
	assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
	assert_true(ru.ru_maxrss < 256 * 1024); /* KiB: well below 256 MiB */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_1tib_boot),
		cmocka_unit_test(test_1tib_no_gbpages_and_workloads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
