/* SPDX-License-Identifier: MIT */
/*
 * The 2 MiB pool used up by another process while a real guest converts
 * back and forth (lab-guest-random --scenario pool-race --huge).
 *
 * A forked neighbour (tools/pool_hog.c) grabs every huge page that comes
 * free for 30 ms, gives all back for 30 ms, and again, while the guest
 * converts random pieces of huge pages of both regions and writes and reads
 * them. Region 1 has CVMCONV_REGION_ALLOC_SHARED, region 0 not. What may
 * happen, and is checked:
 *  - region 1, to shared, pool empty: the guest gets -KVM_EFAULT, the VMM
 *    -ENOSPC, shared_alloc_failures counts it, the pages stay private with
 *    their data (the guest reads them);
 *  - region 0, to shared, pool empty: the conversion succeeds; the guest's
 *    first touch of the page cannot be served and KVM_RUN fails with EFAULT
 *    until a page comes free (the VMM waits and re-enters; counted);
 *  - anything else: the request succeeds.
 * After the race: the library's view equals the model on every page, the
 * guest reads every page back, and the kernel's accounting equals the
 * library's. No hang (KVM_RUN waits are bounded), no crash, no page lost.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cvmconv.h"
#include "lab_world.h"
#include "pool_hog.h"

#define KVM_EFAULT_RET 0xfffffff2ULL

void scenario_pool_race(uint64_t steps)
{
	struct vcpu *vc = &W.vcpus[0];
	struct cvmconv_stats st = { .sz = sizeof(st) };
	struct pool_hog hog = { 0 };
	uint64_t done = 0, refused = 0, to_shared[NREG] = { 0 }, wrong = 0;
	long rounds, peak = 0;
	int r;

	if (!W.huge || !W.alloc_shared)
		die("pool-race needs --huge (set by the scenario)", EINVAL);
	r = pool_hog_start(&hog);
	if (r)
		die("starting the pool hog", r);
	r = pool_hog_race(&hog, 30, 30);
	if (r)
		die("the pool hog", r);
	W.retry_efault = true;
	for (uint64_t s = 0; s < steps && W.failures < 20; s++) {
		uint64_t hp = 1 + rnd() % (NPAGES / 512 - 1), p0 = hp * 512, n = 512;
		bool to_private = rnd() & 1;
		int region = p0 >= RSIZE / PAGE;
		struct kvm_regs regs;
		uint64_t ret, first = UINT64_MAX, last = 0;

		if (rnd() % 2) {
			p0 += rnd() % 512;
			n = 1 + rnd() % (hp * 512 + 512 - p0);
		}
		W.reenter_on_host_error = true;
		W.host_error = 0;
		regs = command(vc, CMD_MAP, KVM_HC_MAP_GPA_RANGE, gpa_of(p0), n,
			       to_private ? KVM_MAP_GPA_RANGE_ENCRYPTED : 0, 0);
		W.reenter_on_host_error = false;
		count(&W.hypercalls, 1);
		ret = (uint32_t)regs.rax;
		if (ret == KVM_EFAULT_RET) {
			/* only an allocation can fail here: region 1 to shared */
			check(region == 1 && !to_private && W.host_error == -ENOSPC,
			      "step %" PRIu64 ": region %d to %s refused, VMM %d", s, region,
			      to_private ? "private" : "shared", W.host_error);
			refused++;
		} else {
			check(ret == 0, "step %" PRIu64 ": guest got 0x%" PRIx64, s, ret);
			if (ret)
				continue;
			done++;
			for (uint64_t p = p0; p < p0 + n; p++)
				if (W.priv[p] != to_private) {
					if (first == UINT64_MAX)
						first = p;
					last = p;
				}
			to_shared[region] += !to_private && first != UINT64_MAX;
			model_convert(p0, n, to_private);
			/* may wait for a page on region 0 */
			if (first != UINT64_MAX)
				guest_write(vc, first, last - first + 1);
		}
		if (s % 4 == 0)
			verify_from(vc, hp * 512 + rnd() % 512, hp * 512 + 512);
	}
	rounds = pool_hog_calm(&hog, &peak);
	pool_hog_stop(&hog);
	W.retry_efault = false;
	W.hog_pages = 0;
	for (uint64_t p = FIRST_PAGE; p < NPAGES; p++)
		wrong += cvmconv_is_private(W.c, gpa_of(p)) != (int)W.priv[p];
	check(!wrong, "after the race: the library differs from the model on %" PRIu64 " pages",
	      wrong);
	verify_all(vc, FIRST_PAGE, NPAGES - FIRST_PAGE);
	check_accounting(steps);
	cvmconv_get_stats(W.c, &st);
	check(st.shared_alloc_failures == refused,
	      "shared_alloc_failures %" PRIu64 ", refused %" PRIu64, st.shared_alloc_failures,
	      refused);
	check(refused > 0 && W.efault_waits[0] > 0,
	      "the race never bit: %" PRIu64 " refusals, %" PRIu64 " waits on region 0", refused,
	      W.efault_waits[0]);
	printf("lab-guest-random: pool race, another process grabbing the 2 MiB pool (%ld "
	       "rounds, up to %ld pages at once):\n"
	       "  %" PRIu64 " requests: %" PRIu64 " done (%" PRIu64 " turned pages of region 0 "
	       "shared, %" PRIu64 " of region 1), %" PRIu64 " refused\n"
	       "  region 1 (CVMCONV_REGION_ALLOC_SHARED): %" PRIu64
	       " conversions to shared refused: guest -KVM_EFAULT, VMM -ENOSPC, "
	       "shared_alloc_failures %" PRIu64 ", pages stayed private; KVM_RUN waits %" PRIu64
	       "\n"
	       "  region 0 (without): conversions succeeded; the guest's access then made "
	       "KVM_RUN fail with EFAULT %" PRIu64 " times until the pool had a page\n"
	       "  pages lost %" PRIu64 "\n",
	       rounds, peak, steps, done, to_shared[0], to_shared[1], refused, refused,
	       st.shared_alloc_failures, W.efault_waits[1], W.efault_waits[0], W.lost_pages);
	check(W.lost_pages == 0, "%" PRIu64 " pages lost", W.lost_pages);
}
