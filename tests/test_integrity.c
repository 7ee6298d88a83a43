/* SPDX-License-Identifier: MIT */
/*
 * Data integrity over real memory: no conversion, however it is shaped or
 * interleaved, loses a byte of the guest's live data, and every page that
 * becomes live reads exactly what the kernel says it must.
 *
 * Three adjacent regions, not 2 MiB aligned in guest physical space:
 *   R0  shared side a shmem memfd (punched with fallocate),
 *   R1  shared side an MFD_HUGETLB memfd starting 1 MiB into the file, so
 *       its first and last huge pages are only partly in the region
 *       (shmem instead, with a visible SKIP line, without huge pages),
 *   R2  shared side a shmem mapping given only as an address (madvise),
 * each with a private side that is a real guest_memfd where the host offers
 * one (else a shmem stand-in; the run says which). Every 4 KiB page holds, on its live
 * side, a pattern unique to (region, page, generation, word).
 *
 * Seeded random conversions — aligned, unaligned, single pages, spanning
 * regions, overlapping, both directions, through map_gpa_range, kvm_run
 * memory faults, host conversions and batches — first one at a time with a
 * check after each, then from several threads at once with the checks at
 * step boundaries (after the joins). A listener records the runs the
 * library committed, in its own serialisation order (runs on the same
 * region are serialised by its lock; runs on disjoint regions commute); the
 * harness replays them on a model of both sides of every page:
 *   - a 4 KiB side is punched when it goes stale: it reads zeros when it
 *     is live again;
 *   - a huge page is punched at the end of a request (a transaction: the
 *     runs of one call) that left all its pages stale, when it lies wholly
 *     in the region: until then every stale page on it keeps its bytes (a
 *     partial punch would zero them). The listener tags each run with its
 *     calling thread's current request, and a request's end on a region is
 *     where the next request's first run there begins (the region's lock
 *     is held from the first run to the punches), or a step boundary;
 * and after every step compares every live page (and every stale page of a
 * huge page still allocated) with the model, the library's and the fake
 * kernel's views with the model, and the memfds' st_blocks with the live
 * and held pages. Pages that became live are then re-tagged, as a guest
 * would write them. It prints the pages verified and the pages lost, which
 * must be 0. CVMCONV_TEST_QUICK=1 runs a tenth of the steps (valgrind).
 * Every word of every checked page is compared every FULL_EVERY steps and
 * at the end; the steps between compare three words per page.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/kvm.h>

#include "cvmconv.h"
#include "fake_kvm.h"
#include "fixture.h"
#include "kvm_compat.h"

#define NREG 3
#define NTHREADS 4
#define MAX_RUNS (1u << 16)

struct ireg {
	uint64_t gpa, size, npages, first; /* first: index of page 0 in all pages */
	int shared_fd, private_fd;
	uint8_t *shared_map, *private_map;
	uint64_t shared_offset, shared_file;
	bool huge, by_hva;
	bool *held;    /* huge shared side: per huge page of the file */
	bool *touched; /* per huge page: made stale in the open request */
	uint64_t nhuge, open_tx;
};

static struct integ {
	struct fake_kvm fake;
	struct cvmconv *c;
	struct ireg r[NREG];
	uint64_t base, npages;
	bool *priv;
	uint32_t *gen[2]; /* content per side: 0 zeros, else pattern generation */
	uint32_t next_gen;
	/* runs committed, in the library's order (written under its lock) */
	struct run {
		uint64_t gpa, size, tx;
		bool to_private;
	} * runs;
	unsigned nruns;
	bool runs_overflow;
	uint64_t pages_verified, pages_lost, conversions, refused, steps;
	bool reserved, huge_ok;
} * I;

static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s += 0x9E3779B97F4A7C15ULL;

	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
	return x ^ (x >> 31);
}

static unsigned scale(unsigned n)
{
	const char *q = getenv("CVMCONV_TEST_QUICK");

	return q && *q && *q != '0' ? (n + 9) / 10 : n;
}

/* ---- pages and patterns ---- */

static int region_of(uint64_t page)
{
	for (int i = 0; i < NREG; i++)
		if (page >= I->r[i].first && page < I->r[i].first + I->r[i].npages)
			return i;
	return -1;
}

static uint8_t *page_at(uint64_t page, bool private_side)
{
	struct ireg *r = &I->r[region_of(page)];
	uint64_t rel = page - r->first;

	if (private_side)
		return r->private_map + rel * SZ_4K;
	return r->shared_map + r->shared_offset + rel * SZ_4K;
}

static uint64_t word(uint32_t gen, uint64_t page, bool private_side, unsigned i)
{
	return (uint64_t)gen << 40 | (uint64_t)private_side << 39 | page << 9 | i;
}

static void tag(uint64_t page, bool private_side)
{
	uint64_t *w = (uint64_t *)page_at(page, private_side);
	uint32_t gen = ++I->next_gen;

	for (unsigned i = 0; i < SZ_4K / 8; i++)
		w[i] = word(gen, page, private_side, i);
	I->gen[private_side][page] = gen;
}

/* Does the page hold what the model says? @full: every word; else the
 * first, middle and last (a punch zeroes whole 4 KiB pages, so they see
 * it; the full comparison runs every FULL_EVERY steps and at the end). */
#define FULL_EVERY 8
static bool holds(uint64_t page, bool private_side, bool full)
{
	const uint64_t *w = (const uint64_t *)page_at(page, private_side);
	uint32_t gen = I->gen[private_side][page];

	for (unsigned i = 0; i < SZ_4K / 8; i += full ? 1 : 255)
		if (w[i] != (gen ? word(gen, page, private_side, i) : 0))
			return false;
	return true;
}

/* ---- the model of both sides ---- */

static uint64_t hpage_of(const struct ireg *r, uint64_t rel)
{
	return (r->shared_offset + rel * SZ_4K) / SZ_2M;
}

/* Region pages of huge page @h, clipped to the region; whole = inside. */
static bool hspan(const struct ireg *r, uint64_t h, uint64_t *lo, uint64_t *hi)
{
	uint64_t start = h * SZ_2M, end = start + SZ_2M, off = r->shared_offset;
	uint64_t a = start > off ? start - off : 0, b = end - off;

	if (b > r->size)
		b = r->size;
	*lo = a / SZ_4K;
	*hi = b / SZ_4K;
	return start >= off && end - off <= r->size;
}

/* The request open on huge region @r ends: the huge pages it touched
 * that are still wholly stale, held and wholly inside are punched. */
static void close_request(struct ireg *r)
{
	for (uint64_t h = 0; r->huge && h < r->nhuge; h++) {
		uint64_t lo, hi;
		bool all = true;

		if (!r->touched[h])
			continue;
		r->touched[h] = false;
		if (!r->held[h] || !hspan(r, h, &lo, &hi))
			continue;
		for (uint64_t q = lo; q < hi && all; q++)
			all = I->priv[r->first + q];
		if (!all)
			continue;
		r->held[h] = false;
		for (uint64_t q = lo; q < hi; q++)
			I->gen[0][r->first + q] = 0;
	}
}

/* Requests: one id per call, per thread (the listener runs in the caller). */
static uint64_t tx_counter;
static _Thread_local uint64_t cur_tx;

static void next_tx(void)
{
	cur_tx = __atomic_add_fetch(&tx_counter, 1, __ATOMIC_RELAXED);
}

/* A committed run, as the kernel saw it: the stale side is released. */
static void replay(const struct run *run)
{
	uint64_t p0 = (run->gpa - I->base) / SZ_4K, p1 = p0 + run->size / SZ_4K;

	/* a run of another request on a region closes the one open there */
	for (int i = 0; i < NREG; i++) {
		struct ireg *r = &I->r[i];

		if (p1 <= r->first || p0 >= r->first + r->npages || r->open_tx == run->tx)
			continue;
		close_request(r);
		r->open_tx = run->tx;
	}

	for (uint64_t p = p0; p < p1; p++) {
		struct ireg *r = &I->r[region_of(p)];
		bool to = run->to_private;

		assert_int_not_equal(I->priv[p], to); /* a run is made of changing pages */
		I->priv[p] = to;
		if (!to) {
			I->gen[1][p] = 0; /* the private side (4 KiB) is punched */
			if (r->huge)	  /* live again: its huge page counts as allocated */
				r->held[hpage_of(r, p - r->first)] = true;
		} else if (!r->huge) {
			I->gen[0][p] = 0; /* a 4 KiB shared side is punched at once */
		}
	}
	/* huge pages of the shared side with pages made stale: candidates for
	 * the punch at the end of the request */
	for (int i = 0; i < NREG; i++) {
		struct ireg *r = &I->r[i];

		if (!r->huge || !run->to_private)
			continue;
		for (uint64_t p = p0; p < p1; p++)
			if (p >= r->first && p < r->first + r->npages)
				r->touched[hpage_of(r, p - r->first)] = true;
	}
}

/* Called with the locks of the regions the run covers held: runs on the
 * same memory arrive in the library's order; runs on disjoint regions may
 * arrive concurrently, so the log has its own lock. */
static pthread_mutex_t runs_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	(void)opaque;
	if (result)
		return;
	pthread_mutex_lock(&runs_lock);
	if (I->nruns == MAX_RUNS)
		I->runs_overflow = true;
	else
		I->runs[I->nruns++] = (struct run){ gpa, size, cur_tx, to_private };
	pthread_mutex_unlock(&runs_lock);
}

/* ---- the check at a step boundary ---- */

static void check_step(bool full)
{
	uint64_t lost = 0;

	unsigned nruns = I->nruns;

	assert_false(I->runs_overflow);
	for (unsigned k = 0; k < I->nruns; k++)
		replay(&I->runs[k]);
	for (int i = 0; i < NREG; i++) { /* every request has ended */
		close_request(&I->r[i]);
		I->r[i].open_tx = 0;
	}
	I->nruns = 0;
	I->steps++;
	full = full || I->steps % FULL_EVERY == 0;

	for (uint64_t p = 0; p < I->npages; p++) {
		uint64_t gpa = I->base + p * SZ_4K;
		struct ireg *r = &I->r[region_of(p)];
		bool priv = I->priv[p];

		if (cvmconv_is_private(I->c, gpa) != priv ||
		    fake_kvm_is_private(&I->fake, gpa) != priv) {
			for (unsigned k = 0; k < nruns; k++)
				if (gpa >= I->runs[k].gpa && gpa < I->runs[k].gpa + I->runs[k].size)
					fprintf(stderr, "run %u of %u: 0x%llx+0x%llx to %s\n", k,
						nruns, (unsigned long long)I->runs[k].gpa,
						(unsigned long long)I->runs[k].size,
						I->runs[k].to_private ? "private" : "shared");
			fail_msg("page 0x%llx: library %d fake %d model %d",
				 (unsigned long long)gpa, cvmconv_is_private(I->c, gpa),
				 fake_kvm_is_private(&I->fake, gpa), priv);
		}
		/* the live side */
		I->pages_verified++;
		if (!holds(p, priv, full)) {
			lost++;
			fprintf(stderr, "LOST: page 0x%llx (R%d, %s side live, generation %u)\n",
				(unsigned long long)gpa, region_of(p), priv ? "private" : "shared",
				I->gen[priv][p]);
		}
		/* a stale page of a huge page still allocated keeps its bytes */
		if (priv && r->huge && r->held[hpage_of(r, p - r->first)]) {
			I->pages_verified++;
			if (!holds(p, false, full)) {
				lost++;
				fprintf(stderr,
					"LOST: page 0x%llx: stale page of a held huge page "
					"changed (partial punch?)\n",
					(unsigned long long)gpa);
			}
		}
	}
	I->pages_lost += lost;
	if (lost)
		fail_msg("%llu pages lost in step %llu", (unsigned long long)lost,
			 (unsigned long long)I->steps);

	/* the guest writes what it now owns: newly live pages get a new tag */
	for (uint64_t p = 0; p < I->npages; p++)
		if (!I->gen[I->priv[p]][p])
			tag(p, I->priv[p]);

	/* the kernel's allocation: every live page (all written now), stale
	 * pages of held huge pages, nothing else */
	for (int i = 0; i < NREG; i++) {
		struct ireg *r = &I->r[i];
		uint64_t pages[2] = { 0, 0 }, held = 0;

		for (uint64_t q = 0; q < r->npages; q++)
			pages[I->priv[r->first + q]]++;
		assert_int_equal(fd_allocated_bytes(r->private_fd), pages[1] * SZ_4K);
		if (!r->huge) {
			assert_int_equal(fd_allocated_bytes(r->shared_fd), pages[0] * SZ_4K);
			continue;
		}
		for (uint64_t h = 0; h < r->nhuge; h++) {
			uint64_t lo, hi;
			bool data = false;

			hspan(r, h, &lo, &hi);
			for (uint64_t q = lo; q < hi; q++)
				data = data || I->gen[0][r->first + q];
			/* held <=> some page of it holds data */
			assert_int_equal(r->held[h], data);
			held += r->held[h];
		}
		assert_int_equal(fd_allocated_bytes(r->shared_fd), held * SZ_2M);
	}
}

/* ---- requests ---- */

/* A random range in pages [*p0, *p0 + *n) of all regions. */
static void pick_range(uint64_t *s, uint64_t *p0, uint64_t *n)
{
	uint64_t base_page = I->base / SZ_4K;

	switch (rnd(s) % 6) {
	case 0: /* one page */
		*p0 = rnd(s) % I->npages;
		*n = 1;
		break;
	case 1: /* 2 MiB aligned in GPA */
		*p0 = ((base_page + rnd(s) % I->npages) & ~511ULL);
		*p0 = *p0 < base_page ? 0 : *p0 - base_page;
		*n = 512 * (1 + rnd(s) % 2);
		break;
	case 2: /* across a region boundary */ {
		int i = (int)(rnd(s) % (NREG - 1));
		uint64_t edge = I->r[i + 1].first;

		*n = 1 + rnd(s) % 1024;
		*p0 = edge - 1 - rnd(s) % (*n > 1 ? *n - 1 : 1);
		break;
	}
	default: /* anything */
		*p0 = rnd(s) % I->npages;
		*n = 1 + rnd(s) % 1500;
		break;
	}
	if (*p0 >= I->npages)
		*p0 = I->npages - 1;
	if (*p0 + *n > I->npages)
		*n = I->npages - *p0;
}

/* Worker threads cannot use cmocka's asserts (they longjmp): the first
 * failure is recorded and the main thread fails the test after the join. */
static char req_failure[256];
static int req_failed;

#define REQ_CHECK(cond)                                                                           \
	do {                                                                                      \
		if (!(cond)) {                                                                    \
			if (!__atomic_exchange_n(&req_failed, 1, __ATOMIC_SEQ_CST))               \
				snprintf(req_failure, sizeof(req_failure), "%s:%d: %s", __FILE__, \
					 __LINE__, #cond);                                        \
			return;                                                                   \
		}                                                                                 \
	} while (0)

/* One random request, checked. */
static void one_request(uint64_t *s)
{
	uint64_t p0, n, hc = 1;
	bool to_private = rnd(s) & 1;
	unsigned kind = (unsigned)(rnd(s) % 10);
	int ret;

	next_tx();
	pick_range(s, &p0, &n);
	uint64_t gpa = I->base + p0 * SZ_4K, size = n * SZ_4K;

	if (kind <= 4) {
		ret = cvmconv_map_gpa_range(I->c, gpa, n,
					    to_private ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0, &hc);
		REQ_CHECK(ret == 0 && hc == 0);
	} else if (kind == 5) {
		struct kvm_run run;
		struct cvmconv_kvm_memory_fault *mf;

		memset(&run, 0, sizeof(run));
		run.exit_reason = KVM_EXIT_MEMORY_FAULT;
		mf = cvmconv_run_memory_fault(&run);
		mf->gpa = gpa;
		mf->size = size;
		mf->flags = to_private ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0;
		REQ_CHECK(cvmconv_handle_exit(I->c, &run) == 1);
	} else if (kind <= 7) {
		REQ_CHECK(cvmconv_convert(I->c, gpa, size, to_private) == 0);
	} else if (kind == 8) {
		/* a batch: up to 4 disjoint pieces of the range, mixed directions */
		struct cvmconv_range rg[4];
		unsigned m = 0;

		for (uint64_t at = p0; at < p0 + n && m < 4; m++) {
			uint64_t len = 1 + rnd(s) % (p0 + n - at);
			rg[m] = (struct cvmconv_range){ I->base + at * SZ_4K, len * SZ_4K,
							(uint32_t)(rnd(s) & 1), 0 };
			at += len + rnd(s) % 4;
		}
		REQ_CHECK(cvmconv_convert_batch(I->c, rg, m, CVMCONV_BATCH_GUEST, &hc) == 0);
		REQ_CHECK(hc == 0);
	} else {
		/* refused: reaches past the last region; nothing changes */
		ret = cvmconv_map_gpa_range(I->c, I->base + (I->npages - 1) * SZ_4K, n + 1,
					    to_private ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0, &hc);
		REQ_CHECK(ret == 0 && hc == (uint64_t) - (int64_t)CVMCONV_KVM_EINVAL);
		__atomic_add_fetch(&I->refused, 1, __ATOMIC_RELAXED);
		return;
	}
	__atomic_add_fetch(&I->conversions, 1, __ATOMIC_RELAXED);
}

struct worker {
	pthread_t t;
	uint64_t seed;
	unsigned requests;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (unsigned i = 0; i < w->requests; i++)
		one_request(&w->seed);
	return NULL;
}

/* ---- setup ---- */

static int memfd_of(uint64_t size, bool huge)
{
	int fd = memfd_create("integrity", MFD_CLOEXEC | (huge ? MFD_HUGETLB : 0));

	if (fd >= 0 && ftruncate(fd, (off_t)size) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static uint8_t *map_of(int fd, uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

static int setup(void **state)
{
	/* R0 6 MiB + 40 KiB from 8 KiB below a 2 MiB boundary; R1 8 MiB of a
	 * 10 MiB hugetlb file from 1 MiB in; R2 2 MiB + 12 KiB by address */
	const uint64_t sizes[NREG] = { 3 * SZ_2M + 10 * SZ_4K, 4 * SZ_2M, SZ_2M + 3 * SZ_4K };
	struct cvmconv_listener l = { sizeof(l), NULL, on_after, NULL, 0 };
	struct cvmconv_config cfg;
	const char *why = NULL;
	uint64_t gpa;
	int rr;

	(void)state;
	I = calloc(1, sizeof(*I));
	assert_non_null(I);
	I->runs = calloc(MAX_RUNS, sizeof(*I->runs));
	assert_non_null(I->runs);
	rr = hugepages_reserve(5 + 2, &why);
	I->reserved = rr == 0;
	if (rr)
		fixture_print_skip("test_integrity",
				   "R1 uses shmem: cannot reserve 7 2 MiB huge pages: %s (%s)",
				   why ? why : "?", strerror(-rr));
	fake_kvm_init(&I->fake, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&I->fake, CVMCONV_UNALIGNED_ALLOW);
	assert_int_equal(cvmconv_create(&cfg, &I->c), 0);
	assert_true(cvmconv_add_listener(I->c, &l) >= 0);

	I->base = 8 * SZ_1G + SZ_2M - 2 * SZ_4K;
	gpa = I->base;
	for (int i = 0; i < NREG; i++) {
		struct ireg *r = &I->r[i];
		struct cvmconv_region reg = { .sz = sizeof(reg), .unaligned = -1 };

		r->gpa = gpa;
		r->size = sizes[i];
		r->npages = r->size / SZ_4K;
		r->first = (gpa - I->base) / SZ_4K;
		r->huge = i == 1 && I->reserved;
		r->by_hva = i == 2;
		r->shared_offset = i == 1 ? SZ_2M / 2 : 0;
		r->shared_file = i == 1 ? 5 * SZ_2M : r->size;
		r->shared_fd = memfd_of(r->shared_file, r->huge);
		if (r->shared_fd < 0 && r->huge) {
			fixture_print_skip("test_integrity", "R1 uses shmem: MFD_HUGETLB: %s",
					   strerror(errno));
			r->huge = false;
			r->shared_fd = memfd_of(r->shared_file, false);
		}
		assert_true(r->shared_fd >= 0);
		r->shared_map = map_of(r->shared_fd, r->shared_file);
		r->private_fd = test_private_fd(r->size); /* guest_memfd where the host has it */
		assert_true(r->private_fd >= 0);
		r->private_map = map_of(r->private_fd, r->size);
		if (r->huge) {
			r->nhuge = r->shared_file / SZ_2M;
			r->held = calloc(r->nhuge, sizeof(bool));
			r->touched = calloc(r->nhuge, sizeof(bool));
			assert_non_null(r->held);
			assert_non_null(r->touched);
			/* the region's huge pages are allocated once the guest
			 * writes them (just below) */
			for (uint64_t h = 0; h < r->nhuge; h++)
				r->held[h] = true;
		}
		reg.gpa = gpa;
		reg.size = r->size;
		reg.private_fd = r->private_fd;
		reg.shared_fd = r->by_hva ? -1 : r->shared_fd;
		reg.shared_offset = r->by_hva ? 0 : r->shared_offset;
		reg.shared_hva = r->by_hva ? r->shared_map : NULL;
		assert_int_equal(fake_kvm_add_region(&I->fake, I->c, &reg), 0);
		gpa += r->size;
	}
	I->huge_ok = I->r[1].huge;
	I->npages = (gpa - I->base) / SZ_4K;
	I->priv = calloc(I->npages, sizeof(bool));
	I->gen[0] = calloc(I->npages, sizeof(uint32_t));
	I->gen[1] = calloc(I->npages, sizeof(uint32_t));
	assert_true(I->priv && I->gen[0] && I->gen[1]);
	for (uint64_t p = 0; p < I->npages; p++)
		tag(p, false);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (!I)
		return 0;
	printf("test_integrity: %llu steps, %llu conversions (%llu refused), %llu page checks, "
	       "%llu pages lost, hugetlb %s\n",
	       (unsigned long long)I->steps, (unsigned long long)I->conversions,
	       (unsigned long long)I->refused, (unsigned long long)I->pages_verified,
	       (unsigned long long)I->pages_lost, I->huge_ok ? "yes" : "no (skipped)");
	cvmconv_destroy(I->c);
	for (int i = 0; i < NREG; i++) {
		struct ireg *r = &I->r[i];

		munmap(r->shared_map, r->shared_file);
		munmap(r->private_map, r->size);
		close(r->shared_fd);
		close(r->private_fd);
		free(r->held);
		free(r->touched);
	}
	fake_kvm_fini(&I->fake);
	if (I->reserved)
		hugepages_release();
	free(I->priv);
	free(I->gen[0]);
	free(I->gen[1]);
	free(I->runs);
	free(I);
	I = NULL;
	return 0;
}

/* ---- the tests ---- */

static void test_integrity_serial(void **state)
{
	uint64_t seed = 0x1D7E6A11ULL;
	unsigned steps = scale(500);

	(void)state;
	printf("test_integrity_serial: seed 0x%llx, %u steps\n", (unsigned long long)seed, steps);
	check_step(true);
	for (unsigned i = 0; i < steps; i++) {
		one_request(&seed);
		if (req_failed)
			fail_msg("%s", req_failure);
		check_step(false);
	}
	check_step(true);
}

static void test_integrity_threads(void **state)
{
	uint64_t seed = 0x7A11C0DEULL;
	unsigned steps = scale(250);
	struct worker w[NTHREADS];

	(void)state;
	printf("test_integrity_threads: seed 0x%llx, %u steps x %d threads x 1-3 requests\n",
	       (unsigned long long)seed, steps, NTHREADS);
	check_step(true);
	for (unsigned i = 0; i < steps; i++) {
		for (int t = 0; t < NTHREADS; t++) {
			w[t].seed = rnd(&seed);
			w[t].requests = 1 + (unsigned)(rnd(&seed) % 3);
			assert_int_equal(pthread_create(&w[t].t, NULL, worker_main, &w[t]), 0);
		}
		for (int t = 0; t < NTHREADS; t++)
			assert_int_equal(pthread_join(w[t].t, NULL), 0);
		if (req_failed)
			fail_msg("%s", req_failure);
		check_step(false);
	}
	/* everything back to shared, then everything private, whole-range */
	next_tx();
	assert_int_equal(cvmconv_convert(I->c, I->base, I->npages * SZ_4K, false), 0);
	check_step(true);
	next_tx();
	assert_int_equal(cvmconv_convert(I->c, I->base, I->npages * SZ_4K, true), 0);
	check_step(true);
	assert_int_equal(I->pages_lost, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_integrity_serial),
		cmocka_unit_test(test_integrity_threads),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
