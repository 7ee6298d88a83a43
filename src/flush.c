/* SPDX-License-Identifier: MIT */
/*
 * cvmconv_flush(): the punches that wait (CVMCONV_DEFER_PUNCH) or failed,
 * made off the vCPU threads. Waiting memory is punched piece by piece
 * without the region lock (backing.c hands the pieces out and takes them
 * back); failed runs are retried under it.
 */
#include <errno.h>

#include "internal.h"
#include "probes.h"

int cvmconv_flush(struct cvmconv *c)
{
	int err, last_err = 0;

	if (!c)
		return -EINVAL;
	PROBE(flush, c);
	pthread_mutex_lock(&c->flush_lock);
	err = context_lock(c);
	if (err) {
		pthread_mutex_unlock(&c->flush_lock);
		return err;
	}
	for (uint32_t i = 0; i < c->nregions; i++) {
		struct region *r = c->regions[i];
		uint64_t budget;
		struct side *s;

		/* waiting memory piece by piece, each punched without the
		 * region lock: conversions on the region go on meanwhile. At
		 * most as much as waited when the flush came to the region: a
		 * guest converting all the time cannot keep a flush going (what
		 * it adds keeps the poll fd readable for the next one). */
		pthread_mutex_lock(&r->lock);
		budget = r->shared.waiting.pages + r->private_.waiting.pages;
		for (;;) {
			if (!budget || !backing_flush_take(c, r, &s))
				break;
			budget -= budget < s->inflight_to - s->inflight_from
					  ? budget
					  : s->inflight_to - s->inflight_from;
			pthread_mutex_unlock(&r->lock);
			err = backing_flush_punch(c, s);
			pthread_mutex_lock(&r->lock);
			backing_flush_done(c, r, s, err);
			if (err)
				last_err = err;
		}
		/* then the failed runs (under the lock: rare), and the poll fd */
		err = backing_flush(c, r);
		backing_note_pending(c, r);
		pthread_mutex_unlock(&r->lock);
		if (err)
			last_err = err;
	}
	backing_poll_settle(c);
	stats_update_peak(c);
	context_unlock(c);
	pthread_mutex_unlock(&c->flush_lock);
	PROBE(flush_done, last_err);
	return last_err;
}
