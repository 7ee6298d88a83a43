/* SPDX-License-Identifier: MIT */
/*
 * A real KVM_X86_SW_PROTECTED_VM for the lab programs (tests/lab/): one
 * memslot backed by a guest_memfd (private side) and a shared memfd, a vCPU
 * for KVM_PRE_FAULT_MEMORY, and the attribute oracle built on it.
 *
 * KVM_PRE_FAULT_MEMORY (virt/kvm/kvm_main.c kvm_vcpu_pre_fault_memory, 6.10+)
 * maps a range into the guest from the side its attribute names, without
 * KVM_RUN. With both sides of a page punched first, the page's attribute is
 * the side that is allocated afterwards: the shared memfd shows it in
 * mincore(); guest_memfd pages never show in st_blocks (measured in the lab).
 */
#ifndef CVMCONV_LAB_KVM_H
#define CVMCONV_LAB_KVM_H

#include <stdbool.h>
#include <stdint.h>

#include "kvm_compat.h"

#ifndef KVM_PRE_FAULT_MEMORY
struct kvm_pre_fault_memory {
	__u64 gpa;
	__u64 size;
	__u64 flags;
	__u64 padding[5];
};
#define KVM_PRE_FAULT_MEMORY _IOWR(KVMIO, 0xd5, struct kvm_pre_fault_memory)
#endif
_Static_assert(sizeof(struct kvm_pre_fault_memory) == 64, "kvm_pre_fault_memory size");

/* Exit status when the machine has no SW_PROTECTED VM (ctest/lab skip). */
#define LAB_SKIP 77

struct lab_vm {
	int kvm, vm, vcpu, gmem, shared_fd;
	uint8_t *shared;    /* mmap of the shared memfd (the memslot's hva) */
	uint64_t gpa, size; /* the memslot */
};

/* Create the VM, guest_memfd, a shmem shared memfd and memslot 0 at @gpa of
 * @size, and a vCPU. Returns 0, LAB_SKIP with *why set when the kernel has
 * no SW_PROTECTED VM, or -errno with *why naming the call. */
int lab_vm_open(struct lab_vm *v, uint64_t gpa, uint64_t size, const char **why);
void lab_vm_close(struct lab_vm *v);
/* 0 or -errno: the kernel's own answer. */
int lab_set_attributes(const struct lab_vm *v, uint64_t gpa, uint64_t size, uint64_t attributes,
		       uint64_t flags);
/* The attribute of the slot page at @gpa as KVM applies it: 1 private,
 * 0 shared, -errno. Punches both sides of the page first. */
int lab_page_private(const struct lab_vm *v, uint64_t gpa);

#endif
