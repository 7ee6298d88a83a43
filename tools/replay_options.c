/* SPDX-License-Identifier: MIT */
/* cvmconv-replay's options (see replay.h). */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"
#include "trace_parse.h"

const char *const backing_names[4] = { "shmem", "hugetlb", "hugetlbfs", "none" };
const char *const policy_names[3] = { "allow", "log", "reject" };
const char *const host_names[3] = { "cvmconv", "in-place", "qemu-like" };

/* ---- options ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cvmconv-replay [options] TRACE\n"
		"Replay a conversion trace (kvm:kvm_hypercall text from ftrace, trace-cmd report\n"
		"or perf script, or the map/fault/convert format of docs/trace-format.md)\n"
		"through cvmconv and print its statistics. TRACE '-' reads standard input.\n"
		"\n"
		"      --host cvmconv|in-place|qemu-like\n"
		"                                  cvmconv with two backings (default); in place:\n"
		"                                  CVMCONV_REGION_INPLACE, one guest_memfd per\n"
		"                                  region holding both sides (a shmem memfd\n"
		"                                  stands in; KVM_SET_MEMORY_ATTRIBUTES2 checked\n"
		"                                  with the posted uAPI's rules); qemu-like: the\n"
		"                                  baseline, QEMU's kvm_convert_memory (no "
		"policy,\n"
		"                                  no statistics of its own: --csv and --json\n"
		"                                  apply to cvmconv)\n"
		"      --gmem-busy-every N         in place: every Nth to-private guest_memfd\n"
		"                                  update meets a transient host reference\n"
		"                                  (EAGAIN once, then retried; default 0: never)\n"
		"  -p, --policy allow|log|reject   unaligned guest requests (default allow)\n"
		"  -g, --granule 4k|2m|1g          alignment granule of the policy (default 2m)\n"
		"  -b, --backing shmem|hugetlb|hugetlbfs|none\n"
		"                                  shared side of guest memory (default shmem);\n"
		"                                  the private side is a shmem memfd standing in\n"
		"                                  for guest_memfd\n"
		"      --page-size 2m|1g           huge page size for hugetlb/hugetlbfs (default "
		"2m)\n"
		"  -m, --mem SIZE[@GPA]            a guest memory region (repeatable; K/M/G/T\n"
		"                                  suffixes); default: the smallest 1 GiB-aligned\n"
		"                                  span covering every gpa of the trace\n"
		"      --start shared|private      state of guest memory at start (default "
		"shared)\n"
		"      --touch                     allocate the live side like a guest would (the\n"
		"                                  shared side at start, each side on "
		"conversion);\n"
		"                                  hugetlb backings then need huge pages: as "
		"root,\n"
		"                                  nr_hugepages is raised and restored\n"
		"      --csv FILE                  write the statistics as CSV\n"
		"      --json FILE                 write cvmconv_stats_json() output\n"
		"      --strict                    stop at the first malformed line (exit 1)\n"
		"  -q, --quiet                     no per-line messages but errors\n"
		"  -v, --verbose                   every per-line message and library log line\n"
		"  -h, --help                      this text\n"
		"  -V, --version                   versions\n"
		"Exit status: 0 ok, 1 malformed input under --strict or a host failure,\n"
		"2 usage error.\n");
}

int replay_parse_options(int argc, char **argv)
{
	enum { OPT_PAGE_SIZE = 256, OPT_START, OPT_TOUCH, OPT_STRICT, OPT_HOST, OPT_GMEM_BUSY };
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, OPT_HOST },
		{ "gmem-busy-every", required_argument, NULL, OPT_GMEM_BUSY },
		{ "policy", required_argument, NULL, 'p' },
		{ "granule", required_argument, NULL, 'g' },
		{ "backing", required_argument, NULL, 'b' },
		{ "page-size", required_argument, NULL, OPT_PAGE_SIZE },
		{ "mem", required_argument, NULL, 'm' },
		{ "start", required_argument, NULL, OPT_START },
		{ "touch", no_argument, NULL, OPT_TOUCH },
		CLI_LONGOPTS_OUTPUT,
		{ "strict", no_argument, NULL, OPT_STRICT },
		CLI_LONGOPTS_COMMON,
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "p:g:b:m:qvhV", longopts, NULL)) != -1) {
		uint64_t v, gpa;
		size_t i;

		if (cli_output_option(ch, optarg, &opt.out))
			continue;
		switch (ch) {
		case OPT_HOST:
			for (i = 0; i < 3 && strcmp(optarg, host_names[i]); i++)
				;
			if (i == 3)
				return usage_error(
					"--host %s: expected cvmconv, in-place or qemu-like",
					optarg);
			opt.host = (enum replay_host)i;
			break;
		case OPT_GMEM_BUSY:
			if (!cli_parse_u64(optarg, &v) || v > UINT32_MAX)
				return usage_error("--gmem-busy-every: a number: '%s'", optarg);
			opt.gmem_busy_every = (uint32_t)v;
			break;
		case 'p':
			for (i = 0; i < 3 && strcmp(optarg, policy_names[i]); i++)
				;
			if (i == 3)
				return usage_error("--policy %s: expected allow, log or reject",
						   optarg);
			opt.policy = (enum cvmconv_unaligned)i;
			opt.policy_given = true;
			break;
		case 'g':
			if (trace_parse_size(optarg, strlen(optarg), &v) || v < PAGE_4K ||
			    v > GiB || (v & (v - 1)))
				return usage_error("--granule %s: expected 4k, 2m or 1g (a power "
						   "of two from 4 KiB to 1 GiB)",
						   optarg);
			opt.granule = v;
			opt.policy_given = true;
			break;
		case 'b':
			for (i = 0; i < 4 && strcmp(optarg, backing_names[i]); i++)
				;
			if (i == 4)
				return usage_error("--backing %s: expected shmem, hugetlb, "
						   "hugetlbfs or none",
						   optarg);
			opt.backing = (enum backing_kind)i;
			opt.backing_given = true;
			break;
		case OPT_PAGE_SIZE:
			if (trace_parse_size(optarg, strlen(optarg), &v) ||
			    (v != 2 * MiB && v != GiB))
				return usage_error("--page-size %s: expected 2m or 1g", optarg);
			opt.huge_page_size = v;
			break;
		case 'm':
			if (opt.nmem == MAX_REGIONS)
				return usage_error("at most %d --mem regions", MAX_REGIONS);
			if (trace_parse_mem(optarg, &v, &gpa) || v == 0)
				return usage_error("--mem %s: expected SIZE[@GPA], e.g. 4G or "
						   "512M@0x100000000",
						   optarg);
			if ((v | gpa) & (PAGE_4K - 1))
				return usage_error("--mem %s: size and gpa must be multiples of "
						   "4 KiB",
						   optarg);
			opt.mem[opt.nmem].size = v;
			opt.mem[opt.nmem].gpa = gpa;
			opt.nmem++;
			break;
		case OPT_START:
			if (strcmp(optarg, "shared") && strcmp(optarg, "private"))
				return usage_error("--start %s: expected shared or private",
						   optarg);
			opt.start_private = !strcmp(optarg, "private");
			break;
		case OPT_TOUCH:
			opt.touch = true;
			break;
		case OPT_STRICT:
			opt.strict = true;
			break;
		case 'h':
			usage(stdout);
			exit(EXIT_OK);
		case 'V':
			printf("cvmconv-replay %s (library %s)\n", CVMCONV_VERSION_STRING,
			       cvmconv_version());
			exit(EXIT_OK);
		default:
			return usage_error("unknown option");
		}
	}
	if (optind + 1 != argc)
		return usage_error(optind == argc ? "no TRACE given" : "more than one TRACE given");
	opt.trace = argv[optind];
	if (opt.out.quiet && opt.out.verbose)
		return usage_error("--quiet and --verbose exclude each other");
	if (opt.host == REPLAY_INPLACE && opt.backing_given)
		return usage_error(
			"--host in-place holds both sides in one guest_memfd per region: "
			"--backing does not apply");
	if (opt.gmem_busy_every && opt.host != REPLAY_INPLACE)
		return usage_error("--gmem-busy-every needs --host in-place");
	if (opt.host == REPLAY_QEMU_LIKE) {
		if (opt.policy_given)
			return usage_error("--host qemu-like has no policy: --policy and --granule "
					   "apply to cvmconv");
		if (opt.out.csv || opt.out.json)
			return usage_error("--csv and --json write cvmconv's statistics: not with "
					   "--host qemu-like");
		if (opt.backing == BACKING_NONE)
			return usage_error("--host qemu-like needs a shared backing (QEMU's RAM "
					   "block): not --backing none");
	}
	return 0;
}
