/* SPDX-License-Identifier: MIT */
/*
 * A set of page runs: sorted, disjoint, non-touching half-open ranges of
 * region pages in one array. A backing keeps two of them per side — the
 * stale memory waiting to be punched and the stale memory whose punch
 * failed — so that a conversion finds what concerns its own pages by
 * binary search, whatever piled up before. Room is reserved ahead
 * (runset_reserve()), so that adding or splitting a run in the middle of a
 * conversion needs no memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* First run whose end is at or after @page (so that a run ending exactly at
 * @page, which touches [page, ...), is found too). */
static uint32_t first_reaching(const struct runset *s, uint64_t page)
{
	uint32_t lo = 0, hi = s->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (s->run[mid].to < page)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int runset_reserve(struct runset *s, uint64_t extra)
{
	uint64_t need = (uint64_t)s->n + extra, cap = s->cap ? s->cap : 8;
	struct page_run *p;

	if (need > RUNSET_MAX)
		need = RUNSET_MAX; /* beyond: runset_add() refuses, the caller copes */
	if (need <= s->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	if (cap > RUNSET_MAX)
		cap = RUNSET_MAX;
	p = realloc(s->run, cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	s->run = p;
	s->cap = (uint32_t)cap;
	return 0;
}

int runset_add(struct runset *s, uint64_t from, uint64_t to)
{
	uint32_t i = first_reaching(s, from), j = i;

	/* runs i..j-1 overlap or touch [from, to): they merge into one */
	while (j < s->n && s->run[j].from <= to)
		j++;
	if (i < j) {
		for (uint32_t k = i; k < j; k++)
			s->pages -= s->run[k].to - s->run[k].from;
		if (s->run[i].from < from)
			from = s->run[i].from;
		if (s->run[j - 1].to > to)
			to = s->run[j - 1].to;
		s->run[i] = (struct page_run){ from, to };
		memmove(&s->run[i + 1], &s->run[j], (s->n - j) * sizeof(s->run[0]));
		s->n -= j - i - 1;
		s->pages += to - from;
		return 0;
	}
	if (s->n == s->cap)
		return -ENOSPC;
	if (i < s->n) /* runs mostly arrive in ascending order: appended */
		memmove(&s->run[i + 1], &s->run[i], (s->n - i) * sizeof(s->run[0]));
	s->run[i] = (struct page_run){ from, to };
	s->n++;
	s->pages += to - from;
	return 0;
}

uint64_t runset_remove(struct runset *s, uint64_t from, uint64_t to, uint64_t *lost)
{
	uint32_t i = first_reaching(s, from), j;
	uint64_t removed = 0;

	*lost = 0;
	if (i < s->n && s->run[i].to == from)
		i++; /* touches only */
	if (i == s->n || s->run[i].from >= to)
		return 0;
	if (s->run[i].from < from && s->run[i].to > to) {
		/* strictly inside one run: split it */
		if (s->n < s->cap) {
			memmove(&s->run[i + 1], &s->run[i], (s->n - i) * sizeof(s->run[0]));
			s->n++;
			s->run[i].to = from;
			s->run[i + 1].from = to;
		} else { /* no room: the part before is dropped, the caller says so */
			*lost = from - s->run[i].from;
			s->run[i].from = to;
		}
		s->pages -= to - from + *lost;
		return to - from;
	}
	if (s->run[i].from < from) { /* the first run keeps its head */
		removed += s->run[i].to - from;
		s->run[i].to = from;
		i++;
	}
	for (j = i; j < s->n && s->run[j].to <= to; j++)
		removed += s->run[j].to - s->run[j].from;
	if (j < s->n && s->run[j].from < to) { /* the last run keeps its tail */
		removed += to - s->run[j].from;
		s->run[j].from = to;
	}
	memmove(&s->run[i], &s->run[j], (s->n - j) * sizeof(s->run[0]));
	s->n -= j - i;
	s->pages -= removed;
	return removed;
}

void runset_fini(struct runset *s)
{
	free(s->run);
	memset(s, 0, sizeof(*s));
}
