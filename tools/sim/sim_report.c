/* SPDX-License-Identifier: MIT */
/* cvmconv-sim's report: the tables, CSV and JSON of every row (see sim_cli.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cvmconv.h"
#include <cvmconv/guest.h>

#include "private_backing.h"
#include "sim_cli.h"

/* ---- output ---- */

#define human cli_human

const char *sim_platform_label(enum cvmg_platform p)
{
	return p == CVMG_PLATFORM_KVM_PV ? "kvm-pv" : cvmg_platform_name(p);
}

const char *sim_policy_label(enum cvmconv_unaligned p)
{
	static const char *const n[] = { "allow", "log", "reject" };

	return (unsigned)p < 3 ? n[p] : "?";
}

static void row_notes(const struct row *r, char *buf, size_t len)
{
	const struct sim_result *s = &r->res;
	size_t used = 0;

#define NOTE(...)                                                                                \
	do {                                                                                     \
		if (used < len)                                                                  \
			used += (size_t)snprintf(buf + used, len - used, "%s", used ? " " : ""); \
		if (used < len)                                                                  \
			used += (size_t)snprintf(buf + used, len - used, __VA_ARGS__);           \
	} while (0)
	buf[0] = 0;
	if (r->ret)
		NOTE("FAILED: %s", r->why);
	if (s->terminated)
		NOTE("guest-terminated");
	if (s->rejected)
		NOTE("rejected=%" PRIu64, s->rejected);
	if (s->exits_failed && !s->rejected)
		NOTE("exits-failed=%" PRIu64, s->exits_failed);
	if (s->host_errors)
		NOTE("host-errors=%" PRIu64, s->host_errors);
	if (s->punch_failures)
		NOTE("punch-failures=%" PRIu64, s->punch_failures);
	if (s->gpu_bytes_wanted)
		NOTE("gpu=%" PRIu64 "/%" PRIu64 "M", s->gpu_bytes_got / MiB,
		     s->gpu_bytes_wanted / MiB);
	if (s->dma_alloc_failures)
		NOTE("dma-fail=%" PRIu64, s->dma_alloc_failures);
	if (s->map_failures)
		NOTE("map-fail=%" PRIu64, s->map_failures);
	if (r->sc.host == SIM_HOST_INPLACE)
		NOTE("gmem-calls=%" PRIu64, s->gmem_calls);
	if (s->gmem_busy_retries || s->gmem_busy_failures)
		NOTE("busy-retries=%" PRIu64 "/failed=%" PRIu64, s->gmem_busy_retries,
		     s->gmem_busy_failures);
	if (s->lib_kernel_mismatches)
		NOTE("LIB!=KERNEL@%" PRIu64 "exits(first gpa %#" PRIx64 ")",
		     s->lib_kernel_mismatches, s->first_mismatch_gpa);
#undef NOTE
}

void sim_print_header(FILE *f)
{
	const struct sim_scenario *b = &opt.base;
	char buf[32];

	fprintf(f,
		"cvmconv-sim: %s guest, %u vCPUs, seed %" PRIu64 ", policy %s, populate %s%s%s\n",
		human(b->ram, buf, sizeof(buf)), b->cpus, b->seed, sim_policy_label(b->policy),
		b->populate_all ? "all" : "converted",
		b->swiotlb_dynamic ? ", legacy with CONFIG_SWIOTLB_DYNAMIC" : "",
		b->enforce_checker ? ", RFC checker enforcing" : "");
	fprintf(f, "shared side: %s; private side: %s\n", backing_note, private_backing_name());
	fprintf(f, "DA = double allocation (lib = cvmconv's figure, kern = st_blocks of the "
		   "shared memfd minus live shared pages, hpf = from HugePages_Free);\n"
		   "mixed = 2 MiB extents with private and shared pages; 2M-map = guest memory "
		   "still mappable with 2 MiB pages;\n"
		   "vmemmap = 28 KiB lost per mixed extent; EPT+ = extra 4 KiB EPT/NPT table "
		   "pages; unal = conversions the RFC's checker flags\n\n");
}

void sim_print_table(FILE *f)
{
	fprintf(f, "%-12s %-6s %-6s %-9s %5s %6s %6s %6s %15s %20s %6s %7s %8s %5s %5s  %s\n",
		"workload", "guest", "platf", "host", "conv", "exits", "attr", "punch",
		"peak DA lib/kern", "final DA lib/kern/hpf", "mixed", "2M-map", "vmemmap", "EPT+",
		"unal", "notes");
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		const struct sim_result *s = &r->res;
		char a[16], b[16], c[16], d[16], e[16], g[16], peak[40], fin[48], notes[512];

		if (s->have_lib)
			snprintf(peak, sizeof(peak), "%s/%s", human(s->lib_da_peak, a, sizeof(a)),
				 human(s->kernel_da_peak, b, sizeof(b)));
		else
			snprintf(peak, sizeof(peak), "-/%s",
				 human(s->kernel_da_peak, b, sizeof(b)));
		snprintf(fin, sizeof(fin), "%s/%s/%s",
			 s->have_lib ? human(s->lib_da, c, sizeof(c)) : "-",
			 human(s->kernel_da, d, sizeof(d)),
			 s->kernel_da_hpfree >= 0
				 ? human((uint64_t)s->kernel_da_hpfree, e, sizeof(e))
				 : "-");
		row_notes(r, notes, sizeof(notes));
		fprintf(f,
			"%-12s %-6s %-6s %-9s %5" PRIu64 " %6" PRIu64 " %6" PRIu64 " %6" PRIu64
			" %15s %20s %6" PRIu64 " %6.2f%% %8s %5" PRIu64 " %5" PRIu64 "%s%s\n",
			r->sc.workload, sim_guest_name(r->sc.guest),
			sim_platform_label(r->sc.platform), sim_host_name(r->sc.host),
			s->conversions, s->exits, s->attr_calls, s->punches, peak, fin,
			s->mixed_extents,
			s->guest_bytes
				? 100.0 * (double)s->huge_mappable_bytes / (double)s->guest_bytes
				: 0.0,
			human(s->vmemmap_lost_bytes, g, sizeof(g)), s->ept_table_pages,
			s->unaligned, notes[0] ? "  " : "", notes);
	}
}

/* The guest's side of each row (the host changes it only when it refuses
 * exits). */
void sim_print_guest_table(FILE *f)
{
	fprintf(f, "\nguest side (cvmg_get_stats): SWIOTLB boot pool (start, size, in use at the "
		   "end), coherent allocations and\n"
		   "streaming maps (ok/failed), dynamic SWIOTLB growth (attempts/failed, pools "
		   "added), free ZONE_DMA32 memory in\n"
		   "1 MiB / 2 MiB blocks at the end, unaligned conversions by site\n");
	fprintf(f, "%-12s %-6s %-6s %-9s %12s %7s %7s %10s %11s %9s %14s %11s  %s\n", "workload",
		"guest", "platf", "host", "pool@", "pool", "used", "dma ok/f", "maps ok/f",
		"grow a/f", "dyn pools", "free 1M/2M", "unaligned by site");
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		const struct sim_result *s = &r->res;
		char a[16], b[16], c[16], dma[32], maps[32], grow[32], dyn[40], fr[32], sites[256];
		size_t used = 0;

		snprintf(dma, sizeof(dma), "%" PRIu64 "/%" PRIu64, s->dma_allocs + s->cma_allocs,
			 s->dma_alloc_failures + s->cma_failures);
		snprintf(maps, sizeof(maps), "%" PRIu64 "/%" PRIu64, s->maps, s->map_failures);
		snprintf(grow, sizeof(grow), "%" PRIu64 "/%" PRIu64, s->swiotlb_growth_attempts,
			 s->swiotlb_growth_failures);
		snprintf(dyn, sizeof(dyn), "%" PRIu64 "(%s)", s->swiotlb_dyn_pools,
			 human(s->swiotlb_dyn_bytes, b, sizeof(b)));
		snprintf(fr, sizeof(fr), "%" PRIu64 "/%" PRIu64, s->free_dma32_1m,
			 s->free_dma32_2m);
		sites[0] = 0;
		for (int k = 0; k < CVMG_SITE_COUNT; k++)
			if (s->unaligned_by_site[k] && used < sizeof(sites))
				used += (size_t)snprintf(sites + used, sizeof(sites) - used,
							 "%s%s=%" PRIu64, used ? " " : "",
							 cvmg_site_name((enum cvmg_site)k),
							 s->unaligned_by_site[k]);
		if (s->checker_rejected && used < sizeof(sites))
			used += (size_t)snprintf(sites + used, sizeof(sites) - used,
						 "%srefused=%" PRIu64, used ? " " : "",
						 s->checker_rejected);
		if (s->cma_reserved_bytes && used < sizeof(sites))
			snprintf(sites + used, sizeof(sites) - used,
				 "%scma reserved=%" PRIu64 "M shared=%" PRIu64 "M", used ? " " : "",
				 s->cma_reserved_bytes / MiB, s->cma_shared_bytes / MiB);
		fprintf(f,
			"%-12s %-6s %-6s %-9s %#12" PRIx64 " %7s %7s %10s %11s %9s %14s %11s%s%s\n",
			r->sc.workload, sim_guest_name(r->sc.guest),
			sim_platform_label(r->sc.platform), sim_host_name(r->sc.host),
			s->swiotlb_boot_start, human(s->swiotlb_boot_bytes, a, sizeof(a)),
			human(s->swiotlb_used_bytes, c, sizeof(c)), dma, maps, grow, dyn, fr,
			sites[0] ? "  " : "", sites);
	}
}

/* Every per-row field, for CSV and JSON alike. */
#define MAX_FIELDS 80

static size_t row_fields(const struct row *r, struct cli_field *f)
{
	const struct sim_result *s = &r->res;
	size_t n = 0;

#define U(nm, v) f[n++] = (struct cli_field){ .name = nm, .kind = CLI_F_U64, .u = (v) }
#define I(nm, v)                                        \
	f[n++] = (struct cli_field)                     \
	{                                               \
		.name = nm, .kind = CLI_F_I64, .i = (v) \
	}
#define S(nm, v)                                        \
	f[n++] = (struct cli_field)                     \
	{                                               \
		.name = nm, .kind = CLI_F_STR, .s = (v) \
	}
#define B(nm, v)                                         \
	f[n++] = (struct cli_field)                      \
	{                                                \
		.name = nm, .kind = CLI_F_BOOL, .u = (v) \
	}
#define D(nm, v)                                        \
	f[n++] = (struct cli_field)                     \
	{                                               \
		.name = nm, .kind = CLI_F_F64, .d = (v) \
	}
	S("workload", r->sc.workload);
	S("guest", sim_guest_name(r->sc.guest));
	S("platform", sim_platform_label(r->sc.platform));
	S("host", sim_host_name(r->sc.host));
	S("policy", r->sc.host != SIM_HOST_QEMU_LIKE ? sim_policy_label(r->sc.policy) : "none");
	U("ram_bytes", r->sc.ram);
	B("ok", r->ret == 0);
	S("error", r->ret ? r->why : "");
	B("shared_hugetlb", r->sc.shared_huge);
	U("conversions", s->conversions);
	U("exits", s->exits);
	U("exits_failed", s->exits_failed);
	U("attr_calls", s->attr_calls);
	U("attr_setup_calls", s->attr_setup_calls);
	U("attr_refused", s->attr_refused);
	U("punches", s->punches);
	U("punch_failures", s->punch_failures);
	U("gmem_calls", s->gmem_calls);
	U("gmem_busy_retries", s->gmem_busy_retries);
	U("gmem_busy_failures", s->gmem_busy_failures);
	U("host_errors", s->host_errors);
	U("rejected", s->rejected);
	U("unaligned", s->unaligned);
	for (int k = 0; k < CVMG_SITE_COUNT; k++) {
		static char names[CVMG_SITE_COUNT][48];

		snprintf(names[k], sizeof(names[k]), "unaligned_%s",
			 cvmg_site_name((enum cvmg_site)k));
		U(names[k], s->unaligned_by_site[k]);
	}
	B("have_lib", s->have_lib);
	U("da_peak_lib", s->lib_da_peak);
	U("da_peak_kernel", s->kernel_da_peak);
	U("da_final_lib", s->lib_da);
	U("da_final_kernel", s->kernel_da);
	I("da_final_hugepages_free", s->kernel_da_hpfree);
	I("hugepages_used", s->hugepages_used);
	U("lib_kernel_mismatches", s->lib_kernel_mismatches);
	U("shared_alloc_bytes", s->shared_alloc_bytes);
	U("private_alloc_bytes", s->private_alloc_bytes);
	U("live_shared_bytes", s->live_shared_bytes);
	U("guest_bytes", s->guest_bytes);
	U("mixed_extents", s->mixed_extents);
	U("mixed_extents_lib", s->lib_mixed);
	U("huge_mappable_bytes", s->huge_mappable_bytes);
	U("huge_mappable_lib", s->lib_huge_mappable);
	D("huge_mappable_share",
	  s->guest_bytes ? (double)s->huge_mappable_bytes / (double)s->guest_bytes : 0.0);
	U("vmemmap_lost_bytes", s->vmemmap_lost_bytes);
	U("ept_table_pages", s->ept_table_pages);
	B("terminated", s->terminated);
	I("first_error", s->first_error);
	U("dma_allocs", s->dma_allocs);
	U("dma_alloc_failures", s->dma_alloc_failures);
	U("maps", s->maps);
	U("map_failures", s->map_failures);
	U("gpu_bytes_wanted", s->gpu_bytes_wanted);
	U("gpu_bytes_got", s->gpu_bytes_got);
	U("gpu_failures", s->gpu_failures);
	U("swiotlb_boot_start", s->swiotlb_boot_start);
	U("swiotlb_boot_bytes", s->swiotlb_boot_bytes);
	U("swiotlb_growth_attempts", s->swiotlb_growth_attempts);
	U("swiotlb_growth_failures", s->swiotlb_growth_failures);
	U("swiotlb_dyn_pools", s->swiotlb_dyn_pools);
	U("swiotlb_dyn_bytes", s->swiotlb_dyn_bytes);
	U("swiotlb_transient_pools", s->swiotlb_transient_pools);
	U("swiotlb_used_bytes", s->swiotlb_used_bytes);
	U("checker_rejected", s->checker_rejected);
	U("free_2m_blocks", s->free_2m_blocks);
	U("free_dma32_1m", s->free_dma32_1m);
	U("free_dma32_2m", s->free_dma32_2m);
	U("cma_reserved_bytes", s->cma_reserved_bytes);
	U("cma_shared_bytes", s->cma_shared_bytes);
	U("cma_allocs", s->cma_allocs);
	U("cma_failures", s->cma_failures);
	D("seconds", s->seconds);
#undef U
#undef I
#undef S
#undef B
#undef D
	return n;
}

int sim_write_csv(const char *path)
{
	struct cli_field fl[MAX_FIELDS];
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	for (size_t i = 0; i < nrows; i++) {
		size_t n = row_fields(&rows[i], fl);

		if (i == 0)
			cli_fields_csv(f, fl, n, true);
		cli_fields_csv(f, fl, n, false);
	}
	return fclose(f) ? -errno : 0;
}

int sim_write_json(const char *path)
{
	const struct sim_scenario *b = &opt.base;
	struct cli_field fl[MAX_FIELDS];
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fprintf(f, "{\n  \"tool\": \"cvmconv-sim\",\n  \"cvmconv_version\": ");
	cli_json_str(f, cvmconv_version());
	fprintf(f,
		",\n  \"config\": {\"ram_bytes\": %" PRIu64 ", \"cpus\": %u, \"seed\": %" PRIu64
		", \"policy\": \"%s\", \"populate\": \"%s\", \"swiotlb_dynamic\": %s"
		", \"enforce_checker\": %s},\n",
		b->ram, b->cpus, b->seed, sim_policy_label(b->policy),
		b->populate_all ? "all" : "converted", b->swiotlb_dynamic ? "true" : "false",
		b->enforce_checker ? "true" : "false");
	fprintf(f, "  \"shared_backing\": \"%s\",\n  \"shared_backing_note\": ",
		shared_huge ? "hugetlb-2M" : "shmem");
	cli_json_str(f, backing_note);
	fprintf(f, ",\n  \"hugepages_reserved\": %" PRIu64 ",\n  \"rows\": [\n",
		hugepages_reserved);
	for (size_t i = 0; i < nrows; i++) {
		size_t n = row_fields(&rows[i], fl);

		fputs("    ", f);
		cli_fields_json(f, fl, n);
		fprintf(f, "%s\n", i + 1 < nrows ? "," : "");
	}
	fputs("  ]\n}\n", f);
	return fclose(f) ? -errno : 0;
}
