/* SPDX-License-Identifier: MIT */
/*
 * The extent tracker: which 4 KiB pages of a region are private.
 *
 * Extents are the 2 MiB frames of guest physical address space (the size of
 * an x86 EPT/NPT large page: a frame whose pages disagree is "mixed" and KVM
 * must map it with 4 KiB pages, see hugepage_has_attrs in
 * arch/x86/kvm/mmu/mmu.c). Each extent is uniformly shared, uniformly
 * private, or mixed, and the state is kept in two layers:
 *
 *   uniform  maximal runs of extents whose pages are private, in a treap
 *            ordered by first extent; each node holds the page count of its
 *            subtree, so "how many private pages below x" is O(log runs);
 *   mixed    per mixed extent, a 512-bit map of its private pages and their
 *            count, in a hash keyed by extent, plus a sparse 64-ary index of
 *            the mixed extents for "the next mixed extent from x"
 *            (O(log64 extents), a few hash lookups).
 *
 * A mixed extent keeps the state the treap gave it when it became mixed
 * (its "base"); the treap is not touched while it stays mixed, nor when it
 * becomes uniform again in that state. So a 4 KiB conversion costs a hash
 * update, and only conversions that change extents between uniform shared
 * and uniform private change the treap. Memory follows the number of mixed
 * extents and uniform runs, not the size of the guest: a 16 TiB guest that
 * is all shared or all private costs one node or none.
 *
 * Pages are region-relative indices; extents are relative to the region's
 * first extent, and the first and last may lie partly outside the region.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ITEMS_KEPT 64	 /* spare nodes and maps kept after a large request */
#define ITEMS_TRIM 1024	 /* ... once more than this many are spare */
#define RESERVE_SLACK 16 /* requests the hashes have room for at least */
#define MAP_WORDS (PAGES_PER_EXTENT / 64)

struct run_node {
	uint64_t start, end; /* extents [start, end) are private (or mixed) */
	uint64_t pages;	     /* region pages of those extents */
	uint64_t sum;	     /* pages of this subtree */
	struct run_node *l, *r;
	uint32_t prio;
};

struct mixed_extent {
	uint64_t bits[MAP_WORDS]; /* bit i: page extent_start() + i is private */
	uint32_t count;		  /* private pages */
	bool base;		  /* its state in the treap */
};

/* Nodes and maps come from one reserve, so that an update can never fail. */
union item {
	struct run_node node;
	struct mixed_extent mix;
	union item *next;
};

/* ---- geometry ---- */

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

/* ---- the reserve ---- */

static union item *item_get(struct tracker *t)
{
	union item *it = t->free_items; /* tracker_reserve() filled it */

	t->free_items = it->next;
	t->nfree--;
	return it;
}

static void item_put(struct tracker *t, void *p)
{
	union item *it = p;

	it->next = t->free_items;
	t->free_items = it;
	t->nfree++;
}

/* ---- the treap of uniform runs ---- */

static uint64_t sum_of(const struct run_node *n)
{
	return n ? n->sum : 0;
}

static void update(struct run_node *n)
{
	n->sum = n->pages + sum_of(n->l) + sum_of(n->r);
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

static uint64_t run_pages(const struct tracker *t, uint64_t start, uint64_t end)
{
	return extent_start(t, end) - extent_start(t, start);
}

static struct run_node *node_alloc(struct tracker *t, uint64_t start, uint64_t end)
{
	struct run_node *n = &item_get(t)->node;
	uint64_t pages = run_pages(t, start, end);

	t->prio = t->prio * 1103515245u + 12345u;
	*n = (struct run_node){ start, end, pages, pages, NULL, NULL, t->prio ^ (t->prio >> 16) };
	return n;
}

static void tree_put(struct tracker *t, struct run_node *n)
{
	if (!n)
		return;
	tree_put(t, n->l);
	tree_put(t, n->r);
	item_put(t, n);
}

/* The first run ending at or after extent @x, and (if @succ) the run after
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

/* The first run ending after extent @x (the one holding it, if any). */
static const struct run_node *run_from(const struct tracker *t, uint64_t x)
{
	const struct run_node *best = NULL;

	for (const struct run_node *n = t->root; n;) {
		if (n->end > x) {
			best = n;
			n = n->l;
		} else {
			n = n->r;
		}
	}
	return best;
}

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

/* Give node @n the extents [start, end). No other run may start between
 * the old and the new start, so the order is unchanged. */
static void node_resize(struct tracker *t, struct run_node *n, uint64_t start, uint64_t end)
{
	uint64_t pages = run_pages(t, start, end);

	path_adjust(t, n->start, (int64_t)(pages - n->pages));
	n->start = start;
	n->end = end;
	n->pages = pages;
}

static void node_delete(struct tracker *t, struct run_node *n)
{
	struct run_node **link = path_adjust(t, n->start, -(int64_t)n->pages);

	*link = merge(n->l, n->r);
	item_put(t, n);
}

/* Insert [start, end), which overlaps and touches no run. */
static void node_insert(struct tracker *t, uint64_t start, uint64_t end)
{
	struct run_node *n = node_alloc(t, start, end), **link = &t->root;

	while (*link && (*link)->prio > n->prio) {
		(*link)->sum += n->pages;
		link = start < (*link)->start ? &(*link)->l : &(*link)->r;
	}
	split(*link, start, &n->l, &n->r);
	update(n);
	*link = n;
}

/* The general case of uniform_set(): cut the treap around [from, to),
 * rebuild, join. */
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
			item_put(t, n);
		}
		n = peek_max(m);
		if (n && n->end > end)
			end = n->end;
		tree_put(t, m);
		n = peek_min(c);
		if (n && n->start == end) {
			end = n->end;
			c = pop_min(c);
			item_put(t, n);
		}
		t->root = merge(merge(a, node_alloc(t, start, end)), c);
		return;
	}

	n = peek_max(a);
	if (n && n->end > from) { /* cut [from, ...) out of it */
		uint64_t start = n->start, end = n->end;

		a = pop_max(a);
		item_put(t, n);
		a = merge(a, node_alloc(t, start, from));
		if (end > to)
			c = merge(node_alloc(t, to, end), c);
	}
	n = peek_max(m);
	if (n && n->end > to)
		c = merge(node_alloc(t, to, n->end), c);
	tree_put(t, m);
	t->root = merge(a, c);
}

/* Extents [from, to), each uniform in the other state or mixed with the
 * other base, become uniform @private in the treap: in place for the
 * common cases (a run grows, shrinks, splits, or two runs join), else by
 * cutting the treap. Adds at most one node. */
static void uniform_set(struct tracker *t, uint64_t from, uint64_t to, bool private)
{
	struct run_node *n, *next;

	if (private) {
		n = first_ending_from(t, from, &next); /* touching or overlapping */
		if (!n || n->start > to) {
			node_insert(t, from, to);
			return;
		}
		if (!next || next->start > to) {
			node_resize(t, n, n->start < from ? n->start : from,
				    n->end > to ? n->end : to);
			return;
		}
		if (next->start == to && n->end >= from) { /* joins n and next */
			uint64_t end = next->end;

			node_delete(t, next);
			node_resize(t, n, n->start < from ? n->start : from, end);
			return;
		}
	} else {
		n = first_ending_from(t, from + 1, &next); /* overlapping */
		if (!n || n->start >= to)
			return;
		if (n->start <= from && n->end >= to) { /* inside one run */
			uint64_t end = n->end;

			if (n->start == from && end == to) {
				node_delete(t, n);
			} else if (n->start == from) {
				node_resize(t, n, to, end);
			} else {
				node_resize(t, n, n->start, from);
				if (to < end)
					node_insert(t, to, end);
			}
			return;
		}
	}
	set_general(t, from, to, private);
}

static bool uniform_private(const struct tracker *t, uint64_t x)
{
	const struct run_node *n = run_from(t, x);

	return n && n->start <= x;
}

/* Private pages below page @p by the treap alone (mixed extents counted in
 * their base state). */
static uint64_t uniform_prefix(const struct tracker *t, uint64_t p)
{
	uint64_t acc = 0;

	for (const struct run_node *n = t->root; n;) {
		uint64_t sp = extent_start(t, n->start);

		if (p <= sp) {
			n = n->l;
			continue;
		}
		if (p <= extent_start(t, n->end)) /* p lies in this run, or at its end */
			return acc + sum_of(n->l) + (p - sp);
		acc += sum_of(n->l) + n->pages;
		n = n->r;
	}
	return acc;
}

/* ---- the index of mixed extents ---- */

/* Per group of 512 extents (1 GiB) holding a mixed extent, a 512-bit set
 * of them, in a hash keyed by group: marking an extent costs one lookup,
 * and finding the next mixed extent one lookup per group passed. */
#define GROUP_SHIFT 9

static struct mixed_extent *index_group(const struct tracker *t, uint64_t g)
{
	const uint64_t *v = u64map_find(&t->groups, g);

	return v ? (struct mixed_extent *)(uintptr_t)*v : NULL;
}

static void index_add(struct tracker *t, uint64_t x)
{
	uint64_t *v = u64map_insert(&t->groups, x >> GROUP_SHIFT); /* room: reserve */
	struct mixed_extent *g = (struct mixed_extent *)(uintptr_t)*v;
	unsigned i = x % PAGES_PER_EXTENT;

	if (!g) {
		g = &item_get(t)->mix;
		memset(g, 0, sizeof(*g));
		*v = (uint64_t)(uintptr_t)g;
	}
	g->bits[i / 64] |= 1ULL << (i % 64);
	g->count++;
}

static void index_remove(struct tracker *t, uint64_t x)
{
	uint64_t *v = u64map_find(&t->groups, x >> GROUP_SHIFT);
	struct mixed_extent *g = (struct mixed_extent *)(uintptr_t)*v;
	unsigned i = x % PAGES_PER_EXTENT;

	g->bits[i / 64] &= ~(1ULL << (i % 64));
	if (--g->count)
		return;
	u64map_remove(&t->groups, v);
	item_put(t, g);
}

static unsigned bits_find(const struct mixed_extent *m, unsigned a, unsigned b, bool set);

/* The first mixed extent in [x, limit), or @limit. */
static uint64_t index_next(const struct tracker *t, uint64_t x, uint64_t limit)
{
	while (x < limit) {
		const struct mixed_extent *g = index_group(t, x >> GROUP_SHIFT);
		uint64_t base = x & ~(uint64_t)(PAGES_PER_EXTENT - 1);

		if (g) {
			unsigned i = bits_find(g, (unsigned)(x - base), PAGES_PER_EXTENT, true);

			if (i < PAGES_PER_EXTENT)
				return base + i < limit ? base + i : limit;
		}
		x = base + PAGES_PER_EXTENT;
	}
	return limit;
}

/* ---- mixed extents ---- */

/* The page map of extent @x, or NULL if it is uniform. The tracker keeps
 * the answer for the extent it last looked at or changed: a conversion
 * reads and writes one extent several times. */
static struct mixed_extent *mixed_of(const struct tracker *t, uint64_t x)
{
	const uint64_t *v;

	if (x == t->last_x)
		return t->last_mixed;
	v = u64map_find(&t->mixed, x);
	return v ? (struct mixed_extent *)(uintptr_t)*v : NULL;
}

static struct mixed_extent *mixed_remember(struct tracker *t, uint64_t x)
{
	struct mixed_extent *m = mixed_of(t, x);

	t->last_x = x;
	t->last_mixed = m;
	return m;
}

/* Bits [a, b) of word @w, for a < b and a word the range touches. */
static uint64_t word_mask(unsigned w, unsigned a, unsigned b)
{
	uint64_t m = ~0ULL;

	if (w == a / 64)
		m <<= a % 64;
	if (w == (b - 1) / 64)
		m &= ~0ULL >> (63 - (b - 1) % 64);
	return m;
}

/* First bit in [a, b) equal to @set, or b. */
static unsigned bits_find(const struct mixed_extent *m, unsigned a, unsigned b, bool set)
{
	if (a >= b)
		return b;
	for (unsigned w = a / 64; w <= (b - 1) / 64; w++) {
		uint64_t v = (set ? m->bits[w] : ~m->bits[w]) & word_mask(w, a, b);

		if (v)
			return w * 64 + (unsigned)__builtin_ctzll(v);
	}
	return b;
}

static unsigned bits_count(const struct mixed_extent *m, unsigned a, unsigned b)
{
	unsigned n = 0;

	for (unsigned w = a / 64; a < b && w <= (b - 1) / 64; w++)
		n += (unsigned)__builtin_popcountll(m->bits[w] & word_mask(w, a, b));
	return n;
}

static void bits_assign(struct mixed_extent *m, unsigned a, unsigned b, bool set)
{
	for (unsigned w = a / 64; a < b && w <= (b - 1) / 64; w++) {
		if (set)
			m->bits[w] |= word_mask(w, a, b);
		else
			m->bits[w] &= ~word_mask(w, a, b);
	}
}

/* Pages [from, to) of extent @x (pages [lo, hi)), not all of it, become
 * @private; they were all in the other state. Returns whether the extent
 * ended uniform in a state its treap entry does not have. */
static bool partial_set(struct tracker *t, uint64_t x, uint64_t lo, uint64_t hi, uint64_t from,
			uint64_t to, bool private)
{
	uint64_t n = hi - lo, *v;
	struct mixed_extent *m = mixed_of(t, x);
	bool created = !m, change;

	t->last_x = x;
	t->last_mixed = m;

	if (created) { /* uniform until now, so in the treap's state */
		bool base = !private;

		m = &item_get(t)->mix;
		for (unsigned w = 0; w < MAP_WORDS; w++)
			m->bits[w] = base ? ~0ULL : 0;
		m->count = base ? (uint32_t)n : 0;
		m->base = base;
		*u64map_insert(&t->mixed, x) = (uint64_t)(uintptr_t)m; /* room: reserve */
	}
	bits_assign(m, (unsigned)(from - lo), (unsigned)(to - lo), private);
	m->count = private ? m->count + (uint32_t)(to - from) : m->count - (uint32_t)(to - from);
	if (m->count && m->count != n) {
		if (created)
			index_add(t, x);
		t->last_mixed = m;
		return false;
	}
	t->last_mixed = NULL;
	change = m->base != private;
	v = u64map_find(&t->mixed, x);
	u64map_remove(&t->mixed, v);
	if (!created)
		index_remove(t, x);
	item_put(t, m);
	return change;
}

/* ---- the tracker interface ---- */

/* What a transaction's tracker updates can need: a tree node per update
 * (a run's whole extents can split a run of the treap), and per request a
 * page map and a group set for each of its two edge extents. Only those
 * can turn mixed: a run inside a request starts and ends next to pages
 * already in the target state, so its partial extents were mixed before. */
int tracker_reserve(struct tracker *t, uint64_t sets, uint64_t requests)
{
	uint64_t need = sets + 4 * requests, slack;
	int err;

	if (need <= t->nfree && t->nfree <= ITEMS_TRIM &&
	    (t->mixed.count + 2 * requests) * 2 <= t->mixed.cap &&
	    (t->groups.count + 2 * requests) * 2 <= t->groups.cap)
		return 0; /* the usual case */
	while (t->nfree < need) {
		union item *it = malloc(sizeof(*it));

		if (!it)
			return -ENOMEM;
		t->items_allocated++;
		item_put(t, it);
	}
	/* a large request's reserve goes, with hysteresis: requests that
	 * alternate between large and small do not allocate every time */
	if (t->nfree > ITEMS_TRIM) {
		while (t->nfree > ITEMS_KEPT && t->nfree > need) {
			union item *it = item_get(t);

			t->items_allocated--;
			free(it);
		}
	}
	/* the hashes get room for a few requests more, so that this runs
	 * now and then */
	slack = requests < RESERVE_SLACK ? RESERVE_SLACK : requests;
	err = u64map_reserve(&t->mixed, 2 * slack);
	if (!err)
		err = u64map_reserve(&t->groups, 2 * slack);
	return err;
}

int tracker_init(struct tracker *t, uint64_t gpa, uint64_t size, bool private)
{
	memset(t, 0, sizeof(*t));
	t->last_x = UINT64_MAX; /* no extent: nothing remembered */
	t->gpa = gpa;
	t->npages = size >> PAGE_SHIFT_4K;
	t->first_extent = gpa >> EXTENT_SHIFT;
	t->first_offset = (gpa >> PAGE_SHIFT_4K) % PAGES_PER_EXTENT;
	t->nextents = ((gpa + size - 1) >> EXTENT_SHIFT) - t->first_extent + 1;
	t->prio = (uint32_t)(gpa >> PAGE_SHIFT_4K) * 2654435761u + 1;
	if (tracker_reserve(t, 1, 1))
		return -ENOMEM;
	if (private) {
		t->root = node_alloc(t, 0, t->nextents);
		t->private_pages = t->npages;
	}
	return 0;
}

static void tree_free(struct run_node *n)
{
	if (!n)
		return;
	tree_free(n->l);
	tree_free(n->r);
	free(n);
}

void tracker_fini(struct tracker *t)
{
	tree_free(t->root);
	for (uint64_t i = 0; i < t->mixed.cap; i++)
		if (t->mixed.slots[i].key != U64MAP_EMPTY)
			free((void *)(uintptr_t)t->mixed.slots[i].value);
	for (uint64_t i = 0; i < t->groups.cap; i++)
		if (t->groups.slots[i].key != U64MAP_EMPTY)
			free((void *)(uintptr_t)t->groups.slots[i].value);
	while (t->free_items)
		free(item_get(t));
	u64map_fini(&t->mixed);
	u64map_fini(&t->groups);
	memset(t, 0, sizeof(*t));
}

bool tracker_page_private(const struct tracker *t, uint64_t p)
{
	uint64_t x = extent_of(t, p);
	const struct mixed_extent *m = mixed_of(t, x);

	if (m) {
		uint64_t i = p - extent_start(t, x);

		return m->bits[i / 64] >> (i % 64) & 1;
	}
	return uniform_private(t, x);
}

/* From page @p of a uniform extent @x in state @state, where the pages
 * may next differ: the start of the next mixed extent or of the next
 * treap run in the other state. */
static uint64_t uniform_until(const struct tracker *t, uint64_t x, const struct run_node *n,
			      bool state, uint64_t to)
{
	uint64_t nx = state ? n->end : n ? n->start : t->nextents, last = extent_of(t, to - 1) + 1;

	return extent_start(t, index_next(t, x + 1, nx < last ? nx : last));
}

/* From page @p, while the pages are in state @state, up to @to: the first
 * page not in it, or @to. */
static uint64_t run_end(const struct tracker *t, uint64_t p, uint64_t to, bool state)
{
	while (p < to) {
		uint64_t x = extent_of(t, p), lo = extent_start(t, x), hi = extent_start(t, x + 1);
		const struct mixed_extent *m = mixed_of(t, x);
		const struct run_node *n;

		if (hi > to)
			hi = to;
		if (m) {
			uint64_t q =
				lo + bits_find(m, (unsigned)(p - lo), (unsigned)(hi - lo), !state);

			if (q < hi)
				return q;
			p = hi;
			continue;
		}
		n = run_from(t, x);
		if ((n && n->start <= x) != state)
			return p;
		if (hi == to)
			return to;
		p = uniform_until(t, x, n, state, to);
	}
	return to;
}

bool tracker_run(struct tracker *t, uint64_t from, uint64_t to, bool private, uint64_t *a,
		 uint64_t *b)
{
	uint64_t p = from;

	while (p < to) {
		uint64_t x = extent_of(t, p), lo = extent_start(t, x), hi = extent_start(t, x + 1);
		const struct mixed_extent *m = mixed_remember(t, x);
		const struct run_node *n;
		bool state;

		if (hi > to)
			hi = to;
		if (m) {
			uint64_t q =
				lo + bits_find(m, (unsigned)(p - lo), (unsigned)(hi - lo), private);

			if (q < hi) {
				uint64_t e = lo + bits_find(m, (unsigned)(q - lo),
							    (unsigned)(hi - lo), !private);

				*a = q;
				*b = e < hi || hi == to ? e : run_end(t, hi, to, private);
				return true;
			}
			p = hi;
			continue;
		}
		n = run_from(t, x);
		state = n && n->start <= x;
		if (state == private) {
			*a = p;
			if (hi == to)
				*b = to;
			else
				*b = run_end(t, uniform_until(t, x, n, state, to), to, private);
			return true;
		}
		if (hi == to)
			return false;
		p = uniform_until(t, x, n, state, to);
	}
	return false;
}

uint64_t tracker_find(struct tracker *t, uint64_t from, uint64_t to, bool private)
{
	uint64_t a, b;

	return tracker_run(t, from, to, private, &a, &b) ? a : to;
}

uint64_t tracker_count_private(const struct tracker *t, uint64_t from, uint64_t to, int uniform)
{
	uint64_t xa, xl, total;

	if (from >= to)
		return 0;
	xa = extent_of(t, from);
	xl = extent_of(t, to - 1);
	if (xa == xl) {
		const struct mixed_extent *m = mixed_of(t, xa);
		uint64_t lo;

		if (!m) {
			if (uniform < 0)
				uniform = uniform_private(t, xa);
			return uniform ? to - from : 0;
		}
		lo = extent_start(t, xa);
		if (from == lo && to == extent_start(t, xa + 1))
			return m->count;
		return bits_count(m, (unsigned)(from - lo), (unsigned)(to - lo));
	}
	/* the treap's count, corrected by every mixed extent in the range */
	total = uniform_prefix(t, to) - uniform_prefix(t, from);
	for (uint64_t x = index_next(t, xa, xl + 1); x <= xl; x = index_next(t, x + 1, xl + 1)) {
		const struct mixed_extent *m = mixed_of(t, x);
		uint64_t lo = extent_start(t, x), a = from > lo ? from : lo,
			 b = to < extent_start(t, x + 1) ? to : extent_start(t, x + 1);

		total += bits_count(m, (unsigned)(a - lo), (unsigned)(b - lo));
		total -= m->base ? b - a : 0;
	}
	return total;
}

void tracker_set(struct tracker *t, uint64_t from, uint64_t to, bool private)
{
	uint64_t xa, xl, lo, hi, ua, ub;

	if (from >= to)
		return;
	t->private_pages =
		private ? t->private_pages + (to - from) : t->private_pages - (to - from);
	xa = extent_of(t, from);
	xl = extent_of(t, to - 1);
	lo = extent_start(t, xa);
	hi = extent_start(t, xl + 1);
	/* [ua, ub): the extents the treap must change; the whole ones first */
	ua = from == lo ? xa : xa + 1;
	ub = to == hi ? xl + 1 : xl;
	if (from != lo) {
		uint64_t hi_a = xa == xl ? hi : extent_start(t, xa + 1);

		if (partial_set(t, xa, lo, hi_a, from, hi_a < to ? hi_a : to, private)) {
			ua = xa;
			ub = ub > xa + 1 ? ub : xa + 1;
		}
	}
	if (to != hi && (xl != xa || from == lo)) {
		uint64_t lo_l = xa == xl ? lo : extent_start(t, xl);

		if (partial_set(t, xl, lo_l, hi, lo_l > from ? lo_l : from, to, private)) {
			ub = xl + 1;
			ua = ua < xl ? ua : xl;
		}
	}
	if (ua < ub)
		uniform_set(t, ua, ub, private);
}

uint64_t tracker_private_pages(const struct tracker *t)
{
	return t->private_pages;
}

uint64_t tracker_mixed(const struct tracker *t)
{
	return t->mixed.count;
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
		else if (mixed_of(t, edges[i]))
			partial_mixed++;
	}
	whole += t->nextents > 2 ? t->nextents - 2 : 0;
	return whole - (t->mixed.count - partial_mixed);
}

int tracker_edge_extent(const struct tracker *t, bool last)
{
	uint64_t x = last ? t->nextents - 1 : 0;
	uint64_t lo = extent_start(t, x), hi = extent_start(t, x + 1);
	uint64_t priv = tracker_count_private(t, lo, hi, -1);

	return priv == 0 ? EDGE_SHARED : priv == hi - lo ? EDGE_PRIVATE : EDGE_MIXED;
}

uint64_t tracker_heap_bytes(const struct tracker *t)
{
	uint64_t slots = t->mixed.cap + t->groups.cap;

	return t->items_allocated * sizeof(union item) + slots * sizeof(struct u64map_slot);
}
