/* SPDX-License-Identifier: MIT */
/*
 * The world of the lab's real-guest programs (tests/lab/lab_guest_random.c
 * explains the guest and its command loop): one SW_PROTECTED VM, two 16 MiB
 * guest_memfd regions at BASE, the library context, vCPUs, and the model
 * of the tag every side of every page holds. One instance, W.
 */
#ifndef CVMCONV_LAB_WORLD_H
#define CVMCONV_LAB_WORLD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cvmconv.h"
#include "kvm_compat.h"

#define PAGE 4096ULL
#define HPAGE (2ULL << 20)
#define BASE (1ULL << 30)   /* guest physical start of region 0 */
#define RSIZE (16ULL << 20) /* each of the two regions */
#define NREG 2
#define NPAGES (NREG * RSIZE / PAGE)
#define CODE_GPA (BASE + PAGE)	  /* in the first 2 MiB, which is never converted */
#define FIRST_PAGE (HPAGE / PAGE) /* pages below are the guest's own */
#define PORT_NEXT 0x82
#define CR0_PE 1ULL
#define KVM_EINVAL_RET 0xffffffeaULL /* -KVM_EINVAL as the guest's EAX */

enum { CMD_MAP = 1, CMD_WRITE = 2, CMD_VERIFY = 3, CMD_HALT = 4 };

#define MAX_VCPUS 8
#define NOSLOT_GPA (BASE + NREG * RSIZE) /* fault-loop: a slot without guest_memfd */

/* One vCPU running the command loop; its thread is the only one to touch it. */
struct vcpu {
	int fd;
	struct kvm_run *run;
	unsigned id;
	pthread_t thread; /* set by the thread that runs it, for the watchdog */
	_Atomic pid_t tid;
	uint64_t last[6]; /* the last command's registers: ebp eax ebx ecx edx edi */
};

struct world {
	int kvm, vm;
	struct vcpu vcpus[MAX_VCPUS];
	unsigned nvcpus;
	size_t run_size;
	pthread_mutex_t lock; /* the figures and the log; the model is split by owner */
	bool fail_punches;    /* the punch op fails every third call */
	uint64_t punch_calls, punch_failed;
	int shared_fd[NREG], gmem[NREG];
	uint8_t *noslot; /* fault-loop: a slot without guest_memfd */
	bool noslot_wanted;
	bool alloc_shared;	    /* region 1 has CVMCONV_REGION_ALLOC_SHARED */
	bool reenter_on_host_error; /* a hypercall the library failed goes back to the guest */
	int host_error;		    /* the last such error */
	uint64_t hog_pages;	    /* held by another process (tools/pool_hog.c) */
	/* pool-race: KVM_RUN failing with EFAULT (no page for the guest's
	 * access) is retried, counted by region of the command's address */
	bool retry_efault;
	uint64_t efault_waits[NREG];
	uint8_t *shared[NREG];
	bool huge;
	/* kernel-faults: the hugetlb pool, not st_blocks, says what the shared
	 * files hold (see check_accounting); how far i_blocks drifted */
	bool pool_truth;
	uint64_t iblocks_drift, iblocks_drift_events;
	bool overlap; /* stress: vCPUs convert overlapping ranges */
	bool hva0;    /* region 0's shared side given as a mapping (madvise path) */
	/* instead of cvmconv_handle_exit(W.c, vc->run) in run_to_next() */
	int (*exit_handler)(struct vcpu *vc);
	struct cvmconv *c;
	struct cvmconv_config cfg; /* what W.c was created with */
	uint64_t unevictable0;
	/* the model: attribute and the tag each side holds, per page */
	bool priv[NPAGES];
	uint32_t tag[2][NPAGES]; /* [0] shared side, [1] private side */
	_Atomic uint32_t next_tag;
	uint64_t rng;
	/* figures */
	uint64_t lost_pages; /* pages of guest reads that did not find their tag */
	uint64_t hypercalls, refused, writes, verifies, pages_verified, checks, failures;
	/* the watchdog: exits handled so far, and whether it kicked the vCPUs */
	_Atomic uint64_t progress;
	_Atomic bool kicked;
};

extern struct world W;

/* ---- helpers ---- */
uint64_t rnd(void);
/* Count a check; print it when it failed. Thread-safe. */
void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* ioctl retried on EINTR/EAGAIN: the result or -errno. */
int xioctl(int fd, unsigned long req, void *arg);
__attribute__((noreturn)) void die(const char *what, int err);
uint64_t st_blocks_bytes(int fd);
/* A /proc/meminfo field without a unit (HugePages_*), or -1. */
long meminfo_field(const char *name);
/* The model after a conversion of pages [p0, p0 + n) (docs/semantics.md). */
void model_convert(uint64_t p0, uint64_t n, bool to_private);

/* ---- vCPUs and the guest's commands ---- */
/* lab_vcpu.c: the guest code at @dst; a vCPU's initial registers */
void load_guest_code(uint8_t *dst);
void set_cpu(struct vcpu *vc);
void dump_vcpu(struct vcpu *vc, const char *why);
void claim_vcpu(struct vcpu *vc);
void start_watchdog(void);
/* Run until the guest asks for its next command, conversion exits going
 * to cvmconv_handle_exit(); the registers then. */
struct kvm_regs run_to_next(struct vcpu *vc);
void load_command(struct vcpu *vc, uint64_t ebp, uint64_t eax, uint64_t ebx, uint64_t ecx,
		  uint64_t edx, uint64_t edi);
struct kvm_regs command(struct vcpu *vc, uint64_t ebp, uint64_t eax, uint64_t ebx, uint64_t ecx,
			uint64_t edx, uint64_t edi);
void guest_halt(struct vcpu *vc);
uint64_t gpa_of(uint64_t p);
void count(uint64_t *field, uint64_t n);
void guest_write(struct vcpu *vc, uint64_t p0, uint64_t n);
void guest_verify(struct vcpu *vc, uint64_t p0, uint64_t n);
/* One KVM_HC_MAP_GPA_RANGE from the guest, checked (valid: ret 0 and the
 * converted pages written; else -KVM_EINVAL). */
void guest_map(struct vcpu *vc, uint64_t gpa, uint64_t npages, uint64_t attrs, bool valid);
uint64_t random_attrs(void);
void random_map(struct vcpu *vc);
void verify_from(struct vcpu *vc, uint64_t p0, uint64_t limit);
void random_verify(struct vcpu *vc);
/* The guest reads every page of [p0, p0 + n) and compares its tag. */
void verify_all(struct vcpu *vc, uint64_t p0, uint64_t n);
/* The library's double allocation, punch counts and huge pages against the
 * kernel's (st_blocks, Unevictable, HugePages_*). */
void check_accounting(uint64_t step);
/* The VM, its regions, the library context and the vCPUs (W.huge,
 * W.nvcpus, W.alloc_shared, W.noslot_wanted chosen before). */
void setup(void);
/* Create W.c from W.cfg and add the two regions (shared). */
void world_context(void);

/* tests/lab/lab_kernel_faults.c */
void scenario_kernel_faults(void);
/* --burst: tests/lab/lab_kfi.h */
extern unsigned kernel_faults_burst;
/* tests/lab/lab_pools.c */
void scenario_pool_race(uint64_t steps);

#endif
