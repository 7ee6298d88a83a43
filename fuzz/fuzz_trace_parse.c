/* SPDX-License-Identifier: MIT */
/*
 * fuzz_trace_parse: the conversion trace parser of tools/trace_parse.h under
 * libFuzzer. The input is one line (not NUL-terminated: it is copied to a
 * heap buffer of exactly its length, so ASan sees any read past it).
 *
 * Checked, beyond "no crash, no sanitizer report":
 *  - the record is well formed: a known kind; a malformed one has an error
 *    text without a trailing newline and a column inside the line (or just
 *    past its end, where a missing token was due);
 *  - parsing is deterministic;
 *  - a trailing "\n" or "\r\n" changes nothing (trace_parse.h);
 *  - every decoded request prints back to a line that parses to the same
 *    values (own format, and the kvm_hypercall tracepoint text);
 *  - trace_record_range() agrees with an independent computation of the
 *    range and never returns one that wraps or ends beyond 2^52;
 *  - trace_parse_u64/size/mem on the same bytes: a number that parses
 *    prints back to itself; size units are powers of 1024.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "trace_parse.h"

#define GPA_LIMIT (1ULL << 52)

#define CHECK(cond, ...) FZ_CHECK("fuzz_trace_parse", cond, __VA_ARGS__)

static bool same_record(const struct trace_record *a, const struct trace_record *b)
{
	if (a->kind != b->kind)
		return false;
	switch (a->kind) {
	case TRACE_HYPERCALL:
		return a->nr == b->nr && !memcmp(a->a, b->a, sizeof(a->a));
	case TRACE_MAP:
		return a->gpa == b->gpa && a->npages == b->npages && a->attrs == b->attrs;
	case TRACE_FAULT:
	case TRACE_CONVERT:
		return a->gpa == b->gpa && a->size == b->size && a->to_private == b->to_private;
	case TRACE_MALFORMED:
		return a->column == b->column && a->error && b->error &&
		       !strcmp(a->error, b->error);
	default:
		return true;
	}
}

static struct trace_record parse(const char *s, size_t len)
{
	struct trace_record rec;
	/* an exact-size heap copy: reads past @len are caught */
	char *copy = malloc(len ? len : 1);
	enum trace_kind kind;

	CHECK(copy != NULL, "malloc");
	memcpy(copy, s, len);
	memset(&rec, 0xa5, sizeof(rec));
	kind = trace_parse_line(copy, len, &rec);
	free(copy);
	CHECK(kind == rec.kind, "returned %d, record says %d", kind, rec.kind);
	return rec;
}

static void check_record(const struct trace_record *rec, size_t len)
{
	CHECK(rec->kind >= TRACE_BLANK && rec->kind <= TRACE_MALFORMED, "kind %d", rec->kind);
	if (rec->kind == TRACE_MALFORMED) {
		size_t n;

		CHECK(rec->error != NULL, "malformed without an error text");
		n = strlen(rec->error);
		CHECK(n > 0 && n < 256 && rec->error[n - 1] != '\n', "error text \"%s\"",
		      rec->error);
		CHECK(rec->column >= 1 && rec->column <= len + 1, "column %zu of a %zu-byte line",
		      rec->column, len);
	}
}

/* The range a record names, computed here without the parser's helper. */
static bool expected_range(const struct trace_record *rec, uint64_t *gpa, uint64_t *size)
{
	uint64_t start, bytes;

	switch (rec->kind) {
	case TRACE_HYPERCALL:
	case TRACE_MAP: {
		uint64_t np = rec->kind == TRACE_MAP ? rec->npages : rec->a[1];

		if (rec->kind == TRACE_HYPERCALL && rec->nr != TRACE_HC_MAP_GPA_RANGE)
			return false;
		start = rec->kind == TRACE_MAP ? rec->gpa : rec->a[0];
		if (!np || np > GPA_LIMIT / 4096)
			return false;
		bytes = np * 4096;
		break;
	}
	case TRACE_FAULT:
	case TRACE_CONVERT:
		start = rec->gpa;
		bytes = rec->size;
		break;
	default:
		return false;
	}
	if (!bytes || bytes > GPA_LIMIT || start > GPA_LIMIT - bytes)
		return false;
	*gpa = start;
	*size = bytes;
	return true;
}

static void check_range(const struct trace_record *rec)
{
	uint64_t g = 1, s = 1, eg = 0, es = 0;
	bool got = trace_record_range(rec, &g, &s), want = expected_range(rec, &eg, &es);

	CHECK(got == want, "trace_record_range %d, expected %d", got, want);
	if (got)
		CHECK(g == eg && s == es && s && g + s <= GPA_LIMIT && g + s > g,
		      "range 0x%" PRIx64 "+0x%" PRIx64, g, s);
}

/* Print a decoded request back in its format and parse it again. */
static void check_roundtrip(const struct trace_record *rec)
{
	char line[256];
	int n;

	switch (rec->kind) {
	case TRACE_MAP:
		n = snprintf(line, sizeof(line), "map 0x%" PRIx64 " %" PRIu64 " 0x%" PRIx64,
			     rec->gpa, rec->npages, rec->attrs);
		break;
	case TRACE_FAULT:
	case TRACE_CONVERT:
		n = snprintf(line, sizeof(line), "%s %" PRIu64 " 0x%" PRIx64 " %s # again",
			     rec->kind == TRACE_FAULT ? "fault" : "convert", rec->gpa, rec->size,
			     rec->to_private ? "private" : "shared");
		break;
	case TRACE_HYPERCALL:
		n = snprintf(line, sizeof(line),
			     " qemu-1  [001] .... 12.345: kvm_hypercall: nr 0x%" PRIx64
			     " a0 0x%" PRIx64 " a1 0x%" PRIx64 " a2 0x%" PRIx64 " a3 0x%" PRIx64,
			     rec->nr, rec->a[0], rec->a[1], rec->a[2], rec->a[3]);
		break;
	default:
		return;
	}
	CHECK(n > 0 && (size_t)n < sizeof(line), "snprintf");
	struct trace_record again = parse(line, (size_t)n);
	CHECK(same_record(rec, &again), "\"%s\" parses to kind %d, not the record it came from",
	      line, again.kind);
}

static void check_numbers(const char *s, size_t len)
{
	char buf[96], *z;
	uint64_t v = 0, w = 0, size = 0, gpa = 0;
	size_t n = len < 64 ? len : 64;

	if (trace_parse_u64(s, n, &v) == 0) {
		int k = snprintf(buf, sizeof(buf), "%" PRIu64, v);

		CHECK(trace_parse_u64(buf, (size_t)k, &w) == 0 && w == v, "u64 decimal round trip");
		k = snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
		CHECK(trace_parse_u64(buf, (size_t)k, &w) == 0 && w == v, "u64 hex round trip");
		/* a number with a unit letter is the number times a power of 1024 */
		k = snprintf(buf, sizeof(buf), "%" PRIu64 "K", v);
		if (trace_parse_size(buf, (size_t)k, &w) == 0)
			CHECK(v <= UINT64_MAX >> 10 && w == v << 10, "size K");
		else
			CHECK(v > UINT64_MAX >> 10, "\"%s\" refused", buf);
	}
	if (trace_parse_size(s, n, &w) == 0)
		CHECK(trace_parse_size(s, n, &v) == 0 && v == w, "size not deterministic");

	/* trace_parse_mem() takes a NUL-terminated string */
	z = malloc(n + 1);
	CHECK(z != NULL, "malloc");
	memcpy(z, s, n);
	z[n] = '\0';
	if (trace_parse_mem(z, &size, &gpa) == 0)
		CHECK(size <= UINT64_MAX - gpa, "mem range wraps");
	free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct trace_record rec = parse(s, size), rec2 = parse(s, size);

	check_record(&rec, size);
	CHECK(same_record(&rec, &rec2), "not deterministic");
	check_range(&rec);
	check_roundtrip(&rec);
	check_numbers(s, size);

	/* a trailing "\n" or "\r\n" is ignored */
	if (size < 8192 && (!size || (s[size - 1] != '\n' && s[size - 1] != '\r'))) {
		char *nl = malloc(size + 2);

		CHECK(nl != NULL, "malloc");
		memcpy(nl, s, size);
		nl[size] = '\n';
		struct trace_record with_nl = parse(nl, size + 1);
		CHECK(same_record(&rec, &with_nl), "a trailing newline changed the record");
		nl[size] = '\r';
		nl[size + 1] = '\n';
		struct trace_record with_crlf = parse(nl, size + 2);
		CHECK(same_record(&rec, &with_crlf), "a trailing CRLF changed the record");
		free(nl);
	}
	return 0;
}
