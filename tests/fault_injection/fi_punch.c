/* SPDX-License-Identifier: MIT */
/* Fault injection: punches that fail (4 KiB backings, shared sides given
 * as an address, huge pages) and cvmconv_flush() retrying them. */
#include "fi.h"

/* ---- punch of a 4 KiB backing, and of a shared side given as an hva ---- */

static void punch_case(enum backing kind, int err, bool to_private, bool fail_flush)
{
	struct world *w = world_get();
	enum fake_call call = kind == B_HVA && to_private ? FAKE_CALL_DISCARD : FAKE_CALL_PUNCH;
	const uint64_t gpa = BASE + 40 * SZ_4K, size = 24 * SZ_4K;
	struct cvmconv_stats st;
	uint64_t hc;

	world_ctx(w, false);
	world_region(w, kind);
	if (!to_private) {
		/* start from private pages holding the guest's data */
		assert_int_equal(cvmconv_convert(w->c, gpa, size, true), 0);
		model_set(w, gpa, size, true);
		write_converted(w, gpa, size);
	}
	check_allocation(w, 0);

	sched_set(&w->s[call], &err, 1, false);
	assert_int_equal(request(w, E_MAP, gpa, size, to_private, &hc), 0);
	injected[kind == B_HVA && to_private ? S_DISCARD : S_PUNCH_4K][err_index(err)]++;
	/* a failed punch does not undo the conversion: the guest gets 0 */
	assert_int_equal(hc, 0);
	model_set(w, gpa, size, to_private);
	check_world(w);
	st = stats(w);
	assert_int_equal(st.punch_failures, 1);
	assert_int_equal(st.punch_pending_bytes, size);
	assert_int_equal(st.double_alloc_bytes, size);
	/* the stale side is still allocated (it still holds the old data) */
	write_converted(w, gpa, size);
	check_allocation(w, size);

	if (fail_flush) {
		sched_set(&w->s[call], &err, 1, false);
		assert_int_equal(cvmconv_flush(w->c), -err);
		injected[S_PUNCH_FLUSH][err_index(err)]++;
		st = stats(w);
		assert_int_equal(st.punch_pending_bytes, size);
		assert_int_equal(st.punch_failures, 2);
		check_allocation(w, size);
		check_world(w);
	}
	check_flush_recovers(w);
	assert_int_equal(stats(w).double_alloc_bytes, 0);
	world_free(w);
}

void test_punch_shmem(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++) {
		punch_case(B_SHMEM, errnos[i], true, false);
		punch_case(B_SHMEM, errnos[i], false, false);
	}
}

void test_discard_hva(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++)
		punch_case(B_HVA, errnos[i], true, false);
}

void test_flush_failure(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++) {
		punch_case(B_SHMEM, errnos[i], true, true);
		punch_case(B_HVA, errnos[i], true, true);
	}
}

/* A page whose punch failed becomes live again before the flush: the flush
 * must not punch it (the guest's new data on it survives). */
void test_punch_pending_page_live_again(void **state)
{
	struct world *w = world_get();
	const uint64_t gpa = BASE + 8 * SZ_4K, size = 8 * SZ_4K;
	uint64_t hc;
	int err = EIO;

	(void)state;
	world_ctx(w, false);
	world_region(w, B_SHMEM);
	sched_set(&w->s[FAKE_CALL_PUNCH], &err, 1, false);
	assert_int_equal(request(w, E_MAP, gpa, size, true, &hc), 0);
	injected[S_PUNCH_4K][err_index(err)]++;
	model_set(w, gpa, size, true);
	write_converted(w, gpa, size);
	/* half of it back to shared: the shared side was never punched, the
	 * guest writes new data there */
	assert_int_equal(request(w, E_MAP, gpa, size / 2, false, &hc), 0);
	model_set(w, gpa, size / 2, false);
	write_converted(w, gpa, size / 2);
	assert_int_equal(stats(w).punch_pending_bytes, size / 2);
	check_flush_recovers(w);
	world_free(w);
}

/* ---- punch of huge pages (MFD_HUGETLB shared side) ---- */

void test_punch_huge(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++) {
		struct world *w = world_get();
		const char *why = NULL;
		struct cvmconv_stats st;
		uint64_t hc;
		long free0;
		int err = errnos[i], rr;

		rr = hugepages_reserve(RSIZE / SZ_2M + 2, &why);
		if (rr) {
			huge_skipped = true;
			FIXTURE_SKIP("cannot reserve %llu 2 MiB huge pages: %s (%s)",
				     (unsigned long long)(RSIZE / SZ_2M + 2), why ? why : "?",
				     strerror(-rr));
		}
		w->reserved = true;
		world_ctx(w, false);
		world_region(w, B_HUGE); /* both huge pages allocated and written */
		assert_int_equal(fd_allocated_bytes(w->r[0].shared_fd), RSIZE);
		free0 = hugepages_free();

		/* the first huge page turns private: its punch fails */
		sched_set(&w->s[FAKE_CALL_PUNCH], &err, 1, false);
		assert_int_equal(request(w, E_MAP, BASE, SZ_2M, true, &hc), 0);
		injected[S_PUNCH_HUGE][i]++;
		assert_int_equal(hc, 0);
		model_set(w, BASE, SZ_2M, true);
		write_converted(w, BASE, SZ_2M);
		check_world(w);
		st = stats(w);
		assert_int_equal(st.punch_failures, 1);
		assert_int_equal(st.punch_pending_bytes, SZ_2M);
		assert_int_equal(st.double_alloc_bytes, SZ_2M);
		assert_int_equal(fd_allocated_bytes(w->r[0].shared_fd), RSIZE);
		assert_int_equal(hugepages_free(), free0);

		/* a flush needs no memory: with every allocation failing it
		 * still tries, and a failure keeps the page */
		if (i == 0) {
			long live0 = alloc.live;

			sched_set(&w->s[FAKE_CALL_PUNCH], &err, 1, false);
			alloc_arm(1);
			assert_int_equal(cvmconv_flush(w->c), -err);
			alloc_disarm();
			assert_false(alloc.hit);
			assert_int_equal(alloc.live, live0);
			assert_int_equal(stats(w).punch_pending_bytes, SZ_2M);
			assert_int_equal(fd_allocated_bytes(w->r[0].shared_fd), RSIZE);
		}
		/* a failing flush keeps it; a good one frees exactly that page */
		sched_set(&w->s[FAKE_CALL_PUNCH], &err, 1, false);
		assert_int_equal(cvmconv_flush(w->c), -err);
		injected[S_PUNCH_FLUSH][i]++;
		assert_int_equal(stats(w).punch_pending_bytes, SZ_2M);
		assert_int_equal(cvmconv_flush(w->c), 0);
		st = stats(w);
		assert_int_equal(st.punch_pending_bytes, 0);
		assert_int_equal(st.double_alloc_bytes, 0);
		assert_int_equal(fd_allocated_bytes(w->r[0].shared_fd), SZ_2M);
		assert_int_equal(hugepages_free(), free0 + 1);
		check_world(w); /* the second huge page kept every byte */
		world_free(w);
	}
}
