/* SPDX-License-Identifier: MIT */
/*
 * What every path shares: the exit dispatcher, the checks that run after
 * every step (guest-visible and host-visible content against the model, the
 * library's view, the kernel's view), the final table and the vCPU loop.
 * The backings, the cvmconv context and the strict attribute recorder are
 * set up in vmm_setup.c.
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

uint64_t fd_allocated(int fd)
{
	struct stat st;

	return fd >= 0 && fstat(fd, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

uint64_t private_allocated(const struct vmm *v, const char **how)
{
	uint64_t now;

	if (!v->private_is_gmem) {
		*how = "st_blocks";
		return fd_allocated(v->private_fd);
	}
	/* a guest_memfd the host can map (GUEST_MEMFD_FLAG_MMAP): mincore */
	now = fd_allocated_bytes(v->private_fd);
	if (now != UINT64_MAX) {
		*how = "mincore";
		return now;
	}
	/* guest_memfd marks its mapping unevictable (virt/kvm/guest_memfd.c,
	 * kvm_gmem_create: mapping_set_unevictable): its pages are counted in
	 * Unevictable, never in st_blocks (measured in the lab: fallocate of
	 * 32 MiB +32 MiB, a punch of 16 MiB -16 MiB) */
	*how = "Unevictable";
	now = meminfo_unevictable_bytes();
	return now > v->unevictable_base ? now - v->unevictable_base : 0;
}

void vmm_check(struct vmm *v, bool ok, const char *fmt, ...)
{
	va_list ap;

	if (ok) {
		v->checks_ok++;
		return;
	}
	v->checks_failed++;
	v->failed = true;
	printf("     CHECK FAILED: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* ---- checks after every step ---- */

/* Compare [gpa, gpa + size) of @fd (at file offset @off) with the seeds the
 * model gives; pread does not allocate holes, it reads them as zeros. */
static uint64_t compare_fd(int fd, uint64_t off, uint64_t gpa, uint64_t size, const uint32_t *seeds,
			   uint64_t *first_bad)
{
	static uint32_t buf[HUGE_SIZE / 4];
	uint64_t bad = 0;

	for (uint64_t done = 0; done < size; done += sizeof(buf)) {
		uint64_t n = size - done < sizeof(buf) ? size - done : sizeof(buf);

		if (pread(fd, buf, n, (off_t)(off + done)) != (ssize_t)n)
			return size / 4;
		for (uint64_t i = 0; i < n / 4; i++) {
			uint64_t a = gpa + done + i * 4;

			if (buf[i] != pattern_at(a, seeds[model_page(a)])) {
				if (!bad++)
					*first_bad = a;
			}
		}
	}
	return bad;
}

static void model_truth(const struct model *m, uint64_t *dbl, uint64_t *mixed, uint64_t *held,
			uint64_t *private_pages)
{
	uint64_t per_huge = m->shared_page / PAGE_SIZE_4K;

	*dbl = *mixed = *held = *private_pages = 0;
	for (uint64_t e = 0; e < RAM_PAGES; e += HUGE_SIZE / PAGE_SIZE_4K) {
		uint64_t priv = 0;

		for (uint64_t p = e; p < e + HUGE_SIZE / PAGE_SIZE_4K; p++)
			priv += m->private_[p];
		*private_pages += priv;
		if (priv && priv < HUGE_SIZE / PAGE_SIZE_4K)
			(*mixed)++;
	}
	/* a shared huge page is held while any of its pages is shared; the
	 * private pages inside a held one are allocated twice. One only partly
	 * in RAM (1 GiB) is never punched: held throughout. */
	for (uint64_t h = 0; per_huge > 1 && h < RAM_PAGES; h += per_huge) {
		uint64_t priv = 0, end = h + per_huge < RAM_PAGES ? h + per_huge : RAM_PAGES;

		for (uint64_t p = h; p < end; p++)
			priv += m->private_[p];
		if (priv < per_huge) {
			(*held)++;
			*dbl += priv * PAGE_SIZE_4K;
		}
	}
}

static int get_stats(struct vmm *v, struct cvmconv_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->sz = sizeof(*st);
	return cvmconv_get_stats(v->conv, st);
}

static void host_checks(struct vmm *v)
{
	const struct model *m = &v->model;
	struct cvmconv_stats st;
	uint64_t first = 0, bad, dbl, mixed, held, priv_pages, lib_bad = 0, rec_bad = 0;
	uint64_t shared_alloc = fd_allocated(v->shared_fd);
	const char *how;
	uint64_t private_alloc = private_allocated(v, &how);

	/* host-visible content: the shared side never shows private data */
	bad = compare_fd(v->shared_fd, TEST_GPA - GUEST_BASE, TEST_GPA,
			 GUEST_BASE + RAM_SIZE - TEST_GPA, m->shared_seed, &first);
	vmm_check(v, !bad, "shared side: %" PRIu64 " dword(s) differ, first at gpa %#" PRIx64, bad,
		  first);
	bad = compare_fd(v->noslot_fd, 0, NOSLOT_GPA, NOSLOT_SIZE, m->shared_seed, &first);
	vmm_check(v, !bad, "slot 1: %" PRIu64 " dword(s) differ, first at gpa %#" PRIx64, bad,
		  first);
	if (!v->private_is_gmem) { /* guest_memfd has no read() */
		bad = compare_fd(v->private_fd, 0, GUEST_BASE, RAM_SIZE, m->private_seed, &first);
		vmm_check(v, !bad,
			  "private stand-in: %" PRIu64 " dword(s) differ, first at gpa %#" PRIx64,
			  bad, first);
	}
	/* attributes: the library's view (and the recorder's) against the model */
	for (uint64_t p = 0; p < RAM_PAGES; p++)
		lib_bad += cvmconv_is_private(v->conv, GUEST_BASE + p * PAGE_SIZE_4K) !=
			   m->private_[p];
	vmm_check(v, !lib_bad, "cvmconv_is_private differs from the model on %" PRIu64 " page(s)",
		  lib_bad);
	if (v->vm_fd < 0) {
		for (uint64_t p = 0; p < WINDOW_PAGES; p++)
			rec_bad += v->rec_private[p] != m->private_[p];
		vmm_check(v, !rec_bad, "recorded attributes differ on %" PRIu64 " page(s)",
			  rec_bad);
	}
	/* the library's accounting against the model's */
	model_truth(m, &dbl, &mixed, &held, &priv_pages);
	if (get_stats(v, &st) == 0) {
		vmm_check(v, st.double_alloc_bytes == dbl,
			  "double_alloc_bytes %" PRIu64 ", model %" PRIu64, st.double_alloc_bytes,
			  dbl);
		vmm_check(v, st.mixed_extents == mixed, "mixed_extents %" PRIu64 ", model %" PRIu64,
			  st.mixed_extents, mixed);
	}
	/* the kernel's view: nothing wholly stale stays allocated */
	if (v->shared_huge)
		vmm_check(v, shared_alloc <= held * m->shared_page,
			  "shared memfd holds %" PRIu64 " KiB, at most %" PRIu64
			  " huge pages have shared pages",
			  shared_alloc / KiB, held);
	else
		vmm_check(v, shared_alloc <= (RAM_PAGES - priv_pages) * PAGE_SIZE_4K,
			  "shared memfd holds %" PRIu64 " KiB for %" PRIu64 " shared pages",
			  shared_alloc / KiB, RAM_PAGES - priv_pages);
	vmm_check(v, private_alloc <= priv_pages * PAGE_SIZE_4K,
		  "private side holds %" PRIu64 " KiB for %" PRIu64 " private pages",
		  private_alloc / KiB, priv_pages);
	printf("     kernel: shared %" PRIu64 " KiB, private %" PRIu64
	       " KiB (%s) | cvmconv: double_alloc %" PRIu64 " KiB, mixed extents %" PRIu64
	       ", punches %" PRIu64 "\n",
	       shared_alloc / KiB, private_alloc / KiB, how, st.double_alloc_bytes / KiB,
	       st.mixed_extents, st.punches);
}

/* ---- steps ---- */

/* "A", "B, then C": what a read of the step's range must return */
static void expectation(const struct vmm *v, const struct step *s, char *line, size_t len)
{
	size_t n = 0;
	uint32_t last = 1; /* no seed is 1 */

	line[0] = 0;
	for (uint64_t gpa = s->gpa; gpa < s->gpa + s->size; gpa += PAGE_SIZE_4K) {
		uint32_t seed = model_read_seed(&v->model, gpa);

		if (seed != last && n < len)
			n += (size_t)snprintf(line + n, len - n, "%s%s", n ? ", then " : "",
					      model_seed_name(seed));
		last = seed;
	}
}

static void step_begin(struct vmm *v)
{
	const struct step *s = &scenario[v->step];
	char desc[96], expect[96];

	step_describe(s, desc, sizeof(desc));
	if (s->kind == STEP_CHECK) {
		expectation(v, s, expect, sizeof(expect));
		printf("[%2zu] %s: expects %s\n", v->step, desc, expect);
	} else {
		printf("[%2zu] %s\n", v->step, desc);
	}
	printf("     %s\n", s->what);
	if (s->kind == STEP_FAULT && !path_has_implicit_faults(v->path))
		printf("     no exit: a SW_PROTECTED VM takes private vs shared from the attribute "
		       "(kvm_mmu_page_fault); the access goes to the shared side\n");
	v->step_hypercalls = v->step_faults = 0;
}

void vmm_start(struct vmm *v)
{
	v->step = 0;
	printf("\n");
	host_checks(v);
	step_begin(v);
}

static enum vmm_next step_done(struct vmm *v, uint32_t index)
{
	const struct step *s = &scenario[v->step];

	if (index != v->step) {
		vmm_check(v, false, "guest reports step %u, the VMM is at step %zu", index,
			  v->step);
		return VMM_FAIL;
	}
	vmm_check(v, v->step_hypercalls == step_expected_hypercalls(s),
		  "step %zu: %u hypercall exit(s), %u expected", v->step, v->step_hypercalls,
		  step_expected_hypercalls(s));
	vmm_check(v, v->step_faults == step_expected_faults(s, v->path),
		  "step %zu: %u memory fault exit(s), %u expected", v->step, v->step_faults,
		  step_expected_faults(s, v->path));
	model_apply(&v->model, s, v->path);
	host_checks(v);
	if (v->failed)
		return VMM_FAIL;
	v->step++;
	step_begin(v);
	return VMM_REENTER;
}

static enum vmm_next guest_failed(struct vmm *v, uint32_t value)
{
	struct guest_regs r = { 0 };
	const struct step *s = &scenario[v->step];

	if (v->get_regs)
		v->get_regs(v, &r);
	if (s->kind == STEP_MAP)
		vmm_check(v, false, "step %zu: the guest got RAX %#x from the hypercall", v->step,
			  value);
	else if (r.rsi < GUEST_BASE || r.rsi >= GUEST_BASE + WINDOW_SIZE)
		vmm_check(v, false, "step %zu: the guest read %#x (address unknown)", v->step,
			  value);
	else
		vmm_check(v, false,
			  "step %zu: the guest read %#x at gpa %#" PRIx64 ", expected %#x (%s)",
			  v->step, value, r.rsi,
			  pattern_at(r.rsi, model_read_seed(&v->model, r.rsi)),
			  model_seed_name(model_read_seed(&v->model, r.rsi)));
	return VMM_FAIL;
}

static enum vmm_next on_hypercall(struct vmm *v, struct kvm_run *run, int h)
{
	const struct step *s = &scenario[v->step];
	uint64_t gpa = run->hypercall.args[0], npages = run->hypercall.args[1];
	uint64_t attrs = run->hypercall.args[2];

	printf("     exit HYPERCALL nr %llu gpa %#" PRIx64 " npages %" PRIu64 " attrs %#" PRIx64
	       " (%s%s) -> %d%s, ret %" PRId64 "\n",
	       (unsigned long long)run->hypercall.nr, gpa, npages, attrs,
	       (attrs & CVMCONV_MAP_GPA_RANGE_ENCRYPTED) ? "private" : "shared",
	       (attrs & CVMCONV_MAP_GPA_RANGE_PAGE_SZ_MASK) == CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M
		       ? ", 2M hint"
		       : ((attrs & CVMCONV_MAP_GPA_RANGE_PAGE_SZ_MASK) ? ", size hint" : ""),
	       h, h == 1 ? " (handled)" : "", (int64_t)run->hypercall.ret);
	if (h != 1) {
		vmm_check(v, false, "cvmconv_handle_exit: %s", h ? strerror(-h) : "not handled");
		return VMM_FAIL;
	}
	v->step_hypercalls++;
	vmm_check(v,
		  s->kind == STEP_MAP && gpa == s->gpa && npages == s->size / PAGE_SIZE_4K &&
			  attrs == s->attrs,
		  "step %zu does not ask for this conversion", v->step);
	vmm_check(v, run->hypercall.ret == 0, "cvmconv answered %" PRId64,
		  (int64_t)run->hypercall.ret);
	return v->failed ? VMM_FAIL : VMM_REENTER;
}

static enum vmm_next on_memory_fault(struct vmm *v, struct kvm_run *run, int h)
{
	const struct step *s = &scenario[v->step];
	const struct cvmconv_kvm_memory_fault *mf = cvmconv_run_memory_fault(run);
	bool want_private = mf->flags & KVM_MEMORY_EXIT_FLAG_PRIVATE;
	int ret;

	printf("     exit MEMORY_FAULT gpa %#llx size %#llx flags %#llx (%s access) -> %d%s%s\n",
	       (unsigned long long)mf->gpa, (unsigned long long)mf->size,
	       (unsigned long long)mf->flags, want_private ? "private" : "shared", h,
	       h == 1 ? " (handled)" : (h < 0 ? " " : ""), h < 0 ? strerror(-h) : "");
	v->step_faults++;
	if (h == 1) {
		vmm_check(v, s->kind == STEP_FAULT && mf->gpa == s->gpa && mf->size == s->size,
			  "step %zu expects no such fault", v->step);
		return v->failed ? VMM_FAIL : VMM_REENTER;
	}
	/* The expected refusal: the page has no private backing, so no
	 * conversion can serve a private access. The VMM made the page
	 * private itself; it undoes that (outside cvmconv: not its region). */
	if (h == -EFAULT && s->refused_fault && mf->gpa == s->gpa && want_private &&
	    v->step_faults == 1) {
		printf("     refused as expected (no guest_memfd behind slot 1); the VMM sets the "
		       "page shared itself and re-enters\n");
		ret = vmm_set_attributes(v, mf->gpa, PAGE_SIZE_4K, false);
		vmm_check(v, ret == 0, "repair: %s", strerror(-ret));
		return v->failed ? VMM_FAIL : VMM_REENTER;
	}
	vmm_check(v, false, "cvmconv_handle_exit: %d (%s) at step %zu", h,
		  h < 0 ? strerror(-h) : "handled", v->step);
	return VMM_FAIL;
}

enum vmm_next vmm_exit(struct vmm *v, struct kvm_run *run)
{
	int h;

	v->exits_total++;
	v->exits_by_reason[run->exit_reason < 64 ? run->exit_reason : 63]++;
	if (v->step >= scenario_len) {
		vmm_check(v, false, "exit %u after the end of the scenario", run->exit_reason);
		return VMM_FAIL;
	}
	/* Every exit goes to the library first. */
	h = cvmconv_handle_exit(v->conv, run);
	switch (run->exit_reason) {
	case KVM_EXIT_HYPERCALL:
		return on_hypercall(v, run, h);
	case KVM_EXIT_MEMORY_FAULT:
		return on_memory_fault(v, run, h);
	default:
		break;
	}
	if (h != 0) {
		vmm_check(v, false, "cvmconv_handle_exit(%u) = %d", run->exit_reason, h);
		return VMM_FAIL;
	}
	/* 0: not a conversion exit, the VMM's own business */
	if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT &&
	    run->io.size == 4 && run->io.count == 1) {
		uint32_t value;

		memcpy(&value, (uint8_t *)run + run->io.data_offset, sizeof(value));
		if (run->io.port == PORT_STEP_DONE)
			return step_done(v, value);
		if (run->io.port == PORT_CHECK_FAIL)
			return guest_failed(v, value);
	}
	if (run->exit_reason == KVM_EXIT_HLT && scenario[v->step].kind == STEP_END) {
		printf("     exit HLT: end of the scenario\n");
		v->done = true;
		return VMM_DONE;
	}
	vmm_check(v, false, "unexpected exit reason %u at step %zu", run->exit_reason, v->step);
	return VMM_FAIL;
}

/* ---- the final table ---- */

int vmm_report(struct vmm *v)
{
	struct cvmconv_stats st;
	uint64_t dbl, mixed, held, priv_pages, conv_exits, refused = 0;

	if (get_stats(v, &st)) {
		fprintf(stderr, "cvmconv_get_stats failed\n");
		return 1;
	}
	for (size_t i = 0; i < scenario_len; i++)
		refused += scenario[i].refused_fault;
	conv_exits =
		v->exits_by_reason[KVM_EXIT_HYPERCALL] + v->exits_by_reason[KVM_EXIT_MEMORY_FAULT];
	if (v->done) {
		vmm_check(v, st.exits == conv_exits,
			  "cvmconv counted %" PRIu64 " requests, %" PRIu64 " conversion exits",
			  st.exits, conv_exits);
		vmm_check(v, st.rejected == refused, "rejected %" PRIu64 ", %" PRIu64 " expected",
			  st.rejected, refused);
		vmm_check(v, !st.broken && !st.punch_failures && !st.punch_pending_bytes,
			  "broken %" PRIu64 ", punch failures %" PRIu64, st.broken,
			  st.punch_failures);
	}
	model_truth(&v->model, &dbl, &mixed, &held, &priv_pages);
	printf("\n%-28s %14s   %-22s %s\n", "cvmconv_get_stats()", "", "kernel / VMM", "");
#define ROW(f, right_name, right_fmt, ...) \
	printf("  %-26s %14" PRIu64 "   %-22s " right_fmt "\n", #f, st.f, right_name, __VA_ARGS__)
	ROW(exits, "path", "%s", path_name(v->path));
	ROW(rejected, "exits, all", "%" PRIu64, v->exits_total);
	ROW(unaligned, "  HYPERCALL", "%" PRIu64, v->exits_by_reason[KVM_EXIT_HYPERCALL]);
	ROW(to_private_bytes, "  MEMORY_FAULT", "%" PRIu64,
	    v->exits_by_reason[KVM_EXIT_MEMORY_FAULT]);
	ROW(to_shared_bytes, "  IO", "%" PRIu64, v->exits_by_reason[KVM_EXIT_IO]);
	ROW(attr_updates, "  HLT", "%" PRIu64, v->exits_by_reason[KVM_EXIT_HLT]);
	ROW(punches, "shared backing", "%s",
	    !v->shared_huge		 ? "4 KiB shmem"
	    : v->huge_size == 1ULL << 30 ? "1 GiB hugetlb"
					 : "2 MiB hugetlb");
	ROW(punch_failures, "shared st_blocks", "%" PRIu64 " KiB",
	    fd_allocated(v->shared_fd) / KiB);
	ROW(double_alloc_bytes, "private backing", "%s",
	    v->private_is_gmem ? "guest_memfd" : "shmem stand-in");
	const char *how;
	uint64_t private_alloc = private_allocated(v, &how);

	ROW(double_alloc_peak_bytes,
	    v->private_is_gmem ? "private (Unevictable)" : "private st_blocks", "%" PRIu64 " KiB",
	    private_alloc / KiB);
	(void)how;
	ROW(mixed_extents, "private pages (model)", "%" PRIu64, priv_pages);
	ROW(extents, "held huge pages", "%" PRIu64, held);
	ROW(guest_bytes, "attribute updates", "%s", v->vm_fd >= 0 ? "KVM" : "recorder (below)");
	ROW(huge_mappable_bytes, "  recorder calls", "%" PRIu64, v->rec_calls);
	ROW(punch_pending_bytes, "  recorder refused", "%" PRIu64, v->rec_refused);
	ROW(tracker_bytes, "checks passed", "%" PRIu64, v->checks_ok);
	ROW(log_suppressed, "checks failed", "%" PRIu64, v->checks_failed);
	ROW(broken, "", "%s", "");
#undef ROW
	if (v->failed || !v->done) {
		printf("mini-vmm: FAILED (%s path)\n", path_name(v->path));
		return 1;
	}
	printf("mini-vmm: OK (%s path, %zu steps)\n", path_name(v->path), scenario_len);
	return 0;
}

/* ---- the vCPU loop (kvm and native) ---- */

#define MAX_EXITS 10000 /* the scenario needs about 60; more is a loop */

int vmm_run_loop(struct vmm *v, struct kvm_run *run, int (*vcpu_run)(void *opaque), void *opaque)
{
	for (unsigned n = 0; n < MAX_EXITS; n++) {
		int r;

		/* KVM_EXIT_MEMORY_FAULT is the one exit that comes with -1/EFAULT;
		 * for any other error exit_reason is stale (Documentation/virt/kvm/
		 * api.rst), so clear it first to tell the two apart. */
		run->exit_reason = KVM_EXIT_UNKNOWN;
		r = vcpu_run(opaque);
		if (r == -EINTR || r == -EAGAIN)
			continue;
		if (r < 0 && !(r == -EFAULT && run->exit_reason == KVM_EXIT_MEMORY_FAULT)) {
			vmm_check(v, false, "KVM_RUN: %s (exit reason %u)", strerror(-r),
				  run->exit_reason);
			return -1;
		}
		switch (vmm_exit(v, run)) {
		case VMM_REENTER:
			continue;
		case VMM_DONE:
			return 0;
		case VMM_FAIL:
			return -1;
		}
	}
	vmm_check(v, false, "more than %d exits: the guest loops", MAX_EXITS);
	return -1;
}
