/* SPDX-License-Identifier: MIT */
/*
 * fuzz_exits: the whole guest-facing surface of cvmconv under libFuzzer.
 *
 * The input is a configuration byte pair followed by a sequence of
 * operations: KVM_HC_MAP_GPA_RANGE requests (direct and through a kvm_run),
 * memory fault exits, exits with garbage reasons, host conversions, batches,
 * flushes, listener vetoes, injected attribute and punch failures (every
 * errno KVM and fallocate/madvise can return), overlapping add_region calls.
 * Values are biased towards region edges, 2 MiB extent edges and the
 * limits the contract names (2^40 pages, 2^52 bytes, 2^64 - 1).
 *
 * The context has three regions over real memfds (a few MiB): R0 (shmem shared side),
 * R1 (shmem, adjacent to R0, shared side given by fd or only as a host
 * mapping: the madvise path), a gap, R2 (MFD_HUGETLB shared side at an offset
 * that is not huge page aligned, never touched so it needs no reserved huge
 * pages; optionally starting private). Every private side is a shmem
 * stand-in (R2's is not mapped, so never written). The strict fake KVM
 * serves the attribute updates. Configuration bit 0x10 makes R1 an
 * in-place region (CVMCONV_REGION_INPLACE, content mode PRESERVE) over the
 * strict fake guest_memfd: one file for both sides, never punched, its
 * data kept across conversions; injected failures reach its
 * KVM_SET_MEMORY_ATTRIBUTES2 calls too, an EAGAIN being tried again by the
 * library up to CVMCONV_INPLACE_RETRIES times.
 *
 * After every operation the harness checks, and aborts on any difference:
 *  - the library's view of every page == the fake kernel's == a plain
 *    bitmap model that is updated only when the library reports success;
 *  - refusal and acceptance match docs/semantics.md (predicted from the
 *    request alone), error codes for the VMM and for the guest included;
 *  - listener before/after pairs, and the runs reported by after() replayed
 *    on the previous model give the new model;
 *  - the live side of every page still holds its tag (nothing live was
 *    punched); a page that became live reads zeros on its new side (or its
 *    old tag when a punch failed); every punch/discard covered only pages
 *    stale at the end of the operation, and on the hugetlb side only whole
 *    huge pages inside the region;
 *  - double_alloc_bytes and punch_pending_bytes equal what the kernel
 *    (st_blocks) and a huge page "held" model say; a flush that returns 0
 *    leaves nothing pending;
 *  - a kvm_run that is not a conversion exit is left untouched;
 *  - once a rollback failed, every call returns -ENOTRECOVERABLE and no
 *    kernel call is issued.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "cvmconv.h"
#include "fake_kvm.h"
#include "kvm_compat.h"

#define PG 4096ULL
#define HPG (2ULL << 20)
#define NREG 3
#define MAX_OPS 128
#define MAX_EVENTS 65536
#define GPA_LIMIT (1ULL << 52)

#define CHECK(cond, ...)                                                                     \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			fprintf(stderr, "fuzz_exits: check failed at %s:%d: %s: ", __FILE__, \
				__LINE__, #cond);                                            \
			fprintf(stderr, __VA_ARGS__);                                        \
			fputc('\n', stderr);                                                 \
			abort();                                                             \
		}                                                                            \
	} while (0)

/* FUZZ_EXITS_TRACE=1 prints every operation (to debug a reproducer). */
static bool tracing;
/* Set by FUZZ_EXITS_LENIENT_BATCH: see batch_valid(). */
static bool lenient_batch;

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void trace(const char *fmt, ...)
{
	va_list ap;

	if (!tracing)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- fixed geometry, created once ---- */

struct fz_region {
	uint64_t gpa, size, npages;
	uint64_t first; /* index of its first page in the model window */
	uint64_t shared_offset;
	int shared_fd, private_fd;
	uint8_t *shared_map, *private_map; /* NULL: not mapped (hugetlb side) */
	uint64_t shared_map_size;
	bool shared_huge;
	/* per input */
	bool present;
	bool by_hva;
	bool inplace; /* R1 only: over the fake guest_memfd G1 */
	int policy;   /* -1 = context default */
};

static struct fz_region R[NREG];
static struct fake_gmem G1;	   /* R1's guest_memfd when it is in place */
static uint64_t win_lo, win_pages; /* model window: all regions +- 2 MiB */

/* ---- per-input state ---- */

enum ev_kind { EV_AFTER, EV_PUNCH, EV_DISCARD };

struct event {
	enum ev_kind kind;
	uint64_t a, b; /* gpa,size / offset,len / hva,len */
	int fd;
	bool to_private;
	int ret;
};

static struct harness {
	struct fake_kvm fake;
	struct cvmconv *c;
	enum cvmconv_unaligned policy;
	uint64_t granule;
	uint8_t *priv, *pre, *replay; /* per window page: 1 = private */
	uint64_t *tag[2];	      /* expected tag per page, [0] shared [1] private */
	uint8_t *pend[2];	      /* 4 KiB sides: the last punch of the page failed */
	bool held[8];		      /* R2 shared huge pages (file offset / 2 MiB) */
	uint64_t nheld;
	uint64_t tag_counter;
	bool broken;
	bool punch_failed_ever; /* a punch failure was injected this input */
	bool alloc0;		/* R0 has CVMCONV_REGION_ALLOC_SHARED */
	bool defer;		/* CVMCONV_DEFER_PUNCH: stale pages wait for a punch */
	/* the last memory fault cvmconv recorded for our kvm_run, and whether a
	 * conversion was committed since (an identical no-op fault is -ELOOP) */
	struct {
		bool valid;
		uint64_t gpa, size, flags;
	} last_fault;
	bool changed_since_fault;
	/* in-place: consecutive EAGAIN answers to one guest_memfd update */
	unsigned busy_streak;
	/* injection schedules: bit i = the i-th next call fails */
	uint32_t attr_fail_mask, punch_fail_mask;
	int attr_errno, punch_errno;
	unsigned attr_failures_this_op;
	int first_attr_err;
	uint64_t kernel_calls; /* attribute, punch and discard calls seen */
	/* listener */
	bool has_before; /* the listener has a before() */
	unsigned veto_armed;
	unsigned befores, afters;
	bool vetoed;
	struct event *ev;
	unsigned nev;
	unsigned log_lines;
	/* figures printed at exit */
	uint64_t inputs, ops, pages_checked;
} H;

static const int errnos[] = { EINTR, EAGAIN, ENOMEM, EFAULT, EIO, EINVAL };

/* ---- input reader ---- */

struct rd {
	const uint8_t *p;
	size_t n;
};

static uint8_t u8(struct rd *r)
{
	if (!r->n)
		return 0;
	r->n--;
	return *r->p++;
}

static uint16_t u16(struct rd *r)
{
	return (uint16_t)(u8(r) | (uint16_t)u8(r) << 8);
}

static uint64_t u64(struct rd *r)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)u8(r) << (8 * i);
	return v;
}

static const uint64_t special_gpas[] = {
	0,
	PG,
	GPA_LIMIT,
	GPA_LIMIT - PG,
	GPA_LIMIT - HPG,
	UINT64_MAX,
	UINT64_MAX & ~(PG - 1),
	1ULL << 63,
	1ULL << 40,
	(1ULL << 30),
	UINT64_MAX - HPG + 1,
};

static const uint64_t special_npages[] = {
	0,
	1,
	512,
	262144, /* 1 GiB */
	1ULL << 40,
	(1ULL << 40) + 1,
	(1ULL << 40) - 1,
	1ULL << 52,
	GPA_LIMIT / PG,
	UINT64_MAX,
	1ULL << 63,
	UINT64_MAX / PG + 1,
};

static uint64_t edge(unsigned k)
{
	const struct fz_region *r = &R[k % NREG];

	return (k / NREG) % 2 ? r->gpa + r->size : r->gpa;
}

static uint64_t pick_gpa(struct rd *r)
{
	uint8_t s = u8(r);
	int64_t d = (int8_t)u8(r);

	switch (s % 8) {
	case 0:
		return u64(r);
	case 1:
	case 2:
		return edge(u8(r)) + (uint64_t)(d * (int64_t)PG);
	case 3: /* 2 MiB extent edges of the window */
		return (win_lo & ~(HPG - 1)) + (u8(r) % 12) * HPG + (uint64_t)(d * (int64_t)PG);
	case 4: /* misaligned by a few bytes */
		return edge(u8(r)) + (uint64_t)d;
	case 5:
		return special_gpas[u8(r) % (sizeof(special_gpas) / sizeof(special_gpas[0]))] +
		       (uint64_t)(d * (int64_t)PG);
	default:
		return win_lo + (u16(r) % win_pages) * PG;
	}
}

static uint64_t pick_npages(struct rd *r)
{
	uint8_t s = u8(r);
	int64_t d = (int8_t)u8(r) / 16;

	switch (s % 8) {
	case 0:
		return u64(r);
	case 1:
		return 1 + u8(r) % 16;
	case 2:
		return 512 * (1 + u8(r) % 4) + (uint64_t)d;
	case 3:
		return R[u8(r) % NREG].npages + (uint64_t)d;
	case 4:
		return special_npages[u8(r) % (sizeof(special_npages) / sizeof(special_npages[0]))];
	default:
		return 1 + u16(r) % 2048;
	}
}

static uint64_t pick_size(struct rd *r)
{
	uint8_t s = u8(r);

	if (s % 8 == 0)
		return u64(r);
	if (s % 8 == 1)
		return pick_npages(r) * PG + (uint64_t)(int8_t)u8(r);
	return pick_npages(r) * PG;
}

static uint64_t pick_attrs(struct rd *r)
{
	uint8_t s = u8(r);

	switch (s % 8) {
	case 0:
		return 0;
	case 1:
	case 2:
		return CVMCONV_MAP_GPA_RANGE_ENCRYPTED;
	case 3:
		return CVMCONV_MAP_GPA_RANGE_ENCRYPTED | (u8(r) % 4);
	case 4:
		return u8(r) % 4;
	case 5:
		return 1ULL << (u8(r) % 64);
	case 6:
		return u64(r);
	default:
		return (u8(r) & 1) ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0;
	}
}

/* The model and the checks loop over every page after every operation:
 * keep libFuzzer's comparison tracing out of them (the library's coverage
 * is the feedback that matters), it would cost most of the run time. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#endif

/* ---- geometry helpers ---- */

static int region_of_gpa(uint64_t gpa)
{
	for (int i = 0; i < NREG; i++)
		if (R[i].present && gpa >= R[i].gpa && gpa - R[i].gpa < R[i].size)
			return i;
	return -1;
}

static uint8_t *side_page(const struct fz_region *r, bool private_side, uint64_t rel)
{
	uint8_t *map = r->inplace ? G1.map : private_side ? r->private_map : r->shared_map;

	return map ? map + rel * PG : NULL;
}

/* Pages [gpa, gpa + size) lie in present regions without a gap. */
static bool covered(uint64_t gpa, uint64_t size)
{
	uint64_t end = gpa + size;
	int i = region_of_gpa(gpa);

	if (i < 0)
		return false;
	while (R[i].gpa + R[i].size < end) {
		int next = region_of_gpa(R[i].gpa + R[i].size);

		if (next < 0)
			return false;
		i = next;
	}
	return true;
}

static int effective_policy(const struct fz_region *r)
{
	return r->policy < 0 ? (int)H.policy : r->policy;
}

/* Strictest policy of the regions a covered range touches. */
static int strictest(uint64_t gpa, uint64_t size)
{
	int mode = CVMCONV_UNALIGNED_ALLOW;

	for (int i = 0; i < NREG; i++)
		if (R[i].present && gpa < R[i].gpa + R[i].size && gpa + size > R[i].gpa &&
		    effective_policy(&R[i]) > mode)
			mode = effective_policy(&R[i]);
	return mode;
}

static bool policy_refuses(uint64_t gpa, uint64_t size)
{
	return ((gpa | size) & (H.granule - 1)) && strictest(gpa, size) == CVMCONV_UNALIGNED_REJECT;
}

/* The checks every range goes through (semantics.md, Decode): non-empty,
 * 4 KiB aligned, below 2^52, inside regions. */
static bool range_ok(uint64_t gpa, uint64_t size)
{
	if (!size || ((gpa | size) & (PG - 1)) || size > GPA_LIMIT || gpa > GPA_LIMIT - size)
		return false;
	return covered(gpa, size);
}

/* ---- the model ---- */

static void model_apply(uint8_t *m, uint64_t gpa, uint64_t size, bool to_private)
{
	for (uint64_t a = gpa; a < gpa + size; a += PG) {
		CHECK(a >= win_lo && (a - win_lo) / PG < win_pages, "page 0x%llx outside window",
		      (unsigned long long)a);
		if (m == H.priv && m[(a - win_lo) / PG] != to_private)
			H.changed_since_fault = true; /* cvmconv committed a conversion */
		m[(a - win_lo) / PG] = to_private;
	}
}

static uint64_t r2_hpage(uint64_t rel)
{
	return (R[2].shared_offset + rel * PG) / HPG;
}

/* Region-relative page span of R2 shared huge page @h, and whether the huge
 * page lies wholly inside the region. */
static bool r2_hspan(uint64_t h, uint64_t *lo, uint64_t *hi)
{
	uint64_t start = h * HPG, end = start + HPG, off = R[2].shared_offset;
	uint64_t a = start > off ? start - off : 0, b = end - off;

	if (b > R[2].size)
		b = R[2].size;
	*lo = a / PG;
	*hi = b / PG;
	return b - a == HPG && start >= off;
}

static bool r2_all_private(uint64_t h)
{
	uint64_t lo, hi;

	r2_hspan(h, &lo, &hi);
	for (uint64_t p = lo; p < hi; p++)
		if (!H.priv[R[2].first + p])
			return false;
	return true;
}

static uint64_t new_tag(int side, uint64_t page)
{
	return ++H.tag_counter << 24 | (uint64_t)side << 23 | page;
}

static void write_tag(uint8_t *page, uint64_t tag)
{
	memcpy(page, &tag, sizeof(tag));
	memcpy(page + PG - sizeof(tag), &tag, sizeof(tag));
}

static bool page_has(const uint8_t *page, uint64_t tag)
{
	uint64_t a, b;

	memcpy(&a, page, sizeof(a));
	memcpy(&b, page + PG - sizeof(b), sizeof(b));
	return a == tag && b == tag;
}

/* ---- kernel ops: injection and recording around the strict fake ---- */

static void record(struct event e)
{
	CHECK(H.nev < MAX_EVENTS, "event log overflow");
	H.ev[H.nev++] = e;
}

static int fz_set_attrs(void *opaque, uint64_t gpa, uint64_t size, uint64_t attrs)
{
	bool fail = H.attr_fail_mask & 1;
	int ret;

	H.attr_fail_mask >>= 1;
	H.kernel_calls++;
	CHECK(!H.broken, "attribute update issued on a broken context");
	ret = fail ? -H.attr_errno : fake_kvm_ops.set_memory_attributes(opaque, gpa, size, attrs);
	if (ret) {
		if (!H.attr_failures_this_op++)
			H.first_attr_err = ret;
	}
	return ret;
}

static int fz_punch(void *opaque, int fd, uint64_t off, uint64_t len)
{
	bool fail = H.punch_fail_mask & 1;
	int ret;

	H.punch_fail_mask >>= 1;
	H.kernel_calls++;
	CHECK(!H.broken, "punch issued on a broken context");
	/* the live-page oracle sees every attempt, also those made to fail */
	CHECK(!fake_kvm_live_in_punch(opaque, fd, NULL, off, len), "punch of a live page");
	ret = fail ? -H.punch_errno : fake_kvm_ops.punch(opaque, fd, off, len);
	if (fail)
		H.punch_failed_ever = true;
	CHECK(!ret || fail, "real punch failed: fd %d off 0x%llx len 0x%llx: %d", fd,
	      (unsigned long long)off, (unsigned long long)len, ret);
	record((struct event){ EV_PUNCH, off, len, fd, false, ret });
	return ret;
}

static int fz_discard(void *opaque, void *hva, uint64_t len)
{
	bool fail = H.punch_fail_mask & 1;
	int ret;

	H.punch_fail_mask >>= 1;
	H.kernel_calls++;
	CHECK(!H.broken, "discard issued on a broken context");
	CHECK(!fake_kvm_live_in_punch(opaque, -1, hva, 0, len), "discard of a live page");
	ret = fail ? -H.punch_errno : fake_kvm_ops.discard_hva(opaque, hva, len);
	if (fail)
		H.punch_failed_ever = true;
	CHECK(!ret || fail, "real discard failed: %d", ret);
	record((struct event){ EV_DISCARD, (uint64_t)(uintptr_t)hva, len, -1, false, ret });
	return ret;
}

/* The guest_memfd update of an in-place R1. An EAGAIN is tried again by
 * the library: only the answer that ends its tries (the
 * CVMCONV_INPLACE_RETRIES + 1st in a row) fails the update, the others
 * are not failures. Injected EAGAINs name the first page of the range, so
 * nothing before it is set back. */
static int fz_set_gmem(void *opaque, int fd, uint64_t offset, uint64_t size, uint64_t attrs,
		       uint64_t flags, uint64_t *error_offset)
{
	bool fail = H.attr_fail_mask & 1;
	int ret;

	H.attr_fail_mask >>= 1;
	H.kernel_calls++;
	CHECK(!H.broken, "guest_memfd update issued on a broken context");
	CHECK(R[1].inplace && fd == G1.fd, "guest_memfd update of fd %d", fd);
	if (fail) {
		ret = -H.attr_errno;
		if (ret == -EAGAIN)
			*error_offset = offset;
	} else {
		ret = fake_kvm_ops.set_gmem_attributes(opaque, fd, offset, size, attrs, flags,
						       error_offset);
	}
	if (ret == -EAGAIN && ++H.busy_streak <= CVMCONV_INPLACE_RETRIES)
		return ret; /* tried again */
	H.busy_streak = 0;
	if (ret && !H.attr_failures_this_op++)
		H.first_attr_err = ret;
	return ret;
}

static const struct cvmconv_ops fz_ops = { fz_set_attrs, fz_punch, fz_discard, fz_set_gmem };

static int fz_before(void *opaque, uint64_t gpa, uint64_t size, bool to_private)
{
	(void)opaque;
	H.befores++;
	CHECK(size && !((gpa | size) & (PG - 1)), "before(): bad run");
	/* a run is made of pages that change: none is in the target state yet */
	for (uint64_t a = gpa; a < gpa + size; a += PG) {
		CHECK(region_of_gpa(a) >= 0, "before(): page 0x%llx outside regions",
		      (unsigned long long)a);
		CHECK(H.pre[(a - win_lo) / PG] != to_private,
		      "before(): page 0x%llx already in the target state", (unsigned long long)a);
	}
	if (H.veto_armed) {
		H.veto_armed--;
		H.vetoed = true;
		return 1;
	}
	return 0;
}

static void fz_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	(void)opaque;
	H.afters++;
	CHECK(result == 0 || result == -ECANCELED, "after(): result %d", result);
	if (result == 0)
		record((struct event){ EV_AFTER, gpa, size, -1, to_private, 0 });
}

static void fz_log(void *opaque, int level, const char *msg)
{
	size_t len = strlen(msg);

	(void)opaque;
	CHECK(level >= LOG_EMERG && level <= LOG_DEBUG, "log level %d", level);
	CHECK(len > 0 && len < 256 && msg[len - 1] != '\n', "log line \"%s\"", msg);
	H.log_lines++;
}

/* ---- setup ---- */

static int make_memfd(const char *name, uint64_t size, unsigned flags)
{
	int fd = memfd_create(name, MFD_CLOEXEC | flags);

	if (fd >= 0 && ftruncate(fd, (off_t)size) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void *map_shared(int fd, uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
	return p;
}

static void print_figures(void)
{
	fprintf(stderr, "fuzz_exits: %llu inputs, %llu operations, %llu page states checked\n",
		(unsigned long long)H.inputs, (unsigned long long)H.ops,
		(unsigned long long)H.pages_checked);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* R0 [1G+2M-8K, 1G+4M+8K): one whole 2 MiB extent and 8 KiB beyond it
	 * on both sides; R1 adjacent up to 1G+5M; a 1 MiB gap; R2 [1G+6M,
	 * 1G+11M) whose hugetlb side starts 1 MiB into its file, so its huge
	 * pages are neither whole at the start nor aligned with GPA extents. */
	const uint64_t base = (1ULL << 30) + HPG - 2 * PG;
	const uint64_t sizes[NREG] = { HPG + 4 * PG, HPG / 2 - 2 * PG, 5 * (HPG / 2) };
	const uint64_t gap = HPG / 2;

	(void)argc;
	(void)argv;
	tracing = getenv("FUZZ_EXITS_TRACE") != NULL;
	atexit(print_figures);
	lenient_batch = getenv("FUZZ_EXITS_LENIENT_BATCH") != NULL;
	for (int i = 0; i < NREG; i++) {
		struct fz_region *r = &R[i];

		r->gpa = i == 0 ? base : R[i - 1].gpa + R[i - 1].size + (i == 2 ? gap : 0);
		r->size = sizes[i];
		r->npages = r->size / PG;
		r->private_fd = make_memfd("fz-private", r->size, 0);
		CHECK(r->private_fd >= 0, "memfd: %s", strerror(errno));
		/* R2's private side is not mapped: tagging it would cost a page
		 * fault per converted page; punches of it are still checked */
		if (i != 2)
			r->private_map = map_shared(r->private_fd, r->size);
		if (i == 2) {
			/* shared side: hugetlb, offset 1 MiB so the first huge page
			 * is partly outside the region; never mapped or touched */
			r->shared_offset = HPG / 2;
			r->shared_fd = make_memfd("fz-huge", 3 * HPG, MFD_HUGETLB);
			r->shared_huge = r->shared_fd >= 0;
			if (!r->shared_huge) {
				fprintf(stderr, "fuzz_exits: no MFD_HUGETLB (%s): R2 uses shmem\n",
					strerror(errno));
				r->shared_offset = 0;
				r->shared_fd = make_memfd("fz-shared", r->size, 0);
				CHECK(r->shared_fd >= 0, "memfd: %s", strerror(errno));
			}
		} else {
			r->shared_fd = make_memfd("fz-shared", r->size, 0);
			CHECK(r->shared_fd >= 0, "memfd: %s", strerror(errno));
		}
		if (!r->shared_huge) {
			r->shared_map = map_shared(r->shared_fd, r->size);
			r->shared_map_size = r->size;
		}
	}
	CHECK(fake_gmem_init(&G1, R[1].size, CVMCONV_CONTENT_ZERO | CVMCONV_CONTENT_PRESERVE) == 0,
	      "fake guest_memfd");
	win_lo = R[0].gpa - 16 * PG;
	win_pages = (R[2].gpa + R[2].size + 16 * PG - win_lo) / PG;
	for (int i = 0; i < NREG; i++)
		R[i].first = (R[i].gpa - win_lo) / PG;
	H.priv = calloc(win_pages, 1);
	H.pre = calloc(win_pages, 1);
	H.replay = calloc(win_pages, 1);
	H.tag[0] = calloc(win_pages, sizeof(uint64_t));
	H.tag[1] = calloc(win_pages, sizeof(uint64_t));
	H.pend[0] = calloc(win_pages, 1);
	H.pend[1] = calloc(win_pages, 1);
	H.ev = calloc(MAX_EVENTS, sizeof(*H.ev));
	CHECK(H.priv && H.pre && H.replay && H.tag[0] && H.tag[1] && H.pend[0] && H.pend[1] && H.ev,
	      "calloc");
	return 0;
}

static uint64_t allocated(int fd)
{
	struct stat st;

	CHECK(fstat(fd, &st) == 0, "fstat: %s", strerror(errno));
	return (uint64_t)st.st_blocks * 512;
}

/* ---- checks ---- */

static void check_tags(void)
{
	for (int i = 0; i < NREG; i++) {
		const struct fz_region *r = &R[i];

		if (!r->present)
			continue;
		for (uint64_t p = 0; p < r->npages; p++) {
			bool priv = H.priv[r->first + p];
			uint8_t *page = side_page(r, priv, p);

			if (!page)
				continue;
			CHECK(page_has(page, H.tag[priv][r->first + p]),
			      "R%d page %llu: live %s side lost its data", i, (unsigned long long)p,
			      priv ? "private" : "shared");
		}
	}
}

/* Pages that changed state: their new side becomes live. It must read zeros
 * (punched when it went stale) or, after a failed or deferred punch, the old
 * tag; then
 * it gets a fresh tag, as a guest would write it. */
static void retag_changed(void)
{
	for (int i = 0; i < NREG; i++) {
		const struct fz_region *r = &R[i];

		if (!r->present)
			continue;
		for (uint64_t p = 0; p < r->npages; p++) {
			uint64_t w = r->first + p;
			bool priv = H.priv[w];
			uint8_t *page;

			if (H.pre[w] == priv)
				continue;
			page = side_page(r, priv, p);
			if (!page)
				continue;
			if (r->inplace) {
				/* one page for both: PRESERVE kept what it held */
				CHECK(page_has(page, H.tag[!priv][w]),
				      "R%d page %llu: in-place conversion lost the data", i,
				      (unsigned long long)p);
				H.tag[priv][w] = new_tag(priv, w);
				write_tag(page, H.tag[priv][w]);
				continue;
			}
			/* deferred: a page live again before its punch keeps
			 * what it held */
			CHECK(page_has(page, 0) || ((H.punch_failed_ever || H.defer) &&
						    page_has(page, H.tag[priv][w])),
			      "R%d page %llu: newly live %s side holds stale data", i,
			      (unsigned long long)p, priv ? "private" : "shared");
			H.tag[priv][w] = new_tag(priv, w);
			write_tag(page, H.tag[priv][w]);
		}
	}
}

static void check_views(void)
{
	const struct fake_range *fr = H.fake.priv;
	uint64_t k = 0;

	/* library == model over every region page; pages outside regions must
	 * be unknown to the library */
	for (uint64_t w = 0; w < win_pages; w++) {
		uint64_t gpa = win_lo + w * PG;
		int lib = cvmconv_is_private(H.c, gpa);

		if (region_of_gpa(gpa) < 0) {
			CHECK(lib == -ENOENT, "page 0x%llx outside regions: is_private %d",
			      (unsigned long long)gpa, lib);
			CHECK(!H.priv[w], "model private outside regions");
		} else {
			CHECK(lib == H.priv[w], "page 0x%llx: library %d model %d",
			      (unsigned long long)gpa, lib, H.priv[w]);
		}
	}
	/* fake kernel == model, through its interval list */
	for (uint64_t w = 0; w < win_pages; w++) {
		uint64_t gpa = win_lo + w * PG;
		bool fake;

		while (k < H.fake.npriv && fr[k].end <= gpa)
			k++;
		fake = k < H.fake.npriv && fr[k].start <= gpa;
		if (R[1].inplace && gpa >= R[1].gpa && gpa - R[1].gpa < R[1].size) {
			/* the guest_memfd holds these attributes, not the VM */
			CHECK(!fake, "page 0x%llx of the in-place region private in the VM",
			      (unsigned long long)gpa);
			fake = fake_gmem_is_private(&G1, gpa - R[1].gpa) == 1;
		}
		CHECK(fake == H.priv[w], "page 0x%llx: fake kernel %d model %d",
		      (unsigned long long)gpa, fake, H.priv[w]);
	}
	for (k = 0; k < H.fake.npriv; k++)
		CHECK(fr[k].start >= win_lo && fr[k].end <= win_lo + win_pages * PG,
		      "fake kernel has private memory outside the window");
}

/* Punches and discards of this operation: stale pages only, whole huge pages
 * only on the hugetlb side; successful R2 huge punches release their huge
 * pages, runs that turned shared make theirs held again (in call order). */
/* Whether region @ri has a backing on that side. */
static bool side_present(int ri, bool private_side)
{
	const struct fz_region *r = &R[ri];

	if (r->inplace)
		return false; /* nothing on either side is ever stale */
	return private_side ? r->private_fd >= 0 : r->shared_fd >= 0 || r->by_hva;
}

static void check_events(void)
{
	/* CVMCONV_DEFER_PUNCH: what a page left stays allocated (4 KiB
	 * sides), pending until a punch of this or a later operation */
	if (H.defer)
		for (int i = 0; i < NREG; i++)
			for (uint64_t p = 0; R[i].present && p < R[i].npages; p++) {
				uint64_t w = R[i].first + p;

				if (H.pre[w] != H.priv[w] && side_present(i, H.pre[w]))
					H.pend[H.pre[w]][w] = 1;
			}
	memcpy(H.replay, H.pre, win_pages);
	for (unsigned e = 0; e < H.nev; e++) {
		const struct event *ev = &H.ev[e];

		if (ev->kind == EV_AFTER) {
			model_apply(H.replay, ev->a, ev->b, ev->to_private);
			if (!ev->to_private && R[2].present && R[2].shared_huge)
				for (uint64_t a = ev->a; a < ev->a + ev->b; a += PG)
					if (region_of_gpa(a) == 2)
						H.held[r2_hpage((a - R[2].gpa) / PG)] = true;
			continue;
		}
		CHECK(!(R[1].inplace && ev->kind == EV_PUNCH && ev->fd == G1.fd),
		      "punch of the in-place guest_memfd at 0x%llx", (unsigned long long)ev->a);
		/* which side of which region, and the region pages covered */
		int ri = -1;
		bool private_side = false, huge = false;
		uint64_t rel0 = 0, n = 0;

		for (int i = 0; i < NREG && ri < 0; i++) {
			const struct fz_region *r = &R[i];

			if (!r->present)
				continue;
			if (ev->kind == EV_DISCARD) {
				uint64_t hva = (uint64_t)(uintptr_t)r->shared_map;

				if (r->by_hva && ev->a >= hva && ev->a < hva + r->size) {
					CHECK(ev->b <= hva + r->size - ev->a, "discard past R%d",
					      i);
					ri = i;
					rel0 = ev->a - hva;
				}
			} else if (ev->fd == r->private_fd) {
				ri = i;
				private_side = true;
				CHECK(ev->a <= r->size && ev->b <= r->size - ev->a,
				      "punch past R%d", i);
				rel0 = ev->a;
			} else if (ev->fd == r->shared_fd && !r->by_hva) {
				ri = i;
				huge = r->shared_huge;
				CHECK(ev->a >= r->shared_offset &&
					      ev->a - r->shared_offset <= r->size &&
					      ev->b <= r->size - (ev->a - r->shared_offset),
				      "punch past R%d", i);
				rel0 = ev->a - r->shared_offset;
			}
		}
		CHECK(ri >= 0, "punch/discard of an unknown backing (fd %d)", ev->fd);
		CHECK(ev->b && !((rel0 | ev->b) & (PG - 1)), "punch not 4 KiB granular");
		if (huge)
			CHECK(!(ev->a % HPG) && !(ev->b % HPG),
			      "hugetlb punch at 0x%llx len 0x%llx is not whole huge pages",
			      (unsigned long long)ev->a, (unsigned long long)ev->b);
		n = ev->b / PG;
		for (uint64_t p = rel0 / PG; p < rel0 / PG + n; p++)
			CHECK(H.priv[R[ri].first + p] != private_side,
			      "R%d page %llu: its live %s side was punched", ri,
			      (unsigned long long)p, private_side ? "private" : "shared");
		if (huge && ev->ret == 0)
			for (uint64_t h = ev->a / HPG; h < (ev->a + ev->b) / HPG; h++)
				H.held[h] = false;
		if (!huge)
			for (uint64_t p = rel0 / PG; p < rel0 / PG + n; p++)
				H.pend[private_side][R[ri].first + p] = ev->ret != 0;
	}
	/* a page live on a side again has nothing pending there */
	for (uint64_t w = 0; w < win_pages; w++)
		if (H.pre[w] != H.priv[w])
			H.pend[H.priv[w]][w] = 0;
	CHECK(!memcmp(H.replay, H.priv, win_pages),
	      "the runs reported to the listener do not add up to the conversion");
}

static void check_accounting(void)
{
	struct cvmconv_stats st = { .sz = sizeof(st) };
	uint64_t pending = 0, held_private = 0, pending_huge = 0;

	CHECK(cvmconv_get_stats(H.c, &st) == 0, "get_stats");
	CHECK(!st.broken, "broken without a failed rollback");
	for (int i = 0; i < NREG; i++) {
		const struct fz_region *r = &R[i];

		if (!r->present)
			continue;
		if (r->inplace) {
			/* every page tagged once, never punched, never twice */
			CHECK(allocated(G1.fd) == r->npages * PG,
			      "in-place R%d: st_blocks say %llu bytes, %llu pages written", i,
			      (unsigned long long)allocated(G1.fd), (unsigned long long)r->npages);
			continue;
		}
		for (int side = 0; side < 2; side++) {
			uint64_t live = 0, stale_pending = 0, got;

			if (side == 0 && r->shared_huge)
				continue; /* the held model below */
			for (uint64_t p = 0; p < r->npages; p++) {
				uint64_t w = r->first + p;

				live += H.priv[w] == side;
				stale_pending += H.priv[w] != side && H.pend[side][w];
			}
			pending += stale_pending;
			if (!(side ? r->private_map : r->shared_map))
				continue; /* never written: the kernel holds nothing */
			/* the kernel's truth: live pages (all tagged) plus stale
			 * pages whose punch failed */
			got = allocated(side ? r->private_fd : r->shared_fd);
			CHECK(got == (live + stale_pending) * PG,
			      "R%d %s side: st_blocks say %llu bytes, live %llu + pending %llu "
			      "pages",
			      i, side ? "private" : "shared", (unsigned long long)got,
			      (unsigned long long)live, (unsigned long long)stale_pending);
		}
	}
	if (R[2].present && R[2].shared_huge) {
		for (uint64_t p = 0; p < R[2].npages; p++)
			held_private += H.priv[R[2].first + p] && H.held[r2_hpage(p)];
		for (uint64_t h = 0; h < H.nheld; h++) {
			uint64_t lo, hi;

			if (H.held[h] && r2_hspan(h, &lo, &hi) && r2_all_private(h))
				pending_huge++;
		}
	}
	CHECK(st.punch_pending_bytes == pending * PG + pending_huge * HPG,
	      "punch_pending_bytes %llu, model says %llu pages + %llu huge pages",
	      (unsigned long long)st.punch_pending_bytes, (unsigned long long)pending,
	      (unsigned long long)pending_huge);
	CHECK(st.double_alloc_bytes == (pending + held_private) * PG,
	      "double_alloc_bytes %llu, model says %llu pending + %llu in held huge pages",
	      (unsigned long long)st.double_alloc_bytes, (unsigned long long)pending,
	      (unsigned long long)held_private);
	CHECK(st.double_alloc_peak_bytes >= st.double_alloc_bytes, "peak below current");
	CHECK(st.punch_failures <= st.punches, "more punch failures than punches");
	if (!H.punch_failed_ever && !H.defer)
		CHECK(st.punch_pending_bytes == 0, "pending bytes without a punch failure");
}

#if defined(__clang__)
#pragma clang attribute pop
#endif

/* ---- one operation ---- */

enum outcome { OK, REFUSED, VETOED, FAILED };

static void begin_op(void)
{
	memcpy(H.pre, H.priv, win_pages);
	H.nev = 0;
	H.befores = H.afters = 0;
	H.vetoed = false;
	H.attr_failures_this_op = 0;
	H.first_attr_err = 0;
}

/* A request on R0 with CVMCONV_REGION_ALLOC_SHARED allocates the shared
 * side first; when its attribute update fails after that, the pages are
 * private again and what was allocated is punched (docs/semantics.md 4a):
 * the only events a failed request may leave, each on R0's shared side
 * (check_events() checks that every punched page is stale). */
static bool undo_of_allocation(void)
{
	if (!H.alloc0)
		return false;
	for (unsigned e = 0; e < H.nev; e++)
		if (H.ev[e].kind != EV_PUNCH || H.ev[e].fd != R[0].shared_fd)
			return false;
	return true;
}

/* Classify what happened to a request the library answered with @ret (for
 * the VMM) and @guest (the guest's code, 0 when not applicable), against
 * the prediction @valid; apply it to the model on success. */
/* @expect: 1 the request is valid, 0 invalid, -1 not predicted */
static void settle(enum outcome got, int expect, int ret)
{
	if (H.broken) {
		CHECK(ret == -ENOTRECOVERABLE, "broken context answered %d", ret);
		return;
	}
	if (got == FAILED) {
		CHECK(H.attr_failures_this_op > 0, "host failure %d without a failed update", ret);
		if (H.attr_failures_this_op > 1) {
			/* the rollback failed too */
			CHECK(ret == -ENOTRECOVERABLE, "failed rollback answered %d", ret);
			H.broken = true;
			return;
		}
		CHECK(ret == H.first_attr_err, "failure %d reported as %d", H.first_attr_err, ret);
	} else {
		CHECK(H.attr_failures_this_op == 0, "an update failed (%d) but the request %s",
		      H.first_attr_err, got == OK ? "succeeded" : "was refused");
	}
	if (got == VETOED)
		CHECK(H.vetoed && expect,
		      "vetoed without a veto, or an invalid request reached it");
	else if (H.vetoed)
		CHECK(got == FAILED || got == VETOED, "veto ignored");
	if (got == OK)
		CHECK(expect != 0, "an invalid request was accepted");
	if (got == REFUSED)
		CHECK(expect != 1, "a valid request was refused");
	if (got != OK)
		CHECK(H.nev == 0 || undo_of_allocation(),
		      "a request that did not succeed punched or committed");
	/* every before() hears one after(), except the one that vetoed
	 * (tests/test_listener_batch.c test_listener_veto) */
	if (H.has_before)
		CHECK(H.befores - H.vetoed == H.afters, "%u before() (veto %d) but %u after()",
		      H.befores, H.vetoed, H.afters);
}

static void end_op(void)
{
	if (H.broken) {
		struct cvmconv_stats st = { .sz = sizeof(st) };

		CHECK(cvmconv_get_stats(H.c, &st) == 0 && st.broken == 1, "broken not reported");
		return;
	}
	check_events();
	retag_changed();
	check_views();
	check_tags();
	check_accounting();
	H.pages_checked += win_pages;
}

/* Apply a batch prediction on success. */
struct fz_batch {
	struct cvmconv_range r[12];
	size_t n;
};

static int by_gpa(const void *a, const void *b)
{
	const struct cvmconv_range *x = a, *y = b;

	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

/* 1 valid, 0 invalid, -1 not predicted. */
static int batch_valid(const struct fz_batch *b, bool guest)
{
	struct cvmconv_range s[12];
	uint64_t run_gpa = 0, run_size = 0;
	bool run_dir = false;

	memcpy(s, b->r, b->n * sizeof(s[0]));
	for (size_t i = 0; i < b->n; i++) {
		if (s[i].reserved || s[i].to_private > 1)
			return 0;
		/* Every entry must be valid on its own (cvmconv.h: "any invalid
		 * entry or overlap refuses the whole list"). The library merges
		 * adjacent entries before it validates them, so an empty or
		 * half-page entry next to another one passes: a known finding.
		 * FUZZ_EXITS_LENIENT_BATCH=1 leaves such lists unpredicted, to
		 * fuzz past it. */
		if (lenient_batch && (!s[i].size || ((s[i].gpa | s[i].size) & (PG - 1))))
			return -1;
		if (!range_ok(s[i].gpa, s[i].size))
			return 0;
	}
	qsort(s, b->n, sizeof(s[0]), by_gpa);
	for (size_t i = 1; i < b->n; i++)
		if (s[i].gpa < s[i - 1].gpa + s[i - 1].size)
			return 0;
	if (!guest)
		return 1;
	/* policy applies to the merged runs of one direction */
	for (size_t i = 0; i <= b->n; i++) {
		if (i < b->n && run_size && run_dir == (s[i].to_private != 0) &&
		    run_gpa + run_size == s[i].gpa) {
			run_size += s[i].size;
			continue;
		}
		if (run_size && policy_refuses(run_gpa, run_size))
			return 0;
		if (i < b->n) {
			run_gpa = s[i].gpa;
			run_size = s[i].size;
			run_dir = s[i].to_private != 0;
		}
	}
	return 1;
}

static void op_map_gpa_range(uint64_t gpa, uint64_t npages, uint64_t attrs, bool via_run,
			     uint64_t preset, uint64_t garbage)
{
	uint64_t hint = attrs & 3, size = npages * PG, hc = 0x5a5a5a5a5a5a5a5aULL;
	bool valid = true, to_private = attrs & CVMCONV_MAP_GPA_RANGE_ENCRYPTED;
	int ret;
	enum outcome got;

	if ((attrs & ~0x13ULL) || hint == 3 || (gpa & (PG - 1)) || !npages ||
	    npages > (1ULL << 40) || gpa > GPA_LIMIT - size)
		valid = false;
	else if ((hint == 1 && ((gpa % HPG) || npages % 512)) ||
		 (hint == 2 && ((gpa % (1ULL << 30)) || npages % 262144)))
		valid = false;
	else if (!covered(gpa, size) || policy_refuses(gpa, size))
		valid = false;

	trace("map_gpa_range%s gpa 0x%llx npages 0x%llx attrs 0x%llx (valid %d)",
	      via_run ? " (kvm_run)" : "", (unsigned long long)gpa, (unsigned long long)npages,
	      (unsigned long long)attrs, valid);
	if (via_run) {
		struct kvm_run run, before;

		memset(&run, 0, sizeof(run));
		run.exit_reason = KVM_EXIT_HYPERCALL;
		run.hypercall.nr = KVM_HC_MAP_GPA_RANGE;
		run.hypercall.args[0] = gpa;
		run.hypercall.args[1] = npages;
		run.hypercall.args[2] = attrs;
		run.hypercall.args[3] = garbage;
		run.hypercall.args[4] = ~garbage;
		run.hypercall.args[5] = garbage * 3;
		run.hypercall.ret = preset;
		run.hypercall.longmode = (uint32_t)garbage;
		memcpy(&before, &run, sizeof(run));
		ret = cvmconv_handle_exit(H.c, &run);
		hc = run.hypercall.ret;
		before.hypercall.ret = hc;
		CHECK(!memcmp(&before, &run, sizeof(run)), "handle_exit changed more than ret");
		CHECK(ret == 1 || ret < 0, "handle_exit returned %d for a MAP_GPA_RANGE exit", ret);
		if (ret == 1)
			ret = 0;
	} else {
		ret = cvmconv_map_gpa_range(H.c, gpa, npages, attrs, &hc);
	}
	if (ret < 0) {
		CHECK(hc == (uint64_t)-CVMCONV_KVM_EFAULT, "host failure: guest gets 0x%llx",
		      (unsigned long long)hc);
		got = FAILED;
	} else if (hc == 0) {
		got = OK;
	} else if (hc == (uint64_t)-CVMCONV_KVM_EINVAL) {
		got = REFUSED;
	} else {
		CHECK(hc == (uint64_t)-CVMCONV_KVM_EPERM, "guest got 0x%llx",
		      (unsigned long long)hc);
		got = VETOED;
	}
	settle(got, valid, ret);
	if (got == OK && !H.broken)
		model_apply(H.priv, gpa, size, to_private);
}

static void op_memory_fault(uint64_t gpa, uint64_t size, uint64_t flags)
{
	struct kvm_run run, before;
	struct cvmconv_kvm_memory_fault *mf;
	bool to_private = flags & KVM_MEMORY_EXIT_FLAG_PRIVATE;
	bool malformed = (flags & ~(uint64_t)KVM_MEMORY_EXIT_FLAG_PRIVATE) || !range_ok(gpa, size);
	bool by_policy = !malformed && policy_refuses(gpa, size);
	enum outcome got;
	int ret;

	trace("memory_fault gpa 0x%llx size 0x%llx flags 0x%llx (malformed %d policy %d)",
	      (unsigned long long)gpa, (unsigned long long)size, (unsigned long long)flags,
	      malformed, by_policy);
	memset(&run, 0, sizeof(run));
	run.exit_reason = KVM_EXIT_MEMORY_FAULT;
	mf = cvmconv_run_memory_fault(&run);
	mf->flags = flags;
	mf->gpa = gpa;
	mf->size = size;
	memcpy(&before, &run, sizeof(run));
	/* an identical fault with nothing to convert and no conversion since
	 * the last one of this kvm_run: converting cannot resolve it */
	bool nothing_to_do = !malformed && !by_policy && !H.broken;

	for (uint64_t a = gpa; nothing_to_do && a < gpa + size; a += PG)
		nothing_to_do = a >= win_lo && (a - win_lo) / PG < win_pages &&
				H.priv[(a - win_lo) / PG] == to_private;
	bool loop = nothing_to_do && H.last_fault.valid && !H.changed_since_fault &&
		    H.last_fault.gpa == gpa && H.last_fault.size == size &&
		    H.last_fault.flags == flags;

	ret = cvmconv_handle_exit(H.c, &run);
	CHECK(!memcmp(&before, &run, sizeof(run)), "memory fault exit modified kvm_run");
	if (ret == 1 || ret == -ELOOP) {
		/* recorded by cvmconv's fault guard either way */
		CHECK((ret == -ELOOP) == loop, "memory fault: %d, the model expects %s", ret,
		      loop ? "-ELOOP" : "1");
	}
	if (ret == -ELOOP) {
		got = OK; /* nothing changed, nothing to change */
	} else if (ret == 1) {
		got = OK;
	} else if (H.broken || H.attr_failures_this_op) {
		got = FAILED;
	} else if (H.vetoed) {
		/* a veto is a refusal the guest cannot be told about either */
		CHECK(ret == -EFAULT || ret == -EPERM, "vetoed memory fault: %d", ret);
		got = VETOED;
	} else {
		CHECK(ret == (by_policy ? -EPERM : -EFAULT),
		      "memory fault refused with %d (malformed %d, policy %d)", ret, malformed,
		      by_policy);
		got = REFUSED;
	}
	settle(got, !malformed && !by_policy, ret);
	if (got == OK && !H.broken)
		model_apply(H.priv, gpa, size, to_private);
	if (ret == 1 || ret == -ELOOP) {
		/* recorded with the generation after its own conversion: the same
		 * fault again, with nothing converted since, is a loop */
		H.last_fault.valid = true;
		H.last_fault.gpa = gpa;
		H.last_fault.size = size;
		H.last_fault.flags = flags;
		H.changed_since_fault = false;
	}
}

static void op_other_exit(uint32_t reason, uint64_t nr, struct rd *r)
{
	struct kvm_run run, before;
	int ret;

	memset(&run, 0, sizeof(run));
	for (size_t i = 0; i < 64; i++)
		run.padding[i] = (char)u8(r);
	run.exit_reason = reason;
	if (reason == KVM_EXIT_HYPERCALL) {
		run.hypercall.nr = nr == KVM_HC_MAP_GPA_RANGE ? nr + 1 : nr;
	} else if (reason == KVM_EXIT_MEMORY_FAULT) {
		run.exit_reason = reason + 1;
	}
	memcpy(&before, &run, sizeof(run));
	ret = cvmconv_handle_exit(H.c, &run);
	CHECK(ret == 0, "exit reason %u (nr %llu) returned %d", run.exit_reason,
	      (unsigned long long)run.hypercall.nr, ret);
	CHECK(!memcmp(&before, &run, sizeof(run)), "a non-conversion exit was modified");
	CHECK(H.nev == 0 && H.befores == 0, "a non-conversion exit converted something");
}

static void op_convert(uint64_t gpa, uint64_t size, bool to_private)
{
	bool valid = range_ok(gpa, size);
	int ret;
	enum outcome got;

	trace("convert gpa 0x%llx size 0x%llx to_private %d (valid %d)", (unsigned long long)gpa,
	      (unsigned long long)size, to_private, valid);
	ret = cvmconv_convert(H.c, gpa, size, to_private);

	if (ret == 0)
		got = OK;
	else if (ret == -EINVAL && !H.attr_failures_this_op)
		got = REFUSED;
	else if (ret == -EPERM && H.vetoed)
		got = VETOED;
	else
		got = FAILED;
	settle(got, valid, ret);
	if (got == OK && !H.broken)
		model_apply(H.priv, gpa, size, to_private);
}

static void op_batch(struct fz_batch *b, unsigned flags, bool oversize)
{
	bool guest = flags == CVMCONV_BATCH_GUEST;
	int valid = batch_valid(b, guest);
	uint64_t hc = 0x5a5a5a5a5a5a5a5aULL;
	enum outcome got;
	int ret;

	trace("batch n %zu flags 0x%x oversize %d (expect %d)", b->n, flags, oversize, valid);
	for (size_t i = 0; i < b->n; i++)
		trace("  [%zu] gpa 0x%llx size 0x%llx to_private %u reserved %u", i,
		      (unsigned long long)b->r[i].gpa, (unsigned long long)b->r[i].size,
		      b->r[i].to_private, b->r[i].reserved);
	if (oversize) {
		/* n above the limit: refused before a single entry is read (the
		 * array really has only b->n entries: ASan checks it) */
		ret = cvmconv_convert_batch(H.c, b->r, CVMCONV_BATCH_MAX + 1, flags, &hc);
		CHECK(ret == -E2BIG || (ret == -EINVAL && (flags & ~CVMCONV_BATCH_GUEST)),
		      "oversized batch: %d", ret);
		CHECK(H.nev == 0 && H.befores == 0, "oversized batch acted");
		return;
	}
	ret = cvmconv_convert_batch(H.c, b->r, b->n, flags, guest ? &hc : NULL);
	if (flags & ~CVMCONV_BATCH_GUEST) {
		CHECK(ret == -EINVAL, "batch with unknown flags: %d", ret);
		CHECK(H.nev == 0 && H.befores == 0, "batch with unknown flags acted");
		return;
	}
	if (guest) {
		if (ret < 0) {
			CHECK(hc == (uint64_t)-CVMCONV_KVM_EFAULT,
			      "batch failure: guest gets 0x%llx", (unsigned long long)hc);
			got = FAILED;
		} else if (hc == 0) {
			got = OK;
		} else if (hc == (uint64_t)-CVMCONV_KVM_EINVAL) {
			got = REFUSED;
		} else {
			CHECK(hc == (uint64_t)-CVMCONV_KVM_EPERM, "batch: guest got 0x%llx",
			      (unsigned long long)hc);
			got = VETOED;
		}
		CHECK(ret <= 0, "batch returned %d", ret);
	} else if (ret == 0) {
		got = OK;
	} else if (ret == -EINVAL && !H.attr_failures_this_op) {
		got = REFUSED;
	} else if (ret == -EPERM && H.vetoed) {
		got = VETOED;
	} else {
		got = FAILED;
	}
	settle(got, valid, ret);
	if (got == OK && !H.broken)
		for (size_t i = 0; i < b->n; i++)
			model_apply(H.priv, b->r[i].gpa, b->r[i].size, b->r[i].to_private);
}

static void op_flush(void)
{
	int ret = cvmconv_flush(H.c);

	trace("flush: %d", ret);
	if (H.broken) {
		CHECK(ret == -ENOTRECOVERABLE, "flush on a broken context: %d", ret);
		return;
	}
	CHECK(H.befores == 0, "flush notified listeners");
	if (ret == 0) {
		struct cvmconv_stats st = { .sz = sizeof(st) };

		CHECK(cvmconv_get_stats(H.c, &st) == 0, "stats");
		CHECK(st.punch_pending_bytes == 0, "flush returned 0 with %llu bytes pending",
		      (unsigned long long)st.punch_pending_bytes);
	} else {
		CHECK(ret == -H.punch_errno && H.punch_failed_ever, "flush returned %d", ret);
	}
}

static void op_is_private(uint64_t gpa)
{
	int ret = cvmconv_is_private(H.c, gpa);
	int r = region_of_gpa(gpa);

	if (r < 0)
		CHECK(ret == -ENOENT, "is_private(0x%llx) outside regions: %d",
		      (unsigned long long)gpa, ret);
	else if (!H.broken)
		CHECK(ret == H.priv[(gpa - win_lo) / PG], "is_private(0x%llx): %d",
		      (unsigned long long)gpa, ret);
}

/* cvmconv_for_each_range(): ascending, disjoint runs inside the range,
 * maximal (touching runs differ), each page of them (up to a bound per
 * run) in a region and in the model's state; a stop after @stop runs
 * returns the callback's value. */
struct fz_walk {
	uint64_t lo, hi, prev_end, runs, stop, bytes;
	int prev_state;
};

static int walk_cb(void *opaque, uint64_t gpa, uint64_t size, bool is_private)
{
	struct fz_walk *w = opaque;

	CHECK(size && !(gpa % PG) && !(size % PG) && gpa >= w->lo && gpa + size <= w->hi &&
		      gpa >= w->prev_end,
	      "for_each_range run 0x%llx+0x%llx in [0x%llx, 0x%llx) after 0x%llx",
	      (unsigned long long)gpa, (unsigned long long)size, (unsigned long long)w->lo,
	      (unsigned long long)w->hi, (unsigned long long)w->prev_end);
	CHECK(!(w->runs && gpa == w->prev_end && (int)is_private == w->prev_state),
	      "for_each_range: runs at 0x%llx not maximal", (unsigned long long)gpa);
	for (uint64_t a = gpa, n = 0; a < gpa + size && n < 4096; a += PG, n++) {
		CHECK(region_of_gpa(a) >= 0, "for_each_range: 0x%llx outside regions",
		      (unsigned long long)a);
		if (!H.broken && a >= win_lo && (a - win_lo) / PG < win_pages)
			CHECK(H.priv[(a - win_lo) / PG] == is_private,
			      "for_each_range: 0x%llx %d, model %d", (unsigned long long)a,
			      is_private, H.priv[(a - win_lo) / PG]);
	}
	w->prev_end = gpa + size;
	w->prev_state = is_private;
	w->bytes += size;
	return ++w->runs == w->stop ? 7 : 0;
}

static void op_for_each_range(uint64_t gpa, uint64_t size, uint64_t stop)
{
	struct fz_walk w = { .lo = gpa, .hi = gpa + size, .prev_end = gpa, .stop = stop };
	bool valid = size && !((gpa | size) % PG) && gpa + size > gpa;
	int ret = cvmconv_for_each_range(H.c, gpa, size, walk_cb, &w);

	if (!valid)
		CHECK(ret == -EINVAL, "for_each_range(0x%llx, 0x%llx): %d", (unsigned long long)gpa,
		      (unsigned long long)size, ret);
	else
		CHECK(ret == (stop && w.runs == stop ? 7 : 0), "for_each_range: %d after %llu runs",
		      ret, (unsigned long long)w.runs);
}

/* A listener registered with CVMCONV_LISTENER_REPLAY hears every current
 * run once, in order: exactly the registered memory, in the model's state
 * where the model has it, adjacent runs of one state never split. */
static void replay_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	struct fz_walk *w = opaque;

	CHECK(result == 0, "replay: result %d", result);
	walk_cb(w, gpa, size, to_private);
}

static void op_replay_listener(void)
{
	struct fz_walk w = { .lo = 0, .hi = UINT64_MAX, .prev_end = 0 };
	struct cvmconv_listener l = { .sz = sizeof(l),
				      .after = replay_after,
				      .opaque = &w,
				      .flags = CVMCONV_LISTENER_REPLAY };
	uint64_t registered = 0;
	int id = cvmconv_add_listener(H.c, &l);

	if (id == -ENOSPC || H.broken)
		return;
	CHECK(id >= 0, "add_listener(REPLAY): %d", id);
	/* the walk checked order, maximality and states; now the coverage */
	for (int i = 0; i < NREG; i++)
		registered += R[i].present ? R[i].size : 0;
	CHECK(w.bytes == registered, "replay heard %llu bytes of %llu registered",
	      (unsigned long long)w.bytes, (unsigned long long)registered);
	CHECK(cvmconv_remove_listener(H.c, id) == 0, "remove_listener");
}

/* The poll fd is readable whenever stale memory waits (deferred or failed). */
static void check_poll_fd(void)
{
	struct cvmconv_stats st = { .sz = sizeof(st) };
	struct pollfd p = { .fd = cvmconv_get_poll_fd(H.c), .events = POLLIN };

	CHECK(p.fd >= 0 && cvmconv_get_stats(H.c, &st) == 0, "poll fd %d", p.fd);
	if (st.punch_pending_bytes)
		CHECK(poll(&p, 1, 0) == 1 && (p.revents & POLLIN),
		      "%llu bytes pending, the poll fd is not readable",
		      (unsigned long long)st.punch_pending_bytes);
}

static void op_stats_json(size_t len)
{
	char buf[1024];
	int need;

	memset(buf, 0x7f, sizeof(buf));
	need = cvmconv_stats_json(H.c, len ? buf : NULL, len);
	CHECK(need > 0 && need < (int)sizeof(buf), "stats_json: %d", need);
	if (len) {
		size_t used = (size_t)need < len - 1 ? (size_t)need : len - 1;

		CHECK(buf[used] == '\0', "stats_json not terminated");
		CHECK(len >= sizeof(buf) || buf[len] == 0x7f, "stats_json wrote past len");
	}
}

static void op_add_region(uint64_t gpa, uint64_t size, uint32_t flags)
{
	struct cvmconv_region reg = { .sz = sizeof(reg),
				      .gpa = gpa,
				      .size = size,
				      .private_fd = -1,
				      .shared_fd = -1,
				      .flags = flags,
				      .unaligned = -1 };
	bool overlaps = false, bad;
	int ret;

	bad = !size || ((gpa | size) & (PG - 1)) || size > GPA_LIMIT || gpa > GPA_LIMIT - size ||
	      (flags & ~(CVMCONV_REGION_PRIVATE | CVMCONV_REGION_ATTRS_ONLY));
	for (int i = 0; i < NREG && !bad; i++)
		overlaps |= R[i].present && gpa < R[i].gpa + R[i].size && gpa + size > R[i].gpa;
	ret = fake_kvm_add_region(&H.fake, H.c, &reg);
	trace("add_region gpa 0x%llx size 0x%llx flags 0x%x: %d", (unsigned long long)gpa,
	      (unsigned long long)size, flags, ret);
	if (H.broken) {
		CHECK(ret == -ENOTRECOVERABLE || ret == -EINVAL, "add_region on broken: %d", ret);
		return;
	}
	if (bad)
		CHECK(ret == -EINVAL, "invalid region added: %d", ret);
	else if (overlaps)
		CHECK(ret == -EEXIST, "overlapping region: %d", ret);
	else if (flags & CVMCONV_REGION_PRIVATE)
		CHECK(ret == 0 || ret == H.first_attr_err, "add_region private: %d", ret);
	else
		CHECK(ret == 0, "add_region: %d", ret);
	if (ret == 0) {
		CHECK(cvmconv_remove_region(H.c, gpa) == 0, "remove_region");
		if (flags & CVMCONV_REGION_PRIVATE) {
			/* give the fake its attributes back: the window must stay
			 * consistent (the region is gone, so only the fake changes) */
			CHECK(fake_kvm_ops.set_memory_attributes(&H.fake, gpa, size, 0) == 0,
			      "restore");
		}
	}
}

/* ---- one input ---- */

static void setup_input(struct rd *in)
{
	uint8_t c0 = u8(in), c1 = u8(in);
	static const uint64_t granules[4] = { 0, PG, 1ULL << 30, 64 * 1024 };
	struct cvmconv_config cfg;

	memset(H.held, 0, sizeof(H.held));
	H.alloc0 = false;
	H.last_fault.valid = false;
	H.changed_since_fault = false;
	H.broken = false;
	H.punch_failed_ever = false;
	H.attr_fail_mask = H.punch_fail_mask = 0;
	H.attr_errno = H.punch_errno = EIO;
	H.busy_streak = 0;
	H.veto_armed = 0;
	H.kernel_calls = 0;
	H.log_lines = 0;
	H.policy = (enum cvmconv_unaligned)((c0 & 3) == 3 ? 0 : (c0 & 3));
	H.granule = granules[(c1 >> 4) & 3];
	fake_kvm_init(&H.fake, (c1 & 0x80) ? FAKE_VM_DEFAULT : FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&H.fake, H.policy);
	cfg.ops = &fz_ops;
	cfg.granule = H.granule;
	cfg.log = (c1 & 0x40) ? NULL : fz_log;
	H.defer = c0 & 0x20;
	cfg.flags = H.defer ? CVMCONV_DEFER_PUNCH : 0;
	CHECK(cvmconv_create(&cfg, &H.c) == 0, "create");
	fake_kvm_attach_gmem(&H.fake, &G1);
	trace("config: policy %d granule 0x%llx vm %s log %d listener-before %d hva %d "
	      "R2-private %d R1/R2 policy %d/%d defer %d R1-in-place %d",
	      H.policy, (unsigned long long)H.granule, (c1 & 0x80) ? "default" : "sw-protected",
	      !(c1 & 0x40), !!(c0 & 0x40), !!(c0 & 0x04), !!(c0 & 0x08), (int)(c1 & 3) - 1,
	      (int)((c1 >> 2) & 3) - 1, H.defer, !!(c0 & 0x10));
	if (!H.granule)
		H.granule = HPG;
	H.has_before = c0 & 0x40;
	if (H.has_before) {
		struct cvmconv_listener l = { sizeof(l), fz_before, fz_after, NULL, 0 };

		CHECK(cvmconv_add_listener(H.c, &l) >= 0, "add_listener");
	} else {
		struct cvmconv_listener l = { sizeof(l), NULL, fz_after, NULL, 0 };

		CHECK(cvmconv_add_listener(H.c, &l) >= 0, "add_listener");
	}

	memset(H.priv, 0, win_pages);
	for (int i = 0; i < NREG; i++) {
		struct fz_region *r = &R[i];
		bool start_private = i == 2 && (c0 & 0x08);
		struct cvmconv_region reg = {
			.sz = sizeof(reg),
			.gpa = r->gpa,
			.size = r->size,
			.private_fd = r->private_fd,
			.shared_fd = r->shared_fd,
			.shared_offset = r->shared_offset,
			.flags = start_private ? CVMCONV_REGION_PRIVATE : 0,
		};
		int ret;

		r->inplace = i == 1 && (c0 & 0x10);
		r->by_hva = i == 1 && (c0 & 0x04) && !r->inplace;
		r->policy = i == 0 ? -1 : (int)((c1 >> (2 * (i - 1))) & 3) - 1;
		reg.unaligned = r->policy;
		if (r->inplace) {
			/* a fresh guest_memfd: all shared, nothing pinned or held */
			memset(G1.priv, 0, G1.size / PG);
			memset(G1.pins, 0, G1.size / PG * sizeof(*G1.pins));
			CHECK(fallocate(G1.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
					(off_t)G1.size) == 0,
			      "reset punch: %s", strerror(errno));
			reg.private_fd = G1.fd;
			reg.shared_fd = -1;
			reg.shared_hva = G1.map;
			reg.flags |= CVMCONV_REGION_INPLACE;
			reg.content_mode = CVMCONV_CONTENT_PRESERVE;
		} else if (r->by_hva) {
			reg.shared_fd = -1;
			reg.shared_hva = r->shared_map;
		} else if (i == 0 && (c0 & 0x80)) {
			H.alloc0 = true;
			/* pages turning shared are allocated at once; a live
			 * page is written anyway, so the accounting holds */
			reg.flags |= CVMCONV_REGION_ALLOC_SHARED;
		}
		/* start of input: private sides empty, live sides tagged */
		CHECK(fallocate(r->private_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
				(off_t)r->size) == 0,
		      "reset punch: %s", strerror(errno));
		for (uint64_t p = 0; p < r->npages; p++) {
			uint64_t w = r->first + p;
			uint8_t *page = side_page(r, start_private, p);

			H.priv[w] = start_private;
			H.tag[0][w] = H.tag[1][w] = 0;
			H.pend[0][w] = H.pend[1][w] = 0;
			if (page) {
				H.tag[start_private][w] = new_tag(start_private, w);
				write_tag(page, H.tag[start_private][w]);
			}
		}
		ret = fake_kvm_add_region(&H.fake, H.c, &reg);
		r->present = ret == 0;
		if (!r->present) {
			/* only a VM without private memory refuses a private region */
			CHECK(start_private && (c1 & 0x80) && ret == -EINVAL, "add_region R%d: %d",
			      i, ret);
			for (uint64_t p = 0; p < r->npages; p++)
				H.priv[r->first + p] = 0;
			fallocate(r->private_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
				  (off_t)r->size);
		}
	}
	/* R2's shared huge pages: all held when it starts shared */
	if (R[2].shared_huge) {
		H.nheld = (R[2].shared_offset + R[2].size + HPG - 1) / HPG;
		for (uint64_t h = 0; h < H.nheld; h++)
			H.held[h] = R[2].present && !(c0 & 0x08) && h >= R[2].shared_offset / HPG;
	}
	begin_op();
	end_op();
}

static void run_op(struct rd *in)
{
	uint8_t op = u8(in);

	begin_op();
	trace("op %u%s", op % 20, H.broken ? " (broken)" : "");
	switch (op % 20) {
	case 0:
	case 1:
	case 2: {
		uint64_t gpa = pick_gpa(in), np = pick_npages(in), attrs = pick_attrs(in);

		op_map_gpa_range(gpa, np, attrs, false, 0, 0);
		break;
	}
	case 3:
	case 4: {
		uint64_t gpa = pick_gpa(in), np = pick_npages(in), attrs = pick_attrs(in);
		uint64_t garbage = u64(in);

		op_map_gpa_range(gpa, np, attrs, true, op & 1 ? 0 : garbage, garbage);
		break;
	}
	case 5:
	case 6: {
		uint64_t gpa = pick_gpa(in), size = pick_size(in);
		uint8_t f = u8(in);
		uint64_t flags = f % 4 == 0 ? u64(in) : (f & 1 ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0);

		op_memory_fault(gpa, size, flags);
		break;
	}
	case 7: {
		uint32_t reason = u8(in) % 4 ? u8(in) % 48 : (uint32_t)u64(in);
		uint64_t nr = u8(in) % 2 ? u8(in) : u64(in);

		op_other_exit(reason, nr, in);
		break;
	}
	case 8:
	case 9: {
		uint64_t gpa = pick_gpa(in), size = pick_size(in);

		op_convert(gpa, size, u8(in) & 1);
		break;
	}
	case 10:
	case 11: {
		struct fz_batch b;
		uint8_t f = u8(in);
		unsigned flags = f % 8 == 0 ? (unsigned)u8(in) : (f & 1 ? CVMCONV_BATCH_GUEST : 0);

		memset(&b, 0, sizeof(b));
		b.n = u8(in) % 13;
		if ((f & 6) == 6) {
			/* the shape of an SEV-SNP page state change buffer: small
			 * ascending entries with small gaps, each one direction */
			uint64_t at = pick_gpa(in) & ~(PG - 1);

			for (size_t i = 0; i < b.n; i++) {
				uint8_t s = u8(in);

				at += (s & 3) * PG;
				b.r[i].gpa = at;
				b.r[i].size = (1 + (s >> 2 & 7)) * PG;
				b.r[i].to_private = s >> 5 & 1;
				at += b.r[i].size;
			}
		}
		for (size_t i = 0; (f & 6) != 6 && i < b.n; i++) {
			uint8_t s = u8(in);

			/* often: continue where the previous entry ended */
			b.r[i].gpa =
				(i && s % 3 == 0) ? b.r[i - 1].gpa + b.r[i - 1].size : pick_gpa(in);
			b.r[i].size = pick_size(in);
			b.r[i].to_private = s & 0x10 ? (s & 0x20 ? (uint32_t)u8(in) : 1) : 0;
			b.r[i].reserved = (s & 0xc0) == 0xc0 ? u8(in) : 0;
		}
		op_batch(&b, flags, f == 0xff);
		break;
	}
	case 12:
		op_flush();
		break;
	case 13: {
		uint8_t s = u8(in);

		H.attr_fail_mask = s % 4 == 0 ? (uint32_t)u16(in) : 1u << (s % 4);
		H.attr_errno = errnos[u8(in) % 6];
		trace("attribute failures 0x%x errno %d", H.attr_fail_mask, H.attr_errno);
		break;
	}
	case 14: {
		uint8_t s = u8(in);

		H.punch_fail_mask = s % 4 == 0 ? (uint32_t)u16(in) : 1u << (s % 4);
		H.punch_errno = errnos[u8(in) % 6];
		trace("punch failures 0x%x errno %d", H.punch_fail_mask, H.punch_errno);
		break;
	}
	case 15:
		H.attr_fail_mask = H.punch_fail_mask = 0;
		H.veto_armed = 0;
		break;
	case 16:
		H.veto_armed = 1 + u8(in) % 3;
		break;
	case 17: {
		uint8_t f = u8(in);

		if (f & 1) {
			op_is_private(pick_gpa(in));
		} else if ((f & 6) == 6) {
			op_replay_listener();
		} else {
			uint64_t gpa = pick_gpa(in), size = pick_size(in);

			op_for_each_range(gpa, size, f & 2 ? u8(in) % 8 : 0);
		}
		check_poll_fd();
		break;
	}
	case 18:
		op_stats_json(u16(in) % 1024);
		break;
	default: {
		uint64_t gpa = pick_gpa(in), size = pick_size(in);
		uint8_t f = u8(in);

		/* the VMM's own input: keep the tracker it allocates small */
		if (size > (1ULL << 36) && size <= GPA_LIMIT)
			size &= (1ULL << 36) - 1;
		op_add_region(gpa, size, f % 4 == 0 ? f : (f & 1 ? CVMCONV_REGION_PRIVATE : 0));
		break;
	}
	}
	end_op();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rd in = { data, size };
	unsigned ops = 0;

	setup_input(&in);
	H.inputs++;
	while (in.n && ops++ < MAX_OPS) {
		run_op(&in);
		H.ops++;
	}
	if (!H.broken)
		CHECK(fake_kvm_mismatches(&H.fake, H.c, win_lo, win_pages * PG) == 0,
		      "fake_kvm_mismatches");
	cvmconv_destroy(H.c);
	fake_kvm_fini(&H.fake);
	return 0;
}
