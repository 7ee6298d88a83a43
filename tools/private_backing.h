/* SPDX-License-Identifier: MIT */
/* The private side a test, the simulator or a bench uses: a real guest_memfd
 * where the host's KVM creates one the host can map, else a shmem memfd
 * standing in for it. */
#ifndef CVMCONV_PRIVATE_BACKING_H
#define CVMCONV_PRIVATE_BACKING_H

#include <stdint.h>

/* A guest_memfd of @size (KVM_CREATE_GUEST_MEMFD with GUEST_MEMFD_FLAG_MMAP |
 * GUEST_MEMFD_FLAG_INIT_SHARED on a default VM of /dev/kvm, kept open for
 * the process) where the kernel offers those flags, else a shmem memfd;
 * CVMCONV_TEST_PRIVATE=shmem forces the stand-in. fd or -errno.
 * Thread safety: not thread-safe on the first call (it probes). */
int private_backing_fd(uint64_t size);
/* "guest_memfd (...)" or "shmem stand-in (why)": what private_backing_fd()
 * gives here. */
const char *private_backing_name(void);

#endif
