/* SPDX-License-Identifier: MIT */
/* Fault injection: every kernel call and allocation site of the .c files of src/ and
 * the test that covers it; test_call_sites fails on a site not listed. */
#include "fi.h"

/* ---- call-site enumeration ---- */

static const char *const callees[] = {
	"op_set_memory_attributes",
	"op_punch",
	"op_discard_hva",
	"op_set_gmem_attributes",
	"ioctl",
	"fallocate",
	"madvise",
	"malloc",
	"calloc",
	"realloc",
	"reallocarray",
	"aligned_alloc",
	"posix_memalign",
	"strdup",
	"strndup",
	"asprintf",
};

/* Every call site and the test that injects failures there. */
static const struct call_site {
	const char *file, *function, *callee;
	unsigned count;
	const char *tested_by;
} covered[] = {
	{ "convert.c", "set_attributes", "op_set_memory_attributes", 1,
	  "test_attr_forward, test_attr_rollback" },
	{ "context.c", "cvmconv_add_region", "op_set_memory_attributes", 1,
	  "test_attr_add_region_private" },
	{ "backing.c", "punch_call", "op_punch", 1,
	  "test_punch_shmem, test_punch_huge, test_flush_failure" },
	{ "backing.c", "punch_call", "op_discard_hva", 1, "test_discard_hva, test_flush_failure" },
	{ "kvm.c", "kvm_set_memory_attributes", "ioctl", 1, "test_default_ops_attr" },
	{ "kvm.c", "kvm_probe_private_attribute", "ioctl", 1, "test_default_ops_probe" },
	{ "kvm.c", "kvm_set_gmem_attributes", "ioctl", 1, "test_default_ops_gmem" },
	{ "kvm.c", "kvm_probe_gmem_attributes2", "ioctl", 1, "test_default_ops_gmem" },
	{ "kvm.c", "check_extension", "ioctl", 1, "test_default_ops_gmem (content modes)" },
	{ "inplace.c", "gmem_call", "op_set_gmem_attributes", 1,
	  "test_gmem_forward, test_gmem_rollback" },
	{ "kvm.c", "kvm_punch", "fallocate", 1, "test_default_ops_punch_madvise" },
	{ "kvm.c", "kvm_discard_hva", "madvise", 1, "test_default_ops_punch_madvise" },
	{ "kvm.c", "kvm_allocate", "fallocate", 1, "test_alloc_shared" },
	{ "kvm.c", "kvm_discard_private_hva", "madvise", 1,
	  "test_default_ops_punch_madvise (MAP_PRIVATE)" },
	{ "context.c", "cvmconv_create", "calloc", 1, "test_alloc_create" },
	{ "context.c", "cvmconv_add_region", "calloc", 1, "test_alloc_add_region" },
	{ "context.c", "cvmconv_add_region", "realloc", 1, "test_alloc_add_region (9th region)" },
	{ "runset.c", "runset_reserve", "realloc", 1,
	  "test_alloc_add_region (side_init), test_alloc_pending_list, test_alloc_convert" },
	{ "convert.c", "cvmconv_convert_batch", "calloc", 2, "test_alloc_convert (batches)" },
	{ "extents.c", "tracker_reserve", "malloc", 1,
	  "test_alloc_add_region (tracker_init), test_alloc_convert" },
	{ "u64map.c", "u64map_reserve", "malloc", 1, "test_alloc_convert (mixed extents)" },
};
#define NCOVERED (sizeof(covered) / sizeof(covered[0]))

/* Copy of @src with comments, string and character literals blanked
 * (newlines kept). */
static char *strip_c(const char *src, size_t n)
{
	char *out = malloc(n + 1);
	size_t i = 0;

	assert_non_null(out);
	while (i < n) {
		if (src[i] == '/' && i + 1 < n && src[i + 1] == '*') {
			out[i] = out[i + 1] = ' ';
			i += 2;
			while (i < n && !(src[i] == '*' && i + 1 < n && src[i + 1] == '/')) {
				out[i] = src[i] == '\n' ? '\n' : ' ';
				i++;
			}
			if (i < n) {
				out[i] = out[i + 1] = ' ';
				i += 2;
			}
		} else if (src[i] == '/' && i + 1 < n && src[i + 1] == '/') {
			while (i < n && src[i] != '\n')
				out[i++] = ' ';
		} else if (src[i] == '"' || src[i] == '\'') {
			char q = src[i];

			out[i++] = ' ';
			while (i < n && src[i] != q) {
				if (src[i] == '\\' && i + 1 < n)
					out[i++] = ' ';
				out[i] = src[i] == '\n' ? '\n' : ' ';
				i++;
			}
			if (i < n)
				out[i++] = ' ';
		} else {
			out[i] = src[i];
			i++;
		}
	}
	out[n] = '\0';
	return out;
}

static bool ident_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_';
}

struct found_site {
	char file[64], function[64];
	const char *callee;
	unsigned count;
};

/* Record the calls in one stripped file. A function starts at a line that
 * begins in column 0 with an identifier and has a '(' before any ';' (its
 * name is the identifier before that '('). */
static void scan_file(const char *name, const char *text, struct found_site *found,
		      unsigned *nfound, unsigned max)
{
	char function[64] = "(file scope)";
	const char *line = text;

	while (*line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);

		if (ident_char(line[0]) && memchr(line, '(', len)) {
			const char *paren = memchr(line, '(', len);
			const char *semi = memchr(line, ';', len);

			if (!semi || semi > paren) {
				const char *b = paren;

				while (b > line && (b[-1] == ' ' || b[-1] == '\t'))
					b--;
				const char *a = b;
				while (a > line && ident_char(a[-1]))
					a--;
				if (b > a && (size_t)(b - a) < sizeof(function)) {
					memcpy(function, a, (size_t)(b - a));
					function[b - a] = '\0';
				}
			}
		}
		for (size_t k = 0; k < sizeof(callees) / sizeof(callees[0]); k++) {
			size_t cl = strlen(callees[k]);

			for (const char *p = line; p + cl <= line + len; p++) {
				const char *q = p + cl;

				if (memcmp(p, callees[k], cl) || (p > line && ident_char(p[-1])) ||
				    (p > line && p[-1] == '.') || ident_char(*q))
					continue;
				while (q < line + len && (*q == ' ' || *q == '\t'))
					q++;
				if (q >= line + len || *q != '(')
					continue;
				/* the definition line of the function itself is no call */
				if (!strcmp(function, callees[k]) && line[0] != ' ' &&
				    line[0] != '\t')
					continue;
				unsigned j;
				for (j = 0; j < *nfound; j++)
					if (!strcmp(found[j].file, name) &&
					    !strcmp(found[j].function, function) &&
					    found[j].callee == callees[k])
						break;
				if (j == *nfound) {
					assert_true(*nfound < max);
					snprintf(found[j].file, sizeof(found[j].file), "%s", name);
					snprintf(found[j].function, sizeof(found[j].function), "%s",
						 function);
					found[j].callee = callees[k];
					found[j].count = 0;
					(*nfound)++;
				}
				found[j].count++;
			}
		}
		if (!end)
			break;
		line = end + 1;
	}
}

void test_call_sites(void **state)
{
	static struct found_site found[256];
	unsigned nfound = 0, bad = 0;
	bool listed_found[NCOVERED] = { false };
	DIR *d = opendir(CVMCONV_SOURCE_DIR "/src");
	struct dirent *de;

	(void)state;
	assert_non_null(d);
	while ((de = readdir(d))) {
		size_t nl = strlen(de->d_name);
		char path[512];
		struct stat st;
		char *raw, *text;
		FILE *f;

		if (nl < 3 || strcmp(de->d_name + nl - 2, ".c"))
			continue;
		snprintf(path, sizeof(path), "%s/src/%s", CVMCONV_SOURCE_DIR, de->d_name);
		f = fopen(path, "re");
		assert_non_null(f);
		assert_int_equal(fstat(fileno(f), &st), 0);
		raw = malloc((size_t)st.st_size + 1);
		assert_non_null(raw);
		assert_int_equal(fread(raw, 1, (size_t)st.st_size, f), (size_t)st.st_size);
		fclose(f);
		text = strip_c(raw, (size_t)st.st_size);
		scan_file(de->d_name, text, found, &nfound, 256);
		free(text);
		free(raw);
	}
	closedir(d);

	for (unsigned j = 0; j < nfound; j++) {
		unsigned k;

		for (k = 0; k < NCOVERED; k++)
			if (!strcmp(covered[k].file, found[j].file) &&
			    !strcmp(covered[k].function, found[j].function) &&
			    !strcmp(covered[k].callee, found[j].callee))
				break;
		if (k == NCOVERED) {
			fprintf(stderr,
				"UNCOVERED: src/%s: %s() calls %s() (%u site%s): add a fault "
				"injection case and list it in "
				"tests/fault_injection/fi_call_sites.c\n",
				found[j].file, found[j].function, found[j].callee, found[j].count,
				found[j].count == 1 ? "" : "s");
			bad++;
		} else if (covered[k].count != found[j].count) {
			fprintf(stderr,
				"CHANGED: src/%s: %s() calls %s() %u times, the list says %u\n",
				found[j].file, found[j].function, found[j].callee, found[j].count,
				covered[k].count);
			bad++;
		} else {
			listed_found[k] = true;
		}
	}
	for (unsigned k = 0; k < NCOVERED; k++)
		if (!listed_found[k] && !bad)
			fprintf(stderr,
				"STALE: src/%s: %s() no longer calls %s(): update the list\n",
				covered[k].file, covered[k].function, covered[k].callee);
	printf("fault_injection: %u kernel call and allocation sites in src/*.c, all covered: %s\n",
	       nfound, bad ? "NO" : "yes");
	for (unsigned k = 0; k < NCOVERED; k++)
		bad += !listed_found[k];
	assert_int_equal(bad, 0);
}
