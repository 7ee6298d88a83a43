/* SPDX-License-Identifier: MIT */
/* Fault injection: attribute updates that fail, forward and in the
 * rollback, at add_region(PRIVATE), and the in-place
 * KVM_SET_MEMORY_ATTRIBUTES2 forward and rollback. */
#include "fi.h"

/* ---- attribute update: forward failure ---- */

/* A request over both regions with three runs to change (two pages made
 * private beforehand split it); the update of run @k (0-based) fails. */
static void attr_forward_case(enum entry e, int err, unsigned k)
{
	struct world *w = world_get();
	const uint64_t gpa = BASE + SZ_2M, size = RSIZE; /* spans R0 and R1 */
	struct cvmconv_stats before, after;
	uint64_t hc, calls;
	int ret;

	world_ctx(w, false);
	world_region(w, B_SHMEM);
	world_region(w, B_SHMEM);
	assert_int_equal(cvmconv_convert(w->c, BASE + SZ_2M + 100 * SZ_4K, SZ_4K, true), 0);
	assert_int_equal(cvmconv_convert(w->c, BASE + RSIZE + 7 * SZ_4K, SZ_4K, true), 0);
	model_set(w, BASE + SZ_2M + 100 * SZ_4K, SZ_4K, true);
	model_set(w, BASE + RSIZE + 7 * SZ_4K, SZ_4K, true);
	write_converted(w, BASE + SZ_2M + 100 * SZ_4K, SZ_4K);
	write_converted(w, BASE + RSIZE + 7 * SZ_4K, SZ_4K);
	check_world(w);

	before = stats(w);
	calls = w->fake.calls[FAKE_CALL_ATTR];
	w->befores = w->afters_ok = w->afters_cancel = 0;
	int errs[4] = { 0, 0, 0, 0 };
	errs[k] = err;
	sched_set(&w->s[FAKE_CALL_ATTR], errs, k + 1, false);
	ret = request(w, e, gpa, size, true, &hc);
	injected[S_ATTR_FWD][err_index(err)]++;

	/* the VMM gets the update's error; a guest would get -KVM_EFAULT */
	assert_int_equal(ret, -err);
	if (entry_has_hc(e))
		assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
	/* the k runs applied were set back, in order: k more updates */
	assert_int_equal(w->fake.calls[FAKE_CALL_ATTR] - calls, 2 * k);
	after = stats(w);
	assert_int_equal(after.attr_updates - before.attr_updates, 2 * k + 1);
	assert_int_equal(after.punches, before.punches);
	assert_int_equal(after.broken, 0);
	assert_int_equal(after.to_private_bytes, before.to_private_bytes);
	/* every before() heard after(-ECANCELED) */
	assert_int_equal(w->befores, 3);
	assert_int_equal(w->afters_cancel, 3);
	assert_int_equal(w->afters_ok, 0);
	check_world(w);
	check_flush_recovers(w);

	/* the same request succeeds afterwards */
	ret = request(w, e, gpa, size, true, &hc);
	assert_int_equal(ret, 0);
	assert_int_equal(hc, 0);
	model_set(w, gpa, size, true);
	write_converted(w, gpa, size);
	check_world(w);
	check_allocation(w, 0);
	world_free(w);
}

void test_attr_forward(void **state)
{
	(void)state;
	/* every errno on the first, second and third run through
	 * map_gpa_range; every other entry point with each errno once (the
	 * transaction is shared: what differs is how the error is reported) */
	for (unsigned i = 0; i < NERR; i++)
		for (unsigned k = 0; k < 3; k++)
			attr_forward_case(E_MAP, errnos[i], k);
	for (unsigned e = 1; e < E_COUNT; e++)
		for (unsigned i = 0; i < NERR; i++)
			attr_forward_case((enum entry)e, errnos[i], (e + i) % 3);
}

/* ---- attribute update: the rollback fails too ---- */

static void attr_rollback_case(enum entry e, int fwd_err, int back_err)
{
	struct world *w = world_get();
	const uint64_t gpa = BASE + SZ_2M, size = RSIZE;
	struct kvm_run run;
	struct cvmconv_region reg = { .sz = sizeof(reg),
				      .gpa = BASE + 8 * RSIZE,
				      .size = RSIZE,
				      .private_fd = -1,
				      .shared_fd = -1,
				      .unaligned = -1 };
	struct cvmconv_range rg = { BASE, SZ_4K, 1, 0 };
	struct cvmconv_stats st;
	uint64_t hc, calls, punches;
	int ret;

	world_ctx(w, false);
	world_region(w, B_SHMEM);
	world_region(w, B_SHMEM);
	assert_int_equal(cvmconv_convert(w->c, BASE + SZ_2M + 100 * SZ_4K, SZ_4K, true), 0);
	model_set(w, BASE + SZ_2M + 100 * SZ_4K, SZ_4K, true);
	write_converted(w, BASE + SZ_2M + 100 * SZ_4K, SZ_4K);
	punches = stats(w).punches;

	/* run 0 applied, run 1 fails with fwd_err, the rollback of run 0
	 * fails with back_err */
	int errs[3] = { 0, fwd_err, back_err };
	sched_set(&w->s[FAKE_CALL_ATTR], errs, 3, false);
	ret = request(w, e, gpa, size, true, &hc);
	injected[S_ATTR_FWD][err_index(fwd_err)]++;
	injected[S_ATTR_ROLLBACK][err_index(back_err)]++;
	assert_int_equal(ret, -ENOTRECOVERABLE);
	if (entry_has_hc(e))
		assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
	st = stats(w);
	assert_int_equal(st.broken, 1);
	assert_int_equal(st.punches, punches); /* nothing freed */

	/* broken: every later call is refused, no kernel call is made */
	calls = w->fake.calls[FAKE_CALL_ATTR];
	for (unsigned e2 = 0; e2 < E_COUNT; e2++) {
		assert_int_equal(request(w, (enum entry)e2, BASE, SZ_4K, true, &hc),
				 -ENOTRECOVERABLE);
		if (entry_has_hc((enum entry)e2))
			assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
	}
	assert_int_equal(cvmconv_flush(w->c), -ENOTRECOVERABLE);
	assert_int_equal(cvmconv_add_region(w->c, &reg), -ENOTRECOVERABLE);
	assert_int_equal(cvmconv_convert_batch(w->c, &rg, 1, 0, NULL), -ENOTRECOVERABLE);
	memset(&run, 0, sizeof(run));
	run.exit_reason = KVM_EXIT_HYPERCALL;
	run.hypercall.nr = KVM_HC_MAP_GPA_RANGE;
	run.hypercall.args[0] = BASE;
	run.hypercall.args[1] = 1;
	assert_int_equal(cvmconv_handle_exit(w->c, &run), -ENOTRECOVERABLE);
	assert_int_equal(run.hypercall.ret, HC(CVMCONV_KVM_EFAULT));
	assert_int_equal(w->fake.calls[FAKE_CALL_ATTR], calls);
	assert_int_equal(w->fake.calls[FAKE_CALL_PUNCH], 1); /* the setup conversion's */
	/* the library still answers with what it last knew; the data is safe */
	for (unsigned ri = 0; ri < 2; ri++)
		for (uint64_t p = 0; p < RPAGES; p++) {
			bool priv = w->r[ri].priv[p];

			assert_int_equal(cvmconv_is_private(w->c, w->r[ri].gpa + p * SZ_4K), priv);
			assert_true(pattern_check(side_map(&w->r[ri], priv), p, seed_of(ri, priv)));
		}
	world_free(w);
}

void test_attr_rollback(void **state)
{
	(void)state;
	/* every (forward, rollback) errno pair through map_gpa_range; every
	 * entry point with a pair of its own */
	for (unsigned i = 0; i < NERR; i++)
		for (unsigned j = 0; j < NERR; j++)
			attr_rollback_case(E_MAP, errnos[i], errnos[j]);
	for (unsigned e = 0; e < E_COUNT; e++)
		attr_rollback_case((enum entry)e, errnos[e % NERR], errnos[(e + 3) % NERR]);
}

/* ---- attribute update at add_region(CVMCONV_REGION_PRIVATE) ---- */

void test_attr_add_region_private(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++) {
		struct world *w = world_get();
		int fd = memfd_of(RSIZE, false);
		struct cvmconv_region reg = { .sz = sizeof(reg),
					      .gpa = BASE,
					      .size = RSIZE,
					      .private_fd = fd,
					      .shared_fd = -1,
					      .flags = CVMCONV_REGION_PRIVATE,
					      .unaligned = -1 };

		assert_true(fd >= 0);
		world_ctx(w, false);
		sched_set(&w->s[FAKE_CALL_ATTR], &errnos[i], 1, false);
		assert_int_equal(cvmconv_add_region(w->c, &reg), -errnos[i]);
		injected[S_ATTR_ADD][i]++;
		assert_int_equal(cvmconv_is_private(w->c, BASE), -ENOENT);
		assert_int_equal(fake_kvm_is_private(&w->fake, BASE), 0);
		assert_int_equal(w->fake.npriv, 0);
		assert_int_equal(stats(w).guest_bytes, 0);
		/* nothing half-registered: the same region can be added now */
		assert_int_equal(cvmconv_add_region(w->c, &reg), 0);
		assert_int_equal(cvmconv_is_private(w->c, BASE + RSIZE - SZ_4K), 1);
		assert_int_equal(fake_kvm_mismatches(&w->fake, w->c, BASE, RSIZE), 0);
		close(fd);
		world_free(w);
	}
}

/* ---- in-place regions: KVM_SET_MEMORY_ATTRIBUTES2 forward and rollback ---- */

/* R0 two-backing (shmem), R1 in place: a request over the second extent of
 * R0 and the first of R1 is one run and two kernel calls, the VM-wide
 * update, then the guest_memfd one, which fails with @err (@persistent:
 * every try). */
static void gmem_forward_case(enum entry e, int err, bool persistent)
{
	struct world *w = world_get();
	const uint64_t gpa = BASE + SZ_2M, size = RSIZE;
	struct cvmconv_stats before, after;
	uint64_t hc, vm_calls;
	int ret;

	world_ctx(w, false);
	world_region(w, B_SHMEM);
	world_region(w, B_INPLACE);
	before = stats(w);
	vm_calls = w->fake.calls[FAKE_CALL_ATTR];
	w->befores = w->afters_ok = w->afters_cancel = 0;
	sched_set(&w->s[FAKE_CALL_GMEM], &err, 1, persistent);
	ret = request(w, e, gpa, size, true, &hc);
	injected[S_GMEM_FWD][err_index(err)]++;
	after = stats(w);
	assert_int_equal(w->befores, 1); /* listeners heard the range first */
	if (err == EAGAIN && !persistent) {
		/* one busy answer: tried again, and done */
		assert_int_equal(ret, 0);
		if (entry_has_hc(e))
			assert_int_equal(hc, 0);
		assert_int_equal(after.gmem_busy_retries - before.gmem_busy_retries, 1);
		assert_int_equal(after.gmem_busy_failures, before.gmem_busy_failures);
		assert_int_equal(w->afters_ok, 1);
		model_set(w, gpa, size, true);
		write_converted(w, gpa, size);
		check_world(w);
		world_free(w);
		return;
	}
	assert_int_equal(ret, -err);
	if (entry_has_hc(e))
		assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
	/* the VM-wide piece was applied, then set back */
	assert_int_equal(w->fake.calls[FAKE_CALL_ATTR] - vm_calls, 2);
	if (err == EAGAIN) {
		assert_int_equal(after.gmem_busy_retries - before.gmem_busy_retries,
				 CVMCONV_INPLACE_RETRIES);
		assert_int_equal(after.gmem_busy_failures - before.gmem_busy_failures, 1);
	}
	assert_int_equal(after.to_private_bytes, before.to_private_bytes);
	assert_int_equal(after.broken, 0);
	assert_int_equal(after.double_alloc_bytes, 0);
	assert_int_equal(w->afters_cancel, 1);
	assert_int_equal(w->afters_ok, 0);
	check_world(w);
	check_allocation(w, 0);
	/* nothing half done: the same request goes through now */
	memset(&w->s[FAKE_CALL_GMEM], 0, sizeof(w->s[FAKE_CALL_GMEM])); /* no more failures */
	assert_int_equal(request(w, e, gpa, size, true, &hc), 0);
	model_set(w, gpa, size, true);
	write_converted(w, gpa, size);
	check_world(w);
	assert_int_equal(fake_kvm_mismatches(&w->fake, w->c, BASE, 2 * RSIZE), 0);
	world_free(w);
}

void test_gmem_forward(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++)
		for (int persistent = 0; persistent < 2; persistent++)
			gmem_forward_case(E_MAP, errnos[i], persistent);
	for (unsigned e = 0; e < E_COUNT; e++)
		gmem_forward_case((enum entry)e, errnos[(e + 1) % NERR], e & 1);
}

/* R0 in place, R1 two-backing: the guest_memfd piece goes first and is
 * applied; the VM-wide piece fails with @fwd_err; setting the first piece
 * back fails with @back_err. A busy page in the rollback is tried again;
 * any other failure leaves the attributes unknown: broken. */
static void gmem_rollback_case(enum entry e, int fwd_err, int back_err)
{
	struct world *w = world_get();
	const uint64_t gpa = BASE + SZ_2M, size = RSIZE;
	struct cvmconv_stats st;
	uint64_t hc;
	int ret, gm_errs[2] = { 0, back_err };

	world_ctx(w, false);
	world_region(w, B_INPLACE);
	world_region(w, B_SHMEM);
	sched_set(&w->s[FAKE_CALL_ATTR], &fwd_err, 1, false);
	sched_set(&w->s[FAKE_CALL_GMEM], gm_errs, 2, false);
	ret = request(w, e, gpa, size, true, &hc);
	injected[S_ATTR_FWD][err_index(fwd_err)]++;
	injected[S_GMEM_ROLLBACK][err_index(back_err)]++;
	st = stats(w);
	if (entry_has_hc(e))
		assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
	if (back_err == EAGAIN) {
		assert_int_equal(ret, -fwd_err);
		assert_int_equal(st.broken, 0);
		assert_int_equal(st.gmem_busy_retries, 1);
		check_world(w);
		assert_int_equal(fake_kvm_mismatches(&w->fake, w->c, BASE, 2 * RSIZE), 0);
	} else {
		assert_int_equal(ret, -ENOTRECOVERABLE);
		assert_int_equal(st.broken, 1);
		assert_int_equal(request(w, E_MAP, BASE, SZ_4K, true, &hc), -ENOTRECOVERABLE);
	}
	assert_int_equal(st.punches, 0);
	/* whatever the attributes, no page lost its data (PRESERVE region) */
	for (unsigned ri = 0; ri < 2; ri++)
		for (uint64_t p = 0; p < RPAGES; p++)
			assert_true(
				pattern_check(side_map(&w->r[ri], false), p, seed_of(ri, false)));
	world_free(w);
}

void test_gmem_rollback(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++)
		for (unsigned j = 0; j < NERR; j++)
			gmem_rollback_case(E_MAP, errnos[i], errnos[j]);
	for (unsigned e = 0; e < E_COUNT; e++)
		gmem_rollback_case((enum entry)e, errnos[e % NERR], errnos[(e + 2) % NERR]);
}

/* The default in-place op: KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd
 * (the wrapped ioctl serves the strict fake), its probe at add_region and
 * the capability reads of the content modes. */
