/* SPDX-License-Identifier: MIT */
/*
 * set_memory_decrypted()/set_memory_encrypted() of the model
 * (arch/x86/mm/pat/set_memory.c: __set_memory_enc_pgtable):
 *   1. the RFC patch 5 check (checker.c) — refusing only when enforcing;
 *   2. the change of the kernel direct map (__change_page_attr_set_clr): a
 *      1 GiB or 2 MiB leaf that the range covers only partly is split
 *      (split_large_page) and stays split; a fully covered one is kept;
 *   3. the platform hooks (enc_status_change_prepare/finish), which produce
 *      the exits (shape.c).
 * The direct map starts with the largest leaves the RAM layout allows (1 GiB
 * with gbpages, else 2 MiB), except the first 2 MiB, which x86 maps with
 * 4 KiB pages (init_mem_mapping maps the ISA range on its own). Its state is
 * one byte per GiB and one bit per 2 MiB.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static bool test_split(const struct directmap *d, uint64_t r)
{
	return (d->split2m[r >> 6] >> (r & 63)) & 1;
}

static void set_split(struct directmap *d, uint64_t r)
{
	d->split2m[r >> 6] |= 1ULL << (r & 63);
}

int directmap_init(struct cvmg *m)
{
	struct directmap *d = &m->dm;
	const struct layout *l = &m->layout;
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

		if (!(m->cfg.flags & CVMG_F_NO_GBPAGES) && g > 0 &&
		    layout_is_ram(&m->layout, base, base + SZ_1G)) {
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
static void cpa_split(struct directmap *d, uint64_t start, uint64_t end)
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

int set_memory(struct cvmg *m, uint64_t gpa, uint64_t npages, bool to_private, enum cvmg_site site)
{
	uint64_t end;

	if (m->terminated)
		return -ENOTRECOVERABLE;
	if (!npages || !IS_ALIGNED(gpa, PAGE_SZ) || npages > (UINT64_MAX >> PAGE_SHIFT) ||
	    gpa + (npages << PAGE_SHIFT) < gpa)
		return -EINVAL;
	end = gpa + (npages << PAGE_SHIFT);
	if (!layout_is_ram(&m->layout, gpa, end))
		return -EINVAL;
	if (checker_note(m, gpa, npages, to_private, site) &&
	    (m->cfg.flags & CVMG_F_CHECKER_ENFORCE)) {
		m->n.setmem_calls++;
		m->n.checker_rejected++;
		return -EINVAL;
	}
	m->n.setmem_calls++;
	cpa_split(&m->dm, gpa, end);
	m->n.conversions++;
	if (to_private) {
		m->n.conv_private++;
		m->n.pages_private += npages;
	} else {
		m->n.conv_shared++;
		m->n.pages_shared += npages;
	}
	return shape_exits(m, gpa, npages, to_private);
}

/*
 * early_set_memory_enc_dec() (arch/x86/mm/mem_encrypt_amd.c) on @size bytes
 * at @addr: it never reaches __set_memory_enc_pgtable(), so RFC patch 5's
 * checker does not see it (nor refuse it under CVMG_F_CHECKER_ENFORCE). The
 * direct map is split down to the range (kernel_physical_mapping_change);
 * then per 4 KiB page __set_clr_pte_enc(): if the C-bit already has the
 * wanted value nothing happens; else, on SNP, decryption runs
 * sme_early_decrypt() -> __sme_early_enc_dec(), whose second snp_memcpy()
 * makes the page shared and private again around the copy, and then
 * early_snp_set_memory_shared(): three 1-page MSR-protocol exits (shared,
 * private, shared); encryption (sme_early_encrypt) has the first snp_memcpy()
 * flip it shared and private, then early_snp_set_memory_private() after the
 * PTE change: shared, private, private. Last, unconditionally,
 * early_set_mem_enc_dec_hypercall(): on KVM PV one hypercall per leaf over
 * the range even when nothing changed (the model's SNP platform has no
 * KVM_FEATURE_MIGRATION_CONTROL, so there it is a no-op). A call that
 * produced an exit counts as a conversion (and an early conversion).
 */
int set_memory_early(struct cvmg *m, uint64_t addr, uint64_t size, bool to_private)
{
	uint64_t start = ALIGN_DOWN(addr, PAGE_SZ), end = ALIGN_UP(addr + size, PAGE_SZ);
	uint64_t exits = m->n.exits;
	int ret = 0;

	if (m->terminated)
		return -ENOTRECOVERABLE;
	if (!size || !layout_is_ram(&m->layout, start, end))
		return -EINVAL;
	cpa_split(&m->dm, start, end);
	for (uint64_t p = start; p < end && !ret; p += PAGE_SZ) {
		bool shared = coherent_set_has(&m->early_shared, p);

		if (shared == !to_private)
			continue; /* "If prot is same then do nothing." */
		if (!to_private) {
			ret = coherent_set_add(&m->early_shared, p);
			if (ret)
				return ret;
		} else {
			coherent_set_del(&m->early_shared, p);
		}
		if (m->cfg.platform != CVMG_PLATFORM_SNP)
			continue;
		ret = shape_snp_msr_psc(m, p, 1, false);
		if (!ret)
			ret = shape_snp_msr_psc(m, p, 1, true);
		if (!ret)
			ret = shape_snp_msr_psc(m, p, 1, to_private);
	}
	if (!ret && m->cfg.platform == CVMG_PLATFORM_KVM_PV)
		shape_pv_hypercalls(m, addr, size, to_private);
	if (m->n.exits != exits) {
		uint64_t np = (end - start) / PAGE_SZ;

		m->n.conversions++;
		m->n.early_conversions++;
		if (to_private) {
			m->n.conv_private++;
			m->n.pages_private += np;
		} else {
			m->n.conv_shared++;
			m->n.pages_shared += np;
		}
	}
	return ret;
}

int cvmg_set_memory_decrypted(struct cvmg *m, uint64_t gpa, uint64_t npages)
{
	if (!m)
		return -EINVAL;
	return set_memory(m, gpa, npages, false, CVMG_SITE_USER);
}

int cvmg_set_memory_encrypted(struct cvmg *m, uint64_t gpa, uint64_t npages)
{
	if (!m)
		return -EINVAL;
	return set_memory(m, gpa, npages, true, CVMG_SITE_USER);
}
