/* SPDX-License-Identifier: MIT */
/*
 * The two stores behind a region — the shared side (memfd, hugetlbfs file or
 * a host mapping) and the private side (guest_memfd) — and when their stale
 * memory is given back.
 *
 * 4 KiB backings (shmem, guest_memfd) free exactly what is punched, so a
 * stale run is punched at once. A huge-page backing frees only whole huge
 * pages: hugetlbfs_punch_hole (fs/hugetlbfs/inode.c) zeroes partial head and
 * tail pieces in place. So a huge page is punched only when every one of its
 * pages is stale on that side, at the conversion that makes the last one
 * stale, and only when it lies wholly inside the region (the rest of it may
 * belong to someone else).
 *
 * Accounting ("held"): a huge page counts as allocated from the moment any
 * of its pages is live on that side until it is punched. While a page of it
 * is live that follows from the tracker; afterwards (failed punch, or a huge
 * page only partly inside the region) it is kept in the side's "retained"
 * set, so the state costs nothing per huge page of guest memory.
 * double_alloc_pages of a side = its stale pages that are still held. On
 * 4 KiB backings only a failed punch leaves stale pages held; they are kept
 * as pending runs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "internal.h"

#define PENDING_MAX 65536u /* failed-punch runs kept per side; more are merged */

/* ---- page size of a host mapping ---- */

/* Kernel page size and sharing of the mapping holding @hva, from
 * /proc/self/smaps (fs/proc/task_mmu.c: "KernelPageSize:", and "sh" in
 * "VmFlags:" for a shared mapping). Defaults: 4096, shared. */
static void hva_mapping(const void *hva, uint64_t *page_size, bool *shared)
{
	uintptr_t addr = (uintptr_t)hva;
	char line[512];
	bool inside = false;
	FILE *f = fopen("/proc/self/smaps", "re");

	*page_size = PAGE_4K;
	*shared = true;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi, kb;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			inside = addr >= lo && addr < hi;
		} else if (inside && sscanf(line, "KernelPageSize: %lu kB", &kb) == 1) {
			*page_size = (uint64_t)kb * 1024;
		} else if (inside && !strncmp(line, "VmFlags:", 8)) {
			*shared = strstr(line, " sh") != NULL;
			break;
		}
	}
	fclose(f);
}

bool side_is_huge(const struct side *s)
{
	return s->page_size > PAGE_4K;
}

static bool side_present(const struct side *s)
{
	return s->fd >= 0 || s->hva;
}

int side_init(struct side *s, int fd, void *hva, uint64_t offset)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->page_size = PAGE_4K;
	if (fd >= 0) {
		int64_t ps = cvmconv_fd_page_size(fd);

		if (ps < 0)
			return (int)ps;
		s->page_size = (uint64_t)ps;
		s->offset = offset;
	} else if (hva) {
		s->hva = hva;
		s->offset = (uint64_t)(uintptr_t)hva;
		hva_mapping(hva, &s->page_size, &s->hva_shared);
	}
	if (s->page_size & (s->page_size - 1))
		return -EINVAL; /* page sizes are powers of two */
	s->page_shift = (unsigned)__builtin_ctzll(s->page_size);
	if (!side_is_huge(s) && (fd >= 0 || hva)) {
		/* room for failed punches from the start: a punch failure must
		 * never also lose track of the memory for want of memory */
		s->pending = malloc(8 * sizeof(*s->pending));
		if (!s->pending)
			return -ENOMEM;
		s->pending_cap = 8;
	}
	if (side_is_huge(s)) {
		s->first_hpage = s->offset >> s->page_shift;
		/* room for the two edge huge pages, so retaining them never fails */
		if (u64map_reserve(&s->retained, 2))
			return -ENOMEM;
	}
	return 0;
}

void side_fini(struct cvmconv *c, struct side *s)
{
	atomic_fetch_sub_explicit(&c->double_alloc_pages, s->double_alloc_pages,
				  memory_order_relaxed);
	u64map_fini(&s->retained);
	free(s->pending);
	memset(s, 0, sizeof(*s));
	s->fd = -1;
}

/* ---- geometry: region pages <-> huge pages of a side ---- */

static uint64_t hpage_of(const struct side *s, uint64_t page)
{
	return ((s->offset + page * PAGE_4K) >> s->page_shift) - s->first_hpage;
}

/* Region pages [*from, *to) lying in huge page @h (relative index). */
static void hpage_span(const struct side *s, const struct region *r, uint64_t h, uint64_t *from,
		       uint64_t *to)
{
	uint64_t start = (s->first_hpage + h) << s->page_shift, end = start + s->page_size;

	*from = start > s->offset ? (start - s->offset) >> PAGE_SHIFT_4K : 0;
	*to = (end - s->offset) >> PAGE_SHIFT_4K < r->npages ? (end - s->offset) >> PAGE_SHIFT_4K
							     : r->npages;
}

static bool hpage_whole(const struct side *s, const struct region *r, uint64_t h)
{
	uint64_t from, to;

	hpage_span(s, r, h, &from, &to);
	return to - from == s->page_size / PAGE_4K;
}

/* Pages of [from, to) that are stale on the side @private_side. @uniform:
 * see tracker_count_private(). */
static uint64_t stale_pages(const struct region *r, bool private_side, uint64_t from, uint64_t to,
			    int uniform)
{
	uint64_t priv = tracker_count_private(&r->tr, from, to, uniform);

	return private_side ? (to - from) - priv : priv;
}

static void adjust(struct cvmconv *c, struct side *s, int64_t pages)
{
	s->double_alloc_pages += (uint64_t)pages;
	atomic_fetch_add_explicit(&c->double_alloc_pages, (uint64_t)pages, memory_order_relaxed);
}

static uint64_t *retained(const struct side *s, uint64_t h)
{
	return u64map_find(&s->retained, h);
}

/* Keep huge page @h, which has no live page, as allocated. Only a punch
 * failure can need memory here (edges were reserved at add); if even that
 * fails, the page is forgotten: it stays allocated in the kernel until one
 * of its pages is live and stale again, and the log says so. */
static void retain(struct cvmconv *c, const struct region *r, struct side *s, uint64_t h)
{
	uint64_t lo, hi;

	if (retained(s, h))
		return;
	s->reserved_runs = 0;
	if (u64map_reserve(&s->retained, 1) == 0) {
		*u64map_insert(&s->retained, h) = 1;
		return;
	}
	hpage_span(s, r, h, &lo, &hi);
	adjust(c, s, -(int64_t)(hi - lo));
	log_msg(c, LOG_ERR, "out of memory: huge page at offset 0x%llx stays allocated untracked",
		(unsigned long long)((s->first_hpage + h) * s->page_size));
}

/* ---- kernel calls ---- */

static int punch(struct cvmconv *c, struct side *s, uint64_t from, uint64_t to)
{
	uint64_t len = (to - from) * PAGE_4K;
	int ret;

	COUNT(c, punches, 1);
	if (s->fd >= 0)
		ret = op_punch(c, s->fd, s->offset + from * PAGE_4K, len);
	else if (!s->hva_shared && !c->ops.discard_hva)
		ret = kvm_discard_private_hva(c, (void *)(uintptr_t)(s->offset + from * PAGE_4K),
					      len);
	else
		ret = op_discard_hva(c, (void *)(uintptr_t)(s->offset + from * PAGE_4K), len);
	if (ret < 0) {
		COUNT(c, punch_failures, 1);
		log_guest(c, LOG_ERR,
			  "%s of %s offset 0x%llx len 0x%llx failed: %s; kept for flush",
			  s->fd >= 0 ? "punch" : "discard", s->fd >= 0 ? "fd" : "hva",
			  (unsigned long long)(s->offset + from * PAGE_4K), (unsigned long long)len,
			  strerror(-ret));
	}
	return ret;
}

/* ---- 4 KiB backings: pending runs after failed punches ---- */

static void pending_recount(struct cvmconv *c, struct region *r, struct side *s, bool private_side)
{
	uint64_t pages = 0;

	for (uint32_t i = 0; i < s->npending; i++)
		pages += stale_pages(r, private_side, s->pending[i].from, s->pending[i].to, -1);
	adjust(c, s, (int64_t)(pages - s->double_alloc_pages));
}

/* Room for @n more pending runs, so that recording a failed punch (or
 * splitting a run) never needs memory in the middle of a conversion. */
static int pending_reserve(struct side *s, uint64_t n)
{
	uint64_t need = s->npending + n, cap = s->pending_cap ? s->pending_cap : 8;
	struct pending_run *p;

	if (need > PENDING_MAX)
		need = PENDING_MAX;
	if (need <= s->pending_cap)
		return 0;
	while (cap < need)
		cap *= 2;
	p = realloc(s->pending, cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	s->pending = p;
	s->pending_cap = (uint32_t)cap;
	return 0;
}

int backing_reserve(struct region *r, uint64_t runs)
{
	struct side *sides[2] = { &r->shared, &r->private_ };

	for (int i = 0; i < 2; i++) {
		struct side *s = sides[i];
		int err = 0;

		if (!side_present(s) || runs <= s->reserved_runs)
			continue; /* room left by an earlier reservation, unused since */
		/* 4 KiB: one failed punch or one split per run piece;
		 * huge: a bounded number of retained pages (more fall back to
		 * the logged "untracked" path in retain()) */
		if (side_is_huge(s))
			err = u64map_reserve(&s->retained, runs * 2 + 2 < 64 ? runs * 2 + 2 : 64);
		else
			err = pending_reserve(s, 2 * runs);
		if (err)
			return err;
		s->reserved_runs = runs;
	}
	return 0;
}

static void pending_add(struct side *s, uint64_t from, uint64_t to)
{
	uint32_t i;

	s->reserved_runs = 0;
	/* merge with an overlapping or adjacent run */
	for (i = 0; i < s->npending; i++) {
		if (from <= s->pending[i].to && to >= s->pending[i].from) {
			s->pending[i].from = from < s->pending[i].from ? from : s->pending[i].from;
			s->pending[i].to = to > s->pending[i].to ? to : s->pending[i].to;
			return;
		}
	}
	pending_reserve(s, 1); /* normally a no-op: backing_reserve() made room */
	if (s->npending < s->pending_cap) {
		s->pending[s->npending].from = from;
		s->pending[s->npending++].to = to;
	} else if (s->npending) {
		/* Beyond PENDING_MAX runs: widen one. Flush punches only stale
		 * pages inside it, so widening never endangers live data; the
		 * pending figure may then over-count pages punched earlier. */
		struct pending_run *last = &s->pending[s->npending - 1];
		last->from = from < last->from ? from : last->from;
		last->to = to > last->to ? to : last->to;
		/* absorb the runs the widened one now overlaps: no page is
		 * counted twice */
		for (uint32_t k = 0; k + 1 < s->npending;) {
			struct pending_run *q = &s->pending[k];

			last = &s->pending[s->npending - 1];
			if (q->from <= last->to && q->to >= last->from) {
				last->from = q->from < last->from ? q->from : last->from;
				last->to = q->to > last->to ? q->to : last->to;
				*q = *last;
				s->npending--;
			} else {
				k++;
			}
		}
	}
}

/* Drop [from, to) from the pending runs (those pages are live again or were
 * punched). Splitting may need room; without it the run stays whole. */
static void pending_remove(struct side *s, uint64_t from, uint64_t to)
{
	for (uint32_t i = 0; i < s->npending; i++) {
		struct pending_run *p = &s->pending[i];

		if (to <= p->from || from >= p->to)
			continue;
		if (from <= p->from && to >= p->to) {
			*p = s->pending[--s->npending];
			i--;
		} else if (from <= p->from) {
			p->from = to;
		} else if (to >= p->to) {
			p->to = from;
		} else if (s->npending < s->pending_cap) {
			s->reserved_runs = 0;
			s->pending[s->npending].from = to;
			s->pending[s->npending++].to = p->to;
			p->to = from;
		}
	}
}

/* ---- the stale and the live side of a changed run ---- */

/* Punch region pages [from, to), whole huge pages that are all stale, now;
 * on failure keep them as retained, for cvmconv_flush(). */
static void punch_hpages(struct cvmconv *c, struct region *r, struct side *s, uint64_t from,
			 uint64_t to)
{
	if (punch(c, s, from, to) == 0) {
		adjust(c, s, -(int64_t)(to - from));
		return;
	}
	for (uint64_t h = hpage_of(s, from); h <= hpage_of(s, to - 1); h++)
		retain(c, r, s, h);
	s->retry_hpages += (to - from) * PAGE_4K / s->page_size;
}

/* Freeable huge pages [from, to) (region pages): punched at the end of the
 * transaction, so that the huge pages freed by neighbouring runs of one
 * request go in one call. */
static void defer(struct cvmconv *c, struct region *r, struct side *s, uint64_t from, uint64_t to)
{
	/* runs come in ascending order: a range can only extend the last */
	if (s->ndeferred && s->deferred[s->ndeferred - 1].to == from) {
		s->deferred[s->ndeferred - 1].to = to;
		return;
	}
	if (s->ndeferred == DEFERRED_MAX) {
		/* full: the lowest range can no longer grow, it goes now */
		uint32_t low = 0;

		for (uint32_t i = 1; i < s->ndeferred; i++)
			if (s->deferred[i].from < s->deferred[low].from)
				low = i;
		punch_hpages(c, r, s, s->deferred[low].from, s->deferred[low].to);
		s->deferred[low] = s->deferred[--s->ndeferred];
	}
	s->deferred[s->ndeferred].from = from;
	s->deferred[s->ndeferred++].to = to;
}

/* Pages [lo, hi), whole huge pages, have live pages again: what of them was
 * waiting to be punched no longer may be. Returns how many of the pages
 * were waiting (they are still held). */
static uint64_t undefer(struct cvmconv *c, struct region *r, struct side *s, uint64_t lo,
			uint64_t hi)
{
	uint64_t taken = 0;

	for (uint32_t i = 0; i < s->ndeferred;) {
		struct deferred_run *d = &s->deferred[i];
		uint64_t a = d->from > lo ? d->from : lo, b = d->to < hi ? d->to : hi;

		if (a >= b) {
			i++;
			continue;
		}
		taken += b - a;
		if (a == d->from && b == d->to) {
			*d = s->deferred[--s->ndeferred];
			continue; /* look at the one moved here */
		}
		if (a == d->from) {
			d->from = b;
		} else if (b == d->to) {
			d->to = a;
		} else if (s->ndeferred < DEFERRED_MAX) {
			s->deferred[s->ndeferred].from = b;
			s->deferred[s->ndeferred++].to = d->to;
			d->to = a;
		} else { /* no room to split: the part before goes now */
			punch_hpages(c, r, s, d->from, a);
			d->from = b;
		}
		i++;
	}
	return taken;
}

/* Punch the freeable huge-page ranges waiting on the sides of @r, merged
 * where they touch. */
static void punch_deferred(struct cvmconv *c, struct region *r)
{
	struct side *sides[2] = { &r->shared, &r->private_ };

	for (int i = 0; i < 2; i++) {
		struct side *s = sides[i];
		uint32_t n = s->ndeferred;

		if (!n)
			continue;
		if (n == 1) { /* the usual case */
			s->ndeferred = 0;
			punch_hpages(c, r, s, s->deferred[0].from, s->deferred[0].to);
			continue;
		}
		/* sort the (at most DEFERRED_MAX) ranges, merge those that touch */
		for (uint32_t a = 1; a < n; a++)
			for (uint32_t b = a; b > 0 && s->deferred[b - 1].from > s->deferred[b].from;
			     b--) {
				struct deferred_run t = s->deferred[b];

				s->deferred[b] = s->deferred[b - 1];
				s->deferred[b - 1] = t;
			}
		s->ndeferred = 0;
		for (uint32_t a = 0; a < n;) {
			uint64_t from = s->deferred[a].from, to = s->deferred[a].to;

			while (++a < n && s->deferred[a].from == to)
				to = s->deferred[a].to;
			punch_hpages(c, r, s, from, to);
		}
	}
}

void backing_commit(struct cvmconv *c, struct region *r)
{
	if (!c->defer_punch) /* else they wait for cvmconv_flush() */
		punch_deferred(c, r);
}

/* Freeable huge pages are gathered into runs of touching ones, each
 * deferred as one range. */
struct freeable {
	uint64_t from, to;
	bool open;
};

static void freeable_add(struct cvmconv *c, struct region *r, struct side *s, struct freeable *f,
			 uint64_t lo, uint64_t hi, bool freeable)
{
	if (freeable && f->open && f->to == lo) {
		f->to = hi;
		return;
	}
	if (f->open)
		defer(c, r, s, f->from, f->to);
	*f = (struct freeable){ lo, hi, freeable };
}

/* Huge page @h, pages [from, to) of it just went stale. */
static void hpage_went_stale(struct cvmconv *c, struct region *r, struct side *s, bool private_side,
			     uint64_t h, uint64_t from, uint64_t to, struct freeable *f)
{
	uint64_t lo, hi, a, b;
	bool freeable = false;

	hpage_span(s, r, h, &lo, &hi);
	a = lo > from ? lo : from;
	b = hi < to ? hi : to;
	/* those pages were live, so the huge page was held */
	adjust(c, s, (int64_t)(b - a));
	/* the extent of [lo, hi), if uniform, is in the run's new state:
	 * stale here */
	if (stale_pages(r, private_side, lo, hi, !private_side) == hi - lo) {
		if (hpage_whole(s, r, h))
			freeable = true;
		else
			retain(c, r, s, h); /* never punched: not all ours */
	}
	freeable_add(c, r, s, f, lo, hi, freeable);
}

static void huge_went_stale(struct cvmconv *c, struct region *r, struct side *s, bool private_side,
			    uint64_t from, uint64_t to)
{
	uint64_t h_first = hpage_of(s, from), h_last = hpage_of(s, to - 1);
	struct freeable f = { 0, 0, false };

	hpage_went_stale(c, r, s, private_side, h_first, from, to, &f);
	if (h_last > h_first + 1) {
		/* The huge pages between lie wholly in the run, so wholly in
		 * the region: every page of them was live and is stale now,
		 * and they are freeable, together. */
		uint64_t lo, hi, unused;

		hpage_span(s, r, h_first + 1, &lo, &unused);
		hpage_span(s, r, h_last - 1, &unused, &hi);
		adjust(c, s, (int64_t)(hi - lo));
		freeable_add(c, r, s, &f, lo, hi, true);
	}
	if (h_last != h_first)
		hpage_went_stale(c, r, s, private_side, h_last, from, to, &f);
	freeable_add(c, r, s, &f, 0, 0, false); /* close the last run */
}

/* Huge page @h, pages [from, to) of it just went live. */
static void hpage_went_live(struct cvmconv *c, struct region *r, struct side *s, bool private_side,
			    uint64_t h, uint64_t from, uint64_t to)
{
	uint64_t lo, hi, a, b, stale, *kept;

	hpage_span(s, r, h, &lo, &hi);
	a = lo > from ? lo : from;
	b = hi < to ? hi : to;
	stale = stale_pages(r, private_side, lo, hi, private_side);
	kept = retained(s, h);
	if (kept || (s->ndeferred && undefer(c, r, s, lo, hi)) || hi - lo - stale > b - a) {
		/* held before: those pages were stale and counted */
		adjust(c, s, -(int64_t)(b - a));
	} else {
		/* allocated again from now on: its stale pages count */
		adjust(c, s, (int64_t)stale);
	}
	if (kept) /* held through its live pages from now on */
		u64map_remove(&s->retained, kept);
}

static void huge_went_live(struct cvmconv *c, struct region *r, struct side *s, bool private_side,
			   uint64_t from, uint64_t to)
{
	uint64_t h_first = hpage_of(s, from), h_last = hpage_of(s, to - 1);

	hpage_went_live(c, r, s, private_side, h_first, from, to);
	if (h_last > h_first + 1 && !s->retained.count) {
		/* The huge pages between lie wholly in the run: all their
		 * pages were stale and are live now. Those that were waiting
		 * to be punched were held (their pages counted); the others
		 * were not held and have no stale page now. */
		uint64_t lo, hi, unused;

		hpage_span(s, r, h_first + 1, &lo, &unused);
		hpage_span(s, r, h_last - 1, &unused, &hi);
		adjust(c, s, -(int64_t)undefer(c, r, s, lo, hi));
	} else {
		for (uint64_t h = h_first + 1; h < h_last; h++)
			hpage_went_live(c, r, s, private_side, h, from, to);
	}
	if (h_last != h_first)
		hpage_went_live(c, r, s, private_side, h_last, from, to);
}

static int flush_side(struct cvmconv *c, struct region *r, struct side *s, bool private_side);

/* CVMCONV_DEFER_PUNCH on a 4 KiB side: the stale run joins the pending runs
 * (the list cvmconv_flush() punches, as after a failed punch), which merge
 * with their neighbours; more than DEFERRED_MAX of them are punched now. */
static void defer_4k(struct cvmconv *c, struct region *r, struct side *s, bool private_side,
		     uint64_t from, uint64_t to)
{
	if (s->npending >= DEFERRED_MAX)
		flush_side(c, r, s, private_side);
	pending_add(s, from, to);
	pending_recount(c, r, s, private_side);
}

void backing_release_stale(struct cvmconv *c, struct region *r, uint64_t from, uint64_t to,
			   bool now_private)
{
	struct side *stale = region_side(r, !now_private), *live = region_side(r, now_private);

	if (side_present(live)) {
		if (side_is_huge(live)) {
			huge_went_live(c, r, live, now_private, from, to);
		} else if (live->npending) {
			pending_remove(live, from, to);
			pending_recount(c, r, live, now_private);
		}
	}
	if (side_present(stale)) {
		if (side_is_huge(stale)) {
			huge_went_stale(c, r, stale, !now_private, from, to);
		} else if (c->defer_punch) {
			defer_4k(c, r, stale, !now_private, from, to);
		} else if (punch(c, stale, from, to) == 0) {
			if (stale->npending) {
				pending_remove(stale, from, to);
				pending_recount(c, r, stale, !now_private);
			}
		} else {
			pending_add(stale, from, to);
			pending_recount(c, r, stale, !now_private);
		}
	}
}

static int flush_side(struct cvmconv *c, struct region *r, struct side *s, bool private_side)
{
	int err = 0;

	if (!side_present(s))
		return 0;
	if (side_is_huge(s)) {
		uint64_t failed = 0, n = 0, *keys;

		if (!s->retry_hpages)
			return 0;
		/* snapshot the keys: removal moves entries around */
		keys = malloc(s->retained.count * sizeof(*keys));
		if (!keys)
			return -ENOMEM;
		for (uint64_t i = 0; i < s->retained.cap; i++)
			if (s->retained.slots[i].key != U64MAP_EMPTY)
				keys[n++] = s->retained.slots[i].key;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t h = keys[i], lo, hi;
			int ret;

			hpage_span(s, r, h, &lo, &hi);
			if (!hpage_whole(s, r, h) ||
			    stale_pages(r, private_side, lo, hi, -1) != hi - lo)
				continue;
			ret = punch(c, s, lo, hi);
			if (ret == 0) {
				u64map_remove(&s->retained, retained(s, h));
				adjust(c, s, -(int64_t)(hi - lo));
			} else {
				failed++;
				err = ret;
			}
		}
		free(keys);
		s->retry_hpages = failed;
		return err;
	}
	/* 4 KiB: punch the stale runs inside each pending run, keep failures */
	for (uint32_t i = 0; i < s->npending;) {
		struct pending_run run = s->pending[i];
		bool all_done = true;
		uint64_t p = run.from;

		while (p < run.to) {
			/* stale on the private side = shared in the tracker */
			uint64_t a = tracker_find(&r->tr, p, run.to, !private_side);
			uint64_t b = tracker_find(&r->tr, a, run.to, private_side);

			if (a < b) {
				int ret = punch(c, s, a, b);
				if (ret) {
					all_done = false;
					err = ret;
				}
			}
			p = b;
		}
		if (all_done)
			s->pending[i] = s->pending[--s->npending];
		else
			i++;
	}
	pending_recount(c, r, s, private_side);
	return err;
}

int backing_flush(struct cvmconv *c, struct region *r)
{
	punch_deferred(c, r);
	int a = flush_side(c, r, &r->shared, false);
	int b = flush_side(c, r, &r->private_, true);

	return b ? b : a;
}

static uint64_t side_pending_bytes(const struct region *r, const struct side *s, bool private_side)
{
	uint64_t bytes = 0;

	if (!side_present(s))
		return 0;
	if (!side_is_huge(s)) /* only failed or deferred punches hold pages */
		return s->double_alloc_pages * PAGE_4K;
	for (uint32_t i = 0; i < s->ndeferred; i++) /* CVMCONV_DEFER_PUNCH */
		bytes += (s->deferred[i].to - s->deferred[i].from) * PAGE_4K;
	for (uint64_t i = 0; i < s->retained.cap; i++) {
		uint64_t h = s->retained.slots[i].key, lo, hi;

		if (h == U64MAP_EMPTY)
			continue;
		hpage_span(s, r, h, &lo, &hi);
		if (hpage_whole(s, r, h) && stale_pages(r, private_side, lo, hi, -1) == hi - lo)
			bytes += s->page_size;
	}
	return bytes;
}

uint64_t backing_pending_bytes(const struct region *r)
{
	return side_pending_bytes(r, &r->shared, false) + side_pending_bytes(r, &r->private_, true);
}
