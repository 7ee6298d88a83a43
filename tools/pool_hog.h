/* SPDX-License-Identifier: MIT */
/*
 * Another process that takes huge pages from the kernel's 2 MiB pool: the
 * neighbour a VMM shares a host with. A forked child holding an
 * MFD_HUGETLB memfd allocates (fallocate mode 0) or frees (punch) whole
 * huge pages on command, or races: it grabs every page that comes free for
 * a period, then gives all back for a period, and again, until the next
 * command. Its pages go back to the pool when it exits.
 */
#ifndef CVMCONV_POOL_HOG_H
#define CVMCONV_POOL_HOG_H

#include <stdint.h>
#include <sys/types.h>

struct pool_hog {
	pid_t pid;
	int cmd, answer; /* pipes to and from the child */
};

/* Fork the hog. 0 or -errno. */
int pool_hog_start(struct pool_hog *h);

/* Take or give back pages until HugePages_Free is @leave (fewer when the
 * hog holds none to give). Returns the pages it holds then, or -errno. */
long pool_hog_leave(struct pool_hog *h, long leave);

/* Race: grab every free page for @grab_ms, then free all for @free_ms,
 * repeatedly, until the next command. 0 or -errno. */
int pool_hog_race(struct pool_hog *h, unsigned grab_ms, unsigned free_ms);

/* Stop racing, give every page back; returns how many grab rounds found
 * pages and the most pages held at once (either may be NULL), or -errno. */
long pool_hog_calm(struct pool_hog *h, long *peak);

/* End the child and wait for it: its pages are back in the pool. */
void pool_hog_stop(struct pool_hog *h);

#endif
