/* SPDX-License-Identifier: MIT */
/*
 * Reclaim from the VMM's event loop: with CVMCONV_DEFER_PUNCH the vCPU
 * threads punch nothing (below CVMCONV_DEFER_RANGES waiting ranges per
 * side), and the loop thread frees the stale memory whenever the poll fd
 * says some waits. The same fd fits QEMU's AioContext (aio_set_fd_handler(ctx,
 * fd, ..., reclaim, NULL, NULL, NULL, conv)) and crosvm's WaitContext (add
 * the fd with a token, call cvmconv_flush() when it fires).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "cvmconv.h"

int vmm_watch_reclaim(int epfd, struct cvmconv *conv);
void vmm_on_reclaim(struct cvmconv *conv);

/* Register the library's fd with an epoll set the VMM already runs. */
int vmm_watch_reclaim(int epfd, struct cvmconv *conv)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = conv };
	int fd = cvmconv_get_poll_fd(conv);

	if (fd < 0)
		return fd;
	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

/* The handler: free what waits. A punch that keeps failing leaves the fd
 * readable, so back off instead of spinning (here: at most once a second). */
void vmm_on_reclaim(struct cvmconv *conv)
{
	int err = cvmconv_flush(conv);

	if (err == -ENOTRECOVERABLE) {
		fprintf(stderr, "cvmconv: broken context: stop the VM\n");
	} else if (err) {
		fprintf(stderr, "cvmconv: flush: %s; retrying in 1 s\n", strerror(-err));
		sleep(1);
	}
}
