/* SPDX-License-Identifier: MIT */
/*
 * The host engine: one VM's guest memory on real backings, handled by one
 * host, measured by the host and by the kernel. Used by cvmconv-sim (the
 * guest model's exits, tools/sim/sim.c) and the performance benchmarks
 * (recorded streams, bench/perf/hosts.c).
 *
 * Guest memory is a set of regions laid out in one pair of files at the
 * regions' offsets:
 *   - HOST_ENGINE_QEMU_LIKE, HOST_ENGINE_CVMCONV (two backings): the shared
 *     side in one memfd (MFD_HUGETLB with 2 MiB pages, or shmem), the
 *     private side in a real guest_memfd where the host's /dev/kvm makes
 *     one, else a shmem stand-in (tools/private_backing.h);
 *   - HOST_ENGINE_INPLACE (cvmconv with CVMCONV_REGION_INPLACE): one
 *     guest_memfd (or the stand-in) holding both sides, 4 KiB pages.
 * Both are as large as guest RAM and sparse: only what is touched costs
 * memory.
 *
 * There is no /dev/kvm: attribute updates land in the strict recorder of
 * tools/attr_recorder.h (it refuses what KVM_SET_MEMORY_ATTRIBUTES
 * refuses), KVM_SET_MEMORY_ATTRIBUTES2 of the in-place host is checked with
 * the rules of the posted uAPI (tests/fake_gmem.h lists them) and lands in
 * the same place; the engine keeps, from the accepted updates, which file
 * pages are private (the truth every host is measured against), the live
 * shared pages and the mixed 2 MiB extents. The kernel's figures are the
 * files' st_blocks, or a guest_memfd's resident pages
 * (tools/kernel_accounting.h).
 *
 * Touching (host_engine_touch_gpa()): one byte written to every shared
 * 4 KiB page of a range, as a guest using its shared buffers would; on
 * hugetlb the kernel allocates the whole 2 MiB page at the first write. A
 * SIGBUS (the huge page pool ran out) is caught and returned as -ENOMEM.
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
#define HOST_ENGINE_MAX_REGIONS 4

struct qemu_like;
struct attr_recorder;

enum host_engine_kind {
	HOST_ENGINE_QEMU_LIKE = 0, /* the baseline: tools/engine/qemu_like.h */
	HOST_ENGINE_CVMCONV = 1,   /* libcvmconv, two backings */
	HOST_ENGINE_INPLACE = 2,   /* libcvmconv, CVMCONV_REGION_INPLACE, one guest_memfd */
};

struct host_engine_region {
	uint64_t gpa, size, off; /* off: the region's offset in the file(s) */
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
	uint64_t span;	    /* bytes of each file; covers every region */
	bool shared_huge;   /* two backings: shared side MFD_HUGETLB 2 MiB (else shmem) */
	bool map_shared;    /* map the shared side (needed to touch; in place: shared_hva) */
	bool start_private; /* regions added private (else shared, KVM's default) */
	enum cvmconv_unaligned policy; /* cvmconv hosts */
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
	int shared_fd, private_fd; /* the same fd in place */
	uint8_t *shared_map;	   /* NULL unless cfg.map_shared */
	struct attr_recorder *rec;
	struct cvmconv *conv; /* cvmconv hosts */
	struct qemu_like *ql; /* the baseline */
	/* the attributes as set, in file pages; extents of 512 pages */
	uint64_t *priv; /* per file page: 1 = private (pages beyond span: 1) */
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
 * HOST_ENGINE_MAX_REGIONS, span not covering them), -ENOMEM, or the error
 * of memfd_create(), ftruncate(), mmap() or the private backing.
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

/** host_engine_page_private() - whether file page @page is private now.
 * Thread safety: thread-safe (reads only). */
static inline bool host_engine_page_private(const struct host_engine *e, uint64_t page)
{
	return (e->priv[page / 64] >> (page % 64)) & 1;
}

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
 * host_engine_kernel_da() - the kernel's double allocation: the shared
 * side's allocation minus the live shared bytes; in place, what the one
 * file holds beyond one page per gpa (a page it holds is the one page of
 * its gpa, shared or private).
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

#endif /* CVMCONV_HOST_ENGINE_H */
