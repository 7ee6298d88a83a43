/* SPDX-License-Identifier: MIT */
/* cvmconv-sim's options (see sim_cli.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cvmconv.h"
#include <cvmconv/guest.h>

#include "sim_cli.h"

/* ---- usage ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cvmconv-sim [options]\n"
		"Run the guest model through a host over real memfd backings and print, per\n"
		"workload x guest x platform x host, what the conversions cost.\n"
		"\n"
		"  --ram SIZE                 guest RAM (K/M/G/T suffixes; default 16G)\n"
		"  --cpus N                   vCPUs (default 4)\n"
		"  --platform LIST            snp,tdx,kvm-pv or all (default all)\n"
		"  --guest LIST               legacy,rfc,cma or all (default legacy,rfc);\n"
		"                             cma = RFC guest + a boot-time CMA-style reservation\n"
		"                             converted on demand in 2 MiB units (GPU buffers)\n"
		"  --host LIST                qemu-like, cvmconv (two backings), in-place\n"
		"                             (cvmconv over one guest_memfd holding both sides:\n"
		"                             CVMCONV_REGION_INPLACE) or all (default\n"
		"                             qemu-like,cvmconv)\n"
		"  --gmem-busy-every N        in-place host: every Nth to-private guest_memfd\n"
		"                             update meets a transient host reference (EAGAIN\n"
		"                             once; default 0: never)\n"
		"  --policy allow|log|reject  cvmconv's unaligned-request policy (default allow)\n"
		"  --workload LIST            boot, devices, churn, gpu or all (default devices);\n"
		"                             each is boot followed by: devices = virtio-net/blk "
		"+\n"
		"                             NVMe bring-up; churn = devices + runtime DMA churn;\n"
		"                             gpu = devices + GPU-like coherent buffers; or a\n"
		"                             '+' list of phases after boot from devices, churn,\n"
		"                             frag (kernel-only churn), gpu, stream (streaming\n"
		"                             mappings held until SWIOTLB overflows), e.g.\n"
		"                             boot+frag+stream; LIST is comma separated\n"
		"  --seed N                   the model's seed (default 1)\n"
		"  --populate converted|all   converted (default): touch shared pages as they\n"
		"                             become shared; all: the shared side starts\n"
		"                             populated (like a preallocated RAM backend) and is\n"
		"                             converted to private before boot (small guests:\n"
		"                             needs RAM-sized huge pages)\n"
		"  --backing hugetlb|shmem    shared side (default hugetlb, 2 MiB MFD_HUGETLB)\n"
		"  --swiotlb-dynamic          legacy guests with CONFIG_SWIOTLB_DYNAMIC=y\n"
		"  --enforce-checker          rfc/cma guests: RFC patch 5 as posted, unaligned\n"
		"                             conversions fail with -EINVAL\n"
		"  --churn-cycles N           runtime churn cycles (default 10000)\n"
		"  --frag-steps N             kernel churn steps of the frag phase (default "
		"300000)\n"
		"  --gpu-total SIZE           GPU coherent memory wanted (default 256M)\n"
		"  --gpu-chunk SIZE           per allocation (default 2M)\n"
		"  --stream-bytes SIZE        stream phase: bytes mapped (default 2 x boot pool)\n"
		"  --stream-chunk SIZE        per mapping (default 256K)\n"
		"  --cma SIZE                 CMA-style reservation of guest cma (default: the\n"
		"                             GPU total)\n"
		"  --trace FILE               write every exit (map <gpa> <npages> <attrs>, hex)\n"
		"  --csv FILE, --json FILE    the table, machine-readable\n"
		"  -v, --verbose              library log lines\n"
		"  -q, --quiet                no progress lines on stderr\n"
		"  -h, --help\n"
		"Exit status: 0 ok; 1 a run failed or cvmconv disagrees with the kernel; 2 "
		"usage.\n");
}

#define usage_error(...) cli_usage_error("cvmconv-sim", __VA_ARGS__)

/* ---- parsing ---- */

static int each_item(const char *list, int (*one)(const char *item))
{
	return cli_each_item("cvmconv-sim", list, one);
}

static int one_platform(const char *s)
{
	if (!strcmp(s, "all"))
		opt.platforms[0] = opt.platforms[1] = opt.platforms[2] = true;
	else if (!strcmp(s, "snp"))
		opt.platforms[CVMG_PLATFORM_SNP] = true;
	else if (!strcmp(s, "tdx"))
		opt.platforms[CVMG_PLATFORM_TDX] = true;
	else if (!strcmp(s, "kvm-pv") || !strcmp(s, "kvm_pv"))
		opt.platforms[CVMG_PLATFORM_KVM_PV] = true;
	else
		return usage_error("unknown platform '%s'", s);
	return 0;
}

static int one_guest(const char *s)
{
	if (!strcmp(s, "all")) {
		for (int g = 0; g < SIM_GUEST_COUNT; g++)
			opt.guests[g] = true;
		return 0;
	}
	for (int g = 0; g < SIM_GUEST_COUNT; g++) {
		if (!strcmp(s, sim_guest_name((enum sim_guest)g))) {
			opt.guests[g] = true;
			return 0;
		}
	}
	return usage_error("unknown guest '%s'", s);
}

static int one_host(const char *s)
{
	if (!strcmp(s, "all"))
		opt.hosts[SIM_HOST_QEMU_LIKE] = opt.hosts[SIM_HOST_CVMCONV] =
			opt.hosts[SIM_HOST_INPLACE] = true;
	else if (!strcmp(s, "cvmconv"))
		opt.hosts[SIM_HOST_CVMCONV] = true;
	else if (!strcmp(s, "in-place") || !strcmp(s, "inplace"))
		opt.hosts[SIM_HOST_INPLACE] = true;
	else if (!strcmp(s, "qemu-like") || !strcmp(s, "qemu"))
		opt.hosts[SIM_HOST_QEMU_LIKE] = true;
	else
		return usage_error("unknown host '%s'", s);
	return 0;
}

static int add_workload(const char *name, const enum sim_phase *phases, size_t n)
{
	struct workload *w;

	if (opt.nwl == MAX_WORKLOADS)
		return usage_error("at most %d workloads", MAX_WORKLOADS);
	w = &opt.wl[opt.nwl++];
	snprintf(w->name, sizeof(w->name), "%s", name);
	if (n)
		memcpy(w->phases, phases, n * sizeof(*phases));
	w->nphases = n;
	return 0;
}

static int one_workload(const char *s)
{
	static const enum sim_phase dev[] = { SIM_PHASE_DEVICES };
	static const enum sim_phase churn[] = { SIM_PHASE_DEVICES, SIM_PHASE_CHURN };
	static const enum sim_phase gpu[] = { SIM_PHASE_DEVICES, SIM_PHASE_GPU };
	enum sim_phase ph[SIM_MAX_PHASES];
	char buf[128], *save = NULL, *tok;
	size_t n = 0;
	int ret;

	if (!strcmp(s, "boot"))
		return add_workload("boot", NULL, 0);
	if (!strcmp(s, "devices"))
		return add_workload("devices", dev, 1);
	if (!strcmp(s, "churn"))
		return add_workload("churn", churn, 2);
	if (!strcmp(s, "gpu"))
		return add_workload("gpu", gpu, 2);
	if (!strcmp(s, "all")) {
		if ((ret = add_workload("boot", NULL, 0)) ||
		    (ret = add_workload("devices", dev, 1)) ||
		    (ret = add_workload("churn", churn, 2)))
			return ret;
		return add_workload("gpu", gpu, 2);
	}
	if (strlen(s) >= sizeof(buf))
		return usage_error("workload too long: %s", s);
	strcpy(buf, s);
	for (tok = strtok_r(buf, "+", &save); tok; tok = strtok_r(NULL, "+", &save)) {
		int p;

		if (!strcmp(tok, "boot") && n == 0)
			continue;
		for (p = 0; p < SIM_PHASE_COUNT; p++)
			if (!strcmp(tok, sim_phase_name((enum sim_phase)p)))
				break;
		if (p == SIM_PHASE_COUNT)
			return usage_error("unknown workload or phase '%s'", tok);
		if (n == SIM_MAX_PHASES)
			return usage_error("at most %d phases", SIM_MAX_PHASES);
		ph[n++] = (enum sim_phase)p;
	}
	return add_workload(s, ph, n);
}

enum {
	OPT_RAM = 256,
	OPT_CPUS,
	OPT_PLATFORM,
	OPT_GUEST,
	OPT_HOST,
	OPT_POLICY,
	OPT_WORKLOAD,
	OPT_SEED,
	OPT_POPULATE,
	OPT_BACKING,
	OPT_SWIOTLB_DYNAMIC,
	OPT_ENFORCE_CHECKER,
	OPT_CHURN_CYCLES,
	OPT_FRAG_STEPS,
	OPT_GPU_TOTAL,
	OPT_GPU_CHUNK,
	OPT_GMEM_BUSY,
	OPT_STREAM_BYTES,
	OPT_STREAM_CHUNK,
	OPT_CMA,
	OPT_TRACE,
};

int sim_parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "ram", required_argument, NULL, OPT_RAM },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "platform", required_argument, NULL, OPT_PLATFORM },
		{ "guest", required_argument, NULL, OPT_GUEST },
		{ "host", required_argument, NULL, OPT_HOST },
		{ "policy", required_argument, NULL, OPT_POLICY },
		{ "workload", required_argument, NULL, OPT_WORKLOAD },
		{ "seed", required_argument, NULL, OPT_SEED },
		{ "populate", required_argument, NULL, OPT_POPULATE },
		{ "backing", required_argument, NULL, OPT_BACKING },
		{ "swiotlb-dynamic", no_argument, NULL, OPT_SWIOTLB_DYNAMIC },
		{ "enforce-checker", no_argument, NULL, OPT_ENFORCE_CHECKER },
		{ "churn-cycles", required_argument, NULL, OPT_CHURN_CYCLES },
		{ "frag-steps", required_argument, NULL, OPT_FRAG_STEPS },
		{ "gpu-total", required_argument, NULL, OPT_GPU_TOTAL },
		{ "gpu-chunk", required_argument, NULL, OPT_GPU_CHUNK },
		{ "gmem-busy-every", required_argument, NULL, OPT_GMEM_BUSY },
		{ "stream-bytes", required_argument, NULL, OPT_STREAM_BYTES },
		{ "stream-chunk", required_argument, NULL, OPT_STREAM_CHUNK },
		{ "cma", required_argument, NULL, OPT_CMA },
		{ "trace", required_argument, NULL, OPT_TRACE },
		CLI_LONGOPTS_OUTPUT,
		CLI_LONGOPTS_COMMON,
		{ NULL, 0, NULL, 0 },
	};
	struct sim_scenario *b = &opt.base;
	bool any_platform = false, any_guest = false, any_host = false;
	uint64_t v;
	int c, ret = 0;

	sim_scenario_defaults(b);
	while ((c = getopt_long(argc, argv, "vqh", longopts, NULL)) != -1) {
		if (cli_output_option(c, optarg, &opt.out))
			continue;
		switch (c) {
		case OPT_RAM:
			if (!cli_parse_size(optarg, &b->ram) || b->ram % (2 * MiB) ||
			    b->ram < 256 * MiB)
				return usage_error(
					"--ram: a multiple of 2 MiB, at least 256M: '%s'", optarg);
			break;
		case OPT_CPUS:
			if (!cli_parse_u64(optarg, &v) || !v || v > 8192)
				return usage_error("--cpus: 1..8192: '%s'", optarg);
			b->cpus = (uint32_t)v;
			break;
		case OPT_PLATFORM:
			ret = each_item(optarg, one_platform);
			any_platform = true;
			break;
		case OPT_GUEST:
			ret = each_item(optarg, one_guest);
			any_guest = true;
			break;
		case OPT_HOST:
			ret = each_item(optarg, one_host);
			any_host = true;
			break;
		case OPT_POLICY:
			if (!strcmp(optarg, "allow"))
				b->policy = CVMCONV_UNALIGNED_ALLOW;
			else if (!strcmp(optarg, "log"))
				b->policy = CVMCONV_UNALIGNED_LOG;
			else if (!strcmp(optarg, "reject"))
				b->policy = CVMCONV_UNALIGNED_REJECT;
			else
				return usage_error("--policy: allow, log or reject: '%s'", optarg);
			break;
		case OPT_WORKLOAD:
			ret = each_item(optarg, one_workload);
			break;
		case OPT_SEED:
			if (!cli_parse_u64(optarg, &b->seed))
				return usage_error("--seed: a number: '%s'", optarg);
			break;
		case OPT_POPULATE:
			if (!strcmp(optarg, "all"))
				b->populate_all = true;
			else if (!strcmp(optarg, "converted"))
				b->populate_all = false;
			else
				return usage_error("--populate: converted or all: '%s'", optarg);
			break;
		case OPT_BACKING:
			if (!strcmp(optarg, "shmem"))
				opt.force_shmem = true;
			else if (!strcmp(optarg, "hugetlb"))
				opt.force_shmem = false;
			else
				return usage_error("--backing: hugetlb or shmem: '%s'", optarg);
			break;
		case OPT_SWIOTLB_DYNAMIC:
			b->swiotlb_dynamic = true;
			break;
		case OPT_ENFORCE_CHECKER:
			b->enforce_checker = true;
			break;
		case OPT_CHURN_CYCLES:
			if (!cli_parse_u64(optarg, &b->churn_cycles))
				return usage_error("--churn-cycles: a number: '%s'", optarg);
			break;
		case OPT_FRAG_STEPS:
			if (!cli_parse_u64(optarg, &b->frag_steps))
				return usage_error("--frag-steps: a number: '%s'", optarg);
			break;
		case OPT_GMEM_BUSY:
			if (!cli_parse_u64(optarg, &v) || v > UINT32_MAX)
				return usage_error("--gmem-busy-every: a number: '%s'", optarg);
			b->gmem_busy_every = (uint32_t)v;
			break;
		case OPT_GPU_TOTAL:
		case OPT_GPU_CHUNK:
		case OPT_STREAM_BYTES:
		case OPT_STREAM_CHUNK:
		case OPT_CMA:
			if (!cli_parse_size(optarg, &v) || !v || v % 4096)
				return usage_error("%s: a size, a multiple of 4 KiB: '%s'",
						   argv[optind - 1], optarg);
			if (c == OPT_GPU_TOTAL)
				b->gpu_total = v;
			else if (c == OPT_GPU_CHUNK)
				b->gpu_chunk = v;
			else if (c == OPT_STREAM_BYTES)
				b->stream_bytes = v;
			else if (c == OPT_STREAM_CHUNK)
				b->stream_chunk = v;
			else
				b->cma_bytes = v;
			break;
		case OPT_TRACE:
			opt.trace = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(EXIT_OK);
		default:
			return usage_error("unknown option");
		}
		if (ret)
			return ret;
	}
	b->verbose = opt.out.verbose;
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!any_platform)
		opt.platforms[0] = opt.platforms[1] = opt.platforms[2] = true;
	if (!any_guest)
		opt.guests[SIM_GUEST_LEGACY] = opt.guests[SIM_GUEST_RFC] = true;
	if (!any_host)
		opt.hosts[SIM_HOST_QEMU_LIKE] = opt.hosts[SIM_HOST_CVMCONV] = true;
	if (!opt.nwl)
		ret = one_workload("devices");
	if (!ret && b->gpu_chunk && b->gpu_total && b->gpu_chunk > b->gpu_total)
		return usage_error("--gpu-chunk larger than --gpu-total");
	return ret;
}
