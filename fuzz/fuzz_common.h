/* SPDX-License-Identifier: MIT */
/*
 * What the fuzz harnesses share: the check that aborts on a finding, the
 * input reader (the byte encoding fuzz/seeds.py mirrors: a read past the
 * end gives 0, integers little-endian), and, for the two exit harnesses
 * (fuzz_exits, fuzz_exits_fast), the outcome of a request, what the
 * guest's KVM_HC_MAP_GPA_RANGE answer says about it, the kvm_run of such a
 * request, and the memfds of their set-up.
 *
 * Header only, static inline: a harness that keeps the sanitizer coverage
 * out of its own functions (#pragma clang attribute push) includes it after
 * the push, so these functions are treated like its own.
 */
#ifndef CVMCONV_FUZZ_COMMON_H
#define CVMCONV_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "cvmconv.h"
#include "kvm_compat.h"

/* Abort (a finding) when @cond is false, naming harness @name, the place
 * and the condition. A harness defines its CHECK() over it. */
#define FZ_CHECK(name, cond, ...)                                                          \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "%s: check failed at %s:%d: %s: ", name, __FILE__, \
				__LINE__, #cond);                                          \
			fprintf(stderr, __VA_ARGS__);                                      \
			fputc('\n', stderr);                                               \
			abort();                                                           \
		}                                                                          \
	} while (0)

/* ---- input reader ---- */

struct rd {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t u8(struct rd *r)
{
	if (!r->n)
		return 0;
	r->n--;
	return *r->p++;
}

/* low byte first */
static inline uint16_t u16(struct rd *r)
{
	uint16_t lo = u8(r);

	return (uint16_t)(lo | (uint16_t)(u8(r) << 8));
}

static inline uint64_t u64(struct rd *r)
{
	uint64_t v = 0;

	for (int i = 0; i < 64; i += 8)
		v |= (uint64_t)u8(r) << i;
	return v;
}

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- set-up ---- */

/* A memfd of @size bytes (@flags: MFD_HUGETLB or 0); -1 on failure. */
static inline int make_memfd(const char *name, uint64_t size, unsigned flags)
{
	int fd = memfd_create(name, MFD_CLOEXEC | flags);

	if (fd >= 0 && ftruncate(fd, (off_t)size) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ---- requests (the exit harnesses) ---- */

/* What became of a request: converted, refused as invalid, vetoed by the
 * listener, failed in the kernel. */
enum outcome { OK, REFUSED, VETOED, FAILED };

/* qsort() order of conversion ranges */
static inline int by_gpa(const void *a, const void *b)
{
	const struct cvmconv_range *x = a, *y = b;

	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

/* The outcome of a guest request the library answered with @ret (for the
 * VMM; a kvm_run's 1 already mapped to 0) and @hc (for the guest): a host
 * failure must give the guest -KVM_EFAULT, a veto -KVM_EPERM. @what names
 * the request in a finding. */
static inline enum outcome fz_guest_outcome(const char *name, const char *what, int ret,
					    uint64_t hc)
{
	if (ret < 0) {
		FZ_CHECK(name, hc == (uint64_t)-CVMCONV_KVM_EFAULT, "%s failure: guest gets 0x%llx",
			 what, (unsigned long long)hc);
		return FAILED;
	}
	if (hc == 0)
		return OK;
	if (hc == (uint64_t)-CVMCONV_KVM_EINVAL)
		return REFUSED;
	FZ_CHECK(name, hc == (uint64_t)-CVMCONV_KVM_EPERM, "%s: guest got 0x%llx", what,
		 (unsigned long long)hc);
	return VETOED;
}

/* A KVM_HC_MAP_GPA_RANGE exit asking for [@gpa, @gpa + @npages pages) with
 * @attrs; everything else zero (the caller adds its garbage). */
static inline void fz_map_run(struct kvm_run *run, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	memset(run, 0, sizeof(*run));
	run->exit_reason = KVM_EXIT_HYPERCALL;
	run->hypercall.nr = KVM_HC_MAP_GPA_RANGE;
	run->hypercall.args[0] = gpa;
	run->hypercall.args[1] = npages;
	run->hypercall.args[2] = attrs;
}

/* A KVM_HC_MAP_GPA_RANGE exit @run (filled by the caller) through
 * cvmconv_handle_exit(): it may change hypercall.ret and nothing else of
 * the kvm_run, and answers 1 or a negative errno. Returns that answer with
 * 1 mapped to 0; *hc the guest's code. */
static inline int fz_map_exit(const char *name, struct cvmconv *c, struct kvm_run *run,
			      uint64_t *hc)
{
	struct kvm_run before;
	int ret;

	memcpy(&before, run, sizeof(before));
	ret = cvmconv_handle_exit(c, run);
	*hc = run->hypercall.ret;
	before.hypercall.ret = *hc;
	FZ_CHECK(name, !memcmp(&before, run, sizeof(before)), "handle_exit changed more than ret");
	FZ_CHECK(name, ret == 1 || ret < 0, "handle_exit returned %d for a MAP_GPA_RANGE exit",
		 ret);
	return ret == 1 ? 0 : ret;
}

#endif
