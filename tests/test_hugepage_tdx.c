/* SPDX-License-Identifier: MIT */
/*
 * TDX-style conversion of 1 GiB over a shared side backed by real 2 MiB
 * hugetlb pages. A TDX guest converts with one MapGPA over the whole range;
 * KVM splits it into exits of at most 2 MiB, each ending at the next 2 MiB
 * GPA boundary, with no page-size hint. The library must free (punch) a
 * shared huge page exactly at the exit that makes its last page private —
 * for an unaligned start that is the *next* exit, and for the first huge
 * page only when the guest converts its first page many exits later — and
 * its double-allocation figure must match what the kernel still holds.
 *
 * Kernel truth: st_blocks of the shared memfd, HugePages_Free in
 * /proc/meminfo, and an exact per-huge-page probe (hpage_allocated()).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <linux/kvm.h>
#include <linux/kvm_para.h>

#include "conv_util.h"

#define GPA_BASE (4 * SZ_1G)
#define REGION_SIZE (SZ_1G + 2 * SZ_2M) /* 1 GiB + 4 MiB */
#define NHP (REGION_SIZE / SZ_2M)	/* 514 */
#define HP_MARGIN 6			/* probes and slack */

struct tdx {
	struct kvm_run *run;
	uint64_t blocks0; /* st_blocks bytes after touching every huge page */
	long free0;	  /* HugePages_Free then */
	unsigned exits;
};

static void tdx_setup(struct conv_env *e, struct tdx *t)
{
	struct cvmconv_region r;

	assert_true(e->reserved); /* the test called ENV_RESERVE */
	env_ctx(e, CVMCONV_UNALIGNED_ALLOW);
	ENV_SHARED(e, REGION_SIZE, true);
	env_private(e, REGION_SIZE);
	r = region_desc(GPA_BASE, REGION_SIZE, e->private_fd, e->shared_fd, NULL);
	assert_int_equal(fake_kvm_add_region(&e->fake, e->c, &r), 0);

	/* the guest has touched all of its memory: every shared huge page is
	 * allocated by the kernel (one byte written per 2 MiB) */
	for (uint64_t h = 0; h < NHP; h++)
		((volatile uint8_t *)e->shared_map)[h * SZ_2M] = (uint8_t)(h | 1);
	t->blocks0 = fd_allocated_bytes(e->shared_fd);
	assert_int_equal(t->blocks0, NHP * SZ_2M);
	t->free0 = hugepages_free();
	assert_true(t->free0 >= 0);
	assert_int_equal(stats_of(e->c).double_alloc_bytes, 0);

	t->run = calloc(1, sizeof(*t->run));
	assert_non_null(t->run);
}

/* One KVM_EXIT_HYPERCALL(KVM_HC_MAP_GPA_RANGE) as KVM delivers a TDX
 * MapGPA chunk: no page-size hint, ret preset to 0. */
static void tdx_exit(struct conv_env *e, struct tdx *t, uint64_t gpa, uint64_t size)
{
	struct kvm_run *run = t->run;

	memset(run, 0, sizeof(*run));
	run->exit_reason = KVM_EXIT_HYPERCALL;
	run->hypercall.nr = KVM_HC_MAP_GPA_RANGE;
	run->hypercall.args[0] = gpa;
	run->hypercall.args[1] = size / SZ_4K;
	run->hypercall.args[2] = CVMCONV_MAP_GPA_RANGE_ENCRYPTED;
	run->hypercall.longmode = 1;
	run->hypercall.ret = 0x5a5a; /* the library must always write it */
	assert_int_equal(cvmconv_handle_exit(e->c, run), 1);
	assert_int_equal(run->hypercall.ret, 0);
	t->exits++;
}

/* The kernel's and the library's view after an exit. */
static void check_freed(struct conv_env *e, struct tdx *t, uint64_t freed, uint64_t dbl_pages,
			uint64_t punches, uint64_t mixed)
{
	uint64_t now = fd_allocated_bytes(e->shared_fd);
	struct cvmconv_stats st = stats_of(e->c);

	assert_true(now <= t->blocks0);
	assert_int_equal((t->blocks0 - now) % SZ_2M, 0);
	if ((t->blocks0 - now) / SZ_2M != freed)
		fail_msg("after exit %u: kernel freed %llu huge pages, expected %llu", t->exits,
			 (unsigned long long)((t->blocks0 - now) / SZ_2M),
			 (unsigned long long)freed);
	assert_int_equal(hugepages_free() - t->free0, (long)freed);
	assert_int_equal(st.double_alloc_bytes, dbl_pages * SZ_4K);
	assert_true(st.double_alloc_peak_bytes >= st.double_alloc_bytes);
	/* only the shared side is ever stale here, one punch per freed page */
	assert_int_equal(st.punches, punches);
	assert_int_equal(st.punch_failures, 0);
	assert_int_equal(st.mixed_extents, mixed);
	assert_int_equal(st.exits, t->exits);
	assert_int_equal(st.rejected, 0);
}

static void test_tdx_unaligned_mapgpa(void **state)
{
	struct conv_env *e = *state;
	struct tdx *t = calloc(1, sizeof(*t));
	uint64_t start, end, gpa, bytes = 0;
	unsigned i = 0;

	assert_non_null(t);
	e->extra = t;
	ENV_RESERVE(e, NHP + HP_MARGIN);
	tdx_setup(e, t);

	/*
	 * MapGPA(private) of 1 GiB from region start + 4 KiB. KVM's chunks:
	 *   exit 0:        [base + 4K, base + 2M)       huge page 0, pages 1..511
	 *   exit k (1..511): [base + k*2M, base + (k+1)*2M) all of huge page k
	 *   exit 512:      [base + 1G, base + 1G + 4K)  huge page 512, page 0
	 * So after exit i:
	 *   huge page 0 is not freed (its page 0 is still shared);
	 *   huge page k (1 <= k <= 511) is freed exactly at exit k, not before:
	 *     freed(i) = min(i, 511);
	 *   huge page 512 is not freed (pages 1..511 still shared);
	 *   double allocation = private pages in held huge pages:
	 *     511 (huge page 0) until exit 511, 511 + 1 (huge page 512) after
	 *     exit 512;
	 *   mixed extents: huge page 0 from exit 0, plus 512 at exit 512.
	 */
	start = GPA_BASE + SZ_4K;
	end = start + SZ_1G;
	for (gpa = start; gpa < end; i++) {
		uint64_t next = (gpa / SZ_2M + 1) * SZ_2M;
		uint64_t chunk_end = next < end ? next : end;
		uint64_t freed = i < 511 ? i : 511;
		uint64_t dbl = 511 + (i == 512 ? 1 : 0);

		tdx_exit(e, t, gpa, chunk_end - gpa);
		bytes += chunk_end - gpa;
		check_freed(e, t, freed, dbl, freed, i == 512 ? 2 : 1);
		/* which page was freed, exactly */
		if (i >= 1 && i <= 511)
			assert_false(hpage_allocated(e->shared_fd, (uint64_t)i * SZ_2M, SZ_2M));
		if (i + 1 < NHP)
			assert_true(
				hpage_allocated(e->shared_fd, (uint64_t)(i + 1) * SZ_2M, SZ_2M));
		assert_true(hpage_allocated(e->shared_fd, 0, SZ_2M));
		assert_int_equal(stats_of(e->c).attr_updates, i + 1);
		gpa = chunk_end;
	}
	assert_int_equal(i, 513);
	assert_int_equal(stats_of(e->c).to_private_bytes, bytes);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, GPA_BASE, REGION_SIZE), 0);
	assert_int_equal(cvmconv_is_private(e->c, GPA_BASE), 0);
	assert_int_equal(cvmconv_is_private(e->c, GPA_BASE + SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e->c, end - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e->c, end), 0);

	/* Many exits later the guest converts the page the unaligned start
	 * skipped: now huge page 0 is all private and freed at once. */
	tdx_exit(e, t, GPA_BASE, SZ_4K);
	check_freed(e, t, 512, 1, 512, 1);
	assert_false(hpage_allocated(e->shared_fd, 0, SZ_2M));
	assert_true(hpage_allocated(e->shared_fd, 512 * SZ_2M, SZ_2M));
	assert_int_equal(stats_of(e->c).attr_updates, 514);
	assert_int_equal(stats_of(e->c).to_private_bytes, bytes + SZ_4K);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, GPA_BASE, REGION_SIZE), 0);

	/* Requests already in the requested state cost no ioctl and no punch. */
	tdx_exit(e, t, GPA_BASE + SZ_2M, SZ_2M);
	check_freed(e, t, 512, 1, 512, 1);
	assert_int_equal(stats_of(e->c).attr_updates, 514);
}

static void test_tdx_aligned_mapgpa(void **state)
{
	struct conv_env *e = *state;
	struct tdx *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	e->extra = t;
	ENV_RESERVE(e, NHP + HP_MARGIN);
	tdx_setup(e, t);

	/* Aligned MapGPA of 1 GiB: 512 exits of exactly one huge page each;
	 * exit i frees huge page i at once, nothing is ever double allocated,
	 * nothing is ever mixed. */
	for (unsigned i = 0; i < 512; i++) {
		tdx_exit(e, t, GPA_BASE + (uint64_t)i * SZ_2M, SZ_2M);
		check_freed(e, t, i + 1, 0, i + 1, 0);
		assert_false(hpage_allocated(e->shared_fd, (uint64_t)i * SZ_2M, SZ_2M));
		assert_true(hpage_allocated(e->shared_fd, (uint64_t)(i + 1) * SZ_2M, SZ_2M));
		assert_int_equal(stats_of(e->c).attr_updates, i + 1);
		assert_int_equal(stats_of(e->c).double_alloc_peak_bytes, 0);
	}
	assert_int_equal(stats_of(e->c).to_private_bytes, SZ_1G);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, GPA_BASE, REGION_SIZE), 0);
	/* the last 4 MiB stayed shared and allocated */
	assert_int_equal(fd_allocated_bytes(e->shared_fd), 2 * SZ_2M);
}

/* Adjacent huge pages that become stale in the same request are punched
 * with one call (SEV-SNP sends merged 2 MiB entries as one exit). */
static void test_merged_punches(void **state)
{
	struct conv_env *e = *state;
	struct tdx *t = calloc(1, sizeof(*t));
	uint64_t punches;

	assert_non_null(t);
	e->extra = t;
	ENV_RESERVE(e, NHP + HP_MARGIN);
	tdx_setup(e, t);

	/* 4 huge pages in one exit with the 2M hint: one punch, 4 freed */
	guest_map(e->c, GPA_BASE, 4 * SZ_2M, true, CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M);
	t->exits++;
	check_freed(e, t, 4, 0, 1, 0);
	assert_int_equal(e->fake.calls[FAKE_CALL_PUNCH], 1);

	/* huge pages 10 and 11 left mixed, the shared pages being the last of
	 * 10 and the first of 11; then one 2-page request across the 2 MiB
	 * boundary (one run) completes both: one punch frees both */
	guest_map(e->c, GPA_BASE + 10 * SZ_2M, SZ_2M - SZ_4K, true, 0);
	guest_map(e->c, GPA_BASE + 11 * SZ_2M + SZ_4K, SZ_2M - SZ_4K, true, 0);
	t->exits += 2;
	check_freed(e, t, 4, 2 * 511, 1, 2);
	guest_map(e->c, GPA_BASE + 11 * SZ_2M - SZ_4K, 2 * SZ_4K, true, 0);
	t->exits++;
	check_freed(e, t, 6, 0, 2, 0);
	assert_false(hpage_allocated(e->shared_fd, 10 * SZ_2M, SZ_2M));
	assert_false(hpage_allocated(e->shared_fd, 11 * SZ_2M, SZ_2M));
	assert_true(hpage_allocated(e->shared_fd, 12 * SZ_2M, SZ_2M));
	punches = e->fake.calls[FAKE_CALL_PUNCH];
	/* (the probes above punch directly, not through the library) */
	assert_int_equal(punches, 2);
	assert_int_equal(stats_of(e->c).attr_updates, 4);
}

static int tdx_teardown(void **state)
{
	struct conv_env *e = *state;

	if (e && e->extra)
		free(((struct tdx *)e->extra)->run);
	return conv_env_teardown(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tdx_unaligned_mapgpa, conv_env_setup,
						tdx_teardown),
		cmocka_unit_test_setup_teardown(test_tdx_aligned_mapgpa, conv_env_setup,
						tdx_teardown),
		cmocka_unit_test_setup_teardown(test_merged_punches, conv_env_setup, tdx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
