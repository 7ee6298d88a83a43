/* SPDX-License-Identifier: MIT */
/*
 * Shared pieces of the performance benchmarks (bench/perf/, see
 * docs/performance.md): exit streams, the oracle, and the driver that runs
 * one stream through a host of the host engine (tools/engine/host_engine.h:
 * cvmconv with two backings or in place, the QEMU-like baseline) over real
 * backings and compares each exit with the oracle.
 *
 * A stream is a list of exits exactly as a VMM would receive them: a
 * KVM_HC_MAP_GPA_RANGE hypercall (gpa, npages, attrs), or an SEV-SNP page
 * state change decoded by the VMM into a list of ranges (handed to
 * cvmconv_convert_batch(); the baseline receives it as KVM delivers it, one
 * hypercall per run of contiguous same-op, same-size entries). Guest memory
 * is laid out like the guest model's q35 machine: [0, lowmem) and, from
 * 2.75 GiB of RAM on, [4 GiB, 4 GiB + RAM - lowmem); both regions live in
 * one shared and one private file, the second at file offset lowmem. Every
 * region starts private (a confidential guest's memory at launch).
 *
 * The oracle is a plain per-page model of the same stream that computes the
 * minimum kernel work any host could do for it (docs/performance.md defines
 * each figure).
 *
 * Nothing here is thread-safe; one stream at a time per process.
 */
#ifndef CVMCONV_PERF_H
#define CVMCONV_PERF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cvmconv.h"
#include <cvmconv/guest.h>

#define PERF_4K 4096ULL
#define PERF_2M (2ULL << 20)
#define PERF_1G (1ULL << 30)
#define PERF_MAX_REGIONS 2
#define PERF_MAX_MARKS 4

/* ---- streams (stream.c) ---- */

struct perf_region {
	uint64_t gpa, size, off; /* off: the region's offset in both files */
};

enum perf_exit_kind {
	PERF_EXIT_MAP = 0,   /* KVM_HC_MAP_GPA_RANGE: a = gpa, b = npages, attrs */
	PERF_EXIT_BATCH = 1, /* SNP PSC: ranges[a .. a + b) */
};

struct perf_exit {
	uint64_t a, b;
	uint32_t attrs;
	uint32_t kind;
};

struct perf_mark {
	size_t at; /* exits before the mark */
	const char *label;
};

struct perf_stream {
	char name[40];
	char shape[96]; /* one line: what the stream is */
	struct perf_region reg[PERF_MAX_REGIONS];
	int nreg;
	uint64_t span; /* bytes of each backing file */
	struct perf_exit *exits;
	size_t nexits, exits_cap;
	struct cvmconv_range *ranges;
	size_t nranges, ranges_cap;
	struct perf_mark marks[PERF_MAX_MARKS];
	int nmarks;
	int error; /* first append failure (-ENOMEM) */
};

enum perf_workload {
	PERF_WL_BOOT = 0,    /* cvmg_boot() */
	PERF_WL_DEVICES = 1, /* boot + virtio-net (one queue pair per CPU), virtio-blk, NVMe */
	PERF_WL_CHURN = 2,   /* devices + cvmg_wl_runtime() (DMA alloc/map/free + kernel churn) */
	PERF_WL_GPU = 3,     /* devices + cvmg_wl_gpu() (256 MiB of 2 MiB coherent buffers) */
	PERF_WL_COUNT = 4,
};

const char *perf_workload_name(enum perf_workload w);

/* An empty stream with the q35 layout of @ram bytes (a 2 MiB multiple). */
int perf_stream_init(struct perf_stream *s, const char *name, uint64_t ram);
void perf_stream_free(struct perf_stream *s);
int perf_stream_add_map(struct perf_stream *s, uint64_t gpa, uint64_t npages, uint64_t attrs);
int perf_stream_add_batch(struct perf_stream *s, const struct cvmconv_range *r, size_t n);
void perf_stream_mark(struct perf_stream *s, const char *label);
/* File offset of @gpa and the bytes of its region from there. */
bool perf_stream_offset(const struct perf_stream *s, uint64_t gpa, uint64_t *off, uint64_t *left);
/* The exits KVM would deliver for batch exit @e (one hypercall per run of
 * contiguous entries with the same op and size; the 2M hint on 2 MiB
 * entries): calls @fn for each. Returns the first non-zero @fn result. */
int perf_stream_batch_as_hypercalls(const struct perf_stream *s, const struct perf_exit *e,
				    int (*fn)(void *opaque, uint64_t gpa, uint64_t npages,
					      uint64_t attrs),
				    void *opaque);

/* The guest model (legacy = mainline guest) booting and running @w on
 * @platform; @churn_cycles 0 = the model's default. */
int perf_gen_guest(struct perf_stream *s, enum cvmg_platform platform, enum perf_workload w,
		   uint32_t cpus, uint64_t churn_cycles);
/* TDX MapGPA of @size bytes at @gpa to shared, then back to private, through
 * the guest model's TDX shaping (2 MiB chunks counted from the start). */
int perf_gen_tdx_mapgpa(struct perf_stream *s, uint64_t gpa, uint64_t size);
/* @n exits, each toggling one random 4 KiB page of [gpa, gpa + window)
 * (KVM_HC_MAP_GPA_RANGE, 4K hint). */
int perf_gen_random_4k(struct perf_stream *s, uint64_t gpa, uint64_t window, uint64_t n,
		       uint64_t seed);
/* @n SNP page state changes of @entries entries each in [gpa, gpa + window):
 * a quarter 2 MiB entries (whole extents), the rest 4 KiB entries (several
 * may share an extent), each to private or to shared at random, sorted by
 * address. */
int perf_gen_psc(struct perf_stream *s, uint64_t gpa, uint64_t window, uint64_t n, unsigned entries,
		 uint64_t seed);

/* Make room for @need elements of @elem bytes in *@p (capacity *@cap,
 * doubled from 1024): 0 or -ENOMEM (*@p unchanged). The benches' one
 * growable array. */
int perf_grow(void **p, size_t *cap, size_t need, size_t elem);

/* ---- the oracle (oracle.c) ---- */

struct perf_oracle_exit {
	uint32_t attr;		 /* minimum attribute updates */
	uint32_t punch_shared;	 /* minimum punches of the shared file */
	uint32_t punch_private;	 /* ... of the private file */
	uint32_t punch_bridged;	 /* both files, runs may bridge already-free stale units */
	uint64_t da_pages;	 /* minimum double allocation after the exit, 4 KiB pages */
	uint64_t shared_changed; /* pages made shared by the exit */
};

struct perf_oracle {
	uint64_t unit_pages; /* shared file's unit: 512 (2 MiB huge pages) or 1 */
	uint64_t npages, nunits;
	uint64_t *priv;	      /* per file page: 1 = private */
	uint16_t *shared_cnt; /* per shared unit: live (shared) pages */
	uint8_t *ever;	      /* per shared unit: ever held a live page */
	struct perf_oracle_exit *per_exit;
	size_t nexits;
	/* totals */
	uint64_t attr, punch_shared, punch_private, punch_bridged;
	uint64_t da_pages, da_peak_pages, live_shared_pages;
	uint64_t units_held, units_held_peak, units_ever;
	uint64_t pages_changed;
};

/* Run @s through the model with a shared file of @shared_page_size (4 KiB
 * or 2 MiB). Return: 0, -ENOMEM, -EINVAL (a region not aligned to the
 * shared unit, or an exit outside guest memory). */
int perf_oracle_run(struct perf_oracle *o, const struct perf_stream *s, uint64_t shared_page_size);
void perf_oracle_free(struct perf_oracle *o);

/* ---- running a stream through a host (hosts.c) ---- */

enum perf_host {
	PERF_HOST_CVMCONV = 0,
	PERF_HOST_BASELINE = 1, /* the QEMU-like handler */
	/* cvmconv with CVMCONV_REGION_INPLACE: one guest_memfd for both sides
	 * (a real one from the host's /dev/kvm where it makes one, 4 KiB
	 * pages), KVM_SET_MEMORY_ATTRIBUTES2 served with the uAPI's rules */
	PERF_HOST_INPLACE = 2,
};

struct perf_host_opts {
	bool huge_shared;  /* shared file: MFD_HUGETLB 2 MiB (else shmem) */
	bool touch;	   /* write every page made shared, measure the kernel's allocation */
	uint64_t *series;  /* optional: kernel double allocation after each exit, bytes */
	FILE *diag;	   /* where per-exit differences from the oracle are described */
	unsigned max_diag; /* how many such exits to describe */
};

struct perf_host_result {
	uint64_t exits;
	uint64_t attr_calls, punch_shared, punch_private;
	uint64_t gmem_calls; /* in place: KVM_SET_MEMORY_ATTRIBUTES2 calls (in attr_calls) */
	/* cvmconv only: exits whose kernel calls differ from the oracle's */
	uint64_t exits_attr_above, exits_punch_above, exits_below;
	/* cvmconv's shared-side punches that a minimal host would not make:
	 * contiguous with the previous punch of the same exit (one call would
	 * do), or of a huge page that holds a live page when the exit ends */
	uint64_t punch_adjacent, punch_relive;
	uint64_t lib_da, lib_da_peak;	    /* cvmconv's double_alloc_bytes */
	uint64_t lib_da_off_oracle;	    /* exits after which lib != oracle */
	uint64_t kernel_da, kernel_da_peak; /* st_blocks of the shared file - live shared */
	uint64_t kernel_da_off_oracle;	    /* exits after which kernel != oracle */
	int64_t hp_used, hp_da;		    /* HugePages_Free: pages used, derived double alloc */
	uint64_t live_shared_bytes;
	uint64_t tracker_bytes;
	bool state_matches_oracle; /* final attributes equal the oracle's pages */
	double seconds;
	char why[200]; /* set on failure */
};

/* Return 0 or -errno (res->why says what failed). */
int perf_host_run(enum perf_host h, const struct perf_stream *s, const struct perf_oracle *o,
		  const struct perf_host_opts *opt, struct perf_host_result *res);
/* The same in a child process, so that a crash of the library is a result
 * (-ECHILD, res->why names the signal) and not the end of the benchmark. */
int perf_host_run_isolated(enum perf_host h, const struct perf_stream *s,
			   const struct perf_oracle *o, const struct perf_host_opts *opt,
			   struct perf_host_result *res);

/* ---- one guest on real backings (guest_gib.c): perf_throughput, perf_latency ----
 * One region at gpa 0 of @size bytes: a 2 MiB MFD_HUGETLB shared side
 * (mapped MAP_SHARED | MAP_NORESERVE, the pool reserved with
 * tools/hugepool.h and restored on close, SIGINT and SIGTERM) and a real
 * guest_memfd private side where the host makes one (tools/private_backing.h).
 * The attribute update is a no-op for every host. */
struct qemu_like;

struct perf_gib {
	int shared_fd, private_fd;
	uint8_t *shared_map;
	uint64_t size;
};

/* 0, or 77 when no huge page pool can be had (the reason printed); exits on
 * other failures, naming @prog. */
int perf_gib_open(struct perf_gib *g, uint64_t size, const char *prog);
void perf_gib_close(struct perf_gib *g);
/* Both sides punched whole, then every shared page written. */
void perf_gib_reset(const struct perf_gib *g);
/* A converter over the region: cvmconv with config @flags (@lib), else the
 * QEMU-like baseline; the other pointer is NULL. Exits on failure. */
void perf_gib_host(const struct perf_gib *g, bool lib, uint32_t flags, struct cvmconv **c,
		   struct qemu_like **q);
/* One KVM_HC_MAP_GPA_RANGE to @c, else to @q: 0, the host's -errno, or
 * -EPROTO when cvmconv answers the guest with an error. */
int perf_gib_map(struct cvmconv *c, struct qemu_like *q, uint64_t gpa, uint64_t npages,
		 uint64_t attrs);
int perf_noop_attr(void *opaque, uint64_t gpa, uint64_t size, uint64_t attributes);
/* Print "PROG: what: error", restore the huge page pool, exit(1). */
void perf_die(const char *what, int err) __attribute__((noreturn));

/* HugePages_Free of /proc/meminfo, -1 if unreadable. */
long perf_hugepages_free(void);
/* Where cvmconv_version() was found: the shared object's path, or
 * "(linked statically)". */
const char *perf_library_path(void);
/* One line describing the machine (CPU model, cores, kernel). */
void perf_print_machine(FILE *f);

#endif
