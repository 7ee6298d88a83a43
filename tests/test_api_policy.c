/* SPDX-License-Identifier: MIT */
/* The alignment policy (CVMCONV_UNALIGNED_*): reject, log, allow, a 4 KiB
 * granule, per-region overrides. */
#include "api_env.h"

/* ================= alignment policy ================= */

static void test_policy_reject(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	struct snapshot s;
	(void)state;

	env_init_granule(&e, CVMCONV_UNALIGNED_REJECT, SZ_2M);
	env_add(&e, 0, 8 * SZ_1M);
	expect_rejected(&e, SZ_2M, 1, ENC);
	expect_rejected(&e, SZ_2M + SZ_4K, 512, ENC);	/* unaligned start */
	expect_rejected(&e, SZ_2M, 513, ENC);		/* unaligned size */
	expect_rejected(&e, SZ_2M, 256, ENC | HINT_2M); /* malformed as well */
	st = stats(&e);
	assert_int_equal(st.unaligned, 3);
	assert_int_equal(st.rejected, 4);
	/* aligned requests convert */
	map_ok(&e, SZ_2M, 512, ENC);
	map_ok(&e, 2 * SZ_2M, 1024, ENC | HINT_2M);
	assert_int_equal(attr_calls(&e), 2);
	st = stats(&e);
	assert_int_equal(st.unaligned, 3);
	assert_int_equal(st.rejected, 4);
	assert_int_equal(st.to_private_bytes, 3 * SZ_2M);
	env_check(&e);
	/* an unaligned implicit conversion (memory fault) cannot be answered
	 * with an error code: -EPERM, nothing changed */
	{
		struct kvm_run run;
		struct memory_fault_exit mf = { MEMORY_EXIT_FLAG_PRIVATE, SZ_4K, SZ_4K };

		memset(&run, 0, sizeof(run));
		run.exit_reason = KVM_EXIT_MEMORY_FAULT;
		memcpy((char *)&run + 32, &mf, sizeof(mf));
		snapshot_take(&e, &s);
		assert_int_equal(cvmconv_handle_exit(e.c, &run), -EPERM);
		assert_unchanged(&e, &s);
		snapshot_free(&s);
		assert_int_equal(attr_calls(&e), 2);
		assert_int_equal(stats(&e).unaligned, 4);
	}
	env_fini(&e);
}

static void test_policy_log(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	(void)state;

	env_init_granule(&e, CVMCONV_UNALIGNED_LOG, SZ_2M);
	env_add(&e, 0, 8 * SZ_1M);
	map_ok(&e, 0x2a3000, 1, ENC);
	assert_int_equal(cvmconv_is_private(e.c, 0x2a3000), 1);
	assert_int_equal(attr_calls(&e), 1);
	st = stats(&e);
	assert_int_equal(st.unaligned, 1);
	assert_int_equal(st.rejected, 0);
	assert_true(e.log.lines >= 1);
	assert_true(log_count_matching(&e.log, "2a3000", LOG_DEBUG) >= 1);
	/* aligned requests are not counted */
	map_ok(&e, 3 * SZ_2M, 512, ENC);
	assert_int_equal(stats(&e).unaligned, 1);
	env_check(&e);
	env_fini(&e);
}

static void test_policy_allow(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	(void)state;

	env_init_granule(&e, CVMCONV_UNALIGNED_ALLOW, SZ_2M);
	env_add(&e, 0, 8 * SZ_1M);
	map_ok(&e, 0x2a3000, 1, ENC);
	map_ok(&e, 0x2a3000, 1, 0);
	assert_int_equal(attr_calls(&e), 2);
	st = stats(&e);
	assert_int_equal(st.unaligned, 2);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(log_count_matching(&e.log, "", LOG_NOTICE), 0);
	assert_int_equal(e.log.by_level[LOG_WARNING] + e.log.by_level[LOG_NOTICE] +
				 e.log.by_level[LOG_ERR],
			 0);
	env_check(&e);
	env_fini(&e);
}

static void test_policy_granule_4k(void **state)
{
	struct env e;
	(void)state;

	/* with a 4 KiB granule nothing is unaligned, even under REJECT */
	env_init_granule(&e, CVMCONV_UNALIGNED_REJECT, SZ_4K);
	env_add(&e, 0, 8 * SZ_1M);
	map_ok(&e, SZ_4K, 3, ENC);
	assert_int_equal(stats(&e).unaligned, 0);
	env_check(&e);
	env_fini(&e);

	/* with a 1 GiB granule a 2 MiB request is unaligned */
	env_init_granule(&e, CVMCONV_UNALIGNED_REJECT, SZ_1G);
	env_add(&e, 0, 8 * SZ_1M);
	expect_rejected(&e, SZ_2M, 512, ENC | HINT_2M);
	assert_int_equal(stats(&e).unaligned, 1);
	env_fini(&e);
}

static void test_policy_per_region(void **state)
{
	struct env e;
	(void)state;

	/* ALLOW context, region A REJECT, region B default (ALLOW) */
	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	assert_int_equal(env_add_region(&e, 0, 4 * SZ_1M, 0, CVMCONV_UNALIGNED_REJECT, true), 0);
	assert_int_equal(env_add_region(&e, 4 * SZ_1M, 4 * SZ_1M, 0, -1, true), 0);
	expect_rejected(&e, SZ_4K, 1, ENC);
	map_ok(&e, 4 * SZ_1M + SZ_4K, 1, ENC);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M + SZ_4K), 1);
	map_ok(&e, SZ_2M, 512, ENC); /* aligned in A is fine */
	assert_int_equal(stats(&e).unaligned, 2);
	env_check(&e);
	env_fini(&e);

	/* REJECT context, region B explicitly ALLOW */
	env_init(&e, CVMCONV_UNALIGNED_REJECT);
	assert_int_equal(env_add_region(&e, 0, 4 * SZ_1M, 0, -1, true), 0);
	assert_int_equal(env_add_region(&e, 4 * SZ_1M, 4 * SZ_1M, 0, CVMCONV_UNALIGNED_ALLOW, true),
			 0);
	expect_rejected(&e, SZ_4K, 1, ENC);
	map_ok(&e, 4 * SZ_1M + SZ_4K, 1, ENC);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M + SZ_4K), 1);
	env_check(&e);
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_reject),	  cmocka_unit_test(test_policy_log),
		cmocka_unit_test(test_policy_allow),	  cmocka_unit_test(test_policy_granule_4k),
		cmocka_unit_test(test_policy_per_region),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
