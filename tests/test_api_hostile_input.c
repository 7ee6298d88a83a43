/* SPDX-License-Identifier: MIT */
/* Hostile guest requests against the strict fake KVM: ranges, attributes
 * and hints no guest may ask for, the top of the address space, a flood of
 * refused requests. Every refusal changes nothing and is counted. */
#include "api_env.h"

/* ================= hostile requests ================= */

static void hostile_env(struct env *e, enum cvmconv_unaligned policy)
{
	env_init(e, policy);
	env_add(e, 0, 8 * SZ_1M);	   /* R0 */
	env_add(e, 16 * SZ_1M, 8 * SZ_1M); /* R1, gap [8M, 16M) */
	/* host path: no policy, not counted as exits */
	assert_int_equal(cvmconv_convert(e->c, SZ_2M, SZ_1M, true), 0);
	assert_int_equal(cvmconv_convert(e->c, 16 * SZ_1M, SZ_4K, true), 0);
	env_check(e);
}

static void test_hostile_ranges(void **state)
{
	struct env e;
	uint64_t hc = 0;
	(void)state;

	hostile_env(&e, CVMCONV_UNALIGNED_ALLOW);
	expect_rejected(&e, 0, 0, ENC);
	expect_rejected(&e, SZ_2M, 0, 0);
	expect_rejected(&e, SZ_4K + 1, 1, ENC);
	expect_rejected(&e, 0x800, 1, ENC);
	expect_rejected(&e, SZ_2M + 0x10, 16, 0);
	/* overflow of gpa + npages * 4096 */
	expect_rejected(&e, 0xfffffffffffff000ULL, 2, ENC);
	expect_rejected(&e, 0xfffffffffffff000ULL, 1, ENC);
	expect_rejected(&e, 0, 1ULL << 52, ENC);
	expect_rejected(&e, SZ_4K, 1ULL << 52, ENC);
	expect_rejected(&e, 0, UINT64_MAX, ENC);
	expect_rejected(&e, SZ_4K, UINT64_MAX, 0);
	expect_rejected(&e, 0, 1ULL << 63, ENC);
	expect_rejected(&e, 0, (UINT64_MAX >> 12) + 1, ENC); /* npages * 4096 == 2^64 */
	expect_rejected(&e, (1ULL << 52) - SZ_4K, 2, ENC);   /* past MAXPHYADDR */
	/* outside every region */
	expect_rejected(&e, 100 * SZ_1M, 1, ENC);
	expect_rejected(&e, 12 * SZ_1M, 16, ENC); /* in the gap */
	expect_rejected(&e, 24 * SZ_1M, 1, ENC);  /* just past R1 */
	expect_rejected(&e, 1ULL << 51, 1, ENC);
	/* partly outside */
	expect_rejected(&e, 7 * SZ_1M, 512, ENC);	 /* ends past R0 */
	expect_rejected(&e, 8 * SZ_1M - SZ_4K, 2, ENC);	 /* one page past */
	expect_rejected(&e, 16 * SZ_1M - SZ_4K, 2, ENC); /* starts before R1 */
	expect_rejected(&e, 15 * SZ_1M, 512, 0);
	expect_rejected(&e, 24 * SZ_1M - SZ_4K, 2, ENC); /* past R1 end */
	/* spans the gap between R0 and R1 */
	expect_rejected(&e, 6 * SZ_1M, (20 - 6) * 256, ENC);
	expect_rejected(&e, 0, 24 * 256, 0);
	/* hc_ret NULL */
	assert_int_equal(cvmconv_map_gpa_range(e.c, 0, 1, ENC, NULL), -EINVAL);
	assert_int_equal(cvmconv_is_private(e.c, 0), 0);
	(void)hc;
	env_check(&e);
	env_fini(&e);
}

/* The last page below MAXPHYADDR (2^52) is valid; one more is not. */
static void test_map_top_of_address_space(void **state)
{
	const uint64_t limit = 1ULL << 52;
	struct cvmconv_region r;
	struct env e;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	/* a region may not reach past 2^52 */
	r = env_region_desc(limit, SZ_2M, -1, -1, 0, -1);
	assert_int_equal(cvmconv_add_region(e.c, &r), -EINVAL);
	r = env_region_desc(limit - 4 * SZ_2M, 5 * SZ_2M, -1, -1, 0, -1);
	assert_int_equal(cvmconv_add_region(e.c, &r), -EINVAL);
	assert_int_equal(env_add_region(&e, limit - 4 * SZ_1M, 4 * SZ_1M, 0, -1, false), 0);
	map_ok(&e, limit - SZ_4K, 1, ENC);
	assert_attr_call(last_attr_call(&e, 0), limit - SZ_4K, SZ_4K, CVMCONV_ATTR_PRIVATE);
	map_ok(&e, limit - SZ_2M, 512, ENC | HINT_2M);
	assert_int_equal(cvmconv_is_private(e.c, limit - SZ_2M), 1);
	expect_rejected(&e, limit - SZ_4K, 2, 0);
	expect_rejected(&e, limit, 1, 0);
	expect_rejected(&e, limit - SZ_2M, 1ULL << 40, 0);
	assert_int_equal(cvmconv_flush(e.c), 0);
	env_check(&e);
	env_fini(&e);
}

static void test_hostile_attrs(void **state)
{
	struct env e;
	(void)state;

	hostile_env(&e, CVMCONV_UNALIGNED_ALLOW);
	/* reserved attribute bits, with and without ENCRYPTED */
	expect_rejected(&e, 4 * SZ_1M, 1, 1ULL << 2);
	expect_rejected(&e, 4 * SZ_1M, 1, 1ULL << 3); /* KVM's PRIVATE bit, not ENCRYPTED */
	expect_rejected(&e, 4 * SZ_1M, 1, 1ULL << 5);
	expect_rejected(&e, 4 * SZ_1M, 1, 1ULL << 63);
	expect_rejected(&e, 4 * SZ_1M, 1, ENC | (1ULL << 2));
	expect_rejected(&e, 4 * SZ_1M, 1, ENC | (1ULL << 5));
	expect_rejected(&e, 4 * SZ_1M, 1, ENC | (1ULL << 63));
	expect_rejected(&e, SZ_2M, 1, 1ULL << 32); /* would-be shared request */
	expect_rejected(&e, 4 * SZ_1M, 1, ~0ULL);
	/* page-size hint 3 */
	expect_rejected(&e, 4 * SZ_1M, 512, 3);
	expect_rejected(&e, 4 * SZ_1M, 512, ENC | 3);
	/* 2M hint: gpa not 2 MiB aligned, npages not a multiple of 512 */
	expect_rejected(&e, 4 * SZ_1M + SZ_4K, 512, ENC | HINT_2M);
	expect_rejected(&e, 3 * SZ_1M, 512, ENC | HINT_2M);
	expect_rejected(&e, 4 * SZ_1M, 256, ENC | HINT_2M);
	expect_rejected(&e, 4 * SZ_1M, 513, ENC | HINT_2M);
	expect_rejected(&e, 4 * SZ_1M, 1, ENC | HINT_2M);
	expect_rejected(&e, SZ_2M, 256, HINT_2M); /* would-be shared request */
	/* 1G hint on a range that is not 1 GiB aligned (and fits the region) */
	expect_rejected(&e, 0, 512, ENC | HINT_1G);
	expect_rejected(&e, 4 * SZ_1M, 1, ENC | HINT_1G);
	env_fini(&e);
}

static void test_hostile_hint_1g(void **state)
{
	struct env e;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	assert_int_equal(env_add_region(&e, SZ_1G, 2 * SZ_1G, 0, -1, false), 0);
	expect_rejected(&e, SZ_1G + SZ_2M, 262144, ENC | HINT_1G);
	expect_rejected(&e, SZ_1G, 262144 + 512, ENC | HINT_1G);
	expect_rejected(&e, SZ_1G, 262144 - 512, ENC | HINT_1G);
	expect_rejected(&e, SZ_1G, 262144 / 2, ENC | HINT_1G);
	/* a 2M hint is fine on a 1 GiB range made of 2 MiB pages */
	map_ok(&e, SZ_1G, 262144, ENC | HINT_2M);
	/* and the 1G hint on an aligned 1 GiB range converts with one call */
	map_ok(&e, 2 * SZ_1G, 262144, ENC | HINT_1G);
	assert_int_equal(attr_calls(&e), 2);
	assert_attr_call(last_attr_call(&e, 0), 2 * SZ_1G, SZ_1G, CVMCONV_ATTR_PRIVATE);
	map_ok(&e, SZ_1G, 2 * 262144, HINT_1G);
	assert_int_equal(attr_calls(&e), 3);
	assert_attr_call(last_attr_call(&e, 0), SZ_1G, 2 * SZ_1G, 0);
	env_check(&e);
	env_fini(&e);
}

static void test_hostile_flood(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	const unsigned n = 100000;
	uint64_t calls;
	unsigned bad = 0;
	struct snapshot s;
	(void)state;

	/* REJECT context so that policy refusals are part of the flood */
	hostile_env(&e, CVMCONV_UNALIGNED_REJECT);
	snapshot_take(&e, &s);
	calls = attr_calls(&e);
	memset(&e.log, 0, sizeof(e.log));
	for (unsigned i = 0; i < n; i++) {
		uint64_t hc = 0, gpa = (uint64_t)(i % 2048) * SZ_4K;
		int ret;

		switch (i % 6) {
		case 0:
			ret = cvmconv_map_gpa_range(e.c, gpa, 0, ENC, &hc);
			break;
		case 1:
			ret = cvmconv_map_gpa_range(e.c, gpa + 8, 1, ENC, &hc);
			break;
		case 2:
			ret = cvmconv_map_gpa_range(e.c, gpa, 1, ENC | (1ULL << 7), &hc);
			break;
		case 3:
			ret = cvmconv_map_gpa_range(e.c, 12 * SZ_1M + gpa, 1, ENC, &hc);
			break;
		case 4:
			ret = cvmconv_map_gpa_range(e.c, gpa, UINT64_MAX - i, 0, &hc);
			break;
		default:
			ret = cvmconv_map_gpa_range(e.c, 4 * SZ_1M + gpa, 1, ENC, &hc);
			break;
		}
		if (ret != 0 || hc != HC_EINVAL)
			bad++;
	}
	assert_int_equal(bad, 0);
	assert_int_equal(attr_calls(&e), calls);
	assert_unchanged(&e, &s);
	snapshot_free(&s);
	st = stats(&e);
	assert_int_equal(st.rejected, n);
	assert_int_equal(st.exits, n);
	assert_true(e.log.lines < 100);
	env_check(&e);
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostile_ranges),
		cmocka_unit_test(test_map_top_of_address_space),
		cmocka_unit_test(test_hostile_attrs),
		cmocka_unit_test(test_hostile_hint_1g),
		cmocka_unit_test(test_hostile_flood),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
