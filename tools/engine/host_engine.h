/* SPDX-License-Identifier: MIT */
/*
 * The host engine: one VM's guest memory on real backings, handled by one
 * host, measured by the host and by the kernel. Used by cvmconv-sim (the
 * guest model's exits, tools/sim/sim.c), the performance benchmarks
 * (recorded streams, bench/perf/hosts.c) and cvmconv-replay (recorded
 * traces, tools/cvmconv-replay.c).
 *
 * Guest memory is a set of regions, in one pair of files at the regions'
 * offsets or (cfg.per_region_files) in a pair of files per region:
 *   - HOST_ENGINE_QEMU_LIKE, HOST_ENGINE_CVMCONV (two backings): the shared
 *     side a shmem memfd, an MFD_HUGETLB memfd or a file on a hugetlbfs
 *     mount (2 MiB or 1 GiB pages), or none at all; the private side a
 *     real guest_memfd where the host's /dev/kvm makes one, else a shmem
 *     stand-in (tools/private_backing.h; cfg.private_standin: always);
 *   - HOST_ENGINE_INPLACE (cvmconv with CVMCONV_REGION_INPLACE): one
 *     guest_memfd (or the stand-in) holding both sides, 4 KiB pages.
 * Files are as large as their regions and sparse: only what is touched or
 * populated costs memory.
 *
 * There is no /dev/kvm: attribute updates land in the strict recorder of
 * tools/attr_recorder.h (it refuses what KVM_SET_MEMORY_ATTRIBUTES
 * refuses), KVM_SET_MEMORY_ATTRIBUTES2 of the in-place host is checked with
 * the rules of the posted uAPI (tests/fake_gmem.h lists them) and lands in
 * the same place; the engine keeps, from the accepted updates, which pages
 * are private (the truth every host is measured against), the live shared
 * pages and the mixed 2 MiB extents. That record has one bit per page of
 * cfg.span; above cfg.track_limit_pages it is not kept (layouts up to
 * 2^52 bytes: the library and the recorder's counts are the figures then).
 * The kernel's figures are the files' st_blocks, or a guest_memfd's
 * resident pages (tools/kernel_accounting.h).
 *
 * Touching (host_engine_touch_gpa()): one byte written to every shared
 * 4 KiB page of a range, as a guest using its shared buffers would; on
 * hugetlb the kernel allocates the whole huge page at the first write. A
 * SIGBUS (the huge page pool ran out) is caught and returned as -ENOMEM.
 * Populating (host_engine_populate()): fallocate() of one side of a range,
 * the allocation without a mapping (whole huge pages on hugetlb).
 *
 * Thread safety: not thread-safe; one engine at a time per process (the
 * SIGBUS guard is process-wide).
 */
#ifndef CVMCONV_HOST_ENGINE_H
#define CVMCONV_HOST_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cvmconv.h"

#define HOST_ENGINE_4K 4096ULL
#define HOST_ENGINE_2M (2ULL << 20)
#define HOST_ENGINE_MAX_REGIONS 64

struct qemu_like;
struct attr_recorder;
struct kvm_run;

enum host_engine_kind {
	HOST_ENGINE_QEMU_LIKE = 0, /* the baseline: tools/engine/qemu_like.h */
	HOST_ENGINE_CVMCONV = 1,   /* libcvmconv, two backings */
	HOST_ENGINE_INPLACE = 2,   /* libcvmconv, CVMCONV_REGION_INPLACE, one guest_memfd */
};

/* The shared side of the two-backing hosts. */
enum host_engine_shared {
	HOST_ENGINE_SHARED_SHMEM = 0,	/* a shmem memfd, 4 KiB pages */
	HOST_ENGINE_SHARED_MFD_HUGETLB, /* a memfd with MFD_HUGETLB of cfg.huge_page_size */
	HOST_ENGINE_SHARED_HUGETLBFS,	/* an unlinked file on a hugetlbfs mount of that size */
	HOST_ENGINE_SHARED_NONE,	/* none: the shared side is not backed, never punched */
};

struct host_engine_region {
	/* off: the region's offset in the one pair of files, and always the
	 * place of its pages in the engine's record (with
	 * cfg.per_region_files each file starts at the region's gpa) */
	uint64_t gpa, size, off;
};

/* The files of one region (or of all: cfg.per_region_files unset). */
struct host_engine_files {
	int shared_fd, private_fd; /* the same fd in place; shared -1 for SHARED_NONE */
	uint8_t *shared_map;	   /* NULL unless cfg.map_shared */
	uint64_t size;
};

/* Optional observers of the kernel calls the host makes. */
struct host_engine_observer {
	/* an attribute update the recorder accepted (before the engine's
	 * record changes) */
	void (*attr)(void *opaque, uint64_t gpa, uint64_t size, bool to_private);
	/* when set, cvmconv's punches go through the engine (a real
	 * fallocate(PUNCH_HOLE)) and are reported here first; when NULL the
	 * library punches on its own */
	void (*punch)(void *opaque, bool shared, uint64_t offset, uint64_t len);
	void *opaque;
};

struct host_engine_config {
	enum host_engine_kind host;
	struct host_engine_region reg[HOST_ENGINE_MAX_REGIONS];
	int nreg;
	uint64_t span;			/* covers every region's off + size: the record's (and the
			* one pair of files') size */
	bool per_region_files;		/* a pair of files per region (else one pair) */
	enum host_engine_shared shared; /* two backings: the shared side */
	uint64_t huge_page_size;	/* SHARED_MFD_HUGETLB, _HUGETLBFS: 0 = 2 MiB, or 1 GiB */
	bool private_standin;		/* the private side a shmem memfd even with a guest_memfd */
	/* 0: the engine's record always, the recorder's per-page state never;
	 * N: both only when cfg.span holds at most N pages */
	uint64_t track_limit_pages;
	bool map_shared;    /* map the shared side (needed to touch; in place: shared_hva);
			     * one pair of files and a kept record only */
	bool start_private; /* regions added private (else shared, KVM's default) */
	enum cvmconv_unaligned policy; /* cvmconv hosts */
	uint64_t granule;	       /* cvmconv hosts; 0: the library's default */
	/* cvmconv hosts; NULL: the library's default */
	void (*log)(void *opaque, int level, const char *msg);
	void *log_opaque;
	/* in place: every Nth to-private guest_memfd update finds a transient
	 * host reference and is refused once with EAGAIN; 0 = never */
	uint32_t gmem_busy_every;
	const char *shared_name; /* memfd name of the shared side */
	struct host_engine_observer obs;
};

struct host_engine {
	struct host_engine_config cfg;
	/* files[0] for one pair; files[i] of region i with cfg.per_region_files */
	struct host_engine_files files[HOST_ENGINE_MAX_REGIONS];
	int nfiles;
	/* files[0]'s, for the one pair of files */
	int shared_fd, private_fd;
	uint8_t *shared_map;
	struct attr_recorder *rec;
	struct cvmconv *conv; /* cvmconv hosts */
	struct qemu_like *ql; /* the baseline */
	struct kvm_run *runs; /* host_engine_memory_fault(): one per vCPU */
	/* the attributes as set, in record pages (region off + 4 KiB page);
	 * extents of 512 pages; NULL above cfg.track_limit_pages */
	uint64_t *priv; /* per page: 1 = private (pages in no region: 1) */
	uint16_t *ext_shared;
	uint64_t npages, nextents, live_shared_pages, mixed;
	uint64_t gmem_calls; /* in place: guest_memfd updates tried (setup included) */
	/* private */
	uint64_t to_private_gmem_calls;
	bool refused_last;
	bool sigbus_installed;
	char why[256]; /* the last failure */
};

/**
 * host_engine_open() - create the backings (and the mapping), the record of
 * the attributes and the recorder, and install the SIGBUS guard.
 * Return: 0, or -errno with @e->why set: -EINVAL (no region, more than
 * HOST_ENGINE_MAX_REGIONS, span not covering them, a mapping asked for
 * per-region files or without the record, the baseline without a shared
 * side), -ENOMEM, or the error of cvmconv_memfd_create() (-ENODEV: no huge
 * pages of that size), cvmconv_hugetlbfs_create() (-ENOENT: no mount of
 * that page size), mmap() or the private backing.
 * host_engine_close() must follow either way.
 * Thread safety: see the file comment.
 */
int host_engine_open(struct host_engine *e, const struct host_engine_config *cfg);

/**
 * host_engine_start() - create the host and add the regions (private with
 * cfg.start_private: the hosts' attribute updates that does are made now).
 * Return: 0, or -errno of cvmconv_create(), cvmconv_add_region(),
 * qemu_like_create() or qemu_like_add_region(), with @e->why set.
 * Thread safety: see the file comment.
 */
int host_engine_start(struct host_engine *e);

/**
 * host_engine_map_gpa_range() - one KVM_HC_MAP_GPA_RANGE exit through the
 * host. cvmconv's hypercall result goes to @hc_ret; the baseline leaves it
 * 0 (QEMU never writes it).
 * Return: 0, or the host's negative errno (a failure a VMM acts on).
 * Thread safety: see the file comment.
 */
int host_engine_map_gpa_range(struct host_engine *e, uint64_t gpa, uint64_t npages, uint64_t attrs,
			      uint64_t *hc_ret);

/**
 * host_engine_convert() - a host-initiated conversion of [@gpa, @gpa + @size).
 * Return: 0 or the host's negative errno.
 * Thread safety: see the file comment.
 */
int host_engine_convert(struct host_engine *e, uint64_t gpa, uint64_t size, bool to_private);

/**
 * host_engine_regions_offset() - file offset of @gpa in the layout
 * @reg[0 .. @nreg) and the bytes of its region from there.
 * Return: false when @gpa is in no region.
 * Thread safety: thread-safe (reads only).
 */
bool host_engine_regions_offset(const struct host_engine_region *reg, int nreg, uint64_t gpa,
				uint64_t *off, uint64_t *left);

/**
 * host_engine_offset() - file offset of @gpa and the bytes of its region
 * from there.
 * Return: false when @gpa is in no region.
 * Thread safety: thread-safe (reads only).
 */
bool host_engine_offset(const struct host_engine *e, uint64_t gpa, uint64_t *off, uint64_t *left);

/** host_engine_tracked() - whether the engine keeps its per-page record
 * (cfg.track_limit_pages). Thread safety: thread-safe (reads only). */
static inline bool host_engine_tracked(const struct host_engine *e)
{
	return e->priv != NULL;
}

/** host_engine_page_private() - whether record page @page is private now
 * (false without the record). Thread safety: thread-safe (reads only). */
static inline bool host_engine_page_private(const struct host_engine *e, uint64_t page)
{
	return e->priv && ((e->priv[page / 64] >> (page % 64)) & 1);
}

/**
 * host_engine_memory_fault() - one KVM_EXIT_MEMORY_FAULT of vCPU @vcpu
 * (modulo 64) through the host: cvmconv_handle_exit() on that vCPU's
 * kvm_run; the baseline converts the range, as QEMU's kvm_convert_memory.
 * Return: 1 (handled, the vCPU runs again), or the host's negative errno
 * (cvmconv: -EFAULT, -EPERM, -ELOOP refuse the fault; others are host
 * failures), -ENOMEM when no kvm_run could be had.
 * Thread safety: see the file comment.
 */
int host_engine_memory_fault(struct host_engine *e, unsigned vcpu, uint64_t gpa, uint64_t size,
			     bool to_private);

/**
 * host_engine_populate() - allocate the @to_private (else shared) side of
 * the parts of [@gpa, @gpa + @len) that lie in regions, with
 * fallocate(KEEP_SIZE); nothing where that side has no backing.
 * Return: 0 or fallocate()'s -errno (-ENOSPC: no huge page left), @e->why set.
 * Thread safety: see the file comment.
 */
int host_engine_populate(struct host_engine *e, uint64_t gpa, uint64_t len, bool to_private);

/**
 * host_engine_touch() - write one byte to every shared page of file range
 * [@off, @off + @len) (a no-op without cfg.map_shared).
 * Return: 0, or -ENOMEM on a SIGBUS (no huge page left), @e->why set.
 * Thread safety: see the file comment.
 */
int host_engine_touch(struct host_engine *e, uint64_t off, uint64_t len);

/**
 * host_engine_touch_gpa() - host_engine_touch() of the parts of
 * [@gpa, @gpa + @len) that lie in regions.
 * Return: as host_engine_touch().
 * Thread safety: see the file comment.
 */
int host_engine_touch_gpa(struct host_engine *e, uint64_t gpa, uint64_t len);

/**
 * host_engine_alloc_bytes() - what the kernel holds for @fd: st_blocks * 512
 * or a guest_memfd's resident pages; 0 when it cannot be had.
 * Thread safety: thread-safe.
 */
uint64_t host_engine_alloc_bytes(int fd);

/**
 * host_engine_shared_bytes(), host_engine_private_bytes() - what the
 * kernel holds for every shared (private) file of the engine, summed with
 * host_engine_alloc_bytes(); in place the one file counts as both.
 * Thread safety: thread-safe (reads only).
 */
uint64_t host_engine_shared_bytes(const struct host_engine *e);
uint64_t host_engine_private_bytes(const struct host_engine *e);

/**
 * host_engine_kernel_da() - the kernel's double allocation: the shared
 * side's allocation minus the live shared bytes; in place, what the one
 * file holds beyond one page per gpa (a page it holds is the one page of
 * its gpa, shared or private). 0 without the record.
 * Thread safety: thread-safe (reads only).
 */
uint64_t host_engine_kernel_da(const struct host_engine *e);

/** host_engine_hugepages_free() - HugePages_Free of /proc/meminfo, -1 if
 * unreadable. Thread safety: thread-safe. */
long host_engine_hugepages_free(void);

/**
 * host_engine_close() - destroy the host, unmap, close the files, free the
 * record, restore the SIGBUS disposition. Idempotent; @e may be half open.
 * Thread safety: see the file comment.
 */
void host_engine_close(struct host_engine *e);

/* ---- between the engine's own parts: engine_files.c (the files, open and
 * close) calls these of host_engine.c (the layout, the record, the hosts),
 * never the other way ---- */

/* The last failure into @e->why; returns @err. */
int host_engine_fail(struct host_engine *e, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The files of region @i and the region's offset in them. */
const struct host_engine_files *host_engine_files_of(const struct host_engine *e, int i,
						     uint64_t *file_off);
/* The record of the attributes (the regions' start state, unless above
 * cfg.track_limit_pages) and the recorder: 0 or -errno, @e->why set. */
int host_engine_state_init(struct host_engine *e);

#endif /* CVMCONV_HOST_ENGINE_H */
