/* SPDX-License-Identifier: MIT */
/* Internal interfaces of the host library. Data flows one way:
 * exit.c -> convert.c (validate, policy, apply, commit; runs.c finds the
 * runs, inplace.c makes in-place updates) -> extents.c (state) ->
 * backing.c (punch; flush.c off the vCPU threads) -> kvm.c (the kernel
 * calls, kvm.h: no library state) ; stats.c reads, log.c is a sink. */
#ifndef CVMCONV_INTERNAL_H
#define CVMCONV_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "cvmconv.h"
#include "kvm.h"

#define PAGE_SHIFT_4K 12
#define PAGE_4K 4096ULL
#define EXTENT_SHIFT 21 /* tracker extent: 2 MiB, the x86 EPT/NPT large page */
#define EXTENT_BYTES (1ULL << EXTENT_SHIFT)
#define PAGES_PER_EXTENT 512u
#define SIZE_2M (2ULL << 20)
#define SIZE_1G (1ULL << 30)
/* Largest guest physical address any x86 CPU can name (MAXPHYADDR 52). */
#define GPA_LIMIT (1ULL << 52)

#ifndef HIDDEN
#define HIDDEN __attribute__((visibility("hidden")))
#endif
/* Hot paths are flattened; what is off them stays out of line. */
#define FLATTEN __attribute__((flatten))
#define NOINLINE __attribute__((noinline))

/* ---- u64map.c: 64-bit key -> value hash (see there) ---- */

#define U64MAP_EMPTY UINT64_MAX /* the one key that cannot be stored */

struct u64map_slot {
	uint64_t key, value;
};

struct u64map {
	struct u64map_slot *slots;
	uint64_t cap, count;
};

HIDDEN uint64_t *u64map_find(const struct u64map *m, uint64_t key);
/* Room must have been reserved; returns the (new: zero) value. */
HIDDEN uint64_t *u64map_insert(struct u64map *m, uint64_t key);
HIDDEN void u64map_remove(struct u64map *m, uint64_t *value);
HIDDEN int u64map_reserve(struct u64map *m, uint64_t extra);
HIDDEN void u64map_fini(struct u64map *m);

/* ---- extents.c: per-region private/shared state in 2 MiB extents ---- */

struct run_node;
struct mixed_extent;
union item;

struct tracker {
	uint64_t gpa, npages;  /* region range in 4 KiB pages from gpa */
	uint64_t first_extent; /* gpa >> EXTENT_SHIFT */
	uint64_t first_offset; /* pages of the first extent before the region */
	uint64_t nextents;     /* 2 MiB extents the region touches */
	uint64_t private_pages;
	struct run_node *root;	/* runs of private extents, a treap by start */
	struct u64map mixed;	/* mixed extent -> its page map; count = mixed extents */
	struct u64map groups;	/* 1 GiB group -> its mixed extents (an index) */
	union item *free_items; /* reserved nodes and page maps */
	uint64_t nfree, items_allocated;
	uint64_t last_x; /* the extent looked at last, and its page map */
	struct mixed_extent *last_mixed;
	uint32_t prio; /* treap priorities: a private LCG, not guest-controlled */
};

HIDDEN int tracker_init(struct tracker *t, uint64_t gpa, uint64_t size, bool private);
HIDDEN void tracker_fini(struct tracker *t);
/* Page p is region-relative (0 .. npages-1). */
HIDDEN bool tracker_page_private(const struct tracker *t, uint64_t p);
/* First page in [from, to) whose state equals @private, or @to. Not const:
 * like tracker_run(), it remembers the extent it looked at. */
HIDDEN uint64_t tracker_find(struct tracker *t, uint64_t from, uint64_t to, bool private);
/* Number of private pages in [from, to). @uniform: the state of the extent
 * holding [from, to) if that extent is uniform (1 private, 0 shared; the
 * caller knows it from a page it just set), or -1: look it up. */
HIDDEN uint64_t tracker_count_private(const struct tracker *t, uint64_t from, uint64_t to,
				      int uniform);
/* The first maximal run [*a, *b) of pages in state @private within
 * [from, to); false if there is none. */
HIDDEN bool tracker_run(struct tracker *t, uint64_t from, uint64_t to, bool private, uint64_t *a,
			uint64_t *b);
/* Set [from, to) to @private; every page of it is in the other state (a
 * run the caller found with tracker_run()). Cannot fail: callers first
 * reserve room with tracker_reserve() (-ENOMEM) for the @sets calls of
 * @requests requests (each the runs of one request in this region), so
 * that nothing can fail after the kernel changed state. */
HIDDEN int tracker_reserve(struct tracker *t, uint64_t sets, uint64_t requests);
HIDDEN void tracker_set(struct tracker *t, uint64_t from, uint64_t to, bool private);
HIDDEN uint64_t tracker_mixed(const struct tracker *t);
HIDDEN uint64_t tracker_private_pages(const struct tracker *t);
/* Whole 2 MiB extents inside the region that are uniform. */
HIDDEN uint64_t tracker_uniform_full_extents(const struct tracker *t);
HIDDEN uint64_t tracker_heap_bytes(const struct tracker *t);
/* State of the region's first (or last) extent within the region. */
enum { EDGE_SHARED, EDGE_PRIVATE, EDGE_MIXED };
HIDDEN int tracker_edge_extent(const struct tracker *t, bool last);

/* ---- runset.c: sorted, disjoint, non-touching runs of region pages ---- */

#define RUNSET_MAX 65536u /* runs one set may hold; see runset_reserve() */

struct page_run {
	uint64_t from, to;
};

struct runset {
	struct page_run *run;
	uint32_t n, cap;
	uint64_t pages; /* sum of the runs' lengths */
};

/* Room for @extra more runs (capped at RUNSET_MAX runs in all): after it,
 * that many adds or splits cannot fail. -ENOMEM. */
HIDDEN int runset_reserve(struct runset *s, uint64_t extra);
/* Add [from, to), merging with runs it overlaps or touches; -ENOSPC when a
 * new run is needed and no room is left (nothing changed then). */
HIDDEN int runset_add(struct runset *s, uint64_t from, uint64_t to);
/* Take [from, to) out; returns how many of its pages were in the set. A
 * split without room drops the part of the run before @from: *lost says
 * how many pages left the set that way. */
HIDDEN uint64_t runset_remove(struct runset *s, uint64_t from, uint64_t to, uint64_t *lost);
HIDDEN void runset_fini(struct runset *s);

/* ---- backing.c: one side (shared or private) of a region ---- */

/* Waiting ranges a side may keep between conversions with
 * CVMCONV_DEFER_PUNCH; a conversion that leaves more punches them all at its
 * end. */
#define DEFERRED_MAX CVMCONV_DEFER_RANGES

struct side {
	int fd;		      /* -1 with hva == NULL: no backing, nothing to punch */
	void *hva;	      /* used when fd < 0 (madvise path) */
	bool hva_shared;      /* MAP_SHARED: MADV_REMOVE; private: MADV_DONTNEED */
	uint64_t offset;      /* file offset (fd) or hva address of the region start */
	uint64_t page_size;   /* unit the kernel frees: 4 KiB or huge page size */
	unsigned page_shift;  /* log2(page_size) */
	uint64_t first_hpage; /* offset / page_size */
	uint64_t nhpages;     /* huge pages the region touches */
	/* Huge backings: a huge page counts as allocated ("held") while any of
	 * its pages is live here, and after that until it is punched. A huge
	 * page only partly inside the region (an edge) is never punched: the
	 * rest of it may be someone else's; edge_held says it stays allocated
	 * with no live page ([0] first huge page, [1] last). */
	bool edge_held[2];
	/* Stale memory still allocated, as runs of region pages (whole huge
	 * pages on huge backings), every page of them stale:
	 *   waiting  to be punched at the end of the conversion, or with
	 *            CVMCONV_DEFER_PUNCH at cvmconv_flush();
	 *   failed   punched and the kernel refused; retried by cvmconv_flush()
	 *            only, never by a conversion (bounded work per request).
	 * A page that goes live again leaves both. */
	struct runset waiting, failed;
	uint64_t double_alloc_pages; /* pages stale here that are still held */
	uint64_t reserved_runs;	     /* backing_reserve() made room for this many
				      * runs, and none of it was used since */
	uint64_t steps;		     /* bookkeeping steps (cvmconv_stats.bookkeeping_steps) */
	bool pending;		     /* waiting or failed runs: counted in cvmconv.pending_sides */
	/* cvmconv_flush() punching [inflight_from, inflight_to) without the
	 * region lock (taken from the waiting runs; still counted as held): a
	 * conversion that would make any of it live waits for it first */
	uint64_t inflight_from, inflight_to;
};

struct region {
	pthread_mutex_t lock;	/* tracker, backings; taken in ascending gpa order */
	pthread_cond_t flushed; /* with @lock: an in-flight punch of a side ended */
	uint64_t gpa, size, npages;
	int unaligned;	   /* enum cvmconv_unaligned */
	bool attrs_only;   /* CVMCONV_REGION_ATTRS_ONLY */
	bool alloc_shared; /* CVMCONV_REGION_ALLOC_SHARED */
	/* CVMCONV_REGION_INPLACE: one guest_memfd holds both sides; both
	 * struct sides are empty (nothing to punch, nothing held twice) */
	bool inplace;
	int gmem_fd;
	uint64_t gmem_offset;  /* file offset of @gpa */
	uint64_t content_mode; /* CVMCONV_CONTENT_* for conversions */
	uint64_t steps;	       /* tracker walks and updates of requests, under @lock */
	struct tracker tr;
	struct side shared, private_;
};

static inline struct side *region_side(struct region *r, bool private_side)
{
	return private_side ? &r->private_ : &r->shared;
}

/* The side the region starts on is held through its live pages. */
HIDDEN int side_init(struct side *s, int fd, void *hva, uint64_t offset, uint64_t npages);
HIDDEN void side_fini(struct cvmconv *c, struct side *s);
HIDDEN bool side_is_huge(const struct side *s);

/* ---- the region list lock ---- */

/* Readers (every request) far outnumber writers (adding and removing
 * regions or listeners, at VM set-up), and a pthread rwlock costs a request
 * some 60 instructions. Here a reader announces itself and checks for a
 * writer; a writer announces itself and waits for the readers to leave.
 * Both announcements are sequentially consistent, so at least one side sees
 * the other. Readers arriving while a writer is in queue behind its mutex.
 * Like a rwlock, a reader must not ask for the write side. */
struct regions_lock {
	_Atomic uint64_t readers;
	atomic_bool writing;
	_Atomic uint64_t blocked; /* readers that found a writer in, until they get in */
	pthread_mutex_t writer;
};

static inline void regions_read_lock(struct regions_lock *l)
{
	bool blocked = false;

	for (;;) {
		atomic_fetch_add(&l->readers, 1);
		if (!atomic_load(&l->writing)) {
			if (blocked)
				atomic_fetch_sub(&l->blocked, 1);
			return;
		}
		atomic_fetch_sub(&l->readers, 1);
		if (!blocked) {
			atomic_fetch_add(&l->blocked, 1);
			blocked = true;
		}
		pthread_mutex_lock(&l->writer); /* wait for the writer */
		pthread_mutex_unlock(&l->writer);
	}
}

static inline void regions_read_unlock(struct regions_lock *l)
{
	atomic_fetch_sub_explicit(&l->readers, 1, memory_order_release);
}

HIDDEN void regions_write_lock(struct regions_lock *l);
HIDDEN void regions_write_unlock(struct regions_lock *l);

/* fault_guard.c: the last memory fault of each vCPU (by its kvm_run) */
#define FAULT_MEMOS 256u
struct fault_memo {
	const void *run;
	uint64_t gpa, size, flags;
	uint64_t gen; /* conversions committed when it was seen */
};

/* ---- context ---- */

struct ratelimit {
	struct timespec window_start;
	uint32_t in_window;
	uint64_t suppressed, suppressed_reported;
};

/* Updated by threads holding different region locks: relaxed atomics. */
struct counters {
	_Atomic uint64_t exits, rejected, unaligned;
	_Atomic uint64_t to_private_bytes, to_shared_bytes;
	_Atomic uint64_t attr_updates, punches, punch_failures;
	_Atomic uint64_t double_alloc_peak_bytes;
	_Atomic uint64_t steps_removed; /* bookkeeping steps of removed regions */
	_Atomic uint64_t shared_alloc_failures;
	_Atomic uint64_t gmem_busy_retries, gmem_busy_failures;
};

#define COUNT(c, field, v) atomic_fetch_add_explicit(&(c)->n.field, (v), memory_order_relaxed)
#define READ(c, field) atomic_load_explicit(&(c)->n.field, memory_order_relaxed)

struct cvmconv {
	/* Locking: @regions_lock (read: requests, stats, flush; write: add and
	 * remove regions or listeners), then the locks of the regions a
	 * request covers in ascending order, then @log_lock. Requests on
	 * disjoint regions run in parallel, kernel calls included. */
	struct regions_lock regions_lock;
	pthread_mutex_t log_lock;   /* rate limit state; serialises the log callback */
	pthread_mutex_t flush_lock; /* one cvmconv_flush() at a time; before all others */
	/* sides with a punch in flight (changed under that region's lock, so
	 * exact for a reader holding it): conversions skip the in-flight check
	 * while it is 0 */
	_Atomic uint32_t inflight_sides;
	int vm_fd;
	uint64_t granule;
	enum cvmconv_unaligned unaligned;
	bool defer_punch;	   /* CVMCONV_DEFER_PUNCH: stale memory waits for flush */
	bool gmem_attributes;	   /* CVMCONV_GMEM_ATTRIBUTES: no per-VM attributes */
	uint32_t inplace_retries;  /* tries after an -EAGAIN of an in-place update */
	_Atomic uint32_t ninplace; /* in-place regions registered */
	struct cvmconv_ops ops;	   /* the VMM's; NULL members: kernel ops (kvm.c) */
	void *ops_opaque;
	void (*log_fn)(void *opaque, int level, const char *msg);
	void *log_opaque;
	struct ratelimit rl;
	atomic_bool broken;
	_Atomic uint64_t double_alloc_pages; /* sum over all sides of all regions */
	struct cvmconv_listener listeners[CVMCONV_MAX_LISTENERS];
	int listener_ids[CVMCONV_MAX_LISTENERS];
	unsigned nlisteners;
	int next_listener_id;
	/* the poll fd: an eventfd, readable while any side has waiting or
	 * failed punches (pending_sides > 0); cvmconv_flush() drains it */
	int poll_fd;
	_Atomic uint32_t pending_sides;
	/* conversions committed (any thread): a memory fault that comes back
	 * with none in between cannot be resolved by converting */
	_Atomic uint64_t generation;
	pthread_mutex_t fault_lock;
	struct fault_memo fault_memo[FAULT_MEMOS];
	struct region **regions; /* sorted by gpa, non-overlapping */
	uint32_t nregions, regions_cap;
	struct counters n;
};

/* Kernel calls go through these: the VMM's op with its opaque, or ours. */
static inline int op_set_memory_attributes(struct cvmconv *c, uint64_t gpa, uint64_t size,
					   uint64_t attributes)
{
	if (c->ops.set_memory_attributes)
		return c->ops.set_memory_attributes(c->ops_opaque, gpa, size, attributes);
	return kvm_set_memory_attributes(&c->vm_fd, gpa, size, attributes);
}

static inline int op_set_gmem_attributes(struct cvmconv *c, int gmem_fd, uint64_t offset,
					 uint64_t size, uint64_t attributes, uint64_t flags,
					 uint64_t *error_offset)
{
	if (c->ops.set_gmem_attributes)
		return c->ops.set_gmem_attributes(c->ops_opaque, gmem_fd, offset, size, attributes,
						  flags, error_offset);
	return kvm_set_gmem_attributes(&c->vm_fd, gmem_fd, offset, size, attributes, flags,
				       error_offset);
}

static inline int op_punch(struct cvmconv *c, int fd, uint64_t offset, uint64_t len)
{
	if (c->ops.punch)
		return c->ops.punch(c->ops_opaque, fd, offset, len);
	return kvm_punch(&c->vm_fd, fd, offset, len);
}

static inline int op_discard_hva(struct cvmconv *c, void *hva, uint64_t len)
{
	if (c->ops.discard_hva)
		return c->ops.discard_hva(c->ops_opaque, hva, len);
	return kvm_discard_hva(&c->vm_fd, hva, len);
}

/* inplace.c: KVM_SET_MEMORY_ATTRIBUTES2 over pages [from, to) of the
 * in-place region @r, tried again (at most c->inplace_retries times) while
 * a page is busy (-EAGAIN). Returns 0 or -errno, and then nothing of
 * [from, to) has changed (what a kernel converted before the busy page is
 * set back), or -ENOTRECOVERABLE (that failed: broken). @rollback: the
 * call sets back an earlier one (content mode UNSPECIFIED or PRESERVE; no
 * set back of its own). */
HIDDEN int inplace_set(struct cvmconv *c, struct region *r, uint64_t from, uint64_t to,
		       bool to_private, bool rollback);

/* log.c: rate-limited for anything a guest can trigger. */
HIDDEN void log_msg(struct cvmconv *c, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
HIDDEN void log_guest(struct cvmconv *c, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* backing.c: region pages [from, to) just changed state (the tracker already
 * says so): account the side they left and the side they joined, and punch
 * what became wholly stale. Failures are counted and kept for
 * cvmconv_flush(); nothing here can undo the conversion. */
HIDDEN void backing_release_stale(struct cvmconv *c, struct region *r, uint64_t from, uint64_t to,
				  bool now_private);
/* End of a transaction on @r: punch the huge pages it made freeable that
 * are still wholly stale, one call per contiguous range. */
HIDDEN void backing_commit(struct cvmconv *c, struct region *r);
/* Under @r's lock: retry the failed runs (what waits is punched by
 * cvmconv_flush() through backing_flush_take() and friends). */
HIDDEN int backing_flush(struct cvmconv *c, struct region *r);
/* cvmconv_flush() punches waiting runs without the region lock, so that a
 * vCPU thread converting on @r never waits for a punch unless it makes the
 * punched memory live. backing_flush_take(), under @r's lock: the tail of
 * the last waiting run of either side goes in flight (at most
 * FLUSH_PIECE_BYTES, whole huge pages); false when nothing waits.
 * backing_flush_punch(), without the lock: the kernel call.
 * backing_flush_done(), under the lock: its accounting, and the waiters
 * woken. One flusher at a time (cvmconv.flush_lock). */
#define FLUSH_PIECE_BYTES (8ULL << 20)
HIDDEN bool backing_flush_take(struct cvmconv *c, struct region *r, struct side **s);
HIDDEN int backing_flush_punch(struct cvmconv *c, const struct side *s);
HIDDEN void backing_flush_done(struct cvmconv *c, struct region *r, struct side *s, int ret);
/* Whether region pages [from, to) overlap a punch in flight on the side
 * @private_side of @r. */
HIDDEN bool backing_inflight(const struct region *r, bool private_side, uint64_t from, uint64_t to);
/* Before any attribute changes: room for what @runs run pieces may need to
 * remember (failed punches, splits), so the commit needs no memory. */
HIDDEN int backing_reserve(struct region *r, uint64_t runs);
HIDDEN uint64_t backing_pending_bytes(const struct region *r);
/* After a request or a flush on @r: keep the poll fd readable while any
 * side of any region has something to punch. */
HIDDEN void backing_note_pending(struct cvmconv *c, struct region *r);
/* cvmconv_flush()'s end: the poll fd stops being readable if nothing waits. */
HIDDEN void backing_poll_settle(struct cvmconv *c);
/* CVMCONV_REGION_ALLOC_SHARED: allocate the shared backing of region pages
 * [from, to), which KVM already calls shared and the tracker still private.
 * 0 or the kernel's -errno. */
HIDDEN int backing_allocate_shared(struct cvmconv *c, struct region *r, uint64_t from, uint64_t to);
/* After a failed allocation and the rollback (the pages are private again):
 * punch what backing_allocate_shared() of [from, to) may have allocated,
 * that is every huge page (4 KiB page) of the shared side holding no live
 * page, and account for what cannot be punched. */
HIDDEN void backing_unallocate_shared(struct cvmconv *c, struct region *r, uint64_t from,
				      uint64_t to);
/* Bookkeeping steps of @r: its own and its sides'. */
static inline uint64_t region_steps(const struct region *r)
{
	return r->steps + r->shared.steps + r->private_.steps;
}

/* policy.c: strictest policy of regions[first..last]; whether an
 * (un)aligned request may proceed (counts and logs unaligned ones). */
HIDDEN enum cvmconv_unaligned policy_strictest(struct cvmconv *c, uint32_t first, uint32_t last);
HIDDEN bool policy_allows(struct cvmconv *c, uint64_t gpa, uint64_t size, bool to_private,
			  enum cvmconv_unaligned mode);

/* stats.c */
HIDDEN uint64_t stats_double_alloc_bytes(const struct cvmconv *c);
HIDDEN void stats_update_peak(struct cvmconv *c);

/* context.c */
/* Copy a caller's sz-prefixed struct into ours: shorter ones are
 * zero-extended, longer ones must have a zero tail (-E2BIG); below @minimum
 * bytes -EINVAL. */
HIDDEN int copy_sized(void *dst, size_t ours, const void *src, size_t theirs, size_t minimum);
HIDDEN struct region *context_find_region(struct cvmconv *c, uint64_t gpa, uint32_t *idx);

/* query.c: the maximal runs of one state in [gpa, end), ascending, merged
 * across adjacent regions; the caller holds the region list (either way). */
typedef int (*query_cb)(void *opaque, uint64_t gpa, uint64_t size, bool is_private);
HIDDEN int query_runs(struct cvmconv *c, uint64_t gpa, uint64_t end, query_cb cb, void *opaque);

/* fault_guard.c: true when @run reported this very fault last time and no
 * conversion was committed since (@gen_before: the generation read before
 * the request was handled); records it either way. */
HIDDEN bool fault_guard_repeats(struct cvmconv *c, const void *run, uint64_t gpa, uint64_t size,
				uint64_t flags, uint64_t gen_before);

/* Requests hold the region list for reading; see struct cvmconv. */
static inline int context_lock(struct cvmconv *c)
{
	regions_read_lock(&c->regions_lock);
	if (atomic_load(&c->broken)) {
		regions_read_unlock(&c->regions_lock);
		return -ENOTRECOVERABLE;
	}
	return 0;
}

static inline void context_unlock(struct cvmconv *c)
{
	regions_read_unlock(&c->regions_lock);
}

/* convert.c: the whole transaction (validate, policy, plan, apply, punch).
 * A request as decoded from an exit (exit.c) or made by the host. */
struct conversion {
	uint64_t gpa, size;
	bool to_private;
	bool guest;	     /* guest request: counted, policy applies */
	const char *source;  /* "map_gpa_range", "memory_fault", "convert" */
	const char *invalid; /* set by the decoder: why the fields are malformed */
	uint64_t raw[3];     /* guest fields as received, for log lines */
	bool *by_policy;     /* optional: set when refused by the alignment policy */
};

/* Returns 0 with *guest_err = 0 (done) or a KVM error code (refused, nothing
 * changed); or -errno for a host failure (rolled back; *guest_err =
 * CVMCONV_KVM_EFAULT), -ENOTRECOVERABLE when broken. For host requests a
 * refusal is returned as -EINVAL. */
HIDDEN int convert_request(struct cvmconv *c, const struct conversion *cv, int *guest_err);

/* ---- runs.c: the runs of a request, read from the tracker ---- */

/* Regions [*first, *last] cover [gpa, gpa + size) without a gap. */
HIDDEN bool runs_covering(struct cvmconv *c, uint64_t gpa, uint64_t size, uint32_t *first,
			  uint32_t *last);
/* Pages of region @r inside the request [gpa, end). */
HIDDEN void run_clip(const struct region *r, uint64_t gpa, uint64_t end, uint64_t *from,
		     uint64_t *to);

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

/* One validated request of a transaction, the regions it covers and its
 * runs. Planning walks the tracker once; the few runs of a typical request
 * are kept here for every later phase. A request with more runs (a hostile
 * checkerboard, say) is walked again in each phase instead. */
#define PLANNED_RUNS 8

struct planned {
	const struct conversion *cv;
	uint32_t first, last;
	uint32_t nruns;
	bool walk;	/* more than PLANNED_RUNS runs: walk the tracker each time */
	uint64_t total; /* runs in all, counted once by plan() */
	struct {
		uint64_t gpa, end;
	} run[PLANNED_RUNS];
};

struct run_iter {
	const struct planned *p;
	uint32_t i;
	struct run_walk w;
};

/* Walk the runs of @p from the start (its plan, or the tracker again). */
HIDDEN void runs_start(struct run_iter *it, struct cvmconv *c, const struct planned *p);
HIDDEN bool runs_next(struct run_iter *it, uint64_t *gpa, uint64_t *end);
/* Count the runs of @p->cv, keeping the first PLANNED_RUNS. */
HIDDEN void runs_plan(struct cvmconv *c, struct planned *p);

/* The kernel calls of one run [gpa, end) of a request over regions
 * [first, last]: one KVM_SET_MEMORY_ATTRIBUTES for each stretch of
 * adjacent two-backing regions, one KVM_SET_MEMORY_ATTRIBUTES2 per
 * in-place region piece (its own guest_memfd). */
struct piece_iter {
	struct cvmconv *c;
	uint32_t i, last;
	uint64_t pos, end;
};

HIDDEN bool piece_next(struct piece_iter *it, uint64_t *from, uint64_t *to,
		       struct region **inplace);

#endif
