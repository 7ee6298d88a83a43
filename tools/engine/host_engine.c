/* SPDX-License-Identifier: MIT */
/* The host engine: the layout, the attributes as set, the kernel ops the
 * hosts call, the hosts (see host_engine.h). Below engine_files.c, which
 * creates the files and opens and closes the engine, and calls nothing of
 * it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attr_recorder.h"
#include "host_engine.h"
#include "kvm_compat.h" /* src/: the kvm_run memory_fault accessor */
#include "qemu_like.h"

#define PAGES_PER_EXTENT 512u
#define RUNS 64 /* kvm_runs of host_engine_memory_fault(), by vCPU modulo */

int host_engine_fail(struct host_engine *e, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->why, sizeof(e->why), fmt, ap);
	va_end(ap);
	return err;
}

const struct host_engine_files *host_engine_files_of(const struct host_engine *e, int i,
						     uint64_t *file_off)
{
	*file_off = e->cfg.per_region_files ? 0 : e->cfg.reg[i].off;
	return &e->files[e->cfg.per_region_files ? i : 0];
}

bool host_engine_regions_offset(const struct host_engine_region *reg, int nreg, uint64_t gpa,
				uint64_t *off, uint64_t *left)
{
	for (int i = 0; i < nreg; i++) {
		const struct host_engine_region *r = &reg[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size) {
			*off = r->off + (gpa - r->gpa);
			*left = r->size - (gpa - r->gpa);
			return true;
		}
	}
	return false;
}

bool host_engine_offset(const struct host_engine *e, uint64_t gpa, uint64_t *off, uint64_t *left)
{
	return host_engine_regions_offset(e->cfg.reg, e->cfg.nreg, gpa, off, left);
}

/* ---- the attributes as set ---- */

/* Set bits [from, to) of @map to @v; return how many changed. */
static uint64_t bits_assign(uint64_t *map, uint64_t from, uint64_t to, bool v)
{
	uint64_t changed = 0;

	while (from < to) {
		uint64_t w = from / 64, lo = from % 64;
		uint64_t hi = (to - w * 64) < 64 ? to - w * 64 : 64;
		uint64_t mask = (hi == 64 ? ~0ULL : (1ULL << hi) - 1) & ~((1ULL << lo) - 1);

		if (v) {
			changed += (uint64_t)__builtin_popcountll(mask & ~map[w]);
			map[w] |= mask;
		} else {
			changed += (uint64_t)__builtin_popcountll(mask & map[w]);
			map[w] &= ~mask;
		}
		from = w * 64 + hi;
	}
	return changed;
}

static bool is_mixed(uint64_t n)
{
	return n && n < PAGES_PER_EXTENT;
}

static void state_set(struct host_engine *e, uint64_t from, uint64_t to, bool to_private)
{
	if (!e->priv)
		return; /* untracked: the recorder's counts only */
	while (from < to) {
		uint64_t x = from / PAGES_PER_EXTENT;
		uint64_t stop = (x + 1) * PAGES_PER_EXTENT < to ? (x + 1) * PAGES_PER_EXTENT : to;
		uint64_t before = e->ext_shared[x];
		uint64_t changed = bits_assign(e->priv, from, stop, to_private);
		uint64_t after = to_private ? before - changed : before + changed;

		e->ext_shared[x] = (uint16_t)after;
		e->mixed += is_mixed(after);
		e->mixed -= is_mixed(before);
		if (to_private)
			e->live_shared_pages -= changed;
		else
			e->live_shared_pages += changed;
		from = stop;
	}
}

/* The one place attribute updates land, for every host: the strict
 * recorder first, then the observer, then the engine's record. */
static int set_attr(void *opaque, uint64_t gpa, uint64_t size, uint64_t attributes)
{
	struct host_engine *e = opaque;
	bool to_private = attributes & CVMCONV_ATTR_PRIVATE;
	int ret = attr_recorder_set(e->rec, gpa, size, attributes);
	uint64_t end = gpa + size;

	if (ret)
		return ret;
	if (e->cfg.obs.attr)
		e->cfg.obs.attr(e->cfg.obs.opaque, gpa, size, to_private);
	while (gpa < end) {
		uint64_t off, left, n;

		if (!host_engine_offset(e, gpa, &off, &left))
			return -EINVAL; /* the recorder checked: cannot happen */
		n = end - gpa < left ? end - gpa : left;
		state_set(e, off / HOST_ENGINE_4K, (off + n) / HOST_ENGINE_4K, to_private);
		gpa += n;
	}
	return 0;
}

/*
 * In place: KVM_SET_MEMORY_ATTRIBUTES2 on the one guest_memfd, with the
 * rules of the posted series: offsets in the file, 4 KiB aligned, non-empty,
 * inside a region; PRIVATE the only attribute; a content mode, ZERO never
 * for to-private. The attributes land where set_attr() puts them.
 */
static int set_gmem(void *opaque, int fd, uint64_t offset, uint64_t size, uint64_t attributes,
		    uint64_t flags, uint64_t *error_offset)
{
	struct host_engine *e = opaque;
	bool to_private = attributes & CVMCONV_ATTR_PRIVATE;

	e->gmem_calls++;
	if (fd < 0 || !size || ((offset | size) & (HOST_ENGINE_4K - 1)) || offset + size < offset ||
	    (attributes & ~CVMCONV_ATTR_PRIVATE) ||
	    (flags & ~(CVMCONV_CONTENT_ZERO | CVMCONV_CONTENT_PRESERVE)) ||
	    (to_private && flags == CVMCONV_CONTENT_ZERO))
		return -EINVAL;
	if (to_private && e->cfg.gmem_busy_every && !e->refused_last &&
	    ++e->to_private_gmem_calls % e->cfg.gmem_busy_every == 0) {
		e->refused_last = true; /* refused once: the retry goes through */
		*error_offset = offset;
		return -EAGAIN;
	}
	e->refused_last = false;
	for (int i = 0; i < e->cfg.nreg; i++) {
		const struct host_engine_region *r = &e->cfg.reg[i];
		uint64_t foff;

		if (host_engine_files_of(e, i, &foff)->private_fd != fd)
			continue;
		if (offset >= foff && offset - foff < r->size) {
			if (size > r->size - (offset - foff))
				return -EINVAL;
			return set_attr(e, r->gpa + (offset - foff), size, attributes);
		}
	}
	return -EINVAL;
}

static bool is_shared_fd(const struct host_engine *e, int fd)
{
	for (int i = 0; i < e->nfiles; i++)
		if (e->files[i].shared_fd == fd)
			return true;
	return false;
}

static int punch(void *opaque, int fd, uint64_t offset, uint64_t len)
{
	struct host_engine *e = opaque;

	e->cfg.obs.punch(e->cfg.obs.opaque, is_shared_fd(e, fd), offset, len);
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len))
		return -errno;
	return 0;
}

static int recorder_init(struct host_engine *e)
{
	struct attr_recorder_range ranges[HOST_ENGINE_MAX_REGIONS];
	int ret;

	for (int i = 0; i < e->cfg.nreg; i++)
		ranges[i] = (struct attr_recorder_range){ e->cfg.reg[i].gpa, e->cfg.reg[i].size };
	ret = attr_recorder_create(ranges, (size_t)e->cfg.nreg, e->cfg.track_limit_pages, &e->rec);
	return ret ? host_engine_fail(e, ret, "attr_recorder_create: %s", strerror(-ret)) : 0;
}

int host_engine_state_init(struct host_engine *e)
{
	uint64_t words = (e->npages + 63) / 64;

	if (e->cfg.track_limit_pages && e->npages > e->cfg.track_limit_pages)
		return recorder_init(e); /* no record: too large */
	e->priv = malloc(words * sizeof(*e->priv));
	e->ext_shared = malloc(e->nextents * sizeof(*e->ext_shared));
	if (!e->priv || !e->ext_shared)
		return host_engine_fail(e, -ENOMEM, "out of memory");
	memset(e->priv, 0xff, words * sizeof(*e->priv));
	if (e->cfg.start_private) {
		/* the regions are added private: set them so at once */
		memset(e->ext_shared, 0, e->nextents * sizeof(*e->ext_shared));
		e->live_shared_pages = 0;
	} else {
		/* KVM's default: every page shared */
		bits_assign(e->priv, 0, e->npages, false);
		for (uint64_t x = 0; x < e->nextents; x++)
			e->ext_shared[x] = PAGES_PER_EXTENT;
		e->live_shared_pages = e->npages;
	}
	return recorder_init(e);
}

/* ---- hosts ---- */

static int start_cvmconv(struct host_engine *e)
{
	const struct host_engine_config *c = &e->cfg;
	static const struct cvmconv_ops ops = { .set_memory_attributes = set_attr,
						.set_gmem_attributes = set_gmem };
	static const struct cvmconv_ops ops_punch = { .set_memory_attributes = set_attr,
						      .punch = punch,
						      .set_gmem_attributes = set_gmem };
	struct cvmconv_config cfg = {
		.sz = sizeof(cfg),
		.vm_fd = -1,
		.granule = c->granule,
		.unaligned = c->policy,
		.ops = c->obs.punch ? &ops_punch : &ops,
		.ops_opaque = e,
		.log = c->log,
		.log_opaque = c->log_opaque,
	};
	int ret = cvmconv_create(&cfg, &e->conv);

	if (ret)
		return host_engine_fail(e, ret, "cvmconv_create: %s", strerror(-ret));
	for (int i = 0; i < c->nreg && !ret; i++) {
		uint64_t foff;
		const struct host_engine_files *f = host_engine_files_of(e, i, &foff);
		struct cvmconv_region r = {
			.sz = sizeof(r),
			.gpa = c->reg[i].gpa,
			.size = c->reg[i].size,
			.private_fd = f->private_fd,
			.private_offset = foff,
			.shared_fd = f->shared_fd,
			.shared_offset = f->shared_fd >= 0 ? foff : 0,
			.flags = c->start_private ? CVMCONV_REGION_PRIVATE : 0,
			.unaligned = -1,
		};

		if (c->host == HOST_ENGINE_INPLACE) {
			/* CoCo guests: to-shared zeroes, PRESERVE is for launch
			 * only (the uAPI's content modes) */
			r.flags |= CVMCONV_REGION_INPLACE;
			r.shared_fd = -1;
			r.shared_offset = 0;
			r.shared_hva = f->shared_map ? f->shared_map + foff : NULL;
			r.content_mode = CVMCONV_CONTENT_ZERO;
		}
		ret = cvmconv_add_region(e->conv, &r);
		if (ret)
			return host_engine_fail(e, ret,
						"cvmconv_add_region(gpa 0x%" PRIx64
						", size 0x%" PRIx64 "): %s",
						r.gpa, r.size, strerror(-ret));
	}
	return 0;
}

static int start_qemu_like(struct host_engine *e)
{
	const struct host_engine_config *c = &e->cfg;
	int ret = qemu_like_create(set_attr, e, &e->ql);

	for (int i = 0; i < c->nreg && !ret; i++) {
		uint64_t foff;
		const struct host_engine_files *f = host_engine_files_of(e, i, &foff);
		struct qemu_like_region r = {
			.gpa = c->reg[i].gpa,
			.size = c->reg[i].size,
			.private_fd = f->private_fd,
			.private_offset = foff,
			.shared_fd = f->shared_fd,
			.shared_offset = foff,
			.start_private = c->start_private,
		};

		ret = qemu_like_add_region(e->ql, &r);
	}
	return ret ? host_engine_fail(e, ret, "qemu-like setup: %s", strerror(-ret)) : 0;
}

int host_engine_start(struct host_engine *e)
{
	return e->cfg.host == HOST_ENGINE_QEMU_LIKE ? start_qemu_like(e) : start_cvmconv(e);
}

int host_engine_map_gpa_range(struct host_engine *e, uint64_t gpa, uint64_t npages, uint64_t attrs,
			      uint64_t *hc_ret)
{
	*hc_ret = 0;
	if (e->conv)
		return cvmconv_map_gpa_range(e->conv, gpa, npages, attrs, hc_ret);
	return qemu_like_map_gpa_range(e->ql, gpa, npages, attrs);
}

int host_engine_convert(struct host_engine *e, uint64_t gpa, uint64_t size, bool to_private)
{
	if (e->conv)
		return cvmconv_convert(e->conv, gpa, size, to_private);
	return qemu_like_convert(e->ql, gpa, size, to_private);
}

int host_engine_memory_fault(struct host_engine *e, unsigned vcpu, uint64_t gpa, uint64_t size,
			     bool to_private)
{
	uint64_t flags = to_private ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0;
	struct kvm_run *run;
	int ret;

	if (!e->conv) {
		ret = qemu_like_convert(e->ql, gpa, size, to_private);
		return ret ? ret : 1;
	}
	/* one kvm_run per vCPU, as a VMM has: cvmconv tells the vCPUs'
	 * faults apart by it */
	if (!e->runs) {
		e->runs = calloc(RUNS, sizeof(*e->runs));
		if (!e->runs)
			return host_engine_fail(e, -ENOMEM, "out of memory");
	}
	run = &e->runs[vcpu % RUNS];
	memset(run, 0, sizeof(*run));
	run->exit_reason = KVM_EXIT_MEMORY_FAULT;
	*cvmconv_run_memory_fault(run) =
		(struct cvmconv_kvm_memory_fault){ .flags = flags, .gpa = gpa, .size = size };
	return cvmconv_handle_exit(e->conv, run);
}
