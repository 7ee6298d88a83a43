/* SPDX-License-Identifier: MIT */
/*
 * The real kernel's own failures, injected into the calls the library
 * makes, at every position of multi-run requests and batches, with a real
 * guest reading its pages back (lab-guest-random --scenario kernel-faults).
 *
 * The mechanism is the kernel's fault injection (lib/fault-inject.c,
 * Documentation/fault-injection/fault-injection.rst): writing N to
 * /proc/thread-self/fail-nth makes the N-th allocation site that consults
 * failslab or fail_page_alloc in this thread fail (should_fail_ex counts
 * down current->fail_nth before probability and task filter: only this
 * thread, only that call, nothing else in the machine), and reading it back
 * says whether the count reached the site (0) or the call ended first
 * (what is left). So N = 1, 2, ... walks every allocation a request makes
 * in the kernel — KVM_SET_MEMORY_ATTRIBUTES's xarray reservation
 * (virt/kvm/kvm_main.c kvm_vm_set_mem_attributes: xa_reserve before any
 * attribute changes), the hugetlb and shmem fallocate paths, madvise — until
 * a request completes without meeting the N-th. Each injected failure is
 * reported by the kernel (verbose = 2: fail_dump prints the stack), read
 * from /dev/kmsg and counted by the kernel function that met it.
 *
 * After every request, fault or not: the library's view of every page of
 * the window equals the model (changed only when the request succeeded:
 * a failed one must be rolled back whole); the guest reads every page
 * back, which only passes if KVM maps the side the model names (each side
 * holds a different tag) and that side kept its data; stale memory left by
 * a failed punch is freed by cvmconv_flush(); the kernel's accounting
 * equals the library's; the guest got 0 or -KVM_EFAULT, the VMM the
 * errno the kernel returned.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cvmconv.h"
#include "lab_kfi.h"
#include "lab_kvm.h"
#include "lab_world.h"

#define MAX_POSITIONS 2000
#define KVM_EFAULT_RET 0xfffffff2ULL /* -KVM_EFAULT as the guest's EAX */

/* ---- one request under a fault ---- */

static unsigned arm_n;
static bool met;

/* run_to_next()'s exit handler while a guest request is under test: the
 * N-th allocation of the library's handling of the exit fails. */
static int armed_exit(struct vcpu *vc)
{
	int r;

	if (!arm_n)
		return cvmconv_handle_exit(W.c, vc->run);
	kfi_arm(arm_n);
	r = cvmconv_handle_exit(W.c, vc->run);
	met = kfi_disarm() || met;
	arm_n = 0; /* one request, one fault */
	return r;
}

/* What the VMM does outside the fault: convert and have the guest write. */
static void vmm_convert(uint64_t p0, uint64_t n, bool to_private)
{
	int r = cvmconv_convert(W.c, gpa_of(p0), n * PAGE, to_private);

	if (r)
		die("cvmconv_convert (preparing a case)", r);
	model_convert(p0, n, to_private);
}

/* The window: stripes, alternating, starting with @first. */
static void prepare_stripes(uint64_t p0, uint64_t n, bool first)
{
	/* 300 pages; on hugetlb whole huge pages, so that a huge page made
	 * private is given back and turning it shared must allocate it again
	 * (in the window of scenario_kernel_faults: region 0's last huge page
	 * and region 1's first are of the two states) */
	uint64_t width = W.huge ? 512 : 300;
	uint64_t s = W.huge ? (p0 + 511) / 512 * 512 : p0 + 300;

	vmm_convert(p0, n, first);
	for (; s < p0 + n; s += 2 * width)
		vmm_convert(s, s + width <= p0 + n ? width : p0 + n - s, !first);
	guest_write(&W.vcpus[0], p0, n);
	if (cvmconv_flush(W.c))
		die("cvmconv_flush (preparing a case)", EIO);
}

/* Library view == model over [p0, p0 + n); the guest reads it all back. */
static void check_window(const char *what, unsigned pos, uint64_t p0, uint64_t n)
{
	uint64_t wrong = 0, first = 0;

	for (uint64_t p = p0; p < p0 + n; p++)
		if (cvmconv_is_private(W.c, gpa_of(p)) != (int)W.priv[p]) {
			if (!wrong++)
				first = p;
		}
	check(!wrong,
	      "%s, fault at %u: the library's view differs from the model on %" PRIu64
	      " pages (first %" PRIu64 ")",
	      what, pos, wrong, first);
	verify_all(&W.vcpus[0], p0, n);
}

static unsigned double_faults;

/* The burst reached the rollback's own attribute update: the context is
 * broken (docs/semantics.md). Checked: the answers are the documented ones
 * and the library calls the kernel no more. Then the proof that no data
 * was lost: the kernel's attributes set back directly to the state before
 * the request (the model), the guest reads every page of the window from
 * the side that was live — nothing of it was punched. Then a new context
 * in that state, as a VMM would build after restoring the VM elsewhere. */
static void recover_broken(const char *what, unsigned pos, int vmm_err)
{
	struct cvmconv_stats st = { .sz = sizeof(st) };
	uint64_t updates;

	double_faults++;
	cvmconv_get_stats(W.c, &st);
	updates = st.attr_updates;
	check(vmm_err == -ENOTRECOVERABLE, "%s, position %u: broken, but the VMM got %d", what, pos,
	      vmm_err);
	check(cvmconv_convert(W.c, gpa_of(FIRST_PAGE), PAGE, true) == -ENOTRECOVERABLE &&
		      cvmconv_flush(W.c) == -ENOTRECOVERABLE,
	      "%s, position %u: a broken context still works", what, pos);
	cvmconv_get_stats(W.c, &st);
	check(st.attr_updates == updates, "%s, position %u: a broken context called the kernel",
	      what, pos);
	for (uint64_t p = FIRST_PAGE; p < NPAGES;) {
		uint64_t q = p;
		struct kvm_memory_attributes a = { 0 };

		while (q < NPAGES && W.priv[q] == W.priv[p])
			q++;
		a.address = gpa_of(p);
		a.size = (q - p) * PAGE;
		a.attributes = W.priv[p] ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
		if (xioctl(W.vm, KVM_SET_MEMORY_ATTRIBUTES, &a))
			die("KVM_SET_MEMORY_ATTRIBUTES (restoring)", errno);
		p = q;
	}
	verify_all(&W.vcpus[0], FIRST_PAGE, NPAGES - FIRST_PAGE);
	cvmconv_destroy(W.c);
	pthread_mutex_lock(&W.lock);
	W.punch_calls = W.punch_failed = 0;
	pthread_mutex_unlock(&W.lock);
	world_context();
	for (uint64_t p = FIRST_PAGE; p < NPAGES;) {
		uint64_t q = p;

		while (q < NPAGES && W.priv[q] == W.priv[p])
			q++;
		if (W.priv[p] && cvmconv_convert(W.c, gpa_of(p), (q - p) * PAGE, true))
			die("rebuilding the context", EIO);
		p = q;
	}
}

struct case_figures {
	unsigned positions, failed, succeeded, pending_flushed;
};

/* After a request at position @pos: the outcome against the model, then
 * the flush of what a failed punch left. */
static void settle(const char *what, unsigned pos, uint64_t p0, uint64_t n, bool ok, int vmm_err,
		   uint64_t guest_ret, bool guest, struct case_figures *f)
{
	struct cvmconv_stats st = { .sz = sizeof(st) };

	if (ok) {
		f->succeeded++;
	} else {
		f->failed++;
		check(met, "%s, position %u: failed (%d) without an injected fault", what, pos,
		      vmm_err);
		check(vmm_err == -ENOMEM || vmm_err == -ENOTRECOVERABLE || vmm_err == -ENOSPC ||
			      vmm_err == -EINTR,
		      "%s, position %u: the VMM got %d, not the kernel's ENOMEM", what, pos,
		      vmm_err);
		if (guest)
			check(guest_ret == KVM_EFAULT_RET,
			      "%s, position %u: the guest got 0x%" PRIx64 ", want -KVM_EFAULT",
			      what, pos, guest_ret);
	}
	cvmconv_get_stats(W.c, &st);
	if (st.broken) {
		recover_broken(what, pos, vmm_err);
		return;
	}
	check_window(what, pos, p0, n);
	if (st.punch_pending_bytes) {
		f->pending_flushed++;
		check(cvmconv_flush(W.c) == 0, "%s, position %u: cvmconv_flush", what, pos);
		cvmconv_get_stats(W.c, &st);
		check(st.punch_pending_bytes == 0, "%s, position %u: %" PRIu64 " bytes pending",
		      what, pos, st.punch_pending_bytes);
	}
	check_accounting(pos);
}

/* A guest KVM_HC_MAP_GPA_RANGE over the striped window [p0, p0 + n). */
static void case_guest(const char *what, uint64_t p0, uint64_t n, bool to_private,
		       struct case_figures *f)
{
	struct vcpu *vc = &W.vcpus[0];

	W.exit_handler = armed_exit;
	for (unsigned pos = 1; pos <= MAX_POSITIONS && W.failures < 20; pos++) {
		struct kvm_regs regs;
		uint64_t ret;

		prepare_stripes(p0, n, !to_private);
		kfi_collect();
		met = false;
		arm_n = pos;
		W.reenter_on_host_error = true;
		W.host_error = 0;
		regs = command(vc, CMD_MAP, KVM_HC_MAP_GPA_RANGE, gpa_of(p0), n,
			       to_private ? KVM_MAP_GPA_RANGE_ENCRYPTED : 0, 0);
		W.reenter_on_host_error = false;
		arm_n = 0;
		count(&W.hypercalls, 1);
		ret = (uint32_t)regs.rax;
		if (ret == 0) {
			model_convert(p0, n, to_private);
			guest_write(vc, p0, n);
		}
		settle(what, pos, p0, n, ret == 0, W.host_error, ret, true, f);
		if (!met) {
			check(ret == 0, "%s: no fault met, but the guest got 0x%" PRIx64, what,
			      ret);
			f->positions = pos - 1;
			break;
		}
	}
	W.exit_handler = NULL;
}

/* A VMM batch: entries of both directions over both regions, one per
 * huge page (on hugetlb the ones turning shared must allocate theirs). */
#define NBATCH 4

static void case_batch(const char *what, uint64_t p0, struct case_figures *f)
{
	struct cvmconv_range r[NBATCH];
	const uint64_t n = NBATCH * 512;

	for (int i = 0; i < NBATCH; i++)
		r[i] = (struct cvmconv_range){ .gpa = gpa_of(p0 + (uint64_t)i * 512 + 40),
					       .size = 200 * PAGE,
					       .to_private = (uint32_t)(i & 1) };
	for (unsigned pos = 1; pos <= MAX_POSITIONS && W.failures < 20; pos++) {
		int ret;

		/* each entry changes: the even ones start private, the odd shared */
		for (int i = 0; i < NBATCH; i++)
			vmm_convert(p0 + (uint64_t)i * 512, 512, !(i & 1));
		guest_write(&W.vcpus[0], p0, n);
		if (cvmconv_flush(W.c))
			die("cvmconv_flush (preparing a case)", EIO);
		kfi_collect();
		kfi_arm(pos);
		ret = cvmconv_convert_batch(W.c, r, NBATCH, 0, NULL);
		met = kfi_disarm();
		if (ret == 0) {
			for (int i = 0; i < NBATCH; i++)
				model_convert((r[i].gpa - BASE) / PAGE, r[i].size / PAGE,
					      r[i].to_private);
			guest_write(&W.vcpus[0], p0, n);
		}
		settle(what, pos, p0, n, ret == 0, ret, 0, false, f);
		if (!met) {
			check(ret == 0, "%s: no fault met, but the batch returned %d", what, ret);
			f->positions = pos - 1;
			break;
		}
	}
}

/* cvmconv_flush() of punches that failed before (our punch op failing
 * every third call), itself under a real fault at every position. */
static void case_flush(const char *what, uint64_t p0, uint64_t n, struct case_figures *f)
{
	for (unsigned pos = 1; pos <= MAX_POSITIONS && W.failures < 20; pos++) {
		struct cvmconv_stats st = { .sz = sizeof(st) };
		int ret;

		/* to shared: the guest_memfd side of 4 KiB pages is punched */
		prepare_stripes(p0, n, true);
		W.fail_punches = true;
		for (uint64_t s = p0; s < p0 + n; s += 256)
			vmm_convert(s, 128, false);
		W.fail_punches = false;
		guest_write(&W.vcpus[0], p0, n);
		cvmconv_get_stats(W.c, &st);
		check(st.punch_pending_bytes > 0, "%s: no punch pending before the flush", what);
		kfi_collect();
		kfi_arm(pos);
		ret = cvmconv_flush(W.c);
		met = kfi_disarm();
		/* a flush converts nothing: its failure is a punch still pending */
		if (ret)
			check(met, "%s, position %u: flush failed (%d) without a fault", what, pos,
			      ret);
		f->succeeded += ret == 0;
		f->failed += ret != 0;
		settle(what, pos, p0, n, true, 0, 0, false, f);
		if (!met) {
			f->positions = pos - 1;
			break;
		}
	}
}

/* The guest's first touch of private pages: guest_memfd allocates them
 * inside KVM_RUN (virt/kvm/guest_memfd.c kvm_gmem_get_pfn), the kernel
 * failing the N-th allocation of that KVM_RUN. What KVM_RUN returns, and
 * what cvmconv_handle_exit() says to the exit it leaves, are counted; the
 * VMM re-enters until the write completes. */
struct gmem_figures {
	unsigned positions, runs_failed, memory_fault_exits, answered[3];
	int last_errno;
};

static void case_gmem_alloc(uint64_t p0, uint64_t n, struct gmem_figures *g)
{
	struct vcpu *vc = &W.vcpus[0];

	for (unsigned pos = 1; pos <= MAX_POSITIONS && W.failures < 20; pos++) {
		uint32_t tag = (atomic_fetch_add(&W.next_tag, 1) << 8) | 0x80000001u;
		bool done = false;

		/* private with nothing allocated: to shared punches the
		 * guest_memfd side, back to private allocates nothing */
		vmm_convert(p0, n, false);
		vmm_convert(p0, n, true);
		if (cvmconv_flush(W.c))
			die("cvmconv_flush (preparing a case)", EIO);
		kfi_collect();
		met = false;
		load_command(vc, CMD_WRITE, tag, 0, n * PAGE / 4, 0, gpa_of(p0));
		for (int attempt = 0; attempt < 64 && !done; attempt++) {
			int r, err;

			if (!attempt)
				kfi_arm(pos);
			r = ioctl(vc->fd, KVM_RUN, 0);
			err = errno;
			if (!attempt)
				met = kfi_disarm();
			if (r == 0 && vc->run->exit_reason == KVM_EXIT_IO &&
			    vc->run->io.port == PORT_NEXT) {
				done = true;
				break;
			}
			if (r < 0 && err == EINTR)
				continue;
			if (r < 0) {
				g->runs_failed++;
				g->last_errno = err;
			}
			if (vc->run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
				int a = cvmconv_handle_exit(W.c, vc->run);

				g->memory_fault_exits++;
				g->answered[a == 1 ? 0 : a == -ELOOP ? 1 : 2]++;
				check(a == 1 || a == -ELOOP,
				      "gmem allocation, position %u: cvmconv_handle_exit %d", pos,
				      a);
			} else if (r < 0) {
				check(err == ENOMEM || err == EFAULT,
				      "gmem allocation, position %u: KVM_RUN errno %d", pos, err);
			}
		}
		check(done, "gmem allocation, position %u: the guest's write never completed", pos);
		for (uint64_t p = p0; p < p0 + n; p++)
			W.tag[1][p] = tag;
		count(&W.writes, 1);
		check_window("gmem allocation", pos, p0, n);
		check_accounting(pos);
		if (!met) {
			g->positions = pos - 1;
			break;
		}
	}
}

void scenario_kernel_faults(void)
{
	/* 1324 pages across the boundary of the two regions */
	const uint64_t p0 = RSIZE / PAGE - 512 - 150, n = 2 * 512 + 300;
	static const char *const names[] = {
		"guest request to private (multi-run, 2 regions)",
		"guest request to shared (multi-run, 2 regions)",
		"VMM batch of 4 entries, both directions, 2 regions",
		"cvmconv_flush of failed punches",
	};
	struct case_figures f[4] = { 0 };
	struct gmem_figures gm = { 0 };
	struct cvmconv_stats st = { .sz = sizeof(st) };

	W.pool_truth = true;
	kfi_setup();
	case_guest(names[0], p0, n, true, &f[0]);
	case_guest(names[1], p0, n, false, &f[1]);
	case_batch(names[2], RSIZE / PAGE - 2 * 512, &f[2]);
	case_flush(names[3], p0, n, &f[3]);
	case_gmem_alloc(RSIZE / PAGE + 512, 128, &gm);
	kfi_collect();
	cvmconv_get_stats(W.c, &st);
	printf("lab-guest-random: kernel faults, bursts of %u (%s shared side%s):\n",
	       kernel_faults_burst, W.huge ? "2 MiB hugetlb" : "shmem",
	       W.alloc_shared ? ", region 1 CVMCONV_REGION_ALLOC_SHARED" : "");
	for (int i = 0; i < 4; i++)
		printf("  %-52s %4u positions: %u failed and rolled back whole, %u succeeded, "
		       "%u left punches for cvmconv_flush\n",
		       names[i], f[i].positions, f[i].failed, f[i].succeeded, f[i].pending_flushed);
	printf("  guest's first write of 128 private pages (guest_memfd allocates in "
	       "KVM_RUN)    %4u positions: KVM_RUN failed %u times (last errno %s), %u memory "
	       "fault exits, cvmconv_handle_exit answered 1 x%u, -ELOOP x%u, other x%u; the "
	       "VMM re-entered and every write completed\n",
	       gm.positions, gm.runs_failed, gm.last_errno ? strerror(gm.last_errno) : "-",
	       gm.memory_fault_exits, gm.answered[0], gm.answered[1], gm.answered[2]);
	printf("  faults injected, by kernel function (the allocation it called, the "
	       "syscall) [fault attribute]: %u reports\n",
	       kfi_reports);
	for (unsigned k = 0; k < kfi_nsites; k++)
		printf("  %6u  %s\n", kfi_sites[k].n, kfi_sites[k].name);
	printf("  %u double faults reached a rollback (the context broke: the VMM got "
	       "-ENOTRECOVERABLE, the guest -KVM_EFAULT; the attributes set back, every page "
	       "read its data, a new context built)\n",
	       double_faults);
	printf("  %u failures past the first of their burst; shared_alloc_failures %" PRIu64
	       ", punch_failures %" PRIu64 ", hugetlbfs i_blocks drifts %" PRIu64 " (now %" PRIu64
	       " KiB); pages lost %" PRIu64 "\n",
	       kfi_burst_extra, st.shared_alloc_failures, st.punch_failures, W.iblocks_drift_events,
	       W.iblocks_drift >> 10, W.lost_pages);
	check(W.lost_pages == 0, "%" PRIu64 " pages lost", W.lost_pages);
	check(kfi_reports > 0, "no fault was injected at all");
}
