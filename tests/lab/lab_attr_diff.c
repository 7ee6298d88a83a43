/* SPDX-License-Identifier: MIT */
/*
 * The fake KVM (tests/fake_kvm.c) against the real kernel: the same seeded
 * KVM_SET_MEMORY_ATTRIBUTES calls — valid ones and hostile ones (misaligned
 * address or size, zero size, wrapping ranges, unknown attribute bits,
 * non-zero flags, ranges outside every memslot) — go to the fake and to a
 * real KVM_X86_SW_PROTECTED_VM. Every return code must be identical, and so
 * must the attribute state: every 1,000 calls each page of the memslot is
 * read back from the kernel with KVM_PRE_FAULT_MEMORY (tests/lab/lab_kvm.h)
 * and compared with the fake's.
 *
 *   lab-attr-diff [CALLS [SEED]]     default 10000 calls, seed 1
 *
 * Exit 0 when nothing differs, 1 on a difference (each one printed), 77
 * when the kernel has no SW_PROTECTED VM. Runs in the lab
 * (tools/kvm-lab/run.sh); TCG makes it slow, not wrong.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_kvm.h"
#include "lab_kvm.h"

#define PAGE 4096ULL
#define SLOT_GPA (1ULL << 32)
#define SLOT_SIZE (2ULL << 20) /* 512 pages read back each time */
#define CHECK_EVERY 1000

static uint64_t rng = 1;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

struct call {
	uint64_t gpa, size, attributes, flags;
	const char *kind;
};

/* One seeded call: mostly valid ones over and around the slot, the rest
 * each of the ways the kernel must refuse. */
static struct call pick(void)
{
	struct call c = { 0, 0, 0, 0, "valid" };
	uint64_t r = next() % 100;

	c.gpa = SLOT_GPA - 16 * PAGE + (next() % (SLOT_SIZE / PAGE + 32)) * PAGE;
	c.size = (1 + next() % (next() & 1 ? 8 : 600)) * PAGE;
	c.attributes = next() & 1 ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
	if (r < 70)
		return c;
	if (r < 74) {
		c.gpa += 1 + next() % (PAGE - 1);
		c.kind = "misaligned address";
	} else if (r < 78) {
		c.size += 1 + next() % (PAGE - 1);
		c.kind = "misaligned size";
	} else if (r < 81) {
		c.size = 0;
		c.kind = "zero size";
	} else if (r < 85) {
		c.gpa = UINT64_MAX - (next() % 8) * PAGE - PAGE + 1;
		c.size = (1 + next() % 8) * PAGE;
		c.kind = "wrapping range";
	} else if (r < 89) {
		c.attributes |= 1ULL << (next() % 64);
		c.kind = c.attributes & ~KVM_MEMORY_ATTRIBUTE_PRIVATE ? "unknown attribute"
								      : "valid";
	} else if (r < 93) {
		c.flags = 1ULL << (next() % 64);
		c.kind = "non-zero flags";
	} else if (r < 97) {
		/* far from any memslot: attributes need no memslot */
		c.gpa = (1ULL << 40) + (next() % 1024) * PAGE;
		c.kind = "outside memslots";
	} else {
		/* the end of the guest physical address space */
		c.gpa = (1ULL << 52) - (1 + next() % 16) * PAGE;
		c.size = (1 + next() % 8) * PAGE;
		c.kind = "top of the physical address space";
	}
	return c;
}

int main(int argc, char **argv)
{
	unsigned long calls = argc > 1 ? strtoul(argv[1], NULL, 0) : 10000;
	struct fake_kvm f;
	struct lab_vm v;
	const char *why = "";
	unsigned long diffs = 0, refused = 0, state_checks = 0, pages_checked = 0, private_seen = 0;
	int r;

	rng = argc > 2 ? strtoull(argv[2], NULL, 0) : 1;
	if (!rng)
		rng = 1;
	r = lab_vm_open(&v, SLOT_GPA, SLOT_SIZE, &why);
	if (r == LAB_SKIP) {
		printf("lab-attr-diff: SKIP: %s\n", why);
		return LAB_SKIP;
	}
	if (r) {
		fprintf(stderr, "lab-attr-diff: %s: %s\n", why, strerror(-r));
		return 1;
	}
	fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
	for (unsigned long i = 1; i <= calls; i++) {
		struct call c = pick();
		int real = lab_set_attributes(&v, c.gpa, c.size, c.attributes, c.flags);
		int fake = fake_kvm_set_attributes_ioctl(&f, c.gpa, c.size, c.attributes, c.flags);

		if (real != fake) {
			diffs++;
			printf("DIFF call %lu (%s): gpa 0x%" PRIx64 " size 0x%" PRIx64
			       " attributes 0x%" PRIx64 " flags 0x%" PRIx64
			       ": kernel %d, fake %d\n",
			       i, c.kind, c.gpa, c.size, c.attributes, c.flags, real, fake);
		}
		if (real)
			refused++;
		if (i % CHECK_EVERY == 0 || i == calls) {
			state_checks++;
			for (uint64_t gpa = SLOT_GPA; gpa < SLOT_GPA + SLOT_SIZE; gpa += PAGE) {
				int kernel = lab_page_private(&v, gpa);
				int model = fake_kvm_is_private(&f, gpa);

				pages_checked++;
				private_seen += kernel == 1;
				if (kernel < 0) {
					fprintf(stderr,
						"lab-attr-diff: reading gpa 0x%" PRIx64 ": %s\n",
						gpa, strerror(-kernel));
					return 1;
				}
				if (kernel != model) {
					diffs++;
					printf("DIFF after call %lu: gpa 0x%" PRIx64
					       " is %s in the kernel, %s in the fake\n",
					       i, gpa, kernel ? "private" : "shared",
					       model ? "private" : "shared");
				}
			}
		}
	}
	printf("lab-attr-diff: %lu KVM_SET_MEMORY_ATTRIBUTES calls to the kernel and the fake "
	       "(%lu refused by both), %lu state comparisons of %lu pages each (%lu pages, %lu of "
	       "them private), %lu differences\n",
	       calls, refused, state_checks, (unsigned long)(SLOT_SIZE / PAGE), pages_checked,
	       private_seen, diffs);
	/* a comparison that never saw both states would prove nothing */
	if (!private_seen || private_seen == pages_checked) {
		printf("lab-attr-diff: the state comparison saw only one state\n");
		diffs++;
	}
	fake_kvm_fini(&f);
	lab_vm_close(&v);
	return diffs ? 1 : 0;
}
