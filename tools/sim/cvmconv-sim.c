/* SPDX-License-Identifier: MIT */
/*
 * cvmconv-sim: a guest model (cvmconv_guest) run through a host over real
 * memfd backings, for every combination asked of
 *   workload x guest policy (legacy / RFC / CMA-style) x platform (SEV-SNP,
 *   TDX, KVM PV) x host (QEMU-like baseline, cvmconv),
 * and one table of what it cost: exits, attribute updates, punches, double
 * allocation (the library's figure beside the kernel's), mixed 2 MiB
 * extents and what they cost (huge mappings, vmemmap, EPT/NPT tables).
 *
 * Backings: the shared side is an MFD_HUGETLB memfd with 2 MiB pages (the
 * huge pages a run needs are counted by a dry run and reserved by raising
 * nr_hugepages, restored at exit); if that is impossible the shared side
 * falls back to shmem, loudly. The private side is a real guest_memfd
 * where the host's /dev/kvm makes one (tools/private_backing.c), else a
 * shmem memfd standing in for it; the header says which. Attributes go to a strict recorder (no /dev/kvm needed).
 * See sim.h for what is touched and why, and docs/rfc-reproduction.md for
 * what the numbers say.
 *
 * Exit status: 0 success; 1 a simulation failed or cvmconv's figures
 * disagree with the kernel's; 2 usage error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "private_backing.h"
#include "cvmconv.h"
#include <cvmconv/guest.h>

#include "hugepool.h"
#include "sim.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

#define KiB ((uint64_t)1024)
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)

#define MAX_WORKLOADS 8
#define MAX_ROWS 1024

struct workload {
	char name[64];
	enum sim_phase phases[SIM_MAX_PHASES];
	size_t nphases;
};

struct options {
	struct sim_scenario base; /* sizes, seed, knobs shared by every row */
	bool platforms[3], guests[SIM_GUEST_COUNT], hosts[3];
	struct workload wl[MAX_WORKLOADS];
	size_t nwl;
	const char *csv, *json, *trace;
	bool force_shmem, quiet;
};

struct row {
	struct sim_scenario sc;
	struct sim_result res;
	int ret;
	char why[256];
};

static struct options opt;
static struct row *rows;
static size_t nrows;
static bool shared_huge;
static char backing_note[320];
static uint64_t hugepages_reserved;

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

static int __attribute__((format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("cvmconv-sim: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(cvmconv-sim --help shows the options)\n", stderr);
	return EXIT_USAGE;
}

/* ---- parsing ---- */

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!*s || *s == '-')
		return false;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static bool parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	if (!*s || *s == '-')
		return false;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return false;
	switch (*end) {
	case 0:
		break;
	case 'k':
	case 'K':
		mul = KiB;
		break;
	case 'm':
	case 'M':
		mul = MiB;
		break;
	case 'g':
	case 'G':
		mul = GiB;
		break;
	case 't':
	case 'T':
		mul = 1024 * GiB;
		break;
	default:
		return false;
	}
	if (*end && end[1] && strcasecmp(end + 1, "iB") && strcasecmp(end + 1, "B"))
		return false;
	if (v > UINT64_MAX / mul)
		return false;
	*out = v * mul;
	return true;
}

/* Split @list on commas; call @one for each item. */
static int each_item(const char *list, int (*one)(const char *item))
{
	char buf[512], *save = NULL, *tok;
	int ret;

	if (strlen(list) >= sizeof(buf))
		return usage_error("list too long: %s", list);
	strcpy(buf, list);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		if ((ret = one(tok)))
			return ret;
	return 0;
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
	OPT_CSV,
	OPT_JSON,
};

static int parse_args(int argc, char **argv)
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
		{ "csv", required_argument, NULL, OPT_CSV },
		{ "json", required_argument, NULL, OPT_JSON },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sim_scenario *b = &opt.base;
	bool any_platform = false, any_guest = false, any_host = false;
	uint64_t v;
	int c, ret = 0;

	sim_scenario_defaults(b);
	while ((c = getopt_long(argc, argv, "vqh", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_RAM:
			if (!parse_size(optarg, &b->ram) || b->ram % (2 * MiB) ||
			    b->ram < 256 * MiB)
				return usage_error(
					"--ram: a multiple of 2 MiB, at least 256M: '%s'", optarg);
			break;
		case OPT_CPUS:
			if (!parse_u64(optarg, &v) || !v || v > 8192)
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
			if (!parse_u64(optarg, &b->seed))
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
			if (!parse_u64(optarg, &b->churn_cycles))
				return usage_error("--churn-cycles: a number: '%s'", optarg);
			break;
		case OPT_FRAG_STEPS:
			if (!parse_u64(optarg, &b->frag_steps))
				return usage_error("--frag-steps: a number: '%s'", optarg);
			break;
		case OPT_GMEM_BUSY:
			if (!parse_u64(optarg, &v) || v > UINT32_MAX)
				return usage_error("--gmem-busy-every: a number: '%s'", optarg);
			b->gmem_busy_every = (uint32_t)v;
			break;
		case OPT_GPU_TOTAL:
		case OPT_GPU_CHUNK:
		case OPT_STREAM_BYTES:
		case OPT_STREAM_CHUNK:
		case OPT_CMA:
			if (!parse_size(optarg, &v) || !v || v % 4096)
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
		case OPT_CSV:
			opt.csv = optarg;
			break;
		case OPT_JSON:
			opt.json = optarg;
			break;
		case 'v':
			b->verbose = true;
			break;
		case 'q':
			opt.quiet = true;
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

/* ---- rows ---- */

static int plan_rows(void)
{
	size_t cap = 0;

	for (size_t w = 0; w < opt.nwl; w++)
		for (int p = 0; p < 3; p++)
			for (int g = 0; g < SIM_GUEST_COUNT; g++)
				for (int h = 0; h < 3; h++)
					cap += opt.platforms[p] && opt.guests[g] && opt.hosts[h];
	if (cap > MAX_ROWS)
		return usage_error("%zu rows: at most %d", cap, MAX_ROWS);
	rows = calloc(cap ? cap : 1, sizeof(*rows));
	if (!rows) {
		fprintf(stderr, "cvmconv-sim: out of memory\n");
		return EXIT_FAIL;
	}
	for (size_t w = 0; w < opt.nwl; w++) {
		for (int p = 0; p < 3; p++) {
			for (int g = 0; g < SIM_GUEST_COUNT; g++) {
				/* qemu-like first: the baseline above the library,
				 * then two backings, then in place */
				for (int h = 0; h < 3; h++) {
					struct sim_scenario *sc;

					if (!opt.platforms[p] || !opt.guests[g] || !opt.hosts[h])
						continue;
					sc = &rows[nrows++].sc;
					*sc = opt.base;
					sc->platform = (enum cvmg_platform)p;
					sc->guest = (enum sim_guest)g;
					sc->host = (enum sim_host)h;
					memcpy(sc->phases, opt.wl[w].phases,
					       opt.wl[w].nphases * sizeof(sc->phases[0]));
					sc->nphases = opt.wl[w].nphases;
					sc->workload = opt.wl[w].name;
				}
			}
		}
	}
	return 0;
}

/* ---- huge pages ---- */

static void restore_on_signal(int sig)
{
	hugepool_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

static long meminfo_kb(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[128], fmt[64];
	long v = -1;

	if (!f)
		return -1;
	snprintf(fmt, sizeof(fmt), "%s: %%ld kB", key);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, fmt, &v) == 1)
			break;
	fclose(f);
	return v;
}

/*
 * Count what the rows touch at most (a dry run per row), reserve that many
 * 2 MiB pages, or fall back to shmem and say so.
 */
static int setup_backing(void)
{
	uint64_t need = 0;
	char why[256];
	long avail;
	int ret;

	if (!opt.force_shmem) {
		for (size_t i = 0; i < nrows; i++) {
			uint64_t n;

			ret = sim_hugepages_needed(&rows[i].sc, &n, why, sizeof(why));
			if (ret) {
				fprintf(stderr, "cvmconv-sim: dry run: %s\n", why);
				return EXIT_FAIL;
			}
			if (n > need)
				need = n;
		}
		avail = meminfo_kb("MemAvailable");
		if (avail >= 0 && need * 2 * MiB / KiB > (uint64_t)avail / 2) {
			/* raising nr_hugepages that far would starve the machine */
			snprintf(why, sizeof(why),
				 "%" PRIu64 " MiB of huge pages is more than half of MemAvailable "
				 "(%ld MiB)",
				 need * 2, avail / 1024);
			ret = -ENOMEM;
		} else {
			ret = hugepool_reserve(2 * MiB, need, why, sizeof(why));
		}
		if (!ret) {
			shared_huge = true;
			hugepages_reserved = need;
			snprintf(backing_note, sizeof(backing_note),
				 "MFD_HUGETLB memfd, 2 MiB pages (%" PRIu64
				 " reserved for the largest row)",
				 need);
			return 0;
		}
		snprintf(backing_note, sizeof(backing_note),
			 "shmem memfd (FALLBACK: %" PRIu64 " huge pages needed: %s)", need, why);
		fprintf(stderr,
			"\ncvmconv-sim: *** WARNING: no huge pages: %s ***\n"
			"cvmconv-sim: *** the shared side falls back to a shmem memfd: double "
			"allocation from\n"
			"cvmconv-sim: *** huge pages cannot happen and will read 0 — run as root "
			"for real figures ***\n\n",
			why);
	} else {
		snprintf(backing_note, sizeof(backing_note), "shmem memfd (--backing shmem)");
	}
	if (opt.base.populate_all) {
		avail = meminfo_kb("MemAvailable");
		if (avail >= 0 && opt.base.ram / KiB > (uint64_t)avail / 2) {
			fprintf(stderr,
				"cvmconv-sim: --populate all on shmem would allocate %" PRIu64
				" MiB, more than half of MemAvailable\n",
				opt.base.ram / MiB);
			return EXIT_FAIL;
		}
	}
	shared_huge = false;
	return 0;
}

/* ---- output ---- */

static const char *human(uint64_t b, char *buf, size_t len)
{
	if (b == 0)
		snprintf(buf, len, "0");
	else if (b < MiB)
		snprintf(buf, len, "%" PRIu64 "K", b / KiB);
	else if (b < GiB)
		snprintf(buf, len, "%.1fM", (double)b / (double)MiB);
	else
		snprintf(buf, len, "%.2fG", (double)b / (double)GiB);
	return buf;
}

static const char *platform_name(enum cvmg_platform p)
{
	return p == CVMG_PLATFORM_KVM_PV ? "kvm-pv" : cvmg_platform_name(p);
}

static const char *policy_name(enum cvmconv_unaligned p)
{
	static const char *const n[] = { "allow", "log", "reject" };

	return (unsigned)p < 3 ? n[p] : "?";
}

static void row_notes(const struct row *r, char *buf, size_t len)
{
	const struct sim_result *s = &r->res;
	size_t used = 0;

#define NOTE(...)                                                                                \
	do {                                                                                     \
		if (used < len)                                                                  \
			used += (size_t)snprintf(buf + used, len - used, "%s", used ? " " : ""); \
		if (used < len)                                                                  \
			used += (size_t)snprintf(buf + used, len - used, __VA_ARGS__);           \
	} while (0)
	buf[0] = 0;
	if (r->ret)
		NOTE("FAILED: %s", r->why);
	if (s->terminated)
		NOTE("guest-terminated");
	if (s->rejected)
		NOTE("rejected=%" PRIu64, s->rejected);
	if (s->exits_failed && !s->rejected)
		NOTE("exits-failed=%" PRIu64, s->exits_failed);
	if (s->host_errors)
		NOTE("host-errors=%" PRIu64, s->host_errors);
	if (s->punch_failures)
		NOTE("punch-failures=%" PRIu64, s->punch_failures);
	if (s->gpu_bytes_wanted)
		NOTE("gpu=%" PRIu64 "/%" PRIu64 "M", s->gpu_bytes_got / MiB,
		     s->gpu_bytes_wanted / MiB);
	if (s->dma_alloc_failures)
		NOTE("dma-fail=%" PRIu64, s->dma_alloc_failures);
	if (s->map_failures)
		NOTE("map-fail=%" PRIu64, s->map_failures);
	if (r->sc.host == SIM_HOST_INPLACE)
		NOTE("gmem-calls=%" PRIu64, s->gmem_calls);
	if (s->gmem_busy_retries || s->gmem_busy_failures)
		NOTE("busy-retries=%" PRIu64 "/failed=%" PRIu64, s->gmem_busy_retries,
		     s->gmem_busy_failures);
	if (s->lib_kernel_mismatches)
		NOTE("LIB!=KERNEL@%" PRIu64 "exits(first gpa %#" PRIx64 ")",
		     s->lib_kernel_mismatches, s->first_mismatch_gpa);
#undef NOTE
}

static void print_header(FILE *f)
{
	const struct sim_scenario *b = &opt.base;
	char buf[32];

	fprintf(f,
		"cvmconv-sim: %s guest, %u vCPUs, seed %" PRIu64 ", policy %s, populate %s%s%s\n",
		human(b->ram, buf, sizeof(buf)), b->cpus, b->seed, policy_name(b->policy),
		b->populate_all ? "all" : "converted",
		b->swiotlb_dynamic ? ", legacy with CONFIG_SWIOTLB_DYNAMIC" : "",
		b->enforce_checker ? ", RFC checker enforcing" : "");
	fprintf(f, "shared side: %s; private side: %s\n", backing_note, private_backing_name());
	fprintf(f, "DA = double allocation (lib = cvmconv's figure, kern = st_blocks of the "
		   "shared memfd minus live shared pages, hpf = from HugePages_Free);\n"
		   "mixed = 2 MiB extents with private and shared pages; 2M-map = guest memory "
		   "still mappable with 2 MiB pages;\n"
		   "vmemmap = 28 KiB lost per mixed extent; EPT+ = extra 4 KiB EPT/NPT table "
		   "pages; unal = conversions the RFC's checker flags\n\n");
}

static void print_table(FILE *f)
{
	fprintf(f, "%-12s %-6s %-6s %-9s %5s %6s %6s %6s %15s %20s %6s %7s %8s %5s %5s  %s\n",
		"workload", "guest", "platf", "host", "conv", "exits", "attr", "punch",
		"peak DA lib/kern", "final DA lib/kern/hpf", "mixed", "2M-map", "vmemmap", "EPT+",
		"unal", "notes");
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		const struct sim_result *s = &r->res;
		char a[16], b[16], c[16], d[16], e[16], g[16], peak[40], fin[48], notes[512];

		if (s->have_lib)
			snprintf(peak, sizeof(peak), "%s/%s", human(s->lib_da_peak, a, sizeof(a)),
				 human(s->kernel_da_peak, b, sizeof(b)));
		else
			snprintf(peak, sizeof(peak), "-/%s",
				 human(s->kernel_da_peak, b, sizeof(b)));
		snprintf(fin, sizeof(fin), "%s/%s/%s",
			 s->have_lib ? human(s->lib_da, c, sizeof(c)) : "-",
			 human(s->kernel_da, d, sizeof(d)),
			 s->kernel_da_hpfree >= 0
				 ? human((uint64_t)s->kernel_da_hpfree, e, sizeof(e))
				 : "-");
		row_notes(r, notes, sizeof(notes));
		fprintf(f,
			"%-12s %-6s %-6s %-9s %5" PRIu64 " %6" PRIu64 " %6" PRIu64 " %6" PRIu64
			" %15s %20s %6" PRIu64 " %6.2f%% %8s %5" PRIu64 " %5" PRIu64 "%s%s\n",
			r->sc.workload, sim_guest_name(r->sc.guest), platform_name(r->sc.platform),
			sim_host_name(r->sc.host), s->conversions, s->exits, s->attr_calls,
			s->punches, peak, fin, s->mixed_extents,
			s->guest_bytes
				? 100.0 * (double)s->huge_mappable_bytes / (double)s->guest_bytes
				: 0.0,
			human(s->vmemmap_lost_bytes, g, sizeof(g)), s->ept_table_pages,
			s->unaligned, notes[0] ? "  " : "", notes);
	}
}

/* The guest's side of each row (the host changes it only when it refuses
 * exits). */
static void print_guest_table(FILE *f)
{
	fprintf(f, "\nguest side (cvmg_get_stats): SWIOTLB boot pool (start, size, in use at the "
		   "end), coherent allocations and\n"
		   "streaming maps (ok/failed), dynamic SWIOTLB growth (attempts/failed, pools "
		   "added), free ZONE_DMA32 memory in\n"
		   "1 MiB / 2 MiB blocks at the end, unaligned conversions by site\n");
	fprintf(f, "%-12s %-6s %-6s %-9s %12s %7s %7s %10s %11s %9s %14s %11s  %s\n", "workload",
		"guest", "platf", "host", "pool@", "pool", "used", "dma ok/f", "maps ok/f",
		"grow a/f", "dyn pools", "free 1M/2M", "unaligned by site");
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		const struct sim_result *s = &r->res;
		char a[16], b[16], c[16], dma[32], maps[32], grow[32], dyn[40], fr[32], sites[256];
		size_t used = 0;

		snprintf(dma, sizeof(dma), "%" PRIu64 "/%" PRIu64, s->dma_allocs + s->cma_allocs,
			 s->dma_alloc_failures + s->cma_failures);
		snprintf(maps, sizeof(maps), "%" PRIu64 "/%" PRIu64, s->maps, s->map_failures);
		snprintf(grow, sizeof(grow), "%" PRIu64 "/%" PRIu64, s->swiotlb_growth_attempts,
			 s->swiotlb_growth_failures);
		snprintf(dyn, sizeof(dyn), "%" PRIu64 "(%s)", s->swiotlb_dyn_pools,
			 human(s->swiotlb_dyn_bytes, b, sizeof(b)));
		snprintf(fr, sizeof(fr), "%" PRIu64 "/%" PRIu64, s->free_dma32_1m,
			 s->free_dma32_2m);
		sites[0] = 0;
		for (int k = 0; k < CVMG_SITE_COUNT; k++)
			if (s->unaligned_by_site[k] && used < sizeof(sites))
				used += (size_t)snprintf(sites + used, sizeof(sites) - used,
							 "%s%s=%" PRIu64, used ? " " : "",
							 cvmg_site_name((enum cvmg_site)k),
							 s->unaligned_by_site[k]);
		if (s->checker_rejected && used < sizeof(sites))
			used += (size_t)snprintf(sites + used, sizeof(sites) - used,
						 "%srefused=%" PRIu64, used ? " " : "",
						 s->checker_rejected);
		if (s->cma_reserved_bytes && used < sizeof(sites))
			snprintf(sites + used, sizeof(sites) - used,
				 "%scma reserved=%" PRIu64 "M shared=%" PRIu64 "M", used ? " " : "",
				 s->cma_reserved_bytes / MiB, s->cma_shared_bytes / MiB);
		fprintf(f,
			"%-12s %-6s %-6s %-9s %#12" PRIx64 " %7s %7s %10s %11s %9s %14s %11s%s%s\n",
			r->sc.workload, sim_guest_name(r->sc.guest), platform_name(r->sc.platform),
			sim_host_name(r->sc.host), s->swiotlb_boot_start,
			human(s->swiotlb_boot_bytes, a, sizeof(a)),
			human(s->swiotlb_used_bytes, c, sizeof(c)), dma, maps, grow, dyn, fr,
			sites[0] ? "  " : "", sites);
	}
}

/* Every per-row field, for CSV and JSON alike. */
enum fkind { F_U64, F_I64, F_STR, F_BOOL, F_F64 };
struct field {
	const char *name;
	enum fkind kind;
	uint64_t u;
	int64_t i;
	const char *s;
	double d;
};

#define MAX_FIELDS 80

static size_t row_fields(const struct row *r, struct field *f)
{
	const struct sim_result *s = &r->res;
	size_t n = 0;

#define U(nm, v) f[n++] = (struct field){ .name = nm, .kind = F_U64, .u = (v) }
#define I(nm, v)                                    \
	f[n++] = (struct field)                     \
	{                                           \
		.name = nm, .kind = F_I64, .i = (v) \
	}
#define S(nm, v)                                    \
	f[n++] = (struct field)                     \
	{                                           \
		.name = nm, .kind = F_STR, .s = (v) \
	}
#define B(nm, v)                                     \
	f[n++] = (struct field)                      \
	{                                            \
		.name = nm, .kind = F_BOOL, .u = (v) \
	}
#define D(nm, v)                                    \
	f[n++] = (struct field)                     \
	{                                           \
		.name = nm, .kind = F_F64, .d = (v) \
	}
	S("workload", r->sc.workload);
	S("guest", sim_guest_name(r->sc.guest));
	S("platform", platform_name(r->sc.platform));
	S("host", sim_host_name(r->sc.host));
	S("policy", r->sc.host != SIM_HOST_QEMU_LIKE ? policy_name(r->sc.policy) : "none");
	U("ram_bytes", r->sc.ram);
	B("ok", r->ret == 0);
	S("error", r->ret ? r->why : "");
	B("shared_hugetlb", r->sc.shared_huge);
	U("conversions", s->conversions);
	U("exits", s->exits);
	U("exits_failed", s->exits_failed);
	U("attr_calls", s->attr_calls);
	U("attr_setup_calls", s->attr_setup_calls);
	U("attr_refused", s->attr_refused);
	U("punches", s->punches);
	U("punch_failures", s->punch_failures);
	U("gmem_calls", s->gmem_calls);
	U("gmem_busy_retries", s->gmem_busy_retries);
	U("gmem_busy_failures", s->gmem_busy_failures);
	U("host_errors", s->host_errors);
	U("rejected", s->rejected);
	U("unaligned", s->unaligned);
	for (int k = 0; k < CVMG_SITE_COUNT; k++) {
		static char names[CVMG_SITE_COUNT][48];

		snprintf(names[k], sizeof(names[k]), "unaligned_%s",
			 cvmg_site_name((enum cvmg_site)k));
		U(names[k], s->unaligned_by_site[k]);
	}
	B("have_lib", s->have_lib);
	U("da_peak_lib", s->lib_da_peak);
	U("da_peak_kernel", s->kernel_da_peak);
	U("da_final_lib", s->lib_da);
	U("da_final_kernel", s->kernel_da);
	I("da_final_hugepages_free", s->kernel_da_hpfree);
	I("hugepages_used", s->hugepages_used);
	U("lib_kernel_mismatches", s->lib_kernel_mismatches);
	U("shared_alloc_bytes", s->shared_alloc_bytes);
	U("private_alloc_bytes", s->private_alloc_bytes);
	U("live_shared_bytes", s->live_shared_bytes);
	U("guest_bytes", s->guest_bytes);
	U("mixed_extents", s->mixed_extents);
	U("mixed_extents_lib", s->lib_mixed);
	U("huge_mappable_bytes", s->huge_mappable_bytes);
	U("huge_mappable_lib", s->lib_huge_mappable);
	D("huge_mappable_share",
	  s->guest_bytes ? (double)s->huge_mappable_bytes / (double)s->guest_bytes : 0.0);
	U("vmemmap_lost_bytes", s->vmemmap_lost_bytes);
	U("ept_table_pages", s->ept_table_pages);
	B("terminated", s->terminated);
	I("first_error", s->first_error);
	U("dma_allocs", s->dma_allocs);
	U("dma_alloc_failures", s->dma_alloc_failures);
	U("maps", s->maps);
	U("map_failures", s->map_failures);
	U("gpu_bytes_wanted", s->gpu_bytes_wanted);
	U("gpu_bytes_got", s->gpu_bytes_got);
	U("gpu_failures", s->gpu_failures);
	U("swiotlb_boot_start", s->swiotlb_boot_start);
	U("swiotlb_boot_bytes", s->swiotlb_boot_bytes);
	U("swiotlb_growth_attempts", s->swiotlb_growth_attempts);
	U("swiotlb_growth_failures", s->swiotlb_growth_failures);
	U("swiotlb_dyn_pools", s->swiotlb_dyn_pools);
	U("swiotlb_dyn_bytes", s->swiotlb_dyn_bytes);
	U("swiotlb_transient_pools", s->swiotlb_transient_pools);
	U("swiotlb_used_bytes", s->swiotlb_used_bytes);
	U("checker_rejected", s->checker_rejected);
	U("free_2m_blocks", s->free_2m_blocks);
	U("free_dma32_1m", s->free_dma32_1m);
	U("free_dma32_2m", s->free_dma32_2m);
	U("cma_reserved_bytes", s->cma_reserved_bytes);
	U("cma_shared_bytes", s->cma_shared_bytes);
	U("cma_allocs", s->cma_allocs);
	U("cma_failures", s->cma_failures);
	D("seconds", s->seconds);
#undef U
#undef I
#undef S
#undef B
#undef D
	return n;
}

static void csv_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static int write_csv(const char *path)
{
	struct field fl[MAX_FIELDS];
	FILE *f = fopen(path, "w");
	size_t n;

	if (!f)
		return -errno;
	for (size_t i = 0; i < nrows; i++) {
		n = row_fields(&rows[i], fl);
		if (i == 0)
			for (size_t k = 0; k < n; k++)
				fprintf(f, "%s%s", k ? "," : "", fl[k].name);
		if (i == 0)
			fputc('\n', f);
		for (size_t k = 0; k < n; k++) {
			if (k)
				fputc(',', f);
			switch (fl[k].kind) {
			case F_U64:
				fprintf(f, "%" PRIu64, fl[k].u);
				break;
			case F_I64:
				fprintf(f, "%" PRId64, fl[k].i);
				break;
			case F_STR:
				csv_str(f, fl[k].s);
				break;
			case F_BOOL:
				fputs(fl[k].u ? "1" : "0", f);
				break;
			case F_F64:
				fprintf(f, "%.6f", fl[k].d);
				break;
			}
		}
		fputc('\n', f);
	}
	return fclose(f) ? -errno : 0;
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static int write_json(const char *path)
{
	const struct sim_scenario *b = &opt.base;
	struct field fl[MAX_FIELDS];
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fprintf(f, "{\n  \"tool\": \"cvmconv-sim\",\n  \"cvmconv_version\": ");
	json_str(f, cvmconv_version());
	fprintf(f,
		",\n  \"config\": {\"ram_bytes\": %" PRIu64 ", \"cpus\": %u, \"seed\": %" PRIu64
		", \"policy\": \"%s\", \"populate\": \"%s\", \"swiotlb_dynamic\": %s"
		", \"enforce_checker\": %s},\n",
		b->ram, b->cpus, b->seed, policy_name(b->policy),
		b->populate_all ? "all" : "converted", b->swiotlb_dynamic ? "true" : "false",
		b->enforce_checker ? "true" : "false");
	fprintf(f, "  \"shared_backing\": \"%s\",\n  \"shared_backing_note\": ",
		shared_huge ? "hugetlb-2M" : "shmem");
	json_str(f, backing_note);
	fprintf(f, ",\n  \"hugepages_reserved\": %" PRIu64 ",\n  \"rows\": [\n",
		hugepages_reserved);
	for (size_t i = 0; i < nrows; i++) {
		size_t n = row_fields(&rows[i], fl);

		fputs("    {", f);
		for (size_t k = 0; k < n; k++) {
			fprintf(f, "%s\"%s\": ", k ? ", " : "", fl[k].name);
			switch (fl[k].kind) {
			case F_U64:
				fprintf(f, "%" PRIu64, fl[k].u);
				break;
			case F_I64:
				fprintf(f, "%" PRId64, fl[k].i);
				break;
			case F_STR:
				json_str(f, fl[k].s);
				break;
			case F_BOOL:
				fputs(fl[k].u ? "true" : "false", f);
				break;
			case F_F64:
				fprintf(f, "%.6f", fl[k].d);
				break;
			}
		}
		fprintf(f, "}%s\n", i + 1 < nrows ? "," : "");
	}
	fputs("  ]\n}\n", f);
	return fclose(f) ? -errno : 0;
}

/* ---- main ---- */

/* A row's section header: what ran, and how to replay it (the model's q35
 * layout: 2 GiB below 4 GiB from 2.75 GiB of RAM on, the rest at 4 GiB). */
static void trace_row_header(FILE *f, size_t i, const struct sim_scenario *sc)
{
	uint64_t low = sc->ram >= 0xb0000000ULL ? 2 * GiB : sc->ram;

	fprintf(f, "# row %zu: workload %s, guest %s, platform %s, host %s, RAM %" PRIu64 " MiB\n",
		i, sc->workload, sim_guest_name(sc->guest), platform_name(sc->platform),
		sim_host_name(sc->host), sc->ram / MiB);
	fprintf(f, "# replay: cvmconv-replay --mem %" PRIu64 "M@0", low / MiB);
	if (sc->ram > low)
		fprintf(f, " --mem %" PRIu64 "M@0x100000000", (sc->ram - low) / MiB);
	fprintf(f, " --start %s -b %s --policy %s TRACE\n", sc->populate_all ? "shared" : "private",
		sc->shared_huge ? "hugetlb" : "shmem",
		sc->host != SIM_HOST_QEMU_LIKE ? policy_name(sc->policy) : "allow");
}

int main(int argc, char **argv)
{
	FILE *trace = NULL;
	int rc = EXIT_OK, ret;

	ret = parse_args(argc, argv);
	if (ret)
		return ret;
	ret = plan_rows();
	if (ret)
		return ret;
	if (opt.trace) {
		trace = fopen(opt.trace, "w");
		if (!trace) {
			fprintf(stderr, "cvmconv-sim: %s: %s\n", opt.trace, strerror(errno));
			return EXIT_USAGE;
		}
		fprintf(trace,
			"# cvmconv-sim exit trace (docs/trace-format.md), one section per row.\n"
			"# Replay ONE section with the command in its header; add --touch only\n"
			"# for small guests (it reserves huge pages for, and populates, all of "
			"it).\n");
		if (nrows > 1)
			fprintf(stderr,
				"cvmconv-sim: note: %s holds %zu rows' exits one after another; "
				"replay one row's section at a time\n",
				opt.trace, nrows);
	}
	signal(SIGINT, restore_on_signal);
	signal(SIGTERM, restore_on_signal);
	signal(SIGHUP, restore_on_signal);
	ret = setup_backing();
	if (ret) {
		hugepool_restore();
		return ret;
	}
	for (size_t i = 0; i < nrows; i++) {
		struct row *r = &rows[i];

		r->sc.shared_huge = shared_huge;
		r->sc.trace = trace;
		if (trace)
			trace_row_header(trace, i, &r->sc);
		if (!opt.quiet)
			fprintf(stderr, "cvmconv-sim: [%zu/%zu] %s %s %s %s\n", i + 1, nrows,
				r->sc.workload, sim_guest_name(r->sc.guest),
				platform_name(r->sc.platform), sim_host_name(r->sc.host));
		r->ret = sim_run(&r->sc, &r->res, r->why, sizeof(r->why));
		if (r->ret) {
			fprintf(stderr, "cvmconv-sim: row %zu failed: %s\n", i, r->why);
			rc = EXIT_FAIL;
		} else if (r->res.have_lib &&
			   (r->res.lib_kernel_mismatches || r->res.lib_da != r->res.kernel_da ||
			    r->res.lib_da_peak != r->res.kernel_da_peak ||
			    r->res.lib_mixed != r->res.mixed_extents)) {
			fprintf(stderr,
				"cvmconv-sim: row %zu: cvmconv's figures disagree with the "
				"kernel's "
				"(%" PRIu64 " exits; DA %" PRIu64 " vs %" PRIu64 ", peak %" PRIu64
				" vs %" PRIu64 ", mixed %" PRIu64 " vs %" PRIu64 ")\n",
				i, r->res.lib_kernel_mismatches, r->res.lib_da, r->res.kernel_da,
				r->res.lib_da_peak, r->res.kernel_da_peak, r->res.lib_mixed,
				r->res.mixed_extents);
			rc = EXIT_FAIL;
		}
	}
	hugepool_restore();
	if (trace && fclose(trace)) {
		fprintf(stderr, "cvmconv-sim: %s: %s\n", opt.trace, strerror(errno));
		rc = EXIT_FAIL;
	}
	print_header(stdout);
	print_table(stdout);
	print_guest_table(stdout);
	if (opt.csv && (ret = write_csv(opt.csv))) {
		fprintf(stderr, "cvmconv-sim: %s: %s\n", opt.csv, strerror(-ret));
		rc = EXIT_FAIL;
	}
	if (opt.json && (ret = write_json(opt.json))) {
		fprintf(stderr, "cvmconv-sim: %s: %s\n", opt.json, strerror(-ret));
		rc = EXIT_FAIL;
	}
	free(rows);
	return rc;
}
