/* SPDX-License-Identifier: MIT */
/*
 * The oracle: a plain per-page model of an exit stream that computes the
 * least kernel work any host could do for it. docs/performance.md defines
 * every figure; in short, per exit:
 *
 *   attr           maximal runs of pages whose state the exit changes,
 *                  contiguous in guest physical address and with one target
 *                  state, counted over the whole exit (a batch merges);
 *   punch_shared   maximal runs, contiguous in the shared file, of units
 *                  (huge pages, or 4 KiB pages of a 4 KiB file) that the
 *                  exit makes freeable: a live page before, none after;
 *   punch_private  the same for the private file (4 KiB units);
 *   punch_bridged  both files, where a run may also cover stale units that
 *                  are already free (punching them again frees nothing and
 *                  loses nothing);
 *   da_pages       after the exit: private pages lying in shared units that
 *                  still hold a live shared page (those units must stay
 *                  allocated once the guest has touched that page).
 *
 * Every live page is assumed touched (allocated); units never straddle a
 * region edge (checked).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "perf.h"

struct vec {
	uint64_t *v;
	size_t n, cap;
};

static int vec_push(struct vec *x, uint64_t val)
{
	if (perf_grow((void **)&x->v, &x->cap, x->n + 1, sizeof(*x->v)))
		return -ENOMEM;
	x->v[x->n++] = val;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static bool bit(const uint64_t *map, uint64_t i)
{
	return (map[i / 64] >> (i % 64)) & 1;
}

/* Whether every bit of [from, to) equals @v. */
static bool bits_all(const uint64_t *map, uint64_t from, uint64_t to, bool v)
{
	while (from < to) {
		uint64_t w = from / 64, lo = from % 64;
		uint64_t hi = to - w * 64 < 64 ? to - w * 64 : 64;
		uint64_t mask = (hi == 64 ? ~0ULL : (1ULL << hi) - 1) & ~((1ULL << lo) - 1);
		uint64_t got = v ? ~map[w] : map[w];

		if (got & mask)
			return false;
		from = w * 64 + hi;
	}
	return true;
}

struct step {
	struct perf_oracle *o;
	uint32_t attr;
	bool open;
	bool run_private;
	uint64_t run_end;
	uint64_t shared_changed;
	struct vec cand_shared, cand_private;
	int err;
};

/* Double allocation of a shared unit holding @live live pages. */
static uint64_t unit_da(const struct perf_oracle *o, uint64_t live)
{
	return live ? o->unit_pages - live : 0;
}

static void change(struct step *st, uint64_t fp, bool to_private)
{
	struct perf_oracle *o = st->o;
	uint64_t u = fp / o->unit_pages, old = o->shared_cnt[u];

	if (to_private) {
		o->priv[fp / 64] |= 1ULL << (fp % 64);
		o->shared_cnt[u]--;
		o->live_shared_pages--;
		if (old == 1) {
			o->units_held--;
			if (vec_push(&st->cand_shared, u))
				st->err = -ENOMEM;
		}
	} else {
		o->priv[fp / 64] &= ~(1ULL << (fp % 64));
		o->shared_cnt[u]++;
		o->live_shared_pages++;
		st->shared_changed++;
		if (!old) {
			o->units_held++;
			if (!o->ever[u]) {
				o->ever[u] = 1;
				o->units_ever++;
			}
		}
		if (vec_push(&st->cand_private, fp))
			st->err = -ENOMEM;
	}
	o->da_pages = o->da_pages - unit_da(o, old) + unit_da(o, o->shared_cnt[u]);
	o->pages_changed++;
}

static int visit(struct step *st, const struct perf_stream *s, uint64_t gpa, uint64_t size,
		 bool to_private)
{
	uint64_t end = gpa + size;

	if (!size || gpa > UINT64_MAX - size)
		return -EINVAL;
	while (gpa < end) {
		uint64_t off, left, n, fp0;

		if (!perf_stream_offset(s, gpa, &off, &left))
			return -EINVAL;
		n = end - gpa < left ? end - gpa : left;
		fp0 = off / PERF_4K;
		for (uint64_t p = 0; p < n / PERF_4K; p++) {
			uint64_t g = gpa + p * PERF_4K;

			if (bit(st->o->priv, fp0 + p) == to_private)
				continue;
			if (!(st->open && st->run_end == g && st->run_private == to_private)) {
				st->attr++;
				st->open = true;
				st->run_private = to_private;
			}
			st->run_end = g + PERF_4K;
			change(st, fp0 + p, to_private);
		}
		gpa += n;
	}
	return 0;
}

/* Runs of sorted, distinct units; with @bridge, neighbours also join when
 * every unit between them is stale. */
static uint32_t count_runs(const struct perf_oracle *o, const struct vec *c, bool shared_side,
			   bool bridge)
{
	uint32_t runs = 0;

	for (size_t i = 0; i < c->n; i++) {
		uint64_t a, b;

		if (i && c->v[i] == c->v[i - 1] + 1)
			continue;
		if (i && bridge) {
			a = c->v[i - 1] + 1;
			b = c->v[i];
			if (!shared_side) {
				/* private side: stale = shared (bit clear) */
				if (bits_all(o->priv, a, b, false))
					continue;
			} else if (o->unit_pages == 1) {
				if (bits_all(o->priv, a, b, true))
					continue;
			} else {
				uint64_t u = a;

				while (u < b && !o->shared_cnt[u])
					u++;
				if (u == b)
					continue;
			}
		}
		runs++;
	}
	return runs;
}

/* Keep the shared candidates that ended the exit without a live page. */
static void settle_shared(const struct perf_oracle *o, struct vec *c)
{
	size_t k = 0;

	if (c->n)
		qsort(c->v, c->n, sizeof(*c->v), cmp_u64);
	for (size_t i = 0; i < c->n; i++)
		if (!o->shared_cnt[c->v[i]] && (!k || c->v[k - 1] != c->v[i]))
			c->v[k++] = c->v[i];
	c->n = k;
}

static int range_cmp(const void *a, const void *b)
{
	const struct cvmconv_range *x = a, *y = b;

	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

static int exit_step(struct perf_oracle *o, const struct perf_stream *s, size_t i, struct step *st)
{
	const struct perf_exit *e = &s->exits[i];
	struct perf_oracle_exit *r = &o->per_exit[i];
	int ret = 0;

	st->attr = 0;
	st->open = false;
	st->shared_changed = 0;
	st->cand_shared.n = st->cand_private.n = 0;
	if (e->kind == PERF_EXIT_MAP) {
		if (e->b > (UINT64_MAX >> 12))
			return -EINVAL;
		ret = visit(st, s, e->a, e->b * PERF_4K,
			    (e->attrs & CVMCONV_MAP_GPA_RANGE_ENCRYPTED) != 0);
	} else {
		struct cvmconv_range *sorted = malloc(e->b * sizeof(*sorted));

		if (!sorted)
			return -ENOMEM;
		memcpy(sorted, s->ranges + e->a, e->b * sizeof(*sorted));
		qsort(sorted, e->b, sizeof(*sorted), range_cmp);
		for (size_t k = 0; k < e->b && !ret; k++)
			ret = visit(st, s, sorted[k].gpa, sorted[k].size,
				    sorted[k].to_private != 0);
		free(sorted);
	}
	if (ret || st->err)
		return ret ? ret : st->err;
	settle_shared(o, &st->cand_shared);
	if (st->cand_private.n)
		qsort(st->cand_private.v, st->cand_private.n, sizeof(uint64_t), cmp_u64);
	r->attr = st->attr;
	r->punch_shared = count_runs(o, &st->cand_shared, true, false);
	r->punch_private = count_runs(o, &st->cand_private, false, false);
	r->punch_bridged = count_runs(o, &st->cand_shared, true, true) +
			   count_runs(o, &st->cand_private, false, true);
	r->da_pages = o->da_pages;
	r->shared_changed = st->shared_changed;
	o->attr += r->attr;
	o->punch_shared += r->punch_shared;
	o->punch_private += r->punch_private;
	o->punch_bridged += r->punch_bridged;
	if (o->da_pages > o->da_peak_pages)
		o->da_peak_pages = o->da_pages;
	if (o->units_held > o->units_held_peak)
		o->units_held_peak = o->units_held;
	return 0;
}

int perf_oracle_run(struct perf_oracle *o, const struct perf_stream *s, uint64_t shared_page_size)
{
	struct step st = { .o = o };
	uint64_t words;
	int ret = 0;

	memset(o, 0, sizeof(*o));
	if (shared_page_size < PERF_4K || shared_page_size % PERF_4K || s->span % shared_page_size)
		return -EINVAL;
	for (int i = 0; i < s->nreg; i++)
		if (s->reg[i].off % shared_page_size || s->reg[i].size % shared_page_size)
			return -EINVAL;
	o->unit_pages = shared_page_size / PERF_4K;
	o->npages = s->span / PERF_4K;
	o->nunits = o->npages / o->unit_pages;
	words = (o->npages + 63) / 64;
	o->priv = malloc(words * sizeof(*o->priv));
	o->shared_cnt = calloc(o->nunits, sizeof(*o->shared_cnt));
	o->ever = calloc(o->nunits, 1);
	o->per_exit = calloc(s->nexits ? s->nexits : 1, sizeof(*o->per_exit));
	if (!o->priv || !o->shared_cnt || !o->ever || !o->per_exit) {
		perf_oracle_free(o);
		return -ENOMEM;
	}
	memset(o->priv, 0xff, words * sizeof(*o->priv)); /* every region starts private */
	o->nexits = s->nexits;
	for (size_t i = 0; i < s->nexits && !ret; i++)
		ret = exit_step(o, s, i, &st);
	free(st.cand_shared.v);
	free(st.cand_private.v);
	if (ret)
		perf_oracle_free(o);
	return ret;
}

void perf_oracle_free(struct perf_oracle *o)
{
	free(o->priv);
	free(o->shared_cnt);
	free(o->ever);
	free(o->per_exit);
	memset(o, 0, sizeof(*o));
}
