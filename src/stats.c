/* SPDX-License-Identifier: MIT */
/* Counters and the figures derived from the extent tracker and backings. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define offsetofend(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

uint64_t stats_double_alloc_bytes(const struct cvmconv *c)
{
	return atomic_load_explicit(&c->double_alloc_pages, memory_order_relaxed) * PAGE_4K;
}

void stats_update_peak(struct cvmconv *c)
{
	uint64_t now = stats_double_alloc_bytes(c);
	uint64_t peak = READ(c, double_alloc_peak_bytes);

	while (now > peak &&
	       !atomic_compare_exchange_weak_explicit(&c->n.double_alloc_peak_bytes, &peak, now,
						      memory_order_relaxed, memory_order_relaxed))
		;
}

int cvmconv_get_stats(struct cvmconv *c, struct cvmconv_stats *st)
{
	struct cvmconv_stats s = { 0 };
	size_t sz;

	if (!c || !st || st->sz < offsetofend(struct cvmconv_stats, extents))
		return -EINVAL;
	sz = st->sz;
	regions_read_lock(&c->regions_lock);
	s.exits = READ(c, exits);
	s.rejected = READ(c, rejected);
	s.unaligned = READ(c, unaligned);
	s.to_private_bytes = READ(c, to_private_bytes);
	s.to_shared_bytes = READ(c, to_shared_bytes);
	s.attr_updates = READ(c, attr_updates);
	s.punches = READ(c, punches);
	s.punch_failures = READ(c, punch_failures);
	/* a consistent snapshot: every region at once, in lock order; the
	 * double allocation changes only under region locks, so it is read
	 * under them too, with the pending bytes it contains */
	for (uint32_t i = 0; i < c->nregions; i++)
		pthread_mutex_lock(&c->regions[i]->lock);
	s.double_alloc_bytes = stats_double_alloc_bytes(c);
	s.double_alloc_peak_bytes = READ(c, double_alloc_peak_bytes);
	if (s.double_alloc_peak_bytes < s.double_alloc_bytes)
		s.double_alloc_peak_bytes = s.double_alloc_bytes;
	/* A 2 MiB frame split between regions is one extent, mixed if any part
	 * is mixed or the parts disagree. @frame is the last extent of the
	 * regions so far and @frame_state its state over all of them, however
	 * many regions share it (x86 frame 0 may hold low memory, option ROMs
	 * and RAM from 1 MiB). */
	uint64_t frame = UINT64_MAX;
	int frame_state = EDGE_SHARED;

	for (uint32_t i = 0; i < c->nregions; i++) {
		const struct region *r = c->regions[i];
		uint64_t last = r->tr.first_extent + r->tr.nextents - 1;

		s.mixed_extents += tracker_mixed(&r->tr);
		s.extents += r->tr.nextents;
		if (frame == r->tr.first_extent) {
			int b = tracker_edge_extent(&r->tr, false);
			int both = frame_state == EDGE_MIXED || b == EDGE_MIXED || frame_state != b
					   ? EDGE_MIXED
					   : b;

			s.extents--;
			/* the frame was counted once before, and once more in this
			 * region's own figure: count it once, as it is now */
			s.mixed_extents += (both == EDGE_MIXED);
			s.mixed_extents -= (frame_state == EDGE_MIXED) + (b == EDGE_MIXED);
			frame_state = last == frame ? both : tracker_edge_extent(&r->tr, true);
		} else {
			frame_state = tracker_edge_extent(&r->tr, true);
		}
		frame = last;
		s.guest_bytes += r->size;
		s.huge_mappable_bytes += tracker_uniform_full_extents(&r->tr) * EXTENT_BYTES;
		s.punch_pending_bytes += backing_pending_bytes(r);
		s.tracker_bytes += tracker_heap_bytes(&r->tr);
		s.bookkeeping_steps += region_steps(r);
	}
	s.bookkeeping_steps += READ(c, steps_removed);
	s.shared_alloc_failures = READ(c, shared_alloc_failures);
	s.gmem_busy_retries = READ(c, gmem_busy_retries);
	s.gmem_busy_failures = READ(c, gmem_busy_failures);
	for (uint32_t i = 0; i < c->nregions; i++)
		pthread_mutex_unlock(&c->regions[i]->lock);
	pthread_mutex_lock(&c->log_lock);
	s.log_suppressed = c->rl.suppressed;
	pthread_mutex_unlock(&c->log_lock);
	s.broken = atomic_load(&c->broken);
	regions_read_unlock(&c->regions_lock);
	memcpy(st, &s, sz < sizeof(s) ? sz : sizeof(s));
	st->sz = sz;
	return 0;
}

int cvmconv_stats_json(struct cvmconv *c, char *buf, size_t len)
{
	struct cvmconv_stats s = { .sz = sizeof(s) };
	size_t used = 0;
	int n;

	if (!c || (!buf && len) || cvmconv_get_stats(c, &s))
		return -EINVAL;

	const struct {
		const char *name;
		uint64_t value;
	} fields[] = {
#define F(x) { #x, s.x }
		F(exits),
		F(rejected),
		F(unaligned),
		F(to_private_bytes),
		F(to_shared_bytes),
		F(attr_updates),
		F(punches),
		F(punch_failures),
		F(double_alloc_bytes),
		F(double_alloc_peak_bytes),
		F(mixed_extents),
		F(extents),
		F(guest_bytes),
		F(huge_mappable_bytes),
		F(punch_pending_bytes),
		F(tracker_bytes),
		F(log_suppressed),
		F(broken),
		F(bookkeeping_steps),
		F(shared_alloc_failures),
		F(gmem_busy_retries),
		F(gmem_busy_failures),
#undef F
	};

	for (size_t i = 0; i <= sizeof(fields) / sizeof(fields[0]); i++) {
		char *dst = used < len ? buf + used : NULL;
		size_t room = dst ? len - used : 0;

		if (i < sizeof(fields) / sizeof(fields[0]))
			n = snprintf(dst, room, "%s\"%s\":%" PRIu64, i ? "," : "{", fields[i].name,
				     fields[i].value);
		else
			n = snprintf(dst, room, "}");
		if (n < 0)
			return -EINVAL;
		used += (size_t)n;
	}
	return used > INT32_MAX ? -EINVAL : (int)used;
}
