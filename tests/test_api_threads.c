/* SPDX-License-Identifier: MIT */
/* Concurrent callers on one context: disjoint and overlapping ranges. */
#include "api_env.h"

/* ================= threads ================= */

struct worker {
	struct cvmconv *c;
	uint64_t gpa, size; /* range this worker converts in */
	uint64_t seed;
	unsigned iterations;
	unsigned failures;
	uint8_t *model; /* expected state per page, NULL when ranges overlap */
};

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	uint64_t pages = w->size / SZ_4K;

	for (unsigned i = 0; i < w->iterations; i++) {
		uint64_t first, n, hc = 1, attrs;
		bool priv = xorshift(&w->seed) & 1;

		if (xorshift(&w->seed) & 1) { /* 2 MiB aligned, 2M hint */
			uint64_t ext = pages / 512;

			first = xorshift(&w->seed) % ext * 512;
			n = (1 + xorshift(&w->seed) % 3) * 512;
			if (first + n > pages)
				n = pages - first;
			attrs = HINT_2M;
		} else {
			first = xorshift(&w->seed) % pages;
			n = 1 + xorshift(&w->seed) % 1100;
			if (first + n > pages)
				n = pages - first;
			attrs = 0;
		}
		if (priv)
			attrs |= ENC;
		if (cvmconv_map_gpa_range(w->c, w->gpa + first * SZ_4K, n, attrs, &hc) != 0 ||
		    hc != 0)
			w->failures++;
		else if (w->model)
			memset(w->model + first, priv, n);
	}
	return NULL;
}

static void run_workers(struct env *e, struct worker *w, unsigned n)
{
	pthread_t t[4];

	for (unsigned i = 0; i < n; i++)
		assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(w[i].failures, 0);
	(void)e;
}

static void test_threads_disjoint(void **state)
{
	struct env e;
	struct worker w[2];
	struct cvmconv_stats st;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 16 * SZ_1M);
	env_add(&e, 16 * SZ_1M, 16 * SZ_1M);
	for (unsigned i = 0; i < 2; i++) {
		w[i] = (struct worker){ .c = e.c,
					.gpa = e.reg[i].gpa,
					.size = e.reg[i].size,
					.seed = 0x9e3779b97f4a7c15ULL * (i + 1),
					.iterations = 2000 };
		w[i].model = calloc(w[i].size / SZ_4K, 1);
		assert_non_null(w[i].model);
	}
	run_workers(&e, w, 2);
	env_check(&e);
	for (unsigned i = 0; i < 2; i++) {
		for (uint64_t p = 0; p < w[i].size / SZ_4K; p++)
			if (cvmconv_is_private(e.c, w[i].gpa + p * SZ_4K) != w[i].model[p])
				fail_msg("worker %u page %llu: library %d, expected %d", i,
					 (unsigned long long)p,
					 cvmconv_is_private(e.c, w[i].gpa + p * SZ_4K),
					 w[i].model[p]);
		free(w[i].model);
	}
	st = stats(&e);
	assert_int_equal(st.exits, 4000);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(st.attr_updates, attr_calls(&e));
	env_fini(&e);
}

static void test_threads_overlapping(void **state)
{
	struct env e;
	struct worker w[2];
	struct cvmconv_stats st;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 16 * SZ_1M);
	env_add(&e, 16 * SZ_1M, 16 * SZ_1M);
	for (unsigned i = 0; i < 2; i++)
		w[i] = (struct worker){ .c = e.c,
					.gpa = 0,
					.size = 32 * SZ_1M,
					.seed = 0x2545f4914f6cdd1dULL * (i + 3),
					.iterations = 2000 };
	run_workers(&e, w, 2);
	env_check(&e);
	st = stats(&e);
	assert_int_equal(st.exits, 4000);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(st.attr_updates, attr_calls(&e));
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threads_disjoint),
		cmocka_unit_test(test_threads_overlapping),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
