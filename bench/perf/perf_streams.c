/* SPDX-License-Identifier: MIT */
/*
 * perf_streams: kernel calls and double allocation per exit stream, for
 * cvmconv, the QEMU-like baseline and the oracle, in the same run.
 *
 * Streams: the guest model (mainline guest, 16 GiB, 4 CPUs) booting and
 * running devices bring-up, runtime churn and a GPU-like workload, shaped
 * for SNP, TDX and KVM PV; a 1 GiB TDX MapGPA, 2 MiB aligned and 4 KiB
 * misaligned; random 4 KiB toggles; SNP page state changes of 253 mixed
 * entries (cvmconv_convert_batch() for cvmconv).
 *
 * Table 1, kernel calls: attribute updates and punches, cvmconv against
 * the oracle's minimum (must be equal) and the baseline.
 * Table 2, double allocation on a real MFD_HUGETLB shared side, measured by
 * the kernel (st_blocks after every exit, HugePages_Free at the end) and by
 * cvmconv: final and peak, against the oracle and the baseline.
 * Table 3, the in-place host (one guest_memfd for both sides) beside the
 * two: attribute updates, punches, double allocation.
 *
 *   perf_streams [--quick] [--check] [--tables calls,dalloc] [--shared hugetlb|shmem]
 *                [--only SUBSTRING] [--series FILE [--series-stream NAME]] [--diag N]
 *
 * --check: exit status 1 when cvmconv's kernel calls or final double
 * allocation differ from the oracle's (the ctest bench_smoke).
 * Needs root for huge pages (raised and restored, tools/hugepool.h);
 * without them the double allocation table is skipped, saying why.
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
#include "private_backing.h"
#include "perf.h"

#define MAX_STREAMS 24
#define MIB(x) ((double)(x) / (1 << 20))

struct opts {
	bool quick, check, calls, dalloc, huge;
	const char *only, *series, *series_stream;
	unsigned diag;
};

struct row {
	struct perf_stream s;
	uint64_t units_ever;
	bool skip;
};

static int build_streams(const struct opts *op, struct row *rows, size_t *n)
{
	static const enum cvmg_platform plats[] = { CVMG_PLATFORM_SNP, CVMG_PLATFORM_TDX,
						    CVMG_PLATFORM_KVM_PV };
	uint64_t ram = op->quick ? 4 * PERF_1G : 16 * PERF_1G;
	uint32_t cpus = op->quick ? 2 : 4;
	uint64_t hi = 4 * PERF_1G + PERF_1G; /* synthetic streams: above 4 GiB */
	char name[40];
	int ret;

	*n = 0;
	for (size_t p = 0; p < 3; p++) {
		for (int w = 0; w < PERF_WL_COUNT; w++) {
			struct perf_stream *s = &rows[*n].s;

			if (op->quick && w != PERF_WL_DEVICES && w != PERF_WL_CHURN)
				continue;
			snprintf(name, sizeof(name), "%s/%s", cvmg_platform_name(plats[p]),
				 perf_workload_name((enum perf_workload)w));
			if (op->only && !strstr(name, op->only))
				continue;
			ret = perf_stream_init(s, name, ram);
			if (!ret)
				ret = perf_gen_guest(s, plats[p], (enum perf_workload)w, cpus,
						     op->quick ? 300 : 0);
			if (ret) {
				fprintf(stderr, "%s: guest model: %s\n", name, strerror(-ret));
				return ret;
			}
			(*n)++;
		}
	}
	{
		uint64_t size = op->quick ? 64ULL << 20 : PERF_1G;
		const char *sz = op->quick ? "64m" : "1g";
		struct {
			const char *suffix;
			uint64_t gpa;
		} tdx[] = { { "aligned", hi }, { "misaligned", hi + PERF_4K } };

		for (size_t k = 0; k < 2; k++) {
			snprintf(name, sizeof(name), "tdx-%s-%s", sz, tdx[k].suffix);
			if (op->only && !strstr(name, op->only))
				continue;
			ret = perf_stream_init(&rows[*n].s, name, ram);
			if (!ret)
				ret = perf_gen_tdx_mapgpa(&rows[*n].s, tdx[k].gpa, size);
			if (ret)
				return ret;
			(*n)++;
		}
	}
	if (!op->only || strstr("random-4k", op->only)) {
		ret = perf_stream_init(&rows[*n].s, "random-4k", ram);
		if (!ret)
			ret = perf_gen_random_4k(&rows[*n].s, hi, op->quick ? 64ULL << 20 : PERF_1G,
						 op->quick ? 2000 : 20000, 1);
		if (ret)
			return ret;
		(*n)++;
	}
	if (!op->only || strstr("snp-psc-253", op->only)) {
		ret = perf_stream_init(&rows[*n].s, "snp-psc-253", ram);
		if (!ret)
			ret = perf_gen_psc(&rows[*n].s, hi, op->quick ? 128ULL << 20 : 256ULL << 20,
					   op->quick ? 20 : 200, 253, 1);
		if (ret)
			return ret;
		(*n)++;
	}
	return 0;
}

static void ratio(char *buf, size_t len, uint64_t base, uint64_t ours)
{
	if (ours)
		snprintf(buf, len, "%.2f", (double)base / (double)ours);
	else
		snprintf(buf, len, "%s", base ? "inf" : "-");
}

static void on_signal(int sig)
{
	hugepool_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

struct outcome {
	struct perf_oracle o;
	struct perf_host_result cv, base, ip;
	int cv_err, base_err, ip_err;
	bool dalloc;
};

static bool calls_equal(const struct outcome *x)
{
	return !x->cv_err && x->cv.attr_calls == x->o.attr &&
	       x->cv.punch_shared == x->o.punch_shared &&
	       x->cv.punch_private == x->o.punch_private && !x->cv.exits_attr_above &&
	       !x->cv.exits_punch_above && !x->cv.exits_below;
}

static bool da_equal(const struct outcome *x)
{
	uint64_t want = x->o.da_pages * PERF_4K;

	return !x->cv_err && x->cv.lib_da == want && x->cv.kernel_da == want &&
	       (x->cv.hp_da < 0 || (uint64_t)x->cv.hp_da == want);
}

static void print_calls(const struct row *rw, const struct outcome *x)
{
	char r1[16], r2[16], eq[24];
	uint64_t cp = x->cv.punch_shared + x->cv.punch_private;
	uint64_t op = x->o.punch_shared + x->o.punch_private;
	uint64_t bp = x->base.punch_shared + x->base.punch_private;

	ratio(r1, sizeof(r1), x->base.attr_calls, x->cv.attr_calls);
	ratio(r2, sizeof(r2), bp, cp);
	if (x->cv_err || x->base_err)
		snprintf(eq, sizeof(eq), "run failed");
	else if (calls_equal(x))
		snprintf(eq, sizeof(eq), "yes");
	else
		snprintf(eq, sizeof(eq), "NO (%" PRIu64 " exits)",
			 x->cv.exits_attr_above + x->cv.exits_punch_above + x->cv.exits_below);
	printf("%-20s %7zu | %7" PRIu64 " %7" PRIu64 " %8" PRIu64 " %6s | %7" PRIu64 " %7" PRIu64
	       " %8" PRIu64 " %6s | %7" PRIu64 " | %s\n",
	       rw->s.name, rw->s.nexits, x->o.attr, x->cv.attr_calls, x->base.attr_calls, r1, op,
	       cp, bp, r2, x->o.punch_bridged, eq);
}

static void print_da(const struct row *rw, const struct outcome *x)
{
	char hp[16], bhp[16], r[16], eq[16];

	if (x->cv.hp_da >= 0)
		snprintf(hp, sizeof(hp), "%.2f", MIB(x->cv.hp_da));
	else
		snprintf(hp, sizeof(hp), "n/a");
	if (x->base.hp_da >= 0)
		snprintf(bhp, sizeof(bhp), "%.2f", MIB(x->base.hp_da));
	else
		snprintf(bhp, sizeof(bhp), "n/a");
	ratio(r, sizeof(r), x->base.kernel_da, x->cv.kernel_da);
	snprintf(eq, sizeof(eq), "%s",
		 x->cv_err || x->base_err ? "run failed"
		 : da_equal(x)		  ? "yes"
					  : "NO");
	printf("%-20s | %8.2f %8.2f %8.2f %8s | %8.2f %8s %6s | %8.2f %8.2f %8.2f | %s\n",
	       rw->s.name, MIB(x->o.da_pages * PERF_4K), MIB(x->cv.lib_da), MIB(x->cv.kernel_da),
	       hp, MIB(x->base.kernel_da), bhp, r, MIB(x->o.da_peak_pages * PERF_4K),
	       MIB(x->cv.kernel_da_peak), MIB(x->base.kernel_da_peak), eq);
}

/* The in-place host beside the two others: every kernel call and the
 * double allocation of one guest_memfd holding both sides. */
static void print_inplace(const struct row *rw, const struct outcome *x)
{
	if (x->ip_err) {
		printf("%-20s | run failed: %s\n", rw->s.name, x->ip.why);
		return;
	}
	printf("%-20s %7zu | %8" PRIu64 " %7" PRIu64 " %8" PRIu64 " | %8" PRIu64 " %7" PRIu64
	       " %8" PRIu64 " | %8.2f %7.2f %8.2f | %8.2f %7.2f %8.2f | %s\n",
	       rw->s.name, rw->s.nexits, x->base.attr_calls, x->cv.attr_calls, x->ip.attr_calls,
	       x->base.punch_shared + x->base.punch_private,
	       x->cv.punch_shared + x->cv.punch_private, x->ip.punch_shared + x->ip.punch_private,
	       MIB(x->base.kernel_da), MIB(x->cv.kernel_da), MIB(x->ip.kernel_da),
	       MIB(x->base.kernel_da_peak), MIB(x->cv.kernel_da_peak), MIB(x->ip.kernel_da_peak),
	       x->ip.state_matches_oracle ? "yes" : "NO");
}

static int write_series(const char *path, const struct row *rw, const struct outcome *x,
			const uint64_t *cv, const uint64_t *base)
{
	FILE *f = fopen(path, "w");

	if (!f) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -errno;
	}
	fprintf(f, "# double allocation after each exit of %s (%s), MiB\n", rw->s.name,
		rw->s.shape);
	fprintf(f,
		"# written by perf_streams --series; plotted by bench/perf/plot/double-alloc.gp\n");
	for (int m = 0; m < rw->s.nmarks; m++)
		fprintf(f, "# mark %zu %s\n", rw->s.marks[m].at, rw->s.marks[m].label);
	fprintf(f, "# exit oracle cvmconv baseline (rows where nothing changed are left out)\n");
	for (size_t i = 0; i < rw->s.nexits; i++) {
		uint64_t o = x->o.per_exit[i].da_pages * PERF_4K;

		if (i && i + 1 < rw->s.nexits && o == x->o.per_exit[i - 1].da_pages * PERF_4K &&
		    cv[i] == cv[i - 1] && base[i] == base[i - 1])
			continue;
		fprintf(f, "%zu %.4f %.4f %.4f\n", i + 1, MIB(o), MIB(cv[i]), MIB(base[i]));
	}
	fclose(f);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: perf_streams [--quick] [--check] [--tables calls,dalloc]\n"
			"                    [--shared hugetlb|shmem] [--only SUBSTRING]\n"
			"                    [--series FILE [--series-stream NAME]] [--diag N]\n");
	exit(2);
}

static void parse(int argc, char **argv, struct opts *op)
{
	static const struct option lo[] = { { "quick", no_argument, NULL, 'q' },
					    { "check", no_argument, NULL, 'c' },
					    { "tables", required_argument, NULL, 't' },
					    { "shared", required_argument, NULL, 's' },
					    { "only", required_argument, NULL, 'o' },
					    { "series", required_argument, NULL, 'S' },
					    { "series-stream", required_argument, NULL, 'N' },
					    { "diag", required_argument, NULL, 'd' },
					    { "help", no_argument, NULL, 'h' },
					    { NULL, 0, NULL, 0 } };
	int ch;

	*op = (struct opts){
		.calls = true, .dalloc = true, .huge = true, .series_stream = "snp/churn", .diag = 3
	};
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'q':
			op->quick = true;
			break;
		case 'c':
			op->check = true;
			break;
		case 't':
			op->calls = strstr(optarg, "calls") != NULL;
			op->dalloc = strstr(optarg, "dalloc") != NULL;
			if (!op->calls && !op->dalloc)
				usage();
			break;
		case 's':
			if (strcmp(optarg, "hugetlb") && strcmp(optarg, "shmem"))
				usage();
			op->huge = !strcmp(optarg, "hugetlb");
			break;
		case 'o':
			op->only = optarg;
			break;
		case 'S':
			op->series = optarg;
			break;
		case 'N':
			op->series_stream = optarg;
			break;
		case 'd':
			op->diag = (unsigned)strtoul(optarg, NULL, 0);
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (!op->huge)
		op->dalloc = false; /* nothing to measure: a 4 KiB side is punched at once */
}

int main(int argc, char **argv)
{
	static struct row rows[MAX_STREAMS];
	static struct outcome out[MAX_STREAMS];
	struct opts op;
	size_t n;
	uint64_t need = 0;
	bool touch, failed = false;
	char why[256] = "";
	uint64_t *series_cv = NULL, *series_base = NULL;

	parse(argc, argv, &op);
	perf_print_machine(stdout);
	if (build_streams(&op, rows, &n))
		return 1;
	/* huge pages: the most any host can hold at once is every unit ever
	 * made shared (the baseline never frees a shared huge page) */
	for (size_t i = 0; i < n; i++) {
		struct perf_oracle o;
		int ret = perf_oracle_run(&o, &rows[i].s, op.huge ? PERF_2M : PERF_4K);

		if (ret) {
			fprintf(stderr, "%s: oracle: %s\n", rows[i].s.name, strerror(-ret));
			return 1;
		}
		rows[i].units_ever = o.units_ever;
		if (o.units_ever > need)
			need = o.units_ever;
		perf_oracle_free(&o);
	}
	touch = op.dalloc;
	if (touch) {
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
		if (hugepool_reserve(PERF_2M, need + 8, why, sizeof(why))) {
			printf("double allocation: skipped: %s\n", why);
			touch = op.dalloc = false;
		}
	}
	printf("streams: %zu; shared side %s%s", n, op.huge ? "MFD_HUGETLB 2 MiB" : "shmem 4 KiB",
	       touch ? ", touched as the guest would" : ", not touched");
	if (touch)
		printf("; huge pages needed at most %" PRIu64, need);
	printf("\n");
	for (size_t i = 0; i < n; i++) {
		struct row *rw = &rows[i];
		struct outcome *x = &out[i];
		struct perf_host_opts ho = {
			.huge_shared = op.huge, .touch = touch, .diag = stdout, .max_diag = op.diag
		};
		bool series = op.series && touch && !strcmp(rw->s.name, op.series_stream);
		int ret = perf_oracle_run(&x->o, &rw->s, op.huge ? PERF_2M : PERF_4K);

		if (ret)
			return 1;
		printf("\n%s: %s, %zu exits\n", rw->s.name, rw->s.shape, rw->s.nexits);
		if (series) {
			series_cv = calloc(rw->s.nexits, sizeof(uint64_t));
			series_base = calloc(rw->s.nexits, sizeof(uint64_t));
			if (!series_cv || !series_base)
				return 1;
		}
		ho.series = series ? series_cv : NULL;
		x->cv_err = perf_host_run_isolated(PERF_HOST_CVMCONV, &rw->s, &x->o, &ho, &x->cv);
		ho.series = series ? series_base : NULL;
		ho.diag = NULL;
		x->base_err =
			perf_host_run_isolated(PERF_HOST_BASELINE, &rw->s, &x->o, &ho, &x->base);
		x->ip_err = perf_host_run_isolated(PERF_HOST_INPLACE, &rw->s, &x->o, &ho, &x->ip);
		if (x->ip_err)
			printf("  in-place run failed: %s\n", x->ip.why);
		x->dalloc = touch;
		if (x->cv_err)
			printf("  cvmconv run failed: %s\n", x->cv.why);
		if (x->base_err)
			printf("  baseline run failed: %s\n", x->base.why);
		if ((!x->cv_err && !x->cv.state_matches_oracle) ||
		    (!x->base_err && !x->base.state_matches_oracle))
			printf("  final attributes differ from the oracle's (cvmconv %s, baseline "
			       "%s)\n",
			       x->cv.state_matches_oracle ? "same" : "DIFFERENT",
			       x->base.state_matches_oracle ? "same" : "DIFFERENT");
		if (touch && (x->cv.lib_da_off_oracle || x->cv.kernel_da_off_oracle))
			printf("  double allocation off the oracle after %" PRIu64
			       " exits (library) / %" PRIu64 " exits (kernel)\n",
			       x->cv.lib_da_off_oracle, x->cv.kernel_da_off_oracle);
		if (x->cv.punch_adjacent || x->cv.punch_relive)
			printf("  cvmconv shared-side punches beyond the minimum: %" PRIu64
			       " contiguous with the previous punch of the same exit, %" PRIu64
			       " of a huge page live again when the exit ends\n",
			       x->cv.punch_adjacent, x->cv.punch_relive);
		printf("  cvmconv %.2f s, baseline %.2f s, in place %.2f s\n", x->cv.seconds,
		       x->base.seconds, x->ip.seconds);
		if (series && write_series(op.series, rw, x, series_cv, series_base))
			failed = true;
		if (x->cv_err || x->base_err || !x->cv.state_matches_oracle ||
		    !x->base.state_matches_oracle || !calls_equal(x) || (touch && !da_equal(x)))
			failed = true;
		/* in place: the same attributes, never a punch, never a second copy */
		if (x->ip_err || !x->ip.state_matches_oracle || x->ip.punch_shared ||
		    x->ip.punch_private || x->ip.lib_da_peak || x->ip.kernel_da_peak)
			failed = true;
	}
	if (op.calls) {
		printf("\nKernel calls per stream (shared side %s). min = the oracle's minimum; "
		       "b/c = baseline / cvmconv;\nmin* = punches when a punch may also cover "
		       "stale units already free; = : cvmconv equals min in every exit\n",
		       op.huge ? "2 MiB MFD_HUGETLB" : "4 KiB shmem");
		printf("%-20s %7s | %-30s | %-30s | %7s |\n", "", "", "attribute updates",
		       "punches (shared + private)", "");
		printf("%-20s %7s | %7s %7s %8s %6s | %7s %7s %8s %6s | %7s | %s\n", "stream",
		       "exits", "min", "cvmconv", "baseline", "b/c", "min", "cvmconv", "baseline",
		       "b/c", "min*", "=");
		for (size_t i = 0; i < n; i++)
			print_calls(&rows[i], &out[i]);
	}
	if (op.dalloc) {
		printf("\nDouble allocation (MiB) on a 2 MiB MFD_HUGETLB shared side; cvmconv: "
		       "lib = double_alloc_bytes,\nst_b = st_blocks - live shared, HP = "
		       "HugePages_Free drop x 2 MiB - live shared; baseline measured likewise;\n"
		       "b/c = baseline / cvmconv (final, st_blocks); peaks from st_blocks after "
		       "every exit; = : cvmconv final equals min\n");
		printf("%-20s | %-35s | %-24s | %-26s |\n", "", "final: min / cvmconv lib st_b HP",
		       "baseline st_b HP  b/c", "peak: min cvmconv baseline");
		printf("%-20s | %8s %8s %8s %8s | %8s %8s %6s | %8s %8s %8s | %s\n", "stream",
		       "min", "lib", "st_b", "HP", "st_b", "HP", "b/c", "min", "cvmconv",
		       "baseline", "=");
		for (size_t i = 0; i < n; i++)
			print_da(&rows[i], &out[i]);
	}
	printf("\nIn place (CVMCONV_REGION_INPLACE: one guest_memfd, %s, holds both sides) "
	       "beside the baseline and\ntwo-backing cvmconv: kernel calls (attribute updates: "
	       "KVM_SET_MEMORY_ATTRIBUTES2 for in place),\npunches, and the double allocation "
	       "the kernel measures (MiB; %s); = : in-place attributes equal the oracle's\n",
	       private_backing_name(),
	       touch ? "in place: resident pages of the file beyond one per gpa"
		     : "not measured: nothing touched");
	printf("%-20s %7s | %-26s | %-26s | %-26s | %-26s |\n", "", "", "attribute updates",
	       "punches", "final DA", "peak DA");
	printf("%-20s %7s | %8s %7s %8s | %8s %7s %8s | %8s %7s %8s | %8s %7s %8s | %s\n", "stream",
	       "exits", "baseline", "cvmconv", "in-place", "baseline", "cvmconv", "in-place",
	       "baseline", "cvmconv", "in-place", "baseline", "cvmconv", "in-place", "=");
	for (size_t i = 0; i < n; i++)
		print_inplace(&rows[i], &out[i]);
	for (size_t i = 0; i < n; i++) {
		perf_oracle_free(&out[i].o);
		perf_stream_free(&rows[i].s);
	}
	free(series_cv);
	free(series_base);
	hugepool_restore();
	if (op.check)
		printf("\ncheck: %s\n",
		       failed ? "FAILED (cvmconv differs from the oracle, or a run "
				"failed; see above)"
			      : "cvmconv equals the oracle on every stream");
	return op.check && failed ? 1 : 0;
}
