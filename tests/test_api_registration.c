/* SPDX-License-Identifier: MIT */
/* The public API against the strict fake KVM: cvmconv_create() and
 * add_region()/remove_region() argument checking, backings, overlap,
 * CVMCONV_REGION_PRIVATE, queries outside every region. */
#include "api_env.h"

/* ================= create ================= */

static void count_log(void *opaque, int level, const char *msg)
{
	(void)level;
	(void)msg;
	(*(unsigned *)opaque)++;
}

static void test_create_invalid(void **state)
{
	struct fake_kvm f;
	struct cvmconv_config cfg;
	struct cvmconv_ops punch_only = { .punch = fake_kvm_ops.punch };
	struct cvmconv *c = NULL;
	static const uint64_t bad_granules[] = {
		1, 2048, 3 << 20, 0x3000, (1ULL << 21) + 4096, UINT64_MAX
	};
	(void)state;

	fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&f, CVMCONV_UNALIGNED_ALLOW);
	assert_int_equal(cvmconv_create(NULL, &c), -EINVAL);
	assert_int_equal(cvmconv_create(&cfg, NULL), -EINVAL);

	cfg.sz = 0;
	assert_int_equal(cvmconv_create(&cfg, &c), -EINVAL);
	cfg.sz = offsetof(struct cvmconv_config, vm_fd);
	assert_int_equal(cvmconv_create(&cfg, &c), -EINVAL);
	cfg.sz = sizeof(cfg);

	for (size_t i = 0; i < sizeof(bad_granules) / sizeof(bad_granules[0]); i++) {
		cfg.granule = bad_granules[i];
		assert_int_equal(cvmconv_create(&cfg, &c), -EINVAL);
	}
	/* good granules: 4 KiB, 2 MiB, 1 GiB */
	cfg.granule = SZ_4K;
	assert_int_equal(cvmconv_create(&cfg, &c), 0);
	cvmconv_destroy(c);
	cfg.granule = SZ_1G;
	assert_int_equal(cvmconv_create(&cfg, &c), 0);
	cvmconv_destroy(c);
	cfg.granule = 0;

	cfg.unaligned = (enum cvmconv_unaligned)3;
	assert_int_equal(cvmconv_create(&cfg, &c), -EINVAL);
	cfg.unaligned = (enum cvmconv_unaligned) - 1;
	assert_int_equal(cvmconv_create(&cfg, &c), -EINVAL);
	cfg.unaligned = CVMCONV_UNALIGNED_REJECT;

	/* no VM fd and no attribute op: nothing could set attributes */
	cfg.ops = NULL;
	assert_int_equal(cvmconv_create(&cfg, &c), -EINVAL);
	cfg.ops = &punch_only;
	assert_int_equal(cvmconv_create(&cfg, &c), -EINVAL);
	cfg.ops = &fake_kvm_ops;
	assert_int_equal(cvmconv_create(&cfg, &c), 0);
	cvmconv_destroy(c);
	cvmconv_destroy(NULL);
	assert_int_equal(f.calls[FAKE_CALL_ATTR], 0);
	fake_kvm_fini(&f);
}

static void test_create_sz_compat(void **state)
{
	struct fake_kvm f;
	struct {
		struct cvmconv_config cfg;
		uint64_t tail[2];
	} big;
	struct cvmconv_config cfg;
	struct cvmconv *c = NULL;
	struct cvmconv_region r;
	unsigned logged = 0;
	uint64_t hc;
	(void)state;

	fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
	/* a newer caller: larger struct, zero tail works, non-zero tail is refused */
	memset(&big, 0, sizeof(big));
	big.cfg = fake_kvm_config(&f, CVMCONV_UNALIGNED_ALLOW);
	big.cfg.sz = sizeof(big);
	assert_int_equal(cvmconv_create(&big.cfg, &c), 0);
	cvmconv_destroy(c);
	big.tail[1] = 1;
	assert_int_equal(cvmconv_create(&big.cfg, &c), -E2BIG);
	big.tail[1] = 0;
	big.tail[0] = 1ULL << 40;
	assert_int_equal(cvmconv_create(&big.cfg, &c), -E2BIG);

	/* an older caller whose struct ends after ops: what follows is not read
	 * (the log callback set here must never be called) */
	cfg = fake_kvm_config(&f, CVMCONV_UNALIGNED_LOG);
	cfg.log = count_log;
	cfg.log_opaque = &logged;
	cfg.sz = offsetof(struct cvmconv_config, ops) + sizeof(cfg.ops);
	assert_int_equal(cvmconv_create(&cfg, &c), 0);
	r = env_region_desc(0, 4 * SZ_2M, -1, -1, 0, -1);
	assert_int_equal(cvmconv_add_region(c, &r), 0);
	assert_int_equal(cvmconv_is_private(c, 0), 0);
	/* malformed requests are refused without touching ops or the log */
	for (int i = 0; i < 10; i++) {
		hc = 0;
		assert_int_equal(cvmconv_map_gpa_range(c, SZ_4K, 0, ENC, &hc), 0);
		assert_int_equal(hc, HC_EINVAL);
		assert_int_equal(cvmconv_map_gpa_range(c, 0, 1, 1ULL << 63, &hc), 0);
		assert_int_equal(hc, HC_EINVAL);
	}
	assert_int_equal(logged, 0);
	cvmconv_destroy(c);
	assert_int_equal(f.calls[FAKE_CALL_ATTR], 0);
	fake_kvm_fini(&f);
}

/* ================= regions ================= */

static void test_add_region_invalid(void **state)
{
	struct env e;
	struct cvmconv_region base, r;
	struct {
		struct cvmconv_region r;
		uint64_t tail;
	} big;
	int fd;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	fd = shmem_fd(4 * SZ_2M);
	base = env_region_desc(4 * SZ_2M, 2 * SZ_2M, fd, fd, 0, -1);

#define BAD_REGION(field, value, err)                               \
	do {                                                        \
		r = base;                                           \
		r.field = value;                                    \
		assert_int_equal(cvmconv_add_region(e.c, &r), err); \
	} while (0)
	BAD_REGION(sz, 0, -EINVAL);
	BAD_REGION(sz, offsetof(struct cvmconv_region, size), -EINVAL);
	BAD_REGION(gpa, 4 * SZ_2M + 0x800, -EINVAL);
	BAD_REGION(gpa, 4 * SZ_2M + 1, -EINVAL);
	BAD_REGION(size, 2 * SZ_2M + 0x800, -EINVAL);
	BAD_REGION(size, 0, -EINVAL);
	BAD_REGION(private_offset, 0x800, -EINVAL);
	BAD_REGION(shared_offset, 0x10, -EINVAL);
	BAD_REGION(flags, 1u << 1, -EINVAL);
	BAD_REGION(flags, CVMCONV_REGION_PRIVATE | 0x80000000u, -EINVAL);
	BAD_REGION(unaligned, 3, -EINVAL);
	BAD_REGION(unaligned, -2, -EINVAL);
	BAD_REGION(private_fd, 999999, -EBADF);
	/* a file range must end within off_t: every punch of it would fail */
	BAD_REGION(shared_offset, (uint64_t)INT64_MAX - SZ_2M + 1, -EINVAL);
	BAD_REGION(private_offset, (uint64_t)INT64_MAX & ~(SZ_4K - 1), -EINVAL);
	BAD_REGION(shared_offset, 1ULL << 63, -EINVAL);
	r = base; /* the last range that fits is accepted */
	r.private_fd = r.shared_fd = -1;
	r.shared_offset = ((uint64_t)INT64_MAX + 1) - SZ_4K - r.size; /* ends at 2^63 - 4 KiB */
	assert_int_equal(cvmconv_add_region(e.c, &r), 0);
	assert_int_equal(cvmconv_remove_region(e.c, r.gpa), 0);
	/* gpa + size overflows */
	r = base;
	r.private_fd = r.shared_fd = -1;
	r.gpa = 0xfffffffffffff000ULL;
	r.size = 0x2000;
	assert_int_equal(cvmconv_add_region(e.c, &r), -EINVAL);
	r.size = 0x1000; /* ends exactly at 2^64: wraps to 0 */
	assert_int_equal(cvmconv_add_region(e.c, &r), -EINVAL);
	r.gpa = SZ_4K;
	r.size = UINT64_MAX & ~(SZ_4K - 1);
	assert_int_equal(cvmconv_add_region(e.c, &r), -EINVAL);
#undef BAD_REGION
	assert_int_equal(cvmconv_add_region(e.c, NULL), -EINVAL);

	/* a newer caller's larger struct: non-zero tail refused, zero accepted */
	memset(&big, 0, sizeof(big));
	big.r = base;
	big.r.sz = sizeof(big);
	big.tail = 5;
	assert_int_equal(cvmconv_add_region(e.c, &big.r), -E2BIG);
	/* nothing was registered by any of these */
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_2M), -ENOENT);
	assert_int_equal(cvmconv_is_private(e.c, 0xfffffffffffff000ULL), -ENOENT);
	big.tail = 0;
	assert_int_equal(cvmconv_add_region(e.c, &big.r), 0);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_2M), 0);
	assert_int_equal(attr_calls(&e), 0);
	cvmconv_destroy(e.c);
	close(fd);
	fake_kvm_fini(&e.f);
}

/* A guest cannot make private a page that has nowhere to live: a region
 * without a private backing refuses such requests (-KVM_EINVAL, nothing
 * changes, counted), unless it was registered CVMCONV_REGION_ATTRS_ONLY;
 * to shared, and the host's own conversions, still work. */
static void test_private_needs_backing(void **state)
{
	struct env e;
	struct cvmconv_region r;
	struct kvm_run run;
	uint64_t hc = 0, calls;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	/* no backing at all, and no ATTRS_ONLY */
	r = env_region_desc(0, 4 * SZ_2M, -1, -1, 0, -1);
	assert_int_equal(cvmconv_add_region(e.c, &r), 0);
	calls = attr_calls(&e);
	assert_int_equal(cvmconv_map_gpa_range(e.c, 0, 1, CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &hc), 0);
	assert_int_equal(hc, (uint64_t) - (int64_t)CVMCONV_KVM_EINVAL);
	assert_int_equal(attr_calls(&e), calls);
	assert_int_equal(cvmconv_is_private(e.c, 0), 0);
	assert_int_equal(stats(&e).rejected, 1);
	/* nor by a memory fault: refused, fatal for that vCPU (not an endless fault) */
	set_memory_fault(&run, MEMORY_EXIT_FLAG_PRIVATE, SZ_4K, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -EFAULT);
	assert_int_equal(cvmconv_is_private(e.c, SZ_4K), 0);
	/* the host may (it knows where it keeps private memory) */
	assert_int_equal(cvmconv_convert(e.c, 2 * SZ_4K, SZ_4K, true), 0);
	assert_int_equal(cvmconv_is_private(e.c, 2 * SZ_4K), 1);
	/* back to shared is always possible */
	assert_int_equal(cvmconv_map_gpa_range(e.c, 2 * SZ_4K, 1, 0, &hc), 0);
	assert_int_equal(hc, 0);
	assert_int_equal(cvmconv_is_private(e.c, 2 * SZ_4K), 0);
	/* a request spanning it and an attributes-only region is refused whole */
	r = env_region_desc(4 * SZ_2M, 4 * SZ_2M, -1, -1, CVMCONV_REGION_ATTRS_ONLY, -1);
	assert_int_equal(cvmconv_add_region(e.c, &r), 0);
	assert_int_equal(cvmconv_map_gpa_range(e.c, 4 * SZ_2M - SZ_4K, 2,
					       CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &hc),
			 0);
	assert_int_equal(hc, (uint64_t) - (int64_t)CVMCONV_KVM_EINVAL);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_2M), 0);
	/* the attributes-only region alone converts */
	assert_int_equal(
		cvmconv_map_gpa_range(e.c, 4 * SZ_2M, 1, CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &hc), 0);
	assert_int_equal(hc, 0);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_2M), 1);
	/* ATTRS_ONLY with a private backing makes no sense */
	{
		int fd = shmem_fd(SZ_2M);

		r = env_region_desc(16 * SZ_2M, SZ_2M, fd, -1, CVMCONV_REGION_ATTRS_ONLY, -1);
		assert_int_equal(cvmconv_add_region(e.c, &r), -EINVAL);
		close(fd);
	}
	cvmconv_destroy(e.c);
	fake_kvm_fini(&e.f);
}

static void test_add_region_overlap(void **state)
{
	struct env e;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 4 * SZ_1M, 4 * SZ_1M);
	assert_int_equal(env_add_region(&e, 4 * SZ_1M, 4 * SZ_1M, 0, -1, true), -EEXIST);
	assert_int_equal(env_add_region(&e, 6 * SZ_1M, 4 * SZ_1M, 0, -1, true), -EEXIST);
	assert_int_equal(env_add_region(&e, 2 * SZ_1M, 4 * SZ_1M, 0, -1, true), -EEXIST);
	assert_int_equal(env_add_region(&e, 5 * SZ_1M, SZ_4K, 0, -1, true), -EEXIST);
	assert_int_equal(env_add_region(&e, 0, 16 * SZ_1M, 0, -1, true), -EEXIST);
	assert_int_equal(env_add_region(&e, 8 * SZ_1M - SZ_4K, SZ_1M, 0, -1, true), -EEXIST);
	assert_int_equal(env_add_region(&e, 3 * SZ_1M, SZ_1M + SZ_4K, 0, -1, true), -EEXIST);
	/* adjacent on both sides */
	env_add(&e, 8 * SZ_1M, 4 * SZ_1M);
	env_add(&e, 3 * SZ_1M, SZ_1M);
	assert_int_equal(cvmconv_is_private(e.c, 3 * SZ_1M), 0);
	assert_int_equal(cvmconv_is_private(e.c, 8 * SZ_1M - SZ_4K), 0);
	assert_int_equal(cvmconv_is_private(e.c, 8 * SZ_1M), 0);
	assert_int_equal(cvmconv_is_private(e.c, 12 * SZ_1M - SZ_4K), 0);
	assert_int_equal(cvmconv_is_private(e.c, 12 * SZ_1M), -ENOENT);
	assert_int_equal(cvmconv_is_private(e.c, 3 * SZ_1M - SZ_4K), -ENOENT);
	assert_int_equal(attr_calls(&e), 0);
	env_fini(&e);
}

static void test_add_region_private_flag(void **state)
{
	struct env e;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 4 * SZ_1M);
	assert_int_equal(env_add_region(&e, 4 * SZ_1M, 4 * SZ_1M, CVMCONV_REGION_PRIVATE, -1, true),
			 0);
	assert_int_equal(attr_calls(&e), 1);
	assert_attr_call(last_attr_call(&e, 0), 4 * SZ_1M, 4 * SZ_1M, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M), 1);
	assert_int_equal(cvmconv_is_private(e.c, 6 * SZ_1M + 5 * SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e.c, 8 * SZ_1M - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M - SZ_4K), 0);
	env_check(&e);
	/* the private region converts like any other: one call back to shared */
	map_ok(&e, 4 * SZ_1M, 512, 0);
	assert_int_equal(attr_calls(&e), 2);
	assert_attr_call(last_attr_call(&e, 0), 4 * SZ_1M, SZ_2M, 0);
	env_check(&e);
	env_fini(&e);

	/* on a VM without private memory the attribute update fails and the
	 * region is not registered */
	memset(&e, 0, sizeof(e));
	fake_kvm_init(&e.f, FAKE_VM_DEFAULT);
	{
		struct cvmconv_config cfg = env_config(&e, CVMCONV_UNALIGNED_ALLOW, 0);

		assert_int_equal(cvmconv_create(&cfg, &e.c), 0);
	}
	assert_int_equal(env_add_region(&e, 0, 4 * SZ_1M, CVMCONV_REGION_PRIVATE, -1, true),
			 -EINVAL);
	assert_int_equal(cvmconv_is_private(e.c, 0), -ENOENT);
	assert_int_equal(e.f.rejected, 1);
	env_fini(&e);
}

static void test_remove_region(void **state)
{
	struct env e;
	uint64_t calls;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 4 * SZ_1M, 4 * SZ_1M);
	map_ok(&e, 4 * SZ_1M, 1, ENC);
	calls = attr_calls(&e);
	assert_int_equal(cvmconv_remove_region(e.c, 0), -ENOENT);
	assert_int_equal(cvmconv_remove_region(e.c, 4 * SZ_1M + SZ_4K), -ENOENT);
	assert_int_equal(cvmconv_remove_region(e.c, 8 * SZ_1M), -ENOENT);
	assert_int_equal(cvmconv_remove_region(e.c, UINT64_MAX), -ENOENT);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M), 1);
	assert_int_equal(cvmconv_remove_region(e.c, 4 * SZ_1M), 0);
	/* attributes are not touched by removal */
	assert_int_equal(attr_calls(&e), calls);
	assert_int_equal(fake_kvm_is_private(&e.f, 4 * SZ_1M), 1);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M), -ENOENT);
	assert_int_equal(cvmconv_remove_region(e.c, 4 * SZ_1M), -ENOENT);
	/* the range can be registered again, and a removed region refuses
	 * guest requests */
	{
		uint64_t hc;

		assert_int_equal(map(&e, 5 * SZ_1M, 1, ENC, &hc), 0);
		assert_int_equal(hc, HC_EINVAL);
	}
	assert_int_equal(env_add_region(&e, 4 * SZ_1M, 8 * SZ_1M, 0, -1, true), 0);
	/* keep only the live region in the consistency list: make the fake
	 * agree with the re-registered (shared) region first */
	assert_int_equal(cvmconv_convert(e.c, 4 * SZ_1M, 8 * SZ_1M, true), 0);
	assert_int_equal(cvmconv_convert(e.c, 4 * SZ_1M, 8 * SZ_1M, false), 0);
	close(e.reg[0].fd_private);
	close(e.reg[0].fd_shared);
	e.reg[0] = e.reg[1];
	e.nreg = 1;
	env_check(&e);
	env_fini(&e);
}

static void test_is_private_outside(void **state)
{
	struct env e;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 4 * SZ_1M, 4 * SZ_1M);
	assert_int_equal(cvmconv_is_private(e.c, 0), -ENOENT);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M - 1), -ENOENT);
	assert_int_equal(cvmconv_is_private(e.c, 8 * SZ_1M), -ENOENT);
	assert_int_equal(cvmconv_is_private(e.c, UINT64_MAX), -ENOENT);
	assert_int_equal(cvmconv_is_private(e.c, 1ULL << 52), -ENOENT);
	/* an unaligned address names the page that contains it */
	map_ok(&e, 4 * SZ_1M, 1, ENC);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M + 1), 1);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M + SZ_4K - 1), 1);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M + SZ_4K), 0);
	env_check(&e);
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_invalid),
		cmocka_unit_test(test_create_sz_compat),
		cmocka_unit_test(test_add_region_invalid),
		cmocka_unit_test(test_add_region_overlap),
		cmocka_unit_test(test_private_needs_backing),
		cmocka_unit_test(test_add_region_private_flag),
		cmocka_unit_test(test_remove_region),
		cmocka_unit_test(test_is_private_outside),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
