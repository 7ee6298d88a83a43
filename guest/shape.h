/* SPDX-License-Identifier: MIT */
/*
 * Layer 3, conversions: platform exit shaping (SNP PSC, TDX MapGPA, KVM PV),
 * what one conversion becomes at the host. Uses the guest memory's direct
 * map and counters.
 */
#ifndef CVMG_SHAPE_H
#define CVMG_SHAPE_H

#include <stdbool.h>
#include <stdint.h>

#include "guest_mem.h"

int shape_exits(struct guest_mem *g, uint64_t gpa, uint64_t npages, bool to_private);
/* SNP early_set_pages_state(): the GHCB MSR protocol, one exit per 4 KiB page;
 * a failure terminates the guest (-ENOTRECOVERABLE). */
int shape_snp_msr_psc(struct guest_mem *g, uint64_t gpa, uint64_t npages, bool to_private);
/* KVM PV enc_dec_hypercall() over [gpa, gpa + size): one exit per direct-map leaf. */
void shape_pv_hypercalls(struct guest_mem *g, uint64_t gpa, uint64_t size, bool to_private);
/* One KVM_HC_MAP_GPA_RANGE exactly as given (kvm_init_platform); result ignored. */
void shape_raw_exit(struct guest_mem *g, uint64_t gpa, uint64_t npages, uint64_t attrs);

#endif /* CVMG_SHAPE_H */
