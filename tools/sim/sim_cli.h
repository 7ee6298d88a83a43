/* SPDX-License-Identifier: MIT */
/*
 * cvmconv-sim's command line: the options (sim_options.c), the rows run and
 * their results, and the report (sim_report.c: table, CSV, JSON). One
 * process-wide state, filled by the option parser and main().
 * Thread safety: none (one command line per process).
 */
#ifndef CVMCONV_SIM_CLI_H
#define CVMCONV_SIM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "sim.h"

#define EXIT_OK CLI_EXIT_OK
#define EXIT_FAIL CLI_EXIT_FAIL
#define EXIT_USAGE CLI_EXIT_USAGE

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
	struct cli_output out; /* --csv, --json, -q, -v (verbose: base.verbose) */
	const char *trace;
	bool force_shmem;
};

struct row {
	struct sim_scenario sc;
	struct sim_result res;
	int ret;
	char why[256];
};

/* the command line (filled by sim_options.c), the rows and how their
 * shared side was backed (by cvmconv-sim.c); defined in sim_state.c */
extern struct options opt;
extern struct row *rows;
extern size_t nrows;
extern bool shared_huge;
extern char backing_note[320];
extern uint64_t hugepages_reserved;

/* Fill opt from the command line. Return: 0 or an exit status (usage
 * errors printed; --help exits). */
int sim_parse_args(int argc, char **argv);

/* Names as the table prints them. */
const char *sim_platform_label(enum cvmg_platform p);
const char *sim_policy_label(enum cvmconv_unaligned p);

/* The report of every row (sim_report.c). write_*: 0 or -errno. */
void sim_print_header(FILE *f);
void sim_print_table(FILE *f);
void sim_print_guest_table(FILE *f);
int sim_write_csv(const char *path);
int sim_write_json(const char *path);

#endif /* CVMCONV_SIM_CLI_H */
