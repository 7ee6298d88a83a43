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
#include <string.h>
#include <syslog.h>

#include "internal.h"

static int lock(struct cvmconv *c)
{
	pthread_mutex_lock(&c->lock);
	if (c->broken) {
		pthread_mutex_unlock(&c->lock);
		return -ENOTRECOVERABLE;
	}
	return 0;
}

/* Regions [*first, *last] cover [gpa, gpa + size) without a gap. */
static bool covering_regions(struct cvmconv *c, uint64_t gpa, uint64_t size, uint32_t *first,
			     uint32_t *last)
{
	uint64_t end = gpa + size;
	uint32_t i;
	struct region *r = context_find_region(c, gpa, &i);

	if (!r)
		return false;
	*first = i;
	while (r->gpa + r->size < end) {
		if (++i == c->nregions || c->regions[i]->gpa != r->gpa + r->size)
			return false;
		r = c->regions[i];
	}
	*last = i;
	return true;
}

/* Pages of region @r inside the request [gpa, end). */
static void clip(const struct region *r, uint64_t gpa, uint64_t end, uint64_t *from, uint64_t *to)
{
	uint64_t lo = gpa > r->gpa ? gpa : r->gpa, hi = end < r->gpa + r->size ? end : r->gpa + r->size;

	*from = (lo - r->gpa) >> PAGE_SHIFT_4K;
	*to = (hi - r->gpa) >> PAGE_SHIFT_4K;
}

/* Walks the maximal GPA runs of pages that must change, merged across
 * adjacent regions. Reads the tracker only: it yields the same runs again
 * for a rollback as long as nothing was committed. */
struct run_walk {
	struct cvmconv *c;
	uint64_t gpa, end;
	bool to_private;
	uint32_t region, last;
	uint64_t page; /* next page to look at in c->regions[region] */
};

static void walk_start(struct run_walk *w, struct cvmconv *c, const struct conversion *cv,
		       uint32_t first, uint32_t last)
{
	uint64_t to;

	*w = (struct run_walk){c, cv->gpa, cv->gpa + cv->size, cv->to_private, first, last, 0};
	clip(c->regions[first], w->gpa, w->end, &w->page, &to);
}

/* Next run within the current region, or false when the request is done. */
static bool walk_region_run(struct run_walk *w, uint64_t *run_gpa, uint64_t *run_end)
{
	while (w->region <= w->last) {
		struct region *r = w->c->regions[w->region];
		uint64_t from, to, a, b;

		clip(r, w->gpa, w->end, &from, &to);
		if (w->page < from)
			w->page = from;
		a = tracker_find(&r->tr, w->page, to, !w->to_private);
		if (a < to) {
			b = tracker_find(&r->tr, a, to, w->to_private);
			w->page = b;
			*run_gpa = r->gpa + (a << PAGE_SHIFT_4K);
			*run_end = r->gpa + (b << PAGE_SHIFT_4K);
			return true;
		}
		w->region++;
		w->page = 0;
	}
	return false;
}

static bool walk_next(struct run_walk *w, uint64_t *run_gpa, uint64_t *run_end)
{
	uint64_t g, e;

	if (!walk_region_run(w, run_gpa, run_end))
		return false;
	/* a run ending where the next region begins continues there */
	for (;;) {
		struct run_walk peek = *w;

		if (!walk_region_run(&peek, &g, &e) || g != *run_end)
			return true;
		*run_end = e;
		*w = peek;
	}
}

static int set_attributes(struct cvmconv *c, uint64_t gpa, uint64_t end, bool private)
{
	c->n.attr_updates++;
	return op_set_memory_attributes(c, gpa, end - gpa, private ? CVMCONV_ATTR_PRIVATE : 0);
}

/* Apply every run; on failure set back the runs already applied. A failed
 * KVM_SET_MEMORY_ATTRIBUTES changes nothing (kvm_vm_set_mem_attributes in
 * virt/kvm/kvm_main.c reserves all entries before storing any), so the
 * failed run itself needs no undo. */
static int apply(struct cvmconv *c, const struct conversion *cv, uint32_t first, uint32_t last)
{
	struct run_walk w;
	uint64_t gpa, end, applied = 0;
	int err = 0;

	walk_start(&w, c, cv, first, last);
	while (walk_next(&w, &gpa, &end)) {
		err = set_attributes(c, gpa, end, cv->to_private);
		if (err)
			break;
		applied++;
	}
	if (!err)
		return 0;
	log_msg(c, LOG_ERR, "%s: attribute update gpa 0x%llx size 0x%llx failed: %s; rolling back",
		cv->source, (unsigned long long)gpa, (unsigned long long)(end - gpa), strerror(-err));
	walk_start(&w, c, cv, first, last);
	while (applied-- && walk_next(&w, &gpa, &end)) {
		int ret = set_attributes(c, gpa, end, !cv->to_private);

		if (ret) {
			c->broken = true;
			log_msg(c, LOG_CRIT,
				"%s: rollback of gpa 0x%llx size 0x%llx failed: %s; attributes no longer "
				"known, the VM must be stopped",
				cv->source, (unsigned long long)gpa, (unsigned long long)(end - gpa),
				strerror(-ret));
			return -ENOTRECOVERABLE;
		}
	}
	return err;
}

/* Tracker and backings follow the kernel, run by run. Committing run k does
 * not change how later runs are found: the search resumes after it. */
static uint64_t commit(struct cvmconv *c, const struct conversion *cv, uint32_t first,
		       uint32_t last)
{
	uint64_t changed = 0;

	for (uint32_t i = first; i <= last; i++) {
		struct region *r = c->regions[i];
		uint64_t p, to;

		clip(r, cv->gpa, cv->gpa + cv->size, &p, &to);
		while ((p = tracker_find(&r->tr, p, to, !cv->to_private)) < to) {
			uint64_t b = tracker_find(&r->tr, p, to, cv->to_private);

			tracker_set(&r->tr, p, b, cv->to_private);
			backing_release_stale(c, r, p, b, cv->to_private);
			changed += b - p;
			p = b;
		}
	}
	return changed << PAGE_SHIFT_4K;
}

static int refuse(struct cvmconv *c, const struct conversion *cv, const char *why, int *guest_err)
{
	*guest_err = CVMCONV_KVM_EINVAL;
	if (!cv->guest)
		return -EINVAL;
	c->n.rejected++;
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

int convert_request(struct cvmconv *c, const struct conversion *cv, int *guest_err)
{
	uint32_t first, last;
	uint64_t changed;
	int err;

	*guest_err = CVMCONV_KVM_EFAULT;
	err = lock(c);
	if (err)
		return err;
	if (cv->guest)
		c->n.exits++;
	if (cv->invalid) {
		err = refuse(c, cv, cv->invalid, guest_err);
		goto out;
	}
	if (!cv->size || ((cv->gpa | cv->size) & (PAGE_4K - 1)) || cv->size > GPA_LIMIT ||
	    cv->gpa > GPA_LIMIT - cv->size) {
		err = refuse(c, cv, "range misaligned, empty or beyond the physical address space",
			     guest_err);
		goto out;
	}
	if (!covering_regions(c, cv->gpa, cv->size, &first, &last)) {
		err = refuse(c, cv, "range not wholly inside registered guest memory", guest_err);
		goto out;
	}
	if (cv->guest && !policy_allows(c, cv->gpa, cv->size, cv->to_private,
					policy_strictest(c, first, last))) {
		if (cv->by_policy)
			*cv->by_policy = true;
		err = refuse(c, cv, "unaligned request refused by policy", guest_err);
		goto out;
	}
	/* only the request's two edge extents can become mixed */
	if (tracker_reserve(&c->regions[first]->tr, 2) || tracker_reserve(&c->regions[last]->tr, 2)) {
		err = -ENOMEM;
		goto out;
	}
	err = apply(c, cv, first, last);
	if (err)
		goto out;
	changed = commit(c, cv, first, last);
	if (cv->to_private)
		c->n.to_private_bytes += changed;
	else
		c->n.to_shared_bytes += changed;
	stats_update_peak(c);
	*guest_err = 0;
out:
	pthread_mutex_unlock(&c->lock);
	return err;
}

int cvmconv_convert(struct cvmconv *c, uint64_t gpa, uint64_t size, bool to_private)
{
	struct conversion cv = {gpa, size, to_private, false, "convert", NULL, {gpa, size, 0}, NULL};
	int guest_err;

	if (!c)
		return -EINVAL;
	return convert_request(c, &cv, &guest_err);
}

int cvmconv_flush(struct cvmconv *c)
{
	int err, last_err = 0;

	if (!c)
		return -EINVAL;
	err = lock(c);
	if (err)
		return err;
	for (uint32_t i = 0; i < c->nregions; i++) {
		err = backing_flush(c, c->regions[i]);
		if (err)
			last_err = err;
	}
	pthread_mutex_unlock(&c->lock);
	return last_err;
}
