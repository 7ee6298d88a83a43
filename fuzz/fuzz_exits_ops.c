/* SPDX-License-Identifier: MIT */
/* fuzz_exits: the kernel ops around the strict fake (injected attribute and
 * punch failures, every call recorded), the listener and the log. */
#include "fuzz_exits.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#endif

/* ---- kernel ops: injection and recording around the strict fake ---- */

static void record(struct event e)
{
	CHECK(H.nev < MAX_EVENTS, "event log overflow");
	H.ev[H.nev++] = e;
}

static int fz_set_attrs(void *opaque, uint64_t gpa, uint64_t size, uint64_t attrs)
{
	bool fail = H.attr_fail_mask & 1;
	int ret;

	H.attr_fail_mask >>= 1;
	H.kernel_calls++;
	CHECK(!H.broken, "attribute update issued on a broken context");
	ret = fail ? -H.attr_errno : fake_kvm_ops.set_memory_attributes(opaque, gpa, size, attrs);
	if (ret) {
		if (!H.attr_failures_this_op++)
			H.first_attr_err = ret;
	}
	return ret;
}

static int fz_punch(void *opaque, int fd, uint64_t off, uint64_t len)
{
	bool fail = H.punch_fail_mask & 1;
	int ret;

	H.punch_fail_mask >>= 1;
	H.kernel_calls++;
	CHECK(!H.broken, "punch issued on a broken context");
	/* the live-page oracle sees every attempt, also those made to fail */
	CHECK(!fake_kvm_live_in_punch(opaque, fd, NULL, off, len), "punch of a live page");
	ret = fail ? -H.punch_errno : fake_kvm_ops.punch(opaque, fd, off, len);
	if (fail)
		H.punch_failed_ever = true;
	CHECK(!ret || fail, "real punch failed: fd %d off 0x%llx len 0x%llx: %d", fd,
	      (unsigned long long)off, (unsigned long long)len, ret);
	record((struct event){ EV_PUNCH, off, len, fd, false, ret });
	return ret;
}

static int fz_discard(void *opaque, void *hva, uint64_t len)
{
	bool fail = H.punch_fail_mask & 1;
	int ret;

	H.punch_fail_mask >>= 1;
	H.kernel_calls++;
	CHECK(!H.broken, "discard issued on a broken context");
	CHECK(!fake_kvm_live_in_punch(opaque, -1, hva, 0, len), "discard of a live page");
	ret = fail ? -H.punch_errno : fake_kvm_ops.discard_hva(opaque, hva, len);
	if (fail)
		H.punch_failed_ever = true;
	CHECK(!ret || fail, "real discard failed: %d", ret);
	record((struct event){ EV_DISCARD, (uint64_t)(uintptr_t)hva, len, -1, false, ret });
	return ret;
}

/* The guest_memfd update of an in-place R1. An EAGAIN is tried again by
 * the library: only the answer that ends its tries (the
 * CVMCONV_INPLACE_RETRIES + 1st in a row) fails the update, the others
 * are not failures. Injected EAGAINs name the first page of the range, so
 * nothing before it is set back. */
static int fz_set_gmem(void *opaque, int fd, uint64_t offset, uint64_t size, uint64_t attrs,
		       uint64_t flags, uint64_t *error_offset)
{
	bool fail = H.attr_fail_mask & 1;
	int ret;

	H.attr_fail_mask >>= 1;
	H.kernel_calls++;
	CHECK(!H.broken, "guest_memfd update issued on a broken context");
	CHECK(R[1].inplace && fd == G1.fd, "guest_memfd update of fd %d", fd);
	if (fail) {
		ret = -H.attr_errno;
		if (ret == -EAGAIN)
			*error_offset = offset;
	} else {
		ret = fake_kvm_ops.set_gmem_attributes(opaque, fd, offset, size, attrs, flags,
						       error_offset);
	}
	if (ret == -EAGAIN && ++H.busy_streak <= CVMCONV_INPLACE_RETRIES)
		return ret; /* tried again */
	H.busy_streak = 0;
	if (ret && !H.attr_failures_this_op++)
		H.first_attr_err = ret;
	return ret;
}

const struct cvmconv_ops fz_ops = { fz_set_attrs, fz_punch, fz_discard, fz_set_gmem };

int fz_before(void *opaque, uint64_t gpa, uint64_t size, bool to_private)
{
	(void)opaque;
	H.befores++;
	CHECK(size && !((gpa | size) & (PG - 1)), "before(): bad run");
	/* a run is made of pages that change: none is in the target state yet */
	for (uint64_t a = gpa; a < gpa + size; a += PG) {
		CHECK(region_of_gpa(a) >= 0, "before(): page 0x%llx outside regions",
		      (unsigned long long)a);
		CHECK(H.pre[(a - win_lo) / PG] != to_private,
		      "before(): page 0x%llx already in the target state", (unsigned long long)a);
	}
	if (H.veto_armed) {
		H.veto_armed--;
		H.vetoed = true;
		return 1;
	}
	return 0;
}

void fz_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	(void)opaque;
	H.afters++;
	CHECK(result == 0 || result == -ECANCELED, "after(): result %d", result);
	if (result == 0)
		record((struct event){ EV_AFTER, gpa, size, -1, to_private, 0 });
}

void fz_log(void *opaque, int level, const char *msg)
{
	size_t len = strlen(msg);

	(void)opaque;
	CHECK(level >= LOG_EMERG && level <= LOG_DEBUG, "log level %d", level);
	CHECK(len > 0 && len < 256 && msg[len - 1] != '\n', "log line \"%s\"", msg);
	H.log_lines++;
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
