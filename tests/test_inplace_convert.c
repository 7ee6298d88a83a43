/* SPDX-License-Identifier: MIT */
/*
 * In-place conversions: one KVM_SET_MEMORY_ATTRIBUTES2 per run piece over
 * the file offsets, nothing punched or held twice (st_blocks), content
 * modes, runs that cross from a two-backing region into an in-place one,
 * queries and replay over both kinds, vCPU threads with pins.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "inplace_env.h"
#include <pthread.h>
#include <sys/stat.h>

/* ---- conversions ---- */

static void test_inplace_converts_without_punching(void **state)
{
	struct env *e = *state;
	struct stat before, after;
	struct cvmconv_stats st;
	uint64_t hc, calls = e->g[0].calls;

	memset(e->g[0].map, 0x11, RSIZE); /* the guest wrote everything */
	assert_int_equal(fstat(e->g[0].fd, &before), 0);
	/* 2 MiB + 4 KiB from 4 KiB into B: unaligned, one run, one call */
	assert_int_equal(cvmconv_map_gpa_range(e->c, B_GPA + SZ_4K, 513, ENC, &hc), 0);
	assert_int_equal(hc, 0);
	assert_int_equal(e->g[0].calls - calls, 1);
	assert_int_equal(e->g[0].log[e->g[0].nlog - 1].offset, SZ_4K);
	assert_int_equal(e->g[0].log[e->g[0].nlog - 1].size, SZ_2M + SZ_4K);
	assert_int_equal(e->g[0].log[e->g[0].nlog - 1].flags, CVMCONV_CONTENT_PRESERVE);
	assert_int_equal(e->fake.calls[FAKE_CALL_ATTR], 0); /* no VM-wide update */
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
	assert_int_equal(cvmconv_is_private(e->c, B_GPA), 0);
	assert_int_equal(cvmconv_is_private(e->c, B_GPA + SZ_4K), 1);
	/* the host cannot touch what is private now */
	assert_int_equal(fake_gmem_host_access(&e->g[0], SZ_4K), -EFAULT);
	assert_int_equal(fake_gmem_host_access(&e->g[0], 0), 0);
	/* back to shared, and a memory fault converting part of it again */
	assert_int_equal(cvmconv_map_gpa_range(e->c, B_GPA + SZ_4K, 513, 0, &hc), 0);
	assert_int_equal(hc, 0);
	assert_int_equal(cvmconv_convert(e->c, B_GPA + SZ_2M, SZ_4K, true), 0);
	st = stats(e->c);
	/* nothing stale, nothing punched, nothing held twice */
	assert_int_equal(st.punches, 0);
	assert_int_equal(st.double_alloc_bytes, 0);
	assert_int_equal(st.double_alloc_peak_bytes, 0);
	assert_int_equal(st.mixed_extents, 1);
	assert_int_equal(st.to_private_bytes, SZ_2M + 2 * SZ_4K);
	assert_int_equal(st.to_shared_bytes, SZ_2M + SZ_4K);
	assert_int_equal(fstat(e->g[0].fd, &after), 0);
	assert_int_equal(after.st_blocks, before.st_blocks);
	/* PRESERVE: every byte the guest wrote is still there */
	for (uint64_t i = 0; i < RSIZE; i += 512)
		if (e->g[0].map[i] != 0x11)
			fail_msg("byte %llu changed", (unsigned long long)i);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
}

static void test_inplace_content_modes(void **state)
{
	struct env *e = *state;
	struct fake_gmem *z = &e->g[1];
	struct fake_gmem u;
	struct cvmconv_region r;
	uint64_t hc;

	/* ZERO (region C): to-private goes UNSPECIFIED, to-shared ZERO */
	memset(z->map, 0x22, 4 * SZ_4K);
	assert_int_equal(cvmconv_map_gpa_range(e->c, C_GPA, 4, ENC, &hc), 0);
	assert_int_equal(hc, 0);
	assert_int_equal(z->log[z->nlog - 1].flags, 0);
	assert_int_equal(cvmconv_map_gpa_range(e->c, C_GPA, 4, 0, &hc), 0);
	assert_int_equal(z->log[z->nlog - 1].flags, CVMCONV_CONTENT_ZERO);
	for (unsigned p = 0; p < 4; p++)
		assert_true(page_is_zero(z->map, p));
	/* UNSPECIFIED: contents not guaranteed (the fake poisons them) */
	assert_int_equal(fake_gmem_init(&u, RSIZE, 0), 0);
	fake_kvm_attach_gmem(&e->fake, &u);
	r = inplace_region(BASE + 10 * RSIZE, &u, CVMCONV_CONTENT_UNSPECIFIED);
	assert_int_equal(fake_kvm_add_region(&e->fake, e->c, &r), 0);
	memset(u.map, 0x33, SZ_4K);
	assert_int_equal(cvmconv_convert(e->c, BASE + 10 * RSIZE, SZ_4K, true), 0);
	assert_int_equal(u.log[u.nlog - 1].flags, 0);
	assert_int_equal(u.map[0], FAKE_GMEM_POISON);
	/* a mode the fake kernel does not enumerate: the update fails and is
	 * undone like any other (the default op would have refused the
	 * region at add: test_default_ops_gmem) */
	assert_int_equal(cvmconv_remove_region(e->c, BASE + 10 * RSIZE), 0);
	r.content_mode = CVMCONV_CONTENT_PRESERVE;
	assert_int_equal(cvmconv_add_region(e->c, &r), 0);
	assert_int_equal(cvmconv_map_gpa_range(e->c, BASE + 10 * RSIZE + SZ_4K, 1, ENC, &hc),
			 -EINVAL);
	assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
	assert_int_equal(cvmconv_is_private(e->c, BASE + 10 * RSIZE + SZ_4K), 0);
	assert_int_equal(cvmconv_remove_region(e->c, BASE + 10 * RSIZE), 0);
	fake_gmem_fini(&u);
}

/* One run across A (two-backing) and B (in place): one VM-wide update and
 * one guest_memfd update, each over its own part. */
static void test_inplace_run_across_kinds(void **state)
{
	struct env *e = *state;
	uint64_t hc, calls = e->g[0].calls;
	int err = EIO;

	assert_int_equal(cvmconv_map_gpa_range(e->c, B_GPA - SZ_2M, 1024, ENC, &hc), 0);
	assert_int_equal(e->fake.calls[FAKE_CALL_ATTR], 1);
	assert_int_equal(e->fake.log[e->fake.nlog - 1].gpa, B_GPA - SZ_2M);
	assert_int_equal(e->fake.log[e->fake.nlog - 1].size, SZ_2M);
	assert_int_equal(e->g[0].calls - calls, 1);
	assert_int_equal(e->g[0].log[e->g[0].nlog - 1].offset, 0);
	assert_int_equal(e->g[0].log[e->g[0].nlog - 1].size, SZ_2M);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
	/* the other way, with the VM-wide part failing after the in-place
	 * part... in guest order the two-backing part comes first: fail it */
	fake_kvm_fail_nth(&e->fake, FAKE_CALL_ATTR, 1, err);
	calls = e->g[0].calls;
	assert_int_equal(cvmconv_map_gpa_range(e->c, B_GPA - SZ_2M, 1024, 0, &hc), -EIO);
	assert_int_equal(e->g[0].calls, calls); /* never reached */
	fake_kvm_fail_clear(&e->fake);
	/* the in-place part failing sets the VM-wide part back */
	fake_kvm_fail_nth(&e->fake, FAKE_CALL_GMEM, 1, err);
	assert_int_equal(cvmconv_map_gpa_range(e->c, B_GPA - SZ_2M, 1024, 0, &hc), -EIO);
	assert_int_equal(e->fake.log[e->fake.nlog - 1].attributes, CVMCONV_ATTR_PRIVATE);
	fake_kvm_fail_clear(&e->fake);
	assert_int_equal(cvmconv_is_private(e->c, A_GPA + RSIZE - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e->c, B_GPA), 1);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
}

static int collect_run(void *opaque, uint64_t gpa, uint64_t size, bool is_private)
{
	uint64_t *runs = opaque;

	if (runs[0] < 8) {
		runs[1 + runs[0] * 3] = gpa;
		runs[2 + runs[0] * 3] = size;
		runs[3 + runs[0] * 3] = is_private;
	}
	runs[0]++;
	return 0;
}

/* Queries and replay see one guest memory, whatever holds it. */
static void test_inplace_runs_and_replay(void **state)
{
	struct env *e = *state;
	uint64_t runs[1 + 8 * 3] = { 0 };
	char json[2048];

	assert_int_equal(cvmconv_convert(e->c, B_GPA - SZ_4K, 2 * SZ_4K, true), 0);
	assert_int_equal(cvmconv_for_each_range(e->c, BASE, 3 * RSIZE, collect_run, runs), 0);
	assert_int_equal(runs[0], 3);
	assert_int_equal(runs[4], B_GPA - SZ_4K); /* one private run across both kinds */
	assert_int_equal(runs[5], 2 * SZ_4K);
	assert_int_equal(runs[6], 1);
	assert_true(cvmconv_stats_json(e->c, json, sizeof(json)) > 0);
	assert_non_null(strstr(json, "\"gmem_busy_retries\":0"));
	assert_non_null(strstr(json, "\"gmem_busy_failures\":0"));
	assert_non_null(strstr(json, "\"double_alloc_bytes\":0"));
}

/* ---- vCPU threads on both kinds ---- */

struct worker {
	struct env *e;
	unsigned seed;
	uint64_t done, busy;
};

static void *worker(void *arg)
{
	struct worker *w = arg;

	for (unsigned i = 0; i < 2000; i++) {
		uint64_t r = (uint64_t)rand_r(&w->seed);
		uint64_t gpa = BASE + ((r % (3 * RPAGES - 8)) << 12), hc;
		int ret = cvmconv_map_gpa_range(w->e->c, gpa, 1 + (r >> 20) % 8,
						(r >> 16) & 1 ? ENC : 0, &hc);

		if (ret == 0 && hc == 0)
			w->done++;
		else if (ret == -EAGAIN)
			w->busy++;
		else
			fail_msg("request failed: %d hc %llx", ret, (unsigned long long)hc);
	}
	return NULL;
}

static void test_inplace_threads(void **state)
{
	struct env *e = *state;
	struct worker w[4];
	pthread_t t[4];
	struct cvmconv_stats st;

	/* transient references on a few pages of both guest_memfds */
	for (unsigned p = 3; p < RPAGES; p += 97)
		for (int g = 0; g < 2; g++)
			assert_int_equal(fake_gmem_pin(&e->g[g], p * SZ_4K, SZ_4K, 1), 0);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ e, 77u + (unsigned)i, 0, 0 };
		assert_int_equal(pthread_create(&t[i], NULL, worker, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	st = stats(e->c);
	assert_int_equal(st.broken, 0);
	assert_int_equal(st.exits, 8000);
	assert_int_equal(w[0].done + w[1].done + w[2].done + w[3].done + st.gmem_busy_failures,
			 8000);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, BASE, 3 * RSIZE), 0);
	fprintf(stderr, "test_inplace_threads: 8000 requests, %llu busy retries, %llu failures\n",
		(unsigned long long)st.gmem_busy_retries,
		(unsigned long long)st.gmem_busy_failures);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_inplace_converts_without_punching,
						inplace_setup, inplace_teardown),
		cmocka_unit_test_setup_teardown(test_inplace_content_modes, inplace_setup,
						inplace_teardown),
		cmocka_unit_test_setup_teardown(test_inplace_run_across_kinds, inplace_setup,
						inplace_teardown),
		cmocka_unit_test_setup_teardown(test_inplace_runs_and_replay, inplace_setup,
						inplace_teardown),
		cmocka_unit_test_setup_teardown(test_inplace_threads, inplace_setup,
						inplace_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
