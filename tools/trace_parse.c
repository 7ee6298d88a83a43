/* SPDX-License-Identifier: MIT */
/*
 * Conversion trace parser: one line in, one record out. Pure: no I/O, no
 * allocation, no state, bounded work per line (every loop advances through
 * at most TRACE_LINE_MAX bytes), so it can be fuzzed directly.
 */
#include <string.h>

#include "trace_parse.h"

#define PAGE_SHIFT_4K 12
#define GPA_LIMIT (1ULL << 52) /* MAXPHYADDR 52: nothing lives above it */

static const char HYPERCALL_TAG[] = "kvm_hypercall:";

enum num_result { NUM_OK, NUM_BAD, NUM_OVERFLOW };

/* A cursor over the line. */
struct cursor {
	const char *s;
	size_t len, pos;
};

struct token {
	const char *s;
	size_t len, column; /* column: 1-based */
};

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

static int hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static enum num_result parse_hex_digits(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0)
		return NUM_BAD;
	for (size_t i = 0; i < len; i++) {
		int d = hex_value(s[i]);

		if (d < 0)
			return NUM_BAD;
		if (v > (UINT64_MAX >> 4))
			return NUM_OVERFLOW;
		v = (v << 4) | (uint64_t)d;
	}
	*out = v;
	return NUM_OK;
}

static bool has_hex_prefix(const char *s, size_t len)
{
	return len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
}

/* Decimal, or hex with a 0x/0X prefix. */
static enum num_result parse_number(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (has_hex_prefix(s, len))
		return parse_hex_digits(s + 2, len - 2, out);
	if (len == 0)
		return NUM_BAD;
	for (size_t i = 0; i < len; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return NUM_BAD;
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return NUM_OVERFLOW;
		v = v * 10 + d;
	}
	*out = v;
	return NUM_OK;
}

int trace_parse_u64(const char *s, size_t len, uint64_t *out)
{
	return s && out && parse_number(s, len, out) == NUM_OK ? 0 : -1;
}

int trace_parse_size(const char *s, size_t len, uint64_t *out)
{
	unsigned shift = 0;
	uint64_t v;

	if (!s || !out)
		return -1;
	/* "MiB" and "MB" mean the same as "M"; a unit letter must precede them */
	if (len >= 3 && s[len - 2] == 'i' && (s[len - 1] == 'B' || s[len - 1] == 'b') &&
	    memchr("KkMmGgTt", s[len - 3], 8))
		len -= 2;
	else if (len >= 2 && (s[len - 1] == 'B' || s[len - 1] == 'b') &&
		 memchr("KkMmGgTt", s[len - 2], 8))
		len -= 1;
	if (len >= 1) {
		switch (s[len - 1]) {
		case 'K':
		case 'k':
			shift = 10;
			break;
		case 'M':
		case 'm':
			shift = 20;
			break;
		case 'G':
		case 'g':
			shift = 30;
			break;
		case 'T':
		case 't':
			shift = 40;
			break;
		default:
			break;
		}
	}
	if (shift)
		len--;
	if (parse_number(s, len, &v) != NUM_OK || v > (UINT64_MAX >> shift))
		return -1;
	*out = v << shift;
	return 0;
}

int trace_parse_mem(const char *s, uint64_t *size, uint64_t *gpa)
{
	const char *at;
	uint64_t sz, base = 0;

	if (!s || !size || !gpa)
		return -1;
	at = strchr(s, '@');
	if (trace_parse_size(s, at ? (size_t)(at - s) : strlen(s), &sz))
		return -1;
	if (at && trace_parse_size(at + 1, strlen(at + 1), &base))
		return -1;
	if (sz > UINT64_MAX - base)
		return -1;
	*size = sz;
	*gpa = base;
	return 0;
}

/* Next blank-separated token; with @comments, a token starting with '#'
 * ends the line. False at the end of the line. */
static bool next_token(struct cursor *c, struct token *t, bool comments)
{
	size_t start;

	while (c->pos < c->len && is_blank(c->s[c->pos]))
		c->pos++;
	if (c->pos == c->len || (comments && c->s[c->pos] == '#'))
		return false;
	start = c->pos;
	while (c->pos < c->len && !is_blank(c->s[c->pos]))
		c->pos++;
	t->s = c->s + start;
	t->len = c->pos - start;
	t->column = start + 1;
	return true;
}

/* Column of the end of the line, 1-based: where a missing token was due. */
static size_t end_column(const struct cursor *c)
{
	return c->len + 1;
}

static bool token_is(const struct token *t, const char *word)
{
	size_t n = strlen(word);

	return t->len == n && memcmp(t->s, word, n) == 0;
}

static enum trace_kind malformed(struct trace_record *out, const char *error, size_t column)
{
	out->kind = TRACE_MALFORMED;
	out->error = error;
	out->column = column;
	return TRACE_MALFORMED;
}

/* One number field of the own format. */
static bool own_number(struct cursor *c, struct trace_record *out, uint64_t *v, const char *missing,
		       const char *bad, const char *overflow)
{
	struct token t;

	if (!next_token(c, &t, true)) {
		malformed(out, missing, end_column(c));
		return false;
	}
	switch (parse_number(t.s, t.len, v)) {
	case NUM_OK:
		return true;
	case NUM_OVERFLOW:
		malformed(out, overflow, t.column);
		return false;
	case NUM_BAD:
	default:
		malformed(out, bad, t.column);
		return false;
	}
}

static bool own_end(struct cursor *c, struct trace_record *out)
{
	struct token t;

	if (next_token(c, &t, true)) {
		malformed(out, "unexpected text after the request", t.column);
		return false;
	}
	return true;
}

static enum trace_kind parse_map(struct cursor *c, struct trace_record *out)
{
	if (!own_number(c, out, &out->gpa, "map: missing <gpa>",
			"map: <gpa> is not a number (decimal or 0x hex)",
			"map: <gpa> does not fit in 64 bits") ||
	    !own_number(c, out, &out->npages, "map: missing <npages>",
			"map: <npages> is not a number (decimal or 0x hex)",
			"map: <npages> does not fit in 64 bits") ||
	    !own_number(c, out, &out->attrs, "map: missing <attrs>",
			"map: <attrs> is not a number (decimal or 0x hex)",
			"map: <attrs> does not fit in 64 bits") ||
	    !own_end(c, out))
		return TRACE_MALFORMED;
	out->kind = TRACE_MAP;
	return TRACE_MAP;
}

/* fault|convert <gpa> <size> private|shared */
static enum trace_kind parse_range_request(struct cursor *c, struct trace_record *out,
					   enum trace_kind kind)
{
	bool fault = kind == TRACE_FAULT;
	struct token t;

	if (!own_number(c, out, &out->gpa,
			fault ? "fault: missing <gpa>" : "convert: missing <gpa>",
			fault ? "fault: <gpa> is not a number (decimal or 0x hex)"
			      : "convert: <gpa> is not a number (decimal or 0x hex)",
			fault ? "fault: <gpa> does not fit in 64 bits"
			      : "convert: <gpa> does not fit in 64 bits") ||
	    !own_number(c, out, &out->size,
			fault ? "fault: missing <size>" : "convert: missing <size>",
			fault ? "fault: <size> is not a number (decimal or 0x hex)"
			      : "convert: <size> is not a number (decimal or 0x hex)",
			fault ? "fault: <size> does not fit in 64 bits"
			      : "convert: <size> does not fit in 64 bits"))
		return TRACE_MALFORMED;
	if (!next_token(c, &t, true))
		return malformed(out,
				 fault ? "fault: missing private|shared"
				       : "convert: missing private|shared",
				 end_column(c));
	if (token_is(&t, "private"))
		out->to_private = true;
	else if (token_is(&t, "shared"))
		out->to_private = false;
	else
		return malformed(out,
				 fault ? "fault: expected private or shared"
				       : "convert: expected private or shared",
				 t.column);
	if (fault) {
		/* optional "vcpu N": faults of different vCPUs are told apart
		 * (cvmconv refuses the same vCPU's fault repeated in vain) */
		struct cursor peek = *c;

		if (next_token(&peek, &t, true) && token_is(&t, "vcpu")) {
			uint64_t v;

			*c = peek;
			if (!own_number(c, out, &v, "fault: missing the vCPU number after vcpu",
					"fault: the vCPU is not a number",
					"fault: the vCPU does not fit in 64 bits"))
				return TRACE_MALFORMED;
			if (v > 4095)
				return malformed(out, "fault: vcpu above 4095", end_column(c));
			out->vcpu = (unsigned)v;
		}
	}
	if (!own_end(c, out))
		return TRACE_MALFORMED;
	out->kind = kind;
	return kind;
}

/* The TP_printk of kvm_hypercall: "nr 0x%lx a0 0x%lx a1 0x%lx a2 0x%lx a3 0x%lx".
 * trace-cmd pads the space after the event name, so blanks are any run. */
static enum trace_kind parse_hypercall(struct cursor *c, struct trace_record *out)
{
	static const char *const names[5] = { "nr", "a0", "a1", "a2", "a3" };
	static const char *const missing[5] = { "kvm_hypercall: expected \"nr\"",
						"kvm_hypercall: expected \"a0\"",
						"kvm_hypercall: expected \"a1\"",
						"kvm_hypercall: expected \"a2\"",
						"kvm_hypercall: expected \"a3\"" };
	static const char *const bad[5] = { "kvm_hypercall: nr is not 0x-prefixed hex",
					    "kvm_hypercall: a0 is not 0x-prefixed hex",
					    "kvm_hypercall: a1 is not 0x-prefixed hex",
					    "kvm_hypercall: a2 is not 0x-prefixed hex",
					    "kvm_hypercall: a3 is not 0x-prefixed hex" };
	static const char *const overflow[5] = { "kvm_hypercall: nr does not fit in 64 bits",
						 "kvm_hypercall: a0 does not fit in 64 bits",
						 "kvm_hypercall: a1 does not fit in 64 bits",
						 "kvm_hypercall: a2 does not fit in 64 bits",
						 "kvm_hypercall: a3 does not fit in 64 bits" };
	uint64_t v[5];
	struct token t;

	for (int i = 0; i < 5; i++) {
		if (!next_token(c, &t, false))
			return malformed(out, missing[i], end_column(c));
		if (!token_is(&t, names[i]))
			return malformed(out, missing[i], t.column);
		if (!next_token(c, &t, false))
			return malformed(out, bad[i], end_column(c));
		if (!has_hex_prefix(t.s, t.len))
			return malformed(out, bad[i], t.column);
		switch (parse_hex_digits(t.s + 2, t.len - 2, &v[i])) {
		case NUM_OK:
			break;
		case NUM_OVERFLOW:
			return malformed(out, overflow[i], t.column);
		case NUM_BAD:
		default:
			return malformed(out, bad[i], t.column);
		}
	}
	if (next_token(c, &t, false))
		return malformed(out, "kvm_hypercall: unexpected text after a3", t.column);
	out->kind = TRACE_HYPERCALL;
	out->nr = v[0];
	memcpy(out->a, &v[1], sizeof(out->a));
	return TRACE_HYPERCALL;
}

/* Offset just past the last "kvm_hypercall:" in the line, or 0. The last
 * one: a process name (comm) before it may contain anything, the
 * hex payload after it cannot. */
static size_t find_hypercall_tag(const char *s, size_t len)
{
	size_t n = sizeof(HYPERCALL_TAG) - 1, found = 0;

	for (size_t i = 0; i + n <= len; i++)
		if (s[i] == 'k' && memcmp(s + i, HYPERCALL_TAG, n) == 0)
			found = i + n;
	return found;
}

enum trace_kind trace_parse_line(const char *line, size_t len, struct trace_record *out)
{
	struct cursor c;
	struct token first;
	size_t tag;

	if (!out)
		return TRACE_MALFORMED;
	memset(out, 0, sizeof(*out));
	if (!line && len)
		return malformed(out, "no line", 1);
	/* line endings: "\n", "\r\n", and any "\r" a converted file left */
	while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	if (len > TRACE_LINE_MAX)
		return malformed(out, "line longer than 4096 bytes", TRACE_LINE_MAX + 1);
	if (len && memchr(line, '\0', len))
		return malformed(out, "NUL byte in line",
				 (size_t)((const char *)memchr(line, '\0', len) - line) + 1);

	c = (struct cursor){ line, len, 0 };
	if (!next_token(&c, &first, true)) {
		out->kind = TRACE_BLANK;
		return TRACE_BLANK;
	}
	/* kvm_hypercall first: a perf script line may begin with a process
	 * called "map"; own-format lines never contain the tag. */
	tag = find_hypercall_tag(line, len);
	if (tag) {
		c.pos = tag;
		return parse_hypercall(&c, out);
	}
	if (token_is(&first, "map"))
		return parse_map(&c, out);
	if (token_is(&first, "fault"))
		return parse_range_request(&c, out, TRACE_FAULT);
	if (token_is(&first, "convert"))
		return parse_range_request(&c, out, TRACE_CONVERT);
	out->kind = TRACE_OTHER;
	return TRACE_OTHER;
}

bool trace_record_range(const struct trace_record *rec, uint64_t *gpa, uint64_t *size)
{
	uint64_t start, bytes;

	if (!rec || !gpa || !size)
		return false;
	switch (rec->kind) {
	case TRACE_HYPERCALL:
		if (rec->nr != TRACE_HC_MAP_GPA_RANGE)
			return false;
		start = rec->a[0];
		if (rec->a[1] == 0 || rec->a[1] > (GPA_LIMIT >> PAGE_SHIFT_4K))
			return false;
		bytes = rec->a[1] << PAGE_SHIFT_4K;
		break;
	case TRACE_MAP:
		start = rec->gpa;
		if (rec->npages == 0 || rec->npages > (GPA_LIMIT >> PAGE_SHIFT_4K))
			return false;
		bytes = rec->npages << PAGE_SHIFT_4K;
		break;
	case TRACE_FAULT:
	case TRACE_CONVERT:
		start = rec->gpa;
		bytes = rec->size;
		break;
	default:
		return false;
	}
	if (bytes == 0 || bytes > GPA_LIMIT || start > GPA_LIMIT - bytes)
		return false;
	*gpa = start;
	*size = bytes;
	return true;
}
