/* SPDX-License-Identifier: MIT */
/*
 * --simulate: no KVM. A software guest walks the scenario table and does
 * what the machine code of guest_code.c does, step for step: its requests
 * become exits in a real struct kvm_run (laid out as KVM lays it out: the
 * exit union at offset 32, the port I/O data in the page after kvm_run) that
 * go through the same vmm_exit() as the real path. Its memory accesses land
 * on the side the page is live on, as KVM decides it: the attribute (kept by
 * the strict recorder) picks the shared memfd or the private stand-in.
 *
 * Unlike a SW_PROTECTED guest, this one plays a SEV-SNP/TDX guest for
 * STEP_FAULT: its access carries its own private bit, so a private access to
 * a shared page becomes KVM_EXIT_MEMORY_FAULT(PRIVATE).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "mini-vmm.h"

#define RUN_BYTES (2 * PAGE_SIZE_4K) /* kvm_run, then the PIO data page */
#define PIO_DATA_OFFSET PAGE_SIZE_4K /* where KVM puts port I/O data (KVM_PIO_PAGE_OFFSET) */
#define MAX_FAULT_RETRIES 4	     /* a fault that repeats more often is a bug */

static struct sim {
	struct vmm *v;
	struct kvm_run *run;
	uint64_t rsi; /* the address a failed read was at (what KVM_GET_REGS gives) */
} sim;

static int sim_get_regs(struct vmm *v, struct guest_regs *r)
{
	(void)v;
	memset(r, 0, sizeof(*r));
	r->rsi = sim.rsi;
	return 0;
}

static void new_exit(uint32_t reason)
{
	/* KVM rewrites the exit reason and the union; stale bytes must not matter */
	memset((uint8_t *)sim.run + offsetof(struct kvm_run, hypercall), 0xA5,
	       sizeof(sim.run->hypercall));
	sim.run->exit_reason = reason;
}

/* vmcall with RAX = 12 from a 32-bit guest; returns what the guest finds in
 * EAX, or -1 when the VMM stops the vCPU. */
static int64_t sim_map_gpa_range(uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	new_exit(KVM_EXIT_HYPERCALL);
	sim.run->hypercall.nr = KVM_HC_MAP_GPA_RANGE;
	sim.run->hypercall.args[0] = gpa;
	sim.run->hypercall.args[1] = npages;
	sim.run->hypercall.args[2] = attrs;
	sim.run->hypercall.ret = 0;	 /* KVM presets it */
	sim.run->hypercall.longmode = 0; /* `flags` in newer headers: not 64-bit */
	if (vmm_exit(sim.v, sim.run) != VMM_REENTER)
		return -1;
	/* complete_hypercall_exit (arch/x86/kvm/x86.c): 32-bit guests get the
	 * low half of hypercall.ret in EAX */
	return (uint32_t)sim.run->hypercall.ret;
}

static enum vmm_next sim_out(uint16_t port, uint32_t value)
{
	new_exit(KVM_EXIT_IO);
	sim.run->io.direction = KVM_EXIT_IO_OUT;
	sim.run->io.size = 4;
	sim.run->io.port = port;
	sim.run->io.count = 1;
	sim.run->io.data_offset = PIO_DATA_OFFSET;
	memcpy((uint8_t *)sim.run + PIO_DATA_OFFSET, &value, sizeof(value));
	return vmm_exit(sim.v, sim.run);
}

static enum vmm_next sim_memory_fault(uint64_t gpa, uint64_t size, bool private_)
{
	struct cvmconv_kvm_memory_fault *mf;

	new_exit(KVM_EXIT_MEMORY_FAULT);
	mf = cvmconv_run_memory_fault(sim.run);
	mf->flags = private_ ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0;
	mf->gpa = gpa;
	mf->size = size;
	return vmm_exit(sim.v, sim.run);
}

/* Where a guest access to @gpa lands: the live side per the attribute. A
 * private page of slot 1 has no private backing: KVM exits with a memory
 * fault (kvm_mmu_faultin_pfn: the slot has no guest_memfd). */
static enum vmm_next sim_access(uint64_t gpa, uint32_t **where)
{
	for (int tries = 0; tries < MAX_FAULT_RETRIES; tries++) {
		const struct vmm *v = sim.v;
		bool private_ = v->rec_private[model_page(gpa)];
		enum vmm_next r;

		if (gpa < NOSLOT_GPA) {
			*where = (uint32_t *)((private_ ? v->private_map : v->shared_map) +
					      (gpa - GUEST_BASE));
			return VMM_REENTER;
		}
		if (!private_) {
			*where = (uint32_t *)(v->noslot_map + (gpa - NOSLOT_GPA));
			return VMM_REENTER;
		}
		r = sim_memory_fault(gpa & ~(PAGE_SIZE_4K - 1), PAGE_SIZE_4K, true);
		if (r != VMM_REENTER)
			return r;
	}
	vmm_check(sim.v, false, "memory fault at %#" PRIx64 " repeats", gpa);
	return VMM_FAIL;
}

static enum vmm_next sim_step(const struct step *s)
{
	enum vmm_next r = VMM_REENTER;
	uint32_t *p;
	int64_t rax;

	switch (s->kind) {
	case STEP_MAP:
		rax = sim_map_gpa_range(s->gpa, s->size / PAGE_SIZE_4K, s->attrs);
		if (rax < 0)
			return VMM_FAIL;
		if (rax != 0)
			return sim_out(PORT_CHECK_FAIL, (uint32_t)rax);
		break;
	case STEP_WRITE:
		for (uint64_t a = s->gpa; a < s->gpa + s->size && r == VMM_REENTER; a += 4) {
			r = sim_access(a, &p);
			if (r == VMM_REENTER)
				*p = pattern_at(a, s->seed);
		}
		break;
	case STEP_CHECK:
		for (uint64_t a = s->gpa; a < s->gpa + s->size && r == VMM_REENTER; a += 4) {
			uint32_t want = pattern_at(a, model_read_seed(&sim.v->model, a));

			r = sim_access(a, &p);
			if (r == VMM_REENTER && *p != want) {
				sim.rsi = a;
				return sim_out(PORT_CHECK_FAIL, *p);
			}
		}
		break;
	case STEP_FAULT:
		if (path_has_implicit_faults(PATH_SIMULATE))
			r = sim_memory_fault(s->gpa, s->size,
					     (s->attrs & CVMCONV_MAP_GPA_RANGE_ENCRYPTED) != 0);
		break;
	case STEP_END:
		new_exit(KVM_EXIT_HLT);
		return vmm_exit(sim.v, sim.run);
	}
	if (r != VMM_REENTER)
		return r;
	return sim_out(PORT_STEP_DONE, (uint32_t)(s - scenario));
}

int sim_run_scenario(struct vmm *v, bool want_huge)
{
	void *page;
	int ret = 1;

	printf("mini-vmm: simulate path (no KVM): a software guest drives the scenario\n");
	page = mmap(NULL, RUN_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED) {
		perror("mmap(kvm_run)");
		return 1;
	}
	sim.v = v;
	sim.run = page;
	v->get_regs = sim_get_regs;
	if (vmm_setup_backings(v, want_huge) == 0 && vmm_setup_conv(v) == 0) {
		vmm_start(v);
		for (size_t i = 0; i < scenario_len; i++)
			if (sim_step(&scenario[i]) !=
			    (scenario[i].kind == STEP_END ? VMM_DONE : VMM_REENTER))
				break;
		ret = vmm_report(v);
	}
	vmm_teardown(v);
	munmap(page, RUN_BYTES);
	return ret;
}
