/* SPDX-License-Identifier: MIT */
/* Command-line and table helpers of the tools (see cli.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

int cli_usage_error(const char *prog, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(%s --help shows the options)\n", prog);
	return CLI_EXIT_USAGE;
}

bool cli_output_option(int ch, const char *arg, struct cli_output *o)
{
	switch (ch) {
	case CLI_OPT_CSV:
		o->csv = arg;
		return true;
	case CLI_OPT_JSON:
		o->json = arg;
		return true;
	case 'q':
		o->quiet = true;
		return true;
	case 'v':
		o->verbose = true;
		return true;
	default:
		return false;
	}
}

bool cli_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!*s || *s == '-')
		return false;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

bool cli_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	if (!*s || *s == '-')
		return false;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return false;
	switch (*end) {
	case 0:
		break;
	case 'k':
	case 'K':
		mul = KiB;
		break;
	case 'm':
	case 'M':
		mul = MiB;
		break;
	case 'g':
	case 'G':
		mul = GiB;
		break;
	case 't':
	case 'T':
		mul = 1024 * GiB;
		break;
	default:
		return false;
	}
	if (*end && end[1] && strcasecmp(end + 1, "iB") && strcasecmp(end + 1, "B"))
		return false;
	if (v > UINT64_MAX / mul)
		return false;
	*out = v * mul;
	return true;
}

int cli_each_item(const char *prog, const char *list, int (*one)(const char *item))
{
	char buf[512], *save = NULL, *tok;
	int ret;

	if (strlen(list) >= sizeof(buf))
		return cli_usage_error(prog, "list too long: %s", list);
	strcpy(buf, list);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		if ((ret = one(tok)))
			return ret;
	return 0;
}

const char *cli_human(uint64_t b, char *buf, size_t len)
{
	if (b == 0)
		snprintf(buf, len, "0");
	else if (b < MiB)
		snprintf(buf, len, "%" PRIu64 "K", b / KiB);
	else if (b < GiB)
		snprintf(buf, len, "%.1fM", (double)b / (double)MiB);
	else
		snprintf(buf, len, "%.2fG", (double)b / (double)GiB);
	return buf;
}

void cli_csv_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

void cli_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* One value; @json: booleans true/false and strings JSON-quoted. */
static void field_value(FILE *out, const struct cli_field *f, bool json)
{
	switch (f->kind) {
	case CLI_F_U64:
		fprintf(out, "%" PRIu64, f->u);
		break;
	case CLI_F_I64:
		fprintf(out, "%" PRId64, f->i);
		break;
	case CLI_F_STR:
		if (json)
			cli_json_str(out, f->s);
		else
			cli_csv_str(out, f->s);
		break;
	case CLI_F_BOOL:
		fputs(f->u ? (json ? "true" : "1") : (json ? "false" : "0"), out);
		break;
	case CLI_F_F64:
		fprintf(out, "%.6f", f->d);
		break;
	}
}

void cli_fields_csv(FILE *out, const struct cli_field *f, size_t n, bool header)
{
	for (size_t k = 0; k < n; k++) {
		if (k)
			fputc(',', out);
		if (header)
			fputs(f[k].name, out);
		else
			field_value(out, &f[k], false);
	}
	fputc('\n', out);
}

void cli_fields_json(FILE *out, const struct cli_field *f, size_t n)
{
	fputc('{', out);
	for (size_t k = 0; k < n; k++) {
		fprintf(out, "%s\"%s\": ", k ? ", " : "", f[k].name);
		field_value(out, &f[k], true);
	}
	fputc('}', out);
}
