/* SPDX-License-Identifier: MIT */
/*
 * Listeners and batches: a listener hears every run of pages that changes
 * state, before (may veto) and after; a batch converts a list of ranges as
 * one atomic request with one attribute update per maximal run.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cvmconv.h"

#define MiB (1024 * 1024ULL)
#define VETOED_GPA (32 * MiB) /* the listener refuses to let this page go private */

static unsigned updates;

static int set_attributes(void *opaque, uint64_t gpa, uint64_t size, uint64_t attributes)
{
	(void)opaque, (void)gpa, (void)size, (void)attributes;
	updates++;
	return 0;
}

/* e.g. unmap from an IOMMU before pages turn private */
static int before(void *opaque, uint64_t gpa, uint64_t size, bool to_private)
{
	(void)opaque;
	printf("  before: [0x%" PRIx64 ", 0x%" PRIx64 ") -> %s\n", gpa, gpa + size,
	       to_private ? "private" : "shared");
	return to_private && gpa <= VETOED_GPA && VETOED_GPA < gpa + size ? -EBUSY : 0;
}

/* result 0: converted; -ECANCELED: vetoed or failed, undo what before() did */
static void after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	(void)opaque, (void)to_private;
	printf("  after:  [0x%" PRIx64 ", 0x%" PRIx64 ") %s\n", gpa, gpa + size,
	       result ? "cancelled" : "done");
}

int main(void)
{
	static const struct cvmconv_ops ops = { .set_memory_attributes = set_attributes };
	struct cvmconv_config cfg = { .sz = sizeof(cfg), .vm_fd = -1, .ops = &ops };
	struct cvmconv_region reg = {
		.sz = sizeof(reg), .gpa = 0, .size = 64 * MiB, .unaligned = -1
	};
	struct cvmconv_listener l = { .sz = sizeof(l), .before = before, .after = after };
	/* three ranges, out of order but contiguous: one run, one attribute update */
	const struct cvmconv_range batch[] = {
		{ .gpa = 4 * MiB, .size = 2 * MiB, .to_private = 1 },
		{ .gpa = 0, .size = 2 * MiB, .to_private = 1 },
		{ .gpa = 2 * MiB, .size = 2 * MiB, .to_private = 1 },
	};
	struct cvmconv *conv;
	int id, ret, bad = 0;

	reg.private_fd = cvmconv_memfd_create("private", reg.size, 4096);
	reg.shared_fd = cvmconv_memfd_create("shared", reg.size, 4096);
	if (cvmconv_create(&cfg, &conv) || cvmconv_add_region(conv, &reg))
		return 1;
	id = cvmconv_add_listener(conv, &l);
	printf("listener id %d\n", id);

	printf("host batch, 3 ranges:\n");
	ret = cvmconv_convert_batch(conv, batch, 3, 0, NULL);
	printf("cvmconv_convert_batch: %d, %u attribute update(s)\n", ret, updates);
	bad |= ret != 0 || updates != 1; /* [0, 6 MiB) is one run */

	printf("host conversion the listener vetoes:\n");
	ret = cvmconv_convert(conv, VETOED_GPA, 2 * MiB, true);
	printf("cvmconv_convert: %d (%s)\n", ret, strerror(-ret));
	bad |= ret != -EPERM;

	printf("cvmconv_remove_listener: %d\n", cvmconv_remove_listener(conv, id));
	ret = cvmconv_convert(conv, VETOED_GPA, 2 * MiB, true);
	printf("without the listener: %d\n", ret);
	bad |= ret != 0;

	/* retries punches that failed earlier; none did */
	printf("cvmconv_flush: %d\n", cvmconv_flush(conv));

	cvmconv_destroy(conv);
	close(reg.private_fd);
	close(reg.shared_fd);
	return bad;
}
