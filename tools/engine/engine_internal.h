/* SPDX-License-Identifier: MIT */
/*
 * What the host engine's two files share (tools/engine/). engine_files.c
 * (the files, opening and closing the engine) sits above host_engine.c
 * (the layout, the attributes as set, the kernel ops, the hosts): it calls
 * engine_state_init() there; host_engine.c calls nothing of it, only the
 * helpers here.
 * Thread safety: as host_engine.h.
 */
#ifndef CVMCONV_ENGINE_INTERNAL_H
#define CVMCONV_ENGINE_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "host_engine.h"

/* The last failure into @e->why; returns @err. */
static inline int __attribute__((format(printf, 3, 4)))
engine_fail(struct host_engine *e, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(e->why, sizeof(e->why), fmt, ap);
	va_end(ap);
	return err;
}

/* The files of region @i and the region's offset in them. */
static inline const struct host_engine_files *engine_files_of(const struct host_engine *e, int i,
							      uint64_t *file_off)
{
	*file_off = e->cfg.per_region_files ? 0 : e->cfg.reg[i].off;
	return &e->files[e->cfg.per_region_files ? i : 0];
}

/* host_engine.c: the record of the attributes (the regions' start state,
 * unless above cfg.track_limit_pages) and the recorder: 0 or -errno with
 * @e->why set. */
int engine_state_init(struct host_engine *e);

#endif
