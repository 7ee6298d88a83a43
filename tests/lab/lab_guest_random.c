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
 *
 * Scenarios: random (default), selftest, tdx-split, punch-failure, stress
 * (--vcpus N threads), fault-loop, alloc-shared (an empty hugetlb pool,
 * with and without CVMCONV_REGION_ALLOC_SHARED). A watchdog prints every
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

#define PAGE 4096ULL
#define HPAGE (2ULL << 20)
#define BASE (1ULL << 30)   /* guest physical start of region 0 */
#define RSIZE (16ULL << 20) /* each of the two regions */
#define NREG 2
#define NPAGES (NREG * RSIZE / PAGE)
#define CODE_GPA (BASE + PAGE)	  /* in the first 2 MiB, which is never converted */
#define FIRST_PAGE (HPAGE / PAGE) /* pages below are the guest's own */
#define PORT_NEXT 0x82
#define CR0_PE 1ULL
#define KVM_EINVAL_RET 0xffffffeaULL /* -KVM_EINVAL as the guest's EAX */

enum { CMD_MAP = 1, CMD_WRITE = 2, CMD_VERIFY = 3, CMD_HALT = 4 };

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

#define MAX_VCPUS 8

/* One vCPU running the command loop; its thread is the only one to touch it. */
struct vcpu {
	int fd;
	struct kvm_run *run;
	unsigned id;
	pthread_t thread; /* set by the thread that runs it, for the watchdog */
	_Atomic pid_t tid;
	uint64_t last[6]; /* the last command's registers: ebp eax ebx ecx edx edi */
};

struct world {
	int kvm, vm;
	struct vcpu vcpus[MAX_VCPUS];
	unsigned nvcpus;
	size_t run_size;
	pthread_mutex_t lock; /* the figures and the log; the model is split by owner */
	bool fail_punches;    /* the punch op fails every third call */
	uint64_t punch_calls, punch_failed;
	int shared_fd[NREG], gmem[NREG];
	uint8_t *noslot; /* fault-loop: a slot without guest_memfd */
	bool noslot_wanted;
	bool alloc_shared;	    /* region 1 has CVMCONV_REGION_ALLOC_SHARED */
	bool reenter_on_host_error; /* a hypercall the library failed goes back to the guest */
	int host_error;		    /* the last such error */
	int hog_fd;		    /* alloc-shared: huge pages taken from the pool */
	uint64_t hog_pages;
	uint8_t *shared[NREG];
	bool huge;
	struct cvmconv *c;
	uint64_t unevictable0;
	/* the model: attribute and the tag each side holds, per page */
	bool priv[NPAGES];
	uint32_t tag[2][NPAGES]; /* [0] shared side, [1] private side */
	_Atomic uint32_t next_tag;
	uint64_t rng;
	/* figures */
	uint64_t hypercalls, refused, writes, verifies, pages_verified, checks, failures;
	/* the watchdog: exits handled so far, and whether it kicked the vCPUs */
	_Atomic uint64_t progress;
	_Atomic bool kicked;
};

static struct world W;

static uint64_t rnd(void)
{
	W.rng ^= W.rng << 13;
	W.rng ^= W.rng >> 7;
	W.rng ^= W.rng << 17;
	return W.rng;
}

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...)
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

static int xioctl(int fd, unsigned long req, void *arg)
{
	int r;

	do
		r = ioctl(fd, req, arg);
	while (r < 0 && (errno == EINTR || errno == EAGAIN));
	return r < 0 ? -errno : r;
}

static __attribute__((noreturn)) void die(const char *what, int err)
{
	printf("lab-guest-random: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

/* ---- kernel truth ---- */

static uint64_t st_blocks_bytes(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

/* A /proc/meminfo field without a unit (HugePages_*), or -1. */
static long meminfo_field(const char *name)
{
	char line[128];
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, name, strlen(name))) {
			v = strtol(line + strlen(name), NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* ---- the model (docs/semantics.md punch rules) ---- */

static void model_convert(uint64_t p0, uint64_t n, bool to_private)
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

/* ---- the vCPU ---- */

static void set_cpu(struct vcpu *vc)
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

static void dump_vcpu(struct vcpu *vc, const char *why)
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
static void claim_vcpu(struct vcpu *vc)
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

static void start_watchdog(void)
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
static struct kvm_regs run_to_next(struct vcpu *vc)
{
	struct kvm_regs regs;

	for (int guard = 0; guard < 64; guard++) {
		int r = ioctl(vc->fd, KVM_RUN, 0);

		atomic_fetch_add(&W.progress, 1);
		if (r < 0 && errno == EINTR) {
			if (atomic_load(&W.kicked))
				dump_vcpu(vc, "kicked out of KVM_RUN");
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
		r = cvmconv_handle_exit(W.c, vc->run);
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
static void load_command(struct vcpu *vc, uint64_t ebp, uint64_t eax, uint64_t ebx, uint64_t ecx,
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

static struct kvm_regs command(struct vcpu *vc, uint64_t ebp, uint64_t eax, uint64_t ebx,
			       uint64_t ecx, uint64_t edx, uint64_t edi)
{
	load_command(vc, ebp, eax, ebx, ecx, edx, edi);
	return run_to_next(vc);
}

/* The end: the guest halts. */
static void guest_halt(struct vcpu *vc)
{
	int r;

	load_command(vc, CMD_HALT, 0, 0, 0, 0, 0);
	do
		r = ioctl(vc->fd, KVM_RUN, 0);
	while (r < 0 && errno == EINTR);
	check(r == 0 && vc->run->exit_reason == KVM_EXIT_HLT, "vCPU %u did not halt at the end",
	      vc->id);
}

/* ---- steps ---- */

static uint64_t gpa_of(uint64_t p)
{
	return BASE + p * PAGE;
}

static void count(uint64_t *field, uint64_t n)
{
	pthread_mutex_lock(&W.lock);
	*field += n;
	pthread_mutex_unlock(&W.lock);
}

/* The guest writes a new tag over pages [p0, p0 + n), on their live sides. */
static void guest_write(struct vcpu *vc, uint64_t p0, uint64_t n)
{
	uint32_t tag = (atomic_fetch_add(&W.next_tag, 1) << 8) | 0x80000001u;

	command(vc, CMD_WRITE, tag, 0, n * PAGE / 4, 0, gpa_of(p0));
	for (uint64_t p = p0; p < p0 + n; p++)
		W.tag[W.priv[p]][p] = tag;
	count(&W.writes, 1);
}

/* The guest reads pages [p0, p0 + n) (all with the same expected tag). */
static void guest_verify(struct vcpu *vc, uint64_t p0, uint64_t n)
{
	uint32_t want = W.tag[W.priv[p0]][p0];
	struct kvm_regs r = command(vc, CMD_VERIFY, want, 0, n * PAGE / 4, 0, gpa_of(p0));
	bool ok = (r.rflags & (1 << 6)) && (uint32_t)r.rcx == 0;

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
static void guest_map(struct vcpu *vc, uint64_t gpa, uint64_t npages, uint64_t attrs, bool valid)
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

static uint64_t random_attrs(void)
{
	return rnd() & 1 ? KVM_MAP_GPA_RANGE_ENCRYPTED : 0;
}

static void random_map(struct vcpu *vc)
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
static void verify_from(struct vcpu *vc, uint64_t p0, uint64_t limit)
{
	uint32_t want = W.tag[W.priv[p0]][p0];
	uint64_t n = 1;

	while (n < 64 && p0 + n < limit && W.tag[W.priv[p0 + n]][p0 + n] == want)
		n++;
	guest_verify(vc, p0, n);
}

static void random_verify(struct vcpu *vc)
{
	verify_from(vc, FIRST_PAGE + rnd() % (NPAGES - FIRST_PAGE), NPAGES);
}

/* Every page of [p0, p0 + n) read back. */
static void verify_all(struct vcpu *vc, uint64_t p0, uint64_t n)
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
static void check_accounting(uint64_t step)
{
	struct cvmconv_stats st = { .sz = sizeof(st) };
	uint64_t shared = 0, priv, now = meminfo_unevictable_bytes();

	for (int i = 0; i < NREG; i++)
		shared += st_blocks_bytes(W.shared_fd[i]);
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
	if (W.huge) {
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

/* Take free huge pages (or give them back) until @leave are free. */
static void pool_leave(long leave)
{
	long free_now = meminfo_field("HugePages_Free:");

	if (W.hog_fd < 0) {
		W.hog_fd = memfd_create("lab-hog", MFD_CLOEXEC | MFD_HUGETLB);
		if (W.hog_fd < 0 || ftruncate(W.hog_fd, 1LL << 34) < 0)
			die("the hog memfd", errno);
	}
	while (free_now > leave) {
		if (fallocate(W.hog_fd, 0, (off_t)(W.hog_pages * HPAGE), (off_t)HPAGE))
			die("fallocate of the hog", errno);
		W.hog_pages++;
		free_now = meminfo_field("HugePages_Free:");
	}
	while (free_now < leave && W.hog_pages) {
		W.hog_pages--;
		if (fallocate(W.hog_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(W.hog_pages * HPAGE), (off_t)HPAGE))
			die("punch of the hog", errno);
		free_now = meminfo_field("HugePages_Free:");
	}
	check(free_now == leave, "HugePages_Free %ld, wanted %ld", free_now, leave);
}

/* Region 1 has CVMCONV_REGION_ALLOC_SHARED, region 0 not. Huge pages that
 * went private were punched, their reservations with them; another user
 * takes the pool. A conversion back to shared then fails at the
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
	pool_leave(0);
	check_accounting(4);
	close(W.hog_fd);
	W.hog_fd = -1;
	W.hog_pages = 0;
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

static void *stress_thread(void *p)
{
	struct stress_arg *a = p;
	const uint64_t nh = NPAGES / 512, n = W.nvcpus;

	claim_vcpu(a->vc);
	run_to_next(a->vc);
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

	/* the start: vCPU 0 writes everything (already done by main) */
	for (unsigned i = 1; i < W.nvcpus; i++) {
		a[i] = (struct stress_arg){ &W.vcpus[i], steps,
					    W.rng ^ (i * 0x9E3779B97F4A7C15ULL) };
		if (pthread_create(&t[i], NULL, stress_thread, &a[i]))
			die("pthread_create", errno);
	}
	a[0] = (struct stress_arg){ &W.vcpus[0], steps, W.rng };
	/* vCPU 0 is waiting in `out` already: its thread starts past that */
	for (uint64_t s = 0; s < steps && W.failures < 20; s++) {
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
#define NOSLOT_GPA (BASE + NREG * RSIZE)

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
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len))
		return -errno;
	return 0;
}

static const struct cvmconv_ops punch_ops = { .punch = failing_punch };

static void setup(void)
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
	build_guest_code();
	memcpy(W.shared[0] + (CODE_GPA - BASE), guest_code, sizeof(guest_code));
	cfg.vm_fd = W.vm;
	r = cvmconv_create(&cfg, &W.c);
	if (r)
		die("cvmconv_create", r);
	for (int i = 0; i < NREG; i++) {
		struct cvmconv_region reg = { .sz = sizeof(reg),
					      .gpa = BASE + i * RSIZE,
					      .size = RSIZE,
					      .private_fd = W.gmem[i],
					      .shared_fd = W.shared_fd[i],
					      .flags = W.alloc_shared && i == 1
							       ? CVMCONV_REGION_ALLOC_SHARED
							       : 0,
					      .unaligned = -1 };

		r = cvmconv_add_region(W.c, &reg);
		if (r)
			die("cvmconv_add_region", r);
	}
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

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "steps", required_argument, NULL, 's' },
					      { "seed", required_argument, NULL, 'r' },
					      { "huge", no_argument, NULL, 'H' },
					      { "scenario", required_argument, NULL, 'S' },
					      { "vcpus", required_argument, NULL, 'v' },
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
		else if (opt == 'v')
			W.nvcpus = (unsigned)strtoul(optarg, NULL, 0);
		else
			return 2;
	}
	W.hog_fd = -1;
	if (!strcmp(scenario, "alloc-shared")) {
		W.huge = true;
		W.alloc_shared = true;
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
