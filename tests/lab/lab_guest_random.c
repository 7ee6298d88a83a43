/* SPDX-License-Identifier: MIT */
/*
 * A real guest drives random conversions through cvmconv on a real
 * KVM_X86_SW_PROTECTED_VM (the KVM lab): thousands of seeded
 * KVM_HC_MAP_GPA_RANGE hypercalls from guest code — single pages, unaligned
 * runs, 2 MiB with the size hint, requests spanning the two regions, and
 * hostile ones that must come back -KVM_EINVAL — with the guest writing a
 * tag into every page it converts and reading back pages at random. Every
 * read is checked against a model that follows cvmconv's punch rules, and
 * after every step the library's double_alloc_bytes is compared with what
 * the kernel holds twice: allocated(shared memfd) + allocated(guest_memfd)
 * - guest memory (every live page is written, so allocated once).
 *
 *   lab-guest-random [--scenario S] [--steps N] [--seed S] [--huge] [--vcpus N]
 *                    [--overlap] [--burst K]
 *
 * Scenarios: random (default), selftest, tdx-split, punch-failure, stress
 * (--vcpus N threads; --overlap: overlapping ranges, checked against a
 * sequential replay and the kernel's attributes), fault-loop, alloc-shared
 * (an empty hugetlb pool, with and without CVMCONV_REGION_ALLOC_SHARED),
 * pool-race (tests/lab/lab_pools.c: another process races for the pool),
 * kernel-faults (tests/lab/lab_kernel_faults.c: the real kernel's
 * failures at every position, in bursts of K). The world they share is in
 * tests/lab/lab_world.c, its vCPUs in tests/lab/lab_vcpu.c. A watchdog prints every
 * thread's state and each vCPU's registers when no vCPU exits for 30 s, and
 * ends the program (exit 3) after 90 s.
 *
 * --huge puts the shared side on 2 MiB huge pages (MFD_HUGETLB), else shmem.
 * Exit 0 when every check passed, 1 otherwise, 77 without a SW_PROTECTED VM.
 *
 * The guest is a command loop, 31 bytes assembled here (Intel SDM vol. 2
 * opcodes): `out 0x82, al` hands control to the host, which loads the next
 * command into the registers with KVM_SET_REGS; EBP selects it:
 *   1  vmcall: KVM_HC_MAP_GPA_RANGE(EBX gpa, ECX npages, EDX attrs); RAX = ret
 *   2  rep stosd: EAX written ECX times from EDI (a tag over whole pages)
 *   3  repe scasd: compare ECX dwords from EDI with EAX (ZF, ECX tell)
 *   else hlt
 * 32-bit protected mode, flat segments, paging off, CPL 0, as mini-vmm's
 * guest (examples/mini-vmm/kvm_vm.c explains why).
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/memfd.h>

#include "cvmconv.h"
#include "kernel_accounting.h"
#include "lab_kvm.h"
#include "lab_world.h"
#include "pool_hog.h"

/* ---- scenarios ---- */

static void scenario_random(uint64_t steps)
{
	struct vcpu *vc = &W.vcpus[0];

	for (uint64_t s = 1; s <= steps && W.failures < 20; s++) {
		if (rnd() % 3)
			random_map(vc);
		else
			random_verify(vc);
		check_accounting(s);
	}
}

/* The KVM selftest's pattern (private_mem_conversions_test.c), through the
 * guest: for ranges of 4 KiB, 2 MiB and 2 MiB + 4 KiB at offsets 0, 4 KiB
 * and 2 MiB of a 2 MiB aligned test area, convert to private, write, read,
 * convert back, read; then convert the whole area private and its odd pages
 * back one by one (holes), reading everything after each step. */
static void scenario_selftest(void)
{
	static const uint64_t sizes[] = { PAGE, HPAGE, HPAGE + PAGE };
	static const uint64_t offsets[] = { 0, PAGE, HPAGE };
	struct vcpu *vc = &W.vcpus[0];
	const uint64_t area = 4 * 512; /* 8 MiB from page FIRST_PAGE */
	uint64_t step = 0;

	for (size_t i = 0; i < 3; i++)
		for (size_t j = 0; j < 3; j++) {
			uint64_t p0 = FIRST_PAGE + offsets[j] / PAGE, n = sizes[i] / PAGE;
			uint64_t hint = !(offsets[j] % HPAGE) && !(sizes[i] % HPAGE)
						? KVM_MAP_GPA_RANGE_PAGE_SZ_2M
						: 0;

			guest_map(vc, gpa_of(p0), n, KVM_MAP_GPA_RANGE_ENCRYPTED | hint, true);
			verify_all(vc, FIRST_PAGE, area);
			check_accounting(++step);
			guest_map(vc, gpa_of(p0), n, hint, true);
			verify_all(vc, FIRST_PAGE, area);
			check_accounting(++step);
		}
	guest_map(vc, gpa_of(FIRST_PAGE), area, KVM_MAP_GPA_RANGE_ENCRYPTED, true);
	check_accounting(++step);
	for (uint64_t p = FIRST_PAGE + 1; p < FIRST_PAGE + area; p += 2) {
		guest_map(vc, gpa_of(p), 1, 0, true);
		if (p % 64 == 1) {
			verify_all(vc, FIRST_PAGE, area);
			check_accounting(++step);
		}
	}
	verify_all(vc, FIRST_PAGE, area);
	check_accounting(++step);
}

/* TDX's MapGPA as KVM delivers it: one guest request split into exits of at
 * most 2 MiB (arch/x86/kvm/vmx/tdx.c), here from an unaligned start, so
 * every extent stays half-converted until the next exit completes it: the
 * huge shared pages must be punched the moment their last page converts. */
static void scenario_tdx_split(uint64_t rounds)
{
	struct vcpu *vc = &W.vcpus[0];
	uint64_t step = 0;

	for (uint64_t r = 0; r < rounds && W.failures < 20; r++) {
		uint64_t start = FIRST_PAGE + (rnd() % 8) * 512 + 1 + rnd() % 511;
		uint64_t end = start + 512 * (2 + rnd() % 8) + rnd() % 512;
		uint64_t attrs = random_attrs();

		if (end > NPAGES)
			end = NPAGES;
		for (uint64_t p = start; p < end;) {
			/* the next 2 MiB boundary, as KVM cuts it */
			uint64_t stop = (p / 512 + 1) * 512 < end ? (p / 512 + 1) * 512 : end;

			guest_map(vc, gpa_of(p), stop - p, attrs, true);
			check_accounting(++step);
			p = stop;
		}
		/* the converted stretch and the huge page before it */
		uint64_t from = start - 512 > FIRST_PAGE ? start - 512 : FIRST_PAGE;

		verify_all(vc, from, end - from);
	}
}

/* Random conversions with every third punch failing: the stale memory stays
 * allocated and counted (equal to the kernel's, pending), no live page is
 * lost, and cvmconv_flush() frees it once the punches work again. */
static void scenario_punch_failure(uint64_t steps)
{
	struct cvmconv_stats st = { .sz = sizeof(st) };

	W.fail_punches = true;
	scenario_random(steps);
	cvmconv_get_stats(W.c, &st);
	check(st.punch_failures > 0 && st.punch_pending_bytes > 0,
	      "punch failures %" PRIu64 ", pending %" PRIu64 ": nothing was injected",
	      st.punch_failures, st.punch_pending_bytes);
	printf("lab-guest-random: %" PRIu64 " punch failures injected, %" PRIu64
	       " KiB pending before the flush\n",
	       st.punch_failures, st.punch_pending_bytes >> 10);
	W.fail_punches = false;
	check(cvmconv_flush(W.c) == 0, "cvmconv_flush after the failures");
	cvmconv_get_stats(W.c, &st);
	check(st.punch_pending_bytes == 0, "%" PRIu64 " bytes still pending after the flush",
	      st.punch_pending_bytes);
	check_accounting(steps + 1);
	verify_all(&W.vcpus[0], FIRST_PAGE, NPAGES - FIRST_PAGE);
}

/* ---- alloc-shared: an empty hugetlb pool ---- */

/* Another process (tools/pool_hog.c) takes free huge pages, or gives
 * them back, until @leave are free. */
static struct pool_hog hog;

static void pool_leave(long leave)
{
	long held;

	if (hog.pid <= 0 && (errno = -pool_hog_start(&hog)) != 0)
		die("starting the pool hog", errno);
	held = pool_hog_leave(&hog, leave);
	if (held < 0)
		die("the pool hog", (int)-held);
	W.hog_pages = (uint64_t)held;
	check(meminfo_field("HugePages_Free:") == leave, "HugePages_Free %ld, wanted %ld",
	      meminfo_field("HugePages_Free:"), leave);
}

/* Region 1 has CVMCONV_REGION_ALLOC_SHARED, region 0 not. Huge pages that
 * went private were punched, their reservations with them; another user
 * process takes the pool. A conversion back to shared then fails at the
 * conversion on region 1 (the guest gets -KVM_EFAULT, nothing changes),
 * and on region 0 it succeeds while the guest's first write cannot be
 * served: KVM_RUN fails with EFAULT until the pool has a page again. */
static void scenario_alloc_shared(void)
{
	struct vcpu *vc = &W.vcpus[0];
	const uint64_t r1 = RSIZE / PAGE, hint = KVM_MAP_GPA_RANGE_PAGE_SZ_2M;
	struct cvmconv_stats st = { .sz = sizeof(st) };
	struct kvm_regs regs;
	unsigned efaults = 0, memory_faults = 0, eloops = 0;
	uint32_t tag;

	guest_map(vc, gpa_of(2 * 512), 2 * 512, KVM_MAP_GPA_RANGE_ENCRYPTED | hint, true);
	guest_map(vc, gpa_of(r1 + 2 * 512), 4 * 512, KVM_MAP_GPA_RANGE_ENCRYPTED | hint, true);
	check_accounting(1);
	pool_leave(1);

	/* region 1, huge pages 2..4 in one request: the pool has one */
	W.reenter_on_host_error = true;
	W.host_error = 0;
	regs = command(vc, CMD_MAP, KVM_HC_MAP_GPA_RANGE, gpa_of(r1 + 2 * 512), 3 * 512, hint, 0);
	W.reenter_on_host_error = false;
	count(&W.hypercalls, 1);
	cvmconv_get_stats(W.c, &st);
	check((uint32_t)regs.rax == (uint32_t)-14 && W.host_error == -ENOSPC &&
		      st.shared_alloc_failures == 1,
	      "alloc-shared on an empty pool: guest ret 0x%llx (want -KVM_EFAULT), library %d "
	      "(want -ENOSPC), shared_alloc_failures %" PRIu64,
	      (unsigned long long)regs.rax, W.host_error, st.shared_alloc_failures);
	check(meminfo_field("HugePages_Free:") == 1,
	      "the huge page the failed request got was not given back");
	check_accounting(2);
	verify_all(vc, r1 + 2 * 512, 3 * 512); /* still private, data intact */
	printf("lab-guest-random: region with ALLOC_SHARED, empty pool: the guest got "
	       "-KVM_EFAULT, the VMM %s, the pages stayed private\n",
	       strerror(-W.host_error));

	/* one huge page: the last free one */
	guest_map(vc, gpa_of(r1 + 2 * 512), 512, hint, true);
	check(meminfo_field("HugePages_Free:") == 0, "the conversion did not allocate");
	check_accounting(3);

	/* region 0 without the flag: the conversion succeeds, the write not */
	regs = command(vc, CMD_MAP, KVM_HC_MAP_GPA_RANGE, gpa_of(2 * 512), 512, hint, 0);
	count(&W.hypercalls, 1);
	check((uint32_t)regs.rax == 0, "region 0 to shared: ret 0x%llx",
	      (unsigned long long)regs.rax);
	model_convert(2 * 512, 512, false);
	tag = (atomic_fetch_add(&W.next_tag, 1) << 8) | 0x80000001u;
	load_command(vc, CMD_WRITE, tag, 0, 512 * PAGE / 4, 0, gpa_of(2 * 512));
	for (int i = 0; i < 16; i++) {
		int r = ioctl(vc->fd, KVM_RUN, 0);

		if (r == 0 && vc->run->exit_reason == KVM_EXIT_IO && vc->run->io.port == PORT_NEXT)
			break;
		if (r < 0 && errno == EINTR)
			continue;
		if (!(r < 0 && errno == EFAULT)) {
			check(false, "KVM_RUN %d errno %d exit %u while the pool is empty", r,
			      errno, vc->run->exit_reason);
			break;
		}
		efaults++;
		if (vc->run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
			memory_faults++;
			eloops += cvmconv_handle_exit(W.c, vc->run) == -ELOOP;
		}
		if (efaults == 3)
			pool_leave(1); /* the host gives a page back: the write goes on */
	}
	for (uint64_t p = 2 * 512; p < 3 * 512; p++)
		W.tag[0][p] = tag;
	count(&W.writes, 1);
	check(efaults >= 3, "the guest's write on an empty pool did not fail (%u EFAULTs)",
	      efaults);
	printf("lab-guest-random: region without ALLOC_SHARED, empty pool: the conversion "
	       "succeeded, the guest's write made KVM_RUN fail with EFAULT %u times (%u "
	       "of them with a memory fault exit, %u answered -ELOOP) until the pool had a "
	       "page\n",
	       efaults, memory_faults, eloops);
	pool_hog_stop(&hog);
	W.hog_pages = 0;
	check_accounting(4);
	verify_all(vc, FIRST_PAGE, NPAGES - FIRST_PAGE);
}

/* Several vCPU threads at once, each converting, writing and reading the
 * huge pages it owns (huge page h belongs to vCPU h % N), the requests of
 * all of them racing through the library into the real kernel. */
struct stress_arg {
	struct vcpu *vc;
	uint64_t steps, seed;
};

static uint64_t thread_rnd(uint64_t *seed)
{
	*seed ^= *seed << 13;
	*seed ^= *seed >> 7;
	*seed ^= *seed << 17;
	return *seed;
}

/* --overlap: every vCPU converts random ranges anywhere (overlapping each
 * other's, across both regions), with no guest writes while they race.
 * The runs the library reports to a listener (called under the region
 * locks, in the order it serialises requests) are logged; afterwards their
 * sequential replay on the state before must give the library's view, and
 * the kernel's attributes must agree (overlap_check). */
struct run_log {
	pthread_mutex_t lock;
	struct cvmconv_range *r;
	size_t n, cap;
	uint64_t requests;
};

static struct run_log LOG = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void log_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	(void)opaque;
	if (result)
		return;
	pthread_mutex_lock(&LOG.lock);
	if (LOG.n == LOG.cap) {
		LOG.cap = LOG.cap ? 2 * LOG.cap : 4096;
		LOG.r = realloc(LOG.r, LOG.cap * sizeof(*LOG.r));
		if (!LOG.r)
			die("realloc", ENOMEM);
	}
	LOG.r[LOG.n++] =
		(struct cvmconv_range){ .gpa = gpa, .size = size, .to_private = to_private };
	pthread_mutex_unlock(&LOG.lock);
}

static void overlap_steps(struct vcpu *vc, uint64_t steps, uint64_t *seed)
{
	for (uint64_t s = 0; s < steps && W.failures < 20; s++) {
		uint64_t p0 = FIRST_PAGE + thread_rnd(seed) % (NPAGES - FIRST_PAGE);
		uint64_t n = 1 + thread_rnd(seed) % (thread_rnd(seed) % 4 ? 64 : 1500);
		uint64_t attrs = thread_rnd(seed) & 1 ? KVM_MAP_GPA_RANGE_ENCRYPTED : 0;
		struct kvm_regs r;

		if (thread_rnd(seed) % 5 == 0) {
			p0 = FIRST_PAGE + (thread_rnd(seed) % ((NPAGES - FIRST_PAGE) / 512)) * 512;
			n = 512;
			attrs |= KVM_MAP_GPA_RANGE_PAGE_SZ_2M;
		}
		if (p0 + n > NPAGES)
			n = NPAGES - p0;
		r = command(vc, CMD_MAP, KVM_HC_MAP_GPA_RANGE, gpa_of(p0), n, attrs, 0);
		count(&W.hypercalls, 1);
		count(&LOG.requests, 1);
		check((uint32_t)r.rax == 0, "vCPU %u: map 0x%" PRIx64 "+%" PRIu64 ": ret 0x%llx",
		      vc->id, gpa_of(p0), n, (unsigned long long)r.rax);
	}
}

/* After the race: replay, library, kernel. The kernel's attributes: both
 * sides of all converted memory punched, then KVM_PRE_FAULT_MEMORY maps
 * every page from the side its attribute names (virt/kvm/kvm_main.c
 * kvm_vcpu_pre_fault_memory): the shared side shows in mincore(), the
 * private side in guest_memfd's pages (Unevictable). The guest then writes
 * and reads everything afresh. */
static void overlap_check(const bool *before)
{
	static bool replay[NPAGES];
	static unsigned char resident[RSIZE / PAGE];
	uint64_t lib_wrong = 0, kern_wrong = 0, npriv = 0, first_lib = 0, first_kern = 0;
	uint64_t unevictable0 = meminfo_unevictable_bytes(), priv_bytes;
	struct kvm_pre_fault_memory pf = { .gpa = gpa_of(FIRST_PAGE),
					   .size = (NPAGES - FIRST_PAGE) * PAGE };

	memcpy(replay, before, sizeof(replay));
	for (size_t i = 0; i < LOG.n; i++)
		for (uint64_t a = LOG.r[i].gpa; a < LOG.r[i].gpa + LOG.r[i].size; a += PAGE)
			replay[(a - BASE) / PAGE] = LOG.r[i].to_private;
	for (uint64_t p = FIRST_PAGE; p < NPAGES; p++) {
		if (cvmconv_is_private(W.c, gpa_of(p)) != (int)replay[p] && !lib_wrong++)
			first_lib = p;
		npriv += replay[p];
	}
	check(!lib_wrong,
	      "overlap: the sequential replay of %zu runs differs from the library on %" PRIu64
	      " pages (first %" PRIu64 ")",
	      LOG.n, lib_wrong, first_lib);
	for (int i = 0; i < NREG; i++) {
		uint64_t from = i ? 0 : FIRST_PAGE * PAGE; /* not the guest's code */

		if (fallocate(W.shared_fd[i], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)from, (off_t)(RSIZE - from)) ||
		    fallocate(W.gmem[i], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from,
			      (off_t)(RSIZE - from)))
			die("punching for the attribute oracle", errno);
	}
	unevictable0 = meminfo_unevictable_bytes();
	while (pf.size) {
		int r = ioctl(W.vcpus[0].fd, KVM_PRE_FAULT_MEMORY, &pf);

		if (r < 0 && errno != EINTR && errno != EAGAIN)
			die("KVM_PRE_FAULT_MEMORY", errno);
	}
	priv_bytes = meminfo_unevictable_bytes() - unevictable0;
	for (int i = 0; i < NREG; i++) {
		if (mincore(W.shared[i], RSIZE, resident))
			die("mincore", errno);
		for (uint64_t q = 0; q < RSIZE / PAGE; q++) {
			uint64_t p = i * (RSIZE / PAGE) + q;
			bool shared_expected = !replay[p];

			if (p < FIRST_PAGE)
				continue;
			if (W.huge) {
				/* a huge page is resident when any of its pages is shared */
				shared_expected = false;
				for (uint64_t k = p / 512 * 512; k < p / 512 * 512 + 512; k++)
					shared_expected |= !replay[k];
			}
			if ((bool)(resident[q] & 1) != shared_expected && !kern_wrong++)
				first_kern = p;
		}
	}
	check(!kern_wrong,
	      "overlap: the kernel maps %" PRIu64 " pages from another side than the replay "
	      "says (first %" PRIu64 ")",
	      kern_wrong, first_kern);
	check(priv_bytes == npriv * PAGE,
	      "overlap: KVM_PRE_FAULT_MEMORY allocated %" PRIu64 " KiB of guest_memfd, the "
	      "replay has %" PRIu64 " private pages",
	      priv_bytes >> 10, npriv);
	printf("lab-guest-random: overlap: %" PRIu64 " requests from %u vCPUs, %zu runs; "
	       "replay == library == kernel on %" PRIu64 " pages (%" PRIu64 " private)\n",
	       LOG.requests, W.nvcpus, LOG.n, (uint64_t)(NPAGES - FIRST_PAGE), npriv);
	/* the data: everything was punched; the guest writes it all again */
	memcpy(W.priv, replay, sizeof(replay));
	memset(W.tag, 0, sizeof(W.tag));
	guest_write(&W.vcpus[0], FIRST_PAGE, NPAGES - FIRST_PAGE);
}

static void *stress_thread(void *p)
{
	struct stress_arg *a = p;
	const uint64_t nh = NPAGES / 512, n = W.nvcpus;

	claim_vcpu(a->vc);
	run_to_next(a->vc);
	if (W.overlap) {
		overlap_steps(a->vc, a->steps, &a->seed);
		guest_halt(a->vc);
		return NULL;
	}
	for (uint64_t s = 0; s < a->steps && W.failures < 20; s++) {
		/* one of its own huge pages, a piece of it or all */
		uint64_t h = 1 + thread_rnd(&a->seed) % (nh - 1);

		h -= h % n;
		h += a->vc->id;
		if (h >= nh)
			h -= n;
		if (h < 1)
			continue;
		uint64_t off = thread_rnd(&a->seed) % 512, len = 1 + thread_rnd(&a->seed) % 512;
		uint64_t attrs = thread_rnd(&a->seed) & 1 ? KVM_MAP_GPA_RANGE_ENCRYPTED : 0;

		if (thread_rnd(&a->seed) % 4 == 0) {
			off = 0;
			len = 512;
		}
		if (off + len > 512)
			len = 512 - off;
		if (thread_rnd(&a->seed) % 3)
			guest_map(a->vc, gpa_of(h * 512 + off), len, attrs, true);
		else
			verify_from(a->vc, h * 512 + off, (h + 1) * 512);
	}
	guest_halt(a->vc);
	return NULL;
}

static void scenario_stress(uint64_t steps)
{
	pthread_t t[MAX_VCPUS];
	struct stress_arg a[MAX_VCPUS];

	static bool before[NPAGES];
	struct cvmconv_listener l = { .sz = sizeof(l), .after = log_after };

	if (W.overlap) {
		memcpy(before, W.priv, sizeof(before));
		if (cvmconv_add_listener(W.c, &l) < 0)
			die("cvmconv_add_listener", EINVAL);
	}
	/* the start: vCPU 0 writes everything (already done by main) */
	for (unsigned i = 1; i < W.nvcpus; i++) {
		a[i] = (struct stress_arg){ &W.vcpus[i], steps,
					    W.rng ^ (i * 0x9E3779B97F4A7C15ULL) };
		if (pthread_create(&t[i], NULL, stress_thread, &a[i]))
			die("pthread_create", errno);
	}
	a[0] = (struct stress_arg){ &W.vcpus[0], steps, W.rng };
	/* vCPU 0 is waiting in `out` already: its thread starts past that */
	if (W.overlap)
		overlap_steps(&W.vcpus[0], steps, &a[0].seed);
	for (uint64_t s = 0; s < steps && !W.overlap && W.failures < 20; s++) {
		uint64_t h = W.nvcpus * (1 + rnd() % (NPAGES / 512 / W.nvcpus - 1));
		uint64_t off = rnd() % 512, len = 1 + rnd() % 512;

		if (off + len > 512)
			len = 512 - off;
		if (rnd() % 3)
			guest_map(&W.vcpus[0], gpa_of(h * 512 + off), len, random_attrs(), true);
		else
			verify_from(&W.vcpus[0], h * 512 + off, (h + 1) * 512);
	}
	for (unsigned i = 1; i < W.nvcpus; i++)
		pthread_join(t[i], NULL);
	if (W.overlap)
		overlap_check(before);
	/* everything settled: the kernel, the library and every page agree */
	check_accounting(steps);
	verify_all(&W.vcpus[0], FIRST_PAGE, NPAGES - FIRST_PAGE);
}

/* A private page in a memslot without guest_memfd, which the VMM (not the
 * guest: that cvmconv refuses) made private: every access faults
 * (KVM_EXIT_MEMORY_FAULT, arch/x86/kvm/mmu/mmu.c: no gmem behind a private
 * gfn), and converting cannot help since the page already is private. Two
 * vCPU threads touch it at once; each must get 1 (re-enter) at most once and
 * then -ELOOP from cvmconv_handle_exit(), instead of spinning forever. */

static void *fault_loop_thread(void *p)
{
	struct vcpu *vc = p;
	unsigned faults = 0, reentered = 0;
	int last = 0;

	claim_vcpu(vc);
	run_to_next(vc);
	load_command(vc, CMD_WRITE, 0x8badf00d, 0, PAGE / 4, 0, NOSLOT_GPA);
	for (int i = 0; i < 16; i++) {
		int r = ioctl(vc->fd, KVM_RUN, 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (!(r < 0 && errno == EFAULT && vc->run->exit_reason == KVM_EXIT_MEMORY_FAULT)) {
			check(false, "vCPU %u: KVM_RUN %d (errno %d), exit %u: no memory fault",
			      vc->id, r, errno, vc->run->exit_reason);
			return NULL;
		}
		faults++;
		last = cvmconv_handle_exit(W.c, vc->run);
		if (last != 1)
			break;
		reentered++;
	}
	check(last == -ELOOP && reentered <= 1,
	      "vCPU %u: %u memory faults, re-entered %u times, last answer %d (want -ELOOP after "
	      "at most one re-entry)",
	      vc->id, faults, reentered, last);
	pthread_mutex_lock(&W.lock);
	printf("lab-guest-random: vCPU %u: %u real memory faults, re-entered %u, then %s\n", vc->id,
	       faults, reentered, last == -ELOOP ? "-ELOOP" : "?");
	pthread_mutex_unlock(&W.lock);
	return NULL;
}

static void scenario_fault_loop(void)
{
	pthread_t t[MAX_VCPUS];

	check(cvmconv_convert(W.c, NOSLOT_GPA, PAGE, true) == 0, "the VMM makes the page private");
	for (unsigned i = 1; i < W.nvcpus; i++)
		if (pthread_create(&t[i], NULL, fault_loop_thread, &W.vcpus[i]))
			die("pthread_create", errno);
	for (unsigned i = 1; i < W.nvcpus; i++)
		pthread_join(t[i], NULL);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "steps", required_argument, NULL, 's' },
					      { "seed", required_argument, NULL, 'r' },
					      { "huge", no_argument, NULL, 'H' },
					      { "scenario", required_argument, NULL, 'S' },
					      { "vcpus", required_argument, NULL, 'v' },
					      { "burst", required_argument, NULL, 'b' },
					      { "overlap", no_argument, NULL, 'o' },
					      { NULL, 0, NULL, 0 } };
	const char *scenario = "random";
	uint64_t steps = 3000;
	int opt;

	W.rng = 1;
	W.nvcpus = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 's')
			steps = strtoull(optarg, NULL, 0);
		else if (opt == 'r')
			W.rng = strtoull(optarg, NULL, 0) * 0x9E3779B97F4A7C15ULL | 1;
		else if (opt == 'H')
			W.huge = true;
		else if (opt == 'S')
			scenario = optarg;
		else if (opt == 'o')
			W.overlap = true;
		else if (opt == 'b')
			kernel_faults_burst = (unsigned)strtoul(optarg, NULL, 0);
		else if (opt == 'v')
			W.nvcpus = (unsigned)strtoul(optarg, NULL, 0);
		else
			return 2;
	}
	if (!strcmp(scenario, "alloc-shared") || !strcmp(scenario, "pool-race")) {
		W.huge = true;
		W.alloc_shared = true;
	}
	if (!strcmp(scenario, "kernel-faults")) {
		W.alloc_shared = true; /* region 1 allocates what turns shared */
		W.hva0 = true;	       /* region 0 is discarded with madvise */
	}
	if (!strcmp(scenario, "fault-loop")) {
		W.nvcpus = 3; /* vCPU 0 the initial writes, 1 and 2 the faults */
		W.noslot_wanted = true;
	}
	if (W.nvcpus < 1 || W.nvcpus > MAX_VCPUS ||
	    (W.nvcpus > 1 && strcmp(scenario, "stress") && strcmp(scenario, "fault-loop"))) {
		fprintf(stderr,
			"lab-guest-random: --vcpus 1..%d, more than 1 only with "
			"--scenario stress\n",
			MAX_VCPUS);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	setup();
	claim_vcpu(&W.vcpus[0]);
	start_watchdog();
	run_to_next(&W.vcpus[0]); /* the guest's first "next?" */
	/* the guest writes all of its memory once: every page is live and
	 * allocated on its side from now on */
	guest_write(&W.vcpus[0], FIRST_PAGE, NPAGES - FIRST_PAGE);
	check_accounting(0);
	if (!strcmp(scenario, "random"))
		scenario_random(steps);
	else if (!strcmp(scenario, "selftest"))
		scenario_selftest();
	else if (!strcmp(scenario, "tdx-split"))
		scenario_tdx_split(steps);
	else if (!strcmp(scenario, "punch-failure"))
		scenario_punch_failure(steps);
	else if (!strcmp(scenario, "stress"))
		scenario_stress(steps);
	else if (!strcmp(scenario, "fault-loop"))
		scenario_fault_loop();
	else if (!strcmp(scenario, "alloc-shared"))
		scenario_alloc_shared();
	else if (!strcmp(scenario, "kernel-faults"))
		scenario_kernel_faults();
	else if (!strcmp(scenario, "pool-race"))
		scenario_pool_race(steps);
	else {
		fprintf(stderr, "lab-guest-random: unknown scenario %s\n", scenario);
		return 2;
	}
	guest_halt(&W.vcpus[0]);
	struct cvmconv_stats st = { .sz = sizeof(st) };

	if (cvmconv_get_stats(W.c, &st) == 0)
		printf("lab-guest-random: cvmconv: %" PRIu64 " attribute updates, %" PRIu64
		       " punches (%" PRIu64 " failed), double allocation peak %" PRIu64
		       " KiB (checked against the kernel's)\n",
		       st.attr_updates, st.punches, st.punch_failures,
		       st.double_alloc_peak_bytes >> 10);
	printf("lab-guest-random: %s, %s shared side, %u vCPU(s): %" PRIu64
	       " hypercalls from the guest (%" PRIu64 " hostile, refused), %" PRIu64
	       " guest writes, %" PRIu64 " guest reads of %" PRIu64 " pages, %" PRIu64
	       " checks, %" PRIu64 " failed\n",
	       scenario, W.huge ? "2 MiB hugetlb" : "shmem", W.nvcpus, W.hypercalls, W.refused,
	       W.writes, W.verifies, W.pages_verified, W.checks, W.failures);
	return W.failures ? 1 : 0;
}
