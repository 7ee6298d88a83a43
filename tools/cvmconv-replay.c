/* SPDX-License-Identifier: MIT */
/*
 * cvmconv-replay: feed a recorded conversion trace through the library and
 * print what it did.
 *
 *   cvmconv-replay [options] TRACE        (TRACE "-" reads standard input)
 *
 * Input (docs/trace-format.md, parsed by trace_parse.c): the text print of
 * the kvm:kvm_hypercall tracepoint (ftrace, trace-cmd report, perf script),
 * of which KVM_HC_MAP_GPA_RANGE (nr 0xc) is replayed through
 * cvmconv_map_gpa_range(), and the project's own map/fault/convert lines.
 *
 * Guest memory is real kernel memory: per region a shmem memfd stands in for
 * guest_memfd on the private side, and the shared side is a shmem memfd, an
 * MFD_HUGETLB memfd, a file on a hugetlbfs mount, or nothing. Punches are the
 * library's real fallocate calls. There is no /dev/kvm here: memory
 * attributes go to a strict recorder (attr_recorder.c) that refuses what
 * KVM_SET_MEMORY_ATTRIBUTES refuses.
 *
 * Exit status: 0 success; 1 a malformed line under --strict, a host failure
 * (the library returned an error a VMM must act on, backings could not be
 * created, the recorder disagrees with the library); 2 usage errors.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
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

#include <linux/kvm.h>

#include "cvmconv.h"

#include "attr_recorder.h"
#include "hugepool.h"
#include "replay.h"
#include "stats_report.h"
#include "trace_parse.h"

/* include/uapi/linux/kvm.h values the Debian 12 (6.1) headers lack. */
#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39
#endif
#ifndef KVM_MEMORY_EXIT_FLAG_PRIVATE
#define KVM_MEMORY_EXIT_FLAG_PRIVATE (1ULL << 3)
#endif
/* struct kvm_run (x86-64): the exit union starts at byte 32; memory_fault
 * is { u64 flags; u64 gpa; u64 size; } there. Written by offset so that
 * older headers without the memory_fault member do. */
#define RUN_MEMORY_FAULT_FLAGS 32
#define RUN_MEMORY_FAULT_GPA 40
#define RUN_MEMORY_FAULT_SIZE 48
_Static_assert(offsetof(struct kvm_run, hypercall) == 32, "kvm_run exit union not at 32");
_Static_assert(sizeof(struct kvm_run) >= RUN_MEMORY_FAULT_SIZE + 8, "kvm_run too small");

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

/* ---- backings and the context ---- */

static void cleanup(void)
{
	cvmconv_destroy(ctx);
	ctx = NULL;
	attr_recorder_destroy(recorder);
	recorder = NULL;
	for (size_t i = 0; i < nregions; i++) {
		if (regions[i].shared_fd >= 0)
			close(regions[i].shared_fd);
		if (regions[i].private_fd >= 0)
			close(regions[i].private_fd);
	}
	nregions = 0;
	hugepool_restore(); /* after the huge pages were released */
}

static int create_shared(uint64_t size)
{
	char mnt[256];
	int fd;

	switch (opt.backing) {
	case BACKING_SHMEM:
		fd = cvmconv_memfd_create("cvmconv-replay-shared", size, PAGE_4K);
		break;
	case BACKING_HUGETLB:
		fd = cvmconv_memfd_create("cvmconv-replay-shared", size, opt.huge_page_size);
		if (fd == -ENODEV)
			note("cvmconv-replay: the kernel has no %" PRIu64 " KiB huge pages for "
			     "MFD_HUGETLB",
			     opt.huge_page_size / KiB);
		break;
	case BACKING_HUGETLBFS:
		fd = cvmconv_hugetlbfs_create(size, opt.huge_page_size);
		if (fd == -ENOENT)
			note("cvmconv-replay: no hugetlbfs mount with %" PRIu64
			     " KiB pages; as root: mkdir -p /dev/hugepages && mount -t hugetlbfs "
			     "-o pagesize=%s none /dev/hugepages",
			     opt.huge_page_size / KiB, opt.huge_page_size == GiB ? "1G" : "2M");
		else if (fd >= 0 &&
			 cvmconv_hugetlbfs_mount_path(opt.huge_page_size, mnt, sizeof(mnt)) == 0)
			printf("             hugetlbfs mount: %s\n", mnt);
		break;
	case BACKING_NONE:
	default:
		return -1;
	}
	if (fd < 0)
		note("cvmconv-replay: cannot create the %s shared backing of %" PRIu64 " bytes: %s",
		     backing_names[opt.backing], size, strerror(-fd));
	return fd;
}

static int populate(int fd, uint64_t offset, uint64_t len)
{
	/* fallocate allocates like a first touch; on hugetlbfs it allocates
	 * whole huge pages (fs/hugetlbfs/inode.c hugetlbfs_fallocate) */
	if (fd >= 0 && fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len) != 0)
		return -errno;
	return 0;
}

/* --touch: the guest now uses [gpa, gpa + size) on the side it asked for. */
static int touch_range(uint64_t gpa, uint64_t size, bool to_private)
{
	uint64_t end = gpa + size;

	for (size_t i = 0; i < nregions; i++) {
		const struct guest_region *r = &regions[i];
		uint64_t lo = gpa > r->gpa ? gpa : r->gpa;
		uint64_t hi = end < r->gpa + r->size ? end : r->gpa + r->size;
		int err;

		if (lo >= hi)
			continue;
		err = populate(to_private ? r->private_fd : r->shared_fd, lo - r->gpa, hi - lo);
		if (err) {
			note("cvmconv-replay: --touch: allocating %s memory at gpa 0x%" PRIx64
			     " (+0x%" PRIx64 "): %s",
			     to_private ? "private" : "shared", lo, hi - lo, strerror(-err));
			return err;
		}
	}
	return 0;
}

static int setup(void)
{
	static const struct cvmconv_ops ops = { .set_memory_attributes = attr_recorder_set };
	struct attr_recorder_range rr[MAX_REGIONS];
	struct cvmconv_config cfg = {
		.sz = sizeof(cfg),
		.vm_fd = -1, /* no KVM: the recorder serves the attributes */
		.granule = opt.granule,
		.unaligned = opt.policy,
		.ops = &ops,
		.log = log_cb,
	};
	bool huge = opt.backing == BACKING_HUGETLB || opt.backing == BACKING_HUGETLBFS;
	uint64_t total = 0;
	char why[256], human[32];
	int ret;

	for (size_t i = 0; i < opt.nmem; i++) {
		rr[i].gpa = opt.mem[i].gpa;
		rr[i].size = opt.mem[i].size;
		total += opt.mem[i].size;
	}
	if (huge && opt.touch) {
		uint64_t need = total / opt.huge_page_size;
		long before, after;

		ret = hugepool_reserve(opt.huge_page_size, need, why, sizeof(why));
		if (ret) {
			note("cvmconv-replay: --touch with --backing %s needs %" PRIu64
			     " huge pages: %s\n(run as root, use a smaller --mem, or drop --touch)",
			     backing_names[opt.backing], need, why);
			return EXIT_FAIL;
		}
		hugepool_raised(&before, &after);
		if (before >= 0)
			printf("huge pages:  raised nr_hugepages %ld -> %ld (restored at exit)\n",
			       before, after);
	}
	ret = attr_recorder_create(rr, opt.nmem, TRACK_LIMIT_PAGES, &recorder);
	if (ret) {
		note("cvmconv-replay: attribute recorder: %s", strerror(-ret));
		return EXIT_FAIL;
	}
	cfg.ops_opaque = recorder;
	ret = cvmconv_create(&cfg, &ctx);
	if (ret) {
		note("cvmconv-replay: cvmconv_create: %s", strerror(-ret));
		return EXIT_FAIL;
	}
	for (size_t i = 0; i < opt.nmem; i++) {
		struct guest_region *g = &regions[nregions];
		struct cvmconv_region r = {
			.sz = sizeof(r),
			.gpa = opt.mem[i].gpa,
			.size = opt.mem[i].size,
			.shared_fd = -1,
			.flags = opt.start_private ? CVMCONV_REGION_PRIVATE : 0,
			.unaligned = -1,
		};

		g->gpa = r.gpa;
		g->size = r.size;
		g->shared_fd = -1;
		g->private_fd = cvmconv_memfd_create("cvmconv-replay-private", r.size, PAGE_4K);
		nregions++;
		if (g->private_fd < 0) {
			note("cvmconv-replay: private stand-in memfd of %" PRIu64 " bytes: %s",
			     r.size, strerror(-g->private_fd));
			return EXIT_FAIL;
		}
		if (opt.backing != BACKING_NONE) {
			g->shared_fd = create_shared(r.size);
			if (g->shared_fd < 0)
				return EXIT_FAIL;
		}
		r.private_fd = g->private_fd;
		r.shared_fd = g->shared_fd;
		ret = cvmconv_add_region(ctx, &r);
		if (ret) {
			note("cvmconv-replay: cvmconv_add_region(gpa 0x%" PRIx64 ", size 0x%" PRIx64
			     "): %s",
			     r.gpa, r.size, strerror(-ret));
			return EXIT_FAIL;
		}
		printf("memory:      [0x%" PRIx64 ", 0x%" PRIx64 ") %s%s, starts %s\n", r.gpa,
		       r.gpa + r.size, stats_human_bytes(r.size, human, sizeof(human)),
		       layout_inferred ? " (inferred from the trace)" : "",
		       opt.start_private ? "private" : "shared");
		if (opt.touch && touch_range(r.gpa, r.size, opt.start_private))
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
	ret = cvmconv_map_gpa_range(ctx, gpa, npages, attrs, &hc_ret);
	if (ret < 0) {
		host_failure(n, "cvmconv_map_gpa_range", ret);
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
	/* one kvm_run per vCPU of the trace, as a VMM has: cvmconv tells the
	 * vCPUs' faults apart by it */
	static struct kvm_run runs[64];
	struct kvm_run *rp = &runs[vcpu % 64];
	uint64_t flags = to_private ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0;
	int ret;

	n->faults++;
	memset(rp, 0, sizeof(*rp));
	rp->exit_reason = KVM_EXIT_MEMORY_FAULT;
	memcpy((unsigned char *)rp + RUN_MEMORY_FAULT_FLAGS, &flags, sizeof(flags));
	memcpy((unsigned char *)rp + RUN_MEMORY_FAULT_GPA, &gpa, sizeof(gpa));
	memcpy((unsigned char *)rp + RUN_MEMORY_FAULT_SIZE, &size, sizeof(size));
	ret = cvmconv_handle_exit(ctx, rp);
	if (ret == 1) {
		if (opt.touch && touch_range(gpa, size, to_private))
			n->host_failures++;
		return;
	}
	if (ret == -EFAULT || ret == -EPERM || ret == -ELOOP) {
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
	host_failure(n, "cvmconv_handle_exit", ret == 0 ? -ENOSYS : ret);
}

static void replay_convert(struct replay_counts *n, uint64_t gpa, uint64_t size, bool to_private)
{
	int ret;

	n->conversions++;
	ret = cvmconv_convert(ctx, gpa, size, to_private);
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
	host_failure(n, "cvmconv_convert", ret);
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

	if (cvmconv_get_stats(ctx, &st) == 0) {
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
	replay_print_kernel();
	if (replay_write_outputs(&st))
		status = EXIT_FAIL;
	return status;
}
