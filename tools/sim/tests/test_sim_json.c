/* SPDX-License-Identifier: MIT */
/*
 * Smoke runs of the cvmconv-sim binary (argv[1]): its --json output is
 * parsed (a strict little JSON reader below, so the test needs no tool the
 * machine may lack), every row must carry the documented keys, and the
 * figures must agree with each other — above all cvmconv's double
 * allocation with the kernel's (st_blocks, HugePages_Free). The --csv and
 * --trace outputs are checked for shape: one CSV line per row, and as many
 * `map` lines (parsed by tools/trace_parse.c) as the rows have exits.
 *
 * Without huge pages the tool falls back to shmem (and says so); the checks
 * still hold there (every double allocation is 0), and the test says which
 * backing it checked.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "trace_parse.h"

static const char *sim_path;
static char dir[] = "/tmp/cvmconv-sim-test-XXXXXX";

/* ---- a strict JSON reader (RFC 8259 subset: no \u escapes needed) ---- */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jv {
	enum jtype t;
	bool b;
	double num;
	bool is_uint;
	uint64_t u;
	char *s;
	struct jv *items; /* arrays and objects */
	char **keys;	  /* objects */
	size_t n;
};

struct reader {
	const char *p;
	const char *err;
};

static void ws(struct reader *r)
{
	while (*r->p == ' ' || *r->p == '\n' || *r->p == '\t' || *r->p == '\r')
		r->p++;
}

static bool parse_value(struct reader *r, struct jv *v, int depth);

static bool parse_string(struct reader *r, char **out)
{
	const char *start;
	char *s, *d;

	if (*r->p != '"') {
		r->err = "string expected";
		return false;
	}
	start = ++r->p;
	while (*r->p && *r->p != '"') {
		if ((unsigned char)*r->p < 0x20) {
			r->err = "control character in string";
			return false;
		}
		if (*r->p == '\\') {
			r->p++;
			if (!strchr("\"\\/bfnrtu", *r->p) || !*r->p) {
				r->err = "bad escape";
				return false;
			}
		}
		r->p++;
	}
	if (*r->p != '"') {
		r->err = "unterminated string";
		return false;
	}
	s = d = malloc((size_t)(r->p - start) + 1);
	assert_non_null(s);
	for (const char *q = start; q < r->p; q++) {
		if (*q == '\\') {
			q++;
			*d++ = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q;
			continue;
		}
		*d++ = *q;
	}
	*d = 0;
	r->p++;
	*out = s;
	return true;
}

static bool parse_number(struct reader *r, struct jv *v)
{
	const char *s = r->p;
	char *end;

	if (*s == '-')
		s++;
	if (!(*s >= '0' && *s <= '9')) {
		r->err = "value expected";
		return false;
	}
	if (*s == '0' && s[1] >= '0' && s[1] <= '9') {
		r->err = "leading zero";
		return false;
	}
	v->t = J_NUM;
	v->num = strtod(r->p, &end);
	v->is_uint = *r->p != '-' && strspn(r->p, "0123456789") == (size_t)(end - r->p);
	if (v->is_uint)
		v->u = strtoull(r->p, NULL, 10);
	r->p = end;
	return true;
}

static bool parse_container(struct reader *r, struct jv *v, bool obj, int depth)
{
	char close = obj ? '}' : ']';

	v->t = obj ? J_OBJ : J_ARR;
	r->p++;
	ws(r);
	if (*r->p == close) {
		r->p++;
		return true;
	}
	for (;;) {
		v->items = realloc(v->items, (v->n + 1) * sizeof(*v->items));
		assert_non_null(v->items);
		memset(&v->items[v->n], 0, sizeof(v->items[0]));
		if (obj) {
			v->keys = realloc(v->keys, (v->n + 1) * sizeof(*v->keys));
			assert_non_null(v->keys);
			ws(r);
			if (!parse_string(r, &v->keys[v->n]))
				return false;
			for (size_t i = 0; i < v->n; i++)
				if (!strcmp(v->keys[i], v->keys[v->n])) {
					r->err = "duplicate key";
					return false;
				}
			ws(r);
			if (*r->p++ != ':') {
				r->err = "':' expected";
				return false;
			}
		}
		if (!parse_value(r, &v->items[v->n++], depth + 1))
			return false;
		ws(r);
		if (*r->p == ',') {
			r->p++;
			continue;
		}
		if (*r->p == close) {
			r->p++;
			return true;
		}
		r->err = "',' or end of container expected";
		return false;
	}
}

static bool parse_value(struct reader *r, struct jv *v, int depth)
{
	if (depth > 16) {
		r->err = "too deep";
		return false;
	}
	ws(r);
	switch (*r->p) {
	case '{':
		return parse_container(r, v, true, depth);
	case '[':
		return parse_container(r, v, false, depth);
	case '"':
		v->t = J_STR;
		return parse_string(r, &v->s);
	case 't':
	case 'f':
	case 'n': {
		static const char *const words[] = { "true", "false", "null" };

		for (int i = 0; i < 3; i++) {
			if (!strncmp(r->p, words[i], strlen(words[i]))) {
				v->t = i == 2 ? J_NULL : J_BOOL;
				v->b = i == 0;
				r->p += strlen(words[i]);
				return true;
			}
		}
		r->err = "bad literal";
		return false;
	}
	default:
		return parse_number(r, v);
	}
}

static void jv_free(struct jv *v)
{
	for (size_t i = 0; i < v->n; i++) {
		jv_free(&v->items[i]);
		if (v->keys)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->s);
}

static const struct jv *get(const struct jv *o, const char *key)
{
	assert_int_equal(o->t, J_OBJ);
	for (size_t i = 0; i < o->n; i++)
		if (!strcmp(o->keys[i], key))
			return &o->items[i];
	fail_msg("key \"%s\" missing", key);
	return NULL;
}

static uint64_t u64(const struct jv *o, const char *key)
{
	const struct jv *v = get(o, key);

	if (v->t != J_NUM || !v->is_uint)
		fail_msg("\"%s\" is not an unsigned integer", key);
	return v->u;
}

static int64_t i64(const struct jv *o, const char *key)
{
	const struct jv *v = get(o, key);

	if (v->t != J_NUM || v->num != (double)(int64_t)v->num)
		fail_msg("\"%s\" is not an integer", key);
	return (int64_t)v->num;
}

static const char *str(const struct jv *o, const char *key)
{
	const struct jv *v = get(o, key);

	if (v->t != J_STR)
		fail_msg("\"%s\" is not a string", key);
	return v->s;
}

static bool boolean(const struct jv *o, const char *key)
{
	const struct jv *v = get(o, key);

	if (v->t != J_BOOL)
		fail_msg("\"%s\" is not a boolean", key);
	return v->b;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long len;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	assert_true(len >= 0);
	rewind(f);
	buf = malloc((size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
	buf[len] = 0;
	fclose(f);
	return buf;
}

/* ---- running the tool ---- */

static void run_sim(const char *const *args, const char *tag)
{
	char json[256], csv[256], trace[256], out[256];
	const char *argv[40];
	size_t n = 0;
	pid_t pid;
	int status;

	snprintf(json, sizeof(json), "%s/%s.json", dir, tag);
	snprintf(csv, sizeof(csv), "%s/%s.csv", dir, tag);
	snprintf(trace, sizeof(trace), "%s/%s.trace", dir, tag);
	snprintf(out, sizeof(out), "%s/%s.out", dir, tag);
	argv[n++] = sim_path;
	argv[n++] = "-q";
	for (; *args; args++)
		argv[n++] = *args;
	argv[n++] = "--json";
	argv[n++] = json;
	argv[n++] = "--csv";
	argv[n++] = csv;
	argv[n++] = "--trace";
	argv[n++] = trace;
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (!freopen(out, "w", stdout))
			_exit(127);
		execv(sim_path, (char *const *)argv);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char *text = slurp(out);

		fprintf(stderr, "%s\n", text);
		free(text);
		fail_msg("cvmconv-sim exited with status %d",
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	}
}

static const char *const row_keys[] = {
	"workload",
	"guest",
	"platform",
	"host",
	"policy",
	"ok",
	"conversions",
	"exits",
	"attr_calls",
	"punches",
	"unaligned",
	"da_peak_lib",
	"da_peak_kernel",
	"da_final_lib",
	"da_final_kernel",
	"da_final_hugepages_free",
	"hugepages_used",
	"shared_alloc_bytes",
	"live_shared_bytes",
	"guest_bytes",
	"mixed_extents",
	"mixed_extents_lib",
	"huge_mappable_bytes",
	"huge_mappable_lib",
	"huge_mappable_share",
	"vmemmap_lost_bytes",
	"ept_table_pages",
	"lib_kernel_mismatches",
	"terminated",
	"swiotlb_boot_bytes",
};

/* Checks one run's outputs; returns the number of rows. */
static size_t check_outputs(const char *tag, size_t want_rows)
{
	char path[256], line[4096];
	struct reader rd;
	struct jv root = { 0 };
	const struct jv *rows_v;
	char *text;
	uint64_t exits = 0, maps = 0, csv_lines = 0;
	bool huge;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.json", dir, tag);
	text = slurp(path);
	rd = (struct reader){ .p = text };
	if (!parse_value(&rd, &root, 0))
		fail_msg("%s: invalid JSON at byte %zu: %s", path, (size_t)(rd.p - text), rd.err);
	ws(&rd);
	assert_int_equal(*rd.p, 0);
	assert_string_equal(str(&root, "tool"), "cvmconv-sim");
	(void)str(&root, "cvmconv_version");
	(void)u64(get(&root, "config"), "ram_bytes");
	huge = !strcmp(str(&root, "shared_backing"), "hugetlb-2M");
	fprintf(stderr, "%s: shared side %s (%s)\n", tag, str(&root, "shared_backing"),
		str(&root, "shared_backing_note"));
	rows_v = get(&root, "rows");
	assert_int_equal(rows_v->t, J_ARR);
	assert_int_equal(rows_v->n, want_rows);
	for (size_t i = 0; i < rows_v->n; i++) {
		const struct jv *r = &rows_v->items[i];
		uint64_t mixed = u64(r, "mixed_extents");

		for (size_t k = 0; k < sizeof(row_keys) / sizeof(row_keys[0]); k++)
			(void)get(r, row_keys[k]);
		assert_true(boolean(r, "ok"));
		assert_false(boolean(r, "terminated"));
		exits += u64(r, "exits");
		/* what mixed extents cost, and what stays mappable with 2 MiB */
		assert_int_equal(u64(r, "vmemmap_lost_bytes"), mixed * 28 * 1024);
		assert_int_equal(u64(r, "ept_table_pages"), mixed);
		assert_int_equal(u64(r, "huge_mappable_bytes"),
				 u64(r, "guest_bytes") - mixed * 2 * 1024 * 1024);
		/* the kernel's figure is what the shared memfd holds beyond live pages */
		assert_int_equal(u64(r, "da_final_kernel"),
				 u64(r, "shared_alloc_bytes") - u64(r, "live_shared_bytes"));
		assert_true(u64(r, "da_peak_kernel") >= u64(r, "da_final_kernel"));
		if (huge) {
			assert_int_equal((uint64_t)i64(r, "hugepages_used") * 2 * 1024 * 1024,
					 u64(r, "shared_alloc_bytes"));
			assert_int_equal(i64(r, "da_final_hugepages_free"),
					 (int64_t)u64(r, "da_final_kernel"));
		} else {
			assert_int_equal(u64(r, "da_final_kernel"), 0);
		}
		if (!strcmp(str(r, "host"), "cvmconv")) {
			/* the library's own figures equal the kernel's */
			assert_true(boolean(r, "have_lib"));
			assert_int_equal(u64(r, "da_final_lib"), u64(r, "da_final_kernel"));
			assert_int_equal(u64(r, "da_peak_lib"), u64(r, "da_peak_kernel"));
			assert_int_equal(u64(r, "lib_kernel_mismatches"), 0);
			assert_int_equal(u64(r, "mixed_extents_lib"), mixed);
			assert_int_equal(u64(r, "huge_mappable_lib"),
					 u64(r, "huge_mappable_bytes"));
		} else {
			/* no tracking: one attribute update per exit */
			assert_string_equal(str(r, "host"), "qemu-like");
			assert_false(boolean(r, "have_lib"));
			assert_int_equal(u64(r, "attr_calls"), u64(r, "exits"));
		}
		/* the host does not change what the guest does (policy allow) */
		if (i % 2 == 1 && rows_v->n % 2 == 0) {
			const struct jv *q = &rows_v->items[i - 1];

			assert_string_equal(str(q, "guest"), str(r, "guest"));
			assert_string_equal(str(q, "platform"), str(r, "platform"));
			assert_int_equal(u64(q, "exits"), u64(r, "exits"));
			assert_int_equal(u64(q, "conversions"), u64(r, "conversions"));
			assert_int_equal(u64(q, "unaligned"), u64(r, "unaligned"));
		}
	}

	/* the trace: one map line per exit, every line well formed */
	snprintf(path, sizeof(path), "%s/%s.trace", dir, tag);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		struct trace_record rec;
		enum trace_kind k = trace_parse_line(line, strlen(line), &rec);

		assert_true(k == TRACE_MAP || k == TRACE_BLANK || k == TRACE_CONVERT);
		if (k == TRACE_MAP) {
			assert_true(!strncmp(line, "map 0x", 6));
			maps++;
		}
	}
	fclose(f);
	assert_int_equal(maps, exits);

	/* the CSV: a header and one line per row, the same number of fields */
	snprintf(path, sizeof(path), "%s/%s.csv", dir, tag);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		csv_lines++;
	fclose(f);
	assert_int_equal(csv_lines, want_rows + 1);

	jv_free(&root);
	free(text);
	return want_rows;
}

/* The main table's shape on a 4 GiB guest: legacy and RFC x 3 platforms x
 * both hosts, boot only. */
static void test_boot_all_platforms(void **state)
{
	static const char *const args[] = { "--ram", "4G", "--workload", "boot", NULL };

	(void)state;
	run_sim(args, "boot");
	check_outputs("boot", 12);
}

/* Runtime churn converts back to private: cvmconv punches huge pages the
 * moment they are wholly stale, and must still agree with the kernel after
 * every exit; the QEMU-like host keeps them. */
static void test_churn_converts_back(void **state)
{
	static const char *const args[] = { "--ram",	      "1G",	"--platform", "tdx,kvm-pv",
					    "--guest",	      "legacy", "--workload", "boot+churn",
					    "--churn-cycles", "400",	NULL };

	(void)state;
	run_sim(args, "churn");
	check_outputs("churn", 4);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	static const char *const tags[] = { "boot", "churn" };
	static const char *const ext[] = { "json", "csv", "trace", "out" };
	char path[256];

	(void)state;
	for (size_t t = 0; t < 2; t++) {
		for (size_t e = 0; e < 4; e++) {
			snprintf(path, sizeof(path), "%s/%s.%s", dir, tags[t], ext[e]);
			unlink(path);
		}
	}
	rmdir(dir);
	return 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_boot_all_platforms),
		cmocka_unit_test(test_churn_converts_back),
	};

	if (argc != 2) {
		fprintf(stderr, "usage: %s PATH-TO-cvmconv-sim\n", argv[0]);
		return 2;
	}
	sim_path = argv[1];
	return cmocka_run_group_tests(tests, setup, teardown);
}
