/* SPDX-License-Identifier: MIT */
/* Stats (the sz handshake, extent counters) and the tracker's memory over
 * a 4 TiB region. */
#include "api_env.h"

/* ================= stats ================= */

static void test_stats_sz(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	size_t core = offsetof(struct cvmconv_stats, extents) + sizeof(st.extents);
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 8 * SZ_1M);
	assert_int_equal(cvmconv_get_stats(e.c, NULL), -EINVAL);
	memset(&st, 0, sizeof(st));
	assert_int_equal(cvmconv_get_stats(e.c, &st), -EINVAL);
	st.sz = offsetof(struct cvmconv_stats, extents);
	assert_int_equal(cvmconv_get_stats(e.c, &st), -EINVAL);
	st.sz = sizeof(st.sz);
	assert_int_equal(cvmconv_get_stats(e.c, &st), -EINVAL);
	/* an old caller with only the core fields: nothing written past them */
	memset(&st, 0xa5, sizeof(st));
	st.sz = core;
	assert_int_equal(cvmconv_get_stats(e.c, &st), 0);
	assert_int_equal(st.extents, 4);
	for (size_t i = core; i < sizeof(st); i++)
		assert_int_equal(((unsigned char *)&st)[i], 0xa5);
	env_fini(&e);
}

static void test_stats_extents(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 64 * SZ_1M, 64 * SZ_1M);
	st = stats(&e);
	assert_int_equal(st.extents, 32);
	assert_int_equal(st.mixed_extents, 0);
	assert_int_equal(st.guest_bytes, 64 * SZ_1M);
	assert_int_equal(st.huge_mappable_bytes, 64 * SZ_1M);
	assert_true(st.tracker_bytes > 0);

	map_ok(&e, 70 * SZ_1M + 5 * SZ_4K, 1, ENC);
	st = stats(&e);
	assert_int_equal(st.mixed_extents, 1);
	assert_int_equal(st.huge_mappable_bytes, 62 * SZ_1M);
	env_check(&e);
	map_ok(&e, 70 * SZ_1M + 5 * SZ_4K, 1, 0);
	st = stats(&e);
	assert_int_equal(st.mixed_extents, 0);
	assert_int_equal(st.huge_mappable_bytes, 64 * SZ_1M);

	/* a whole private extent is still huge-mappable */
	map_ok(&e, 70 * SZ_1M, 512, ENC);
	st = stats(&e);
	assert_int_equal(st.mixed_extents, 0);
	assert_int_equal(st.huge_mappable_bytes, 64 * SZ_1M);
	/* a request across an extent boundary mixes both extents */
	map_ok(&e, 74 * SZ_1M - SZ_4K, 2, ENC);
	st = stats(&e);
	assert_int_equal(st.mixed_extents, 2);
	assert_int_equal(st.huge_mappable_bytes, 60 * SZ_1M);
	/* filling them makes them uniform again */
	map_ok(&e, 72 * SZ_1M, 512, ENC);
	map_ok(&e, 74 * SZ_1M, 512, ENC);
	st = stats(&e);
	assert_int_equal(st.mixed_extents, 0);
	assert_int_equal(st.huge_mappable_bytes, 64 * SZ_1M);
	assert_int_equal(st.extents, 32);
	env_check(&e);
	env_fini(&e);
}

/* ================= tracker memory ================= */

static void test_tracker_4t(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	const uint64_t top = SZ_4T;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	assert_int_equal(env_add_region(&e, 0, SZ_4T, 0, -1, false), 0);
	e.nreg = 0; /* too big for the page-by-page check: windows below */
	st = stats(&e);
	assert_int_equal(st.guest_bytes, SZ_4T);
	assert_int_equal(st.extents, SZ_4T / SZ_2M);
	assert_true(st.tracker_bytes <= 8 * SZ_1M);

	map_ok(&e, top - SZ_4K, 1, ENC);
	assert_attr_call(last_attr_call(&e, 0), top - SZ_4K, SZ_4K, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(cvmconv_is_private(e.c, top - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e.c, top - 2 * SZ_4K), 0);
	assert_int_equal(cvmconv_is_private(e.c, top), -ENOENT);
	assert_int_equal(fake_kvm_mismatches(&e.f, e.c, top - 4 * SZ_1M, 4 * SZ_1M), 0);

	map_ok(&e, SZ_1G, 262144, ENC | HINT_1G);
	assert_attr_call(last_attr_call(&e, 0), SZ_1G, SZ_1G, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(cvmconv_is_private(e.c, SZ_1G - SZ_4K), 0);
	assert_int_equal(cvmconv_is_private(e.c, SZ_1G), 1);
	assert_int_equal(cvmconv_is_private(e.c, 2 * SZ_1G - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e.c, 2 * SZ_1G), 0);
	assert_int_equal(fake_kvm_mismatches(&e.f, e.c, SZ_1G - 4 * SZ_1M, 8 * SZ_1M), 0);
	assert_int_equal(fake_kvm_mismatches(&e.f, e.c, 2 * SZ_1G - 4 * SZ_1M, 8 * SZ_1M), 0);
	st = stats(&e);
	assert_int_equal(st.mixed_extents, 1);
	assert_true(st.tracker_bytes <= 8 * SZ_1M);

	/* back to shared over the whole 4 TiB: one call per changing run */
	assert_int_equal(cvmconv_convert(e.c, 0, SZ_4T, false), 0);
	assert_int_equal(attr_calls(&e), 4);
	assert_attr_call(last_attr_call(&e, 1), SZ_1G, SZ_1G, 0);
	assert_attr_call(last_attr_call(&e, 0), top - SZ_4K, SZ_4K, 0);
	assert_int_equal(cvmconv_is_private(e.c, SZ_1G), 0);
	assert_int_equal(cvmconv_is_private(e.c, top - SZ_4K), 0);
	/* and all of it private with one call */
	assert_int_equal(cvmconv_convert(e.c, 0, SZ_4T, true), 0);
	assert_int_equal(attr_calls(&e), 5);
	assert_attr_call(last_attr_call(&e, 0), 0, SZ_4T, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(cvmconv_is_private(e.c, 0), 1);
	assert_int_equal(cvmconv_is_private(e.c, top - SZ_4K), 1);
	st = stats(&e);
	assert_int_equal(st.mixed_extents, 0);
	assert_int_equal(st.huge_mappable_bytes, SZ_4T);
	assert_true(st.tracker_bytes <= 8 * SZ_1M);
	assert_int_equal(fake_kvm_mismatches(&e.f, e.c, 0, 4 * SZ_1M), 0);
	assert_int_equal(fake_kvm_mismatches(&e.f, e.c, top - 4 * SZ_1M, 8 * SZ_1M), 0);
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stats_sz),
		cmocka_unit_test(test_stats_extents),
		cmocka_unit_test(test_tracker_4t),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
