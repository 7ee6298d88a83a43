/* SPDX-License-Identifier: MIT */
/*
 * The host's real guest_memfd (/dev/kvm on Linux 6.18 creates them with
 * GUEST_MEMFD_FLAG_MMAP | INIT_SHARED): as the shared side of a two-backing
 * region (writes, punches, mincore) and as an in-place file whose
 * attributes the strict fake keeps (no punch, no data lost).
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
#include <sys/mman.h>

/* ---- the host's real guest_memfd ---- */

static uint64_t resident_pages(const void *map, uint64_t size)
{
	unsigned char *vec = malloc(size / SZ_4K);
	uint64_t n = 0;

	assert_non_null(vec);
	assert_int_equal(mincore((void *)map, size, vec), 0);
	for (uint64_t i = 0; i < size / SZ_4K; i++)
		n += vec[i] & 1;
	free(vec);
	return n;
}

/* The host's /dev/kvm (6.18) creates guest_memfds with MMAP | INIT_SHARED:
 * one serves as the shared side of a two-backing region. The host writes
 * through its mapping; pages turning private are punched in it (the
 * kernel's fallocate on a guest_memfd), which mincore() shows; the others
 * keep their data. */
static void test_real_gmem_as_shared_side(void **state)
{
	struct env *e = *state;
	int gmem = test_private_fd(RSIZE), priv = cvmconv_memfd_create("ip-p", RSIZE, SZ_4K);
	struct cvmconv_region r;
	uint8_t *map;
	uint64_t hc;

	assert_true(gmem >= 0 && priv >= 0);
	if (!fd_is_guest_memfd(gmem)) {
		close(gmem);
		close(priv);
		FIXTURE_SKIP("the host's /dev/kvm gives no mmap-able guest_memfd here");
	}
	map = map_fd(gmem, RSIZE);
	assert_non_null(map);
	pattern_fill(map, 0, RPAGES, 0x9e);
	assert_int_equal(resident_pages(map, RSIZE), RPAGES);
	assert_int_equal(fd_allocated_bytes(gmem), RSIZE);
	r = (struct cvmconv_region){ .sz = sizeof(r),
				     .gpa = BASE + 12 * RSIZE,
				     .size = RSIZE,
				     .private_fd = priv,
				     .shared_fd = gmem,
				     .shared_hva = map,
				     .unaligned = -1 };
	assert_int_equal(fake_kvm_add_region(&e->fake, e->c, &r), 0);
	/* 4 KiB pages and a whole 2 MiB go private: punched in the guest_memfd */
	assert_int_equal(cvmconv_map_gpa_range(e->c, r.gpa + 3 * SZ_4K, 2, ENC, &hc), 0);
	assert_int_equal(cvmconv_map_gpa_range(e->c, r.gpa + SZ_2M, 512, ENC, &hc), 0);
	assert_int_equal(hc, 0);
	assert_int_equal(resident_pages(map, RSIZE), RPAGES - 514);
	assert_int_equal(fd_allocated_bytes(gmem), (RPAGES - 514) * SZ_4K);
	for (uint64_t p = 0; p < RPAGES; p++) {
		bool private_ = p == 3 || p == 4 || (p >= 512 && p < 1024);

		if (!private_ && !pattern_check(map, p, 0x9e))
			fail_msg("live shared page %llu lost its data", (unsigned long long)p);
	}
	/* back to shared: written again, counted again */
	assert_int_equal(cvmconv_map_gpa_range(e->c, r.gpa + SZ_2M, 512, 0, &hc), 0);
	pattern_fill(map, 512, 512, 0x9f);
	assert_int_equal(resident_pages(map, RSIZE), RPAGES - 2);
	assert_int_equal(stats(e->c).punch_failures, 0);
	assert_int_equal(cvmconv_remove_region(e->c, r.gpa), 0);
	munmap(map, RSIZE);
	close(gmem);
	close(priv);
}

/* The same real guest_memfd as an in-place region (attributes from the
 * strict fake, memory and accounting the kernel's): conversions never
 * punch it, the data stays (PRESERVE). */
static void test_real_gmem_inplace(void **state)
{
	struct env *e = *state;
	int gmem = test_private_fd(RSIZE);
	struct fake_gmem g;
	struct cvmconv_region r;
	uint64_t hc, resident;

	assert_true(gmem >= 0);
	if (!fd_is_guest_memfd(gmem)) {
		close(gmem);
		FIXTURE_SKIP("the host's /dev/kvm gives no mmap-able guest_memfd here");
	}
	assert_int_equal(fake_gmem_init_fd(&g, gmem, RSIZE, CVMCONV_CONTENT_PRESERVE), 0);
	fake_kvm_attach_gmem(&e->fake, &g);
	pattern_fill(g.map, 0, RPAGES, 0x71);
	resident = resident_pages(g.map, RSIZE);
	assert_int_equal(resident, RPAGES);
	r = inplace_region(BASE + 13 * RSIZE, &g, CVMCONV_CONTENT_PRESERVE);
	assert_int_equal(fake_kvm_add_region(&e->fake, e->c, &r), 0);
	for (unsigned k = 0; k < 64; k++) {
		uint64_t first = (k * 37) % (RPAGES - 8);

		assert_int_equal(
			cvmconv_map_gpa_range(e->c, r.gpa + first * SZ_4K, 8, k & 1 ? 0 : ENC, &hc),
			0);
		assert_int_equal(hc, 0);
	}
	assert_int_equal(resident_pages(g.map, RSIZE), resident);
	assert_int_equal(fd_allocated_bytes(gmem), RSIZE);
	assert_int_equal(stats(e->c).punches, 0);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, r.gpa, RSIZE), 0);
	for (uint64_t p = 0; p < RPAGES; p++)
		if (!pattern_check(g.map, p, 0x71))
			fail_msg("page %llu lost its data", (unsigned long long)p);
	assert_int_equal(cvmconv_remove_region(e->c, r.gpa), 0);
	fake_gmem_fini(&g);
	close(gmem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_real_gmem_as_shared_side, inplace_setup,
						inplace_teardown),
		cmocka_unit_test_setup_teardown(test_real_gmem_inplace, inplace_setup,
						inplace_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
