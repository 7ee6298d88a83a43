/* SPDX-License-Identifier: MIT */
/*
 * A QEMU-like conversion handler: the host behaviour that cvmconv is measured
 * against. It does what KVM-FACTS.md ("What other VMMs do") records of QEMU's
 * kvm_convert_memory(), and nothing more:
 *
 *   - the range must be 4 KiB (host page) aligned, non-empty and lie in
 *     guest memory backed by a private store; otherwise the conversion fails
 *     (QEMU then stops the vCPU);
 *   - attributes are set for exactly the requested range, whatever state the
 *     pages were in (there is no tracking);
 *   - then the old side is discarded for exactly the requested range:
 *     to shared  -> fallocate(PUNCH_HOLE) on the private store (guest_memfd);
 *     to private -> fallocate(PUNCH_HOLE) on the shared store, EXCEPT when
 *                   the shared store uses huge pages: then nothing is
 *                   discarded and the shared huge page stays allocated;
 *   - the page-size hint is ignored and the hypercall's return value is
 *     never written (KVM's preset 0 reaches the guest).
 *
 * It is independent of libcvmconv: attribute updates go to a callback (a
 * KVM_SET_MEMORY_ATTRIBUTES wrapper, or a recorder where there is no
 * /dev/kvm), discards are real fallocate() calls. Having no tracker, it
 * cannot know its double allocation; qemu_like_measure() derives it from
 * the kernel's numbers (st_blocks of each store) and the count of live
 * shared bytes the caller knows from the attributes it set.
 *
 * Thread safety: none; one handler per VM, called from one thread (QEMU's
 * conversions run under the BQL).
 */
#ifndef CVMCONV_ENGINE_QEMU_LIKE_H
#define CVMCONV_ENGINE_QEMU_LIKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* KVM_MEMORY_ATTRIBUTE_PRIVATE and the KVM_HC_MAP_GPA_RANGE encrypted bit
 * (include/uapi/linux/kvm.h, include/uapi/linux/kvm_para.h). */
#define QEMU_LIKE_ATTR_PRIVATE (1ULL << 3)
#define QEMU_LIKE_MAP_GPA_RANGE_ENCRYPTED (1ULL << 4)

struct qemu_like;

/* The attribute update: 0 or a negative errno, like the ioctl wrapper. */
typedef int (*qemu_like_set_attr_fn)(void *opaque, uint64_t gpa, uint64_t size,
				     uint64_t attributes);

struct qemu_like_region {
	uint64_t gpa, size; /* 4 KiB aligned, size > 0 */
	int private_fd;	    /* guest_memfd (or a stand-in); must be >= 0 */
	uint64_t private_offset;
	int shared_fd; /* memfd / hugetlbfs file of the RAM block */
	uint64_t shared_offset;
	bool start_private; /* set the whole range private when added, as QEMU
	                     * does for a guest_memfd memslot of a CVM */
};

struct qemu_like_counts {
	uint64_t conversions;	   /* qemu_like_convert() calls (exits included) */
	uint64_t errors;	   /* of those, failed: QEMU would stop the vCPU */
	uint64_t attr_calls;	   /* attribute updates issued */
	uint64_t attr_failures;	   /* of those, failed */
	uint64_t discards;	   /* fallocate(PUNCH_HOLE) calls issued */
	uint64_t discard_failures; /* of those, failed */
	uint64_t discards_skipped; /* to-private discards skipped: shared side huge */
};

/* What the kernel says of the handler's stores. */
struct qemu_like_memory {
	uint64_t shared_alloc_bytes;  /* st_blocks * 512 over the shared fds */
	uint64_t private_alloc_bytes; /* st_blocks * 512 over the private fds */
	uint64_t double_alloc_bytes;  /* shared_alloc_bytes - live shared bytes (>= 0) */
};

/**
 * qemu_like_create() - a handler whose attribute updates go to @set_attr.
 * Return: 0, -EINVAL (@set_attr or @out NULL), -ENOMEM.
 */
int qemu_like_create(qemu_like_set_attr_fn set_attr, void *opaque, struct qemu_like **out);

/** qemu_like_destroy() - free the handler; closes no fd. @q may be NULL. */
void qemu_like_destroy(struct qemu_like *q);

/**
 * qemu_like_add_region() - register a RAM block (copied). Whether the shared
 * store uses huge pages is read from the file system (fstatfs: hugetlbfs).
 * With @r->start_private the range is set private with one attribute update.
 * Return: 0, -EINVAL (alignment, size, fds), -EEXIST (overlap), -ENOSPC
 * (too many regions), -EBADF/fstatfs error, or the attribute update's error.
 */
int qemu_like_add_region(struct qemu_like *q, const struct qemu_like_region *r);

/**
 * qemu_like_convert() - kvm_convert_memory() of [@gpa, @gpa + @size).
 * Return: 0, -EINVAL (unaligned, empty, overflowing, or not wholly in
 * regions: nothing was done), the attribute update's error (nothing was
 * discarded), or the first discard error (attributes were changed). Any
 * error is one QEMU answers by stopping the vCPU.
 */
int qemu_like_convert(struct qemu_like *q, uint64_t gpa, uint64_t size, bool to_private);

/**
 * qemu_like_map_gpa_range() - a KVM_HC_MAP_GPA_RANGE exit as QEMU handles
 * it: to private when @attrs has the encrypted bit, the page-size hint and
 * every other bit ignored; @npages in 4 KiB units. The guest's return value
 * is not this function's business (QEMU leaves KVM's preset 0).
 * Return: as qemu_like_convert(); -EINVAL when @npages overflows.
 */
int qemu_like_map_gpa_range(struct qemu_like *q, uint64_t gpa, uint64_t npages, uint64_t attrs);

/** qemu_like_get_counts() - copy the counters. */
void qemu_like_get_counts(const struct qemu_like *q, struct qemu_like_counts *out);

/** qemu_like_shared_is_huge() - whether region @i's shared store uses huge
 * pages (-ENOENT for no such region). */
int qemu_like_shared_is_huge(const struct qemu_like *q, size_t i);

/**
 * qemu_like_measure() - the kernel's view: st_blocks of every store, and the
 * double allocation = shared bytes allocated minus @live_shared_bytes (the
 * bytes the attributes currently mark shared, all of them assumed touched,
 * i.e. allocated). Stores shared by several regions are counted once.
 * Return: 0 or -errno of fstat.
 */
int qemu_like_measure(const struct qemu_like *q, uint64_t live_shared_bytes,
		      struct qemu_like_memory *out);

#ifdef __cplusplus
}
#endif

#endif /* CVMCONV_ENGINE_QEMU_LIKE_H */
