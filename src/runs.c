/* SPDX-License-Identifier: MIT */
/*
 * The runs of a request, read from the extent tracker: which regions cover
 * it, the maximal runs of pages that must change (merged across adjacent
 * regions, walked again or kept in a plan), and the kernel pieces a run is
 * cut into where an in-place region begins or ends. Reads only: convert.c
 * decides what to do with them.
 */
#include "internal.h"

/* Regions [*first, *last] cover [gpa, gpa + size) without a gap. */
bool runs_covering(struct cvmconv *c, uint64_t gpa, uint64_t size, uint32_t *first, uint32_t *last)
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
void run_clip(const struct region *r, uint64_t gpa, uint64_t end, uint64_t *from, uint64_t *to)
{
	uint64_t lo = gpa > r->gpa ? gpa : r->gpa,
		 hi = end < r->gpa + r->size ? end : r->gpa + r->size;

	*from = (lo - r->gpa) >> PAGE_SHIFT_4K;
	*to = (hi - r->gpa) >> PAGE_SHIFT_4K;
}

static void walk_start(struct run_walk *w, struct cvmconv *c, const struct conversion *cv,
		       uint32_t first, uint32_t last)
{
	uint64_t to;

	*w = (struct run_walk){ c, cv->gpa, cv->gpa + cv->size, cv->to_private, first, last, 0 };
	run_clip(c->regions[first], w->gpa, w->end, &w->page, &to);
}

/* Next run within the current region, or false when the request is done. */
static bool walk_region_run(struct run_walk *w, uint64_t *run_gpa, uint64_t *run_end)
{
	while (w->region <= w->last) {
		struct region *r = w->c->regions[w->region];
		uint64_t from, to, a, b;

		run_clip(r, w->gpa, w->end, &from, &to);
		if (w->page < from)
			w->page = from;
		r->steps++;
		if (tracker_run(&r->tr, w->page, to, !w->to_private, &a, &b)) {
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
	while (w->region < w->last &&
	       *run_end == w->c->regions[w->region]->gpa + w->c->regions[w->region]->size) {
		struct run_walk peek = *w;

		if (!walk_region_run(&peek, &g, &e) || g != *run_end)
			return true;
		*run_end = e;
		*w = peek;
	}
	return true;
}

void runs_start(struct run_iter *it, struct cvmconv *c, const struct planned *p)
{
	it->p = p;
	it->i = 0;
	if (p->walk)
		walk_start(&it->w, c, p->cv, p->first, p->last);
}

bool runs_next(struct run_iter *it, uint64_t *gpa, uint64_t *end)
{
	if (it->p->walk)
		return walk_next(&it->w, gpa, end);
	if (it->i == it->p->nruns)
		return false;
	*gpa = it->p->run[it->i].gpa;
	*end = it->p->run[it->i++].end;
	return true;
}

void runs_plan(struct cvmconv *c, struct planned *p)
{
	struct run_walk w;
	uint64_t gpa, end;

	p->nruns = 0;
	p->total = 0;
	p->walk = false;
	walk_start(&w, c, p->cv, p->first, p->last);
	while (walk_next(&w, &gpa, &end)) {
		if (p->total++ < PLANNED_RUNS) {
			p->run[p->nruns].gpa = gpa;
			p->run[p->nruns++].end = end;
		} else {
			p->walk = true; /* keep counting: the reservation needs it */
		}
	}
}

/* Next piece [*from, *to) (gpa) and its in-place region, or NULL for a
 * stretch of two-backing regions; false when the run is done. */
bool piece_next(struct piece_iter *it, uint64_t *from, uint64_t *to, struct region **inplace)
{
	*inplace = NULL;
	*from = it->pos;
	for (; it->pos < it->end && it->i <= it->last; it->i++) {
		struct region *r = it->c->regions[it->i];
		uint64_t r_end = r->gpa + r->size;

		if (r_end <= it->pos)
			continue;
		if (r->inplace) {
			if (it->pos > *from)
				break; /* the two-backing stretch before it first */
			*inplace = r;
			it->pos = r_end < it->end ? r_end : it->end;
			it->i++;
			break;
		}
		it->pos = r_end < it->end ? r_end : it->end;
	}
	*to = it->pos;
	return *to > *from;
}
