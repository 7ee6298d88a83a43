/* SPDX-License-Identifier: MIT */
/*
 * The extent tracker: which 4 KiB pages of a region are private.
 *
 * Memory follows the number of state boundaries, not the size of the guest:
 * the private pages are kept as maximal runs [start, end) in a treap ordered
 * by start, each node also holding the number of private pages in its
 * subtree, so "which page next", "how many private pages in [a, b)" and an
 * update are O(log runs). A 16 TiB guest that is all shared or all private
 * costs one node or none.
 *
 * Extents are the 2 MiB frames of guest physical address space (the size of
 * an x86 EPT/NPT large page: a frame whose pages disagree is "mixed" and KVM
 * must map it with 4 KiB pages, see hugepage_has_attrs in
 * arch/x86/kvm/mmu/mmu.c). An extent is mixed exactly when a run boundary
 * lies strictly inside it, so a small hash from extent to the number of
 * such boundaries gives the mixed count in O(1).
 *
 * Pages are region-relative indices.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define EMPTY_SLOT UINT64_MAX
#define FREE_NODES_KEPT 64

struct run_node {
	uint64_t start, end; /* private pages [start, end) */
	uint64_t sum;	     /* private pages in this subtree */
	struct run_node *l, *r;
	uint32_t prio;
};

struct boundary_slot {
	uint64_t extent; /* EMPTY_SLOT = free */
	uint64_t count;	 /* run boundaries strictly inside the extent */
};

/* ---- treap ---- */

static uint64_t sum_of(const struct run_node *n)
{
	return n ? n->sum : 0;
}

static void update(struct run_node *n)
{
	n->sum = (n->end - n->start) + sum_of(n->l) + sum_of(n->r);
}

/* a: nodes with start < key; b: the rest */
static void split(struct run_node *t, uint64_t key, struct run_node **a, struct run_node **b)
{
	if (!t) {
		*a = *b = NULL;
	} else if (t->start < key) {
		split(t->r, key, &t->r, b);
		update(t);
		*a = t;
	} else {
		split(t->l, key, a, &t->l);
		update(t);
		*b = t;
	}
}

/* every start in a is below every start in b */
static struct run_node *merge(struct run_node *a, struct run_node *b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	if (a->prio > b->prio) {
		a->r = merge(a->r, b);
		update(a);
		return a;
	}
	b->l = merge(a, b->l);
	update(b);
	return b;
}

static struct run_node *peek_max(struct run_node *t)
{
	while (t && t->r)
		t = t->r;
	return t;
}

static struct run_node *peek_min(struct run_node *t)
{
	while (t && t->l)
		t = t->l;
	return t;
}

static struct run_node *pop_max(struct run_node *t)
{
	if (!t->r)
		return t->l;
	t->r = pop_max(t->r);
	update(t);
	return t;
}

static struct run_node *pop_min(struct run_node *t)
{
	if (!t->l)
		return t->r;
	t->l = pop_min(t->l);
	update(t);
	return t;
}

/* ---- boundaries -> mixed extents ---- */

static uint64_t extent_of(const struct tracker *t, uint64_t p)
{
	return ((t->gpa >> PAGE_SHIFT_4K) + p) / PAGES_PER_EXTENT - t->first_extent;
}

static bool interior(const struct tracker *t, uint64_t p)
{
	return p > 0 && p < t->npages && ((t->gpa >> PAGE_SHIFT_4K) + p) % PAGES_PER_EXTENT;
}

static uint64_t slot_home(uint64_t extent, uint64_t cap)
{
	return ((extent * 0x9E3779B97F4A7C15ULL) >> 17) & (cap - 1);
}

static struct boundary_slot *slot_find(const struct tracker *t, uint64_t e)
{
	if (!t->bcap)
		return NULL;
	for (uint64_t i = slot_home(e, t->bcap);; i = (i + 1) & (t->bcap - 1)) {
		if (t->bslots[i].extent == e)
			return &t->bslots[i];
		if (t->bslots[i].extent == EMPTY_SLOT)
			return NULL;
	}
}

/* Linear probing, deletion by shifting later entries back (no tombstones:
 * probe lengths stay bounded however long the VM runs). */
static void slot_remove(struct tracker *t, struct boundary_slot *s)
{
	uint64_t mask = t->bcap - 1, hole = (uint64_t)(s - t->bslots);

	for (uint64_t i = (hole + 1) & mask; t->bslots[i].extent != EMPTY_SLOT;
	     i = (i + 1) & mask) {
		uint64_t home = slot_home(t->bslots[i].extent, t->bcap);
		bool stays = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);

		if (!stays) {
			t->bslots[hole] = t->bslots[i];
			hole = i;
		}
	}
	t->bslots[hole].extent = EMPTY_SLOT;
	t->bcount--;
}

static void slot_insert(struct tracker *t, uint64_t e, uint64_t count)
{
	uint64_t i = slot_home(e, t->bcap);

	while (t->bslots[i].extent != EMPTY_SLOT)
		i = (i + 1) & (t->bcap - 1);
	t->bslots[i].extent = e;
	t->bslots[i].count = count;
	t->bcount++;
}

static void boundary(struct tracker *t, uint64_t p, bool add)
{
	struct boundary_slot *s;
	uint64_t e;

	if (!interior(t, p))
		return;
	e = extent_of(t, p);
	s = slot_find(t, e);
	if (add) {
		if (s)
			s->count++;
		else
			slot_insert(t, e, 1); /* room guaranteed by tracker_reserve() */
	} else if (s && --s->count == 0) {
		slot_remove(t, s);
	}
}

/* ---- nodes ---- */

static struct run_node *node_get(struct tracker *t, uint64_t start, uint64_t end)
{
	struct run_node *n = t->free_nodes; /* tracker_reserve() filled it */

	t->free_nodes = n->l;
	t->nfree--;
	t->prio = t->prio * 1103515245u + 12345u;
	*n = (struct run_node){ start, end, end - start, NULL, NULL, t->prio ^ (t->prio >> 16) };
	boundary(t, start, true);
	boundary(t, end, true);
	return n;
}

static void node_put(struct tracker *t, struct run_node *n)
{
	boundary(t, n->start, false);
	boundary(t, n->end, false);
	n->l = t->free_nodes;
	t->free_nodes = n;
	t->nfree++;
}

static void tree_put(struct tracker *t, struct run_node *n)
{
	if (!n)
		return;
	tree_put(t, n->l);
	tree_put(t, n->r);
	node_put(t, n);
}

static void tree_free(struct run_node *n)
{
	if (!n)
		return;
	tree_free(n->l);
	tree_free(n->r);
	free(n);
}

int tracker_reserve(struct tracker *t, uint64_t extra)
{
	uint64_t need = t->bcount + 2 * extra, cap = t->bcap ? t->bcap : 8;

	while (t->nfree < extra) {
		struct run_node *n = malloc(sizeof(*n));

		if (!n)
			return -ENOMEM;
		t->nodes_allocated++;
		n->l = t->free_nodes;
		t->free_nodes = n;
		t->nfree++;
	}
	while (t->nfree > FREE_NODES_KEPT) {
		struct run_node *n = t->free_nodes;

		t->free_nodes = n->l;
		t->nfree--;
		t->nodes_allocated--;
		free(n);
	}
	while (need * 2 > cap)
		cap *= 2;
	if (cap != t->bcap) {
		struct boundary_slot *old = t->bslots, *fresh = malloc(cap * sizeof(*fresh));
		uint64_t old_cap = t->bcap;

		if (!fresh)
			return -ENOMEM;
		for (uint64_t i = 0; i < cap; i++)
			fresh[i].extent = EMPTY_SLOT;
		t->bslots = fresh;
		t->bcap = cap;
		t->bcount = 0;
		for (uint64_t i = 0; i < old_cap; i++)
			if (old[i].extent != EMPTY_SLOT)
				slot_insert(t, old[i].extent, old[i].count);
		free(old);
	}
	return 0;
}

/* ---- the tracker interface ---- */

int tracker_init(struct tracker *t, uint64_t gpa, uint64_t size, bool private)
{
	memset(t, 0, sizeof(*t));
	t->gpa = gpa;
	t->npages = size >> PAGE_SHIFT_4K;
	t->first_extent = gpa >> EXTENT_SHIFT;
	t->nextents = ((gpa + size - 1) >> EXTENT_SHIFT) - t->first_extent + 1;
	t->prio = (uint32_t)(gpa >> PAGE_SHIFT_4K) * 2654435761u + 1;
	if (tracker_reserve(t, 2))
		return -ENOMEM;
	if (private)
		t->root = node_get(t, 0, t->npages);
	return 0;
}

void tracker_fini(struct tracker *t)
{
	tree_free(t->root);
	while (t->free_nodes) {
		struct run_node *n = t->free_nodes;

		t->free_nodes = n->l;
		free(n);
	}
	free(t->bslots);
	memset(t, 0, sizeof(*t));
}

bool tracker_page_private(const struct tracker *t, uint64_t p)
{
	for (const struct run_node *n = t->root; n;) {
		if (p < n->start)
			n = n->l;
		else if (p >= n->end)
			n = n->r;
		else
			return true;
	}
	return false;
}

uint64_t tracker_find(const struct tracker *t, uint64_t from, uint64_t to, bool private)
{
	const struct run_node *best = NULL;

	if (from >= to)
		return to;
	/* the first run ending after @from (starts and ends are in one order) */
	for (const struct run_node *n = t->root; n;) {
		if (n->end > from) {
			best = n;
			n = n->l;
		} else {
			n = n->r;
		}
	}
	if (private) {
		uint64_t s = best ? (best->start > from ? best->start : from) : to;
		return s < to ? s : to;
	}
	/* runs are maximal, so a run's end is a shared page (or the end) */
	if (best && best->start <= from)
		return best->end < to ? best->end : to;
	return from;
}

/* private pages below page @x */
static uint64_t prefix(const struct tracker *t, uint64_t x)
{
	uint64_t acc = 0;

	for (const struct run_node *n = t->root; n;) {
		if (x <= n->start) {
			n = n->l;
			continue;
		}
		acc += sum_of(n->l) + ((x < n->end ? x : n->end) - n->start);
		if (x < n->end)
			break;
		n = n->r;
	}
	return acc;
}

uint64_t tracker_count_private(const struct tracker *t, uint64_t from, uint64_t to)
{
	return from < to ? prefix(t, to) - prefix(t, from) : 0;
}

void tracker_set(struct tracker *t, uint64_t from, uint64_t to, bool private)
{
	struct run_node *a, *b, *m, *c, *n;

	if (from >= to)
		return;
	split(t->root, from, &a, &b); /* a: start < from */
	split(b, to, &m, &c);	      /* m: from <= start < to; c: start >= to */

	if (private) {
		uint64_t start = from, end = to;

		n = peek_max(a);
		if (n && n->end >= from) { /* overlaps or touches: absorb */
			start = n->start;
			end = n->end > end ? n->end : end;
			a = pop_max(a);
			node_put(t, n);
		}
		n = peek_max(m);
		if (n && n->end > end)
			end = n->end;
		tree_put(t, m);
		n = peek_min(c);
		if (n && n->start == end) {
			end = n->end;
			c = pop_min(c);
			node_put(t, n);
		}
		t->root = merge(merge(a, node_get(t, start, end)), c);
		return;
	}

	n = peek_max(a);
	if (n && n->end > from) { /* cut [from, ...) out of it */
		uint64_t old_end = n->end;

		a = pop_max(a);
		node_put(t, n);
		a = merge(a, node_get(t, n->start, from));
		if (old_end > to)
			c = merge(node_get(t, to, old_end), c);
	}
	n = peek_max(m);
	if (n && n->end > to)
		c = merge(node_get(t, to, n->end), c);
	tree_put(t, m);
	t->root = merge(a, c);
}

uint64_t tracker_private_pages(const struct tracker *t)
{
	return sum_of(t->root);
}

uint64_t tracker_mixed(const struct tracker *t)
{
	return t->bcount;
}

uint64_t tracker_uniform_full_extents(const struct tracker *t)
{
	/* Interior extents are always whole; only the first and last may be
	 * partial (region not 2 MiB aligned), and those never count. */
	uint64_t first = t->gpa >> PAGE_SHIFT_4K, last = first + t->npages;
	uint64_t whole = 0, partial_mixed = 0, edges[2] = { 0, t->nextents - 1 };

	for (unsigned i = 0; i < (t->nextents > 1 ? 2u : 1u); i++) {
		uint64_t e = t->first_extent + edges[i];
		uint64_t lo = e * PAGES_PER_EXTENT, hi = lo + PAGES_PER_EXTENT;

		if (lo >= first && hi <= last)
			whole++;
		else if (slot_find(t, edges[i]))
			partial_mixed++;
	}
	whole += t->nextents > 2 ? t->nextents - 2 : 0;
	return whole - (t->bcount - partial_mixed);
}

uint64_t tracker_heap_bytes(const struct tracker *t)
{
	return t->nodes_allocated * sizeof(struct run_node) +
	       t->bcap * sizeof(struct boundary_slot);
}
