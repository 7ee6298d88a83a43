/* SPDX-License-Identifier: MIT */
/*
 * Reading the state back: cvmconv_for_each_range() against a per-page
 * reference (random states over adjacent regions with gaps between some),
 * its argument checks and early stop, a snapshot restored into a new
 * context with one batch; and CVMCONV_LISTENER_REPLAY: a listener that
 * registers while vCPU threads convert ends up with exactly the library's
 * view, each page heard in order (replay first, then every later run once).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cvmconv.h"
#include "fake_kvm.h"
#include "fixture.h"

#define BASE (8 * SZ_1G)
#define NREG 3
#define RPAGES 1536 /* 6 MiB per region */
#define NPAGES (NREG * RPAGES)

/* regions 0 and 1 adjacent, a 2 MiB gap, then region 2 */
static uint64_t region_gpa(int i)
{
	return BASE + (uint64_t)i * RPAGES * SZ_4K + (i == 2 ? SZ_2M : 0);
}

static uint64_t page_gpa(uint64_t p)
{
	return region_gpa((int)(p / RPAGES)) + (p % RPAGES) * SZ_4K;
}

struct ctx {
	struct fake_kvm f;
	struct cvmconv *c;
};

static void ctx_open(struct ctx *x)
{
	struct cvmconv_config cfg;

	fake_kvm_init(&x->f, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&x->f, CVMCONV_UNALIGNED_ALLOW);
	assert_int_equal(cvmconv_create(&cfg, &x->c), 0);
	for (int i = 0; i < NREG; i++) {
		struct cvmconv_region r = { .sz = sizeof(r),
					    .gpa = region_gpa(i),
					    .size = RPAGES * SZ_4K,
					    .private_fd = -1,
					    .shared_fd = -1,
					    .flags = CVMCONV_REGION_ATTRS_ONLY,
					    .unaligned = -1 };

		assert_int_equal(cvmconv_add_region(x->c, &r), 0);
	}
}

static void ctx_close(struct ctx *x)
{
	cvmconv_destroy(x->c);
	fake_kvm_fini(&x->f);
}

/* ---- for_each_range ---- */

struct collected {
	struct {
		uint64_t gpa, size;
		bool priv;
	} run[NPAGES + 8];
	unsigned n, stop_at;
};

static int collect(void *opaque, uint64_t gpa, uint64_t size, bool is_private)
{
	struct collected *k = opaque;

	if (k->n == sizeof(k->run) / sizeof(k->run[0]))
		return -ENOSPC;
	k->run[k->n].gpa = gpa;
	k->run[k->n].size = size;
	k->run[k->n].priv = is_private;
	k->n++;
	return k->stop_at && k->n == k->stop_at ? 42 : 0;
}

/* The runs of [p0, p1) (pages of the reference), as they must come back. */
static void check_runs(struct cvmconv *c, const bool *priv, uint64_t p0, uint64_t p1)
{
	static struct collected k;
	uint64_t p = p0;

	memset(&k, 0, sizeof(k));
	assert_int_equal(cvmconv_for_each_range(c, page_gpa(p0),
						page_gpa(p1 - 1) + SZ_4K - page_gpa(p0), collect,
						&k),
			 0);
	for (unsigned i = 0; i < k.n; i++) {
		/* maximal: neighbours differ in state or are not adjacent */
		if (i)
			assert_true(k.run[i - 1].priv != k.run[i].priv ||
				    k.run[i - 1].gpa + k.run[i - 1].size != k.run[i].gpa);
		assert_int_equal(k.run[i].gpa, page_gpa(p));
		for (uint64_t g = 0; g < k.run[i].size / SZ_4K; g++, p++) {
			assert_true(p < p1);
			assert_int_equal(page_gpa(p), k.run[i].gpa + g * SZ_4K);
			if (priv[p] != k.run[i].priv)
				fail_msg("page %llu: run says %d, reference %d",
					 (unsigned long long)p, k.run[i].priv, priv[p]);
		}
	}
	assert_int_equal(p, p1);
}

static void test_for_each_range(void **state)
{
	static bool priv[NPAGES];
	static struct collected k;
	struct ctx x;
	uint64_t seed = 3;

	(void)state;
	ctx_open(&x);
	memset(priv, 0, sizeof(priv));
	for (int round = 0; round < 400; round++) {
		uint64_t p, n;
		bool to_private;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		p = (seed >> 33) % NPAGES;
		n = 1 + (seed >> 20) % ((seed >> 60) & 1 ? 900 : 6);
		to_private = (seed >> 40) & 1;
		if (p / RPAGES != (p + n - 1) / RPAGES && (p + n - 1) / RPAGES == 2)
			n = RPAGES - p % RPAGES; /* not across the gap */
		if (p + n > NPAGES)
			n = NPAGES - p;
		assert_int_equal(cvmconv_convert(x.c, page_gpa(p), n * SZ_4K, to_private), 0);
		for (uint64_t q = p; q < p + n; q++)
			priv[q] = to_private;
		if (round % 20 == 0) {
			check_runs(x.c, priv, 0, 2 * RPAGES);	       /* regions 0-1, adjacent */
			check_runs(x.c, priv, 2 * RPAGES, NPAGES);     /* region 2 */
			check_runs(x.c, priv, RPAGES / 2, RPAGES + 7); /* a piece across */
		}
	}
	/* across the gap: the gap is skipped, the runs on both sides come */
	memset(&k, 0, sizeof(k));
	assert_int_equal(
		cvmconv_for_each_range(x.c, BASE, page_gpa(NPAGES - 1) + SZ_4K - BASE, collect, &k),
		0);
	assert_true(k.n >= 2);
	/* a non-zero return stops the walk and comes back */
	memset(&k, 0, sizeof(k));
	k.stop_at = 1;
	assert_int_equal(cvmconv_for_each_range(x.c, BASE, 2 * RPAGES * SZ_4K, collect, &k), 42);
	assert_int_equal(k.n, 1);
	/* arguments */
	assert_int_equal(cvmconv_for_each_range(NULL, BASE, SZ_4K, collect, &k), -EINVAL);
	assert_int_equal(cvmconv_for_each_range(x.c, BASE, SZ_4K, NULL, &k), -EINVAL);
	assert_int_equal(cvmconv_for_each_range(x.c, BASE, 0, collect, &k), -EINVAL);
	assert_int_equal(cvmconv_for_each_range(x.c, BASE + 8, SZ_4K, collect, &k), -EINVAL);
	assert_int_equal(cvmconv_for_each_range(x.c, BASE, SZ_4K + 1, collect, &k), -EINVAL);
	assert_int_equal(
		cvmconv_for_each_range(x.c, UINT64_MAX & ~(SZ_4K - 1), 2 * SZ_4K, collect, &k),
		-EINVAL);
	/* nothing registered there: no run, 0 */
	memset(&k, 0, sizeof(k));
	assert_int_equal(cvmconv_for_each_range(x.c, SZ_1G, SZ_2M, collect, &k), 0);
	assert_int_equal(k.n, 0);
	ctx_close(&x);
}

/* A snapshot (the private runs) restored into a new context with one host
 * batch gives the same state, page for page, and the same runs. */
static int save_private(void *opaque, uint64_t gpa, uint64_t size, bool is_private)
{
	struct {
		struct cvmconv_range r[CVMCONV_BATCH_MAX];
		size_t n;
	} *snap = opaque;

	if (!is_private)
		return 0;
	if (snap->n == CVMCONV_BATCH_MAX)
		return -E2BIG;
	snap->r[snap->n++] = (struct cvmconv_range){ gpa, size, 1, 0 };
	return 0;
}

static void test_snapshot_round_trip(void **state)
{
	static struct {
		struct cvmconv_range r[CVMCONV_BATCH_MAX];
		size_t n;
	} snap;
	static bool priv[NPAGES];
	struct ctx a, b;
	uint64_t seed = 11;

	(void)state;
	ctx_open(&a);
	memset(priv, 0, sizeof(priv));
	for (int i = 0; i < 300; i++) {
		uint64_t p, n;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		p = (seed >> 33) % NPAGES;
		n = 1 + (seed >> 22) % 40;
		if (p % RPAGES + n > RPAGES)
			n = RPAGES - p % RPAGES;
		assert_int_equal(cvmconv_convert(a.c, page_gpa(p), n * SZ_4K, (seed >> 50) & 1), 0);
		for (uint64_t q = p; q < p + n; q++)
			priv[q] = (seed >> 50) & 1;
	}
	snap.n = 0;
	assert_int_equal(cvmconv_for_each_range(a.c, BASE, page_gpa(NPAGES - 1) + SZ_4K - BASE,
						save_private, &snap),
			 0);
	assert_true(snap.n > 10);
	ctx_open(&b);
	assert_int_equal(cvmconv_convert_batch(b.c, snap.r, snap.n, 0, NULL), 0);
	for (uint64_t p = 0; p < NPAGES; p++) {
		assert_int_equal(cvmconv_is_private(b.c, page_gpa(p)), priv[p]);
		assert_int_equal(fake_kvm_is_private(&b.f, page_gpa(p)), priv[p]);
	}
	check_runs(b.c, priv, 0, 2 * RPAGES);
	check_runs(b.c, priv, 2 * RPAGES, NPAGES);
	ctx_close(&a);
	ctx_close(&b);
}

/* ---- CVMCONV_LISTENER_REPLAY ---- */

struct mirror {
	pthread_mutex_t lock;
	bool priv[NPAGES];
	bool seen[NPAGES];
	uint64_t replayed, heard;
	pthread_t registrar; /* the replay runs in the registering thread; the
			      * conversions only in the converter threads */
};

static uint64_t page_of(uint64_t gpa)
{
	for (int i = NREG - 1; i >= 0; i--)
		if (gpa >= region_gpa(i))
			return (uint64_t)i * RPAGES + (gpa - region_gpa(i)) / SZ_4K;
	return UINT64_MAX;
}

static void mirror_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	struct mirror *m = opaque;

	if (result)
		return; /* cancelled: nothing changed */
	pthread_mutex_lock(&m->lock);
	for (uint64_t a = gpa; a < gpa + size; a += SZ_4K) {
		uint64_t p = page_of(a);

		if (p >= NPAGES)
			continue;
		m->priv[p] = to_private;
		m->seen[p] = true;
	}
	if (pthread_equal(pthread_self(), m->registrar))
		m->replayed += size / SZ_4K;
	else
		m->heard += size / SZ_4K;
	pthread_mutex_unlock(&m->lock);
}

struct converter {
	struct cvmconv *c;
	uint64_t seed;
	atomic_bool *stop;
	_Atomic uint64_t done;
};

static void *convert_loop(void *p)
{
	struct converter *v = p;

	while (!atomic_load(v->stop)) {
		uint64_t page, n;

		v->seed = v->seed * 6364136223846793005ULL + 1442695040888963407ULL;
		page = (v->seed >> 33) % NPAGES;
		n = 1 + (v->seed >> 20) % 16;
		if (page % RPAGES + n > RPAGES)
			n = RPAGES - page % RPAGES;
		if (cvmconv_convert(v->c, page_gpa(page), n * SZ_4K, (v->seed >> 55) & 1))
			abort();
		atomic_fetch_add(&v->done, 1);
	}
	return NULL;
}

static void test_listener_replay_races(void **state)
{
	static struct mirror m;
	struct ctx x;
	struct converter v[2];
	pthread_t t[2];
	atomic_bool stop = false;
	struct cvmconv_listener l = { .sz = sizeof(l),
				      .after = mirror_after,
				      .opaque = &m,
				      .flags = CVMCONV_LISTENER_REPLAY };
	struct cvmconv_listener bad = l;
	int id;

	(void)state;
	memset(&m, 0, sizeof(m));
	pthread_mutex_init(&m.lock, NULL);
	ctx_open(&x);
	/* flags checked: unknown bits, or a replay nobody can hear */
	bad.flags = 1u << 7;
	assert_int_equal(cvmconv_add_listener(x.c, &bad), -EINVAL);
	bad.flags = CVMCONV_LISTENER_REPLAY;
	bad.after = NULL;
	bad.before = (int (*)(void *, uint64_t, uint64_t, bool))NULL;
	assert_int_equal(cvmconv_add_listener(x.c, &bad), -EINVAL);
	for (int i = 0; i < 2; i++) {
		v[i].c = x.c;
		v[i].seed = 77 + i;
		v[i].stop = &stop;
		atomic_init(&v[i].done, 0);
		assert_int_equal(pthread_create(&t[i], NULL, convert_loop, &v[i]), 0);
	}
	while (atomic_load(&v[0].done) < 200 || atomic_load(&v[1].done) < 200)
		sched_yield();
	/* register while both threads convert: the replay is one consistent
	 * state, every later conversion comes after it */
	m.registrar = pthread_self();
	id = cvmconv_add_listener(x.c, &l);
	assert_true(id >= 0);
	while (atomic_load(&v[0].done) < 2000 || atomic_load(&v[1].done) < 2000)
		sched_yield();
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	/* the replay covered all guest memory once, the mirror is exact */
	assert_int_equal(m.replayed, NPAGES);
	for (uint64_t p = 0; p < NPAGES; p++) {
		assert_true(m.seen[p]);
		if (m.priv[p] != (cvmconv_is_private(x.c, page_gpa(p)) == 1))
			fail_msg("page %llu: the listener has %d, the library %d",
				 (unsigned long long)p, m.priv[p],
				 cvmconv_is_private(x.c, page_gpa(p)));
	}
	print_message("replay: %llu pages replayed, %llu heard after, %llu + %llu conversions\n",
		      (unsigned long long)m.replayed, (unsigned long long)m.heard,
		      (unsigned long long)atomic_load(&v[0].done),
		      (unsigned long long)atomic_load(&v[1].done));
	assert_true(m.heard > 0);
	ctx_close(&x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_for_each_range),
		cmocka_unit_test(test_snapshot_round_trip),
		cmocka_unit_test(test_listener_replay_races),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
