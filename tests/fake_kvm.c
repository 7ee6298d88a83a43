/* SPDX-License-Identifier: MIT */
/* The strict fake KVM VM: attribute updates are validated with the rules of
 * kvm_vm_ioctl_set_mem_attributes (virt/kvm/kvm_main.c, see
 * shared/docs/KVM-FACTS.md) and recorded in an interval list of private
 * ranges; punches and discards go to the real kernel. */
#include "fake_kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define FAKE_PAGE 4096ULL
/* Bound on the private interval list: a request that reached the fake with a
 * hostile pattern must not make it allocate without limit. */
#define FAKE_MAX_RANGES (1u << 20)

/* The library calls ops with its context lock held; this lock also keeps a
 * fake shared by two contexts (or read by a test thread) consistent. */
static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;

void fake_kvm_init(struct fake_kvm *f, enum fake_vm_type type)
{
	memset(f, 0, sizeof(*f));
	f->type = type;
	f->abort_on_live = true;
}

void fake_kvm_fini(struct fake_kvm *f)
{
	free(f->priv);
	f->priv = NULL;
	f->npriv = 0;
	f->cap = 0;
	f->nbind = 0;
	f->ngmem = 0;
	f->ninplace = 0;
}

/* First range whose end is > @gpa (or >= @gpa when @touching). */
static unsigned first_ending_after(const struct fake_kvm *f, uint64_t gpa, bool touching)
{
	unsigned lo = 0, hi = f->npriv;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		bool before = touching ? f->priv[mid].end < gpa : f->priv[mid].end <= gpa;

		if (before)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* First range whose start is >= @gpa (or > @gpa when @touching). */
static unsigned first_starting_at(const struct fake_kvm *f, uint64_t gpa, bool touching)
{
	unsigned lo = 0, hi = f->npriv;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		bool before = touching ? f->priv[mid].start <= gpa : f->priv[mid].start < gpa;

		if (before)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int ensure_cap(struct fake_kvm *f, unsigned need)
{
	struct fake_range *p;
	unsigned cap;

	if (need > FAKE_MAX_RANGES)
		return -ENOMEM;
	if (need <= f->cap)
		return 0;
	cap = f->cap ? f->cap : 16;
	while (cap < need)
		cap *= 2;
	if (cap > FAKE_MAX_RANGES)
		cap = FAKE_MAX_RANGES;
	p = realloc(f->priv, (size_t)cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	f->priv = p;
	f->cap = cap;
	return 0;
}

/* Replace ranges [lo, hi) by the @nnew ranges in @repl. */
static int replace_ranges(struct fake_kvm *f, unsigned lo, unsigned hi,
			  const struct fake_range *repl, unsigned nnew)
{
	unsigned nold = hi - lo;
	unsigned count = f->npriv - nold + nnew;
	int err;

	err = ensure_cap(f, count);
	if (err)
		return err;
	memmove(&f->priv[lo + nnew], &f->priv[hi], (size_t)(f->npriv - hi) * sizeof(*f->priv));
	memcpy(&f->priv[lo], repl, (size_t)nnew * sizeof(*repl));
	f->npriv = count;
	return 0;
}

/* Overwrite the attribute of [start, end): the kernel sets all attributes of
 * the range, so private and shared are both plain overwrites. */
static int set_range(struct fake_kvm *f, uint64_t start, uint64_t end, bool private_)
{
	struct fake_range repl[2];
	unsigned lo, hi, n = 0;

	if (private_) {
		/* merge with every range that overlaps or touches */
		lo = first_ending_after(f, start, true);
		hi = first_starting_at(f, end, true);
		repl[0].start = start;
		repl[0].end = end;
		if (lo < hi) {
			if (f->priv[lo].start < start)
				repl[0].start = f->priv[lo].start;
			if (f->priv[hi - 1].end > end)
				repl[0].end = f->priv[hi - 1].end;
		}
		return replace_ranges(f, lo, hi, repl, 1);
	}
	lo = first_ending_after(f, start, false);
	hi = first_starting_at(f, end, false);
	if (lo >= hi)
		return 0;
	if (f->priv[lo].start < start)
		repl[n++] = (struct fake_range){ f->priv[lo].start, start };
	if (f->priv[hi - 1].end > end)
		repl[n++] = (struct fake_range){ end, f->priv[hi - 1].end };
	return replace_ranges(f, lo, hi, repl, n);
}

static void log_call(struct fake_kvm *f, uint64_t gpa, uint64_t size, uint64_t attributes, int ret)
{
	const unsigned max = sizeof(f->log) / sizeof(f->log[0]);

	/* oldest first; when full, the oldest entry is dropped */
	if (f->nlog == max) {
		memmove(&f->log[0], &f->log[1], (max - 1) * sizeof(f->log[0]));
		f->nlog--;
	}
	f->log[f->nlog++] = (struct fake_attr_call){ gpa, size, attributes, ret };
}

/* Counts the call and returns the injected error for it, or 0. */
static int count_and_inject(struct fake_kvm *f, enum fake_call kind)
{
	uint64_t n = ++f->calls[kind];
	bool hit = (f->fail_at[kind] && n == f->fail_at[kind]) ||
		   (f->fail_every[kind] && n >= f->fail_at[kind]);

	if (!hit)
		return 0;
	return f->fail_errno[kind] ? -f->fail_errno[kind] : -EIO;
}

static int fake_set_memory_attributes(void *opaque, uint64_t gpa, uint64_t size,
				      uint64_t attributes)
{
	struct fake_kvm *f = opaque;
	uint64_t supported;
	int ret;

	if (!f)
		return -EFAULT;
	pthread_mutex_lock(&fake_lock);
	/* an injected failure happens before anything changed, like the
	 * kernel's -ENOMEM when it cannot reserve xarray entries */
	ret = count_and_inject(f, FAKE_CALL_ATTR);
	if (ret)
		goto out;
	supported = f->type == FAKE_VM_SW_PROTECTED ? CVMCONV_ATTR_PRIVATE : 0;
	if ((attributes & ~supported) || size == 0 || gpa + size < gpa || (gpa & (FAKE_PAGE - 1)) ||
	    (size & (FAKE_PAGE - 1))) {
		f->rejected++;
		ret = -EINVAL;
		goto out;
	}
	ret = set_range(f, gpa, gpa + size, attributes & CVMCONV_ATTR_PRIVATE);
out:
	log_call(f, gpa, size, attributes, ret);
	pthread_mutex_unlock(&fake_lock);
	return ret;
}

/* Live pages of gpa range [lo, hi) on one side, from the attributes held:
 * the private side is live where the page is private, the shared side where
 * it is shared. Ranges in f->priv are maximal (touching ones merge). */
static uint64_t live_pages(const struct fake_kvm *f, uint64_t lo, uint64_t hi, bool private_side)
{
	uint64_t priv = 0;

	for (unsigned i = first_ending_after(f, lo, false); i < f->npriv && f->priv[i].start < hi;
	     i++) {
		uint64_t a = f->priv[i].start > lo ? f->priv[i].start : lo;
		uint64_t b = f->priv[i].end < hi ? f->priv[i].end : hi;

		priv += (b - a) / FAKE_PAGE;
	}
	return private_side ? priv : (hi - lo) / FAKE_PAGE - priv;
}

/* The oracle, under fake_lock: every binding the punch overlaps. */
static uint64_t live_in_punch_locked(struct fake_kvm *f, int fd, uintptr_t hva, uint64_t offset,
				     uint64_t len)
{
	uint64_t live = 0;

	f->checked_punches++;
	for (unsigned i = 0; i < f->nbind; i++) {
		const struct fake_binding *b = &f->bind[i];
		uint64_t start = fd >= 0 ? offset : (uint64_t)hva;
		uint64_t base = fd >= 0 ? b->off : (uint64_t)b->hva;
		uint64_t lo, hi, n;

		if ((fd >= 0) != (b->fd >= 0) || (fd >= 0 && b->fd != fd))
			continue;
		lo = start > base ? start : base;
		hi = start + len < base + b->size ? start + len : base + b->size;
		if (lo >= hi)
			continue;
		/* whole 4 KiB pages only: a piece of a page is zeroed, which is a
		 * loss just the same */
		lo = b->gpa + ((lo - base) & ~(FAKE_PAGE - 1));
		hi = b->gpa + ((hi - base + FAKE_PAGE - 1) & ~(FAKE_PAGE - 1));
		n = b->inplace ? (hi - lo) / FAKE_PAGE : live_pages(f, lo, hi, b->private_side);
		if (!n)
			continue;
		live += n;
		fprintf(stderr,
			"fake_kvm oracle: %s of %s 0x%" PRIx64 " len 0x%" PRIx64 " frees %" PRIu64
			" live %s page(s) in gpa [0x%" PRIx64 ", 0x%" PRIx64 ")\n",
			fd >= 0 ? "punch" : "discard", fd >= 0 ? "offset" : "hva", start, len, n,
			b->private_side ? "private" : "shared", lo, hi);
	}
	if (live) {
		f->live_punches++;
		if (f->abort_on_live)
			abort();
	}
	return live;
}

uint64_t fake_kvm_live_in_punch(struct fake_kvm *f, int fd, const void *hva, uint64_t offset,
				uint64_t len)
{
	uint64_t live;

	pthread_mutex_lock(&fake_lock);
	live = live_in_punch_locked(f, fd, (uintptr_t)hva, offset, len);
	pthread_mutex_unlock(&fake_lock);
	return live;
}

static struct fake_gmem *gmem_of_locked(const struct fake_kvm *f, int fd)
{
	for (unsigned i = 0; i < f->ngmem; i++)
		if (fd >= 0 && f->gmem[i]->fd == fd)
			return f->gmem[i];
	return NULL;
}

static void bind_one(struct fake_kvm *f, int fd, uintptr_t hva, uint64_t off, uint64_t gpa,
		     uint64_t size, bool private_side)
{
	if (fd < 0 && !hva)
		return;
	if (f->nbind == sizeof(f->bind) / sizeof(f->bind[0])) {
		fprintf(stderr, "fake_kvm: more than %u bindings; oracle incomplete\n", f->nbind);
		abort();
	}
	f->bind[f->nbind++] = (struct fake_binding){ fd, hva, off, gpa, size, private_side, false };
}

void fake_kvm_bind_region(struct fake_kvm *f, const struct cvmconv_region *r)
{
	pthread_mutex_lock(&fake_lock);
	if (r->flags & CVMCONV_REGION_INPLACE) {
		struct fake_gmem *g = gmem_of_locked(f, r->private_fd);

		/* one file holds both sides: every page of it is live, any
		 * punch of it by the library is a loss */
		bind_one(f, r->private_fd, 0, r->private_offset, r->gpa, r->size, true);
		f->bind[f->nbind - 1].inplace = true;
		if (r->shared_hva) {
			bind_one(f, -1, (uintptr_t)r->shared_hva, 0, r->gpa, r->size, false);
			f->bind[f->nbind - 1].inplace = true;
		}
		if (g && f->ninplace < sizeof(f->inplace) / sizeof(f->inplace[0]))
			f->inplace[f->ninplace++] =
				(struct fake_inplace){ g, r->gpa, r->size, r->private_offset };
		pthread_mutex_unlock(&fake_lock);
		return;
	}
	bind_one(f, r->shared_fd, r->shared_fd < 0 ? (uintptr_t)r->shared_hva : 0, r->shared_offset,
		 r->gpa, r->size, false);
	bind_one(f, r->private_fd, 0, r->private_offset, r->gpa, r->size, true);
	pthread_mutex_unlock(&fake_lock);
}

int fake_kvm_add_region(struct fake_kvm *f, struct cvmconv *c, const struct cvmconv_region *r)
{
	int ret = cvmconv_add_region(c, r);

	if (ret == 0)
		fake_kvm_bind_region(f, r);
	return ret;
}

int fake_kvm_set_attributes_ioctl(struct fake_kvm *f, uint64_t gpa, uint64_t size,
				  uint64_t attributes, uint64_t flags)
{
	/* kvm_vm_ioctl_set_mem_attributes: flags are checked first */
	if (flags) {
		pthread_mutex_lock(&fake_lock);
		f->rejected++;
		log_call(f, gpa, size, attributes, -EINVAL);
		pthread_mutex_unlock(&fake_lock);
		return -EINVAL;
	}
	return fake_set_memory_attributes(f, gpa, size, attributes);
}

static int fake_punch(void *opaque, int fd, uint64_t offset, uint64_t len)
{
	struct fake_kvm *f = opaque;
	int ret;

	if (!f)
		return -EFAULT;
	pthread_mutex_lock(&fake_lock);
	if (fd >= 0)
		live_in_punch_locked(f, fd, 0, offset, len);
	ret = count_and_inject(f, FAKE_CALL_PUNCH);
	pthread_mutex_unlock(&fake_lock);
	if (ret)
		return ret;
	if (fd < 0)
		return -EBADF;
	if (len == 0 || offset > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - offset)
		return -EINVAL;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len) <
	    0)
		return -errno;
	return 0;
}

static int fake_discard_hva(void *opaque, void *hva, uint64_t len)
{
	struct fake_kvm *f = opaque;
	int ret;

	if (!f)
		return -EFAULT;
	pthread_mutex_lock(&fake_lock);
	if (hva)
		live_in_punch_locked(f, -1, (uintptr_t)hva, 0, len);
	ret = count_and_inject(f, FAKE_CALL_DISCARD);
	pthread_mutex_unlock(&fake_lock);
	if (ret)
		return ret;
	if (!hva || len == 0 || len > SIZE_MAX)
		return -EINVAL;
	if (madvise(hva, (size_t)len, MADV_REMOVE) < 0)
		return -errno;
	return 0;
}

void fake_kvm_attach_gmem(struct fake_kvm *f, struct fake_gmem *g)
{
	pthread_mutex_lock(&fake_lock);
	if (f->ngmem == sizeof(f->gmem) / sizeof(f->gmem[0])) {
		fprintf(stderr, "fake_kvm: more than %u guest_memfds\n", f->ngmem);
		abort();
	}
	f->gmem[f->ngmem++] = g;
	pthread_mutex_unlock(&fake_lock);
}

static int fake_set_gmem_attributes(void *opaque, int gmem_fd, uint64_t offset, uint64_t size,
				    uint64_t attributes, uint64_t flags, uint64_t *error_offset)
{
	struct fake_kvm *f = opaque;
	struct fake_gmem *g;
	int ret;

	if (!f)
		return -EFAULT;
	pthread_mutex_lock(&fake_lock);
	ret = count_and_inject(f, FAKE_CALL_GMEM);
	g = gmem_of_locked(f, gmem_fd);
	pthread_mutex_unlock(&fake_lock);
	if (ret)
		return ret; /* injected: before anything changed */
	if (!g)
		return -ENOTTY; /* not a guest_memfd: no such ioctl */
	return fake_gmem_set_attributes(g, offset, size, attributes, flags, error_offset);
}

const struct cvmconv_ops fake_kvm_ops = {
	.set_memory_attributes = fake_set_memory_attributes,
	.punch = fake_punch,
	.discard_hva = fake_discard_hva,
	.set_gmem_attributes = fake_set_gmem_attributes,
};

static int is_private_locked(const struct fake_kvm *f, uint64_t gpa)
{
	unsigned i = first_ending_after(f, gpa, false);

	for (unsigned k = 0; k < f->ninplace; k++)
		if (gpa >= f->inplace[k].gpa && gpa - f->inplace[k].gpa < f->inplace[k].size)
			return fake_gmem_is_private(f->inplace[k].g,
						    f->inplace[k].off + (gpa - f->inplace[k].gpa));

	return i < f->npriv && f->priv[i].start <= gpa;
}

int fake_kvm_is_private(const struct fake_kvm *f, uint64_t gpa)
{
	int ret;

	pthread_mutex_lock(&fake_lock);
	ret = is_private_locked(f, gpa);
	pthread_mutex_unlock(&fake_lock);
	return ret;
}

void fake_kvm_fail_nth(struct fake_kvm *f, enum fake_call kind, uint64_t n, int err)
{
	pthread_mutex_lock(&fake_lock);
	f->fail_at[kind] = f->calls[kind] + n;
	f->fail_errno[kind] = err < 0 ? -err : err;
	f->fail_every[kind] = false;
	pthread_mutex_unlock(&fake_lock);
}

void fake_kvm_fail_clear(struct fake_kvm *f)
{
	pthread_mutex_lock(&fake_lock);
	memset(f->fail_at, 0, sizeof(f->fail_at));
	memset(f->fail_errno, 0, sizeof(f->fail_errno));
	memset(f->fail_every, 0, sizeof(f->fail_every));
	pthread_mutex_unlock(&fake_lock);
}

struct cvmconv_config fake_kvm_config(struct fake_kvm *f, enum cvmconv_unaligned policy)
{
	struct cvmconv_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.sz = sizeof(cfg);
	cfg.vm_fd = -1;
	cfg.granule = 0;
	cfg.unaligned = policy;
	cfg.ops = &fake_kvm_ops;
	cfg.ops_opaque = f;
	return cfg;
}

/* A page the library does not know (-ENOENT) matches when the fake has it
 * shared: nothing outside regions may ever have been made private. Any other
 * negative answer is a mismatch. */
uint64_t fake_kvm_mismatches(const struct fake_kvm *f, struct cvmconv *c, uint64_t gpa,
			     uint64_t size)
{
	uint64_t end, bad = 0;

	gpa &= ~(FAKE_PAGE - 1);
	end = gpa + size < gpa ? UINT64_MAX & ~(FAKE_PAGE - 1) : gpa + size;
	for (uint64_t p = gpa; p < end && p >= gpa; p += FAKE_PAGE) {
		/* never hold fake_lock across a library call: the library holds
		 * its own lock while it calls the fake */
		int lib = cvmconv_is_private(c, p);

		if (lib == -ENOENT)
			lib = 0;
		if (lib != fake_kvm_is_private(f, p))
			bad++;
	}
	return bad;
}
