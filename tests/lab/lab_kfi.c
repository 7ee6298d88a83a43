/* SPDX-License-Identifier: MIT */
/* The kernel's fault injection and its reports (see lab_kfi.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "lab_kfi.h"
#include "lab_kvm.h"
#include "lab_world.h"

#define DEBUGFS "/sys/kernel/debug"

static int nth_fd = -1, kmsg_fd = -1, mif_fd = -1;
/* debugfs attribute files are not seekable: opened for each access */
static const char *const times_path[2] = { DEBUGFS "/failslab/times",
					   DEBUGFS "/fail_page_alloc/times" };
unsigned kernel_faults_burst = 1;

static void put(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : write(fd, value, strlen(value));

	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)strlen(value)) {
		printf("lab-guest-random: writing %s to %s: %s\n", value, path, strerror(errno));
		exit(1);
	}
}

void kfi_setup(void)
{
	static const char *const attrs[] = { "failslab", "fail_page_alloc" };
	char path[128];

	if (access(DEBUGFS "/failslab", F_OK) && mount("debugfs", DEBUGFS, "debugfs", 0, NULL) &&
	    errno != EBUSY)
		die("mounting debugfs", errno);
	if (access(DEBUGFS "/failslab", F_OK)) {
		printf("lab-guest-random: SKIP: no %s/failslab (CONFIG_FAILSLAB, "
		       "CONFIG_FAULT_INJECTION_DEBUG_FS)\n",
		       DEBUGFS);
		exit(LAB_SKIP);
	}
	for (size_t i = 0; i < 2; i++) {
		/* Past the fail-nth call, a burst: the next burst - 1 calls
		 * of a task with make-it-fail set fail too (probability 100,
		 * task-filter, times counting down). times 0: none. */
		snprintf(path, sizeof(path), DEBUGFS "/%s/times", attrs[i]);
		put(path, "0");
		snprintf(path, sizeof(path), DEBUGFS "/%s/task-filter", attrs[i]);
		put(path, "Y");
		snprintf(path, sizeof(path), DEBUGFS "/%s/probability", attrs[i]);
		put(path, "100");
		/* the calls the library makes allocate with GFP_KERNEL(_ACCOUNT),
		 * which the default (ignore-gfp-wait = Y) exempts */
		snprintf(path, sizeof(path), DEBUGFS "/%s/ignore-gfp-wait", attrs[i]);
		put(path, "N");
		snprintf(path, sizeof(path), DEBUGFS "/%s/verbose", attrs[i]);
		put(path, "2"); /* the message and the stack */
		snprintf(path, sizeof(path), DEBUGFS "/%s/verbose_ratelimit_interval_ms", attrs[i]);
		put(path, "0"); /* no rate limit: every fault is reported */
	}
	put(DEBUGFS "/fail_page_alloc/ignore-gfp-highmem", "N");
	put(DEBUGFS "/fail_page_alloc/min-order", "0");
	/* the stacks go to /dev/kmsg, not to the (slow, serial) console */
	put("/proc/sys/kernel/printk", "1");
	nth_fd = open("/proc/thread-self/fail-nth", O_RDWR | O_CLOEXEC);
	mif_fd = open("/proc/thread-self/make-it-fail", O_RDWR | O_CLOEXEC);
	if (nth_fd < 0 || mif_fd < 0)
		die("/proc/thread-self/fail-nth, make-it-fail", errno);

	kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (kmsg_fd < 0 || lseek(kmsg_fd, 0, SEEK_END) < 0)
		die("/dev/kmsg", errno);
}

static void write_num(int fd, long n, const char *what)
{
	char b[24];
	int len = snprintf(b, sizeof(b), "%ld", n);

	if (pwrite(fd, b, (size_t)len, 0) != len)
		die(what, errno);
}

static long read_num(int fd, const char *what)
{
	char b[24] = { 0 };

	if (pread(fd, b, sizeof(b) - 1, 0) <= 0)
		die(what, errno);
	return strtol(b, NULL, 10);
}

static void put_num(const char *path, long n)
{
	char b[24];

	snprintf(b, sizeof(b), "%ld", n);
	put(path, b);
}

static long get_num(const char *path)
{
	char b[24] = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || read(fd, b, sizeof(b) - 1) <= 0)
		die(path, errno);
	close(fd);
	return strtol(b, NULL, 10);
}

unsigned kfi_burst_extra; /* failures of bursts past their first call */

/* Arm: the @n-th allocation site from here fails, and the burst - 1 after
 * it (only this thread: fail-nth and make-it-fail are per task). */
void kfi_arm(unsigned n)
{
	/* the N-th call takes one from its attribute's times: K - 1 more
	 * of it, and of the other attribute K (K = 1: none at all) */
	for (int i = 0; i < 2; i++)
		put_num(times_path[i], kernel_faults_burst > 1 ? (long)kernel_faults_burst : 0);
	write_num(nth_fd, n, "writing fail-nth");
	if (kernel_faults_burst > 1)
		write_num(mif_fd, 1, "make-it-fail");
}

/* Disarm; whether the N-th site was met (the count reached 0). */
bool kfi_disarm(void)
{
	long left;

	if (kernel_faults_burst > 1)
		write_num(mif_fd, 0, "make-it-fail");
	left = read_num(nth_fd, "reading fail-nth");
	write_num(nth_fd, 0, "writing fail-nth");
	for (int i = 0; i < 2 && kernel_faults_burst > 1; i++) {
		long rest = get_num(times_path[i]);

		kfi_burst_extra += (unsigned)((long)kernel_faults_burst - rest);
		put_num(times_path[i], 0);
	}
	if (kernel_faults_burst > 1 && left == 0)
		kfi_burst_extra--; /* the N-th itself */
	return left == 0;
}

/* ---- the kernel's reports, by function ---- */

struct kfi_site kfi_sites[KFI_MAX_SITES];
unsigned kfi_nsites, kfi_reports;

/* Frames of the allocators and of fault injection itself: the function
 * reported is the first frame above them (the kernel code whose
 * allocation failed), with the allocation entry it called. */
static bool allocator_frame(const char *f)
{
	static const char *const prefix[] = {
		"dump_stack",
		"fail_dump",
		"should_fail",
		"__should_fail",
		"should_failslab",
		"kmem_cache_alloc",
		"__kmem_cache_alloc",
		"kmalloc",
		"__kmalloc",
		"slab_",
		"___slab_alloc",
		"__slab_alloc",
		"allocate_slab",
		"new_slab",
		"alloc_pages",
		"__alloc_pages",
		"alloc_frozen",
		"__alloc_frozen",
		"folio_alloc",
		"__folio_alloc",
		"prepare_alloc_pages",
		"xas_",
		"__xas_",
		"xa_",
		"__xa_",
		"radix_tree_node_alloc",
		"alloc_slab",
		"kmem_cache_alloc_lru",
		"filemap_alloc_folio",
		"__filemap_get_folio",
		"mas_",
		"__mas_",
		"mt_",
		"kvm_mmu_memory_cache",
		"__kvm_mmu_topup",
	};

	for (size_t i = 0; i < sizeof(prefix) / sizeof(prefix[0]); i++)
		if (!strncmp(f, prefix[i], strlen(prefix[i])))
			return true;
	return false;
}

static void count_site(char frames[][64], unsigned nf, const char *attr)
{
	char key[320];
	const char *sys = "?";
	unsigned i = 0;

	while (i < nf && allocator_frame(frames[i]))
		i++;
	for (unsigned k = 0; k < nf; k++)
		if (!strncmp(frames[k], "__x64_sys_", 10)) {
			sys = frames[k] + 10;
			break;
		} else if (!strcmp(frames[k], "asm_exc_page_fault")) {
			sys = "a page fault";
			break;
		}
	snprintf(key, sizeof(key), "%.63s (%.63s, via %.63s) [%.31s]", i < nf ? frames[i] : "?",
		 i ? frames[i - 1] : "-", sys, attr);
	for (unsigned k = 0; k < kfi_nsites; k++)
		if (!strcmp(kfi_sites[k].name, key)) {
			kfi_sites[k].n++;
			return;
		}
	if (kfi_nsites < KFI_MAX_SITES) {
		memcpy(kfi_sites[kfi_nsites].name, key, sizeof(key));
		kfi_sites[kfi_nsites++].n = 1;
	}
}

/* Read the kernel's fault reports since the last call; returns how many. */
unsigned kfi_collect(void)
{
	static char frames[64][64];
	char rec[2048], attr[32] = "?";
	unsigned nf = 0, got = 0;
	bool in = false;

	for (;;) {
		ssize_t len = read(kmsg_fd, rec, sizeof(rec) - 1);
		char *msg, *end;

		if (len < 0 && errno == EPIPE)
			continue; /* records overwritten: go on with the next */
		if (len <= 0)
			break;
		rec[len] = '\0';
		msg = strchr(rec, ';');
		if (!msg)
			continue;
		msg++;
		end = strchr(msg, '\n');
		if (end)
			*end = '\0';
		if (strstr(msg, "FAULT_INJECTION: forcing a failure")) {
			const char *name = strstr(msg, "name ");

			if (in)
				count_site(frames, nf, attr), got++;
			in = true;
			nf = 0;
			snprintf(attr, sizeof(attr), "?");
			if (name)
				sscanf(name + 5, "%31[^,]", attr);
			continue;
		}
		if (!in)
			continue;
		if (strstr(msg, "</TASK>")) {
			count_site(frames, nf, attr);
			got++;
			in = false;
			continue;
		}
		/* " func+0x1/0x2"; "? func" where the unwinder only guessed
		 * (the lab kernel has frame pointers: rare) */
		if (msg[0] == ' ' && strstr(msg, "+0x") && nf < 64) {
			const char *f = msg + 1 + (msg[1] == '?' ? 2 : 0);
			size_t n = strcspn(f, "+");

			if (n >= sizeof(frames[0]))
				n = sizeof(frames[0]) - 1;
			memcpy(frames[nf], f, n);
			frames[nf++][n] = '\0';
		}
	}
	if (in) {
		count_site(frames, nf, attr);
		got++;
	}
	kfi_reports += got;
	return got;
}
