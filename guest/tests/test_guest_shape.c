/* SPDX-License-Identifier: MIT */
/*
 * Exit shaping per platform, driven through cvmg_set_memory_{de,en}crypted()
 * on an unbooted 16 GiB guest (RAM [0, 2G) and [4G, 18G)); the recorder sees
 * exactly the (gpa, npages, attrs) KVM would put in hypercall.args[0..2].
 */
#include "guest_test_util.h"

struct fixture {
	struct recorder rec;
	struct cvmg *m;
};

static struct fixture *fx(enum cvmg_platform p, uint32_t flags)
{
	struct fixture *f = (struct fixture *)calloc(1, sizeof(*f));
	struct cvmg_config c;

	assert_non_null(f);
	c = test_config(16 * GiB, 1, CVMG_MODE_LEGACY, p, &f->rec);
	c.flags = flags;
	f->m = make_model(&c, 0);
	return f;
}

static void fx_free(struct fixture *f)
{
	cvmg_destroy(f->m);
	recorder_free(&f->rec);
	free(f);
}

static void expect(const struct fixture *f, size_t i, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	assert_true(i < f->rec.len);
	assert_int_equal(f->rec.v[i].gpa, gpa);
	assert_int_equal(f->rec.v[i].npages, npages);
	assert_int_equal(f->rec.v[i].attrs, attrs);
}

/* SNP: a 2 MiB entry needs a 2 MiB aligned address and >= 2 MiB left. */
static void test_snp_2m_only_when_aligned(void **state)
{
	struct fixture *f = fx(CVMG_PLATFORM_SNP, 0);

	(void)state;
	/* aligned 2 MiB: one 2M entry -> one exit, npages in 4 KiB units */
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 4 * GiB, 512), 0);
	assert_int_equal(f->rec.len, 1);
	expect(f, 0, 4 * GiB, 512, HINT_2M);
	/* [2M - 4K, 6M): 4K head, then two 2M entries (merged into one exit) */
	recorder_reset(&f->rec);
	assert_int_equal(cvmg_set_memory_encrypted(f->m, 4 * GiB + 2 * MiB - 4 * KiB, 1025), 0);
	assert_int_equal(f->rec.len, 2);
	expect(f, 0, 4 * GiB + 2 * MiB - 4 * KiB, 1, ENC | HINT_4K);
	expect(f, 1, 4 * GiB + 2 * MiB, 1024, ENC | HINT_2M);
	/* aligned start, 4 MiB + 4 KiB: 2M, 2M, then a 4K tail (< 2 MiB left) */
	recorder_reset(&f->rec);
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 4 * GiB + 8 * MiB, 1025), 0);
	assert_int_equal(f->rec.len, 2);
	expect(f, 0, 4 * GiB + 8 * MiB, 1024, HINT_2M);
	expect(f, 1, 4 * GiB + 12 * MiB, 1, HINT_4K);
	/* aligned start but only 2 MiB - 4 KiB: 511 4K entries, which take
	 * three PSC requests (253 + 253 + 5), so three exits */
	recorder_reset(&f->rec);
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 4 * GiB + 16 * MiB, 511), 0);
	assert_int_equal(f->rec.len, 3);
	expect(f, 0, 4 * GiB + 16 * MiB, 253, HINT_4K);
	expect(f, 2, 4 * GiB + 16 * MiB + 506 * 4 * KiB, 5, HINT_4K);
	fx_free(f);
}

/* SNP: at most 253 entries per PSC request; runs never merge across
 * requests. */
static void test_snp_253_limit(void **state)
{
	struct fixture *f = fx(CVMG_PLATFORM_SNP, 0);

	(void)state;
	/* 1 GiB aligned: 512 2M entries = requests of 253 + 253 + 6 */
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 5 * GiB, 262144), 0);
	assert_int_equal(f->rec.len, 3);
	expect(f, 0, 5 * GiB, 253 * 512, HINT_2M);
	expect(f, 1, 5 * GiB + 253 * 2 * MiB, 253 * 512, HINT_2M);
	expect(f, 2, 5 * GiB + 506 * 2 * MiB, 6 * 512, HINT_2M);
	/* 2 MiB starting 4 KiB late: 511 4K entries to the boundary and one 4K
	 * entry after it (less than 2 MiB left) = 512 4K entries: 253+253+6 */
	recorder_reset(&f->rec);
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 6 * GiB + 4 * KiB, 512), 0);
	assert_int_equal(f->rec.len, 3);
	expect(f, 0, 6 * GiB + 4 * KiB, 253, HINT_4K);
	expect(f, 1, 6 * GiB + 254 * 4 * KiB, 253, HINT_4K);
	expect(f, 2, 6 * GiB + 507 * 4 * KiB, 6, HINT_4K);
	/* 1 GiB starting 0x11000 late: 495 4K (to 8G + 2M), 511 2M (entry k
	 * at 8G + k * 2M, k = 1..511), 17 4K = 1023 entries. Requests:
	 * [253 4K] [242 4K | 11 2M] [253 2M] [247 2M | 6 4K] [11 4K] -> 7 exits */
	recorder_reset(&f->rec);
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 8 * GiB + 0x11000, 262144), 0);
	assert_int_equal(f->rec.len, 7);
	expect(f, 0, 8 * GiB + 0x11000, 253, HINT_4K);
	expect(f, 1, 8 * GiB + 0x11000 + 253 * 4 * KiB, 242, HINT_4K);
	expect(f, 2, 8 * GiB + 2 * MiB, 11 * 512, HINT_2M);
	expect(f, 3, 8 * GiB + 12 * 2 * MiB, 253 * 512, HINT_2M);
	expect(f, 4, 8 * GiB + 265 * 2 * MiB, 247 * 512, HINT_2M);
	expect(f, 5, 9 * GiB, 6, HINT_4K);
	expect(f, 6, 9 * GiB + 6 * 4 * KiB, 11, HINT_4K);
	fx_free(f);
}

/* SNP: a failed PSC terminates the guest. */
static void test_snp_failure_fatal(void **state)
{
	struct fixture *f = fx(CVMG_PLATFORM_SNP, 0);

	(void)state;
	f->rec.fail_at = 2;
	f->rec.fail_ret = -22;
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 5 * GiB, 262144), -ENOTRECOVERABLE);
	assert_int_equal(f->rec.len, 2);
	assert_int_equal(get_stats(f->m).terminated, 1);
	assert_int_equal(get_stats(f->m).exits_failed, 1);
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 5 * GiB, 1), -ENOTRECOVERABLE);
	assert_int_equal(f->rec.len, 2);
	fx_free(f);
}

/* TDX: KVM forwards MapGPA in chunks of min(remaining, 2 MiB) from the
 * start of the range, no page-size hint. */
static void test_tdx_chunks(void **state)
{
	struct fixture *f = fx(CVMG_PLATFORM_TDX, 0);

	(void)state;
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 5 * GiB, 262144), 0);
	assert_int_equal(f->rec.len, 512);
	expect(f, 0, 5 * GiB, 512, 0);
	expect(f, 511, 5 * GiB + 511 * 2 * MiB, 512, 0);
	/* 4 KiB misaligned 1 GiB: still 512 chunks of 2 MiB, every one of
	 * them misaligned (mainline __tdx_map_gpa) */
	recorder_reset(&f->rec);
	assert_int_equal(cvmg_set_memory_encrypted(f->m, 6 * GiB + 4 * KiB, 262144), 0);
	assert_int_equal(f->rec.len, 512);
	expect(f, 0, 6 * GiB + 4 * KiB, 512, ENC);
	expect(f, 511, 6 * GiB + 4 * KiB + 511 * 2 * MiB, 512, ENC);
	/* 3 MiB + 4 KiB: 2 MiB then the 1 MiB + 4 KiB rest */
	recorder_reset(&f->rec);
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 7 * GiB, 769), 0);
	assert_int_equal(f->rec.len, 2);
	expect(f, 1, 7 * GiB + 2 * MiB, 257, 0);
	fx_free(f);
}

/* TDX variant that ends chunks at 2 MiB GPA boundaries: the misaligned
 * 1 GiB becomes 511 pages + 511 x 512 + 1 page = 513 exits. */
static void test_tdx_split_aligned(void **state)
{
	struct fixture *f = fx(CVMG_PLATFORM_TDX, CVMG_F_TDX_SPLIT_ALIGNED);

	(void)state;
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 6 * GiB + 4 * KiB, 262144), 0);
	assert_int_equal(f->rec.len, 513);
	expect(f, 0, 6 * GiB + 4 * KiB, 511, 0);
	expect(f, 1, 6 * GiB + 2 * MiB, 512, 0);
	expect(f, 512, 7 * GiB, 1, 0);
	fx_free(f);
}

/* TDX: a failed chunk stops the MapGPA and fails the conversion (-EIO);
 * to-private conversions are accepted (1G, 2M, 4K tries). */
static void test_tdx_failure_and_accept(void **state)
{
	struct fixture *f = fx(CVMG_PLATFORM_TDX, 0);

	(void)state;
	f->rec.fail_at = 3;
	f->rec.fail_ret = -22;
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 5 * GiB, 262144), -EIO);
	assert_int_equal(f->rec.len, 3);
	assert_int_equal(get_stats(f->m).terminated, 0);
	f->rec.fail_at = 0;
	/* [1G - 2M - 4K .. 2G + 2M): 1 x 4K, 1 x 2M, 1 x 1G, 1 x 2M accepts */
	assert_int_equal(cvmg_set_memory_encrypted(f->m, 5 * GiB - 2 * MiB - 4 * KiB,
						   (4 * KiB + 2 * MiB + 1 * GiB + 2 * MiB) / 4096),
			 0);
	assert_int_equal(get_stats(f->m).tdx_accept_calls, 4);
	fx_free(f);
}

/* KVM paravirt: one hypercall per direct-map leaf, always the 4K hint; a
 * partly covered leaf is split first and stays split. */
static void test_pv_leaves(void **state)
{
	struct fixture *f = fx(CVMG_PLATFORM_KVM_PV, 0);

	(void)state;
	/* [5G, 6G) is one 1 GiB leaf */
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 5 * GiB, 262144), 0);
	assert_int_equal(f->rec.len, 1);
	expect(f, 0, 5 * GiB, 262144, HINT_4K);
	/* 2 MiB at 6G: the 1 GiB leaf is split into 2 MiB leaves */
	recorder_reset(&f->rec);
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 6 * GiB, 512), 0);
	assert_int_equal(f->rec.len, 1);
	expect(f, 0, 6 * GiB, 512, HINT_4K);
	/* one page at 6G + 2M + 4K: that 2 MiB leaf is split to 4 KiB */
	recorder_reset(&f->rec);
	assert_int_equal(cvmg_set_memory_encrypted(f->m, 6 * GiB + 2 * MiB + 4 * KiB, 1), 0);
	expect(f, 0, 6 * GiB + 2 * MiB + 4 * KiB, 1, ENC | HINT_4K);
	/* the same 2 MiB, now 512 4 KiB leaves: 512 hypercalls */
	recorder_reset(&f->rec);
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 6 * GiB + 2 * MiB, 512), 0);
	assert_int_equal(f->rec.len, 512);
	expect(f, 511, 6 * GiB + 4 * MiB - 4 * KiB, 1, HINT_4K);
	/* [7G - 1M, 7G + 2M): 256 4K leaves in [7G-2M, 7G) after its split,
	 * then [7G, 7G+2M) as a 2 MiB leaf of the newly split GiB 7 */
	recorder_reset(&f->rec);
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 7 * GiB - 1 * MiB, 768), 0);
	assert_int_equal(f->rec.len, 257);
	expect(f, 255, 7 * GiB - 4 * KiB, 1, HINT_4K);
	expect(f, 256, 7 * GiB, 512, HINT_4K);
	/* the first 2 MiB of RAM is mapped with 4 KiB pages from boot */
	recorder_reset(&f->rec);
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 0, 512), 0);
	assert_int_equal(f->rec.len, 512);
	fx_free(f);
}

/* KVM paravirt: the guest ignores the hypercall's return value. */
static void test_pv_failure_ignored(void **state)
{
	struct fixture *f = fx(CVMG_PLATFORM_KVM_PV, 0);

	(void)state;
	f->rec.fail_at = 1;
	f->rec.fail_ret = -22;
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 5 * GiB, 262144), 0);
	assert_int_equal(get_stats(f->m).exits_failed, 1);
	fx_free(f);
}

/* Invalid requests never reach the host. */
static void test_invalid(void **state)
{
	struct fixture *f = fx(CVMG_PLATFORM_SNP, 0);

	(void)state;
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 5 * GiB + 1, 1), -EINVAL);
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 5 * GiB, 0), -EINVAL);
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 3 * GiB, 1), -EINVAL); /* PCI hole */
	assert_int_equal(cvmg_set_memory_decrypted(f->m, 18 * GiB - 4 * KiB, 2), -EINVAL);
	assert_int_equal(cvmg_set_memory_decrypted(f->m, UINT64_MAX & ~4095ULL, 2), -EINVAL);
	assert_int_equal(f->rec.len, 0);
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_snp_2m_only_when_aligned),
		cmocka_unit_test(test_snp_253_limit),
		cmocka_unit_test(test_snp_failure_fatal),
		cmocka_unit_test(test_tdx_chunks),
		cmocka_unit_test(test_tdx_split_aligned),
		cmocka_unit_test(test_tdx_failure_and_accept),
		cmocka_unit_test(test_pv_leaves),
		cmocka_unit_test(test_pv_failure_ignored),
		cmocka_unit_test(test_invalid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
