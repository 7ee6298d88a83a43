/* SPDX-License-Identifier: MIT */
/*
 * cvmconv-replay: feed a recorded conversion trace through a host and
 * print what it did.
 *
 *   cvmconv-replay [options] TRACE        (TRACE "-" reads standard input)
 *
 * Input (docs/trace-format.md, parsed by trace_parse.c): the text print of
 * the kvm:kvm_hypercall tracepoint (ftrace, trace-cmd report, perf script),
 * of which KVM_HC_MAP_GPA_RANGE (nr 0xc) is replayed as a map_gpa_range
 * exit, and the project's own map/fault/convert lines.
 *
 * The host is one of the host engine's (tools/engine/host_engine.h):
 * cvmconv with two backings (the default), cvmconv in place
 * (CVMCONV_REGION_INPLACE) or the QEMU-like baseline. Guest memory is real
 * kernel memory with files of its own per region: a shmem memfd stands in
 * for guest_memfd on the private side (in place: for the one guest_memfd),
 * and the shared side is a shmem memfd, an MFD_HUGETLB memfd, a file on a
 * hugetlbfs mount, or nothing. Punches are real fallocate calls. There is
 * no /dev/kvm here: memory attributes go to the engine's strict recorder
 * (attr_recorder.c) that refuses what KVM_SET_MEMORY_ATTRIBUTES refuses.
 *
 * Exit status: 0 success; 1 a malformed line under --strict, a host failure
 * (the host returned an error a VMM must act on, backings could not be
 * created, the recorder disagrees with the library, the kernel's double
 * allocation differs from the library's under --touch); 2 usage errors.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cvmconv.h"

#include "host_engine.h"
#include "hugepool.h"
#include "replay.h"
#include "stats_report.h"
#include "trace_parse.h"

static bool layout_inferred;
static uint64_t current_line; /* for the log callback's messages */

static void log_cb(void *opaque, int level, const char *msg)
{
	(void)opaque;
	if (level > LOG_NOTICE && !opt.out.verbose)
		return;
	if (level > LOG_ERR && opt.out.quiet)
		return;
	if (current_line)
		note("line %" PRIu64 ": cvmconv: %s", current_line, msg);
	else
		note("cvmconv: %s", msg);
}

/* ---- reading lines, bounded ---- */

struct line_reader {
	FILE *f;
	FILE *spool;		      /* copy of what was read (stdin, to read it twice), or NULL */
	uint64_t lineno;	      /* of the line last returned */
	uint64_t bytes;		      /* bytes consumed so far */
	char buf[TRACE_LINE_MAX + 2]; /* enough for the parser to see "too long" */
};

/* 1 and the line in r->buf[0..*len) (no newline; a longer line is cut at
 * sizeof(buf) bytes and its rest skipped), 0 at end of input, -errno.
 * Counted and bounded: a line without end costs no memory. */
static int read_line(struct line_reader *r, size_t *len)
{
	size_t n = 0;
	bool any = false, cut = false;
	int ch;

	while ((ch = getc_unlocked(r->f)) != EOF) {
		any = true;
		r->bytes++;
		if (r->spool)
			putc_unlocked(ch, r->spool);
		if (ch == '\n')
			break;
		if (n < sizeof(r->buf))
			r->buf[n++] = (char)ch;
		else
			cut = true;
	}
	if (ferror(r->f))
		return -EIO;
	if (!any)
		return 0;
	/* A cut line must stay "too long" for the parser, which would drop
	 * line-ending bytes from its end: end it with something else. */
	if (cut)
		r->buf[n - 1] = '~';
	r->lineno++;
	*len = n;
	return 1;
}

/* ---- guest memory layout ---- */

/* Pass 1: the smallest 1 GiB-aligned span covering every range the trace
 * names (hostile ranges beyond 2^52 excluded, see trace_record_range). */
static int infer_layout(struct line_reader *lr, uint64_t total)
{
	uint64_t lo = UINT64_MAX, hi = 0, gpa, size;
	struct trace_record rec;
	size_t len;
	int ret;

	while ((ret = read_line(lr, &len)) == 1) {
		progress("scanning", lr->lineno, lr->bytes, total);
		trace_parse_line(lr->buf, len, &rec);
		if (!trace_record_range(&rec, &gpa, &size))
			continue;
		if (gpa < lo)
			lo = gpa;
		if (gpa + size > hi)
			hi = gpa + size;
	}
	clear_progress();
	if (ret < 0) {
		note("cvmconv-replay: %s: read error", opt.trace);
		return EXIT_USAGE;
	}
	if (hi == 0) { /* nothing names memory: a 1 GiB guest at 0 */
		lo = 0;
		hi = GiB;
	}
	lo &= ~(GiB - 1);
	hi = (hi + GiB - 1) & ~(GiB - 1); /* hi <= 2^52: no overflow */
	if (hi - lo > INFER_MAX) {
		char span[32];

		note("cvmconv-replay: the trace names guest memory from 0x%" PRIx64 " to 0x%" PRIx64
		     " (%s); inferring more than 1 TiB is refused: give the layout with --mem",
		     lo, hi, stats_human_bytes(hi - lo, span, sizeof(span)));
		return EXIT_USAGE;
	}
	opt.mem[0].gpa = lo;
	opt.mem[0].size = hi - lo;
	opt.nmem = 1;
	layout_inferred = true;
	return EXIT_OK;
}

static int check_layout(void)
{
	for (size_t i = 0; i < opt.nmem; i++) {
		if (opt.mem[i].gpa > (1ULL << 52) - opt.mem[i].size)
			return usage_error("--mem: region at 0x%" PRIx64 " ends beyond 2^52, "
					   "where no x86 guest has memory",
					   opt.mem[i].gpa);
		if ((opt.backing == BACKING_HUGETLB || opt.backing == BACKING_HUGETLBFS) &&
		    opt.mem[i].size % opt.huge_page_size)
			return usage_error("--mem: region at 0x%" PRIx64 " of 0x%" PRIx64
					   " bytes is not a whole number of %" PRIu64
					   " KiB huge pages (--backing %s)",
					   opt.mem[i].gpa, opt.mem[i].size,
					   opt.huge_page_size / KiB, backing_names[opt.backing]);
		for (size_t j = 0; j < i; j++)
			if (opt.mem[i].gpa < opt.mem[j].gpa + opt.mem[j].size &&
			    opt.mem[j].gpa < opt.mem[i].gpa + opt.mem[i].size)
				return usage_error("--mem: regions at 0x%" PRIx64 " and 0x%" PRIx64
						   " overlap",
						   opt.mem[j].gpa, opt.mem[i].gpa);
	}
	return EXIT_OK;
}

/* ---- guest memory and its host ---- */

static void cleanup(void)
{
	host_engine_close(&eng);
	hugepool_restore(); /* after the huge pages were released */
}

/* --touch: the guest now uses [gpa, gpa + size) on the side it asked for. */
static int touch_range(uint64_t gpa, uint64_t size, bool to_private)
{
	int err = host_engine_populate(&eng, gpa, size, to_private);

	if (err)
		note("cvmconv-replay: --touch: %s", eng.why);
	return err;
}

static int reserve_huge_pages(uint64_t total)
{
	uint64_t need = total / opt.huge_page_size;
	long before, after;
	char why[256];
	int ret = hugepool_reserve(opt.huge_page_size, need, why, sizeof(why));

	if (ret) {
		note("cvmconv-replay: --touch with --backing %s needs %" PRIu64
		     " huge pages: %s\n(run as root, use a smaller --mem, or drop --touch)",
		     backing_names[opt.backing], need, why);
		return EXIT_FAIL;
	}
	hugepool_raised(&before, &after);
	if (before >= 0)
		printf("huge pages:  raised nr_hugepages %ld -> %ld (restored at exit)\n", before,
		       after);
	return EXIT_OK;
}

/* The engine could not make the backings: say why, with a hint. */
static void backing_failed(int ret)
{
	if (opt.backing == BACKING_HUGETLB && ret == -ENODEV)
		note("cvmconv-replay: the kernel has no %" PRIu64 " KiB huge pages for "
		     "MFD_HUGETLB",
		     opt.huge_page_size / KiB);
	else if (opt.backing == BACKING_HUGETLBFS && ret == -ENOENT)
		note("cvmconv-replay: no hugetlbfs mount with %" PRIu64
		     " KiB pages; as root: mkdir -p /dev/hugepages && mount -t hugetlbfs "
		     "-o pagesize=%s none /dev/hugepages",
		     opt.huge_page_size / KiB, opt.huge_page_size == GiB ? "1G" : "2M");
	note("cvmconv-replay: %s", eng.why);
}

static int setup(void)
{
	static const enum host_engine_shared shared[] = {
		[BACKING_SHMEM] = HOST_ENGINE_SHARED_SHMEM,
		[BACKING_HUGETLB] = HOST_ENGINE_SHARED_MFD_HUGETLB,
		[BACKING_HUGETLBFS] = HOST_ENGINE_SHARED_HUGETLBFS,
		[BACKING_NONE] = HOST_ENGINE_SHARED_NONE,
	};
	struct host_engine_config cfg = {
		.host = opt.host == REPLAY_INPLACE     ? HOST_ENGINE_INPLACE
			: opt.host == REPLAY_QEMU_LIKE ? HOST_ENGINE_QEMU_LIKE
						       : HOST_ENGINE_CVMCONV,
		.nreg = (int)opt.nmem,
		.per_region_files = true,
		.shared = shared[opt.backing],
		.huge_page_size = opt.huge_page_size,
		.private_standin = true,
		.track_limit_pages = TRACK_LIMIT_PAGES,
		.start_private = opt.start_private,
		.policy = opt.policy,
		.granule = opt.granule,
		.gmem_busy_every = opt.gmem_busy_every,
		.log = log_cb,
		.shared_name = "cvmconv-replay-shared",
	};
	bool huge = opt.backing == BACKING_HUGETLB || opt.backing == BACKING_HUGETLBFS;
	char human[32], mnt[256];
	int ret;

	for (size_t i = 0; i < opt.nmem; i++) {
		/* the engine's record lays the regions end to end */
		cfg.reg[i] =
			(struct host_engine_region){ opt.mem[i].gpa, opt.mem[i].size, cfg.span };
		cfg.span += opt.mem[i].size;
	}
	if (huge && opt.touch && reserve_huge_pages(cfg.span))
		return EXIT_FAIL;
	ret = host_engine_open(&eng, &cfg);
	if (ret) {
		backing_failed(ret);
		return EXIT_FAIL;
	}
	ret = host_engine_start(&eng);
	if (ret) {
		note("cvmconv-replay: %s", eng.why);
		return EXIT_FAIL;
	}
	for (size_t i = 0; i < opt.nmem; i++) {
		const struct host_engine_region *r = &cfg.reg[i];

		if (opt.backing == BACKING_HUGETLBFS &&
		    cvmconv_hugetlbfs_mount_path(opt.huge_page_size, mnt, sizeof(mnt)) == 0)
			printf("             hugetlbfs mount: %s\n", mnt);
		printf("memory:      [0x%" PRIx64 ", 0x%" PRIx64 ") %s%s, starts %s\n", r->gpa,
		       r->gpa + r->size, stats_human_bytes(r->size, human, sizeof(human)),
		       layout_inferred ? " (inferred from the trace)" : "",
		       opt.start_private ? "private" : "shared");
		if (opt.touch && touch_range(r->gpa, r->size, opt.start_private))
			return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* ---- replaying one record ---- */

static struct budget refusal_budget, malformed_budget;

static void host_failure(struct replay_counts *n, const char *call, int err)
{
	n->host_failures++;
	note("line %" PRIu64 ": %s: %s: host failure, a VMM would stop the VM here", current_line,
	     call, strerror(-err));
}

static void replay_map(struct replay_counts *n, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	uint64_t hc_ret = UINT64_MAX;
	int ret;

	n->map_requests++;
	ret = host_engine_map_gpa_range(&eng, gpa, npages, attrs, &hc_ret);
	if (ret == -EINVAL && !eng.conv) {
		/* the baseline refuses what kvm_convert_memory refuses, and
		 * QEMU stops the vCPU (the guest is never answered) */
		n->map_refused++;
		if (!opt.out.quiet && spend(&refusal_budget, "refusals"))
			note("line %" PRIu64 ": map gpa 0x%" PRIx64 " npages 0x%" PRIx64
			     " attrs 0x%" PRIx64 ": refused (-EINVAL), QEMU would stop this vCPU",
			     current_line, gpa, npages, attrs);
		return;
	}
	if (ret < 0) {
		host_failure(n, eng.conv ? "cvmconv_map_gpa_range" : "qemu_like_map_gpa_range",
			     ret);
		return;
	}
	if (hc_ret) {
		n->map_refused++;
		if (opt.out.verbose && spend(&refusal_budget, "refusals"))
			note("line %" PRIu64 ": map gpa 0x%" PRIx64 " npages 0x%" PRIx64
			     " attrs 0x%" PRIx64 ": refused, the guest gets %" PRId64,
			     current_line, gpa, npages, attrs, (int64_t)hc_ret);
		return;
	}
	if (opt.touch &&
	    touch_range(gpa, npages * PAGE_4K, attrs & CVMCONV_MAP_GPA_RANGE_ENCRYPTED))
		n->host_failures++;
}

static void replay_fault(struct replay_counts *n, uint64_t gpa, uint64_t size, bool to_private,
			 unsigned vcpu)
{
	/* the engine keeps one kvm_run per vCPU of the trace, as a VMM has:
	 * cvmconv tells the vCPUs' faults apart by it */
	int ret;

	n->faults++;
	ret = host_engine_memory_fault(&eng, vcpu, gpa, size, to_private);
	if (ret == 1) {
		if (opt.touch && touch_range(gpa, size, to_private))
			n->host_failures++;
		return;
	}
	if (ret == -EFAULT || ret == -EPERM || ret == -ELOOP || (ret == -EINVAL && !eng.conv)) {
		/* cannot be answered: the VMM stops this vCPU; the replay goes on */
		n->faults_refused++;
		if (!opt.out.quiet && spend(&refusal_budget, "refusals"))
			note("line %" PRIu64 ": fault gpa 0x%" PRIx64 " size 0x%" PRIx64
			     " %s: refused (%s), a VMM would stop this vCPU",
			     current_line, gpa, size, to_private ? "private" : "shared",
			     ret == -EPERM   ? "policy"
			     : ret == -ELOOP ? "the same fault again, nothing to convert"
					     : "invalid range");
		return;
	}
	host_failure(n, eng.conv ? "cvmconv_handle_exit" : "qemu_like_convert",
		     ret == 0 ? -ENOSYS : ret);
}

static void replay_convert(struct replay_counts *n, uint64_t gpa, uint64_t size, bool to_private)
{
	int ret;

	n->conversions++;
	ret = host_engine_convert(&eng, gpa, size, to_private);
	if (ret == 0) {
		if (opt.touch && touch_range(gpa, size, to_private))
			n->host_failures++;
		return;
	}
	if (ret == -EINVAL) {
		n->conversions_refused++;
		if (!opt.out.quiet && spend(&refusal_budget, "refusals"))
			note("line %" PRIu64 ": convert gpa 0x%" PRIx64 " size 0x%" PRIx64
			     " %s: refused (-EINVAL: misaligned, empty or outside guest memory)",
			     current_line, gpa, size, to_private ? "private" : "shared");
		return;
	}
	host_failure(n, eng.conv ? "cvmconv_convert" : "qemu_like_convert", ret);
}

/* Pass 2. Returns EXIT_OK, EXIT_FAIL when it had to stop, or EXIT_USAGE
 * when the trace could not be read. */
static int replay(struct line_reader *lr, uint64_t total, struct replay_counts *n)
{
	struct trace_record rec;
	size_t len;
	int ret;

	while ((ret = read_line(lr, &len)) == 1) {
		current_line = lr->lineno;
		n->lines++;
		progress("replaying", lr->lineno, lr->bytes, total);
		switch (trace_parse_line(lr->buf, len, &rec)) {
		case TRACE_BLANK:
			n->blank++;
			break;
		case TRACE_OTHER:
			n->other++;
			break;
		case TRACE_MALFORMED:
			n->malformed++;
			if (opt.strict) {
				note("%s:%" PRIu64 ":%zu: %s (--strict: stopping)", opt.trace,
				     lr->lineno, rec.column, rec.error);
				return EXIT_FAIL;
			}
			if (!opt.out.quiet && spend(&malformed_budget, "malformed lines"))
				note("%s:%" PRIu64 ":%zu: %s (line skipped)", opt.trace, lr->lineno,
				     rec.column, rec.error);
			break;
		case TRACE_HYPERCALL:
			n->hypercalls++;
			if (rec.nr != TRACE_HC_MAP_GPA_RANGE)
				n->other_hypercalls++;
			else
				replay_map(n, rec.a[0], rec.a[1], rec.a[2]);
			break;
		case TRACE_MAP:
			replay_map(n, rec.gpa, rec.npages, rec.attrs);
			break;
		case TRACE_FAULT:
			replay_fault(n, rec.gpa, rec.size, rec.to_private, rec.vcpu);
			break;
		case TRACE_CONVERT:
			replay_convert(n, rec.gpa, rec.size, rec.to_private);
			break;
		}
		if (n->host_failures)
			return EXIT_FAIL;
	}
	current_line = 0;
	clear_progress();
	if (ret < 0) {
		note("cvmconv-replay: %s: read error after line %" PRIu64, opt.trace, lr->lineno);
		return EXIT_USAGE; /* an unreadable trace, as when it cannot be opened */
	}
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	struct line_reader lr = { 0 };
	struct replay_counts counts = { 0 };
	struct cvmconv_stats st = { .sz = sizeof(st) };
	struct timespec t0;
	struct stat sb;
	uint64_t total = 0;
	int status, check;

	status = replay_parse_options(argc, argv);
	if (status)
		return status;
	progress_enabled = isatty(STDOUT_FILENO) && isatty(STDERR_FILENO);
	clock_gettime(CLOCK_MONOTONIC, &progress_last);

	if (!strcmp(opt.trace, "-")) {
		lr.f = stdin;
	} else {
		lr.f = fopen(opt.trace, "re");
		if (!lr.f) {
			fprintf(stderr, "cvmconv-replay: %s: %s\n", opt.trace, strerror(errno));
			return EXIT_USAGE;
		}
	}
	if (fstat(fileno(lr.f), &sb) == 0 && S_ISREG(sb.st_mode))
		total = (uint64_t)sb.st_size;

	if (opt.nmem == 0) {
		if (!total) { /* not seekable: keep a copy to read it twice */
			lr.spool = tmpfile();
			if (!lr.spool) {
				fprintf(stderr, "cvmconv-replay: tmpfile: %s\n", strerror(errno));
				return EXIT_FAIL;
			}
		}
		status = infer_layout(&lr, total);
		if (status)
			return status;
		if (lr.spool) {
			if (lr.f != stdin)
				fclose(lr.f);
			lr.f = lr.spool;
			lr.spool = NULL;
			total = lr.bytes;
		}
		rewind(lr.f);
		lr.lineno = lr.bytes = 0;
	}
	status = check_layout();
	if (status)
		return status;

	setvbuf(stdout, NULL, _IOLBF, 0);
	atexit(cleanup);
	hugepool_restore_on_signals();
	replay_print_header();
	status = setup();
	if (status)
		return status;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	status = replay(&lr, total, &counts);
	replay_print_counts(&counts, seconds_since(&t0));
	if (lr.f != stdin)
		fclose(lr.f);

	if (!eng.conv) {
		replay_print_baseline();
	} else if (cvmconv_get_stats(eng.conv, &st) == 0) {
		printf("\ncvmconv statistics (cvmconv_get_stats)\n");
		stats_print_table(stdout, &st);
		if (st.broken) {
			note("cvmconv-replay: the context is broken (a rollback failed)");
			status = EXIT_FAIL;
		}
	}
	check = replay_cross_check();
	if (check) {
		note("cvmconv-replay: the recorder and the library disagree: a library bug");
		status = EXIT_FAIL;
	}
	if (replay_print_kernel(&st))
		status = EXIT_FAIL;
	if (replay_write_outputs(&st))
		status = EXIT_FAIL;
	return status;
}
