/* SPDX-License-Identifier: MIT */
/* The kvm_run front end: cvmconv_handle_exit() on hypercall and memory
 * fault exits, other exits left alone, the fault loop guard. */
#include "api_env.h"

/* ================= kvm_run front end ================= */

static void test_handle_exit_hypercall(void **state)
{
	struct env e;
	struct kvm_run run;
	struct snapshot s;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 8 * SZ_1M);

	set_hypercall(&run, KVM_HC_MAP_GPA_RANGE_NR, SZ_2M, 512, ENC, 0);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 1);
	assert_int_equal(run.hypercall.ret, 0);
	assert_int_equal(cvmconv_is_private(e.c, SZ_2M), 1);
	assert_int_equal(attr_calls(&e), 1);
	env_check(&e);

	/* success overwrites a garbage preset too */
	set_hypercall(&run, KVM_HC_MAP_GPA_RANGE_NR, SZ_2M, 1, 0, 0x1234);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 1);
	assert_int_equal(run.hypercall.ret, 0);
	assert_int_equal(cvmconv_is_private(e.c, SZ_2M), 0);
	env_check(&e);

	/* bad requests: answered with -KVM_EINVAL whatever ret held */
	snapshot_take(&e, &s);
	set_hypercall(&run, KVM_HC_MAP_GPA_RANGE_NR, SZ_2M, 0, ENC, 0);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 1);
	assert_int_equal(run.hypercall.ret, HC_EINVAL);
	set_hypercall(&run, KVM_HC_MAP_GPA_RANGE_NR, SZ_2M, 1, ENC | (1ULL << 9), 0xdeadbeef);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 1);
	assert_int_equal(run.hypercall.ret, HC_EINVAL);
	set_hypercall(&run, KVM_HC_MAP_GPA_RANGE_NR, 64 * SZ_1M, 1, ENC, UINT64_MAX);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 1);
	assert_int_equal(run.hypercall.ret, HC_EINVAL);
	assert_int_equal(attr_calls(&e), 2);
	assert_unchanged(&e, &s);

	/* another hypercall number: not ours, untouched */
	set_hypercall(&run, 11, SZ_2M, 1, ENC, 0x1234);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 0);
	assert_int_equal(run.hypercall.ret, 0x1234);
	set_hypercall(&run, KVM_HC_MAP_GPA_RANGE_NR + (1ULL << 32), SZ_2M, 1, ENC, 0x1234);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 0);
	assert_int_equal(run.hypercall.ret, 0x1234);
	assert_int_equal(attr_calls(&e), 2);
	assert_unchanged(&e, &s);
	snapshot_free(&s);
	assert_int_equal(stats(&e).exits, 5);

	/* other exit reasons and NULL */
	memset(&run, 0, sizeof(run));
	run.exit_reason = KVM_EXIT_IO;
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 0);
	run.exit_reason = KVM_EXIT_MMIO;
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 0);
	run.exit_reason = 0xffffffffu;
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 0);
	assert_int_equal(cvmconv_handle_exit(e.c, NULL), -EINVAL);
	assert_int_equal(stats(&e).exits, 5);
	env_check(&e);
	env_fini(&e);
}

static void test_handle_exit_memory_fault(void **state)
{
	struct env e;
	struct kvm_run run;
	struct snapshot s;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 8 * SZ_1M);

	set_memory_fault(&run, MEMORY_EXIT_FLAG_PRIVATE, 4 * SZ_1M, SZ_2M);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 1);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M), 1);
	assert_int_equal(cvmconv_is_private(e.c, 6 * SZ_1M - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e.c, 6 * SZ_1M), 0);
	assert_int_equal(attr_calls(&e), 1);
	assert_attr_call(last_attr_call(&e, 0), 4 * SZ_1M, SZ_2M, CVMCONV_ATTR_PRIVATE);
	env_check(&e);
	/* a shared access converts back */
	set_memory_fault(&run, 0, 4 * SZ_1M, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 1);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M), 0);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M + SZ_4K), 1);
	env_check(&e);
	assert_int_equal(stats(&e).exits, 2);

	/* faults the library cannot serve: fatal for the vCPU, nothing changed */
	snapshot_take(&e, &s);
	set_memory_fault(&run, MEMORY_EXIT_FLAG_PRIVATE, 64 * SZ_1M, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -EFAULT);
	set_memory_fault(&run, MEMORY_EXIT_FLAG_PRIVATE, 8 * SZ_1M - SZ_4K, 2 * SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -EFAULT);
	set_memory_fault(&run, MEMORY_EXIT_FLAG_PRIVATE, 0xfffffffffffff000ULL, 2 * SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -EFAULT);
	set_memory_fault(&run, MEMORY_EXIT_FLAG_PRIVATE, SZ_4K, 0);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -EFAULT);
	set_memory_fault(&run, MEMORY_EXIT_FLAG_PRIVATE, SZ_4K + 8, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -EFAULT);
	set_memory_fault(&run, MEMORY_EXIT_FLAG_PRIVATE | 1, SZ_4K, SZ_4K); /* unknown flag */
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -EFAULT);
	set_memory_fault(&run, 1ULL << 63, SZ_4K, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -EFAULT);
	assert_int_equal(attr_calls(&e), 2);
	assert_unchanged(&e, &s);
	snapshot_free(&s);
	env_check(&e);
	env_fini(&e);
}

/* A memory fault converting cannot resolve: the same vCPU (kvm_run) with
 * the same fault, the range already in that state, no conversion since:
 * -ELOOP, logged; another vCPU whose fault was just resolved re-enters (1);
 * after any conversion the first vCPU gets one more chance. */
static void test_handle_exit_fault_loop(void **state)
{
	struct env e;
	struct kvm_run a, b;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 8 * SZ_1M);
	/* vCPU a converts: re-enter */
	set_memory_fault(&a, MEMORY_EXIT_FLAG_PRIVATE, 4 * SZ_1M, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &a), 1);
	/* vCPU b faulted on the same page at the same time: resolved, re-enter */
	set_memory_fault(&b, MEMORY_EXIT_FLAG_PRIVATE, 4 * SZ_1M, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &b), 1);
	/* a faults again, nothing to convert, nothing converted since: a loop */
	set_memory_fault(&a, MEMORY_EXIT_FLAG_PRIVATE, 4 * SZ_1M, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &a), -ELOOP);
	set_memory_fault(&b, MEMORY_EXIT_FLAG_PRIVATE, 4 * SZ_1M, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &b), -ELOOP);
	assert_true(log_count_matching(&e.log, "converting cannot resolve it", LOG_ERR) >= 1);
	/* another fault of a is not a repeat */
	set_memory_fault(&a, MEMORY_EXIT_FLAG_PRIVATE, 4 * SZ_1M, 2 * SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &a), 1);
	/* any conversion in between: one more chance */
	set_memory_fault(&b, MEMORY_EXIT_FLAG_PRIVATE, 4 * SZ_1M, SZ_4K);
	assert_int_equal(cvmconv_convert(e.c, 6 * SZ_1M, SZ_4K, true), 0);
	assert_int_equal(cvmconv_handle_exit(e.c, &b), 1);
	assert_int_equal(cvmconv_handle_exit(e.c, &b), -ELOOP);
	/* nothing changed by the refusals */
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M), 1);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M + 2 * SZ_4K), 0);
	env_check(&e);
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handle_exit_hypercall),
		cmocka_unit_test(test_handle_exit_memory_fault),
		cmocka_unit_test(test_handle_exit_fault_loop),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
