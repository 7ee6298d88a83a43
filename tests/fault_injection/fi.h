/* SPDX-License-Identifier: MIT */
/*
 * Fault injection at every kernel call site and every allocation of the
 * library, over real memfd backings. Built as its own executable (not the
 * test_*.c glob) because it is linked with
 *   -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free
 *   -Wl,--wrap=ioctl,--wrap=fallocate,--wrap=madvise
 * so that failures are injected at the libc boundary, never inside the
 * library.
 *
 * Sites, and the errnos injected at each (EINTR, EAGAIN, ENOMEM, EFAULT,
 * EIO, EINVAL):
 *   attribute update of a forward conversion (map_gpa_range, kvm_run
 *     hypercall and memory fault exits, host convert, guest and host batch),
 *     on the first run and on a later run (rollback of the earlier ones);
 *   attribute update of a rollback (every forward x rollback errno pair):
 *     the context breaks, every later call is refused, nothing is punched;
 *   attribute update of add_region(CVMCONV_REGION_PRIVATE);
 *   punch of a 4 KiB backing (shmem), both directions;
 *   punch of huge pages (MFD_HUGETLB, reserved with hugepages_reserve);
 *   punch retried by cvmconv_flush();
 *   madvise(MADV_REMOVE) of a shared side given as a host mapping;
 *   madvise(MADV_DONTNEED) of anonymous MAP_PRIVATE memory given as one;
 *   fallocate(mode 0) of a CVMCONV_REGION_ALLOC_SHARED region's shared side
 *     (in the first or the second region of a request);
 *   the default kernel ops of src/kvm.c (ioctl, fallocate, madvise reached
 *     through --wrap): transient EINTR/EAGAIN are retried, the rest reported;
 *   every allocation (malloc/calloc/realloc) reached from create,
 *     add_region (shmem, hugetlb, private, the 9th region), conversions that
 *     grow the mixed-extent table, batches, and failed punches.
 * After each fault: the library's view == the fake kernel's == the model
 * (rolled back, or committed for punch failures); the live side of every
 * page still holds its pattern; the VMM and the guest got what
 * docs/semantics.md says; cvmconv_flush() then recovers what can be:
 * punch_pending_bytes back to 0 and st_blocks == live pages; no allocation
 * is leaked (allocations and frees are counted through the wrappers).
 *
 * test_call_sites scans the .c files of src/ for calls of op_set_memory_attributes,
 * op_punch, op_discard_hva, ioctl, fallocate, madvise and the allocators,
 * and fails when a call site (file + enclosing function) is not in the
 * table of fi_call_sites.c, so a new kernel call or allocation cannot go
 * untested.
 *
 * The files of this executable:
 *   fi_wrap.c        the --wrap functions (allocators, ioctl, fallocate,
 *                    madvise) and their schedules; the figures
 *   fi_world.c       the world (context, two regions, model), its checks,
 *                    requests through each entry point
 *   fi_attr.c        attribute updates that fail: forward, rollback (the
 *                    context breaks), add_region(PRIVATE), in place
 *   fi_punch.c       punches that fail, flush retrying them, huge pages
 *   fi_default_ops.c the default kernel ops of src/kvm.c
 *   fi_alloc.c       allocation failures
 *   fi_call_sites.c  test_call_sites and its table
 *   fi_main.c        the suite
 */
#ifndef CVMCONV_TEST_FAULT_INJECTION_H
#define CVMCONV_TEST_FAULT_INJECTION_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/kvm.h>

#include "cvmconv.h"
#include "fake_kvm.h"
#include "fixture.h"
#include "kvm_compat.h"
#include "libc_wrap.h"

#ifndef CVMCONV_SOURCE_DIR
#error "CVMCONV_SOURCE_DIR must name the source tree (set by tests/CMakeLists.txt)"
#endif

#define BASE (4 * SZ_1G)
#define RSIZE (2 * SZ_2M) /* each region: two 2 MiB extents */
#define RPAGES (RSIZE / SZ_4K)
#define HC(err) ((uint64_t) - (int64_t)(err))

/* EINTR, EAGAIN, ENOMEM, EFAULT, EIO, EINVAL */
#define NERR_MAX 6
extern const int errnos[NERR_MAX];
#define NERR (sizeof(errnos) / sizeof(errnos[0]))

/* ---- figures: faults injected per site and errno (fi_wrap.c) ---- */

enum site {
	S_ATTR_FWD,
	S_ATTR_ROLLBACK,
	S_ATTR_ADD,
	S_PUNCH_4K,
	S_PUNCH_HUGE,
	S_PUNCH_FLUSH,
	S_DISCARD,
	S_KVM_IOCTL,
	S_KVM_FALLOCATE,
	S_KVM_MADVISE,
	S_ALLOC_SHARED,
	S_GMEM_FWD,
	S_GMEM_ROLLBACK,
	S_ALLOC,
	S_COUNT
};

extern const char *const site_names[S_COUNT];
extern uint64_t injected[S_COUNT][NERR_MAX];
extern bool huge_skipped;
unsigned err_index(int err);

/* ---- allocation wrappers (fi_wrap.c) ---- */

struct fi_alloc {
	bool armed;
	unsigned in_fake; /* inside the fake kernel: its own allocations */
	uint64_t count, fail_at;
	bool hit;
	long live; /* allocations minus frees through the wrappers */
};
extern struct fi_alloc alloc;

/* Fail the @n-th allocation (1-based) from now on. */
void alloc_arm(uint64_t n);
void alloc_disarm(void);

/* ---- kernel call wrappers (the default ops of src/kvm.c; fi_wrap.c) ---- */

/* Per kind: errnos for the next calls (0 = pass); with @repeat the last
 * entry repeats forever. */
struct sched {
	int err[8];
	unsigned n, pos;
	bool repeat;
	uint64_t calls;
};

enum kcall { K_PROBE, K_ATTR, K_FALLOCATE, K_MADVISE, K_GMEM, K_COUNT };

struct fi_kern {
	int vm_fd;		 /* the fd the wrapped ioctl serves as a KVM VM */
	struct fake_kvm *fake;	 /* its attribute state */
	struct fake_gmem *gmem;	 /* the guest_memfd the wrapped ioctl serves */
	struct sched s[K_COUNT]; /* only for calls on vm_fd / while armed */
	bool armed;		 /* fallocate/madvise injection on */
};
extern struct fi_kern kern;

int sched_next(struct sched *s);
void sched_set(struct sched *s, const int *errs, unsigned n, bool repeat);

/* ---- the world: a context, two adjacent regions, a model (fi_world.c) ---- */

/* shared side: shmem fd, hugetlb fd, a MAP_SHARED shmem mapping given as
 * an address, or anonymous MAP_PRIVATE memory given as an address */
/* B_INPLACE: an in-place region (CVMCONV_REGION_INPLACE, content mode
 * PRESERVE) over a strict fake guest_memfd: one file for both sides */
enum backing { B_SHMEM, B_HUGE, B_HVA, B_ANON, B_INPLACE };

struct wregion {
	uint64_t gpa;
	enum backing kind;
	int shared_fd, private_fd;
	uint8_t *shared_map, *private_map;
	uint64_t shared_size;
	bool priv[RPAGES];
	bool written[2][RPAGES]; /* the side holds the test's pattern */
	struct fake_gmem gmem;	 /* B_INPLACE */
};

struct world {
	struct fake_kvm fake;
	struct cvmconv *c;
	bool default_ops;
	struct sched s[FAKE_CALL_COUNT]; /* injection through the ops */
	struct wregion r[2];
	unsigned nreg;
	unsigned befores, afters_ok, afters_cancel;
	bool reserved;
};

#define NWORLDS 4

uint8_t *side_map(struct wregion *r, bool private_side);
/* Pattern of page @p on a side: fixture pattern, seed = region, side. */
uint32_t seed_of(unsigned ri, bool private_side);
int memfd_of(uint64_t size, bool huge);
void *map_whole(int fd, uint64_t size);
/* The context (fake ops with injection, or the default kernel ops through
 * the wrapped libc calls) with a listener. */
void world_ctx(struct world *w, bool default_ops);
/* CVMCONV_REGION_* flags of the regions world_region() adds (reset by
 * world_get()). */
extern uint32_t next_region_flags;
/* Region @ri at BASE + ri * RSIZE; the guest wrote every page (shared). */
void world_region(struct world *w, enum backing kind);
struct world *world_get(void);
void world_free(struct world *w);
int teardown_worlds(void **state);
struct cvmconv_stats stats(struct world *w);
void model_set(struct world *w, uint64_t gpa, uint64_t size, bool private_);
void write_converted(struct world *w, uint64_t gpa, uint64_t size);
void check_world(struct world *w);
void check_allocation(struct world *w, uint64_t extra);
void check_flush_recovers(struct world *w);

/* ---- requests through each entry point (fi_world.c) ---- */

enum entry { E_MAP, E_RUN, E_FAULT, E_CONVERT, E_BATCH_GUEST, E_BATCH_HOST, E_COUNT };

int request(struct world *w, enum entry e, uint64_t gpa, uint64_t size, bool to_private,
	    uint64_t *hc);
bool entry_has_hc(enum entry e);

/* ---- the tests ---- */

/* fi_call_sites.c */
void test_call_sites(void **state);
/* fi_attr.c */
void test_attr_forward(void **state);
void test_attr_rollback(void **state);
void test_attr_add_region_private(void **state);
void test_gmem_forward(void **state);
void test_gmem_rollback(void **state);
/* fi_punch.c */
void test_punch_shmem(void **state);
void test_discard_hva(void **state);
void test_flush_failure(void **state);
void test_punch_pending_page_live_again(void **state);
void test_punch_huge(void **state);
/* fi_default_ops.c */
void test_default_ops_probe(void **state);
void test_default_ops_attr(void **state);
void test_default_ops_gmem(void **state);
void test_default_ops_punch_madvise(void **state);
void test_alloc_shared(void **state);
/* fi_alloc.c */
void test_alloc_create(void **state);
void test_alloc_add_region(void **state);
void test_alloc_convert(void **state);
void test_alloc_pending_list(void **state);

#endif
