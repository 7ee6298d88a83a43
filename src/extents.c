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

/* A boundary map value: the run boundaries strictly inside the extent (high
 * half) and, while there are any, its private pages (low half). */
#define BOUND_ONE (1ULL << 32)
#define PRIV_MASK (BOUND_ONE - 1)

/* Extent of page @p, relative to the region's first extent. */
static uint64_t extent_of(const struct tracker *t, uint64_t p)
{
	return (p + t->first_offset) / PAGES_PER_EXTENT;
}

/* First region page of extent @x (0 for a first extent the region starts
 * inside of); npages for the extent after the last. */
static uint64_t extent_start(const struct tracker *t, uint64_t x)
{
	uint64_t p = x * PAGES_PER_EXTENT;

	if (p <= t->first_offset)
		return 0;
	return p - t->first_offset < t->npages ? p - t->first_offset : t->npages;
}

static bool interior(const struct tracker *t, uint64_t p)
{
	return p > 0 && p < t->npages && (p + t->first_offset) % PAGES_PER_EXTENT;
}

/* Add @delta (boundaries in the high half, pages in the low half, as one
 * two's complement sum) to extent @x; the entry goes with its last
 * boundary. An entry is only created by a delta that adds a boundary. */
static void mark(struct tracker *t, uint64_t x, uint64_t delta)
{
	uint64_t *v;

	if (!delta)
		return;
	if ((int64_t)delta > 0) {
		*u64map_insert(&t->boundaries, x) += delta; /* room: tracker_reserve() */
	} else if ((v = u64map_find(&t->boundaries, x))) {
		*v += delta;
		if (*v < BOUND_ONE)
			u64map_remove(&t->boundaries, v);
	}
}

/* What run [s, e) adds to the extents its interior ends lie in: one
 * boundary per end, and the run's private pages in that extent. So a mixed
 * extent's count is the sum over the runs with an interior end in it — all
 * its private pages, as no run can span a mixed extent whole — and its
 * entry goes when its last boundary does. */
struct marks {
	uint64_t x[2], d[2];
	unsigned n;
};

static void marks_of(const struct tracker *t, uint64_t s, uint64_t e, struct marks *m)
{
	m->n = 0;
	if (interior(t, s)) {
		uint64_t x = extent_of(t, s), lim = extent_start(t, x + 1);

		if (e < lim) { /* both ends inside x */
			m->x[0] = x;
			m->d[0] = 2 * BOUND_ONE + (e - s);
			m->n = 1;
			return;
		}
		m->x[0] = x;
		m->d[0] = BOUND_ONE + (lim - s);
		m->n = 1;
	}
	if (interior(t, e)) {
		uint64_t x = extent_of(t, e), lo = extent_start(t, x);

		m->x[m->n] = x;
		m->d[m->n++] = BOUND_ONE + (e - (s > lo ? s : lo));
	}
}

/* Replace the marks of runs old[0..nold) by those of runs new[0..nnew)
 * (pairs start, end), one map update per extent touched. Decreases go
 * first, so an entry is never added to before one that lost its last
 * boundary went. */
static void remark(struct tracker *t, const uint64_t *old, unsigned nold, const uint64_t *new,
		   unsigned nnew)
{
	uint64_t x[8], d[8];
	unsigned n = 0;

	for (unsigned i = 0; i < nold + nnew; i++) {
		const uint64_t *run = i < nold ? &old[2 * i] : &new[2 * (i - nold)];
		struct marks m;

		marks_of(t, run[0], run[1], &m);
		for (unsigned j = 0; j < m.n; j++) {
			uint64_t delta = i < nold ? -m.d[j] : m.d[j];
			unsigned k = 0;

			while (k < n && x[k] != m.x[j])
				k++;
			if (k == n) {
				x[n] = m.x[j];
				d[n++] = 0;
			}
			d[k] += delta;
		}
	}
	for (unsigned k = 0; k < n; k++)
		if ((int64_t)d[k] < 0)
			mark(t, x[k], d[k]);
	for (unsigned k = 0; k < n; k++)
		if ((int64_t)d[k] > 0)
			mark(t, x[k], d[k]);
}

/* ---- nodes ---- */

/* A node from the reserve, and back; the marks are the caller's. */
static struct run_node *node_alloc(struct tracker *t, uint64_t start, uint64_t end)
{
	struct run_node *n = t->free_nodes; /* tracker_reserve() filled it */

	t->free_nodes = n->l;
	t->nfree--;
	t->prio = t->prio * 1103515245u + 12345u;
	*n = (struct run_node){ start, end, end - start, NULL, NULL, t->prio ^ (t->prio >> 16) };
	return n;
}

static void node_free(struct tracker *t, struct run_node *n)
{
	n->l = t->free_nodes;
	t->free_nodes = n;
	t->nfree++;
}

static struct run_node *node_get(struct tracker *t, uint64_t start, uint64_t end)
{
	uint64_t run[2] = { start, end };

	remark(t, NULL, 0, run, 1);
	return node_alloc(t, start, end);
}

static void node_put(struct tracker *t, struct run_node *n)
{
	uint64_t run[2] = { n->start, n->end };

	remark(t, run, 1, NULL, 0);
	node_free(t, n);
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
	if (t->nfree >= extra && t->nfree <= FREE_NODES_KEPT &&
	    (t->boundaries.count + 2 * extra) * 2 <= t->boundaries.cap)
		return 0; /* the usual case: room already */
	while (t->nfree < extra) {
		struct run_node *n = malloc(sizeof(*n));

		if (!n)
			return -ENOMEM;
		t->nodes_allocated++;
		n->l = t->free_nodes;
		t->free_nodes = n;
		t->nfree++;
	}
	while (t->nfree > FREE_NODES_KEPT && t->nfree > extra) {
		struct run_node *n = t->free_nodes;

		t->free_nodes = n->l;
		t->nfree--;
		t->nodes_allocated--;
		free(n);
	}
	/* each new run adds at most two boundaries */
	return u64map_reserve(&t->boundaries, 2 * extra);
}

/* ---- the tracker interface ---- */

int tracker_init(struct tracker *t, uint64_t gpa, uint64_t size, bool private)
{
	memset(t, 0, sizeof(*t));
	t->gpa = gpa;
	t->npages = size >> PAGE_SHIFT_4K;
	t->first_extent = gpa >> EXTENT_SHIFT;
	t->first_offset = (gpa >> PAGE_SHIFT_4K) % PAGES_PER_EXTENT;
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
	u64map_fini(&t->boundaries);
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

uint64_t tracker_count_private(const struct tracker *t, uint64_t from, uint64_t to, int uniform)
{
	uint64_t x;

	if (from >= to)
		return 0;
	x = extent_of(t, from);
	if (x == extent_of(t, to - 1)) {
		/* within one extent: its count if mixed, else its one state */
		const uint64_t *v = u64map_find(&t->boundaries, x);

		if (!v) {
			if (uniform < 0)
				uniform = tracker_page_private(t, from);
			return uniform ? to - from : 0;
		}
		if (from == extent_start(t, x) && to == extent_start(t, x + 1))
			return *v & PRIV_MASK;
	}
	return prefix(t, to) - prefix(t, from);
}

/* The general case: cut the treap around [from, to), rebuild, join. */
static void set_general(struct tracker *t, uint64_t from, uint64_t to, bool private)
{
	struct run_node *a, *b, *m, *c, *n;

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

/* ---- in-place updates: the common cases without cutting the treap ---- */

/* Descend to the node that starts at @key, adding @delta to the page count
 * of every subtree on the way (the node's own included); returns its link. */
static struct run_node **path_adjust(struct tracker *t, uint64_t key, int64_t delta)
{
	struct run_node **link = &t->root;

	for (;;) {
		(*link)->sum += (uint64_t)delta;
		if ((*link)->start == key)
			return link;
		link = key < (*link)->start ? &(*link)->l : &(*link)->r;
	}
}

/* The tree side of an update; tracker_set() does the marks, once for the
 * whole update. Give node @n the range [start, end). No other run may
 * start between the old and the new start, so the order is unchanged. */
static void node_resize(struct tracker *t, struct run_node *n, uint64_t start, uint64_t end)
{
	path_adjust(t, n->start, (int64_t)(end - start) - (int64_t)(n->end - n->start));
	n->start = start;
	n->end = end;
}

static void node_delete(struct tracker *t, struct run_node *n)
{
	struct run_node **link = path_adjust(t, n->start, -(int64_t)(n->end - n->start));

	*link = merge(n->l, n->r);
	node_free(t, n);
}

/* Insert [start, end), which overlaps and touches no run. */
static void node_insert(struct tracker *t, uint64_t start, uint64_t end)
{
	struct run_node *n = node_alloc(t, start, end), **link = &t->root;

	while (*link && (*link)->prio > n->prio) {
		(*link)->sum += end - start;
		link = start < (*link)->start ? &(*link)->l : &(*link)->r;
	}
	split(*link, start, &n->l, &n->r);
	update(n);
	*link = n;
}

/* The first run ending at or after page @x, and (if @succ) the run after
 * it: the lowest ancestor the descent turned left at, unless it has a right
 * subtree. */
static struct run_node *first_ending_from(const struct tracker *t, uint64_t x,
					  struct run_node **succ)
{
	struct run_node *best = NULL, *after = NULL;

	for (struct run_node *n = t->root; n;) {
		if (n->end >= x) {
			after = best;
			best = n;
			n = n->l;
		} else {
			n = n->r;
		}
	}
	if (succ) {
		if (best && best->r) {
			after = best->r;
			while (after->l)
				after = after->l;
		}
		*succ = after;
	}
	return best;
}

bool tracker_run(struct tracker *t, uint64_t from, uint64_t to, bool private, uint64_t *a,
		 uint64_t *b)
{
	struct run_node *n, *next;

	if (from >= to)
		return false;
	n = first_ending_from(t, from, &next);
	t->hint.n = n;
	t->hint.next = next;
	t->hint.x = from;
	t->hint.valid = true;
	if (n && n->end == from) { /* touches @from: the runs after it count */
		n = next;
		next = NULL; /* not needed below: n->start > from */
	}
	if (private) {
		if (!n || n->start >= to)
			return false;
		*a = n->start > from ? n->start : from;
		*b = n->end < to ? n->end : to;
		return true;
	}
	if (n && n->start <= from) { /* @from is private: shared from its run's end */
		if (n->end >= to)
			return false;
		*a = n->end;
		*b = next && next->start < to ? next->start : to;
		return true;
	}
	*a = from;
	*b = n && n->start < to ? n->start : to;
	return true;
}

/* first_ending_from(t, x, next), from the hint when it holds: every run
 * before the hint's lies wholly below hint.x <= x. */
static struct run_node *locate(struct tracker *t, uint64_t x, struct run_node **next)
{
	if (t->hint.valid && t->hint.x <= x && (!t->hint.n || t->hint.n->end >= x)) {
		*next = t->hint.next;
		return t->hint.n;
	}
	return first_ending_from(t, x, next);
}

/* The marks after every page of [from, to) changed to @private, which
 * the simple cases of tracker_set() know in O(1): @left_same, whether page
 * from - 1 is in that state (so the boundary at @from goes, else one comes),
 * and @right_same, the same for page @to; old[0..nold) and new[0..nnew) are
 * the runs replaced and their replacements, for the general way.
 * - Neither end interior to an extent: no boundary inside an extent comes
 *   or goes, and pages change in whole extents, uniform before and after:
 *   nothing changes (the 2 MiB conversions).
 * - Both ends in one extent: only its entry changes, by the boundaries at
 *   the two ends and the pages; an extent uniform before starts from its
 *   old state (the 4 KiB conversions).
 * - Otherwise remark(). */
static void set_marks(struct tracker *t, uint64_t from, uint64_t to, bool private, bool left_same,
		      bool right_same, const uint64_t *old, unsigned nold, const uint64_t *new,
		      unsigned nnew)
{
	bool in_from = interior(t, from), in_to = interior(t, to);
	uint64_t x = extent_of(t, from), *v;
	int64_t bounds = 0;

	if (!in_from && !in_to)
		return;
	if (x != extent_of(t, to - 1)) {
		remark(t, old, nold, new, nnew);
		return;
	}
	if (in_from)
		bounds += left_same ? -1 : 1;
	if (in_to)
		bounds += right_same ? -1 : 1;
	v = u64map_find(&t->boundaries, x);
	if (!v) {				      /* uniform in the old state until now */
		v = u64map_insert(&t->boundaries, x); /* room: tracker_reserve() */
		*v = private ? 0 : extent_start(t, x + 1) - extent_start(t, x);
	}
	*v += (uint64_t)bounds * BOUND_ONE;
	*v = private ? *v + (to - from) : *v - (to - from);
	if (*v < BOUND_ONE)
		u64map_remove(&t->boundaries, v);
}

void tracker_set(struct tracker *t, uint64_t from, uint64_t to, bool private)
{
	struct run_node *n, *next;
	uint64_t old[4], new[4];

	if (from >= to)
		return;
	/* the hint is used once, below, before anything changes */
	if (private) {
		/* runs touching or overlapping [from, to] */
		n = locate(t, from, &next);
		t->hint.valid = false;
		if (!n || n->start > to) {
			new[0] = from;
			new[1] = to;
			set_marks(t, from, to, true, false, false, NULL, 0, new, 1);
			node_insert(t, from, to);
			return;
		}
		new[0] = n->start < from ? n->start : from;
		old[0] = n->start;
		old[1] = n->end;
		if (!next || next->start > to) {
			new[1] = n->end > to ? n->end : to;
			set_marks(t, from, to, true, n->end == from, n->start == to, old, 1, new,
				  1);
			node_resize(t, n, new[0], new[1]);
			return;
		}
		/* bridging two runs; a third would start beyond next's end */
		if (next->end >= to) {
			new[1] = next->end;
			old[2] = next->start;
			old[3] = next->end;
			set_marks(t, from, to, true, true, true, old, 2, new, 1);
			node_delete(t, next);
			node_resize(t, n, new[0], new[1]);
			return;
		}
	} else {
		/* runs overlapping [from, to) */
		n = locate(t, from + 1, &next);
		t->hint.valid = false;
		if (!n || n->start >= to)
			return;
		if (!next || next->start >= to) {
			unsigned nnew = 0;

			old[0] = n->start;
			old[1] = n->end;
			if (n->start < from) { /* a piece before */
				new[0] = n->start;
				new[1] = from;
				nnew = 1;
			}
			if (to < n->end) { /* and after */
				new[2 * nnew] = to;
				new[2 * nnew + 1] = n->end;
				nnew++;
			}
			set_marks(t, from, to, false, n->start == from, n->end == to, old, 1, new,
				  nnew);
			if (!nnew) {
				node_delete(t, n);
			} else if (nnew == 2) {
				node_resize(t, n, n->start, from);
				node_insert(t, to, new[3]);
			} else {
				node_resize(t, n, new[0], new[1]);
			}
			return;
		}
	}
	set_general(t, from, to, private);
}

uint64_t tracker_private_pages(const struct tracker *t)
{
	return sum_of(t->root);
}

uint64_t tracker_mixed(const struct tracker *t)
{
	return t->boundaries.count;
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
		else if (u64map_find(&t->boundaries, edges[i]))
			partial_mixed++;
	}
	whole += t->nextents > 2 ? t->nextents - 2 : 0;
	return whole - (t->boundaries.count - partial_mixed);
}

int tracker_edge_extent(const struct tracker *t, bool last)
{
	uint64_t e = last ? t->nextents - 1 : 0;
	uint64_t lo = (t->first_extent + e) * PAGES_PER_EXTENT - (t->gpa >> PAGE_SHIFT_4K);
	uint64_t hi = lo + PAGES_PER_EXTENT, priv;

	/* lo may "underflow" for the first extent: clamp through signed math */
	if ((int64_t)lo < 0)
		lo = 0;
	if (hi > t->npages)
		hi = t->npages;
	priv = tracker_count_private(t, lo, hi, -1);
	return priv == 0 ? EDGE_SHARED : priv == hi - lo ? EDGE_PRIVATE : EDGE_MIXED;
}

uint64_t tracker_heap_bytes(const struct tracker *t)
{
	return t->nodes_allocated * sizeof(struct run_node) +
	       t->boundaries.cap * sizeof(struct u64map_slot);
}
