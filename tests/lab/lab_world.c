/* SPDX-License-Identifier: MIT */
/*
 * The lab world of lab-guest-random (see lab_world.h): a real
 * KVM_X86_SW_PROTECTED_VM with two guest_memfd regions, the model of what
 * each side of every page holds, the guest's steps, and the kernel's
 * accounting compared with the library's. The vCPUs and the guest code:
 * lab_vcpu.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <cpuid.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/memfd.h>
#include "cvmconv.h"
#include "kernel_accounting.h"
#include "kvm_compat.h"
#include "lab_kvm.h"

#include "lab_world.h"

struct world W;

uint64_t rnd(void)
{
	W.rng ^= W.rng << 13;
	W.rng ^= W.rng >> 7;
	W.rng ^= W.rng << 17;
	return W.rng;
}

void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void check(bool ok, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&W.lock);
	W.checks++;
	if (!ok) {
		W.failures++;
		printf("CHECK FAILED: ");
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf("\n");
	}
	pthread_mutex_unlock(&W.lock);
}

int xioctl(int fd, unsigned long req, void *arg)
{
	int r;

	do
		r = ioctl(fd, req, arg);
	while (r < 0 && (errno == EINTR || errno == EAGAIN));
	return r < 0 ? -errno : r;
}

__attribute__((noreturn)) void die(const char *what, int err)
{
	printf("lab-guest-random: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

/* ---- kernel truth ---- */

uint64_t st_blocks_bytes(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

/* A /proc/meminfo field without a unit (HugePages_*), or -1. */
long meminfo_field(const char *name)
{
	return meminfo_count(name);
}

/* ---- the model (docs/semantics.md punch rules) ---- */

void model_convert(uint64_t p0, uint64_t n, bool to_private)
{
	for (uint64_t p = p0; p < p0 + n; p++) {
		if (W.priv[p] == to_private)
			continue;
		W.priv[p] = to_private;
		if (!to_private)
			W.tag[1][p] = 0; /* guest_memfd: the stale page is punched */
		else if (!W.huge)
			W.tag[0][p] = 0; /* shmem: the stale page is punched */
	}
	if (!W.huge || !to_private)
		return;
	/* a shared huge page goes once all its pages are private */
	for (uint64_t h = p0 / 512 * 512; h < p0 + n; h += 512) {
		bool all = true;

		for (uint64_t p = h; p < h + 512; p++)
			all = all && W.priv[p];
		if (all)
			for (uint64_t p = h; p < h + 512; p++)
				W.tag[0][p] = 0;
	}
}

/* ---- steps ---- */

uint64_t gpa_of(uint64_t p)
{
	return BASE + p * PAGE;
}

void count(uint64_t *field, uint64_t n)
{
	pthread_mutex_lock(&W.lock);
	*field += n;
	pthread_mutex_unlock(&W.lock);
}

/* The guest writes a new tag over pages [p0, p0 + n), on their live sides. */
void guest_write(struct vcpu *vc, uint64_t p0, uint64_t n)
{
	uint32_t tag = (atomic_fetch_add(&W.next_tag, 1) << 8) | 0x80000001u;

	command(vc, CMD_WRITE, tag, 0, n * PAGE / 4, 0, gpa_of(p0));
	for (uint64_t p = p0; p < p0 + n; p++)
		W.tag[W.priv[p]][p] = tag;
	count(&W.writes, 1);
}

/* The guest reads pages [p0, p0 + n) (all with the same expected tag). */
void guest_verify(struct vcpu *vc, uint64_t p0, uint64_t n)
{
	uint32_t want = W.tag[W.priv[p0]][p0];
	struct kvm_regs r = command(vc, CMD_VERIFY, want, 0, n * PAGE / 4, 0, gpa_of(p0));
	bool ok = (r.rflags & (1 << 6)) && (uint32_t)r.rcx == 0;

	if (!ok)
		count(&W.lost_pages, n);
	check(ok,
	      "vCPU %u: guest read of pages %" PRIu64 "+%" PRIu64
	      " (%s): want 0x%08x, mismatch at gpa 0x%" PRIx64,
	      vc->id, p0, n, W.priv[p0] ? "private" : "shared", want,
	      (uint64_t)(uint32_t)r.rdi - 4);
	count(&W.verifies, 1);
	count(&W.pages_verified, n);
}

/* One KVM_HC_MAP_GPA_RANGE from the guest; a valid one is followed by the
 * guest writing every page it converted. */
void guest_map(struct vcpu *vc, uint64_t gpa, uint64_t npages, uint64_t attrs, bool valid)
{
	struct kvm_regs r = command(vc, CMD_MAP, KVM_HC_MAP_GPA_RANGE, gpa, npages, attrs, 0);
	uint64_t ret = (uint32_t)r.rax;

	count(&W.hypercalls, 1);
	if (!valid) {
		check(ret == KVM_EINVAL_RET,
		      "hostile map gpa 0x%" PRIx64 " npages %" PRIu64 " attrs 0x%" PRIx64
		      ": ret 0x%" PRIx64 ", want -KVM_EINVAL",
		      gpa, npages, attrs, ret);
		count(&W.refused, 1);
		return;
	}
	check(ret == 0,
	      "map gpa 0x%" PRIx64 " npages %" PRIu64 " attrs 0x%" PRIx64 ": ret 0x%" PRIx64, gpa,
	      npages, attrs, ret);
	if (ret)
		return;
	bool to_private = attrs & KVM_MAP_GPA_RANGE_ENCRYPTED;
	uint64_t p0 = (gpa - BASE) / PAGE, first_changed = UINT64_MAX, last_changed = 0;

	for (uint64_t p = p0; p < p0 + npages; p++)
		if (W.priv[p] != to_private) {
			if (first_changed == UINT64_MAX)
				first_changed = p;
			last_changed = p;
		}
	model_convert(p0, npages, to_private);
	if (first_changed != UINT64_MAX)
		guest_write(vc, first_changed, last_changed - first_changed + 1);
}

uint64_t random_attrs(void)
{
	return rnd() & 1 ? KVM_MAP_GPA_RANGE_ENCRYPTED : 0;
}

void random_map(struct vcpu *vc)
{
	uint64_t kind = rnd() % 12, p0, n, attrs = random_attrs();
	const uint64_t usable = NPAGES - FIRST_PAGE;

	switch (kind) {
	case 0:
	case 1:
	case 2: /* one page */
		p0 = FIRST_PAGE + rnd() % usable;
		n = 1;
		break;
	case 3:
	case 4: /* unaligned run */
		p0 = FIRST_PAGE + rnd() % usable;
		n = 1 + rnd() % 700;
		break;
	case 5:
	case 6: /* 2 MiB aligned with the hint */
		p0 = FIRST_PAGE + (rnd() % (usable / 512)) * 512;
		n = 512 * (1 + rnd() % 2);
		attrs |= KVM_MAP_GPA_RANGE_PAGE_SZ_2M;
		break;
	case 7: /* across the boundary of the two regions */
		p0 = RSIZE / PAGE - 1 - rnd() % 600;
		n = 2 + rnd() % 1200;
		break;
	default: { /* hostile: each must come back -KVM_EINVAL, nothing changing */
		uint64_t h = rnd() % 6;

		p0 = FIRST_PAGE + rnd() % usable;
		if (h == 0)
			guest_map(vc, gpa_of(p0), 1, attrs | 1ULL << (5 + rnd() % 20), false);
		else if (h == 1)
			guest_map(vc, gpa_of(p0), 1, attrs | 3, false); /* page size hint 3 */
		else if (h == 2)
			guest_map(vc, gpa_of(p0 | 1), 512, attrs | KVM_MAP_GPA_RANGE_PAGE_SZ_2M,
				  false);
		else if (h == 3)
			guest_map(vc, gpa_of(NPAGES - 2), 8, attrs, false); /* past guest memory */
		else if (h == 4)
			guest_map(vc, gpa_of(p0) + 0x800, 1, attrs,
				  false); /* KVM refuses it itself */
		else
			guest_map(vc, gpa_of(p0), 0, attrs, false); /* zero pages */
		return;
	}
	}
	if (p0 + n > NPAGES)
		n = NPAGES - p0;
	if (n)
		guest_map(vc, gpa_of(p0), n, attrs, true);
}

/* Read back a run of pages that should hold the same tag, from @p0. */
void verify_from(struct vcpu *vc, uint64_t p0, uint64_t limit)
{
	uint32_t want = W.tag[W.priv[p0]][p0];
	uint64_t n = 1;

	while (n < 64 && p0 + n < limit && W.tag[W.priv[p0 + n]][p0 + n] == want)
		n++;
	guest_verify(vc, p0, n);
}

void random_verify(struct vcpu *vc)
{
	verify_from(vc, FIRST_PAGE + rnd() % (NPAGES - FIRST_PAGE), NPAGES);
}

/* Every page of [p0, p0 + n) read back. */
void verify_all(struct vcpu *vc, uint64_t p0, uint64_t n)
{
	for (uint64_t p = p0; p < p0 + n;) {
		uint32_t want = W.tag[W.priv[p]][p];
		uint64_t k = 1;

		while (k < 512 && p + k < p0 + n && W.tag[W.priv[p + k]][p + k] == want)
			k++;
		guest_verify(vc, p, k);
		p += k;
	}
}

/* The kernel's double allocation against the library's: every page is live
 * on exactly one side and was written there, so whatever more the two
 * backings hold is held twice (stale memory whose punch failed included). */
void check_accounting(uint64_t step)
{
	struct cvmconv_stats st = { .sz = sizeof(st) };
	uint64_t shared = 0, priv, now = meminfo_unevictable_bytes();

	for (int i = 0; i < NREG; i++)
		shared += st_blocks_bytes(W.shared_fd[i]);
	if (W.huge && W.pool_truth) {
		/* hugetlbfs's i_blocks can stay too high after a fault in
		 * hugetlb_unreserve_pages (mm/hugetlb.c: region_del fails and it
		 * returns before i_blocks is lowered, while the page itself went
		 * back to the pool): the pool is the truth, the drift a figure */
		long total = meminfo_field("HugePages_Total:"),
		     free_pages = meminfo_field("HugePages_Free:");
		uint64_t pool = (uint64_t)(total - free_pages - (long)W.hog_pages) * HPAGE;

		if (shared != pool + W.iblocks_drift) {
			printf("lab-guest-random: step %" PRIu64
			       ": hugetlbfs i_blocks of the shared "
			       "files %" PRIu64 " KiB, the pool says they hold %" PRIu64 " KiB\n",
			       step, shared >> 10, pool >> 10);
			W.iblocks_drift = shared - pool;
			W.iblocks_drift_events++;
		}
		shared = pool;
	}
	priv = now > W.unevictable0 ? now - W.unevictable0 : 0;
	if (cvmconv_get_stats(W.c, &st)) {
		check(false, "cvmconv_get_stats");
		return;
	}
	check(shared + priv >= NPAGES * PAGE &&
		      shared + priv - NPAGES * PAGE == st.double_alloc_bytes,
	      "step %" PRIu64 ": the kernel holds %" PRIu64 " KiB shared + %" PRIu64
	      " KiB private for %" PRIu64 " KiB of guest memory (%" PRId64
	      " KiB twice); cvmconv counts %" PRIu64 " KiB",
	      step, shared >> 10, priv >> 10, (uint64_t)((NPAGES * PAGE) >> 10),
	      (int64_t)(shared + priv - NPAGES * PAGE) / 1024, st.double_alloc_bytes >> 10);
	/* the library's punch count: the fallocate calls that really reached
	 * the kernel (our punch op sees each one) */
	pthread_mutex_lock(&W.lock);
	uint64_t calls = W.punch_calls, failed = W.punch_failed;
	pthread_mutex_unlock(&W.lock);
	check(st.punches == calls && st.punch_failures == failed,
	      "step %" PRIu64 ": cvmconv counts %" PRIu64 " punches (%" PRIu64
	      " failed), the kernel got %" PRIu64 " (%" PRIu64 " failed)",
	      step, st.punches, st.punch_failures, calls, failed);
	/* hugetlb: the huge pages in use are exactly the shared sides' */
	if (W.huge && !W.pool_truth) {
		long total = meminfo_field("HugePages_Total:"),
		     free_pages = meminfo_field("HugePages_Free:");

		check(total >= 0 && free_pages >= 0 &&
			      (uint64_t)(total - free_pages) * HPAGE ==
				      shared + W.hog_pages * HPAGE,
		      "step %" PRIu64 ": %ld huge pages in use (HugePages_Total - HugePages_Free), "
		      "the shared memfds hold %" PRIu64,
		      step, total - free_pages, (uint64_t)(shared / HPAGE));
	}
	check(!st.broken && (W.fail_punches || st.punch_pending_bytes == 0),
	      "step %" PRIu64 ": broken %" PRIu64 " pending %" PRIu64, step, st.broken,
	      st.punch_pending_bytes);
}

/* ---- set-up ---- */

/* Real fallocate, failing every third call while asked to (the scenario
 * punch-failure); counted. */
static int failing_punch(void *opaque, int fd, uint64_t offset, uint64_t len)
{
	bool fail;

	(void)opaque;
	pthread_mutex_lock(&W.lock);
	W.punch_calls++;
	fail = W.fail_punches && W.punch_calls % 3 == 0;
	W.punch_failed += fail;
	pthread_mutex_unlock(&W.lock);
	if (fail)
		return -EIO;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len)) {
		int err = errno; /* the real kernel failed it (kernel-faults) */

		pthread_mutex_lock(&W.lock);
		W.punch_failed++;
		pthread_mutex_unlock(&W.lock);
		return -err;
	}
	return 0;
}

/* The library context over the two regions, both starting shared (the
 * kernel's default). Again after a context broke (kernel-faults). */
void world_context(void)
{
	int r = cvmconv_create(&W.cfg, &W.c);

	if (r)
		die("cvmconv_create", r);
	for (int i = 0; i < NREG; i++) {
		struct cvmconv_region reg = { .sz = sizeof(reg),
					      .gpa = BASE + i * RSIZE,
					      .size = RSIZE,
					      .private_fd = W.gmem[i],
					      .shared_fd = W.hva0 && !i ? -1 : W.shared_fd[i],
					      .shared_hva = W.hva0 && !i ? W.shared[i] : NULL,
					      .flags = W.alloc_shared && i == 1
							       ? CVMCONV_REGION_ALLOC_SHARED
							       : 0,
					      .unaligned = -1 };

		r = cvmconv_add_region(W.c, &reg);
		if (r)
			die("cvmconv_add_region", r);
	}
}

/* Real madvise(MADV_REMOVE) for a shared side given as a mapping (W.hva0),
 * counted with the punches (the library counts it as one). */
static int counting_discard(void *opaque, void *hva, uint64_t len)
{
	int err = 0;

	(void)opaque;
	if (madvise(hva, (size_t)len, MADV_REMOVE))
		err = errno;
	pthread_mutex_lock(&W.lock);
	W.punch_calls++;
	W.punch_failed += err != 0;
	pthread_mutex_unlock(&W.lock);
	return -err;
}

static const struct cvmconv_ops punch_ops = { .punch = failing_punch,
					      .discard_hva = counting_discard };

void setup(void)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_EXIT_HYPERCALL,
				      .args = { 1ULL << KVM_HC_MAP_GPA_RANGE } };
	/* attribute updates: the real kernel (no set_memory_attributes op) */
	struct cvmconv_config cfg = { .sz = sizeof(cfg),
				      .unaligned = CVMCONV_UNALIGNED_ALLOW,
				      .ops = &punch_ops };
	int r;

	pthread_mutex_init(&W.lock, NULL);
	W.kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	r = W.kvm < 0 ? 0 : xioctl(W.kvm, KVM_CHECK_EXTENSION, (void *)(uintptr_t)KVM_CAP_VM_TYPES);
	if (r <= 0 || !(r & (1 << KVM_X86_SW_PROTECTED_VM))) {
		printf("lab-guest-random: SKIP: no KVM_X86_SW_PROTECTED_VM here\n");
		exit(LAB_SKIP);
	}
	W.vm = xioctl(W.kvm, KVM_CREATE_VM, (void *)(uintptr_t)KVM_X86_SW_PROTECTED_VM);
	if (W.vm < 0)
		die("KVM_CREATE_VM", W.vm);
	r = xioctl(W.vm, KVM_ENABLE_CAP, &cap);
	if (r < 0)
		die("KVM_ENABLE_CAP(KVM_CAP_EXIT_HYPERCALL)", r);
	if (W.huge) {
		/* 2 MiB pages for both shared sides; the lab ends with the program */
		FILE *f = fopen("/proc/sys/vm/nr_hugepages", "we");

		if (!f || fprintf(f, "%llu\n", NREG * RSIZE / HPAGE + 4) < 0)
			die("raising /proc/sys/vm/nr_hugepages", errno);
		fclose(f);
	}
	W.unevictable0 = meminfo_unevictable_bytes();
	for (int i = 0; i < NREG; i++) {
		struct kvm_create_guest_memfd gm = { .size = RSIZE };
		struct kvm_userspace_memory_region2 slot = { 0 };

		W.gmem[i] = xioctl(W.vm, KVM_CREATE_GUEST_MEMFD, &gm);
		if (W.gmem[i] < 0)
			die("KVM_CREATE_GUEST_MEMFD", W.gmem[i]);
		W.shared_fd[i] = cvmconv_memfd_create("lab-shared", RSIZE, W.huge ? HPAGE : PAGE);
		if (W.shared_fd[i] < 0)
			die("cvmconv_memfd_create", W.shared_fd[i]);
		W.shared[i] =
			mmap(NULL, RSIZE, PROT_READ | PROT_WRITE, MAP_SHARED, W.shared_fd[i], 0);
		if (W.shared[i] == MAP_FAILED)
			die("mmap of the shared side", errno);
		slot.slot = (uint32_t)i;
		slot.flags = KVM_MEM_GUEST_MEMFD;
		slot.guest_phys_addr = BASE + i * RSIZE;
		slot.memory_size = RSIZE;
		slot.userspace_addr = (uint64_t)(uintptr_t)W.shared[i];
		slot.guest_memfd = (uint32_t)W.gmem[i];
		r = xioctl(W.vm, KVM_SET_USER_MEMORY_REGION2, &slot);
		if (r < 0)
			die("KVM_SET_USER_MEMORY_REGION2", r);
	}
	/* the guest's own first 2 MiB: written (allocated), the code in page 1 */
	memset(W.shared[0], 0x5a, HPAGE);
	load_guest_code(W.shared[0] + (CODE_GPA - BASE));
	cfg.vm_fd = W.vm;
	W.cfg = cfg;
	world_context();
	if (W.noslot_wanted) {
		/* slot NREG: 2 MiB without guest_memfd, and a region that only
		 * tracks its attributes (the fault-loop scenario) */
		struct kvm_userspace_memory_region2 slot = { 0 };
		struct cvmconv_region reg = { .sz = sizeof(reg),
					      .gpa = NOSLOT_GPA,
					      .size = HPAGE,
					      .private_fd = -1,
					      .shared_fd = -1,
					      .flags = CVMCONV_REGION_ATTRS_ONLY,
					      .unaligned = -1 };

		W.noslot = mmap(NULL, HPAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
				0);
		if (W.noslot == MAP_FAILED)
			die("mmap", errno);
		slot.slot = NREG;
		slot.guest_phys_addr = NOSLOT_GPA;
		slot.memory_size = HPAGE;
		slot.userspace_addr = (uint64_t)(uintptr_t)W.noslot;
		r = xioctl(W.vm, KVM_SET_USER_MEMORY_REGION2, &slot);
		if (r < 0)
			die("KVM_SET_USER_MEMORY_REGION2 (no guest_memfd)", r);
		r = cvmconv_add_region(W.c, &reg);
		if (r)
			die("cvmconv_add_region (attributes only)", r);
	}
	W.run_size = (size_t)xioctl(W.kvm, KVM_GET_VCPU_MMAP_SIZE, NULL);
	for (unsigned i = 0; i < W.nvcpus; i++) {
		struct vcpu *vc = &W.vcpus[i];

		vc->id = i;
		vc->fd = xioctl(W.vm, KVM_CREATE_VCPU, (void *)(uintptr_t)i);
		if (vc->fd < 0)
			die("KVM_CREATE_VCPU", vc->fd);
		vc->run = mmap(NULL, W.run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vc->fd, 0);
		if (vc->run == MAP_FAILED)
			die("mmap of kvm_run", errno);
		set_cpu(vc);
	}
}
