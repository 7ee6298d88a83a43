/* SPDX-License-Identifier: MIT */
/*
 * Reclaim from a crosvm-style WaitContext loop: every fd the loop waits on
 * is added with a token, and the loop dispatches on the token that fired
 * (crosvm's base::WaitContext::add(&fd, Token) and wait(); in Rust the
 * token is an enum deriving EventToken). The same shape in C over epoll,
 * the token in epoll_event.data.u64, with the cvmconv poll fd as one more
 * token beside the VMM's own.
 *
 * A translation unit of docs/integration.md: it compiles; the devices
 * behind the other tokens are the VMM's.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>

#include "cvmconv.h"

int vmm_control_loop(struct cvmconv *conv, int exit_evt, int device_fd,
		     void (*device_ready)(int fd));

enum token { TOKEN_EXIT = 1, TOKEN_RECLAIM, TOKEN_DEVICE };

struct wait_context {
	int epfd;
};

static int wait_ctx_add(struct wait_context *w, int fd, enum token t)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = t };

	return epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

/* The VMM's control loop: runs until the exit event fires. */
int vmm_control_loop(struct cvmconv *conv, int exit_evt, int device_fd,
		     void (*device_ready)(int fd))
{
	struct wait_context w = { epoll_create1(EPOLL_CLOEXEC) };
	int err;

	if (w.epfd < 0)
		return -errno;
	err = wait_ctx_add(&w, exit_evt, TOKEN_EXIT);
	if (!err)
		err = wait_ctx_add(&w, cvmconv_get_poll_fd(conv), TOKEN_RECLAIM);
	if (!err)
		err = wait_ctx_add(&w, device_fd, TOKEN_DEVICE);
	while (!err) {
		struct epoll_event ev[8];
		int n = epoll_wait(w.epfd, ev, 8, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			break;
		}
		for (int i = 0; i < n; i++) {
			switch ((enum token)ev[i].data.u64) {
			case TOKEN_EXIT:
				return 0;
			case TOKEN_RECLAIM: {
				/* stale memory waits: free it here, off the vCPUs */
				int ret = cvmconv_flush(conv);

				if (ret)
					fprintf(stderr, "cvmconv_flush: %d\n", ret);
				break;
			}
			case TOKEN_DEVICE:
				device_ready(device_fd);
				break;
			}
		}
	}
	return err;
}
