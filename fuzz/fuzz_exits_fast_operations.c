/* SPDX-License-Identifier: MIT */
/* fuzz_exits_fast: one operation each, its prediction, and settle(): the
 * outcome against it. */
#include "fuzz_exits_fast.h"

/* no coverage in the harness: see fuzz_exits_fast.h */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#endif

/* ---- operations ---- */

void begin_op(void)
{
	memcpy(H.pre, H.ref, sizeof(H.ref));
	memcpy(H.replay, H.ref, sizeof(H.ref));
	H.fails = 0;
	H.first_err = H.punch_err = 0;
	H.allocs = 0;
	memset(H.hp_visited, 0, sizeof(H.hp_visited));
	H.punches = 0;
	H.befores = H.afters = 0;
	H.vetoed = false;
}

void end_op(void)
{
	if (!H.broken) {
		if (H.listener)
			CHECK(!memcmp(H.replay, H.ref, sizeof(H.ref)),
			      "the after() runs do not add up to the change");
		touch_and_check_data();
		check_views();
	}
	check_stats();
}

/* The reference follows a reported success. */
static void commit_ref(uint64_t gpa, uint64_t size, bool to_private)
{
	uint64_t lo = widx(gpa), hi = widx(gpa + size);

	if (!bm_all(H.ref, lo, hi, to_private))
		H.changed_since_fault = true;
	bm_set(H.ref, lo, hi, to_private);
}

/* @expect: 1 valid, 0 invalid (refused). */
static void settle(enum outcome got, int expect, int ret)
{
	if (H.broken) {
		CHECK(ret == -ENOTRECOVERABLE, "broken context answered %d", ret);
		return;
	}
	if (got == FAILED) {
		CHECK(H.fails, "host failure %d without a failed kernel call", ret);
		if (H.fails > 1) { /* the rollback failed too */
			CHECK(ret == -ENOTRECOVERABLE, "failed rollback answered %d", ret);
			H.broken = true;
			return;
		}
		CHECK(ret == H.first_err, "failure %d reported as %d", H.first_err, ret);
	} else {
		CHECK(!H.fails, "a kernel call failed (%d) but the request %s", H.first_err,
		      got == OK ? "succeeded" : "was refused");
	}
	CHECK((got == VETOED) == H.vetoed, "veto %d, outcome %d", H.vetoed, got);
	CHECK(got != OK || expect, "an invalid request was accepted");
	CHECK(got != REFUSED || !expect, "a valid request was refused");
	/* ALLOC_SHARED allocates before the attribute update: a request that
	 * fails after that punches what it allocated (semantics.md 4a) */
	CHECK(got == OK || !H.punches || H.allocs,
	      "a request that did not succeed (%d, %d) punched", got, ret);
	if (H.listener == 2)
		CHECK(H.befores - H.vetoed == H.afters, "%u before() (veto %d), %u after()",
		      H.befores, H.vetoed, H.afters);
}

void op_map(uint64_t gpa, uint64_t npages, uint64_t attrs, bool via_run, uint64_t junk)
{
	uint64_t hint = attrs & 3, size = npages * PG, hc = 0x5a5a5a5a5a5a5a5aULL;
	bool valid = !(attrs & ~0x13ULL) && hint != 3 && !(gpa & (PG - 1)) && npages &&
		     npages <= (1ULL << 40) && gpa <= GPA_LIMIT - size;
	enum outcome got;
	int ret;

	if (valid &&
	    ((hint == 1 && ((gpa | size) % HPG)) || (hint == 2 && ((gpa | size) % (1ULL << 30)))))
		valid = false;
	valid = valid && range_ok(gpa, size) && !policy_refuses(gpa, size);
	if (via_run) {
		struct kvm_run run;

		fz_map_run(&run, gpa, npages, attrs);
		run.hypercall.args[3] = junk;
		run.hypercall.args[5] = ~junk;
		run.hypercall.ret = junk;
		run.hypercall.longmode = (uint32_t)junk;
		ret = fz_map_exit("fuzz_exits_fast", H.c, &run, &hc);
	} else {
		ret = cvmconv_map_gpa_range(H.c, gpa, npages, attrs, &hc);
	}
	got = fz_guest_outcome("fuzz_exits_fast", "map_gpa_range", ret, hc);
	settle(got, valid, ret);
	if (got == OK && !H.broken)
		commit_ref(gpa, size, attrs & CVMCONV_MAP_GPA_RANGE_ENCRYPTED);
}

void op_fault(uint64_t gpa, uint64_t size, uint64_t flags)
{
	struct cvmconv_kvm_memory_fault *mf;
	struct kvm_run before;
	bool to_private = flags & KVM_MEMORY_EXIT_FLAG_PRIVATE;
	bool malformed = (flags & ~(uint64_t)KVM_MEMORY_EXIT_FLAG_PRIVATE) || !range_ok(gpa, size);
	bool by_policy = !malformed && policy_refuses(gpa, size);
	bool loop = !malformed && !by_policy && !H.broken && H.fault_valid &&
		    !H.changed_since_fault && H.fault_gpa == gpa && H.fault_size == size &&
		    H.fault_flags == flags &&
		    bm_all(H.ref, widx(gpa), widx(gpa + size), to_private);
	enum outcome got;
	int ret;

	memset(&fault_run, 0, sizeof(fault_run));
	fault_run.exit_reason = KVM_EXIT_MEMORY_FAULT;
	mf = cvmconv_run_memory_fault(&fault_run);
	mf->flags = flags;
	mf->gpa = gpa;
	mf->size = size;
	memcpy(&before, &fault_run, sizeof(before));
	ret = cvmconv_handle_exit(H.c, &fault_run);
	CHECK(!memcmp(&before, &fault_run, sizeof(before)), "memory fault exit modified kvm_run");
	if (ret == 1 || ret == -ELOOP) {
		CHECK((ret == -ELOOP) == loop, "memory fault: %d, the model expects %s", ret,
		      loop ? "-ELOOP" : "1");
		got = OK;
	} else if (H.broken || H.fails) {
		got = FAILED;
	} else if (H.vetoed) {
		CHECK(ret == -EPERM, "vetoed memory fault: %d", ret);
		got = VETOED;
	} else {
		CHECK(ret == (by_policy ? -EPERM : -EFAULT), "memory fault refused with %d", ret);
		got = REFUSED;
	}
	settle(got, !malformed && !by_policy, ret);
	if (got == OK && !H.broken) {
		commit_ref(gpa, size, to_private);
		H.fault_valid = true;
		H.fault_gpa = gpa;
		H.fault_size = size;
		H.fault_flags = flags;
		H.changed_since_fault = false;
	}
}

void op_other_exit(struct rd *in)
{
	struct kvm_run run, before;
	uint8_t s = u8(in);
	int ret;

	memset(&run, 0, sizeof(run));
	for (size_t i = 0; i < 48; i++)
		run.padding[i] = (char)u8(in);
	run.exit_reason = s & 1 ? (uint32_t)u64(in) : u8(in) % 48u;
	if (run.exit_reason == KVM_EXIT_MEMORY_FAULT)
		run.exit_reason++;
	if (run.exit_reason == KVM_EXIT_HYPERCALL && run.hypercall.nr == KVM_HC_MAP_GPA_RANGE)
		run.hypercall.nr++;
	memcpy(&before, &run, sizeof(run));
	ret = cvmconv_handle_exit(H.c, &run);
	CHECK(ret == 0 && !memcmp(&before, &run, sizeof(run)),
	      "exit reason %u: %d, or kvm_run modified", run.exit_reason, ret);
	CHECK(!H.befores && !H.punches, "a non-conversion exit converted");
}

void op_convert(uint64_t gpa, uint64_t size, bool to_private)
{
	int ret = cvmconv_convert(H.c, gpa, size, to_private);
	enum outcome got;

	if (ret == 0)
		got = OK;
	else if (ret == -EPERM && H.vetoed)
		got = VETOED;
	else if (ret == -EINVAL && !H.fails)
		got = REFUSED;
	else
		got = FAILED;
	settle(got, range_ok(gpa, size), ret);
	if (got == OK && !H.broken)
		commit_ref(gpa, size, to_private);
}

#define BATCH_MAX 12

/* Every entry valid on its own, no overlap; for a guest, the policy on
 * the merged runs of one direction. */
static bool batch_valid(const struct cvmconv_range *in, size_t n, bool guest)
{
	struct cvmconv_range s[BATCH_MAX];

	memcpy(s, in, n * sizeof(*s));
	for (size_t i = 0; i < n; i++)
		if (s[i].reserved || s[i].to_private > 1 || !range_ok(s[i].gpa, s[i].size))
			return false;
	qsort(s, n, sizeof(*s), by_gpa);
	for (size_t i = 0, j; i < n; i = j) {
		uint64_t end = s[i].gpa + s[i].size;

		if (i && s[i].gpa < s[i - 1].gpa + s[i - 1].size)
			return false;
		for (j = i + 1; j < n && s[j].gpa == end && s[j].to_private == s[i].to_private; j++)
			end += s[j].size;
		if (guest && policy_refuses(s[i].gpa, end - s[i].gpa))
			return false;
	}
	return true;
}

void op_batch(struct rd *in)
{
	struct cvmconv_range b[BATCH_MAX];
	uint8_t f = u8(in);
	unsigned flags = f % 8 == 0 ? u8(in) : (f & 1 ? CVMCONV_BATCH_GUEST : 0);
	bool guest = flags == CVMCONV_BATCH_GUEST, valid;
	size_t n = u8(in) % (BATCH_MAX + 1);
	uint64_t hc = 0x5a5a5a5a5a5a5a5aULL, at = pick_gpa(in) & ~(PG - 1);
	enum outcome got;
	int ret;

	memset(b, 0, sizeof(b));
	for (size_t i = 0; i < n; i++) {
		uint8_t s = u8(in);

		if (f & 2) { /* SEV-SNP page state change shape: small ascending pieces */
			at += (s & 3) * PG;
			b[i] = (struct cvmconv_range){ at, (1 + (s >> 2 & 7)) * PG, s >> 5 & 1, 0 };
			at += b[i].size;
			continue;
		}
		b[i].gpa = i && s % 3 == 0 ? b[i - 1].gpa + b[i - 1].size : pick_gpa(in);
		b[i].size = pick_size(in);
		b[i].to_private = s & 0x10 ? (s & 0x20 ? u8(in) : 1) : 0;
		b[i].reserved = (s & 0xc0) == 0xc0 ? u8(in) : 0;
	}
	if (f == 0xff) { /* n above the limit: refused before an entry is read */
		ret = cvmconv_convert_batch(H.c, b, CVMCONV_BATCH_MAX + 1, flags, &hc);
		CHECK(ret == -E2BIG || (ret == -EINVAL && (flags & ~CVMCONV_BATCH_GUEST)),
		      "oversized batch: %d", ret);
		return;
	}
	ret = cvmconv_convert_batch(H.c, b, n, flags, guest ? &hc : NULL);
	if (flags & ~CVMCONV_BATCH_GUEST) {
		CHECK(ret == -EINVAL && !H.befores && !H.punches, "batch flags 0x%x: %d", flags,
		      ret);
		return;
	}
	valid = batch_valid(b, n, guest);
	if (guest) {
		CHECK(ret <= 0, "guest batch returned %d", ret);
		got = fz_guest_outcome("fuzz_exits_fast", "batch", ret, hc);
	} else {
		got = ret == 0			   ? OK
		      : ret == -EPERM && H.vetoed  ? VETOED
		      : ret == -EINVAL && !H.fails ? REFUSED
						   : FAILED;
	}
	settle(got, valid, ret);
	for (size_t i = 0; got == OK && !H.broken && i < n; i++)
		commit_ref(b[i].gpa, b[i].size, b[i].to_private);
}

void op_flush(void)
{
	int ret = cvmconv_flush(H.c);
	struct cvmconv_stats st = { .sz = sizeof(st) };

	if (H.broken) {
		CHECK(ret == -ENOTRECOVERABLE, "flush on a broken context: %d", ret);
		return;
	}
	CHECK(!H.befores, "flush notified listeners");
	CHECK(ret == H.punch_err, "flush returned %d, the last punch failure was %d", ret,
	      H.punch_err);
	CHECK(cvmconv_get_stats(H.c, &st) == 0, "stats");
	CHECK(ret || !st.punch_pending_bytes, "flush returned 0 with %llu bytes pending",
	      (unsigned long long)st.punch_pending_bytes);
}

/* A listener registered with CVMCONV_LISTENER_REPLAY hears the current
 * runs once: the reference, maximal, all registered memory. */
static void replay_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	CHECK(result == 0, "replay: result %d", result);
	view_walk_cb(opaque, gpa, size, to_private);
}

void op_replay(void)
{
	struct walk w = { .prev_state = -1 };
	struct cvmconv_listener l = { .sz = sizeof(l),
				      .after = replay_after,
				      .opaque = &w,
				      .flags = CVMCONV_LISTENER_REPLAY };
	int id = cvmconv_add_listener(H.c, &l);

	if (H.broken)
		return;
	CHECK(id >= 0, "add_listener(REPLAY): %d", id);
	CHECK(w.bytes == bm_count(regions_bm, regions_bm, false) * PG &&
		      !memcmp(w.bm, H.ref, sizeof(w.bm)),
	      "replay differs from the reference");
	CHECK(cvmconv_remove_listener(H.c, id) == 0, "remove_listener");
}

void op_query(uint64_t gpa)
{
	struct pollfd p = { .fd = cvmconv_get_poll_fd(H.c), .events = POLLIN };
	struct cvmconv_stats st = { .sz = sizeof(st) };
	int ret = cvmconv_is_private(H.c, gpa);
	bool inside = range_ok(gpa & ~(PG - 1), PG);

	if (!inside)
		CHECK(ret == -ENOENT, "is_private(0x%llx) outside regions: %d",
		      (unsigned long long)gpa, ret);
	else if (!H.broken)
		CHECK(ret == bm_get(H.ref, widx(gpa)), "is_private(0x%llx): %d",
		      (unsigned long long)gpa, ret);
	CHECK(p.fd >= 0 && cvmconv_get_stats(H.c, &st) == 0, "poll fd %d", p.fd);
	if (st.punch_pending_bytes)
		CHECK(poll(&p, 1, 0) == 1 && (p.revents & POLLIN), "pending, poll fd not readable");
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
