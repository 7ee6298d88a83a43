/* SPDX-License-Identifier: MIT */
/*
 * cvmconv — host-side handling of private/shared memory conversions for
 * confidential VMs whose private memory lives in guest_memfd.
 *
 * The library receives KVM_HC_MAP_GPA_RANGE hypercall exits and
 * KVM_EXIT_MEMORY_FAULT exits, updates KVM memory attributes, tracks guest
 * memory in 2 MiB extents and punches the stale side of converted memory —
 * 4 KiB runs on 4 KiB backings, whole huge pages only on huge-page backings.
 *
 * Conventions: every function that can fail returns 0 (or a documented
 * non-negative value) on success and a negative errno on failure. Structs
 * passed in or out begin with a `sz` field that the caller sets to
 * sizeof(the struct it was compiled with), so old and new callers both work.
 * Ranges are half-open [start, start + size). Sizes and addresses are bytes.
 *
 * This header needs only libc headers: it does not require kernel headers
 * that know guest_memfd (struct kvm_run is only forward-declared).
 */
#ifndef CVMCONV_H
#define CVMCONV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CVMCONV_VERSION_MAJOR 0
#define CVMCONV_VERSION_MINOR 1
#define CVMCONV_VERSION_PATCH 0
#define CVMCONV_VERSION_NUMBER \
	(CVMCONV_VERSION_MAJOR * 10000 + CVMCONV_VERSION_MINOR * 100 + CVMCONV_VERSION_PATCH)
#define CVMCONV_VERSION_STRING "0.1.0"

#if defined(__GNUC__) && !defined(CVMCONV_STATIC_ONLY)
#define CVMCONV_API __attribute__((visibility("default")))
#else
#define CVMCONV_API
#endif

/* KVM hypercall error codes as the guest sees them (include/uapi/linux/kvm_para.h).
 * The library writes their negation (as u64) into hypercall.ret. */
#define CVMCONV_KVM_EPERM 1
#define CVMCONV_KVM_E2BIG 7
#define CVMCONV_KVM_EFAULT 14
#define CVMCONV_KVM_EINVAL 22
#define CVMCONV_KVM_EOPNOTSUPP 95
#define CVMCONV_KVM_ENOSYS 1000

/* KVM_HC_MAP_GPA_RANGE attribute bits (args[2]). */
#define CVMCONV_MAP_GPA_RANGE_PAGE_SZ_MASK 3ULL
#define CVMCONV_MAP_GPA_RANGE_PAGE_SZ_4K 0ULL
#define CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M 1ULL
#define CVMCONV_MAP_GPA_RANGE_PAGE_SZ_1G 2ULL
#define CVMCONV_MAP_GPA_RANGE_ENCRYPTED (1ULL << 4)

/* KVM_MEMORY_ATTRIBUTE_PRIVATE, the only attribute the library sets. */
#define CVMCONV_ATTR_PRIVATE (1ULL << 3)

struct cvmconv; /* opaque context, one per VM */
struct kvm_run; /* from <linux/kvm.h>; only a pointer is needed here */

/* What to do with a guest request whose start or size is not a multiple of
 * the granule. */
enum cvmconv_unaligned {
	CVMCONV_UNALIGNED_ALLOW,  /* convert and count */
	CVMCONV_UNALIGNED_LOG,	  /* convert, count, log (rate limited) */
	CVMCONV_UNALIGNED_REJECT, /* change nothing, answer -KVM_EINVAL */
};

/*
 * Kernel operations. Every member may be NULL: the real kernel call is then
 * used (KVM_SET_MEMORY_ATTRIBUTES on cfg->vm_fd, fallocate(PUNCH_HOLE |
 * KEEP_SIZE), madvise(MADV_REMOVE), KVM_SET_MEMORY_ATTRIBUTES2 on the
 * region's guest_memfd). Each returns 0 or a negative errno and
 * receives cfg->ops_opaque first. They must not call back into the
 * library. Conversions call them with the locks of the regions concerned
 * held; requests on disjoint regions run in parallel, so ops may be called
 * concurrently from several vCPU threads. cvmconv_flush() calls punch and
 * discard_hva without the region lock, so these two may also run beside a
 * conversion's ops on the same region — always on ranges no other call
 * touches at that moment.
 */
struct cvmconv_ops {
	int (*set_memory_attributes)(void *opaque, uint64_t gpa, uint64_t size,
				     uint64_t attributes);
	int (*punch)(void *opaque, int fd, uint64_t offset, uint64_t len);
	int (*discard_hva)(void *opaque, void *hva, uint64_t len);
	/* In-place regions (CVMCONV_REGION_INPLACE): KVM_SET_MEMORY_ATTRIBUTES2
	 * on the region's guest_memfd, @offset and @size in the file, @flags a
	 * content mode (CVMCONV_CONTENT_*). On -EAGAIN (a page of the range
	 * still has host references: a mapping, a pin) it stores the offset of
	 * that page in *@error_offset. Read only when cvmconv_config.sz covers
	 * cvmconv_config.inplace_retries (a caller built against this header). */
	int (*set_gmem_attributes)(void *opaque, int gmem_fd, uint64_t offset, uint64_t size,
				   uint64_t attributes, uint64_t flags, uint64_t *error_offset);
};

struct cvmconv_config {
	size_t sz;	  /* sizeof(struct cvmconv_config) */
	int vm_fd;	  /* KVM VM fd; -1 allowed when ops->set_memory_attributes is set */
	uint64_t granule; /* alignment policy granule: 0 = 2 MiB; a power of two >= 4 KiB */
	enum cvmconv_unaligned unaligned; /* default policy for regions */
	const struct cvmconv_ops *ops;	  /* NULL = real kernel */
	void *ops_opaque;
	/* syslog levels (LOG_ERR..LOG_DEBUG); message has no trailing newline;
	 * NULL = silent. Never called concurrently (the library serialises it);
	 * may be called with region locks held: must not call back. */
	void (*log)(void *opaque, int level, const char *msg);
	void *log_opaque;
	uint32_t flags; /* CVMCONV_DEFER_PUNCH | CVMCONV_GMEM_ATTRIBUTES, or 0 */
	/* fields below may be absent for callers compiled against older headers */
	/* In-place regions: how many times a conversion that found a page busy
	 * (-EAGAIN) is tried again before it is rolled back; 0 = default
	 * (CVMCONV_INPLACE_RETRIES), at most CVMCONV_INPLACE_RETRIES_MAX. */
	uint32_t inplace_retries;
};

#define CVMCONV_INPLACE_RETRIES 4
#define CVMCONV_INPLACE_RETRIES_MAX 64

/* cvmconv_config.flags: punch stale memory later, not during conversions.
 * By default a conversion punches what it made stale before it returns
 * (huge pages the moment their last page goes stale). With this flag the
 * punches wait for cvmconv_flush() — call it from the VMM's main loop or a
 * timer, off the vCPU threads — or until more than CVMCONV_DEFER_RANGES
 * ranges wait on one side of a region, when that side is punched at once.
 * Memory that goes live again before then is never punched: a huge page
 * the guest converts to private and back (bounce buffers, say) costs no
 * punch and no refault, and the punches of consecutive exits merge into
 * one. Until it is punched, stale memory counts in punch_pending_bytes and
 * double_alloc_bytes. */
#define CVMCONV_DEFER_PUNCH (1u << 0)
#define CVMCONV_DEFER_RANGES 32

/* cvmconv_config.flags: the VM keeps memory attributes per guest_memfd only
 * (the in-place series' module switch turns per-VM attributes off), so
 * KVM_CAP_MEMORY_ATTRIBUTES is not probed on the VM fd, and only in-place
 * regions may be added unless a set_memory_attributes op is given. */
#define CVMCONV_GMEM_ATTRIBUTES (1u << 4)

/* cvmconv_region.flags */
#define CVMCONV_REGION_PRIVATE (1u << 0) /* starts private: attributes set at add */
/* Attribute tracking without a private backing (private_fd must be -1): the
 * VMM keeps private memory itself, or has none to free. Without this flag a
 * guest request to make private any page of a region that has no private
 * backing is refused (-KVM_EINVAL, nothing changes): the guest would fault
 * on it forever (a private fault on a memslot without guest_memfd). */
#define CVMCONV_REGION_ATTRS_ONLY (1u << 1)
/* Allocate the shared backing of pages the moment they turn shared
 * (needs shared_fd): before the attribute update, fallocate(mode 0) of
 * their range — whole huge pages on hugetlbfs, which rounds the range out
 * (fs/hugetlbfs/inode.c hugetlbfs_fallocate). If the allocation fails
 * (ENOSPC: the hugetlb pool is empty; ENOMEM; EINTR) nothing reaches KVM:
 * the pages stay private, what the failed call allocated is punched again
 * (never a live page), the guest gets -KVM_EFAULT, the VMM the errno, a
 * log line and shared_alloc_failures in the stats. If the attribute update
 * fails after it, what was allocated is punched again too. Without the flag a conversion to
 * shared allocates nothing and the first touch of the page does: on an
 * empty pool a SIGBUS in the VMM thread that touches it, or, for the
 * guest's access, KVM_RUN failing with EFAULT and no memory fault exit
 * (Linux 6.12) until the pool has a page. */
#define CVMCONV_REGION_ALLOC_SHARED (1u << 2)
/* guest_memfd in-place conversion: private_fd is a guest_memfd created
 * with GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED that holds both
 * the private and the shared pages (its mapping, if the VMM has one, is
 * shared_hva; shared_fd must be -1). Conversions are
 * KVM_SET_MEMORY_ATTRIBUTES2 calls on that fd (ops->set_gmem_attributes)
 * over private_offset + (gpa - region gpa); nothing is punched and nothing
 * is allocated twice (double_alloc_bytes stays 0 for the region). With
 * the default op, cvmconv_add_region() probes the ioctl on the fd and
 * refuses the region with -EOPNOTSUPP where the kernel lacks it. Not with
 * ATTRS_ONLY or ALLOC_SHARED. docs/semantics.md compares both models. */
#define CVMCONV_REGION_INPLACE (1u << 3)

/* cvmconv_region.content_mode (KVM_SET_MEMORY_ATTRIBUTES2 flags): what an
 * in-place conversion does to the contents of the pages it converts.
 * UNSPECIFIED: not guaranteed (the kernel may zero or keep them). ZERO:
 * pages turning shared read as zero (the guest's private data never
 * reaches the host); the kernel refuses ZERO for to-private, so pages
 * turning private are converted UNSPECIFIED. PRESERVE: kept both ways (on
 * TDX and SNP only for to-private before launch). With the default op the
 * mode must be one the kernel enumerates (KVM_CAP_MEMORY_ATTRIBUTES2_FLAGS);
 * a rollback always uses UNSPECIFIED, or PRESERVE in a PRESERVE region. */
#define CVMCONV_CONTENT_UNSPECIFIED 0ULL
#define CVMCONV_CONTENT_ZERO (1ULL << 0)
#define CVMCONV_CONTENT_PRESERVE (1ULL << 1)

struct cvmconv_region {
	size_t sz;	    /* sizeof(struct cvmconv_region) */
	uint64_t gpa, size; /* 4 KiB aligned, size > 0 */
	int private_fd;	    /* guest_memfd (or a stand-in fd in tests); -1 none */
	uint64_t private_offset;
	int shared_fd; /* memfd / hugetlbfs / tmpfs file; -1 = use shared_hva */
	uint64_t shared_offset;
	void *shared_hva; /* host mapping of the shared side; may be NULL if shared_fd set */
	uint32_t flags;	  /* CVMCONV_REGION_* */
	int unaligned;	  /* -1 = context default, else enum cvmconv_unaligned */
	/* fields below may be absent for callers compiled against older headers */
	uint64_t content_mode; /* CVMCONV_REGION_INPLACE: CVMCONV_CONTENT_*; else 0 */
};

/**
 * cvmconv_create() - create a conversion context for one VM.
 * @cfg: configuration; copied, need not outlive the call.
 * @out: receives the context.
 *
 * When @cfg->vm_fd is a real VM fd and no set_memory_attributes op is given,
 * KVM_CAP_MEMORY_ATTRIBUTES is probed once here.
 *
 * With CVMCONV_GMEM_ATTRIBUTES nothing is probed here and vm_fd may be -1.
 *
 * Return: 0, or -EINVAL (bad sz, granule, policy, unknown flags,
 * inplace_retries above CVMCONV_INPLACE_RETRIES_MAX, or vm_fd < 0 without a
 * set_memory_attributes op or CVMCONV_GMEM_ATTRIBUTES), -E2BIG (cfg->sz larger than known with non-zero
 * tail), -EOPNOTSUPP (the VM does not support KVM_MEMORY_ATTRIBUTE_PRIVATE),
 * -ENOMEM.
 * Thread safety: safe (touches no shared state).
 */
CVMCONV_API int cvmconv_create(const struct cvmconv_config *cfg, struct cvmconv **out);

/**
 * cvmconv_destroy() - free a context. Punches nothing, closes no fd.
 * @c: context or NULL.
 * Thread safety: not thread-safe; no other call on @c may be in progress.
 */
CVMCONV_API void cvmconv_destroy(struct cvmconv *c);

/**
 * cvmconv_add_region() - register a range of guest memory and its backings.
 * @c: context.
 * @r: region; copied. Offsets must be 4 KiB aligned. With
 *     CVMCONV_REGION_PRIVATE the whole range is set private with one
 *     attribute update; otherwise KVM's default (shared) is assumed.
 *     The page size of each backing is detected here (fstatfs; hugetlbfs
 *     reports its huge page size; an hva is looked up in /proc/self/smaps).
 *
 * Return: 0, or -EINVAL (bad sz/alignment/flags/policy, size 0, overflow, ALLOC_SHARED
 * without shared_fd, ATTRS_ONLY with a private_fd; INPLACE without a
 * private_fd, with a shared_fd, with ATTRS_ONLY or ALLOC_SHARED; a
 * content_mode with unknown bits, ZERO and PRESERVE together, or set on a
 * region that is not INPLACE), -EOPNOTSUPP (INPLACE with the default op on
 * a kernel without KVM_SET_MEMORY_ATTRIBUTES2 on that fd, or a content
 * mode it does not enumerate; a two-backing region on a context created
 * with CVMCONV_GMEM_ATTRIBUTES and no set_memory_attributes op),
 * -E2BIG (unknown non-zero tail), -EEXIST (overlaps a region), -EBADF (an fd
 * that fstat rejects), -ENOMEM, -ENOTRECOVERABLE (context broken), or the
 * error of the attribute update.
 * Thread safety: thread-safe.
 */
CVMCONV_API int cvmconv_add_region(struct cvmconv *c, const struct cvmconv_region *r);

/**
 * cvmconv_remove_region() - forget the region that starts at @gpa. Neither
 * attributes nor backings are touched.
 * Return: 0, -ENOENT (no region starts at @gpa).
 * Thread safety: thread-safe.
 */
CVMCONV_API int cvmconv_remove_region(struct cvmconv *c, uint64_t gpa);

/**
 * cvmconv_map_gpa_range() - handle one KVM_HC_MAP_GPA_RANGE request.
 * @gpa, @npages, @attrs: the guest's args[0..2] (npages in 4 KiB units).
 * @hc_ret: receives 0 or a negative KVM error code (as u64) for the guest:
 *          -KVM_EINVAL for any malformed request (misaligned or zero range,
 *          overflow, reserved attribute bits, a page-size hint the range
 *          contradicts, a range not wholly inside registered regions) and
 *          for an unaligned request under REJECT policy. Nothing changes then.
 *
 * Return: 0 when the guest was answered (also for refused requests);
 * negative errno when the host failed and the VMM must decide: the error of
 * the attribute update (the request was rolled back and *hc_ret is
 * -KVM_EFAULT should the VMM re-enter) — for an in-place region -EAGAIN
 * when a page kept host references through cvmconv_config.inplace_retries
 * retries (nothing changed; the VMM may drop its references and handle the
 * request again) —, -ENOTRECOVERABLE (rollback failed or the context was
 * already broken: stop the VM), -EINVAL (@hc_ret NULL).
 * Punch failures are not errors here: they are counted and retried by
 * cvmconv_flush().
 * Thread safety: thread-safe.
 */
CVMCONV_API int cvmconv_map_gpa_range(struct cvmconv *c, uint64_t gpa, uint64_t npages,
				      uint64_t attrs, uint64_t *hc_ret);

/**
 * cvmconv_handle_exit() - kvm_run front end.
 * @run: the vCPU's mapped kvm_run after KVM_RUN returned.
 *
 * KVM_EXIT_HYPERCALL with nr == KVM_HC_MAP_GPA_RANGE: decoded as by
 * cvmconv_map_gpa_range(); hypercall.ret is always written.
 * KVM_EXIT_MEMORY_FAULT: the range is converted to the access the guest
 * wanted (flags & KVM_MEMORY_EXIT_FLAG_PRIVATE); policy applies.
 *
 * Return: 1 handled (re-enter KVM_RUN); 0 not a conversion exit (left
 * untouched); negative errno fatal: as cvmconv_map_gpa_range() for
 * hypercalls; for a memory fault also -EFAULT (invalid range or unknown
 * flags), -EPERM (refused by REJECT policy or vetoed by a listener) since
 * the guest cannot be answered, and -ELOOP: the same vCPU (the same @run)
 * reported this very fault last time, the range is already in the state it
 * asks for and no conversion happened since, so re-entering would fault
 * again forever (a private access to a memslot without guest_memfd, a
 * backing that cannot supply the page). A vCPU whose fault another vCPU's
 * conversion already resolved still gets 1. -EINVAL when @run is NULL.
 * Thread safety: thread-safe.
 */
CVMCONV_API int cvmconv_handle_exit(struct cvmconv *c, struct kvm_run *run);

/**
 * cvmconv_convert() - host-initiated conversion (no guest policy applied).
 * Same transaction as a guest request: attributes first, rollback, punch.
 * Return: 0, -EINVAL (misaligned, zero, overflowing or not inside regions),
 * -ENOTRECOVERABLE, or the attribute update's error (rolled back).
 * Thread safety: thread-safe.
 */
CVMCONV_API int cvmconv_convert(struct cvmconv *c, uint64_t gpa, uint64_t size, bool to_private);

/**
 * cvmconv_flush() - punch stale memory that is still allocated: punches
 * that failed earlier and, with CVMCONV_DEFER_PUNCH, the deferred ones.
 * Live pages are never punched. Deferred memory is punched without holding
 * the region's lock (in runs of at most 8 MiB): conversions on the region
 * go on meanwhile, and only one that would make memory being punched live
 * waits for that punch. A call punches at most what waited when it reached
 * each region, so it ends even while the guest keeps converting.
 * Return: 0 when no punch failed — nothing is left pending then, but for
 * what conversions made stale while the flush ran (the poll fd stays
 * readable for it) — else the last punch error (the rest stays pending),
 * -ENOTRECOVERABLE if broken.
 * Thread safety: thread-safe; concurrent calls run one after the other.
 */
CVMCONV_API int cvmconv_flush(struct cvmconv *c);

/**
 * cvmconv_get_poll_fd() - a file descriptor for the VMM's event loop: an
 * eventfd owned by the context (closed by cvmconv_destroy(); do not close
 * it, read it or write it), readable while deferred (CVMCONV_DEFER_PUNCH)
 * or failed punches wait. When it polls readable, call cvmconv_flush() off
 * the vCPU threads; the flush drains it once nothing is left pending (a
 * punch that keeps failing keeps it readable: back off). With
 * CVMCONV_DEFER_PUNCH a vCPU thread then never punches, unless more than
 * CVMCONV_DEFER_RANGES ranges wait on one side of a region.
 * Return: the fd (>= 0), or -EINVAL (@c NULL).
 * Thread safety: thread-safe; the fd may be polled from any thread.
 */
CVMCONV_API int cvmconv_get_poll_fd(struct cvmconv *c);

/**
 * cvmconv_is_private() - the library's view of the page containing @gpa.
 * Return: 1 private, 0 shared, -ENOENT not in any region.
 * Thread safety: thread-safe.
 */
CVMCONV_API int cvmconv_is_private(struct cvmconv *c, uint64_t gpa);

/**
 * cvmconv_for_each_range() - the library's view of [gpa, gpa + size), as
 * maximal runs of one state in ascending order: what a device attached after
 * boot must map, what a snapshot or a migration saves.
 * @gpa, @size: 4 KiB aligned, size > 0, no wrap. Parts outside every
 *     region are skipped; a run continues across adjacent regions.
 * @cb: called once per run with its gpa, size and state; a non-zero return
 *     stops the walk and is returned. It runs with the library's locks held
 *     (conversions wait) and must not call back into the library.
 * Time is proportional to the runs, not the pages. Restoring a saved state:
 * one cvmconv_convert_batch() (host) with the private runs, on a context
 * whose regions start shared.
 *
 * Return: 0, @cb's non-zero value, or -EINVAL (NULL, misaligned, empty or
 * wrapping range).
 * Thread safety: thread-safe; the runs are one consistent snapshot of each
 * region (a conversion on another region may land between two regions).
 */
CVMCONV_API int cvmconv_for_each_range(struct cvmconv *c, uint64_t gpa, uint64_t size,
				       int (*cb)(void *opaque, uint64_t gpa, uint64_t size,
						 bool is_private),
				       void *opaque);

/* ---- listeners (VFIO-style notification around conversions) ---- */

/*
 * A listener hears about every run of pages that changes state, in guest
 * physical order: before() ahead of the attribute update — the place to
 * unmap shared pages from an IOMMU before they turn private — and after()
 * once the run is converted and its stale side released (result 0) — the
 * place to map pages that turned shared — or when the request was abandoned
 * (result -ECANCELED: vetoed or failed; undo what before() did). Every
 * before() that returned 0 gets exactly one after(); the before() that
 * vetoes gets none, and listeners after it in registration order do not hear
 * that run at all. A non-zero return from before() vetoes the whole request:
 * nothing changes and a guest gets -KVM_EPERM. Both are called with the
 * locks of the regions concerned held, in the order the library serialises
 * requests on those regions, and must not call back into the library.
 * Requests on disjoint regions run in parallel: a listener may be called
 * concurrently from several threads and must protect its own state.
 */
struct cvmconv_listener {
	size_t sz; /* sizeof(struct cvmconv_listener) */
	int (*before)(void *opaque, uint64_t gpa, uint64_t size, bool to_private);
	void (*after)(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result);
	void *opaque;
	uint32_t flags; /* CVMCONV_LISTENER_*; appended (sz tells old callers apart) */
};

/* cvmconv_listener.flags: on registration, after() hears every current run
 * of guest memory once (to_private = its state, result 0), in ascending
 * order and merged across adjacent regions, before any later conversion
 * reaches the listener: no conversion is lost or heard twice, whatever the
 * vCPU threads do meanwhile (registration waits for the requests in flight
 * and holds new ones back until the replay is done). The VFIO case: a
 * device attached after boot maps what is shared now. Needs after(). */
#define CVMCONV_LISTENER_REPLAY (1u << 0)

#define CVMCONV_MAX_LISTENERS 8

/**
 * cvmconv_add_listener() - register a listener (copied).
 * Return: a listener id >= 0, or -EINVAL (bad sz, no callback, unknown
 * flags, CVMCONV_LISTENER_REPLAY without after()), -E2BIG (sz larger than
 * known with a non-zero tail), -ENOSPC (CVMCONV_MAX_LISTENERS reached).
 * Thread safety: thread-safe; takes effect from the next request.
 */
CVMCONV_API int cvmconv_add_listener(struct cvmconv *c, const struct cvmconv_listener *l);

/**
 * cvmconv_remove_listener() - unregister listener @id.
 * Return: 0, -ENOENT.
 * Thread safety: thread-safe; no callback of it runs after the return.
 */
CVMCONV_API int cvmconv_remove_listener(struct cvmconv *c, int id);

/* ---- batch conversion ---- */

struct cvmconv_range {
	uint64_t gpa, size;  /* bytes, 4 KiB aligned */
	uint32_t to_private; /* 1: to private, 0: to shared; any other value
			      * refuses the whole list */
	uint32_t reserved;   /* must be 0 */
};

#define CVMCONV_BATCH_GUEST (1u << 0) /* a guest's list: counted as one request, policy applies */
#define CVMCONV_BATCH_MAX 4096

/**
 * cvmconv_convert_batch() - convert a whole list of ranges as one request,
 * e.g. an SEV-SNP page state change buffer a VMM decodes itself.
 * @ranges, @n: the list; ranges must not overlap (order is irrelevant).
 *     Adjacent ranges of the same direction are merged, so the kernel sees
 *     one attribute update per maximal run of pages that change state.
 * @flags: CVMCONV_BATCH_GUEST or 0 (host request, no policy).
 * @hc_ret: with CVMCONV_BATCH_GUEST, receives 0 or a negative KVM error as
 *     for cvmconv_map_gpa_range(); may be NULL otherwise.
 * Atomic: all ranges convert or none does (validation first, rollback).
 *
 * Return: as cvmconv_map_gpa_range() for guest lists (refusals answered in
 * *hc_ret: any invalid entry or overlap refuses the whole list with
 * -KVM_EINVAL); for host lists 0, -EINVAL (invalid entry, overlap, unknown
 * flags), -EPERM (vetoed). Both: -E2BIG (n > CVMCONV_BATCH_MAX), -ENOMEM,
 * -ENOTRECOVERABLE, or the attribute update's error (rolled back).
 * Thread safety: thread-safe.
 */
CVMCONV_API int cvmconv_convert_batch(struct cvmconv *c, const struct cvmconv_range *ranges,
				      size_t n, unsigned flags, uint64_t *hc_ret);

struct cvmconv_stats {
	size_t sz;	    /* sizeof(struct cvmconv_stats), set by the caller */
	uint64_t exits;	    /* guest requests seen (hypercalls and memory faults) */
	uint64_t rejected;  /* guest requests refused (malformed or by policy) */
	uint64_t unaligned; /* guest requests not granule aligned */
	uint64_t to_private_bytes, to_shared_bytes; /* bytes that changed state */
	uint64_t attr_updates;		  /* attribute updates issued (rollbacks included) */
	uint64_t punches;		  /* punch/discard calls issued */
	uint64_t punch_failures;	  /* of those, failed */
	uint64_t double_alloc_bytes;	  /* live on one side, held on the other */
	uint64_t double_alloc_peak_bytes; /* maximum of the above */
	uint64_t mixed_extents;		  /* 2 MiB extents with both private and shared pages */
	uint64_t extents;		  /* 2 MiB extents tracked */
	/* fields below may be absent for callers compiled against older headers */
	uint64_t guest_bytes;	      /* bytes in registered regions */
	uint64_t huge_mappable_bytes; /* bytes in whole, uniform 2 MiB extents */
	uint64_t punch_pending_bytes; /* stale bytes still allocated after a failed punch */
	uint64_t tracker_bytes;	      /* heap bytes used by the extent tracker */
	uint64_t log_suppressed;      /* log lines dropped by the rate limit */
	uint64_t broken;	      /* 1 once a rollback failed */
	/* Bookkeeping operations: extent tracker lookups and updates, searches
	 * of the waiting and failed punch runs, and punch calls. Each costs
	 * O(log n) (a long tracker scan one index step per 1 GiB more). One
	 * request makes at most a constant number per run it changes, whatever
	 * failed before; docs/security.md gives the bounds measured. */
	uint64_t bookkeeping_steps;
	/* requests rolled back because the shared backing of pages turning
	 * shared could not be allocated (CVMCONV_REGION_ALLOC_SHARED) */
	uint64_t shared_alloc_failures;
	/* in-place regions: conversions tried again because a page of their
	 * range had host references (KVM_SET_MEMORY_ATTRIBUTES2 -EAGAIN), and
	 * requests rolled back because it still had them after the retries */
	uint64_t gmem_busy_retries;
	uint64_t gmem_busy_failures;
};

/**
 * cvmconv_get_stats() - copy the counters.
 * @st: st->sz must be set; at most st->sz bytes are written.
 * Return: 0, -EINVAL (NULL or sz smaller than the DESIGN.md core fields).
 * Thread safety: thread-safe.
 */
CVMCONV_API int cvmconv_get_stats(struct cvmconv *c, struct cvmconv_stats *st);

/**
 * cvmconv_stats_json() - the counters of cvmconv_get_stats() as one JSON
 * object (field names as in struct cvmconv_stats, values as integers), for a
 * VMM's monitor. snprintf semantics: writes at most @len bytes including the
 * terminating NUL.
 * Return: the length the full text needs (excluding NUL), or -EINVAL.
 * Thread safety: thread-safe.
 */
CVMCONV_API int cvmconv_stats_json(struct cvmconv *c, char *buf, size_t len);

/* ---- backing helpers (backing_create.c) ---- */

/**
 * cvmconv_memfd_create() - create a memfd suitable as a backing.
 * @name: memfd name (for /proc); NULL = "cvmconv".
 * @size: bytes, a multiple of @page_size (ftruncate'd).
 * @page_size: 4096 (shmem), 2 MiB or 1 GiB (MFD_HUGETLB with that size).
 * Return: fd (close-on-exec) or -EINVAL (size or page size), -ENODEV (the
 * kernel has no huge pages of that size), or memfd_create/ftruncate's error.
 * Thread safety: thread-safe.
 */
CVMCONV_API int cvmconv_memfd_create(const char *name, uint64_t size, uint64_t page_size);

/**
 * cvmconv_hugetlbfs_create() - create an unlinked file of @size bytes on a
 * hugetlbfs mount with @page_size pages (found with libhugetlbfs when the
 * library was built with it, else from /proc/self/mountinfo).
 * Return: fd or -EINVAL (bad size), -ENOENT (no mount with that page size),
 * or the open/ftruncate error.
 * Thread safety: thread-safe.
 */
CVMCONV_API int cvmconv_hugetlbfs_create(uint64_t size, uint64_t page_size);

/**
 * cvmconv_hugetlbfs_mount_path() - the mount point used by
 * cvmconv_hugetlbfs_create() for @page_size, copied into @buf.
 * Return: 0, -EINVAL (@buf NULL), -ENOENT (no such mount, or @page_size not
 * a power of two above 4 KiB), -ENAMETOOLONG.
 * Thread safety: thread-safe.
 */
CVMCONV_API int cvmconv_hugetlbfs_mount_path(uint64_t page_size, char *buf, size_t len);

/**
 * cvmconv_fd_page_size() - page size the kernel frees in whole units for @fd:
 * the huge page size on hugetlbfs (including MFD_HUGETLB memfds), else 4096.
 * Return: page size, or -EBADF / fstatfs error.
 * Thread safety: thread-safe.
 */
CVMCONV_API int64_t cvmconv_fd_page_size(int fd);

/**
 * cvmconv_version() - the library's CVMCONV_VERSION_STRING at build time.
 * Thread safety: thread-safe.
 */
CVMCONV_API const char *cvmconv_version(void);

#ifdef __cplusplus
}
#endif

#endif /* CVMCONV_H */
