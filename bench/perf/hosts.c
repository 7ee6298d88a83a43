/* SPDX-License-Identifier: MIT */
/*
 * One stream through one host of the host engine (tools/engine/
 * host_engine.h: real backings, the strict attribute recorder, the kernel's
 * accounting), each exit's kernel calls compared with the oracle's. With
 * opt->touch every page made shared is written once after its exit, as a
 * guest using the memory would, so that the kernel's allocation
 * (st_blocks, HugePages_Free) is what a VM would hold.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "host_engine.h"
#include "perf.h"
#include "qemu_like.h"

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
	struct host_engine eng; /* backings, host, the attributes as set */
	bool counting;		/* false while regions are added */
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

/* ---- the attributes, for both hosts ---- */

static void note_call(struct run *r, char what, uint64_t a, uint64_t b, bool private_)
{
	if (r->ncalls < MAX_CALLS)
		r->calls[r->ncalls] = (struct call){ what, a, b, private_ };
	r->ncalls++;
}

static int push_shared(struct run *r, uint64_t gpa, uint64_t size)
{
	if (perf_grow((void **)&r->made_shared.v, &r->made_shared.cap, r->made_shared.n + 2,
		      sizeof(*r->made_shared.v)))
		return -ENOMEM;
	r->made_shared.v[r->made_shared.n++] = gpa;
	r->made_shared.v[r->made_shared.n++] = size;
	return 0;
}

/* The engine's observers: an accepted attribute update, a punch. */
static void on_attr(void *opaque, uint64_t gpa, uint64_t size, bool to_private)
{
	struct run *r = opaque;

	if (!r->counting)
		return;
	r->ex_attr++;
	note_call(r, 'a', gpa, size, to_private);
	if (!to_private && push_shared(r, gpa, size))
		fail(r, -ENOMEM, "out of memory");
}

static void on_punch(void *opaque, bool shared, uint64_t offset, uint64_t len)
{
	struct run *r = opaque;

	if (shared)
		r->ex_punch_shared++;
	else
		r->ex_punch_private++;
	note_call(r, shared ? 's' : 'p', offset, len, false);
}

static int touch_made_shared(struct run *r)
{
	for (size_t i = 0; i < r->made_shared.n; i += 2) {
		int ret = host_engine_touch_gpa(&r->eng, r->made_shared.v[i],
						r->made_shared.v[i + 1]);

		if (ret)
			return fail(r, ret, "%s", r->eng.why);
	}
	return 0;
}

/* ---- hosts ---- */

static int host_init(struct run *r)
{
	const struct perf_stream *s = r->s;
	struct host_engine_config cfg = {
		.host = r->host == PERF_HOST_BASELINE  ? HOST_ENGINE_QEMU_LIKE
			: r->host == PERF_HOST_INPLACE ? HOST_ENGINE_INPLACE
						       : HOST_ENGINE_CVMCONV,
		.nreg = s->nreg,
		.span = s->span,
		.shared = r->opt->huge_shared ? HOST_ENGINE_SHARED_MFD_HUGETLB
					      : HOST_ENGINE_SHARED_SHMEM,
		.map_shared = r->opt->touch,
		.start_private = true, /* a confidential guest's memory at launch */
		.policy = CVMCONV_UNALIGNED_ALLOW,
		.shared_name = "perf-shared",
		.obs = { .attr = on_attr, .punch = on_punch, .opaque = r },
	};
	int ret;

	for (int i = 0; i < s->nreg; i++)
		cfg.reg[i] =
			(struct host_engine_region){ s->reg[i].gpa, s->reg[i].size, s->reg[i].off };
	ret = host_engine_open(&r->eng, &cfg);
	if (ret)
		return fail(r, ret, "%s", r->eng.why);
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

	qemu_like_get_counts(r->eng.ql, &before);
	ret = qemu_like_map_gpa_range(r->eng.ql, gpa, npages, attrs);
	qemu_like_get_counts(r->eng.ql, &after);
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
		ret = cvmconv_map_gpa_range(r->eng.conv, e->a, e->b, e->attrs, &hc);
	else
		ret = cvmconv_convert_batch(r->eng.conv, r->s->ranges + e->a, e->b,
					    CVMCONV_BATCH_GUEST, &hc);
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
		if (!host_engine_page_private(&r->eng, p))
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
		res->kernel_da = host_engine_kernel_da(&r->eng);
		if (res->kernel_da > res->kernel_da_peak)
			res->kernel_da_peak = res->kernel_da;
		if (r->opt->series)
			r->opt->series[i] = res->kernel_da;
		if (r->host == PERF_HOST_CVMCONV && res->kernel_da != oracle_da)
			res->kernel_da_off_oracle++;
	}
	if (r->host == PERF_HOST_INPLACE) {
		struct cvmconv_stats st = { .sz = sizeof(st) };

		cvmconv_get_stats(r->eng.conv, &st);
		res->lib_da = st.double_alloc_bytes;
		res->lib_da_peak = st.double_alloc_peak_bytes;
		return;
	}
	if (r->host != PERF_HOST_CVMCONV)
		return;
	{
		struct cvmconv_stats st = { .sz = sizeof(st) };
		bool above, below;

		cvmconv_get_stats(r->eng.conv, &st);
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

int perf_host_run(enum perf_host h, const struct perf_stream *s, const struct perf_oracle *o,
		  const struct perf_host_opts *opt, struct perf_host_result *res)
{
	struct run r = { .s = s, .o = o, .opt = opt, .res = res, .host = h };
	struct timespec t0, t1;
	uint64_t setup_gmem_calls;
	long free0 = -1, free1;

	memset(res, 0, sizeof(*res));
	res->hp_used = res->hp_da = -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!host_init(&r)) {
		free0 = opt->touch && opt->huge_shared && h != PERF_HOST_INPLACE
				? perf_hugepages_free()
				: -1;
		int ret = host_engine_start(&r.eng);

		if (ret) {
			fail(&r, ret, "%s", r.eng.why);
		} else {
			setup_gmem_calls = r.eng.gmem_calls;
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
			res->gmem_calls = r.eng.gmem_calls - setup_gmem_calls;
		}
		free1 = opt->touch && opt->huge_shared && h != PERF_HOST_INPLACE
				? perf_hugepages_free()
				: -1;
		if (free0 >= 0 && free1 >= 0) {
			res->hp_used = free0 - free1;
			res->hp_da = res->hp_used * (int64_t)PERF_2M -
				     (int64_t)(r.eng.live_shared_pages * PERF_4K);
		}
	}
	res->live_shared_bytes = r.eng.live_shared_pages * PERF_4K;
	res->state_matches_oracle =
		!r.err && r.eng.priv &&
		!memcmp(r.eng.priv, o->priv, (s->span / PERF_4K + 63) / 64 * sizeof(uint64_t));
	if (r.eng.conv) {
		struct cvmconv_stats st = { .sz = sizeof(st) };

		cvmconv_get_stats(r.eng.conv, &st);
		res->tracker_bytes = st.tracker_bytes;
	}
	host_engine_close(&r.eng);
	free(r.made_shared.v);
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
