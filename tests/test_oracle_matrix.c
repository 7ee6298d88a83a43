/* SPDX-License-Identifier: MIT */
/*
 * The live-page oracle over every combination that changes when a punch is
 * made: deferred or not; single requests, host conversions and batches
 * going both ways; a shared side on shmem (4 KiB), 2 MiB or 1 GiB hugetlb, or
 * a host mapping (shmem or 2 MiB hugetlb); region offsets aligned or not;
 * punches failing or not; listeners vetoing or not. Seeded random requests
 * run over two adjacent regions (the second always shmem); the fake KVM
 * checks every punch and discard at the moment it is made against the
 * attributes it holds (tests/fake_kvm.h): one page freed on its live side
 * aborts the test. After each step the library's view equals the fake's and
 * a plain per-page model, and the accounting is coherent
 * (punch_pending_bytes <= double_alloc_bytes; nothing pending after a flush
 * that reported success).
 *
 * Punches are checked and counted, not executed: the data itself is checked
 * against the kernel by test_integrity and test_defer_punch. So no huge page
 * needs to be reserved: an MFD_HUGETLB memfd, and a MAP_NORESERVE mapping of
 * one, report their page size without a page allocated.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "cvmconv.h"
#include "fake_kvm.h"
#include "fixture.h"

enum shared_kind { S_SHMEM, S_HUGE_2M, S_HUGE_1G, S_HVA_SHMEM, S_HVA_HUGE_2M, S_KINDS };

static const char *const kind_name[S_KINDS] = { "shmem", "hugetlb-2M", "hugetlb-1G", "hva-shmem",
						"hva-hugetlb-2M" };

struct matrix {
	struct fake_kvm fake;
	struct cvmconv *c;
	uint64_t base, npages, r0_pages;
	bool *priv;
	int fds[4];
	void *map;
	uint64_t map_len;
	uint64_t seed;
	bool fail_punches, veto;
	uint64_t punches, failed, vetoes, requests;
};

static struct matrix *X;

static uint64_t xs(void)
{
	X->seed ^= X->seed << 13;
	X->seed ^= X->seed >> 7;
	X->seed ^= X->seed << 17;
	return X->seed;
}

static int m_attrs(void *opaque, uint64_t gpa, uint64_t size, uint64_t attrs)
{
	return fake_kvm_ops.set_memory_attributes(opaque, gpa, size, attrs);
}

/* checked by the oracle, counted, and failed one time in four when asked */
static int m_punch(void *opaque, int fd, uint64_t off, uint64_t len)
{
	fake_kvm_live_in_punch(opaque, fd, NULL, off, len);
	X->punches++;
	if (X->fail_punches && xs() % 4 == 0) {
		X->failed++;
		return -EIO;
	}
	return 0;
}

static int m_discard(void *opaque, void *hva, uint64_t len)
{
	fake_kvm_live_in_punch(opaque, -1, hva, 0, len);
	X->punches++;
	if (X->fail_punches && xs() % 4 == 0) {
		X->failed++;
		return -EIO;
	}
	return 0;
}

static const struct cvmconv_ops m_ops = { m_attrs, m_punch, m_discard, NULL };

static int veto_before(void *opaque, uint64_t gpa, uint64_t size, bool to_private)
{
	(void)opaque;
	(void)gpa;
	(void)size;
	(void)to_private;
	if (xs() % 8 == 0) {
		X->vetoes++;
		return 1;
	}
	return 0;
}

static int shared_fd_of(enum shared_kind k, uint64_t size)
{
	uint64_t ps = k == S_HUGE_1G ? SZ_1G : k == S_HUGE_2M || k == S_HVA_HUGE_2M ? SZ_2M : SZ_4K;
	int fd = cvmconv_memfd_create("oracle-shared", (size + ps - 1) / ps * ps, ps);

	if (fd < 0)
		FIXTURE_SKIP("no memfd with %llu KiB pages: %s", (unsigned long long)(ps >> 10),
			     strerror(-fd));
	return fd;
}

static void check(void)
{
	struct cvmconv_stats st = { .sz = sizeof(st) };

	assert_int_equal(X->fake.live_punches, 0);
	for (uint64_t p = 0; p < X->npages; p++)
		if (fake_kvm_is_private(&X->fake, X->base + p * SZ_4K) != X->priv[p])
			fail_msg("page %llu: kernel (fake) %d, model %d", (unsigned long long)p,
				 fake_kvm_is_private(&X->fake, X->base + p * SZ_4K), X->priv[p]);
	assert_int_equal(fake_kvm_mismatches(&X->fake, X->c, X->base, X->npages * SZ_4K), 0);
	assert_int_equal(cvmconv_get_stats(X->c, &st), 0);
	assert_true(st.punch_pending_bytes <= st.double_alloc_bytes);
	assert_true(st.double_alloc_peak_bytes >= st.double_alloc_bytes);
}

static void model_set(uint64_t gpa, uint64_t size, bool to_private)
{
	for (uint64_t p = (gpa - X->base) / SZ_4K; p < (gpa - X->base + size) / SZ_4K; p++)
		X->priv[p] = to_private;
}

/* A random range inside both regions: single pages, huge-page sized and
 * aligned pieces, and stretches across the region boundary. */
static void pick(uint64_t hp_pages, uint64_t *gpa, uint64_t *size)
{
	uint64_t p0, n;

	switch (xs() % 10) {
	case 0: /* an odd page alone: many separate stale ranges pile up */
	case 5:
	case 6:
	case 7:
	case 8:
	case 9:
		p0 = (xs() % X->npages) | 1;
		n = 1;
		break;
	case 1: /* whole huge pages of the shared side (in pages of region 0) */
		p0 = (xs() % (X->r0_pages / hp_pages + 1)) * hp_pages;
		n = hp_pages * (1 + xs() % 2);
		break;
	case 2: /* across the boundary */
		p0 = X->r0_pages - 1 - xs() % 600;
		n = 2 + xs() % 1200;
		break;
	default:
		p0 = xs() % X->npages;
		n = 1 + xs() % (hp_pages + hp_pages / 2);
		break;
	}
	if (p0 >= X->npages)
		p0 = xs() % X->npages;
	if (p0 + n > X->npages)
		n = X->npages - p0;
	*gpa = X->base + p0 * SZ_4K;
	*size = n * SZ_4K;
}

static void step(uint64_t hp_pages)
{
	uint64_t gpa, size, hc = 0;
	int err;

	X->requests++;
	switch (xs() % 4) {
	case 0: { /* a batch, directions mixed, in any order */
		struct cvmconv_range r[6];
		unsigned n = 1 + (unsigned)(xs() % 6), k = 0;
		uint64_t next = X->base;
		bool guest = xs() & 1;

		for (unsigned i = 0; i < n && next < X->base + X->npages * SZ_4K; i++) {
			uint64_t left = (X->base + X->npages * SZ_4K - next) / SZ_4K;
			uint64_t span = xs() & 1 ? 64 : 2 * hp_pages;
			uint64_t skip = xs() % (left < span ? left : span);
			uint64_t len;

			if (skip >= left)
				break;
			left -= skip;
			if (xs() & 1) /* a single page, as in an SNP page state change */
				len = 1;
			else
				len = 1 + xs() % (left < hp_pages + 8 ? left : hp_pages + 8);
			r[k++] = (struct cvmconv_range){ next + skip * SZ_4K, len * SZ_4K,
							 (uint32_t)(xs() & 1), 0 };
			next += (skip + len) * SZ_4K;
		}
		if (!k)
			return;
		for (unsigned i = k - 1; i > 0; i--) { /* shuffle: order is irrelevant */
			unsigned j = (unsigned)(xs() % (i + 1));
			struct cvmconv_range t = r[i];

			r[i] = r[j];
			r[j] = t;
		}
		err = cvmconv_convert_batch(X->c, r, k, guest ? CVMCONV_BATCH_GUEST : 0,
					    guest ? &hc : NULL);
		if (err == -EPERM || (err == 0 && hc == (uint64_t)-CVMCONV_KVM_EPERM))
			return; /* vetoed: nothing changed (checked next) */
		assert_int_equal(err, 0);
		assert_int_equal(hc, 0);
		for (unsigned i = 0; i < k; i++)
			model_set(r[i].gpa, r[i].size, r[i].to_private);
		return;
	}
	case 1: { /* host conversion */
		bool to_private = xs() & 1;

		pick(hp_pages, &gpa, &size);
		err = cvmconv_convert(X->c, gpa, size, to_private);
		if (err == -EPERM)
			return;
		assert_int_equal(err, 0);
		model_set(gpa, size, to_private);
		return;
	}
	default: { /* guest hypercall */
		bool to_private = xs() & 1;

		pick(hp_pages, &gpa, &size);
		err = cvmconv_map_gpa_range(X->c, gpa, size / SZ_4K,
					    to_private ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0, &hc);
		assert_int_equal(err, 0);
		if (hc == (uint64_t)-CVMCONV_KVM_EPERM)
			return;
		assert_int_equal(hc, 0);
		model_set(gpa, size, to_private);
		return;
	}
	}
}

static void run(enum shared_kind kind, bool defer, bool unaligned, bool fail, bool veto,
		unsigned steps)
{
	uint64_t hp = kind == S_HUGE_1G				   ? SZ_1G
		      : kind == S_HUGE_2M || kind == S_HVA_HUGE_2M ? SZ_2M
								   : SZ_2M;
	/* region 0: three huge pages of its shared side and a bit; region 1:
	 * 2 MiB + 40 KiB of shmem after it */
	uint64_t size0 = 3 * hp + 24 * SZ_4K, size1 = SZ_2M + 10 * SZ_4K;
	uint64_t off = unaligned ? hp / 2 + 3 * SZ_4K : 0;
	struct cvmconv_config cfg;
	struct cvmconv_region r0, r1;
	struct cvmconv_listener l = { .sz = sizeof(l), .before = veto_before };

	X = calloc(1, sizeof(*X));
	assert_non_null(X);
	memset(X->fds, -1, sizeof(X->fds));
	X->seed = 0x9E3779B97F4A7C15ULL ^
		  ((uint64_t)kind << 8 | defer << 4 | unaligned << 3 | fail << 2 | veto << 1);
	X->fail_punches = fail;
	X->veto = veto;
	fake_kvm_init(&X->fake, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&X->fake, CVMCONV_UNALIGNED_ALLOW);
	cfg.ops = &m_ops;
	cfg.ops_opaque = &X->fake;
	cfg.flags = defer ? CVMCONV_DEFER_PUNCH : 0;
	assert_int_equal(cvmconv_create(&cfg, &X->c), 0);
	if (veto)
		assert_true(cvmconv_add_listener(X->c, &l) >= 0);

	/* GPA not 2 MiB aligned when unaligned */
	X->base = 4 * SZ_1G + (unaligned ? 5 * SZ_4K : 0);
	X->r0_pages = size0 / SZ_4K;
	X->npages = (size0 + size1) / SZ_4K;
	X->priv = calloc(X->npages, sizeof(bool));
	assert_non_null(X->priv);

	r0 = (struct cvmconv_region){ .sz = sizeof(r0),
				      .gpa = X->base,
				      .size = size0,
				      .shared_offset = off,
				      .unaligned = -1 };
	X->fds[0] = shared_fd_of(kind, off + size0);
	X->fds[1] = test_private_fd(size0);
	assert_true(X->fds[1] >= 0);
	r0.private_fd = X->fds[1];
	if (kind == S_HVA_SHMEM || kind == S_HVA_HUGE_2M) {
		X->map_len = (off + size0 + hp - 1) / hp * hp;
		X->map = mmap(NULL, X->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			      X->fds[0], 0);
		if (X->map == MAP_FAILED)
			FIXTURE_SKIP("mmap of the %s backing: %s", kind_name[kind],
				     strerror(errno));
		r0.shared_fd = -1;
		r0.shared_hva = (uint8_t *)X->map + off;
		r0.shared_offset = 0;
	} else {
		r0.shared_fd = X->fds[0];
	}
	assert_int_equal(fake_kvm_add_region(&X->fake, X->c, &r0), 0);
	X->fds[2] = cvmconv_memfd_create("oracle-shared1", size1, SZ_4K);
	X->fds[3] = test_private_fd(size1);
	assert_true(X->fds[2] >= 0 && X->fds[3] >= 0);
	r1 = (struct cvmconv_region){ .sz = sizeof(r1),
				      .gpa = X->base + size0,
				      .size = size1,
				      .private_fd = X->fds[3],
				      .shared_fd = X->fds[2],
				      .unaligned = -1 };
	assert_int_equal(fake_kvm_add_region(&X->fake, X->c, &r1), 0);

	for (unsigned i = 0; i < steps; i++) {
		step(hp / SZ_4K);
		/* rarely: with CVMCONV_DEFER_PUNCH, stale ranges must be able to
		 * pile up past CVMCONV_DEFER_RANGES between flushes */
		if (xs() % 128 == 0) {
			int err = cvmconv_flush(X->c);
			struct cvmconv_stats st = { .sz = sizeof(st) };

			assert_int_equal(cvmconv_get_stats(X->c, &st), 0);
			if (err == 0)
				assert_int_equal(st.punch_pending_bytes, 0);
			else
				assert_int_equal(err, -EIO);
		}
		/* the full comparison costs a walk of every page: 1 GiB sides
		 * are compared every 32 steps, the oracle checks every punch */
		if (kind != S_HUGE_1G || i % 32 == 31)
			check();
	}
	X->fail_punches = false;
	assert_int_equal(cvmconv_flush(X->c), 0);
	check();
	print_message("oracle %-15s defer %d unaligned %d fail %d veto %d: %llu requests, %llu "
		      "punches checked (%llu failed), %llu vetoes\n",
		      kind_name[kind], defer, unaligned, fail, veto,
		      (unsigned long long)X->requests, (unsigned long long)X->punches,
		      (unsigned long long)X->failed, (unsigned long long)X->vetoes);
	cvmconv_destroy(X->c);
	if (X->map && X->map != MAP_FAILED)
		munmap(X->map, X->map_len);
	for (int i = 0; i < 4; i++)
		if (X->fds[i] >= 0)
			close(X->fds[i]);
	fake_kvm_fini(&X->fake);
	free(X->priv);
	free(X);
	X = NULL;
}

static void run_kind(enum shared_kind kind)
{
	const char *quick = getenv("CVMCONV_TEST_QUICK");
	unsigned steps = quick && *quick == '1' ? 40 : kind == S_HUGE_1G ? 200 : 400;

	for (int m = 0; m < 16; m++)
		run(kind, m & 1, m & 2, m & 4, m & 8, steps);
}

static void test_oracle_shmem(void **state)
{
	(void)state;
	run_kind(S_SHMEM);
}

static void test_oracle_huge_2m(void **state)
{
	(void)state;
	run_kind(S_HUGE_2M);
}

static void test_oracle_huge_1g(void **state)
{
	(void)state;
	run_kind(S_HUGE_1G);
}

static void test_oracle_hva_shmem(void **state)
{
	(void)state;
	run_kind(S_HVA_SHMEM);
}

static void test_oracle_hva_huge_2m(void **state)
{
	(void)state;
	run_kind(S_HVA_HUGE_2M);
}

/* The oracle itself: a punch of a live page is reported (here counted
 * instead of aborting), a punch of stale pages is not. */
static void test_oracle_catches_live_punch(void **state)
{
	struct fake_kvm f;
	struct cvmconv_region r = { .sz = sizeof(r),
				    .gpa = SZ_1G,
				    .size = 16 * SZ_4K,
				    .private_fd = 7,
				    .private_offset = 0x10000,
				    .shared_fd = 8,
				    .shared_offset = 0,
				    .unaligned = -1 };

	(void)state;
	print_message("two oracle reports are expected next\n");
	fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
	f.abort_on_live = false;
	fake_kvm_bind_region(&f, &r);
	/* pages 4..8 private */
	assert_int_equal(fake_kvm_ops.set_memory_attributes(&f, SZ_1G + 4 * SZ_4K, 4 * SZ_4K,
							    CVMCONV_ATTR_PRIVATE),
			 0);
	/* shared side: pages 4..8 are stale, page 3 is live */
	assert_int_equal(fake_kvm_live_in_punch(&f, 8, NULL, 4 * SZ_4K, 4 * SZ_4K), 0);
	assert_int_equal(fake_kvm_live_in_punch(&f, 8, NULL, 3 * SZ_4K, 2 * SZ_4K), 1);
	/* private side: pages 0..4 are stale, 4 is live; a piece of a page counts */
	assert_int_equal(fake_kvm_live_in_punch(&f, 7, NULL, 0x10000, 4 * SZ_4K), 0);
	assert_int_equal(fake_kvm_live_in_punch(&f, 7, NULL, 0x10000 + 4 * SZ_4K + 512, 512), 1);
	/* another fd, or outside the region: not ours */
	assert_int_equal(fake_kvm_live_in_punch(&f, 9, NULL, 4 * SZ_4K, SZ_4K), 0);
	assert_int_equal(fake_kvm_live_in_punch(&f, 8, NULL, 16 * SZ_4K, SZ_4K), 0);
	assert_int_equal(f.live_punches, 2);
	fake_kvm_fini(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oracle_catches_live_punch),
		cmocka_unit_test(test_oracle_shmem),
		cmocka_unit_test(test_oracle_huge_2m),
		cmocka_unit_test(test_oracle_huge_1g),
		cmocka_unit_test(test_oracle_hva_shmem),
		cmocka_unit_test(test_oracle_hva_huge_2m),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
