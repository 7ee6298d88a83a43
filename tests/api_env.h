/* SPDX-License-Identifier: MIT */
/* The public API against the strict fake KVM (tests/fake_kvm.c) with small
 * shmem memfds as backings: what the test_api_*.c suites share (api_env.c).
 * After every state change the fake's attribute map must equal the
 * library's view of every region (env_check()).
 *
 * The suites, by what they test:
 *   test_api_registration  create and add_region/remove_region arguments
 *   test_api_convert       the conversion transaction, host conversions
 *   test_api_hostile_input hostile guest requests
 *   test_api_policy        the alignment policy
 *   test_api_rollback      rollback and the broken context
 *   test_api_exits         kvm_run decoding (cvmconv_handle_exit)
 *   test_api_stats         stats and tracker memory
 *   test_api_threads       concurrent callers */
#ifndef CVMCONV_TEST_API_ENV_H
#define CVMCONV_TEST_API_ENV_H

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/kvm.h>

#include "cvmconv.h"
#include "fake_kvm.h"
#include "fixture.h"

#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39
#endif
#define KVM_HC_MAP_GPA_RANGE_NR 12
#define MEMORY_EXIT_FLAG_PRIVATE (1ULL << 3)

#define ENC CVMCONV_MAP_GPA_RANGE_ENCRYPTED
#define HINT_2M CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M
#define HINT_1G CVMCONV_MAP_GPA_RANGE_PAGE_SZ_1G
#define HC_EINVAL ((uint64_t) - (int64_t)CVMCONV_KVM_EINVAL)
#define HC_EFAULT ((uint64_t) - (int64_t)CVMCONV_KVM_EFAULT)
#define SZ_1M (1ULL << 20)
#define SZ_4T (4ULL << 40)

/* 6.1 headers lack kvm_run.memory_fault; it sits in the exit union. */
struct memory_fault_exit {
	uint64_t flags, gpa, size;
};
_Static_assert(offsetof(struct kvm_run, hypercall) == 32, "exit union at 32");
_Static_assert(offsetof(struct kvm_run, hypercall.ret) == 88, "hypercall.ret at 88");

/* ---- log capture ---- */

#define LOG_KEEP 64
struct log_capture {
	unsigned lines;
	unsigned by_level[8];
	char msg[LOG_KEEP][256];
	int level[LOG_KEEP];
};

/* ---- test environment: one context on one fake VM ---- */

#define MAX_REGIONS 8
struct env {
	struct fake_kvm f;
	struct cvmconv *c;
	struct log_capture log;
	struct {
		uint64_t gpa, size;
		int fd_private, fd_shared;
	} reg[MAX_REGIONS];
	unsigned nreg;
};

/* ---- snapshots ---- */

/* Snapshot of both views (library per page over all regions, fake ranges). */
struct snapshot {
	uint8_t *lib;
	uint64_t npages;
	struct fake_range *fake;
	unsigned nfake;
};

/* Lines kept that contain @needle (case-insensitive) at a level <= @max_level. */
unsigned log_count_matching(const struct log_capture *l, const char *needle, int max_level);

struct cvmconv_config env_config(struct env *e, enum cvmconv_unaligned policy, uint64_t granule);
void env_init_granule(struct env *e, enum cvmconv_unaligned policy, uint64_t granule);
void env_init(struct env *e, enum cvmconv_unaligned policy);
int shmem_fd(uint64_t size);
struct cvmconv_region env_region_desc(uint64_t gpa, uint64_t size, int fd_private, int fd_shared,
				      uint32_t flags, int unaligned);
/* Region backed by two shmem memfds (the private one stands in for a
 * guest_memfd); @with_fds false: no backing at all. */
int env_add_region(struct env *e, uint64_t gpa, uint64_t size, uint32_t flags, int unaligned,
		   bool with_fds);
void env_add(struct env *e, uint64_t gpa, uint64_t size);
/* The fake's attribute map equals the library's view in every region. */
void env_check(struct env *e);
void env_fini(struct env *e);
struct cvmconv_stats stats(struct env *e);
uint64_t attr_calls(struct env *e);
const struct fake_attr_call *last_attr_call(struct env *e, unsigned back);
void assert_attr_call(const struct fake_attr_call *a, uint64_t gpa, uint64_t size,
		      uint64_t attributes);

void snapshot_take(struct env *e, struct snapshot *s);
void snapshot_free(struct snapshot *s);
void assert_unchanged(struct env *e, const struct snapshot *s);

/* ---- requests ---- */

int map(struct env *e, uint64_t gpa, uint64_t npages, uint64_t attrs, uint64_t *hc);
/* A request that must convert: answered 0, hc 0. */
void map_ok(struct env *e, uint64_t gpa, uint64_t npages, uint64_t attrs);
/* A request that must be refused: -KVM_EINVAL, nothing changed, no
 * attribute update, counted as rejected (and as an exit). */
void expect_rejected_at(struct env *e, uint64_t gpa, uint64_t npages, uint64_t attrs, int line);
#define expect_rejected(e, gpa, npages, attrs) expect_rejected_at(e, gpa, npages, attrs, __LINE__)

/* ---- kvm_run exits ---- */

void set_hypercall(struct kvm_run *run, uint64_t nr, uint64_t gpa, uint64_t npages, uint64_t attrs,
		   uint64_t ret);
void set_memory_fault(struct kvm_run *run, uint64_t flags, uint64_t gpa, uint64_t size);

#endif
