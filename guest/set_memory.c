/* SPDX-License-Identifier: MIT */
/*
 * Layer 3, conversions.
 *
 * set_memory_decrypted()/set_memory_encrypted() of the model
 * (arch/x86/mm/pat/set_memory.c: __set_memory_enc_pgtable):
 *   1. the RFC patch 5 check (checker.c) — refusing only when enforcing;
 *   2. the change of the kernel direct map (__change_page_attr_set_clr): a
 *      1 GiB or 2 MiB leaf that the range covers only partly is split
 *      (split_large_page) and stays split; a fully covered one is kept
 *      (directmap.c);
 *   3. the platform hooks (enc_status_change_prepare/finish), which produce
 *      the exits (shape.c).
 * It acts on the guest memory (guest_mem.h) only; the public
 * cvmg_set_memory_{de,en}crypted() are model.c's.
 */
#include <errno.h>

#include "set_memory.h"
#include "shape.h"
#include "util.h"

int set_memory(struct guest_mem *g, uint64_t gpa, uint64_t npages, bool to_private,
	       enum cvmg_site site)
{
	uint64_t end;

	if (g->terminated)
		return -ENOTRECOVERABLE;
	if (!npages || !IS_ALIGNED(gpa, PAGE_SZ) || npages > (UINT64_MAX >> PAGE_SHIFT) ||
	    gpa + (npages << PAGE_SHIFT) < gpa)
		return -EINVAL;
	end = gpa + (npages << PAGE_SHIFT);
	if (!layout_is_ram(&g->layout, gpa, end))
		return -EINVAL;
	if (checker_note(&g->checker, g->n.setmem_calls, gpa, npages, to_private, site) &&
	    (g->cfg->flags & CVMG_F_CHECKER_ENFORCE)) {
		g->n.setmem_calls++;
		g->n.checker_rejected++;
		return -EINVAL;
	}
	g->n.setmem_calls++;
	directmap_split(&g->dm, gpa, end);
	counters_conversion(&g->n, npages, to_private, false);
	return shape_exits(g, gpa, npages, to_private);
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
int set_memory_early(struct guest_mem *g, uint64_t addr, uint64_t size, bool to_private)
{
	uint64_t start = ALIGN_DOWN(addr, PAGE_SZ), end = ALIGN_UP(addr + size, PAGE_SZ);
	uint64_t exits = g->n.exits;
	int ret = 0;

	if (g->terminated)
		return -ENOTRECOVERABLE;
	if (!size || !layout_is_ram(&g->layout, start, end))
		return -EINVAL;
	directmap_split(&g->dm, start, end);
	for (uint64_t p = start; p < end && !ret; p += PAGE_SZ) {
		bool shared = addr_set_has(&g->early_shared, p);

		if (shared == !to_private)
			continue; /* "If prot is same then do nothing." */
		if (!to_private) {
			ret = addr_set_add(&g->early_shared, p);
			if (ret)
				return ret;
		} else {
			addr_set_del(&g->early_shared, p);
		}
		if (g->cfg->platform != CVMG_PLATFORM_SNP)
			continue;
		ret = shape_snp_msr_psc(g, p, 1, false);
		if (!ret)
			ret = shape_snp_msr_psc(g, p, 1, true);
		if (!ret)
			ret = shape_snp_msr_psc(g, p, 1, to_private);
	}
	if (!ret && g->cfg->platform == CVMG_PLATFORM_KVM_PV)
		shape_pv_hypercalls(g, addr, size, to_private);
	if (g->n.exits != exits)
		counters_conversion(&g->n, (end - start) / PAGE_SZ, to_private, true);
	return ret;
}
