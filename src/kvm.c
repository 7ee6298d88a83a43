/* SPDX-License-Identifier: MIT */
/*
 * The default kernel ops: what cvmconv does when the VMM passes no
 * cvmconv_ops member. Each returns 0 or a negative errno. opaque is the
 * context (struct cvmconv *), set by context.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/types.h>

#include "internal.h"
#include "kvm_compat.h"

/* Bound on retries of a call that keeps being interrupted: a signal storm
 * must not turn into an endless loop on a vCPU thread. */
#define KVM_RETRY_MAX 1000

int kvm_set_memory_attributes(void *opaque, uint64_t gpa, uint64_t size, uint64_t attributes)
{
	const struct cvmconv *c = opaque;
	struct kvm_memory_attributes attr = {
		.address = gpa,
		.size = size,
		.attributes = attributes,
		.flags = 0, /* kvm_vm_ioctl_set_mem_attributes rejects any flag */
	};
	int err = EAGAIN;

	for (int i = 0; i < KVM_RETRY_MAX; i++) {
		if (ioctl(c->vm_fd, KVM_SET_MEMORY_ATTRIBUTES, &attr) == 0)
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

int kvm_punch(void *opaque, int fd, uint64_t offset, uint64_t len)
{
	(void)opaque;
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

int kvm_discard_hva(void *opaque, void *hva, uint64_t len)
{
	(void)opaque;
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

int kvm_discard_private_hva(void *opaque, void *hva, uint64_t len)
{
	(void)opaque;
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
