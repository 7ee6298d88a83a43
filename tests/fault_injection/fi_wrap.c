/* SPDX-License-Identifier: MIT */
/* Fault injection: the libc wrappers (--wrap) that fail allocations and
 * kernel calls on schedule, and the per-site, per-errno figures. */
#include "fi.h"

/* ---- figures: faults injected per site and errno ---- */

const int errnos[NERR_MAX] = { EINTR, EAGAIN, ENOMEM, EFAULT, EIO, EINVAL };

const char *const site_names[S_COUNT] = {
	"attr update, forward",	     "attr update, rollback",
	"attr update, add_region",   "punch 4 KiB (shmem)",
	"punch huge (hugetlb)",	     "punch in flush",
	"madvise (shared_hva)",	     "kvm.c ioctl",
	"kvm.c fallocate",	     "kvm.c madvise",
	"alloc shared (fallocate)",  "in-place update, forward",
	"in-place update, rollback", "malloc/calloc/realloc",
};

uint64_t injected[S_COUNT][NERR_MAX];
bool huge_skipped;

unsigned err_index(int err)
{
	for (unsigned i = 0; i < NERR; i++)
		if (errnos[i] == err)
			return i;
	return 0;
}

/* ---- allocation wrappers ---- */

struct fi_alloc alloc;

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
void alloc_arm(uint64_t n)
{
	alloc.armed = true;
	alloc.count = 0;
	alloc.fail_at = n;
	alloc.hit = false;
}

void alloc_disarm(void)
{
	alloc.armed = false;
}

/* ---- kernel call wrappers (the default ops of src/kvm.c) ---- */

struct fi_kern kern = { .vm_fd = -2 };

int sched_next(struct sched *s)
{
	s->calls++;
	if (s->pos < s->n)
		return s->err[s->pos++];
	if (s->repeat && s->n)
		return s->err[s->n - 1];
	return 0;
}

void sched_set(struct sched *s, const int *errs, unsigned n, bool repeat)
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
