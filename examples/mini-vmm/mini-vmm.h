/* SPDX-License-Identifier: MIT */
/*
 * mini-vmm: a small VMM that runs one scenario of private/shared conversions
 * through cvmconv, three ways:
 *
 *   kvm       a real KVM_X86_SW_PROTECTED_VM with guest_memfd and a guest made
 *             of hand-assembled machine code (guest_code.c);
 *   simulate  no KVM: a software guest (sim_guest.c) produces the same exits
 *             in a real struct kvm_run, attributes go to a strict recorder;
 *   native    no KVM: the *same machine code* the kvm path loads runs in this
 *             process; vmcall/out/hlt trap and become kvm_run exits, and the
 *             guest's memory window follows the attributes (native_guest.c).
 *
 * The scenario is one table (scenario.c). Every exit of every path goes
 * through vmm_exit() (vmm.c), which calls cvmconv_handle_exit() first.
 */
#ifndef MINI_VMM_H
#define MINI_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvm_compat.h" /* src/: the guest_memfd UAPI the 6.1 headers lack */

#include "cvmconv.h"

#define KiB UINT64_C(1024)
#define MiB (1024 * KiB)
#define PAGE_SIZE_4K (4 * KiB)
#define HUGE_SIZE (2 * MiB)

/*
 * Guest physical layout. RAM sits at 1 GiB rather than 0 so that the native
 * path can map the guest window at the same virtual address (page 0 cannot be
 * mapped); every address stays below 4 GiB for the 32-bit guest.
 */
#define GUEST_BASE UINT64_C(0x40000000) /* slot 0: RAM, guest_memfd-backed */
#define RAM_SIZE (16 * MiB)
#define CODE_GPA (GUEST_BASE + 0x1000) /* guest code, in the first 2 MiB */
#define CODE_MAX (64 * KiB)
#define TEST_GPA (GUEST_BASE + 2 * MiB)	   /* [TEST_GPA, RAM end): converted */
#define NOSLOT_GPA (GUEST_BASE + RAM_SIZE) /* slot 1: no guest_memfd */
#define NOSLOT_SIZE (2 * MiB)
#define WINDOW_SIZE (RAM_SIZE + NOSLOT_SIZE) /* what the model tracks */
#define WINDOW_PAGES (WINDOW_SIZE / PAGE_SIZE_4K)
#define RAM_PAGES (RAM_SIZE / PAGE_SIZE_4K)

/* The guest reports through port I/O (out imm8, eax). */
#define PORT_STEP_DONE 0x80  /* eax = index of the step just finished */
#define PORT_CHECK_FAIL 0x81 /* eax = the value that failed (read or RAX) */

/* Content seeds: the dword at guest physical address a holds a ^ seed.
 * Bit 31 is set in every seed and clear in every address, so a pattern never
 * reads as zero and two seeds never give the same value at one address. */
#define SEED_ZERO 0u		/* the page reads as zeros */
#define SEED_HOST 0xC0DE0000u	/* the VMM's marker on the shared side at start */
#define SEED_NOSLOT 0x90510700u /* the VMM's marker in the no-guest_memfd slot */

/* ---- the scenario (scenario.c) ---- */

enum step_kind {
	STEP_MAP,   /* KVM_HC_MAP_GPA_RANGE(gpa, size / 4 KiB, attrs); the guest needs RAX == 0 */
	STEP_WRITE, /* the guest writes pattern `seed` over [gpa, gpa + size) */
	STEP_CHECK, /* the guest reads [gpa, gpa + size) and compares with the model */
	STEP_FAULT, /* an access whose private/shared intent differs from the attribute */
	STEP_END,   /* hlt */
};

struct step {
	enum step_kind kind;
	uint64_t gpa, size; /* bytes, 4 KiB multiples */
	uint64_t attrs;	    /* STEP_MAP: args[2] (bit 4 private, bits 0-1 size hint) */
	uint32_t seed;	    /* STEP_WRITE */
	bool refused_fault; /* STEP_CHECK: the first access ends in a memory fault
			     * cvmconv must refuse (no private backing) */
	const char *what;
};

extern const struct step scenario[];
extern const size_t scenario_len;

/* Which paths turn an access of the wrong kind into a memory-fault exit.
 * On a SW_PROTECTED VM, KVM derives the private bit of every guest access
 * from the attribute itself (arch/x86/kvm/mmu/mmu.c, kvm_mmu_page_fault), so
 * the guest cannot express one: STEP_FAULT is a no-op there. */
enum path {
	PATH_KVM,
	PATH_SIMULATE,
	PATH_NATIVE,
};
const char *path_name(enum path p);
bool path_has_implicit_faults(enum path p);

/* What the VMM expects to be in each page of the window. */
struct model {
	uint64_t shared_page; /* page size of the shared backing (4 KiB or 2 MiB) */
	uint8_t private_[WINDOW_PAGES];
	uint32_t shared_seed[WINDOW_PAGES];  /* content of the shared side */
	uint32_t private_seed[WINDOW_PAGES]; /* content of the private side */
};

void model_init(struct model *m, uint64_t shared_page);
/* The seed a guest read of the page at @gpa returns (its live side; the
 * no-guest_memfd slot has only a shared side). */
uint32_t model_read_seed(const struct model *m, uint64_t gpa);
/* Apply a whole step, as it completes on path @p. */
void model_apply(struct model *m, const struct step *s, enum path p);
/* The conversion itself, following cvmconv's punch rules (docs/semantics.md):
 * the stale side of 4 KiB backings is punched at once; a huge page of the
 * shared side when all of its pages are private. guest_memfd is 4 KiB. */
void model_convert(struct model *m, uint64_t gpa, uint64_t size, bool to_private);
/* How many memory-fault / hypercall exits step @s produces on path @p. */
unsigned step_expected_hypercalls(const struct step *s);
unsigned step_expected_faults(const struct step *s, enum path p);
void step_describe(const struct step *s, char *buf, size_t len);
const char *model_seed_name(uint32_t seed);

static inline uint32_t pattern_at(uint64_t gpa, uint32_t seed)
{
	return seed ? (uint32_t)gpa ^ seed : 0;
}

static inline uint64_t model_page(uint64_t gpa)
{
	return (gpa - GUEST_BASE) / PAGE_SIZE_4K;
}

/* ---- guest machine code (guest_code.c) ---- */

#define MAX_HYPERCALL_SITES 64

struct guest_code {
	uint8_t bytes[CODE_MAX];
	size_t len;
	/* offsets of the vmcall instructions (the native path patches them) */
	uint32_t hypercall_site[MAX_HYPERCALL_SITES];
	size_t nhypercall_sites;
};

/* Assemble the scenario for path @p (expectations come from a dry run of the
 * model with shared page size @shared_page). 0 or -E2BIG. */
int guest_code_build(struct guest_code *gc, enum path p, uint64_t shared_page);

/* ---- the VMM (vmm.c) ---- */

struct vmm;

/* How the VMM reaches its vCPU; the simulate path has no run(). */
struct guest_regs {
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rip;
};

struct vmm {
	enum path path;
	struct cvmconv *conv;
	/* backings */
	int shared_fd, private_fd, noslot_fd;
	uint8_t *shared_map;  /* RAM_SIZE, the shared side of slot 0 */
	uint8_t *private_map; /* RAM_SIZE, the stand-in's mapping (not for guest_memfd) */
	uint8_t *noslot_map;  /* NOSLOT_SIZE, slot 1 */
	bool shared_huge, private_is_gmem;
	uint64_t huge_size;	   /* shared huge page size wanted: 2 MiB (0) or 1 GiB */
	uint64_t unevictable_base; /* /proc/meminfo Unevictable when guest_memfd was made */
	uint64_t shared_map_size;  /* RAM_SIZE, or a whole 1 GiB huge page */
	/* attributes when there is no KVM: the strict recorder */
	uint8_t rec_private[WINDOW_PAGES];
	uint64_t rec_calls, rec_refused;
	/* the native path remaps its window on every attribute change */
	int (*on_attributes)(struct vmm *v, uint64_t gpa, uint64_t size, bool private_);
	/* real KVM */
	int vm_fd;
	/* the vCPU */
	int (*get_regs)(struct vmm *v, struct guest_regs *r);
	/* progress */
	struct model model;
	size_t step;		  /* index of the step in progress */
	unsigned step_hypercalls; /* conversion exits seen in this step */
	unsigned step_faults;
	bool done, failed;
	uint64_t checks_ok, checks_failed;
	uint64_t exits_by_reason[64];
	uint64_t exits_total;
};

enum vmm_next {
	VMM_REENTER, /* run the vCPU again */
	VMM_DONE,    /* the guest halted at the end of the scenario */
	VMM_FAIL,
};

int vmm_setup_backings(struct vmm *v, bool want_huge);
int vmm_setup_conv(struct vmm *v);
void vmm_teardown(struct vmm *v);
/* Print the initial state and the first step; call once before the guest runs. */
void vmm_start(struct vmm *v);
/* The vCPU loop of the kvm and native paths: @vcpu_run is KVM_RUN (0 or
 * -errno); every exit goes to vmm_exit(). 0 when the guest reached its end. */
int vmm_run_loop(struct vmm *v, struct kvm_run *run, int (*vcpu_run)(void *opaque), void *opaque);
/* Every exit of every path: cvmconv_handle_exit() first, then the VMM's own. */
enum vmm_next vmm_exit(struct vmm *v, struct kvm_run *run);
/* The VMM's own attribute change, outside cvmconv (the repair after a refused
 * memory fault in the slot that has no guest_memfd). */
int vmm_set_attributes(struct vmm *v, uint64_t gpa, uint64_t size, bool private_);
int vmm_report(struct vmm *v);
void vmm_check(struct vmm *v, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const struct cvmconv_ops *vmm_recorder_ops(void);
uint64_t fd_allocated(int fd);
/* What the private side holds: st_blocks of a stand-in; for guest_memfd
 * (which keeps no st_blocks) mincore() where it can be mapped, else the
 * growth of /proc/meminfo Unevictable since it was created. @how names it. */
uint64_t private_allocated(const struct vmm *v, const char **how);

/* ---- paths ---- */

/* 0 success, 1 a check failed, 77 not available here (@why says why). */
int kvm_probe(char *why, size_t len);
int kvm_run_scenario(struct vmm *v, bool want_huge, char *why, size_t len);
int sim_run_scenario(struct vmm *v, bool want_huge);
int native_run_scenario(struct vmm *v, char *why, size_t len);
int guest_model_run(bool rfc, int platform, uint64_t ram_mib, bool want_huge);

/* ---- huge pages (hugepages.c) ---- */

bool hugepages_reserve(long need, char *why, size_t len);
void hugepages_restore(void);

#endif /* MINI_VMM_H */
