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
 * table below, so a new kernel call or allocation cannot go untested.
 */
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

#ifndef CVMCONV_SOURCE_DIR
#error "CVMCONV_SOURCE_DIR must name the source tree (set by tests/CMakeLists.txt)"
#endif

#define BASE (4 * SZ_1G)
#define RSIZE (2 * SZ_2M) /* each region: two 2 MiB extents */
#define RPAGES (RSIZE / SZ_4K)
#define HC(err) ((uint64_t) - (int64_t)(err))

static const int errnos[] = { EINTR, EAGAIN, ENOMEM, EFAULT, EIO, EINVAL };
#define NERR (sizeof(errnos) / sizeof(errnos[0]))

/* ---- figures: faults injected per site and errno ---- */

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

static const char *const site_names[S_COUNT] = {
	"attr update, forward",	     "attr update, rollback",
	"attr update, add_region",   "punch 4 KiB (shmem)",
	"punch huge (hugetlb)",	     "punch in flush",
	"madvise (shared_hva)",	     "kvm.c ioctl",
	"kvm.c fallocate",	     "kvm.c madvise",
	"alloc shared (fallocate)",  "in-place update, forward",
	"in-place update, rollback", "malloc/calloc/realloc",
};

static uint64_t injected[S_COUNT][NERR];
static bool huge_skipped;

static unsigned err_index(int err)
{
	for (unsigned i = 0; i < NERR; i++)
		if (errnos[i] == err)
			return i;
	return 0;
}

/* ---- allocation wrappers ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);

static struct {
	bool armed;
	unsigned in_fake; /* inside the fake kernel: its own allocations */
	uint64_t count, fail_at;
	bool hit;
	long live; /* allocations minus frees through the wrappers */
} alloc;

static bool alloc_fails(void)
{
	if (!alloc.armed || alloc.in_fake)
		return false;
	if (++alloc.count != alloc.fail_at)
		return false;
	alloc.hit = true;
	injected[S_ALLOC][err_index(ENOMEM)]++;
	return true;
}

void *__wrap_malloc(size_t n)
{
	void *p = alloc_fails() ? NULL : __real_malloc(n);

	alloc.live += p != NULL;
	return p;
}

void *__wrap_calloc(size_t n, size_t size)
{
	void *p = alloc_fails() ? NULL : __real_calloc(n, size);

	alloc.live += p != NULL;
	return p;
}

void *__wrap_realloc(void *p, size_t n)
{
	void *q;

	if (alloc_fails())
		return NULL;
	q = __real_realloc(p, n);
	alloc.live += !p && q;
	return q;
}

void __wrap_free(void *p)
{
	alloc.live -= p != NULL;
	__real_free(p);
}

/* Fail the @n-th allocation (1-based) from now on. */
static void alloc_arm(uint64_t n)
{
	alloc.armed = true;
	alloc.count = 0;
	alloc.fail_at = n;
	alloc.hit = false;
}

static void alloc_disarm(void)
{
	alloc.armed = false;
}

/* ---- kernel call wrappers (the default ops of src/kvm.c) ---- */

int __real_ioctl(int fd, unsigned long req, ...);
int __real_fallocate(int fd, int mode, off_t off, off_t len);
int __real_madvise(void *addr, size_t len, int advice);
int __wrap_ioctl(int fd, unsigned long req, ...);
int __wrap_fallocate(int fd, int mode, off_t off, off_t len);
int __wrap_madvise(void *addr, size_t len, int advice);

/* Per kind: errnos for the next calls (0 = pass); with @repeat the last
 * entry repeats forever. */
struct sched {
	int err[8];
	unsigned n, pos;
	bool repeat;
	uint64_t calls;
};

enum kcall { K_PROBE, K_ATTR, K_FALLOCATE, K_MADVISE, K_GMEM, K_COUNT };

static struct {
	int vm_fd;		 /* the fd the wrapped ioctl serves as a KVM VM */
	struct fake_kvm *fake;	 /* its attribute state */
	struct fake_gmem *gmem;	 /* the guest_memfd the wrapped ioctl serves */
	struct sched s[K_COUNT]; /* only for calls on vm_fd / while armed */
	bool armed;		 /* fallocate/madvise injection on */
} kern = { .vm_fd = -2 };

static int sched_next(struct sched *s)
{
	s->calls++;
	if (s->pos < s->n)
		return s->err[s->pos++];
	if (s->repeat && s->n)
		return s->err[s->n - 1];
	return 0;
}

static void sched_set(struct sched *s, const int *errs, unsigned n, bool repeat)
{
	memset(s, 0, sizeof(*s));
	memcpy(s->err, errs, n * sizeof(int));
	s->n = n;
	s->repeat = repeat;
}

int __wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;
	int err, ret;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (kern.gmem && fd == kern.gmem->fd && req == KVM_SET_MEMORY_ATTRIBUTES2) {
		/* the in-place ioctl no kernel here has: the strict fake */
		err = sched_next(&kern.s[K_GMEM]);
		if (err) {
			errno = err;
			return -1;
		}
		alloc.in_fake++;
		ret = fake_gmem_ioctl(kern.gmem, arg);
		alloc.in_fake--;
		if (ret) {
			errno = -ret;
			return -1;
		}
		return 0;
	}
	if (fd != kern.vm_fd)
		return __real_ioctl(fd, req, arg);
	if (req == KVM_CHECK_EXTENSION) {
		err = sched_next(&kern.s[K_PROBE]);
		if (err) {
			errno = err;
			return -1;
		}
		if ((uintptr_t)arg == KVM_CAP_MEMORY_ATTRIBUTES)
			return (int)KVM_MEMORY_ATTRIBUTE_PRIVATE;
		if ((uintptr_t)arg == KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES && kern.gmem)
			return (int)KVM_MEMORY_ATTRIBUTE_PRIVATE;
		if ((uintptr_t)arg == KVM_CAP_MEMORY_ATTRIBUTES2_FLAGS && kern.gmem)
			return (int)kern.gmem->modes;
		return 0;
	}
	if (req == KVM_SET_MEMORY_ATTRIBUTES) {
		const struct kvm_memory_attributes *a = arg;

		assert_int_equal(a->flags, 0);
		err = sched_next(&kern.s[K_ATTR]);
		if (err) {
			errno = err;
			return -1;
		}
		alloc.in_fake++;
		ret = fake_kvm_ops.set_memory_attributes(kern.fake, a->address, a->size,
							 a->attributes);
		alloc.in_fake--;
		if (ret) {
			errno = -ret;
			return -1;
		}
		return 0;
	}
	errno = ENOTTY;
	return -1;
}

int __wrap_fallocate(int fd, int mode, off_t off, off_t len)
{
	int err;

	if (kern.fake && (mode & FALLOC_FL_PUNCH_HOLE) && off >= 0 && len > 0)
		fake_kvm_live_in_punch(kern.fake, fd, NULL, (uint64_t)off, (uint64_t)len);
	err = kern.armed ? sched_next(&kern.s[K_FALLOCATE]) : 0;

	if (err) {
		errno = err;
		return -1;
	}
	return __real_fallocate(fd, mode, off, len);
}

int __wrap_madvise(void *addr, size_t len, int advice)
{
	int err;

	if (kern.fake && (advice == MADV_REMOVE || advice == MADV_DONTNEED) && addr && len)
		fake_kvm_live_in_punch(kern.fake, -1, addr, 0, len);
	err = kern.armed ? sched_next(&kern.s[K_MADVISE]) : 0;

	if (err) {
		errno = err;
		return -1;
	}
	return __real_madvise(addr, len, advice);
}

/* ---- the world: a context, two adjacent regions, a model ---- */

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

static int w_attr(void *opaque, uint64_t gpa, uint64_t size, uint64_t attrs)
{
	struct world *w = opaque;
	int err = sched_next(&w->s[FAKE_CALL_ATTR]), ret;

	if (err)
		return -err;
	alloc.in_fake++;
	ret = fake_kvm_ops.set_memory_attributes(&w->fake, gpa, size, attrs);
	alloc.in_fake--;
	return ret;
}

static int w_punch(void *opaque, int fd, uint64_t off, uint64_t len)
{
	struct world *w = opaque;
	int err;

	/* the oracle sees every attempt, also those made to fail */
	fake_kvm_live_in_punch(&w->fake, fd, NULL, off, len);
	err = sched_next(&w->s[FAKE_CALL_PUNCH]);
	return err ? -err : fake_kvm_ops.punch(&w->fake, fd, off, len);
}

static int w_discard(void *opaque, void *hva, uint64_t len)
{
	struct world *w = opaque;
	int err;

	fake_kvm_live_in_punch(&w->fake, -1, hva, 0, len);
	err = sched_next(&w->s[FAKE_CALL_DISCARD]);
	return err ? -err : fake_kvm_ops.discard_hva(&w->fake, hva, len);
}

static int w_gmem(void *opaque, int fd, uint64_t offset, uint64_t size, uint64_t attrs,
		  uint64_t flags, uint64_t *error_offset)
{
	struct world *w = opaque;
	int err = sched_next(&w->s[FAKE_CALL_GMEM]), ret;

	if (err) {
		if (err == EAGAIN)
			*error_offset = offset; /* the first page, as the kernel would */
		return -err;
	}
	alloc.in_fake++;
	ret = fake_kvm_ops.set_gmem_attributes(&w->fake, fd, offset, size, attrs, flags,
					       error_offset);
	alloc.in_fake--;
	return ret;
}

static const struct cvmconv_ops w_ops = { w_attr, w_punch, w_discard, w_gmem };

static int l_before(void *opaque, uint64_t gpa, uint64_t size, bool to_private)
{
	struct world *w = opaque;

	(void)gpa;
	(void)size;
	(void)to_private;
	w->befores++;
	return 0;
}

static void l_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	struct world *w = opaque;

	(void)gpa;
	(void)size;
	(void)to_private;
	if (result == 0)
		w->afters_ok++;
	else
		w->afters_cancel++;
}

static uint8_t *side_map(struct wregion *r, bool private_side)
{
	return private_side ? r->private_map : r->shared_map;
}

/* Pattern of page @p on a side: fixture pattern, seed = region, side. */
static uint32_t seed_of(unsigned ri, bool private_side)
{
	return 0x100 + ri * 2 + private_side;
}

static void write_live(struct world *w, unsigned ri, uint64_t p)
{
	struct wregion *r = &w->r[ri];
	bool priv = r->priv[p];

	pattern_fill(side_map(r, priv), p, 1, seed_of(ri, priv));
	r->written[priv][p] = true;
}

static int memfd_of(uint64_t size, bool huge)
{
	int fd = memfd_create("fi", MFD_CLOEXEC | (huge ? MFD_HUGETLB : 0));

	if (fd >= 0 && ftruncate(fd, (off_t)size) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void *map_whole(int fd, uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

/* The context (fake ops with injection, or the default kernel ops through
 * the wrapped libc calls) with a listener. */
static void world_ctx(struct world *w, bool default_ops)
{
	struct cvmconv_config cfg;
	struct cvmconv_listener l = { sizeof(l), l_before, l_after, NULL, 0 };

	fake_kvm_init(&w->fake, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&w->fake, CVMCONV_UNALIGNED_ALLOW);
	w->default_ops = default_ops;
	if (default_ops) {
		cfg.ops = NULL;
		cfg.ops_opaque = NULL;
		cfg.vm_fd = kern.vm_fd;
		kern.fake = &w->fake;
	} else {
		cfg.ops = &w_ops;
		cfg.ops_opaque = w;
	}
	assert_int_equal(cvmconv_create(&cfg, &w->c), 0);
	l.opaque = w;
	assert_true(cvmconv_add_listener(w->c, &l) >= 0);
}

/* Region @ri at BASE + ri * RSIZE; the guest wrote every page (shared). */
/* CVMCONV_REGION_* flags of the regions world_region() adds (reset by
 * world_get()). */
static uint32_t next_region_flags;

static void world_region(struct world *w, enum backing kind)
{
	unsigned ri = w->nreg;
	struct wregion *r = &w->r[ri];
	struct cvmconv_region reg = { .sz = sizeof(reg),
				      .unaligned = -1,
				      .flags = next_region_flags };

	memset(r, 0, sizeof(*r));
	r->gpa = BASE + ri * RSIZE;
	r->kind = kind;
	r->shared_size = RSIZE;
	if (kind == B_INPLACE) {
		assert_int_equal(fake_gmem_init(&r->gmem, RSIZE,
						CVMCONV_CONTENT_ZERO | CVMCONV_CONTENT_PRESERVE),
				 0);
		fake_kvm_attach_gmem(&w->fake, &r->gmem);
		if (w->default_ops)
			kern.gmem = &r->gmem;
		r->shared_fd = -1;
		r->private_fd = r->gmem.fd;
		r->shared_map = r->private_map = r->gmem.map;
		reg.flags |= CVMCONV_REGION_INPLACE;
		reg.content_mode = CVMCONV_CONTENT_PRESERVE;
		reg.gpa = r->gpa;
		reg.size = RSIZE;
		reg.private_fd = r->private_fd;
		reg.shared_fd = -1;
		reg.shared_hva = r->shared_map;
		assert_int_equal(fake_kvm_add_region(&w->fake, w->c, &reg), 0);
		w->nreg++;
		for (uint64_t p = 0; p < RPAGES; p++)
			write_live(w, ri, p);
		return;
	}
	if (kind == B_ANON) {
		r->shared_fd = -1;
		r->shared_map = mmap(NULL, RSIZE, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		assert_true(r->shared_map != MAP_FAILED);
	} else {
		r->shared_fd = memfd_of(RSIZE, kind == B_HUGE);
		assert_true(r->shared_fd >= 0);
		r->shared_map = map_whole(r->shared_fd, RSIZE);
	}
	r->private_fd = test_private_fd(RSIZE); /* guest_memfd where the host has it */
	assert_true(r->private_fd >= 0);
	r->private_map = map_whole(r->private_fd, RSIZE);
	reg.gpa = r->gpa;
	reg.size = RSIZE;
	reg.private_fd = r->private_fd;
	reg.shared_fd = kind == B_HVA ? -1 : r->shared_fd;
	reg.shared_hva = kind == B_HVA || kind == B_ANON ? r->shared_map : NULL;
	assert_int_equal(fake_kvm_add_region(&w->fake, w->c, &reg), 0);
	w->nreg++;
	for (uint64_t p = 0; p < RPAGES; p++)
		write_live(w, ri, p);
}

/* Worlds live in a static pool, not on a test's stack: a failed assertion
 * leaves the test with longjmp, and the per-test teardown then frees what
 * it left behind. */
#define NWORLDS 4
static struct world worlds[NWORLDS];
static bool world_used[NWORLDS];

static struct world *world_get(void)
{
	for (unsigned i = 0; i < NWORLDS; i++)
		if (!world_used[i]) {
			world_used[i] = true;
			memset(&worlds[i], 0, sizeof(worlds[i]));
			next_region_flags = 0;
			return &worlds[i];
		}
	fail_msg("out of worlds");
	return NULL;
}

static void world_free(struct world *w)
{
	cvmconv_destroy(w->c);
	for (unsigned i = 0; i < w->nreg; i++) {
		if (w->r[i].kind == B_INPLACE) {
			if (kern.gmem == &w->r[i].gmem)
				kern.gmem = NULL;
			fake_gmem_fini(&w->r[i].gmem);
			continue;
		}
		munmap(w->r[i].shared_map, w->r[i].shared_size);
		munmap(w->r[i].private_map, RSIZE);
		if (w->r[i].shared_fd >= 0)
			close(w->r[i].shared_fd);
		close(w->r[i].private_fd);
	}
	fake_kvm_fini(&w->fake);
	if (w->reserved)
		hugepages_release();
	memset(w, 0, sizeof(*w));
	world_used[w - worlds] = false;
}

static int teardown_worlds(void **state)
{
	(void)state;
	alloc_disarm();
	memset(kern.s, 0, sizeof(kern.s));
	kern.armed = false;
	for (unsigned i = 0; i < NWORLDS; i++)
		if (world_used[i])
			world_free(&worlds[i]);
	return 0;
}

static struct cvmconv_stats stats(struct world *w)
{
	struct cvmconv_stats st;

	memset(&st, 0, sizeof(st));
	st.sz = sizeof(st);
	assert_int_equal(cvmconv_get_stats(w->c, &st), 0);
	return st;
}

static void model_set(struct world *w, uint64_t gpa, uint64_t size, bool private_)
{
	for (uint64_t a = gpa; a < gpa + size; a += SZ_4K) {
		unsigned ri = (unsigned)((a - BASE) / RSIZE);
		uint64_t p = (a - w->r[ri].gpa) / SZ_4K;

		/* a side that becomes live holds nothing of the guest's yet */
		if (w->r[ri].priv[p] != private_)
			w->r[ri].written[private_][p] = false;
		w->r[ri].priv[p] = private_;
	}
}

/* After a successful conversion: the guest writes the pages it now owns
 * on their new live side. */
static void write_converted(struct world *w, uint64_t gpa, uint64_t size)
{
	for (uint64_t a = gpa; a < gpa + size; a += SZ_4K) {
		unsigned ri = (unsigned)((a - BASE) / RSIZE);

		write_live(w, ri, (a - w->r[ri].gpa) / SZ_4K);
	}
}

/* Library == fake kernel == model; the live side of every page holds its
 * pattern. */
static void check_world(struct world *w)
{
	for (unsigned ri = 0; ri < w->nreg; ri++) {
		struct wregion *r = &w->r[ri];

		for (uint64_t p = 0; p < RPAGES; p++) {
			uint64_t gpa = r->gpa + p * SZ_4K;
			bool priv = r->priv[p];

			if (cvmconv_is_private(w->c, gpa) != priv ||
			    fake_kvm_is_private(&w->fake, gpa) != priv)
				fail_msg("R%u page %llu: library %d fake %d model %d", ri,
					 (unsigned long long)p, cvmconv_is_private(w->c, gpa),
					 fake_kvm_is_private(&w->fake, gpa), priv);
			if (r->written[priv][p] &&
			    !pattern_check(side_map(r, priv), p, seed_of(ri, priv)))
				fail_msg("R%u page %llu: live %s side lost its data", ri,
					 (unsigned long long)p, priv ? "private" : "shared");
		}
	}
}

/* Resident pages of an anonymous mapping (mincore): what it holds. */
static uint64_t resident_bytes(void *map, uint64_t size)
{
	unsigned char vec[RPAGES];
	uint64_t n = 0;

	assert_int_equal(mincore(map, size, vec), 0);
	for (uint64_t i = 0; i < size / SZ_4K; i++)
		n += vec[i] & 1;
	return n * SZ_4K;
}

/* Kernel allocation of the 4 KiB sides == their live pages (+ @extra). */
static void check_allocation(struct world *w, uint64_t extra)
{
	uint64_t want = 0, got = 0;

	for (unsigned ri = 0; ri < w->nreg; ri++) {
		struct wregion *r = &w->r[ri];

		/* every live page was written; a hugetlb side is checked by
		 * test_punch_huge in whole huge pages */
		for (uint64_t p = 0; p < RPAGES; p++)
			want += r->priv[p] || r->kind != B_HUGE ? SZ_4K : 0;
		got += fd_allocated_bytes(r->private_fd);
		if (r->kind == B_INPLACE)
			continue; /* one file: every page once */
		if (r->kind == B_ANON)
			got += resident_bytes(r->shared_map, RSIZE);
		else if (r->kind != B_HUGE)
			got += fd_allocated_bytes(r->shared_fd);
	}
	assert_int_equal(got, want + extra);
}

/* cvmconv_flush() recovers: 0, nothing pending, allocation == live. */
static void check_flush_recovers(struct world *w)
{
	struct cvmconv_stats st;

	assert_int_equal(cvmconv_flush(w->c), 0);
	st = stats(w);
	assert_int_equal(st.punch_pending_bytes, 0);
	check_allocation(w, 0);
	check_world(w);
}

/* ---- requests through each entry point ---- */

enum entry { E_MAP, E_RUN, E_FAULT, E_CONVERT, E_BATCH_GUEST, E_BATCH_HOST, E_COUNT };

/* Ask for [gpa, gpa + size) to become @to_private through @e. Returns the
 * VMM's return value (handle_exit's 1 mapped to 0); *hc the guest's code
 * (0 where the entry has none). */
static int request(struct world *w, enum entry e, uint64_t gpa, uint64_t size, bool to_private,
		   uint64_t *hc)
{
	struct kvm_run run;
	struct cvmconv_range rg[2];
	int ret;

	*hc = 0;
	switch (e) {
	case E_MAP:
		*hc = 0xdead;
		return cvmconv_map_gpa_range(w->c, gpa, size / SZ_4K,
					     to_private ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0, hc);
	case E_RUN:
		memset(&run, 0, sizeof(run));
		run.exit_reason = KVM_EXIT_HYPERCALL;
		run.hypercall.nr = KVM_HC_MAP_GPA_RANGE;
		run.hypercall.args[0] = gpa;
		run.hypercall.args[1] = size / SZ_4K;
		run.hypercall.args[2] = to_private ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0;
		run.hypercall.ret = 0xdead;
		ret = cvmconv_handle_exit(w->c, &run);
		*hc = run.hypercall.ret;
		return ret == 1 ? 0 : ret;
	case E_FAULT: {
		struct cvmconv_kvm_memory_fault *mf;

		memset(&run, 0, sizeof(run));
		run.exit_reason = KVM_EXIT_MEMORY_FAULT;
		mf = cvmconv_run_memory_fault(&run);
		mf->gpa = gpa;
		mf->size = size;
		mf->flags = to_private ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0;
		ret = cvmconv_handle_exit(w->c, &run);
		return ret == 1 ? 0 : ret;
	}
	case E_CONVERT:
		return cvmconv_convert(w->c, gpa, size, to_private);
	case E_BATCH_GUEST:
	case E_BATCH_HOST:
		/* two adjacent halves: the batch merges them */
		rg[0] = (struct cvmconv_range){ gpa, size / 2, to_private, 0 };
		rg[1] = (struct cvmconv_range){ gpa + size / 2, size - size / 2, to_private, 0 };
		if (e == E_BATCH_GUEST)
			*hc = 0xdead;
		return cvmconv_convert_batch(w->c, rg, size >= 2 * SZ_4K ? 2 : 1,
					     e == E_BATCH_GUEST ? CVMCONV_BATCH_GUEST : 0,
					     e == E_BATCH_GUEST ? hc : NULL);
	default:
		fail();
	}
	return 0;
}

static bool entry_has_hc(enum entry e)
{
	return e == E_MAP || e == E_RUN || e == E_BATCH_GUEST;
}

/* ---- attribute update: forward failure ---- */

/* A request over both regions with three runs to change (two pages made
 * private beforehand split it); the update of run @k (0-based) fails. */
static void attr_forward_case(enum entry e, int err, unsigned k)
{
	struct world *w = world_get();
	const uint64_t gpa = BASE + SZ_2M, size = RSIZE; /* spans R0 and R1 */
	struct cvmconv_stats before, after;
	uint64_t hc, calls;
	int ret;

	world_ctx(w, false);
	world_region(w, B_SHMEM);
	world_region(w, B_SHMEM);
	assert_int_equal(cvmconv_convert(w->c, BASE + SZ_2M + 100 * SZ_4K, SZ_4K, true), 0);
	assert_int_equal(cvmconv_convert(w->c, BASE + RSIZE + 7 * SZ_4K, SZ_4K, true), 0);
	model_set(w, BASE + SZ_2M + 100 * SZ_4K, SZ_4K, true);
	model_set(w, BASE + RSIZE + 7 * SZ_4K, SZ_4K, true);
	write_converted(w, BASE + SZ_2M + 100 * SZ_4K, SZ_4K);
	write_converted(w, BASE + RSIZE + 7 * SZ_4K, SZ_4K);
	check_world(w);

	before = stats(w);
	calls = w->fake.calls[FAKE_CALL_ATTR];
	w->befores = w->afters_ok = w->afters_cancel = 0;
	int errs[4] = { 0, 0, 0, 0 };
	errs[k] = err;
	sched_set(&w->s[FAKE_CALL_ATTR], errs, k + 1, false);
	ret = request(w, e, gpa, size, true, &hc);
	injected[S_ATTR_FWD][err_index(err)]++;

	/* the VMM gets the update's error; a guest would get -KVM_EFAULT */
	assert_int_equal(ret, -err);
	if (entry_has_hc(e))
		assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
	/* the k runs applied were set back, in order: k more updates */
	assert_int_equal(w->fake.calls[FAKE_CALL_ATTR] - calls, 2 * k);
	after = stats(w);
	assert_int_equal(after.attr_updates - before.attr_updates, 2 * k + 1);
	assert_int_equal(after.punches, before.punches);
	assert_int_equal(after.broken, 0);
	assert_int_equal(after.to_private_bytes, before.to_private_bytes);
	/* every before() heard after(-ECANCELED) */
	assert_int_equal(w->befores, 3);
	assert_int_equal(w->afters_cancel, 3);
	assert_int_equal(w->afters_ok, 0);
	check_world(w);
	check_flush_recovers(w);

	/* the same request succeeds afterwards */
	ret = request(w, e, gpa, size, true, &hc);
	assert_int_equal(ret, 0);
	assert_int_equal(hc, 0);
	model_set(w, gpa, size, true);
	write_converted(w, gpa, size);
	check_world(w);
	check_allocation(w, 0);
	world_free(w);
}

static void test_attr_forward(void **state)
{
	(void)state;
	/* every errno on the first, second and third run through
	 * map_gpa_range; every other entry point with each errno once (the
	 * transaction is shared: what differs is how the error is reported) */
	for (unsigned i = 0; i < NERR; i++)
		for (unsigned k = 0; k < 3; k++)
			attr_forward_case(E_MAP, errnos[i], k);
	for (unsigned e = 1; e < E_COUNT; e++)
		for (unsigned i = 0; i < NERR; i++)
			attr_forward_case((enum entry)e, errnos[i], (e + i) % 3);
}

/* ---- attribute update: the rollback fails too ---- */

static void attr_rollback_case(enum entry e, int fwd_err, int back_err)
{
	struct world *w = world_get();
	const uint64_t gpa = BASE + SZ_2M, size = RSIZE;
	struct kvm_run run;
	struct cvmconv_region reg = { .sz = sizeof(reg),
				      .gpa = BASE + 8 * RSIZE,
				      .size = RSIZE,
				      .private_fd = -1,
				      .shared_fd = -1,
				      .unaligned = -1 };
	struct cvmconv_range rg = { BASE, SZ_4K, 1, 0 };
	struct cvmconv_stats st;
	uint64_t hc, calls, punches;
	int ret;

	world_ctx(w, false);
	world_region(w, B_SHMEM);
	world_region(w, B_SHMEM);
	assert_int_equal(cvmconv_convert(w->c, BASE + SZ_2M + 100 * SZ_4K, SZ_4K, true), 0);
	model_set(w, BASE + SZ_2M + 100 * SZ_4K, SZ_4K, true);
	write_converted(w, BASE + SZ_2M + 100 * SZ_4K, SZ_4K);
	punches = stats(w).punches;

	/* run 0 applied, run 1 fails with fwd_err, the rollback of run 0
	 * fails with back_err */
	int errs[3] = { 0, fwd_err, back_err };
	sched_set(&w->s[FAKE_CALL_ATTR], errs, 3, false);
	ret = request(w, e, gpa, size, true, &hc);
	injected[S_ATTR_FWD][err_index(fwd_err)]++;
	injected[S_ATTR_ROLLBACK][err_index(back_err)]++;
	assert_int_equal(ret, -ENOTRECOVERABLE);
	if (entry_has_hc(e))
		assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
	st = stats(w);
	assert_int_equal(st.broken, 1);
	assert_int_equal(st.punches, punches); /* nothing freed */

	/* broken: every later call is refused, no kernel call is made */
	calls = w->fake.calls[FAKE_CALL_ATTR];
	for (unsigned e2 = 0; e2 < E_COUNT; e2++) {
		assert_int_equal(request(w, (enum entry)e2, BASE, SZ_4K, true, &hc),
				 -ENOTRECOVERABLE);
		if (entry_has_hc((enum entry)e2))
			assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
	}
	assert_int_equal(cvmconv_flush(w->c), -ENOTRECOVERABLE);
	assert_int_equal(cvmconv_add_region(w->c, &reg), -ENOTRECOVERABLE);
	assert_int_equal(cvmconv_convert_batch(w->c, &rg, 1, 0, NULL), -ENOTRECOVERABLE);
	memset(&run, 0, sizeof(run));
	run.exit_reason = KVM_EXIT_HYPERCALL;
	run.hypercall.nr = KVM_HC_MAP_GPA_RANGE;
	run.hypercall.args[0] = BASE;
	run.hypercall.args[1] = 1;
	assert_int_equal(cvmconv_handle_exit(w->c, &run), -ENOTRECOVERABLE);
	assert_int_equal(run.hypercall.ret, HC(CVMCONV_KVM_EFAULT));
	assert_int_equal(w->fake.calls[FAKE_CALL_ATTR], calls);
	assert_int_equal(w->fake.calls[FAKE_CALL_PUNCH], 1); /* the setup conversion's */
	/* the library still answers with what it last knew; the data is safe */
	for (unsigned ri = 0; ri < 2; ri++)
		for (uint64_t p = 0; p < RPAGES; p++) {
			bool priv = w->r[ri].priv[p];

			assert_int_equal(cvmconv_is_private(w->c, w->r[ri].gpa + p * SZ_4K), priv);
			assert_true(pattern_check(side_map(&w->r[ri], priv), p, seed_of(ri, priv)));
		}
	world_free(w);
}

static void test_attr_rollback(void **state)
{
	(void)state;
	/* every (forward, rollback) errno pair through map_gpa_range; every
	 * entry point with a pair of its own */
	for (unsigned i = 0; i < NERR; i++)
		for (unsigned j = 0; j < NERR; j++)
			attr_rollback_case(E_MAP, errnos[i], errnos[j]);
	for (unsigned e = 0; e < E_COUNT; e++)
		attr_rollback_case((enum entry)e, errnos[e % NERR], errnos[(e + 3) % NERR]);
}

/* ---- attribute update at add_region(CVMCONV_REGION_PRIVATE) ---- */

static void test_attr_add_region_private(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++) {
		struct world *w = world_get();
		int fd = memfd_of(RSIZE, false);
		struct cvmconv_region reg = { .sz = sizeof(reg),
					      .gpa = BASE,
					      .size = RSIZE,
					      .private_fd = fd,
					      .shared_fd = -1,
					      .flags = CVMCONV_REGION_PRIVATE,
					      .unaligned = -1 };

		assert_true(fd >= 0);
		world_ctx(w, false);
		sched_set(&w->s[FAKE_CALL_ATTR], &errnos[i], 1, false);
		assert_int_equal(cvmconv_add_region(w->c, &reg), -errnos[i]);
		injected[S_ATTR_ADD][i]++;
		assert_int_equal(cvmconv_is_private(w->c, BASE), -ENOENT);
		assert_int_equal(fake_kvm_is_private(&w->fake, BASE), 0);
		assert_int_equal(w->fake.npriv, 0);
		assert_int_equal(stats(w).guest_bytes, 0);
		/* nothing half-registered: the same region can be added now */
		assert_int_equal(cvmconv_add_region(w->c, &reg), 0);
		assert_int_equal(cvmconv_is_private(w->c, BASE + RSIZE - SZ_4K), 1);
		assert_int_equal(fake_kvm_mismatches(&w->fake, w->c, BASE, RSIZE), 0);
		close(fd);
		world_free(w);
	}
}

/* ---- punch of a 4 KiB backing, and of a shared side given as an hva ---- */

static void punch_case(enum backing kind, int err, bool to_private, bool fail_flush)
{
	struct world *w = world_get();
	enum fake_call call = kind == B_HVA && to_private ? FAKE_CALL_DISCARD : FAKE_CALL_PUNCH;
	const uint64_t gpa = BASE + 40 * SZ_4K, size = 24 * SZ_4K;
	struct cvmconv_stats st;
	uint64_t hc;

	world_ctx(w, false);
	world_region(w, kind);
	if (!to_private) {
		/* start from private pages holding the guest's data */
		assert_int_equal(cvmconv_convert(w->c, gpa, size, true), 0);
		model_set(w, gpa, size, true);
		write_converted(w, gpa, size);
	}
	check_allocation(w, 0);

	sched_set(&w->s[call], &err, 1, false);
	assert_int_equal(request(w, E_MAP, gpa, size, to_private, &hc), 0);
	injected[kind == B_HVA && to_private ? S_DISCARD : S_PUNCH_4K][err_index(err)]++;
	/* a failed punch does not undo the conversion: the guest gets 0 */
	assert_int_equal(hc, 0);
	model_set(w, gpa, size, to_private);
	check_world(w);
	st = stats(w);
	assert_int_equal(st.punch_failures, 1);
	assert_int_equal(st.punch_pending_bytes, size);
	assert_int_equal(st.double_alloc_bytes, size);
	/* the stale side is still allocated (it still holds the old data) */
	write_converted(w, gpa, size);
	check_allocation(w, size);

	if (fail_flush) {
		sched_set(&w->s[call], &err, 1, false);
		assert_int_equal(cvmconv_flush(w->c), -err);
		injected[S_PUNCH_FLUSH][err_index(err)]++;
		st = stats(w);
		assert_int_equal(st.punch_pending_bytes, size);
		assert_int_equal(st.punch_failures, 2);
		check_allocation(w, size);
		check_world(w);
	}
	check_flush_recovers(w);
	assert_int_equal(stats(w).double_alloc_bytes, 0);
	world_free(w);
}

static void test_punch_shmem(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++) {
		punch_case(B_SHMEM, errnos[i], true, false);
		punch_case(B_SHMEM, errnos[i], false, false);
	}
}

static void test_discard_hva(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++)
		punch_case(B_HVA, errnos[i], true, false);
}

static void test_flush_failure(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++) {
		punch_case(B_SHMEM, errnos[i], true, true);
		punch_case(B_HVA, errnos[i], true, true);
	}
}

/* A page whose punch failed becomes live again before the flush: the flush
 * must not punch it (the guest's new data on it survives). */
static void test_punch_pending_page_live_again(void **state)
{
	struct world *w = world_get();
	const uint64_t gpa = BASE + 8 * SZ_4K, size = 8 * SZ_4K;
	uint64_t hc;
	int err = EIO;

	(void)state;
	world_ctx(w, false);
	world_region(w, B_SHMEM);
	sched_set(&w->s[FAKE_CALL_PUNCH], &err, 1, false);
	assert_int_equal(request(w, E_MAP, gpa, size, true, &hc), 0);
	injected[S_PUNCH_4K][err_index(err)]++;
	model_set(w, gpa, size, true);
	write_converted(w, gpa, size);
	/* half of it back to shared: the shared side was never punched, the
	 * guest writes new data there */
	assert_int_equal(request(w, E_MAP, gpa, size / 2, false, &hc), 0);
	model_set(w, gpa, size / 2, false);
	write_converted(w, gpa, size / 2);
	assert_int_equal(stats(w).punch_pending_bytes, size / 2);
	check_flush_recovers(w);
	world_free(w);
}

/* ---- punch of huge pages (MFD_HUGETLB shared side) ---- */

static void test_punch_huge(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++) {
		struct world *w = world_get();
		const char *why = NULL;
		struct cvmconv_stats st;
		uint64_t hc;
		long free0;
		int err = errnos[i], rr;

		rr = hugepages_reserve(RSIZE / SZ_2M + 2, &why);
		if (rr) {
			huge_skipped = true;
			FIXTURE_SKIP("cannot reserve %llu 2 MiB huge pages: %s (%s)",
				     (unsigned long long)(RSIZE / SZ_2M + 2), why ? why : "?",
				     strerror(-rr));
		}
		w->reserved = true;
		world_ctx(w, false);
		world_region(w, B_HUGE); /* both huge pages allocated and written */
		assert_int_equal(fd_allocated_bytes(w->r[0].shared_fd), RSIZE);
		free0 = hugepages_free();

		/* the first huge page turns private: its punch fails */
		sched_set(&w->s[FAKE_CALL_PUNCH], &err, 1, false);
		assert_int_equal(request(w, E_MAP, BASE, SZ_2M, true, &hc), 0);
		injected[S_PUNCH_HUGE][i]++;
		assert_int_equal(hc, 0);
		model_set(w, BASE, SZ_2M, true);
		write_converted(w, BASE, SZ_2M);
		check_world(w);
		st = stats(w);
		assert_int_equal(st.punch_failures, 1);
		assert_int_equal(st.punch_pending_bytes, SZ_2M);
		assert_int_equal(st.double_alloc_bytes, SZ_2M);
		assert_int_equal(fd_allocated_bytes(w->r[0].shared_fd), RSIZE);
		assert_int_equal(hugepages_free(), free0);

		/* a flush needs no memory: with every allocation failing it
		 * still tries, and a failure keeps the page */
		if (i == 0) {
			long live0 = alloc.live;

			sched_set(&w->s[FAKE_CALL_PUNCH], &err, 1, false);
			alloc_arm(1);
			assert_int_equal(cvmconv_flush(w->c), -err);
			alloc_disarm();
			assert_false(alloc.hit);
			assert_int_equal(alloc.live, live0);
			assert_int_equal(stats(w).punch_pending_bytes, SZ_2M);
			assert_int_equal(fd_allocated_bytes(w->r[0].shared_fd), RSIZE);
		}
		/* a failing flush keeps it; a good one frees exactly that page */
		sched_set(&w->s[FAKE_CALL_PUNCH], &err, 1, false);
		assert_int_equal(cvmconv_flush(w->c), -err);
		injected[S_PUNCH_FLUSH][i]++;
		assert_int_equal(stats(w).punch_pending_bytes, SZ_2M);
		assert_int_equal(cvmconv_flush(w->c), 0);
		st = stats(w);
		assert_int_equal(st.punch_pending_bytes, 0);
		assert_int_equal(st.double_alloc_bytes, 0);
		assert_int_equal(fd_allocated_bytes(w->r[0].shared_fd), SZ_2M);
		assert_int_equal(hugepages_free(), free0 + 1);
		check_world(w); /* the second huge page kept every byte */
		world_free(w);
	}
}

/* ---- the default kernel ops (src/kvm.c) through the wrapped libc ---- */

static int dummy_vm_fd(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	kern.vm_fd = fd;
	memset(kern.s, 0, sizeof(kern.s));
	kern.armed = false;
	return fd;
}

static void test_default_ops_probe(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++) {
		struct fake_kvm f;
		struct cvmconv_config cfg;
		struct cvmconv *c = NULL;
		int fd = dummy_vm_fd(), err = errnos[i], want;

		fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
		cfg = fake_kvm_config(&f, CVMCONV_UNALIGNED_ALLOW);
		cfg.ops = NULL;
		cfg.vm_fd = fd;
		/* one failure: EINTR is retried, ENOTTY/EINVAL mean "no KVM" */
		sched_set(&kern.s[K_PROBE], &err, 1, false);
		want = err == EINTR ? 0 : err == EINVAL ? -EOPNOTSUPP : -err;
		assert_int_equal(cvmconv_create(&cfg, &c), want);
		injected[S_KVM_IOCTL][i]++;
		if (!want)
			assert_int_equal(kern.s[K_PROBE].calls, 2);
		cvmconv_destroy(c);
		/* persistent EINTR gives up (bounded) */
		if (err == EINTR) {
			c = NULL;
			sched_set(&kern.s[K_PROBE], &err, 1, true);
			assert_int_equal(cvmconv_create(&cfg, &c), -EINTR);
			assert_null(c);
			assert_true(kern.s[K_PROBE].calls > 1 && kern.s[K_PROBE].calls <= 100000);
		}
		fake_kvm_fini(&f);
		close(fd);
		kern.vm_fd = -2;
	}
}

static void test_default_ops_attr(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++) {
		for (int persistent = 0; persistent < 2; persistent++) {
			struct world *w = world_get();
			int fd = dummy_vm_fd(), err = errnos[i];
			bool retried = err == EINTR || err == EAGAIN;
			uint64_t hc;
			int ret;

			world_ctx(w, true);
			world_region(w, B_SHMEM);
			sched_set(&kern.s[K_ATTR], &err, 1, persistent);
			ret = request(w, E_MAP, BASE, SZ_2M, true, &hc);
			injected[S_KVM_IOCTL][i]++;
			if (retried && !persistent) {
				/* absorbed by the retry loop of kvm_set_memory_attributes */
				assert_int_equal(ret, 0);
				assert_int_equal(hc, 0);
				assert_int_equal(kern.s[K_ATTR].calls, 2);
				model_set(w, BASE, SZ_2M, true);
				write_converted(w, BASE, SZ_2M);
			} else {
				assert_int_equal(ret, -err);
				assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
				if (retried) /* bounded */
					assert_true(kern.s[K_ATTR].calls > 1 &&
						    kern.s[K_ATTR].calls <= 100000);
				else
					assert_int_equal(kern.s[K_ATTR].calls, 1);
			}
			memset(&kern.s[K_ATTR], 0, sizeof(kern.s[K_ATTR]));
			check_world(w);
			check_flush_recovers(w);
			world_free(w);
			close(fd);
			kern.vm_fd = -2;
		}
	}
}

static void default_ops_release_case(enum backing kind, int err, bool persistent)
{
	struct world *w = world_get();
	int fd = dummy_vm_fd();
	bool by_address = kind == B_HVA || kind == B_ANON;
	enum kcall k = by_address ? K_MADVISE : K_FALLOCATE;
	bool retried = !by_address && err == EINTR && !persistent;
	const uint64_t gpa = BASE + 4 * SZ_4K, size = 4 * SZ_4K;
	uint64_t hc;

	world_ctx(w, true);
	world_region(w, kind);
	sched_set(&kern.s[k], &err, 1, persistent);
	kern.armed = true;
	assert_int_equal(request(w, E_MAP, gpa, size, true, &hc), 0);
	kern.armed = false;
	injected[by_address ? S_KVM_MADVISE : S_KVM_FALLOCATE][err_index(err)]++;
	assert_int_equal(hc, 0);
	model_set(w, gpa, size, true);
	write_converted(w, gpa, size);
	check_world(w);
	if (retried) {
		/* kvm_punch retries EINTR: nothing pending */
		assert_int_equal(stats(w).punch_pending_bytes, 0);
		check_allocation(w, 0);
	} else {
		if (stats(w).punch_pending_bytes != size)
			fail_msg("%s failed with %s%s, yet %llu of %llu stale bytes are counted "
				 "pending (kernel still holds %llu bytes of them)",
				 kind == B_HVA	  ? "madvise(MADV_REMOVE)"
				 : kind == B_ANON ? "madvise(MADV_DONTNEED)"
						  : "fallocate(PUNCH_HOLE)",
				 strerrorname_np(err), persistent ? " (always)" : " (once)",
				 (unsigned long long)stats(w).punch_pending_bytes,
				 (unsigned long long)size, (unsigned long long)size);
		check_allocation(w, size);
		if (persistent && err == EINTR && !by_address)
			assert_true(kern.s[k].calls > 1 && kern.s[k].calls <= 100000);
	}
	memset(&kern.s[k], 0, sizeof(kern.s[k]));
	check_flush_recovers(w);
	world_free(w);
	close(fd);
	kern.vm_fd = -2;
}

static void test_default_ops_punch_madvise(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++)
		for (int persistent = 0; persistent < 2; persistent++) {
			default_ops_release_case(B_SHMEM, errnos[i], persistent);
			default_ops_release_case(B_HVA, errnos[i], persistent);
			default_ops_release_case(B_ANON, errnos[i], persistent);
		}
}

/* CVMCONV_REGION_ALLOC_SHARED: the allocation of the shared side
 * (fallocate mode 0, src/kvm.c kvm_allocate) fails, in the first region of
 * a request or in the second after the first was allocated. The request is
 * rolled back whatever the errno (EINTR is not retried: shmem_fallocate
 * gives up on a pending signal), the guest gets -KVM_EFAULT, and what the
 * first region got is punched again: the kernel holds the live pages only. */
static void test_alloc_shared(void **state)
{
	static const enum entry entries[] = { E_MAP, E_RUN, E_CONVERT, E_BATCH_GUEST };

	(void)state;
	for (unsigned i = 0; i < NERR; i++)
		for (unsigned k = 0; k < sizeof(entries) / sizeof(entries[0]); k++)
			for (int second = 0; second < 2; second++) {
				struct world *w = world_get();
				const int errs[2] = { second ? 0 : errnos[i], errnos[i] };
				/* the last 8 pages of R0, the first 8 of R1 */
				uint64_t gpa = second ? BASE + RSIZE - 8 * SZ_4K : BASE;
				uint64_t size = second ? 16 * SZ_4K : 8 * SZ_4K, hc;
				struct cvmconv_stats before;
				int ret;

				world_ctx(w, false);
				next_region_flags = CVMCONV_REGION_ALLOC_SHARED;
				world_region(w, B_SHMEM);
				world_region(w, B_SHMEM);
				assert_int_equal(request(w, E_CONVERT, gpa, size, true, &hc), 0);
				model_set(w, gpa, size, true);
				write_converted(w, gpa, size);
				check_allocation(w, 0);
				before = stats(w);
				sched_set(&kern.s[K_FALLOCATE], errs, 2, false);
				kern.armed = true;
				ret = request(w, entries[k], gpa, size, false, &hc);
				kern.armed = false;
				injected[S_ALLOC_SHARED][i]++;
				assert_int_equal(ret, -errnos[i]);
				if (entries[k] != E_CONVERT)
					assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
				assert_int_equal(stats(w).shared_alloc_failures,
						 before.shared_alloc_failures + 1);
				assert_int_equal(stats(w).to_shared_bytes, before.to_shared_bytes);
				assert_int_equal(stats(w).broken, 0);
				memset(&kern.s[K_FALLOCATE], 0, sizeof(kern.s[K_FALLOCATE]));
				check_world(w);
				check_allocation(w, 0);
				/* the same request, the kernel willing: it goes through */
				assert_int_equal(request(w, entries[k], gpa, size, false, &hc), 0);
				model_set(w, gpa, size, false);
				check_world(w);
				check_flush_recovers(w);
				world_free(w);
			}
}

/* ---- allocation failures ---- */

/* Run @step with the n-th allocation failing, for n = 1, 2, ... until it
 * completes without reaching an injected failure. @step returns the
 * library's return value; @check verifies the world after a failure. */
typedef int (*alloc_step)(struct world *w, void *arg);
typedef void (*alloc_setup)(struct world *w, void *arg);

static unsigned alloc_loop(alloc_setup setup, alloc_step step, void *arg, int fail_ret,
			   bool recheck_world)
{
	unsigned failures = 0;

	for (uint64_t n = 1;; n++) {
		struct world *w = world_get();
		long live0;
		int ret;

		live0 = alloc.live;
		world_ctx(w, false);
		if (setup)
			setup(w, arg);
		alloc_arm(n);
		ret = step(w, arg);
		alloc_disarm();
		if (!alloc.hit) {
			assert_int_equal(ret, 0);
			world_free(w);
			assert_int_equal(alloc.live, live0);
			break;
		}
		failures++;
		if (ret != fail_ret)
			fail_msg("allocation %llu failed: returned %d, want %d",
				 (unsigned long long)n, ret, fail_ret);
		if (recheck_world) {
			check_world(w);
			assert_int_equal(fake_kvm_mismatches(&w->fake, w->c, BASE, 4 * RSIZE), 0);
			check_flush_recovers(w);
		}
		world_free(w);
		/* nothing leaked by the failed call */
		assert_int_equal(alloc.live, live0);
		assert_true(n < 64);
	}
	return failures;
}

static void test_alloc_create(void **state)
{
	(void)state;
	for (uint64_t n = 1;; n++) {
		struct fake_kvm f;
		struct cvmconv_config cfg;
		struct cvmconv *c = NULL;
		long live0 = alloc.live;
		int ret;

		fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
		cfg = fake_kvm_config(&f, CVMCONV_UNALIGNED_ALLOW);
		alloc_arm(n);
		ret = cvmconv_create(&cfg, &c);
		alloc_disarm();
		if (!alloc.hit) {
			assert_int_equal(ret, 0);
			cvmconv_destroy(c);
			fake_kvm_fini(&f);
			assert_int_equal(alloc.live, live0);
			break;
		}
		assert_int_equal(ret, -ENOMEM);
		assert_null(c);
		fake_kvm_fini(&f);
		assert_int_equal(alloc.live, live0);
	}
}

struct add_arg {
	enum backing kind;
	bool private_;
	unsigned before; /* regions added before the one that is checked */
	int fds[2];
	uint8_t *map;
};

static void add_setup(struct world *w, void *argp)
{
	struct add_arg *a = argp;

	for (unsigned i = 0; i < a->before; i++) {
		struct cvmconv_region reg = { .sz = sizeof(reg),
					      .gpa = 8 * SZ_1G + i * RSIZE,
					      .size = RSIZE,
					      .private_fd = -1,
					      .shared_fd = -1,
					      .unaligned = -1 };

		assert_int_equal(cvmconv_add_region(w->c, &reg), 0);
	}
}

static int add_step(struct world *w, void *argp)
{
	struct add_arg *a = argp;
	struct cvmconv_region reg = { .sz = sizeof(reg),
				      .gpa = BASE,
				      .size = RSIZE,
				      .private_fd = a->fds[1],
				      .shared_fd = a->kind == B_HVA ? -1 : a->fds[0],
				      .shared_hva = a->kind == B_HVA ? a->map : NULL,
				      .flags = a->private_ ? CVMCONV_REGION_PRIVATE : 0,
				      .unaligned = -1 };
	uint64_t calls = w->fake.calls[FAKE_CALL_ATTR];
	int ret = cvmconv_add_region(w->c, &reg);

	if (ret) {
		/* nothing registered, no attribute changed */
		assert_int_equal(cvmconv_is_private(w->c, BASE), -ENOENT);
		assert_int_equal(w->fake.calls[FAKE_CALL_ATTR], calls);
		assert_int_equal(w->fake.npriv, 0);
	} else {
		assert_int_equal(cvmconv_is_private(w->c, BASE), a->private_);
	}
	return ret;
}

static void test_alloc_add_region(void **state)
{
	const struct {
		enum backing kind;
		bool private_;
		unsigned before;
	} cases[] = {
		{ B_SHMEM, false, 0 }, { B_SHMEM, true, 0 },  { B_HUGE, false, 0 },
		{ B_HVA, false, 0 },   { B_SHMEM, false, 8 }, /* the region table grows */
	};

	(void)state;
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct add_arg a = {
			cases[i].kind, cases[i].private_, cases[i].before, { -1, -1 }, NULL
		};
		unsigned failures;

		a.fds[0] = memfd_of(RSIZE, a.kind == B_HUGE);
		if (a.fds[0] < 0 && a.kind == B_HUGE) {
			fixture_print_skip(__func__, "no MFD_HUGETLB memfd: %s", strerror(errno));
			continue;
		}
		a.fds[1] = memfd_of(RSIZE, false);
		assert_true(a.fds[0] >= 0 && a.fds[1] >= 0);
		if (a.kind == B_HVA)
			a.map = map_whole(a.fds[0], RSIZE);
		failures = alloc_loop(add_setup, add_step, &a, -ENOMEM, false);
		assert_true(failures >= 2); /* the region and its tracker at least */
		if (a.map)
			munmap(a.map, RSIZE);
		close(a.fds[0]);
		close(a.fds[1]);
	}
}

/* Conversions: the mixed-extent table grows (first mixed extent, and
 * past its initial capacity), a batch allocates its copies. */
struct conv_arg {
	enum entry e;
	unsigned premixed; /* extents made mixed beforehand */
};

static void conv_setup(struct world *w, void *argp)
{
	struct conv_arg *a = argp;

	world_region(w, B_SHMEM);
	world_region(w, B_SHMEM);
	for (unsigned i = 0; i < a->premixed; i++) {
		uint64_t gpa = BASE + (i % 4) * SZ_2M + 2 * SZ_4K;

		assert_int_equal(cvmconv_convert(w->c, gpa, SZ_4K, true), 0);
		model_set(w, gpa, SZ_4K, true);
		write_converted(w, gpa, SZ_4K);
	}
}

static int conv_step(struct world *w, void *argp)
{
	struct conv_arg *a = argp;
	/* unaligned at both ends: both edge extents become mixed */
	const uint64_t gpa = BASE + SZ_2M - 3 * SZ_4K, size = SZ_2M + 6 * SZ_4K;
	uint64_t hc, calls = w->fake.calls[FAKE_CALL_ATTR];
	int ret = request(w, a->e, gpa, size, true, &hc);

	if (ret == 0) {
		model_set(w, gpa, size, true);
		write_converted(w, gpa, size);
		return 0;
	}
	/* refused before any kernel call; a guest would get -KVM_EFAULT */
	assert_int_equal(w->fake.calls[FAKE_CALL_ATTR], calls);
	if (entry_has_hc(a->e) && hc != HC(CVMCONV_KVM_EFAULT))
		fail_msg("%s returned %d but left the guest's return code at 0x%llx "
			 "(want -KVM_EFAULT as for every host failure)",
			 a->e == E_BATCH_GUEST ? "cvmconv_convert_batch" : "the request", ret,
			 (unsigned long long)hc);
	return ret;
}

static void test_alloc_convert(void **state)
{
	(void)state;
	for (unsigned e = 0; e < E_COUNT; e++) {
		for (unsigned premixed = 0; premixed <= 2; premixed += 2) {
			struct conv_arg a = { (enum entry)e, premixed };
			unsigned failures = alloc_loop(conv_setup, conv_step, &a, -ENOMEM, true);

			if (e == E_BATCH_GUEST || e == E_BATCH_HOST)
				assert_true(failures >= 2); /* its two copies */
		}
	}
}

/* A punch fails and the pending list cannot grow at the same moment: the
 * stale memory must still be counted and recovered by the flush
 * (docs/semantics.md: "the memory stays allocated, is counted, and
 * cvmconv_flush() retries it"). Each request reserves room in the failed
 * runs for the waiting ones, plus 4 per run piece (a one-run request counts
 * 2) and 2 (backing_reserve()), and the room doubles from 8; after
 * PENDING_SETUP = 55 separate failed punches it is 64, so the step
 * (55 + 4 * 2 + 2 > 64) is the request that needs the list to grow. The test fails if the list's growth is never hit. */
#define PENDING_SETUP 55

static void pending_setup(struct world *w, void *argp)
{
	int err = EIO;

	(void)argp;
	world_region(w, B_SHMEM);
	/* warm the tracker so that only the pending list allocates */
	assert_int_equal(cvmconv_convert(w->c, BASE + SZ_2M + SZ_4K, SZ_4K, true), 0);
	model_set(w, BASE + SZ_2M + SZ_4K, SZ_4K, true);
	write_converted(w, BASE + SZ_2M + SZ_4K, SZ_4K);
	for (unsigned k = 0; k < PENDING_SETUP; k++) {
		uint64_t gpa = BASE + (100 + 4 * k) * SZ_4K, hc;

		sched_set(&w->s[FAKE_CALL_PUNCH], &err, 1, false);
		assert_int_equal(request(w, E_MAP, gpa, SZ_4K, true, &hc), 0);
		model_set(w, gpa, SZ_4K, true);
		write_converted(w, gpa, SZ_4K);
	}
	assert_int_equal(stats(w).punch_pending_bytes, PENDING_SETUP * SZ_4K);
	sched_set(&w->s[FAKE_CALL_PUNCH], &err, 1, false);
}

static int pending_step(struct world *w, void *argp)
{
	const uint64_t gpa = BASE + 16 * SZ_4K, size = 8 * SZ_4K;
	const uint64_t pending = size + PENDING_SETUP * SZ_4K;
	struct cvmconv_stats st;
	uint64_t hc, calls = w->fake.calls[FAKE_CALL_ATTR];
	int ret = request(w, E_MAP, gpa, size, true, &hc);

	(void)argp;
	if (ret) {
		/* an allocation before the attribute update failed: refused,
		 * nothing changed */
		assert_int_equal(ret, -ENOMEM);
		assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
		assert_int_equal(w->fake.calls[FAKE_CALL_ATTR], calls);
		memset(&w->s[FAKE_CALL_PUNCH], 0, sizeof(w->s[FAKE_CALL_PUNCH]));
		return 0;
	}
	injected[S_PUNCH_4K][err_index(EIO)]++;
	assert_int_equal(hc, 0);
	model_set(w, gpa, size, true);
	write_converted(w, gpa, size);
	check_world(w);
	st = stats(w);
	assert_int_equal(st.punch_failures, PENDING_SETUP + 1);
	if (alloc.hit)
		alloc_disarm();
	/* the stale shared pages are still allocated: they must be counted */
	check_allocation(w, pending);
	if (st.punch_pending_bytes != pending || st.double_alloc_bytes != pending)
		fail_msg("punch failed while the pending list %s: %llu stale bytes still "
			 "allocated, but punch_pending_bytes %llu, double_alloc_bytes %llu",
			 alloc.hit ? "could not grow" : "grew", (unsigned long long)pending,
			 (unsigned long long)st.punch_pending_bytes,
			 (unsigned long long)st.double_alloc_bytes);
	check_flush_recovers(w);
	return 0;
}

static void test_alloc_pending_list(void **state)
{
	(void)state;
	/* at least the growth of the pending list failed once */
	assert_true(alloc_loop(pending_setup, pending_step, NULL, 0, true) >= 1);
}

/* ---- call-site enumeration ---- */

static const char *const callees[] = {
	"op_set_memory_attributes",
	"op_punch",
	"op_discard_hva",
	"op_set_gmem_attributes",
	"ioctl",
	"fallocate",
	"madvise",
	"malloc",
	"calloc",
	"realloc",
	"reallocarray",
	"aligned_alloc",
	"posix_memalign",
	"strdup",
	"strndup",
	"asprintf",
};

/* ---- in-place regions: KVM_SET_MEMORY_ATTRIBUTES2 forward and rollback ---- */

/* R0 two-backing (shmem), R1 in place: a request over the second extent of
 * R0 and the first of R1 is one run and two kernel calls, the VM-wide
 * update, then the guest_memfd one, which fails with @err (@persistent:
 * every try). */
static void gmem_forward_case(enum entry e, int err, bool persistent)
{
	struct world *w = world_get();
	const uint64_t gpa = BASE + SZ_2M, size = RSIZE;
	struct cvmconv_stats before, after;
	uint64_t hc, vm_calls;
	int ret;

	world_ctx(w, false);
	world_region(w, B_SHMEM);
	world_region(w, B_INPLACE);
	before = stats(w);
	vm_calls = w->fake.calls[FAKE_CALL_ATTR];
	w->befores = w->afters_ok = w->afters_cancel = 0;
	sched_set(&w->s[FAKE_CALL_GMEM], &err, 1, persistent);
	ret = request(w, e, gpa, size, true, &hc);
	injected[S_GMEM_FWD][err_index(err)]++;
	after = stats(w);
	assert_int_equal(w->befores, 1); /* listeners heard the range first */
	if (err == EAGAIN && !persistent) {
		/* one busy answer: tried again, and done */
		assert_int_equal(ret, 0);
		if (entry_has_hc(e))
			assert_int_equal(hc, 0);
		assert_int_equal(after.gmem_busy_retries - before.gmem_busy_retries, 1);
		assert_int_equal(after.gmem_busy_failures, before.gmem_busy_failures);
		assert_int_equal(w->afters_ok, 1);
		model_set(w, gpa, size, true);
		write_converted(w, gpa, size);
		check_world(w);
		world_free(w);
		return;
	}
	assert_int_equal(ret, -err);
	if (entry_has_hc(e))
		assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
	/* the VM-wide piece was applied, then set back */
	assert_int_equal(w->fake.calls[FAKE_CALL_ATTR] - vm_calls, 2);
	if (err == EAGAIN) {
		assert_int_equal(after.gmem_busy_retries - before.gmem_busy_retries,
				 CVMCONV_INPLACE_RETRIES);
		assert_int_equal(after.gmem_busy_failures - before.gmem_busy_failures, 1);
	}
	assert_int_equal(after.to_private_bytes, before.to_private_bytes);
	assert_int_equal(after.broken, 0);
	assert_int_equal(after.double_alloc_bytes, 0);
	assert_int_equal(w->afters_cancel, 1);
	assert_int_equal(w->afters_ok, 0);
	check_world(w);
	check_allocation(w, 0);
	/* nothing half done: the same request goes through now */
	sched_set(&w->s[FAKE_CALL_GMEM], NULL, 0, false);
	assert_int_equal(request(w, e, gpa, size, true, &hc), 0);
	model_set(w, gpa, size, true);
	write_converted(w, gpa, size);
	check_world(w);
	assert_int_equal(fake_kvm_mismatches(&w->fake, w->c, BASE, 2 * RSIZE), 0);
	world_free(w);
}

static void test_gmem_forward(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++)
		for (int persistent = 0; persistent < 2; persistent++)
			gmem_forward_case(E_MAP, errnos[i], persistent);
	for (unsigned e = 0; e < E_COUNT; e++)
		gmem_forward_case((enum entry)e, errnos[(e + 1) % NERR], e & 1);
}

/* R0 in place, R1 two-backing: the guest_memfd piece goes first and is
 * applied; the VM-wide piece fails with @fwd_err; setting the first piece
 * back fails with @back_err. A busy page in the rollback is tried again;
 * any other failure leaves the attributes unknown: broken. */
static void gmem_rollback_case(enum entry e, int fwd_err, int back_err)
{
	struct world *w = world_get();
	const uint64_t gpa = BASE + SZ_2M, size = RSIZE;
	struct cvmconv_stats st;
	uint64_t hc;
	int ret, gm_errs[2] = { 0, back_err };

	world_ctx(w, false);
	world_region(w, B_INPLACE);
	world_region(w, B_SHMEM);
	sched_set(&w->s[FAKE_CALL_ATTR], &fwd_err, 1, false);
	sched_set(&w->s[FAKE_CALL_GMEM], gm_errs, 2, false);
	ret = request(w, e, gpa, size, true, &hc);
	injected[S_ATTR_FWD][err_index(fwd_err)]++;
	injected[S_GMEM_ROLLBACK][err_index(back_err)]++;
	st = stats(w);
	if (entry_has_hc(e))
		assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
	if (back_err == EAGAIN) {
		assert_int_equal(ret, -fwd_err);
		assert_int_equal(st.broken, 0);
		assert_int_equal(st.gmem_busy_retries, 1);
		check_world(w);
		assert_int_equal(fake_kvm_mismatches(&w->fake, w->c, BASE, 2 * RSIZE), 0);
	} else {
		assert_int_equal(ret, -ENOTRECOVERABLE);
		assert_int_equal(st.broken, 1);
		assert_int_equal(request(w, E_MAP, BASE, SZ_4K, true, &hc), -ENOTRECOVERABLE);
	}
	assert_int_equal(st.punches, 0);
	/* whatever the attributes, no page lost its data (PRESERVE region) */
	for (unsigned ri = 0; ri < 2; ri++)
		for (uint64_t p = 0; p < RPAGES; p++)
			assert_true(
				pattern_check(side_map(&w->r[ri], false), p, seed_of(ri, false)));
	world_free(w);
}

static void test_gmem_rollback(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++)
		for (unsigned j = 0; j < NERR; j++)
			gmem_rollback_case(E_MAP, errnos[i], errnos[j]);
	for (unsigned e = 0; e < E_COUNT; e++)
		gmem_rollback_case((enum entry)e, errnos[e % NERR], errnos[(e + 2) % NERR]);
}

/* The default in-place op: KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd
 * (the wrapped ioctl serves the strict fake), its probe at add_region and
 * the capability reads of the content modes. */
static void test_default_ops_gmem(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++) {
		int err = errnos[i];

		/* the probe: EINTR is retried, EINVAL is how a kernel with
		 * the ioctl answers a zero-size call, anything else stops */
		for (int what = 0; what < 2; what++) {
			struct world *w = world_get();
			struct wregion *r = &w->r[0];
			int fd = dummy_vm_fd(), want;
			struct cvmconv_region reg = { .sz = sizeof(reg),
						      .gpa = BASE,
						      .size = RSIZE,
						      .shared_fd = -1,
						      .flags = CVMCONV_REGION_INPLACE,
						      .unaligned = -1,
						      .content_mode = CVMCONV_CONTENT_PRESERVE };

			world_ctx(w, true);
			assert_int_equal(fake_gmem_init(&r->gmem, RSIZE, CVMCONV_CONTENT_PRESERVE),
					 0);
			kern.gmem = &r->gmem;
			reg.private_fd = r->gmem.fd;
			if (what == 0) {
				sched_set(&kern.s[K_GMEM], &err, 1, false);
				want = err == EINTR || err == EINVAL ? 0 : -err;
			} else {
				/* capability read fails: no mode can be trusted */
				sched_set(&kern.s[K_PROBE], &err, 1, false);
				want = err == EINTR ? 0 : -EOPNOTSUPP;
			}
			assert_int_equal(cvmconv_add_region(w->c, &reg), want);
			injected[S_KVM_IOCTL][i]++;
			assert_int_equal(stats(w).guest_bytes, want ? 0 : RSIZE);
			kern.gmem = NULL;
			fake_gmem_fini(&r->gmem);
			world_free(w);
			close(fd);
			kern.vm_fd = -2;
		}
		/* the conversion */
		for (int persistent = 0; persistent < 2; persistent++) {
			struct world *w = world_get();
			int fd = dummy_vm_fd();
			bool absorbed = !persistent && (err == EINTR || err == EAGAIN);
			struct cvmconv_stats st;
			uint64_t hc;
			int ret;

			world_ctx(w, true);
			world_region(w, B_INPLACE);
			sched_set(&kern.s[K_GMEM], &err, 1, persistent);
			ret = request(w, E_MAP, BASE, SZ_2M, true, &hc);
			injected[S_KVM_IOCTL][i]++;
			st = stats(w);
			if (absorbed) {
				assert_int_equal(ret, 0);
				assert_int_equal(hc, 0);
				/* EINTR by kvm.c, EAGAIN by the library (counted) */
				assert_int_equal(st.gmem_busy_retries, err == EAGAIN);
				model_set(w, BASE, SZ_2M, true);
				write_converted(w, BASE, SZ_2M);
			} else {
				assert_int_equal(ret, -err);
				assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
				if (err == EAGAIN)
					assert_int_equal(st.gmem_busy_failures, 1);
				/* persistent EINTR gives up, bounded */
				if (err == EINTR)
					assert_true(kern.s[K_GMEM].calls > 1 &&
						    kern.s[K_GMEM].calls <= 100000);
			}
			check_world(w);
			assert_int_equal(st.punches, 0);
			assert_int_equal(st.double_alloc_bytes, 0);
			world_free(w);
			close(fd);
			kern.vm_fd = -2;
		}
	}
}

/* Every call site and the test that injects failures there. */
static const struct call_site {
	const char *file, *function, *callee;
	unsigned count;
	const char *tested_by;
} covered[] = {
	{ "convert.c", "set_attributes", "op_set_memory_attributes", 1,
	  "test_attr_forward, test_attr_rollback" },
	{ "context.c", "cvmconv_add_region", "op_set_memory_attributes", 1,
	  "test_attr_add_region_private" },
	{ "backing.c", "punch_call", "op_punch", 1,
	  "test_punch_shmem, test_punch_huge, test_flush_failure" },
	{ "backing.c", "punch_call", "op_discard_hva", 1, "test_discard_hva, test_flush_failure" },
	{ "kvm.c", "kvm_set_memory_attributes", "ioctl", 1, "test_default_ops_attr" },
	{ "kvm.c", "kvm_probe_private_attribute", "ioctl", 1, "test_default_ops_probe" },
	{ "kvm.c", "kvm_set_gmem_attributes", "ioctl", 1, "test_default_ops_gmem" },
	{ "kvm.c", "kvm_probe_gmem_attributes2", "ioctl", 1, "test_default_ops_gmem" },
	{ "kvm.c", "check_extension", "ioctl", 1, "test_default_ops_gmem (content modes)" },
	{ "inplace.c", "gmem_call", "op_set_gmem_attributes", 1,
	  "test_gmem_forward, test_gmem_rollback" },
	{ "kvm.c", "kvm_punch", "fallocate", 1, "test_default_ops_punch_madvise" },
	{ "kvm.c", "kvm_discard_hva", "madvise", 1, "test_default_ops_punch_madvise" },
	{ "kvm.c", "kvm_allocate", "fallocate", 1, "test_alloc_shared" },
	{ "kvm.c", "kvm_discard_private_hva", "madvise", 1,
	  "test_default_ops_punch_madvise (MAP_PRIVATE)" },
	{ "context.c", "cvmconv_create", "calloc", 1, "test_alloc_create" },
	{ "context.c", "cvmconv_add_region", "calloc", 1, "test_alloc_add_region" },
	{ "context.c", "cvmconv_add_region", "realloc", 1, "test_alloc_add_region (9th region)" },
	{ "runset.c", "runset_reserve", "realloc", 1,
	  "test_alloc_add_region (side_init), test_alloc_pending_list, test_alloc_convert" },
	{ "convert.c", "cvmconv_convert_batch", "calloc", 2, "test_alloc_convert (batches)" },
	{ "extents.c", "tracker_reserve", "malloc", 1,
	  "test_alloc_add_region (tracker_init), test_alloc_convert" },
	{ "u64map.c", "u64map_reserve", "malloc", 1, "test_alloc_convert (mixed extents)" },
};
#define NCOVERED (sizeof(covered) / sizeof(covered[0]))

/* Copy of @src with comments, string and character literals blanked
 * (newlines kept). */
static char *strip_c(const char *src, size_t n)
{
	char *out = malloc(n + 1);
	size_t i = 0;

	assert_non_null(out);
	while (i < n) {
		if (src[i] == '/' && i + 1 < n && src[i + 1] == '*') {
			out[i] = out[i + 1] = ' ';
			i += 2;
			while (i < n && !(src[i] == '*' && i + 1 < n && src[i + 1] == '/')) {
				out[i] = src[i] == '\n' ? '\n' : ' ';
				i++;
			}
			if (i < n) {
				out[i] = out[i + 1] = ' ';
				i += 2;
			}
		} else if (src[i] == '/' && i + 1 < n && src[i + 1] == '/') {
			while (i < n && src[i] != '\n')
				out[i++] = ' ';
		} else if (src[i] == '"' || src[i] == '\'') {
			char q = src[i];

			out[i++] = ' ';
			while (i < n && src[i] != q) {
				if (src[i] == '\\' && i + 1 < n)
					out[i++] = ' ';
				out[i] = src[i] == '\n' ? '\n' : ' ';
				i++;
			}
			if (i < n)
				out[i++] = ' ';
		} else {
			out[i] = src[i];
			i++;
		}
	}
	out[n] = '\0';
	return out;
}

static bool ident_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_';
}

struct found_site {
	char file[64], function[64];
	const char *callee;
	unsigned count;
};

/* Record the calls in one stripped file. A function starts at a line that
 * begins in column 0 with an identifier and has a '(' before any ';' (its
 * name is the identifier before that '('). */
static void scan_file(const char *name, const char *text, struct found_site *found,
		      unsigned *nfound, unsigned max)
{
	char function[64] = "(file scope)";
	const char *line = text;

	while (*line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);

		if (ident_char(line[0]) && memchr(line, '(', len)) {
			const char *paren = memchr(line, '(', len);
			const char *semi = memchr(line, ';', len);

			if (!semi || semi > paren) {
				const char *b = paren;

				while (b > line && (b[-1] == ' ' || b[-1] == '\t'))
					b--;
				const char *a = b;
				while (a > line && ident_char(a[-1]))
					a--;
				if (b > a && (size_t)(b - a) < sizeof(function)) {
					memcpy(function, a, (size_t)(b - a));
					function[b - a] = '\0';
				}
			}
		}
		for (size_t k = 0; k < sizeof(callees) / sizeof(callees[0]); k++) {
			size_t cl = strlen(callees[k]);

			for (const char *p = line; p + cl <= line + len; p++) {
				const char *q = p + cl;

				if (memcmp(p, callees[k], cl) || (p > line && ident_char(p[-1])) ||
				    (p > line && p[-1] == '.') || ident_char(*q))
					continue;
				while (q < line + len && (*q == ' ' || *q == '\t'))
					q++;
				if (q >= line + len || *q != '(')
					continue;
				/* the definition line of the function itself is no call */
				if (!strcmp(function, callees[k]) && line[0] != ' ' &&
				    line[0] != '\t')
					continue;
				unsigned j;
				for (j = 0; j < *nfound; j++)
					if (!strcmp(found[j].file, name) &&
					    !strcmp(found[j].function, function) &&
					    found[j].callee == callees[k])
						break;
				if (j == *nfound) {
					assert_true(*nfound < max);
					snprintf(found[j].file, sizeof(found[j].file), "%s", name);
					snprintf(found[j].function, sizeof(found[j].function), "%s",
						 function);
					found[j].callee = callees[k];
					found[j].count = 0;
					(*nfound)++;
				}
				found[j].count++;
			}
		}
		if (!end)
			break;
		line = end + 1;
	}
}

static void test_call_sites(void **state)
{
	static struct found_site found[256];
	unsigned nfound = 0, bad = 0;
	bool listed_found[NCOVERED] = { false };
	DIR *d = opendir(CVMCONV_SOURCE_DIR "/src");
	struct dirent *de;

	(void)state;
	assert_non_null(d);
	while ((de = readdir(d))) {
		size_t nl = strlen(de->d_name);
		char path[512];
		struct stat st;
		char *raw, *text;
		FILE *f;

		if (nl < 3 || strcmp(de->d_name + nl - 2, ".c"))
			continue;
		snprintf(path, sizeof(path), "%s/src/%s", CVMCONV_SOURCE_DIR, de->d_name);
		f = fopen(path, "re");
		assert_non_null(f);
		assert_int_equal(fstat(fileno(f), &st), 0);
		raw = malloc((size_t)st.st_size + 1);
		assert_non_null(raw);
		assert_int_equal(fread(raw, 1, (size_t)st.st_size, f), (size_t)st.st_size);
		fclose(f);
		text = strip_c(raw, (size_t)st.st_size);
		scan_file(de->d_name, text, found, &nfound, 256);
		free(text);
		free(raw);
	}
	closedir(d);

	for (unsigned j = 0; j < nfound; j++) {
		unsigned k;

		for (k = 0; k < NCOVERED; k++)
			if (!strcmp(covered[k].file, found[j].file) &&
			    !strcmp(covered[k].function, found[j].function) &&
			    !strcmp(covered[k].callee, found[j].callee))
				break;
		if (k == NCOVERED) {
			fprintf(stderr,
				"UNCOVERED: src/%s: %s() calls %s() (%u site%s): add a fault "
				"injection case and list it in tests/fault_injection.c\n",
				found[j].file, found[j].function, found[j].callee, found[j].count,
				found[j].count == 1 ? "" : "s");
			bad++;
		} else if (covered[k].count != found[j].count) {
			fprintf(stderr,
				"CHANGED: src/%s: %s() calls %s() %u times, the list says %u\n",
				found[j].file, found[j].function, found[j].callee, found[j].count,
				covered[k].count);
			bad++;
		} else {
			listed_found[k] = true;
		}
	}
	for (unsigned k = 0; k < NCOVERED; k++)
		if (!listed_found[k] && !bad)
			fprintf(stderr,
				"STALE: src/%s: %s() no longer calls %s(): update the list\n",
				covered[k].file, covered[k].function, covered[k].callee);
	printf("fault_injection: %u kernel call and allocation sites in src/*.c, all covered: %s\n",
	       nfound, bad ? "NO" : "yes");
	for (unsigned k = 0; k < NCOVERED; k++)
		bad += !listed_found[k];
	assert_int_equal(bad, 0);
}

/* ---- figures ---- */

static int print_matrix(void **state)
{
	uint64_t total = 0;

	(void)state;
	printf("fault_injection: faults injected (site x errno)\n");
	printf("  %-26s", "site");
	for (unsigned i = 0; i < NERR; i++)
		printf(" %7s", strerrorname_np(errnos[i]));
	printf("\n");
	for (unsigned s = 0; s < S_COUNT; s++) {
		printf("  %-26s", site_names[s]);
		for (unsigned i = 0; i < NERR; i++) {
			printf(" %7llu", (unsigned long long)injected[s][i]);
			total += injected[s][i];
		}
		printf("\n");
	}
	printf("fault_injection: %llu faults injected in total%s\n", (unsigned long long)total,
	       huge_skipped ? " (huge page cases skipped: no huge pages)" : "");
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_call_sites, teardown_worlds),
		cmocka_unit_test_teardown(test_attr_forward, teardown_worlds),
		cmocka_unit_test_teardown(test_attr_rollback, teardown_worlds),
		cmocka_unit_test_teardown(test_attr_add_region_private, teardown_worlds),
		cmocka_unit_test_teardown(test_punch_shmem, teardown_worlds),
		cmocka_unit_test_teardown(test_discard_hva, teardown_worlds),
		cmocka_unit_test_teardown(test_flush_failure, teardown_worlds),
		cmocka_unit_test_teardown(test_punch_pending_page_live_again, teardown_worlds),
		cmocka_unit_test_teardown(test_punch_huge, teardown_worlds),
		cmocka_unit_test_teardown(test_default_ops_probe, teardown_worlds),
		cmocka_unit_test_teardown(test_default_ops_attr, teardown_worlds),
		cmocka_unit_test_teardown(test_gmem_forward, teardown_worlds),
		cmocka_unit_test_teardown(test_gmem_rollback, teardown_worlds),
		cmocka_unit_test_teardown(test_default_ops_gmem, teardown_worlds),
		cmocka_unit_test_teardown(test_default_ops_punch_madvise, teardown_worlds),
		cmocka_unit_test_teardown(test_alloc_shared, teardown_worlds),
		cmocka_unit_test_teardown(test_alloc_create, teardown_worlds),
		cmocka_unit_test_teardown(test_alloc_add_region, teardown_worlds),
		cmocka_unit_test_teardown(test_alloc_convert, teardown_worlds),
		cmocka_unit_test_teardown(test_alloc_pending_list, teardown_worlds),
	};

	return cmocka_run_group_tests(tests, NULL, print_matrix);
}
