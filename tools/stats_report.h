/* SPDX-License-Identifier: MIT */
/*
 * struct cvmconv_stats for people and for scripts: a table with units and
 * one line of meaning per field, CSV, and the library's JSON in a file.
 * Field meanings are documented in docs/stats.md.
 */
#ifndef CVMCONV_STATS_REPORT_H
#define CVMCONV_STATS_REPORT_H

#include <stdio.h>

#include "cvmconv.h"

/* Every field of struct cvmconv_stats, one per line:
 * name, value, the value in KiB/MiB/GiB for byte counts, meaning. */
void stats_print_table(FILE *f, const struct cvmconv_stats *st);

/* Two CSV lines: the field names, then the values. Return: 0 or -errno. */
int stats_write_csv(FILE *f, const struct cvmconv_stats *st);

/* cvmconv_stats_json() of @c followed by a newline. Return: 0 or -errno. */
int stats_write_json(FILE *f, struct cvmconv *c);

/* Human-readable byte count ("2.0 MiB", "4 KiB", "0 B") into @buf. */
const char *stats_human_bytes(uint64_t bytes, char *buf, size_t len);

#endif
