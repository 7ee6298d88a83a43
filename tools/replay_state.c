/* SPDX-License-Identifier: MIT */
/* cvmconv-replay's state: the command line (with its defaults), guest memory
 * and the context (see replay.h). */
#include "replay.h"

struct options opt = {
	.policy = CVMCONV_UNALIGNED_ALLOW,
	.granule = 2 * MiB,
	.backing = BACKING_SHMEM,
	.huge_page_size = 2 * MiB,
};
struct host_engine eng = { .shared_fd = -1, .private_fd = -1 };
