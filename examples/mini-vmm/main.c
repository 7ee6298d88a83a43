/* SPDX-License-Identifier: MIT */
/*
 * mini-vmm: a small VMM that hands every exit to cvmconv_handle_exit().
 *
 *   mini-vmm                real KVM if this machine has a SW_PROTECTED VM,
 *                           else says why and runs --simulate (exit 0)
 *   mini-vmm --real         real KVM or exit 77 with the reason
 *   mini-vmm --simulate     no KVM: software guest, strict attribute recorder
 *   mini-vmm --native       no KVM: the real guest code, run in this process
 *   mini-vmm --simulate --guest-model [--rfc] [--platform snp|tdx|kvm]
 *                           a guest-model boot feeding cvmconv_map_gpa_range
 *
 * Exit status: 0 success, 1 a check failed, 2 usage, 77 the path asked for
 * cannot run on this machine.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hugepool.h"
#include "mini-vmm.h"

static struct vmm vmm;

static void vmm_reset(struct vmm *v, enum path p)
{
	memset(v, 0, sizeof(*v));
	v->path = p;
	v->shared_fd = v->private_fd = v->noslot_fd = v->vm_fd = -1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mini-vmm [--real | --simulate | --native] [--shmem | --huge-1g]\n"
		"       mini-vmm --simulate --guest-model [--rfc] [--platform snp|tdx|kvm] "
		"[--ram-mib N] [--shmem]\n"
		"       mini-vmm --dump-guest FILE\n"
		"  (none)        real KVM when /dev/kvm offers KVM_X86_SW_PROTECTED_VM, else "
		"--simulate\n"
		"  --real        real KVM only; exit 77 with the reason when it is not there\n"
		"  --simulate    no KVM: a software guest, attributes in a strict recorder\n"
		"  --native      no KVM: run the guest's machine code in this process (x86-64)\n"
		"  --guest-model boot the cvmconv guest model (1 GiB) against the library\n"
		"  --rfc         guest model with the RFC's 2 MiB alignment changes\n"
		"  --platform    guest model exit shape: snp (default), tdx or kvm\n"
		"  --ram-mib N   guest model RAM in MiB (256..65536, default 1024)\n"
		"  --shmem       shared backing on shmem even when huge pages can be had\n"
		"  --huge-1g     shared backing on a 1 GiB huge page (reserved at boot)\n"
		"  --dump-guest  write the guest machine code (as loaded at %#" PRIx64
		") to FILE\n",
		CODE_GPA);
}

static int dump_guest(const char *file)
{
	static struct guest_code gc;
	FILE *f;

	if (guest_code_build(&gc, PATH_KVM, PAGE_SIZE_4K)) {
		fprintf(stderr, "guest code does not fit in %" PRIu64 " bytes\n", CODE_MAX);
		return 1;
	}
	f = fopen(file, "wbe");
	if (!f || fwrite(gc.bytes, 1, gc.len, f) != gc.len || fclose(f) != 0) {
		fprintf(stderr, "%s: %s\n", file, strerror(errno));
		return 1;
	}
	printf("wrote %zu bytes of guest code (32-bit, load address %#" PRIx64
	       ", %zu vmcall sites) to %s\n",
	       gc.len, CODE_GPA, gc.nhypercall_sites, file);
	return 0;
}

int main(int argc, char **argv)
{
	enum {
		OPT_REAL = 1,
		OPT_SIM,
		OPT_NATIVE,
		OPT_MODEL,
		OPT_RFC,
		OPT_PLATFORM,
		OPT_RAM,
		OPT_SHMEM,
		OPT_HUGE_1G,
		OPT_DUMP,
		OPT_HELP
	};
	static const struct option opts[] = {
		{ "real", no_argument, NULL, OPT_REAL },
		{ "simulate", no_argument, NULL, OPT_SIM },
		{ "native", no_argument, NULL, OPT_NATIVE },
		{ "guest-model", no_argument, NULL, OPT_MODEL },
		{ "rfc", no_argument, NULL, OPT_RFC },
		{ "platform", required_argument, NULL, OPT_PLATFORM },
		{ "ram-mib", required_argument, NULL, OPT_RAM },
		{ "shmem", no_argument, NULL, OPT_SHMEM },
		{ "huge-1g", no_argument, NULL, OPT_HUGE_1G },
		{ "dump-guest", required_argument, NULL, OPT_DUMP },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	bool real = false, simulate = false, native = false, model = false, rfc = false;
	bool want_huge = true, huge_1g = false;
	const char *dump = NULL;
	int platform = 0, opt, ret;
	uint64_t ram_mib = 1024;
	char why[256] = "";

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case OPT_REAL:
			real = true;
			break;
		case OPT_SIM:
			simulate = true;
			break;
		case OPT_NATIVE:
			native = true;
			break;
		case OPT_MODEL:
			model = true;
			break;
		case OPT_RFC:
			rfc = true;
			break;
		case OPT_PLATFORM:
			if (!strcmp(optarg, "snp"))
				platform = 0;
			else if (!strcmp(optarg, "tdx"))
				platform = 1;
			else if (!strcmp(optarg, "kvm"))
				platform = 2;
			else {
				usage(stderr);
				return 2;
			}
			break;
		case OPT_RAM:
			ram_mib = strtoull(optarg, NULL, 0);
			if (ram_mib < 256 || ram_mib > 65536) {
				usage(stderr);
				return 2;
			}
			break;
		case OPT_SHMEM:
			want_huge = false;
			break;
		case OPT_HUGE_1G:
			huge_1g = true;
			break;
		case OPT_DUMP:
			dump = optarg;
			break;
		case OPT_HELP:
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || real + simulate + native > 1 || (model && (real || native)) ||
	    (huge_1g && (!want_huge || model || native)) || ((rfc || platform) && !model)) {
		usage(stderr);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	hugepool_restore_on_signals(); /* the pool back on SIGINT, SIGTERM, SIGHUP */
	if (dump)
		return dump_guest(dump);
	printf("mini-vmm: cvmconv %s\n", cvmconv_version());
	if (model)
		return guest_model_run(rfc, platform, ram_mib, want_huge);
	if (native) {
		vmm_reset(&vmm, PATH_NATIVE);
		ret = native_run_scenario(&vmm, why, sizeof(why));
		if (ret == 77)
			printf("mini-vmm: native path not available: %s\n", why);
		return ret;
	}
	if (!simulate) {
		ret = kvm_probe(why, sizeof(why));
		if (ret == 0) {
			vmm_reset(&vmm, PATH_KVM);
			vmm.huge_size = huge_1g ? 1ULL << 30 : 0;
			ret = kvm_run_scenario(&vmm, want_huge, why, sizeof(why));
		}
		if (ret != 77)
			return ret;
		if (real) {
			printf("mini-vmm: real KVM path not available: %s\n", why);
			return 77;
		}
		printf("mini-vmm: no real KVM path (%s): falling back to --simulate\n", why);
	}
	vmm_reset(&vmm, PATH_SIMULATE);
	vmm.huge_size = huge_1g ? 1ULL << 30 : 0;
	return sim_run_scenario(&vmm, want_huge);
}
