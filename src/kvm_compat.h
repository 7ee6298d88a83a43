/* SPDX-License-Identifier: MIT */
/*
 * The slice of the KVM UAPI that cvmconv needs and that older system headers
 * (Debian 12 ships Linux 6.1 headers) lack: memory attributes, guest_memfd,
 * KVM_EXIT_MEMORY_FAULT, VM types and the KVM_HC_MAP_GPA_RANGE encoding.
 *
 * Which structs the system headers already define is decided at configure
 * time (CMakeLists.txt -> cvmconv_config.h); every constant is additionally
 * guarded with #ifndef so that newer headers win. Values are the mainline ones
 * (not the early RFC numbers), from Linux include/uapi/linux/kvm.h,
 * include/uapi/linux/kvm_para.h, arch/x86/include/uapi/asm/kvm.h and
 * arch/x86/include/uapi/asm/kvm_para.h; summarised in docs/KVM-FACTS.md.
 * The _Static_asserts at the end pin the layouts the library depends on.
 */
#ifndef CVMCONV_KVM_COMPAT_H
#define CVMCONV_KVM_COMPAT_H

#include <stddef.h>

#include <linux/kvm.h>
#include <linux/kvm_para.h>

#include "cvmconv_config.h"

/* ---- capabilities (KVM_CHECK_EXTENSION / KVM_ENABLE_CAP) ---- */

#ifndef KVM_CAP_EXIT_HYPERCALL
#define KVM_CAP_EXIT_HYPERCALL 201 /* enable with args[0] = 1 << KVM_HC_MAP_GPA_RANGE */
#endif
#ifndef KVM_CAP_USER_MEMORY2
#define KVM_CAP_USER_MEMORY2 231
#endif
#ifndef KVM_CAP_MEMORY_FAULT_INFO
#define KVM_CAP_MEMORY_FAULT_INFO 232
#endif
#ifndef KVM_CAP_MEMORY_ATTRIBUTES
#define KVM_CAP_MEMORY_ATTRIBUTES 233 /* on a VM fd: mask of supported attributes */
#endif
#ifndef KVM_CAP_GUEST_MEMFD
#define KVM_CAP_GUEST_MEMFD 234
#endif
#ifndef KVM_CAP_VM_TYPES
#define KVM_CAP_VM_TYPES 235 /* on /dev/kvm: mask of 1 << type */
#endif
#ifndef KVM_CAP_PRE_FAULT_MEMORY
#define KVM_CAP_PRE_FAULT_MEMORY 236
#endif

/* ---- x86 VM types (KVM_CREATE_VM argument) ---- */

#ifndef KVM_X86_DEFAULT_VM
#define KVM_X86_DEFAULT_VM 0
#endif
#ifndef KVM_X86_SW_PROTECTED_VM
#define KVM_X86_SW_PROTECTED_VM 1 /* private memory without hardware protection */
#endif
#ifndef KVM_X86_SEV_VM
#define KVM_X86_SEV_VM 2
#endif
#ifndef KVM_X86_SEV_ES_VM
#define KVM_X86_SEV_ES_VM 3
#endif
#ifndef KVM_X86_SNP_VM
#define KVM_X86_SNP_VM 4
#endif
#ifndef KVM_X86_TDX_VM
#define KVM_X86_TDX_VM 5
#endif

/* ---- KVM_SET_MEMORY_ATTRIBUTES ---- */

#ifndef CVMCONV_HAVE_KVM_MEMORY_ATTRIBUTES
struct kvm_memory_attributes {
	__u64 address;
	__u64 size;
	__u64 attributes;
	__u64 flags; /* must be 0 */
};
#endif
#ifndef KVM_SET_MEMORY_ATTRIBUTES
#define KVM_SET_MEMORY_ATTRIBUTES _IOW(KVMIO, 0xd2, struct kvm_memory_attributes)
#endif
#ifndef KVM_MEMORY_ATTRIBUTE_PRIVATE
#define KVM_MEMORY_ATTRIBUTE_PRIVATE (1ULL << 3)
#endif

/* ---- guest_memfd and memslots that bind it ---- */

#ifndef CVMCONV_HAVE_KVM_GUEST_MEMFD
struct kvm_create_guest_memfd {
	__u64 size;
	__u64 flags;
	__u64 reserved[6];
};

struct kvm_userspace_memory_region2 {
	__u32 slot;
	__u32 flags;
	__u64 guest_phys_addr;
	__u64 memory_size;
	__u64 userspace_addr;
	__u64 guest_memfd_offset;
	__u32 guest_memfd;
	__u32 pad1;
	__u64 pad2[14];
};
#endif
#ifndef KVM_CREATE_GUEST_MEMFD
#define KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)
#endif
#ifndef KVM_SET_USER_MEMORY_REGION2
#define KVM_SET_USER_MEMORY_REGION2 _IOW(KVMIO, 0x49, struct kvm_userspace_memory_region2)
#endif
#ifndef KVM_MEM_GUEST_MEMFD
#define KVM_MEM_GUEST_MEMFD (1UL << 2)
#endif

#ifndef GUEST_MEMFD_FLAG_MMAP
#define GUEST_MEMFD_FLAG_MMAP (1ULL << 0) /* the file can be mmap()ed (Linux 6.18) */
#endif
#ifndef GUEST_MEMFD_FLAG_INIT_SHARED
#define GUEST_MEMFD_FLAG_INIT_SHARED (1ULL << 1) /* pages start shared (needs MMAP) */
#endif

/* ---- guest_memfd in-place conversion (posted series, not in 6.12/6.18) ----
 *
 * KVM_SET_MEMORY_ATTRIBUTES2 is a guest_memfd ioctl with offsets in the
 * file (the series' Documentation/virt/kvm/api.rst and
 * include/uapi/linux/kvm.h; shared/docs/KVM-FACTS.md). The request number
 * and the capability numbers moved between versions of the series (one
 * used 0xd6 and capability 245), so the library never trusts them alone:
 * the ioctl is found by probing it on the fd (kvm.c), and a capability
 * answer counts only after that probe succeeded. */
#ifndef CVMCONV_HAVE_KVM_MEMORY_ATTRIBUTES2
struct kvm_memory_attributes2 {
	union {
		__u64 address;
		__u64 offset;
	};
	__u64 size;
	__u64 attributes;
	__u64 flags;	    /* content mode */
	__u64 error_offset; /* out: the page that blocked (EAGAIN) */
	__u64 reserved[11];
};
#endif
#ifndef KVM_SET_MEMORY_ATTRIBUTES2
#define KVM_SET_MEMORY_ATTRIBUTES2 _IOWR(KVMIO, 0xd2, struct kvm_memory_attributes2)
#endif
#ifndef KVM_SET_MEMORY_ATTRIBUTES2_ZERO
#define KVM_SET_MEMORY_ATTRIBUTES2_ZERO (1ULL << 0) /* not for to-private */
#endif
#ifndef KVM_SET_MEMORY_ATTRIBUTES2_PRESERVE
#define KVM_SET_MEMORY_ATTRIBUTES2_PRESERVE (1ULL << 1)
#endif
/* The v5+ numbers; later kernels' headers win, and kvm.c trusts an answer
 * only once the ioctl itself was found on the fd. */
#ifndef KVM_CAP_MEMORY_ATTRIBUTES2_FLAGS
#define KVM_CAP_MEMORY_ATTRIBUTES2_FLAGS 246 /* on a VM fd: mask of content modes */
#endif
#ifndef KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES
#define KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES 247 /* attributes settable on guest_memfd */
#endif

/* ---- exits ---- */

#ifndef KVM_EXIT_HYPERCALL
#define KVM_EXIT_HYPERCALL 3
#endif
#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39
#endif
#ifndef KVM_MEMORY_EXIT_FLAG_PRIVATE
#define KVM_MEMORY_EXIT_FLAG_PRIVATE (1ULL << 3)
#endif
/* Bit 0 of hypercall.flags; 6.1 headers name that word `__u32 longmode`. */
#ifndef KVM_EXIT_HYPERCALL_LONG_MODE
#define KVM_EXIT_HYPERCALL_LONG_MODE (1ULL << 0)
#endif

/* ---- KVM_HC_MAP_GPA_RANGE (args: gpa, npages in 4 KiB units, attrs) ---- */

#ifndef KVM_HC_MAP_GPA_RANGE
#define KVM_HC_MAP_GPA_RANGE 12
#endif
#ifndef KVM_MAP_GPA_RANGE_PAGE_SZ_4K
#define KVM_MAP_GPA_RANGE_PAGE_SZ_4K 0
#endif
#ifndef KVM_MAP_GPA_RANGE_PAGE_SZ_2M
#define KVM_MAP_GPA_RANGE_PAGE_SZ_2M (1 << 0)
#endif
#ifndef KVM_MAP_GPA_RANGE_PAGE_SZ_1G
#define KVM_MAP_GPA_RANGE_PAGE_SZ_1G (1 << 1)
#endif
#ifndef KVM_MAP_GPA_RANGE_ENCRYPTED
#define KVM_MAP_GPA_RANGE_ENCRYPTED (1 << 4)
#endif
#ifndef KVM_MAP_GPA_RANGE_DECRYPTED
#define KVM_MAP_GPA_RANGE_DECRYPTED 0
#endif

/* Hypercall return codes (the guest sees their negation). */
#ifndef KVM_ENOSYS
#define KVM_ENOSYS 1000
#endif
#ifndef KVM_EPERM
#define KVM_EPERM 1
#endif
#ifndef KVM_E2BIG
#define KVM_E2BIG 7
#endif
#ifndef KVM_EFAULT
#define KVM_EFAULT 14
#endif
#ifndef KVM_EINVAL
#define KVM_EINVAL 22
#endif
#ifndef KVM_EOPNOTSUPP
#define KVM_EOPNOTSUPP 95
#endif

/*
 * The memory_fault member of the kvm_run exit union. Headers older than
 * guest_memfd do not have it, so it is reached through this accessor on every
 * build; its layout is fixed by the UAPI (flags@32, gpa@40, size@48).
 */
struct cvmconv_kvm_memory_fault {
	__u64 flags; /* KVM_MEMORY_EXIT_FLAG_PRIVATE: the guest wanted private */
	__u64 gpa;
	__u64 size;
};

static inline struct cvmconv_kvm_memory_fault *cvmconv_run_memory_fault(struct kvm_run *run)
{
	/* The exit union starts where hypercall does (offset 32). */
	return (struct cvmconv_kvm_memory_fault *)((char *)run +
						   offsetof(struct kvm_run, hypercall));
}

/* ---- layout checks: a wrong fallback must not compile ---- */

_Static_assert(sizeof(struct kvm_memory_attributes) == 32, "kvm_memory_attributes size");
_Static_assert(sizeof(struct kvm_create_guest_memfd) == 64, "kvm_create_guest_memfd size");
_Static_assert(sizeof(struct kvm_userspace_memory_region2) == 160,
	       "kvm_userspace_memory_region2 size");
_Static_assert(offsetof(struct kvm_userspace_memory_region2, guest_memfd_offset) == 32,
	       "kvm_userspace_memory_region2.guest_memfd_offset");
_Static_assert(offsetof(struct kvm_userspace_memory_region2, guest_memfd) == 40,
	       "kvm_userspace_memory_region2.guest_memfd");
_Static_assert(sizeof(struct cvmconv_kvm_memory_fault) == 24, "memory_fault size");
_Static_assert(sizeof(struct kvm_memory_attributes2) == 128, "kvm_memory_attributes2 size");
_Static_assert(offsetof(struct kvm_memory_attributes2, offset) == 0,
	       "kvm_memory_attributes2.offset");
_Static_assert(offsetof(struct kvm_memory_attributes2, address) == 0,
	       "kvm_memory_attributes2.address");
_Static_assert(offsetof(struct kvm_memory_attributes2, size) == 8, "kvm_memory_attributes2.size");
_Static_assert(offsetof(struct kvm_memory_attributes2, attributes) == 16,
	       "kvm_memory_attributes2.attributes");
_Static_assert(offsetof(struct kvm_memory_attributes2, flags) == 24,
	       "kvm_memory_attributes2.flags");
_Static_assert(offsetof(struct kvm_memory_attributes2, error_offset) == 32,
	       "kvm_memory_attributes2.error_offset");

_Static_assert(offsetof(struct kvm_run, hypercall) == 32, "kvm_run exit union offset");
_Static_assert(offsetof(struct kvm_run, hypercall.nr) == 32, "kvm_run.hypercall.nr");
_Static_assert(offsetof(struct kvm_run, hypercall.args) == 40, "kvm_run.hypercall.args");
_Static_assert(offsetof(struct kvm_run, hypercall.ret) == 88, "kvm_run.hypercall.ret");
/* `longmode` (6.1) and `flags` (newer) share offset 96; both spellings have longmode. */
_Static_assert(offsetof(struct kvm_run, hypercall.longmode) == 96,
	       "kvm_run.hypercall.flags/longmode");
#ifdef CVMCONV_HAVE_KVM_MEMORY_FAULT
_Static_assert(offsetof(struct kvm_run, memory_fault.flags) == 32, "kvm_run.memory_fault.flags");
_Static_assert(offsetof(struct kvm_run, memory_fault.gpa) == 40, "kvm_run.memory_fault.gpa");
_Static_assert(offsetof(struct kvm_run, memory_fault.size) == 48, "kvm_run.memory_fault.size");
#endif

/* The ioctl encodings below are those of the generic _IOC layout (x86, arm64). */
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
_Static_assert(KVM_SET_MEMORY_ATTRIBUTES == 0x4020AED2u, "KVM_SET_MEMORY_ATTRIBUTES");
_Static_assert(KVM_CREATE_GUEST_MEMFD == 0xC040AED4u, "KVM_CREATE_GUEST_MEMFD");
_Static_assert(KVM_SET_USER_MEMORY_REGION2 == 0x40A0AE49u, "KVM_SET_USER_MEMORY_REGION2");
_Static_assert(KVM_SET_MEMORY_ATTRIBUTES2 == 0xC080AED2u, "KVM_SET_MEMORY_ATTRIBUTES2");
#endif

#endif /* CVMCONV_KVM_COMPAT_H */
