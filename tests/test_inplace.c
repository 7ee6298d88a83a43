/* SPDX-License-Identifier: MIT */
/*
 * In-place regions (CVMCONV_REGION_INPLACE): one guest_memfd holds both
 * sides and conversions are KVM_SET_MEMORY_ATTRIBUTES2 calls on it. No
 * kernel here has that ioctl (6.12 in the lab, 6.18 on the host), so the
 * attribute calls go to the strict fake guest_memfd (tests/fake_gmem.h);
 * everything else is real: memfds, the host's own guest_memfds
 * (GUEST_MEMFD_FLAG_MMAP | INIT_SHARED), fallocate, st_blocks, mincore().
 *
 * Layout: A = [BASE, BASE + RSIZE) two-backing (shmem shared side), B the
 * next RSIZE in place over g[0] (content mode PRESERVE), C the next in
 * place over g[1] (ZERO). A and B are adjacent: runs cross them.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/kvm.h>

#include "cvmconv.h"
#include "fake_gmem.h"
#include "fake_kvm.h"
#include "fixture.h"
#include "kvm_compat.h"

#define BASE (4 * SZ_1G)
#define RSIZE (4 * SZ_2M)
#define RPAGES (RSIZE / SZ_4K)
#define A_GPA BASE
#define B_GPA (BASE + RSIZE)
#define C_GPA (BASE + 2 * RSIZE)
#define HC(err) ((uint64_t) - (int64_t)(err))
#define ENC CVMCONV_MAP_GPA_RANGE_ENCRYPTED

struct env {
	struct fake_kvm fake;
	struct fake_gmem g[2];
	struct cvmconv *c;
	int a_shared, a_private;
	char log[8][512];
	unsigned nlog;
	unsigned befores, afters_ok, afters_cancel;
};

static void capture_log(void *opaque, int level, const char *msg)
{
	struct env *e = opaque;

	(void)level;
	snprintf(e->log[e->nlog % 8], sizeof(e->log[0]), "%s", msg);
	e->nlog++;
}

static bool logged(const struct env *e, const char *needle)
{
	for (unsigned i = 0; i < 8 && i < e->nlog; i++)
		if (strstr(e->log[i], needle))
			return true;
	return false;
}

static int l_before(void *opaque, uint64_t gpa, uint64_t size, bool to_private)
{
	struct env *e = opaque;

	(void)gpa;
	(void)size;
	(void)to_private;
	e->befores++;
	return 0;
}

static void l_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	struct env *e = opaque;

	(void)gpa;
	(void)size;
	(void)to_private;
	if (result)
		e->afters_cancel++;
	else
		e->afters_ok++;
}

static struct cvmconv_region inplace_region(uint64_t gpa, const struct fake_gmem *g, uint64_t mode)
{
	struct cvmconv_region r = { .sz = sizeof(r), .gpa = gpa, .size = RSIZE, .unaligned = -1 };

	fake_gmem_make_inplace(g, &r, mode);
	return r;
}

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	struct cvmconv_config cfg;
	struct cvmconv_region a = { .sz = sizeof(a), .gpa = A_GPA, .size = RSIZE, .unaligned = -1 };
	struct cvmconv_region b, c;

	if (!e)
		return -1;
	*state = e;
	fake_kvm_init(&e->fake, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&e->fake, CVMCONV_UNALIGNED_ALLOW);
	cfg.log = capture_log;
	cfg.log_opaque = e;
	if (cvmconv_create(&cfg, &e->c))
		return -1;
	for (int i = 0; i < 2; i++) {
		if (fake_gmem_init(&e->g[i], RSIZE,
				   CVMCONV_CONTENT_ZERO | CVMCONV_CONTENT_PRESERVE))
			return -1;
		fake_kvm_attach_gmem(&e->fake, &e->g[i]);
	}
	e->a_shared = cvmconv_memfd_create("ip-shared", RSIZE, SZ_4K);
	e->a_private = test_private_fd(RSIZE);
	a.shared_fd = e->a_shared;
	a.private_fd = e->a_private;
	b = inplace_region(B_GPA, &e->g[0], CVMCONV_CONTENT_PRESERVE);
	c = inplace_region(C_GPA, &e->g[1], CVMCONV_CONTENT_ZERO);
	if (e->a_shared < 0 || e->a_private < 0 || fake_kvm_add_region(&e->fake, e->c, &a) ||
	    fake_kvm_add_region(&e->fake, e->c, &b) || fake_kvm_add_region(&e->fake, e->c, &c))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;

	if (!e)
		return 0;
	cvmconv_destroy(e->c);
	for (int i = 0; i < 2; i++)
		fake_gmem_fini(&e->g[i]);
	fake_kvm_fini(&e->fake);
	if (e->a_shared >= 0)
		close(e->a_shared);
	if (e->a_private >= 0)
		close(e->a_private);
	free(e);
	return 0;
}

static struct cvmconv_stats stats(struct cvmconv *c)
{
	struct cvmconv_stats st = { .sz = sizeof(st) };

	assert_int_equal(cvmconv_get_stats(c, &st), 0);
	return st;
}

static void add_listener(struct env *e)
{
	struct cvmconv_listener l = { sizeof(l), l_before, l_after, e, 0 };

	assert_true(cvmconv_add_listener(e->c, &l) >= 0);
}

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

/* ---- conversions ---- */

static void test_inplace_converts_without_punching(void **state)
{
	struct env *e = *state;
	struct stat before, after;
	struct cvmconv_stats st;
	uint64_t hc, calls = e->g[0].calls;

	memset(e->g[0].map, 0x11, RSIZE); /* the guest wrote everything */
	assert_int_equal(fstat(e->g[0].fd, &before), 0);
	/* 2 MiB + 4 KiB from 4 KiB into B: unaligned, one run, one call */
	assert_int_equal(cvmconv_map_gpa_range(e->c, B_GPA + SZ_4K, 513, ENC, &hc), 0);
	assert_int_equal(hc, 0);
	assert_int_equal(e->g[0].calls - calls, 1);
	assert_int_equal(e->g[0].log[e->g[0].nlog - 1].offset, SZ_4K);
	assert_int_equal(e->g[0].log[e->g[0].nlog - 1].size, SZ_2M + SZ_4K);
	assert_int_equal(e->g[0].log[e->g[0].nlog - 1].flags, CVMCONV_CONTENT_PRESERVE);
	assert_int_equal(e->fake.calls[FAKE_CALL_ATTR], 0); /* no VM-wide update */
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
	assert_int_equal(cvmconv_is_private(e->c, B_GPA), 0);
	assert_int_equal(cvmconv_is_private(e->c, B_GPA + SZ_4K), 1);
	/* the host cannot touch what is private now */
	assert_int_equal(fake_gmem_host_access(&e->g[0], SZ_4K), -EFAULT);
	assert_int_equal(fake_gmem_host_access(&e->g[0], 0), 0);
	/* back to shared, and a memory fault converting part of it again */
	assert_int_equal(cvmconv_map_gpa_range(e->c, B_GPA + SZ_4K, 513, 0, &hc), 0);
	assert_int_equal(hc, 0);
	assert_int_equal(cvmconv_convert(e->c, B_GPA + SZ_2M, SZ_4K, true), 0);
	st = stats(e->c);
	/* nothing stale, nothing punched, nothing held twice */
	assert_int_equal(st.punches, 0);
	assert_int_equal(st.double_alloc_bytes, 0);
	assert_int_equal(st.double_alloc_peak_bytes, 0);
	assert_int_equal(st.mixed_extents, 1);
	assert_int_equal(st.to_private_bytes, SZ_2M + 2 * SZ_4K);
	assert_int_equal(st.to_shared_bytes, SZ_2M + SZ_4K);
	assert_int_equal(fstat(e->g[0].fd, &after), 0);
	assert_int_equal(after.st_blocks, before.st_blocks);
	/* PRESERVE: every byte the guest wrote is still there */
	for (uint64_t i = 0; i < RSIZE; i += 512)
		if (e->g[0].map[i] != 0x11)
			fail_msg("byte %llu changed", (unsigned long long)i);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
}

static void test_inplace_content_modes(void **state)
{
	struct env *e = *state;
	struct fake_gmem *z = &e->g[1];
	struct fake_gmem u;
	struct cvmconv_region r;
	uint64_t hc;

	/* ZERO (region C): to-private goes UNSPECIFIED, to-shared ZERO */
	memset(z->map, 0x22, 4 * SZ_4K);
	assert_int_equal(cvmconv_map_gpa_range(e->c, C_GPA, 4, ENC, &hc), 0);
	assert_int_equal(hc, 0);
	assert_int_equal(z->log[z->nlog - 1].flags, 0);
	assert_int_equal(cvmconv_map_gpa_range(e->c, C_GPA, 4, 0, &hc), 0);
	assert_int_equal(z->log[z->nlog - 1].flags, CVMCONV_CONTENT_ZERO);
	for (unsigned p = 0; p < 4; p++)
		assert_true(page_is_zero(z->map, p));
	/* UNSPECIFIED: contents not guaranteed (the fake poisons them) */
	assert_int_equal(fake_gmem_init(&u, RSIZE, 0), 0);
	fake_kvm_attach_gmem(&e->fake, &u);
	r = inplace_region(BASE + 10 * RSIZE, &u, CVMCONV_CONTENT_UNSPECIFIED);
	assert_int_equal(fake_kvm_add_region(&e->fake, e->c, &r), 0);
	memset(u.map, 0x33, SZ_4K);
	assert_int_equal(cvmconv_convert(e->c, BASE + 10 * RSIZE, SZ_4K, true), 0);
	assert_int_equal(u.log[u.nlog - 1].flags, 0);
	assert_int_equal(u.map[0], FAKE_GMEM_POISON);
	/* a mode the fake kernel does not enumerate: the update fails and is
	 * undone like any other (the default op would have refused the
	 * region at add: test_default_ops_gmem) */
	assert_int_equal(cvmconv_remove_region(e->c, BASE + 10 * RSIZE), 0);
	r.content_mode = CVMCONV_CONTENT_PRESERVE;
	assert_int_equal(cvmconv_add_region(e->c, &r), 0);
	assert_int_equal(cvmconv_map_gpa_range(e->c, BASE + 10 * RSIZE + SZ_4K, 1, ENC, &hc),
			 -EINVAL);
	assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
	assert_int_equal(cvmconv_is_private(e->c, BASE + 10 * RSIZE + SZ_4K), 0);
	assert_int_equal(cvmconv_remove_region(e->c, BASE + 10 * RSIZE), 0);
	fake_gmem_fini(&u);
}

/* A page with a host reference: listeners hear the range first, the
 * library tries CVMCONV_INPLACE_RETRIES more times, then gives up; nothing
 * changed, the VMM has -EAGAIN, a log line with the offset and a counter. */
static void test_inplace_busy_page(void **state)
{
	struct env *e = *state;
	struct cvmconv_stats st;
	uint64_t hc, calls;

	add_listener(e);
	assert_int_equal(fake_gmem_pin(&e->g[0], 5 * SZ_4K, SZ_4K, 0), 0);
	calls = e->g[0].calls;
	assert_int_equal(cvmconv_map_gpa_range(e->c, B_GPA, 512, ENC, &hc), -EAGAIN);
	assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
	/* the tries, then setting back what lies before the busy page (the
	 * posted code converted none of it: a no-op there; a later kernel
	 * may have converted it) */
	assert_int_equal(e->g[0].calls - calls, CVMCONV_INPLACE_RETRIES + 2);
	assert_int_equal(e->g[0].log[e->g[0].nlog - 1].attributes, 0);
	assert_int_equal(e->g[0].log[e->g[0].nlog - 1].size, 5 * SZ_4K);
	assert_int_equal(e->g[0].last_error_offset, 5 * SZ_4K);
	st = stats(e->c);
	assert_int_equal(st.gmem_busy_retries, CVMCONV_INPLACE_RETRIES);
	assert_int_equal(st.gmem_busy_failures, 1);
	assert_int_equal(st.to_private_bytes, 0);
	assert_int_equal(e->befores, 1);
	assert_int_equal(e->afters_cancel, 1);
	assert_int_equal(e->afters_ok, 0);
	assert_true(logged(e, "offset 0x5000"));
	assert_int_equal(cvmconv_is_private(e->c, B_GPA), 0);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
	/* a pin on a private page cannot exist (GUP of private memory fails) */
	assert_int_equal(cvmconv_convert(e->c, B_GPA + SZ_2M, SZ_4K, true), 0);
	assert_int_equal(fake_gmem_pin(&e->g[0], SZ_2M, SZ_4K, 0), -EFAULT);
	/* the pin goes: the same request goes through */
	fake_gmem_unpin(&e->g[0], 5 * SZ_4K, SZ_4K);
	assert_int_equal(cvmconv_map_gpa_range(e->c, B_GPA, 512, ENC, &hc), 0);
	assert_int_equal(hc, 0);
	assert_int_equal(e->afters_ok, 2);
	assert_int_equal(cvmconv_is_private(e->c, B_GPA + 5 * SZ_4K), 1);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
}

/* A reference that goes away after two refusals (a VMM thread finishing a
 * copy): the retries absorb it. */
static void test_inplace_busy_transient(void **state)
{
	struct env *e = *state;
	uint64_t hc;

	assert_int_equal(fake_gmem_pin(&e->g[0], 7 * SZ_4K, SZ_4K, 2), 0);
	assert_int_equal(cvmconv_map_gpa_range(e->c, B_GPA, 16, ENC, &hc), 0);
	assert_int_equal(hc, 0);
	assert_int_equal(stats(e->c).gmem_busy_retries, 2);
	assert_int_equal(stats(e->c).gmem_busy_failures, 0);
	assert_int_equal(cvmconv_is_private(e->c, B_GPA + 7 * SZ_4K), 1);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
}

/* A kernel that converts the pages before the busy one and then answers
 * EAGAIN (allowed by the uAPI text, not what the posted code does): on
 * the final failure the library sets that part back. */
static void test_inplace_busy_later_kernel(void **state)
{
	struct env *e = *state;
	struct fake_gmem *g = &e->g[0];
	uint64_t hc;

	g->convert_before_busy = true;
	memset(g->map, 0x44, RSIZE);
	assert_int_equal(fake_gmem_pin(g, 100 * SZ_4K, SZ_4K, 0), 0);
	assert_int_equal(cvmconv_map_gpa_range(e->c, B_GPA, 512, ENC, &hc), -EAGAIN);
	/* the fake converted pages 0..99 on the first try */
	assert_int_equal(g->log[g->nlog - 1].attributes, 0);
	assert_int_equal(g->log[g->nlog - 1].offset, 0);
	assert_int_equal(g->log[g->nlog - 1].size, 100 * SZ_4K);
	assert_int_equal(g->log[g->nlog - 1].flags, CVMCONV_CONTENT_PRESERVE);
	for (uint64_t p = 0; p < 512; p++)
		assert_int_equal(fake_gmem_is_private(g, p * SZ_4K), 0);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
	for (uint64_t i = 0; i < RSIZE; i += 4096)
		assert_int_equal(g->map[i], 0x44);
	fake_gmem_unpin(g, 100 * SZ_4K, SZ_4K);
	assert_int_equal(cvmconv_map_gpa_range(e->c, B_GPA, 512, ENC, &hc), 0);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
}

/* A batch over both kinds: the in-place part is busy, so what the batch
 * converted on the two-backing region is set back. */
static void test_inplace_batch_rolls_back(void **state)
{
	struct env *e = *state;
	struct cvmconv_range rg[2] = { { A_GPA, SZ_2M, 1, 0 }, { C_GPA, SZ_2M, 1, 0 } };
	uint64_t hc, vm_calls;

	add_listener(e);
	assert_int_equal(fake_gmem_pin(&e->g[1], SZ_2M - SZ_4K, SZ_4K, 0), 0);
	vm_calls = e->fake.calls[FAKE_CALL_ATTR];
	assert_int_equal(cvmconv_convert_batch(e->c, rg, 2, CVMCONV_BATCH_GUEST, &hc), -EAGAIN);
	assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
	/* A converted, then set back */
	assert_int_equal(e->fake.calls[FAKE_CALL_ATTR] - vm_calls, 2);
	assert_int_equal(cvmconv_is_private(e->c, A_GPA), 0);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
	assert_int_equal(stats(e->c).punches, 0);
	assert_int_equal(e->befores, 2);
	assert_int_equal(e->afters_cancel, 2);
	fake_gmem_unpin(&e->g[1], SZ_2M - SZ_4K, SZ_4K);
	assert_int_equal(cvmconv_convert_batch(e->c, rg, 2, CVMCONV_BATCH_GUEST, &hc), 0);
	assert_int_equal(hc, 0);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
	/* the two-backing side punched its stale shared pages, in-place none */
	assert_int_equal(stats(e->c).punches, 1);
}

/* One run across A (two-backing) and B (in place): one VM-wide update and
 * one guest_memfd update, each over its own part. */
static void test_inplace_run_across_kinds(void **state)
{
	struct env *e = *state;
	uint64_t hc, calls = e->g[0].calls;
	int err = EIO;

	assert_int_equal(cvmconv_map_gpa_range(e->c, B_GPA - SZ_2M, 1024, ENC, &hc), 0);
	assert_int_equal(e->fake.calls[FAKE_CALL_ATTR], 1);
	assert_int_equal(e->fake.log[e->fake.nlog - 1].gpa, B_GPA - SZ_2M);
	assert_int_equal(e->fake.log[e->fake.nlog - 1].size, SZ_2M);
	assert_int_equal(e->g[0].calls - calls, 1);
	assert_int_equal(e->g[0].log[e->g[0].nlog - 1].offset, 0);
	assert_int_equal(e->g[0].log[e->g[0].nlog - 1].size, SZ_2M);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
	/* the other way, with the VM-wide part failing after the in-place
	 * part... in guest order the two-backing part comes first: fail it */
	fake_kvm_fail_nth(&e->fake, FAKE_CALL_ATTR, 1, err);
	calls = e->g[0].calls;
	assert_int_equal(cvmconv_map_gpa_range(e->c, B_GPA - SZ_2M, 1024, 0, &hc), -EIO);
	assert_int_equal(e->g[0].calls, calls); /* never reached */
	fake_kvm_fail_clear(&e->fake);
	/* the in-place part failing sets the VM-wide part back */
	fake_kvm_fail_nth(&e->fake, FAKE_CALL_GMEM, 1, err);
	assert_int_equal(cvmconv_map_gpa_range(e->c, B_GPA - SZ_2M, 1024, 0, &hc), -EIO);
	assert_int_equal(e->fake.log[e->fake.nlog - 1].attributes, CVMCONV_ATTR_PRIVATE);
	fake_kvm_fail_clear(&e->fake);
	assert_int_equal(cvmconv_is_private(e->c, A_GPA + RSIZE - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e->c, B_GPA), 1);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
}

static int collect_run(void *opaque, uint64_t gpa, uint64_t size, bool is_private)
{
	uint64_t *runs = opaque;

	if (runs[0] < 8) {
		runs[1 + runs[0] * 3] = gpa;
		runs[2 + runs[0] * 3] = size;
		runs[3 + runs[0] * 3] = is_private;
	}
	runs[0]++;
	return 0;
}

/* Queries and replay see one guest memory, whatever holds it. */
static void test_inplace_runs_and_replay(void **state)
{
	struct env *e = *state;
	uint64_t runs[1 + 8 * 3] = { 0 };
	char json[2048];

	assert_int_equal(cvmconv_convert(e->c, B_GPA - SZ_4K, 2 * SZ_4K, true), 0);
	assert_int_equal(cvmconv_for_each_range(e->c, BASE, 3 * RSIZE, collect_run, runs), 0);
	assert_int_equal(runs[0], 3);
	assert_int_equal(runs[4], B_GPA - SZ_4K); /* one private run across both kinds */
	assert_int_equal(runs[5], 2 * SZ_4K);
	assert_int_equal(runs[6], 1);
	assert_true(cvmconv_stats_json(e->c, json, sizeof(json)) > 0);
	assert_non_null(strstr(json, "\"gmem_busy_retries\":0"));
	assert_non_null(strstr(json, "\"gmem_busy_failures\":0"));
	assert_non_null(strstr(json, "\"double_alloc_bytes\":0"));
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

/* ---- vCPU threads on both kinds ---- */

struct worker {
	struct env *e;
	unsigned seed;
	uint64_t done, busy;
};

static void *worker(void *arg)
{
	struct worker *w = arg;

	for (unsigned i = 0; i < 2000; i++) {
		uint64_t r = (uint64_t)rand_r(&w->seed);
		uint64_t gpa = BASE + ((r % (3 * RPAGES - 8)) << 12), hc;
		int ret = cvmconv_map_gpa_range(w->e->c, gpa, 1 + (r >> 20) % 8,
						(r >> 16) & 1 ? ENC : 0, &hc);

		if (ret == 0 && hc == 0)
			w->done++;
		else if (ret == -EAGAIN)
			w->busy++;
		else
			fail_msg("request failed: %d hc %llx", ret, (unsigned long long)hc);
	}
	return NULL;
}

static void test_inplace_threads(void **state)
{
	struct env *e = *state;
	struct worker w[4];
	pthread_t t[4];
	struct cvmconv_stats st;

	/* transient references on a few pages of both guest_memfds */
	for (unsigned p = 3; p < RPAGES; p += 97)
		for (int g = 0; g < 2; g++)
			assert_int_equal(fake_gmem_pin(&e->g[g], p * SZ_4K, SZ_4K, 1), 0);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ e, 77u + (unsigned)i, 0, 0 };
		assert_int_equal(pthread_create(&t[i], NULL, worker, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	st = stats(e->c);
	assert_int_equal(st.broken, 0);
	assert_int_equal(st.exits, 8000);
	assert_int_equal(w[0].done + w[1].done + w[2].done + w[3].done + st.gmem_busy_failures,
			 8000);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
	fprintf(stderr, "test_inplace_threads: 8000 requests, %llu busy retries, %llu failures\n",
		(unsigned long long)st.gmem_busy_retries,
		(unsigned long long)st.gmem_busy_failures);
}

/* ---- the host's real guest_memfd ---- */

static uint64_t resident_pages(const void *map, uint64_t size)
{
	unsigned char *vec = malloc(size / SZ_4K);
	uint64_t n = 0;

	assert_non_null(vec);
	assert_int_equal(mincore((void *)map, size, vec), 0);
	for (uint64_t i = 0; i < size / SZ_4K; i++)
		n += vec[i] & 1;
	free(vec);
	return n;
}

/* The host's /dev/kvm (6.18) creates guest_memfds with MMAP | INIT_SHARED:
 * one serves as the shared side of a two-backing region. The host writes
 * through its mapping; pages turning private are punched in it (the
 * kernel's fallocate on a guest_memfd), which mincore() shows; the others
 * keep their data. */
static void test_real_gmem_as_shared_side(void **state)
{
	struct env *e = *state;
	int gmem = test_private_fd(RSIZE), priv = cvmconv_memfd_create("ip-p", RSIZE, SZ_4K);
	struct cvmconv_region r;
	uint8_t *map;
	uint64_t hc;

	assert_true(gmem >= 0 && priv >= 0);
	if (!fd_is_guest_memfd(gmem)) {
		close(gmem);
		close(priv);
		FIXTURE_SKIP("the host's /dev/kvm gives no mmap-able guest_memfd here");
	}
	map = map_fd(gmem, RSIZE);
	assert_non_null(map);
	pattern_fill(map, 0, RPAGES, 0x9e);
	assert_int_equal(resident_pages(map, RSIZE), RPAGES);
	assert_int_equal(fd_allocated_bytes(gmem), RSIZE);
	r = (struct cvmconv_region){ .sz = sizeof(r),
				     .gpa = BASE + 12 * RSIZE,
				     .size = RSIZE,
				     .private_fd = priv,
				     .shared_fd = gmem,
				     .shared_hva = map,
				     .unaligned = -1 };
	assert_int_equal(fake_kvm_add_region(&e->fake, e->c, &r), 0);
	/* 4 KiB pages and a whole 2 MiB go private: punched in the guest_memfd */
	assert_int_equal(cvmconv_map_gpa_range(e->c, r.gpa + 3 * SZ_4K, 2, ENC, &hc), 0);
	assert_int_equal(cvmconv_map_gpa_range(e->c, r.gpa + SZ_2M, 512, ENC, &hc), 0);
	assert_int_equal(hc, 0);
	assert_int_equal(resident_pages(map, RSIZE), RPAGES - 514);
	assert_int_equal(fd_allocated_bytes(gmem), (RPAGES - 514) * SZ_4K);
	for (uint64_t p = 0; p < RPAGES; p++) {
		bool private_ = p == 3 || p == 4 || (p >= 512 && p < 1024);

		if (!private_ && !pattern_check(map, p, 0x9e))
			fail_msg("live shared page %llu lost its data", (unsigned long long)p);
	}
	/* back to shared: written again, counted again */
	assert_int_equal(cvmconv_map_gpa_range(e->c, r.gpa + SZ_2M, 512, 0, &hc), 0);
	pattern_fill(map, 512, 512, 0x9f);
	assert_int_equal(resident_pages(map, RSIZE), RPAGES - 2);
	assert_int_equal(stats(e->c).punch_failures, 0);
	assert_int_equal(cvmconv_remove_region(e->c, r.gpa), 0);
	munmap(map, RSIZE);
	close(gmem);
	close(priv);
}

/* The same real guest_memfd as an in-place region (attributes from the
 * strict fake, memory and accounting the kernel's): conversions never
 * punch it, the data stays (PRESERVE). */
static void test_real_gmem_inplace(void **state)
{
	struct env *e = *state;
	int gmem = test_private_fd(RSIZE);
	struct fake_gmem g;
	struct cvmconv_region r;
	uint64_t hc, resident;

	assert_true(gmem >= 0);
	if (!fd_is_guest_memfd(gmem)) {
		close(gmem);
		FIXTURE_SKIP("the host's /dev/kvm gives no mmap-able guest_memfd here");
	}
	assert_int_equal(fake_gmem_init_fd(&g, gmem, RSIZE, CVMCONV_CONTENT_PRESERVE), 0);
	fake_kvm_attach_gmem(&e->fake, &g);
	pattern_fill(g.map, 0, RPAGES, 0x71);
	resident = resident_pages(g.map, RSIZE);
	assert_int_equal(resident, RPAGES);
	r = inplace_region(BASE + 13 * RSIZE, &g, CVMCONV_CONTENT_PRESERVE);
	assert_int_equal(fake_kvm_add_region(&e->fake, e->c, &r), 0);
	for (unsigned k = 0; k < 64; k++) {
		uint64_t first = (k * 37) % (RPAGES - 8);

		assert_int_equal(
			cvmconv_map_gpa_range(e->c, r.gpa + first * SZ_4K, 8, k & 1 ? 0 : ENC, &hc),
			0);
		assert_int_equal(hc, 0);
	}
	assert_int_equal(resident_pages(g.map, RSIZE), resident);
	assert_int_equal(fd_allocated_bytes(gmem), RSIZE);
	assert_int_equal(stats(e->c).punches, 0);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, r.gpa, RSIZE), 0);
	for (uint64_t p = 0; p < RPAGES; p++)
		if (!pattern_check(g.map, p, 0x71))
			fail_msg("page %llu lost its data", (unsigned long long)p);
	assert_int_equal(cvmconv_remove_region(e->c, r.gpa), 0);
	fake_gmem_fini(&g);
	close(gmem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_inplace_region_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inplace_default_op_probe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inplace_old_caller, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inplace_private_at_add, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inplace_converts_without_punching, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_inplace_content_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inplace_busy_page, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inplace_busy_transient, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inplace_busy_later_kernel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inplace_batch_rolls_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inplace_run_across_kinds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inplace_runs_and_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inplace_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inplace_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_real_gmem_as_shared_side, setup, teardown),
		cmocka_unit_test_setup_teardown(test_real_gmem_inplace, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
