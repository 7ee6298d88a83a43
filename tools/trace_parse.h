/* SPDX-License-Identifier: MIT */
/*
 * Parser for conversion traces (docs/trace-format.md). Pure functions over
 * one line of text: no I/O, no allocation, no global state, so a fuzzer can
 * drive trace_parse_line() with arbitrary bytes.
 *
 * Two formats are recognised per line:
 *  - the text print of the kvm:kvm_hypercall tracepoint as ftrace
 *    (trace/trace_pipe), `trace-cmd report` and `perf script` show it: any
 *    line containing "kvm_hypercall:" followed by
 *    "nr 0x%lx a0 0x%lx a1 0x%lx a2 0x%lx a3 0x%lx" (TP_printk of
 *    TRACE_EVENT(kvm_hypercall) in Linux arch/x86/kvm/trace.h);
 *  - cvmconv's own format, one request per line:
 *      map <gpa> <npages> <attrs>
 *      fault <gpa> <size> private|shared [vcpu N]
 *      convert <gpa> <size> private|shared
 *    numbers in decimal or 0x-prefixed hex, '#' starts a comment.
 */
#ifndef CVMCONV_TRACE_PARSE_H
#define CVMCONV_TRACE_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest line accepted, in bytes, without its newline. Longer lines are
 * TRACE_MALFORMED; a reader passes at least TRACE_LINE_MAX + 1 bytes of such
 * a line so that the parser can tell. */
#define TRACE_LINE_MAX 4096

/* KVM_HC_MAP_GPA_RANGE (include/uapi/linux/kvm_para.h) */
#define TRACE_HC_MAP_GPA_RANGE 12

enum trace_kind {
	TRACE_BLANK,	 /* empty, only blanks, or a '#' comment */
	TRACE_OTHER,	 /* neither format (another event, a header line): ignored */
	TRACE_HYPERCALL, /* kvm_hypercall print: nr, a[0..3] (any nr) */
	TRACE_MAP,	 /* map: gpa, npages, attrs */
	TRACE_FAULT,	 /* fault: gpa, size, to_private */
	TRACE_CONVERT,	 /* convert: gpa, size, to_private */
	TRACE_MALFORMED, /* error, column */
};

struct trace_record {
	enum trace_kind kind;
	uint64_t nr, a[4]; /* TRACE_HYPERCALL */
	uint64_t gpa;	   /* MAP, FAULT, CONVERT */
	uint64_t npages;   /* MAP (4 KiB units) */
	uint64_t attrs;	   /* MAP */
	uint64_t size;	   /* FAULT, CONVERT (bytes) */
	bool to_private;   /* FAULT, CONVERT */
	unsigned vcpu;	   /* FAULT: the vCPU that faulted ("vcpu N", default 0) */
	const char *error; /* MALFORMED: static text, no trailing newline */
	size_t column;	   /* MALFORMED: 1-based byte column of the problem */
};

/*
 * trace_parse_line() - classify and decode one line.
 * @line: the line's bytes (need not be NUL-terminated; trailing '\n' and
 *        '\r' bytes are ignored). May contain any byte; NUL is malformed.
 * @len: number of bytes at @line.
 * @out: receives the record; always fully written.
 * Return: out->kind.
 */
enum trace_kind trace_parse_line(const char *line, size_t len, struct trace_record *out);

/*
 * trace_record_range() - the guest physical range a record names, for
 * inferring a memory layout: MAP and nr == 12 HYPERCALL give
 * [gpa, gpa + npages * 4 KiB), FAULT and CONVERT [gpa, gpa + size).
 * Return: false for other records and for ranges that are empty, wrap, or
 * end beyond 2^52 (no x86 guest can have memory there, so such a request
 * is hostile and says nothing about the layout).
 */
bool trace_record_range(const struct trace_record *rec, uint64_t *gpa, uint64_t *size);

/*
 * trace_parse_u64() - a whole number in decimal or 0x/0X hex, no sign, no
 * blanks, overflow-checked.
 * Return: 0, or -1 when @s[0..len) is not exactly such a number.
 */
int trace_parse_u64(const char *s, size_t len, uint64_t *out);

/*
 * trace_parse_size() - trace_parse_u64() optionally followed by one binary
 * unit K, M, G or T (either case, optionally followed by "iB" or "B"; all
 * mean powers of 1024), overflow-checked: "64M", "2MiB", "0x40000000", "4096".
 * Return: 0, or -1.
 */
int trace_parse_size(const char *s, size_t len, uint64_t *out);

/*
 * trace_parse_mem() - a guest memory range argument "SIZE[@GPA]" (SIZE and
 * GPA as trace_parse_size()); GPA defaults to 0.
 * Return: 0, or -1 (also when the range wraps).
 */
int trace_parse_mem(const char *s, uint64_t *size, uint64_t *gpa);

#endif
