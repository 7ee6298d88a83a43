/* SPDX-License-Identifier: MIT */
/* The listener registry. Notification itself happens in convert.c, where
 * the runs are known. */
#include <errno.h>
#include <string.h>

#include "internal.h"

#define offsetofend(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

static int replay_one(void *opaque, uint64_t gpa, uint64_t size, bool is_private)
{
	const struct cvmconv_listener *l = opaque;

	l->after(l->opaque, gpa, size, is_private, 0);
	return 0;
}

int cvmconv_add_listener(struct cvmconv *c, const struct cvmconv_listener *l)
{
	struct cvmconv_listener copy;
	int id, err;

	if (!c || !l)
		return -EINVAL;
	/* shorter: zero-extended; longer: the unknown tail must be zero */
	err = copy_sized(&copy, sizeof(copy), l, l->sz,
			 offsetofend(struct cvmconv_listener, opaque));
	if (err)
		return err;
	copy.sz = sizeof(copy);
	if (!copy.before && !copy.after)
		return -EINVAL;
	if ((copy.flags & ~CVMCONV_LISTENER_REPLAY) ||
	    ((copy.flags & CVMCONV_LISTENER_REPLAY) && !copy.after))
		return -EINVAL;
	regions_write_lock(&c->regions_lock);
	if (c->nlisteners == CVMCONV_MAX_LISTENERS) {
		regions_write_unlock(&c->regions_lock);
		return -ENOSPC;
	}
	/* Under the write side no request is in flight and none starts: the
	 * replay is the state every later conversion starts from. */
	if (copy.flags & CVMCONV_LISTENER_REPLAY)
		query_runs(c, 0, UINT64_MAX & ~(PAGE_4K - 1), replay_one, &copy);
	id = c->next_listener_id++;
	c->listeners[c->nlisteners] = copy;
	c->listener_ids[c->nlisteners++] = id;
	regions_write_unlock(&c->regions_lock);
	return id;
}

int cvmconv_remove_listener(struct cvmconv *c, int id)
{
	int ret = -ENOENT;

	if (!c)
		return -EINVAL;
	regions_write_lock(&c->regions_lock);
	for (unsigned i = 0; i < c->nlisteners; i++) {
		if (c->listener_ids[i] != id)
			continue;
		/* keep registration order: notification order is part of the API */
		memmove(&c->listeners[i], &c->listeners[i + 1],
			(c->nlisteners - i - 1) * sizeof(c->listeners[0]));
		memmove(&c->listener_ids[i], &c->listener_ids[i + 1],
			(c->nlisteners - i - 1) * sizeof(c->listener_ids[0]));
		c->nlisteners--;
		ret = 0;
		break;
	}
	regions_write_unlock(&c->regions_lock);
	return ret;
}
