/* SPDX-License-Identifier: MIT */
/* The QEMU-like conversion handler (see qemu_like.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "qemu_like.h"

#define PAGE_4K 4096ULL
#define MAX_REGIONS 16
#define HUGETLBFS_MAGIC_ 0x958458f6 /* include/uapi/linux/magic.h */

struct ql_region {
	struct qemu_like_region r;
	bool shared_huge;
};

struct qemu_like {
	qemu_like_set_attr_fn set_attr;
	void *opaque;
	struct ql_region regions[MAX_REGIONS];
	size_t n;
	struct qemu_like_counts counts;
};

int qemu_like_create(qemu_like_set_attr_fn set_attr, void *opaque, struct qemu_like **out)
{
	struct qemu_like *q;

	if (!set_attr || !out)
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->set_attr = set_attr;
	q->opaque = opaque;
	*out = q;
	return 0;
}

void qemu_like_destroy(struct qemu_like *q)
{
	free(q);
}

/* QEMU decides per RAM block: qemu_ram_pagesize() differs from the host
 * page size on hugetlbfs (util/mmap-alloc.c reads it with fstatfs). */
static int fd_is_huge(int fd, bool *huge)
{
	struct statfs fs;

	if (fstatfs(fd, &fs) != 0)
		return -errno;
	*huge = (unsigned long)fs.f_type == HUGETLBFS_MAGIC_ && (uint64_t)fs.f_bsize > PAGE_4K;
	return 0;
}

static int set_attr(struct qemu_like *q, uint64_t gpa, uint64_t size, bool to_private)
{
	int ret;

	q->counts.attr_calls++;
	ret = q->set_attr(q->opaque, gpa, size, to_private ? QEMU_LIKE_ATTR_PRIVATE : 0);
	if (ret)
		q->counts.attr_failures++;
	return ret;
}

int qemu_like_add_region(struct qemu_like *q, const struct qemu_like_region *r)
{
	struct ql_region *nr;
	int ret;

	if (!q || !r || !r->size || ((r->gpa | r->size) & (PAGE_4K - 1)) ||
	    r->gpa > UINT64_MAX - r->size || r->private_fd < 0 || r->shared_fd < 0 ||
	    ((r->private_offset | r->shared_offset) & (PAGE_4K - 1)))
		return -EINVAL;
	for (size_t i = 0; i < q->n; i++) {
		const struct qemu_like_region *o = &q->regions[i].r;

		if (r->gpa < o->gpa + o->size && o->gpa < r->gpa + r->size)
			return -EEXIST;
	}
	if (q->n == MAX_REGIONS)
		return -ENOSPC;
	nr = &q->regions[q->n];
	memset(nr, 0, sizeof(*nr));
	nr->r = *r;
	ret = fd_is_huge(r->shared_fd, &nr->shared_huge);
	if (ret)
		return ret;
	if (r->start_private) {
		ret = set_attr(q, r->gpa, r->size, true);
		if (ret)
			return ret;
	}
	q->n++;
	return 0;
}

static struct ql_region *region_of(struct qemu_like *q, uint64_t gpa)
{
	for (size_t i = 0; i < q->n; i++)
		if (gpa >= q->regions[i].r.gpa && gpa - q->regions[i].r.gpa < q->regions[i].r.size)
			return &q->regions[i];
	return NULL;
}

static int discard(struct qemu_like *q, int fd, uint64_t offset, uint64_t len)
{
	q->counts.discards++;
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len)) {
		q->counts.discard_failures++;
		return -errno;
	}
	return 0;
}

int qemu_like_convert(struct qemu_like *q, uint64_t gpa, uint64_t size, bool to_private)
{
	uint64_t end, p;
	int ret, first_err = 0;

	if (!q)
		return -EINVAL;
	q->counts.conversions++;
	/* kvm_convert_memory(): host-page aligned, non-empty, guest_memfd RAM */
	if (!size || ((gpa | size) & (PAGE_4K - 1)) || gpa > UINT64_MAX - size) {
		q->counts.errors++;
		return -EINVAL;
	}
	end = gpa + size;
	for (p = gpa; p < end;) {
		struct ql_region *r = region_of(q, p);

		if (!r) {
			q->counts.errors++;
			return -EINVAL;
		}
		p = r->r.gpa + r->r.size;
	}
	/* attributes first, for exactly the range */
	ret = set_attr(q, gpa, size, to_private);
	if (ret) {
		q->counts.errors++;
		return ret;
	}
	/* then the old side, for exactly the range, region by region */
	for (p = gpa; p < end;) {
		struct ql_region *r = region_of(q, p);
		uint64_t stop = end < r->r.gpa + r->r.size ? end : r->r.gpa + r->r.size;
		uint64_t off = p - r->r.gpa;

		if (!to_private)
			ret = discard(q, r->r.private_fd, r->r.private_offset + off, stop - p);
		else if (r->shared_huge)
			q->counts.discards_skipped++; /* the shared huge page stays allocated */
		else
			ret = discard(q, r->r.shared_fd, r->r.shared_offset + off, stop - p);
		if (ret && !first_err)
			first_err = ret;
		p = stop;
	}
	if (first_err)
		q->counts.errors++;
	return first_err;
}

int qemu_like_map_gpa_range(struct qemu_like *q, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	if (!q)
		return -EINVAL;
	if (npages > UINT64_MAX / PAGE_4K) {
		q->counts.conversions++;
		q->counts.errors++;
		return -EINVAL;
	}
	return qemu_like_convert(q, gpa, npages * PAGE_4K,
				 (attrs & QEMU_LIKE_MAP_GPA_RANGE_ENCRYPTED) != 0);
}

void qemu_like_get_counts(const struct qemu_like *q, struct qemu_like_counts *out)
{
	if (q && out)
		*out = q->counts;
}

int qemu_like_shared_is_huge(const struct qemu_like *q, size_t i)
{
	if (!q || i >= q->n)
		return -ENOENT;
	return q->regions[i].shared_huge;
}

/* st_blocks of @fd, once per distinct file among @seen. */
static int add_blocks(int fd, struct stat *seen, size_t *nseen, uint64_t *bytes)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		return -errno;
	for (size_t i = 0; i < *nseen; i++)
		if (seen[i].st_dev == st.st_dev && seen[i].st_ino == st.st_ino)
			return 0;
	seen[(*nseen)++] = st;
	*bytes += (uint64_t)st.st_blocks * 512;
	return 0;
}

int qemu_like_measure(const struct qemu_like *q, uint64_t live_shared_bytes,
		      struct qemu_like_memory *out)
{
	struct stat seen_shared[MAX_REGIONS], seen_private[MAX_REGIONS];
	size_t ns = 0, np = 0;
	struct qemu_like_memory m = { 0 };

	if (!q || !out)
		return -EINVAL;
	for (size_t i = 0; i < q->n; i++) {
		int ret = add_blocks(q->regions[i].r.shared_fd, seen_shared, &ns,
				     &m.shared_alloc_bytes);

		if (!ret)
			ret = add_blocks(q->regions[i].r.private_fd, seen_private, &np,
					 &m.private_alloc_bytes);
		if (ret)
			return ret;
	}
	m.double_alloc_bytes = m.shared_alloc_bytes > live_shared_bytes
				       ? m.shared_alloc_bytes - live_shared_bytes
				       : 0;
	*out = m;
	return 0;
}
