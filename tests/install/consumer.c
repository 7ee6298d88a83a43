/* SPDX-License-Identifier: MIT */
/* A VMM-shaped consumer of an installed cvmconv: creates a context with its
 * own attribute op, converts a range of a real memfd, prints the version and
 * the JSON stats. Built by tests/install/run.sh with find_package(cvmconv)
 * and with pkg-config. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cvmconv.h>

#if CVMCONV_VERSION_NUMBER < 100
#error "version macros missing"
#endif

static int attrs(void *opaque, uint64_t gpa, uint64_t size, uint64_t attributes)
{
	(void)opaque;
	return (gpa | size) & 4095 || attributes & ~CVMCONV_ATTR_PRIVATE ? -EINVAL : 0;
}

int main(void)
{
	struct cvmconv_ops ops = { .set_memory_attributes = attrs };
	struct cvmconv_config cfg = { .sz = sizeof(cfg), .vm_fd = -1, .ops = &ops };
	struct cvmconv *c;
	char json[1024];
	uint64_t ret = 1;
	int fd = cvmconv_memfd_create("consumer", 4 << 20, 4096);

	if (fd < 0 || cvmconv_create(&cfg, &c))
		return 1;
	struct cvmconv_region r = { .sz = sizeof(r),
				    .gpa = 1ULL << 32,
				    .size = 4 << 20,
				    .private_fd = -1,
				    .shared_fd = fd,
				    .flags = CVMCONV_REGION_ATTRS_ONLY, /* no private side here */
				    .unaligned = -1 };
	if (cvmconv_add_region(c, &r) ||
	    cvmconv_map_gpa_range(c, 1ULL << 32, 512, CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &ret) ||
	    ret || cvmconv_is_private(c, 1ULL << 32) != 1)
		return 1;
	cvmconv_stats_json(c, json, sizeof(json));
	printf("cvmconv %s (header %s): %s\n", cvmconv_version(), CVMCONV_VERSION_STRING, json);
	cvmconv_destroy(c);
	close(fd);
	return strcmp(cvmconv_version(), CVMCONV_VERSION_STRING) != 0;
}
