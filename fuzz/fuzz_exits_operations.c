/* SPDX-License-Identifier: MIT */
/* fuzz_exits: one operation each (map_gpa_range, memory fault, other
 * exits, convert, batch, flush, queries, replay, stats, add_region), its
 * prediction from docs/semantics.md, and settle(): the outcome against it. */
#include "fuzz_exits.h"

/* ---- one operation ---- */

void begin_op(void)
{
	memcpy(H.pre, H.priv, win_pages);
	H.nev = 0;
	H.befores = H.afters = 0;
	H.vetoed = false;
	H.attr_failures_this_op = 0;
	H.first_attr_err = 0;
}

/* A request on R0 with CVMCONV_REGION_ALLOC_SHARED allocates the shared
 * side first; when its attribute update fails after that, the pages are
 * private again and what was allocated is punched (docs/semantics.md 4a):
 * the only events a failed request may leave, each on R0's shared side
 * (check_events() checks that every punched page is stale). */
static bool undo_of_allocation(void)
{
	if (!H.alloc0)
		return false;
	for (unsigned e = 0; e < H.nev; e++)
		if (H.ev[e].kind != EV_PUNCH || H.ev[e].fd != R[0].shared_fd)
			return false;
	return true;
}

/* Classify what happened to a request the library answered with @ret (for
 * the VMM) and @guest (the guest's code, 0 when not applicable), against
 * the prediction @valid; apply it to the model on success. */
/* @expect: 1 the request is valid, 0 invalid, -1 not predicted */
static void settle(enum outcome got, int expect, int ret)
{
	if (H.broken) {
		CHECK(ret == -ENOTRECOVERABLE, "broken context answered %d", ret);
		return;
	}
	if (got == FAILED) {
		CHECK(H.attr_failures_this_op > 0, "host failure %d without a failed update", ret);
		if (H.attr_failures_this_op > 1) {
			/* the rollback failed too */
			CHECK(ret == -ENOTRECOVERABLE, "failed rollback answered %d", ret);
			H.broken = true;
			return;
		}
		CHECK(ret == H.first_attr_err, "failure %d reported as %d", H.first_attr_err, ret);
	} else {
		CHECK(H.attr_failures_this_op == 0, "an update failed (%d) but the request %s",
		      H.first_attr_err, got == OK ? "succeeded" : "was refused");
	}
	if (got == VETOED)
		CHECK(H.vetoed && expect,
		      "vetoed without a veto, or an invalid request reached it");
	else if (H.vetoed)
		CHECK(got == FAILED || got == VETOED, "veto ignored");
	if (got == OK)
		CHECK(expect != 0, "an invalid request was accepted");
	if (got == REFUSED)
		CHECK(expect != 1, "a valid request was refused");
	if (got != OK)
		CHECK(H.nev == 0 || undo_of_allocation(),
		      "a request that did not succeed punched or committed");
	/* every before() hears one after(), except the one that vetoed
	 * (tests/test_listener_batch.c test_listener_veto) */
	if (H.has_before)
		CHECK(H.befores - H.vetoed == H.afters, "%u before() (veto %d) but %u after()",
		      H.befores, H.vetoed, H.afters);
}

void end_op(void)
{
	if (H.broken) {
		struct cvmconv_stats st = { .sz = sizeof(st) };

		CHECK(cvmconv_get_stats(H.c, &st) == 0 && st.broken == 1, "broken not reported");
		return;
	}
	check_events();
	retag_changed();
	check_views();
	check_tags();
	check_accounting();
	H.pages_checked += win_pages;
}

/* 1 valid, 0 invalid, -1 not predicted. */
int batch_valid(const struct fz_batch *b, bool guest)
{
	struct cvmconv_range s[12];
	uint64_t run_gpa = 0, run_size = 0;
	bool run_dir = false;

	memcpy(s, b->r, b->n * sizeof(s[0]));
	for (size_t i = 0; i < b->n; i++) {
		if (s[i].reserved || s[i].to_private > 1)
			return 0;
		/* Every entry must be valid on its own (cvmconv.h: "any invalid
		 * entry or overlap refuses the whole list"). The library merges
		 * adjacent entries before it validates them, so an empty or
		 * half-page entry next to another one passes: a known finding.
		 * FUZZ_EXITS_LENIENT_BATCH=1 leaves such lists unpredicted, to
		 * fuzz past it. */
		if (lenient_batch && (!s[i].size || ((s[i].gpa | s[i].size) & (PG - 1))))
			return -1;
		if (!range_ok(s[i].gpa, s[i].size))
			return 0;
	}
	qsort(s, b->n, sizeof(s[0]), by_gpa);
	for (size_t i = 1; i < b->n; i++)
		if (s[i].gpa < s[i - 1].gpa + s[i - 1].size)
			return 0;
	if (!guest)
		return 1;
	/* policy applies to the merged runs of one direction */
	for (size_t i = 0; i <= b->n; i++) {
		if (i < b->n && run_size && run_dir == (s[i].to_private != 0) &&
		    run_gpa + run_size == s[i].gpa) {
			run_size += s[i].size;
			continue;
		}
		if (run_size && policy_refuses(run_gpa, run_size))
			return 0;
		if (i < b->n) {
			run_gpa = s[i].gpa;
			run_size = s[i].size;
			run_dir = s[i].to_private != 0;
		}
	}
	return 1;
}

void op_map_gpa_range(uint64_t gpa, uint64_t npages, uint64_t attrs, bool via_run, uint64_t preset,
		      uint64_t garbage)
{
	uint64_t hint = attrs & 3, size = npages * PG, hc = 0x5a5a5a5a5a5a5a5aULL;
	bool valid = true, to_private = attrs & CVMCONV_MAP_GPA_RANGE_ENCRYPTED;
	int ret;
	enum outcome got;

	if ((attrs & ~0x13ULL) || hint == 3 || (gpa & (PG - 1)) || !npages ||
	    npages > (1ULL << 40) || gpa > GPA_LIMIT - size)
		valid = false;
	else if ((hint == 1 && ((gpa % HPG) || npages % 512)) ||
		 (hint == 2 && ((gpa % (1ULL << 30)) || npages % 262144)))
		valid = false;
	else if (!covered(gpa, size) || policy_refuses(gpa, size))
		valid = false;

	trace("map_gpa_range%s gpa 0x%llx npages 0x%llx attrs 0x%llx (valid %d)",
	      via_run ? " (kvm_run)" : "", (unsigned long long)gpa, (unsigned long long)npages,
	      (unsigned long long)attrs, valid);
	if (via_run) {
		struct kvm_run run;

		fz_map_run(&run, gpa, npages, attrs);
		run.hypercall.args[3] = garbage;
		run.hypercall.args[4] = ~garbage;
		run.hypercall.args[5] = garbage * 3;
		run.hypercall.ret = preset;
		run.hypercall.longmode = (uint32_t)garbage;
		ret = fz_map_exit("fuzz_exits", H.c, &run, &hc);
	} else {
		ret = cvmconv_map_gpa_range(H.c, gpa, npages, attrs, &hc);
	}
	got = fz_guest_outcome("fuzz_exits", "map_gpa_range", ret, hc);
	settle(got, valid, ret);
	if (got == OK && !H.broken)
		model_apply(H.priv, gpa, size, to_private);
}

void op_memory_fault(uint64_t gpa, uint64_t size, uint64_t flags)
{
	struct kvm_run run, before;
	struct cvmconv_kvm_memory_fault *mf;
	bool to_private = flags & KVM_MEMORY_EXIT_FLAG_PRIVATE;
	bool malformed = (flags & ~(uint64_t)KVM_MEMORY_EXIT_FLAG_PRIVATE) || !range_ok(gpa, size);
	bool by_policy = !malformed && policy_refuses(gpa, size);
	enum outcome got;
	int ret;

	trace("memory_fault gpa 0x%llx size 0x%llx flags 0x%llx (malformed %d policy %d)",
	      (unsigned long long)gpa, (unsigned long long)size, (unsigned long long)flags,
	      malformed, by_policy);
	memset(&run, 0, sizeof(run));
	run.exit_reason = KVM_EXIT_MEMORY_FAULT;
	mf = cvmconv_run_memory_fault(&run);
	mf->flags = flags;
	mf->gpa = gpa;
	mf->size = size;
	memcpy(&before, &run, sizeof(run));
	/* an identical fault with nothing to convert and no conversion since
	 * the last one of this kvm_run: converting cannot resolve it */
	bool nothing_to_do = !malformed && !by_policy && !H.broken;

	for (uint64_t a = gpa; nothing_to_do && a < gpa + size; a += PG)
		nothing_to_do = a >= win_lo && (a - win_lo) / PG < win_pages &&
				H.priv[(a - win_lo) / PG] == to_private;
	bool loop = nothing_to_do && H.last_fault.valid && !H.changed_since_fault &&
		    H.last_fault.gpa == gpa && H.last_fault.size == size &&
		    H.last_fault.flags == flags;

	ret = cvmconv_handle_exit(H.c, &run);
	CHECK(!memcmp(&before, &run, sizeof(run)), "memory fault exit modified kvm_run");
	if (ret == 1 || ret == -ELOOP) {
		/* recorded by cvmconv's fault guard either way */
		CHECK((ret == -ELOOP) == loop, "memory fault: %d, the model expects %s", ret,
		      loop ? "-ELOOP" : "1");
	}
	if (ret == -ELOOP) {
		got = OK; /* nothing changed, nothing to change */
	} else if (ret == 1) {
		got = OK;
	} else if (H.broken || H.attr_failures_this_op) {
		got = FAILED;
	} else if (H.vetoed) {
		/* a veto is a refusal the guest cannot be told about either */
		CHECK(ret == -EFAULT || ret == -EPERM, "vetoed memory fault: %d", ret);
		got = VETOED;
	} else {
		CHECK(ret == (by_policy ? -EPERM : -EFAULT),
		      "memory fault refused with %d (malformed %d, policy %d)", ret, malformed,
		      by_policy);
		got = REFUSED;
	}
	settle(got, !malformed && !by_policy, ret);
	if (got == OK && !H.broken)
		model_apply(H.priv, gpa, size, to_private);
	if (ret == 1 || ret == -ELOOP) {
		/* recorded with the generation after its own conversion: the same
		 * fault again, with nothing converted since, is a loop */
		H.last_fault.valid = true;
		H.last_fault.gpa = gpa;
		H.last_fault.size = size;
		H.last_fault.flags = flags;
		H.changed_since_fault = false;
	}
}

void op_other_exit(uint32_t reason, uint64_t nr, struct rd *r)
{
	struct kvm_run run, before;
	int ret;

	memset(&run, 0, sizeof(run));
	for (size_t i = 0; i < 64; i++)
		run.padding[i] = (char)u8(r);
	run.exit_reason = reason;
	if (reason == KVM_EXIT_HYPERCALL) {
		run.hypercall.nr = nr == KVM_HC_MAP_GPA_RANGE ? nr + 1 : nr;
	} else if (reason == KVM_EXIT_MEMORY_FAULT) {
		run.exit_reason = reason + 1;
	}
	memcpy(&before, &run, sizeof(run));
	ret = cvmconv_handle_exit(H.c, &run);
	CHECK(ret == 0, "exit reason %u (nr %llu) returned %d", run.exit_reason,
	      (unsigned long long)run.hypercall.nr, ret);
	CHECK(!memcmp(&before, &run, sizeof(run)), "a non-conversion exit was modified");
	CHECK(H.nev == 0 && H.befores == 0, "a non-conversion exit converted something");
}

void op_convert(uint64_t gpa, uint64_t size, bool to_private)
{
	bool valid = range_ok(gpa, size);
	int ret;
	enum outcome got;

	trace("convert gpa 0x%llx size 0x%llx to_private %d (valid %d)", (unsigned long long)gpa,
	      (unsigned long long)size, to_private, valid);
	ret = cvmconv_convert(H.c, gpa, size, to_private);

	if (ret == 0)
		got = OK;
	else if (ret == -EINVAL && !H.attr_failures_this_op)
		got = REFUSED;
	else if (ret == -EPERM && H.vetoed)
		got = VETOED;
	else
		got = FAILED;
	settle(got, valid, ret);
	if (got == OK && !H.broken)
		model_apply(H.priv, gpa, size, to_private);
}

void op_batch(struct fz_batch *b, unsigned flags, bool oversize)
{
	bool guest = flags == CVMCONV_BATCH_GUEST;
	int valid = batch_valid(b, guest);
	uint64_t hc = 0x5a5a5a5a5a5a5a5aULL;
	enum outcome got;
	int ret;

	trace("batch n %zu flags 0x%x oversize %d (expect %d)", b->n, flags, oversize, valid);
	for (size_t i = 0; i < b->n; i++)
		trace("  [%zu] gpa 0x%llx size 0x%llx to_private %u reserved %u", i,
		      (unsigned long long)b->r[i].gpa, (unsigned long long)b->r[i].size,
		      b->r[i].to_private, b->r[i].reserved);
	if (oversize) {
		/* n above the limit: refused before a single entry is read (the
		 * array really has only b->n entries: ASan checks it) */
		ret = cvmconv_convert_batch(H.c, b->r, CVMCONV_BATCH_MAX + 1, flags, &hc);
		CHECK(ret == -E2BIG || (ret == -EINVAL && (flags & ~CVMCONV_BATCH_GUEST)),
		      "oversized batch: %d", ret);
		CHECK(H.nev == 0 && H.befores == 0, "oversized batch acted");
		return;
	}
	ret = cvmconv_convert_batch(H.c, b->r, b->n, flags, guest ? &hc : NULL);
	if (flags & ~CVMCONV_BATCH_GUEST) {
		CHECK(ret == -EINVAL, "batch with unknown flags: %d", ret);
		CHECK(H.nev == 0 && H.befores == 0, "batch with unknown flags acted");
		return;
	}
	if (guest) {
		got = fz_guest_outcome("fuzz_exits", "batch", ret, hc);
		CHECK(ret <= 0, "batch returned %d", ret);
	} else if (ret == 0) {
		got = OK;
	} else if (ret == -EINVAL && !H.attr_failures_this_op) {
		got = REFUSED;
	} else if (ret == -EPERM && H.vetoed) {
		got = VETOED;
	} else {
		got = FAILED;
	}
	settle(got, valid, ret);
	if (got == OK && !H.broken)
		for (size_t i = 0; i < b->n; i++)
			model_apply(H.priv, b->r[i].gpa, b->r[i].size, b->r[i].to_private);
}

void op_flush(void)
{
	int ret = cvmconv_flush(H.c);

	trace("flush: %d", ret);
	if (H.broken) {
		CHECK(ret == -ENOTRECOVERABLE, "flush on a broken context: %d", ret);
		return;
	}
	CHECK(H.befores == 0, "flush notified listeners");
	if (ret == 0) {
		struct cvmconv_stats st = { .sz = sizeof(st) };

		CHECK(cvmconv_get_stats(H.c, &st) == 0, "stats");
		CHECK(st.punch_pending_bytes == 0, "flush returned 0 with %llu bytes pending",
		      (unsigned long long)st.punch_pending_bytes);
	} else {
		CHECK(ret == -H.punch_errno && H.punch_failed_ever, "flush returned %d", ret);
	}
}

void op_is_private(uint64_t gpa)
{
	int ret = cvmconv_is_private(H.c, gpa);
	int r = region_of_gpa(gpa);

	if (r < 0)
		CHECK(ret == -ENOENT, "is_private(0x%llx) outside regions: %d",
		      (unsigned long long)gpa, ret);
	else if (!H.broken)
		CHECK(ret == H.priv[(gpa - win_lo) / PG], "is_private(0x%llx): %d",
		      (unsigned long long)gpa, ret);
}

/* cvmconv_for_each_range(): ascending, disjoint runs inside the range,
 * maximal (touching runs differ), each page of them (up to a bound per
 * run) in a region and in the model's state; a stop after @stop runs
 * returns the callback's value. */
struct fz_walk {
	uint64_t lo, hi, prev_end, runs, stop, bytes;
	int prev_state;
};

static int walk_cb(void *opaque, uint64_t gpa, uint64_t size, bool is_private)
{
	struct fz_walk *w = opaque;

	CHECK(size && !(gpa % PG) && !(size % PG) && gpa >= w->lo && gpa + size <= w->hi &&
		      gpa >= w->prev_end,
	      "for_each_range run 0x%llx+0x%llx in [0x%llx, 0x%llx) after 0x%llx",
	      (unsigned long long)gpa, (unsigned long long)size, (unsigned long long)w->lo,
	      (unsigned long long)w->hi, (unsigned long long)w->prev_end);
	CHECK(!(w->runs && gpa == w->prev_end && (int)is_private == w->prev_state),
	      "for_each_range: runs at 0x%llx not maximal", (unsigned long long)gpa);
	for (uint64_t a = gpa, n = 0; a < gpa + size && n < 4096; a += PG, n++) {
		CHECK(region_of_gpa(a) >= 0, "for_each_range: 0x%llx outside regions",
		      (unsigned long long)a);
		if (!H.broken && a >= win_lo && (a - win_lo) / PG < win_pages)
			CHECK(H.priv[(a - win_lo) / PG] == is_private,
			      "for_each_range: 0x%llx %d, model %d", (unsigned long long)a,
			      is_private, H.priv[(a - win_lo) / PG]);
	}
	w->prev_end = gpa + size;
	w->prev_state = is_private;
	w->bytes += size;
	return ++w->runs == w->stop ? 7 : 0;
}

void op_for_each_range(uint64_t gpa, uint64_t size, uint64_t stop)
{
	struct fz_walk w = { .lo = gpa, .hi = gpa + size, .prev_end = gpa, .stop = stop };
	bool valid = size && !((gpa | size) % PG) && gpa + size > gpa;
	int ret = cvmconv_for_each_range(H.c, gpa, size, walk_cb, &w);

	if (!valid)
		CHECK(ret == -EINVAL, "for_each_range(0x%llx, 0x%llx): %d", (unsigned long long)gpa,
		      (unsigned long long)size, ret);
	else
		CHECK(ret == (stop && w.runs == stop ? 7 : 0), "for_each_range: %d after %llu runs",
		      ret, (unsigned long long)w.runs);
}

/* A listener registered with CVMCONV_LISTENER_REPLAY hears every current
 * run once, in order: exactly the registered memory, in the model's state
 * where the model has it, adjacent runs of one state never split. */
static void replay_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	struct fz_walk *w = opaque;

	CHECK(result == 0, "replay: result %d", result);
	walk_cb(w, gpa, size, to_private);
}

void op_replay_listener(void)
{
	struct fz_walk w = { .lo = 0, .hi = UINT64_MAX, .prev_end = 0 };
	struct cvmconv_listener l = { .sz = sizeof(l),
				      .after = replay_after,
				      .opaque = &w,
				      .flags = CVMCONV_LISTENER_REPLAY };
	uint64_t registered = 0;
	int id = cvmconv_add_listener(H.c, &l);

	if (id == -ENOSPC || H.broken)
		return;
	CHECK(id >= 0, "add_listener(REPLAY): %d", id);
	/* the walk checked order, maximality and states; now the coverage */
	for (int i = 0; i < NREG; i++)
		registered += R[i].present ? R[i].size : 0;
	CHECK(w.bytes == registered, "replay heard %llu bytes of %llu registered",
	      (unsigned long long)w.bytes, (unsigned long long)registered);
	CHECK(cvmconv_remove_listener(H.c, id) == 0, "remove_listener");
}

/* The poll fd is readable whenever stale memory waits (deferred or failed). */
void check_poll_fd(void)
{
	struct cvmconv_stats st = { .sz = sizeof(st) };
	struct pollfd p = { .fd = cvmconv_get_poll_fd(H.c), .events = POLLIN };

	CHECK(p.fd >= 0 && cvmconv_get_stats(H.c, &st) == 0, "poll fd %d", p.fd);
	if (st.punch_pending_bytes)
		CHECK(poll(&p, 1, 0) == 1 && (p.revents & POLLIN),
		      "%llu bytes pending, the poll fd is not readable",
		      (unsigned long long)st.punch_pending_bytes);
}

void op_stats_json(size_t len)
{
	char buf[1024];
	int need;

	memset(buf, 0x7f, sizeof(buf));
	need = cvmconv_stats_json(H.c, len ? buf : NULL, len);
	CHECK(need > 0 && need < (int)sizeof(buf), "stats_json: %d", need);
	if (len) {
		size_t used = (size_t)need < len - 1 ? (size_t)need : len - 1;

		CHECK(buf[used] == '\0', "stats_json not terminated");
		CHECK(len >= sizeof(buf) || buf[len] == 0x7f, "stats_json wrote past len");
	}
}

void op_add_region(uint64_t gpa, uint64_t size, uint32_t flags)
{
	struct cvmconv_region reg = { .sz = sizeof(reg),
				      .gpa = gpa,
				      .size = size,
				      .private_fd = -1,
				      .shared_fd = -1,
				      .flags = flags,
				      .unaligned = -1 };
	bool overlaps = false, bad;
	int ret;

	bad = !size || ((gpa | size) & (PG - 1)) || size > GPA_LIMIT || gpa > GPA_LIMIT - size ||
	      (flags & ~(CVMCONV_REGION_PRIVATE | CVMCONV_REGION_ATTRS_ONLY));
	for (int i = 0; i < NREG && !bad; i++)
		overlaps |= R[i].present && gpa < R[i].gpa + R[i].size && gpa + size > R[i].gpa;
	ret = fake_kvm_add_region(&H.fake, H.c, &reg);
	trace("add_region gpa 0x%llx size 0x%llx flags 0x%x: %d", (unsigned long long)gpa,
	      (unsigned long long)size, flags, ret);
	if (H.broken) {
		CHECK(ret == -ENOTRECOVERABLE || ret == -EINVAL, "add_region on broken: %d", ret);
		return;
	}
	if (bad)
		CHECK(ret == -EINVAL, "invalid region added: %d", ret);
	else if (overlaps)
		CHECK(ret == -EEXIST, "overlapping region: %d", ret);
	else if (flags & CVMCONV_REGION_PRIVATE)
		CHECK(ret == 0 || ret == H.first_attr_err, "add_region private: %d", ret);
	else
		CHECK(ret == 0, "add_region: %d", ret);
	if (ret == 0) {
		CHECK(cvmconv_remove_region(H.c, gpa) == 0, "remove_region");
		if (flags & CVMCONV_REGION_PRIVATE) {
			/* give the fake its attributes back: the window must stay
			 * consistent (the region is gone, so only the fake changes) */
			CHECK(fake_kvm_ops.set_memory_attributes(&H.fake, gpa, size, 0) == 0,
			      "restore");
		}
	}
}
