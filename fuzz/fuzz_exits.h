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
 *
 * The harness, by part:
 *   fuzz_exits.h            what the parts share: geometry, state, prototypes
 *   fuzz_exits_main.c       the fixed geometry (LLVMFuzzerInitialize), the
 *                           state, one input (LLVMFuzzerTestOneInput)
 *   fuzz_exits_input.c      input decoding: pickers, configuration, dispatch
 *   fuzz_exits_operations.c the operations, their predictions, settle()
 *   fuzz_exits_ops.c        kernel ops with injection and recording, listener
 *   fuzz_exits_model.c      geometry helpers, the model, the checks
 *   fuzz_common.h           the reader and the outcome of a guest request,
 *                           shared with fuzz_exits_fast
 */
#ifndef CVMCONV_FUZZ_EXITS_H
#define CVMCONV_FUZZ_EXITS_H

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
#include "fuzz_common.h"

#define PG 4096ULL
#define HPG (2ULL << 20)
#define NREG 3
#define MAX_OPS 128
#define MAX_EVENTS 65536
#define GPA_LIMIT (1ULL << 52)

#define CHECK(cond, ...) FZ_CHECK("fuzz_exits", cond, __VA_ARGS__)

/* FUZZ_EXITS_TRACE=1 prints every operation (to debug a reproducer). */
extern bool tracing;
/* Set by FUZZ_EXITS_LENIENT_BATCH: see batch_valid(). */
extern bool lenient_batch;
void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- fixed geometry, created once ---- */

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

extern struct fz_region R[NREG];
extern struct fake_gmem G1;	   /* R1's guest_memfd when it is in place */
extern uint64_t win_lo, win_pages; /* model window: all regions +- 2 MiB */

/* ---- per-input state ---- */

/* ---- per-input state ---- */

enum ev_kind { EV_AFTER, EV_PUNCH, EV_DISCARD };

struct event {
	enum ev_kind kind;
	uint64_t a, b; /* gpa,size / offset,len / hva,len */
	int fd;
	bool to_private;
	int ret;
};

struct harness {
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
};
extern struct harness H;

/* A batch as decoded (fuzz_exits_input.c) for op_batch() */
struct fz_batch {
	struct cvmconv_range r[12];
	size_t n;
};

/* fuzz_exits_main.c */
uint64_t allocated(int fd);

/* fuzz_exits_input.c */
void setup_input(struct rd *in);
void run_op(struct rd *in);

/* fuzz_exits_operations.c */
void begin_op(void);
void end_op(void);
int batch_valid(const struct fz_batch *b, bool guest);
void op_map_gpa_range(uint64_t gpa, uint64_t npages, uint64_t attrs, bool via_run, uint64_t preset,
		      uint64_t garbage);
void op_memory_fault(uint64_t gpa, uint64_t size, uint64_t flags);
void op_other_exit(uint32_t reason, uint64_t nr, struct rd *r);
void op_convert(uint64_t gpa, uint64_t size, bool to_private);
void op_batch(struct fz_batch *b, unsigned flags, bool oversize);
void op_flush(void);
void op_is_private(uint64_t gpa);
void op_for_each_range(uint64_t gpa, uint64_t size, uint64_t stop);
void op_replay_listener(void);
void check_poll_fd(void);
void op_stats_json(size_t len);
void op_add_region(uint64_t gpa, uint64_t size, uint32_t flags);

/* fuzz_exits_ops.c */
extern const struct cvmconv_ops fz_ops;
int fz_before(void *opaque, uint64_t gpa, uint64_t size, bool to_private);
void fz_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result);
void fz_log(void *opaque, int level, const char *msg);

/* fuzz_exits_model.c */
int region_of_gpa(uint64_t gpa);
uint8_t *side_page(const struct fz_region *r, bool private_side, uint64_t rel);
bool covered(uint64_t gpa, uint64_t size);
bool policy_refuses(uint64_t gpa, uint64_t size);
bool range_ok(uint64_t gpa, uint64_t size);
void model_apply(uint8_t *m, uint64_t gpa, uint64_t size, bool to_private);
uint64_t new_tag(int side, uint64_t page);
void write_tag(uint8_t *page, uint64_t tag);
void check_tags(void);
void retag_changed(void);
void check_views(void);
void check_events(void);
void check_accounting(void);

#endif
