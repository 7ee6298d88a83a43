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

static struct fz_region R[NREG];
static int vm_fd;
static uint8_t *hva_shared, *hva_private; /* R1's shared side as a mapping */
static uint64_t win_lo, win_pages;
static uint64_t regions_bm[NW], shared4k_bm[NW]; /* region pages; 4 KiB shared sides */

/* ---- per-input state ---- */

enum probe_kind { PROBE_OK, PROBE_EINTR, PROBE_EXTRA, PROBE_NONE, PROBE_ENOTTY, PROBE_EIO };

static struct {
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
} H;

/* /proc/self/smaps as show_smap (fs/proc/task_mmu.c) prints it, for R1's two
 * mappings and a decoy before them with a line longer than the library's
 * buffer. The real file of an ASan process is megabytes long (~3 ms a read:
 * inputs that reach it dominate a run); fuzz_exits reads the real one. */
static char smaps_text[4096];
static size_t smaps_len;

static uint64_t n_inputs, n_ops; /* printed at exit */

static struct kvm_run fault_run; /* one vCPU: the fault guard keys on it */

/* ---- input decoding (the reader: fuzz_common.h) ---- */

static const uint64_t odd_gpas[] = { 0,		 GPA_LIMIT, GPA_LIMIT - HPG, UINT64_MAX & ~(PG - 1),
				     1ULL << 63, 1ULL << 30 };
static const uint64_t odd_npages[] = {
	0, 1ULL << 40, (1ULL << 40) + 1, GPA_LIMIT / PG, UINT64_MAX, UINT64_MAX / PG + 1
};

/* A region boundary: region k % 3, its end when k / 3 is odd. */
static uint64_t boundary(unsigned k)
{
	const struct fz_region *r = &R[k % NREG];

	return r->gpa + ((k / NREG) & 1) * r->npages * PG;
}

static uint64_t pick_gpa(struct rd *r)
{
	uint8_t s = u8(r);
	int64_t d = (int8_t)u8(r);

	switch (s & 7) {
	case 0:
		return u64(r);
	case 1:
	case 2:
		return boundary(u8(r)) + (uint64_t)(d * (int64_t)PG);
	case 3:
		return (win_lo & ~(HPG - 1)) + (u8(r) % 6) * HPG + (uint64_t)(d * (int64_t)PG);
	case 4:
		return boundary(u8(r)) + (uint64_t)d;
	case 5:
		return odd_gpas[u8(r) % ARRAY_LEN(odd_gpas)] + (uint64_t)(d * (int64_t)PG);
	default:
		return win_lo + u16(r) % win_pages * PG;
	}
}

static uint64_t pick_npages(struct rd *r)
{
	uint8_t s = u8(r);

	switch (s & 7) {
	case 0:
		return u64(r);
	case 1:
	case 2:
		return 1 + u8(r) % 16;
	case 3:
		return 512 * (1 + u8(r) % 3) + (uint64_t)((int8_t)u8(r) / 16);
	case 4:
		return R[u8(r) % NREG].npages + (uint64_t)((int8_t)u8(r) / 16);
	case 5:
		return odd_npages[u8(r) % ARRAY_LEN(odd_npages)];
	default:
		return 1 + u16(r) % 1536;
	}
}

static uint64_t pick_size(struct rd *r)
{
	uint8_t s = u8(r);

	if ((s & 7) == 0)
		return u64(r);
	return pick_npages(r) * PG + ((s & 7) == 1 ? (uint64_t)(int8_t)u8(r) : 0);
}

static uint64_t pick_attrs(struct rd *r)
{
	uint8_t s = u8(r);

	switch (s & 7) {
	case 0:
		return u64(r);
	case 1:
		return 1ULL << (u8(r) % 64);
	case 2:
		return (s >> 3) & 0x13; /* hints, with or without encrypted */
	default:
		return s & 8 ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0;
	}
}

/* ---- bitmaps over window pages ---- */

static uint64_t word_mask(uint64_t w, uint64_t lo, uint64_t hi)
{
	uint64_t a = lo > w * 64 ? lo - w * 64 : 0, b = hi < w * 64 + 64 ? hi - w * 64 : 64;

	return (b == 64 ? ~0ULL : (1ULL << b) - 1) & ~((1ULL << a) - 1);
}

static void bm_set(uint64_t *bm, uint64_t lo, uint64_t hi, bool v)
{
	for (uint64_t w = lo / 64; lo < hi && w <= (hi - 1) / 64; w++) {
		uint64_t m = word_mask(w, lo, hi);

		bm[w] = v ? bm[w] | m : bm[w] & ~m;
	}
}

/* Whether every bit of [lo, hi) is @v. */
static bool bm_all(const uint64_t *bm, uint64_t lo, uint64_t hi, bool v)
{
	for (uint64_t w = lo / 64; lo < hi && w <= (hi - 1) / 64; w++) {
		uint64_t m = word_mask(w, lo, hi);

		if ((bm[w] & m) != (v ? m : 0))
			return false;
	}
	return true;
}

static uint64_t bm_count(const uint64_t *bm, const uint64_t *and_, bool invert_and)
{
	uint64_t n = 0;

	for (int w = 0; w < NW; w++)
		n += (uint64_t)__builtin_popcountll(bm[w] & (invert_and ? ~and_[w] : and_[w]));
	return n;
}

static bool bm_get(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

static uint64_t bm_count_range(const uint64_t *bm, uint64_t lo, uint64_t hi)
{
	uint64_t n = 0;

	for (uint64_t w = lo / 64; lo < hi && w <= (hi - 1) / 64; w++)
		n += (uint64_t)__builtin_popcountll(bm[w] & word_mask(w, lo, hi));
	return n;
}

/* ---- geometry ---- */

static bool in_window(uint64_t gpa, uint64_t size)
{
	return gpa >= win_lo && size <= win_pages * PG && gpa - win_lo <= win_pages * PG - size;
}

static uint64_t widx(uint64_t gpa)
{
	return (gpa - win_lo) / PG;
}

/* The checks of semantics.md Decode, and wholly inside regions. */
static bool range_ok(uint64_t gpa, uint64_t size)
{
	if (!size || ((gpa | size) & (PG - 1)) || size > GPA_LIMIT || gpa > GPA_LIMIT - size)
		return false;
	return in_window(gpa, size) && bm_all(regions_bm, widx(gpa), widx(gpa + size), true);
}

static bool policy_refuses(uint64_t gpa, uint64_t size)
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
static void hp_span(unsigned h, uint64_t *lo, uint64_t *hi)
{
	uint64_t start = h * HPG, end = start + HPG, off = R[2].shared_offset;
	uint64_t a = start > off ? start - off : 0, b = end - off;

	if (b > R[2].npages * PG)
		b = R[2].npages * PG;
	*lo = R[2].first + a / PG;
	*hi = R[2].first + b / PG;
}

static bool hp_edge(unsigned h)
{
	uint64_t lo, hi;

	hp_span(h, &lo, &hi);
	return (hi - lo) * PG != HPG;
}

/* ---- the model kernel ---- */

/* Which side of which region an fd backs; -1 if none of ours. */
static int fd_side(int fd, bool *private_side)
{
	for (int i = 0; i < NREG && fd >= 0; i++) {
		if (fd == R[i].private_fd || (fd == R[i].shared_fd && R[i].kind == SH_FD)) {
			*private_side = fd == R[i].private_fd;
			return i;
		}
	}
	return -1;
}

/* Inject from a schedule: returns the errno of this call or 0. */
static int take(uint32_t *mask, int err)
{
	bool fail = *mask & 1;

	*mask >>= 1;
	return fail ? err : 0;
}

static void lib_failed(int err)
{
	if (!H.fails++)
		H.first_err = -err;
}

static int model_set_attrs(const struct kvm_memory_attributes *a)
{
	int err = 0, ret;

	CHECK(!H.broken, "attribute update on a broken context");
	if (H.storm) {
		H.storm--;
		err = H.storm_errno;
	} else {
		err = take(&H.attr_mask, H.attr_errno);
	}
	if (!err) {
		uint64_t rejected = H.fake.rejected;

		ret = fake_kvm_set_attributes_ioctl(&H.fake, a->address, a->size, a->attributes,
						    a->flags);
		CHECK(H.fake.rejected == rejected, "the kernel refused 0x%llx+0x%llx attrs 0x%llx",
		      (unsigned long long)a->address, (unsigned long long)a->size,
		      (unsigned long long)a->attributes);
		CHECK(in_window(a->address, a->size) && bm_all(regions_bm, widx(a->address),
							       widx(a->address + a->size), true),
		      "attribute update outside regions");
		err = -ret;
	}
	if (!err) {
		H.transient = 0;
		return 0;
	}
	/* src/kvm.c retries EINTR and EAGAIN up to RETRY_MAX times */
	if ((err != EINTR && err != EAGAIN) || ++H.transient == RETRY_MAX) {
		H.transient = 0;
		lib_failed(err);
	}
	errno = err;
	return -1;
}

static int model_probe(unsigned long cap)
{
	CHECK(cap == KVM_CAP_MEMORY_ATTRIBUTES, "probe of capability %lu", cap);
	switch (H.probe) {
	case PROBE_EINTR:
		H.probe = PROBE_OK;
		errno = EINTR;
		return -1;
	case PROBE_ENOTTY:
		errno = ENOTTY;
		return -1;
	case PROBE_EIO:
		errno = EIO;
		return -1;
	case PROBE_NONE:
		return 0; /* a VM type without private memory */
	case PROBE_EXTRA:
		return (int)(CVMCONV_ATTR_PRIVATE | 1);
	default:
		return (int)CVMCONV_ATTR_PRIVATE;
	}
}

int __wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (fd != vm_fd)
		return __real_ioctl(fd, req, arg);
	if (req == KVM_CHECK_EXTENSION)
		return model_probe((unsigned long)(unsigned)(uintptr_t)arg);
	CHECK(req == KVM_SET_MEMORY_ATTRIBUTES, "ioctl 0x%lx on the VM fd", req);
	return model_set_attrs(arg);
}

/* Free (punch) window pages [lo, hi) of a side: 4 KiB pages, or R2's
 * huge pages when @huge (the caller checked they are whole). */
static void model_free(bool private_side, uint64_t lo, uint64_t hi)
{
	bm_set(H.alloc[private_side], lo, hi, false);
	bm_set(H.data[private_side], lo, hi, false);
	bm_set(H.acct[private_side], lo, hi, false);
}

/* A punch or discard failed: the library keeps counting the range. */
static void model_punch_failed(int ri, bool private_side, uint64_t lo, uint64_t hi, int err)
{
	H.punch_err = -err;
	if (ri == 2 && !private_side && R[2].huge) {
		for (unsigned h = 0; h < 3; h++) {
			uint64_t a, b;

			hp_span(h, &a, &b);
			if (a < hi && b > lo)
				H.hp_acct[h] = true;
		}
		return;
	}
	bm_set(H.acct[private_side], lo, hi, true);
}

static int fail_errno(int err)
{
	errno = err;
	return -1;
}

/* fallocate(PUNCH_HOLE | KEEP_SIZE) of [off, off + len) of region @ri's side. */
static int model_punch(int ri, bool private_side, int fd, uint64_t off, uint64_t len)
{
	const struct fz_region *r = &R[ri];
	uint64_t base = private_side ? 0 : r->shared_offset, lo, hi;
	int err;

	CHECK(!(off % PG) && !(len % PG) && off >= base && off - base <= r->npages * PG &&
		      len <= r->npages * PG - (off - base),
	      "R%d punch 0x%llx+0x%llx outside the region's pages", ri, (unsigned long long)off,
	      (unsigned long long)len);
	/* the oracle: aborts if a page live by the kernel's attributes is in it */
	fake_kvm_live_in_punch(&H.fake, fd, NULL, off, len);
	lo = r->first + (off - base) / PG;
	hi = lo + len / PG;
	H.punches++;
	err = take(&H.punch_mask, H.punch_errno);
	if (err) {
		if (err != EINTR) /* kvm_punch retries EINTR */
			model_punch_failed(ri, private_side, lo, hi, err);
		return fail_errno(err);
	}
	if (ri == 2 && !private_side && r->huge) {
		/* hugetlbfs_punch_hole (fs/hugetlbfs/inode.c) zeroes partial
		 * huge pages and frees whole ones; the library promises to
		 * punch only whole huge pages that lie wholly in the region */
		CHECK(!(off % HPG) && !(len % HPG), "R2 punch 0x%llx+0x%llx not whole huge pages",
		      (unsigned long long)off, (unsigned long long)len);
		for (unsigned h = (unsigned)(off / HPG); h < (off + len) / HPG; h++) {
			CHECK(!hp_edge(h), "R2 punch of huge page %u, partly outside the region",
			      h);
			if (H.hp_alloc[h])
				H.pool_free++;
			H.hp_alloc[h] = H.hp_acct[h] = false;
		}
		bm_set(H.data[0], lo, hi, false);
		return 0;
	}
	model_free(private_side, lo, hi);
	return 0;
}

/* fallocate(fd, 0, off, len): shmem_fallocate allocates each missing page
 * and undoes what it added on failure; hugetlbfs_fallocate rounds out to
 * whole huge pages, keeps what it got and fails ENOSPC on an empty pool. */
static int model_allocate(int ri, uint64_t off, uint64_t len)
{
	const struct fz_region *r = &R[ri];
	uint64_t lo, hi;
	int err;

	CHECK(r->alloc_shared, "allocation on R%d without ALLOC_SHARED", ri);
	CHECK(!(off % PG) && !(len % PG) && off >= r->shared_offset &&
		      off - r->shared_offset <= r->npages * PG &&
		      len <= r->npages * PG - (off - r->shared_offset),
	      "R%d allocation 0x%llx+0x%llx outside the region (the file would grow)", ri,
	      (unsigned long long)off, (unsigned long long)len);
	lo = r->first + (off - r->shared_offset) / PG;
	hi = lo + len / PG;
	CHECK(bm_all(H.ref, lo, hi, true), "allocation of pages the library calls shared");
	H.allocs++;
	err = take(&H.alloc_mask, H.alloc_errno);
	if (ri == 2 && r->huge) {
		for (unsigned h = (unsigned)(off / HPG); h <= (off + len - 1) / HPG; h++)
			H.hp_visited[h] = true;
		for (unsigned h = (unsigned)(off / HPG); !err && h <= (off + len - 1) / HPG; h++) {
			if (H.hp_alloc[h])
				continue;
			if (!H.pool_free) {
				err = ENOSPC;
				break;
			}
			H.pool_free--;
			H.hp_alloc[h] = H.hp_acct[h] = true;
		}
	} else if (!err) {
		bm_set(H.alloc[0], lo, hi, true);
		bm_set(H.acct[0], lo, hi, true);
	}
	if (err) {
		H.alloc_failures++;
		lib_failed(err); /* kvm_allocate does not retry */
		return fail_errno(err);
	}
	return 0;
}

int __wrap_fallocate(int fd, int mode, off_t off, off_t len)
{
	bool private_side = false;
	int ri = fd_side(fd, &private_side);

	if (ri < 0)
		return __real_fallocate(fd, mode, off, len);
	CHECK(!H.broken, "fallocate on a broken context");
	/* vfs_fallocate (fs/open.c), then shmem/hugetlbfs: the order of checks */
	if (off < 0 || len <= 0)
		return fail_errno(EINVAL);
	if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE))
		return fail_errno(EOPNOTSUPP);
	if (off > INT64_MAX - len)
		return fail_errno(EFBIG);
	if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE))
		return model_punch(ri, private_side, fd, (uint64_t)off, (uint64_t)len);
	if (mode != 0)
		return fail_errno(EOPNOTSUPP);
	CHECK(!private_side, "allocation on R%d's private side", ri);
	return model_allocate(ri, (uint64_t)off, (uint64_t)len);
}

int __wrap_madvise(void *addr, size_t len, int advice)
{
	uintptr_t a = (uintptr_t)addr, size = R[1].npages * PG;
	bool shared_map = a >= (uintptr_t)hva_shared && a - (uintptr_t)hva_shared < size;
	bool private_map = a >= (uintptr_t)hva_private && a - (uintptr_t)hva_private < size;
	uintptr_t base = shared_map ? (uintptr_t)hva_shared : (uintptr_t)hva_private;
	uint64_t lo, hi;
	int err;

	if (!shared_map && !private_map)
		return __real_madvise(addr, len, advice);
	CHECK(!H.broken, "madvise on a broken context");
	CHECK((shared_map && R[1].kind == SH_HVA_SHARED) ||
		      (private_map && R[1].kind == SH_HVA_PRIVATE),
	      "madvise of a mapping R1 does not use");
	if (a % PG)
		return fail_errno(EINVAL); /* madvise(2): start must be page aligned */
	CHECK(len % PG == 0 && len <= size - (a - base), "discard 0x%zx past R1", len);
	fake_kvm_live_in_punch(&H.fake, -1, addr, 0, len);
	lo = R[1].first + (a - base) / PG;
	hi = lo + len / PG;
	H.punches++;
	err = take(&H.punch_mask, H.punch_errno);
	if (!err && advice == MADV_REMOVE && private_map)
		err = EINVAL; /* madvise_remove: needs a shared mapping */
	if (!err && advice != MADV_REMOVE && advice != MADV_DONTNEED)
		err = EINVAL;
	if (err) {
		model_punch_failed(1, false, lo, hi, err); /* kvm_discard_* do not retry */
		return fail_errno(err);
	}
	if (private_map || advice == MADV_REMOVE)
		model_free(false, lo, hi);
	else
		bm_set(H.acct[0], lo, hi, false); /* DONTNEED of MAP_SHARED frees nothing */
	return 0;
}

FILE *__wrap_fopen(const char *path, const char *mode)
{
	if (!strcmp(path, "/proc/self/smaps"))
		return fmemopen(smaps_text, smaps_len, "r");
	return __real_fopen(path, mode);
}

/* ---- listener ---- */

static int fz_before(void *opaque, uint64_t gpa, uint64_t size, bool to_private)
{
	(void)opaque;
	H.befores++;
	CHECK(range_ok(gpa, size) && bm_all(H.pre, widx(gpa), widx(gpa + size), !to_private),
	      "before(0x%llx, 0x%llx, %d): not a run of pages that change", (unsigned long long)gpa,
	      (unsigned long long)size, to_private);
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
	if (result)
		return;
	CHECK(range_ok(gpa, size) && bm_all(H.pre, widx(gpa), widx(gpa + size), !to_private),
	      "after(0x%llx, 0x%llx, %d): not a run of pages that changed", (unsigned long long)gpa,
	      (unsigned long long)size, to_private);
	bm_set(H.replay, widx(gpa), widx(gpa + size), to_private);
}

static void fz_log(void *opaque, int level, const char *msg)
{
	size_t len = strlen(msg);

	(void)opaque;
	CHECK(level >= LOG_EMERG && level <= LOG_DEBUG, "log level %d", level);
	CHECK(len > 0 && len < 256 && msg[len - 1] != '\n', "log line \"%s\"", msg);
}

/* ---- checks ---- */

/* cvmconv_for_each_range(): ascending, maximal runs inside regions; their
 * private pages are collected in @bm. */
struct walk {
	uint64_t bm[NW], prev_end, bytes;
	int prev_state;
};

static int walk_cb(void *opaque, uint64_t gpa, uint64_t size, bool is_private)
{
	struct walk *w = opaque;

	CHECK(range_ok(gpa, size) && gpa >= w->prev_end, "run 0x%llx+0x%llx after 0x%llx",
	      (unsigned long long)gpa, (unsigned long long)size, (unsigned long long)w->prev_end);
	CHECK(!(gpa == w->prev_end && (int)is_private == w->prev_state),
	      "runs at 0x%llx not maximal", (unsigned long long)gpa);
	if (is_private)
		bm_set(w->bm, widx(gpa), widx(gpa + size), true);
	w->prev_end = gpa + size;
	w->prev_state = is_private;
	w->bytes += size;
	return 0;
}

static void check_views(void)
{
	struct walk w = { .prev_state = -1 };
	uint64_t kern[NW] = { 0 };

	CHECK(cvmconv_for_each_range(H.c, win_lo, win_pages * PG, walk_cb, &w) == 0,
	      "for_each_range");
	CHECK(w.bytes == bm_count(regions_bm, regions_bm, false) * PG, "walk covered %llu bytes",
	      (unsigned long long)w.bytes);
	CHECK(!memcmp(w.bm, H.ref, sizeof(w.bm)), "library view differs from the reference");
	for (unsigned k = 0; k < H.fake.npriv; k++) {
		const struct fake_range *fr = &H.fake.priv[k];

		CHECK(in_window(fr->start, fr->end - fr->start), "kernel private outside");
		bm_set(kern, widx(fr->start), widx(fr->end), true);
	}
	CHECK(!memcmp(kern, H.ref, sizeof(kern)), "kernel attributes differ from the reference");
}

/* Pages that turned live are written by the guest (allocating them); every
 * live page must hold data, and be allocated. */
static void touch_and_check_data(void)
{
	bool undone = H.allocs && !memcmp(H.pre, H.ref, sizeof(H.ref));

	for (int w = 0; w < NW; w++) {
		uint64_t ch = H.pre[w] ^ H.ref[w], to_priv = ch & H.ref[w];
		uint64_t to_sh = ch & ~H.ref[w] & regions_bm[w], sh4k = shared4k_bm[w];
		uint64_t live_priv = H.ref[w], live_sh = ~H.ref[w] & regions_bm[w];

		H.alloc[1][w] |= to_priv;
		H.acct[1][w] |= to_priv;
		H.data[1][w] |= to_priv;
		H.alloc[0][w] |= to_sh & sh4k;
		H.acct[0][w] |= to_sh & sh4k;
		H.data[0][w] |= to_sh;
		CHECK(!(live_priv & ~H.data[1][w]) && !(live_sh & ~H.data[0][w]),
		      "a live page lost its data (window word %d: private 0x%llx shared 0x%llx)", w,
		      (unsigned long long)(live_priv & ~H.data[1][w]),
		      (unsigned long long)(live_sh & ~H.data[0][w]));
		CHECK(!(live_priv & ~H.alloc[1][w]) && !(live_sh & sh4k & ~H.alloc[0][w]),
		      "a live page is not allocated (word %d)", w);
		CHECK(!(H.alloc[0][w] & ~H.acct[0][w]) && !(H.alloc[1][w] & ~H.acct[1][w]),
		      "memory allocated that the library no longer counts (word %d)", w);
	}
	for (unsigned h = 0; R[2].huge && h < 3; h++) {
		uint64_t lo, hi;

		hp_span(h, &lo, &hi);
		if (!bm_all(H.ref, lo, hi, true))
			H.hp_alloc[h] = H.hp_acct[h] = true;
		/* an allocation undone (it failed, or the attribute update
		 * after it did: the pages stayed private): an edge huge page it
		 * visited may have been allocated; the library cannot punch it
		 * (partly outside the region) and counts it held */
		if (undone && H.hp_visited[h] && hp_edge(h))
			H.hp_acct[h] = true;
		CHECK(!H.hp_alloc[h] || H.hp_acct[h], "huge page %u allocated, not counted", h);
	}
}

static void check_stats(void)
{
	struct cvmconv_stats st = { .sz = sizeof(st) };
	uint64_t stale4k, huge_stale = 0, huge_pending = 0;
	uint64_t sh4k_priv[NW];

	CHECK(cvmconv_get_stats(H.c, &st) == 0, "get_stats");
	CHECK(st.broken == H.broken, "broken %llu", (unsigned long long)st.broken);
	CHECK(st.shared_alloc_failures == H.alloc_failures,
	      "shared_alloc_failures %llu, model %llu",
	      (unsigned long long)st.shared_alloc_failures, (unsigned long long)H.alloc_failures);
	if (H.broken)
		return;
	for (int w = 0; w < NW; w++)
		sh4k_priv[w] = shared4k_bm[w] & H.ref[w];
	/* stale and counted: private side where shared, 4 KiB shared sides
	 * where private */
	stale4k = bm_count(H.acct[1], H.ref, true) + bm_count(H.acct[0], sh4k_priv, false);
	for (unsigned h = 0; R[2].huge && h < 3; h++) {
		uint64_t lo, hi, n;

		hp_span(h, &lo, &hi);
		n = bm_count_range(H.ref, lo, hi);
		if (!H.hp_acct[h])
			continue;
		huge_stale += n;
		huge_pending += !hp_edge(h) && n == hi - lo;
	}
	CHECK(st.double_alloc_bytes == (stale4k + huge_stale) * PG,
	      "double_alloc_bytes %llu, model %llu 4 KiB + %llu in huge pages",
	      (unsigned long long)st.double_alloc_bytes, (unsigned long long)stale4k,
	      (unsigned long long)huge_stale);
	CHECK(st.punch_pending_bytes == stale4k * PG + huge_pending * HPG,
	      "punch_pending_bytes %llu, model %llu 4 KiB + %llu huge",
	      (unsigned long long)st.punch_pending_bytes, (unsigned long long)stale4k,
	      (unsigned long long)huge_pending);
	CHECK(st.double_alloc_peak_bytes >= st.double_alloc_bytes, "peak below current");
}

/* ---- operations ---- */

static void begin_op(void)
{
	memcpy(H.pre, H.ref, sizeof(H.ref));
	memcpy(H.replay, H.ref, sizeof(H.ref));
	H.fails = 0;
	H.first_err = H.punch_err = 0;
	H.allocs = 0;
	memset(H.hp_visited, 0, sizeof(H.hp_visited));
	H.punches = 0;
	H.befores = H.afters = 0;
	H.vetoed = false;
}

static void end_op(void)
{
	if (!H.broken) {
		if (H.listener)
			CHECK(!memcmp(H.replay, H.ref, sizeof(H.ref)),
			      "the after() runs do not add up to the change");
		touch_and_check_data();
		check_views();
	}
	check_stats();
}

/* The reference follows a reported success. */
static void commit_ref(uint64_t gpa, uint64_t size, bool to_private)
{
	uint64_t lo = widx(gpa), hi = widx(gpa + size);

	if (!bm_all(H.ref, lo, hi, to_private))
		H.changed_since_fault = true;
	bm_set(H.ref, lo, hi, to_private);
}

/* @expect: 1 valid, 0 invalid (refused). */
static void settle(enum outcome got, int expect, int ret)
{
	if (H.broken) {
		CHECK(ret == -ENOTRECOVERABLE, "broken context answered %d", ret);
		return;
	}
	if (got == FAILED) {
		CHECK(H.fails, "host failure %d without a failed kernel call", ret);
		if (H.fails > 1) { /* the rollback failed too */
			CHECK(ret == -ENOTRECOVERABLE, "failed rollback answered %d", ret);
			H.broken = true;
			return;
		}
		CHECK(ret == H.first_err, "failure %d reported as %d", H.first_err, ret);
	} else {
		CHECK(!H.fails, "a kernel call failed (%d) but the request %s", H.first_err,
		      got == OK ? "succeeded" : "was refused");
	}
	CHECK((got == VETOED) == H.vetoed, "veto %d, outcome %d", H.vetoed, got);
	CHECK(got != OK || expect, "an invalid request was accepted");
	CHECK(got != REFUSED || !expect, "a valid request was refused");
	/* ALLOC_SHARED allocates before the attribute update: a request that
	 * fails after that punches what it allocated (semantics.md 4a) */
	CHECK(got == OK || !H.punches || H.allocs,
	      "a request that did not succeed (%d, %d) punched", got, ret);
	if (H.listener == 2)
		CHECK(H.befores - H.vetoed == H.afters, "%u before() (veto %d), %u after()",
		      H.befores, H.vetoed, H.afters);
}

static void op_map(uint64_t gpa, uint64_t npages, uint64_t attrs, bool via_run, uint64_t junk)
{
	uint64_t hint = attrs & 3, size = npages * PG, hc = 0x5a5a5a5a5a5a5a5aULL;
	bool valid = !(attrs & ~0x13ULL) && hint != 3 && !(gpa & (PG - 1)) && npages &&
		     npages <= (1ULL << 40) && gpa <= GPA_LIMIT - size;
	enum outcome got;
	int ret;

	if (valid &&
	    ((hint == 1 && ((gpa | size) % HPG)) || (hint == 2 && ((gpa | size) % (1ULL << 30)))))
		valid = false;
	valid = valid && range_ok(gpa, size) && !policy_refuses(gpa, size);
	if (via_run) {
		struct kvm_run run;

		memset(&run, 0, sizeof(run));
		run.exit_reason = KVM_EXIT_HYPERCALL;
		run.hypercall.nr = KVM_HC_MAP_GPA_RANGE;
		run.hypercall.args[0] = gpa;
		run.hypercall.args[1] = npages;
		run.hypercall.args[2] = attrs;
		run.hypercall.args[3] = junk;
		run.hypercall.args[5] = ~junk;
		run.hypercall.ret = junk;
		run.hypercall.longmode = (uint32_t)junk;
		ret = fz_map_exit("fuzz_exits_fast", H.c, &run, &hc);
	} else {
		ret = cvmconv_map_gpa_range(H.c, gpa, npages, attrs, &hc);
	}
	got = fz_guest_outcome("fuzz_exits_fast", "map_gpa_range", ret, hc);
	settle(got, valid, ret);
	if (got == OK && !H.broken)
		commit_ref(gpa, size, attrs & CVMCONV_MAP_GPA_RANGE_ENCRYPTED);
}

static void op_fault(uint64_t gpa, uint64_t size, uint64_t flags)
{
	struct cvmconv_kvm_memory_fault *mf;
	struct kvm_run before;
	bool to_private = flags & KVM_MEMORY_EXIT_FLAG_PRIVATE;
	bool malformed = (flags & ~(uint64_t)KVM_MEMORY_EXIT_FLAG_PRIVATE) || !range_ok(gpa, size);
	bool by_policy = !malformed && policy_refuses(gpa, size);
	bool loop = !malformed && !by_policy && !H.broken && H.fault_valid &&
		    !H.changed_since_fault && H.fault_gpa == gpa && H.fault_size == size &&
		    H.fault_flags == flags &&
		    bm_all(H.ref, widx(gpa), widx(gpa + size), to_private);
	enum outcome got;
	int ret;

	memset(&fault_run, 0, sizeof(fault_run));
	fault_run.exit_reason = KVM_EXIT_MEMORY_FAULT;
	mf = cvmconv_run_memory_fault(&fault_run);
	mf->flags = flags;
	mf->gpa = gpa;
	mf->size = size;
	memcpy(&before, &fault_run, sizeof(before));
	ret = cvmconv_handle_exit(H.c, &fault_run);
	CHECK(!memcmp(&before, &fault_run, sizeof(before)), "memory fault exit modified kvm_run");
	if (ret == 1 || ret == -ELOOP) {
		CHECK((ret == -ELOOP) == loop, "memory fault: %d, the model expects %s", ret,
		      loop ? "-ELOOP" : "1");
		got = OK;
	} else if (H.broken || H.fails) {
		got = FAILED;
	} else if (H.vetoed) {
		CHECK(ret == -EPERM, "vetoed memory fault: %d", ret);
		got = VETOED;
	} else {
		CHECK(ret == (by_policy ? -EPERM : -EFAULT), "memory fault refused with %d", ret);
		got = REFUSED;
	}
	settle(got, !malformed && !by_policy, ret);
	if (got == OK && !H.broken) {
		commit_ref(gpa, size, to_private);
		H.fault_valid = true;
		H.fault_gpa = gpa;
		H.fault_size = size;
		H.fault_flags = flags;
		H.changed_since_fault = false;
	}
}

static void op_other_exit(struct rd *in)
{
	struct kvm_run run, before;
	uint8_t s = u8(in);
	int ret;

	memset(&run, 0, sizeof(run));
	for (size_t i = 0; i < 48; i++)
		run.padding[i] = (char)u8(in);
	run.exit_reason = s & 1 ? (uint32_t)u64(in) : u8(in) % 48u;
	if (run.exit_reason == KVM_EXIT_MEMORY_FAULT)
		run.exit_reason++;
	if (run.exit_reason == KVM_EXIT_HYPERCALL && run.hypercall.nr == KVM_HC_MAP_GPA_RANGE)
		run.hypercall.nr++;
	memcpy(&before, &run, sizeof(run));
	ret = cvmconv_handle_exit(H.c, &run);
	CHECK(ret == 0 && !memcmp(&before, &run, sizeof(run)),
	      "exit reason %u: %d, or kvm_run modified", run.exit_reason, ret);
	CHECK(!H.befores && !H.punches, "a non-conversion exit converted");
}

static void op_convert(uint64_t gpa, uint64_t size, bool to_private)
{
	int ret = cvmconv_convert(H.c, gpa, size, to_private);
	enum outcome got;

	if (ret == 0)
		got = OK;
	else if (ret == -EPERM && H.vetoed)
		got = VETOED;
	else if (ret == -EINVAL && !H.fails)
		got = REFUSED;
	else
		got = FAILED;
	settle(got, range_ok(gpa, size), ret);
	if (got == OK && !H.broken)
		commit_ref(gpa, size, to_private);
}

#define BATCH_MAX 12

/* Every entry valid on its own, no overlap; for a guest, the policy on
 * the merged runs of one direction. */
static bool batch_valid(const struct cvmconv_range *in, size_t n, bool guest)
{
	struct cvmconv_range s[BATCH_MAX];

	memcpy(s, in, n * sizeof(*s));
	for (size_t i = 0; i < n; i++)
		if (s[i].reserved || s[i].to_private > 1 || !range_ok(s[i].gpa, s[i].size))
			return false;
	qsort(s, n, sizeof(*s), by_gpa);
	for (size_t i = 0, j; i < n; i = j) {
		uint64_t end = s[i].gpa + s[i].size;

		if (i && s[i].gpa < s[i - 1].gpa + s[i - 1].size)
			return false;
		for (j = i + 1; j < n && s[j].gpa == end && s[j].to_private == s[i].to_private; j++)
			end += s[j].size;
		if (guest && policy_refuses(s[i].gpa, end - s[i].gpa))
			return false;
	}
	return true;
}

static void op_batch(struct rd *in)
{
	struct cvmconv_range b[BATCH_MAX];
	uint8_t f = u8(in);
	unsigned flags = f % 8 == 0 ? u8(in) : (f & 1 ? CVMCONV_BATCH_GUEST : 0);
	bool guest = flags == CVMCONV_BATCH_GUEST, valid;
	size_t n = u8(in) % (BATCH_MAX + 1);
	uint64_t hc = 0x5a5a5a5a5a5a5a5aULL, at = pick_gpa(in) & ~(PG - 1);
	enum outcome got;
	int ret;

	memset(b, 0, sizeof(b));
	for (size_t i = 0; i < n; i++) {
		uint8_t s = u8(in);

		if (f & 2) { /* SEV-SNP page state change shape: small ascending pieces */
			at += (s & 3) * PG;
			b[i] = (struct cvmconv_range){ at, (1 + (s >> 2 & 7)) * PG, s >> 5 & 1, 0 };
			at += b[i].size;
			continue;
		}
		b[i].gpa = i && s % 3 == 0 ? b[i - 1].gpa + b[i - 1].size : pick_gpa(in);
		b[i].size = pick_size(in);
		b[i].to_private = s & 0x10 ? (s & 0x20 ? u8(in) : 1) : 0;
		b[i].reserved = (s & 0xc0) == 0xc0 ? u8(in) : 0;
	}
	if (f == 0xff) { /* n above the limit: refused before an entry is read */
		ret = cvmconv_convert_batch(H.c, b, CVMCONV_BATCH_MAX + 1, flags, &hc);
		CHECK(ret == -E2BIG || (ret == -EINVAL && (flags & ~CVMCONV_BATCH_GUEST)),
		      "oversized batch: %d", ret);
		return;
	}
	ret = cvmconv_convert_batch(H.c, b, n, flags, guest ? &hc : NULL);
	if (flags & ~CVMCONV_BATCH_GUEST) {
		CHECK(ret == -EINVAL && !H.befores && !H.punches, "batch flags 0x%x: %d", flags,
		      ret);
		return;
	}
	valid = batch_valid(b, n, guest);
	if (guest) {
		CHECK(ret <= 0, "guest batch returned %d", ret);
		got = fz_guest_outcome("fuzz_exits_fast", "batch", ret, hc);
	} else {
		got = ret == 0			   ? OK
		      : ret == -EPERM && H.vetoed  ? VETOED
		      : ret == -EINVAL && !H.fails ? REFUSED
						   : FAILED;
	}
	settle(got, valid, ret);
	for (size_t i = 0; got == OK && !H.broken && i < n; i++)
		commit_ref(b[i].gpa, b[i].size, b[i].to_private);
}

static void op_flush(void)
{
	int ret = cvmconv_flush(H.c);
	struct cvmconv_stats st = { .sz = sizeof(st) };

	if (H.broken) {
		CHECK(ret == -ENOTRECOVERABLE, "flush on a broken context: %d", ret);
		return;
	}
	CHECK(!H.befores, "flush notified listeners");
	CHECK(ret == H.punch_err, "flush returned %d, the last punch failure was %d", ret,
	      H.punch_err);
	CHECK(cvmconv_get_stats(H.c, &st) == 0, "stats");
	CHECK(ret || !st.punch_pending_bytes, "flush returned 0 with %llu bytes pending",
	      (unsigned long long)st.punch_pending_bytes);
}

/* A listener registered with CVMCONV_LISTENER_REPLAY hears the current
 * runs once: the reference, maximal, all registered memory. */
static void replay_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	CHECK(result == 0, "replay: result %d", result);
	walk_cb(opaque, gpa, size, to_private);
}

static void op_replay(void)
{
	struct walk w = { .prev_state = -1 };
	struct cvmconv_listener l = { .sz = sizeof(l),
				      .after = replay_after,
				      .opaque = &w,
				      .flags = CVMCONV_LISTENER_REPLAY };
	int id = cvmconv_add_listener(H.c, &l);

	if (H.broken)
		return;
	CHECK(id >= 0, "add_listener(REPLAY): %d", id);
	CHECK(w.bytes == bm_count(regions_bm, regions_bm, false) * PG &&
		      !memcmp(w.bm, H.ref, sizeof(w.bm)),
	      "replay differs from the reference");
	CHECK(cvmconv_remove_listener(H.c, id) == 0, "remove_listener");
}

static void op_query(uint64_t gpa)
{
	struct pollfd p = { .fd = cvmconv_get_poll_fd(H.c), .events = POLLIN };
	struct cvmconv_stats st = { .sz = sizeof(st) };
	int ret = cvmconv_is_private(H.c, gpa);
	bool inside = range_ok(gpa & ~(PG - 1), PG);

	if (!inside)
		CHECK(ret == -ENOENT, "is_private(0x%llx) outside regions: %d",
		      (unsigned long long)gpa, ret);
	else if (!H.broken)
		CHECK(ret == bm_get(H.ref, widx(gpa)), "is_private(0x%llx): %d",
		      (unsigned long long)gpa, ret);
	CHECK(p.fd >= 0 && cvmconv_get_stats(H.c, &st) == 0, "poll fd %d", p.fd);
	if (st.punch_pending_bytes)
		CHECK(poll(&p, 1, 0) == 1 && (p.revents & POLLIN), "pending, poll fd not readable");
}

static const int attr_errnos[] = { EINTR, EAGAIN, ENOMEM, EFAULT, EIO, EINVAL };
static const int punch_errnos[] = { EINTR, EIO, ENOMEM, EINVAL, EPERM, EBUSY };
static const int alloc_errnos[] = { ENOSPC, ENOMEM, EINTR, EIO };

static uint32_t pick_mask(struct rd *in)
{
	uint8_t s = u8(in);

	return s & 3 ? 1u << (s & 3) >> 1 : u16(in);
}

static void run_op(struct rd *in)
{
	uint8_t op = u8(in);

	begin_op();
	switch (op % 20) {
	case 0:
	case 1:
	case 2:
	case 3:
	case 4: {
		uint64_t gpa = pick_gpa(in), np = pick_npages(in), attrs = pick_attrs(in);

		op_map(gpa, np, attrs, op % 20 >= 3, op % 20 == 4 ? u64(in) : 0);
		break;
	}
	case 5:
	case 6: {
		uint64_t gpa = pick_gpa(in), size = pick_size(in);
		uint8_t f = u8(in);

		op_fault(gpa, size, f % 8 == 0 ? u64(in) : (f & 1) * KVM_MEMORY_EXIT_FLAG_PRIVATE);
		break;
	}
	case 7:
		op_other_exit(in);
		break;
	case 8:
	case 9: {
		uint64_t gpa = pick_gpa(in), size = pick_size(in);

		op_convert(gpa, size, u8(in) & 1);
		break;
	}
	case 10:
	case 11:
		op_batch(in);
		break;
	case 12:
		op_flush();
		break;
	case 13: {
		uint8_t s = u8(in);

		if (s >= 0xf0) { /* a signal storm: 999 calls are survived, 1000 are not */
			H.storm = RETRY_MAX - 1 + (s & 1);
			H.storm_errno = s & 2 ? EAGAIN : EINTR;
		} else {
			H.attr_mask = pick_mask(in);
			H.attr_errno = attr_errnos[s % ARRAY_LEN(attr_errnos)];
		}
		break;
	}
	case 14: {
		uint8_t s = u8(in);

		H.punch_mask = pick_mask(in);
		H.punch_errno = punch_errnos[s % ARRAY_LEN(punch_errnos)];
		break;
	}
	case 15: {
		uint8_t s = u8(in);

		if (s & 0x80) {
			H.pool_free = s & 3;
		} else {
			H.alloc_mask = pick_mask(in);
			H.alloc_errno = alloc_errnos[s % ARRAY_LEN(alloc_errnos)];
		}
		break;
	}
	case 16:
		H.veto_armed = 1 + u8(in) % 3;
		break;
	case 17:
		op_replay();
		break;
	case 18:
		H.attr_mask = H.punch_mask = H.alloc_mask = 0;
		H.storm = 0;
		H.veto_armed = 0;
		break;
	default:
		op_query(pick_gpa(in));
		break;
	}
	end_op();
}

/* ---- one input ---- */

static int setup_input(struct rd *in)
{
	uint8_t c0 = u8(in), c1 = u8(in), c2 = u8(in);
	static const uint64_t granules[4] = { 0, PG, 1ULL << 30, 64 * 1024 };
	static const enum probe_kind probes[8] = { PROBE_OK,	PROBE_EINTR,  PROBE_EXTRA,
						   PROBE_NONE,	PROBE_ENOTTY, PROBE_EIO,
						   PROBE_EINTR, PROBE_OK };
	struct cvmconv_config cfg = { .sz = sizeof(cfg) };
	bool r2_private = c0 & 0x10;
	int ret, want;

	memset(&H, 0, sizeof(H));
	H.policy = (enum cvmconv_unaligned)((c0 & 3) % 3);
	H.granule = granules[(c0 >> 2) & 3];
	H.defer = c0 & 0x20;
	H.listener = (c0 >> 6) % 3;
	H.probe = (c1 & 0xe0) == 0xe0 ? probes[c2 & 7] : PROBE_OK;
	H.pool_free = (c2 >> 3) & 3;
	fake_kvm_init(&H.fake, FAKE_VM_SW_PROTECTED);

	cfg.vm_fd = vm_fd;
	cfg.granule = H.granule;
	cfg.unaligned = H.policy;
	cfg.log = c2 & 0x80 ? fz_log : NULL;
	cfg.flags = H.defer ? CVMCONV_DEFER_PUNCH : 0;
	ret = cvmconv_create(&cfg, &H.c);
	want = H.probe == PROBE_EIO				  ? -EIO
	       : H.probe == PROBE_NONE || H.probe == PROBE_ENOTTY ? -EOPNOTSUPP
								  : 0;
	CHECK(ret == want, "create with probe %d: %d", H.probe, ret);
	if (ret)
		return ret;
	if (!H.granule)
		H.granule = HPG;
	if (H.listener) {
		struct cvmconv_listener l = { sizeof(l), H.listener == 2 ? fz_before : NULL,
					      fz_after, NULL, 0 };

		CHECK(cvmconv_add_listener(H.c, &l) >= 0, "add_listener");
	}
	for (int i = 0; i < NREG; i++) {
		struct fz_region *r = &R[i];
		struct cvmconv_region reg = { .sz = sizeof(reg),
					      .gpa = r->gpa,
					      .size = r->npages * PG,
					      .private_fd = r->private_fd,
					      .shared_fd = r->shared_fd,
					      .shared_offset = r->shared_offset };

		r->kind = SH_FD;
		if (i == 1 && (c1 & 7) == 7)
			r->kind = c1 & 8 ? SH_HVA_PRIVATE : SH_HVA_SHARED;
		r->alloc_shared = r->kind == SH_FD && (c1 >> (4 + (i == 2))) & 1 && i != 1;
		/* R1: any policy; R2: the context's or REJECT */
		r->policy = i == 0   ? -1
			    : i == 1 ? (int)((c2 >> 5) & 3) - 1
				     : (int)(c1 >> 6 & 1) * 3 - 1;
		if (r->kind != SH_FD) {
			reg.shared_fd = -1;
			reg.shared_offset = 0;
			reg.shared_hva = r->kind == SH_HVA_SHARED ? hva_shared : hva_private;
		}
		reg.flags = (r->alloc_shared ? CVMCONV_REGION_ALLOC_SHARED : 0) |
			    (i == 2 && r2_private ? CVMCONV_REGION_PRIVATE : 0);
		reg.unaligned = r->policy;
		ret = cvmconv_add_region(H.c, &reg);
		CHECK(ret == 0, "add_region R%d: %d", i, ret);
		fake_kvm_bind_region(&H.fake, &reg);
	}
	/* live sides hold data; R2's shared huge pages are held where live */
	if (r2_private)
		bm_set(H.ref, R[2].first, R[2].first + R[2].npages, true);
	for (int w = 0; w < NW; w++) {
		uint64_t sh = regions_bm[w] & ~H.ref[w];

		H.alloc[1][w] = H.acct[1][w] = H.data[1][w] = H.ref[w];
		H.alloc[0][w] = H.acct[0][w] = sh & shared4k_bm[w];
		H.data[0][w] = sh;
	}
	for (unsigned h = 0; h < 3; h++)
		H.hp_alloc[h] = H.hp_acct[h] = R[2].huge && !r2_private;
	begin_op();
	end_op();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rd in = { data, size };

	if (setup_input(&in) == 0) {
		for (unsigned ops = 0; in.n && ops < MAX_OPS; ops++, n_ops++)
			run_op(&in);
		cvmconv_destroy(H.c);
	}
	fake_kvm_fini(&H.fake);
	n_inputs++;
	return 0;
}

/* ---- setup, once ---- */

static int make_memfd(const char *name, uint64_t size, unsigned flags)
{
	int fd = memfd_create(name, MFD_CLOEXEC | flags);

	if (fd >= 0 && ftruncate(fd, (off_t)size) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void smaps_entry(char **p, uintptr_t lo, uint64_t size, bool shared, unsigned kb,
			const char *path)
{
	size_t room = sizeof(smaps_text) - (size_t)(*p - smaps_text);
	int n = snprintf(
		*p, room,
		"%012lx-%012lx rw-%c 00000000 00:01 4242%27s%s\n"
		"Size:           %8llu kB\nKernelPageSize: %8u kB\nMMUPageSize:    %8u kB\n"
		"Rss:                   0 kB\nVmFlags: rd wr %smr mw me %ssd\n",
		(unsigned long)lo, (unsigned long)(lo + size), shared ? 's' : 'p', "", path,
		(unsigned long long)(size >> 10), kb, kb, shared ? "sh " : "", shared ? "" : "ac ");

	CHECK(n > 0 && (size_t)n < room, "smaps text too long");
	*p += n;
}

static void print_figures(void)
{
	fprintf(stderr, "fuzz_exits_fast: %llu inputs, %llu operations\n",
		(unsigned long long)n_inputs, (unsigned long long)n_ops);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* R0 [1G+2M-8K, 1G+4M+8K) holds one whole 2 MiB extent and 8 KiB on
	 * either side; R1 adjacent up to 1G+5M; a 1 MiB gap; R2 4.5 MiB whose
	 * hugetlb side starts 1 MiB into a 6 MiB file: huge page 0 and 2 lie
	 * partly outside the region, huge page 1 wholly inside. */
	const uint64_t npages[NREG] = { 516, 254, 1152 };

	(void)argc;
	(void)argv;
	atexit(print_figures);
	for (int i = 0; i < NREG; i++) {
		struct fz_region *r = &R[i];

		r->gpa = i ? R[i - 1].gpa + R[i - 1].npages * PG + (i == 2 ? HPG / 2 : 0)
			   : (1ULL << 30) + HPG - 2 * PG;
		r->npages = npages[i];
		r->private_fd = make_memfd("fz-private", r->npages * PG, 0);
		if (i == 2) {
			r->shared_fd = make_memfd("fz-huge", 3 * HPG, MFD_HUGETLB);
			r->huge = r->shared_fd >= 0;
			r->shared_offset = r->huge ? HPG / 2 : 0;
			if (!r->huge)
				fprintf(stderr, "fuzz_exits_fast: no MFD_HUGETLB: R2 on shmem\n");
		}
		if (!r->huge)
			r->shared_fd = make_memfd("fz-shared", r->npages * PG, 0);
		CHECK(r->private_fd >= 0 && r->shared_fd >= 0, "memfd: %s", strerror(errno));
	}
	/* R1's shared side as a mapping: of its memfd (MAP_SHARED: MADV_REMOVE)
	 * or anonymous (MAP_PRIVATE: MADV_DONTNEED); never touched */
	hva_shared =
		mmap(NULL, R[1].npages * PG, PROT_READ | PROT_WRITE, MAP_SHARED, R[1].shared_fd, 0);
	hva_private = mmap(NULL, R[1].npages * PG, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	{
		char *p = smaps_text, decoy[700];

		memset(decoy, 'x', sizeof(decoy) - 1);
		decoy[sizeof(decoy) - 1] = 0;
		memcpy(decoy, "/dev/hugepages/", 15);
		smaps_entry(&p, 0x10000, HPG, true, 2048, decoy);
		smaps_entry(&p, (uintptr_t)hva_shared, R[1].npages * PG, true, 4,
			    "/memfd:fz-shared (deleted)");
		smaps_entry(&p, (uintptr_t)hva_private, R[1].npages * PG, false, 4, "");
		smaps_len = (size_t)(p - smaps_text);
	}
	vm_fd = make_memfd("fz-vm", 0, 0);
	CHECK(hva_shared != MAP_FAILED && hva_private != MAP_FAILED && vm_fd >= 0, "setup: %s",
	      strerror(errno));
	win_lo = R[0].gpa - 16 * PG;
	win_pages = (R[2].gpa + R[2].npages * PG + 16 * PG - win_lo) / PG;
	CHECK(win_pages <= NW * 64, "window of %llu pages", (unsigned long long)win_pages);
	for (int i = 0; i < NREG; i++) {
		R[i].first = widx(R[i].gpa);
		bm_set(regions_bm, R[i].first, R[i].first + R[i].npages, true);
		if (!(i == 2 && R[i].huge))
			bm_set(shared4k_bm, R[i].first, R[i].first + R[i].npages, true);
	}
	return 0;
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
