/* SPDX-License-Identifier: MIT */
/*
 * Reading the library's view of guest memory: the state of one page, and
 * the maximal runs of one state over a range (for a device attached after
 * boot, a snapshot, a migration). Runs come from the extent tracker, so the
 * work is proportional to the runs, not the pages.
 */
#include <errno.h>

#include "internal.h"

int query_runs(struct cvmconv *c, uint64_t gpa, uint64_t end, query_cb cb, void *opaque)
{
	uint64_t run_gpa = 0, run_end = 0;
	bool run_private = false, have = false;
	uint32_t i;
	int ret = 0;

	context_find_region(c, gpa, &i); /* the first region ending above gpa */
	for (; i < c->nregions && !ret; i++) {
		struct region *r = c->regions[i];
		uint64_t from, to, a, b;
		bool state;

		if (r->gpa >= end)
			break;
		from = gpa > r->gpa ? (gpa - r->gpa) >> PAGE_SHIFT_4K : 0;
		to = end < r->gpa + r->size ? (end - r->gpa) >> PAGE_SHIFT_4K : r->npages;
		pthread_mutex_lock(&r->lock);
		/* a region's runs alternate; the first state is its first page's */
		state = tracker_page_private(&r->tr, from);
		for (uint64_t p = from; p < to && !ret; p = b, state = !state) {
			if (!tracker_run(&r->tr, p, to, state, &a, &b))
				break; /* cannot happen: p itself is in @state */
			a = r->gpa + (a << PAGE_SHIFT_4K);
			/* a run continues one of the same state that ends here
			 * (the previous region, adjacent) */
			if (have && run_private == state && run_end == a) {
				run_end = r->gpa + (b << PAGE_SHIFT_4K);
				continue;
			}
			/* the callback runs under the region's lock: like a
			 * listener, it must not call back into the library */
			if (have)
				ret = cb(opaque, run_gpa, run_end - run_gpa, run_private);
			run_gpa = a;
			run_end = r->gpa + (b << PAGE_SHIFT_4K);
			run_private = state;
			have = true;
		}
		pthread_mutex_unlock(&r->lock);
	}
	if (have && !ret)
		ret = cb(opaque, run_gpa, run_end - run_gpa, run_private);
	return ret;
}

int cvmconv_for_each_range(struct cvmconv *c, uint64_t gpa, uint64_t size, query_cb cb,
			   void *opaque)
{
	int ret;

	if (!c || !cb || !size || ((gpa | size) & (PAGE_4K - 1)) || gpa + size < gpa)
		return -EINVAL;
	regions_read_lock(&c->regions_lock);
	ret = query_runs(c, gpa, gpa + size, cb, opaque);
	regions_read_unlock(&c->regions_lock);
	return ret;
}
