/* SPDX-License-Identifier: MIT */
/*
 * fuzz_exits_fast: the exit front end of cvmconv over an in-process model
 * of the kernel, checked against a reference model after every operation.
 *
 * fuzz_exits drives the library through cvmconv_ops over real memfds and
 * reads st_blocks and every page after each operation (~66 inputs/s).
 * Here cfg.ops is NULL, so src/kvm.c's own kernel calls run, retry loops
 * included, and this executable is linked with
 * -Wl,--wrap=ioctl,--wrap=fallocate,--wrap=madvise: the calls on the fds
 * and mappings below land in a model kernel (the __wrap_ functions), every
 * other call goes to libc. The fds are real only so that add_region's
 * fstatfs() (and /proc/self/smaps for a mapping) sees shmem or hugetlbfs;
 * nothing ever touches their memory.
 *
 * The model kernel (rules: docs/security.md, "fuzz_exits_fast"):
 *  - KVM_CHECK_EXTENSION(KVM_CAP_MEMORY_ATTRIBUTES) and
 *    KVM_SET_MEMORY_ATTRIBUTES on the VM fd; the attributes live in the
 *    strict fake of tests/fake_kvm.c (kvm_vm_ioctl_set_mem_attributes'
 *    rules), failures chosen by the input change nothing;
 *  - fallocate: punches (PUNCH_HOLE needs KEEP_SIZE) and mode-0 allocations
 *    on shmem (per 4 KiB page) and hugetlbfs (per 2 MiB page, a partial
 *    punch only zeroes, allocation rounds out and takes pages from a pool);
 *  - madvise MADV_REMOVE (shared mappings only) and MADV_DONTNEED.
 * Per 4 KiB page and side it keeps "allocated" and "holds data" bits; a
 * page that turns live is written by the guest. A punch or discard that
 * would free a live page aborts at once (the oracle of fake_kvm.c), and
 * after every operation every live page must still hold its data.
 *
 * Checks after every operation: library view (cvmconv_for_each_range) ==
 * model kernel attributes == a reference bitmap updated only on reported
 * success; acceptance, refusal and error codes as docs/semantics.md
 * predicts; listener before/after pairs, and the after() runs replayed on
 * the previous state give the new state; double_alloc_bytes,
 * punch_pending_bytes and shared_alloc_failures as the model says; a
 * flush that returns 0 leaves nothing pending; once a rollback failed,
 * -ENOTRECOVERABLE and no kernel call.
 *
 * The harness, by part:
 *   fuzz_exits_fast.h            geometry, state, bitmaps, prototypes
 *   fuzz_exits_fast_main.c       the state, LLVMFuzzerTestOneInput,
 *                                LLVMFuzzerInitialize (geometry, smaps text)
 *   fuzz_exits_fast_input.c      dispatch, configuration
 *   fuzz_exits_fast_operations.c the operations, their predictions, settle()
 *   fuzz_exits_fast_picks.c      the input's values (gpas, sizes, masks), below
 *                                both
 *   fuzz_exits_fast_kernel.c     the model kernel (__wrap_ functions), listener
 *   fuzz_exits_fast_checks.c     the checks after every operation
 *   fuzz_common.h                the reader and the outcome of a guest
 *                                request, shared with fuzz_exits
 */
#ifndef CVMCONV_FUZZ_EXITS_FAST_H
#define CVMCONV_FUZZ_EXITS_FAST_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <syslog.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "cvmconv.h"
#include "fake_kvm.h"
#include "kvm_compat.h"
#include "libc_wrap.h"

#define PG 4096ULL
#define HPG (2ULL << 20)
#define NREG 3
#define MAX_OPS 16
#define NW 36 /* bitmap words of the model window (2,210 pages) */
#define GPA_LIMIT (1ULL << 52)
#define RETRY_MAX 1000 /* src/kvm.c KVM_RETRY_MAX */

#define CHECK(cond, ...) FZ_CHECK("fuzz_exits_fast", cond, __VA_ARGS__)

FILE *__real_fopen(const char *path, const char *mode);
FILE *__wrap_fopen(const char *path, const char *mode);

/* No coverage or comparison tracing in the harness: the library's coverage
 * is the signal, and the harness's own features cost libFuzzer's feature
 * bookkeeping more than they guide it (measured: exec/s). */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#endif

#include "fuzz_common.h"

/* ---- fixed geometry (LLVMFuzzerInitialize) ---- */

enum shared_kind { SH_FD, SH_HVA_SHARED, SH_HVA_PRIVATE };

struct fz_region {
	uint64_t gpa, npages, first; /* first: window index of page 0 */
	int private_fd, shared_fd;
	uint64_t shared_offset;
	bool huge; /* shared side on hugetlbfs (R2, when MFD_HUGETLB works) */
	/* per input */
	enum shared_kind kind;
	bool alloc_shared;
	int policy;
};

extern struct fz_region R[NREG];
extern int vm_fd;
extern uint8_t *hva_shared, *hva_private; /* R1's shared side as a mapping */
extern uint64_t win_lo, win_pages;
extern uint64_t regions_bm[NW], shared4k_bm[NW]; /* region pages; 4 KiB shared sides */

/* ---- per-input state ---- */

enum probe_kind { PROBE_OK, PROBE_EINTR, PROBE_EXTRA, PROBE_NONE, PROBE_ENOTTY, PROBE_EIO };

struct fast_harness {
	struct fake_kvm fake;
	struct cvmconv *c;
	enum cvmconv_unaligned policy;
	uint64_t granule;
	enum probe_kind probe;
	bool defer, broken;
	int listener; /* 0 none, 1 after() only, 2 before() and after() */
	/* reference (1 = private), state before the op, listener replay */
	uint64_t ref[NW], pre[NW], replay[NW];
	/* kernel model: per window page and side [0 shared, 1 private] */
	uint64_t alloc[2][NW], data[2][NW];
	/* what the library may count as allocated: alloc, plus ranges whose
	 * punch failed (it cannot know what was there) */
	uint64_t acct[2][NW];
	bool hp_alloc[3], hp_acct[3], hp_visited[3]; /* R2's huge pages */
	unsigned pool_free;
	/* injection: bit i = the i-th next call fails */
	uint32_t attr_mask, punch_mask, alloc_mask;
	int attr_errno, punch_errno, alloc_errno;
	unsigned storm; /* this many next attribute calls fail with storm_errno */
	int storm_errno;
	unsigned transient; /* consecutive EINTR/EAGAIN of one library call */
	/* this op */
	unsigned fails; /* library-level failures: attribute updates, allocations */
	int first_err, punch_err;
	unsigned allocs, punches;
	unsigned befores, afters, veto_armed;
	bool vetoed;
	uint64_t alloc_failures;
	bool fault_valid, changed_since_fault;
	uint64_t fault_gpa, fault_size, fault_flags;
};
extern struct fast_harness H;

/* /proc/self/smaps as show_smap (fs/proc/task_mmu.c) prints it, for R1's two
 * mappings and a decoy before them with a line longer than the library's
 * buffer. The real file of an ASan process is megabytes long (~3 ms a read:
 * inputs that reach it dominate a run); fuzz_exits reads the real one. */
extern char smaps_text[4096];
extern size_t smaps_len;

extern uint64_t n_inputs, n_ops; /* printed at exit */

extern struct kvm_run fault_run; /* one vCPU: the fault guard keys on it */

/* ---- bitmaps over window pages ---- */

static inline uint64_t bm_word_mask(uint64_t w, uint64_t lo, uint64_t hi)
{
	uint64_t a = lo > w * 64 ? lo - w * 64 : 0, b = hi < w * 64 + 64 ? hi - w * 64 : 64;

	return (b == 64 ? ~0ULL : (1ULL << b) - 1) & ~((1ULL << a) - 1);
}

static inline void bm_set(uint64_t *bm, uint64_t lo, uint64_t hi, bool v)
{
	for (uint64_t w = lo / 64; lo < hi && w <= (hi - 1) / 64; w++) {
		uint64_t m = bm_word_mask(w, lo, hi);

		bm[w] = v ? bm[w] | m : bm[w] & ~m;
	}
}

/* Whether every bit of [lo, hi) is @v. */
static inline bool bm_all(const uint64_t *bm, uint64_t lo, uint64_t hi, bool v)
{
	for (uint64_t w = lo / 64; lo < hi && w <= (hi - 1) / 64; w++) {
		uint64_t m = bm_word_mask(w, lo, hi);

		if ((bm[w] & m) != (v ? m : 0))
			return false;
	}
	return true;
}

static inline uint64_t bm_count(const uint64_t *bm, const uint64_t *and_, bool invert_and)
{
	uint64_t n = 0;

	for (int w = 0; w < NW; w++)
		n += (uint64_t)__builtin_popcountll(bm[w] & (invert_and ? ~and_[w] : and_[w]));
	return n;
}

static inline bool bm_get(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

static inline uint64_t bm_count_range(const uint64_t *bm, uint64_t lo, uint64_t hi)
{
	uint64_t n = 0;

	for (uint64_t w = lo / 64; lo < hi && w <= (hi - 1) / 64; w++)
		n += (uint64_t)__builtin_popcountll(bm[w] & bm_word_mask(w, lo, hi));
	return n;
}

/* ---- geometry ---- */

static inline bool in_window(uint64_t gpa, uint64_t size)
{
	return gpa >= win_lo && size <= win_pages * PG && gpa - win_lo <= win_pages * PG - size;
}

static inline uint64_t widx(uint64_t gpa)
{
	return (gpa - win_lo) / PG;
}

/* The checks of semantics.md Decode, and wholly inside regions. */
static inline bool range_ok(uint64_t gpa, uint64_t size)
{
	if (!size || ((gpa | size) & (PG - 1)) || size > GPA_LIMIT || gpa > GPA_LIMIT - size)
		return false;
	return in_window(gpa, size) && bm_all(regions_bm, widx(gpa), widx(gpa + size), true);
}

static inline bool policy_refuses(uint64_t gpa, uint64_t size)
{
	int mode = CVMCONV_UNALIGNED_ALLOW;

	if (!((gpa | size) & (H.granule - 1)))
		return false;
	for (int i = 0; i < NREG; i++) {
		int p = R[i].policy < 0 ? (int)H.policy : R[i].policy;

		if (gpa < R[i].gpa + R[i].npages * PG && gpa + size > R[i].gpa && p > mode)
			mode = p;
	}
	return mode == CVMCONV_UNALIGNED_REJECT;
}

/* Region pages [lo, hi) (window indices) of R2's shared huge page h. */
static inline void hp_span(unsigned h, uint64_t *lo, uint64_t *hi)
{
	uint64_t start = h * HPG, end = start + HPG, off = R[2].shared_offset;
	uint64_t a = start > off ? start - off : 0, b = end - off;

	if (b > R[2].npages * PG)
		b = R[2].npages * PG;
	*lo = R[2].first + a / PG;
	*hi = R[2].first + b / PG;
}

static inline bool hp_edge(unsigned h)
{
	uint64_t lo, hi;

	hp_span(h, &lo, &hi);
	return (hi - lo) * PG != HPG;
}

/* fuzz_exits_fast_picks.c: the input's values */
uint64_t pick_gpa(struct rd *r);
uint64_t pick_npages(struct rd *r);
uint64_t pick_size(struct rd *r);
uint64_t pick_attrs(struct rd *r);
uint32_t pick_mask(struct rd *in); /* which calls of a kind fail */

/* fuzz_exits_fast_input.c */
void run_op(struct rd *in);
int setup_input(struct rd *in);

/* fuzz_exits_fast_operations.c */
void begin_op(void);
void end_op(void);
void op_map(uint64_t gpa, uint64_t npages, uint64_t attrs, bool via_run, uint64_t junk);
void op_fault(uint64_t gpa, uint64_t size, uint64_t flags);
void op_other_exit(struct rd *in);
void op_convert(uint64_t gpa, uint64_t size, bool to_private);
void op_batch(struct rd *in);
void op_flush(void);
void op_replay(void);
void op_query(uint64_t gpa);

/* fuzz_exits_fast_kernel.c */
int fz_before(void *opaque, uint64_t gpa, uint64_t size, bool to_private);
void fz_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result);
void fz_log(void *opaque, int level, const char *msg);

/* fuzz_exits_fast_checks.c */
/* cvmconv_for_each_range(): ascending, maximal runs inside regions; their
 * private pages are collected in @bm. */
struct walk {
	uint64_t bm[NW], prev_end, bytes;
	int prev_state;
};

int view_walk_cb(void *opaque, uint64_t gpa, uint64_t size, bool is_private);
void check_views(void);
void touch_and_check_data(void);
void check_stats(void);

#if defined(__clang__)
#pragma clang attribute pop
#endif

#endif
