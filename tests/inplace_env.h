/* SPDX-License-Identifier: MIT */
/*
 * The environment of the test_inplace_*.c suites: one context on the strict
 * fake KVM with three adjacent regions, A = [BASE, BASE + RSIZE) two-backing
 * (shmem shared side, the host's guest_memfd or a stand-in as the private
 * side), B the next RSIZE in place over g[0] (content mode PRESERVE), C the
 * next in place over g[1] (ZERO); a log that keeps the last 8 lines and a
 * listener that counts.
 */
#ifndef CVMCONV_TEST_INPLACE_ENV_H
#define CVMCONV_TEST_INPLACE_ENV_H

#include <stdbool.h>
#include <stdint.h>

#include "cvmconv.h"
#include "fake_gmem.h"
#include "fake_kvm.h"
#include "fixture.h"

#define BASE (4 * SZ_1G)
#define RSIZE (4 * SZ_2M)
#define RPAGES (RSIZE / SZ_4K)
#define A_GPA BASE
#define B_GPA (BASE + RSIZE)
#define C_GPA (BASE + 2 * RSIZE)
#define HC(err) ((uint64_t) - (int64_t)(err))
#define ENC CVMCONV_MAP_GPA_RANGE_ENCRYPTED

struct env {
	struct fake_kvm fake;
	struct fake_gmem g[2];
	struct cvmconv *c;
	int a_shared, a_private;
	char log[8][512];
	unsigned nlog;
	unsigned befores, afters_ok, afters_cancel;
};

/* CMocka setup and teardown of a struct env. */
int inplace_setup(void **state);
int inplace_teardown(void **state);
/* Whether one of the last 8 log lines contains @needle. */
bool logged(const struct env *e, const char *needle);
/* A region of RSIZE at @gpa in place over @g, content mode @mode. */
struct cvmconv_region inplace_region(uint64_t gpa, const struct fake_gmem *g, uint64_t mode);
struct cvmconv_stats stats(struct cvmconv *c);
/* A listener counting befores and afters into @e. */
void add_listener(struct env *e);

#endif
