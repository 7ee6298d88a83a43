/* SPDX-License-Identifier: MIT */
/*
 * Determinism: the same configuration (seed included) and the same calls
 * give the same exit stream, on every platform and in both modes; the
 * exit_hash counter is FNV-1a 64 over (gpa, npages, attrs) of each exit, so
 * two runs can be compared without keeping the stream.
 */
#include "guest_test_util.h"

static uint64_t fnv(uint64_t h, uint64_t v)
{
	for (int i = 0; i < 8; i++) {
		h ^= (v >> (8 * i)) & 0xff;
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* boot, devices, a GPU, uptime churn and runtime traffic */
static struct cvmg_stats scenario(uint64_t seed, enum cvmg_mode mode, enum cvmg_platform p,
				  struct recorder *rec)
{
	struct cvmg_config c = test_config(4 * GiB, 4, mode, p, rec);
	struct cvmg_virtio_net_opts net = { .sz = sizeof(net), .queue_pairs = 4 };
	struct cvmg_gpu_opts gpu = { .sz = sizeof(gpu),
				     .total_bytes = 32 * MiB,
				     .chunk_bytes = 256 * KiB };
	struct cvmg_runtime_opts rt = { .sz = sizeof(rt), .cycles = 2000 };
	struct cvmg_stats st;
	struct cvmg *m;

	c.seed = seed;
	c.flags = CVMG_F_SWIOTLB_DYNAMIC | CVMG_F_SHUFFLE;
	m = make_model(&c, 1);
	assert_int_equal(cvmg_wl_virtio_net(m, &net, NULL), 0);
	assert_int_equal(cvmg_wl_virtio_blk(m, NULL, NULL), 0);
	assert_int_equal(cvmg_wl_nvme(m, NULL, NULL), 0);
	assert_int_equal(cvmg_churn(m, 20000), 0);
	assert_int_equal(cvmg_wl_gpu(m, &gpu, NULL), 0);
	assert_int_equal(cvmg_wl_runtime(m, &rt, NULL), 0);
	st = get_stats(m);
	cvmg_destroy(m);
	return st;
}

static void test_same_seed_same_stream(void **state)
{
	(void)state;
	for (int mode = CVMG_MODE_LEGACY; mode <= CVMG_MODE_RFC; mode++) {
		for (int p = CVMG_PLATFORM_SNP; p <= CVMG_PLATFORM_KVM_PV; p++) {
			struct recorder r1 = { 0 }, r2 = { 0 };
			struct cvmg_stats a =
				scenario(42, (enum cvmg_mode)mode, (enum cvmg_platform)p, &r1);
			struct cvmg_stats b =
				scenario(42, (enum cvmg_mode)mode, (enum cvmg_platform)p, &r2);
			uint64_t h = 0xcbf29ce484222325ULL;

			assert_int_equal(r1.len, r2.len);
			assert_memory_equal(r1.v, r2.v, r1.len * sizeof(*r1.v));
			assert_int_equal(a.exits, r1.len);
			assert_int_equal(a.exit_hash, b.exit_hash);
			for (size_t i = 0; i < r1.len; i++)
				h = fnv(fnv(fnv(h, r1.v[i].gpa), r1.v[i].npages), r1.v[i].attrs);
			assert_int_equal(a.exit_hash, h);
			assert_int_equal(a.unaligned, b.unaligned);
			assert_int_equal(a.free_pages, b.free_pages);
			recorder_free(&r1);
			recorder_free(&r2);
		}
	}
}

/* The seed matters: the shuffled free lists, the churn and the runtime
 * traffic draw from it, so legacy exit streams differ (where the legacy
 * coherent buffers land). */
static void test_other_seed_other_stream(void **state)
{
	struct cvmg_stats a = scenario(42, CVMG_MODE_LEGACY, CVMG_PLATFORM_SNP, NULL);
	struct cvmg_stats b = scenario(43, CVMG_MODE_LEGACY, CVMG_PLATFORM_SNP, NULL);

	(void)state;
	assert_int_not_equal(a.exit_hash, b.exit_hash);
}

/* Without churn or runtime traffic, boot does not depend on the seed. */
static void test_boot_seed_independent(void **state)
{
	struct cvmg_config c = test_config(16 * GiB, 4, CVMG_MODE_LEGACY, CVMG_PLATFORM_SNP, NULL);
	struct cvmg *m1, *m2;

	(void)state;
	c.seed = 1;
	m1 = make_model(&c, 1);
	c.seed = 2;
	m2 = make_model(&c, 1);
	assert_int_equal(get_stats(m1).exit_hash, get_stats(m2).exit_hash);
	cvmg_destroy(m1);
	cvmg_destroy(m2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_seed_same_stream),
		cmocka_unit_test(test_other_seed_other_stream),
		cmocka_unit_test(test_boot_seed_independent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
