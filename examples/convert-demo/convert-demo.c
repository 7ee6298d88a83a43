/* SPDX-License-Identifier: MIT */
/*
 * convert-demo: private/shared conversions of a 64 MiB guest region, with the
 * library's counters printed beside the kernel's own after every step.
 *
 * Uses only the public API (cvmconv.h). Backings are real kernel objects:
 *   shared side  - a memfd with 2 MiB huge pages (MFD_HUGETLB) when huge
 *                  pages can be had, else a plain shmem memfd;
 *   private side - a guest_memfd when a real KVM_X86_SW_PROTECTED_VM can be
 *                  created, else a shmem memfd standing in for it.
 * Punches are the library's real fallocate calls. Memory attributes go to
 * KVM when /dev/kvm offers a SW_PROTECTED VM; otherwise a small recorder in
 * this file serves them, validating them like KVM_SET_MEMORY_ATTRIBUTES.
 *
 * Run as root to let the demo raise /proc/sys/vm/nr_hugepages by what it
 * needs (restored at exit). Exit status: 0 on success.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "cvmconv.h"
#include "hugepool.h"
#include "log_level.h"

/* The few KVM UAPI values the demo needs that older <linux/kvm.h> lacks
 * (Linux include/uapi/linux/kvm.h, arch/x86/include/uapi/asm/kvm.h). */
#ifndef KVM_CAP_VM_TYPES
#define KVM_CAP_VM_TYPES 235
#endif
#ifndef KVM_X86_SW_PROTECTED_VM
#define KVM_X86_SW_PROTECTED_VM 1
#endif
struct demo_create_guest_memfd { /* = struct kvm_create_guest_memfd */
	uint64_t size, flags, reserved[6];
};
#define DEMO_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct demo_create_guest_memfd)

#define KiB ((uint64_t)1024)
#define MiB (1024 * KiB)
#define PAGE (4 * KiB)
#define HUGE (2 * MiB)
#define REGION_GPA (4096 * MiB) /* guest physical base: 4 GiB */
#define REGION_SIZE (64 * MiB)
#define REGION_PAGES (REGION_SIZE / PAGE)
#define HUGE_PAGES_NEEDED (REGION_SIZE / HUGE)

static struct cvmconv *ctx;
static int shared_fd = -1, private_fd = -1;
static uint8_t *shared_map;
static bool shared_huge, private_is_gmem, use_recorder;

/* ---- huge page pool: raise nr_hugepages for the demo, restore at exit ---- */

/* Make @need free 2 MiB pages available (tools/hugepool.h: under the lock
 * the test fixtures take); false with a reason otherwise. */
static bool hugepages_reserve(long need, char *why, size_t len)
{
	long before, after;

	if (hugepool_reserve(HUGE, (uint64_t)need, why, len))
		return false;
	hugepool_raised(&before, &after);
	if (before >= 0)
		printf("raised 2 MiB nr_hugepages %ld -> %ld (restored at exit)\n", before, after);
	return true;
}

static long hugepages_free(void)
{
	return hugepool_free(HUGE);
}

/* ---- attribute recorder: used when there is no KVM on this host ---- */

static struct {
	uint8_t private_[REGION_PAGES]; /* 1 = private */
	uint64_t calls, refused;
} rec;

/* The validation of kvm_vm_ioctl_set_mem_attributes (virt/kvm/kvm_main.c):
 * flags are 0 by construction here; unknown attribute bits, an empty,
 * wrapping or not 4 KiB aligned range are -EINVAL. KVM does not check
 * memslots; the recorder only knows the demo region and refuses the rest,
 * which the library never asks for. */
static int rec_set_memory_attributes(void *opaque, uint64_t gpa, uint64_t size, uint64_t attributes)
{
	(void)opaque;
	rec.calls++;
	if ((attributes & ~CVMCONV_ATTR_PRIVATE) || size == 0 || gpa + size < gpa ||
	    (gpa | size) & (PAGE - 1) || gpa < REGION_GPA ||
	    gpa + size > REGION_GPA + REGION_SIZE) {
		rec.refused++;
		return -EINVAL;
	}
	memset(&rec.private_[(gpa - REGION_GPA) / PAGE], attributes ? 1 : 0, size / PAGE);
	return 0;
}

static const struct cvmconv_ops recorder_ops = {
	.set_memory_attributes = rec_set_memory_attributes,
	/* punch, discard_hva: NULL = the real kernel calls */
};

/* A real SW_PROTECTED VM if this host has one; -errno otherwise. */
static int create_kvm_vm(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int types, vm;

	if (kvm < 0)
		return -errno;
	types = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES);
	if (types <= 0 || !(types & (1 << KVM_X86_SW_PROTECTED_VM))) {
		close(kvm);
		return -EOPNOTSUPP;
	}
	do
		vm = ioctl(kvm, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
	while (vm < 0 && errno == EINTR);
	if (vm < 0)
		vm = -errno;
	close(kvm);
	return vm;
}

/* ---- the "guest": touching memory makes the kernel allocate it ---- */

static void touch_shared(uint64_t off, uint64_t len)
{
	memset(shared_map + off, 0xa5, len);
}

/* Allocate private memory the way the KVM selftests do (fallocate, which
 * guest_memfd supports), standing in for the guest writing it. */
static int touch_private(uint64_t off, uint64_t len)
{
	if (fallocate(private_fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) != 0) {
		fprintf(stderr, "fallocate(private, %" PRIu64 ", %" PRIu64 "): %s\n", off, len,
			strerror(errno));
		return -1;
	}
	return 0;
}

static uint64_t allocated_kib(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 ? (uint64_t)st.st_blocks * 512 / KiB : 0;
}

static int get_stats(struct cvmconv_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->sz = sizeof(*st);
	return cvmconv_get_stats(ctx, st);
}

static void print_header(void)
{
	printf("\n%-44s %-38s | %s\n", "", "cvmconv_get_stats()", "kernel");
	printf("%-44s %10s %8s %8s %6s | %10s %10s %7s\n", "step", "dbl_KiB", "punches", "attr_upd",
	       "mixed", "shared_KiB", "priv_KiB", "HP_free");
}

static int report(const char *step)
{
	struct cvmconv_stats st;
	int ret = get_stats(&st);

	if (ret) {
		fprintf(stderr, "cvmconv_get_stats: %s\n", strerror(-ret));
		return -1;
	}
	printf("%-44s %10" PRIu64 " %8" PRIu64 " %8" PRIu64 " %6" PRIu64 " | %10" PRIu64
	       " %10" PRIu64 " %7ld\n",
	       step, st.double_alloc_bytes / KiB, st.punches, st.attr_updates, st.mixed_extents,
	       allocated_kib(shared_fd), allocated_kib(private_fd), hugepages_free());
	return 0;
}

/* One guest KVM_HC_MAP_GPA_RANGE exit; region-relative offset. */
static int guest_map(const char *step, uint64_t off, uint64_t len, uint64_t attrs)
{
	uint64_t hc_ret = ~0ULL;
	int ret = cvmconv_map_gpa_range(ctx, REGION_GPA + off, len / PAGE, attrs, &hc_ret);

	if (ret || hc_ret) {
		fprintf(stderr, "%s: cvmconv_map_gpa_range = %d, hypercall.ret = %" PRId64 "\n",
			step, ret, (int64_t)hc_ret);
		return -1;
	}
	/* The guest then uses the memory on its new side. */
	if (attrs & CVMCONV_MAP_GPA_RANGE_ENCRYPTED) {
		if (touch_private(off, len))
			return -1;
	} else {
		touch_shared(off, len);
	}
	return report(step);
}

static void log_cb(void *opaque, int level, const char *msg)
{
	(void)opaque;
	printf("    cvmconv log (%s): %s\n", example_log_level_name(level), msg);
}

static void cleanup(void)
{
	if (ctx)
		cvmconv_destroy(ctx);
	ctx = NULL;
	if (shared_map)
		munmap(shared_map, REGION_SIZE);
	shared_map = NULL;
	if (shared_fd >= 0)
		close(shared_fd);
	if (private_fd >= 0)
		close(private_fd);
	shared_fd = private_fd = -1;
	hugepool_restore(); /* after the huge pages were released */
}

static int setup_shared(void)
{
	char why[128] = "";
	int fd = -1;

	if (hugepages_reserve((long)HUGE_PAGES_NEEDED, why, sizeof(why))) {
		fd = cvmconv_memfd_create("convert-demo-shared", REGION_SIZE, HUGE);
		if (fd < 0)
			snprintf(why, sizeof(why), "memfd_create(MFD_HUGETLB): %s", strerror(-fd));
	}
	if (fd >= 0) {
		/* hugetlbfs reserves the huge pages at mmap time: ENOMEM here,
		 * not SIGBUS later, when the pool is short. */
		shared_map = mmap(NULL, REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (shared_map == MAP_FAILED) {
			snprintf(why, sizeof(why), "mmap of huge pages: %s", strerror(errno));
			shared_map = NULL;
			close(fd);
			fd = -1;
		}
	}
	if (fd >= 0) {
		shared_huge = true;
		printf("shared backing: memfd with 2 MiB huge pages (MFD_HUGETLB)\n");
	} else {
		hugepool_restore();
		printf("shared backing: plain shmem memfd (no huge pages: %s)\n", why);
		fd = cvmconv_memfd_create("convert-demo-shared", REGION_SIZE, PAGE);
		if (fd < 0) {
			fprintf(stderr, "cvmconv_memfd_create: %s\n", strerror(-fd));
			return -1;
		}
		shared_map = mmap(NULL, REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (shared_map == MAP_FAILED) {
			perror("mmap");
			shared_map = NULL;
			close(fd);
			return -1;
		}
	}
	shared_fd = fd;
	printf("  cvmconv_fd_page_size(shared) = %" PRId64 "\n", cvmconv_fd_page_size(fd));
	return 0;
}

static int setup_context(void)
{
	struct cvmconv_config cfg = {
		.sz = sizeof(cfg),
		.vm_fd = -1,
		.unaligned = CVMCONV_UNALIGNED_LOG,
		.log = log_cb,
	};
	struct cvmconv_region r = {
		.sz = sizeof(r),
		.gpa = REGION_GPA,
		.size = REGION_SIZE,
		.shared_fd = shared_fd,
		.unaligned = -1,
	};
	int vm = create_kvm_vm(), ret = -1;

	if (vm >= 0) {
		cfg.vm_fd = vm; /* ops NULL: KVM_SET_MEMORY_ATTRIBUTES on this VM */
		ret = cvmconv_create(&cfg, &ctx);
		if (ret == 0) {
			struct demo_create_guest_memfd g = { .size = REGION_SIZE };

			printf("attributes: real KVM (KVM_X86_SW_PROTECTED_VM, fd %d)\n", vm);
			private_fd = ioctl(vm, DEMO_CREATE_GUEST_MEMFD, &g);
			private_is_gmem = private_fd >= 0;
		} else {
			printf("KVM VM refused private attributes (%s)\n", strerror(-ret));
			close(vm);
		}
	}
	if (ret != 0) {
		printf("attributes: no KVM on this host: attributes recorded by the demo "
		       "(validated like KVM_SET_MEMORY_ATTRIBUTES)\n");
		cfg.vm_fd = -1;
		cfg.ops = &recorder_ops;
		use_recorder = true;
		ret = cvmconv_create(&cfg, &ctx);
		if (ret) {
			fprintf(stderr, "cvmconv_create: %s\n", strerror(-ret));
			return -1;
		}
	}
	if (!private_is_gmem) {
		private_fd = cvmconv_memfd_create("convert-demo-private", REGION_SIZE, PAGE);
		if (private_fd < 0) {
			fprintf(stderr, "cvmconv_memfd_create: %s\n", strerror(-private_fd));
			return -1;
		}
	}
	printf("private backing: %s\n",
	       private_is_gmem ? "guest_memfd" : "shmem memfd standing in for guest_memfd");
	r.private_fd = private_fd;
	ret = cvmconv_add_region(ctx, &r);
	if (ret) {
		fprintf(stderr, "cvmconv_add_region: %s\n", strerror(-ret));
		return -1;
	}
	return 0;
}

static void print_stats_table(void)
{
	struct cvmconv_stats st;

	if (get_stats(&st))
		return;
	printf("\nfinal cvmconv_get_stats():\n");
#define ROW(f) printf("  %-24s %" PRIu64 "\n", #f, st.f)
	ROW(exits);
	ROW(rejected);
	ROW(unaligned);
	ROW(to_private_bytes);
	ROW(to_shared_bytes);
	ROW(attr_updates);
	ROW(punches);
	ROW(punch_failures);
	ROW(double_alloc_bytes);
	ROW(double_alloc_peak_bytes);
	ROW(mixed_extents);
	ROW(extents);
	ROW(guest_bytes);
	ROW(huge_mappable_bytes);
	ROW(punch_pending_bytes);
	ROW(tracker_bytes);
	ROW(log_suppressed);
	ROW(broken);
#undef ROW
}

/* The library's view against the attributes KVM (or the recorder) holds. */
static int check_final_state(void)
{
	struct cvmconv_stats st;
	uint64_t mismatches = 0;

	for (uint64_t p = 0; p < REGION_PAGES; p++) {
		uint64_t off = p * PAGE;
		/* expected: [2M, 6M) and [16M, 24M) private, the rest shared */
		int want = (off >= 2 * MiB && off < 6 * MiB) || (off >= 16 * MiB && off < 24 * MiB);
		int got = cvmconv_is_private(ctx, REGION_GPA + off);

		if (got != want || (use_recorder && rec.private_[p] != want))
			mismatches++;
	}
	if (get_stats(&st))
		return -1;
	printf("\nchecks: %" PRIu64 " page(s) differ from the expected private/shared map; "
	       "mixed_extents %" PRIu64 ", double_alloc_bytes %" PRIu64 " (both 0 expected)\n",
	       mismatches, st.mixed_extents, st.double_alloc_bytes);
	if (shared_huge)
		printf("kernel: shared memfd holds %" PRIu64 " KiB, 26 huge pages = %" PRIu64
		       " KiB expected\n",
		       allocated_kib(shared_fd), 26 * HUGE / KiB);
	return (mismatches || st.mixed_extents || st.double_alloc_bytes) ? -1 : 0;
}

int main(void)
{
	const uint64_t enc = CVMCONV_MAP_GPA_RANGE_ENCRYPTED;
	const uint64_t hint_2m = CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M;
	uint64_t hc_ret = 0;
	int ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	atexit(cleanup);
	hugepool_restore_on_signals();

	printf("convert-demo: cvmconv %s, %" PRIu64 " MiB guest region at gpa 0x%" PRIx64 "\n",
	       cvmconv_version(), REGION_SIZE / MiB, REGION_GPA);
	if (setup_shared() || setup_context())
		return 1;

	print_header();
	touch_shared(0, REGION_SIZE); /* the guest boots with all memory shared */
	if (report("start: all shared, shared side touched"))
		return 1;

	/* SNP-like: 2 MiB PSC entries arrive with the 2M hint, npages in 4 KiB
	 * units; contiguous entries come merged in one exit. */
	if (guest_map("2M-aligned [0,2M) -> private", 0, 2 * MiB, enc | hint_2m) ||
	    guest_map("2M-aligned [2M,6M) -> private", 2 * MiB, 4 * MiB, enc | hint_2m))
		return 1;

	/* One 4 KiB page inside a huge page: the huge page cannot be freed. */
	if (guest_map("4K at 8M+4K -> private (unaligned)", 8 * MiB + PAGE, PAGE, enc))
		return 1;

	/* TDX-like: MapGPA of 8 MiB from a 4 KiB-misaligned start, split by KVM
	 * into 2 MiB exits without a page-size hint. Each exit completes the
	 * huge page the previous one left half converted. */
	for (int i = 0; i < 4; i++) {
		char step[64];
		uint64_t off = 16 * MiB + PAGE + (uint64_t)i * 2 * MiB;

		snprintf(step, sizeof(step), "TDX chunk %d/4 [%" PRIu64 "M+4K,+2M) -> private",
			 i + 1, off / MiB);
		if (guest_map(step, off, 2 * MiB, enc))
			return 1;
	}

	/* Back to shared: the private side (4 KiB backing) is punched at once. */
	if (guest_map("[0,2M) -> shared", 0, 2 * MiB, hint_2m) ||
	    guest_map("4K at 8M+4K -> shared", 8 * MiB + PAGE, PAGE, 0) ||
	    guest_map("4K at 24M -> shared", 24 * MiB, PAGE, 0) ||
	    guest_map("4K at 16M -> private (completes 16M)", 16 * MiB, PAGE, enc))
		return 1;

	/* A hostile request: reserved attribute bit. Answered, nothing changes. */
	ret = cvmconv_map_gpa_range(ctx, REGION_GPA, 1, 1ULL << 7, &hc_ret);
	printf("hostile request (attrs bit 7): return %d, hypercall.ret %" PRId64 "\n", ret,
	       (int64_t)hc_ret);
	if (ret != 0 || hc_ret != (uint64_t)-CVMCONV_KVM_EINVAL)
		return 1;
	if (report("after the refused request"))
		return 1;

	ret = cvmconv_flush(ctx);
	if (ret) {
		fprintf(stderr, "cvmconv_flush: %s\n", strerror(-ret));
		return 1;
	}
	print_stats_table();
	if (use_recorder)
		printf("recorder: %" PRIu64 " attribute update(s), %" PRIu64 " refused\n",
		       rec.calls, rec.refused);
	if (check_final_state())
		return 1;
	printf("convert-demo: OK\n");
	return 0;
}
