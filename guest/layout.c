/* SPDX-License-Identifier: MIT */
/*
 * Layer 2, physical memory.
 *
 * Guest physical layout and memblock. RAM follows QEMU q35: low RAM from 0 up
 * to lowmem (2 GiB once RAM reaches 2.75 GiB, pc_q35_init), the rest from
 * 4 GiB. Zones are x86-64's: DMA below 16 MiB, DMA32 below 4 GiB, Normal above
 * (include/linux/mmzone.h). memblock allocates top-down by default
 * (mm/memblock.c: memblock_find_in_range_node), which decides where the boot
 * SWIOTLB pool lands and so whether its conversion is 2 MiB aligned.
 */
#include <errno.h>
#include <string.h>

#include "layout.h"
#include "util.h"

enum zone_id zone_of(uint64_t pfn)
{
	uint64_t addr = pfn << PAGE_SHIFT;

	if (addr < SZ_16M)
		return ZONE_DMA;
	if (addr < SZ_4G)
		return ZONE_DMA32;
	return ZONE_NORMAL;
}

bool layout_is_ram(const struct layout *l, uint64_t start, uint64_t end)
{
	for (int i = 0; i < l->nram; i++)
		if (start >= l->ram[i].start && end <= l->ram[i].end)
			return true;
	return false;
}

int layout_reserve(struct layout *l, uint64_t start, uint64_t size)
{
	uint64_t end = start + size;
	int i, j;

	if (!size)
		return 0;
	/* merge with every overlapping or touching range, then insert sorted */
	for (i = 0; i < l->nresv;) {
		struct range *r = &l->resv[i];

		if (r->end < start || r->start > end) {
			i++;
			continue;
		}
		start = MIN(start, r->start);
		end = MAX(end, r->end);
		memmove(r, r + 1, (size_t)(l->nresv - i - 1) * sizeof(*r));
		l->nresv--;
	}
	if (l->nresv == MAX_RESERVED)
		return -ENOMEM;
	for (i = 0; i < l->nresv && l->resv[i].start < start; i++)
		;
	for (j = l->nresv; j > i; j--)
		l->resv[j] = l->resv[j - 1];
	l->resv[i].start = start;
	l->resv[i].end = end;
	l->nresv++;
	return 0;
}

int layout_unreserve(struct layout *l, uint64_t start, uint64_t size)
{
	uint64_t end = start + size;

	if (!size)
		return 0;
	for (int i = 0; i < l->nresv; i++) {
		struct range *r = &l->resv[i];

		if (r->end <= start || r->start >= end)
			continue;
		if (r->start < start && r->end > end) { /* a hole in the middle: split */
			if (l->nresv == MAX_RESERVED)
				return -ENOMEM;
			memmove(r + 2, r + 1, (size_t)(l->nresv - i - 1) * sizeof(*r));
			l->nresv++;
			r[1].start = end;
			r[1].end = r->end;
			r->end = start;
			return 0;
		}
		if (r->start >= start && r->end <= end) { /* covered: drop it */
			memmove(r, r + 1, (size_t)(l->nresv - i - 1) * sizeof(*r));
			l->nresv--;
			i--;
			continue;
		}
		if (r->start < start)
			r->end = start;
		else
			r->start = end;
	}
	return 0;
}

static bool fit_in_gap(uint64_t gap_start, uint64_t gap_end, uint64_t size, uint64_t align,
		       uint64_t *out)
{
	uint64_t cand;

	if (gap_end <= gap_start || gap_end - gap_start < size)
		return false;
	cand = ALIGN_DOWN(gap_end - size, align);
	if (cand < gap_start)
		return false;
	*out = cand;
	return true;
}

int layout_alloc_top_down(struct layout *l, uint64_t size, uint64_t align, uint64_t limit,
			  uint64_t *out)
{
	for (int i = l->nram - 1; i >= 0; i--) {
		uint64_t lo = l->ram[i].start, hi = MIN(l->ram[i].end, limit);

		if (hi <= lo)
			continue;
		for (int k = l->nresv - 1; k >= 0 && hi > lo; k--) {
			const struct range *r = &l->resv[k];

			if (r->start >= hi)
				continue;
			if (r->end <= lo)
				break;
			if (fit_in_gap(MAX(r->end, lo), hi, size, align, out))
				return layout_reserve(l, *out, size);
			hi = r->start;
		}
		if (hi > lo && fit_in_gap(lo, hi, size, align, out))
			return layout_reserve(l, *out, size);
	}
	return -ENOMEM;
}

int layout_init(struct layout *l, const struct cvmg_config *c)
{
	int ret;

	memset(l, 0, sizeof(*l));
	l->lowmem = c->lowmem_size;
	/* memblock_phys_mem_size(): the e820 RAM entries only — without the ISA
	 * hole [640 KiB, 1 MiB) and the firmware area (ACPI tables and runtime
	 * data, e820 reserved/ACPI); arch/x86/mm/mem_encrypt.c sizes the boot
	 * SWIOTLB pool from it */
	l->total = c->ram_size - (SZ_1M - 0xa0000) - c->fw_reserved;
	if (c->flags & CVMG_F_SWIOTLB_TOTAL_RAM)
		l->total = c->ram_size;
	l->ram[l->nram++] = (struct range){ 0, l->lowmem };
	if (c->ram_size > l->lowmem)
		l->ram[l->nram++] = (struct range){ SZ_4G, SZ_4G + c->ram_size - l->lowmem };
	l->ram_end = l->ram[l->nram - 1].end;

	/* x86 reserves the whole first MiB (arch/x86/kernel/setup.c). */
	ret = layout_reserve(l, 0, SZ_1M);
	/* The kernel image at CONFIG_PHYSICAL_START = 16 MiB. */
	if (!ret)
		ret = layout_reserve(l, SZ_16M, c->kernel_size);
	/* Firmware runtime data / ACPI tables at the top of low RAM (OVMF). */
	if (!ret)
		ret = layout_reserve(l, l->lowmem - c->fw_reserved, c->fw_reserved);
	return ret;
}
