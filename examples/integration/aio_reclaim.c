/* SPDX-License-Identifier: MIT */
/*
 * Reclaim from a QEMU AioContext: the poll fd as an fd handler whose read
 * callback flushes. QEMU calls the read handler from the context's thread
 * (the main loop or an IOThread) whenever the fd polls readable, so the
 * punches run there, never on a vCPU thread.
 *
 * A translation unit of docs/integration.md; it compiles here without
 * QEMU, so the few declarations it needs are repeated below with the
 * shapes of QEMU 8.2+ include/block/aio.h (aio_set_fd_handler lost its
 * is_external argument in 8.2) and include/qemu/main-loop.h. Inside QEMU,
 * include those headers instead.
 */
#include <stdbool.h>
#include <stdio.h>

#include "cvmconv.h"

typedef struct AioContext AioContext;
typedef void IOHandler(void *opaque);
typedef bool AioPollFn(void *opaque);
void aio_set_fd_handler(AioContext *ctx, int fd, IOHandler *io_read, IOHandler *io_write,
			AioPollFn *io_poll, IOHandler *io_poll_ready, void *opaque);

/* The VMM's entry points (its own header, in a real VMM). */
void vm_attach_reclaim(AioContext *ctx, struct cvmconv *conv);
void vm_detach_reclaim(AioContext *ctx, struct cvmconv *conv);

/* The read handler: the fd is readable, so deferred or failed punches wait. */
static void cvmconv_reclaim(void *opaque)
{
	struct cvmconv *conv = opaque;
	int ret = cvmconv_flush(conv);

	/* a punch that keeps failing keeps the fd readable: QEMU would call
	 * us again at once, so say it (and a real VMM backs off, e.g. by
	 * removing the handler and re-adding it from a timer) */
	if (ret)
		fprintf(stderr, "cvmconv_flush: %d, stale memory still allocated\n", ret);
}

/* Call once the context exists, from the thread that owns @ctx. */
void vm_attach_reclaim(AioContext *ctx, struct cvmconv *conv)
{
	aio_set_fd_handler(ctx, cvmconv_get_poll_fd(conv), cvmconv_reclaim, NULL, NULL, NULL, conv);
}

/* Before cvmconv_destroy(): the fd goes with the context. */
void vm_detach_reclaim(AioContext *ctx, struct cvmconv *conv)
{
	aio_set_fd_handler(ctx, cvmconv_get_poll_fd(conv), NULL, NULL, NULL, NULL, NULL);
}
