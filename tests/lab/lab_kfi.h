/* SPDX-License-Identifier: MIT */
/*
 * The kernel's fault injection, for lab-guest-random --scenario
 * kernel-faults (lab_kernel_faults.c): failslab and fail_page_alloc set up
 * in debugfs for this thread only, /proc/thread-self/fail-nth armed and
 * read back, bursts through make-it-fail and the attributes' times, and
 * the kernel's reports (fail_dump's stacks on /dev/kmsg) counted by the
 * kernel function that met the fault (lib/fault-inject.c,
 * Documentation/fault-injection/fault-injection.rst).
 * Thread safety: one thread (the fault counters are per task).
 */
#ifndef CVMCONV_LAB_KFI_H
#define CVMCONV_LAB_KFI_H

#include <stdbool.h>

#define KFI_MAX_SITES 64

struct kfi_site {
	char name[320]; /* "function (allocation, via syscall) [attribute]" */
	unsigned n;
};

/* --burst K: K calls fail from the N-th on (1: the N-th only) */
extern unsigned kernel_faults_burst;
extern unsigned kfi_burst_extra; /* failures of bursts past their first call */
extern struct kfi_site kfi_sites[KFI_MAX_SITES];
extern unsigned kfi_nsites, kfi_reports;

/* Mount debugfs if needed, set both attributes up, open fail-nth,
 * make-it-fail and /dev/kmsg (at its end). Exits LAB_SKIP without
 * CONFIG_FAILSLAB / CONFIG_FAULT_INJECTION_DEBUG_FS, dies on other errors. */
void kfi_setup(void);
/* Arm: the @n-th allocation site from here fails, and the burst - 1 after it. */
void kfi_arm(unsigned n);
/* Disarm; whether the n-th site was met (the count reached 0). */
bool kfi_disarm(void);
/* Read the kernel's fault reports since the last call into kfi_sites;
 * returns how many. */
unsigned kfi_collect(void);

#endif
