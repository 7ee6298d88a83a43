/* SPDX-License-Identifier: MIT */
/*
 * kvmtool-style integration: guest RAM set up once (guest_memfd private
 * side, memfd or hugetlbfs shared side, one memslot), and the vCPU run loop's
 * switch on exit_reason gains two cases. kvmtool's loop dies on any KVM_RUN
 * error but EINTR/EAGAIN; a confidential guest also needs EFAULT with
 * KVM_EXIT_MEMORY_FAULT to reach the switch.
 *
 * A translation unit of docs/integration.md: it compiles, but the VMM
 * around it (kvm_cpu_emulate_io, kvm_cpu_emulate_mmio) is yours.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <linux/kvm_para.h>

#include "cvmconv.h"

/* The guest_memfd slice of include/uapi/linux/kvm.h (Linux 6.8+), which
 * Debian 12's 6.1 headers lack; sizes checked below. */
#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39
#endif
#define VM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct vm_create_guest_memfd)
#define VM_SET_USER_MEMORY_REGION2 _IOW(KVMIO, 0x49, struct vm_memory_region2)
#define VM_MEM_GUEST_MEMFD (1u << 2)
struct vm_create_guest_memfd {
	uint64_t size, flags, reserved[6];
};
struct vm_memory_region2 {
	uint32_t slot, flags;
	uint64_t guest_phys_addr, memory_size, userspace_addr, guest_memfd_offset;
	uint32_t guest_memfd, pad1;
	uint64_t pad2[14];
};
_Static_assert(sizeof(struct vm_create_guest_memfd) == 64, "kvm_create_guest_memfd");
_Static_assert(sizeof(struct vm_memory_region2) == 160, "kvm_userspace_memory_region2");

#define SZ_2M (2ULL << 20)

struct kvm {
	int vm_fd;
	struct cvmconv *conv;
	int gmem_fd, ram_fd;
	void *ram; /* shared side, mapped */
	uint64_t ram_size;
};

struct kvm_cpu {
	struct kvm *kvm;
	int vcpu_fd;
	struct kvm_run *kvm_run;
};

int kvm_cpu_emulate_io(struct kvm_cpu *cpu);
int kvm_cpu_emulate_mmio(struct kvm_cpu *cpu);
int kvm_guest_ram_init(struct kvm *kvm, uint64_t ram_size, bool hugetlbfs);
int kvm_cpu_start(struct kvm_cpu *cpu);

/* Guest RAM at gpa 0. hugetlbfs: the shared side uses 2 MiB pages (kvmtool's
 * --hugetlbfs), and guest conversions that would split them are refused.
 * On failure the caller closes what was opened (fds start at -1). */
int kvm_guest_ram_init(struct kvm *kvm, uint64_t ram_size, bool hugetlbfs)
{
	struct vm_create_guest_memfd gmem = { .size = ram_size };
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_EXIT_HYPERCALL,
		.args[0] = 1ULL << KVM_HC_MAP_GPA_RANGE,
	};
	struct cvmconv_config cfg = {
		.sz = sizeof(cfg),
		.vm_fd = kvm->vm_fd,
		.unaligned = CVMCONV_UNALIGNED_LOG,
	};
	struct cvmconv_region reg = { .sz = sizeof(reg), .gpa = 0, .size = ram_size };
	struct vm_memory_region2 slot = { .slot = 0, .flags = VM_MEM_GUEST_MEMFD };
	int ret;

	/* KVM_HC_MAP_GPA_RANGE must exit to userspace (arch/x86/kvm/x86.c) */
	if (ioctl(kvm->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
		return -errno;
	kvm->ram_size = ram_size;
	kvm->gmem_fd = ioctl(kvm->vm_fd, VM_CREATE_GUEST_MEMFD, &gmem);
	if (kvm->gmem_fd < 0)
		return -errno;
	kvm->ram_fd = hugetlbfs ? cvmconv_hugetlbfs_create(ram_size, SZ_2M)
				: cvmconv_memfd_create("guest-ram", ram_size, 4096);
	if (kvm->ram_fd < 0)
		return kvm->ram_fd;
	kvm->ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_SHARED, kvm->ram_fd, 0);
	if (kvm->ram == MAP_FAILED)
		return -errno;

	slot.guest_phys_addr = 0;
	slot.memory_size = ram_size;
	slot.userspace_addr = (uint64_t)(uintptr_t)kvm->ram;
	slot.guest_memfd = (uint32_t)kvm->gmem_fd;
	if (ioctl(kvm->vm_fd, VM_SET_USER_MEMORY_REGION2, &slot) < 0)
		return -errno;

	ret = cvmconv_create(&cfg, &kvm->conv); /* probes KVM_CAP_MEMORY_ATTRIBUTES */
	if (ret)
		return ret;
	reg.private_fd = kvm->gmem_fd;
	reg.shared_fd = kvm->ram_fd;
	/* per region: refuse 4 KiB conversions only where they split huge pages */
	reg.unaligned = hugetlbfs ? CVMCONV_UNALIGNED_REJECT : -1;
	return cvmconv_add_region(kvm->conv, &reg); /* memory starts shared */
}

/* The vCPU thread's loop. 0 on shutdown, -errno when the VM must stop. */
int kvm_cpu_start(struct kvm_cpu *cpu)
{
	struct kvm_run *run = cpu->kvm_run;

	for (;;) {
		int ret;

		if (ioctl(cpu->vcpu_fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (!(errno == EFAULT && run->exit_reason == KVM_EXIT_MEMORY_FAULT))
				return -errno;
		}

		switch (run->exit_reason) {
		case KVM_EXIT_HYPERCALL:
		case KVM_EXIT_MEMORY_FAULT:
			ret = cvmconv_handle_exit(cpu->kvm->conv, run);
			if (ret < 0)
				return ret;
			/* 0: a hypercall other than MAP_GPA_RANGE, which only
			 * KVM_CAP_EXIT_HYPERCALL could have let through */
			if (ret == 0 && run->exit_reason == KVM_EXIT_HYPERCALL)
				run->hypercall.ret = (uint64_t)-CVMCONV_KVM_ENOSYS;
			break;
		case KVM_EXIT_IO:
			if (kvm_cpu_emulate_io(cpu) < 0)
				return -EIO;
			break;
		case KVM_EXIT_MMIO:
			if (kvm_cpu_emulate_mmio(cpu) < 0)
				return -EIO;
			break;
		case KVM_EXIT_SHUTDOWN:
		case KVM_EXIT_SYSTEM_EVENT:
			return 0;
		default:
			fprintf(stderr, "unhandled exit reason %u\n", run->exit_reason);
			return -ENOSYS;
		}
	}
}
