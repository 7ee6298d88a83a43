/* SPDX-License-Identifier: MIT */
/* The conversion transaction against the strict fake KVM: one attribute
 * update per changing run, requests already in state, half-private ranges,
 * requests over two regions, host-initiated conversions. After every state
 * change the fake's attribute map must equal the library's view. */
#include "api_env.h"

/* ================= map_gpa_range: happy paths ================= */

static void test_map_to_private_and_back(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 8 * SZ_1M);

	map_ok(&e, SZ_2M, 512, ENC);
	assert_int_equal(attr_calls(&e), 1);
	assert_attr_call(last_attr_call(&e, 0), SZ_2M, SZ_2M, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(cvmconv_is_private(e.c, SZ_2M - SZ_4K), 0);
	assert_int_equal(cvmconv_is_private(e.c, SZ_2M), 1);
	assert_int_equal(cvmconv_is_private(e.c, 2 * SZ_2M - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e.c, 2 * SZ_2M), 0);
	env_check(&e);
	st = stats(&e);
	assert_int_equal(st.exits, 1);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(st.to_private_bytes, SZ_2M);
	assert_int_equal(st.to_shared_bytes, 0);

	map_ok(&e, SZ_2M, 512, 0);
	assert_int_equal(attr_calls(&e), 2);
	assert_attr_call(last_attr_call(&e, 0), SZ_2M, SZ_2M, 0);
	assert_int_equal(cvmconv_is_private(e.c, SZ_2M), 0);
	env_check(&e);
	st = stats(&e);
	assert_int_equal(st.to_shared_bytes, SZ_2M);

	/* hints that match the range; a shared request with the 2M hint stays
	 * a shared request (hint bits are not the encryption bit) */
	map_ok(&e, 2 * SZ_2M, 1024, ENC | HINT_2M);
	assert_attr_call(last_attr_call(&e, 0), 2 * SZ_2M, 2 * SZ_2M, CVMCONV_ATTR_PRIVATE);
	map_ok(&e, 2 * SZ_2M, 512, HINT_2M);
	assert_attr_call(last_attr_call(&e, 0), 2 * SZ_2M, SZ_2M, 0);
	assert_int_equal(cvmconv_is_private(e.c, 2 * SZ_2M), 0);
	assert_int_equal(cvmconv_is_private(e.c, 3 * SZ_2M), 1);
	assert_int_equal(attr_calls(&e), 4);
	/* a single 4 KiB page with an explicit 4K hint, at the region's start */
	map_ok(&e, 0, 1, ENC | CVMCONV_MAP_GPA_RANGE_PAGE_SZ_4K);
	assert_attr_call(last_attr_call(&e, 0), 0, SZ_4K, CVMCONV_ATTR_PRIVATE);
	env_check(&e);
	st = stats(&e);
	assert_int_equal(st.exits, 5);
	assert_int_equal(st.to_private_bytes, SZ_2M + 2 * SZ_2M + SZ_4K);
	assert_int_equal(st.to_shared_bytes, 2 * SZ_2M);
	assert_int_equal(st.attr_updates, attr_calls(&e));
	env_fini(&e);
}

static void test_map_already_in_state(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 8 * SZ_1M);
	map_ok(&e, 0, 2048, 0); /* whole region, already shared */
	assert_int_equal(attr_calls(&e), 0);
	map_ok(&e, SZ_2M, 16, ENC);
	assert_int_equal(attr_calls(&e), 1);
	map_ok(&e, SZ_2M, 16, ENC);
	map_ok(&e, SZ_2M + SZ_4K, 1, ENC);
	assert_int_equal(attr_calls(&e), 1);
	st = stats(&e);
	assert_int_equal(st.exits, 4);
	assert_int_equal(st.to_private_bytes, 16 * SZ_4K);
	assert_int_equal(st.to_shared_bytes, 0);
	assert_int_equal(st.rejected, 0);
	env_check(&e);
	env_fini(&e);
}

static void test_map_half_private(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 8 * SZ_1M);
	map_ok(&e, SZ_2M, 256, ENC); /* [2M, 3M) */
	assert_int_equal(attr_calls(&e), 1);
	map_ok(&e, SZ_2M, 512, ENC); /* [2M, 4M): only [3M, 4M) changes */
	assert_int_equal(attr_calls(&e), 2);
	assert_attr_call(last_attr_call(&e, 0), 3 * SZ_1M, SZ_1M, CVMCONV_ATTR_PRIVATE);
	st = stats(&e);
	assert_int_equal(st.to_private_bytes, SZ_2M);
	env_check(&e);
	/* back to shared over [1M, 5M): only [2M, 4M) changes */
	map_ok(&e, SZ_1M, 1024, 0);
	assert_int_equal(attr_calls(&e), 3);
	assert_attr_call(last_attr_call(&e, 0), SZ_2M, SZ_2M, 0);
	st = stats(&e);
	assert_int_equal(st.to_shared_bytes, SZ_2M);
	env_check(&e);
	env_fini(&e);
}

static void test_map_two_regions_one_call(void **state)
{
	struct env e;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 8 * SZ_1M);
	env_add(&e, 8 * SZ_1M, 8 * SZ_1M);
	map_ok(&e, 6 * SZ_1M, 1024, ENC); /* [6M, 10M) */
	assert_int_equal(attr_calls(&e), 1);
	assert_attr_call(last_attr_call(&e, 0), 6 * SZ_1M, 4 * SZ_1M, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(cvmconv_is_private(e.c, 6 * SZ_1M - SZ_4K), 0);
	assert_int_equal(cvmconv_is_private(e.c, 8 * SZ_1M - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e.c, 8 * SZ_1M), 1);
	assert_int_equal(cvmconv_is_private(e.c, 10 * SZ_1M - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e.c, 10 * SZ_1M), 0);
	env_check(&e);
	assert_int_equal(stats(&e).to_private_bytes, 4 * SZ_1M);
	/* an unaligned request across the boundary, back to shared */
	map_ok(&e, 8 * SZ_1M - SZ_4K, 2, 0);
	assert_int_equal(attr_calls(&e), 2);
	assert_attr_call(last_attr_call(&e, 0), 8 * SZ_1M - SZ_4K, 2 * SZ_4K, 0);
	env_check(&e);
	env_fini(&e);
}

/* ================= host-initiated conversion ================= */

static void test_convert_host(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	struct snapshot s;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_REJECT);
	env_add(&e, 0, 8 * SZ_1M);
	env_add(&e, 16 * SZ_1M, 8 * SZ_1M);
	/* no policy on the host path: 4 KiB in a REJECT context */
	assert_int_equal(cvmconv_convert(e.c, SZ_4K, SZ_4K, true), 0);
	assert_int_equal(cvmconv_is_private(e.c, SZ_4K), 1);
	assert_int_equal(attr_calls(&e), 1);
	assert_attr_call(last_attr_call(&e, 0), SZ_4K, SZ_4K, CVMCONV_ATTR_PRIVATE);
	/* pages 0 and 2 change: two runs around the private page 1 */
	assert_int_equal(cvmconv_convert(e.c, 0, 3 * SZ_4K, true), 0);
	assert_int_equal(attr_calls(&e), 3);
	assert_attr_call(last_attr_call(&e, 1), 0, SZ_4K, CVMCONV_ATTR_PRIVATE);
	assert_attr_call(last_attr_call(&e, 0), 2 * SZ_4K, SZ_4K, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(cvmconv_convert(e.c, 0, 3 * SZ_4K, true), 0); /* no-op */
	assert_int_equal(attr_calls(&e), 3);
	st = stats(&e);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(st.unaligned, 0);
	assert_int_equal(st.exits, 0);
	assert_int_equal(st.to_private_bytes, 3 * SZ_4K);
	env_check(&e);

	/* invalid ranges */
	snapshot_take(&e, &s);
	assert_int_equal(cvmconv_convert(e.c, SZ_4K, 0, false), -EINVAL);
	assert_int_equal(cvmconv_convert(e.c, 0x800, SZ_4K, false), -EINVAL);
	assert_int_equal(cvmconv_convert(e.c, 0, 0x800, false), -EINVAL);
	assert_int_equal(cvmconv_convert(e.c, 0xfffffffffffff000ULL, 0x2000, true), -EINVAL);
	assert_int_equal(cvmconv_convert(e.c, SZ_4K, UINT64_MAX & ~(SZ_4K - 1), false), -EINVAL);
	assert_int_equal(cvmconv_convert(e.c, 8 * SZ_1M, SZ_4K, true), -EINVAL);
	assert_int_equal(cvmconv_convert(e.c, 6 * SZ_1M, 4 * SZ_1M, true), -EINVAL);
	assert_int_equal(cvmconv_convert(e.c, 15 * SZ_1M, 2 * SZ_1M, true), -EINVAL);
	assert_int_equal(cvmconv_convert(e.c, 0, 24 * SZ_1M, false), -EINVAL); /* gap */
	assert_int_equal(attr_calls(&e), 3);
	assert_unchanged(&e, &s);
	snapshot_free(&s);
	st = stats(&e);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(st.exits, 0);
	env_check(&e);
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_map_to_private_and_back),
		cmocka_unit_test(test_map_already_in_state),
		cmocka_unit_test(test_map_half_private),
		cmocka_unit_test(test_map_two_regions_one_call),
		cmocka_unit_test(test_convert_host),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
