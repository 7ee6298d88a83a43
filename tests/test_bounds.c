/* SPDX-License-Identifier: MIT */
/*
 * Resource bounds under a hostile guest: 10^6 malformed or tiny requests
 *   - produce a bounded number of log lines (at most 10 guest-triggered
 *     lines per second plus one suppression summary per window), and every
 *     refusal is either logged or counted in log_suppressed;
 *   - do not grow the heap (allocator's bytes in use before and after,
 *     after a warm-up, within a small slack) nor the tracker;
 *   - cost no kernel call when nothing changes: npages = 2^52, 2^64 - 1,
 *     and a one-page request already in the requested state issue no
 *     attribute update and no punch;
 *   - finish within a generous wall-clock bound (the per-request cost is
 *     measured by bench/bounds.c, not asserted here).
 * The flood runs twice, the second time with the first region in place
 * (CVMCONV_REGION_INPLACE over the strict fake guest_memfd).
 * The flood runs for at least 3 s (more than 10^6 requests on a fast
 * machine) so that several rate-limit windows open and close.
 * CVMCONV_TEST_QUICK=1 sends 10^5 requests (valgrind).
 */
#include <errno.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/kvm.h>

#include "cvmconv.h"
#include "fake_kvm.h"
#include "fixture.h"
#include "kvm_compat.h"

#define BASE (32 * SZ_1G)
#define RSIZE (8 * SZ_2M)
#define HC_EINVAL ((uint64_t) - (int64_t)CVMCONV_KVM_EINVAL)
#define HEAP_SLACK (64 * 1024)

/* ASan/TSan replace malloc: mallinfo2() then says nothing. */
size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

static size_t heap_in_use(void)
{
	if (__sanitizer_get_current_allocated_bytes)
		return __sanitizer_get_current_allocated_bytes();
	return mallinfo2().uordblks;
}

static unsigned long requests_wanted(void)
{
	const char *q = getenv("CVMCONV_TEST_QUICK");

	return q && *q && *q != '0' ? 100000 : 1000000;
}

static struct logs {
	uint64_t lines, summaries, summarised, by_level[8];
	size_t longest;
} L;

static void count_log(void *opaque, int level, const char *msg)
{
	unsigned long long n;

	(void)opaque;
	L.lines++;
	if (level >= 0 && level < 8)
		L.by_level[level]++;
	if (strlen(msg) > L.longest)
		L.longest = strlen(msg);
	if (sscanf(msg, "%llu guest-triggered messages suppressed", &n) == 1) {
		L.summaries++;
		L.summarised += n;
	}
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct env {
	struct fake_kvm fake;
	struct fake_gmem gmem;
	bool inplace;
	struct cvmconv *c;
	int fds[2];
};

/* R0 (ALLOW, shmem backings) at BASE, R1 (REJECT, no backings) after it.
 * @inplace: R0 is an in-place region over the strict fake guest_memfd. */
static void env_init(struct env *e, bool inplace)
{
	struct cvmconv_config cfg;

	memset(&L, 0, sizeof(L));
	fake_kvm_init(&e->fake, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&e->fake, CVMCONV_UNALIGNED_ALLOW);
	cfg.log = count_log;
	assert_int_equal(cvmconv_create(&cfg, &e->c), 0);
	e->fds[0] = cvmconv_memfd_create("bounds-shared", RSIZE, SZ_4K);
	e->fds[1] = test_private_fd(RSIZE);
	assert_true(e->fds[0] >= 0 && e->fds[1] >= 0);
	struct cvmconv_region r0 = { .sz = sizeof(r0),
				     .gpa = BASE,
				     .size = RSIZE,
				     .private_fd = e->fds[1],
				     .shared_fd = e->fds[0],
				     .unaligned = CVMCONV_UNALIGNED_ALLOW };
	struct cvmconv_region r1 = { .sz = sizeof(r1),
				     .gpa = BASE + RSIZE,
				     .size = RSIZE,
				     .private_fd = -1,
				     .shared_fd = -1,
				     .unaligned = CVMCONV_UNALIGNED_REJECT };
	e->inplace = inplace;
	if (inplace) {
		assert_int_equal(fake_gmem_init(&e->gmem, RSIZE, CVMCONV_CONTENT_PRESERVE), 0);
		fake_kvm_attach_gmem(&e->fake, &e->gmem);
		fake_gmem_make_inplace(&e->gmem, &r0, CVMCONV_CONTENT_PRESERVE);
	}
	assert_int_equal(fake_kvm_add_region(&e->fake, e->c, &r0), 0);
	assert_int_equal(cvmconv_add_region(e->c, &r1), 0);
}

static void env_fini(struct env *e)
{
	cvmconv_destroy(e->c);
	close(e->fds[0]);
	close(e->fds[1]);
	if (e->inplace)
		fake_gmem_fini(&e->gmem);
	fake_kvm_fini(&e->fake);
}

static struct cvmconv_stats stats_of(struct cvmconv *c)
{
	struct cvmconv_stats st;

	memset(&st, 0, sizeof(st));
	st.sz = sizeof(st);
	assert_int_equal(cvmconv_get_stats(c, &st), 0);
	return st;
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s += 0x9E3779B97F4A7C15ULL;

	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
	return x ^ (x >> 31);
}

/* One hostile or tiny request; returns true when it must be refused (and
 * so logged or counted). */
static bool hostile(struct env *e, uint64_t *s, unsigned long i)
{
	uint64_t hc = 0, gpa = BASE + (rnd(s) % (2 * RSIZE / SZ_4K)) * SZ_4K;
	struct kvm_run run;
	struct cvmconv_range rg[2];
	int ret;

	switch (i % 16) {
	case 0: /* reserved attribute bits */
		ret = cvmconv_map_gpa_range(e->c, gpa, 1, 1ULL << (5 + rnd(s) % 59), &hc);
		break;
	case 1: /* page size hint 3 */
		ret = cvmconv_map_gpa_range(e->c, gpa, 1, 3, &hc);
		break;
	case 2: /* misaligned gpa */
		ret = cvmconv_map_gpa_range(e->c, gpa + 1 + rnd(s) % 4095, 1, 0, &hc);
		break;
	case 3: /* zero pages */
		ret = cvmconv_map_gpa_range(e->c, gpa, 0, 0, &hc);
		break;
	case 4: /* absurd sizes */
		ret = cvmconv_map_gpa_range(e->c, gpa, i & 16 ? 1ULL << 52 : UINT64_MAX,
					    CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &hc);
		break;
	case 5: /* outside every region */
		ret = cvmconv_map_gpa_range(e->c, rnd(s) % (16 * SZ_1G) & ~(SZ_4K - 1), 1, 0, &hc);
		break;
	case 6: /* partly outside */
		ret = cvmconv_map_gpa_range(e->c, BASE + 2 * RSIZE - SZ_4K, 2, 0, &hc);
		break;
	case 7: /* 2M hint on an unaligned range */
		ret = cvmconv_map_gpa_range(e->c, BASE + SZ_4K, 512, 1, &hc);
		break;
	case 8: /* unaligned in the REJECT region */
		ret = cvmconv_map_gpa_range(e->c, BASE + RSIZE + (rnd(s) % 4096) * SZ_4K, 1,
					    CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &hc);
		break;
	case 9: /* memory fault with unknown flags */ {
		struct cvmconv_kvm_memory_fault *mf;

		memset(&run, 0, sizeof(run));
		run.exit_reason = KVM_EXIT_MEMORY_FAULT;
		mf = cvmconv_run_memory_fault(&run);
		mf->gpa = gpa;
		mf->size = SZ_4K;
		mf->flags = 1ULL << (rnd(s) % 64) | 1;
		assert_int_equal(cvmconv_handle_exit(e->c, &run), -EFAULT);
		return true;
	}
	case 10: /* overlapping guest batch */
		rg[0] = (struct cvmconv_range){ BASE, 2 * SZ_4K, 1, 0 };
		rg[1] = (struct cvmconv_range){ BASE + SZ_4K, SZ_4K, 1, 0 };
		ret = cvmconv_convert_batch(e->c, rg, 2, CVMCONV_BATCH_GUEST, &hc);
		break;
	case 11: /* a non-conversion exit: ignored */
		memset(&run, 0, sizeof(run));
		run.exit_reason = (uint32_t)rnd(s);
		if (run.exit_reason == KVM_EXIT_HYPERCALL ||
		    run.exit_reason == KVM_EXIT_MEMORY_FAULT)
			run.exit_reason = 0;
		assert_int_equal(cvmconv_handle_exit(e->c, &run), 0);
		return false;
	case 12: /* tiny, already in the requested state: no kernel call */
		assert_int_equal(cvmconv_map_gpa_range(e->c, BASE + 2 * SZ_2M, 1, 0, &hc), 0);
		assert_int_equal(hc, 0);
		return false;
	default: /* tiny, valid: a page of the ALLOW region changes state */
		assert_int_equal(
			cvmconv_map_gpa_range(e->c, BASE + (rnd(s) % (2 * SZ_2M / SZ_4K)) * SZ_4K,
					      1, i & 1 ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0, &hc),
			0);
		assert_int_equal(hc, 0);
		return false;
	}
	assert_int_equal(ret, 0);
	assert_int_equal(hc, HC_EINVAL);
	return true;
}

static void hostile_flood(bool inplace)
{
	struct env e;
	uint64_t seed = 0xB0BB1E5ULL, refusals = 0, tracker_max = 0;
	unsigned long n = requests_wanted(), warm = 20000, i_total = 0;
	size_t heap0 = 0, heap1;
	double t0 = 0, elapsed;
	struct cvmconv_stats st;

	env_init(&e, inplace);
	/* at least n requests, and for at least 3 s: the rate limit windows */
	for (unsigned long i = 0; i < n + warm || now_s() - t0 < 3.0; i++) {
		if (i == warm) {
			/* the tracker and the pending lists reached their size */
			heap0 = heap_in_use();
			t0 = now_s();
			refusals = 0;
			memset(&L, 0, sizeof(L));
			st = stats_of(e.c);
			tracker_max = st.tracker_bytes;
		}
		refusals += hostile(&e, &seed, i);
		i_total = i + 1 - warm;
		if (i >= warm && i % 4096 == 0) {
			uint64_t tb = stats_of(e.c).tracker_bytes;

			if (tb > tracker_max)
				tracker_max = tb;
		}
	}
	elapsed = now_s() - t0;
	n = i_total;
	heap1 = heap_in_use();
	st = stats_of(e.c);

	printf("test_bounds%s: %lu requests (%llu refused) in %.2f s (%.0f ns each); %llu log "
	       "lines (%llu summaries), %llu suppressed; heap %+lld bytes; tracker %llu bytes "
	       "(max %llu)\n",
	       inplace ? " (in place)" : "", n, (unsigned long long)refusals, elapsed,
	       elapsed * 1e9 / (double)n, (unsigned long long)L.lines,
	       (unsigned long long)L.summaries, (unsigned long long)st.log_suppressed,
	       (long long)heap1 - (long long)heap0, (unsigned long long)st.tracker_bytes,
	       (unsigned long long)tracker_max);

	/* bounded work: a generous bound (about 1 us each on a laptop) */
	assert_true(elapsed < 120.0);
	/* bounded logging: 10 lines per started second, plus one summary */
	uint64_t windows = (uint64_t)elapsed + 2;
	assert_true(L.lines <= windows * 11 + 2);
	assert_true(L.summaries <= windows);
	assert_true(L.longest < 256);
	/* logging still works: each window let its lines out */
	assert_true(L.lines >= 10);
	assert_true(L.summaries >= 1);
	/* every refusal was logged or counted */
	assert_true(L.lines - L.summaries <= refusals);
	assert_true(st.log_suppressed >= refusals - (L.lines - L.summaries));
	assert_true(L.summarised <= st.log_suppressed);
	/* bounded memory */
	if (heap1 > heap0 + HEAP_SLACK)
		fail_msg("heap grew by %zu bytes over %lu requests", heap1 - heap0, n);
	assert_true(st.tracker_bytes <= tracker_max);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(fake_kvm_mismatches(&e.fake, e.c, BASE, 2 * RSIZE), 0);
	if (inplace) {
		/* the valid requests went to the guest_memfd, and only they */
		assert_true(e.gmem.calls > 0);
		assert_int_equal(e.gmem.rejected, 0);
		assert_int_equal(st.punches, 0);
	}
	env_fini(&e);
}

static void test_bounds_hostile_flood(void **state)
{
	(void)state;
	hostile_flood(false);
}

static void test_bounds_hostile_flood_inplace(void **state)
{
	(void)state;
	hostile_flood(true);
}

/* Requests that change nothing cost no kernel call, whatever their size. */
static void no_kernel_call(bool inplace)
{
	static const uint64_t npages[] = { 1, 1ULL << 20, 1ULL << 40, 1ULL << 52, UINT64_MAX };
	struct env e;

	env_init(&e, inplace);
	for (unsigned k = 0; k < sizeof(npages) / sizeof(npages[0]); k++) {
		uint64_t calls[FAKE_CALL_COUNT], hc = 1, want;
		struct cvmconv_stats before = stats_of(e.c), after;

		memcpy(calls, e.fake.calls, sizeof(calls));
		/* shared pages asked to be shared: 1 page is valid and in
		 * state, the others do not fit the regions or 2^52 */
		assert_int_equal(cvmconv_map_gpa_range(e.c, BASE, npages[k], 0, &hc), 0);
		want = npages[k] == 1 ? 0 : HC_EINVAL;
		assert_int_equal(hc, want);
		assert_memory_equal(calls, e.fake.calls, sizeof(calls));
		after = stats_of(e.c);
		assert_int_equal(after.attr_updates, before.attr_updates);
		assert_int_equal(after.punches, before.punches);
		/* the host path too */
		assert_int_equal(cvmconv_convert(e.c, BASE,
						 npages[k] < (1ULL << 40)
							 ? npages[k] * SZ_4K
							 : UINT64_MAX & ~(SZ_4K - 1),
						 false),
				 npages[k] == 1 ? 0 : -EINVAL);
		assert_memory_equal(calls, e.fake.calls, sizeof(calls));
	}
	if (inplace)
		assert_int_equal(e.gmem.calls, 0);
	env_fini(&e);
}

static void test_bounds_no_kernel_call(void **state)
{
	(void)state;
	no_kernel_call(false);
	no_kernel_call(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bounds_no_kernel_call),
		cmocka_unit_test(test_bounds_hostile_flood),
		cmocka_unit_test(test_bounds_hostile_flood_inplace),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
