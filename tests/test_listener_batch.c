/* SPDX-License-Identifier: MIT */
/*
 * Listeners, batch conversion and the JSON stats, through the public API with
 * the strict fake KVM and real shmem memfds.
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
#include <linux/kvm.h>

#include "cvmconv.h"
#include "fake_kvm.h"
#include "fixture.h"
#include "kvm_compat.h"

#define BASE (4 * SZ_1G)
#define RSIZE (8 * SZ_2M)

struct env {
	struct fake_kvm fake;
	struct cvmconv *c;
	int shared_fd[2], private_fd[2];
};

/* Two adjacent regions [BASE, BASE+RSIZE) and [BASE+RSIZE, BASE+2*RSIZE). */
static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	struct cvmconv_config cfg;

	if (!e)
		return -1;
	fake_kvm_init(&e->fake, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&e->fake, CVMCONV_UNALIGNED_ALLOW);
	if (cvmconv_create(&cfg, &e->c))
		return -1;
	for (int i = 0; i < 2; i++) {
		e->shared_fd[i] = cvmconv_memfd_create("lb-shared", RSIZE, SZ_4K);
		e->private_fd[i] = test_private_fd(RSIZE);
		struct cvmconv_region r = {
			.sz = sizeof(r),
			.gpa = BASE + i * RSIZE,
			.size = RSIZE,
			.private_fd = e->private_fd[i],
			.shared_fd = e->shared_fd[i],
			.unaligned = -1,
		};
		if (e->shared_fd[i] < 0 || e->private_fd[i] < 0 ||
		    fake_kvm_add_region(&e->fake, e->c, &r))
			return -1;
	}
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;

	/* the library's view and the fake kernel's agree after every test */
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 2 * RSIZE), 0);
	cvmconv_destroy(e->c);
	for (int i = 0; i < 2; i++) {
		close(e->shared_fd[i]);
		close(e->private_fd[i]);
	}
	fake_kvm_fini(&e->fake);
	free(e);
	return 0;
}

/* ---- listeners ---- */

struct event {
	char kind; /* 'b' before, 'a' after */
	uint64_t gpa, size;
	bool to_private;
	int result;
	int attr_calls; /* fake attribute calls seen when the event fired */
};

struct recorder {
	struct fake_kvm *fake;
	struct event ev[64];
	int n;
	int veto_at; /* veto the before() with this index (0-based), -1 never */
	int befores;
};

static int rec_before(void *opaque, uint64_t gpa, uint64_t size, bool to_private)
{
	struct recorder *r = opaque;

	r->ev[r->n++] = (struct event){ 'b',	    gpa, size,
					to_private, 0,	 (int)r->fake->calls[FAKE_CALL_ATTR] };
	return r->befores++ == r->veto_at ? -1 : 0;
}

static void rec_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	struct recorder *r = opaque;

	r->ev[r->n++] = (struct event){ 'a',	    gpa,    size,
					to_private, result, (int)r->fake->calls[FAKE_CALL_ATTR] };
}

static int add_recorder(struct env *e, struct recorder *r, int veto_at)
{
	struct cvmconv_listener l = { sizeof(l), rec_before, rec_after, r, 0 };

	memset(r, 0, sizeof(*r));
	r->fake = &e->fake;
	r->veto_at = veto_at;
	return cvmconv_add_listener(e->c, &l);
}

/* before() fires ahead of the attribute update, after() once it is done,
 * once per changing run, with the run's exact range. */
static void test_listener_order_and_runs(void **state)
{
	struct env *e = *state;
	struct recorder r;
	uint64_t ret;

	assert_true(add_recorder(e, &r, -1) >= 0);
	/* make a hole so the next request has two runs */
	assert_int_equal(cvmconv_convert(e->c, BASE + SZ_2M, SZ_4K, true), 0);
	assert_int_equal(r.n, 2);
	r.n = 0;
	uint64_t calls0 = e->fake.calls[FAKE_CALL_ATTR];
	assert_int_equal(
		cvmconv_map_gpa_range(e->c, BASE, 1024, CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &ret), 0);
	assert_int_equal(ret, 0);
	assert_int_equal(e->fake.calls[FAKE_CALL_ATTR] - calls0, 2);
	assert_int_equal(r.n, 4);
	/* both befores precede the first update, both afters follow the last */
	assert_int_equal(r.ev[0].kind, 'b');
	assert_int_equal(r.ev[0].gpa, BASE);
	assert_int_equal(r.ev[0].size, SZ_2M);
	assert_int_equal(r.ev[0].attr_calls, (int)calls0);
	assert_int_equal(r.ev[1].kind, 'b');
	assert_int_equal(r.ev[1].gpa, BASE + SZ_2M + SZ_4K);
	assert_int_equal(r.ev[1].size, 1024 * SZ_4K - SZ_2M - SZ_4K);
	assert_int_equal(r.ev[1].attr_calls, (int)calls0);
	for (int i = 2; i < 4; i++) {
		assert_int_equal(r.ev[i].kind, 'a');
		assert_int_equal(r.ev[i].result, 0);
		assert_true(r.ev[i].to_private);
		assert_int_equal(r.ev[i].attr_calls, (int)calls0 + 2);
	}
	assert_int_equal(r.ev[2].gpa, BASE);
	assert_int_equal(r.ev[3].gpa, BASE + SZ_2M + SZ_4K);
}

/* A veto rejects the whole request cleanly: no attribute call, nothing
 * changes, the guest gets -KVM_EPERM, and every before() that ran hears
 * after(-ECANCELED). */
static void test_listener_veto(void **state)
{
	struct env *e = *state;
	struct recorder r1, r2;
	struct cvmconv_stats st = { .sz = sizeof(st) };
	uint64_t ret;

	assert_int_equal(cvmconv_convert(e->c, BASE + SZ_2M, SZ_4K, true), 0);
	assert_true(add_recorder(e, &r1, -1) >= 0);
	assert_true(add_recorder(e, &r2, 1) >= 0); /* vetoes the second run */
	uint64_t calls0 = e->fake.calls[FAKE_CALL_ATTR];
	assert_int_equal(
		cvmconv_map_gpa_range(e->c, BASE, 1024, CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &ret), 0);
	assert_int_equal(ret, (uint64_t) - (int64_t)CVMCONV_KVM_EPERM);
	assert_int_equal(e->fake.calls[FAKE_CALL_ATTR], calls0);
	assert_int_equal(cvmconv_is_private(e->c, BASE), 0);
	assert_int_equal(cvmconv_is_private(e->c, BASE + SZ_2M), 1);
	assert_int_equal(cvmconv_get_stats(e->c, &st), 0);
	assert_int_equal(st.rejected, 1);
	/* r1 saw before(run0), before(run1) and both were cancelled */
	int b1 = 0, a1 = 0;
	for (int i = 0; i < r1.n; i++) {
		if (r1.ev[i].kind == 'b')
			b1++;
		else {
			a1++;
			assert_int_equal(r1.ev[i].result, -ECANCELED);
		}
	}
	assert_int_equal(b1, 2);
	assert_int_equal(a1, 2);
	/* r2 vetoed run1: it heard after(-ECANCELED) for run0 only */
	int b2 = 0, a2 = 0;
	for (int i = 0; i < r2.n; i++) {
		if (r2.ev[i].kind == 'b')
			b2++;
		else {
			a2++;
			assert_int_equal(r2.ev[i].gpa, BASE);
		}
	}
	assert_int_equal(b2, 2);
	assert_int_equal(a2, 1);
	/* host conversions are vetoed with -EPERM */
	r2.befores = 0;
	r2.veto_at = 0;
	assert_int_equal(cvmconv_convert(e->c, BASE, SZ_2M, true), -EPERM);
	assert_int_equal(cvmconv_is_private(e->c, BASE), 0);
	/* and so is a memory fault: the VMM's own no, not a malformed fault
	 * (-EFAULT); nothing changed, no attribute update */
	struct kvm_run run;
	struct cvmconv_kvm_memory_fault mf = { KVM_MEMORY_EXIT_FLAG_PRIVATE, BASE, SZ_4K };

	memset(&run, 0, sizeof(run));
	run.exit_reason = KVM_EXIT_MEMORY_FAULT;
	memcpy((char *)&run + 32, &mf, sizeof(mf));
	r2.befores = 0;
	r2.veto_at = 0;
	calls0 = e->fake.calls[FAKE_CALL_ATTR];
	assert_int_equal(cvmconv_handle_exit(e->c, &run), -EPERM);
	assert_int_equal(e->fake.calls[FAKE_CALL_ATTR], calls0);
	assert_int_equal(cvmconv_is_private(e->c, BASE), 0);
}

/* A failed attribute update cancels every run that heard before(). */
static void test_listener_cancel_on_failure(void **state)
{
	struct env *e = *state;
	struct recorder r;
	uint64_t ret;

	assert_true(add_recorder(e, &r, -1) >= 0);
	fake_kvm_fail_nth(&e->fake, FAKE_CALL_ATTR, 1, ENOMEM);
	assert_int_equal(
		cvmconv_map_gpa_range(e->c, BASE, 512, CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &ret),
		-ENOMEM);
	fake_kvm_fail_clear(&e->fake);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.ev[1].kind, 'a');
	assert_int_equal(r.ev[1].result, -ECANCELED);
	assert_int_equal(cvmconv_is_private(e->c, BASE), 0);
}

static void test_listener_registry(void **state)
{
	struct env *e = *state;
	struct recorder r[CVMCONV_MAX_LISTENERS + 1];
	int ids[CVMCONV_MAX_LISTENERS];
	struct cvmconv_listener empty = { sizeof(empty), NULL, NULL, NULL, 0 };

	assert_int_equal(cvmconv_add_listener(e->c, &empty), -EINVAL);
	for (int i = 0; i < CVMCONV_MAX_LISTENERS; i++)
		assert_true((ids[i] = add_recorder(e, &r[i], -1)) >= 0);
	assert_int_equal(add_recorder(e, &r[CVMCONV_MAX_LISTENERS], -1), -ENOSPC);
	assert_int_equal(cvmconv_remove_listener(e->c, ids[3]), 0);
	assert_int_equal(cvmconv_remove_listener(e->c, ids[3]), -ENOENT);
	assert_int_equal(cvmconv_convert(e->c, BASE, SZ_4K, true), 0);
	assert_int_equal(r[3].n, 0); /* removed: hears nothing */
	assert_int_equal(r[4].n, 2);
}

static void tail_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	(void)opaque;
	(void)gpa;
	(void)size;
	(void)to_private;
	(void)result;
}

/* A newer caller's larger struct: a non-zero tail is refused with -E2BIG (as
 * for regions), a zero one accepted; an older caller's shorter struct is
 * read only as far as its sz says. */
static void test_listener_sz(void **state)
{
	struct env *e = *state;
	struct {
		struct cvmconv_listener l;
		uint64_t tail[2];
	} big;
	int id;

	memset(&big, 0, sizeof(big));
	big.l.sz = sizeof(big);
	big.l.after = tail_after;
	big.tail[1] = 1;
	assert_int_equal(cvmconv_add_listener(e->c, &big.l), -E2BIG);
	big.tail[1] = 0;
	id = cvmconv_add_listener(e->c, &big.l);
	assert_true(id >= 0);
	assert_int_equal(cvmconv_remove_listener(e->c, id), 0);
	big.l.sz = offsetof(struct cvmconv_listener, opaque);
	assert_int_equal(cvmconv_add_listener(e->c, &big.l), -EINVAL);
}

/* ---- batch ---- */

/* to_private is 0 or 1 (cvmconv.h): any other value refuses the whole list,
 * before any kernel call, for a guest list (-KVM_EINVAL) and a host list
 * (-EINVAL); the valid entry beside it does not convert either. */
static void test_batch_to_private_values(void **state)
{
	struct env *e = *state;
	static const uint32_t bad[] = { 2, 3, 0x80000000u, UINT32_MAX };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct cvmconv_range list[] = {
			{ BASE + SZ_2M, SZ_4K, 1, 0 },
			{ BASE, SZ_4K, bad[i], 0 },
		};
		uint64_t calls0 = e->fake.calls[FAKE_CALL_ATTR], ret = 0;

		assert_int_equal(cvmconv_convert_batch(e->c, list, 2, CVMCONV_BATCH_GUEST, &ret),
				 0);
		assert_int_equal(ret, (uint64_t) - (int64_t)CVMCONV_KVM_EINVAL);
		assert_int_equal(cvmconv_convert_batch(e->c, list, 2, 0, NULL), -EINVAL);
		assert_int_equal(e->fake.calls[FAKE_CALL_ATTR], calls0);
		assert_int_equal(cvmconv_is_private(e->c, BASE), 0);
		assert_int_equal(cvmconv_is_private(e->c, BASE + SZ_2M), 0);
	}
}

/* Adjacent same-direction entries, given out of order and across the two
 * regions, become one attribute update; atomic on failure. */
static void test_batch_merges_runs(void **state)
{
	struct env *e = *state;
	struct cvmconv_range list[] = {
		{ BASE + RSIZE, SZ_2M, 1, 0 },	       /* region 2 */
		{ BASE + RSIZE - SZ_2M, SZ_2M, 1, 0 }, /* end of region 1 */
		{ BASE + RSIZE + SZ_2M, SZ_4K, 1, 0 }, /* continues */
		{ BASE, SZ_4K, 0, 0 },		       /* already shared: no call */
	};
	uint64_t ret = 1;
	uint64_t calls0 = e->fake.calls[FAKE_CALL_ATTR];

	assert_int_equal(cvmconv_convert_batch(e->c, list, 4, CVMCONV_BATCH_GUEST, &ret), 0);
	assert_int_equal(ret, 0);
	assert_int_equal(e->fake.calls[FAKE_CALL_ATTR] - calls0, 1);
	struct fake_attr_call *last = &e->fake.log[(e->fake.nlog - 1) % 64];
	assert_int_equal(last->gpa, BASE + RSIZE - SZ_2M);
	assert_int_equal(last->size, 2 * SZ_2M + SZ_4K);
	assert_int_equal(cvmconv_is_private(e->c, BASE + RSIZE + SZ_2M), 1);
	assert_int_equal(cvmconv_is_private(e->c, BASE + RSIZE + SZ_2M + SZ_4K), 0);
	struct cvmconv_stats st = { .sz = sizeof(st) };
	assert_int_equal(cvmconv_get_stats(e->c, &st), 0);
	assert_int_equal(st.exits, 1);
}

static void test_batch_refusals(void **state)
{
	struct env *e = *state;
	struct cvmconv_range overlap[] = { { BASE, 2 * SZ_4K, 1, 0 },
					   { BASE + SZ_4K, SZ_4K, 0, 0 } };
	struct cvmconv_range outside[] = { { BASE, SZ_4K, 1, 0 },
					   { BASE + 2 * RSIZE, SZ_4K, 1, 0 } };
	struct cvmconv_range reserved[] = { { BASE, SZ_4K, 1, 7 } };
	struct cvmconv_range two[] = { { BASE, SZ_4K, 1, 0 }, { BASE + 2 * SZ_4K, SZ_4K, 1, 0 } };
	uint64_t ret, calls0 = e->fake.calls[FAKE_CALL_ATTR];
	struct cvmconv_stats st = { .sz = sizeof(st) };

	assert_int_equal(cvmconv_convert_batch(e->c, overlap, 2, CVMCONV_BATCH_GUEST, &ret), 0);
	assert_int_equal(ret, (uint64_t) - (int64_t)CVMCONV_KVM_EINVAL);
	assert_int_equal(cvmconv_convert_batch(e->c, outside, 2, CVMCONV_BATCH_GUEST, &ret), 0);
	assert_int_equal(ret, (uint64_t) - (int64_t)CVMCONV_KVM_EINVAL);
	assert_int_equal(cvmconv_convert_batch(e->c, reserved, 1, CVMCONV_BATCH_GUEST, &ret), 0);
	assert_int_equal(ret, (uint64_t) - (int64_t)CVMCONV_KVM_EINVAL);
	assert_int_equal(cvmconv_convert_batch(e->c, overlap, 2, 0, NULL), -EINVAL);
	assert_int_equal(cvmconv_convert_batch(e->c, overlap, 2, 0x80, NULL), -EINVAL);
	assert_int_equal(cvmconv_convert_batch(e->c, overlap, CVMCONV_BATCH_MAX + 1, 0, NULL),
			 -E2BIG);
	assert_int_equal(e->fake.calls[FAKE_CALL_ATTR], calls0);
	assert_int_equal(cvmconv_is_private(e->c, BASE), 0);
	assert_int_equal(cvmconv_get_stats(e->c, &st), 0);
	assert_int_equal(st.exits, 3);
	assert_int_equal(st.rejected, 3);
	/* atomic: the second run's update fails -> the first is rolled back */
	fake_kvm_fail_nth(&e->fake, FAKE_CALL_ATTR, 2, EIO);
	assert_int_equal(cvmconv_convert_batch(e->c, two, 2, CVMCONV_BATCH_GUEST, &ret), -EIO);
	fake_kvm_fail_clear(&e->fake);
	assert_int_equal(ret, (uint64_t) - (int64_t)CVMCONV_KVM_EFAULT);
	assert_int_equal(cvmconv_is_private(e->c, BASE), 0);
	assert_int_equal(fake_kvm_is_private(&e->fake, BASE), 0);
	/* an empty host list is a no-op */
	assert_int_equal(cvmconv_convert_batch(e->c, NULL, 0, 0, NULL), 0);
}

/* Many separate runs in one region in one batch: every entry needs its own
 * tracker nodes (this crashed once: the reservation was per entry, not per
 * region). Every entry is checked on its own, before merging. */
static void test_batch_many_runs_and_bad_entries(void **state)
{
	struct env *e = *state;
	struct cvmconv_range list[64];
	struct cvmconv_range empty[] = { { BASE, 0, 1, 0 }, { BASE, SZ_4K, 1, 0 } };
	struct cvmconv_range halves[] = { { BASE, SZ_4K / 2, 1, 0 },
					  { BASE + SZ_4K / 2, SZ_4K / 2, 1, 0 } };
	uint64_t ret = 1;

	for (int i = 0; i < 64; i++)
		list[i] =
			(struct cvmconv_range){ BASE + (uint64_t)(2 * i + 1) * SZ_4K, SZ_4K, 1, 0 };
	assert_int_equal(cvmconv_convert_batch(e->c, list, 64, CVMCONV_BATCH_GUEST, &ret), 0);
	assert_int_equal(ret, 0);
	for (int i = 0; i < 130; i++)
		assert_int_equal(cvmconv_is_private(e->c, BASE + (uint64_t)i * SZ_4K),
				 i % 2 == 1 && i < 128);
	assert_int_equal(cvmconv_convert_batch(e->c, empty, 2, CVMCONV_BATCH_GUEST, &ret), 0);
	assert_int_equal(ret, (uint64_t) - (int64_t)CVMCONV_KVM_EINVAL);
	assert_int_equal(cvmconv_convert_batch(e->c, halves, 2, CVMCONV_BATCH_GUEST, &ret), 0);
	assert_int_equal(ret, (uint64_t) - (int64_t)CVMCONV_KVM_EINVAL);
	assert_int_equal(cvmconv_is_private(e->c, BASE), 0);
}

/* ---- JSON ---- */

static void test_stats_json(void **state)
{
	struct env *e = *state;
	char buf[2048], small[16];
	struct cvmconv_stats st = { .sz = sizeof(st) };

	assert_int_equal(cvmconv_convert(e->c, BASE, SZ_4K, true), 0);
	assert_int_equal(cvmconv_get_stats(e->c, &st), 0);
	int n = cvmconv_stats_json(e->c, buf, sizeof(buf));
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	assert_int_equal(strlen(buf), (size_t)n);
	assert_true(buf[0] == '{' && buf[n - 1] == '}');
	char want[128];
	snprintf(want, sizeof(want), "\"to_private_bytes\":%llu",
		 (unsigned long long)st.to_private_bytes);
	assert_non_null(strstr(buf, want));
	snprintf(want, sizeof(want), "\"extents\":%llu,", (unsigned long long)st.extents);
	assert_non_null(strstr(buf, want));
	assert_non_null(strstr(buf, "\"mixed_extents\":1,"));
	/* truncation: snprintf semantics, NUL terminated, full length returned */
	assert_int_equal(cvmconv_stats_json(e->c, small, sizeof(small)), n);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_int_equal(cvmconv_stats_json(e->c, NULL, 0), n);
	assert_int_equal(cvmconv_stats_json(e->c, NULL, 5), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_listener_order_and_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listener_veto, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listener_cancel_on_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listener_registry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listener_sz, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_to_private_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_merges_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_many_runs_and_bad_entries, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stats_json, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
