/* SPDX-License-Identifier: MIT */
/*
 * Both conversion models behind one API: a VMM that prefers guest_memfd
 * in-place conversion (one mmap-able guest_memfd holds shared and private
 * pages: nothing is allocated twice, nothing punched) and falls back to
 * two backings (guest_memfd private side + a memfd shared side) on kernels
 * without KVM_SET_MEMORY_ATTRIBUTES2. The vCPU loop is the same for both;
 * only an in-place conversion can answer -EAGAIN (a page still pinned by
 * the host after the library's retries).
 *
 * A translation unit of docs/integration.md: it compiles, but the VMM
 * around it (vmm_drop_host_refs, vmm_memslot) is yours.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "cvmconv.h"

/* KVM_CREATE_GUEST_MEMFD and its flags (Linux 6.18 include/uapi/linux/kvm.h) */
struct vm_create_guest_memfd {
	uint64_t size, flags, reserved[6];
};
#define VM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct vm_create_guest_memfd)
#define VM_GMEM_FLAG_MMAP (1ULL << 0)
#define VM_GMEM_FLAG_INIT_SHARED (1ULL << 1)

/* The VMM's own: unmap [gpa, gpa + size) from vhost/VFIO and stop its
 * threads touching it; 0 or -errno. */
int vmm_drop_host_refs(void *vmm, uint64_t gpa, uint64_t size);
/* The VMM's own: KVM_SET_USER_MEMORY_REGION2 for guest RAM. */
int vmm_memslot(void *vmm, int gmem_fd, void *shared_hva, uint64_t size);

struct guest_ram {
	struct cvmconv *conv;
	int gmem_fd, shared_fd; /* shared_fd -1 in place */
	void *hva;		/* the shared side as the host maps it */
	uint64_t size;
	bool inplace;
};

int guest_ram_init(struct guest_ram *g, void *vmm, int vm_fd, uint64_t size);
int guest_ram_exit(struct guest_ram *g, struct kvm_run *run);

/* Pages about to turn private must have no host reference left, or the
 * in-place conversion fails with EAGAIN: drop them first. */
static int drop_refs(void *opaque, uint64_t gpa, uint64_t size, bool to_private)
{
	return to_private ? vmm_drop_host_refs(opaque, gpa, size) : 0;
}

int guest_ram_init(struct guest_ram *g, void *vmm, int vm_fd, uint64_t size)
{
	struct vm_create_guest_memfd cg = { .size = size,
					    .flags = VM_GMEM_FLAG_MMAP | VM_GMEM_FLAG_INIT_SHARED };
	struct cvmconv_config cfg = { .sz = sizeof(cfg), .vm_fd = vm_fd };
	struct cvmconv_listener l = { .sz = sizeof(l), .before = drop_refs, .opaque = vmm };
	struct cvmconv_region r = { .sz = sizeof(r), .gpa = 0, .size = size, .unaligned = -1 };
	int ret;

	g->size = size;
	g->shared_fd = -1;
	ret = cvmconv_create(&cfg, &g->conv);
	if (ret)
		return ret;
	if (cvmconv_add_listener(g->conv, &l) < 0)
		return -EINVAL;
	g->gmem_fd = ioctl(vm_fd, VM_CREATE_GUEST_MEMFD, &cg);
	if (g->gmem_fd >= 0) {
		/* an mmap-able guest_memfd: try the in-place model */
		g->hva = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, g->gmem_fd, 0);
		if (g->hva == MAP_FAILED)
			return -errno;
		r.private_fd = g->gmem_fd;
		r.shared_fd = -1;
		r.shared_hva = g->hva;
		r.flags = CVMCONV_REGION_INPLACE;
		r.content_mode = CVMCONV_CONTENT_ZERO; /* shared pages never show private data */
		ret = cvmconv_add_region(g->conv, &r);
		if (ret == 0) {
			g->inplace = true;
			return vmm_memslot(vmm, g->gmem_fd, g->hva, size);
		}
		if (ret != -EOPNOTSUPP)
			return ret;
		/* the kernel maps guest_memfd but cannot convert in place:
		 * the mapping stays the VMM's, the shared side gets its own */
		munmap(g->hva, size);
		close(g->gmem_fd);
	}
	/* two backings: a plain guest_memfd and a memfd (hugetlb works too) */
	cg.flags = 0;
	g->gmem_fd = ioctl(vm_fd, VM_CREATE_GUEST_MEMFD, &cg);
	if (g->gmem_fd < 0)
		return -errno;
	g->shared_fd = cvmconv_memfd_create("guest-ram", size, 4096);
	if (g->shared_fd < 0)
		return g->shared_fd;
	g->hva = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, g->shared_fd, 0);
	if (g->hva == MAP_FAILED)
		return -errno;
	r.private_fd = g->gmem_fd;
	r.shared_fd = g->shared_fd;
	r.shared_hva = NULL;
	r.flags = 0;
	r.content_mode = 0;
	ret = cvmconv_add_region(g->conv, &r);
	return ret ? ret : vmm_memslot(vmm, g->gmem_fd, g->hva, size);
}

/* One conversion exit, either model. 1: re-enter KVM_RUN; 0: not ours;
 * -errno: stop the VM. */
int guest_ram_exit(struct guest_ram *g, struct kvm_run *run)
{
	int ret = cvmconv_handle_exit(g->conv, run);

	if (ret == -EAGAIN) {
		/* in place only: a page kept a host reference through the
		 * library's retries (logged with its guest_memfd offset; the
		 * counter is gmem_busy_failures). Nothing changed; the guest
		 * gets -KVM_EFAULT if we re-enter now. A VMM that can wait for
		 * its reference to go may instead call handle_exit again. */
		return 1;
	}
	return ret;
}
