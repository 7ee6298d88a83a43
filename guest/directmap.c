/* SPDX-License-Identifier: MIT */
/*
 * Layer 2, physical memory.
 *
 * The kernel direct map of the model (arch/x86/mm/pat/set_memory.c,
 * arch/x86/mm/init_64.c). It starts with the largest leaves the RAM layout
 * allows (1 GiB with gbpages, else 2 MiB), except the first 2 MiB, which x86
 * maps with 4 KiB pages (init_mem_mapping maps the ISA range on its own). A
 * conversion that covers a 1 GiB or 2 MiB leaf only partly splits it
 * (__change_page_attr_set_clr -> split_large_page) and it stays split; a
 * fully covered one is kept. The state is one byte per GiB and one bit per
 * 2 MiB.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "directmap.h"
#include "util.h"

static bool test_split(const struct directmap *d, uint64_t r)
{
	return (d->split2m[r >> 6] >> (r & 63)) & 1;
}

static void set_split(struct directmap *d, uint64_t r)
{
	d->split2m[r >> 6] |= 1ULL << (r & 63);
}

int directmap_init(struct directmap *d, const struct layout *l, bool gbpages)
{
	uint64_t words;

	d->ngib = ALIGN_UP(l->ram_end, SZ_1G) / SZ_1G;
	words = (d->ngib * 512 + 63) / 64;
	d->gib = calloc(d->ngib, 1);
	d->split2m = calloc(words, sizeof(uint64_t));
	if (!d->gib || !d->split2m)
		return -ENOMEM;
	for (uint64_t g = 0; g < d->ngib; g++) {
		uint64_t base = g * SZ_1G;
		bool any = false;

		if (gbpages && g > 0 && layout_is_ram(l, base, base + SZ_1G)) {
			d->gib[g] = 1;
			continue;
		}
		for (uint64_t r = 0; r < 512; r++) {
			uint64_t a = base + r * SZ_2M;
			bool full = layout_is_ram(l, a, a + SZ_2M);

			if (!full || a == 0)
				set_split(d, g * 512 + r);
			any = any || full;
		}
		for (int i = 0; i < l->nram && !any; i++)
			any = l->ram[i].start < base + SZ_1G && l->ram[i].end > base;
		d->gib[g] = any ? 2 : 0;
	}
	return 0;
}

void directmap_destroy(struct directmap *d)
{
	free(d->gib);
	free(d->split2m);
	memset(d, 0, sizeof(*d));
}

void directmap_leaf(const struct directmap *d, uint64_t addr, uint64_t *base, uint64_t *size)
{
	uint64_t g = addr / SZ_1G, r = addr / SZ_2M;

	if (d->gib[g] == 1) {
		*base = ALIGN_DOWN(addr, SZ_1G);
		*size = SZ_1G;
	} else if (!test_split(d, r)) {
		*base = ALIGN_DOWN(addr, SZ_2M);
		*size = SZ_2M;
	} else {
		*base = ALIGN_DOWN(addr, PAGE_SZ);
		*size = PAGE_SZ;
	}
}

/* Split the leaves that [start, end) covers only partly: only the two ends
 * of a range can be partial, so this is O(1) whatever the size. */
void directmap_split(struct directmap *d, uint64_t start, uint64_t end)
{
	uint64_t gs[2] = { start / SZ_1G, (end - 1) / SZ_1G };
	uint64_t rs[2] = { start / SZ_2M, (end - 1) / SZ_2M };

	for (int i = 0; i < 2; i++) {
		uint64_t g = gs[i], lo = g * SZ_1G;

		if (d->gib[g] == 1 && (start > lo || end < lo + SZ_1G))
			d->gib[g] = 2;
	}
	for (int i = 0; i < 2; i++) {
		uint64_t r = rs[i], lo = r * SZ_2M;

		if (d->gib[lo / SZ_1G] == 2 && (start > lo || end < lo + SZ_2M))
			set_split(d, r);
	}
}
