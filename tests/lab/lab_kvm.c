/* SPDX-License-Identifier: MIT */
/* The lab's real SW_PROTECTED VM (see lab_kvm.h). */
#include "lab_kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096ULL

static int xioctl(int fd, unsigned long req, void *arg)
{
	int r;

	do
		r = ioctl(fd, req, arg);
	while (r < 0 && (errno == EINTR || errno == EAGAIN));
	return r < 0 ? -errno : r;
}

int lab_vm_open(struct lab_vm *v, uint64_t gpa, uint64_t size, const char **why)
{
	struct kvm_create_guest_memfd gm = { .size = size };
	struct kvm_userspace_memory_region2 slot = { 0 };
	int r;

	memset(v, 0, sizeof(*v));
	v->kvm = v->vm = v->vcpu = v->gmem = v->shared_fd = -1;
	v->gpa = gpa;
	v->size = size;
	v->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (v->kvm < 0) {
		*why = "no /dev/kvm";
		return LAB_SKIP;
	}
	r = xioctl(v->kvm, KVM_CHECK_EXTENSION, (void *)(uintptr_t)KVM_CAP_VM_TYPES);
	if (r <= 0 || !(r & (1 << KVM_X86_SW_PROTECTED_VM))) {
		*why = "KVM_CAP_VM_TYPES lacks KVM_X86_SW_PROTECTED_VM";
		return LAB_SKIP;
	}
	v->vm = xioctl(v->kvm, KVM_CREATE_VM, (void *)(uintptr_t)KVM_X86_SW_PROTECTED_VM);
	if (v->vm < 0) {
		*why = "KVM_CREATE_VM(KVM_X86_SW_PROTECTED_VM)";
		return v->vm;
	}
	v->gmem = xioctl(v->vm, KVM_CREATE_GUEST_MEMFD, &gm);
	if (v->gmem < 0) {
		*why = "KVM_CREATE_GUEST_MEMFD";
		return v->gmem;
	}
	v->shared_fd = memfd_create("lab-shared", MFD_CLOEXEC);
	if (v->shared_fd < 0 || ftruncate(v->shared_fd, (off_t)size) < 0) {
		*why = "memfd_create";
		return -errno;
	}
	v->shared = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, v->shared_fd, 0);
	if (v->shared == MAP_FAILED) {
		v->shared = NULL;
		*why = "mmap of the shared memfd";
		return -errno;
	}
	slot.slot = 0;
	slot.flags = KVM_MEM_GUEST_MEMFD;
	slot.guest_phys_addr = gpa;
	slot.memory_size = size;
	slot.userspace_addr = (uint64_t)(uintptr_t)v->shared;
	slot.guest_memfd = (uint32_t)v->gmem;
	slot.guest_memfd_offset = 0;
	r = xioctl(v->vm, KVM_SET_USER_MEMORY_REGION2, &slot);
	if (r < 0) {
		*why = "KVM_SET_USER_MEMORY_REGION2";
		return r;
	}
	v->vcpu = xioctl(v->vm, KVM_CREATE_VCPU, (void *)0);
	if (v->vcpu < 0) {
		*why = "KVM_CREATE_VCPU";
		return v->vcpu;
	}
	return 0;
}

void lab_vm_close(struct lab_vm *v)
{
	if (v->shared)
		munmap(v->shared, v->size);
	int fds[] = { v->vcpu, v->gmem, v->shared_fd, v->vm, v->kvm };

	for (unsigned i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	memset(v, 0, sizeof(*v));
}

int lab_set_attributes(const struct lab_vm *v, uint64_t gpa, uint64_t size, uint64_t attributes,
		       uint64_t flags)
{
	struct kvm_memory_attributes a = { gpa, size, attributes, flags };
	int r = ioctl(v->vm, KVM_SET_MEMORY_ATTRIBUTES, &a);

	return r < 0 ? -errno : 0;
}

int lab_page_private(const struct lab_vm *v, uint64_t gpa)
{
	uint64_t off = gpa - v->gpa;
	struct kvm_pre_fault_memory pf = { .gpa = gpa, .size = PAGE };
	unsigned char vec = 0;
	int r;

	/* nothing of the page on either side, so nothing is mapped either
	 * (both punches invalidate the guest's mapping of it) */
	if (fallocate(v->shared_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)PAGE) < 0 ||
	    fallocate(v->gmem, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)PAGE) < 0)
		return -errno;
	/* the ioctl advances gpa/size as it goes; it may stop early */
	while (pf.size) {
		r = ioctl(v->vcpu, KVM_PRE_FAULT_MEMORY, &pf);
		if (r < 0 && errno != EINTR && errno != EAGAIN)
			return -errno;
	}
	if (mincore(v->shared + off, PAGE, &vec) < 0)
		return -errno;
	return !(vec & 1);
}
