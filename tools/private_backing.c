/* SPDX-License-Identifier: MIT */
/* The private side for tests, tools and benches (see private_backing.h). */
#include "private_backing.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#define GMEM_FLAG_MMAP (1ULL << 0)	  /* GUEST_MEMFD_FLAG_MMAP */
#define GMEM_FLAG_INIT_SHARED (1ULL << 1) /* GUEST_MEMFD_FLAG_INIT_SHARED */
#define CAP_GUEST_MEMFD_FLAGS 244	  /* KVM_CAP_GUEST_MEMFD_FLAGS */

static struct {
	bool probed;
	int vm;	      /* a default VM, kept for the process: guest_memfds hold it anyway */
	pid_t vm_pid; /* the process that made it: KVM answers EIO to any other (kvm->mm) */
	char name[160];
} gmem;

struct fixture_create_guest_memfd {
	uint64_t size, flags, reserved[6];
};

static void gmem_probe(void)
{
	const char *force = getenv("CVMCONV_TEST_PRIVATE");
	int kvm, flags;

	gmem.probed = true;
	gmem.vm = -1;
	if (force && !strcmp(force, "shmem")) {
		snprintf(gmem.name, sizeof(gmem.name),
			 "shmem stand-in (CVMCONV_TEST_PRIVATE=shmem)");
		return;
	}
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		snprintf(gmem.name, sizeof(gmem.name), "shmem stand-in (/dev/kvm: %s)",
			 strerror(errno));
		return;
	}
	gmem.vm = ioctl(kvm, _IO(0xAE, 0x01) /* KVM_CREATE_VM */, 0);
	gmem.vm_pid = getpid();
	close(kvm);
	flags = gmem.vm < 0 ? -1
			    : ioctl(gmem.vm, _IO(0xAE, 0x03) /* KVM_CHECK_EXTENSION */,
				    CAP_GUEST_MEMFD_FLAGS);
	if (flags < 0 || ((uint64_t)flags & (GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED)) !=
				 (GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED)) {
		snprintf(gmem.name, sizeof(gmem.name),
			 "shmem stand-in (no guest_memfd with GUEST_MEMFD_FLAG_MMAP | "
			 "INIT_SHARED: KVM_CAP_GUEST_MEMFD_FLAGS = %d)",
			 flags);
		if (gmem.vm >= 0)
			close(gmem.vm);
		gmem.vm = -1;
		return;
	}
	snprintf(gmem.name, sizeof(gmem.name),
		 "guest_memfd (host /dev/kvm, GUEST_MEMFD_FLAG_MMAP | INIT_SHARED)");
}

const char *private_backing_name(void)
{
	if (!gmem.probed)
		gmem_probe();
	return gmem.name;
}

int private_backing_fd(uint64_t size)
{
	struct fixture_create_guest_memfd g = { .size = size,
						.flags = GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED };
	int fd;

	if (!gmem.probed)
		gmem_probe();
	if (gmem.vm >= 0 && gmem.vm_pid != getpid()) {
		/* a forked child (the benches run each host in one): its own VM */
		int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);

		close(gmem.vm);
		gmem.vm = kvm < 0 ? -1 : ioctl(kvm, _IO(0xAE, 0x01) /* KVM_CREATE_VM */, 0);
		gmem.vm_pid = getpid();
		if (kvm >= 0)
			close(kvm);
		if (gmem.vm < 0)
			return -errno;
	}
	if (gmem.vm >= 0) {
		/* KVM_CREATE_GUEST_MEMFD = _IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd) */
		fd = ioctl(gmem.vm, _IOWR(0xAE, 0xd4, struct fixture_create_guest_memfd), &g);
		if (fd >= 0)
			return fd;
		return -errno;
	}
	fd = memfd_create("cvmconv-test-private", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		int err = errno;

		close(fd);
		return -err;
	}
	return fd;
}
