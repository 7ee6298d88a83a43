/* SPDX-License-Identifier: MIT */
/* The environment of the test_inplace_*.c suites (inplace_env.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "inplace_env.h"

static void capture_log(void *opaque, int level, const char *msg)
{
	struct env *e = opaque;

	(void)level;
	snprintf(e->log[e->nlog % 8], sizeof(e->log[0]), "%s", msg);
	e->nlog++;
}

bool logged(const struct env *e, const char *needle)
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

struct cvmconv_region inplace_region(uint64_t gpa, const struct fake_gmem *g, uint64_t mode)
{
	struct cvmconv_region r = { .sz = sizeof(r), .gpa = gpa, .size = RSIZE, .unaligned = -1 };

	fake_gmem_make_inplace(g, &r, mode);
	return r;
}

int inplace_setup(void **state)
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

int inplace_teardown(void **state)
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

struct cvmconv_stats stats(struct cvmconv *c)
{
	struct cvmconv_stats st = { .sz = sizeof(st) };

	assert_int_equal(cvmconv_get_stats(c, &st), 0);
	return st;
}

void add_listener(struct env *e)
{
	struct cvmconv_listener l = { sizeof(l), l_before, l_after, e, 0 };

	assert_true(cvmconv_add_listener(e->c, &l) >= 0);
}
