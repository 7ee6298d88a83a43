/* SPDX-License-Identifier: MIT */
/*
 * QEMU-style integration: every vCPU thread runs KVM_RUN and hands its own
 * conversion exits to cvmconv; a listener keeps a VFIO container's IOMMU
 * mappings equal to the shared memory, the job QEMU's RamDiscardManager
 * does for guest_memfd RAM (shared = populated, private = discarded).
 *
 * A translation unit of docs/integration.md: it compiles, but the VMM
 * around it (vm_setup_vfio_ram's caller, vmm_handle_exit) is yours.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>
#include <linux/vfio.h>

#include "cvmconv.h"

#ifndef KVM_EXIT_MEMORY_FAULT /* Linux 6.8+ include/uapi/linux/kvm.h */
#define KVM_EXIT_MEMORY_FAULT 39
#endif

/* VFIO does not promise to unmap ranges other than those mapped
 * (include/uapi/linux/vfio.h, VFIO_IOMMU_UNMAP_DMA), so shared memory is
 * mapped in chunks no larger than the smallest conversion. With CVMCONV_UNALIGNED_REJECT and a 2 MiB
 * granule, guest conversions are 2 MiB aligned and 2 MiB chunks would do. */
#define DMA_CHUNK 4096ULL

struct vm {
	struct cvmconv *conv;
	int vfio_container; /* VFIO container fd with a type1 IOMMU set */
	uint64_t ram_gpa, ram_size;
	uint8_t *ram_hva; /* shared side of guest RAM, mmap'ed MAP_SHARED */
};

struct vcpu {
	struct vm *vm;
	int fd, index;
	struct kvm_run *run; /* mmap of the vCPU fd */
};

/* The VMM's own exit handling (MMIO, PIO, ...); < 0 stops the vCPU. */
int vmm_handle_exit(struct vcpu *cpu);
int vm_setup_vfio_ram(struct vm *vm);
void *vcpu_thread_fn(void *arg);

static int dma_unmap(struct vm *vm, uint64_t gpa, uint64_t size);

/* All of [gpa, gpa + size) or, on failure, none of it. */
static int dma_map(struct vm *vm, uint64_t gpa, uint64_t size)
{
	for (uint64_t off = 0; off < size; off += DMA_CHUNK) {
		struct vfio_iommu_type1_dma_map map = {
			.argsz = sizeof(map),
			.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
			.vaddr = (uint64_t)(uintptr_t)(vm->ram_hva + (gpa + off - vm->ram_gpa)),
			.iova = gpa + off,
			.size = DMA_CHUNK,
		};

		if (ioctl(vm->vfio_container, VFIO_IOMMU_MAP_DMA, &map) != 0) {
			int err = -errno;

			if (off)
				dma_unmap(vm, gpa, off);
			return err;
		}
	}
	return 0;
}

static int dma_unmap(struct vm *vm, uint64_t gpa, uint64_t size)
{
	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap),
		.iova = gpa,
		.size = size, /* covers whole DMA_CHUNK mappings only */
	};

	return ioctl(vm->vfio_container, VFIO_IOMMU_UNMAP_DMA, &unmap) != 0 ? -errno : 0;
}

/* Runs with the region's lock held, ahead of the attribute update: a
 * device must lose a page before the guest owns it privately, and a page
 * turning shared is mapped now so that a failure can still refuse the
 * conversion (the guest then gets -KVM_EPERM). */
static int vfio_before(void *opaque, uint64_t gpa, uint64_t size, bool to_private)
{
	struct vm *vm = opaque;

	return to_private ? dma_unmap(vm, gpa, size) : dma_map(vm, gpa, size);
}

/* result 0: done, nothing to add. -ECANCELED: vetoed or failed, undo
 * before(). An unmap that fails here leaves a stale IOMMU entry: report. */
static void vfio_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	struct vm *vm = opaque;
	int err;

	if (result == 0)
		return;
	err = to_private ? dma_map(vm, gpa, size) : dma_unmap(vm, gpa, size);
	if (err)
		fprintf(stderr, "vfio: undo at gpa 0x%llx: %s\n", (unsigned long long)gpa,
			strerror(-err));
}

/* After cvmconv_add_region(): memory starts shared, so all of it is mapped;
 * from here on the listener keeps the IOMMU in step. */
int vm_setup_vfio_ram(struct vm *vm)
{
	struct cvmconv_listener l = {
		.sz = sizeof(l),
		.before = vfio_before,
		.after = vfio_after,
		.opaque = vm,
	};
	int err = dma_map(vm, vm->ram_gpa, vm->ram_size);

	if (err)
		return err;
	err = cvmconv_add_listener(vm->conv, &l);
	return err < 0 ? err : 0;
}

void *vcpu_thread_fn(void *arg)
{
	struct vcpu *cpu = arg;
	struct kvm_run *run = cpu->run;

	for (;;) {
		int ret = ioctl(cpu->fd, KVM_RUN, 0);
		int err = ret < 0 ? errno : 0;

		if (err == EINTR || err == EAGAIN)
			continue; /* a signal kicked the vCPU out */
		/* A private/shared mismatch is KVM_RUN failing with EFAULT and
		 * exit_reason KVM_EXIT_MEMORY_FAULT (virt/kvm/kvm_main.c
		 * kvm_prepare_memory_fault_exit); any other failure is fatal. */
		if (err && !(err == EFAULT && run->exit_reason == KVM_EXIT_MEMORY_FAULT)) {
			fprintf(stderr, "vCPU %d: KVM_RUN: %s\n", cpu->index, strerror(err));
			break;
		}
		ret = cvmconv_handle_exit(cpu->vm->conv, run);
		if (ret == 1)
			continue; /* converted, hypercall.ret written: re-enter */
		if (ret < 0) {
			/* the host failed, or a memory fault was refused: the
			 * guest cannot continue; QEMU would vm_stop() here */
			fprintf(stderr, "vCPU %d: conversion: %s\n", cpu->index, strerror(-ret));
			break;
		}
		if (vmm_handle_exit(cpu) < 0)
			break;
	}
	return NULL;
}
