/* SPDX-License-Identifier: MIT */
/*
 * The real path: a KVM_X86_SW_PROTECTED_VM with one vCPU.
 *
 *   /dev/kvm: KVM_CHECK_EXTENSION(KVM_CAP_VM_TYPES) has 1 << 1
 *   KVM_CREATE_VM(KVM_X86_SW_PROTECTED_VM)
 *   KVM_ENABLE_CAP(KVM_CAP_EXIT_HYPERCALL, args[0] = 1 << KVM_HC_MAP_GPA_RANGE)
 *   KVM_CREATE_GUEST_MEMFD(16 MiB)                      private side of slot 0
 *   memfd (MFD_HUGETLB 2 MiB, or shmem), mmap           shared side of slot 0
 *   KVM_SET_USER_MEMORY_REGION2 slot 0 + KVM_MEM_GUEST_MEMFD (starts shared)
 *   KVM_SET_USER_MEMORY_REGION2 slot 1, no guest_memfd  (for the refused fault)
 *   KVM_CREATE_VCPU, mmap kvm_run, KVM_SET_SREGS/REGS: 32-bit protected mode
 *
 * Facts from Linux include/uapi/linux/kvm.h, arch/x86/kvm/x86.c
 * (kvm_is_vm_type_supported: SW_PROTECTED needs CONFIG_KVM_SW_PROTECTED_VM
 * and the TDP MMU; __kvm_emulate_hypercall; __kvm_vcpu_halt: without an
 * in-kernel LAPIC, hlt exits with KVM_EXIT_HLT) and arch/x86/kvm/mmu/mmu.c;
 * the recipe is the "Mini-VMM recipe" of the project's KVM-FACTS.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernel_accounting.h"
#include "mini-vmm.h"

/* CR0 bits (Intel SDM vol. 3, 2.5) */
#define CR0_PE (1ULL << 0)
#define CR0_NW (1ULL << 29)
#define CR0_CD (1ULL << 30)
#define CR0_PG (1ULL << 31)

static struct guest_code code;

static int xioctl(int fd, unsigned long req, void *arg)
{
	int r;

	do
		r = ioctl(fd, req, arg);
	while (r < 0 && (errno == EINTR || errno == EAGAIN));
	return r < 0 ? -errno : r;
}

int kvm_probe(char *why, size_t len)
{
#if !defined(__x86_64__)
	snprintf(why, len, "the real path needs x86-64 (KVM_X86_SW_PROTECTED_VM)");
	return 77;
#else
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int types;

	if (kvm < 0) {
		snprintf(why, len, "/dev/kvm: %s", strerror(errno));
		return 77;
	}
	types = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES);
	close(kvm);
	if (types <= 0 || !(types & (1 << KVM_X86_SW_PROTECTED_VM))) {
		snprintf(why, len,
			 "KVM does not offer KVM_X86_SW_PROTECTED_VM (KVM_CAP_VM_TYPES = %d): "
			 "needs x86-64 Linux 6.8+ with CONFIG_KVM_SW_PROTECTED_VM and the TDP MMU",
			 types);
		return 77;
	}
	return 0;
#endif
}

#if defined(__x86_64__)

struct kvm_vcpu_ctx {
	int fd;
	struct kvm_run *run;
	size_t run_size;
};

static struct kvm_vcpu_ctx vcpu = { -1, NULL, 0 };

static int kvm_vcpu_run(void *opaque)
{
	struct kvm_vcpu_ctx *c = opaque;

	return ioctl(c->fd, KVM_RUN, 0) < 0 ? -errno : 0;
}

static int kvm_get_regs(struct vmm *v, struct guest_regs *r)
{
	struct kvm_regs regs;
	int ret = xioctl(vcpu.fd, KVM_GET_REGS, &regs);

	(void)v;
	memset(r, 0, sizeof(*r));
	if (ret < 0)
		return ret;
	r->rax = regs.rax;
	r->rbx = regs.rbx;
	r->rcx = regs.rcx;
	r->rdx = regs.rdx;
	r->rsi = regs.rsi;
	r->rdi = regs.rdi;
	r->rip = regs.rip;
	return 0;
}

/* A VM capability the path cannot do without: 77 with the reason. */
static int need_cap(int vm, long cap, long bits, const char *name, char *why, size_t len)
{
	int r = ioctl(vm, KVM_CHECK_EXTENSION, cap);

	if (r <= 0 || (bits && (r & bits) != bits)) {
		snprintf(why, len, "the SW_PROTECTED VM lacks %s (KVM_CHECK_EXTENSION = %d)", name,
			 r);
		return 77;
	}
	return 0;
}

static int set_slot(int vm, uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size, void *hva,
		    int gmem)
{
	struct kvm_userspace_memory_region2 r = {
		.slot = slot,
		.flags = flags,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)hva,
		.guest_memfd_offset = 0,
		.guest_memfd = (uint32_t)(gmem < 0 ? 0 : gmem),
	};

	return xioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r);
}

/* 32-bit protected mode, flat 4 GiB segments, paging off, CPL 0. The
 * hidden segment state is loaded directly, so no GDT is needed (the guest
 * never reloads a segment register); TR and LDTR keep KVM's reset values. */
static int setup_cpu(int fd)
{
	struct kvm_segment code_seg = {
		.base = 0,
		.limit = 0xffffffff,
		.selector = 0x08,
		.type = 0xb, /* execute/read, accessed */
		.present = 1,
		.dpl = 0, /* CPL 0: KVM answers -KVM_EPERM to hypercalls from CPL > 0 */
		.db = 1,  /* 32-bit default operand size */
		.s = 1,
		.l = 0,
		.g = 1,
	};
	struct kvm_segment data_seg = code_seg;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int ret;

	ret = xioctl(fd, KVM_GET_SREGS, &sregs);
	if (ret < 0)
		return ret;
	data_seg.selector = 0x10;
	data_seg.type = 0x3; /* read/write, accessed */
	sregs.cs = code_seg;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data_seg;
	sregs.cr0 = (sregs.cr0 & ~(CR0_PG | CR0_CD | CR0_NW)) | CR0_PE;
	sregs.efer = 0;
	ret = xioctl(fd, KVM_SET_SREGS, &sregs);
	if (ret < 0)
		return ret;
	memset(&regs, 0, sizeof(regs));
	regs.rip = CODE_GPA;
	regs.rflags = 0x2; /* bit 1 is reserved-one; IF clear: no interrupts */
	return xioctl(fd, KVM_SET_REGS, &regs);
}

static int fail(char *why, size_t len, const char *what, int err)
{
	snprintf(why, len, "%s: %s", what, strerror(-err));
	printf("mini-vmm: %s\n", why);
	return 1;
}

int kvm_run_scenario(struct vmm *v, bool want_huge, char *why, size_t len)
{
	struct kvm_create_guest_memfd gmem = { .size = RAM_SIZE };
	struct kvm_enable_cap cap = { .cap = KVM_CAP_EXIT_HYPERCALL };
	int kvm, ret = 1, r, mmap_size;

	printf("mini-vmm: real KVM path (KVM_X86_SW_PROTECTED_VM)\n");
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return fail(why, len, "/dev/kvm", -errno);
	r = xioctl(kvm, KVM_CREATE_VM, (void *)(uintptr_t)KVM_X86_SW_PROTECTED_VM);
	if (r < 0) {
		ret = fail(why, len, "KVM_CREATE_VM(KVM_X86_SW_PROTECTED_VM)", r);
		goto out;
	}
	v->vm_fd = r;
	ret = need_cap(v->vm_fd, KVM_CAP_USER_MEMORY2, 0, "KVM_CAP_USER_MEMORY2", why, len);
	if (!ret)
		ret = need_cap(v->vm_fd, KVM_CAP_GUEST_MEMFD, 0, "KVM_CAP_GUEST_MEMFD", why, len);
	if (!ret)
		ret = need_cap(v->vm_fd, KVM_CAP_MEMORY_ATTRIBUTES, KVM_MEMORY_ATTRIBUTE_PRIVATE,
			       "KVM_MEMORY_ATTRIBUTE_PRIVATE", why, len);
	if (!ret)
		ret = need_cap(v->vm_fd, KVM_CAP_EXIT_HYPERCALL, 1 << KVM_HC_MAP_GPA_RANGE,
			       "KVM_CAP_EXIT_HYPERCALL for KVM_HC_MAP_GPA_RANGE", why, len);
	if (ret)
		goto out;
	ret = 1;

	/* KVM_HC_MAP_GPA_RANGE exits to userspace instead of -KVM_ENOSYS */
	cap.args[0] = 1ULL << KVM_HC_MAP_GPA_RANGE;
	r = xioctl(v->vm_fd, KVM_ENABLE_CAP, &cap);
	if (r < 0) {
		fail(why, len, "KVM_ENABLE_CAP(KVM_CAP_EXIT_HYPERCALL)", r);
		goto out;
	}
	v->unevictable_base = meminfo_unevictable_bytes();
	r = xioctl(v->vm_fd, KVM_CREATE_GUEST_MEMFD, &gmem);
	if (r < 0) {
		fail(why, len, "KVM_CREATE_GUEST_MEMFD", r);
		goto out;
	}
	v->private_fd = r;
	v->private_is_gmem = true;
	printf("private backing: guest_memfd (KVM_CREATE_GUEST_MEMFD, %" PRIu64 " MiB)\n",
	       RAM_SIZE / MiB);
	if (vmm_setup_backings(v, want_huge))
		goto out;

	/* the guest: assembled from the scenario, copied to the shared side */
	if (guest_code_build(&code, PATH_KVM, v->model.shared_page)) {
		printf("mini-vmm: guest code too large\n");
		goto out;
	}
	memcpy(v->shared_map + (CODE_GPA - GUEST_BASE), code.bytes, code.len);
	printf("guest          : %zu bytes of 32-bit code at %#" PRIx64 ", %zu vmcall sites\n",
	       code.len, CODE_GPA, code.nhypercall_sites);

	r = set_slot(v->vm_fd, 0, KVM_MEM_GUEST_MEMFD, GUEST_BASE, RAM_SIZE, v->shared_map,
		     v->private_fd);
	if (!r)
		r = set_slot(v->vm_fd, 1, 0, NOSLOT_GPA, NOSLOT_SIZE, v->noslot_map, -1);
	if (r < 0) {
		fail(why, len, "KVM_SET_USER_MEMORY_REGION2", r);
		goto out;
	}
	if (vmm_setup_conv(v))
		goto out;

	r = xioctl(v->vm_fd, KVM_CREATE_VCPU, (void *)0);
	if (r < 0) {
		fail(why, len, "KVM_CREATE_VCPU", r);
		goto out;
	}
	vcpu.fd = r;
	mmap_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (mmap_size < (int)sizeof(struct kvm_run)) {
		fail(why, len, "KVM_GET_VCPU_MMAP_SIZE", mmap_size < 0 ? -errno : -EINVAL);
		goto out;
	}
	vcpu.run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu.fd, 0);
	if (vcpu.run == MAP_FAILED) {
		vcpu.run = NULL;
		fail(why, len, "mmap(kvm_run)", -errno);
		goto out;
	}
	vcpu.run_size = (size_t)mmap_size;
	r = setup_cpu(vcpu.fd);
	if (r < 0) {
		fail(why, len, "KVM_SET_SREGS/KVM_SET_REGS", r);
		goto out;
	}
	v->get_regs = kvm_get_regs;

	vmm_start(v);
	if (vmm_run_loop(v, vcpu.run, kvm_vcpu_run, &vcpu) < 0) {
		struct guest_regs gr;

		if (kvm_get_regs(v, &gr) == 0)
			printf("     vCPU: rip %#" PRIx64 " rax %#" PRIx64 " rsi %#" PRIx64
			       " exit reason %u\n",
			       gr.rip, gr.rax, gr.rsi, vcpu.run->exit_reason);
	}
	ret = vmm_report(v);
out:
	if (vcpu.run)
		munmap(vcpu.run, vcpu.run_size);
	if (vcpu.fd >= 0)
		close(vcpu.fd);
	vcpu.run = NULL;
	vcpu.fd = -1;
	if (v->vm_fd >= 0)
		close(v->vm_fd);
	v->vm_fd = -1;
	vmm_teardown(v);
	close(kvm);
	return ret;
}

#else /* !__x86_64__ */

int kvm_run_scenario(struct vmm *v, bool want_huge, char *why, size_t len)
{
	(void)v;
	(void)want_huge;
	(void)code;
	snprintf(why, len, "the real path needs x86-64");
	return 77;
}

#endif
