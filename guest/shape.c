/* SPDX-License-Identifier: MIT */
/*
 * Layer 3, conversions.
 *
 * How one guest conversion becomes the KVM_HC_MAP_GPA_RANGE exits the VMM
 * sees (args[0] gpa, args[1] npages in 4 KiB units, args[2] attrs).
 *
 * SEV-SNP (arch/x86/coco/sev/core.c: set_pages_state/__set_pages_state;
 * arch/x86/kvm/svm/sev.c: snp_begin_psc): the guest fills PSC requests of at
 * most VMGEXIT_PSC_MAX_ENTRY = 253 entries; an entry is 2 MiB when the
 * address is 2 MiB aligned and at least 2 MiB remain, else 4 KiB. KVM turns
 * each run of contiguous entries with the same operation and page size into
 * one exit (npages 512 per 2 MiB entry, the 2M hint on 2 MiB runs). Runs do
 * not merge across requests. A non-zero ret fails the PSC, and the guest
 * terminates (sev_es_terminate with GHCB_TERM_PSC).
 *
 * TDX (arch/x86/coco/tdx/tdx.c: tdx_map_gpa; arch/x86/kvm/vmx/tdx.c:
 * tdx_map_gpa/__tdx_map_gpa/tdx_complete_vmcall_map_gpa): one MapGPA over
 * the whole range; KVM forwards it in chunks of min(remaining,
 * TDX_MAP_GPA_MAX_LEN = 2 MiB) counted from the start of the range (not at
 * 2 MiB GPA boundaries; CVMG_F_TDX_SPLIT_ALIGNED models a KVM that ends
 * chunks at 2 MiB boundaries instead), no page-size hint. A non-zero ret
 * stops the MapGPA (INVALID_OPERAND): set_memory_*() fails with -EIO; the
 * chunks before stay converted. To-private conversions are then accepted
 * (tdx_accept_memory tries 1 GiB, then 2 MiB, then 4 KiB).
 *
 * KVM paravirt (arch/x86/mm/mem_encrypt_amd.c: enc_dec_hypercall;
 * arch/x86/kernel/kvm.c: kvm_sev_hc_page_enc_status): after the direct map
 * was changed, one KVM_HC_MAP_GPA_RANGE per mapping leaf over the range
 * (1, 512 or 262144 pages), always with the 4K hint. The return value is
 * ignored by the guest.
 *
 * Early boot (no GHCB yet, no checker): SNP early_set_pages_state()
 * (arch/x86/coco/sev/core.c) uses the GHCB MSR protocol, one VMGEXIT and so
 * one 1-page exit per 4 KiB page (KVM: snp_begin_psc_msr), failures
 * terminate; KVM PV early_set_mem_enc_dec_hypercall() ->
 * enc_dec_hypercall() (arch/x86/mm/mem_encrypt_amd.c) is one hypercall per
 * leaf like the runtime path; kvm_init_platform() (arch/x86/kernel/kvm.c)
 * also sends raw KVM_HC_MAP_GPA_RANGE hypercalls (shape_raw_exit).
 */
#include <errno.h>

#include <cvmconv.h>

#include "shape.h"
#include "util.h"

_Static_assert(CVMG_MAP_GPA_RANGE_ENCRYPTED == CVMCONV_MAP_GPA_RANGE_ENCRYPTED, "attr bit");
_Static_assert(CVMG_MAP_GPA_RANGE_PAGE_SZ_2M == CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M, "2M hint");
_Static_assert(CVMG_MAP_GPA_RANGE_PAGE_SZ_1G == CVMCONV_MAP_GPA_RANGE_PAGE_SZ_1G, "1G hint");
_Static_assert(CVMG_MAP_GPA_RANGE_PAGE_SZ_MASK == CVMCONV_MAP_GPA_RANGE_PAGE_SZ_MASK, "mask");

#define PSC_MAX_ENTRIES 253

static uint64_t fnv1a(uint64_t h, uint64_t v)
{
	for (int i = 0; i < 8; i++) {
		h ^= (v >> (8 * i)) & 0xff;
		h *= 0x100000001b3ULL;
	}
	return h;
}

static int emit(struct guest_mem *g, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	int ret = 0;

	g->n.exits++;
	g->n.exit_hash = fnv1a(fnv1a(fnv1a(g->n.exit_hash, gpa), npages), attrs);
	if (g->cfg->exit)
		ret = g->cfg->exit(g->cfg->exit_opaque, gpa, npages, attrs);
	if (ret)
		g->n.exits_failed++;
	return ret;
}

static int snp_exits(struct guest_mem *g, uint64_t p, uint64_t end, uint64_t op)
{
	while (p < end) {
		uint64_t left = PSC_MAX_ENTRIES; /* entries in this PSC request */

		while (left && p < end) {
			uint64_t n, stop;

			if (IS_ALIGNED(p, SZ_2M) && end - p >= SZ_2M) {
				n = MIN(left, (end - p) / SZ_2M);
				if (emit(g, p, n * 512, op | CVMG_MAP_GPA_RANGE_PAGE_SZ_2M))
					goto fatal;
				p += n * SZ_2M;
			} else {
				uint64_t q = ALIGN_UP(p, SZ_2M);

				stop = (q > p && q < end && end - q >= SZ_2M) ? q : end;
				n = MIN(left, (stop - p) / PAGE_SZ);
				if (emit(g, p, n, op | CVMG_MAP_GPA_RANGE_PAGE_SZ_4K))
					goto fatal;
				p += n * PAGE_SZ;
			}
			left -= n;
		}
	}
	return 0;
fatal:
	g->terminated = true;
	return -ENOTRECOVERABLE;
}

static void tdx_accept(struct guest_mem *g, uint64_t p, uint64_t end)
{
	while (p < end) {
		uint64_t sz = PAGE_SZ;

		if (IS_ALIGNED(p, SZ_1G) && end - p >= SZ_1G)
			sz = SZ_1G;
		else if (IS_ALIGNED(p, SZ_2M) && end - p >= SZ_2M)
			sz = SZ_2M;
		g->n.tdx_accepts++;
		p += sz;
	}
}

static int tdx_exits(struct guest_mem *g, uint64_t p, uint64_t end, uint64_t op)
{
	uint64_t start = p;
	bool aligned = g->cfg->flags & CVMG_F_TDX_SPLIT_ALIGNED;

	while (p < end) {
		uint64_t stop = aligned ? MIN(ALIGN_DOWN(p, SZ_2M) + SZ_2M, end)
					: (end - p > SZ_2M ? p + SZ_2M : end);

		if (emit(g, p, (stop - p) / PAGE_SZ, op))
			return -EIO;
		p = stop;
	}
	if (op)
		tdx_accept(g, start, end);
	return 0;
}

static int pv_exits(struct guest_mem *g, uint64_t p, uint64_t end, uint64_t op)
{
	while (p < end) {
		uint64_t base, size;

		directmap_leaf(&g->dm, p, &base, &size);
		(void)emit(g, base, size / PAGE_SZ, op | CVMG_MAP_GPA_RANGE_PAGE_SZ_4K);
		p = base + size;
	}
	return 0;
}

int shape_snp_msr_psc(struct guest_mem *g, uint64_t gpa, uint64_t npages, bool to_private)
{
	uint64_t op = to_private ? CVMG_MAP_GPA_RANGE_ENCRYPTED : 0;

	for (uint64_t i = 0; i < npages; i++) {
		g->n.early_exits++;
		if (emit(g, gpa + i * PAGE_SZ, 1, op | CVMG_MAP_GPA_RANGE_PAGE_SZ_4K)) {
			g->terminated = true;
			return -ENOTRECOVERABLE;
		}
	}
	return 0;
}

void shape_pv_hypercalls(struct guest_mem *g, uint64_t gpa, uint64_t size, bool to_private)
{
	uint64_t before = g->n.exits;

	(void)pv_exits(g, gpa, gpa + size, to_private ? CVMG_MAP_GPA_RANGE_ENCRYPTED : 0);
	g->n.early_exits += g->n.exits - before;
}

void shape_raw_exit(struct guest_mem *g, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	g->n.early_exits++;
	(void)emit(g, gpa, npages, attrs);
}

int shape_exits(struct guest_mem *g, uint64_t gpa, uint64_t npages, bool to_private)
{
	uint64_t end = gpa + npages * PAGE_SZ;
	uint64_t op = to_private ? CVMG_MAP_GPA_RANGE_ENCRYPTED : 0;

	switch (g->cfg->platform) {
	case CVMG_PLATFORM_SNP:
		return snp_exits(g, gpa, end, op);
	case CVMG_PLATFORM_TDX:
		return tdx_exits(g, gpa, end, op);
	case CVMG_PLATFORM_KVM_PV:
		return pv_exits(g, gpa, end, op);
	}
	return -EINVAL;
}
