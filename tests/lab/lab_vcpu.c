/* SPDX-License-Identifier: MIT */
/*
 * The vCPUs of lab-guest-random (see lab_world.h): the guest command loop
 * and its code, the vCPU's registers, running to the next command
 * (conversion exits through cvmconv_handle_exit()), and the watchdog that
 * makes a hang explain itself.
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

static const uint8_t guest_loop[] = {
	0xE6, PORT_NEXT,       /* 0:  out 0x82, al */
	0x83, 0xFD,	 0x01, /* 2:  cmp ebp, 1 */
	0x75, 0x05,	       /* 5:  jne 12 */
	0x0F, 0x01,	 0xC1, /* 7:  vmcall */
	0xEB, 0xF4,	       /* 10: jmp 0 */
	0x83, 0xFD,	 0x02, /* 12: cmp ebp, 2 */
	0x75, 0x04,	       /* 15: jne 21 */
	0xF3, 0xAB,	       /* 17: rep stosd */
	0xEB, 0xEB,	       /* 19: jmp 0 */
	0x83, 0xFD,	 0x03, /* 21: cmp ebp, 3 */
	0x75, 0x04,	       /* 24: jne 30 */
	0xF3, 0xAF,	       /* 26: repe scasd */
	0xEB, 0xE2,	       /* 28: jmp 0 */
	0xF4,		       /* 30: hlt */
};
#define HYPERCALL_AT 7 /* the offset of the vmcall above */

/* The guest as it is loaded: the hypercall instruction the CPU's vendor
 * runs natively. vmcall on AMD (or vmmcall on Intel) raises #UD, and KVM
 * then rewrites the instruction in guest memory (arch/x86/kvm/x86.c
 * emulator_fix_hypercall, KVM_X86_QUIRK_FIX_HYPERCALL_INSN) while other
 * vCPUs run the same code: cross-modifying code that the lab need not
 * exercise. */
static uint8_t guest_code[sizeof(guest_loop)];

static void build_guest_code(void)
{
	unsigned a, b, c, d;

	memcpy(guest_code, guest_loop, sizeof(guest_loop));
	/* "AuthenticAMD" / "HygonGenuine": EBX "Auth" / "Hygo" */
	if (__get_cpuid(0, &a, &b, &c, &d) && (b == 0x68747541 || b == 0x6f677948))
		guest_code[HYPERCALL_AT + 2] = 0xD9; /* 0F 01 D9: vmmcall */
}

/* The guest code as this CPU runs it, at @dst (the code page in guest
 * memory). */
void load_guest_code(uint8_t *dst)
{
	build_guest_code();
	memcpy(dst, guest_code, sizeof(guest_code));
}

/* ---- the vCPU ---- */

void set_cpu(struct vcpu *vc)
{
	struct kvm_segment cs = { .base = 0,
				  .limit = 0xffffffff,
				  .selector = 0x08,
				  .type = 0xb,
				  .present = 1,
				  .dpl = 0,
				  .db = 1,
				  .s = 1,
				  .l = 0,
				  .g = 1 };
	struct kvm_segment ds = cs;
	struct kvm_sregs sregs;
	struct kvm_regs regs = { 0 };
	int r;

	r = xioctl(vc->fd, KVM_GET_SREGS, &sregs);
	if (r < 0)
		die("KVM_GET_SREGS", r);
	ds.selector = 0x10;
	ds.type = 0x3;
	sregs.cs = cs;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = ds;
	sregs.cr0 = (sregs.cr0 & ~((1ULL << 31) | (1ULL << 30) | (1ULL << 29))) | CR0_PE;
	sregs.efer = 0;
	r = xioctl(vc->fd, KVM_SET_SREGS, &sregs);
	if (r < 0)
		die("KVM_SET_SREGS", r);
	regs.rip = CODE_GPA;
	regs.rflags = 0x2;
	r = xioctl(vc->fd, KVM_SET_REGS, &regs);
	if (r < 0)
		die("KVM_SET_REGS", r);
}

/* ---- the watchdog: a hang explains itself ---- */

void dump_vcpu(struct vcpu *vc, const char *why)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	if (xioctl(vc->fd, KVM_GET_REGS, &regs) < 0 || xioctl(vc->fd, KVM_GET_SREGS, &sregs) < 0) {
		printf("lab-guest-random: vCPU %u: %s; registers unreadable\n", vc->id, why);
		return;
	}
	printf("lab-guest-random: vCPU %u: %s: exit %u rip 0x%llx rbp 0x%llx rax 0x%llx rcx "
	       "0x%llx rdi 0x%llx rsp 0x%llx rflags 0x%llx cr0 0x%llx\n",
	       vc->id, why, vc->run->exit_reason, (unsigned long long)regs.rip,
	       (unsigned long long)regs.rbp, (unsigned long long)regs.rax,
	       (unsigned long long)regs.rcx, (unsigned long long)regs.rdi,
	       (unsigned long long)regs.rsp, (unsigned long long)regs.rflags,
	       (unsigned long long)sregs.cr0);
	if (vc->run->exit_reason == KVM_EXIT_MMIO)
		printf("lab-guest-random: vCPU %u: mmio %s gpa 0x%llx len %u\n", vc->id,
		       vc->run->mmio.is_write ? "write" : "read",
		       (unsigned long long)vc->run->mmio.phys_addr, vc->run->mmio.len);
	for (size_t i = 0; i < sizeof(guest_code); i++)
		if (W.shared[0][CODE_GPA - BASE + i] != guest_code[i])
			printf("lab-guest-random: code byte %zu: 0x%02x, was 0x%02x\n", i,
			       W.shared[0][CODE_GPA - BASE + i], guest_code[i]);
	printf("lab-guest-random: vCPU %u: last command %llu (eax 0x%llx ebx 0x%llx ecx 0x%llx "
	       "edi 0x%llx); guest code %s\n",
	       vc->id, (unsigned long long)vc->last[0], (unsigned long long)vc->last[1],
	       (unsigned long long)vc->last[2], (unsigned long long)vc->last[3],
	       (unsigned long long)vc->last[5],
	       memcmp(W.shared[0] + (CODE_GPA - BASE), guest_code, sizeof(guest_code)) ? "CHANGED"
										       : "intact");
}

/* The vCPU's thread is the calling one from now on. */
void claim_vcpu(struct vcpu *vc)
{
	vc->thread = pthread_self();
	atomic_store(&vc->tid, (pid_t)syscall(SYS_gettid));
}

static void read_line(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "re");

	buf[0] = 0;
	if (f) {
		if (!fgets(buf, (int)n, f))
			buf[0] = 0;
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = 0;
}

/* Every thread of this process: state, user and system ticks, the syscall
 * it sits in and where in the kernel it sleeps. */
static void dump_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;

	while (d && (e = readdir(d))) {
		char path[320], stat[512], sys[256], wchan[128];
		char *p;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
		read_line(path, stat, sizeof(stat));
		snprintf(path, sizeof(path), "/proc/self/task/%s/syscall", e->d_name);
		read_line(path, sys, sizeof(sys));
		snprintf(path, sizeof(path), "/proc/self/task/%s/wchan", e->d_name);
		read_line(path, wchan, sizeof(wchan));
		/* after "(comm) ": state is field 3, utime 14, stime 15 */
		p = strrchr(stat, ')');
		unsigned long ut = 0, st = 0;
		char state = '?';

		if (!p || sscanf(p + 2, "%c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %lu %lu",
				 &state, &ut, &st) != 3)
			state = '?';
		int vcpu = -1;

		for (unsigned i = 0; i < W.nvcpus; i++)
			if (atomic_load(&W.vcpus[i].tid) == atoi(e->d_name))
				vcpu = (int)i;
		printf("lab-guest-random: thread %s (vCPU %d): state %c utime %lu stime %lu "
		       "syscall [%s] wchan [%s]\n",
		       e->d_name, vcpu, state, ut, st, sys, wchan);
	}
	if (d)
		closedir(d);
}

static void on_kick(int sig)
{
	(void)sig;
}

/* No exit for 30 s: show every thread, then kick each vCPU out of KVM_RUN
 * (a signal: KVM_RUN returns EINTR and the vCPU dumps its registers). Three
 * rounds without progress end the program. */
static void *watchdog(void *arg)
{
	uint64_t last = UINT64_MAX;
	unsigned idle = 0, rounds = 0;

	(void)arg;
	for (;;) {
		sleep(1);
		uint64_t now = atomic_load(&W.progress);

		if (now != last) {
			last = now;
			idle = 0;
			continue;
		}
		if (++idle < 30)
			continue;
		idle = 0;
		pthread_mutex_lock(&W.lock);
		printf("lab-guest-random: watchdog: no vCPU exit for 30 s (round %u)\n",
		       rounds + 1);
		dump_threads();
		pthread_mutex_unlock(&W.lock);
		atomic_store(&W.kicked, true);
		for (unsigned i = 0; i < W.nvcpus; i++)
			if (atomic_load(&W.vcpus[i].tid))
				pthread_kill(W.vcpus[i].thread, SIGUSR1);
		if (++rounds == 3) {
			printf("lab-guest-random: watchdog: giving up\n");
			fflush(stdout);
			_exit(3);
		}
	}
	return NULL;
}

void start_watchdog(void)
{
	struct sigaction sa = { .sa_handler = on_kick }; /* no SA_RESTART */
	pthread_t t;

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) || pthread_create(&t, NULL, watchdog, NULL))
		die("the watchdog", errno);
	pthread_detach(t);
}

/* Run until the guest asks for its next command; conversion exits go to
 * cvmconv_handle_exit(). Returns the registers then. */
struct kvm_regs run_to_next(struct vcpu *vc)
{
	struct kvm_regs regs;
	unsigned waits = 0;

	for (int guard = 0; guard < 64; guard++) {
		int r = ioctl(vc->fd, KVM_RUN, 0);

		atomic_fetch_add(&W.progress, 1);
		if (r < 0 && errno == EINTR) {
			if (atomic_load(&W.kicked))
				dump_vcpu(vc, "kicked out of KVM_RUN");
			guard--;
			continue;
		}
		if (r < 0 && errno == EFAULT && W.retry_efault) {
			/* the host has no memory for the access yet: wait */
			uint64_t at = vc->last[5] >= BASE ? (vc->last[5] - BASE) / RSIZE : 0;

			count(&W.efault_waits[at < NREG ? at : 0], 1);
			if (++waits > 100000)
				die("KVM_RUN: EFAULT for 20 s", EFAULT);
			usleep(200);
			guard--;
			continue;
		}
		if (r < 0 && !(errno == EFAULT && vc->run->exit_reason == KVM_EXIT_MEMORY_FAULT))
			die("KVM_RUN", errno);
		if (vc->run->exit_reason == KVM_EXIT_IO && vc->run->io.port == PORT_NEXT) {
			r = xioctl(vc->fd, KVM_GET_REGS, &regs);
			if (r < 0)
				die("KVM_GET_REGS", r);
			return regs;
		}
		r = W.exit_handler ? W.exit_handler(vc) : cvmconv_handle_exit(W.c, vc->run);
		if (r == 1)
			continue;
		if (r < 0 && W.reenter_on_host_error &&
		    vc->run->exit_reason == KVM_EXIT_HYPERCALL) {
			W.host_error = r; /* the guest gets hypercall.ret as the library set it */
			continue;
		}
		printf("lab-guest-random: vCPU %u: exit reason %u, cvmconv_handle_exit %d\n",
		       vc->id, vc->run->exit_reason, r);
		dump_vcpu(vc, "unexpected exit");
		exit(1);
	}
	printf("lab-guest-random: vCPU %u: the guest did not come back\n", vc->id);
	exit(1);
}

/* Load the next command into the registers (the guest waits in `out`). */
void load_command(struct vcpu *vc, uint64_t ebp, uint64_t eax, uint64_t ebx, uint64_t ecx,
		  uint64_t edx, uint64_t edi)
{
	struct kvm_regs regs;
	int r;

	/* complete the guest's pending `out` first (api.rst, immediate_exit:
	 * KVM_RUN then finishes the I/O and returns EINTR), so that the new
	 * registers are not those of a half-done instruction */
	vc->run->immediate_exit = 1;
	r = ioctl(vc->fd, KVM_RUN, 0);
	vc->run->immediate_exit = 0;
	if (r == 0 || errno != EINTR)
		die("KVM_RUN(immediate_exit)", r == 0 ? EPROTO : errno);
	r = xioctl(vc->fd, KVM_GET_REGS, &regs);
	if (r < 0)
		die("KVM_GET_REGS", r);
	vc->last[0] = ebp;
	vc->last[1] = eax;
	vc->last[2] = ebx;
	vc->last[3] = ecx;
	vc->last[4] = edx;
	vc->last[5] = edi;
	regs.rbp = ebp;
	regs.rax = eax;
	regs.rbx = ebx;
	regs.rcx = ecx;
	regs.rdx = edx;
	regs.rdi = edi;
	r = xioctl(vc->fd, KVM_SET_REGS, &regs);
	if (r < 0)
		die("KVM_SET_REGS", r);
}

struct kvm_regs command(struct vcpu *vc, uint64_t ebp, uint64_t eax, uint64_t ebx, uint64_t ecx,
			uint64_t edx, uint64_t edi)
{
	load_command(vc, ebp, eax, ebx, ecx, edx, edi);
	return run_to_next(vc);
}

/* The end: the guest halts. */
void guest_halt(struct vcpu *vc)
{
	int r;

	load_command(vc, CMD_HALT, 0, 0, 0, 0, 0);
	do
		r = ioctl(vc->fd, KVM_RUN, 0);
	while (r < 0 && errno == EINTR);
	check(r == 0 && vc->run->exit_reason == KVM_EXIT_HLT, "vCPU %u did not halt at the end",
	      vc->id);
}
