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
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cvmconv.h"
#include <cvmconv/guest.h>

#include "hugepool.h"
#include "kernel_accounting.h"
#include "sim_cli.h"

#define usage_error(...) cli_usage_error("cvmconv-sim", __VA_ARGS__)

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
		avail = meminfo_count("MemAvailable:");
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
		avail = meminfo_count("MemAvailable:");
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

/* ---- main ---- */

/* A row's section header: what ran, and how to replay it (the model's q35
 * layout: 2 GiB below 4 GiB from 2.75 GiB of RAM on, the rest at 4 GiB). */
static void trace_row_header(FILE *f, size_t i, const struct sim_scenario *sc)
{
	uint64_t low = sc->ram >= 0xb0000000ULL ? 2 * GiB : sc->ram;

	fprintf(f, "# row %zu: workload %s, guest %s, platform %s, host %s, RAM %" PRIu64 " MiB\n",
		i, sc->workload, sim_guest_name(sc->guest), sim_platform_label(sc->platform),
		sim_host_name(sc->host), sc->ram / MiB);
	fprintf(f, "# replay: cvmconv-replay --mem %" PRIu64 "M@0", low / MiB);
	if (sc->ram > low)
		fprintf(f, " --mem %" PRIu64 "M@0x100000000", (sc->ram - low) / MiB);
	fprintf(f, " --start %s -b %s --policy %s TRACE\n", sc->populate_all ? "shared" : "private",
		sc->shared_huge ? "hugetlb" : "shmem",
		sc->host != SIM_HOST_QEMU_LIKE ? sim_policy_label(sc->policy) : "allow");
}

int main(int argc, char **argv)
{
	FILE *trace = NULL;
	int rc = EXIT_OK, ret;

	ret = sim_parse_args(argc, argv);
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
	hugepool_restore_on_signals();
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
		if (!opt.out.quiet)
			fprintf(stderr, "cvmconv-sim: [%zu/%zu] %s %s %s %s\n", i + 1, nrows,
				r->sc.workload, sim_guest_name(r->sc.guest),
				sim_platform_label(r->sc.platform), sim_host_name(r->sc.host));
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
	sim_print_header(stdout);
	sim_print_table(stdout);
	sim_print_guest_table(stdout);
	if (opt.out.csv && (ret = sim_write_csv(opt.out.csv))) {
		fprintf(stderr, "cvmconv-sim: %s: %s\n", opt.out.csv, strerror(-ret));
		rc = EXIT_FAIL;
	}
	if (opt.out.json && (ret = sim_write_json(opt.out.json))) {
		fprintf(stderr, "cvmconv-sim: %s: %s\n", opt.out.json, strerror(-ret));
		rc = EXIT_FAIL;
	}
	free(rows);
	return rc;
}
