/* SPDX-License-Identifier: MIT */
/*
 * kvm-lab-probe: what this machine's /dev/kvm offers for private/shared
 * conversions. Built static by `run.sh --probe` and run inside the lab;
 * it runs on any host too.
 *
 * Exit status: 0 /dev/kvm offers KVM_X86_SW_PROTECTED_VM and a VM of that
 * type with guest_memfd and private attributes works; 1 it does not;
 * 77 no /dev/kvm.
 *
 * The numbers are spelled out: Debian 12's <linux/kvm.h> (6.1) has none of
 * the guest_memfd definitions.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define KVMIO 0xAE
#define KVM_GET_API_VERSION _IO(KVMIO, 0x00)
#define KVM_CREATE_VM _IO(KVMIO, 0x01)
#define KVM_CHECK_EXTENSION _IO(KVMIO, 0x03)

struct gmem_create {
	uint64_t size, flags, reserved[6];
};
struct mem_attributes {
	uint64_t address, size, attributes, flags;
};
#define KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct gmem_create)
#define KVM_SET_MEMORY_ATTRIBUTES _IOW(KVMIO, 0xd2, struct mem_attributes)
#define KVM_MEMORY_ATTRIBUTE_PRIVATE (1ULL << 3)
#define VM_TYPE_SW_PROTECTED 1

_Static_assert(sizeof(struct gmem_create) == 64, "kvm_create_guest_memfd");
_Static_assert(sizeof(struct mem_attributes) == 32, "kvm_memory_attributes");

static const struct {
	int cap;
	const char *name;
} caps[] = {
	{ 201, "KVM_CAP_EXIT_HYPERCALL" },	 { 231, "KVM_CAP_USER_MEMORY2" },
	{ 232, "KVM_CAP_MEMORY_FAULT_INFO" },	 { 233, "KVM_CAP_MEMORY_ATTRIBUTES" },
	{ 234, "KVM_CAP_GUEST_MEMFD" },		 { 235, "KVM_CAP_VM_TYPES" },
	{ 236, "KVM_CAP_PRE_FAULT_MEMORY" },	 { 244, "KVM_CAP_GUEST_MEMFD_FLAGS" },
};

static void print_caps(int fd, const char *what)
{
	printf("%s:\n", what);
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		int v = ioctl(fd, KVM_CHECK_EXTENSION, caps[i].cap);

		if (v < 0)
			printf("  %-28s (%3d) error: %s\n", caps[i].name, caps[i].cap,
			       strerror(errno));
		else
			printf("  %-28s (%3d) = %d (%#x)\n", caps[i].name, caps[i].cap, v,
			       (unsigned)v);
	}
}

static void print_hugepages(void)
{
	static const char *const sizes[] = { "2048kB", "1048576kB" };

	for (size_t i = 0; i < 2; i++) {
		char path[96];
		long n = -1;
		FILE *f;

		snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%s/nr_hugepages",
			 sizes[i]);
		f = fopen(path, "re");
		if (f) {
			if (fscanf(f, "%ld", &n) != 1)
				n = -1;
			fclose(f);
			printf("huge pages %-10s: %ld configured\n", sizes[i], n);
		} else {
			printf("huge pages %-10s: not offered by this kernel\n", sizes[i]);
		}
	}
}

int main(void)
{
	struct gmem_create gc = { .size = 2 << 20 };
	struct mem_attributes ma = {
		.address = 0, .size = 2 << 20, .attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE
	};
	int kvm, vm, gmem, types, ok = 1;

	setvbuf(stdout, NULL, _IOLBF, 0);
	print_hugepages();
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		printf("/dev/kvm: %s\n", strerror(errno));
		return 77;
	}
	printf("KVM_GET_API_VERSION = %d\n", ioctl(kvm, KVM_GET_API_VERSION, 0));
	print_caps(kvm, "/dev/kvm");
	types = ioctl(kvm, KVM_CHECK_EXTENSION, 235);
	if (types < 0 || !(types & (1 << VM_TYPE_SW_PROTECTED))) {
		printf("FAIL: KVM_CAP_VM_TYPES has no bit %d (KVM_X86_SW_PROTECTED_VM)\n",
		       VM_TYPE_SW_PROTECTED);
		return 1;
	}
	printf("ok: KVM_CAP_VM_TYPES has KVM_X86_SW_PROTECTED_VM\n");

	vm = ioctl(kvm, KVM_CREATE_VM, VM_TYPE_SW_PROTECTED);
	if (vm < 0) {
		printf("FAIL: KVM_CREATE_VM(SW_PROTECTED): %s\n", strerror(errno));
		return 1;
	}
	print_caps(vm, "SW_PROTECTED VM fd");
	if (!(ioctl(vm, KVM_CHECK_EXTENSION, 233) & KVM_MEMORY_ATTRIBUTE_PRIVATE)) {
		printf("FAIL: the VM's KVM_CAP_MEMORY_ATTRIBUTES lacks PRIVATE\n");
		ok = 0;
	}
	gmem = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &gc);
	if (gmem < 0) {
		printf("FAIL: KVM_CREATE_GUEST_MEMFD(2 MiB, flags 0): %s\n", strerror(errno));
		ok = 0;
	} else {
		printf("ok: KVM_CREATE_GUEST_MEMFD(2 MiB, flags 0) = fd %d\n", gmem);
		for (uint64_t flag = 1; flag <= 2; flag <<= 1) {
			struct gmem_create g2 = { .size = 2 << 20, .flags = flag };
			int fd = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &g2);

			printf("     KVM_CREATE_GUEST_MEMFD(flags %#llx): %s\n",
			       (unsigned long long)flag, fd >= 0 ? "accepted" : strerror(errno));
			if (fd >= 0)
				close(fd);
		}
		if (fallocate(gmem, FALLOC_FL_KEEP_SIZE, 0, 1 << 20) ||
		    fallocate(gmem, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 1 << 20)) {
			printf("FAIL: guest_memfd fallocate/punch: %s\n", strerror(errno));
			ok = 0;
		} else {
			printf("ok: guest_memfd fallocate + PUNCH_HOLE\n");
		}
		close(gmem);
	}
	if (ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &ma)) {
		printf("FAIL: KVM_SET_MEMORY_ATTRIBUTES(PRIVATE, 2 MiB): %s\n", strerror(errno));
		ok = 0;
	} else {
		printf("ok: KVM_SET_MEMORY_ATTRIBUTES(PRIVATE, 2 MiB)\n");
	}
	close(vm);
	close(kvm);
	printf("%s\n", ok ? "probe: SW_PROTECTED VMs usable" : "probe: FAILED");
	return ok ? 0 : 1;
}
