/* SPDX-License-Identifier: MIT */
/*
 * Early boot conversions (issue 18, facts 1, 2, 3, 7 and 9): what a 6.12
 * guest converts before the buddy allocator exists, where those pages are,
 * and that RFC patch 5's checker never sees them. Each test says what the
 * model before issue 18 gave.
 */
#include "guest_test_util.h"

#define PCPU_DEC_OFF (216 * KiB) /* last page of the 220 KiB static per-CPU area */
#define BSS_DEC (62 * MiB)	 /* last PMD of the 48 MiB image at 16 MiB */

static struct cvmg *boot_rec(uint64_t ram, uint32_t cpus, enum cvmg_mode mode, enum cvmg_platform p,
			     uint32_t flags, struct recorder *rec)
{
	struct cvmg_config c = test_config(ram, cpus, mode, p, rec);

	c.flags = flags;
	return make_model(&c, 1);
}

static bool is_exit(const struct exit_rec *e, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	return e->gpa == gpa && e->npages == npages && e->attrs == attrs;
}

/*
 * Fact 1 (arch/x86/mm/mem_encrypt_amd.c: __set_clr_pte_enc ->
 * sme_early_decrypt -> __sme_early_enc_dec -> snp_memcpy, then
 * early_snp_set_memory_shared): each early-decrypted page on SNP takes three
 * 1-page MSR-protocol exits, shared, private, shared; the second and third
 * sev_map_percpu_data() call on the same page change nothing. Per CPU: the
 * __decrypted per-CPU page (3) and the GHCB page (3).
 * Old model: one conversion, one exit per page (2 exits per CPU).
 */
static void test_snp_early_page_three_exits(void **state)
{
	struct recorder rec = { 0 };
	struct cvmg *m = boot_rec(16 * GiB, 2, CVMG_MODE_LEGACY, CVMG_PLATFORM_SNP,
				  CVMG_F_NO_BSS_DECRYPTED, &rec);
	struct cvmg_stats st = get_stats(m);

	(void)state;
	assert_int_equal(st.early_exits, 2 * 6);
	assert_int_equal(st.early_conversions, 2 * 2);
	assert_true(rec.len > 12);
	for (size_t i = 0; i < 12; i += 3) {
		uint64_t p = rec.v[i].gpa;

		assert_true(is_exit(&rec.v[i], p, 1, HINT_4K));
		assert_true(is_exit(&rec.v[i + 1], p, 1, ENC | HINT_4K));
		assert_true(is_exit(&rec.v[i + 2], p, 1, HINT_4K));
		assert_int_equal(p % (4 * KiB), 0);
	}
	cvmg_destroy(m);
	recorder_free(&rec);
}

/*
 * Fact 2 (arch/x86/kernel/kvm.c: sev_map_percpu_data): apf_reason,
 * steal_time and kvm_apic_eoi, one early_set_memory_decrypted() each, and
 * early_set_memory_enc_dec() ends with early_set_mem_enc_dec_hypercall()
 * whatever changed: three 1-page hypercalls for the same page per CPU.
 * Old model: one exit per CPU.
 */
static void test_kvm_pv_three_hypercalls_per_cpu(void **state)
{
	struct recorder rec = { 0 };
	struct cvmg *m = boot_rec(16 * GiB, 4, CVMG_MODE_LEGACY, CVMG_PLATFORM_KVM_PV,
				  CVMG_F_NO_BSS_DECRYPTED, &rec);
	struct cvmg_stats st = get_stats(m);

	(void)state;
	assert_int_equal(st.early_exits, 4 * 3);
	assert_int_equal(st.early_conversions, 4 * 3);
	for (size_t cpu = 0; cpu < 4; cpu++) {
		uint64_t p = rec.v[cpu * 3].gpa;

		for (size_t k = 0; k < 3; k++)
			assert_true(is_exit(&rec.v[cpu * 3 + k], p, 1, HINT_4K));
		if (cpu)
			assert_int_not_equal(p, rec.v[(cpu - 1) * 3].gpa);
	}
	cvmg_destroy(m);
	recorder_free(&rec);
}

/*
 * Fact 3 on SNP (arch/x86/kernel/head64.c: sme_postprocess_startup;
 * arch/x86/mm/mem_encrypt_amd.c: mem_encrypt_free_decrypted_mem): the
 * .bss..decrypted PMD goes shared first thing, one MSR-protocol exit per
 * page (512), and free_initmem() converts the unused tail (509 pages from
 * the 4th page) back with set_memory_encrypted(), which the checker flags;
 * the tail then goes to the buddy allocator.
 * Old model: no exit in [62 MiB, 64 MiB) at all.
 */
static void test_snp_bss_decrypted(void **state)
{
	struct recorder rec = { 0 };
	struct cvmg *m = boot_rec(4 * GiB, 1, CVMG_MODE_RFC, CVMG_PLATFORM_SNP,
				  CVMG_F_NO_EARLY_PERCPU, &rec);
	struct cvmg_stats st = get_stats(m);
	struct cvmg_unaligned u = { .sz = sizeof(u) };
	uint64_t to_private = 0;

	(void)state;
	assert_int_equal(st.bss_decrypted_start, BSS_DEC);
	assert_int_equal(st.bss_decrypted_unused_pages, 509);
	assert_int_equal(st.early_exits, 512);
	for (size_t i = 0; i < 512; i++)
		assert_true(is_exit(&rec.v[i], BSS_DEC + i * 4 * KiB, 1, HINT_4K));
	for (size_t i = 512; i < rec.len; i++)
		if (rec.v[i].gpa >= BSS_DEC && rec.v[i].gpa < BSS_DEC + 2 * MiB) {
			assert_true(rec.v[i].attrs & ENC);
			to_private += rec.v[i].npages;
		}
	assert_int_equal(to_private, 509);
	assert_int_equal(st.unaligned_by_site[CVMG_SITE_BSS_DECRYPTED], 1);
	assert_int_equal(cvmg_checker_get(m, cvmg_checker_records(m) - 1, &u), 0);
	assert_int_equal(u.site, CVMG_SITE_BSS_DECRYPTED);
	assert_int_equal(u.gpa, BSS_DEC + 3 * 4 * KiB);
	assert_int_equal(u.npages, 509);
	assert_int_equal(u.to_private, 1);
	cvmg_destroy(m);
	recorder_free(&rec);
}

/*
 * Fact 3 on KVM PV (arch/x86/kernel/kvm.c: kvm_init_platform): one
 * encrypted hypercall per e820 RAM entry, one for the section (a 2 MiB
 * leaf of the kernel mapping), and at free_initmem() one 1-page hypercall
 * per 4 KiB leaf of the tail (the 2 MiB leaf is split). TDX: nothing, but
 * the tail is still freed.
 * Old model: none of these exits.
 */
static void test_kvm_pv_and_tdx_bss_decrypted(void **state)
{
	struct recorder rec = { 0 };
	struct cvmg *m = boot_rec(4 * GiB, 1, CVMG_MODE_LEGACY, CVMG_PLATFORM_KVM_PV,
				  CVMG_F_NO_EARLY_PERCPU, &rec);
	struct cvmg_stats st = get_stats(m);
	size_t tail = 0;

	(void)state;
	assert_true(is_exit(&rec.v[0], 0, 160, ENC | HINT_4K));
	assert_true(is_exit(&rec.v[1], 1 * MiB, (2 * GiB - 1 * MiB) / (4 * KiB), ENC | HINT_4K));
	assert_true(is_exit(&rec.v[2], 4 * GiB, 2 * GiB / (4 * KiB), ENC | HINT_4K));
	assert_true(is_exit(&rec.v[3], BSS_DEC, 512, HINT_4K));
	assert_int_equal(st.early_exits, 4);
	for (size_t i = 4; i < rec.len; i++)
		if (rec.v[i].gpa >= BSS_DEC && rec.v[i].gpa < BSS_DEC + 2 * MiB) {
			assert_true(is_exit(&rec.v[i], BSS_DEC + (3 + tail) * 4 * KiB, 1,
					    ENC | HINT_4K));
			tail++;
		}
	assert_int_equal(tail, 509);
	cvmg_destroy(m);
	recorder_reset(&rec);
	m = boot_rec(4 * GiB, 1, CVMG_MODE_LEGACY, CVMG_PLATFORM_TDX, 0, &rec);
	st = get_stats(m);
	assert_int_equal(st.early_exits, 0);
	assert_int_equal(st.bss_decrypted_unused_pages, 509);
	for (size_t i = 0; i < rec.len; i++)
		assert_false(rec.v[i].gpa >= BSS_DEC && rec.v[i].gpa < BSS_DEC + 2 * MiB);
	cvmg_destroy(m);
	recorder_free(&rec);
}

/* The distinct pages of the first @n exits, in order of appearance. */
static size_t distinct_pages(const struct recorder *rec, size_t n, uint64_t *out)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		if (!k || out[k - 1] != rec->v[i].gpa)
			out[k++] = rec->v[i].gpa;
	return k;
}

/*
 * Fact 7 (mm/percpu.c: pcpu_build_alloc_info, pcpu_embed_first_chunk;
 * arch/x86/coco/sev/core.c: alloc_runtime_data): each CPU's __decrypted
 * page is in its own per-CPU unit — 256 KiB apart once 8 or more CPUs
 * share a 2 MiB allocation, 512 KiB apart for 4 — so 16 CPUs spread over
 * two 2 MiB extents; the GHCB pages come from separate memblock blocks of
 * 8 KiB + 16 bytes, 12 KiB apart.
 * Old model: 2 x cpus consecutive pages below the memmap.
 */
static void test_percpu_pages_spread(void **state)
{
	struct recorder rec = { 0 };
	struct cvmg *m = boot_rec(16 * GiB, 16, CVMG_MODE_LEGACY, CVMG_PLATFORM_SNP,
				  CVMG_F_NO_BSS_DECRYPTED, &rec);
	uint64_t pages[64];
	size_t n = distinct_pages(&rec, 16 * 6, pages);

	(void)state;
	assert_int_equal(n, 32);
	for (size_t i = 1; i < 16; i++)
		assert_int_equal(pages[i] - pages[i - 1], 256 * KiB);
	assert_int_equal(pages[0] % (2 * MiB), PCPU_DEC_OFF);
	assert_int_not_equal(pages[0] / (2 * MiB), pages[15] / (2 * MiB));
	for (size_t i = 17; i < 32; i++)
		assert_int_equal(pages[i - 1] - pages[i], 12 * KiB);
	cvmg_destroy(m);

	recorder_reset(&rec);
	m = boot_rec(16 * GiB, 4, CVMG_MODE_LEGACY, CVMG_PLATFORM_KVM_PV, CVMG_F_NO_BSS_DECRYPTED,
		     &rec);
	n = distinct_pages(&rec, 4 * 3, pages);
	assert_int_equal(n, 4);
	for (size_t i = 1; i < 4; i++)
		assert_int_equal(pages[i] - pages[i - 1], 512 * KiB);
	cvmg_destroy(m);
	recorder_free(&rec);
}

/*
 * Fact 9: the checker hooks __set_memory_enc_pgtable(); early pages go
 * through early_set_memory_enc_dec() and early_snp_set_memory_shared(), so
 * with CVMG_F_CHECKER_ENFORCE an SNP RFC guest converts them normally and
 * only the atomic pools (512 KiB chunks on 4 GiB) and the .bss..decrypted
 * tail are refused.
 * Old model: the 2 x 4 early pages were flagged and refused (site
 * early_percpu = 8) and no exit reached the VMM for them.
 */
static void test_checker_never_sees_early_pages(void **state)
{
	struct recorder rec = { 0 };
	struct cvmg *m = boot_rec(4 * GiB, 4, CVMG_MODE_RFC, CVMG_PLATFORM_SNP,
				  CVMG_F_CHECKER_ENFORCE, &rec);
	struct cvmg_stats st = get_stats(m);

	(void)state;
	assert_int_equal(st.unaligned_by_site[CVMG_SITE_EARLY_PERCPU], 0);
	assert_int_equal(st.early_exits, 512 + 4 * 6);
	assert_int_equal(st.unaligned_by_site[CVMG_SITE_ATOMIC_POOL], 3);
	assert_int_equal(st.unaligned_by_site[CVMG_SITE_BSS_DECRYPTED], 1);
	assert_int_equal(st.checker_rejected, 4);
	assert_int_equal(st.unaligned, 4);
	/* refused: the tail stays shared and reserved */
	assert_int_equal(st.bss_decrypted_unused_pages, 0);
	cvmg_destroy(m);
	recorder_free(&rec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_snp_early_page_three_exits),
		cmocka_unit_test(test_kvm_pv_three_hypercalls_per_cpu),
		cmocka_unit_test(test_snp_bss_decrypted),
		cmocka_unit_test(test_kvm_pv_and_tdx_bss_decrypted),
		cmocka_unit_test(test_percpu_pages_spread),
		cmocka_unit_test(test_checker_never_sees_early_pages),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
