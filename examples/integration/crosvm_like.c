/* SPDX-License-Identifier: MIT */
/*
 * crosvm-style integration: vCPU threads do not touch guest memory state
 * themselves; they forward conversion exits to one memory loop, which also
 * serves host-initiated conversions (here: a device that wants a window of
 * guest memory shared). cvmconv is thread-safe and would not need this; the
 * loop exists for the VMM's own memory state (mappings, balloon, device
 * windows), which then changes in one place, in one order.
 *
 * Requests travel over SOCK_SEQPACKET socketpairs inside one process, so
 * they carry pointers: the sender blocks until the reply, which keeps the
 * pointed-to kvm_run and range list alive and unshared meanwhile.
 *
 * A translation unit of docs/integration.md: it compiles, but the VMM
 * around it (vmm_handle_exit, thread creation) is yours.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <linux/kvm.h>

#include "cvmconv.h"

#ifndef KVM_EXIT_MEMORY_FAULT /* Linux 6.8+ include/uapi/linux/kvm.h */
#define KVM_EXIT_MEMORY_FAULT 39
#endif

enum mem_request_kind {
	MEM_REQ_EXIT,	    /* a vCPU's conversion exit: run */
	MEM_REQ_HOST_BATCH, /* host-initiated: ranges[0..nranges) */
};

struct mem_request {
	enum mem_request_kind kind;
	struct kvm_run *run;
	const struct cvmconv_range *ranges;
	size_t nranges;
};

struct mem_reply {
	int ret; /* what the cvmconv call returned */
};

#define MAX_TUBES 64

struct memory_loop {
	struct cvmconv *conv;
	int tubes[MAX_TUBES]; /* loop ends of the socketpairs: vCPUs and devices */
	size_t ntubes;
	int stop_fd; /* readable (eventfd, pipe) when the loop must end */
};

struct vcpu {
	int fd, index;
	struct kvm_run *run;
	int tube; /* vCPU end of its socketpair with the memory loop */
};

int vmm_handle_exit(struct vcpu *cpu);
int memory_loop_run(struct memory_loop *ml);
int vcpu_run_loop(struct vcpu *cpu);
int device_share_window(int tube, uint64_t gpa, uint64_t size);

static int serve(struct memory_loop *ml, const struct mem_request *req)
{
	switch (req->kind) {
	case MEM_REQ_EXIT:
		/* 1 handled, 0 not a conversion exit, < 0 stop the VM */
		return cvmconv_handle_exit(ml->conv, req->run);
	case MEM_REQ_HOST_BATCH:
		/* one atomic host request, no guest policy; -EPERM if a
		 * listener vetoed, -EINVAL for a range outside guest memory */
		return cvmconv_convert_batch(ml->conv, req->ranges, req->nranges, 0, NULL);
	default:
		return -EINVAL;
	}
}

/* The memory loop: one request at a time, in arrival order per tube. */
int memory_loop_run(struct memory_loop *ml)
{
	struct pollfd pfd[MAX_TUBES + 1];

	if (ml->ntubes > MAX_TUBES)
		return -EINVAL;
	for (;;) {
		/* poll() skips negative fds: tubes whose peer went away */
		for (size_t i = 0; i < ml->ntubes; i++)
			pfd[i] = (struct pollfd){ .fd = ml->tubes[i], .events = POLLIN };
		pfd[ml->ntubes] = (struct pollfd){ .fd = ml->stop_fd, .events = POLLIN };
		if (poll(pfd, ml->ntubes + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (pfd[ml->ntubes].revents)
			return 0;
		for (size_t i = 0; i < ml->ntubes; i++) {
			struct mem_request req;
			struct mem_reply rep;

			if (!pfd[i].revents)
				continue;
			if (!(pfd[i].revents & POLLIN) ||
			    recv(ml->tubes[i], &req, sizeof(req), 0) != (ssize_t)sizeof(req)) {
				ml->tubes[i] = -1; /* peer gone (or broken): stop polling it */
				continue;
			}
			rep.ret = serve(ml, &req);
			if (rep.ret < 0 && rep.ret != -EPERM && rep.ret != -EINVAL)
				fprintf(stderr, "memory loop: %s\n", strerror(-rep.ret));
			if (send(ml->tubes[i], &rep, sizeof(rep), 0) != (ssize_t)sizeof(rep))
				return -errno;
		}
	}
}

/* Send a request and wait for its reply. */
static int ask(int tube, const struct mem_request *req)
{
	struct mem_reply rep;
	ssize_t n;

	if (send(tube, req, sizeof(*req), 0) != (ssize_t)sizeof(*req))
		return -errno;
	do
		n = recv(tube, &rep, sizeof(rep), 0);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(rep))
		return n < 0 ? -errno : -EPIPE;
	return rep.ret;
}

int vcpu_run_loop(struct vcpu *cpu)
{
	struct kvm_run *run = cpu->run;

	for (;;) {
		struct mem_request req = { .kind = MEM_REQ_EXIT, .run = run };
		int ret = ioctl(cpu->fd, KVM_RUN, 0);

		if (ret < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		/* KVM_RUN fails with EFAULT for a private/shared mismatch */
		if (ret < 0 && !(errno == EFAULT && run->exit_reason == KVM_EXIT_MEMORY_FAULT))
			return -errno;
		if (run->exit_reason != KVM_EXIT_HYPERCALL &&
		    run->exit_reason != KVM_EXIT_MEMORY_FAULT) {
			if (vmm_handle_exit(cpu) < 0)
				return -EIO;
			continue;
		}
		ret = ask(cpu->tube, &req);
		if (ret == 1)
			continue; /* hypercall.ret written by cvmconv: re-enter */
		if (ret < 0)
			return ret;	      /* host failure or unanswerable fault: stop */
		if (vmm_handle_exit(cpu) < 0) /* a hypercall cvmconv does not own */
			return -EIO;
	}
}

/* Host-initiated: a device asks for [gpa, gpa + size) to become shared,
 * say a window it shares with the host, before it tells the guest. */
int device_share_window(int tube, uint64_t gpa, uint64_t size)
{
	struct cvmconv_range r = { .gpa = gpa, .size = size, .to_private = 0 };
	struct mem_request req = { .kind = MEM_REQ_HOST_BATCH, .ranges = &r, .nranges = 1 };

	return ask(tube, &req);
}
