/* SPDX-License-Identifier: MIT */
/*
 * CVMCONV_DEFER_PUNCH over real backings: a 2 MiB MFD_HUGETLB shared memfd
 * and a shmem private memfd. Stale memory must wait for cvmconv_flush()
 * (or for the per-side limit of CVMCONV_DEFER_RANGES ranges), must be
 * counted while it waits, must never be punched once it is live again, and
 * the punches of neighbouring exits must merge.
 *
 * Kernel truth: st_blocks of both memfds, HugePages_Free, and the data in
 * the live pages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "conv_util.h"

#define GPA_BASE (4 * SZ_1G)
#define REGION_SIZE (4 * SZ_2M) /* 4 huge pages */
#define NHP (REGION_SIZE / SZ_2M)
#define HP_MARGIN 4
#define SEED 0xdefe7u

/* A context over the strict fake KVM with config flags @flags; returns
 * cvmconv_create()'s result. */
static int defer_ctx(struct conv_env *e, uint32_t flags)
{
	struct cvmconv_config cfg;

	fake_kvm_init(&e->fake, FAKE_VM_SW_PROTECTED);
	e->fake_ready = true;
	cfg = fake_kvm_config(&e->fake, CVMCONV_UNALIGNED_ALLOW);
	cfg.flags = flags;
	return cvmconv_create(&cfg, &e->c);
}

/* A context over the strict fake KVM with @flags, one region of both
 * backings, starting shared (or private) with every page of the live side
 * written by the guest. */
static void defer_setup(struct conv_env *e, uint32_t flags, bool start_private)
{
	struct cvmconv_region r;

	ENV_RESERVE(e, NHP + HP_MARGIN);
	assert_int_equal(defer_ctx(e, flags), 0);
	ENV_SHARED(e, REGION_SIZE, true);
	env_private(e, REGION_SIZE);
	r = region_desc(GPA_BASE, REGION_SIZE, e->private_fd, e->shared_fd, NULL);
	if (start_private)
		r.flags = CVMCONV_REGION_PRIVATE;
	assert_int_equal(fake_kvm_add_region(&e->fake, e->c, &r), 0);
	pattern_fill(start_private ? e->private_map : e->shared_map, 0, PAGES_OF(REGION_SIZE),
		     SEED);
}

static void check_pattern(const void *map, uint64_t first, uint64_t n)
{
	for (uint64_t p = first; p < first + n; p++)
		if (!pattern_check(map, p, SEED))
			fail_msg("live page %llu lost its data", (unsigned long long)p);
}

static void test_defer_flag_checked(void **state)
{
	struct conv_env *e = *state;

	assert_int_equal(defer_ctx(e, CVMCONV_DEFER_PUNCH << 1), -EINVAL);
	assert_null(e->c);
}

/* A huge page converted to private and back before a flush: never punched,
 * never refaulted; the private side it used is punched by the flush. */
static void test_defer_huge_roundtrip(void **state)
{
	struct conv_env *e = *state;
	long free0;
	struct cvmconv_stats st;

	defer_setup(e, CVMCONV_DEFER_PUNCH, false);
	free0 = hugepages_free();
	assert_int_equal(fd_allocated_bytes(e->shared_fd), REGION_SIZE);

	guest_map(e->c, GPA_BASE, SZ_2M, true, 0);
	pattern_fill(e->private_map, 0, PAGES_PER_2M, SEED); /* the guest uses it */
	st = stats_of(e->c);
	assert_int_equal(st.punches, 0);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), REGION_SIZE);
	assert_int_equal(hugepages_free(), free0);
	/* the stale huge page waits, counted */
	assert_int_equal(st.punch_pending_bytes, SZ_2M);
	assert_int_equal(st.double_alloc_bytes, SZ_2M);

	guest_map(e->c, GPA_BASE, SZ_2M, false, 0);
	st = stats_of(e->c);
	assert_int_equal(st.punches, 0);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), REGION_SIZE);
	assert_int_equal(hugepages_free(), free0);
	/* now the private side is stale and waits */
	assert_int_equal(fd_allocated_bytes(e->private_fd), SZ_2M);
	assert_int_equal(st.punch_pending_bytes, SZ_2M);
	assert_int_equal(st.double_alloc_bytes, SZ_2M);

	assert_int_equal(cvmconv_flush(e->c), 0);
	st = stats_of(e->c);
	assert_int_equal(st.punches, 1);
	assert_int_equal(fd_allocated_bytes(e->private_fd), 0);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), REGION_SIZE);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(st.double_alloc_bytes, 0);
	/* the huge pages that never left stayed as the guest wrote them */
	check_pattern(e->shared_map, PAGES_PER_2M, PAGES_OF(REGION_SIZE) - PAGES_PER_2M);
}

/* Huge pages freed by two exits wait, then go in one punch. */
static void test_defer_huge_merged(void **state)
{
	struct conv_env *e = *state;
	long free0;
	struct cvmconv_stats st;

	defer_setup(e, CVMCONV_DEFER_PUNCH, false);
	free0 = hugepages_free();
	guest_map(e->c, GPA_BASE + SZ_2M, SZ_2M, true, 0);
	guest_map(e->c, GPA_BASE + 2 * SZ_2M, SZ_2M, true, 0);
	st = stats_of(e->c);
	assert_int_equal(st.punches, 0);
	assert_int_equal(st.punch_pending_bytes, 2 * SZ_2M);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), REGION_SIZE);

	assert_int_equal(cvmconv_flush(e->c), 0);
	st = stats_of(e->c);
	assert_int_equal(st.punches, 1);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), REGION_SIZE - 2 * SZ_2M);
	assert_int_equal(hugepages_free() - free0, 2);
	check_pattern(e->shared_map, 0, PAGES_PER_2M);
	check_pattern(e->shared_map, 3 * PAGES_PER_2M, PAGES_PER_2M);
	/* a second flush has nothing to do */
	assert_int_equal(cvmconv_flush(e->c), 0);
	assert_int_equal(stats_of(e->c).punches, 1);
}

/* Without the flag the same exits punch at once (the contract). */
static void test_no_defer_punches_at_once(void **state)
{
	struct conv_env *e = *state;
	struct cvmconv_stats st;

	defer_setup(e, 0, false);
	guest_map(e->c, GPA_BASE + SZ_2M, SZ_2M, true, 0);
	st = stats_of(e->c);
	assert_int_equal(st.punches, 1);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), REGION_SIZE - SZ_2M);
}

/* 4 KiB side: single stale pages that never touch wait until
 * CVMCONV_DEFER_RANGES of them do, then that side is punched; adjacent
 * ones merge into one range; a page that is live again is never punched. */
static void test_defer_4k_limit_merge_live(void **state)
{
	struct conv_env *e = *state;
	const uint64_t n = CVMCONV_DEFER_RANGES;
	struct cvmconv_stats st;
	uint64_t k;

	defer_setup(e, CVMCONV_DEFER_PUNCH, true);
	assert_int_equal(fd_allocated_bytes(e->private_fd), REGION_SIZE);
	/* n separate pages (every other one) to shared: they all wait */
	for (k = 0; k < n; k++) {
		guest_map(e->c, GPA_BASE + 2 * k * SZ_4K, SZ_4K, false, 0);
		st = stats_of(e->c);
		assert_int_equal(st.punches, 0);
		assert_int_equal(st.punch_pending_bytes, (k + 1) * SZ_4K);
	}
	assert_int_equal(fd_allocated_bytes(e->private_fd), REGION_SIZE);
	/* one more range than the limit: at the end of that conversion every
	 * waiting range goes, the new one too */
	guest_map(e->c, GPA_BASE + 2 * n * SZ_4K, SZ_4K, false, 0);
	st = stats_of(e->c);
	assert_int_equal(st.punches, n + 1);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(fd_allocated_bytes(e->private_fd), REGION_SIZE - (n + 1) * SZ_4K);

	/* 16 adjacent pages in 16 exits: one range */
	for (k = 0; k < 16; k++)
		guest_map(e->c, GPA_BASE + SZ_2M + k * SZ_4K, SZ_4K, false, 0);
	/* and the last of them goes live again before the flush: never punched */
	guest_map(e->c, GPA_BASE + SZ_2M + 15 * SZ_4K, SZ_4K, true, 0);
	st = stats_of(e->c);
	assert_int_equal(st.punches, n + 1);
	assert_int_equal(st.punch_pending_bytes, 15 * SZ_4K);
	assert_int_equal(cvmconv_flush(e->c), 0);
	st = stats_of(e->c);
	assert_int_equal(st.punches, n + 2);
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(fd_allocated_bytes(e->private_fd), REGION_SIZE - (n + 16) * SZ_4K);
	/* every private page is live and holds what the guest wrote */
	for (uint64_t p = 0; p < PAGES_OF(REGION_SIZE); p++)
		if (cvmconv_is_private(e->c, GPA_BASE + p * SZ_4K) == 1 &&
		    !pattern_check(e->private_map, p, SEED))
			fail_msg("live private page %llu lost its data", (unsigned long long)p);
}

/* ---- a batch whose runs go both ways (issue: live pages punched) ---- */

/* Another vCPU or a device writes into a page the moment KVM makes it
 * shared: the attribute op hands the update to the fake, then writes a tag
 * into the shared side of @tag_page if the update made it shared. */
struct tagging {
	struct conv_env *e;
	uint64_t tag_page; /* region page */
	bool tagged;
};

static int tag_set_attrs(void *opaque, uint64_t gpa, uint64_t size, uint64_t attrs)
{
	struct tagging *t = opaque;
	uint64_t tag_gpa = GPA_BASE + t->tag_page * SZ_4K;
	int ret = fake_kvm_ops.set_memory_attributes(&t->e->fake, gpa, size, attrs);

	if (ret == 0 && !(attrs & CVMCONV_ATTR_PRIVATE) && tag_gpa >= gpa && tag_gpa < gpa + size) {
		pattern_fill(t->e->shared_map, t->tag_page, 1, SEED ^ 0x7a9);
		t->tagged = true;
	}
	return ret;
}

static int tag_punch(void *opaque, int fd, uint64_t off, uint64_t len)
{
	return fake_kvm_ops.punch(&((struct tagging *)opaque)->e->fake, fd, off, len);
}

static const struct cvmconv_ops tag_ops = { .set_memory_attributes = tag_set_attrs,
					    .punch = tag_punch };

/* Deferred mode, region of @size with a shared side on 2 MiB huge pages or
 * shmem, starting shared and written; the oracle reports instead of
 * aborting, so that the test names what it found. */
static void tag_setup(struct conv_env *e, struct tagging *t, uint64_t size, bool huge)
{
	struct cvmconv_config cfg;
	struct cvmconv_region r;

	if (huge)
		ENV_RESERVE(e, size / SZ_2M + HP_MARGIN);
	fake_kvm_init(&e->fake, FAKE_VM_SW_PROTECTED);
	e->fake_ready = true;
	e->fake.abort_on_live = false;
	cfg = fake_kvm_config(&e->fake, CVMCONV_UNALIGNED_ALLOW);
	cfg.ops = &tag_ops;
	cfg.ops_opaque = t;
	cfg.flags = CVMCONV_DEFER_PUNCH;
	t->e = e;
	assert_int_equal(cvmconv_create(&cfg, &e->c), 0);
	ENV_SHARED(e, size, huge);
	env_private(e, size);
	r = region_desc(GPA_BASE, size, e->private_fd, e->shared_fd, NULL);
	assert_int_equal(fake_kvm_add_region(&e->fake, e->c, &r), 0);
	pattern_fill(e->shared_map, 0, PAGES_OF(size), SEED);
}

static void check_tag(struct conv_env *e, struct tagging *t)
{
	assert_true(t->tagged);
	assert_int_equal(e->fake.live_punches, 0);
	if (!pattern_check(e->shared_map, t->tag_page, SEED ^ 0x7a9))
		fail_msg("page %llu, written right after it turned shared, lost its data",
			 (unsigned long long)t->tag_page);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, GPA_BASE, e->shared_size), 0);
}

/* 4 KiB shared side: CVMCONV_DEFER_RANGES single pages wait, then one
 * guest batch {page 0 -> private, page 72 -> shared}: the first run fills
 * the waiting list, and what it punches must not include page 72, which
 * KVM already made shared for the second run. */
static void test_defer_mixed_batch_4k(void **state)
{
	struct conv_env *e = *state;
	struct tagging t = { .tag_page = 10 + 2 * (CVMCONV_DEFER_RANGES - 1) };
	struct cvmconv_range batch[2];
	uint64_t hc;

	tag_setup(e, &t, REGION_SIZE, false);
	for (uint64_t k = 0; k < CVMCONV_DEFER_RANGES; k++)
		guest_map(e->c, GPA_BASE + (10 + 2 * k) * SZ_4K, SZ_4K, true, 0);
	assert_int_equal(t.tag_page, 72);
	assert_int_equal(stats_of(e->c).punch_pending_bytes, CVMCONV_DEFER_RANGES * SZ_4K);
	batch[0] = (struct cvmconv_range){ GPA_BASE, SZ_4K, 1, 0 };
	batch[1] = (struct cvmconv_range){ GPA_BASE + t.tag_page * SZ_4K, SZ_4K, 0, 0 };
	assert_int_equal(cvmconv_convert_batch(e->c, batch, 2, CVMCONV_BATCH_GUEST, &hc), 0);
	assert_int_equal(hc, 0);
	check_tag(e, &t);
	assert_int_equal(cvmconv_flush(e->c), 0);
	check_tag(e, &t);
	/* every other shared page kept the guest's data */
	for (uint64_t p = 0; p < PAGES_OF(REGION_SIZE); p++)
		if (p != t.tag_page && cvmconv_is_private(e->c, GPA_BASE + p * SZ_4K) == 0 &&
		    !pattern_check(e->shared_map, p, SEED))
			fail_msg("live shared page %llu lost its data", (unsigned long long)p);
}

/* 2 MiB hugetlb shared side: CVMCONV_DEFER_RANGES separate huge pages wait
 * (huge pages 2, 4, ... 64), then a batch {[0, 2 MiB) -> private, the page
 * at 0x405000 -> shared}: the first run finds the waiting list full, and the
 * huge page holding 0x405000, live again in KVM, must not be punched. */
static void test_defer_mixed_batch_huge(void **state)
{
	struct conv_env *e = *state;
	const uint64_t nhp = 2 * CVMCONV_DEFER_RANGES + 2;
	struct tagging t = { .tag_page = 0x405000 / SZ_4K };
	struct cvmconv_range batch[2];

	tag_setup(e, &t, nhp * SZ_2M, true);
	for (uint64_t k = 0; k < CVMCONV_DEFER_RANGES; k++)
		guest_map(e->c, GPA_BASE + (2 + 2 * k) * SZ_2M, SZ_2M, true, 0);
	assert_int_equal(stats_of(e->c).punch_pending_bytes, CVMCONV_DEFER_RANGES * SZ_2M);
	batch[0] = (struct cvmconv_range){ GPA_BASE, SZ_2M, 1, 0 };
	batch[1] = (struct cvmconv_range){ GPA_BASE + 0x405000, SZ_4K, 0, 0 };
	assert_int_equal(cvmconv_convert_batch(e->c, batch, 2, 0, NULL), 0);
	check_tag(e, &t);
	assert_true(hpage_allocated(e->shared_fd, 2 * SZ_2M, SZ_2M));
	assert_int_equal(cvmconv_flush(e->c), 0);
	check_tag(e, &t);
	assert_true(hpage_allocated(e->shared_fd, 2 * SZ_2M, SZ_2M));
	/* what is stale now is gone: huge pages 0 and 4, 6, ... 64 */
	assert_false(hpage_allocated(e->shared_fd, 0, SZ_2M));
	assert_false(hpage_allocated(e->shared_fd, 4 * SZ_2M, SZ_2M));
	assert_int_equal(stats_of(e->c).punch_pending_bytes, 0);
}

/* All CVMCONV_DEFER_RANGES waiting ranges in use on a huge-page side, one
 * of them three huge pages long; a page strictly inside its middle huge page
 * goes live: the range splits around that huge page. What is left on both
 * sides of it must still be punched (by the end of that request, as more
 * than CVMCONV_DEFER_RANGES ranges then wait, or by the flush), and the
 * kernel must hold exactly the live huge page. */
static void test_defer_huge_split_full(void **state)
{
	struct conv_env *e = *state;
	const uint64_t nhp = 2 * CVMCONV_DEFER_RANGES + 4;
	struct tagging t = { .tag_page = PAGES_PER_2M + 7 }; /* in huge page 1 */
	struct cvmconv_stats st;

	tag_setup(e, &t, nhp * SZ_2M, true);
	guest_map(e->c, GPA_BASE, 3 * SZ_2M, true, 0); /* huge pages 0-2: one range */
	for (uint64_t k = 0; k < CVMCONV_DEFER_RANGES - 1; k++)
		guest_map(e->c, GPA_BASE + (4 + 2 * k) * SZ_2M, SZ_2M, true, 0);
	st = stats_of(e->c);
	assert_int_equal(st.punches, 0);
	assert_int_equal(st.punch_pending_bytes, (3 + CVMCONV_DEFER_RANGES - 1) * SZ_2M);
	/* the split */
	guest_map(e->c, GPA_BASE + t.tag_page * SZ_4K, SZ_4K, false, 0);
	check_tag(e, &t);
	assert_int_equal(cvmconv_flush(e->c), 0);
	st = stats_of(e->c);
	assert_int_equal(st.punch_pending_bytes, 0);
	/* huge page 1 is held for its live page; its 511 private pages twice */
	assert_int_equal(st.double_alloc_bytes, (PAGES_PER_2M - 1) * SZ_4K);
	assert_false(hpage_allocated(e->shared_fd, 0, SZ_2M));
	assert_true(hpage_allocated(e->shared_fd, SZ_2M, SZ_2M));
	assert_false(hpage_allocated(e->shared_fd, 2 * SZ_2M, SZ_2M));
	for (uint64_t k = 0; k < CVMCONV_DEFER_RANGES - 1; k++)
		assert_false(hpage_allocated(e->shared_fd, (4 + 2 * k) * SZ_2M, SZ_2M));
	check_tag(e, &t);
}

/* ---- random conversions over two regions, data and accounting checked ---- */

#define NH (8 * PAGES_PER_2M) /* R0: 16 MiB, shared side 2 MiB hugetlb */
#define NS (4 * PAGES_PER_2M) /* R1: 8 MiB after it, shared side shmem */
#define NP (NH + NS)
#define RANDOM_STEPS 1500

struct rnd {
	int sfd[2], pfd[2];
	uint8_t *smap[2], *pmap[2];
	bool priv[NP];
	uint32_t gen[NP]; /* the pattern of the page's live side */
	uint32_t next_gen;
	uint64_t seed;
};

static uint64_t rnd_next(struct rnd *t)
{
	t->seed = t->seed * 6364136223846793005ULL + 1442695040888963407ULL;
	return t->seed >> 33;
}

/* The page as the guest writes it: a new pattern on its live side. */
static void guest_write(struct rnd *t, uint64_t p)
{
	unsigned i = p >= NH;
	uint64_t rel = p - (i ? NH : 0);

	t->gen[p] = ++t->next_gen;
	pattern_fill(t->priv[p] ? t->pmap[i] : t->smap[i], rel, 1, t->gen[p]);
}

static void rnd_check(struct conv_env *e, struct rnd *t, bool flushed)
{
	struct cvmconv_stats st = stats_of(e->c);
	uint64_t alloc = 0, dbl = 0;

	for (uint64_t p = 0; p < NP; p++) {
		unsigned i = p >= NH;
		uint64_t rel = p - (i ? NH : 0);

		if (!pattern_check(t->priv[p] ? t->pmap[i] : t->smap[i], rel, t->gen[p]))
			fail_msg("live %s page %llu lost its data",
				 t->priv[p] ? "private" : "shared", (unsigned long long)p);
		assert_int_equal(cvmconv_is_private(e->c, GPA_BASE + p * SZ_4K), t->priv[p]);
	}
	for (int i = 0; i < 2; i++)
		alloc += fd_allocated_bytes(t->sfd[i]) + fd_allocated_bytes(t->pfd[i]);
	/* every page is allocated on its live side (the guest wrote it); what
	 * the kernel holds beyond that is the double allocation */
	assert_true(alloc >= NP * SZ_4K);
	if (alloc - NP * SZ_4K != st.double_alloc_bytes)
		fail_msg("kernel holds %llu bytes twice, the library counts %llu",
			 (unsigned long long)(alloc - NP * SZ_4K),
			 (unsigned long long)st.double_alloc_bytes);
	if (!flushed)
		return;
	/* after a flush only the minimum is held: the private pages of
	 * shared huge pages that still have a live page */
	for (uint64_t h = 0; h < NH / PAGES_PER_2M; h++) {
		uint64_t priv = 0;

		for (uint64_t q = h * PAGES_PER_2M; q < (h + 1) * PAGES_PER_2M; q++)
			priv += t->priv[q];
		if (priv < PAGES_PER_2M)
			dbl += priv * SZ_4K;
	}
	assert_int_equal(st.punch_pending_bytes, 0);
	assert_int_equal(st.double_alloc_bytes, dbl);
}

static void test_defer_random(void **state)
{
	struct conv_env *e = *state;
	struct rnd *t = calloc(1, sizeof(*t));
	unsigned flushes = 0;

	assert_non_null(t);
	e->extra = t;
	ENV_RESERVE(e, NH / PAGES_PER_2M + HP_MARGIN);
	assert_int_equal(defer_ctx(e, CVMCONV_DEFER_PUNCH), 0);
	/* R0's memfds are e's (teardown closes them); R1's are closed at the
	 * end of this test (after a failed assertion, by process exit) */
	ENV_SHARED(e, NH * SZ_4K, true);
	env_private(e, NH * SZ_4K);
	t->sfd[0] = e->shared_fd;
	t->pfd[0] = e->private_fd;
	t->smap[0] = e->shared_map;
	t->pmap[0] = e->private_map;
	t->sfd[1] = memfd_shmem(NS * SZ_4K);
	t->pfd[1] = test_private_fd(NS * SZ_4K); /* guest_memfd where the host has it */
	assert_true(t->sfd[1] >= 0 && t->pfd[1] >= 0);
	t->smap[1] = map_fd(t->sfd[1], NS * SZ_4K);
	t->pmap[1] = map_fd(t->pfd[1], NS * SZ_4K);
	assert_true(t->smap[1] && t->pmap[1]);
	for (int i = 0; i < 2; i++) {
		struct cvmconv_region r =
			region_desc(GPA_BASE + (i ? NH * SZ_4K : 0), (i ? NS : NH) * SZ_4K,
				    t->pfd[i], t->sfd[i], NULL);

		assert_int_equal(fake_kvm_add_region(&e->fake, e->c, &r), 0);
	}
	t->seed = 0xdefe7ULL;
	for (uint64_t p = 0; p < NP; p++)
		guest_write(t, p);
	rnd_check(e, t, true);

	/* CVMCONV_TEST_QUICK=1 (valgrind): a tenth of the steps */
	const char *quick = getenv("CVMCONV_TEST_QUICK");
	unsigned steps = quick && *quick == '1' ? RANDOM_STEPS / 10 : RANDOM_STEPS;

	for (unsigned step = 0; step < steps; step++) {
		uint64_t kind = rnd_next(t) % 8, p0, n;
		bool to_private = rnd_next(t) & 1;

		if (kind < 4) { /* a few pages */
			n = 1 + rnd_next(t) % 4;
			p0 = rnd_next(t) % (NP - n);
		} else if (kind < 6) { /* up to a huge page and a half, anywhere */
			n = 1 + rnd_next(t) % (3 * PAGES_PER_2M / 2);
			p0 = rnd_next(t) % (NP - n);
		} else if (kind < 7) { /* whole 2 MiB extents */
			n = PAGES_PER_2M * (1 + rnd_next(t) % 3);
			p0 = PAGES_PER_2M *
			     (rnd_next(t) % (NP / PAGES_PER_2M - n / PAGES_PER_2M + 1));
		} else { /* a large stretch */
			n = NP / 2 + rnd_next(t) % (NP / 2);
			p0 = rnd_next(t) % (NP - n + 1);
		}
		guest_map(e->c, GPA_BASE + p0 * SZ_4K, n * SZ_4K, to_private, 0);
		for (uint64_t p = p0; p < p0 + n; p++) {
			if (t->priv[p] == to_private)
				continue;
			t->priv[p] = to_private;
			guest_write(t, p);
		}
		if (rnd_next(t) % 8 == 0) {
			assert_int_equal(cvmconv_flush(e->c), 0);
			flushes++;
			rnd_check(e, t, true);
		} else {
			rnd_check(e, t, false);
		}
	}
	assert_int_equal(cvmconv_flush(e->c), 0);
	rnd_check(e, t, true);
	printf("test_defer_random: %u steps, %u flushes, %llu punches\n", steps, flushes + 1,
	       (unsigned long long)stats_of(e->c).punches);
	munmap(t->smap[1], NS * SZ_4K);
	munmap(t->pmap[1], NS * SZ_4K);
	close(t->sfd[1]);
	close(t->pfd[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defer_flag_checked, conv_env_setup,
						conv_env_teardown),
		cmocka_unit_test_setup_teardown(test_defer_huge_roundtrip, conv_env_setup,
						conv_env_teardown),
		cmocka_unit_test_setup_teardown(test_defer_huge_merged, conv_env_setup,
						conv_env_teardown),
		cmocka_unit_test_setup_teardown(test_no_defer_punches_at_once, conv_env_setup,
						conv_env_teardown),
		cmocka_unit_test_setup_teardown(test_defer_4k_limit_merge_live, conv_env_setup,
						conv_env_teardown),
		cmocka_unit_test_setup_teardown(test_defer_mixed_batch_4k, conv_env_setup,
						conv_env_teardown),
		cmocka_unit_test_setup_teardown(test_defer_mixed_batch_huge, conv_env_setup,
						conv_env_teardown),
		cmocka_unit_test_setup_teardown(test_defer_huge_split_full, conv_env_setup,
						conv_env_teardown),
		cmocka_unit_test_setup_teardown(test_defer_random, conv_env_setup,
						conv_env_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
