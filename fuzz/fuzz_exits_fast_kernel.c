/* SPDX-License-Identifier: MIT */
/* fuzz_exits_fast: the model kernel behind the wrapped ioctl, fallocate,
 * madvise and fopen (attributes, punches, allocations, injected failures),
 * and the listener. */
#include "fuzz_exits_fast.h"

/* no coverage in the harness: see fuzz_exits_fast.h */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#endif

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

int fz_before(void *opaque, uint64_t gpa, uint64_t size, bool to_private)
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

void fz_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
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

void fz_log(void *opaque, int level, const char *msg)
{
	size_t len = strlen(msg);

	(void)opaque;
	CHECK(level >= LOG_EMERG && level <= LOG_DEBUG, "log level %d", level);
	CHECK(len > 0 && len < 256 && msg[len - 1] != '\n', "log line \"%s\"", msg);
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
