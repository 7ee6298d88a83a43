/* SPDX-License-Identifier: MIT */
/*
 * In-place conversion (CVMCONV_REGION_INPLACE): one attribute update of a
 * piece of a region, as KVM_SET_MEMORY_ATTRIBUTES2 on its guest_memfd
 * (offsets in the file), with the bounded retry of a busy page.
 *
 * The rules followed (the series' Documentation/virt/kvm/api.rst and
 * virt/kvm/guest_memfd.c, summarised in shared/docs/KVM-FACTS.md):
 *   - EAGAIN: a page of the range still has references the kernel did not
 *     expect (a host mapping, a GUP pin by vhost or VFIO); error_offset
 *     names it. The posted code checks the whole range before converting
 *     any page, so nothing changed and the same range is tried again. A
 *     later kernel may convert the pages before error_offset first: what
 *     lies before the furthest error_offset seen is set back on a final
 *     failure, so the result is the same on both.
 *   - ZERO is refused for to-private: pages turning private are converted
 *     UNSPECIFIED in a ZERO region.
 *   - Rollbacks use UNSPECIFIED (accepted by every kernel), PRESERVE in a
 *     PRESERVE region.
 * Nothing is punched: the pages a conversion leaves are the ones it enters.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "internal.h"
#include "probes.h"

static uint64_t content_flags(const struct region *r, bool to_private, bool rollback)
{
	if (rollback)
		return r->content_mode == CVMCONV_CONTENT_PRESERVE ? CVMCONV_CONTENT_PRESERVE : 0;
	if (to_private && r->content_mode == CVMCONV_CONTENT_ZERO)
		return 0;
	return r->content_mode;
}

/* One kernel call over region pages [from, to). */
static int gmem_call(struct cvmconv *c, struct region *r, uint64_t from, uint64_t to,
		     bool to_private, bool rollback, uint64_t *error_offset)
{
	uint64_t gpa = r->gpa + (from << PAGE_SHIFT_4K), size = (to - from) << PAGE_SHIFT_4K;
	int ret;

	COUNT(c, attr_updates, 1);
	(void)gpa; /* for the probe */
	PROBE(attr_update, gpa, size, to_private);
	ret = op_set_gmem_attributes(c, r->gmem_fd, r->gmem_offset + (from << PAGE_SHIFT_4K), size,
				     to_private ? CVMCONV_ATTR_PRIVATE : 0,
				     content_flags(r, to_private, rollback), error_offset);
	PROBE(attr_update_done, ret);
	return ret;
}

/* Between tries: let the thread that holds the reference run (a VMM
 * thread in a copy, a vhost worker), then wait a little longer each time;
 * at most CVMCONV_INPLACE_RETRIES_MAX tries of 100 us steps. */
static void backoff(uint32_t attempt)
{
	struct timespec ts = { 0, (long)attempt * 100000L };

	sched_yield();
	if (attempt)
		nanosleep(&ts, NULL);
}

NOINLINE static void busy_failed(struct cvmconv *c, const struct region *r, uint64_t from,
				 uint64_t to, bool to_private, uint64_t error_offset, bool known,
				 uint32_t tries)
{
	uint64_t gpa = r->gpa + (from << PAGE_SHIFT_4K);

	COUNT(c, gmem_busy_failures, 1);
	if (known)
		log_guest(c, LOG_ERR,
			  "in-place conversion of gpa 0x%llx size 0x%llx to %s: guest_memfd "
			  "offset 0x%llx (gpa 0x%llx) still has host references after %u "
			  "tries (a mapping or pin: vhost, VFIO, a VMM thread); rolling back",
			  (unsigned long long)gpa,
			  (unsigned long long)((to - from) << PAGE_SHIFT_4K),
			  to_private ? "private" : "shared", (unsigned long long)error_offset,
			  (unsigned long long)(error_offset - r->gmem_offset + r->gpa), tries);
	else
		log_guest(
			c, LOG_ERR,
			"in-place conversion of gpa 0x%llx size 0x%llx to %s: a page still "
			"has host references after %u tries (error_offset 0x%llx outside "
			"the range); rolling back",
			(unsigned long long)gpa, (unsigned long long)((to - from) << PAGE_SHIFT_4K),
			to_private ? "private" : "shared", tries, (unsigned long long)error_offset);
}

int inplace_set(struct cvmconv *c, struct region *r, uint64_t from, uint64_t to, bool to_private,
		bool rollback)
{
	uint64_t start = r->gmem_offset + (from << PAGE_SHIFT_4K),
		 end = r->gmem_offset + (to << PAGE_SHIFT_4K);
	uint64_t furthest = start; /* pages before it may have converted */
	uint64_t eo = 0;
	bool known = false;
	uint32_t tries = 0;
	int ret;

	for (;;) {
		eo = UINT64_MAX;
		ret = gmem_call(c, r, from, to, to_private, rollback, &eo);
		tries++;
		if (ret != -EAGAIN)
			break;
		/* error_offset comes from the kernel (or the VMM's op): used
		 * only when it names a page of the range */
		known = eo >= start && eo < end && !(eo & (PAGE_4K - 1));
		if (known && eo > furthest)
			furthest = eo;
		if (tries > c->inplace_retries)
			break;
		COUNT(c, gmem_busy_retries, 1);
		backoff(tries - 1);
	}
	if (ret != -EAGAIN || rollback)
		return ret;
	busy_failed(c, r, from, to, to_private, eo, known, tries);
	/* a kernel that converts up to the busy page: set that part back */
	if (furthest > start) {
		uint64_t eo2;
		int undo = gmem_call(c, r, from, (furthest - r->gmem_offset) >> PAGE_SHIFT_4K,
				     !to_private, true, &eo2);

		if (undo) {
			atomic_store(&c->broken, true);
			log_msg(c, LOG_CRIT,
				"in-place rollback of guest_memfd offset 0x%llx size 0x%llx "
				"failed: %s; attributes no longer known, the VM must be stopped",
				(unsigned long long)start, (unsigned long long)(furthest - start),
				strerror(-undo));
			return -ENOTRECOVERABLE;
		}
	}
	return ret;
}
