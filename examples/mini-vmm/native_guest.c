/* SPDX-License-Identifier: MIT */
/*
 * --native: check the guest's machine code without KVM. The bytes the kvm
 * path loads into the VM run here, in a thread of this process, and every
 * instruction that would leave the VM traps instead:
 *
 *   vmcall          -> patched to ud2; nop (SIGILL) -> KVM_EXIT_HYPERCALL
 *   out imm8, eax   -> #GP at CPL 3 (SIGSEGV)       -> KVM_EXIT_IO
 *   hlt             -> #GP at CPL 3 (SIGSEGV)       -> KVM_EXIT_HLT
 *   access to a private page without private backing (PROT_NONE, SIGSEGV)
 *                                                   -> KVM_EXIT_MEMORY_FAULT
 *
 * vmcall is patched (as KVM itself patches vmcall/vmmcall for the vendor)
 * because at CPL 3 inside a VM it does not fault: it exits to this
 * machine's hypervisor, which answers -KVM_EPERM. The guest's code uses no
 * stack and no absolute addressing form, so the same bytes are valid 64-bit
 * code here (guest_code.c). Its physical window is mapped at the same
 * virtual address, page by page from the side the attribute says, which is
 * how a SW_PROTECTED VM resolves every access (kvm_mmu_page_fault takes the
 * private bit from the attribute). The signal handler hands the exit to the
 * VMM thread and waits on a semaphore (both async-signal-safe), like a vCPU
 * thread blocked in KVM_RUN; the VMM thread's vCPU loop is the kvm path's.
 *
 * Not covered here: the KVM ioctls, the protected-mode entry state, the
 * 32-bit decoding of the same bytes (checked by disassembly in the test).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "mini-vmm.h"

#if defined(__x86_64__)

#define RUN_BYTES (2 * PAGE_SIZE_4K)
#define PIO_DATA_OFFSET PAGE_SIZE_4K

enum trap { TRAP_HYPERCALL, TRAP_IO, TRAP_HLT, TRAP_FAULT };

static struct native {
	struct vmm *v;
	struct kvm_run *run;
	struct guest_code code;
	sem_t resume, exited;
	pthread_t thread;
	volatile sig_atomic_t stop;
	sigjmp_buf out;
	int run_err; /* what KVM_RUN would return: 0 or -EFAULT */
	struct guest_regs regs;
	struct sigaction old_ill, old_segv;
	bool window_mapped;
} nat;

static _Thread_local volatile sig_atomic_t in_guest;

static bool in_code(uint64_t ip)
{
	return ip >= CODE_GPA && ip < CODE_GPA + nat.code.len;
}

static bool is_patched_site(uint64_t ip)
{
	for (size_t i = 0; i < nat.code.nhypercall_sites; i++)
		if (ip == CODE_GPA + nat.code.hypercall_site[i])
			return true;
	return false;
}

/* Runs on the guest thread; only memory, sem_post and sem_wait. */
static void on_trap(int sig, siginfo_t *si, void *ctx)
{
	ucontext_t *uc = ctx;
	greg_t *g = uc->uc_mcontext.gregs;
	uint64_t ip = (uint64_t)g[REG_RIP], addr = (uint64_t)(uintptr_t)si->si_addr;
	const uint8_t *insn = (const uint8_t *)(uintptr_t)ip;
	struct kvm_run *run = nat.run;
	enum trap t;

	if (!in_guest || !in_code(ip)) {
		/* not the guest: a real crash of the VMM */
		signal(sig, SIG_DFL);
		return;
	}
	if (sig == SIGILL && is_patched_site(ip))
		t = TRAP_HYPERCALL;
	else if (sig == SIGSEGV && insn[0] == 0xE7)
		t = TRAP_IO;
	else if (sig == SIGSEGV && insn[0] == 0xF4)
		t = TRAP_HLT;
	else if (sig == SIGSEGV && addr >= GUEST_BASE && addr < GUEST_BASE + WINDOW_SIZE)
		t = TRAP_FAULT;
	else {
		signal(sig, SIG_DFL);
		return;
	}
	nat.run_err = 0;
	memset((uint8_t *)run + offsetof(struct kvm_run, hypercall), 0, sizeof(run->hypercall));
	switch (t) {
	case TRAP_HYPERCALL:
		/* a 32-bit guest: KVM truncates nr and the arguments to 32 bits */
		run->exit_reason = KVM_EXIT_HYPERCALL;
		run->hypercall.nr = (uint32_t)g[REG_RAX];
		run->hypercall.args[0] = (uint32_t)g[REG_RBX];
		run->hypercall.args[1] = (uint32_t)g[REG_RCX];
		run->hypercall.args[2] = (uint32_t)g[REG_RDX];
		run->hypercall.ret = 0;
		break;
	case TRAP_IO: {
		uint32_t value = (uint32_t)g[REG_RAX];

		run->exit_reason = KVM_EXIT_IO;
		run->io.direction = KVM_EXIT_IO_OUT;
		run->io.size = 4;
		run->io.port = insn[1];
		run->io.count = 1;
		run->io.data_offset = PIO_DATA_OFFSET;
		memcpy((uint8_t *)run + PIO_DATA_OFFSET, &value, sizeof(value));
		break;
	}
	case TRAP_HLT:
		run->exit_reason = KVM_EXIT_HLT;
		break;
	case TRAP_FAULT: {
		struct cvmconv_kvm_memory_fault *mf = cvmconv_run_memory_fault(run);

		/* only a private page without private backing is unmapped */
		run->exit_reason = KVM_EXIT_MEMORY_FAULT;
		mf->flags = KVM_MEMORY_EXIT_FLAG_PRIVATE;
		mf->gpa = addr & ~(PAGE_SIZE_4K - 1);
		mf->size = PAGE_SIZE_4K;
		nat.run_err = -EFAULT; /* KVM_RUN fails with EFAULT for this exit */
		break;
	}
	}
	nat.regs.rax = (uint64_t)g[REG_RAX];
	nat.regs.rbx = (uint64_t)g[REG_RBX];
	nat.regs.rcx = (uint64_t)g[REG_RCX];
	nat.regs.rdx = (uint64_t)g[REG_RDX];
	nat.regs.rsi = (uint64_t)g[REG_RSI];
	nat.regs.rdi = (uint64_t)g[REG_RDI];
	nat.regs.rip = ip;

	sem_post(&nat.exited);		   /* "KVM_RUN returns" */
	while (sem_wait(&nat.resume) != 0) /* the next KVM_RUN */
		;
	if (nat.stop)
		siglongjmp(nat.out, 1);
	switch (t) {
	case TRAP_HYPERCALL:
		/* complete_hypercall_exit: EAX = low half of hypercall.ret */
		g[REG_RAX] = (greg_t)(uint32_t)run->hypercall.ret;
		g[REG_RIP] += 3;
		break;
	case TRAP_IO:
		g[REG_RIP] += 2;
		break;
	case TRAP_HLT:
		g[REG_RIP] += 1;
		break;
	case TRAP_FAULT:
		break; /* the access is retried, as after a KVM memory fault */
	}
}

static void *guest_thread(void *arg)
{
	(void)arg;
	while (sem_wait(&nat.resume) != 0) /* the first KVM_RUN */
		;
	if (nat.stop)
		return NULL;
	if (sigsetjmp(nat.out, 1) == 0) {
		void (*entry)(void) = (void (*)(void))(uintptr_t)CODE_GPA;

		in_guest = 1;
		entry(); /* does not return: the guest ends in hlt */
	}
	in_guest = 0;
	return NULL;
}

static int native_vcpu_run(void *opaque)
{
	(void)opaque;
	sem_post(&nat.resume);
	while (sem_wait(&nat.exited) != 0)
		;
	return nat.run_err;
}

static int native_get_regs(struct vmm *v, struct guest_regs *r)
{
	(void)v;
	*r = nat.regs;
	return 0;
}

/* The window follows the attributes: the private side of slot 0 is the
 * stand-in memfd; slot 1 has none, so its private pages are inaccessible. */
static int native_remap(struct vmm *v, uint64_t gpa, uint64_t size, bool private_)
{
	const int prot = PROT_READ | PROT_WRITE | PROT_EXEC;
	uint64_t end = gpa + size;

	if (!nat.window_mapped)
		return 0;
	while (gpa < end) {
		uint64_t stop = gpa < NOSLOT_GPA && end > NOSLOT_GPA ? NOSLOT_GPA : end;
		void *at = (void *)(uintptr_t)gpa, *p;

		if (gpa < NOSLOT_GPA)
			p = mmap(at, stop - gpa, prot, MAP_SHARED | MAP_FIXED,
				 private_ ? v->private_fd : v->shared_fd,
				 (off_t)(gpa - GUEST_BASE));
		else if (private_)
			p = mmap(at, stop - gpa, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
				 -1, 0);
		else
			p = mmap(at, stop - gpa, prot, MAP_SHARED | MAP_FIXED, v->noslot_fd,
				 (off_t)(gpa - NOSLOT_GPA));
		if (p == MAP_FAILED)
			return -errno;
		gpa = stop;
	}
	return 0;
}

static int map_window(struct vmm *v, char *why, size_t len)
{
	const int prot = PROT_READ | PROT_WRITE | PROT_EXEC;
	void *p = mmap((void *)(uintptr_t)GUEST_BASE, RAM_SIZE, prot,
		       MAP_SHARED | MAP_FIXED_NOREPLACE, v->shared_fd, 0);

	if (p != (void *)(uintptr_t)GUEST_BASE) {
		snprintf(why, len, "cannot map the guest window at %#" PRIx64 ": %s", GUEST_BASE,
			 p == MAP_FAILED ? strerror(errno) : "placed elsewhere");
		if (p != MAP_FAILED)
			munmap(p, RAM_SIZE);
		return 77;
	}
	p = mmap((void *)(uintptr_t)NOSLOT_GPA, NOSLOT_SIZE, prot, MAP_SHARED | MAP_FIXED_NOREPLACE,
		 v->noslot_fd, 0);
	if (p != (void *)(uintptr_t)NOSLOT_GPA) {
		snprintf(why, len, "cannot map slot 1 at %#" PRIx64 ": %s", NOSLOT_GPA,
			 p == MAP_FAILED ? strerror(errno) : "placed elsewhere");
		if (p != MAP_FAILED)
			munmap(p, NOSLOT_SIZE);
		munmap((void *)(uintptr_t)GUEST_BASE, RAM_SIZE);
		return 77;
	}
	nat.window_mapped = true;
	return 0;
}

int native_run_scenario(struct vmm *v, char *why, size_t len)
{
	struct sigaction sa;
	bool thread = false;
	void *page;
	int ret = 1;

	printf("mini-vmm: native path (no KVM): the guest's machine code runs in this process\n");
	memset(&nat, 0, sizeof(nat));
	nat.v = v;
	page = mmap(NULL, RUN_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED) {
		perror("mmap(kvm_run)");
		return 1;
	}
	nat.run = page;
	/* 4 KiB shared pages: the window is remapped page by page */
	if (vmm_setup_backings(v, false))
		goto out;
	ret = map_window(v, why, len);
	if (ret)
		goto out;
	ret = 1;
	v->on_attributes = native_remap;
	v->get_regs = native_get_regs;
	if (vmm_setup_conv(v))
		goto out;
	if (guest_code_build(&nat.code, PATH_NATIVE, v->model.shared_page)) {
		printf("mini-vmm: guest code too large\n");
		goto out;
	}
	for (size_t i = 0; i < nat.code.nhypercall_sites; i++) {
		uint8_t *site = nat.code.bytes + nat.code.hypercall_site[i];

		if (site[0] != 0x0F || site[1] != 0x01 || site[2] != 0xC1)
			goto out;
		site[0] = 0x0F; /* 0F 0B  ud2 */
		site[1] = 0x0B;
		site[2] = 0x90; /* 90     nop */
	}
	memcpy(v->shared_map + (CODE_GPA - GUEST_BASE), nat.code.bytes, nat.code.len);
	printf("guest          : %zu bytes at %#" PRIx64 ", %zu vmcall sites patched to ud2\n",
	       nat.code.len, CODE_GPA, nat.code.nhypercall_sites);

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_trap;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sem_init(&nat.resume, 0, 0) || sem_init(&nat.exited, 0, 0) ||
	    sigaction(SIGILL, &sa, &nat.old_ill) || sigaction(SIGSEGV, &sa, &nat.old_segv)) {
		perror("native setup");
		goto out;
	}
	if (pthread_create(&nat.thread, NULL, guest_thread, NULL) != 0) {
		perror("pthread_create");
		goto out;
	}
	thread = true;
	vmm_start(v);
	vmm_run_loop(v, nat.run, native_vcpu_run, NULL);
	ret = vmm_report(v);
out:
	if (thread) {
		nat.stop = 1;
		sem_post(&nat.resume);
		pthread_join(nat.thread, NULL);
		sigaction(SIGILL, &nat.old_ill, NULL);
		sigaction(SIGSEGV, &nat.old_segv, NULL);
	}
	if (nat.window_mapped) {
		munmap((void *)(uintptr_t)GUEST_BASE, WINDOW_SIZE);
		nat.window_mapped = false;
	}
	vmm_teardown(v);
	munmap(page, RUN_BYTES);
	return ret;
}

#else /* !__x86_64__ */

int native_run_scenario(struct vmm *v, char *why, size_t len)
{
	(void)v;
	snprintf(why, len, "the native path runs x86 guest code: x86-64 only");
	return 77;
}

#endif
