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
 * pages is stale on that side, at the end of the conversion that makes the
 * last one stale, and only when it lies wholly inside the region (the rest
 * of it may belong to someone else).
 *
 * Nothing but a run's own pages is ever punched while a conversion is still
 * committing its runs: the attributes of every run are already set in KVM,
 * but the tracker learns them run by run, so until the last run is
 * committed it may call "stale" a page that a later run of the same request
 * has made live. Whatever spans more than one run (freeable huge pages,
 * deferred ranges) is punched at the end of the conversion
 * (backing_commit()) or at cvmconv_flush().
 *
 * Accounting ("held"): a huge page counts as allocated from the moment any
 * of its pages is live on that side until it is punched. While a page of it
 * is live that follows from the tracker; afterwards it is in the waiting or
 * failed runs, or an edge (edge_held). double_alloc_pages of a side = its
 * stale pages that are still held. On 4 KiB backings only waiting and failed
 * runs hold stale pages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "internal.h"
#include "probes.h"

/* ---- page size of a host mapping ---- */

/* Kernel page size and sharing of the mapping holding @hva, from
 * /proc/self/smaps (fs/proc/task_mmu.c: "KernelPageSize:", and "sh" in
 * "VmFlags:" for a shared mapping). Defaults: 4096, shared. */
static void hva_mapping(const void *hva, uint64_t *page_size, bool *shared)
{
	uintptr_t addr = (uintptr_t)hva;
	char line[512];
	bool inside = false, line_start = true;
	FILE *f = fopen("/proc/self/smaps", "re");

	*page_size = PAGE_4K;
	*shared = true;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		/* a line longer than the buffer (a long mapped path) comes in
		 * pieces: only the first piece of a line is parsed */
		bool start = line_start;

		line_start = strchr(line, '\n') != NULL;
		if (!start)
			continue;
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

int side_init(struct side *s, int fd, void *hva, uint64_t offset, uint64_t npages)
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
	s->first_hpage = s->offset >> s->page_shift;
	s->nhpages = ((s->offset + npages * PAGE_4K - 1) >> s->page_shift) - s->first_hpage + 1;
	if (side_present(s)) {
		/* room for failed punches from the start: a punch failure must
		 * never also lose track of the memory for want of memory */
		if (runset_reserve(&s->waiting, 8) || runset_reserve(&s->failed, 8))
			return -ENOMEM;
	}
	return 0;
}

void side_fini(struct cvmconv *c, struct side *s)
{
	if (s->pending)
		atomic_fetch_sub(&c->pending_sides, 1);
	atomic_fetch_sub_explicit(&c->double_alloc_pages, s->double_alloc_pages,
				  memory_order_relaxed);
	runset_fini(&s->waiting);
	runset_fini(&s->failed);
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

/* The edge flag of huge page @h if it lies only partly inside the region. */
static bool *edge_flag(struct side *s, const struct region *r, uint64_t h)
{
	uint64_t from, to;

	if (h != 0 && h != s->nhpages - 1)
		return NULL;
	hpage_span(s, r, h, &from, &to);
	if (to - from == s->page_size / PAGE_4K)
		return NULL;
	return &s->edge_held[h != 0];
}

/* Pages of [from, to) that are stale on the side @private_side. @uniform:
 * see tracker_count_private(). */
static uint64_t stale_pages(struct side *s, const struct region *r, bool private_side,
			    uint64_t from, uint64_t to, int uniform)
{
	uint64_t priv = tracker_count_private(&r->tr, from, to, uniform);

	s->steps++;
	return private_side ? (to - from) - priv : priv;
}

static void adjust(struct cvmconv *c, struct side *s, int64_t pages)
{
	s->double_alloc_pages += (uint64_t)pages;
	atomic_fetch_add_explicit(&c->double_alloc_pages, (uint64_t)pages, memory_order_relaxed);
}

static uint64_t side_byte(const struct side *s, uint64_t page)
{
	return s->offset + page * PAGE_4K;
}

/* Region pages [from, to) stay allocated but are no longer tracked (no room
 * to remember them, after RUNSET_MAX runs or an allocation failure): they
 * leave the figures and the log says so. They are freed again once one of
 * their pages is live and stale again. */
NOINLINE static void forget(struct cvmconv *c, struct side *s, uint64_t from, uint64_t to)
{
	adjust(c, s, -(int64_t)(to - from));
	log_guest(c, LOG_ERR,
		  "no room to track stale memory at %s 0x%llx len 0x%llx: it stays allocated "
		  "untracked",
		  s->fd >= 0 ? "offset" : "hva", (unsigned long long)side_byte(s, from),
		  (unsigned long long)((to - from) * PAGE_4K));
}

/* ---- kernel calls ---- */

/* The kernel call, counted and logged; touches nothing of @s but what
 * side_init() set, so it may run without the region lock. */
static int punch_call(struct cvmconv *c, const struct side *s, uint64_t from, uint64_t to)
{
	uint64_t len = (to - from) * PAGE_4K;
	int ret;

	COUNT(c, punches, 1);
	if (s->fd >= 0)
		ret = op_punch(c, s->fd, side_byte(s, from), len);
	else if (!s->hva_shared && !c->ops.discard_hva)
		ret = kvm_discard_private_hva(&c->vm_fd, (void *)(uintptr_t)side_byte(s, from),
					      len);
	else
		ret = op_discard_hva(c, (void *)(uintptr_t)side_byte(s, from), len);
	PROBE(punch, s->fd, side_byte(s, from), len, ret);
	if (ret < 0) {
		COUNT(c, punch_failures, 1);
		log_guest(c, LOG_ERR,
			  "%s of %s offset 0x%llx len 0x%llx failed: %s; kept for flush",
			  s->fd >= 0 ? "punch" : "discard", s->fd >= 0 ? "fd" : "hva",
			  (unsigned long long)side_byte(s, from), (unsigned long long)len,
			  strerror(-ret));
	}
	return ret;
}

static int punch(struct cvmconv *c, struct side *s, uint64_t from, uint64_t to)
{
	s->steps++;
	return punch_call(c, s, from, to);
}

/* ---- the waiting and failed runs ---- */

/* Stale, held region pages [from, to) whose punch failed. */
static void keep_failed(struct cvmconv *c, struct side *s, uint64_t from, uint64_t to)
{
	s->reserved_runs = 0;
	s->steps++;
	if (runset_add(&s->failed, from, to))
		forget(c, s, from, to);
}

/* Punch stale, held pages [from, to) now; a failure keeps them. */
static void punch_now(struct cvmconv *c, struct side *s, uint64_t from, uint64_t to)
{
	if (punch(c, s, from, to) == 0)
		adjust(c, s, -(int64_t)(to - from));
	else
		keep_failed(c, s, from, to);
}

/* Stale, held pages [from, to) to punch later. @own: they are all pages of
 * the run being committed, so punching them at once is safe should there be
 * no room to wait. */
static void keep_waiting(struct cvmconv *c, struct side *s, uint64_t from, uint64_t to, bool own)
{
	s->reserved_runs = 0;
	s->steps++;
	if (runset_add(&s->waiting, from, to) == 0)
		return;
	if (own)
		punch_now(c, s, from, to);
	else
		forget(c, s, from, to);
}

/* Pages [from, to) went live: none of them may be punched any more. Returns
 * how many were waiting or failed (held, and counted as stale until now). */
static uint64_t unkeep(struct cvmconv *c, struct side *s, uint64_t from, uint64_t to)
{
	struct runset *sets[2] = { &s->waiting, &s->failed };
	uint64_t taken = 0;

	for (int i = 0; i < 2; i++) {
		uint64_t lost;

		if (!sets[i]->n)
			continue;
		s->steps++;
		taken += runset_remove(sets[i], from, to, &lost);
		if (lost) /* only without the room backing_reserve() makes */
			forget(c, s, from - lost, from);
	}
	if (taken)
		s->reserved_runs = 0;
	return taken;
}

/* Punch every waiting run (each is wholly stale: whole huge pages on a huge
 * backing). Called only when the tracker agrees with KVM: at the end of a
 * conversion or from cvmconv_flush(). */
static void punch_waiting(struct cvmconv *c, struct side *s)
{
	uint32_t n = s->waiting.n;

	s->waiting.n = 0;
	s->waiting.pages = 0;
	for (uint32_t i = 0; i < n; i++)
		punch_now(c, s, s->waiting.run[i].from, s->waiting.run[i].to);
}

int backing_reserve(struct region *r, uint64_t runs)
{
	struct side *sides[2] = { &r->shared, &r->private_ };

	for (int i = 0; i < 2; i++) {
		struct side *s = sides[i];

		if (!side_present(s) || runs <= s->reserved_runs)
			continue; /* room left by an earlier reservation, unused since */
		/* per run piece: one waiting run added and one split on the live
		 * side; at the end every waiting run may fail */
		if (runset_reserve(&s->waiting, 2 * runs + 2) ||
		    runset_reserve(&s->failed, s->waiting.n + 4 * runs + 2))
			return -ENOMEM;
		s->reserved_runs = runs;
	}
	return 0;
}

/* ---- huge backings ---- */

/* Freeable huge pages are gathered into runs of touching ones, each kept
 * waiting as one range. */
struct freeable {
	uint64_t from, to;
	bool open;
};

static void freeable_add(struct cvmconv *c, struct side *s, struct freeable *f, uint64_t lo,
			 uint64_t hi, bool freeable)
{
	if (freeable && f->open && f->to == lo) {
		f->to = hi;
		return;
	}
	if (f->open)
		keep_waiting(c, s, f->from, f->to, false);
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
	if (stale_pages(s, r, private_side, lo, hi, !private_side) == hi - lo) {
		bool *edge = edge_flag(s, r, h);

		if (edge)
			*edge = true; /* never punched: not all ours */
		else
			freeable = true;
	}
	freeable_add(c, s, f, lo, hi, freeable);
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
		freeable_add(c, s, &f, lo, hi, true);
	}
	if (h_last != h_first)
		hpage_went_stale(c, r, s, private_side, h_last, from, to, &f);
	freeable_add(c, s, &f, 0, 0, false); /* close the last run */
}

/* Huge page @h, pages [from, to) of it just went live. */
static void hpage_went_live(struct cvmconv *c, struct region *r, struct side *s, bool private_side,
			    uint64_t h, uint64_t from, uint64_t to)
{
	uint64_t lo, hi, a, b, stale, kept;
	bool *edge, held;

	hpage_span(s, r, h, &lo, &hi);
	a = lo > from ? lo : from;
	b = hi < to ? hi : to;
	stale = stale_pages(s, r, private_side, lo, hi, private_side);
	edge = edge_flag(s, r, h);
	kept = unkeep(c, s, lo, hi);
	/* held before: waiting, failed, a held edge, or other live pages */
	held = kept || (edge && *edge) || hi - lo - stale > b - a;
	if (edge)
		*edge = false; /* held through its live pages from now on */
	if (held)	       /* those pages were stale and counted */
		adjust(c, s, -(int64_t)(b - a));
	else /* allocated again from now on: its stale pages count */
		adjust(c, s, (int64_t)stale);
}

static void huge_went_live(struct cvmconv *c, struct region *r, struct side *s, bool private_side,
			   uint64_t from, uint64_t to)
{
	uint64_t h_first = hpage_of(s, from), h_last = hpage_of(s, to - 1);

	hpage_went_live(c, r, s, private_side, h_first, from, to);
	if (h_last > h_first + 1) {
		/* The huge pages between lie wholly in the run (never edges):
		 * all their pages were stale and are live now. Those waiting or
		 * failed were held (their pages counted); the others were not
		 * held and have no stale page now. One search, however many
		 * huge pages. */
		uint64_t lo, hi, unused;

		hpage_span(s, r, h_first + 1, &lo, &unused);
		hpage_span(s, r, h_last - 1, &unused, &hi);
		adjust(c, s, -(int64_t)unkeep(c, s, lo, hi));
	}
	if (h_last != h_first)
		hpage_went_live(c, r, s, private_side, h_last, from, to);
}

/* ---- the entry points ---- */

void backing_release_stale(struct cvmconv *c, struct region *r, uint64_t from, uint64_t to,
			   bool now_private)
{
	struct side *stale = region_side(r, !now_private), *live = region_side(r, now_private);

	if (side_present(live)) {
		if (side_is_huge(live))
			huge_went_live(c, r, live, now_private, from, to);
		else if (live->waiting.n || live->failed.n)
			adjust(c, live, -(int64_t)unkeep(c, live, from, to));
	}
	if (side_present(stale)) {
		if (side_is_huge(stale)) {
			huge_went_stale(c, r, stale, !now_private, from, to);
		} else if (c->defer_punch) {
			adjust(c, stale, (int64_t)(to - from));
			keep_waiting(c, stale, from, to, true);
		} else if (punch(c, stale, from, to)) {
			adjust(c, stale, (int64_t)(to - from));
			keep_failed(c, stale, from, to);
		}
	}
}

int backing_allocate_shared(struct cvmconv *c, struct region *r, uint64_t from, uint64_t to)
{
	struct side *s = &r->shared;

	(void)c;
	s->steps++;
	return kvm_allocate(s->fd, side_byte(s, from), (to - from) * PAGE_4K);
}

/* Stale, possibly allocated pages [from, to) of the shared side, none live:
 * punched, whatever waited or failed there before. */
static void unallocate(struct cvmconv *c, struct side *s, uint64_t from, uint64_t to)
{
	adjust(c, s, -(int64_t)unkeep(c, s, from, to));
	if (punch(c, s, from, to)) {
		adjust(c, s, (int64_t)(to - from));
		keep_failed(c, s, from, to);
	}
}

void backing_unallocate_shared(struct cvmconv *c, struct region *r, uint64_t from, uint64_t to)
{
	struct side *s = &r->shared;
	uint64_t h_first, h_last;

	if (from >= to)
		return;
	if (!side_is_huge(s)) {
		/* every page of the run is private again: stale here */
		unallocate(c, s, from, to);
		return;
	}
	/* only huge pages without a live page, whose pages are all stale */
	h_first = hpage_of(s, from);
	h_last = hpage_of(s, to - 1);
	if (h_last > h_first + 1) {
		/* wholly inside the run, so all private, and never edges */
		uint64_t lo, hi, unused;

		hpage_span(s, r, h_first + 1, &lo, &unused);
		hpage_span(s, r, h_last - 1, &unused, &hi);
		unallocate(c, s, lo, hi);
	}
	for (int end = 0; end < 2; end++) {
		uint64_t h = end ? h_last : h_first, lo, hi;
		bool *edge;

		if (end && h_last == h_first)
			break;
		hpage_span(s, r, h, &lo, &hi);
		if (stale_pages(s, r, false, lo, hi, -1) != hi - lo)
			continue; /* a live page: it was held, nothing new */
		edge = edge_flag(s, r, h);
		if (!edge) {
			unallocate(c, s, lo, hi);
		} else if (!*edge) {
			/* partly another region's: never punched; held (it may
			 * have been allocated just now) and counted as such */
			*edge = true;
			adjust(c, s, (int64_t)(hi - lo));
		}
	}
}

void backing_commit(struct cvmconv *c, struct region *r)
{
	struct side *sides[2] = { &r->shared, &r->private_ };

	for (int i = 0; i < 2; i++)
		if (sides[i]->waiting.n && (!c->defer_punch || sides[i]->waiting.n > DEFERRED_MAX))
			punch_waiting(c, sides[i]);
}

bool backing_flush_take(struct cvmconv *c, struct region *r, struct side **sp)
{
	struct side *sides[2] = { &r->shared, &r->private_ };

	for (int i = 0; i < 2; i++) {
		struct side *s = sides[i];
		uint64_t from, to, lost, most;

		if (!s->waiting.n)
			continue;
		/* the tail of the last run: what consecutive exits made stale
		 * goes in one punch, up to FLUSH_PIECE_BYTES (whole huge pages,
		 * at least one), which bounds how long a conversion that makes
		 * some of it live again waits. From the top down: a guest
		 * converting a range back walks it upwards, so it meets the
		 * flush once instead of following it piece by piece. */
		most = FLUSH_PIECE_BYTES >> s->page_shift << s->page_shift;
		most = (most ? most : s->page_size) / PAGE_4K;
		from = s->waiting.run[s->waiting.n - 1].from;
		to = s->waiting.run[s->waiting.n - 1].to;
		if (to - from > most)
			from = to - most;
		s->steps += 2; /* the removal, and the punch */
		runset_remove(&s->waiting, from, to, &lost);
		s->inflight_from = from;
		s->inflight_to = to;
		atomic_fetch_add_explicit(&c->inflight_sides, 1, memory_order_relaxed);
		*sp = s;
		return true;
	}
	return false;
}

int backing_flush_punch(struct cvmconv *c, const struct side *s)
{
	return punch_call(c, s, s->inflight_from, s->inflight_to);
}

void backing_flush_done(struct cvmconv *c, struct region *r, struct side *s, int ret)
{
	uint64_t from = s->inflight_from, to = s->inflight_to;

	s->inflight_from = s->inflight_to = 0;
	atomic_fetch_sub_explicit(&c->inflight_sides, 1, memory_order_relaxed);
	if (ret == 0)
		adjust(c, s, -(int64_t)(to - from));
	else /* no conversion made them live meanwhile: they are still stale */
		keep_failed(c, s, from, to);
	pthread_cond_broadcast(&r->flushed);
}

bool backing_inflight(const struct region *r, bool private_side, uint64_t from, uint64_t to)
{
	const struct side *s = private_side ? &r->private_ : &r->shared;

	return s->inflight_to > s->inflight_from && from < s->inflight_to && s->inflight_from < to;
}

static int flush_side(struct cvmconv *c, struct region *r, struct side *s, bool private_side)
{
	uint32_t kept = 0;
	int err = 0;

	if (!side_present(s))
		return 0;
	/* the waiting runs were cvmconv_flush()'s, without the lock; what a
	 * conversion added since waits for the next flush (the poll fd says
	 * so), not punched here under the lock */
	for (uint32_t i = 0; i < s->failed.n; i++) {
		struct page_run run = s->failed.run[i];
		int ret;

		/* every page of a failed run is stale (a page going live leaves
		 * it); checked anyway, as a live page must never be punched */
		if (stale_pages(s, r, private_side, run.from, run.to, -1) != run.to - run.from) {
			log_msg(c, LOG_CRIT, "internal error: live page in a failed punch run");
			forget(c, s, run.from, run.to);
			s->failed.pages -= run.to - run.from;
			continue;
		}
		ret = punch(c, s, run.from, run.to);
		if (ret == 0) {
			adjust(c, s, -(int64_t)(run.to - run.from));
			s->failed.pages -= run.to - run.from;
		} else {
			err = ret;
			s->failed.run[kept++] = run;
		}
	}
	s->failed.n = kept;
	return err;
}

int backing_flush(struct cvmconv *c, struct region *r)
{
	int a = flush_side(c, r, &r->shared, false);
	int b = flush_side(c, r, &r->private_, true);

	return b ? b : a;
}

void backing_note_pending(struct cvmconv *c, struct region *r)
{
	struct side *sides[2] = { &r->shared, &r->private_ };

	for (int i = 0; i < 2; i++) {
		struct side *s = sides[i];
		/* a punch in flight needs no mark: the flush calls this again
		 * once it is done */
		bool now = s->waiting.n || s->failed.n;

		if (now == s->pending)
			continue;
		s->pending = now;
		if (!now) {
			atomic_fetch_sub(&c->pending_sides, 1);
		} else if (atomic_fetch_add(&c->pending_sides, 1) == 0 && c->poll_fd >= 0) {
			uint64_t one = 1;

			/* 0 -> 1: the event loop has work */
			if (write(c->poll_fd, &one, sizeof(one)) < 0) {
				/* EAGAIN only when the counter is full: readable anyway */
			}
		}
	}
}

void backing_poll_settle(struct cvmconv *c)
{
	uint64_t v;

	if (c->poll_fd < 0 || atomic_load(&c->pending_sides))
		return;
	/* drain, then look again: a conversion on another region may have
	 * made the count 0 -> 1 (and written) between the load and the read */
	if (read(c->poll_fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: it was not readable */
	}
	if (atomic_load(&c->pending_sides)) {
		uint64_t one = 1;

		if (write(c->poll_fd, &one, sizeof(one)) < 0) {
			/* full: readable anyway */
		}
	}
}

uint64_t backing_pending_bytes(const struct region *r)
{
	const struct side *sides[2] = { &r->shared, &r->private_ };
	uint64_t pages = 0;

	for (int i = 0; i < 2; i++)
		pages += sides[i]->waiting.pages + sides[i]->failed.pages +
			 (sides[i]->inflight_to - sides[i]->inflight_from);
	return pages * PAGE_4K;
}
