/* SPDX-License-Identifier: MIT */
/*
 * Layer 3, conversions: the guest memory that conversions act on. The model
 * (struct cvmg, cvmg.h) holds one; the conversion code (shape.c,
 * set_memory.c) and the pools above it see only this, never the whole model.
 */
#ifndef CVMG_GUEST_MEM_H
#define CVMG_GUEST_MEM_H

#include <stdbool.h>

#include <cvmconv/guest.h>

#include "addr_set.h"
#include "buddy.h"
#include "checker.h"
#include "counters.h"
#include "directmap.h"
#include "layout.h"

struct guest_mem {
	const struct cvmg_config *cfg; /* the model's normalised configuration */
	struct layout layout;
	struct buddy buddy;
	struct directmap dm;
	struct checker checker;
	struct addr_set early_shared; /* pages early_set_memory_decrypted() made shared */
	struct counters n;
	bool terminated; /* a failed SNP PSC: -ENOTRECOVERABLE from then on */
};

#endif /* CVMG_GUEST_MEM_H */
