/* SPDX-License-Identifier: MIT */
/* Helpers shared by the guest model suites: an exit recorder and a model
 * factory. Tests drive the public API only. */
#ifndef GUEST_TEST_UTIL_H
#define GUEST_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>

#include <cvmconv/guest.h>

#define KiB (1ULL << 10)
#define MiB (1ULL << 20)
#define GiB (1ULL << 30)
#define TiB (1ULL << 40)
#define HINT_4K CVMG_MAP_GPA_RANGE_PAGE_SZ_4K
#define HINT_2M CVMG_MAP_GPA_RANGE_PAGE_SZ_2M
#define ENC CVMG_MAP_GPA_RANGE_ENCRYPTED

struct exit_rec {
	uint64_t gpa, npages, attrs;
};

struct recorder {
	struct exit_rec *v;
	size_t len, cap;
	size_t fail_at; /* 1-based exit number that fails; 0 = never */
	int fail_ret;
};

static inline int record_exit(void *opaque, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	struct recorder *r = (struct recorder *)opaque;

	if (r->len == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 1024;
		r->v = (struct exit_rec *)realloc(r->v, r->cap * sizeof(*r->v));
		assert_non_null(r->v);
	}
	r->v[r->len].gpa = gpa;
	r->v[r->len].npages = npages;
	r->v[r->len].attrs = attrs;
	r->len++;
	if (r->fail_at && r->len == r->fail_at)
		return r->fail_ret;
	return 0;
}

static inline void recorder_reset(struct recorder *r)
{
	r->len = 0;
}

static inline void recorder_free(struct recorder *r)
{
	free(r->v);
	memset(r, 0, sizeof(*r));
}

static inline struct cvmg_config test_config(uint64_t ram, uint32_t cpus, enum cvmg_mode mode,
					     enum cvmg_platform p, struct recorder *rec)
{
	struct cvmg_config c;

	memset(&c, 0, sizeof(c));
	c.sz = sizeof(c);
	c.ram_size = ram;
	c.cpus = cpus;
	c.seed = 1;
	c.mode = mode;
	c.platform = p;
	if (rec) {
		c.exit = record_exit;
		c.exit_opaque = rec;
	}
	return c;
}

static inline struct cvmg *make_model(const struct cvmg_config *c, int boot)
{
	struct cvmg *m = NULL;

	assert_int_equal(cvmg_create(c, &m), 0);
	assert_non_null(m);
	if (boot)
		assert_int_equal(cvmg_boot(m), 0);
	return m;
}

static inline struct cvmg_stats get_stats(const struct cvmg *m)
{
	struct cvmg_stats st;

	memset(&st, 0, sizeof(st));
	st.sz = sizeof(st);
	assert_int_equal(cvmg_get_stats(m, &st), 0);
	return st;
}

#endif
