/* SPDX-License-Identifier: MIT */
/* Fault injection: every allocation of create, add_region, conversions,
 * batches and the pending-punch list fails in turn. */
#include "fi.h"

/* ---- allocation failures ---- */

/* Run @step with the n-th allocation failing, for n = 1, 2, ... until it
 * completes without reaching an injected failure. @step returns the
 * library's return value; @check verifies the world after a failure. */
typedef int (*alloc_step)(struct world *w, void *arg);
typedef void (*alloc_setup)(struct world *w, void *arg);

static unsigned alloc_loop(alloc_setup setup, alloc_step step, void *arg, int fail_ret,
			   bool recheck_world)
{
	unsigned failures = 0;

	for (uint64_t n = 1;; n++) {
		struct world *w = world_get();
		long live0;
		int ret;

		live0 = alloc.live;
		world_ctx(w, false);
		if (setup)
			setup(w, arg);
		alloc_arm(n);
		ret = step(w, arg);
		alloc_disarm();
		if (!alloc.hit) {
			assert_int_equal(ret, 0);
			world_free(w);
			assert_int_equal(alloc.live, live0);
			break;
		}
		failures++;
		if (ret != fail_ret)
			fail_msg("allocation %llu failed: returned %d, want %d",
				 (unsigned long long)n, ret, fail_ret);
		if (recheck_world) {
			check_world(w);
			assert_int_equal(fake_kvm_mismatches(&w->fake, w->c, BASE, 4 * RSIZE), 0);
			check_flush_recovers(w);
		}
		world_free(w);
		/* nothing leaked by the failed call */
		assert_int_equal(alloc.live, live0);
		assert_true(n < 64);
	}
	return failures;
}

void test_alloc_create(void **state)
{
	(void)state;
	for (uint64_t n = 1;; n++) {
		struct fake_kvm f;
		struct cvmconv_config cfg;
		struct cvmconv *c = NULL;
		long live0 = alloc.live;
		int ret;

		fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
		cfg = fake_kvm_config(&f, CVMCONV_UNALIGNED_ALLOW);
		alloc_arm(n);
		ret = cvmconv_create(&cfg, &c);
		alloc_disarm();
		if (!alloc.hit) {
			assert_int_equal(ret, 0);
			cvmconv_destroy(c);
			fake_kvm_fini(&f);
			assert_int_equal(alloc.live, live0);
			break;
		}
		assert_int_equal(ret, -ENOMEM);
		assert_null(c);
		fake_kvm_fini(&f);
		assert_int_equal(alloc.live, live0);
	}
}

struct add_arg {
	enum backing kind;
	bool private_;
	unsigned before; /* regions added before the one that is checked */
	int fds[2];
	uint8_t *map;
};

static void add_setup(struct world *w, void *argp)
{
	struct add_arg *a = argp;

	for (unsigned i = 0; i < a->before; i++) {
		struct cvmconv_region reg = { .sz = sizeof(reg),
					      .gpa = 8 * SZ_1G + i * RSIZE,
					      .size = RSIZE,
					      .private_fd = -1,
					      .shared_fd = -1,
					      .unaligned = -1 };

		assert_int_equal(cvmconv_add_region(w->c, &reg), 0);
	}
}

static int add_step(struct world *w, void *argp)
{
	struct add_arg *a = argp;
	struct cvmconv_region reg = { .sz = sizeof(reg),
				      .gpa = BASE,
				      .size = RSIZE,
				      .private_fd = a->fds[1],
				      .shared_fd = a->kind == B_HVA ? -1 : a->fds[0],
				      .shared_hva = a->kind == B_HVA ? a->map : NULL,
				      .flags = a->private_ ? CVMCONV_REGION_PRIVATE : 0,
				      .unaligned = -1 };
	uint64_t calls = w->fake.calls[FAKE_CALL_ATTR];
	int ret = cvmconv_add_region(w->c, &reg);

	if (ret) {
		/* nothing registered, no attribute changed */
		assert_int_equal(cvmconv_is_private(w->c, BASE), -ENOENT);
		assert_int_equal(w->fake.calls[FAKE_CALL_ATTR], calls);
		assert_int_equal(w->fake.npriv, 0);
	} else {
		assert_int_equal(cvmconv_is_private(w->c, BASE), a->private_);
	}
	return ret;
}

void test_alloc_add_region(void **state)
{
	const struct {
		enum backing kind;
		bool private_;
		unsigned before;
	} cases[] = {
		{ B_SHMEM, false, 0 }, { B_SHMEM, true, 0 },  { B_HUGE, false, 0 },
		{ B_HVA, false, 0 },   { B_SHMEM, false, 8 }, /* the region table grows */
	};

	(void)state;
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct add_arg a = {
			cases[i].kind, cases[i].private_, cases[i].before, { -1, -1 }, NULL
		};
		unsigned failures;

		a.fds[0] = memfd_of(RSIZE, a.kind == B_HUGE);
		if (a.fds[0] < 0 && a.kind == B_HUGE) {
			fixture_print_skip(__func__, "no MFD_HUGETLB memfd: %s", strerror(errno));
			continue;
		}
		a.fds[1] = memfd_of(RSIZE, false);
		assert_true(a.fds[0] >= 0 && a.fds[1] >= 0);
		if (a.kind == B_HVA)
			a.map = map_whole(a.fds[0], RSIZE);
		failures = alloc_loop(add_setup, add_step, &a, -ENOMEM, false);
		assert_true(failures >= 2); /* the region and its tracker at least */
		if (a.map)
			munmap(a.map, RSIZE);
		close(a.fds[0]);
		close(a.fds[1]);
	}
}

/* Conversions: the mixed-extent table grows (first mixed extent, and
 * past its initial capacity), a batch allocates its copies. */
struct conv_arg {
	enum entry e;
	unsigned premixed; /* extents made mixed beforehand */
};

static void conv_setup(struct world *w, void *argp)
{
	struct conv_arg *a = argp;

	world_region(w, B_SHMEM);
	world_region(w, B_SHMEM);
	for (unsigned i = 0; i < a->premixed; i++) {
		uint64_t gpa = BASE + (i % 4) * SZ_2M + 2 * SZ_4K;

		assert_int_equal(cvmconv_convert(w->c, gpa, SZ_4K, true), 0);
		model_set(w, gpa, SZ_4K, true);
		write_converted(w, gpa, SZ_4K);
	}
}

static int conv_step(struct world *w, void *argp)
{
	struct conv_arg *a = argp;
	/* unaligned at both ends: both edge extents become mixed */
	const uint64_t gpa = BASE + SZ_2M - 3 * SZ_4K, size = SZ_2M + 6 * SZ_4K;
	uint64_t hc, calls = w->fake.calls[FAKE_CALL_ATTR];
	int ret = request(w, a->e, gpa, size, true, &hc);

	if (ret == 0) {
		model_set(w, gpa, size, true);
		write_converted(w, gpa, size);
		return 0;
	}
	/* refused before any kernel call; a guest would get -KVM_EFAULT */
	assert_int_equal(w->fake.calls[FAKE_CALL_ATTR], calls);
	if (entry_has_hc(a->e) && hc != HC(CVMCONV_KVM_EFAULT))
		fail_msg("%s returned %d but left the guest's return code at 0x%llx "
			 "(want -KVM_EFAULT as for every host failure)",
			 a->e == E_BATCH_GUEST ? "cvmconv_convert_batch" : "the request", ret,
			 (unsigned long long)hc);
	return ret;
}

void test_alloc_convert(void **state)
{
	(void)state;
	for (unsigned e = 0; e < E_COUNT; e++) {
		for (unsigned premixed = 0; premixed <= 2; premixed += 2) {
			struct conv_arg a = { (enum entry)e, premixed };
			unsigned failures = alloc_loop(conv_setup, conv_step, &a, -ENOMEM, true);

			if (e == E_BATCH_GUEST || e == E_BATCH_HOST)
				assert_true(failures >= 2); /* its two copies */
		}
	}
}

/* A punch fails and the pending list cannot grow at the same moment: the
 * stale memory must still be counted and recovered by the flush
 * (docs/semantics.md: "the memory stays allocated, is counted, and
 * cvmconv_flush() retries it"). Each request reserves room in the failed
 * runs for the waiting ones, plus 4 per run piece (a one-run request counts
 * 2) and 2 (backing_reserve()), and the room doubles from 8; after
 * PENDING_SETUP = 55 separate failed punches it is 64, so the step
 * (55 + 4 * 2 + 2 > 64) is the request that needs the list to grow. The test fails if the list's growth is never hit. */
#define PENDING_SETUP 55

static void pending_setup(struct world *w, void *argp)
{
	int err = EIO;

	(void)argp;
	world_region(w, B_SHMEM);
	/* warm the tracker so that only the pending list allocates */
	assert_int_equal(cvmconv_convert(w->c, BASE + SZ_2M + SZ_4K, SZ_4K, true), 0);
	model_set(w, BASE + SZ_2M + SZ_4K, SZ_4K, true);
	write_converted(w, BASE + SZ_2M + SZ_4K, SZ_4K);
	for (unsigned k = 0; k < PENDING_SETUP; k++) {
		uint64_t gpa = BASE + (100 + 4 * k) * SZ_4K, hc;

		sched_set(&w->s[FAKE_CALL_PUNCH], &err, 1, false);
		assert_int_equal(request(w, E_MAP, gpa, SZ_4K, true, &hc), 0);
		model_set(w, gpa, SZ_4K, true);
		write_converted(w, gpa, SZ_4K);
	}
	assert_int_equal(stats(w).punch_pending_bytes, PENDING_SETUP * SZ_4K);
	sched_set(&w->s[FAKE_CALL_PUNCH], &err, 1, false);
}

static int pending_step(struct world *w, void *argp)
{
	const uint64_t gpa = BASE + 16 * SZ_4K, size = 8 * SZ_4K;
	const uint64_t pending = size + PENDING_SETUP * SZ_4K;
	struct cvmconv_stats st;
	uint64_t hc, calls = w->fake.calls[FAKE_CALL_ATTR];
	int ret = request(w, E_MAP, gpa, size, true, &hc);

	(void)argp;
	if (ret) {
		/* an allocation before the attribute update failed: refused,
		 * nothing changed */
		assert_int_equal(ret, -ENOMEM);
		assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
		assert_int_equal(w->fake.calls[FAKE_CALL_ATTR], calls);
		memset(&w->s[FAKE_CALL_PUNCH], 0, sizeof(w->s[FAKE_CALL_PUNCH]));
		return 0;
	}
	injected[S_PUNCH_4K][err_index(EIO)]++;
	assert_int_equal(hc, 0);
	model_set(w, gpa, size, true);
	write_converted(w, gpa, size);
	check_world(w);
	st = stats(w);
	assert_int_equal(st.punch_failures, PENDING_SETUP + 1);
	if (alloc.hit)
		alloc_disarm();
	/* the stale shared pages are still allocated: they must be counted */
	check_allocation(w, pending);
	if (st.punch_pending_bytes != pending || st.double_alloc_bytes != pending)
		fail_msg("punch failed while the pending list %s: %llu stale bytes still "
			 "allocated, but punch_pending_bytes %llu, double_alloc_bytes %llu",
			 alloc.hit ? "could not grow" : "grew", (unsigned long long)pending,
			 (unsigned long long)st.punch_pending_bytes,
			 (unsigned long long)st.double_alloc_bytes);
	check_flush_recovers(w);
	return 0;
}

void test_alloc_pending_list(void **state)
{
	(void)state;
	/* at least the growth of the pending list failed once */
	assert_true(alloc_loop(pending_setup, pending_step, NULL, 0, true) >= 1);
}
