/* SPDX-License-Identifier: MIT */
/*
 * The conversion transaction. Under the context lock, in this order:
 *   validate  the whole range lies in registered regions (no gaps);
 *   policy    unaligned guest requests: allow / log / reject;
 *   plan      the maximal runs of pages not yet in the target state, merged
 *             across adjacent regions (pages already there cost nothing);
 *   apply     one KVM_SET_MEMORY_ATTRIBUTES per run, exactly over the run;
 *             on a failure the runs already applied are set back;
 *   commit    extent tracker updated run by run, and each run's stale side
 *             handed to backing.c, which punches what became freeable.
 * Attributes change before anything is freed and only stale pages are ever
 * punched, so a host failure never loses guest data.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "internal.h"
#include "probes.h"

static int set_attributes(struct cvmconv *c, uint64_t gpa, uint64_t end, bool private)
{
	int ret;

	COUNT(c, attr_updates, 1);
	PROBE(attr_update, gpa, end - gpa, private);
	ret = op_set_memory_attributes(c, gpa, end - gpa, private ? CVMCONV_ATTR_PRIVATE : 0);
	PROBE(attr_update_done, ret);
	return ret;
}

static int set_piece(struct cvmconv *c, struct region *inplace, uint64_t gpa, uint64_t end,
		     bool private, bool rollback)
{
	if (!inplace)
		return set_attributes(c, gpa, end, private);
	return inplace_set(c, inplace, (gpa - inplace->gpa) >> PAGE_SHIFT_4K,
			   (end - inplace->gpa) >> PAGE_SHIFT_4K, private, rollback);
}

/* Update run [gpa, end) of a request on regions [first, last]. On a
 * failure the pieces already updated are set back (not when @rollback:
 * the caller is setting back already, and breaks the context). */
static int update_run(struct cvmconv *c, uint32_t first, uint32_t last, uint64_t gpa, uint64_t end,
		      bool private, bool rollback)
{
	struct piece_iter it = { c, first, last, gpa, end }, undo = it;
	struct region *r;
	uint64_t a, b, failed_at = end;
	int err = 0;

	if (!atomic_load_explicit(&c->ninplace, memory_order_relaxed))
		return set_attributes(c, gpa, end, private);
	while (piece_next(&it, &a, &b, &r)) {
		err = set_piece(c, r, a, b, private, rollback);
		if (err) {
			failed_at = a;
			break;
		}
	}
	if (!err || rollback || err == -ENOTRECOVERABLE)
		return err;
	/* the pieces before the failed one (a failed piece changed nothing) */
	while (piece_next(&undo, &a, &b, &r) && b <= failed_at) {
		if (set_piece(c, r, a, b, !private, true)) {
			atomic_store(&c->broken, true);
			log_msg(c, LOG_CRIT,
				"rollback of gpa 0x%llx size 0x%llx failed; attributes no "
				"longer known, the VM must be stopped",
				(unsigned long long)a, (unsigned long long)(b - a));
			return -ENOTRECOVERABLE;
		}
	}
	return err;
}

/* Set back the first @applied runs of @p[0..n) (those whose update
 * succeeded). Returns -ENOTRECOVERABLE if the kernel refuses. */
static int rollback(struct cvmconv *c, const struct planned *p, size_t n, uint64_t applied)
{
	for (size_t k = 0; k < n && applied; k++) {
		struct run_iter it;
		uint64_t gpa, end;

		runs_start(&it, c, &p[k]);
		while (applied && runs_next(&it, &gpa, &end)) {
			int ret = update_run(c, p[k].first, p[k].last, gpa, end,
					     !p[k].cv->to_private, true);

			PROBE(rollback, gpa, end - gpa, ret);
			applied--;
			if (ret) {
				atomic_store(&c->broken, true);
				if (ret == -ENOTRECOVERABLE)
					return ret; /* logged where it broke */
				log_msg(c, LOG_CRIT,
					"%s: rollback of gpa 0x%llx size 0x%llx failed: %s; "
					"attributes "
					"no longer known, the VM must be stopped",
					p[k].cv->source, (unsigned long long)gpa,
					(unsigned long long)(end - gpa), strerror(-ret));
				return -ENOTRECOVERABLE;
			}
		}
	}
	return 0;
}

/* Out of line, like every path off the common one: convert_request() is
 * flattened (see there). */
NOINLINE static void apply_failed(struct cvmconv *c, const struct conversion *cv, uint64_t gpa,
				  uint64_t size, int err)
{
	log_msg(c, LOG_ERR, "%s: attribute update gpa 0x%llx size 0x%llx failed: %s; rolling back",
		cv->source, (unsigned long long)gpa, (unsigned long long)size, strerror(-err));
}

/* Apply every run of every request; on failure set back the runs already
 * applied. A failed KVM_SET_MEMORY_ATTRIBUTES changes nothing
 * (kvm_vm_set_mem_attributes in virt/kvm/kvm_main.c reserves all entries
 * before storing any), so the failed run itself needs no undo. */
static int apply(struct cvmconv *c, const struct planned *p, size_t n)
{
	uint64_t applied = 0;

	for (size_t k = 0; k < n; k++) {
		struct run_iter it;
		uint64_t gpa, end;

		runs_start(&it, c, &p[k]);
		while (runs_next(&it, &gpa, &end)) {
			int err = update_run(c, p[k].first, p[k].last, gpa, end,
					     p[k].cv->to_private, false);

			if (err) {
				if (err == -ENOTRECOVERABLE)
					return err;
				apply_failed(c, p[k].cv, gpa, end - gpa, err);
				int undo = rollback(c, p, n, applied);

				return undo ? undo : err;
			}
			applied++;
		}
	}
	return 0;
}

NOINLINE static void alloc_failed(struct cvmconv *c, const struct conversion *cv,
				  const struct region *r, uint64_t from, uint64_t to, int err)
{
	PROBE(alloc_shared_failed, r->gpa + (from << PAGE_SHIFT_4K), (to - from) << PAGE_SHIFT_4K,
	      err);
	log_guest(c, LOG_ERR,
		  "%s: allocating the shared backing of gpa 0x%llx size 0x%llx failed: %s; "
		  "rolling back",
		  cv->source, (unsigned long long)(r->gpa + (from << PAGE_SHIFT_4K)),
		  (unsigned long long)((to - from) << PAGE_SHIFT_4K), strerror(-err));
}

/* Region pieces of the runs of p[0..n) turning shared in ALLOC_SHARED
 * regions, in order; @fn is called on each until it returns non-zero, at
 * most @limit pieces. Returns the pieces visited (the failing one
 * included) and the error in *err. */
static uint64_t alloc_pieces(struct cvmconv *c, const struct planned *p, size_t n, uint64_t limit,
			     bool undo, int *err)
{
	uint64_t visited = 0;

	*err = 0;
	for (size_t k = 0; k < n; k++) {
		struct run_iter it;
		uint64_t gpa, end;

		if (p[k].cv->to_private)
			continue;
		runs_start(&it, c, &p[k]);
		while (runs_next(&it, &gpa, &end)) {
			for (uint32_t i = p[k].first; i <= p[k].last; i++) {
				struct region *r = c->regions[i];
				uint64_t from, to;

				if (end <= r->gpa)
					break;
				if (gpa >= r->gpa + r->size || !r->alloc_shared)
					continue;
				if (visited == limit)
					return visited;
				run_clip(r, gpa, end, &from, &to);
				visited++;
				if (undo) {
					backing_unallocate_shared(c, r, from, to);
					continue;
				}
				*err = backing_allocate_shared(c, r, from, to);
				if (*err) {
					alloc_failed(c, p[k].cv, r, from, to, *err);
					return visited;
				}
			}
		}
	}
	return visited;
}

static bool wants_alloc(struct cvmconv *c, const struct planned *p, size_t n)
{
	for (size_t k = 0; k < n; k++)
		for (uint32_t i = p[k].first; !p[k].cv->to_private && i <= p[k].last; i++)
			if (c->regions[i]->alloc_shared)
				return true;
	return false;
}

/* CVMCONV_REGION_ALLOC_SHARED, before apply(): allocate the shared backing
 * of what is to turn shared while it is still private. On failure nothing
 * has reached KVM, and what the allocation got is punched again (the pages
 * are private: only stale memory is). Allocating after the attribute
 * update, as before, needed a rollback to private on failure, and that
 * update allocates too (xa_reserve in virt/kvm/kvm_main.c
 * kvm_vm_set_mem_attributes): under the memory pressure that made the
 * allocation fail, the rollback failed as well and broke the context
 * (measured with the real kernel's fault injection in the lab,
 * tests/lab/lab_kernel_faults.c). */
NOINLINE static int allocate_shared(struct cvmconv *c, const struct planned *p, size_t n)
{
	uint64_t pieces;
	int err, unused;

	pieces = alloc_pieces(c, p, n, UINT64_MAX, false, &err);
	if (!err)
		return 0;
	COUNT(c, shared_alloc_failures, 1);
	alloc_pieces(c, p, n, pieces, true, &unused);
	for (uint32_t i = p[0].first; i <= p[n - 1].last; i++)
		backing_note_pending(c, c->regions[i]);
	stats_update_peak(c);
	return err;
}

/* The attribute update failed after allocate_shared() and was rolled
 * back: the pages are private again, what was allocated for them is
 * stale and punched. Not after a failed rollback: attributes unknown. */
NOINLINE static void unallocate_shared(struct cvmconv *c, const struct planned *p, size_t n)
{
	int unused;

	alloc_pieces(c, p, n, UINT64_MAX, true, &unused);
	for (uint32_t i = p[0].first; i <= p[n - 1].last; i++)
		backing_note_pending(c, c->regions[i]);
	stats_update_peak(c);
}

/* Listeners: every "before" a listener got is answered by exactly one
 * "after" with 0 (done) or -ECANCELED (vetoed or failed). */
static void notify_after(struct cvmconv *c, const struct planned *p, size_t n, int result,
			 size_t stop_req, uint64_t stop_run, unsigned stop_listener)
{
	for (size_t k = 0; k < n && k <= stop_req; k++) {
		struct run_iter it;
		uint64_t gpa, end, run = 0;

		runs_start(&it, c, &p[k]);
		while (runs_next(&it, &gpa, &end)) {
			bool last_run = k == stop_req && run == stop_run;

			for (unsigned l = 0; l < c->nlisteners; l++) {
				if (last_run && l >= stop_listener)
					break;
				if (c->listeners[l].after)
					c->listeners[l].after(c->listeners[l].opaque, gpa,
							      end - gpa, p[k].cv->to_private,
							      result);
			}
			if (last_run)
				return;
			run++;
		}
	}
}

/* Returns true when every listener accepted every run. */
static bool notify_before(struct cvmconv *c, const struct planned *p, size_t n)
{
	if (!c->nlisteners)
		return true;
	for (size_t k = 0; k < n; k++) {
		struct run_iter it;
		uint64_t gpa, end, run = 0;

		runs_start(&it, c, &p[k]);
		while (runs_next(&it, &gpa, &end)) {
			for (unsigned l = 0; l < c->nlisteners; l++) {
				const struct cvmconv_listener *li = &c->listeners[l];

				if (li->before &&
				    li->before(li->opaque, gpa, end - gpa, p[k].cv->to_private)) {
					log_guest(c, LOG_NOTICE,
						  "%s: listener %u vetoed gpa 0x%llx size 0x%llx",
						  p[k].cv->source, l, (unsigned long long)gpa,
						  (unsigned long long)(end - gpa));
					notify_after(c, p, n, -ECANCELED, k, run, l);
					return false;
				}
			}
			run++;
		}
	}
	return true;
}

/* Tracker and backings follow the kernel, run by run; each run's listeners
 * hear "after" once its stale side is released. Committing a run does not
 * change how later runs are found: the walk resumes after it. */
static void commit(struct cvmconv *c, const struct planned *p, size_t n)
{
	bool any = false;

	for (size_t k = 0; k < n; k++) {
		const struct conversion *cv = p[k].cv;
		struct run_iter it;
		uint64_t gpa, end, changed = 0;

		runs_start(&it, c, &p[k]);
		while (runs_next(&it, &gpa, &end)) {
			for (uint32_t i = p[k].first; i <= p[k].last; i++) {
				struct region *r = c->regions[i];
				uint64_t from, to;

				if (end <= r->gpa)
					break;
				if (gpa >= r->gpa + r->size)
					continue;
				run_clip(r, gpa, end, &from, &to);
				r->steps++;
				tracker_set(&r->tr, from, to, cv->to_private);
				backing_release_stale(c, r, from, to, cv->to_private);
			}
			changed += end - gpa;
			for (unsigned l = 0; l < c->nlisteners; l++)
				if (c->listeners[l].after)
					c->listeners[l].after(c->listeners[l].opaque, gpa,
							      end - gpa, cv->to_private, 0);
		}
		if (cv->to_private)
			COUNT(c, to_private_bytes, changed);
		else
			COUNT(c, to_shared_bytes, changed);
		any |= changed != 0;
	}
	/* a conversion was committed (a request already in its state is none:
	 * the memory fault guard relies on that) */
	if (any)
		atomic_fetch_add_explicit(&c->generation, 1, memory_order_relaxed);
	/* what the transaction made freeable, merged across its runs */
	for (size_t k = 0, done = 0; k < n; k++)
		for (uint32_t i = p[k].first; i <= p[k].last; i++)
			if (!done || i >= done) { /* regions the requests cover, once */
				backing_commit(c, c->regions[i]);
				backing_note_pending(c, c->regions[i]);
				done = i + 1;
			}
	stats_update_peak(c);
}

NOINLINE static int refuse(struct cvmconv *c, const struct conversion *cv, const char *why,
			   int code, int *guest_err)
{
	*guest_err = code;
	PROBE(refused, cv->gpa, cv->size, why);
	if (!cv->guest)
		return code == CVMCONV_KVM_EPERM ? -EPERM : -EINVAL;
	COUNT(c, rejected, 1);
	if (cv->source && !strcmp(cv->source, "map_gpa_range"))
		log_guest(c, LOG_WARNING,
			  "refused map_gpa_range gpa 0x%llx npages 0x%llx attrs 0x%llx: %s",
			  (unsigned long long)cv->raw[0], (unsigned long long)cv->raw[1],
			  (unsigned long long)cv->raw[2], why);
	else
		log_guest(c, LOG_WARNING, "refused %s gpa 0x%llx size 0x%llx: %s", cv->source,
			  (unsigned long long)cv->gpa, (unsigned long long)cv->size, why);
	return 0;
}

/* Whether every region of [first, last] can hold private pages: it has a
 * private backing, or the VMM said it tracks attributes only. */
static bool private_backed(struct cvmconv *c, uint32_t first, uint32_t last)
{
	for (uint32_t i = first; i <= last; i++) {
		const struct region *r = c->regions[i];

		if (!r->attrs_only && !r->inplace && r->private_.fd < 0)
			return false;
	}
	return true;
}

/* Validate one request; on refusal fills *guest_err and returns false. */
static bool validate(struct cvmconv *c, const struct conversion *cv, struct planned *p, int *err,
		     int *guest_err)
{
	const char *why = cv->invalid;

	p->cv = cv;
	if (!why && (!cv->size || ((cv->gpa | cv->size) & (PAGE_4K - 1)) || cv->size > GPA_LIMIT ||
		     cv->gpa > GPA_LIMIT - cv->size))
		why = "range misaligned, empty or beyond the physical address space";
	if (!why && !runs_covering(c, cv->gpa, cv->size, &p->first, &p->last))
		why = "range not wholly inside registered guest memory";
	if (!why && cv->guest && cv->to_private && !private_backed(c, p->first, p->last))
		why = "no private backing for part of the range (region without guest_memfd)";
	if (!why && cv->guest &&
	    !policy_allows(c, cv->gpa, cv->size, cv->to_private,
			   policy_strictest(c, p->first, p->last))) {
		if (cv->by_policy)
			*cv->by_policy = true;
		why = "unaligned request refused by policy";
	}
	if (why) {
		*err = refuse(c, cv, why, CVMCONV_KVM_EINVAL, guest_err);
		return false;
	}
	return true;
}

/* Lock (or unlock) every region the requests cover, once each, in
 * ascending order: p[] is sorted by gpa, so region indices only grow. */
static void lock_regions(struct cvmconv *c, const struct planned *p, size_t n, bool take)
{
	int64_t done = -1;

	if (n == 1 && p->first == p->last) {
		if (take)
			pthread_mutex_lock(&c->regions[p->first]->lock);
		else
			pthread_mutex_unlock(&c->regions[p->first]->lock);
		return;
	}
	for (size_t k = 0; k < n; k++)
		for (uint32_t i = p[k].first; i <= p[k].last; i++)
			if ((int64_t)i > done) {
				if (take)
					pthread_mutex_lock(&c->regions[i]->lock);
				else
					pthread_mutex_unlock(&c->regions[i]->lock);
				done = i;
			}
}

/* The transaction over validated requests p[0..n) (disjoint ranges). */
NOINLINE static int transact_locked(struct cvmconv *c, struct planned *p, size_t n, int *guest_err)
{
	bool alloc;
	int err;

	/* Reserve, per region, room for every run piece a request has in it:
	 * one tracker update each, and a failed punch or a split to remember.
	 * Requests are sorted, so the requests covering region i are
	 * consecutive. */
	for (size_t k = 0; k < n; k++)
		runs_plan(c, &p[k]);
	for (uint32_t i = p[0].first; n && i <= p[n - 1].last; i++) {
		uint64_t requests = 0, runs = 0;

		for (size_t k = 0; k < n; k++) {
			if (i < p[k].first || i > p[k].last)
				continue;
			requests++;
			/* each run, plus one piece more per region a run crosses */
			runs += p[k].total + p[k].last - p[k].first + 1;
		}
		if (requests && (tracker_reserve(&c->regions[i]->tr, runs, requests) ||
				 backing_reserve(c->regions[i], runs)))
			return -ENOMEM;
	}
	if (!notify_before(c, p, n))
		return refuse(c, p[0].cv, "vetoed by a listener", CVMCONV_KVM_EPERM, guest_err);
	alloc = wants_alloc(c, p, n);
	err = alloc ? allocate_shared(c, p, n) : 0;
	if (!err) {
		err = apply(c, p, n);
		if (err && alloc && err != -ENOTRECOVERABLE)
			unallocate_shared(c, p, n);
	}
	if (err) {
		notify_after(c, p, n, -ECANCELED, SIZE_MAX, UINT64_MAX, 0);
		return err;
	}
	commit(c, p, n);
	*guest_err = 0;
	return 0;
}

/* The common request — one region, at most one run to change, no
 * listeners — through the same phases as transact_locked() without the
 * bookkeeping for many runs; the update reuses the planning descent (the
 * tracker's hint). Returns false, having changed nothing, for any other
 * request. */
static bool transact_simple(struct cvmconv *c, const struct planned *p, int *err, int *guest_err)
{
	const struct conversion *cv = p->cv;
	struct region *r = c->regions[p->first];
	uint64_t from, to, a, b, a2, b2;

	if (p->first != p->last || c->nlisteners || (r->alloc_shared && !cv->to_private))
		return false;
	run_clip(r, cv->gpa, cv->gpa + cv->size, &from, &to);
	r->steps += 2; /* the planning descent, then the update or the second look */
	if (tracker_run(&r->tr, from, to, !cv->to_private, &a, &b)) {
		if (b < to && tracker_run(&r->tr, b, to, !cv->to_private, &a2, &b2))
			return false; /* more than one run */
		if (tracker_reserve(&r->tr, 1, 1) || backing_reserve(r, 2)) {
			*err = -ENOMEM;
			return true;
		}
		*err = r->inplace ? inplace_set(c, r, a, b, cv->to_private, false)
				  : set_attributes(c, r->gpa + (a << PAGE_SHIFT_4K),
						   r->gpa + (b << PAGE_SHIFT_4K), cv->to_private);
		if (*err) {
			if (*err != -ENOTRECOVERABLE)
				apply_failed(c, cv, r->gpa + (a << PAGE_SHIFT_4K),
					     (b - a) << PAGE_SHIFT_4K, *err);
			return true;
		}
		tracker_set(&r->tr, a, b, cv->to_private);
		atomic_fetch_add_explicit(&c->generation, 1, memory_order_relaxed);
		backing_release_stale(c, r, a, b, cv->to_private);
		if (r->shared.waiting.n || r->private_.waiting.n)
			backing_commit(c, r);
		backing_note_pending(c, r);
		if (cv->to_private)
			COUNT(c, to_private_bytes, (b - a) << PAGE_SHIFT_4K);
		else
			COUNT(c, to_shared_bytes, (b - a) << PAGE_SHIFT_4K);
		stats_update_peak(c);
	}
	*err = 0;
	*guest_err = 0;
	return true;
}

/* A region of p[0..n) where a request would make live memory that
 * cvmconv_flush() is punching right now, or NULL. */
static struct region *inflight_conflict(struct cvmconv *c, const struct planned *p, size_t n)
{
	for (size_t k = 0; k < n; k++)
		for (uint32_t i = p[k].first; i <= p[k].last; i++) {
			struct region *r = c->regions[i];
			uint64_t from, to;

			if (r->shared.inflight_to == r->shared.inflight_from &&
			    r->private_.inflight_to == r->private_.inflight_from)
				continue;
			run_clip(r, p[k].cv->gpa, p[k].cv->gpa + p[k].cv->size, &from, &to);
			if (backing_inflight(r, p[k].cv->to_private, from, to))
				return r;
		}
	return NULL;
}

/* Memory about to go live must not be punched after the attribute update:
 * wait for the flush punching it (all locks given up, then taken again in
 * order). The caller plans after this, so a tracker changed meanwhile is
 * seen. */
NOINLINE static void wait_inflight(struct cvmconv *c, struct planned *p, size_t n,
				   struct region *busy)
{
	do {
		pthread_cond_wait(&busy->flushed, &busy->lock);
		lock_regions(c, p, n, false);
		lock_regions(c, p, n, true);
	} while ((busy = inflight_conflict(c, p, n)));
}

static int transact(struct cvmconv *c, struct planned *p, size_t n, int *guest_err)
{
	struct region *busy;
	int err;

	lock_regions(c, p, n, true);
	if (atomic_load_explicit(&c->inflight_sides, memory_order_relaxed) &&
	    (busy = inflight_conflict(c, p, n)))
		wait_inflight(c, p, n, busy);
	if (n != 1 || !transact_simple(c, p, &err, guest_err))
		err = transact_locked(c, p, n, guest_err);
	lock_regions(c, p, n, false);
	return err;
}

/* The path of every exit, compiled as one function (flatten): the calls
 * along it cost more than their work. */
FLATTEN int convert_request(struct cvmconv *c, const struct conversion *cv, int *guest_err)
{
	struct planned p;
	int err;

	*guest_err = CVMCONV_KVM_EFAULT;
	err = context_lock(c);
	if (err)
		return err;
	if (cv->guest)
		COUNT(c, exits, 1);
	if (validate(c, cv, &p, &err, guest_err))
		err = transact(c, &p, 1, guest_err);
	context_unlock(c);
	return err;
}

static int by_gpa(const void *a, const void *b)
{
	const struct conversion *x = a, *y = b;

	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

int cvmconv_convert_batch(struct cvmconv *c, const struct cvmconv_range *ranges, size_t n,
			  unsigned flags, uint64_t *hc_ret)
{
	bool guest = flags & CVMCONV_BATCH_GUEST;
	struct conversion *cv = NULL;
	struct planned *p = NULL;
	const char *invalid = NULL;
	size_t merged = 0;
	int guest_err = CVMCONV_KVM_EFAULT, err;

	if (!c || (flags & ~CVMCONV_BATCH_GUEST) || (guest && !hc_ret) || (n && !ranges))
		return -EINVAL;
	err = n > CVMCONV_BATCH_MAX ? -E2BIG : 0;
	if (!err && n) {
		cv = calloc(n, sizeof(*cv));
		p = calloc(n, sizeof(*p));
		if (!cv || !p)
			err = -ENOMEM;
	}
	if (err)
		goto out;
	/* Sort a copy; the ranges are disjoint, so order does not change the
	 * result, and sorted neighbours of one direction merge into one run. */
	for (size_t i = 0; i < n; i++) {
		cv[i] = (struct conversion){ ranges[i].gpa,
					     ranges[i].size,
					     ranges[i].to_private != 0,
					     guest,
					     "batch",
					     NULL,
					     { ranges[i].gpa, ranges[i].size, i },
					     NULL };
		if (ranges[i].reserved)
			invalid = "reserved field set in a batch entry";
		if (ranges[i].to_private > 1)
			invalid = "batch entry with to_private other than 0 or 1";
		/* each entry on its own, before merging can hide a bad one */
		if (!ranges[i].size || ((ranges[i].gpa | ranges[i].size) & (PAGE_4K - 1)))
			invalid = "empty or misaligned batch entry";
	}
	if (n)
		qsort(cv, n, sizeof(*cv), by_gpa);
	for (size_t i = 0; i < n; i++) {
		if (merged && cv[merged - 1].to_private == cv[i].to_private &&
		    cv[merged - 1].gpa + cv[merged - 1].size == cv[i].gpa &&
		    cv[i].size <= UINT64_MAX - cv[merged - 1].size) {
			cv[merged - 1].size += cv[i].size;
			continue;
		}
		if (merged && cv[i].gpa < cv[merged - 1].gpa + cv[merged - 1].size)
			invalid = "overlapping entries in a batch";
		cv[merged++] = cv[i];
	}

	err = context_lock(c);
	if (err)
		goto out;
	if (guest)
		COUNT(c, exits, 1);
	if (invalid) {
		err = refuse(c, &cv[0], invalid, CVMCONV_KVM_EINVAL, &guest_err);
		goto unlock;
	}
	/* the first refusal refuses the whole list */
	for (size_t i = 0; i < merged; i++)
		if (!validate(c, &cv[i], &p[i], &err, &guest_err))
			goto unlock;
	if (merged)
		err = transact(c, p, merged, &guest_err);
	else
		guest_err = 0;
unlock:
	context_unlock(c);
out:
	if (hc_ret)
		*hc_ret = (uint64_t) - (int64_t)guest_err;
	free(cv);
	free(p);
	return err;
}

int cvmconv_convert(struct cvmconv *c, uint64_t gpa, uint64_t size, bool to_private)
{
	struct conversion cv = { gpa,	    size, to_private,	    false,
				 "convert", NULL, { gpa, size, 0 }, NULL };
	int guest_err;

	if (!c)
		return -EINVAL;
	return convert_request(c, &cv, &guest_err);
}
