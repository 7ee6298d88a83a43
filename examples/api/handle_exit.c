/* SPDX-License-Identifier: MIT */
/*
 * cvmconv_handle_exit() on the two exits it owns, built by hand the way
 * KVM fills struct kvm_run: a KVM_HC_MAP_GPA_RANGE hypercall exit (3) and
 * a KVM_EXIT_MEMORY_FAULT (39), and an exit it does not own.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "cvmconv.h"

/* include/uapi/linux/kvm.h (6.8+); older headers lack the memory_fault
 * member, so its fields are written at their offsets: the exit union starts
 * at byte 32, memory_fault is { u64 flags, gpa, size; } there. */
#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39
#endif
#define MEMORY_EXIT_FLAG_PRIVATE (1ULL << 3)
_Static_assert(offsetof(struct kvm_run, hypercall) == 32, "exit union at 32");

#define MiB (1024 * 1024ULL)

static int set_attributes(void *opaque, uint64_t gpa, uint64_t size, uint64_t attributes)
{
	(void)opaque, (void)gpa, (void)size, (void)attributes;
	return 0; /* a VMM without this op gets the real KVM_SET_MEMORY_ATTRIBUTES */
}

static void memory_fault(struct kvm_run *run, uint64_t gpa, uint64_t size, bool to_private)
{
	uint64_t flags = to_private ? MEMORY_EXIT_FLAG_PRIVATE : 0;

	memset(run, 0, sizeof(*run));
	run->exit_reason = KVM_EXIT_MEMORY_FAULT;
	memcpy((char *)run + 32, &flags, 8);
	memcpy((char *)run + 40, &gpa, 8);
	memcpy((char *)run + 48, &size, 8);
}

int main(void)
{
	static const struct cvmconv_ops ops = { .set_memory_attributes = set_attributes };
	struct cvmconv_config cfg = { .sz = sizeof(cfg), .vm_fd = -1, .ops = &ops };
	struct cvmconv_region reg = {
		.sz = sizeof(reg), .gpa = 0, .size = 16 * MiB, .unaligned = -1
	};
	struct kvm_run run;
	struct cvmconv *conv;
	int ret, bad = 0;

	reg.private_fd = cvmconv_memfd_create("private", reg.size, 4096);
	reg.shared_fd = cvmconv_memfd_create("shared", reg.size, 4096);
	if (cvmconv_create(&cfg, &conv) || cvmconv_add_region(conv, &reg))
		return 1;

	/* what KVM leaves in kvm_run for a guest's KVM_HC_MAP_GPA_RANGE */
	memset(&run, 0, sizeof(run));
	run.exit_reason = KVM_EXIT_HYPERCALL;
	run.hypercall.nr = 12;		 /* KVM_HC_MAP_GPA_RANGE */
	run.hypercall.args[0] = 4 * MiB; /* gpa */
	run.hypercall.args[1] = 512;	 /* npages, 4 KiB units */
	run.hypercall.args[2] = CVMCONV_MAP_GPA_RANGE_ENCRYPTED;
	ret = cvmconv_handle_exit(conv, &run);
	printf("hypercall: %d, hypercall.ret %" PRId64 "\n", ret, (int64_t)run.hypercall.ret);
	bad |= ret != 1 || run.hypercall.ret != 0;

	/* reserved attribute bit: answered with -KVM_EINVAL, nothing changes */
	run.hypercall.args[2] = 1ULL << 7;
	ret = cvmconv_handle_exit(conv, &run);
	printf("hostile hypercall: %d, hypercall.ret %" PRId64 "\n", ret,
	       (int64_t)run.hypercall.ret);
	bad |= ret != 1 || run.hypercall.ret != (uint64_t)-CVMCONV_KVM_EINVAL;

	/* the guest touched 8 MiB as private while it was shared */
	memory_fault(&run, 8 * MiB, 4096, true);
	ret = cvmconv_handle_exit(conv, &run);
	printf("memory fault: %d, page now %s\n", ret,
	       cvmconv_is_private(conv, 8 * MiB) == 1 ? "private" : "shared");
	bad |= ret != 1;

	/* a memory fault outside guest memory cannot be answered: stop the vCPU */
	memory_fault(&run, 64 * MiB, 4096, true);
	ret = cvmconv_handle_exit(conv, &run);
	printf("memory fault outside memory: %d (%s)\n", ret, strerror(-ret));
	bad |= ret != -EFAULT;

	/* not a conversion exit: 0, for the VMM's own handling */
	memset(&run, 0, sizeof(run));
	run.exit_reason = KVM_EXIT_IO;
	ret = cvmconv_handle_exit(conv, &run);
	printf("KVM_EXIT_IO: %d\n", ret);
	bad |= ret != 0;

	cvmconv_destroy(conv);
	close(reg.private_fd);
	close(reg.shared_fd);
	return bad;
}
