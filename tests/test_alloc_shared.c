/* SPDX-License-Identifier: MIT */
/*
 * CVMCONV_REGION_ALLOC_SHARED on a real hugetlb pool that is run dry.
 *
 * The shared side is an MFD_HUGETLB memfd of 4 huge pages, the private side
 * guest_memfd where the host has one. The region is made private first: the
 * library punches the shared huge pages, and a punch gives back their
 * reservation too (fs/hugetlbfs/inode.c: hugetlbfs_punch_hole removes the
 * range from the inode's reserve map), so the memfd's own mmap() no longer
 * holds pages for them. A "hog" memfd then takes every free huge page of the
 * pool but a few, as another VM on the host would.
 *
 * With the flag a conversion to shared allocates its huge pages at once or
 * fails there: -ENOSPC to the VMM, -KVM_EFAULT to the guest, attributes and
 * tracker rolled back, what it allocated punched again (HugePages_Free and
 * st_blocks as before), live data untouched, shared_alloc_failures counted.
 * Without the flag the same conversion succeeds and the failure comes at the
 * first touch: a SIGBUS in the thread that writes the page (shown in a
 * child process). And the pool raced by another process while the guest
 * converts back and forth.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "conv_util.h"
#include "pool_hog.h"

#define GPA_BASE (4 * SZ_1G)
#define NHP 4u
#define RSIZE (NHP * SZ_2M)
#define HC(err) ((uint64_t) - (int64_t)(err))

static int hog_fd = -1;

static int teardown(void **state)
{
	if (hog_fd >= 0)
		close(hog_fd);
	hog_fd = -1;
	return conv_env_teardown(state);
}

/* Take free huge pages until only @leave remain (HugePages_Free). */
static void pool_leave(unsigned long leave)
{
	long free_now = hugepages_free();
	static uint64_t hog_pages;

	assert_true(free_now >= 0);
	if (hog_fd < 0) {
		hog_fd = memfd_huge2m(64 * SZ_1G);
		assert_true(hog_fd >= 0);
		hog_pages = 0;
	}
	while ((unsigned long)free_now > leave) {
		assert_int_equal(fallocate(hog_fd, 0, (off_t)(hog_pages * SZ_2M), (off_t)SZ_2M), 0);
		hog_pages++;
		free_now = hugepages_free();
	}
	while ((unsigned long)free_now < leave && hog_pages) {
		hog_pages--;
		assert_int_equal(fallocate(hog_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					   (off_t)(hog_pages * SZ_2M), (off_t)SZ_2M),
				 0);
		free_now = hugepages_free();
	}
	assert_int_equal(free_now, (long)leave);
}

/* The region, made private (its shared huge pages punched). */
static void setup_region(struct conv_env *e, bool alloc_shared)
{
	struct cvmconv_region r;

	ENV_RESERVE(e, NHP + 4);
	env_ctx(e, CVMCONV_UNALIGNED_ALLOW);
	ENV_SHARED(e, RSIZE, true);
	env_private(e, RSIZE);
	r = region_desc(GPA_BASE, RSIZE, e->private_fd, e->shared_fd, NULL);
	r.flags = alloc_shared ? CVMCONV_REGION_ALLOC_SHARED : 0;
	assert_int_equal(fake_kvm_add_region(&e->fake, e->c, &r), 0);
	memset(e->shared_map, 0x11, RSIZE); /* every shared huge page allocated */
	assert_int_equal(fd_allocated_bytes(e->shared_fd), RSIZE);
	guest_map(e->c, GPA_BASE, RSIZE, true, 0);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), 0);
}

static uint64_t gpa_hp(unsigned h)
{
	return GPA_BASE + (uint64_t)h * SZ_2M;
}

static void expect_state(struct conv_env *e, uint64_t gpa, uint64_t size, bool priv)
{
	for (uint64_t a = gpa; a < gpa + size; a += SZ_4K) {
		assert_int_equal(cvmconv_is_private(e->c, a), priv);
		assert_int_equal(fake_kvm_is_private(&e->fake, a), priv);
	}
}

static void test_alloc_shared_needs_fd(void **state)
{
	struct conv_env *e = *state;
	struct cvmconv_region r;
	void *hva;

	env_ctx(e, CVMCONV_UNALIGNED_ALLOW);
	hva = mmap(NULL, SZ_2M, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(hva != MAP_FAILED);
	r = region_desc(GPA_BASE, SZ_2M, -1, -1, hva);
	r.flags = CVMCONV_REGION_ALLOC_SHARED | CVMCONV_REGION_ATTRS_ONLY;
	assert_int_equal(cvmconv_add_region(e->c, &r), -EINVAL);
	r.shared_fd = memfd_shmem(SZ_2M);
	r.shared_hva = NULL;
	assert_true(r.shared_fd >= 0);
	assert_int_equal(cvmconv_add_region(e->c, &r), 0);
	close(r.shared_fd);
	munmap(hva, SZ_2M);
}

/* The allocation happens at the conversion: st_blocks before any touch. */
static void test_alloc_shared_allocates_at_conversion(void **state)
{
	struct conv_env *e = *state;

	setup_region(e, true);
	guest_map(e->c, gpa_hp(1), SZ_2M, false, CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), SZ_2M);
	/* a single 4 KiB page allocates its whole huge page */
	guest_map(e->c, gpa_hp(3) + 7 * SZ_4K, SZ_4K, false, 0);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), 2 * SZ_2M);
	/* the private pages of huge page 3 are held twice now, as the
	 * kernel says: its shared huge page is there */
	assert_int_equal(stats_of(e->c).double_alloc_bytes, SZ_2M - SZ_4K);
	assert_int_equal(stats_of(e->c).shared_alloc_failures, 0);
}

static void test_alloc_shared_empty_pool(void **state)
{
	struct conv_env *e = *state;
	struct cvmconv_stats before, after;
	uint64_t ret = 0;
	long free_before;

	setup_region(e, true);
	pool_leave(2);
	/* huge page 0: the pool has it */
	guest_map(e->c, gpa_hp(0), SZ_2M, false, CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M);
	pattern_fill(e->shared_map, 0, PAGES_PER_2M, 7);
	assert_int_equal(hugepages_free(), 1);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), SZ_2M);

	/* huge pages 1..3 in one request: hugetlbfs gets 1 (the last free
	 * page) and fails at 2 */
	before = stats_of(e->c);
	free_before = hugepages_free();
	assert_int_equal(cvmconv_map_gpa_range(e->c, gpa_hp(1), 3 * PAGES_PER_2M, 0, &ret),
			 -ENOSPC);
	assert_int_equal(ret, HC(CVMCONV_KVM_EFAULT));
	after = stats_of(e->c);
	expect_state(e, gpa_hp(1), 3 * SZ_2M, true);
	assert_int_equal(hugepages_free(), free_before); /* huge page 1 given back */
	assert_int_equal(fd_allocated_bytes(e->shared_fd), SZ_2M);
	assert_int_equal(after.shared_alloc_failures, before.shared_alloc_failures + 1);
	/* the allocation comes first: nothing reached KVM (it used to be the
	 * update and a rollback, which can fail under the same pressure) */
	assert_int_equal(after.attr_updates, before.attr_updates);
	assert_int_equal(after.to_shared_bytes, before.to_shared_bytes);
	assert_int_equal(after.double_alloc_bytes, before.double_alloc_bytes);
	assert_int_equal(after.punch_pending_bytes, 0);
	assert_int_equal(after.broken, 0);
	for (uint64_t p = 0; p < PAGES_PER_2M; p++)
		assert_true(pattern_check(e->shared_map, p, 7));

	/* one 4 KiB page of huge page 2 takes the last free huge page */
	guest_map(e->c, gpa_hp(2) + 5 * SZ_4K, SZ_4K, false, 0);
	assert_int_equal(hugepages_free(), 0);
	pattern_fill(e->shared_map, 2 * PAGES_PER_2M + 5, 1, 9);
	/* a second page of it needs nothing new: it succeeds on an empty pool */
	guest_map(e->c, gpa_hp(2) + 6 * SZ_4K, SZ_4K, false, 0);
	/* one of huge page 3 cannot be had */
	assert_int_equal(cvmconv_map_gpa_range(e->c, gpa_hp(3), 1, 0, &ret), -ENOSPC);
	assert_int_equal(ret, HC(CVMCONV_KVM_EFAULT));
	expect_state(e, gpa_hp(3), SZ_2M, true);
	assert_true(pattern_check(e->shared_map, 2 * PAGES_PER_2M + 5, 9));
	assert_int_equal(fd_allocated_bytes(e->shared_fd), 2 * SZ_2M);
	/* private pages of the two shared huge pages: 0 in huge page 0, 510
	 * in huge page 2 */
	assert_int_equal(stats_of(e->c).double_alloc_bytes, (PAGES_PER_2M - 2) * SZ_4K);
	assert_int_equal(stats_of(e->c).shared_alloc_failures, 2);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, GPA_BASE, RSIZE), 0);
	/* the pool back: the same request goes through */
	pool_leave(1);
	guest_map(e->c, gpa_hp(3), SZ_4K, false, 0);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), 3 * SZ_2M);
}

/* The attribute update fails after the shared side was allocated: what
 * was allocated for the pages (private again) is punched, the pool gets its
 * pages back, nothing is counted as an allocation failure. */
static void test_update_fails_after_allocation(void **state)
{
	struct conv_env *e = *state;
	struct cvmconv_stats before;
	uint64_t ret = 0;
	long free_before;

	setup_region(e, true);
	free_before = hugepages_free();
	before = stats_of(e->c);
	fake_kvm_fail_nth(&e->fake, FAKE_CALL_ATTR, 1, ENOMEM);
	assert_int_equal(cvmconv_map_gpa_range(e->c, gpa_hp(1), 2 * PAGES_PER_2M, 0, &ret),
			 -ENOMEM);
	assert_int_equal(ret, HC(CVMCONV_KVM_EFAULT));
	expect_state(e, gpa_hp(1), 2 * SZ_2M, true);
	assert_int_equal(hugepages_free(), free_before);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), 0);
	assert_int_equal(stats_of(e->c).shared_alloc_failures, before.shared_alloc_failures);
	assert_int_equal(stats_of(e->c).punch_pending_bytes, 0);
	assert_int_equal(stats_of(e->c).broken, 0);
	/* the kernel willing: allocated and converted */
	guest_map(e->c, gpa_hp(1), 2 * SZ_2M, false, CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), 2 * SZ_2M);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, GPA_BASE, RSIZE), 0);
}

/* The same empty pool without the flag: the conversion succeeds, and the
 * first write of the page kills the writer with SIGBUS. */
static void test_without_flag_sigbus_at_touch(void **state)
{
	struct conv_env *e = *state;
	int status;
	pid_t pid;

	setup_region(e, false);
	pool_leave(0);
	guest_map(e->c, gpa_hp(1), SZ_2M, false, CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M);
	assert_int_equal(fd_allocated_bytes(e->shared_fd), 0);
	assert_int_equal(stats_of(e->c).shared_alloc_failures, 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGBUS, SIG_DFL);			/* not CMocka's handler */
		((volatile uint8_t *)e->shared_map)[SZ_2M] = 1; /* a VMM thread's write */
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	printf("without CVMCONV_REGION_ALLOC_SHARED: the conversion succeeded, the first "
	       "write of the page %s\n",
	       WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "went through");
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS);
}

/* Another process races for the pool (tools/pool_hog.c: it grabs every
 * free huge page for 2 ms, gives all back for 2 ms, again) while the guest
 * converts pieces of the four huge pages back and forth. Each conversion to
 * shared either allocates its huge page or is refused whole (-ENOSPC,
 * -KVM_EFAULT, counted, nothing changed); a page that turned shared can be
 * written at once, whatever the neighbour does; no data is lost; the
 * shared memfd holds exactly the huge pages with a shared page in them. */
static void test_pool_raced_by_another_process(void **state)
{
	struct conv_env *e = *state;
	struct pool_hog hog = { 0 };
	bool priv[NHP * PAGES_PER_2M];
	uint8_t seed[NHP * PAGES_PER_2M];
	uint64_t rng = 0x9E3779B97F4A7C15ULL, ok = 0, refused = 0;
	long rounds, peak = 0;

	setup_region(e, true);
	for (unsigned p = 0; p < NHP * PAGES_PER_2M; p++)
		priv[p] = true;
	assert_int_equal(pool_hog_start(&hog), 0);
	assert_int_equal(pool_hog_race(&hog, 2, 2), 0);
	for (unsigned step = 0; step < 3000; step++) {
		unsigned h, p0, n, held = 0;
		bool to_private;
		uint64_t ret = 1;
		int r;

		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		h = (unsigned)(rng % NHP);
		to_private = (rng >> 8) & 1;
		p0 = h * PAGES_PER_2M;
		n = PAGES_PER_2M;
		if ((rng >> 9) & 1) {
			p0 += (unsigned)((rng >> 16) % PAGES_PER_2M);
			n = 1 + (unsigned)((rng >> 32) % 8);
			if (p0 + n > (h + 1) * PAGES_PER_2M)
				n = (h + 1) * PAGES_PER_2M - p0;
		}
		r = cvmconv_map_gpa_range(e->c, GPA_BASE + (uint64_t)p0 * SZ_4K, n,
					  to_private ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0, &ret);
		if (r == -ENOSPC) {
			assert_false(to_private);
			assert_int_equal(ret, HC(CVMCONV_KVM_EFAULT));
			refused++;
		} else {
			assert_int_equal(r, 0);
			assert_int_equal(ret, 0);
			ok++;
			for (unsigned p = p0; p < p0 + n; p++) {
				if (!to_private && priv[p]) {
					/* allocated at the conversion: no SIGBUS */
					seed[p] = (uint8_t)(step | 1);
					pattern_fill(e->shared_map, p, 1, seed[p]);
				}
				priv[p] = to_private;
			}
		}
		for (unsigned p = 0; p < NHP * PAGES_PER_2M; p++) {
			assert_int_equal(cvmconv_is_private(e->c, GPA_BASE + (uint64_t)p * SZ_4K),
					 priv[p]);
			if (!priv[p] && p % 37 == step % 37)
				assert_true(pattern_check(e->shared_map, p, seed[p]));
		}
		for (unsigned k = 0; k < NHP; k++) {
			bool any = false;

			for (unsigned p = k * PAGES_PER_2M; p < (k + 1) * PAGES_PER_2M; p++)
				any |= !priv[p];
			held += any;
		}
		assert_int_equal(fd_allocated_bytes(e->shared_fd), (uint64_t)held * SZ_2M);
	}
	rounds = pool_hog_calm(&hog, &peak);
	pool_hog_stop(&hog);
	for (unsigned p = 0; p < NHP * PAGES_PER_2M; p++)
		if (!priv[p])
			assert_true(pattern_check(e->shared_map, p, seed[p]));
	assert_int_equal(stats_of(e->c).shared_alloc_failures, refused);
	assert_int_equal(stats_of(e->c).broken, 0);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, GPA_BASE, RSIZE), 0);
	printf("pool raced by another process (%ld rounds, up to %ld huge pages): %llu "
	       "conversions done, %llu refused with -ENOSPC / -KVM_EFAULT, no page lost\n",
	       rounds, peak, (unsigned long long)ok, (unsigned long long)refused);
	assert_true(refused > 0); /* the race did bite */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_alloc_shared_needs_fd, conv_env_setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_alloc_shared_allocates_at_conversion,
						conv_env_setup, teardown),
		cmocka_unit_test_setup_teardown(test_alloc_shared_empty_pool, conv_env_setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_update_fails_after_allocation, conv_env_setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_without_flag_sigbus_at_touch, conv_env_setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pool_raced_by_another_process, conv_env_setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
