/* SPDX-License-Identifier: MIT */
/*
 * The default kernel ops (kvm.c): what cvmconv calls when the VMM passes no
 * cvmconv_ops member. The bottom of src/: it knows the kernel's uAPI
 * (kvm_compat.h) and nothing of the library's state, so the flow from
 * exit.c down ends here. Each returns 0 or a negative errno. Where an op's
 * signature has an opaque pointer, the library passes the address of the
 * VM fd (const int *).
 */
#ifndef CVMCONV_KVM_H
#define CVMCONV_KVM_H

#include <stdint.h>

#ifndef HIDDEN
#define HIDDEN __attribute__((visibility("hidden")))
#endif

/* KVM_SET_MEMORY_ATTRIBUTES on *(const int *)@vm_fd; EINTR and EAGAIN
 * retried (bounded). */
HIDDEN int kvm_set_memory_attributes(void *vm_fd, uint64_t gpa, uint64_t size, uint64_t attributes);
HIDDEN int kvm_punch(void *vm_fd, int fd, uint64_t offset, uint64_t len);
/* madvise(MADV_REMOVE) of a MAP_SHARED mapping */
HIDDEN int kvm_discard_hva(void *vm_fd, void *hva, uint64_t len);
/* madvise(MADV_DONTNEED) of a MAP_PRIVATE mapping */
HIDDEN int kvm_discard_private_hva(void *vm_fd, void *hva, uint64_t len);
/* fallocate(mode 0): allocate the range (CVMCONV_REGION_ALLOC_SHARED) */
HIDDEN int kvm_allocate(int fd, uint64_t offset, uint64_t len);
/* 0 when the VM supports KVM_MEMORY_ATTRIBUTE_PRIVATE, else -EOPNOTSUPP or
 * the ioctl's -errno */
HIDDEN int kvm_probe_private_attribute(int vm_fd);
/* KVM_SET_MEMORY_ATTRIBUTES2 on @gmem_fd; EINTR retried (bounded); on
 * -EAGAIN *@error_offset is the busy page the kernel named */
HIDDEN int kvm_set_gmem_attributes(void *vm_fd, int gmem_fd, uint64_t offset, uint64_t size,
				   uint64_t attributes, uint64_t flags, uint64_t *error_offset);
/* 0 when @gmem_fd takes KVM_SET_MEMORY_ATTRIBUTES2, -EOPNOTSUPP when the
 * kernel lacks it, or another -errno (EBADF). */
HIDDEN int kvm_probe_gmem_attributes2(int gmem_fd);
/* Content modes the kernel enumerates (0 when it enumerates none or the
 * answer cannot be trusted). */
HIDDEN uint64_t kvm_gmem_content_modes(int vm_fd);

#endif
