/* SPDX-License-Identifier: MIT */
/*
 * The shortest complete use of cvmconv: one context, one region with real
 * memfd backings, one guest request, the state and the counters.
 *
 * There is no VM here, so the context gets a set_memory_attributes op
 * instead of a VM fd; in a VMM, set .vm_fd and leave .ops NULL.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cvmconv.h"

#define MiB (1024 * 1024ULL)

static int set_attributes(void *opaque, uint64_t gpa, uint64_t size, uint64_t attributes)
{
	(void)opaque;
	printf("  KVM_SET_MEMORY_ATTRIBUTES gpa 0x%" PRIx64 " size 0x%" PRIx64 " -> %s\n", gpa,
	       size, attributes & CVMCONV_ATTR_PRIVATE ? "private" : "shared");
	return 0;
}

int main(void)
{
	static const struct cvmconv_ops ops = { .set_memory_attributes = set_attributes };
	struct cvmconv_config cfg = {
		.sz = sizeof(cfg),
		.vm_fd = -1,
		.unaligned = CVMCONV_UNALIGNED_LOG,
		.ops = &ops,
	};
	struct cvmconv_region reg = { .sz = sizeof(reg), .gpa = 0, .size = 64 * MiB };
	struct cvmconv_stats st = { .sz = sizeof(st) };
	struct cvmconv *conv;
	uint64_t hc_ret;
	char json[1024];
	int ret;

	printf("cvmconv %s\n", cvmconv_version());
	ret = cvmconv_create(&cfg, &conv);
	if (ret) {
		fprintf(stderr, "cvmconv_create: %s\n", strerror(-ret));
		return 1;
	}
	/* guest_memfd stand-in and shared side: 4 KiB shmem memfds */
	reg.private_fd = cvmconv_memfd_create("private", reg.size, 4096);
	reg.shared_fd = cvmconv_memfd_create("shared", reg.size, 4096);
	reg.unaligned = -1; /* the context's policy */
	if (reg.private_fd < 0 || reg.shared_fd < 0 || cvmconv_add_region(conv, &reg)) {
		fprintf(stderr, "backings or region failed\n");
		return 1;
	}

	/* the guest asks for [2 MiB, 4 MiB) to become private, 2M page size hint */
	ret = cvmconv_map_gpa_range(
		conv, 2 * MiB, 512,
		CVMCONV_MAP_GPA_RANGE_ENCRYPTED | CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M, &hc_ret);
	printf("map_gpa_range: return %d, guest gets %" PRId64 "\n", ret, (int64_t)hc_ret);
	printf("page at 3 MiB is %s\n", cvmconv_is_private(conv, 3 * MiB) ? "private" : "shared");

	cvmconv_get_stats(conv, &st);
	printf("exits %" PRIu64 ", attr_updates %" PRIu64 ", punches %" PRIu64 "\n", st.exits,
	       st.attr_updates, st.punches);
	if (cvmconv_stats_json(conv, json, sizeof(json)) < (int)sizeof(json))
		printf("%s\n", json);

	cvmconv_remove_region(conv, reg.gpa);
	cvmconv_destroy(conv); /* closes no fd */
	close(reg.private_fd);
	close(reg.shared_fd);
	return ret == 0 && hc_ret == 0 && st.attr_updates == 1 ? 0 : 1;
}
