/* SPDX-License-Identifier: MIT */
/*
 * Memory faults that a conversion cannot resolve. KVM reports
 * KVM_EXIT_MEMORY_FAULT for a private access to a memslot without
 * guest_memfd or when kvm_gmem_get_pfn() fails (arch/x86/kvm/mmu/mmu.c);
 * the range is then already in the state the guest wants, and re-entering
 * faults again at once, forever. Documentation/virt/kvm/api.rst
 * (KVM_CAP_MEMORY_FAULT_INFO) asks userspace to guard against the same
 * annotated fault coming back. A second vCPU faulting on a page another one
 * has just converted is normal, though, and must re-enter: so the fault is
 * refused only when the same vCPU (the same kvm_run) reported this very
 * fault last time and no conversion happened since.
 */
#include <errno.h>
#include <stdint.h>

#include "internal.h"

static uint32_t slot_of(const void *run)
{
	uint64_t k = (uint64_t)(uintptr_t)run;

	return (uint32_t)((k * 0x9E3779B97F4A7C15ULL) >> 56) % FAULT_MEMOS;
}

bool fault_guard_repeats(struct cvmconv *c, const void *run, uint64_t gpa, uint64_t size,
			 uint64_t flags, uint64_t gen_before)
{
	uint64_t gen = atomic_load_explicit(&c->generation, memory_order_relaxed);
	uint32_t s = slot_of(run);
	struct fault_memo *m = NULL;
	bool repeats;

	pthread_mutex_lock(&c->fault_lock);
	/* the run's slot, or a free one; when all are taken (more vCPUs
	 * than FAULT_MEMOS) its home slot is reused */
	for (uint32_t i = 0; i < FAULT_MEMOS; i++) {
		struct fault_memo *t = &c->fault_memo[(s + i) % FAULT_MEMOS];

		if (t->run == run || !t->run) {
			m = t;
			break;
		}
	}
	if (!m)
		m = &c->fault_memo[s];
	repeats = m->run == run && gen == gen_before && m->gen == gen && m->gpa == gpa &&
		  m->size == size && m->flags == flags;
	*m = (struct fault_memo){ run, gpa, size, flags, gen };
	pthread_mutex_unlock(&c->fault_lock);
	return repeats;
}
