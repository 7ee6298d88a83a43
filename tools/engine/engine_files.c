/* SPDX-License-Identifier: MIT */
/* The host engine's files and its life: creating and mapping the backings,
 * touching and populating them, what the kernel holds for them, and
 * host_engine_open() / host_engine_close() (see host_engine.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "attr_recorder.h"
#include "host_engine.h"
#include "kernel_accounting.h"
#include "private_backing.h"
#include "qemu_like.h"

/* The region holding @gpa (its bytes from there in *left), or -1. */
static int region_of(const struct host_engine *e, uint64_t gpa, uint64_t *left)
{
	for (int i = 0; i < e->cfg.nreg; i++) {
		const struct host_engine_region *r = &e->cfg.reg[i];

		if (gpa >= r->gpa && gpa - r->gpa < r->size) {
			*left = r->size - (gpa - r->gpa);
			return i;
		}
	}
	return -1;
}

/* ---- touching the shared side ---- */

static sigjmp_buf touch_jmp;
static volatile sig_atomic_t touching;
static struct sigaction old_sigbus;

static void on_sigbus(int sig)
{
	if (touching)
		siglongjmp(touch_jmp, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

int host_engine_touch(struct host_engine *e, uint64_t off, uint64_t len)
{
	uint64_t first = off / HOST_ENGINE_4K, last = (off + len) / HOST_ENGINE_4K;

	if (!e->shared_map)
		return 0;
	if (sigsetjmp(touch_jmp, 1)) {
		touching = 0;
		return host_engine_fail(e, -ENOMEM,
					"SIGBUS touching the shared memfd near offset %#" PRIx64
					": no huge page left (HugePages_Free %ld)",
					off, host_engine_hugepages_free());
	}
	touching = 1;
	for (uint64_t p = first; p < last; p++)
		if (!host_engine_page_private(e, p))
			((volatile uint8_t *)e->shared_map)[p * HOST_ENGINE_4K] = 1;
	touching = 0;
	return 0;
}

int host_engine_touch_gpa(struct host_engine *e, uint64_t gpa, uint64_t len)
{
	uint64_t end = gpa + len;

	while (gpa < end) {
		uint64_t off, left, n;
		int ret;

		if (!host_engine_offset(e, gpa, &off, &left))
			return 0;
		n = end - gpa < left ? end - gpa : left;
		ret = host_engine_touch(e, off, n);
		if (ret)
			return ret;
		gpa += n;
	}
	return 0;
}

int host_engine_populate(struct host_engine *e, uint64_t gpa, uint64_t len, bool to_private)
{
	uint64_t end = gpa + len;

	while (gpa < end) {
		uint64_t left, foff, n, at;
		int i = region_of(e, gpa, &left);
		const struct host_engine_files *f;
		int fd;

		if (i < 0)
			return 0;
		f = host_engine_files_of(e, i, &foff);
		fd = to_private ? f->private_fd : f->shared_fd;
		n = end - gpa < left ? end - gpa : left;
		at = foff + (gpa - e->cfg.reg[i].gpa);
		/* fallocate allocates like a first touch; on hugetlbfs whole huge
		 * pages (fs/hugetlbfs/inode.c hugetlbfs_fallocate) */
		if (fd >= 0 && fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)at, (off_t)n) != 0)
			return host_engine_fail(
				e, -errno,
				"allocating %s memory at gpa 0x%" PRIx64 " (+0x%" PRIx64 "): %s",
				to_private ? "private" : "shared", gpa, n, strerror(errno));
		gpa += n;
	}
	return 0;
}

/* ---- measuring ---- */

long host_engine_hugepages_free(void)
{
	return meminfo_count("HugePages_Free:");
}

uint64_t host_engine_alloc_bytes(int fd)
{
	uint64_t bytes = fd >= 0 ? fd_allocated_bytes(fd) : UINT64_MAX;

	return bytes == UINT64_MAX ? 0 : bytes;
}

uint64_t host_engine_shared_bytes(const struct host_engine *e)
{
	uint64_t sum = 0;

	for (int i = 0; i < e->nfiles; i++)
		sum += host_engine_alloc_bytes(e->files[i].shared_fd);
	return sum;
}

uint64_t host_engine_private_bytes(const struct host_engine *e)
{
	uint64_t sum = 0;

	for (int i = 0; i < e->nfiles; i++)
		sum += host_engine_alloc_bytes(e->files[i].private_fd);
	return sum;
}

uint64_t host_engine_kernel_da(const struct host_engine *e)
{
	uint64_t alloc = host_engine_shared_bytes(e);
	uint64_t live = e->live_shared_pages * HOST_ENGINE_4K;

	if (!e->priv)
		return 0;
	if (e->cfg.host == HOST_ENGINE_INPLACE)
		live = e->cfg.span;
	return alloc > live ? alloc - live : 0;
}

/* ---- backings ---- */

static int map_shared_side(struct host_engine *e, struct host_engine_files *f, const char *what)
{
	/* MAP_NORESERVE: hugetlbfs would otherwise reserve the whole RAM's
	 * worth of huge pages at mmap (hugetlb_reserve_pages) */
	void *m = mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
		       f->shared_fd, 0);

	if (m == MAP_FAILED)
		return host_engine_fail(e, -errno, "mmap(%s): %s", what, strerror(errno));
	f->shared_map = m;
	return 0;
}

static const char *const shared_names[] = { "shmem", "hugetlb", "hugetlbfs", "none" };

static int shared_backing(struct host_engine *e, struct host_engine_files *f)
{
	const struct host_engine_config *c = &e->cfg;
	const char *name = c->shared_name ? c->shared_name : "cvmconv-shared";
	uint64_t hps = c->huge_page_size ? c->huge_page_size : HOST_ENGINE_2M;

	switch (c->shared) {
	case HOST_ENGINE_SHARED_SHMEM:
		f->shared_fd = cvmconv_memfd_create(name, f->size, HOST_ENGINE_4K);
		break;
	case HOST_ENGINE_SHARED_MFD_HUGETLB:
		f->shared_fd = cvmconv_memfd_create(name, f->size, hps);
		break;
	case HOST_ENGINE_SHARED_HUGETLBFS:
		f->shared_fd = cvmconv_hugetlbfs_create(f->size, hps);
		break;
	case HOST_ENGINE_SHARED_NONE:
		return 0;
	default:
		return host_engine_fail(e, -EINVAL, "bad shared backing %d", (int)c->shared);
	}
	if (f->shared_fd < 0)
		return host_engine_fail(e, f->shared_fd,
					"cannot create the %s shared backing of %" PRIu64
					" bytes: %s",
					shared_names[c->shared], f->size, strerror(-f->shared_fd));
	return 0;
}

static int private_backing(struct host_engine *e, struct host_engine_files *f)
{
	const char *what = e->cfg.private_standin ? "shmem stand-in" : private_backing_name();

	/* a real guest_memfd where the host's KVM makes one, else a stand-in */
	f->private_fd = e->cfg.private_standin
				? cvmconv_memfd_create("cvmconv-private", f->size, HOST_ENGINE_4K)
				: private_backing_fd(f->size);
	if (f->private_fd < 0)
		return host_engine_fail(e, f->private_fd, "%s of %" PRIu64 " bytes (%s): %s",
					e->cfg.host == HOST_ENGINE_INPLACE ? "guest_memfd"
									   : "private side",
					f->size, what, strerror(-f->private_fd));
	return 0;
}

static int backing_pair(struct host_engine *e, struct host_engine_files *f)
{
	int ret = private_backing(e, f);

	if (ret)
		return ret;
	if (e->cfg.host == HOST_ENGINE_INPLACE) {
		/* one file for both sides */
		f->shared_fd = f->private_fd;
		return e->cfg.map_shared ? map_shared_side(e, f, "guest_memfd") : 0;
	}
	ret = shared_backing(e, f);
	if (ret)
		return ret;
	return e->cfg.map_shared && f->shared_fd >= 0 ? map_shared_side(e, f, "shared memfd") : 0;
}

static int backings(struct host_engine *e)
{
	const struct host_engine_config *c = &e->cfg;

	e->nfiles = c->per_region_files ? c->nreg : 1;
	for (int i = 0; i < e->nfiles; i++)
		e->files[i].shared_fd = e->files[i].private_fd = -1;
	for (int i = 0; i < e->nfiles; i++) {
		struct host_engine_files *f = &e->files[i];
		int ret;

		f->size = c->per_region_files ? c->reg[i].size : c->span;
		ret = backing_pair(e, f);
		if (ret)
			return ret;
	}
	e->shared_fd = e->files[0].shared_fd;
	e->private_fd = e->files[0].private_fd;
	e->shared_map = e->files[0].shared_map;
	return 0;
}

static int files_open(struct host_engine *e)
{
	struct sigaction sa = { .sa_handler = on_sigbus };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old_sigbus);
	e->sigbus_installed = true;
	return backings(e);
}

static void files_close(struct host_engine *e)
{
	for (int i = 0; i < e->nfiles; i++) {
		struct host_engine_files *f = &e->files[i];

		if (f->shared_map)
			munmap(f->shared_map, f->size);
		if (f->shared_fd >= 0)
			close(f->shared_fd);
		if (f->private_fd >= 0 && f->private_fd != f->shared_fd)
			close(f->private_fd);
		f->shared_map = NULL;
		f->shared_fd = f->private_fd = -1;
	}
	e->nfiles = 0;
	e->shared_map = NULL;
	e->shared_fd = e->private_fd = -1;
	if (e->sigbus_installed)
		sigaction(SIGBUS, &old_sigbus, NULL);
	e->sigbus_installed = false;
}

/* ---- the engine ---- */

int host_engine_open(struct host_engine *e, const struct host_engine_config *cfg)
{
	int ret;

	memset(e, 0, sizeof(*e));
	e->shared_fd = e->private_fd = -1;
	if (!cfg || cfg->nreg < 1 || cfg->nreg > HOST_ENGINE_MAX_REGIONS)
		return host_engine_fail(e, -EINVAL, "bad engine configuration");
	e->cfg = *cfg;
	for (int i = 0; i < cfg->nreg; i++)
		if (cfg->reg[i].off > cfg->span || cfg->reg[i].size > cfg->span - cfg->reg[i].off)
			return host_engine_fail(e, -EINVAL, "a region lies beyond the files");
	e->npages = cfg->span / HOST_ENGINE_4K;
	e->nextents = (cfg->span + HOST_ENGINE_2M - 1) / HOST_ENGINE_2M;
	if (cfg->map_shared && (cfg->per_region_files ||
				(cfg->track_limit_pages && e->npages > cfg->track_limit_pages)))
		return host_engine_fail(
			e, -EINVAL, "a mapped shared side needs one pair of files and the record");
	if (cfg->host == HOST_ENGINE_QEMU_LIKE && cfg->shared == HOST_ENGINE_SHARED_NONE)
		return host_engine_fail(e, -EINVAL, "the QEMU-like host needs a shared backing");
	ret = files_open(e);
	return ret ? ret : host_engine_state_init(e);
}

void host_engine_close(struct host_engine *e)
{
	cvmconv_destroy(e->conv);
	e->conv = NULL;
	qemu_like_destroy(e->ql);
	e->ql = NULL;
	attr_recorder_destroy(e->rec);
	e->rec = NULL;
	free(e->runs);
	e->runs = NULL;
	files_close(e);
	free(e->priv);
	e->priv = NULL;
	free(e->ext_shared);
	e->ext_shared = NULL;
}
