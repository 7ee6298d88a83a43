/* SPDX-License-Identifier: MIT */
/* The strict fake in-place guest_memfd (rules in fake_gmem.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fake_gmem.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cvmconv.h"

#define GP 4096ULL

/* Library calls come from several vCPU threads; tests read meanwhile. */
static pthread_mutex_t gmem_lock = PTHREAD_MUTEX_INITIALIZER;

static int setup(struct fake_gmem *g, uint64_t size, uint64_t modes);

int fake_gmem_init(struct fake_gmem *g, uint64_t size, uint64_t modes)
{
	memset(g, 0, sizeof(*g));
	g->fd = -1;
	if (!size || (size & (GP - 1)))
		return -EINVAL;
	g->fd = memfd_create("fake-guest-memfd", MFD_CLOEXEC);
	if (g->fd < 0)
		return -errno;
	g->owns_fd = true;
	if (ftruncate(g->fd, (off_t)size)) {
		int err = -errno;

		close(g->fd);
		g->fd = -1;
		return err;
	}
	return setup(g, size, modes);
}

int fake_gmem_init_fd(struct fake_gmem *g, int fd, uint64_t size, uint64_t modes)
{
	memset(g, 0, sizeof(*g));
	g->fd = fd;
	if (fd < 0 || !size || (size & (GP - 1)))
		return -EINVAL;
	return setup(g, size, modes);
}

static int setup(struct fake_gmem *g, uint64_t size, uint64_t modes)
{
	uint64_t pages = size / GP;

	g->map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, g->fd, 0);
	g->priv = calloc(pages, 1);
	g->pins = calloc(pages, sizeof(*g->pins));
	g->pin_release_after = calloc(pages, sizeof(*g->pin_release_after));
	g->size = size;
	g->modes = modes;
	if (g->map == MAP_FAILED || !g->priv || !g->pins || !g->pin_release_after) {
		if (g->map == MAP_FAILED)
			g->map = NULL;
		fake_gmem_fini(g);
		return -ENOMEM;
	}
	return 0;
}

void fake_gmem_fini(struct fake_gmem *g)
{
	if (g->map)
		munmap(g->map, g->size);
	if (g->fd >= 0 && g->owns_fd)
		close(g->fd);
	free(g->priv);
	free(g->pins);
	free(g->pin_release_after);
	memset(g, 0, sizeof(*g));
	g->fd = -1;
}

static void log_call(struct fake_gmem *g, uint64_t offset, uint64_t size, uint64_t attributes,
		     uint64_t flags, int ret)
{
	const unsigned max = sizeof(g->log) / sizeof(g->log[0]);

	if (g->nlog == max) {
		memmove(&g->log[0], &g->log[1], (max - 1) * sizeof(g->log[0]));
		g->nlog--;
	}
	g->log[g->nlog++] = (struct fake_gmem_call){ offset, size, attributes, flags, ret };
}

static bool valid(const struct fake_gmem *g, uint64_t offset, uint64_t size, uint64_t attributes,
		  uint64_t flags)
{
	bool to_private = attributes & CVMCONV_ATTR_PRIVATE;

	if (!size || ((offset | size) & (GP - 1)) || offset + size < offset ||
	    offset + size > g->size)
		return false;
	if (attributes & ~CVMCONV_ATTR_PRIVATE)
		return false;
	if (flags & ~(CVMCONV_CONTENT_ZERO | CVMCONV_CONTENT_PRESERVE))
		return false;
	if (flags == (CVMCONV_CONTENT_ZERO | CVMCONV_CONTENT_PRESERVE))
		return false;
	if (flags && !(g->modes & flags))
		return false; /* a mode the kernel does not enumerate */
	if (to_private && flags == CVMCONV_CONTENT_ZERO)
		return false;
	if (to_private && flags == CVMCONV_CONTENT_PRESERVE && g->launched_cc)
		return false;
	return true;
}

/* Convert pages [a, b) (page indices) whose state differs. */
static void convert(struct fake_gmem *g, uint64_t a, uint64_t b, bool to_private, uint64_t flags)
{
	for (uint64_t p = a; p < b; p++) {
		if (g->priv[p] == to_private)
			continue; /* nothing changes, contents included */
		if (flags == CVMCONV_CONTENT_ZERO)
			memset(g->map + p * GP, 0, GP);
		else if (flags != CVMCONV_CONTENT_PRESERVE)
			memset(g->map + p * GP, FAKE_GMEM_POISON, GP);
		g->priv[p] = to_private;
		g->converted_pages++;
	}
}

int fake_gmem_set_attributes(struct fake_gmem *g, uint64_t offset, uint64_t size,
			     uint64_t attributes, uint64_t flags, uint64_t *error_offset)
{
	bool to_private = attributes & CVMCONV_ATTR_PRIVATE;
	uint64_t a, b, busy = UINT64_MAX;
	int ret = 0;

	if (!g || g->fd < 0)
		return -EBADF;
	pthread_mutex_lock(&gmem_lock);
	g->calls++;
	if (!valid(g, offset, size, attributes, flags)) {
		g->rejected++;
		ret = -EINVAL;
		goto out;
	}
	a = offset / GP;
	b = (offset + size) / GP;
	/* the whole range is checked before any page converts */
	for (uint64_t p = a; to_private && p < b; p++)
		if (g->pins[p] && !g->priv[p]) {
			busy = p;
			break;
		}
	if (busy != UINT64_MAX) {
		g->busy++;
		g->last_error_offset = busy * GP;
		if (error_offset)
			*error_offset = busy * GP;
		if (g->convert_before_busy)
			convert(g, a, busy, to_private, flags);
		/* transient references go away after a number of refusals */
		for (uint64_t p = a; p < b; p++)
			if (g->pins[p] && g->pin_release_after[p] && !--g->pin_release_after[p])
				g->pins[p] = 0;
		ret = -EAGAIN;
		goto out;
	}
	convert(g, a, b, to_private, flags);
out:
	log_call(g, offset, size, attributes, flags, ret);
	pthread_mutex_unlock(&gmem_lock);
	return ret;
}

int fake_gmem_ioctl(struct fake_gmem *g, uint64_t arg[16])
{
	/* offset, size, attributes, flags, error_offset (out), reserved[11] */
	for (unsigned i = 5; i < 16; i++)
		if (arg[i]) {
			pthread_mutex_lock(&gmem_lock);
			g->calls++;
			g->rejected++;
			log_call(g, arg[0], arg[1], arg[2], arg[3], -EINVAL);
			pthread_mutex_unlock(&gmem_lock);
			return -EINVAL;
		}
	return fake_gmem_set_attributes(g, arg[0], arg[1], arg[2], arg[3], &arg[4]);
}

int fake_gmem_is_private(const struct fake_gmem *g, uint64_t offset)
{
	int ret;

	if (offset >= g->size)
		return -EINVAL;
	pthread_mutex_lock(&gmem_lock);
	ret = g->priv[offset / GP];
	pthread_mutex_unlock(&gmem_lock);
	return ret;
}

int fake_gmem_pin(struct fake_gmem *g, uint64_t offset, uint64_t len, uint32_t release_after)
{
	uint64_t a = offset / GP, b = (offset + len + GP - 1) / GP;
	int ret = 0;

	if (!len || offset + len > g->size)
		return -EINVAL;
	pthread_mutex_lock(&gmem_lock);
	for (uint64_t p = a; p < b; p++)
		if (g->priv[p])
			ret = -EFAULT;
	for (uint64_t p = a; !ret && p < b; p++) {
		g->pins[p]++;
		g->pin_release_after[p] = release_after;
	}
	pthread_mutex_unlock(&gmem_lock);
	return ret;
}

void fake_gmem_unpin(struct fake_gmem *g, uint64_t offset, uint64_t len)
{
	uint64_t a = offset / GP, b = (offset + len + GP - 1) / GP;

	pthread_mutex_lock(&gmem_lock);
	for (uint64_t p = a; p < b && p < g->size / GP; p++)
		if (g->pins[p])
			g->pins[p]--;
	pthread_mutex_unlock(&gmem_lock);
}

int fake_gmem_host_access(const struct fake_gmem *g, uint64_t offset)
{
	int p = fake_gmem_is_private(g, offset);

	return p < 0 ? p : p ? -EFAULT : 0;
}

void fake_gmem_make_inplace(const struct fake_gmem *g, struct cvmconv_region *r, uint64_t mode)
{
	r->private_fd = g->fd;
	r->private_offset = 0;
	r->shared_fd = -1;
	r->shared_offset = 0;
	r->shared_hva = g->map;
	r->flags |= CVMCONV_REGION_INPLACE;
	r->content_mode = mode;
}
