/* SPDX-License-Identifier: MIT */
/*
 * In-place regions (CVMCONV_REGION_INPLACE): registration, detection of the
 * kernel's KVM_SET_MEMORY_ATTRIBUTES2 by probing the fd, the ABI of old
 * callers, the initial private state, and hostile requests. The attribute
 * calls go to the strict fake guest_memfd (tests/fake_gmem.h): no kernel
 * here has the ioctl (6.12 in the lab, 6.18 on the host).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "inplace_env.h"
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "kvm_compat.h"

/* ---- registration ---- */

static void test_inplace_region_checks(void **state)
{
	struct env *e = *state;
	const uint64_t gpa = BASE + 16 * RSIZE;
	struct cvmconv_region r = inplace_region(gpa, &e->g[0], 0);
	int memfd = cvmconv_memfd_create("ip-x", RSIZE, SZ_4K);

	assert_true(memfd >= 0);
	r.private_fd = -1; /* the guest_memfd is the region */
	assert_int_equal(cvmconv_add_region(e->c, &r), -EINVAL);
	r = inplace_region(gpa, &e->g[0], 0);
	r.shared_fd = memfd; /* no second backing */
	assert_int_equal(cvmconv_add_region(e->c, &r), -EINVAL);
	r = inplace_region(gpa, &e->g[0], 0);
	r.flags |= CVMCONV_REGION_ATTRS_ONLY;
	assert_int_equal(cvmconv_add_region(e->c, &r), -EINVAL);
	r.flags = CVMCONV_REGION_INPLACE | CVMCONV_REGION_ALLOC_SHARED;
	assert_int_equal(cvmconv_add_region(e->c, &r), -EINVAL);
	/* a content mode is one mode, of the two the uAPI names */
	r = inplace_region(gpa, &e->g[0], CVMCONV_CONTENT_ZERO | CVMCONV_CONTENT_PRESERVE);
	assert_int_equal(cvmconv_add_region(e->c, &r), -EINVAL);
	r.content_mode = 1ULL << 2;
	assert_int_equal(cvmconv_add_region(e->c, &r), -EINVAL);
	/* a content mode on a two-backing region means nothing: refused */
	r = (struct cvmconv_region){ .sz = sizeof(r),
				     .gpa = gpa,
				     .size = RSIZE,
				     .private_fd = e->a_private,
				     .shared_fd = memfd,
				     .unaligned = -1,
				     .content_mode = CVMCONV_CONTENT_ZERO };
	assert_int_equal(cvmconv_add_region(e->c, &r), -EINVAL);
	/* a closed fd */
	r = inplace_region(gpa, &e->g[0], 0);
	r.private_fd = 1000;
	assert_int_equal(cvmconv_add_region(e->c, &r), -EBADF);
	/* nothing was registered */
	assert_int_equal(cvmconv_is_private(e->c, gpa), -ENOENT);
	assert_int_equal(stats(e->c).guest_bytes, 3 * RSIZE);
	/* an older caller's region (no content_mode) still works */
	r = inplace_region(gpa, &e->g[0], 0);
	r.sz = offsetof(struct cvmconv_region, content_mode);
	assert_int_equal(cvmconv_add_region(e->c, &r), 0);
	close(memfd);
}

/* The default op finds the ioctl by probing the fd itself: a memfd and the
 * host's own guest_memfd (Linux 6.18: no KVM_SET_MEMORY_ATTRIBUTES2) are
 * refused with -EOPNOTSUPP, whatever a capability number says. */
static void test_inplace_default_op_probe(void **state)
{
	struct env *e = *state;
	struct cvmconv_config cfg = { .sz = sizeof(cfg),
				      .vm_fd = -1,
				      .flags = CVMCONV_GMEM_ATTRIBUTES };
	struct cvmconv *c = NULL;
	int memfd = cvmconv_memfd_create("ip-probe", RSIZE, SZ_4K);
	int gmem = test_private_fd(RSIZE);
	struct kvm_memory_attributes2 zero;
	struct cvmconv_region r;
	int direct, want;

	assert_true(memfd >= 0 && gmem >= 0);
	/* per-guest_memfd attributes only: no VM probe, vm_fd may be -1 */
	assert_int_equal(cvmconv_create(&cfg, &c), 0);
	r = (struct cvmconv_region){ .sz = sizeof(r),
				     .gpa = BASE,
				     .size = RSIZE,
				     .private_fd = memfd,
				     .shared_fd = -1,
				     .flags = CVMCONV_REGION_INPLACE,
				     .unaligned = -1 };
	assert_int_equal(cvmconv_add_region(c, &r), -EOPNOTSUPP);
	/* what the kernel says of the ioctl on the real guest_memfd */
	memset(&zero, 0, sizeof(zero));
	direct = ioctl(gmem, KVM_SET_MEMORY_ATTRIBUTES2, &zero) == 0 ? 0 : errno;
	want = direct == 0 || direct == EINVAL ? 0 : -EOPNOTSUPP;
	r.private_fd = gmem;
	assert_int_equal(cvmconv_add_region(c, &r), want);
	fprintf(stderr,
		"test_inplace_default_op_probe: %s: KVM_SET_MEMORY_ATTRIBUTES2 answers %s: "
		"in-place region %s\n",
		fd_is_guest_memfd(gmem) ? "host guest_memfd" : "stand-in memfd",
		direct ? strerror(direct) : "0", want ? "refused (-EOPNOTSUPP)" : "accepted");
	/* two-backing regions need per-VM attributes, which this context has not */
	r = (struct cvmconv_region){ .sz = sizeof(r),
				     .gpa = BASE + 4 * RSIZE,
				     .size = RSIZE,
				     .private_fd = memfd,
				     .shared_fd = -1,
				     .unaligned = -1 };
	assert_int_equal(cvmconv_add_region(c, &r), -EOPNOTSUPP);
	cvmconv_destroy(c);
	/* unknown flags and an out-of-range retry bound are refused */
	cfg.flags = CVMCONV_GMEM_ATTRIBUTES << 1;
	assert_int_equal(cvmconv_create(&cfg, &c), -EINVAL);
	cfg.flags = CVMCONV_GMEM_ATTRIBUTES;
	cfg.inplace_retries = CVMCONV_INPLACE_RETRIES_MAX + 1;
	assert_int_equal(cvmconv_create(&cfg, &c), -EINVAL);
	close(memfd);
	close(gmem);
	(void)e;
}

/* A caller built before set_gmem_attributes existed (config ends at flags)
 * has an ops struct without it: the library must not read it, so the
 * default op is used, and probes. */
static void test_inplace_old_caller(void **state)
{
	struct env *e = *state;
	struct {
		struct cvmconv_ops ops;
	} wrap = { fake_kvm_ops };
	struct cvmconv_config cfg = fake_kvm_config(&e->fake, CVMCONV_UNALIGNED_ALLOW);
	struct cvmconv *c = NULL;
	struct cvmconv_region r = inplace_region(BASE, &e->g[0], 0);

	cfg.ops = &wrap.ops;
	cfg.sz = offsetof(struct cvmconv_config, inplace_retries);
	assert_int_equal(cvmconv_create(&cfg, &c), 0);
	/* the fake's memfd has no such ioctl */
	assert_int_equal(cvmconv_add_region(c, &r), -EOPNOTSUPP);
	cvmconv_destroy(c);
	cfg.sz = sizeof(cfg);
	assert_int_equal(cvmconv_create(&cfg, &c), 0);
	assert_int_equal(cvmconv_add_region(c, &r), 0);
	cvmconv_destroy(c);
}

static void test_inplace_private_at_add(void **state)
{
	struct env *e = *state;
	struct fake_gmem g;
	struct cvmconv_region r;
	uint64_t calls;

	assert_int_equal(fake_gmem_init(&g, RSIZE, CVMCONV_CONTENT_ZERO), 0);
	fake_kvm_attach_gmem(&e->fake, &g);
	r = inplace_region(BASE + 8 * RSIZE, &g, CVMCONV_CONTENT_ZERO);
	r.flags |= CVMCONV_REGION_PRIVATE;
	calls = g.calls;
	assert_int_equal(fake_kvm_add_region(&e->fake, e->c, &r), 0);
	/* one call over the whole file range; ZERO is not for to-private */
	assert_int_equal(g.calls - calls, 1);
	assert_int_equal(g.log[g.nlog - 1].size, RSIZE);
	assert_int_equal(g.log[g.nlog - 1].attributes, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(g.log[g.nlog - 1].flags, 0);
	assert_int_equal(fake_gmem_is_private(&g, RSIZE - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e->c, BASE + 8 * RSIZE), 1);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE + 8 * RSIZE, RSIZE), 0);
	/* a mode the fake kernel does not enumerate fails the update */
	assert_int_equal(cvmconv_remove_region(e->c, BASE + 8 * RSIZE), 0);
	r.content_mode = CVMCONV_CONTENT_PRESERVE;
	r.gpa = BASE + 9 * RSIZE;
	assert_int_equal(cvmconv_add_region(e->c, &r), -EINVAL);
	assert_int_equal(cvmconv_is_private(e->c, BASE + 9 * RSIZE), -ENOENT);
	assert_int_equal(cvmconv_remove_region(e->c, BASE + 8 * RSIZE), -ENOENT);
	fake_gmem_fini(&g);
}

/* Hostile requests on in-place memory: refused, no kernel call. */
static void test_inplace_hostile(void **state)
{
	struct env *e = *state;
	const struct {
		uint64_t gpa, npages, attrs;
	} bad[] = {
		{ B_GPA + 1, 1, ENC },				      /* misaligned */
		{ B_GPA, 0, ENC },				      /* empty */
		{ B_GPA, UINT64_MAX / 4096, ENC },		      /* wraps */
		{ B_GPA, 1, ENC | (1ULL << 5) },		      /* reserved bit */
		{ C_GPA + RSIZE - SZ_4K, 2, ENC },		      /* past the last region */
		{ B_GPA, 1, ENC | CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M }, /* hint lies */
	};
	uint64_t hc, calls = e->g[0].calls + e->g[1].calls;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
			cvmconv_map_gpa_range(e->c, bad[i].gpa, bad[i].npages, bad[i].attrs, &hc),
			0);
		assert_int_equal(hc, HC(CVMCONV_KVM_EINVAL));
	}
	assert_int_equal(e->g[0].calls + e->g[1].calls, calls);
	assert_int_equal(stats(e->c).rejected, sizeof(bad) / sizeof(bad[0]));
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_inplace_region_checks, inplace_setup,
						inplace_teardown),
		cmocka_unit_test_setup_teardown(test_inplace_default_op_probe, inplace_setup,
						inplace_teardown),
		cmocka_unit_test_setup_teardown(test_inplace_old_caller, inplace_setup,
						inplace_teardown),
		cmocka_unit_test_setup_teardown(test_inplace_private_at_add, inplace_setup,
						inplace_teardown),
		cmocka_unit_test_setup_teardown(test_inplace_hostile, inplace_setup,
						inplace_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
