/* SPDX-License-Identifier: MIT */
/* fuzz_exits: the fixed geometry (created once, LLVMFuzzerInitialize),
 * the harness state and one input (LLVMFuzzerTestOneInput). */
#include "fuzz_exits.h"

/* FUZZ_EXITS_TRACE=1 prints every operation (to debug a reproducer). */
bool tracing;
/* Set by FUZZ_EXITS_LENIENT_BATCH: see batch_valid(). */
bool lenient_batch;

void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void trace(const char *fmt, ...)
{
	va_list ap;

	if (!tracing)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

struct fz_region R[NREG];
struct fake_gmem G1;	    /* R1's guest_memfd when it is in place */
uint64_t win_lo, win_pages; /* model window: all regions +- 2 MiB */
struct harness H;

#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#endif

/* ---- setup ---- */

static void *map_shared(int fd, uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
	return p;
}

static void print_figures(void)
{
	fprintf(stderr, "fuzz_exits: %llu inputs, %llu operations, %llu page states checked\n",
		(unsigned long long)H.inputs, (unsigned long long)H.ops,
		(unsigned long long)H.pages_checked);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* R0 [1G+2M-8K, 1G+4M+8K): one whole 2 MiB extent and 8 KiB beyond it
	 * on both sides; R1 adjacent up to 1G+5M; a 1 MiB gap; R2 [1G+6M,
	 * 1G+11M) whose hugetlb side starts 1 MiB into its file, so its huge
	 * pages are neither whole at the start nor aligned with GPA extents. */
	const uint64_t base = (1ULL << 30) + HPG - 2 * PG;
	const uint64_t sizes[NREG] = { HPG + 4 * PG, HPG / 2 - 2 * PG, 5 * (HPG / 2) };
	const uint64_t gap = HPG / 2;

	(void)argc;
	(void)argv;
	tracing = getenv("FUZZ_EXITS_TRACE") != NULL;
	atexit(print_figures);
	lenient_batch = getenv("FUZZ_EXITS_LENIENT_BATCH") != NULL;
	for (int i = 0; i < NREG; i++) {
		struct fz_region *r = &R[i];

		r->gpa = i == 0 ? base : R[i - 1].gpa + R[i - 1].size + (i == 2 ? gap : 0);
		r->size = sizes[i];
		r->npages = r->size / PG;
		r->private_fd = make_memfd("fz-private", r->size, 0);
		CHECK(r->private_fd >= 0, "memfd: %s", strerror(errno));
		/* R2's private side is not mapped: tagging it would cost a page
		 * fault per converted page; punches of it are still checked */
		if (i != 2)
			r->private_map = map_shared(r->private_fd, r->size);
		if (i == 2) {
			/* shared side: hugetlb, offset 1 MiB so the first huge page
			 * is partly outside the region; never mapped or touched */
			r->shared_offset = HPG / 2;
			r->shared_fd = make_memfd("fz-huge", 3 * HPG, MFD_HUGETLB);
			r->shared_huge = r->shared_fd >= 0;
			if (!r->shared_huge) {
				fprintf(stderr, "fuzz_exits: no MFD_HUGETLB (%s): R2 uses shmem\n",
					strerror(errno));
				r->shared_offset = 0;
				r->shared_fd = make_memfd("fz-shared", r->size, 0);
				CHECK(r->shared_fd >= 0, "memfd: %s", strerror(errno));
			}
		} else {
			r->shared_fd = make_memfd("fz-shared", r->size, 0);
			CHECK(r->shared_fd >= 0, "memfd: %s", strerror(errno));
		}
		if (!r->shared_huge) {
			r->shared_map = map_shared(r->shared_fd, r->size);
			r->shared_map_size = r->size;
		}
	}
	CHECK(fake_gmem_init(&G1, R[1].size, CVMCONV_CONTENT_ZERO | CVMCONV_CONTENT_PRESERVE) == 0,
	      "fake guest_memfd");
	win_lo = R[0].gpa - 16 * PG;
	win_pages = (R[2].gpa + R[2].size + 16 * PG - win_lo) / PG;
	for (int i = 0; i < NREG; i++)
		R[i].first = (R[i].gpa - win_lo) / PG;
	H.priv = calloc(win_pages, 1);
	H.pre = calloc(win_pages, 1);
	H.replay = calloc(win_pages, 1);
	H.tag[0] = calloc(win_pages, sizeof(uint64_t));
	H.tag[1] = calloc(win_pages, sizeof(uint64_t));
	H.pend[0] = calloc(win_pages, 1);
	H.pend[1] = calloc(win_pages, 1);
	H.ev = calloc(MAX_EVENTS, sizeof(*H.ev));
	CHECK(H.priv && H.pre && H.replay && H.tag[0] && H.tag[1] && H.pend[0] && H.pend[1] && H.ev,
	      "calloc");
	return 0;
}

uint64_t allocated(int fd)
{
	struct stat st;

	CHECK(fstat(fd, &st) == 0, "fstat: %s", strerror(errno));
	return (uint64_t)st.st_blocks * 512;
}

#if defined(__clang__)
#pragma clang attribute pop
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rd in = { data, size };
	unsigned ops = 0;

	setup_input(&in);
	H.inputs++;
	while (in.n && ops++ < MAX_OPS) {
		run_op(&in);
		H.ops++;
	}
	if (!H.broken)
		CHECK(fake_kvm_mismatches(&H.fake, H.c, win_lo, win_pages * PG) == 0,
		      "fake_kvm_mismatches");
	cvmconv_destroy(H.c);
	fake_kvm_fini(&H.fake);
	return 0;
}
