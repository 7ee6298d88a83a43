/* SPDX-License-Identifier: MIT */
/*
 * What the host engine's two files share (tools/engine/): host_engine.c
 * (the layout, the attributes as set, the kernel ops, the hosts) calls into
 * engine_files.c (the backings, touching, populating, the kernel's
 * figures), never the other way but for these helpers.
 * Thread safety: as host_engine.h.
 */
#ifndef CVMCONV_ENGINE_INTERNAL_H
#define CVMCONV_ENGINE_INTERNAL_H

#include <stdint.h>

#include "host_engine.h"

/* The last failure into @e->why; returns @err. */
int engine_fail(struct host_engine *e, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The files of region @i and the region's offset in them. */
const struct host_engine_files *engine_files_of(const struct host_engine *e, int i,
						uint64_t *file_off);
/* The region holding @gpa (its bytes from there in *left), or -1. */
int engine_region_of(const struct host_engine *e, uint64_t gpa, uint64_t *left);
/* Install the SIGBUS guard and create (and map) the files of cfg:
 * 0 or -errno with @e->why set. */
int engine_files_open(struct host_engine *e);
/* Unmap and close them, restore the SIGBUS disposition; idempotent. */
void engine_files_close(struct host_engine *e);

#endif
