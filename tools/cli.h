/* SPDX-License-Identifier: MIT */
/*
 * The command-line and table helpers the tools share (cvmconv-sim,
 * cvmconv-replay): usage errors, numbers and sizes, comma lists, human
 * sizes, and per-row fields written as CSV or JSON.
 */
#ifndef CVMCONV_TOOLS_CLI_H
#define CVMCONV_TOOLS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Binary size units of the command lines. */
#define KiB ((uint64_t)1024)
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)
#define TiB (1024 * GiB)

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

/* The options every tool has: --csv FILE, --json FILE, -q, -v. Their
 * getopt_long() entries (CLI_LONGOPTS_OUTPUT: the long-only two, with the
 * values below; CLI_LONGOPTS_COMMON: --quiet, --verbose, --help) and
 * cli_output_option() to take them. */
enum { CLI_OPT_CSV = 0x1000, CLI_OPT_JSON };
#define CLI_LONGOPTS_OUTPUT                                   \
	{ "csv", required_argument, NULL, CLI_OPT_CSV },      \
	{                                                     \
		"json", required_argument, NULL, CLI_OPT_JSON \
	}
#define CLI_LONGOPTS_COMMON                                                         \
	{ "quiet", no_argument, NULL, 'q' }, { "verbose", no_argument, NULL, 'v' }, \
	{                                                                           \
		"help", no_argument, NULL, 'h'                                      \
	}

struct cli_output {
	const char *csv, *json; /* files to write, or NULL */
	bool quiet, verbose;
};

/**
 * cli_output_option() - take getopt_long()'s @ch (with @arg) if it is one
 * of the options every tool has.
 * Return: true when it was (stored in @o), false for any other option.
 * Thread safety: thread-safe if @o is the caller's.
 */
bool cli_output_option(int ch, const char *arg, struct cli_output *o);

/**
 * cli_usage_error() - print "PROG: message" and "(PROG --help shows the
 * options)" to stderr.
 * Return: CLI_EXIT_USAGE.
 * Thread safety: thread-safe (stdio locking).
 */
int cli_usage_error(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * cli_parse_u64() - a whole number (decimal, 0x hex, 0 octal), no sign, no
 * trailing text.
 * Return: false when @s is not one or overflows.
 * Thread safety: thread-safe.
 */
bool cli_parse_u64(const char *s, uint64_t *out);

/**
 * cli_parse_size() - a size: a number with an optional K, M, G or T suffix
 * (binary; "KiB", "KB" spellings accepted).
 * Return: false when @s is not one or overflows.
 * Thread safety: thread-safe.
 */
bool cli_parse_size(const char *s, uint64_t *out);

/**
 * cli_each_item() - split @list on commas and call @one for each item.
 * Return: 0, the first non-zero @one result, or CLI_EXIT_USAGE (with a
 * message naming @prog) when @list is longer than 511 characters.
 * Thread safety: thread-safe if @one is.
 */
int cli_each_item(const char *prog, const char *list, int (*one)(const char *item));

/**
 * cli_human() - @b bytes as "0", "512K", "1.5M" or "2.00G" in @buf.
 * Return: @buf.
 * Thread safety: thread-safe.
 */
const char *cli_human(uint64_t b, char *buf, size_t len);

/* One named value of a row. */
enum cli_field_kind { CLI_F_U64, CLI_F_I64, CLI_F_STR, CLI_F_BOOL, CLI_F_F64 };
struct cli_field {
	const char *name;
	enum cli_field_kind kind;
	uint64_t u; /* CLI_F_U64, CLI_F_BOOL */
	int64_t i;
	const char *s;
	double d;
};

/** cli_csv_str(), cli_json_str() - @s quoted for CSV ("" doubles a quote)
 * or JSON (\" \\ \u00XX). Thread safety: thread-safe. */
void cli_csv_str(FILE *f, const char *s);
void cli_json_str(FILE *f, const char *s);

/**
 * cli_fields_csv() - one CSV line of @f[0 .. @n): the names with @header,
 * else the values (booleans 1/0, doubles %.6f).
 * Thread safety: thread-safe (stdio locking).
 */
void cli_fields_csv(FILE *out, const struct cli_field *f, size_t n, bool header);

/**
 * cli_fields_json() - @f[0 .. @n) as one JSON object on one line, without
 * a newline ({"name": value, ...}).
 * Thread safety: thread-safe (stdio locking).
 */
void cli_fields_json(FILE *out, const struct cli_field *f, size_t n);

#endif /* CVMCONV_TOOLS_CLI_H */
