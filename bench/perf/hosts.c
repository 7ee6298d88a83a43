/* SPDX-License-Identifier: MIT */
/*
 * One stream through one host over real backings: a shared memfd (2 MiB
 * MFD_HUGETLB or shmem) and a shmem memfd standing in for guest_memfd,
 * both as large as guest RAM and sparse. Attribute updates go to the strict
 * recorder of tools/attr_recorder.h (there is no /dev/kvm); punches are
 * real fallocate() calls. With opt->touch every page made shared is
 * written once after its exit, as a guest using the memory would, so that
 * the kernel's allocation (st_blocks, HugePages_Free) is what a VM would
 * hold.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kernel_accounting.h"
#include "private_backing.h"
#include "attr_recorder.h"
#include "perf.h"
#include "qemu_like.h"

#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26 /* include/uapi/linux/memfd.h */
#endif
#define MAX_CALLS 2048 /* kernel calls of one exit kept for the diagnostics */

struct call {
	char what; /* 'a' attributes, 's' punch shared, 'p' punch private */
	uint64_t a, b;
	bool private_;
};

struct run {
	const struct perf_stream *s;
	const struct perf_oracle *o;
	const struct perf_host_opts *opt;
	struct perf_host_result *res;
	enum perf_host host;
	int shared_fd, private_fd;
	uint8_t *map;
	struct attr_recorder *rec;
	struct cvmconv *c;
	struct qemu_like *q;
	uint64_t *priv; /* the attributes as set, per file page */
	uint64_t live_shared_pages;
	bool counting; /* false while regions are added */
	/* the current exit */
	uint32_t ex_attr, ex_punch_shared, ex_punch_private;
	struct call calls[MAX_CALLS];
	unsigned ncalls;
	struct {
		uint64_t *v; /* gpa, size pairs set shared */
		size_t n, cap;
	} made_shared;
	int err;
};

static int __attribute__((format(printf, 3, 4))) fail(struct run *r, int err, const char *fmt, ...)
{
	va_list ap;

	if (!r->res->why[0]) {
		va_start(ap, fmt);
		vsnprintf(r->res->why, sizeof(r->res->why), fmt, ap);
		va_end(ap);
	}
	if (!r->err)
		r->err = err;
	return err;
}

long perf_hugepages_free(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[128];
	long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Free: %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

const char *perf_library_path(void)
{
	static char exe[512];
	Dl_info info;
	ssize_t n;

	if (!dladdr((void *)cvmconv_version, &info) || !info.dli_fname)
		return "(unknown)";
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		if (!strcmp(exe, info.dli_fname))
			return "(linked statically)";
	}
	return info.dli_fname;
}

void perf_print_machine(FILE *f)
{
	char line[256], model[128] = "?";
	FILE *c = fopen("/proc/cpuinfo", "re");
	struct utsname u;
	long mem_kb = 0;

	if (c) {
		while (fgets(line, sizeof(line), c))
			if (sscanf(line, "model name : %127[^\n]", model) == 1)
				break;
		fclose(c);
	}
	c = fopen("/proc/meminfo", "re");
	if (c) {
		while (fgets(line, sizeof(line), c))
			if (sscanf(line, "MemTotal: %ld", &mem_kb) == 1)
				break;
		fclose(c);
	}
	uname(&u);
	fprintf(f, "machine: %s, %ld CPUs, %ld GiB RAM, Linux %s\n", model,
		sysconf(_SC_NPROCESSORS_ONLN), (mem_kb + (1 << 19)) >> 20, u.release);
	c = fopen("/proc/loadavg", "re");
	if (c) {
		if (fgets(line, sizeof(line), c))
			fprintf(f, "load average: %s", line);
		fclose(c);
	}
	fprintf(f, "library: cvmconv %s, %s\n", cvmconv_version(), perf_library_path());
	fprintf(f, "private side: %s\n", private_backing_name());
}

/* ---- the attributes, for both hosts ---- */

static void note_call(struct run *r, char what, uint64_t a, uint64_t b, bool private_)
{
	if (r->ncalls < MAX_CALLS)
		r->calls[r->ncalls] = (struct call){ what, a, b, private_ };
	r->ncalls++;
}

static int push_shared(struct run *r, uint64_t gpa, uint64_t size)
{
	if (r->made_shared.n + 2 > r->made_shared.cap) {
		size_t cap = r->made_shared.cap ? r->made_shared.cap * 2 : 256;
		uint64_t *p = realloc(r->made_shared.v, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		r->made_shared.v = p;
		r->made_shared.cap = cap;
	}
	r->made_shared.v[r->made_shared.n++] = gpa;
	r->made_shared.v[r->made_shared.n++] = size;
	return 0;
}

static int set_attr(void *opaque, uint64_t gpa, uint64_t size, uint64_t attributes)
{
	struct run *r = opaque;
	bool private_ = attributes & CVMCONV_ATTR_PRIVATE;
	int ret = attr_recorder_set(r->rec, gpa, size, attributes);
	uint64_t end = gpa + size;

	if (ret)
		return ret;
	if (r->counting) {
		r->ex_attr++;
		note_call(r, 'a', gpa, size, private_);
		if (!private_ && push_shared(r, gpa, size))
			fail(r, -ENOMEM, "out of memory");
	}
	for (uint64_t g = gpa; g < end;) {
		uint64_t off, left, n;

		if (!perf_stream_offset(r->s, g, &off, &left))
			return -EINVAL; /* the recorder checked: cannot happen */
		n = end - g < left ? end - g : left;
		for (uint64_t p = off / PERF_4K; p < (off + n) / PERF_4K; p++) {
			bool was = (r->priv[p / 64] >> (p % 64)) & 1;

			if (was == private_)
				continue;
			if (private_) {
				r->priv[p / 64] |= 1ULL << (p % 64);
				r->live_shared_pages--;
			} else {
				r->priv[p / 64] &= ~(1ULL << (p % 64));
				r->live_shared_pages++;
			}
		}
		g += n;
	}
	return 0;
}

/* In place: the guest_memfd update (offsets in the file, the uAPI's
 * checks), landing where set_attr() puts VM-wide updates. */
static int set_gmem(void *opaque, int fd, uint64_t offset, uint64_t size, uint64_t attributes,
		    uint64_t flags, uint64_t *error_offset)
{
	struct run *r = opaque;

	(void)error_offset;
	if (r->counting)
		r->res->gmem_calls++;
	if (fd != r->private_fd || !size || ((offset | size) & (PERF_4K - 1)) ||
	    (attributes & ~CVMCONV_ATTR_PRIVATE) ||
	    (flags & ~(CVMCONV_CONTENT_ZERO | CVMCONV_CONTENT_PRESERVE)) ||
	    ((attributes & CVMCONV_ATTR_PRIVATE) && flags == CVMCONV_CONTENT_ZERO))
		return -EINVAL;
	for (int i = 0; i < r->s->nreg; i++)
		if (offset >= r->s->reg[i].off && offset - r->s->reg[i].off < r->s->reg[i].size &&
		    size <= r->s->reg[i].size - (offset - r->s->reg[i].off))
			return set_attr(r, r->s->reg[i].gpa + (offset - r->s->reg[i].off), size,
					attributes);
	return -EINVAL;
}

static int punch(void *opaque, int fd, uint64_t offset, uint64_t len)
{
	struct run *r = opaque;
	bool shared = fd == r->shared_fd;

	if (shared)
		r->ex_punch_shared++;
	else
		r->ex_punch_private++;
	note_call(r, shared ? 's' : 'p', offset, len, false);
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len))
		return -errno;
	return 0;
}

/* ---- touching ---- */

static sigjmp_buf touch_jmp;
static volatile sig_atomic_t touching;

static void on_sigbus(int sig)
{
	if (touching)
		siglongjmp(touch_jmp, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

static int touch_made_shared(struct run *r)
{
	if (!r->map)
		return 0;
	if (sigsetjmp(touch_jmp, 1)) {
		touching = 0;
		return fail(r, -ENOMEM, "SIGBUS touching the shared memfd: no huge page left");
	}
	touching = 1;
	for (size_t i = 0; i < r->made_shared.n; i += 2) {
		uint64_t gpa = r->made_shared.v[i], end = gpa + r->made_shared.v[i + 1];

		while (gpa < end) {
			uint64_t off, left, n;

			if (!perf_stream_offset(r->s, gpa, &off, &left))
				break;
			n = end - gpa < left ? end - gpa : left;
			for (uint64_t p = off / PERF_4K; p < (off + n) / PERF_4K; p++)
				if (!((r->priv[p / 64] >> (p % 64)) & 1))
					((volatile uint8_t *)r->map)[p * PERF_4K] = 1;
			gpa += n;
		}
	}
	touching = 0;
	return 0;
}

static uint64_t shared_alloc_bytes(const struct run *r)
{
	struct stat st;

	if (r->host == PERF_HOST_INPLACE) {
		/* a guest_memfd keeps no block count: its resident pages */
		uint64_t b = fd_allocated_bytes(r->shared_fd);

		return b == UINT64_MAX ? 0 : b;
	}
	return fstat(r->shared_fd, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

/* ---- hosts ---- */

static int host_init(struct run *r)
{
	const struct perf_stream *s = r->s;
	int ret = 0;

	if (r->host == PERF_HOST_CVMCONV || r->host == PERF_HOST_INPLACE) {
		static const struct cvmconv_ops ops = { .set_memory_attributes = set_attr,
							.punch = punch,
							.set_gmem_attributes = set_gmem };
		struct cvmconv_config cfg = { .sz = sizeof(cfg),
					      .vm_fd = -1,
					      .unaligned = CVMCONV_UNALIGNED_ALLOW,
					      .ops = &ops,
					      .ops_opaque = r };

		ret = cvmconv_create(&cfg, &r->c);
		for (int i = 0; i < s->nreg && !ret; i++) {
			struct cvmconv_region reg = { .sz = sizeof(reg),
						      .gpa = s->reg[i].gpa,
						      .size = s->reg[i].size,
						      .private_fd = r->private_fd,
						      .private_offset = s->reg[i].off,
						      .shared_fd = r->shared_fd,
						      .shared_offset = s->reg[i].off,
						      .flags = CVMCONV_REGION_PRIVATE,
						      .unaligned = -1 };

			if (r->host == PERF_HOST_INPLACE) {
				reg.flags |= CVMCONV_REGION_INPLACE;
				reg.shared_fd = -1;
				reg.shared_offset = 0;
				reg.shared_hva = r->map ? r->map + s->reg[i].off : NULL;
				reg.content_mode = CVMCONV_CONTENT_ZERO;
			}
			ret = cvmconv_add_region(r->c, &reg);
		}
		if (ret)
			return fail(r, ret, "cvmconv setup: %s", strerror(-ret));
		return 0;
	}
	ret = qemu_like_create(set_attr, r, &r->q);
	for (int i = 0; i < s->nreg && !ret; i++) {
		struct qemu_like_region reg = { .gpa = s->reg[i].gpa,
						.size = s->reg[i].size,
						.private_fd = r->private_fd,
						.private_offset = s->reg[i].off,
						.shared_fd = r->shared_fd,
						.shared_offset = s->reg[i].off,
						.start_private = true };

		ret = qemu_like_add_region(r->q, &reg);
	}
	if (ret)
		return fail(r, ret, "baseline setup: %s", strerror(-ret));
	return 0;
}

/* One hypercall to the baseline; its discards are attributed to the side
 * the direction makes stale. */
static int baseline_hc(void *opaque, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	struct run *r = opaque;
	struct qemu_like_counts before, after;
	bool to_private = attrs & CVMCONV_MAP_GPA_RANGE_ENCRYPTED;
	int ret;

	qemu_like_get_counts(r->q, &before);
	ret = qemu_like_map_gpa_range(r->q, gpa, npages, attrs);
	qemu_like_get_counts(r->q, &after);
	if (to_private)
		r->ex_punch_shared += (uint32_t)(after.discards - before.discards);
	else
		r->ex_punch_private += (uint32_t)(after.discards - before.discards);
	return ret;
}

static int dispatch(struct run *r, const struct perf_exit *e)
{
	uint64_t hc = 0;
	int ret;

	if (r->host == PERF_HOST_BASELINE) {
		ret = e->kind == PERF_EXIT_MAP
			      ? baseline_hc(r, e->a, e->b, e->attrs)
			      : perf_stream_batch_as_hypercalls(r->s, e, baseline_hc, r);
		return ret ? fail(r, ret, "baseline failed an exit: %s", strerror(-ret)) : 0;
	}
	if (e->kind == PERF_EXIT_MAP)
		ret = cvmconv_map_gpa_range(r->c, e->a, e->b, e->attrs, &hc);
	else
		ret = cvmconv_convert_batch(r->c, r->s->ranges + e->a, e->b, CVMCONV_BATCH_GUEST,
					    &hc);
	if (ret)
		return fail(r, ret, "cvmconv failed an exit: %s", strerror(-ret));
	if (hc)
		return fail(r, -EPROTO, "cvmconv refused an exit: %" PRId64, (int64_t)hc);
	return 0;
}

/* Whether file page range [from, to) holds a live shared page now. */
static bool has_live_shared(const struct run *r, uint64_t from, uint64_t to)
{
	for (uint64_t p = from; p < to; p++)
		if (!((r->priv[p / 64] >> (p % 64)) & 1))
			return true;
	return false;
}

/* An exit whose kernel calls differ from the oracle's: the calls of the
 * side(s) that differ, each punch annotated with why it is not minimal, and
 * the entries of a batch that lie in the punched units. */
static void describe_exit(const struct run *r, size_t i, const struct perf_oracle_exit *o)
{
	FILE *f = r->opt->diag;
	const struct perf_exit *e = &r->s->exits[i];
	uint64_t unit = r->opt->huge_shared ? PERF_2M : PERF_4K, prev_end = UINT64_MAX;
	bool attr_diff = r->ex_attr != o->attr;
	unsigned shown = 0;

	fprintf(f,
		"  %s, exit %zu: cvmconv attr %u punch shared %u private %u; oracle attr %u "
		"punch shared %u private %u (bridged %u)\n",
		r->s->name, i, r->ex_attr, r->ex_punch_shared, r->ex_punch_private, o->attr,
		o->punch_shared, o->punch_private, o->punch_bridged);
	if (e->kind == PERF_EXIT_MAP)
		fprintf(f, "    exit: map 0x%" PRIx64 " %" PRIu64 " 0x%x\n", e->a, e->b, e->attrs);
	else
		fprintf(f, "    exit: batch of %" PRIu64 " entries (cvmconv_convert_batch)\n",
			e->b);
	if (r->ncalls > MAX_CALLS)
		fprintf(f, "    (first %u of %u kernel calls kept)\n", MAX_CALLS, r->ncalls);
	for (unsigned k = 0; k < r->ncalls && k < MAX_CALLS; k++) {
		const struct call *c = &r->calls[k];

		if (c->what == 'a') {
			if (attr_diff)
				fprintf(f, "    attr 0x%" PRIx64 "+0x%" PRIx64 " %s\n", c->a, c->b,
					c->private_ ? "private" : "shared");
			continue;
		}
		if ((c->what == 's' && r->ex_punch_shared == o->punch_shared) ||
		    (c->what == 'p' && r->ex_punch_private == o->punch_private))
			continue;
		fprintf(f, "    punch %s off 0x%" PRIx64 " len 0x%" PRIx64 "%s%s\n",
			c->what == 's' ? "shared" : "private", c->a, c->b,
			c->what == 's' && prev_end == c->a ? "  <- adjacent to the previous punch"
							   : "",
			c->what == 's' &&
					has_live_shared(r, c->a / PERF_4K, (c->a + c->b) / PERF_4K)
				? "  <- holds a live shared page after the exit"
				: "");
		if (c->what != 's')
			continue;
		prev_end = c->a + c->b;
		if (e->kind != PERF_EXIT_BATCH)
			continue;
		/* the batch entries inside the punched units (file offset = gpa
		 * offset within the region: regions are unit aligned) */
		for (uint64_t k2 = 0; k2 < e->b && shown < 64; k2++) {
			const struct cvmconv_range *g = &r->s->ranges[e->a + k2];
			uint64_t off, left;

			if (!perf_stream_offset(r->s, g->gpa, &off, &left))
				continue;
			if (off + g->size > c->a / unit * unit && off < c->a + c->b) {
				fprintf(f,
					"      entry %" PRIu64 ": 0x%" PRIx64 " +0x%" PRIx64
					" to %s\n",
					k2, g->gpa, g->size, g->to_private ? "private" : "shared");
				shown++;
			}
		}
	}
}

static void after_exit(struct run *r, size_t i)
{
	struct perf_host_result *res = r->res;
	const struct perf_oracle_exit *o = &r->o->per_exit[i];
	uint64_t oracle_da = o->da_pages * PERF_4K;

	res->attr_calls += r->ex_attr;
	res->punch_shared += r->ex_punch_shared;
	res->punch_private += r->ex_punch_private;
	/* in place, the file's allocation is a mincore() of the whole guest:
	 * read once, after the last exit (nothing can be held twice there) */
	if (r->opt->touch && (r->host != PERF_HOST_INPLACE || i + 1 == r->s->nexits)) {
		uint64_t alloc = shared_alloc_bytes(r), live = r->live_shared_pages * PERF_4K;

		/* in place the file's pages are each the one page of their gpa */
		if (r->host == PERF_HOST_INPLACE)
			live = r->s->span;
		res->kernel_da = alloc > live ? alloc - live : 0;
		if (res->kernel_da > res->kernel_da_peak)
			res->kernel_da_peak = res->kernel_da;
		if (r->opt->series)
			r->opt->series[i] = res->kernel_da;
		if (r->host == PERF_HOST_CVMCONV && res->kernel_da != oracle_da)
			res->kernel_da_off_oracle++;
	}
	if (r->host == PERF_HOST_INPLACE) {
		struct cvmconv_stats st = { .sz = sizeof(st) };

		cvmconv_get_stats(r->c, &st);
		res->lib_da = st.double_alloc_bytes;
		res->lib_da_peak = st.double_alloc_peak_bytes;
		return;
	}
	if (r->host != PERF_HOST_CVMCONV)
		return;
	{
		struct cvmconv_stats st = { .sz = sizeof(st) };
		bool above, below;

		cvmconv_get_stats(r->c, &st);
		res->lib_da = st.double_alloc_bytes;
		res->lib_da_peak = st.double_alloc_peak_bytes;
		if (st.double_alloc_bytes != oracle_da)
			res->lib_da_off_oracle++;
		above = r->ex_attr > o->attr || r->ex_punch_shared > o->punch_shared ||
			r->ex_punch_private > o->punch_private;
		below = r->ex_attr < o->attr || r->ex_punch_shared < o->punch_shared ||
			r->ex_punch_private < o->punch_private;
		res->exits_attr_above += r->ex_attr > o->attr;
		res->exits_punch_above += r->ex_punch_shared > o->punch_shared ||
					  r->ex_punch_private > o->punch_private;
		res->exits_below += below;
		for (unsigned k = 0, prev = MAX_CALLS; k < r->ncalls && k < MAX_CALLS; k++) {
			const struct call *c = &r->calls[k];

			if (c->what != 's')
				continue;
			if (prev < MAX_CALLS && r->calls[prev].a + r->calls[prev].b == c->a)
				res->punch_adjacent++;
			if (has_live_shared(r, c->a / PERF_4K, (c->a + c->b) / PERF_4K))
				res->punch_relive++;
			prev = k;
		}
		if ((above || below) && r->opt->diag &&
		    res->exits_attr_above + res->exits_punch_above + res->exits_below <=
			    r->opt->max_diag)
			describe_exit(r, i, o);
	}
}

static int backings(struct run *r)
{
	unsigned flags = MFD_CLOEXEC;

	if (r->host == PERF_HOST_INPLACE) {
		/* one file for both sides: a real guest_memfd where the host's
		 * KVM makes one the host can map (4 KiB pages), else shmem */
		r->shared_fd = r->private_fd = private_backing_fd(r->s->span);
		if (r->private_fd < 0)
			return fail(r, r->private_fd, "guest_memfd (%s): %s",
				    private_backing_name(), strerror(-r->private_fd));
		if (r->opt->touch) {
			void *m = mmap(NULL, r->s->span, PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_NORESERVE, r->shared_fd, 0);

			if (m == MAP_FAILED)
				return fail(r, -errno, "mmap: %s", strerror(errno));
			r->map = m;
		}
		return 0;
	}
	if (r->opt->huge_shared)
		flags |= MFD_HUGETLB | (21u << MFD_HUGE_SHIFT); /* MFD_HUGE_2MB */
	r->shared_fd = memfd_create("perf-shared", flags);
	if (r->shared_fd < 0)
		return fail(r, -errno, "memfd_create: %s", strerror(errno));
	/* a real guest_memfd where the host's KVM makes one, else a stand-in */
	r->private_fd = private_backing_fd(r->s->span);
	if (r->private_fd < 0)
		return fail(r, r->private_fd, "private side (%s): %s", private_backing_name(),
			    strerror(-r->private_fd));
	if (ftruncate(r->shared_fd, (off_t)r->s->span))
		return fail(r, -errno, "ftruncate: %s", strerror(errno));
	if (r->opt->touch) {
		/* MAP_NORESERVE: no reservation of the whole RAM's huge pages */
		void *m = mmap(NULL, r->s->span, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			       r->shared_fd, 0);

		if (m == MAP_FAILED)
			return fail(r, -errno, "mmap: %s", strerror(errno));
		r->map = m;
	}
	return 0;
}

static int state_init(struct run *r)
{
	uint64_t words = (r->s->span / PERF_4K + 63) / 64;
	struct attr_recorder_range ranges[PERF_MAX_REGIONS];

	r->priv = malloc(words * sizeof(*r->priv));
	if (!r->priv)
		return fail(r, -ENOMEM, "out of memory");
	memset(r->priv, 0xff, words * sizeof(*r->priv));
	for (int i = 0; i < r->s->nreg; i++)
		ranges[i] = (struct attr_recorder_range){ r->s->reg[i].gpa, r->s->reg[i].size };
	if (attr_recorder_create(ranges, (size_t)r->s->nreg, 0, &r->rec))
		return fail(r, -ENOMEM, "attr_recorder_create failed");
	return 0;
}

int perf_host_run(enum perf_host h, const struct perf_stream *s, const struct perf_oracle *o,
		  const struct perf_host_opts *opt, struct perf_host_result *res)
{
	struct run r = {
		.s = s, .o = o, .opt = opt, .res = res, .host = h, .shared_fd = -1, .private_fd = -1
	};
	struct sigaction sa = { .sa_handler = on_sigbus }, old;
	struct timespec t0, t1;
	long free0 = -1, free1;

	memset(res, 0, sizeof(*res));
	res->hp_used = res->hp_da = -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old);
	if (!backings(&r) && !state_init(&r)) {
		free0 = opt->touch && opt->huge_shared && h != PERF_HOST_INPLACE
				? perf_hugepages_free()
				: -1;
		if (!host_init(&r)) {
			r.counting = true;
			for (size_t i = 0; i < s->nexits && !r.err; i++) {
				r.ex_attr = r.ex_punch_shared = r.ex_punch_private = 0;
				r.ncalls = 0;
				r.made_shared.n = 0;
				if (dispatch(&r, &s->exits[i]) || touch_made_shared(&r))
					break;
				after_exit(&r, i);
				res->exits++;
			}
		}
		free1 = opt->touch && opt->huge_shared && h != PERF_HOST_INPLACE
				? perf_hugepages_free()
				: -1;
		if (free0 >= 0 && free1 >= 0) {
			res->hp_used = free0 - free1;
			res->hp_da = res->hp_used * (int64_t)PERF_2M -
				     (int64_t)(r.live_shared_pages * PERF_4K);
		}
	}
	res->live_shared_bytes = r.live_shared_pages * PERF_4K;
	res->state_matches_oracle =
		!r.err && r.priv &&
		!memcmp(r.priv, o->priv, (s->span / PERF_4K + 63) / 64 * sizeof(uint64_t));
	if (r.c) {
		struct cvmconv_stats st = { .sz = sizeof(st) };

		cvmconv_get_stats(r.c, &st);
		res->tracker_bytes = st.tracker_bytes;
	}
	cvmconv_destroy(r.c);
	qemu_like_destroy(r.q);
	attr_recorder_destroy(r.rec);
	if (r.map)
		munmap(r.map, s->span);
	if (r.shared_fd >= 0)
		close(r.shared_fd);
	if (r.private_fd >= 0 && r.private_fd != r.shared_fd)
		close(r.private_fd);
	free(r.priv);
	free(r.made_shared.v);
	sigaction(SIGBUS, &old, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	res->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	return r.err;
}

int perf_host_run_isolated(enum perf_host h, const struct perf_stream *s,
			   const struct perf_oracle *o, const struct perf_host_opts *opt,
			   struct perf_host_result *res)
{
	struct shared_out {
		struct perf_host_result res;
		int ret;
	} * out;
	size_t series_bytes = opt->series ? s->nexits * sizeof(uint64_t) : 0;
	size_t bytes = sizeof(*out) + series_bytes;
	struct perf_host_opts child_opt = *opt;
	int status, ret;
	pid_t pid;

	out = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (out == MAP_FAILED)
		return -errno;
	memset(res, 0, sizeof(*res));
	out->ret = -ECHILD;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		munmap(out, bytes);
		return ret;
	}
	if (pid == 0) {
		if (opt->series)
			child_opt.series = (uint64_t *)(out + 1);
		out->ret = perf_host_run(h, s, o, &child_opt, &out->res);
		fflush(NULL);
		_exit(0);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	*res = out->res;
	ret = out->ret;
	if (WIFSIGNALED(status)) {
		ret = -ECHILD;
		snprintf(res->why, sizeof(res->why), "%s crashed: signal %d (%s)",
			 h == PERF_HOST_CVMCONV ? "cvmconv" : "the baseline", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	}
	if (opt->series)
		memcpy(opt->series, out + 1, series_bytes);
	munmap(out, bytes);
	return ret;
}
