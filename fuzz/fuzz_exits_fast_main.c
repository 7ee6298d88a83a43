/* SPDX-License-Identifier: MIT */
/* fuzz_exits_fast: the harness state, one input (LLVMFuzzerTestOneInput)
 * and the fixed geometry (LLVMFuzzerInitialize). */
#include "fuzz_exits_fast.h"

/* no coverage in the harness: see fuzz_exits_fast.h */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#endif

struct fz_region R[NREG];
int vm_fd;
uint8_t *hva_shared, *hva_private;
uint64_t win_lo, win_pages;
uint64_t regions_bm[NW], shared4k_bm[NW];
struct fast_harness H;
char smaps_text[4096];
size_t smaps_len;
uint64_t n_inputs, n_ops;
struct kvm_run fault_run;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rd in = { data, size };

	if (setup_input(&in) == 0) {
		for (unsigned ops = 0; in.n && ops < MAX_OPS; ops++, n_ops++)
			run_op(&in);
		cvmconv_destroy(H.c);
	}
	fake_kvm_fini(&H.fake);
	n_inputs++;
	return 0;
}

/* ---- setup, once ---- */

static void smaps_entry(char **p, uintptr_t lo, uint64_t size, bool shared, unsigned kb,
			const char *path)
{
	size_t room = sizeof(smaps_text) - (size_t)(*p - smaps_text);
	int n = snprintf(
		*p, room,
		"%012lx-%012lx rw-%c 00000000 00:01 4242%27s%s\n"
		"Size:           %8llu kB\nKernelPageSize: %8u kB\nMMUPageSize:    %8u kB\n"
		"Rss:                   0 kB\nVmFlags: rd wr %smr mw me %ssd\n",
		(unsigned long)lo, (unsigned long)(lo + size), shared ? 's' : 'p', "", path,
		(unsigned long long)(size >> 10), kb, kb, shared ? "sh " : "", shared ? "" : "ac ");

	CHECK(n > 0 && (size_t)n < room, "smaps text too long");
	*p += n;
}

static void print_figures(void)
{
	fprintf(stderr, "fuzz_exits_fast: %llu inputs, %llu operations\n",
		(unsigned long long)n_inputs, (unsigned long long)n_ops);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* R0 [1G+2M-8K, 1G+4M+8K) holds one whole 2 MiB extent and 8 KiB on
	 * either side; R1 adjacent up to 1G+5M; a 1 MiB gap; R2 4.5 MiB whose
	 * hugetlb side starts 1 MiB into a 6 MiB file: huge page 0 and 2 lie
	 * partly outside the region, huge page 1 wholly inside. */
	const uint64_t npages[NREG] = { 516, 254, 1152 };

	(void)argc;
	(void)argv;
	atexit(print_figures);
	for (int i = 0; i < NREG; i++) {
		struct fz_region *r = &R[i];

		r->gpa = i ? R[i - 1].gpa + R[i - 1].npages * PG + (i == 2 ? HPG / 2 : 0)
			   : (1ULL << 30) + HPG - 2 * PG;
		r->npages = npages[i];
		r->private_fd = make_memfd("fz-private", r->npages * PG, 0);
		if (i == 2) {
			r->shared_fd = make_memfd("fz-huge", 3 * HPG, MFD_HUGETLB);
			r->huge = r->shared_fd >= 0;
			r->shared_offset = r->huge ? HPG / 2 : 0;
			if (!r->huge)
				fprintf(stderr, "fuzz_exits_fast: no MFD_HUGETLB: R2 on shmem\n");
		}
		if (!r->huge)
			r->shared_fd = make_memfd("fz-shared", r->npages * PG, 0);
		CHECK(r->private_fd >= 0 && r->shared_fd >= 0, "memfd: %s", strerror(errno));
	}
	/* R1's shared side as a mapping: of its memfd (MAP_SHARED: MADV_REMOVE)
	 * or anonymous (MAP_PRIVATE: MADV_DONTNEED); never touched */
	hva_shared =
		mmap(NULL, R[1].npages * PG, PROT_READ | PROT_WRITE, MAP_SHARED, R[1].shared_fd, 0);
	hva_private = mmap(NULL, R[1].npages * PG, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	{
		char *p = smaps_text, decoy[700];

		memset(decoy, 'x', sizeof(decoy) - 1);
		decoy[sizeof(decoy) - 1] = 0;
		memcpy(decoy, "/dev/hugepages/", 15);
		smaps_entry(&p, 0x10000, HPG, true, 2048, decoy);
		smaps_entry(&p, (uintptr_t)hva_shared, R[1].npages * PG, true, 4,
			    "/memfd:fz-shared (deleted)");
		smaps_entry(&p, (uintptr_t)hva_private, R[1].npages * PG, false, 4, "");
		smaps_len = (size_t)(p - smaps_text);
	}
	vm_fd = make_memfd("fz-vm", 0, 0);
	CHECK(hva_shared != MAP_FAILED && hva_private != MAP_FAILED && vm_fd >= 0, "setup: %s",
	      strerror(errno));
	win_lo = R[0].gpa - 16 * PG;
	win_pages = (R[2].gpa + R[2].npages * PG + 16 * PG - win_lo) / PG;
	CHECK(win_pages <= NW * 64, "window of %llu pages", (unsigned long long)win_pages);
	for (int i = 0; i < NREG; i++) {
		R[i].first = widx(R[i].gpa);
		bm_set(regions_bm, R[i].first, R[i].first + R[i].npages, true);
		if (!(i == 2 && R[i].huge))
			bm_set(shared4k_bm, R[i].first, R[i].first + R[i].npages, true);
	}
	return 0;
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
