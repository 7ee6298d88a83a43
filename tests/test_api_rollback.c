/* SPDX-License-Identifier: MIT */
/* Rollback of a conversion whose attribute update fails in the strict fake
 * KVM, and the broken context left when the rollback fails too. (Failures
 * injected at the libc boundary: tests/fault_injection/fi_attr.c.) */
#include "api_env.h"

/* ================= rollback and broken context ================= */

static void test_rollback(void **state)
{
	struct env e;
	struct cvmconv_stats before, after;
	struct snapshot s;
	uint64_t hc, calls;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 4 * SZ_1M);	   /* A */
	env_add(&e, 4 * SZ_1M, 4 * SZ_1M); /* B */
	/* the middle of the request, across the A/B boundary, already private */
	map_ok(&e, 3 * SZ_1M, 512, ENC);
	env_check(&e);

	/* [2M, 6M) needs two runs: [2M, 3M) and [5M, 6M); the second fails */
	snapshot_take(&e, &s);
	before = stats(&e);
	calls = attr_calls(&e);
	fake_kvm_fail_nth(&e.f, FAKE_CALL_ATTR, 2, ENOMEM);
	assert_int_equal(map(&e, SZ_2M, 1024, ENC, &hc), -ENOMEM);
	assert_int_equal(hc, HC_EFAULT);
	assert_int_equal(attr_calls(&e), calls + 3);
	assert_attr_call(last_attr_call(&e, 2), SZ_2M, SZ_1M, CVMCONV_ATTR_PRIVATE);
	assert_attr_call(last_attr_call(&e, 1), 5 * SZ_1M, SZ_1M, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(last_attr_call(&e, 1)->ret, -ENOMEM);
	assert_attr_call(last_attr_call(&e, 0), SZ_2M, SZ_1M, 0); /* the rollback */
	assert_int_equal(last_attr_call(&e, 0)->ret, 0);
	assert_unchanged(&e, &s);
	snapshot_free(&s);
	env_check(&e);
	after = stats(&e);
	assert_int_equal(after.attr_updates, before.attr_updates + 3);
	assert_int_equal(after.to_private_bytes, before.to_private_bytes);
	assert_int_equal(after.broken, 0);

	/* the first update failing needs no rollback */
	fake_kvm_fail_nth(&e.f, FAKE_CALL_ATTR, 1, ENOMEM);
	calls = attr_calls(&e);
	assert_int_equal(map(&e, SZ_2M, 1024, ENC, &hc), -ENOMEM);
	assert_int_equal(hc, HC_EFAULT);
	assert_int_equal(attr_calls(&e), calls + 1);
	env_check(&e);

	/* host-initiated conversions roll back too */
	fake_kvm_fail_nth(&e.f, FAKE_CALL_ATTR, 2, ENOMEM);
	snapshot_take(&e, &s);
	assert_int_equal(cvmconv_convert(e.c, SZ_2M, 4 * SZ_1M, true), -ENOMEM);
	assert_unchanged(&e, &s);
	snapshot_free(&s);
	env_check(&e);

	/* the context still works */
	fake_kvm_fail_clear(&e.f);
	map_ok(&e, SZ_2M, 1024, ENC);
	assert_int_equal(cvmconv_is_private(e.c, SZ_2M), 1);
	assert_int_equal(cvmconv_is_private(e.c, 6 * SZ_1M - SZ_4K), 1);
	env_check(&e);
	env_fini(&e);
}

static void test_rollback_fails_broken(void **state)
{
	struct env e;
	struct cvmconv_region r;
	struct kvm_run run;
	uint64_t hc, calls;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 4 * SZ_1M);
	env_add(&e, 4 * SZ_1M, 4 * SZ_1M);
	map_ok(&e, 3 * SZ_1M, 512, ENC);
	assert_int_equal(stats(&e).broken, 0);

	/* 2nd update and the rollback (3rd) both fail */
	fake_kvm_fail_nth(&e.f, FAKE_CALL_ATTR, 2, ENOMEM);
	e.f.fail_every[FAKE_CALL_ATTR] = true;
	assert_int_equal(map(&e, SZ_2M, 1024, ENC, &hc), -ENOTRECOVERABLE);
	assert_true(attr_calls(&e) >= 4); /* 1 before + run 1 + run 2 + rollback */
	assert_int_equal(stats(&e).broken, 1);

	/* from now on everything refuses, even with a healthy kernel */
	fake_kvm_fail_clear(&e.f);
	calls = attr_calls(&e);
	assert_int_equal(map(&e, 6 * SZ_1M, 1, ENC, &hc), -ENOTRECOVERABLE);
	assert_int_equal(map(&e, 0, 0, ENC, &hc), -ENOTRECOVERABLE);
	assert_int_equal(cvmconv_convert(e.c, 0, SZ_4K, true), -ENOTRECOVERABLE);
	assert_int_equal(cvmconv_flush(e.c), -ENOTRECOVERABLE);
	r = env_region_desc(64 * SZ_1M, SZ_2M, -1, -1, 0, -1);
	assert_int_equal(cvmconv_add_region(e.c, &r), -ENOTRECOVERABLE);
	memset(&run, 0, sizeof(run));
	run.exit_reason = KVM_EXIT_HYPERCALL;
	run.hypercall.nr = KVM_HC_MAP_GPA_RANGE_NR;
	run.hypercall.args[0] = 6 * SZ_1M;
	run.hypercall.args[1] = 1;
	run.hypercall.args[2] = ENC;
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -ENOTRECOVERABLE);
	assert_int_equal(attr_calls(&e), calls);
	assert_int_equal(stats(&e).broken, 1);
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rollback),
		cmocka_unit_test(test_rollback_fails_broken),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
