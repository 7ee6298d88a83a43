/* SPDX-License-Identifier: MIT */
/* A fake in-place guest_memfd for tests: what KVM_SET_MEMORY_ATTRIBUTES2
 * does on a guest_memfd created with GUEST_MEMFD_FLAG_MMAP |
 * GUEST_MEMFD_FLAG_INIT_SHARED in the posted in-place conversion series
 * (its Documentation/virt/kvm/api.rst, include/uapi/linux/kvm.h and
 * virt/kvm/guest_memfd.c; shared/docs/KVM-FACTS.md). No kernel here has
 * the ioctl (6.12 in the lab, 6.18 on the host), so this is the one fake
 * the project allows itself; it enforces the documented rules and accepts
 * nothing they refuse:
 *
 *   - offset and size 4 KiB aligned, size > 0, no wrap, inside the file:
 *     else EINVAL; attributes other than KVM_MEMORY_ATTRIBUTE_PRIVATE:
 *     EINVAL; reserved fields non-zero (ioctl form): EINVAL;
 *   - flags are a content mode: unknown bits, ZERO and PRESERVE together,
 *     a mode the fake does not enumerate, or ZERO for to-private: EINVAL;
 *     PRESERVE for to-private after launch on a TDX/SNP-like fake: EINVAL;
 *   - a page turning private with references beyond the file's own (a
 *     GUP pin: vhost, VFIO, O_DIRECT; a VMM thread in a copy): EAGAIN,
 *     error_offset = that page; the whole range is checked first, so
 *     nothing changed (posted code) — or, with @convert_before_busy, the
 *     pages before it did (what a later kernel may do);
 *   - contents: ZERO zeroes pages turning shared, PRESERVE keeps them,
 *     UNSPECIFIED overwrites them with a poison pattern (contents "not
 *     guaranteed": a caller that relies on them is caught);
 *   - host access to a private page is a SIGBUS in the kernel: the fake's
 *     fake_gmem_host_access() answers -EFAULT for it, and a pin of a
 *     private page is refused.
 * The memory is a real memfd (shmem), mmap()ed like the real file, so
 * punches, st_blocks and mincore() are the kernel's own.
 */
#ifndef CVMCONV_TEST_FAKE_GMEM_H
#define CVMCONV_TEST_FAKE_GMEM_H

#include <stdbool.h>
#include <stdint.h>

#include "cvmconv.h"

#define FAKE_GMEM_POISON 0xa5u

struct fake_gmem {
	int fd;		/* the memfd standing in for the guest_memfd */
	bool owns_fd;	/* fake_gmem_init(): closed by fake_gmem_fini() */
	uint64_t size;	/* bytes, 4 KiB aligned */
	uint8_t *map;	/* the fake's own MAP_SHARED mapping of @fd */
	uint8_t *priv;	/* per 4 KiB page: 1 private */
	uint32_t *pins; /* per page: references beyond the file's own */
	/* per page: a pin that goes away by itself after this many refused
	 * conversions (a transient reference); 0 = stays */
	uint32_t *pin_release_after;
	uint64_t modes;		  /* content modes enumerated (CVMCONV_CONTENT_*) */
	bool convert_before_busy; /* EAGAIN after converting the pages before it */
	bool launched_cc;	  /* TDX/SNP after launch: no PRESERVE to private */
	/* counters */
	uint64_t calls, rejected, busy, converted_pages;
	uint64_t last_error_offset;
	/* log of calls (last 64), for order checks */
	struct fake_gmem_call {
		uint64_t offset, size, attributes, flags;
		int ret;
	} log[64];
	unsigned nlog;
};

/* Creates the memfd (ftruncate'd to @size), all pages shared, no pins;
 * @modes: content modes to enumerate. 0 or -errno. */
int fake_gmem_init(struct fake_gmem *g, uint64_t size, uint64_t modes);
/* The same rules over an existing mmap-able file of @size bytes (a real
 * guest_memfd from the host's /dev/kvm, GUEST_MEMFD_FLAG_MMAP |
 * INIT_SHARED): the memory and its accounting are the kernel's, the
 * attributes the fake's. @fd is not closed by fake_gmem_fini(). */
int fake_gmem_init_fd(struct fake_gmem *g, int fd, uint64_t size, uint64_t modes);
void fake_gmem_fini(struct fake_gmem *g);
/* Make @r (gpa, size, unaligned already set) an in-place region over
 * @g: private_fd = the file, its mapping as shared_hva, shared_fd -1,
 * CVMCONV_REGION_INPLACE added to the flags, content mode @mode. */
void fake_gmem_make_inplace(const struct fake_gmem *g, struct cvmconv_region *r, uint64_t mode);
/* KVM_SET_MEMORY_ATTRIBUTES2 without the struct: 0 or -errno; on -EAGAIN
 * *error_offset is the busy page. */
int fake_gmem_set_attributes(struct fake_gmem *g, uint64_t offset, uint64_t size,
			     uint64_t attributes, uint64_t flags, uint64_t *error_offset);
/* The ioctl form, reserved words included (@arg: a kvm_memory_attributes2
 * as 16 u64s). */
int fake_gmem_ioctl(struct fake_gmem *g, uint64_t arg[16]);
/* 1 private, 0 shared, -EINVAL outside the file */
int fake_gmem_is_private(const struct fake_gmem *g, uint64_t offset);
/* A host reference on [offset, offset + len): -EFAULT if a page is private
 * (GUP of a private page fails), else 0. @release_after: see
 * pin_release_after. */
int fake_gmem_pin(struct fake_gmem *g, uint64_t offset, uint64_t len, uint32_t release_after);
void fake_gmem_unpin(struct fake_gmem *g, uint64_t offset, uint64_t len);
/* A host read or write of the page at @offset: 0, or -EFAULT where the
 * kernel would raise SIGBUS (the page is private). */
int fake_gmem_host_access(const struct fake_gmem *g, uint64_t offset);

#endif
