/* SPDX-License-Identifier: MIT */
/*
 * The context and its region registry: creation, the sorted list of
 * non-overlapping regions, and lookups by guest physical address.
 */
#include <errno.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "internal.h"

#define offsetofend(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

/* Copy a caller's sz-prefixed struct into ours (libbpf-style options): a
 * shorter one is zero-extended, a longer one must have a zero tail. */
int copy_sized(void *dst, size_t ours, const void *src, size_t theirs, size_t minimum)
{
	if (theirs < minimum)
		return -EINVAL;
	for (size_t i = ours; i < theirs; i++)
		if (((const unsigned char *)src)[i])
			return -E2BIG;
	memset(dst, 0, ours);
	memcpy(dst, src, theirs < ours ? theirs : ours);
	return 0;
}

int cvmconv_create(const struct cvmconv_config *cfg_in, struct cvmconv **out)
{
	struct cvmconv_config cfg;
	struct cvmconv *c;
	bool gmem_attributes;
	int err;

	if (!cfg_in || !out)
		return -EINVAL;
	err = copy_sized(&cfg, sizeof(cfg), cfg_in, cfg_in->sz,
			 offsetofend(struct cvmconv_config, ops));
	if (err)
		return err;
	if (!cfg.granule)
		cfg.granule = SIZE_2M;
	if (cfg.granule < PAGE_4K || (cfg.granule & (cfg.granule - 1)) ||
	    (unsigned)cfg.unaligned > CVMCONV_UNALIGNED_REJECT)
		return -EINVAL;
	gmem_attributes = cfg.flags & CVMCONV_GMEM_ATTRIBUTES;
	if (cfg.vm_fd < 0 && !gmem_attributes && !(cfg.ops && cfg.ops->set_memory_attributes))
		return -EINVAL;
	if (cfg.flags & ~(CVMCONV_DEFER_PUNCH | CVMCONV_GMEM_ATTRIBUTES))
		return -EINVAL;
	if (cfg.inplace_retries > CVMCONV_INPLACE_RETRIES_MAX)
		return -EINVAL;
	if (!gmem_attributes && !(cfg.ops && cfg.ops->set_memory_attributes)) {
		err = kvm_probe_private_attribute(cfg.vm_fd);
		if (err)
			return err;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->flush_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
	if (pthread_mutex_init(&c->regions_lock.writer, NULL)) {
		free(c);
		return -ENOMEM;
	}
	if (pthread_mutex_init(&c->log_lock, NULL)) {
		pthread_mutex_destroy(&c->regions_lock.writer);
		free(c);
		return -ENOMEM;
	}
	if (pthread_mutex_init(&c->fault_lock, NULL)) {
		pthread_mutex_destroy(&c->log_lock);
		pthread_mutex_destroy(&c->regions_lock.writer);
		free(c);
		return -ENOMEM;
	}
	/* the poll fd: nonblocking, so that the library's own writes and
	 * drains never wait */
	c->poll_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->poll_fd < 0) {
		err = -errno;
		pthread_mutex_destroy(&c->fault_lock);
		pthread_mutex_destroy(&c->log_lock);
		pthread_mutex_destroy(&c->regions_lock.writer);
		free(c);
		return err;
	}
	c->vm_fd = cfg.vm_fd;
	c->granule = cfg.granule;
	c->unaligned = cfg.unaligned;
	c->defer_punch = cfg.flags & CVMCONV_DEFER_PUNCH;
	if (cfg.ops) {
		/* struct cvmconv_ops has no sz: a caller whose config ends
		 * before inplace_retries was built before set_gmem_attributes
		 * existed, and its ops struct ends before it too */
		c->ops.set_memory_attributes = cfg.ops->set_memory_attributes;
		c->ops.punch = cfg.ops->punch;
		c->ops.discard_hva = cfg.ops->discard_hva;
		if (cfg_in->sz >= offsetofend(struct cvmconv_config, inplace_retries))
			c->ops.set_gmem_attributes = cfg.ops->set_gmem_attributes;
	}
	c->gmem_attributes = gmem_attributes;
	c->inplace_retries = cfg.inplace_retries ? cfg.inplace_retries : CVMCONV_INPLACE_RETRIES;
	c->ops_opaque = cfg.ops_opaque;
	c->log_fn = cfg.log;
	c->log_opaque = cfg.log_opaque;
	*out = c;
	return 0;
}

static void region_free(struct cvmconv *c, struct region *r)
{
	side_fini(c, &r->shared);
	side_fini(c, &r->private_);
	tracker_fini(&r->tr);
	pthread_cond_destroy(&r->flushed);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

void cvmconv_destroy(struct cvmconv *c)
{
	if (!c)
		return;
	for (uint32_t i = 0; i < c->nregions; i++)
		region_free(c, c->regions[i]);
	free(c->regions);
	pthread_mutex_destroy(&c->regions_lock.writer);
	pthread_mutex_destroy(&c->log_lock);
	pthread_mutex_destroy(&c->fault_lock);
	pthread_mutex_destroy(&c->flush_lock);
	if (c->poll_fd >= 0)
		close(c->poll_fd);
	free(c);
}

int cvmconv_get_poll_fd(struct cvmconv *c)
{
	return c ? c->poll_fd : -EINVAL;
}

void regions_write_lock(struct regions_lock *l)
{
	/* Readers a writer kept out go first: a thread that adds and removes
	 * regions in a loop must not starve the vCPUs. */
	while (atomic_load(&l->blocked))
		sched_yield();
	pthread_mutex_lock(&l->writer);
	atomic_store(&l->writing, true);
	while (atomic_load(&l->readers))
		sched_yield(); /* readers hold it for one request at most */
}

void regions_write_unlock(struct regions_lock *l)
{
	atomic_store(&l->writing, false);
	pthread_mutex_unlock(&l->writer);
}

struct region *context_find_region(struct cvmconv *c, uint64_t gpa, uint32_t *idx)
{
	uint32_t lo = 0, hi = c->nregions;

	/* first region whose end lies above gpa */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		struct region *r = c->regions[mid];

		if (r->gpa + r->size <= gpa)
			lo = mid + 1;
		else
			hi = mid;
	}
	*idx = lo;
	if (lo < c->nregions && c->regions[lo]->gpa <= gpa)
		return c->regions[lo];
	return NULL;
}

static int check_region(const struct cvmconv_region *r)
{
	if (!r->size || ((r->gpa | r->size | r->private_offset | r->shared_offset) & (PAGE_4K - 1)))
		return -EINVAL;
	if (r->size > GPA_LIMIT || r->gpa > GPA_LIMIT - r->size)
		return -EINVAL;
	/* a file range must end within off_t, or every punch of it fails
	 * (vfs_fallocate refuses offset + len > LLONG_MAX) */
	if (r->private_offset > (uint64_t)INT64_MAX - r->size ||
	    r->shared_offset > (uint64_t)INT64_MAX - r->size)
		return -EINVAL;
	if (r->flags & ~(CVMCONV_REGION_PRIVATE | CVMCONV_REGION_ATTRS_ONLY |
			 CVMCONV_REGION_ALLOC_SHARED | CVMCONV_REGION_INPLACE))
		return -EINVAL;
	if (r->flags & CVMCONV_REGION_INPLACE) {
		/* one guest_memfd holds both sides */
		if (r->private_fd < 0 || r->shared_fd >= 0 ||
		    (r->flags & (CVMCONV_REGION_ATTRS_ONLY | CVMCONV_REGION_ALLOC_SHARED)))
			return -EINVAL;
		/* a mode, not a mask: the kernel takes one of them */
		if ((r->content_mode & ~(CVMCONV_CONTENT_ZERO | CVMCONV_CONTENT_PRESERVE)) ||
		    r->content_mode == (CVMCONV_CONTENT_ZERO | CVMCONV_CONTENT_PRESERVE))
			return -EINVAL;
	} else if (r->content_mode) {
		return -EINVAL;
	}
	if ((r->flags & CVMCONV_REGION_ALLOC_SHARED) && r->shared_fd < 0)
		return -EINVAL; /* fallocate needs the file */
	if ((r->flags & CVMCONV_REGION_ATTRS_ONLY) && r->private_fd >= 0)
		return -EINVAL; /* attribute tracking only: no private backing */
	if (r->unaligned < -1 || r->unaligned > CVMCONV_UNALIGNED_REJECT)
		return -EINVAL;
	return 0;
}

/* What the kernel (the default ops) must offer for region @r: probed on
 * the real fds, never assumed from a capability number. A VMM that passes
 * its own op gets no probe (DESIGN.md). */
static int check_kernel_support(struct cvmconv *c, const struct cvmconv_region *r)
{
	struct stat st;
	int err;

	if (!(r->flags & CVMCONV_REGION_INPLACE))
		return c->gmem_attributes && !c->ops.set_memory_attributes ? -EOPNOTSUPP : 0;
	if (fstat(r->private_fd, &st))
		return -errno;
	if (c->ops.set_gmem_attributes)
		return 0;
	err = kvm_probe_gmem_attributes2(r->private_fd);
	if (err)
		return err;
	if (r->content_mode && !(kvm_gmem_content_modes(c->vm_fd) & r->content_mode))
		return -EOPNOTSUPP;
	return 0;
}

int cvmconv_add_region(struct cvmconv *c, const struct cvmconv_region *r_in)
{
	struct cvmconv_region in;
	struct region *r;
	uint32_t idx;
	bool private;
	int err;

	if (!c || !r_in)
		return -EINVAL;
	err = copy_sized(&in, sizeof(in), r_in, r_in->sz,
			 offsetofend(struct cvmconv_region, flags));
	if (err)
		return err;
	if (r_in->sz < offsetofend(struct cvmconv_region, unaligned))
		in.unaligned = -1;
	err = check_region(&in);
	if (!err)
		err = check_kernel_support(c, &in);
	if (err)
		return err;
	private = in.flags & CVMCONV_REGION_PRIVATE;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	if (pthread_mutex_init(&r->lock, NULL)) {
		free(r);
		return -ENOMEM;
	}
	r->flushed = (pthread_cond_t)PTHREAD_COND_INITIALIZER;
	r->gpa = in.gpa;
	r->size = in.size;
	r->attrs_only = in.flags & CVMCONV_REGION_ATTRS_ONLY;
	r->alloc_shared = in.flags & CVMCONV_REGION_ALLOC_SHARED;
	r->npages = in.size >> PAGE_SHIFT_4K;
	r->shared.fd = r->private_.fd = -1;
	r->inplace = in.flags & CVMCONV_REGION_INPLACE;
	r->gmem_fd = r->inplace ? in.private_fd : -1;
	r->gmem_offset = in.private_offset;
	r->content_mode = in.content_mode;
	err = tracker_init(&r->tr, in.gpa, in.size, private);
	/* in place: the pages a conversion leaves are the ones it enters,
	 * so neither side has anything to punch or to hold twice */
	if (!err)
		err = side_init(&r->shared, r->inplace ? -1 : in.shared_fd,
				r->inplace ? NULL : in.shared_hva, in.shared_offset, r->npages);
	if (!err)
		err = side_init(&r->private_, r->inplace ? -1 : in.private_fd, NULL,
				in.private_offset, r->npages);
	if (err) {
		region_free(c, r);
		return err;
	}

	regions_write_lock(&c->regions_lock);
	r->unaligned = in.unaligned < 0 ? (int)c->unaligned : in.unaligned;
	if (atomic_load(&c->broken)) {
		err = -ENOTRECOVERABLE;
	} else if (context_find_region(c, in.gpa, &idx) ||
		   (idx < c->nregions && c->regions[idx]->gpa < in.gpa + in.size)) {
		err = -EEXIST;
	} else if (c->nregions == c->regions_cap) {
		uint32_t cap = c->regions_cap ? c->regions_cap * 2 : 8;
		struct region **grown = realloc(c->regions, cap * sizeof(*grown));

		if (grown) {
			c->regions = grown;
			c->regions_cap = cap;
		} else {
			err = -ENOMEM;
		}
	}
	if (!err && private) {
		COUNT(c, attr_updates, 1);
		err = r->inplace
			      ? inplace_set(c, r, 0, r->npages, true, false)
			      : op_set_memory_attributes(c, in.gpa, in.size, CVMCONV_ATTR_PRIVATE);
	}
	if (!err) {
		memmove(&c->regions[idx + 1], &c->regions[idx],
			(c->nregions - idx) * sizeof(*c->regions));
		c->regions[idx] = r;
		c->nregions++;
		if (r->inplace)
			atomic_fetch_add(&c->ninplace, 1);
		/* held huge pages whose pages are stale from the start count */
		atomic_fetch_add(&c->double_alloc_pages,
				 r->shared.double_alloc_pages + r->private_.double_alloc_pages);
		log_msg(c, LOG_INFO,
			"region gpa 0x%llx size 0x%llx: %s page %llu, private page %llu%s",
			(unsigned long long)in.gpa, (unsigned long long)in.size,
			r->inplace ? "in place (guest_memfd holds both sides), shared" : "shared",
			(unsigned long long)r->shared.page_size,
			(unsigned long long)r->private_.page_size, private ? ", private" : "");
	}
	regions_write_unlock(&c->regions_lock);
	if (err)
		region_free(c, r);
	return err;
}

int cvmconv_remove_region(struct cvmconv *c, uint64_t gpa)
{
	struct region *r;
	uint32_t idx;

	if (!c)
		return -EINVAL;
	regions_write_lock(&c->regions_lock);
	r = context_find_region(c, gpa, &idx);
	if (!r || r->gpa != gpa) {
		regions_write_unlock(&c->regions_lock);
		return -ENOENT;
	}
	memmove(&c->regions[idx], &c->regions[idx + 1],
		(c->nregions - idx - 1) * sizeof(*c->regions));
	c->nregions--;
	if (r->inplace)
		atomic_fetch_sub(&c->ninplace, 1);
	COUNT(c, steps_removed, region_steps(r));
	region_free(c, r);
	regions_write_unlock(&c->regions_lock);
	return 0;
}

int cvmconv_is_private(struct cvmconv *c, uint64_t gpa)
{
	struct region *r;
	uint32_t idx;
	int ret = -ENOENT;

	if (!c)
		return -EINVAL;
	regions_read_lock(&c->regions_lock);
	r = context_find_region(c, gpa, &idx);
	if (r) {
		pthread_mutex_lock(&r->lock);
		ret = tracker_page_private(&r->tr, (gpa - r->gpa) >> PAGE_SHIFT_4K);
		pthread_mutex_unlock(&r->lock);
	}
	regions_read_unlock(&c->regions_lock);
	return ret;
}
