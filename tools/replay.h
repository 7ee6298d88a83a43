/* SPDX-License-Identifier: MIT */
/*
 * cvmconv-replay's parts: the options (replay_options.c), the replay
 * (cvmconv-replay.c: reading, layout, one record after another through the
 * host engine, which owns the backings and the host) and the report
 * (replay_report.c). One process-wide state.
 * Thread safety: none (one replay per process).
 */
#ifndef CVMCONV_REPLAY_H
#define CVMCONV_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "cvmconv.h"

#include "cli.h"
#include "host_engine.h"

#define EXIT_OK CLI_EXIT_OK
#define EXIT_FAIL CLI_EXIT_FAIL
#define EXIT_USAGE CLI_EXIT_USAGE

#define PAGE_4K (4 * KiB)

#define MAX_REGIONS HOST_ENGINE_MAX_REGIONS
#define INFER_MAX (1 * TiB)		       /* largest layout inferred without --mem */
#define TRACK_LIMIT_PAGES ((uint64_t)16 << 20) /* per-page cross-check up to 64 GiB */
#define MESSAGES_PER_KIND 20		       /* per-line messages of one kind, unless -v */

enum backing_kind { BACKING_SHMEM, BACKING_HUGETLB, BACKING_HUGETLBFS, BACKING_NONE };
extern const char *const backing_names[4];
/* --host: the engine's hosts (tools/engine/host_engine.h) */
enum replay_host { REPLAY_CVMCONV, REPLAY_INPLACE, REPLAY_QEMU_LIKE };
extern const char *const host_names[3];
extern const char *const policy_names[3];

struct options {
	enum replay_host host;
	uint32_t gmem_busy_every;	  /* in place: every Nth to-private update busy once */
	bool backing_given, policy_given; /* for the checks of replay_parse_options() */
	enum cvmconv_unaligned policy;
	uint64_t granule;
	enum backing_kind backing;
	uint64_t huge_page_size;
	struct {
		uint64_t gpa, size;
	} mem[MAX_REGIONS];
	size_t nmem;
	bool start_private, touch, strict;
	struct cli_output out; /* --csv, --json, -q, -v */
	const char *trace;
};

/* What the replay saw and what became of it. */
struct replay_counts {
	uint64_t lines, blank, other, malformed;
	uint64_t hypercalls, other_hypercalls; /* kvm_hypercall lines; of those nr != 0xc */
	uint64_t map_requests, faults, conversions;
	uint64_t map_refused, faults_refused, conversions_refused;
	uint64_t host_failures;
};

/* A message budget per kind of per-line message. */
struct budget {
	uint64_t used;
	bool announced;
};

#define usage_error(...) cli_usage_error("cvmconv-replay", __VA_ARGS__)

/* the state (replay_state.c): the options, and guest memory with its host
 * (cvmconv over per-region backings, tools/engine/host_engine.h) */
extern struct options opt;
extern struct host_engine eng;

/* Messages (replay_messages.c): a message on stderr after clearing the
 * progress line; the progress line (on a terminal: progress_enabled) at
 * most twice a second; whether a budget allows one more message of a kind. */
extern bool progress_enabled;
extern struct timespec progress_last;
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void clear_progress(void);
void progress(const char *what, uint64_t line, uint64_t done, uint64_t total);
double seconds_since(const struct timespec *t0);
bool spend(struct budget *b, const char *kind);

/* The command line into opt (replay_options.c). Return: 0 or an exit
 * status (usage errors printed; --help and --version exit). */
int replay_parse_options(int argc, char **argv);

/* The report (replay_report.c). */
void replay_print_header(void);
void replay_print_counts(const struct replay_counts *n, double elapsed);
/* The recorder's per-page state against cvmconv_is_private(): EXIT_OK or
 * EXIT_FAIL (a difference or a refused update). */
int replay_cross_check(void);
/* The backings' allocation; with --touch also the kernel's double
 * allocation, which must equal cvmconv's @st->double_alloc_bytes: EXIT_OK
 * or EXIT_FAIL. */
int replay_print_kernel(const struct cvmconv_stats *st);
/* The QEMU-like host's counts in place of cvmconv's statistics. */
void replay_print_baseline(void);
/* --csv and --json: EXIT_OK or EXIT_FAIL. */
int replay_write_outputs(const struct cvmconv_stats *st);

#endif /* CVMCONV_REPLAY_H */
