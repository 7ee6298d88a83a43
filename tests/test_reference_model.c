/* SPDX-License-Identifier: MIT */
/*
 * The library against a reference model written as plainly as possible:
 * one bool per 4 KiB page, one "held" bool per huge page of each side.
 * Thousands of seeded random conversions (aligned, unaligned, spanning
 * regions, both directions, guest and host) over three adjacent regions of
 * awkward geometry (not 2 MiB aligned in GPA, shared file offset not
 * congruent to the GPA, a 2 MiB hugetlb shared side, a 4 KiB private side).
 * After every step the library's private map, mixed extent count and double
 * allocation must equal the model's, and every punch it issued must have
 * covered only whole huge pages, all of whose pages were stale.
 *
 * Punches are recorded, not executed, so the test needs no reserved huge
 * pages: an MFD_HUGETLB memfd reports its page size through fstatfs even
 * when no page was ever allocated.
 *
 * The in-place runs make some regions CVMCONV_REGION_INPLACE over the
 * strict fake guest_memfd (tests/fake_gmem.h): there nothing is ever held
 * twice or punched, and host references (pins) on random pages make
 * conversions busy — transient ones must be absorbed by the retries,
 * lasting ones must fail the request with -EAGAIN and change nothing.
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

#include "cvmconv.h"
#include "fake_kvm.h"
#include "fixture.h"

#define NREG 3
#define HP (SZ_2M / SZ_4K) /* pages per huge page */

struct model_region {
	uint64_t gpa, size, shared_offset;
	int shared_fd, private_fd;
	bool inplace;
	struct fake_gmem gmem;
};

struct model {
	struct fake_kvm fake;
	struct model_region reg[NREG];
	uint64_t base, npages; /* all regions, contiguous */
	bool *priv;
	bool *held; /* per shared huge page index (file offset / 2 MiB), per region */
	uint64_t held_first[NREG], held_n[NREG];
	bool *held_r[NREG];
	/* punches recorded since the last check */
	struct punch_rec {
		int fd;
		uint64_t off, len;
	} punches[4096];
	unsigned npunches;
	bool punch_overflow;
};

static struct model *M;

static int rec_punch(void *opaque, int fd, uint64_t off, uint64_t len)
{
	/* the live-page oracle, at the moment of the call */
	fake_kvm_live_in_punch(opaque, fd, NULL, off, len);
	if (M->npunches < 4096)
		M->punches[M->npunches++] = (struct punch_rec){ fd, off, len };
	else
		M->punch_overflow = true;
	return 0;
}

static int rec_discard(void *opaque, void *hva, uint64_t len)
{
	(void)opaque;
	(void)hva;
	(void)len;
	return -EINVAL; /* no hva regions here */
}

static int fwd_attrs(void *opaque, uint64_t gpa, uint64_t size, uint64_t attrs)
{
	return fake_kvm_ops.set_memory_attributes(opaque, gpa, size, attrs);
}

static int fwd_gmem(void *opaque, int fd, uint64_t offset, uint64_t size, uint64_t attrs,
		    uint64_t flags, uint64_t *error_offset)
{
	return fake_kvm_ops.set_gmem_attributes(opaque, fd, offset, size, attrs, flags,
						error_offset);
}

static uint64_t xs(uint64_t *s)
{
	uint64_t x = *s += 0x9E3779B97F4A7C15ULL;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
	return x ^ (x >> 31);
}

static int region_of(uint64_t page)
{
	uint64_t gpa = M->base + page * SZ_4K;
	for (int i = 0; i < NREG; i++)
		if (gpa >= M->reg[i].gpa && gpa < M->reg[i].gpa + M->reg[i].size)
			return i;
	return -1;
}

/* shared huge page (index into held_r) of a page */
static uint64_t hpage_of(int r, uint64_t page)
{
	uint64_t rel = M->base + page * SZ_4K - M->reg[r].gpa;
	return (M->reg[r].shared_offset + rel) / SZ_2M - M->held_first[r];
}

/* region-page range of a shared huge page, clipped; whole = fully inside */
static void hpage_pages(int r, uint64_t h, uint64_t *lo, uint64_t *hi, bool *whole)
{
	uint64_t start = (M->held_first[r] + h) * SZ_2M, end = start + SZ_2M;
	uint64_t off = M->reg[r].shared_offset, rfirst = (M->reg[r].gpa - M->base) / SZ_4K;
	uint64_t a = start > off ? start - off : 0, b = end - off;

	if (b > M->reg[r].size)
		b = M->reg[r].size;
	*lo = rfirst + a / SZ_4K;
	*hi = rfirst + b / SZ_4K;
	*whole = (b - a) == SZ_2M;
}

/* Apply a successful conversion of [p0, p1) to the model. */
static void model_convert(uint64_t p0, uint64_t p1, bool to_private)
{
	for (uint64_t p = p0; p < p1; p++) {
		int r = region_of(p);
		if (M->priv[p] == to_private)
			continue;
		M->priv[p] = to_private;
		if (!to_private && !M->reg[r].inplace)
			M->held_r[r][hpage_of(r, p)] = true; /* live on shared again */
	}
	/* stale shared huge pages touched by the range: freed when whole+all private */
	for (uint64_t p = p0; p < p1; p++) {
		int r = region_of(p);
		uint64_t h = hpage_of(r, p), lo, hi;
		bool whole, all = true;

		if (!M->held_r[r][h] || !to_private)
			continue;
		hpage_pages(r, h, &lo, &hi, &whole);
		for (uint64_t q = lo; q < hi; q++)
			all = all && M->priv[q];
		if (whole && all)
			M->held_r[r][h] = false;
	}
}

static uint64_t model_double_alloc(void)
{
	uint64_t pages = 0;
	for (uint64_t p = 0; p < M->npages; p++) {
		int r = region_of(p);
		if (M->priv[p] && !M->reg[r].inplace && M->held_r[r][hpage_of(r, p)])
			pages++;
	}
	return pages * SZ_4K;
}

static uint64_t model_mixed(void)
{
	uint64_t mixed = 0, g = M->base, end = M->base + M->npages * SZ_4K;

	/* extents are 2 MiB frames of guest physical space; one split between
	 * two adjacent regions is still one extent */
	for (uint64_t e = g & ~(SZ_2M - 1); e < end; e += SZ_2M) {
		bool any_p = false, any_s = false;

		for (uint64_t a = e < g ? g : e; a < e + SZ_2M && a < end; a += SZ_4K) {
			bool pv = M->priv[(a - M->base) / SZ_4K];
			any_p |= pv;
			any_s |= !pv;
		}
		mixed += any_p && any_s;
	}
	return mixed;
}

/* Every recorded punch: shared fd -> whole huge pages, all private;
 * private fd -> 4 KiB runs, all shared. */
static void check_punches(void)
{
	assert_false(M->punch_overflow);
	for (unsigned i = 0; i < M->npunches; i++) {
		struct punch_rec *pr = &M->punches[i];
		int r;

		for (r = 0; r < NREG; r++)
			if (pr->fd == M->reg[r].shared_fd || pr->fd == M->reg[r].private_fd)
				break;
		assert_true(r < NREG);
		assert_false(M->reg[r].inplace); /* one file: nothing is ever stale */
		bool shared = pr->fd == M->reg[r].shared_fd;
		uint64_t file_base = shared ? M->reg[r].shared_offset : 0;
		assert_true(pr->len > 0);
		if (shared) {
			assert_int_equal(pr->off % SZ_2M, 0);
			assert_int_equal(pr->len % SZ_2M, 0);
		}
		assert_true(pr->off >= file_base);
		assert_true(pr->off + pr->len <= file_base + M->reg[r].size);
		for (uint64_t o = pr->off; o < pr->off + pr->len; o += SZ_4K) {
			uint64_t page = (M->reg[r].gpa - M->base + (o - file_base)) / SZ_4K;
			/* the live side is never punched */
			assert_int_equal(M->priv[page], shared);
		}
	}
	M->npunches = 0;
}

static void check_all(struct cvmconv *c)
{
	struct cvmconv_stats st = { .sz = sizeof(st) };

	for (uint64_t p = 0; p < M->npages; p++)
		if (cvmconv_is_private(c, M->base + p * SZ_4K) != (int)M->priv[p])
			fail_msg("page %llu: library %d model %d", (unsigned long long)p,
				 cvmconv_is_private(c, M->base + p * SZ_4K), M->priv[p]);
	assert_int_equal(fake_kvm_mismatches(&M->fake, c, M->base, M->npages * SZ_4K), 0);
	assert_int_equal(cvmconv_get_stats(c, &st), 0);
	assert_int_equal(st.double_alloc_bytes, model_double_alloc());
	assert_true(st.double_alloc_peak_bytes >= st.double_alloc_bytes);
	assert_int_equal(st.mixed_extents, model_mixed());
	check_punches();
}

static void run_model(uint64_t seed, unsigned steps, unsigned inplace_mask)
{
	struct cvmconv_ops ops = { fwd_attrs, rec_punch, rec_discard, fwd_gmem };
	uint64_t busy_failures = 0;
	struct cvmconv_config cfg;
	struct cvmconv *c;
	/* awkward geometry: base 2 MiB + 12 KiB; region sizes not multiples
	 * of 2 MiB; region 1's shared offset shifts its huge pages by 1 MiB */
	const uint64_t sizes[NREG] = { 5 * SZ_2M + 20 * SZ_4K, 3 * SZ_2M + 256 * SZ_4K, 4 * SZ_2M };
	const uint64_t offs[NREG] = { 0, SZ_2M / 2, 3 * SZ_2M };

	M = calloc(1, sizeof(*M));
	assert_non_null(M);
	fake_kvm_init(&M->fake, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&M->fake, CVMCONV_UNALIGNED_ALLOW);
	cfg.ops = &ops;
	cfg.ops_opaque = &M->fake;
	assert_int_equal(cvmconv_create(&cfg, &c), 0);

	M->base = SZ_1G + SZ_2M + 3 * SZ_4K;
	uint64_t gpa = M->base;
	for (int r = 0; r < NREG; r++) {
		struct model_region *mr = &M->reg[r];
		uint64_t fsize = ((offs[r] + sizes[r]) + SZ_2M - 1) / SZ_2M * SZ_2M;

		mr->gpa = gpa;
		mr->size = sizes[r];
		mr->shared_offset = offs[r];
		if (inplace_mask & (1u << r)) {
			/* one guest_memfd for both sides, contents preserved */
			mr->inplace = true;
			assert_int_equal(
				fake_gmem_init(&mr->gmem, sizes[r], CVMCONV_CONTENT_PRESERVE), 0);
			fake_kvm_attach_gmem(&M->fake, &mr->gmem);
			mr->shared_fd = mr->private_fd = -1;
			struct cvmconv_region reg = {
				.sz = sizeof(reg), .gpa = gpa, .size = sizes[r], .unaligned = -1
			};

			fake_gmem_make_inplace(&mr->gmem, &reg, CVMCONV_CONTENT_PRESERVE);
			assert_int_equal(fake_kvm_add_region(&M->fake, c, &reg), 0);
			gpa += sizes[r];
			continue;
		}
		mr->shared_fd = cvmconv_memfd_create("model-shared", fsize, SZ_2M);
		if (mr->shared_fd < 0)
			FIXTURE_SKIP("no MFD_HUGETLB memfd with 2 MiB pages: %s",
				     strerror(-mr->shared_fd));
		mr->private_fd = test_private_fd(sizes[r]);
		assert_true(mr->private_fd >= 0);
		struct cvmconv_region reg = {
			.sz = sizeof(reg),
			.gpa = gpa,
			.size = sizes[r],
			.private_fd = mr->private_fd,
			.shared_fd = mr->shared_fd,
			.shared_offset = offs[r],
			.unaligned = -1,
		};
		assert_int_equal(fake_kvm_add_region(&M->fake, c, &reg), 0);
		gpa += sizes[r];
	}
	M->npages = (gpa - M->base) / SZ_4K;
	M->priv = calloc(M->npages, sizeof(bool));
	for (int r = 0; r < NREG; r++) {
		uint64_t first = offs[r] / SZ_2M, last = (offs[r] + sizes[r] - 1) / SZ_2M;
		M->held_first[r] = first;
		M->held_n[r] = last - first + 1;
		M->held_r[r] = malloc(M->held_n[r] * sizeof(bool));
		for (uint64_t h = 0; h < M->held_n[r]; h++)
			M->held_r[r][h] = !M->reg[r].inplace; /* shared region: all held at add */
	}
	check_all(c);

	for (unsigned i = 0; i < steps; i++) {
		uint64_t kind = xs(&seed) % 8, p0, n;
		bool to_private = xs(&seed) % 2;

		switch (kind) {
		case 0: /* single page */
			p0 = xs(&seed) % M->npages;
			n = 1;
			break;
		case 1: /* 2 MiB aligned in GPA */
			p0 = ((M->base / SZ_4K + xs(&seed) % M->npages) & ~(HP - 1)) -
			     M->base / SZ_4K;
			n = HP * (1 + xs(&seed) % 3);
			break;
		case 2: /* whole range */
			p0 = 0;
			n = M->npages;
			break;
		default: /* anything */
			p0 = xs(&seed) % M->npages;
			n = 1 + xs(&seed) % (3 * HP);
			break;
		}
		if ((int64_t)p0 < 0 || p0 >= M->npages)
			p0 = 0;
		if (p0 + n > M->npages)
			n = M->npages - p0;
		uint64_t ret = 1, pin = UINT64_MAX;
		bool busy = false;
		int err, pr;
		/* in-place runs: a host reference on a random shared page of an
		 * in-place region, lasting for this step (1 in 8) or released
		 * after at most CVMCONV_INPLACE_RETRIES refusals (1 in 8) */
		if (inplace_mask && xs(&seed) % 4 == 0) {
			uint64_t q = xs(&seed) % M->npages;
			uint32_t release =
				xs(&seed) % 2 ? 0 : 1 + xs(&seed) % CVMCONV_INPLACE_RETRIES;

			pr = region_of(q);
			if (M->reg[pr].inplace && !M->priv[q]) {
				uint64_t off = M->base + q * SZ_4K - M->reg[pr].gpa;

				assert_int_equal(
					fake_gmem_pin(&M->reg[pr].gmem, off, SZ_4K, release), 0);
				pin = q;
				busy = !release && to_private && q >= p0 && q < p0 + n;
			}
		}
		bool via_map = xs(&seed) % 4 != 0;
		if (!via_map) {
			err = cvmconv_convert(c, M->base + p0 * SZ_4K, n * SZ_4K, to_private);
			ret = 0;
		} else {
			err = cvmconv_map_gpa_range(
				c, M->base + p0 * SZ_4K, n,
				to_private ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0, &ret);
		}
		if (pin != UINT64_MAX) {
			pr = region_of(pin);
			fake_gmem_unpin(&M->reg[pr].gmem, M->base + pin * SZ_4K - M->reg[pr].gpa,
					SZ_4K);
		}
		if (busy) {
			/* nothing changed: not here, not in the other regions */
			assert_int_equal(err, -EAGAIN);
			/* a guest hears -KVM_EFAULT should the VMM re-enter
			 * (cvmconv_convert() has no guest: ret stays 0) */
			assert_int_equal(ret, via_map ? (uint64_t)-CVMCONV_KVM_EFAULT : 0);
			busy_failures++;
			check_all(c);
			continue;
		}
		assert_int_equal(err, 0);
		assert_int_equal(ret, 0);
		model_convert(p0, p0 + n, to_private);
		check_all(c);
	}
	if (inplace_mask) {
		struct cvmconv_stats st = { .sz = sizeof(st) };

		assert_int_equal(cvmconv_get_stats(c, &st), 0);
		assert_int_equal(st.gmem_busy_failures, busy_failures);
		fprintf(stderr,
			"reference model, in-place mask %u: %u steps, %llu busy retries, "
			"%llu requests failed busy\n",
			inplace_mask, steps, (unsigned long long)st.gmem_busy_retries,
			(unsigned long long)busy_failures);
	}
	cvmconv_destroy(c);
	for (int r = 0; r < NREG; r++) {
		if (M->reg[r].inplace) {
			fake_gmem_fini(&M->reg[r].gmem);
		} else {
			close(M->reg[r].shared_fd);
			close(M->reg[r].private_fd);
		}
		free(M->held_r[r]);
	}
	fake_kvm_fini(&M->fake);
	free(M->priv);
	free(M);
}

static void test_reference_model_seed1(void **state)
{
	(void)state;
	run_model(1, 1500, 0);
}

static void test_reference_model_seed2(void **state)
{
	(void)state;
	run_model(0xC0FFEE, 1500, 0);
}

/* the middle region in place, between two two-backing ones */
static void test_reference_model_inplace_middle(void **state)
{
	(void)state;
	run_model(7, 1500, 1u << 1);
}

/* every region in place */
static void test_reference_model_inplace_all(void **state)
{
	(void)state;
	run_model(0xBADC0DE, 1500, 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_model_seed1),
		cmocka_unit_test(test_reference_model_seed2),
		cmocka_unit_test(test_reference_model_inplace_middle),
		cmocka_unit_test(test_reference_model_inplace_all),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
