/* SPDX-License-Identifier: MIT */
/*
 * Concurrency: vCPU threads converting overlapping and disjoint ranges of
 * three adjacent regions (shmem, MFD_HUGETLB, and a shared side given by
 * address) through every entry point, while other threads read stats,
 * JSON stats and page states, flush, and register and remove listeners and
 * a region of their own. Meaningful under TSan (./build.sh tsan): every
 * access the library makes on behalf of these threads is checked there.
 *
 * A listener's after() — called with the locks of the regions the run
 * covers held, so runs on the same memory arrive in the library's own
 * serialisation order (runs on disjoint regions commute) — records each
 * committed run. At the
 * end that log is replayed, one host conversion per run, into a fresh
 * context over fresh backings: each replayed run must convert exactly the
 * pages it names (one attribute update), and the two contexts and the two
 * fake kernels must agree on every page, on the bytes converted, the mixed
 * extents, the double allocation and the kernel calls issued; every
 * attribute update the fake kernel saw must be a run the listener heard.
 * CVMCONV_TEST_QUICK=1 runs a tenth of the operations.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/kvm.h>

#include "cvmconv.h"
#include "fake_kvm.h"
#include "fixture.h"
#include "kvm_compat.h"

#define NREG 3
#define NVCPU 6
#define MAX_LOG (1u << 20)
#define BASE (16 * SZ_1G + SZ_2M - 5 * SZ_4K)
#define SIDE_GPA (64 * SZ_1G) /* the churn thread's own region */

static const uint64_t sizes[NREG] = { 4 * SZ_2M + 3 * SZ_4K, 4 * SZ_2M, 2 * SZ_2M + 9 * SZ_4K };

struct run {
	uint64_t gpa, size;
	bool to_private;
};

/* One context with its backings. */
struct ctx {
	struct fake_kvm fake;
	struct fake_gmem gmem; /* in-place runs: R1's guest_memfd */
	struct cvmconv *c;
	int shared_fd[NREG], private_fd[NREG];
	void *hva;
	uint64_t total;
	/* written only under the library's lock (listener callbacks) */
	struct run *log;
	unsigned nlog;
	bool overflow;
	uint64_t befores, afters;
};

static struct ctx A, B;
/* R1 is an in-place region (CVMCONV_REGION_INPLACE) over the strict fake
 * guest_memfd, between two two-backing ones: runs crossing it are one
 * VM-wide update per two-backing part and one guest_memfd update */
static bool inplace;
static int stop_churn;
static char failure[256];
static int failed;

#define T_CHECK(cond)                                                                     \
	do {                                                                              \
		if (!(cond)) {                                                            \
			if (!__atomic_exchange_n(&failed, 1, __ATOMIC_SEQ_CST))           \
				snprintf(failure, sizeof(failure), "%s:%d: %s", __FILE__, \
					 __LINE__, #cond);                                \
			return NULL;                                                      \
		}                                                                         \
	} while (0)

static unsigned scale(unsigned n)
{
	const char *q = getenv("CVMCONV_TEST_QUICK");

	return q && *q && *q != '0' ? (n + 9) / 10 : n;
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s += 0x9E3779B97F4A7C15ULL;

	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
	return x ^ (x >> 31);
}

/* Listeners run with the locks of the regions concerned held: runs on the
 * same memory arrive in the library's serialisation order, runs on
 * disjoint regions may arrive concurrently (and commute), so the log has
 * its own lock. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static int rec_before(void *opaque, uint64_t gpa, uint64_t size, bool to_private)
{
	struct ctx *x = opaque;

	(void)gpa;
	(void)size;
	(void)to_private;
	pthread_mutex_lock(&log_lock);
	x->befores++;
	pthread_mutex_unlock(&log_lock);
	return 0;
}

static void rec_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	struct ctx *x = opaque;

	pthread_mutex_lock(&log_lock);
	x->afters++;
	if (!result) {
		if (x->nlog == MAX_LOG)
			x->overflow = true;
		else
			x->log[x->nlog++] = (struct run){ gpa, size, to_private };
	}
	pthread_mutex_unlock(&log_lock);
}

static void ctx_init(struct ctx *x)
{
	struct cvmconv_config cfg;
	struct cvmconv_listener l = { sizeof(l), rec_before, rec_after, x, 0 };
	uint64_t gpa = BASE;

	fake_kvm_init(&x->fake, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&x->fake, CVMCONV_UNALIGNED_ALLOW);
	assert_int_equal(cvmconv_create(&cfg, &x->c), 0);
	assert_true(cvmconv_add_listener(x->c, &l) >= 0);
	x->log = calloc(MAX_LOG, sizeof(*x->log));
	assert_non_null(x->log);
	for (int i = 0; i < NREG; i++) {
		struct cvmconv_region reg = {
			.sz = sizeof(reg), .gpa = gpa, .size = sizes[i], .unaligned = -1
		};

		/* R1's shared side is hugetlb but never touched: its punches are
		 * real and free nothing, no huge page is needed */
		x->shared_fd[i] = cvmconv_memfd_create(
			"stress-shared", i == 1 ? 4 * SZ_2M : sizes[i], i == 1 ? SZ_2M : SZ_4K);
		if (x->shared_fd[i] < 0 && i == 1) {
			fixture_print_skip("test_stress", "R1 shared side is shmem: %s",
					   strerror(-x->shared_fd[i]));
			x->shared_fd[i] = cvmconv_memfd_create("stress-shared", sizes[i], SZ_4K);
		}
		assert_true(x->shared_fd[i] >= 0);
		x->private_fd[i] = test_private_fd(sizes[i]);
		assert_true(x->private_fd[i] >= 0);
		reg.private_fd = x->private_fd[i];
		reg.shared_fd = x->shared_fd[i];
		if (i == 1 && inplace) {
			assert_int_equal(
				fake_gmem_init(&x->gmem, sizes[i], CVMCONV_CONTENT_PRESERVE), 0);
			fake_kvm_attach_gmem(&x->fake, &x->gmem);
			fake_gmem_make_inplace(&x->gmem, &reg, CVMCONV_CONTENT_PRESERVE);
		}
		if (i == 2) {
			x->hva = mmap(NULL, sizes[i], PROT_READ | PROT_WRITE, MAP_SHARED,
				      x->shared_fd[i], 0);
			assert_true(x->hva != MAP_FAILED);
			reg.shared_fd = -1;
			reg.shared_hva = x->hva;
		}
		assert_int_equal(fake_kvm_add_region(&x->fake, x->c, &reg), 0);
		gpa += sizes[i];
	}
	x->total = gpa - BASE;
}

static void ctx_fini(struct ctx *x)
{
	cvmconv_destroy(x->c);
	for (int i = 0; i < NREG; i++) {
		close(x->shared_fd[i]);
		close(x->private_fd[i]);
	}
	munmap(x->hva, sizes[2]);
	if (inplace)
		fake_gmem_fini(&x->gmem);
	fake_kvm_fini(&x->fake);
	free(x->log);
	memset(x, 0, sizeof(*x));
}

/* ---- vCPU threads ---- */

struct vcpu {
	pthread_t t;
	unsigned id;
	uint64_t seed, lo, hi; /* the pages it works on: [lo, hi) of the window */
	unsigned ops;
};

static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	uint64_t span = v->hi - v->lo;

	for (unsigned i = 0; i < v->ops && !__atomic_load_n(&failed, __ATOMIC_RELAXED); i++) {
		uint64_t p = v->lo + rnd(&v->seed) % span, n, hc = 1;
		bool to_private = rnd(&v->seed) & 1;
		unsigned kind = (unsigned)(rnd(&v->seed) % 16);

		switch (rnd(&v->seed) % 4) {
		case 0:
			n = 1;
			break;
		case 1: { /* 2 MiB aligned in GPA */
			uint64_t a = (BASE / SZ_4K + p) & ~511ULL;

			if (a < BASE / SZ_4K + v->lo)
				a += 512;
			p = a - BASE / SZ_4K;
			n = 512;
			break;
		}
		default:
			n = 1 + rnd(&v->seed) % 1024;
			break;
		}
		if (p >= v->hi)
			p = v->hi - 1;
		if (p + n > v->hi)
			n = v->hi - p;
		uint64_t gpa = BASE + p * SZ_4K, size = n * SZ_4K;

		if (kind < 6) {
			T_CHECK(cvmconv_map_gpa_range(A.c, gpa, n,
						      to_private ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED
								 : 0,
						      &hc) == 0);
			T_CHECK(hc == 0);
		} else if (kind < 8) {
			struct kvm_run run;

			memset(&run, 0, sizeof(run));
			if (kind == 6) {
				run.exit_reason = KVM_EXIT_HYPERCALL;
				run.hypercall.nr = KVM_HC_MAP_GPA_RANGE;
				run.hypercall.args[0] = gpa;
				run.hypercall.args[1] = n;
				run.hypercall.args[2] =
					to_private ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0;
				T_CHECK(cvmconv_handle_exit(A.c, &run) == 1);
				T_CHECK(run.hypercall.ret == 0);
			} else {
				struct cvmconv_kvm_memory_fault *mf =
					cvmconv_run_memory_fault(&run);

				run.exit_reason = KVM_EXIT_MEMORY_FAULT;
				mf->gpa = gpa;
				mf->size = size;
				mf->flags = to_private ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0;
				/* the same random fault twice in a row from this
				 * thread, nothing converted between: -ELOOP */
				int r = cvmconv_handle_exit(A.c, &run);

				T_CHECK(r == 1 || r == -ELOOP);
			}
		} else if (kind < 10) {
			T_CHECK(cvmconv_convert(A.c, gpa, size, to_private) == 0);
		} else if (kind < 12) {
			struct cvmconv_range rg[3];
			unsigned m = 0;

			for (uint64_t at = p; at < p + n && m < 3; m++) {
				uint64_t len = 1 + rnd(&v->seed) % (p + n - at);

				rg[m] = (struct cvmconv_range){ BASE + at * SZ_4K, len * SZ_4K,
								(uint32_t)(rnd(&v->seed) & 1), 0 };
				at += len + 1;
			}
			T_CHECK(cvmconv_convert_batch(
					A.c, rg, m, kind & 1 ? CVMCONV_BATCH_GUEST : 0, &hc) == 0);
			T_CHECK(!(kind & 1) || hc == 0);
		} else if (kind == 12) {
			T_CHECK(cvmconv_flush(A.c) == 0);
		} else if (kind == 13) {
			/* refused: a page past the window */
			T_CHECK(cvmconv_map_gpa_range(A.c, BASE + A.total - SZ_4K, 2, 0, &hc) == 0);
			T_CHECK(hc == (uint64_t) - (int64_t)CVMCONV_KVM_EINVAL);
		} else {
			int r = cvmconv_is_private(A.c, gpa);

			T_CHECK(r == 0 || r == 1);
		}
	}
	return NULL;
}

/* ---- observers: stats, JSON, listeners, a region of their own ---- */

static int quiet_before(void *opaque, uint64_t gpa, uint64_t size, bool to_private)
{
	(void)opaque;
	(void)gpa;
	(void)size;
	(void)to_private;
	return 0;
}

static void *churn_main(void *arg)
{
	uint64_t n = 0;

	(void)arg;
	while (!__atomic_load_n(&stop_churn, __ATOMIC_ACQUIRE)) {
		struct cvmconv_stats st = { .sz = sizeof(st) };
		struct cvmconv_listener l = { sizeof(l), quiet_before, NULL, NULL, 0 };
		struct cvmconv_region reg = { .sz = sizeof(reg),
					      .gpa = SIDE_GPA,
					      .size = SZ_2M,
					      .private_fd = -1,
					      .shared_fd = -1,
					      .unaligned = -1 };
		char json[1024];
		int id;

		T_CHECK(cvmconv_get_stats(A.c, &st) == 0);
		T_CHECK(st.punch_pending_bytes == 0 && !st.broken);
		T_CHECK(cvmconv_stats_json(A.c, json, sizeof(json)) > 0);
		id = cvmconv_add_listener(A.c, &l);
		T_CHECK(id >= 0);
		T_CHECK(cvmconv_add_region(A.c, &reg) == 0);
		T_CHECK(cvmconv_convert(A.c, SIDE_GPA, SZ_4K * (1 + n % 512), n & 1) == 0);
		T_CHECK(cvmconv_remove_region(A.c, SIDE_GPA) == 0);
		T_CHECK(cvmconv_remove_listener(A.c, id) == 0);
		n++;
	}
	return NULL;
}

/* ---- the test ---- */

static struct cvmconv_stats stats_of(struct ctx *x)
{
	struct cvmconv_stats st;

	memset(&st, 0, sizeof(st));
	st.sz = sizeof(st);
	assert_int_equal(cvmconv_get_stats(x->c, &st), 0);
	return st;
}

/* Kernel calls one committed run costs: one per part of it on either
 * side of the in-place region R1 and one for R1 itself. */
static uint64_t pieces_of(const struct run *r)
{
	uint64_t lo = BASE + sizes[0], hi = lo + sizes[1], end = r->gpa + r->size, n = 0;

	if (!inplace)
		return 1;
	n += r->gpa < lo;
	n += r->gpa < hi && end > lo;
	n += end > hi;
	return n;
}

static void stress_replay(void)
{
	struct vcpu v[NVCPU];
	pthread_t churn;
	uint64_t seed = 0x57E55ULL, pages, pieces = 0;
	unsigned ops = scale(20000);
	struct cvmconv_stats sa, sb;

	stop_churn = 0;
	ctx_init(&A);
	pages = A.total / SZ_4K;
	printf("test_stress: %d vCPU threads x %u operations + 1 observer thread, seed 0x%llx\n",
	       NVCPU, ops, (unsigned long long)seed);
	/* two threads on disjoint halves of R0, the rest over everything */
	for (unsigned t = 0; t < NVCPU; t++) {
		v[t].id = t;
		v[t].seed = rnd(&seed);
		v[t].ops = ops;
		v[t].lo = t == 0 ? 0 : t == 1 ? sizes[0] / SZ_4K / 2 : 0;
		v[t].hi = t == 0 ? sizes[0] / SZ_4K / 2 : t == 1 ? sizes[0] / SZ_4K : pages;
	}
	assert_int_equal(pthread_create(&churn, NULL, churn_main, NULL), 0);
	for (unsigned t = 0; t < NVCPU; t++)
		assert_int_equal(pthread_create(&v[t].t, NULL, vcpu_main, &v[t]), 0);
	for (unsigned t = 0; t < NVCPU; t++)
		assert_int_equal(pthread_join(v[t].t, NULL), 0);
	__atomic_store_n(&stop_churn, 1, __ATOMIC_RELEASE);
	assert_int_equal(pthread_join(churn, NULL), 0);
	if (failed)
		fail_msg("%s", failure);
	assert_false(A.overflow);
	assert_int_equal(A.befores, A.afters);

	/* the log replayed, in order, into a fresh context */
	ctx_init(&B);
	for (unsigned k = 0, replayed = 0; k < A.nlog; k++) {
		const struct run *r = &A.log[k];
		uint64_t updates = stats_of(&B).attr_updates;

		if (r->gpa >= SIDE_GPA) {
			pieces++;
			continue; /* the churn thread's region: not in B */
		}
		assert_int_equal(cvmconv_convert(B.c, r->gpa, r->size, r->to_private), 0);
		/* the run was exactly the pages that changed: one run, one
		 * update per kernel piece of it */
		replayed++;
		pieces += pieces_of(r);
		assert_int_equal(stats_of(&B).attr_updates, updates + pieces_of(r));
		assert_int_equal(B.nlog, replayed);
		assert_int_equal(B.log[B.nlog - 1].gpa, r->gpa);
		assert_int_equal(B.log[B.nlog - 1].size, r->size);
	}
	for (uint64_t p = 0; p < pages; p++) {
		uint64_t gpa = BASE + p * SZ_4K;
		int a = cvmconv_is_private(A.c, gpa);

		if (a != cvmconv_is_private(B.c, gpa) || a != fake_kvm_is_private(&A.fake, gpa) ||
		    a != fake_kvm_is_private(&B.fake, gpa))
			fail_msg("page 0x%llx: library %d, replay %d, fake %d, replay fake %d",
				 (unsigned long long)gpa, a, cvmconv_is_private(B.c, gpa),
				 fake_kvm_is_private(&A.fake, gpa),
				 fake_kvm_is_private(&B.fake, gpa));
	}
	assert_int_equal(fake_kvm_mismatches(&A.fake, A.c, BASE - SZ_2M, A.total + 2 * SZ_2M), 0);
	sa = stats_of(&A);
	sb = stats_of(&B);
	assert_int_equal(sa.mixed_extents, sb.mixed_extents);
	assert_int_equal(sa.huge_mappable_bytes, sb.huge_mappable_bytes);
	assert_int_equal(sa.double_alloc_bytes, sb.double_alloc_bytes);
	assert_int_equal(sa.punch_pending_bytes, 0);
	assert_int_equal(sa.broken, 0);
	/* every attribute update the fake kernel saw made one committed run:
	 * nothing was applied that the listeners did not hear about */
	assert_int_equal(A.fake.calls[FAKE_CALL_ATTR] + (inplace ? A.gmem.calls : 0), pieces);
	assert_int_equal(sa.attr_updates, pieces);
	if (inplace) {
		assert_true(A.gmem.calls > 0);
		assert_int_equal(A.gmem.rejected, 0);
	}
	printf("test_stress%s: %u runs committed, replayed into a fresh context: identical "
	       "(%llu bytes to private, %llu to shared, %llu mixed extents)\n",
	       inplace ? " (R1 in place)" : "", A.nlog, (unsigned long long)sa.to_private_bytes,
	       (unsigned long long)sa.to_shared_bytes, (unsigned long long)sa.mixed_extents);
	ctx_fini(&B);
	ctx_fini(&A);
}

static void test_stress_replay(void **state)
{
	(void)state;
	inplace = false;
	stress_replay();
}

static void test_stress_replay_inplace(void **state)
{
	(void)state;
	inplace = true;
	stress_replay();
	inplace = false;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stress_replay),
		cmocka_unit_test(test_stress_replay_inplace),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
