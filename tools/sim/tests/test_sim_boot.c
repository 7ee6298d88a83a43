/* SPDX-License-Identifier: MIT */
/*
 * End to end: a 10 GiB, 4-vCPU TDX guest boots through cvmconv over a real
 * MFD_HUGETLB shared memfd (2 MiB pages) and a shmem private memfd. The RFC
 * guest ends boot with no double allocation; the legacy guest does not. Every
 * count is derived by hand below from the guest model's documented placement
 * (guest/README.md, include/cvmconv/guest.h) and checked against the
 * library's figures and the kernel's (st_blocks, HugePages_Free).
 *
 * Why 10 GiB and TDX:
 *  - TDX converts no per-CPU pages at boot and splits a MapGPA into 2 MiB
 *    exits counted from the start of the range: the counts stay small.
 *  - From 2.75 GiB on, q35 puts 2 GiB below 4 GiB and the memmap at the top
 *    of high RAM, so the legacy boot SWIOTLB pool lands right under the
 *    firmware area at an address that is not 2 MiB aligned. (In a 1 or
 *    2 GiB guest the pool lands under the memmap, 2 MiB aligned.)
 *  - Above ~9.3 GiB the DMA atomic pools (128 KiB per GiB of managed
 *    memory) exceed 1 MiB, so each is one whole 2 MiB block. Below that
 *    they are converted in 128 KiB..1 MiB chunks and leave mixed extents in
 *    RFC mode too (see docs/rfc-reproduction.md).
 *
 * Layout (layout.c, model.c): RAM [0, 2G) and [4G, 12G). Reserved: the first
 * MiB, the kernel [16M, 64M), firmware [0x7e8ef000, 2G) (0x1711000 bytes),
 * the memmap 80 sections x 2 MiB = 160 MiB at [12G - 160M, 12G).
 *
 * Legacy guest:
 *  - SWIOTLB: 6 % of 10 GiB = 614.4 MiB, rounded up to a power of two of
 *    slots: 1 GiB, placed top-down below 4 GiB with 4 KiB alignment, under
 *    the firmware: [0x3e8ef000, 0x7e8ef000). One conversion of 262144
 *    pages; TDX: 512 exits of 2 MiB, each straddling two 2 MiB extents.
 *    It touches the extents 0x3e800000 .. 0x7e800000: 513 huge pages; the
 *    first holds 0xef = 239 private pages below the pool, the last 273
 *    private pages above it (the firmware's).
 *  - Atomic pools (kernel, DMA, DMA32): one order-9 block each, converted
 *    whole, 2 MiB aligned ([4G, 4G+2M), [2M, 4M), [64M, 66M)): 3 exits,
 *    3 huge pages, no private page in them.
 *  - virtio-rng's 8-entry vring (262 bytes): an order-0 buddy page from
 *    ZONE_NORMAL, the first page of the 2 MiB buddy left over by the kernel
 *    pool's split, 0x100200000: 1 page converted, 1 exit, 1 huge page
 *    with 511 private pages.
 *  => conversions 5, exits 516, unaligned (checker) 2 (the pool's start, the
 *     vring's size); huge pages 513 + 3 + 1 = 517; shared pages
 *     262144 + 3 x 512 + 1 = 263681; double allocation
 *     517 x 512 - 263681 = 1023 pages = 239 + 273 + 511 = 4190208 bytes;
 *     mixed extents 3. Peak: during the pool's exits each chunk completes
 *     one extent and opens the next, so at most 239 + 273 = 512 pages are
 *     double; the vring page adds 511 at the end: peak = final = 1023 pages.
 *  - Host calls: 2 attribute updates at setup (one per region, memory
 *    starts private) and one per exit (every page of each exit changes):
 *    516. The private side (4 KiB shmem) is punched once per exit: 516. The
 *    shared side is never punched: nothing converts back to private.
 *
 * RFC guest:
 *  - SWIOTLB: 8 % of 10 GiB = 819.2 MiB -> 1 GiB, 2 MiB aligned under the
 *    firmware: [0x3e800000, 0x7e800000): 512 exits of whole extents.
 *  - The same three atomic pools: 3 exits. The vring comes from SWIOTLB:
 *    no conversion.
 *  => conversions 4, exits 515, unaligned 0, huge pages 515, shared pages
 *     515 x 512 = 263680, double allocation 0 (peak 0), mixed extents 0,
 *     attribute updates 515 (+2 at setup), punches 515.
 *
 * The QEMU-like host sees the same exits; boot only converts to shared, so
 * its kernel figures are the same (its to-private discard rule never
 * comes into play), with one guest_memfd discard per exit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hugepool.h"
#include "sim.h"

#define GiB (1ULL << 30)
#define MiB (1ULL << 20)
#define HUGE_NEEDED 517 /* the legacy run's huge pages, derived above */

static const char *skip_reason;
static char skip_buf[256];

#define SKIP_IF_NO_HUGEPAGES()                                                    \
	do {                                                                      \
		if (skip_reason) {                                                \
			fprintf(stderr, "SKIP: %s: %s\n", __func__, skip_reason); \
			skip();                                                   \
		}                                                                 \
	} while (0)

static int group_setup(void **state)
{
	(void)state;
	if (hugepool_reserve(2 * MiB, HUGE_NEEDED, skip_buf, sizeof(skip_buf)))
		skip_reason = skip_buf;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	hugepool_restore();
	return 0;
}

static void boot_scenario(struct sim_scenario *sc, enum sim_guest g, enum sim_host h)
{
	sim_scenario_defaults(sc);
	sc->ram = 10 * GiB;
	sc->cpus = 4;
	sc->seed = 1;
	sc->guest = g;
	sc->platform = CVMG_PLATFORM_TDX;
	sc->host = h;
	sc->nphases = 0; /* boot only */
	sc->workload = "boot";
	sc->shared_huge = true;
}

static void run_checked(const struct sim_scenario *sc, struct sim_result *r)
{
	char why[256];
	long free_before = sim_hugepages_free();
	int ret = sim_run(sc, r, why, sizeof(why));

	if (ret)
		fail_msg("sim_run: %d: %s", ret, why);
	/* the memfds are closed: every huge page is back */
	assert_int_equal(sim_hugepages_free(), free_before);
	assert_false(r->terminated);
	assert_int_equal(r->first_error, 0);
	assert_int_equal(r->host_errors, 0);
	assert_int_equal(r->attr_refused, 0);
	assert_int_equal(r->attr_setup_calls, 2);
	assert_true(r->have_kernel);
	assert_int_equal(r->guest_bytes, 10 * GiB);
}

/* The kernel's numbers: st_blocks of the shared memfd, the drop of
 * HugePages_Free, and the double allocation both give. */
static void check_kernel(const struct sim_result *r, uint64_t hugepages, uint64_t shared_pages,
			 uint64_t da_bytes)
{
	assert_int_equal(r->hugepages_used, (int64_t)hugepages);
	assert_int_equal(r->shared_alloc_bytes, hugepages * 2 * MiB);
	assert_int_equal(r->live_shared_bytes, shared_pages * 4096);
	assert_int_equal(r->kernel_da, da_bytes);
	assert_int_equal(r->kernel_da_hpfree, (int64_t)da_bytes);
	assert_int_equal(r->private_alloc_bytes, 0); /* never touched */
}

static void test_legacy_boot_double_allocates(void **state)
{
	struct sim_scenario sc;
	struct sim_result r;

	(void)state;
	SKIP_IF_NO_HUGEPAGES();
	boot_scenario(&sc, SIM_GUEST_LEGACY, SIM_HOST_CVMCONV);
	run_checked(&sc, &r);
	/* the guest */
	assert_int_equal(r.conversions, 5);
	assert_int_equal(r.exits, 516);
	assert_int_equal(r.unaligned, 2);
	assert_int_equal(r.unaligned_by_site[CVMG_SITE_SWIOTLB_BOOT], 1);
	assert_int_equal(r.unaligned_by_site[CVMG_SITE_DMA_ALLOC], 1);
	assert_int_equal(r.swiotlb_boot_start, 0x3e8ef000);
	assert_int_equal(r.swiotlb_boot_bytes, 1 * GiB);
	/* the host */
	assert_int_equal(r.attr_calls, 516);
	assert_int_equal(r.punches, 516);
	assert_int_equal(r.rejected, 0);
	/* cvmconv's figures */
	assert_true(r.have_lib);
	assert_int_equal(r.lib_da, 1023 * 4096);
	assert_int_equal(r.lib_da_peak, 1023 * 4096);
	assert_int_equal(r.lib_mixed, 3);
	assert_int_equal(r.lib_huge_mappable, 10 * GiB - 3 * 2 * MiB);
	assert_int_equal(r.lib_kernel_mismatches, 0);
	/* the kernel's */
	check_kernel(&r, 517, 263681, 1023 * 4096);
	assert_int_equal(r.kernel_da_peak, 1023 * 4096);
	/* what the mixed extents cost */
	assert_int_equal(r.mixed_extents, 3);
	assert_int_equal(r.vmemmap_lost_bytes, 3 * 28 * 1024);
	assert_int_equal(r.ept_table_pages, 3);
}

static void test_rfc_boot_no_double_allocation(void **state)
{
	struct sim_scenario sc;
	struct sim_result r;

	(void)state;
	SKIP_IF_NO_HUGEPAGES();
	boot_scenario(&sc, SIM_GUEST_RFC, SIM_HOST_CVMCONV);
	run_checked(&sc, &r);
	assert_int_equal(r.conversions, 4);
	assert_int_equal(r.exits, 515);
	assert_int_equal(r.unaligned, 0);
	assert_int_equal(r.swiotlb_boot_start, 0x3e800000);
	assert_int_equal(r.swiotlb_boot_bytes, 1 * GiB);
	assert_int_equal(r.attr_calls, 515);
	assert_int_equal(r.punches, 515);
	assert_true(r.have_lib);
	assert_int_equal(r.lib_da, 0);
	assert_int_equal(r.lib_da_peak, 0);
	assert_int_equal(r.lib_mixed, 0);
	assert_int_equal(r.lib_huge_mappable, 10 * GiB);
	assert_int_equal(r.lib_kernel_mismatches, 0);
	check_kernel(&r, 515, 515 * 512, 0);
	assert_int_equal(r.kernel_da_peak, 0);
	assert_int_equal(r.mixed_extents, 0);
	assert_int_equal(r.vmemmap_lost_bytes, 0);
	assert_int_equal(r.ept_table_pages, 0);
}

static void test_qemu_like_boot_same_kernel_figures(void **state)
{
	struct sim_scenario sc;
	struct sim_result r;

	(void)state;
	SKIP_IF_NO_HUGEPAGES();
	boot_scenario(&sc, SIM_GUEST_LEGACY, SIM_HOST_QEMU_LIKE);
	run_checked(&sc, &r);
	assert_false(r.have_lib);
	assert_int_equal(r.exits, 516);
	assert_int_equal(r.attr_calls, 516);
	assert_int_equal(r.punches, 516); /* guest_memfd discards */
	check_kernel(&r, 517, 263681, 1023 * 4096);
	assert_int_equal(r.mixed_extents, 3);

	boot_scenario(&sc, SIM_GUEST_RFC, SIM_HOST_QEMU_LIKE);
	run_checked(&sc, &r);
	assert_int_equal(r.exits, 515);
	check_kernel(&r, 515, 515 * 512, 0);
}

/* The in-place host: the same guest, the same exits and attribute updates
 * as two-backing cvmconv, but one guest_memfd for both sides: no punch,
 * no double allocation by the library's count or the kernel's, the same
 * mixed extents (in place does not un-split a mixed 2 MiB extent), and a
 * transient reference on each to-private update absorbed by one retry. */
static void test_inplace_boot_no_double_allocation(void **state)
{
	struct sim_scenario sc;
	struct sim_result two, in;

	(void)state;
	SKIP_IF_NO_HUGEPAGES();
	for (int g = SIM_GUEST_LEGACY; g <= SIM_GUEST_RFC; g++) {
		boot_scenario(&sc, (enum sim_guest)g, SIM_HOST_CVMCONV);
		run_checked(&sc, &two);
		boot_scenario(&sc, (enum sim_guest)g, SIM_HOST_INPLACE);
		run_checked(&sc, &in);
		assert_int_equal(in.exits, two.exits);
		assert_int_equal(in.attr_calls, two.attr_calls);
		assert_int_equal(in.gmem_calls, in.attr_calls + in.attr_setup_calls);
		assert_int_equal(in.punches, 0);
		assert_true(in.have_lib);
		assert_int_equal(in.lib_da, 0);
		assert_int_equal(in.lib_da_peak, 0);
		assert_int_equal(in.kernel_da, 0);
		assert_int_equal(in.lib_kernel_mismatches, 0);
		assert_int_equal(in.mixed_extents, two.mixed_extents);
		assert_int_equal(in.lib_mixed, two.lib_mixed);
		assert_int_equal(in.live_shared_bytes, two.live_shared_bytes);
		/* the file holds what was touched once, shared or private now */
		assert_true(in.shared_alloc_bytes >= in.live_shared_bytes);
		assert_true(in.shared_alloc_bytes <= in.guest_bytes);
		assert_int_equal(in.hugepages_used, -1);
		assert_int_equal(in.gmem_busy_retries, 0);

		/* every to-private update (the regions made private at set-up)
		 * meets a transient reference once */
		sc.gmem_busy_every = 1;
		run_checked(&sc, &in);
		assert_int_equal(in.exits, two.exits);
		assert_int_equal(in.gmem_busy_retries, in.attr_setup_calls);
		assert_int_equal(in.gmem_busy_failures, 0);
		assert_int_equal(in.gmem_calls,
				 in.attr_calls + in.attr_setup_calls + in.gmem_busy_retries);
		assert_int_equal(in.host_errors, 0);
	}
}

/* The dry run that sizes the huge page reservation counts exactly what the
 * real run holds at its peak here (boot never frees a huge page). */
static void test_dry_run_counts_huge_pages(void **state)
{
	struct sim_scenario sc;
	uint64_t n;
	char why[256];

	(void)state;
	boot_scenario(&sc, SIM_GUEST_LEGACY, SIM_HOST_CVMCONV);
	assert_int_equal(sim_hugepages_needed(&sc, &n, why, sizeof(why)), 0);
	assert_int_equal(n, 517);
	boot_scenario(&sc, SIM_GUEST_RFC, SIM_HOST_CVMCONV);
	assert_int_equal(sim_hugepages_needed(&sc, &n, why, sizeof(why)), 0);
	assert_int_equal(n, 515);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dry_run_counts_huge_pages),
		cmocka_unit_test(test_legacy_boot_double_allocates),
		cmocka_unit_test(test_rfc_boot_no_double_allocation),
		cmocka_unit_test(test_qemu_like_boot_same_kernel_figures),
		cmocka_unit_test(test_inplace_boot_no_double_allocation),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
