/* SPDX-License-Identifier: MIT */
/*
 * A strict stand-in for KVM_SET_MEMORY_ATTRIBUTES, for tools that run the
 * library where there is no /dev/kvm. It refuses what the kernel refuses
 * and, unlike the kernel, also a range outside the guest memory it was
 * given (KVM does not check memslots, but cvmconv never asks for anything
 * outside its regions, so such a call would be a library bug). It can keep
 * the private/shared state of every 4 KiB page, so that a tool can check the
 * library's own view against what it was told to set.
 */
#ifndef CVMCONV_ATTR_RECORDER_H
#define CVMCONV_ATTR_RECORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct attr_recorder;

struct attr_recorder_range {
	uint64_t gpa, size; /* guest memory, 4 KiB aligned */
};

struct attr_recorder_counts {
	uint64_t calls;		  /* set_memory_attributes calls */
	uint64_t refused;	  /* of those, refused with -EINVAL */
	uint64_t private_bytes;	  /* bytes set private by accepted calls */
	uint64_t shared_bytes;	  /* bytes set shared by accepted calls */
	const char *last_refusal; /* why the last refused call was refused, or NULL */
};

/*
 * attr_recorder_create() - a recorder for guest memory @ranges[0..n).
 * @track_limit_pages: keep per-page state when the ranges hold at most this
 *     many 4 KiB pages (one bit each); 0 = never.
 * Return: 0, -EINVAL (bad or overlapping ranges), -ENOMEM.
 */
int attr_recorder_create(const struct attr_recorder_range *ranges, size_t n,
			 uint64_t track_limit_pages, struct attr_recorder **out);
void attr_recorder_destroy(struct attr_recorder *r);

/*
 * attr_recorder_set() - the cvmconv_ops.set_memory_attributes callback
 * (@opaque is the recorder). Refuses with -EINVAL, as
 * kvm_vm_ioctl_set_mem_attributes (virt/kvm/kvm_main.c) does: attribute bits
 * other than KVM_MEMORY_ATTRIBUTE_PRIVATE, size 0, address + size wrapping,
 * address or size not 4 KiB aligned; and a range not inside guest memory.
 * A refused call changes nothing.
 */
int attr_recorder_set(void *opaque, uint64_t gpa, uint64_t size, uint64_t attributes);

/* Whether per-page state is kept (see track_limit_pages). */
bool attr_recorder_tracking(const struct attr_recorder *r);

/* The recorded state of the page holding @gpa: 1 private, 0 shared,
 * -ENOENT outside guest memory, -EOPNOTSUPP when not tracking. */
int attr_recorder_is_private(const struct attr_recorder *r, uint64_t gpa);

void attr_recorder_get_counts(const struct attr_recorder *r, struct attr_recorder_counts *out);

#endif
