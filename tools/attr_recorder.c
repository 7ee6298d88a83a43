/* SPDX-License-Identifier: MIT */
/* The strict memory attribute recorder (see attr_recorder.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "attr_recorder.h"

#include "cvmconv.h"

#define PAGE_4K 4096ULL
#define PAGE_SHIFT_4K 12

struct recorded_range {
	uint64_t gpa, size;
	uint64_t *private_map; /* one bit per page when tracking, else NULL */
};

struct attr_recorder {
	struct recorded_range *ranges; /* sorted by gpa */
	size_t n;
	bool tracking;
	struct attr_recorder_counts counts;
};

static int by_gpa(const void *a, const void *b)
{
	const struct recorded_range *x = a, *y = b;

	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

int attr_recorder_create(const struct attr_recorder_range *ranges, size_t n,
			 uint64_t track_limit_pages, struct attr_recorder **out)
{
	struct attr_recorder *r;
	uint64_t pages = 0;

	if (!out || (n && !ranges))
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->ranges = calloc(n ? n : 1, sizeof(*r->ranges));
	if (!r->ranges) {
		free(r);
		return -ENOMEM;
	}
	r->n = n;
	for (size_t i = 0; i < n; i++) {
		const struct attr_recorder_range *in = &ranges[i];

		if (!in->size || ((in->gpa | in->size) & (PAGE_4K - 1)) ||
		    in->gpa > UINT64_MAX - in->size) {
			attr_recorder_destroy(r);
			return -EINVAL;
		}
		r->ranges[i].gpa = in->gpa;
		r->ranges[i].size = in->size;
		pages += in->size >> PAGE_SHIFT_4K;
	}
	qsort(r->ranges, n, sizeof(*r->ranges), by_gpa);
	for (size_t i = 1; i < n; i++) {
		if (r->ranges[i - 1].gpa + r->ranges[i - 1].size > r->ranges[i].gpa) {
			attr_recorder_destroy(r);
			return -EINVAL;
		}
	}
	r->tracking = n && pages <= track_limit_pages;
	for (size_t i = 0; r->tracking && i < n; i++) {
		uint64_t words = ((r->ranges[i].size >> PAGE_SHIFT_4K) + 63) / 64;

		r->ranges[i].private_map = calloc(words, sizeof(uint64_t));
		if (!r->ranges[i].private_map) {
			attr_recorder_destroy(r);
			return -ENOMEM;
		}
	}
	*out = r;
	return 0;
}

void attr_recorder_destroy(struct attr_recorder *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		free(r->ranges[i].private_map);
	free(r->ranges);
	free(r);
}

/* The range holding @gpa, or NULL. */
static struct recorded_range *find(const struct attr_recorder *r, uint64_t gpa)
{
	size_t lo = 0, hi = r->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (r->ranges[mid].gpa + r->ranges[mid].size <= gpa)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < r->n && r->ranges[lo].gpa <= gpa ? &r->ranges[lo] : NULL;
}

/* [gpa, gpa + size) lies in guest memory; adjacent ranges may be spanned,
 * as one KVM update may cover several memslots. */
static bool inside(const struct attr_recorder *r, uint64_t gpa, uint64_t size)
{
	uint64_t end = gpa + size;

	while (gpa < end) {
		const struct recorded_range *rr = find(r, gpa);

		if (!rr)
			return false;
		gpa = rr->gpa + rr->size;
	}
	return true;
}

static void set_bits(uint64_t *map, uint64_t from, uint64_t to, bool value)
{
	while (from < to && from % 64) {
		if (value)
			map[from / 64] |= 1ULL << (from % 64);
		else
			map[from / 64] &= ~(1ULL << (from % 64));
		from++;
	}
	for (; from + 64 <= to; from += 64)
		map[from / 64] = value ? ~0ULL : 0;
	for (; from < to; from++) {
		if (value)
			map[from / 64] |= 1ULL << (from % 64);
		else
			map[from / 64] &= ~(1ULL << (from % 64));
	}
}

static int refuse(struct attr_recorder *r, const char *why)
{
	r->counts.refused++;
	r->counts.last_refusal = why;
	return -EINVAL;
}

int attr_recorder_set(void *opaque, uint64_t gpa, uint64_t size, uint64_t attributes)
{
	struct attr_recorder *r = opaque;
	bool private_;
	uint64_t end;

	r->counts.calls++;
	/* the checks of kvm_vm_ioctl_set_mem_attributes (virt/kvm/kvm_main.c) */
	if (attributes & ~CVMCONV_ATTR_PRIVATE)
		return refuse(r, "attribute bits other than KVM_MEMORY_ATTRIBUTE_PRIVATE");
	if (size == 0)
		return refuse(r, "size 0");
	if (gpa > UINT64_MAX - size)
		return refuse(r, "address + size wraps");
	if ((gpa | size) & (PAGE_4K - 1))
		return refuse(r, "address or size not 4 KiB aligned");
	/* stricter than KVM: the library must stay inside its regions */
	if (!inside(r, gpa, size))
		return refuse(r, "range outside guest memory");

	private_ = attributes & CVMCONV_ATTR_PRIVATE;
	if (private_)
		r->counts.private_bytes += size;
	else
		r->counts.shared_bytes += size;
	if (!r->tracking)
		return 0;
	for (end = gpa + size; gpa < end;) {
		struct recorded_range *rr = find(r, gpa);
		uint64_t stop = end < rr->gpa + rr->size ? end : rr->gpa + rr->size;

		set_bits(rr->private_map, (gpa - rr->gpa) >> PAGE_SHIFT_4K,
			 (stop - rr->gpa) >> PAGE_SHIFT_4K, private_);
		gpa = stop;
	}
	return 0;
}

bool attr_recorder_tracking(const struct attr_recorder *r)
{
	return r && r->tracking;
}

int attr_recorder_is_private(const struct attr_recorder *r, uint64_t gpa)
{
	const struct recorded_range *rr;
	uint64_t page;

	if (!r || !r->tracking)
		return -EOPNOTSUPP;
	rr = find(r, gpa);
	if (!rr)
		return -ENOENT;
	page = (gpa - rr->gpa) >> PAGE_SHIFT_4K;
	return (int)((rr->private_map[page / 64] >> (page % 64)) & 1);
}

void attr_recorder_get_counts(const struct attr_recorder *r, struct attr_recorder_counts *out)
{
	if (r && out)
		*out = r->counts;
}
