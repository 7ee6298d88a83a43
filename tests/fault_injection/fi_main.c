/* SPDX-License-Identifier: MIT */
/* Fault injection: the suite and its figures. */
#include "fi.h"

/* ---- figures ---- */

static int print_matrix(void **state)
{
	uint64_t total = 0;

	(void)state;
	printf("fault_injection: faults injected (site x errno)\n");
	printf("  %-26s", "site");
	for (unsigned i = 0; i < NERR; i++)
		printf(" %7s", strerrorname_np(errnos[i]));
	printf("\n");
	for (unsigned s = 0; s < S_COUNT; s++) {
		printf("  %-26s", site_names[s]);
		for (unsigned i = 0; i < NERR; i++) {
			printf(" %7llu", (unsigned long long)injected[s][i]);
			total += injected[s][i];
		}
		printf("\n");
	}
	printf("fault_injection: %llu faults injected in total%s\n", (unsigned long long)total,
	       huge_skipped ? " (huge page cases skipped: no huge pages)" : "");
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_call_sites, teardown_worlds),
		cmocka_unit_test_teardown(test_attr_forward, teardown_worlds),
		cmocka_unit_test_teardown(test_attr_rollback, teardown_worlds),
		cmocka_unit_test_teardown(test_attr_add_region_private, teardown_worlds),
		cmocka_unit_test_teardown(test_punch_shmem, teardown_worlds),
		cmocka_unit_test_teardown(test_discard_hva, teardown_worlds),
		cmocka_unit_test_teardown(test_flush_failure, teardown_worlds),
		cmocka_unit_test_teardown(test_punch_pending_page_live_again, teardown_worlds),
		cmocka_unit_test_teardown(test_punch_huge, teardown_worlds),
		cmocka_unit_test_teardown(test_default_ops_probe, teardown_worlds),
		cmocka_unit_test_teardown(test_default_ops_attr, teardown_worlds),
		cmocka_unit_test_teardown(test_gmem_forward, teardown_worlds),
		cmocka_unit_test_teardown(test_gmem_rollback, teardown_worlds),
		cmocka_unit_test_teardown(test_default_ops_gmem, teardown_worlds),
		cmocka_unit_test_teardown(test_default_ops_punch_madvise, teardown_worlds),
		cmocka_unit_test_teardown(test_alloc_shared, teardown_worlds),
		cmocka_unit_test_teardown(test_alloc_create, teardown_worlds),
		cmocka_unit_test_teardown(test_alloc_add_region, teardown_worlds),
		cmocka_unit_test_teardown(test_alloc_convert, teardown_worlds),
		cmocka_unit_test_teardown(test_alloc_pending_list, teardown_worlds),
	};

	return cmocka_run_group_tests(tests, NULL, print_matrix);
}
