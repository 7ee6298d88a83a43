/* SPDX-License-Identifier: MIT */
/*
 * Decoding what the guest asked for. Every field of an exit is guest
 * controlled; the decoder only classifies it (it keeps no state) and hands
 * a struct conversion to convert.c, which refuses malformed requests with
 * -KVM_EINVAL and changes nothing for them.
 */
#include <errno.h>
#include <string.h>
#include <syslog.h>

#include "internal.h"
#include "probes.h"
#include "kvm_compat.h"

#define PAGES_2M (SIZE_2M / PAGE_4K)
#define PAGES_1G (SIZE_1G / PAGE_4K)
#define ATTRS_KNOWN (CVMCONV_MAP_GPA_RANGE_ENCRYPTED | CVMCONV_MAP_GPA_RANGE_PAGE_SZ_MASK)

/* KVM_HC_MAP_GPA_RANGE: args[0] gpa, args[1] npages (4 KiB units, also for
 * 2M entries), args[2] attrs (bit 4 encrypted; bits 0-1 page size hint).
 * KVM itself checks only gpa alignment and gfn overflow
 * (arch/x86/kvm/x86.c, KVM_HC_MAP_GPA_RANGE case of kvm_emulate_hypercall);
 * SEV-SNP and TDX exits reach us without those checks, so repeat them. */
static const char *decode_map_gpa_range(uint64_t gpa, uint64_t npages, uint64_t attrs,
					struct conversion *cv)
{
	uint64_t hint = attrs & CVMCONV_MAP_GPA_RANGE_PAGE_SZ_MASK;

	if (attrs & ~ATTRS_KNOWN)
		return "reserved attribute bits set";
	if (hint == 3)
		return "invalid page size hint 3";
	if (gpa & (PAGE_4K - 1))
		return "gpa not 4 KiB aligned";
	if (npages == 0)
		return "zero pages";
	/* npages is bounded before it is multiplied: no overflow, no work */
	if (npages > (GPA_LIMIT >> PAGE_SHIFT_4K) || gpa > GPA_LIMIT - (npages << PAGE_SHIFT_4K))
		return "range beyond the physical address space";
	if (hint == CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M &&
	    ((gpa & (SIZE_2M - 1)) || npages % PAGES_2M))
		return "2M page size hint on a range that is not 2 MiB aligned";
	if (hint == CVMCONV_MAP_GPA_RANGE_PAGE_SZ_1G &&
	    ((gpa & (SIZE_1G - 1)) || npages % PAGES_1G))
		return "1G page size hint on a range that is not 1 GiB aligned";
	cv->gpa = gpa;
	cv->size = npages << PAGE_SHIFT_4K;
	return NULL;
}

int cvmconv_map_gpa_range(struct cvmconv *c, uint64_t gpa, uint64_t npages, uint64_t attrs,
			  uint64_t *hc_ret)
{
	struct conversion cv = { 0,
				 0,
				 (attrs & CVMCONV_MAP_GPA_RANGE_ENCRYPTED) != 0,
				 true,
				 "map_gpa_range",
				 NULL,
				 { gpa, npages, attrs },
				 NULL };
	int guest_err, ret;

	if (!c || !hc_ret)
		return -EINVAL;
	PROBE(hypercall, gpa, npages, attrs);
	cv.invalid = decode_map_gpa_range(gpa, npages, attrs, &cv);
	ret = convert_request(c, &cv, &guest_err);
	*hc_ret = (uint64_t) - (int64_t)guest_err;
	PROBE(hypercall_done, ret, guest_err);
	return ret;
}

static int fault_answer(struct cvmconv *c, struct kvm_run *run,
			const struct cvmconv_kvm_memory_fault *mf, uint64_t gen, int ret,
			int guest_err, bool by_policy);

int cvmconv_handle_exit(struct cvmconv *c, struct kvm_run *run)
{
	if (!c || !run)
		return -EINVAL;
	if (run->exit_reason == KVM_EXIT_HYPERCALL) {
		uint64_t hc_ret;
		int ret;

		if (run->hypercall.nr != KVM_HC_MAP_GPA_RANGE)
			return 0;
		/* KVM presets ret = 0; always overwrite it: the guest reads it as RAX */
		ret = cvmconv_map_gpa_range(c, run->hypercall.args[0], run->hypercall.args[1],
					    run->hypercall.args[2], &hc_ret);
		run->hypercall.ret = hc_ret;
		return ret < 0 ? ret : 1;
	}
	if (run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
		const struct cvmconv_kvm_memory_fault *mf = cvmconv_run_memory_fault(run);
		bool by_policy = false;
		struct conversion cv = {
			.gpa = mf->gpa,
			.size = mf->size,
			.to_private = (mf->flags & KVM_MEMORY_EXIT_FLAG_PRIVATE) != 0,
			.guest = true,
			.source = "memory_fault",
			.raw = { mf->gpa, mf->size, mf->flags },
			.by_policy = &by_policy,
		};
		uint64_t gen = atomic_load_explicit(&c->generation, memory_order_relaxed);
		int guest_err, ret;

		PROBE(memory_fault, mf->gpa, mf->size, mf->flags);
		if (mf->flags & ~(uint64_t)KVM_MEMORY_EXIT_FLAG_PRIVATE)
			cv.invalid = "unknown memory fault flags";
		ret = convert_request(c, &cv, &guest_err);
		ret = fault_answer(c, run, mf, gen, ret, guest_err, by_policy);
		PROBE(memory_fault_done, ret);
		return ret;
	}
	return 0;
}

/* What cvmconv_handle_exit() says to a memory fault whose conversion
 * returned @ret with @guest_err. */
static int fault_answer(struct cvmconv *c, struct kvm_run *run,
			const struct cvmconv_kvm_memory_fault *mf, uint64_t gen, int ret,
			int guest_err, bool by_policy)
{
	if (ret < 0)
		return ret;
	/* A memory fault cannot be answered: the vCPU would fault again.
	 * A refused one is fatal for this vCPU; the VMM decides. The
	 * host's own no (REJECT policy, a listener's veto) is -EPERM;
	 * -EFAULT is kept for a malformed fault. */
	if (guest_err)
		return by_policy || guest_err == CVMCONV_KVM_EPERM ? -EPERM : -EFAULT;
	/* already in the wanted state, and this vCPU saw this very fault
	 * last time with no conversion since: re-entering would fault
	 * again forever */
	if (fault_guard_repeats(c, run, mf->gpa, mf->size, mf->flags, gen)) {
		log_guest(c, LOG_ERR,
			  "memory_fault gpa 0x%llx size 0x%llx flags 0x%llx again, with no "
			  "conversion since: converting cannot resolve it (no guest_memfd "
			  "behind it, or its backing cannot supply the page)",
			  (unsigned long long)mf->gpa, (unsigned long long)mf->size,
			  (unsigned long long)mf->flags);
		return -ELOOP;
	}
	return 1;
}
