/* SPDX-License-Identifier: MIT */
/*
 * The trace parser (tools/trace_parse.c). Sample lines are written here in
 * the shapes the tools print for the kvm:kvm_hypercall tracepoint, whose
 * TP_printk is "nr 0x%lx a0 0x%lx a1 0x%lx a2 0x%lx a3 0x%lx"
 * (Linux arch/x86/kvm/trace.h):
 *   trace_pipe:        "<comm>-<pid> [<cpu>] <flags> <secs>.<usecs>: kvm_hypercall: <fields>"
 *   trace-cmd report:  "<comm>-<pid> [<cpu>] <secs>.<usecs>: kvm_hypercall: <padding><fields>"
 *   perf script:       "<comm> <pid> [<cpu>] <secs>.<usecs>: kvm:kvm_hypercall: <fields>"
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "trace_parse.h"

static enum trace_kind parse(const char *line, struct trace_record *rec)
{
	return trace_parse_line(line, strlen(line), rec);
}

static void expect_hypercall(const char *line, uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2,
			     uint64_t a3)
{
	struct trace_record rec;

	assert_int_equal(parse(line, &rec), TRACE_HYPERCALL);
	assert_int_equal(rec.kind, TRACE_HYPERCALL);
	assert_int_equal(rec.nr, nr);
	assert_int_equal(rec.a[0], a0);
	assert_int_equal(rec.a[1], a1);
	assert_int_equal(rec.a[2], a2);
	assert_int_equal(rec.a[3], a3);
}

/* Malformed, with the message containing @what at 1-based @column. */
static void expect_malformed(const char *line, const char *what, size_t column)
{
	struct trace_record rec;

	assert_int_equal(parse(line, &rec), TRACE_MALFORMED);
	assert_non_null(rec.error);
	if (!strstr(rec.error, what))
		fail_msg("\"%s\": error \"%s\" lacks \"%s\"", line, rec.error, what);
	if (column)
		assert_int_equal(rec.column, column);
}

static void test_trace_pipe_shape(void **state)
{
	(void)state;
	expect_hypercall("       qemu-kvm-12345   [003] d..2. 12345.678901: kvm_hypercall: nr 0xc "
			 "a0 0x100000000 a1 0x200 a2 0x11 a3 0x0",
			 12, 0x100000000, 0x200, 0x11, 0);
	/* older kernels print fewer flag columns, no flags at all with
	 * options/irq-info off */
	expect_hypercall("kvm_pv_test-53132 [000] .... 10.000001: kvm_hypercall: nr 0x5 a0 0x0 a1 "
			 "0x3 a2 0x0 a3 0x0",
			 5, 0, 3, 0, 0);
	expect_hypercall(
		" CPU 0/KVM-4242 [001] 1.5: kvm_hypercall: nr 0xc a0 0x1000 a1 0x1 a2 0x10 "
		"a3 0x0   ",
		12, 0x1000, 1, 0x10, 0);
}

static void test_trace_cmd_shape(void **state)
{
	(void)state;
	expect_hypercall(
		" qemu-system-x86-4242  [001]  5123.400002: kvm_hypercall:        nr 0xc a0 "
		"0x10001000 a1 0x200 a2 0x10 a3 0x0",
		12, 0x10001000, 0x200, 0x10, 0);
	/* trace-cmd report -l (latency columns) */
	expect_hypercall("qemu-sys-4242    1d..2  5123.400002: kvm_hypercall: nr 0xc a0 0x20000000 "
			 "a1 0x1 a2 0x0 a3 0x0",
			 12, 0x20000000, 1, 0, 0);
	/* tabs as separators */
	expect_hypercall(
		"q-1 [000] 1.0: kvm_hypercall:\tnr\t0xc\ta0\t0x0\ta1\t0x200\ta2\t0x1\ta3\t0x0", 12,
		0, 0x200, 1, 0);
}

static void test_perf_script_shape(void **state)
{
	(void)state;
	expect_hypercall(
		"       CPU 0/KVM  4243 [002] 1377662.550644: kvm:kvm_hypercall: nr 0xc a0 "
		"0x0 a1 0x1 a2 0x10 a3 0x0",
		12, 0, 1, 0x10, 0);
	/* a process called "map" is not the own format's map keyword */
	expect_hypercall(
		"             map  4243 [002] 1.000000: kvm:kvm_hypercall: nr 0xc a0 0x1000 "
		"a1 0x1 a2 0x0 a3 0x0",
		12, 0x1000, 1, 0, 0);
	/* the tag in the process name: the last one is the event */
	expect_hypercall(
		"kvm_hypercall: 7 [000] 1.0: kvm:kvm_hypercall: nr 0x1 a0 0x2 a1 0x3 a2 0x4 "
		"a3 0x5",
		1, 2, 3, 4, 5);
}

static void test_hex_forms(void **state)
{
	(void)state;
	expect_hypercall("x: kvm_hypercall: nr 0XC a0 0xABCdef000 a1 0x0001 a2 0x010 a3 0x0", 12,
			 0xabcdef000, 1, 0x10, 0);
	expect_hypercall("x: kvm_hypercall: nr 0xffffffffffffffff a0 0xFFFFFFFFFFFFFFFF a1 "
			 "0x0000000000000000000000000001 a2 0x0 a3 0x8000000000000000",
			 UINT64_MAX, UINT64_MAX, 1, 0, 0x8000000000000000ULL);
	expect_hypercall("x: kvm_hypercall: nr 0xc a0 0x1000 a1 0x1 a2 0x10 a3 0x0\r\n", 12, 0x1000,
			 1, 0x10, 0);
	expect_hypercall("x: kvm_hypercall: nr 0xc a0 0x1000 a1 0x1 a2 0x10 a3 0x0\n", 12, 0x1000,
			 1, 0x10, 0);
	/* any run of line-ending bytes, as files converted back and forth have */
	expect_hypercall("x: kvm_hypercall: nr 0xc a0 0x1000 a1 0x1 a2 0x10 a3 0x0\r\r\n", 12,
			 0x1000, 1, 0x10, 0);
}

static void test_hypercall_malformed(void **state)
{
	(void)state;
	expect_malformed("q-1 [000] 1.0: kvm_hypercall: nr 0xc a0 0x1000 a1", "a1 is not", 50);
	expect_malformed("q-1 [000] 1.0: kvm_hypercall:", "expected \"nr\"", 30);
	expect_malformed("q-1 [000] 1.0: kvm_hypercall:   ", "expected \"nr\"", 33);
	expect_malformed("x: kvm_hypercall: nr 12 a0 0x0 a1 0x1 a2 0x0 a3 0x0", "nr is not", 22);
	expect_malformed("x: kvm_hypercall: nr 0x a0 0x0 a1 0x1 a2 0x0 a3 0x0", "nr is not", 22);
	expect_malformed("x: kvm_hypercall: nr 0xg a0 0x0 a1 0x1 a2 0x0 a3 0x0", "nr is not", 22);
	expect_malformed("x: kvm_hypercall: nr -0x1 a0 0x0 a1 0x1 a2 0x0 a3 0x0", "nr is not", 22);
	expect_malformed("x: kvm_hypercall: nr 0xc a0 0x10000000000000000 a1 0x1 a2 0x0 a3 0x0",
			 "a0 does not fit in 64 bits", 29);
	expect_malformed("x: kvm_hypercall: nr 0xc a1 0x1 a0 0x0 a2 0x0 a3 0x0", "expected \"a0\"",
			 26);
	expect_malformed("x: kvm_hypercall: nr 0xc a0 0x0 a1 0x1 a2 0x0 a3 0x0 extra",
			 "unexpected text after a3", 54);
	expect_malformed("x: kvm_hypercall: nr 0xc a0 0x0 a1 0x1 a2 0x0 a3 0x0 # c",
			 "unexpected text after a3", 54);
	expect_malformed("x: kvm_hypercall: nr 0xc a0 0x0 a1 0x1 a2 0x0", "expected \"a3\"", 46);
	expect_malformed("x: kvm_hypercall: nr 0xc, a0 0x0 a1 0x1 a2 0x0 a3 0x0", "nr is not", 22);
	/* some other event's print after the tag */
	expect_malformed("x: kvm_hypercall: vcpu 0 rip 0x1234", "expected \"nr\"", 19);
}

static void test_own_format(void **state)
{
	struct trace_record rec;

	(void)state;
	assert_int_equal(parse("map 0x100000000 512 0x11", &rec), TRACE_MAP);
	assert_int_equal(rec.gpa, 0x100000000);
	assert_int_equal(rec.npages, 512);
	assert_int_equal(rec.attrs, 0x11);

	assert_int_equal(parse("  map\t4096 1 16   # a comment", &rec), TRACE_MAP);
	assert_int_equal(rec.gpa, 4096);
	assert_int_equal(rec.npages, 1);
	assert_int_equal(rec.attrs, 16);

	assert_int_equal(parse("map 18446744073709551615 0xFFFFFFFFFFFFFFFF 0 #", &rec), TRACE_MAP);
	assert_int_equal(rec.gpa, UINT64_MAX);
	assert_int_equal(rec.npages, UINT64_MAX);
	assert_int_equal(rec.attrs, 0);

	assert_int_equal(parse("fault 0x1000 4096 private", &rec), TRACE_FAULT);
	assert_int_equal(rec.gpa, 0x1000);
	assert_int_equal(rec.size, 4096);
	assert_true(rec.to_private);

	assert_int_equal(parse("fault 0x1000 4096 shared\r\n", &rec), TRACE_FAULT);
	assert_false(rec.to_private);

	assert_int_equal(parse("convert 4096 0x200000 shared", &rec), TRACE_CONVERT);
	assert_int_equal(rec.gpa, 4096);
	assert_int_equal(rec.size, 0x200000);
	assert_false(rec.to_private);

	assert_int_equal(parse("convert 0 0 private #zero is the library's to refuse", &rec),
			 TRACE_CONVERT);
	assert_true(rec.to_private);
}

static void test_own_format_malformed(void **state)
{
	(void)state;
	expect_malformed("map", "map: missing <gpa>", 4);
	expect_malformed("map 0x1000", "map: missing <npages>", 11);
	expect_malformed("map 0x1000 1", "map: missing <attrs>", 13);
	expect_malformed("map 0x1000 1 # attrs forgotten", "map: missing <attrs>", 31);
	expect_malformed("map 0x1000 1 0x10 extra", "unexpected text", 19);
	expect_malformed("map -1 1 0", "<gpa> is not a number", 5);
	expect_malformed("map +1 1 0", "<gpa> is not a number", 5);
	expect_malformed("map 1.5 1 0", "<gpa> is not a number", 5);
	expect_malformed("map 0x1000 1 0x10#c", "<attrs> is not a number", 14);
	expect_malformed("map 4k 1 0", "<gpa> is not a number", 5);
	expect_malformed("map 18446744073709551616 1 0", "<gpa> does not fit in 64 bits", 5);
	expect_malformed("map 0 99999999999999999999999 0", "<npages> does not fit", 7);
	expect_malformed("map 0 1 0x1ffffffffffffffff", "<attrs> does not fit", 9);
	expect_malformed("fault 0x1000 4096", "fault: missing private|shared", 18);
	expect_malformed("fault 0x1000 4096 sideways", "fault: expected private or shared", 19);
	expect_malformed("fault 0x1000", "fault: missing <size>", 13);
	expect_malformed("convert 0x1000 4096 PRIVATE", "convert: expected private or shared", 21);
	expect_malformed("convert 0x1000 4096 private private", "unexpected text", 29);
	expect_malformed("convert x 4096 private", "convert: <gpa> is not a number", 9);
}

static void test_blank_and_other(void **state)
{
	static const char *const blank[] = { "",      "   ", "\t",   "# comment",
					     "\t# x", "#",   "\r\n", "\n" };
	static const char *const other[] = {
		"cpus=4",
		"version = 6",
		"CPU 0 is empty",
		" qemu-4242 [001] 1.0: kvm_exit: reason VMCALL rip 0xffffffff81001234 info 0 0",
		" qemu-4242 [001] 1.0: kvm_entry: vcpu 0, rip 0xffffffff81001237",
		"mapping 1 2 3",
		"MAP 0x1000 1 0x10",
		"x: kvm_hv_hypercall: code 0x8 fast 1 var_cnt 0 rep_cnt 0 idx 0 in 0x0 out 0x0",
		"kvm_hypercall nr 0xc a0 0x0 a1 0x1 a2 0x0 a3 0x0",
	};
	struct trace_record rec;

	(void)state;
	for (size_t i = 0; i < sizeof(blank) / sizeof(blank[0]); i++)
		assert_int_equal(parse(blank[i], &rec), TRACE_BLANK);
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
		assert_int_equal(parse(other[i], &rec), TRACE_OTHER);
	assert_int_equal(trace_parse_line(NULL, 0, &rec), TRACE_BLANK);
	assert_int_equal(trace_parse_line(NULL, 5, &rec), TRACE_MALFORMED);
	assert_int_equal(trace_parse_line("map 1 1 1", 9, NULL), TRACE_MALFORMED);
}

/* A line of @len bytes: "map 0x1000 1 0x10" padded with blanks. */
static char *padded_line(size_t len, const char *tail)
{
	static const char head[] = "map 0x1000 1 0x10";
	size_t tail_len = strlen(tail);
	char *s = malloc(len + tail_len + 1);

	assert_non_null(s);
	memset(s, ' ', len);
	memcpy(s, head, sizeof(head) - 1);
	memcpy(s + len, tail, tail_len + 1);
	return s;
}

static void test_long_lines(void **state)
{
	struct trace_record rec;
	char *s;

	(void)state;
	s = padded_line(TRACE_LINE_MAX, "");
	assert_int_equal(trace_parse_line(s, TRACE_LINE_MAX, &rec), TRACE_MAP);
	free(s);
	s = padded_line(TRACE_LINE_MAX, "\r\n"); /* the line ending does not count */
	assert_int_equal(parse(s, &rec), TRACE_MAP);
	free(s);
	s = padded_line(TRACE_LINE_MAX + 1, "");
	assert_int_equal(parse(s, &rec), TRACE_MALFORMED);
	assert_string_equal(rec.error, "line longer than 4096 bytes");
	assert_int_equal(rec.column, TRACE_LINE_MAX + 1);
	free(s);
	s = padded_line(1 << 20, "");
	assert_int_equal(parse(s, &rec), TRACE_MALFORMED);
	free(s);
}

static void test_nul_byte(void **state)
{
	static const char line[] = "map 0x1000\0 1 0x10";
	struct trace_record rec;

	(void)state;
	assert_int_equal(trace_parse_line(line, sizeof(line) - 1, &rec), TRACE_MALFORMED);
	assert_string_equal(rec.error, "NUL byte in line");
	assert_int_equal(rec.column, 11);
}

static void test_record_range(void **state)
{
	struct trace_record rec;
	uint64_t gpa, size;

	(void)state;
	parse("x: kvm_hypercall: nr 0xc a0 0x10001000 a1 0x200 a2 0x10 a3 0x0", &rec);
	assert_true(trace_record_range(&rec, &gpa, &size));
	assert_int_equal(gpa, 0x10001000);
	assert_int_equal(size, 0x200000);
	parse("x: kvm_hypercall: nr 0x5 a0 0x10001000 a1 0x200 a2 0x10 a3 0x0", &rec);
	assert_false(trace_record_range(&rec, &gpa, &size)); /* not MAP_GPA_RANGE */
	parse("map 0x1000 0 0x10", &rec);
	assert_false(trace_record_range(&rec, &gpa, &size)); /* empty */
	parse("map 0xffffffffffff000 1 0", &rec);
	assert_false(trace_record_range(&rec, &gpa, &size)); /* beyond 2^52 */
	parse("map 0xffffffffff000 1 0", &rec);
	assert_true(trace_record_range(&rec, &gpa, &size)); /* last page below 2^52 */
	assert_int_equal(gpa + size, 1ULL << 52);
	parse("map 0 0x10000000000001 0", &rec);
	assert_false(trace_record_range(&rec, &gpa, &size)); /* npages beyond 2^40 */
	parse("map 0 18446744073709551615 0", &rec);
	assert_false(trace_record_range(&rec, &gpa, &size)); /* no multiply overflow */
	parse("fault 0x2000 0x1000 private", &rec);
	assert_true(trace_record_range(&rec, &gpa, &size));
	assert_int_equal(gpa, 0x2000);
	assert_int_equal(size, 0x1000);
	parse("convert 0xfffffffffffff000 0x2000 shared", &rec);
	assert_false(trace_record_range(&rec, &gpa, &size)); /* wraps */
	parse("# nothing", &rec);
	assert_false(trace_record_range(&rec, &gpa, &size));
	assert_false(trace_record_range(NULL, &gpa, &size));
}

static void test_numbers(void **state)
{
	uint64_t v, gpa;

	(void)state;
	assert_int_equal(trace_parse_u64("0", 1, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(trace_parse_u64("0x0", 3, &v), 0);
	assert_int_equal(trace_parse_u64("18446744073709551615", 20, &v), 0);
	assert_int_equal(v, UINT64_MAX);
	assert_int_equal(trace_parse_u64("18446744073709551616", 20, &v), -1);
	assert_int_equal(trace_parse_u64("", 0, &v), -1);
	assert_int_equal(trace_parse_u64("0x", 2, &v), -1);
	assert_int_equal(trace_parse_u64(" 1", 2, &v), -1);
	assert_int_equal(trace_parse_u64("12", 1, &v), 0); /* length bounds the parse */
	assert_int_equal(v, 1);

	assert_int_equal(trace_parse_size("4k", 2, &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(trace_parse_size("2M", 2, &v), 0);
	assert_int_equal(v, 2 << 20);
	assert_int_equal(trace_parse_size("2MiB", 4, &v), 0);
	assert_int_equal(v, 2 << 20);
	assert_int_equal(trace_parse_size("1GB", 3, &v), 0);
	assert_int_equal(v, 1 << 30);
	assert_int_equal(trace_parse_size("0x40M", 5, &v), 0);
	assert_int_equal(v, 0x40ULL << 20);
	assert_int_equal(trace_parse_size("0x1b", 4, &v), 0); /* b is a hex digit here */
	assert_int_equal(v, 0x1b);
	assert_int_equal(trace_parse_size("16777215T", 9, &v), 0);
	assert_int_equal(trace_parse_size("16777216T", 9, &v), -1); /* 2^64 */
	assert_int_equal(trace_parse_size("1iB", 3, &v), -1);
	assert_int_equal(trace_parse_size("M", 1, &v), -1);
	assert_int_equal(trace_parse_size("2X", 2, &v), -1);

	assert_int_equal(trace_parse_mem("4G", &v, &gpa), 0);
	assert_int_equal(v, 4ULL << 30);
	assert_int_equal(gpa, 0);
	assert_int_equal(trace_parse_mem("512M@0x100000000", &v, &gpa), 0);
	assert_int_equal(v, 512ULL << 20);
	assert_int_equal(gpa, 0x100000000);
	assert_int_equal(trace_parse_mem("64M@4G", &v, &gpa), 0);
	assert_int_equal(gpa, 4ULL << 30);
	assert_int_equal(trace_parse_mem("64M@", &v, &gpa), -1);
	assert_int_equal(trace_parse_mem("@4G", &v, &gpa), -1);
	assert_int_equal(trace_parse_mem("1@0xffffffffffffffff", &v, &gpa), -1); /* wraps */
	assert_int_equal(trace_parse_mem("1M@2M@3M", &v, &gpa), -1);
}

/* Arbitrary bytes never crash the parser and always give a coherent record. */
static void test_random_bytes(void **state)
{
	static const char alphabet[] =
		"map fault convert kvm_hypercall: nr a0 a1 a2 a3 0x 0123456789"
		"abcdefABCDEFxX#\t\r\n\0 privateshared";
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	char line[256];

	(void)state;
	for (int iter = 0; iter < 200000; iter++) {
		struct trace_record rec;
		size_t len;

		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		len = seed % sizeof(line);
		for (size_t i = 0; i < len; i++) {
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			line[i] = (seed & 1) ? (char)(seed >> 8)
					     : alphabet[(seed >> 8) % (sizeof(alphabet) - 1)];
		}
		switch (trace_parse_line(line, len, &rec)) {
		case TRACE_MALFORMED:
			assert_non_null(rec.error);
			assert_true(rec.column >= 1 && rec.column <= len + 1);
			break;
		case TRACE_BLANK:
		case TRACE_OTHER:
		case TRACE_HYPERCALL:
		case TRACE_MAP:
		case TRACE_FAULT:
		case TRACE_CONVERT:
			assert_null(rec.error);
			break;
		default:
			fail_msg("unknown kind %d", rec.kind);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_trace_pipe_shape),     cmocka_unit_test(test_trace_cmd_shape),
		cmocka_unit_test(test_perf_script_shape),    cmocka_unit_test(test_hex_forms),
		cmocka_unit_test(test_hypercall_malformed),  cmocka_unit_test(test_own_format),
		cmocka_unit_test(test_own_format_malformed), cmocka_unit_test(test_blank_and_other),
		cmocka_unit_test(test_long_lines),	     cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_record_range),	     cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_random_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
