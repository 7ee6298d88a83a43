/* SPDX-License-Identifier: MIT */
/* Printing struct cvmconv_stats (see stats_report.h). */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "stats_report.h"

enum unit { COUNT, BYTES, FLAG };

static const struct stats_field {
	const char *name;
	size_t offset;
	enum unit unit;
	const char *meaning;
} fields[] = {
#define F(name, unit, meaning)                                             \
	{                                                                  \
#name, offsetof(struct cvmconv_stats, name), unit, meaning \
	}
	F(exits, COUNT, "guest requests seen (hypercalls and memory faults)"),
	F(rejected, COUNT, "guest requests refused (malformed or by policy)"),
	F(unaligned, COUNT, "guest requests not aligned to the granule"),
	F(to_private_bytes, BYTES, "memory that changed shared -> private"),
	F(to_shared_bytes, BYTES, "memory that changed private -> shared"),
	F(attr_updates, COUNT, "attribute update calls, in place included (and rollbacks)"),
	F(punches, COUNT, "punch / discard calls issued"),
	F(punch_failures, COUNT, "of those, failed (retried by cvmconv_flush)"),
	F(double_alloc_bytes, BYTES, "live on one side while still held on the other"),
	F(double_alloc_peak_bytes, BYTES, "highest double_alloc_bytes seen"),
	F(mixed_extents, COUNT, "2 MiB extents with private and shared pages"),
	F(extents, COUNT, "2 MiB extents tracked"),
	F(guest_bytes, BYTES, "guest memory in registered regions"),
	F(huge_mappable_bytes, BYTES, "memory in whole uniform 2 MiB extents"),
	F(punch_pending_bytes, BYTES, "stale memory still allocated after a failed punch"),
	F(tracker_bytes, BYTES, "heap used by the extent tracker"),
	F(log_suppressed, COUNT, "log lines dropped by the rate limit"),
	F(broken, FLAG, "1 once a rollback failed (stop the VM)"),
	F(bookkeeping_steps, COUNT, "tracker and punch-run lookups, punch calls"),
	F(shared_alloc_failures, COUNT, "requests rolled back: shared backing not allocated"),
	F(gmem_busy_retries, COUNT, "in-place updates tried again: a page had host references"),
	F(gmem_busy_failures, COUNT, "requests rolled back: in-place pages stayed busy"),
#undef F
};

#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

/* A field added to struct cvmconv_stats must be added above (and to
 * docs/stats.md): every member after sz is a uint64_t. */
_Static_assert(offsetof(struct cvmconv_stats, exits) + NFIELDS * sizeof(uint64_t) ==
		       sizeof(struct cvmconv_stats),
	       "stats_report.c does not list every field of struct cvmconv_stats");

static uint64_t field_value(const struct cvmconv_stats *st, const struct stats_field *f)
{
	uint64_t v;

	memcpy(&v, (const char *)st + f->offset, sizeof(v));
	return v;
}

const char *stats_human_bytes(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	unsigned u = 0;
	uint64_t whole = bytes;

	while (whole >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		whole /= 1024;
		u++;
	}
	if (u == 0 || bytes % (1ULL << (10 * u)) == 0)
		snprintf(buf, len, "%" PRIu64 " %s", whole, units[u]);
	else
		snprintf(buf, len, "%.1f %s", (double)bytes / (double)(1ULL << (10 * u)), units[u]);
	return buf;
}

void stats_print_table(FILE *f, const struct cvmconv_stats *st)
{
	for (size_t i = 0; i < NFIELDS; i++) {
		uint64_t v = field_value(st, &fields[i]);
		char human[32] = "";

		if (fields[i].unit == BYTES)
			stats_human_bytes(v, human, sizeof(human));
		fprintf(f, "  %-24s %20" PRIu64 "  %-10s  %s\n", fields[i].name, v, human,
			fields[i].meaning);
	}
}

int stats_write_csv(FILE *f, const struct cvmconv_stats *st)
{
	for (size_t i = 0; i < NFIELDS; i++)
		fprintf(f, "%s%s", i ? "," : "", fields[i].name);
	fputc('\n', f);
	for (size_t i = 0; i < NFIELDS; i++)
		fprintf(f, "%s%" PRIu64, i ? "," : "", field_value(st, &fields[i]));
	fputc('\n', f);
	return ferror(f) ? -EIO : 0;
}

int stats_write_json(FILE *f, struct cvmconv *c)
{
	int need = cvmconv_stats_json(c, NULL, 0);
	char *buf;

	if (need < 0)
		return need;
	buf = malloc((size_t)need + 1);
	if (!buf)
		return -ENOMEM;
	if (cvmconv_stats_json(c, buf, (size_t)need + 1) != need) {
		free(buf); /* counters moved between the calls: cannot happen single-threaded */
		return -EAGAIN;
	}
	fprintf(f, "%s\n", buf);
	free(buf);
	return ferror(f) ? -EIO : 0;
}
