/* SPDX-License-Identifier: MIT */
/* A fake KVM VM for tests: serves cvmconv_ops.set_memory_attributes with the
 * validation rules of kvm_vm_ioctl_set_mem_attributes (virt/kvm/kvm_main.c,
 * summarised in shared/docs/KVM-FACTS.md) and keeps its own attribute map, so
 * tests can compare it with cvmconv_is_private(). Punches go to the real
 * kernel (fallocate / madvise) unless a failure is injected. */
#ifndef CVMCONV_TEST_FAKE_KVM_H
#define CVMCONV_TEST_FAKE_KVM_H

#include <stdbool.h>
#include <stdint.h>

#include "cvmconv.h"
#include "fake_gmem.h"

enum fake_vm_type { FAKE_VM_DEFAULT = 0, FAKE_VM_SW_PROTECTED = 1 };

/* Which kernel call an injected failure hits. */
enum fake_call {
	FAKE_CALL_ATTR,
	FAKE_CALL_PUNCH,
	FAKE_CALL_DISCARD,
	FAKE_CALL_GMEM, /* set_gmem_attributes */
	FAKE_CALL_COUNT
};

struct fake_kvm {
	enum fake_vm_type type;
	/* private ranges, sorted, non-overlapping, half-open, 4 KiB aligned */
	struct fake_range {
		uint64_t start, end;
	} * priv;
	unsigned npriv, cap;
	/* call counters (all calls, including failed ones) */
	uint64_t calls[FAKE_CALL_COUNT];
	uint64_t rejected; /* attribute calls refused by a validation rule */
	/* fault injection: the call with (1-based) number fail_at[k] of kind k
	 * returns -fail_errno[k]; fail_every[k] makes every call from then on fail */
	uint64_t fail_at[FAKE_CALL_COUNT];
	int fail_errno[FAKE_CALL_COUNT];
	bool fail_every[FAKE_CALL_COUNT];
	/* The live-page oracle: the backings of every region added through
	 * fake_kvm_add_region(). Each punch or discard is checked, at the moment
	 * it is made, against the attributes held here: a page whose live side
	 * it would free is a data loss. Counted in live_punches; with
	 * abort_on_live (the default) the process aborts at once, naming the
	 * page, whatever the test checks later. */
	struct fake_binding {
		int fd;	       /* >= 0: file backing, offsets in @off */
		uintptr_t hva; /* fd < 0: host mapping at @hva */
		uint64_t off;  /* file offset of @gpa */
		uint64_t gpa, size;
		bool private_side;
		bool inplace; /* an in-place guest_memfd: every page is live */
	} bind[64];
	unsigned nbind;
	uint64_t live_punches;	  /* punches that hit a live page */
	uint64_t checked_punches; /* punches the oracle looked at */
	bool abort_on_live;
	/* In-place regions: the fake guest_memfds the gmem op serves (by
	 * fd; any other fd answers ENOTTY, as a file without the ioctl), and
	 * the gpa ranges they hold, which fake_kvm_is_private() reads from
	 * the guest_memfd's own attributes. */
	struct fake_gmem *gmem[8];
	unsigned ngmem;
	struct fake_inplace {
		struct fake_gmem *g;
		uint64_t gpa, size, off;
	} inplace[16];
	unsigned ninplace;
	/* log of attribute calls, for order checks: last 64 */
	struct fake_attr_call {
		uint64_t gpa, size, attributes;
		int ret;
	} log[64];
	unsigned nlog;
};

void fake_kvm_init(struct fake_kvm *f, enum fake_vm_type type);
void fake_kvm_fini(struct fake_kvm *f);
/* ops bound to a fake_kvm (pass the fake as ops_opaque) */
extern const struct cvmconv_ops fake_kvm_ops;
/* The whole KVM_SET_MEMORY_ATTRIBUTES ioctl, flags included (the library's
 * op has none: it always sends 0). 0 or -errno, as the kernel answers. */
int fake_kvm_set_attributes_ioctl(struct fake_kvm *f, uint64_t gpa, uint64_t size,
				  uint64_t attributes, uint64_t flags);
/* Serve @g's fd through fake_kvm_ops.set_gmem_attributes. */
void fake_kvm_attach_gmem(struct fake_kvm *f, struct fake_gmem *g);
/* 1 private, 0 shared */
int fake_kvm_is_private(const struct fake_kvm *f, uint64_t gpa);
/* Inject: the n-th (1-based, counted from now) call of @kind fails with -err. */
void fake_kvm_fail_nth(struct fake_kvm *f, enum fake_call kind, uint64_t n, int err);
void fake_kvm_fail_clear(struct fake_kvm *f);
/* A config wired to this fake: vm_fd -1, ops = fake_kvm_ops. */
struct cvmconv_config fake_kvm_config(struct fake_kvm *f, enum cvmconv_unaligned policy);
/* cvmconv_add_region(), and on success bind the region's backings to the
 * oracle (see struct fake_kvm). Returns what cvmconv_add_region() returned. */
int fake_kvm_add_region(struct fake_kvm *f, struct cvmconv *c, const struct cvmconv_region *r);
/* Bind a region's backings without adding it (a test that adds it itself). */
void fake_kvm_bind_region(struct fake_kvm *f, const struct cvmconv_region *r);
/* The oracle's check of one punch of @len bytes at @offset of @fd (or at @hva
 * when @fd < 0): the number of live pages it would free (0 = safe). For
 * wrappers that make the kernel call themselves. */
uint64_t fake_kvm_live_in_punch(struct fake_kvm *f, int fd, const void *hva, uint64_t offset,
				uint64_t len);

/* Compare every 4 KiB page in [gpa, gpa+size) between library and fake;
 * returns the number of mismatching pages (0 = consistent). Fast for uniform
 * ranges is not required: tests keep regions small (<= 1 GiB) and the check
 * walks the library's view with cvmconv_is_private(). */
uint64_t fake_kvm_mismatches(const struct fake_kvm *f, struct cvmconv *c, uint64_t gpa,
			     uint64_t size);

#endif
