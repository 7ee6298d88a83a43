/* SPDX-License-Identifier: MIT */
/* fuzz_exits_fast: the checks after every operation (views, live data,
 * stats). */
#include "fuzz_exits_fast.h"

/* no coverage in the harness: see fuzz_exits_fast.h */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#endif

/* ---- checks ---- */

int view_walk_cb(void *opaque, uint64_t gpa, uint64_t size, bool is_private)
{
	struct walk *w = opaque;

	CHECK(range_ok(gpa, size) && gpa >= w->prev_end, "run 0x%llx+0x%llx after 0x%llx",
	      (unsigned long long)gpa, (unsigned long long)size, (unsigned long long)w->prev_end);
	CHECK(!(gpa == w->prev_end && (int)is_private == w->prev_state),
	      "runs at 0x%llx not maximal", (unsigned long long)gpa);
	if (is_private)
		bm_set(w->bm, widx(gpa), widx(gpa + size), true);
	w->prev_end = gpa + size;
	w->prev_state = is_private;
	w->bytes += size;
	return 0;
}

void check_views(void)
{
	struct walk w = { .prev_state = -1 };
	uint64_t kern[NW] = { 0 };

	CHECK(cvmconv_for_each_range(H.c, win_lo, win_pages * PG, view_walk_cb, &w) == 0,
	      "for_each_range");
	CHECK(w.bytes == bm_count(regions_bm, regions_bm, false) * PG, "walk covered %llu bytes",
	      (unsigned long long)w.bytes);
	CHECK(!memcmp(w.bm, H.ref, sizeof(w.bm)), "library view differs from the reference");
	for (unsigned k = 0; k < H.fake.npriv; k++) {
		const struct fake_range *fr = &H.fake.priv[k];

		CHECK(in_window(fr->start, fr->end - fr->start), "kernel private outside");
		bm_set(kern, widx(fr->start), widx(fr->end), true);
	}
	CHECK(!memcmp(kern, H.ref, sizeof(kern)), "kernel attributes differ from the reference");
}

/* Pages that turned live are written by the guest (allocating them); every
 * live page must hold data, and be allocated. */
void touch_and_check_data(void)
{
	bool undone = H.allocs && !memcmp(H.pre, H.ref, sizeof(H.ref));

	for (int w = 0; w < NW; w++) {
		uint64_t ch = H.pre[w] ^ H.ref[w], to_priv = ch & H.ref[w];
		uint64_t to_sh = ch & ~H.ref[w] & regions_bm[w], sh4k = shared4k_bm[w];
		uint64_t live_priv = H.ref[w], live_sh = ~H.ref[w] & regions_bm[w];

		H.alloc[1][w] |= to_priv;
		H.acct[1][w] |= to_priv;
		H.data[1][w] |= to_priv;
		H.alloc[0][w] |= to_sh & sh4k;
		H.acct[0][w] |= to_sh & sh4k;
		H.data[0][w] |= to_sh;
		CHECK(!(live_priv & ~H.data[1][w]) && !(live_sh & ~H.data[0][w]),
		      "a live page lost its data (window word %d: private 0x%llx shared 0x%llx)", w,
		      (unsigned long long)(live_priv & ~H.data[1][w]),
		      (unsigned long long)(live_sh & ~H.data[0][w]));
		CHECK(!(live_priv & ~H.alloc[1][w]) && !(live_sh & sh4k & ~H.alloc[0][w]),
		      "a live page is not allocated (word %d)", w);
		CHECK(!(H.alloc[0][w] & ~H.acct[0][w]) && !(H.alloc[1][w] & ~H.acct[1][w]),
		      "memory allocated that the library no longer counts (word %d)", w);
	}
	for (unsigned h = 0; R[2].huge && h < 3; h++) {
		uint64_t lo, hi;

		hp_span(h, &lo, &hi);
		if (!bm_all(H.ref, lo, hi, true))
			H.hp_alloc[h] = H.hp_acct[h] = true;
		/* an allocation undone (it failed, or the attribute update
		 * after it did: the pages stayed private): an edge huge page it
		 * visited may have been allocated; the library cannot punch it
		 * (partly outside the region) and counts it held */
		if (undone && H.hp_visited[h] && hp_edge(h))
			H.hp_acct[h] = true;
		CHECK(!H.hp_alloc[h] || H.hp_acct[h], "huge page %u allocated, not counted", h);
	}
}

void check_stats(void)
{
	struct cvmconv_stats st = { .sz = sizeof(st) };
	uint64_t stale4k, huge_stale = 0, huge_pending = 0;
	uint64_t sh4k_priv[NW];

	CHECK(cvmconv_get_stats(H.c, &st) == 0, "get_stats");
	CHECK(st.broken == H.broken, "broken %llu", (unsigned long long)st.broken);
	CHECK(st.shared_alloc_failures == H.alloc_failures,
	      "shared_alloc_failures %llu, model %llu",
	      (unsigned long long)st.shared_alloc_failures, (unsigned long long)H.alloc_failures);
	if (H.broken)
		return;
	for (int w = 0; w < NW; w++)
		sh4k_priv[w] = shared4k_bm[w] & H.ref[w];
	/* stale and counted: private side where shared, 4 KiB shared sides
	 * where private */
	stale4k = bm_count(H.acct[1], H.ref, true) + bm_count(H.acct[0], sh4k_priv, false);
	for (unsigned h = 0; R[2].huge && h < 3; h++) {
		uint64_t lo, hi, n;

		hp_span(h, &lo, &hi);
		n = bm_count_range(H.ref, lo, hi);
		if (!H.hp_acct[h])
			continue;
		huge_stale += n;
		huge_pending += !hp_edge(h) && n == hi - lo;
	}
	CHECK(st.double_alloc_bytes == (stale4k + huge_stale) * PG,
	      "double_alloc_bytes %llu, model %llu 4 KiB + %llu in huge pages",
	      (unsigned long long)st.double_alloc_bytes, (unsigned long long)stale4k,
	      (unsigned long long)huge_stale);
	CHECK(st.punch_pending_bytes == stale4k * PG + huge_pending * HPG,
	      "punch_pending_bytes %llu, model %llu 4 KiB + %llu huge",
	      (unsigned long long)st.punch_pending_bytes, (unsigned long long)stale4k,
	      (unsigned long long)huge_pending);
	CHECK(st.double_alloc_peak_bytes >= st.double_alloc_bytes, "peak below current");
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
