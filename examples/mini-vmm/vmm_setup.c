/* SPDX-License-Identifier: MIT */
/*
 * Setting a VMM up and down: the strict attribute recorder used when there
 * is no KVM, the backings (shared: 1 GiB or 2 MiB huge pages or shmem;
 * private: guest_memfd or a stand-in), the cvmconv context (see mini-vmm.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>
#include "kernel_accounting.h"
#include "private_backing.h"
#include "log_level.h"
#include "mini-vmm.h"

/* ---- strict attribute recorder (no KVM) ---- */

/* The validation of kvm_vm_ioctl_set_mem_attributes (virt/kvm/kvm_main.c):
 * only KVM_MEMORY_ATTRIBUTE_PRIVATE is supported on a private-memory VM;
 * size 0, a wrapping range or one not 4 KiB aligned is -EINVAL. KVM does
 * not check memslots; the recorder only knows the VMM's window and refuses
 * the rest, which cvmconv never asks for. */
static int rec_set_memory_attributes(void *opaque, uint64_t gpa, uint64_t size, uint64_t attrs)
{
	struct vmm *v = opaque;
	int ret = 0;

	v->rec_calls++;
	if ((attrs & ~CVMCONV_ATTR_PRIVATE) || size == 0 || gpa + size < gpa ||
	    ((gpa | size) & (PAGE_SIZE_4K - 1)) || gpa < GUEST_BASE ||
	    gpa + size > GUEST_BASE + WINDOW_SIZE) {
		v->rec_refused++;
		return -EINVAL;
	}
	if (v->on_attributes)
		ret = v->on_attributes(v, gpa, size, attrs != 0);
	if (ret == 0)
		memset(&v->rec_private[model_page(gpa)], attrs ? 1 : 0, size / PAGE_SIZE_4K);
	return ret;
}

static const struct cvmconv_ops recorder_ops = {
	.set_memory_attributes = rec_set_memory_attributes,
	/* punch, discard_hva: NULL = the real fallocate / madvise */
};

const struct cvmconv_ops *vmm_recorder_ops(void)
{
	return &recorder_ops;
}

int vmm_set_attributes(struct vmm *v, uint64_t gpa, uint64_t size, bool private_)
{
	if (v->vm_fd >= 0) {
		struct kvm_memory_attributes a = {
			.address = gpa,
			.size = size,
			.attributes = private_ ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
		};
		int r;

		do
			r = ioctl(v->vm_fd, KVM_SET_MEMORY_ATTRIBUTES, &a);
		while (r < 0 && (errno == EINTR || errno == EAGAIN));
		return r < 0 ? -errno : 0;
	}
	return rec_set_memory_attributes(v, gpa, size, private_ ? CVMCONV_ATTR_PRIVATE : 0);
}

/* ---- backings ---- */

static uint8_t *map_fd(int fd, uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void fill_pattern(uint8_t *map, uint64_t gpa0, uint64_t from, uint64_t to, uint32_t seed)
{
	for (uint64_t gpa = from; gpa < to; gpa += 4)
		*(uint32_t *)(map + (gpa - gpa0)) = pattern_at(gpa, seed);
}

/* A 1 GiB huge page for the shared side: the 16 MiB of RAM are its start.
 * 1 GiB pages are reserved at boot (hugepagesz=1G hugepages=N); this only
 * takes a free one. */
static int setup_shared_1g(struct vmm *v)
{
	const uint64_t gib = 1ULL << 30;
	long free_pages = -1;
	FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages", "re");
	int fd;

	if (f) {
		if (fscanf(f, "%ld", &free_pages) != 1)
			free_pages = -1;
		fclose(f);
	}
	if (free_pages < 1) {
		printf("shared backing : no free 1 GiB huge page (free_hugepages %ld; reserve one "
		       "at boot: hugepagesz=1G hugepages=1)\n",
		       free_pages);
		return -1;
	}
	fd = cvmconv_memfd_create("mini-vmm-shared-1g", gib, gib);
	if (fd < 0) {
		printf("shared backing : memfd_create(MFD_HUGETLB | MFD_HUGE_1GB): %s\n",
		       strerror(-fd));
		return -1;
	}
	if (!(v->shared_map = map_fd(fd, gib))) {
		printf("shared backing : mmap of a 1 GiB huge page: %s\n", strerror(errno));
		close(fd);
		return -1;
	}
	v->shared_map_size = gib;
	v->shared_huge = true;
	v->shared_fd = fd;
	printf("shared backing : memfd with 1 GiB huge pages (MFD_HUGETLB), RAM is its first "
	       "%" PRIu64 " MiB\n",
	       RAM_SIZE / MiB);
	return 0;
}

int vmm_setup_backings(struct vmm *v, bool want_huge)
{
	char why[160] = "--shmem given";
	int fd = -1;

	if (want_huge && v->huge_size == 1ULL << 30) {
		if (setup_shared_1g(v))
			return -1;
		fd = v->shared_fd;
	} else if (want_huge && hugepages_reserve((long)(RAM_SIZE / HUGE_SIZE), why, sizeof(why))) {
		fd = cvmconv_memfd_create("mini-vmm-shared", RAM_SIZE, HUGE_SIZE);
		if (fd < 0)
			snprintf(why, sizeof(why), "memfd_create(MFD_HUGETLB): %s", strerror(-fd));
		/* hugetlbfs reserves its pages at mmap: ENOMEM here, not SIGBUS later */
		if (fd >= 0 && !(v->shared_map = map_fd(fd, RAM_SIZE))) {
			snprintf(why, sizeof(why), "mmap of huge pages: %s", strerror(errno));
			close(fd);
			fd = -1;
		}
	}
	if (fd >= 0 && v->shared_map_size) {
		/* 1 GiB, said above */
	} else if (fd >= 0) {
		v->shared_huge = true;
		printf("shared backing : memfd with 2 MiB huge pages (MFD_HUGETLB)\n");
	} else {
		hugepages_restore();
		printf("shared backing : shmem memfd (no huge pages: %s)\n", why);
		fd = cvmconv_memfd_create("mini-vmm-shared", RAM_SIZE, PAGE_SIZE_4K);
		if (fd < 0 || !(v->shared_map = map_fd(fd, RAM_SIZE))) {
			fprintf(stderr, "shared memfd: %s\n", strerror(fd < 0 ? -fd : errno));
			if (fd >= 0)
				close(fd);
			return -1;
		}
	}
	v->shared_fd = fd;

	v->noslot_fd = cvmconv_memfd_create("mini-vmm-noslot", NOSLOT_SIZE, PAGE_SIZE_4K);
	if (v->noslot_fd < 0 || !(v->noslot_map = map_fd(v->noslot_fd, NOSLOT_SIZE))) {
		fprintf(stderr, "no-guest_memfd slot memfd: failed\n");
		return -1;
	}
	if (v->path != PATH_KVM) {
		/* a real guest_memfd where this host's KVM makes one the host can
		 * map (tools/private_backing.c), else a shmem stand-in; see below
		 * for the native path */
		v->private_fd =
			v->path == PATH_NATIVE
				? cvmconv_memfd_create("mini-vmm-private", RAM_SIZE, PAGE_SIZE_4K)
				: private_backing_fd(RAM_SIZE);
		if (v->private_fd < 0 || !(v->private_map = map_fd(v->private_fd, RAM_SIZE))) {
			fprintf(stderr, "private side (%s): failed\n", private_backing_name());
			return -1;
		}
		v->private_is_gmem = fd_is_guest_memfd(v->private_fd);
		/* the native path maps the window with PROT_EXEC, which
		 * guest_memfd's mmap refuses: it keeps the stand-in */
		printf("private backing: %s\n",
		       v->private_is_gmem ? private_backing_name()
					  : "shmem memfd standing in for guest_memfd");
	}
	/* The VMM's markers: what the host put there, so that "punched" (zeros)
	 * and "never touched" can be told apart. */
	fill_pattern(v->shared_map, GUEST_BASE, TEST_GPA, GUEST_BASE + RAM_SIZE, SEED_HOST);
	fill_pattern(v->noslot_map, NOSLOT_GPA, NOSLOT_GPA, NOSLOT_GPA + NOSLOT_SIZE, SEED_NOSLOT);
	model_init(&v->model, !v->shared_huge	   ? PAGE_SIZE_4K
			      : v->shared_map_size ? v->shared_map_size
						   : HUGE_SIZE);
	return 0;
}

static void log_cb(void *opaque, int level, const char *msg)
{
	(void)opaque;
	printf("     cvmconv %s: %s\n", example_log_level_name(level), msg);
}

int vmm_setup_conv(struct vmm *v)
{
	struct cvmconv_config cfg = {
		.sz = sizeof(cfg),
		.vm_fd = v->vm_fd,
		.unaligned = CVMCONV_UNALIGNED_LOG, /* convert, count and say so */
		.log = log_cb,
	};
	struct cvmconv_region r = {
		.sz = sizeof(r),
		.gpa = GUEST_BASE,
		.size = RAM_SIZE,
		.private_fd = v->private_fd,
		.shared_fd = v->shared_fd,
		.unaligned = -1,
	};
	int ret;

	if (v->vm_fd < 0) {
		cfg.ops = &recorder_ops;
		cfg.ops_opaque = v;
	}
	ret = cvmconv_create(&cfg, &v->conv);
	if (ret) {
		fprintf(stderr, "cvmconv_create: %s\n", strerror(-ret));
		return -1;
	}
	ret = cvmconv_add_region(v->conv, &r);
	if (ret) {
		fprintf(stderr, "cvmconv_add_region: %s\n", strerror(-ret));
		return -1;
	}
	/* Slot 1 has no guest_memfd and no cvmconv region; one of its pages is
	 * made private on purpose (KVM does not check memslots when setting
	 * attributes), for the memory fault no conversion can resolve. */
	ret = vmm_set_attributes(v, NOSLOT_GPA, PAGE_SIZE_4K, true);
	if (ret) {
		fprintf(stderr, "KVM_SET_MEMORY_ATTRIBUTES(slot 1): %s\n", strerror(-ret));
		return -1;
	}
	printf("attributes     : %s\n",
	       v->vm_fd >= 0 ? "KVM (KVM_SET_MEMORY_ATTRIBUTES on the VM fd)"
			     : "strict recorder (validated like KVM_SET_MEMORY_ATTRIBUTES)");
	printf("layout         : slot 0 RAM gpa %#" PRIx64 "..%#" PRIx64 " (code at %#" PRIx64
	       ", converted from %#" PRIx64 "), slot 1 without guest_memfd at %#" PRIx64
	       "..%#" PRIx64 "\n",
	       GUEST_BASE, GUEST_BASE + RAM_SIZE, CODE_GPA, TEST_GPA, NOSLOT_GPA,
	       NOSLOT_GPA + NOSLOT_SIZE);
	return 0;
}

void vmm_teardown(struct vmm *v)
{
	if (v->conv)
		cvmconv_destroy(v->conv);
	v->conv = NULL;
	if (v->shared_map)
		munmap(v->shared_map, v->shared_map_size ? v->shared_map_size : RAM_SIZE);
	if (v->private_map)
		munmap(v->private_map, RAM_SIZE);
	if (v->noslot_map)
		munmap(v->noslot_map, NOSLOT_SIZE);
	v->shared_map = v->private_map = v->noslot_map = NULL;
	if (v->shared_fd >= 0)
		close(v->shared_fd);
	if (v->private_fd >= 0)
		close(v->private_fd);
	if (v->noslot_fd >= 0)
		close(v->noslot_fd);
	v->shared_fd = v->private_fd = v->noslot_fd = -1;
	hugepages_restore(); /* after the huge pages were released */
}
