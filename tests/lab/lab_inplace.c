/* SPDX-License-Identifier: MIT */
/*
 * In-place conversion on the real kernel of the lab (Linux 6.12, a
 * KVM_X86_SW_PROTECTED_VM): what the library's detection finds there.
 *
 *   - KVM_SET_MEMORY_ATTRIBUTES2 (_IOWR(KVMIO, 0xd2, 128 bytes)) on the
 *     guest_memfd: 6.12's guest_memfd has no ioctls, so ENOTTY; on the VM
 *     fd the 128-byte encoding is not KVM_SET_MEMORY_ATTRIBUTES either;
 *   - the capability numbers of the posted series answer 0 (unknown);
 *   - GUEST_MEMFD_FLAG_MMAP | INIT_SHARED are refused (EINVAL, 6.12);
 *   - cvmconv_add_region(CVMCONV_REGION_INPLACE) with the default op
 *     refuses the region with -EOPNOTSUPP, found by probing the fd, and
 *     changes nothing; the same guest_memfd as the private side of a
 *     two-backing region converts as ever (read back with
 *     KVM_PRE_FAULT_MEMORY).
 * On a kernel that has the ioctl the program expects the opposite: the
 * region is accepted and a conversion goes through.
 *
 *   lab-inplace-probe      exit 0 expectations met, 1 not, 77 no SW_PROTECTED VM
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cvmconv.h"
#include "lab_kvm.h"

#define PAGE 4096ULL
#define SLOT_GPA (1ULL << 32)
#define SLOT_SIZE (2ULL << 20)

static int failures;

#define EXPECT(cond, ...)                             \
	do {                                          \
		if (!(cond)) {                        \
			printf("FAIL: " __VA_ARGS__); \
			printf("\n");                 \
			failures++;                   \
		} else {                              \
			printf("ok:   " __VA_ARGS__); \
			printf("\n");                 \
		}                                     \
	} while (0)

static int ioctl_errno(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg) == 0 ? 0 : errno;
}

int main(void)
{
	struct lab_vm v;
	const char *why = NULL;
	struct kvm_memory_attributes2 a2;
	struct kvm_create_guest_memfd cg = {
		.size = SLOT_SIZE, .flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED
	};
	struct cvmconv_config cfg = { .sz = sizeof(cfg) };
	struct cvmconv *c = NULL;
	struct cvmconv_region r;
	int ret, on_gmem, on_vm, mmap_gmem, cap_flags, cap_attrs;
	bool present;

	ret = lab_vm_open(&v, SLOT_GPA, SLOT_SIZE, &why);
	if (ret == LAB_SKIP) {
		printf("SKIP: %s\n", why);
		return LAB_SKIP;
	}
	if (ret) {
		printf("FAIL: %s: %s\n", why, strerror(-ret));
		return 1;
	}
	memset(&a2, 0, sizeof(a2));
	on_gmem = ioctl_errno(v.gmem, KVM_SET_MEMORY_ATTRIBUTES2, &a2);
	memset(&a2, 0, sizeof(a2));
	on_vm = ioctl_errno(v.vm, KVM_SET_MEMORY_ATTRIBUTES2, &a2);
	cap_flags = ioctl(v.vm, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_ATTRIBUTES2_FLAGS);
	cap_attrs = ioctl(v.vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES);
	ret = ioctl(v.vm, KVM_CREATE_GUEST_MEMFD, &cg);
	mmap_gmem = ret >= 0 ? 0 : errno;
	if (ret >= 0)
		close(ret);
	present = on_gmem == 0 || on_gmem == EINVAL;
	printf("kernel: KVM_SET_MEMORY_ATTRIBUTES2 (0x%lx) on guest_memfd: %s; on the VM fd: %s;\n"
	       "        KVM_CHECK_EXTENSION %d (ATTRIBUTES2_FLAGS) = %d, %d "
	       "(GUEST_MEMFD_MEMORY_ATTRIBUTES) = %d;\n"
	       "        KVM_CREATE_GUEST_MEMFD(MMAP | INIT_SHARED): %s\n",
	       (unsigned long)KVM_SET_MEMORY_ATTRIBUTES2, on_gmem ? strerror(on_gmem) : "0",
	       on_vm ? strerror(on_vm) : "0", KVM_CAP_MEMORY_ATTRIBUTES2_FLAGS, cap_flags,
	       KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES, cap_attrs,
	       mmap_gmem ? strerror(mmap_gmem) : "accepted");

	cfg.vm_fd = v.vm;
	ret = cvmconv_create(&cfg, &c);
	EXPECT(ret == 0, "cvmconv_create on the SW_PROTECTED VM, default ops: %d", ret);
	if (ret)
		goto out;
	r = (struct cvmconv_region){ .sz = sizeof(r),
				     .gpa = SLOT_GPA,
				     .size = SLOT_SIZE,
				     .private_fd = v.gmem,
				     .shared_fd = -1,
				     .shared_hva = v.shared,
				     .flags = CVMCONV_REGION_INPLACE,
				     .unaligned = -1 };
	ret = cvmconv_add_region(c, &r);
	if (!present) {
		EXPECT(on_gmem == ENOTTY, "the guest_memfd has no ioctl here (ENOTTY): %s",
		       strerror(on_gmem));
		EXPECT(ret == -EOPNOTSUPP,
		       "in-place region refused by probing the fd: %d (want -EOPNOTSUPP)", ret);
		EXPECT(cvmconv_is_private(c, SLOT_GPA) == -ENOENT, "nothing registered");
		/* the same guest_memfd, two backings: conversions as ever */
		r.flags = 0;
		r.shared_fd = v.shared_fd;
		r.shared_hva = NULL;
		ret = cvmconv_add_region(c, &r);
		EXPECT(ret == 0, "two-backing region over the same guest_memfd: %d", ret);
		ret = cvmconv_convert(c, SLOT_GPA + 8 * PAGE, PAGE, true);
		EXPECT(ret == 0, "conversion to private: %d", ret);
		ret = lab_page_private(&v, SLOT_GPA + 8 * PAGE);
		EXPECT(ret == 1, "KVM applies it (KVM_PRE_FAULT_MEMORY): %d", ret);
	} else {
		EXPECT(ret == 0, "in-place region accepted where the ioctl exists: %d", ret);
		ret = cvmconv_convert(c, SLOT_GPA + 8 * PAGE, PAGE, true);
		EXPECT(ret == 0, "in-place conversion to private: %d", ret);
	}
	cvmconv_destroy(c);
	c = NULL;
	/* per-guest_memfd attributes only (no VM probe): the same answer */
	cfg = (struct cvmconv_config){ .sz = sizeof(cfg),
				       .vm_fd = -1,
				       .flags = CVMCONV_GMEM_ATTRIBUTES };
	ret = cvmconv_create(&cfg, &c);
	EXPECT(ret == 0, "cvmconv_create with CVMCONV_GMEM_ATTRIBUTES: %d", ret);
	if (!ret) {
		r = (struct cvmconv_region){ .sz = sizeof(r),
					     .gpa = SLOT_GPA,
					     .size = SLOT_SIZE,
					     .private_fd = v.gmem,
					     .shared_fd = -1,
					     .flags = CVMCONV_REGION_INPLACE,
					     .unaligned = -1,
					     .content_mode = CVMCONV_CONTENT_ZERO };
		ret = cvmconv_add_region(c, &r);
		/* no ioctl, or (where it exists) no VM fd to enumerate modes on */
		EXPECT(ret == -EOPNOTSUPP, "in place, content mode ZERO: %d (want -EOPNOTSUPP)",
		       ret);
	}
out:
	cvmconv_destroy(c);
	lab_vm_close(&v);
	printf("lab-inplace-probe: %s\n", failures ? "FAILED" : "all expectations met");
	return failures ? 1 : 0;
}
