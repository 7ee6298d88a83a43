/* SPDX-License-Identifier: MIT */
/* fuzz_exits: geometry, the plain bitmap model, and the checks after every
 * operation (tags, views, events, accounting). */
#include "fuzz_exits.h"

/* The model and the checks loop over every page after every operation:
 * keep libFuzzer's comparison tracing out of them (the library's coverage
 * is the feedback that matters), it would cost most of the run time. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#endif

/* ---- geometry helpers ---- */

int region_of_gpa(uint64_t gpa)
{
	for (int i = 0; i < NREG; i++)
		if (R[i].present && gpa >= R[i].gpa && gpa - R[i].gpa < R[i].size)
			return i;
	return -1;
}

uint8_t *side_page(const struct fz_region *r, bool private_side, uint64_t rel)
{
	uint8_t *map = r->inplace ? G1.map : private_side ? r->private_map : r->shared_map;

	return map ? map + rel * PG : NULL;
}

/* Pages [gpa, gpa + size) lie in present regions without a gap. */
bool covered(uint64_t gpa, uint64_t size)
{
	uint64_t end = gpa + size;
	int i = region_of_gpa(gpa);

	if (i < 0)
		return false;
	while (R[i].gpa + R[i].size < end) {
		int next = region_of_gpa(R[i].gpa + R[i].size);

		if (next < 0)
			return false;
		i = next;
	}
	return true;
}

static int effective_policy(const struct fz_region *r)
{
	return r->policy < 0 ? (int)H.policy : r->policy;
}

/* Strictest policy of the regions a covered range touches. */
static int strictest(uint64_t gpa, uint64_t size)
{
	int mode = CVMCONV_UNALIGNED_ALLOW;

	for (int i = 0; i < NREG; i++)
		if (R[i].present && gpa < R[i].gpa + R[i].size && gpa + size > R[i].gpa &&
		    effective_policy(&R[i]) > mode)
			mode = effective_policy(&R[i]);
	return mode;
}

bool policy_refuses(uint64_t gpa, uint64_t size)
{
	return ((gpa | size) & (H.granule - 1)) && strictest(gpa, size) == CVMCONV_UNALIGNED_REJECT;
}

/* The checks every range goes through (semantics.md, Decode): non-empty,
 * 4 KiB aligned, below 2^52, inside regions. */
bool range_ok(uint64_t gpa, uint64_t size)
{
	if (!size || ((gpa | size) & (PG - 1)) || size > GPA_LIMIT || gpa > GPA_LIMIT - size)
		return false;
	return covered(gpa, size);
}

/* ---- the model ---- */

void model_apply(uint8_t *m, uint64_t gpa, uint64_t size, bool to_private)
{
	for (uint64_t a = gpa; a < gpa + size; a += PG) {
		CHECK(a >= win_lo && (a - win_lo) / PG < win_pages, "page 0x%llx outside window",
		      (unsigned long long)a);
		if (m == H.priv && m[(a - win_lo) / PG] != to_private)
			H.changed_since_fault = true; /* cvmconv committed a conversion */
		m[(a - win_lo) / PG] = to_private;
	}
}

static uint64_t r2_hpage(uint64_t rel)
{
	return (R[2].shared_offset + rel * PG) / HPG;
}

/* Region-relative page span of R2 shared huge page @h, and whether the huge
 * page lies wholly inside the region. */
static bool r2_hspan(uint64_t h, uint64_t *lo, uint64_t *hi)
{
	uint64_t start = h * HPG, end = start + HPG, off = R[2].shared_offset;
	uint64_t a = start > off ? start - off : 0, b = end - off;

	if (b > R[2].size)
		b = R[2].size;
	*lo = a / PG;
	*hi = b / PG;
	return b - a == HPG && start >= off;
}

static bool r2_all_private(uint64_t h)
{
	uint64_t lo, hi;

	r2_hspan(h, &lo, &hi);
	for (uint64_t p = lo; p < hi; p++)
		if (!H.priv[R[2].first + p])
			return false;
	return true;
}

uint64_t new_tag(int side, uint64_t page)
{
	return ++H.tag_counter << 24 | (uint64_t)side << 23 | page;
}

void write_tag(uint8_t *page, uint64_t tag)
{
	memcpy(page, &tag, sizeof(tag));
	memcpy(page + PG - sizeof(tag), &tag, sizeof(tag));
}

static bool page_has(const uint8_t *page, uint64_t tag)
{
	uint64_t a, b;

	memcpy(&a, page, sizeof(a));
	memcpy(&b, page + PG - sizeof(b), sizeof(b));
	return a == tag && b == tag;
}

/* ---- checks ---- */

void check_tags(void)
{
	for (int i = 0; i < NREG; i++) {
		const struct fz_region *r = &R[i];

		if (!r->present)
			continue;
		for (uint64_t p = 0; p < r->npages; p++) {
			bool priv = H.priv[r->first + p];
			uint8_t *page = side_page(r, priv, p);

			if (!page)
				continue;
			CHECK(page_has(page, H.tag[priv][r->first + p]),
			      "R%d page %llu: live %s side lost its data", i, (unsigned long long)p,
			      priv ? "private" : "shared");
		}
	}
}

/* Pages that changed state: their new side becomes live. It must read zeros
 * (punched when it went stale) or, after a failed or deferred punch, the old
 * tag; then
 * it gets a fresh tag, as a guest would write it. */
void retag_changed(void)
{
	for (int i = 0; i < NREG; i++) {
		const struct fz_region *r = &R[i];

		if (!r->present)
			continue;
		for (uint64_t p = 0; p < r->npages; p++) {
			uint64_t w = r->first + p;
			bool priv = H.priv[w];
			uint8_t *page;

			if (H.pre[w] == priv)
				continue;
			page = side_page(r, priv, p);
			if (!page)
				continue;
			if (r->inplace) {
				/* one page for both: PRESERVE kept what it held */
				CHECK(page_has(page, H.tag[!priv][w]),
				      "R%d page %llu: in-place conversion lost the data", i,
				      (unsigned long long)p);
				H.tag[priv][w] = new_tag(priv, w);
				write_tag(page, H.tag[priv][w]);
				continue;
			}
			/* deferred: a page live again before its punch keeps
			 * what it held */
			CHECK(page_has(page, 0) || ((H.punch_failed_ever || H.defer) &&
						    page_has(page, H.tag[priv][w])),
			      "R%d page %llu: newly live %s side holds stale data", i,
			      (unsigned long long)p, priv ? "private" : "shared");
			H.tag[priv][w] = new_tag(priv, w);
			write_tag(page, H.tag[priv][w]);
		}
	}
}

void check_views(void)
{
	const struct fake_range *fr = H.fake.priv;
	uint64_t k = 0;

	/* library == model over every region page; pages outside regions must
	 * be unknown to the library */
	for (uint64_t w = 0; w < win_pages; w++) {
		uint64_t gpa = win_lo + w * PG;
		int lib = cvmconv_is_private(H.c, gpa);

		if (region_of_gpa(gpa) < 0) {
			CHECK(lib == -ENOENT, "page 0x%llx outside regions: is_private %d",
			      (unsigned long long)gpa, lib);
			CHECK(!H.priv[w], "model private outside regions");
		} else {
			CHECK(lib == H.priv[w], "page 0x%llx: library %d model %d",
			      (unsigned long long)gpa, lib, H.priv[w]);
		}
	}
	/* fake kernel == model, through its interval list */
	for (uint64_t w = 0; w < win_pages; w++) {
		uint64_t gpa = win_lo + w * PG;
		bool fake;

		while (k < H.fake.npriv && fr[k].end <= gpa)
			k++;
		fake = k < H.fake.npriv && fr[k].start <= gpa;
		if (R[1].inplace && gpa >= R[1].gpa && gpa - R[1].gpa < R[1].size) {
			/* the guest_memfd holds these attributes, not the VM */
			CHECK(!fake, "page 0x%llx of the in-place region private in the VM",
			      (unsigned long long)gpa);
			fake = fake_gmem_is_private(&G1, gpa - R[1].gpa) == 1;
		}
		CHECK(fake == H.priv[w], "page 0x%llx: fake kernel %d model %d",
		      (unsigned long long)gpa, fake, H.priv[w]);
	}
	for (k = 0; k < H.fake.npriv; k++)
		CHECK(fr[k].start >= win_lo && fr[k].end <= win_lo + win_pages * PG,
		      "fake kernel has private memory outside the window");
}

/* Punches and discards of this operation: stale pages only, whole huge pages
 * only on the hugetlb side; successful R2 huge punches release their huge
 * pages, runs that turned shared make theirs held again (in call order). */
/* Whether region @ri has a backing on that side. */
static bool side_present(int ri, bool private_side)
{
	const struct fz_region *r = &R[ri];

	if (r->inplace)
		return false; /* nothing on either side is ever stale */
	return private_side ? r->private_fd >= 0 : r->shared_fd >= 0 || r->by_hva;
}

void check_events(void)
{
	/* CVMCONV_DEFER_PUNCH: what a page left stays allocated (4 KiB
	 * sides), pending until a punch of this or a later operation */
	if (H.defer)
		for (int i = 0; i < NREG; i++)
			for (uint64_t p = 0; R[i].present && p < R[i].npages; p++) {
				uint64_t w = R[i].first + p;

				if (H.pre[w] != H.priv[w] && side_present(i, H.pre[w]))
					H.pend[H.pre[w]][w] = 1;
			}
	memcpy(H.replay, H.pre, win_pages);
	for (unsigned e = 0; e < H.nev; e++) {
		const struct event *ev = &H.ev[e];

		if (ev->kind == EV_AFTER) {
			model_apply(H.replay, ev->a, ev->b, ev->to_private);
			if (!ev->to_private && R[2].present && R[2].shared_huge)
				for (uint64_t a = ev->a; a < ev->a + ev->b; a += PG)
					if (region_of_gpa(a) == 2)
						H.held[r2_hpage((a - R[2].gpa) / PG)] = true;
			continue;
		}
		CHECK(!(R[1].inplace && ev->kind == EV_PUNCH && ev->fd == G1.fd),
		      "punch of the in-place guest_memfd at 0x%llx", (unsigned long long)ev->a);
		/* which side of which region, and the region pages covered */
		int ri = -1;
		bool private_side = false, huge = false;
		uint64_t rel0 = 0, n = 0;

		for (int i = 0; i < NREG && ri < 0; i++) {
			const struct fz_region *r = &R[i];

			if (!r->present)
				continue;
			if (ev->kind == EV_DISCARD) {
				uint64_t hva = (uint64_t)(uintptr_t)r->shared_map;

				if (r->by_hva && ev->a >= hva && ev->a < hva + r->size) {
					CHECK(ev->b <= hva + r->size - ev->a, "discard past R%d",
					      i);
					ri = i;
					rel0 = ev->a - hva;
				}
			} else if (ev->fd == r->private_fd) {
				ri = i;
				private_side = true;
				CHECK(ev->a <= r->size && ev->b <= r->size - ev->a,
				      "punch past R%d", i);
				rel0 = ev->a;
			} else if (ev->fd == r->shared_fd && !r->by_hva) {
				ri = i;
				huge = r->shared_huge;
				CHECK(ev->a >= r->shared_offset &&
					      ev->a - r->shared_offset <= r->size &&
					      ev->b <= r->size - (ev->a - r->shared_offset),
				      "punch past R%d", i);
				rel0 = ev->a - r->shared_offset;
			}
		}
		CHECK(ri >= 0, "punch/discard of an unknown backing (fd %d)", ev->fd);
		CHECK(ev->b && !((rel0 | ev->b) & (PG - 1)), "punch not 4 KiB granular");
		if (huge)
			CHECK(!(ev->a % HPG) && !(ev->b % HPG),
			      "hugetlb punch at 0x%llx len 0x%llx is not whole huge pages",
			      (unsigned long long)ev->a, (unsigned long long)ev->b);
		n = ev->b / PG;
		for (uint64_t p = rel0 / PG; p < rel0 / PG + n; p++)
			CHECK(H.priv[R[ri].first + p] != private_side,
			      "R%d page %llu: its live %s side was punched", ri,
			      (unsigned long long)p, private_side ? "private" : "shared");
		if (huge && ev->ret == 0)
			for (uint64_t h = ev->a / HPG; h < (ev->a + ev->b) / HPG; h++)
				H.held[h] = false;
		if (!huge)
			for (uint64_t p = rel0 / PG; p < rel0 / PG + n; p++)
				H.pend[private_side][R[ri].first + p] = ev->ret != 0;
	}
	/* a page live on a side again has nothing pending there */
	for (uint64_t w = 0; w < win_pages; w++)
		if (H.pre[w] != H.priv[w])
			H.pend[H.priv[w]][w] = 0;
	CHECK(!memcmp(H.replay, H.priv, win_pages),
	      "the runs reported to the listener do not add up to the conversion");
}

void check_accounting(void)
{
	struct cvmconv_stats st = { .sz = sizeof(st) };
	uint64_t pending = 0, held_private = 0, pending_huge = 0;

	CHECK(cvmconv_get_stats(H.c, &st) == 0, "get_stats");
	CHECK(!st.broken, "broken without a failed rollback");
	for (int i = 0; i < NREG; i++) {
		const struct fz_region *r = &R[i];

		if (!r->present)
			continue;
		if (r->inplace) {
			/* every page tagged once, never punched, never twice */
			CHECK(allocated(G1.fd) == r->npages * PG,
			      "in-place R%d: st_blocks say %llu bytes, %llu pages written", i,
			      (unsigned long long)allocated(G1.fd), (unsigned long long)r->npages);
			continue;
		}
		for (int side = 0; side < 2; side++) {
			uint64_t live = 0, stale_pending = 0, got;

			if (side == 0 && r->shared_huge)
				continue; /* the held model below */
			for (uint64_t p = 0; p < r->npages; p++) {
				uint64_t w = r->first + p;

				live += H.priv[w] == side;
				stale_pending += H.priv[w] != side && H.pend[side][w];
			}
			pending += stale_pending;
			if (!(side ? r->private_map : r->shared_map))
				continue; /* never written: the kernel holds nothing */
			/* the kernel's truth: live pages (all tagged) plus stale
			 * pages whose punch failed */
			got = allocated(side ? r->private_fd : r->shared_fd);
			CHECK(got == (live + stale_pending) * PG,
			      "R%d %s side: st_blocks say %llu bytes, live %llu + pending %llu "
			      "pages",
			      i, side ? "private" : "shared", (unsigned long long)got,
			      (unsigned long long)live, (unsigned long long)stale_pending);
		}
	}
	if (R[2].present && R[2].shared_huge) {
		for (uint64_t p = 0; p < R[2].npages; p++)
			held_private += H.priv[R[2].first + p] && H.held[r2_hpage(p)];
		for (uint64_t h = 0; h < H.nheld; h++) {
			uint64_t lo, hi;

			if (H.held[h] && r2_hspan(h, &lo, &hi) && r2_all_private(h))
				pending_huge++;
		}
	}
	CHECK(st.punch_pending_bytes == pending * PG + pending_huge * HPG,
	      "punch_pending_bytes %llu, model says %llu pages + %llu huge pages",
	      (unsigned long long)st.punch_pending_bytes, (unsigned long long)pending,
	      (unsigned long long)pending_huge);
	CHECK(st.double_alloc_bytes == (pending + held_private) * PG,
	      "double_alloc_bytes %llu, model says %llu pending + %llu in held huge pages",
	      (unsigned long long)st.double_alloc_bytes, (unsigned long long)pending,
	      (unsigned long long)held_private);
	CHECK(st.double_alloc_peak_bytes >= st.double_alloc_bytes, "peak below current");
	CHECK(st.punch_failures <= st.punches, "more punch failures than punches");
	if (!H.punch_failed_ever && !H.defer)
		CHECK(st.punch_pending_bytes == 0, "pending bytes without a punch failure");
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
