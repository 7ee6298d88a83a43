/* SPDX-License-Identifier: MIT */
/*
 * The default kernel ops (kvm.h): what cvmconv does when the VMM passes no
 * cvmconv_ops member. Each returns 0 or a negative errno. Where the op has
 * an opaque pointer it is the address of the VM fd; nothing here knows the
 * library's state.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/types.h>

#include "cvmconv.h"
#include "kvm.h"
#include "kvm_compat.h"

/* Bound on retries of a call that keeps being interrupted: a signal storm
 * must not turn into an endless loop on a vCPU thread. */
#define KVM_RETRY_MAX 1000

_Static_assert(KVM_SET_MEMORY_ATTRIBUTES2_ZERO == CVMCONV_CONTENT_ZERO, "content mode ZERO");
_Static_assert(KVM_SET_MEMORY_ATTRIBUTES2_PRESERVE == CVMCONV_CONTENT_PRESERVE,
	       "content mode PRESERVE");

int kvm_set_memory_attributes(void *vm_fd, uint64_t gpa, uint64_t size, uint64_t attributes)
{
	const int fd = *(const int *)vm_fd;
	struct kvm_memory_attributes attr = {
		.address = gpa,
		.size = size,
		.attributes = attributes,
		.flags = 0, /* kvm_vm_ioctl_set_mem_attributes rejects any flag */
	};
	int err = EAGAIN;

	for (int i = 0; i < KVM_RETRY_MAX; i++) {
		if (ioctl(fd, KVM_SET_MEMORY_ATTRIBUTES, &attr) == 0)
			return 0;
		err = errno;
		/* virt/kvm/kvm_main.c: the update can be interrupted by a
		 * signal (-EINTR) or find the range busy (-EAGAIN); the ioctl
		 * writes nothing back, so retrying the same range is correct. */
		if (err == EAGAIN)
			sched_yield();
		else if (err != EINTR)
			break;
	}
	return -err;
}

int kvm_punch(void *vm_fd, int fd, uint64_t offset, uint64_t len)
{
	(void)vm_fd;
	if (offset > INT64_MAX || len > INT64_MAX - offset)
		return -EINVAL;
	/* KEEP_SIZE is mandatory with PUNCH_HOLE; it is also the only punch
	 * mode guest_memfd accepts (virt/kvm/guest_memfd.c). */
	for (int i = 0; i < KVM_RETRY_MAX; i++) {
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset,
			      (off_t)len) == 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
	return -EINTR;
}

int kvm_allocate(int fd, uint64_t offset, uint64_t len)
{
	if (offset > INT64_MAX || len > INT64_MAX - offset)
		return -EINVAL;
	/* Mode 0 without KEEP_SIZE: the range lies inside the file (the
	 * region was checked at add), so the size does not change. Pages
	 * already there stay as they are (shmem_fallocate, hugetlbfs_fallocate
	 * skip them). EINTR is not retried: shmem_fallocate stops on a
	 * pending signal, and the request is rolled back instead. */
	if (fallocate(fd, 0, (off_t)offset, (off_t)len) != 0)
		return -errno;
	return 0;
}

int kvm_discard_hva(void *vm_fd, void *hva, uint64_t len)
{
	(void)vm_fd;
	if (len > SIZE_MAX)
		return -EINVAL;
	/* MADV_REMOVE frees the backing store of a shared mapping (it punches
	 * the file behind it). MADV_DONTNEED would only drop this process's
	 * page table entries: for MAP_SHARED memfd/hugetlbfs memory the pages
	 * stay in the page cache and nothing is freed. */
	if (madvise(hva, (size_t)len, MADV_REMOVE) != 0)
		return -errno;
	return 0;
}

int kvm_discard_private_hva(void *vm_fd, void *hva, uint64_t len)
{
	(void)vm_fd;
	if (len > SIZE_MAX)
		return -EINVAL;
	/* A MAP_PRIVATE mapping (e.g. anonymous guest RAM, QEMU's default
	 * memory-backend-ram): madvise_remove (mm/madvise.c) refuses it with
	 * EINVAL, and MADV_DONTNEED is what frees its anonymous pages. */
	if (madvise(hva, (size_t)len, MADV_DONTNEED) != 0)
		return -errno;
	return 0;
}

int kvm_probe_private_attribute(int vm_fd)
{
	int mask = -1;

	for (int i = 0; i < KVM_RETRY_MAX && mask < 0; i++) {
		/* On a VM fd this returns the attributes that VM supports:
		 * PRIVATE only for VM types with private memory. */
		mask = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_ATTRIBUTES);
		if (mask < 0 && errno != EINTR)
			break;
	}
	if (mask < 0) {
		/* ENOTTY/EINVAL: not a KVM fd, or a kernel without the
		 * capability machinery; either way no private memory. */
		if (errno == ENOTTY || errno == EINVAL || errno == ENOSYS)
			return -EOPNOTSUPP;
		return -errno;
	}
	return ((uint64_t)mask & KVM_MEMORY_ATTRIBUTE_PRIVATE) ? 0 : -EOPNOTSUPP;
}

int kvm_set_gmem_attributes(void *vm_fd, int gmem_fd, uint64_t offset, uint64_t size,
			    uint64_t attributes, uint64_t flags, uint64_t *error_offset)
{
	struct kvm_memory_attributes2 attr;
	int err = EINTR;

	(void)vm_fd;
	for (int i = 0; i < KVM_RETRY_MAX && err == EINTR; i++) {
		memset(&attr, 0, sizeof(attr)); /* reserved[] must be 0 */
		attr.offset = offset;
		attr.size = size;
		attr.attributes = attributes;
		attr.flags = flags;
		if (ioctl(gmem_fd, KVM_SET_MEMORY_ATTRIBUTES2, &attr) == 0)
			return 0;
		err = errno;
	}
	/* EAGAIN: a page had unexpected references; the series writes its
	 * offset back. The caller decides whether to retry (it must tell
	 * listeners and count it), so it is returned here, not looped on. */
	if (err == EAGAIN && error_offset)
		*error_offset = attr.error_offset;
	return -err;
}

int kvm_probe_gmem_attributes2(int gmem_fd)
{
	struct kvm_memory_attributes2 attr;

	for (int i = 0; i < KVM_RETRY_MAX; i++) {
		/* A zero-size request converts nothing: a kernel with the
		 * ioctl refuses it with EINVAL (or accepts it); one without
		 * it answers ENOTTY (guest_memfd has no ioctls in 6.12, and
		 * a tmpfs/hugetlbfs file none of KVM's). */
		memset(&attr, 0, sizeof(attr));
		if (ioctl(gmem_fd, KVM_SET_MEMORY_ATTRIBUTES2, &attr) == 0 || errno == EINVAL)
			return 0;
		if (errno != EINTR)
			break;
	}
	if (errno == ENOTTY || errno == EOPNOTSUPP || errno == ENOSYS || errno == EINTR)
		return -EOPNOTSUPP;
	return -errno;
}

/* One KVM_CHECK_EXTENSION answer (>= 0), or -1. */
static int check_extension(int fd, long cap)
{
	int ret = -1;

	for (int i = 0; i < KVM_RETRY_MAX; i++) {
		ret = ioctl(fd, KVM_CHECK_EXTENSION, cap);
		if (ret >= 0 || errno != EINTR)
			break;
	}
	return ret;
}

uint64_t kvm_gmem_content_modes(int vm_fd)
{
	int attrs, modes;

	if (vm_fd < 0)
		return 0;
	/* Capability numbers moved between versions of the series: an
	 * answer counts only when both agree with what the ioctl (already
	 * found on the fd) implies, guest_memfd attributes with PRIVATE in
	 * them and a mode mask with no unknown bit. Otherwise only
	 * CVMCONV_CONTENT_UNSPECIFIED (0), which every version takes. */
	attrs = check_extension(vm_fd, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES);
	if (attrs <= 0 || !((uint64_t)attrs & KVM_MEMORY_ATTRIBUTE_PRIVATE) ||
	    ((uint64_t)attrs & ~KVM_MEMORY_ATTRIBUTE_PRIVATE))
		return 0;
	modes = check_extension(vm_fd, KVM_CAP_MEMORY_ATTRIBUTES2_FLAGS);
	if (modes <= 0 || ((uint64_t)modes & ~(KVM_SET_MEMORY_ATTRIBUTES2_ZERO |
					       KVM_SET_MEMORY_ATTRIBUTES2_PRESERVE)))
		return 0;
	return (uint64_t)modes;
}
