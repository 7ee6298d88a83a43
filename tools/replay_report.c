/* SPDX-License-Identifier: MIT */
/* cvmconv-replay's report: counts, the recorder's cross-check, the kernel's
 * figures, CSV and JSON (see replay.h). */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "attr_recorder.h"
#include "qemu_like.h"
#include "replay.h"
#include "stats_report.h"

/* ---- results ---- */

void replay_print_counts(const struct replay_counts *n, double elapsed)
{
	printf("\nreplay\n");
	printf("  %-34s %12" PRIu64 "\n", "lines", n->lines);
	printf("  %-34s %12" PRIu64 "\n", "  blank or comment", n->blank);
	printf("  %-34s %12" PRIu64 "\n", "  other lines (ignored)", n->other);
	printf("  %-34s %12" PRIu64 "\n", "  malformed (skipped)", n->malformed);
	printf("  %-34s %12" PRIu64 "\n", "  kvm_hypercall lines", n->hypercalls);
	printf("  %-34s %12" PRIu64 "\n", "    other hypercalls (skipped)", n->other_hypercalls);
	printf("  %-34s %12" PRIu64 "\n", "map_gpa_range requests replayed", n->map_requests);
	printf("  %-34s %12" PRIu64 "\n",
	       opt.host == REPLAY_QEMU_LIKE ? "  refused (QEMU stops the vCPU)"
					    : "  refused (guest got an error)",
	       n->map_refused);
	printf("  %-34s %12" PRIu64 "\n", "memory faults replayed", n->faults);
	printf("  %-34s %12" PRIu64 "\n", "  refused (fatal for a vCPU)", n->faults_refused);
	printf("  %-34s %12" PRIu64 "\n", "host conversions replayed", n->conversions);
	printf("  %-34s %12" PRIu64 "\n", "  refused (-EINVAL)", n->conversions_refused);
	printf("  %-34s %12" PRIu64 "\n", "host failures", n->host_failures);
	printf("  %-34s %12.3f s\n", "elapsed", elapsed);
}

void replay_print_baseline(void)
{
	struct qemu_like_counts qc;

	qemu_like_get_counts(eng.ql, &qc);
	printf("\nQEMU-like baseline (kvm_convert_memory: no tracking, no policy)\n");
	printf("  %-34s %12" PRIu64 "\n", "conversions", qc.conversions);
	printf("  %-34s %12" PRIu64 "\n", "  failed (QEMU stops the vCPU)", qc.errors);
	printf("  %-34s %12" PRIu64 "\n", "attribute updates", qc.attr_calls);
	printf("  %-34s %12" PRIu64 "\n", "  failed", qc.attr_failures);
	printf("  %-34s %12" PRIu64 "\n", "discards (punches)", qc.discards);
	printf("  %-34s %12" PRIu64 "\n", "  failed", qc.discard_failures);
	printf("  %-34s %12" PRIu64 "\n", "  skipped: shared side huge", qc.discards_skipped);
	if (host_engine_tracked(&eng)) {
		printf("  %-34s %12" PRIu64 "\n", "mixed extents (the attributes)", eng.mixed);
		printf("  %-34s %12" PRIu64 "\n", "huge-mappable bytes",
		       (uint64_t)((eng.nextents - eng.mixed) * HOST_ENGINE_2M));
	}
}

/* The recorder's per-page state against cvmconv_is_private(). */
int replay_cross_check(void)
{
	struct attr_recorder_counts rc;
	uint64_t pages = 0, differ = 0, first_bad = 0;
	char a[32], b[32];

	attr_recorder_get_counts(eng.rec, &rc);
	printf("\nattribute recorder (stands in for KVM_SET_MEMORY_ATTRIBUTES)\n");
	printf("  %" PRIu64 " update(s): %s set private, %s set shared, %" PRIu64 " refused%s%s\n",
	       rc.calls, stats_human_bytes(rc.private_bytes, a, sizeof(a)),
	       stats_human_bytes(rc.shared_bytes, b, sizeof(b)), rc.refused,
	       rc.last_refusal ? ", last: " : "", rc.last_refusal ? rc.last_refusal : "");
	if (!eng.conv) {
		printf("  per-page check: cvmconv only (the baseline keeps no state of its own)\n");
		return rc.refused ? EXIT_FAIL : EXIT_OK;
	}
	if (!attr_recorder_tracking(eng.rec)) {
		printf("  per-page check skipped (guest memory above %" PRIu64 " GiB)\n",
		       TRACK_LIMIT_PAGES * PAGE_4K / GiB);
		return rc.refused ? EXIT_FAIL : EXIT_OK;
	}
	for (int i = 0; i < eng.cfg.nreg; i++) {
		const struct host_engine_region *r = &eng.cfg.reg[i];

		for (uint64_t g = r->gpa; g < r->gpa + r->size; g += PAGE_4K) {
			if (cvmconv_is_private(eng.conv, g) !=
			    attr_recorder_is_private(eng.rec, g)) {
				if (!differ)
					first_bad = g;
				differ++;
			}
			pages++;
		}
	}
	if (differ)
		printf("  MISMATCH: cvmconv_is_private() differs from the recorded attributes on "
		       "%" PRIu64 " of %" PRIu64 " pages (first at gpa 0x%" PRIx64 ")\n",
		       differ, pages, first_bad);
	else
		printf("  cvmconv_is_private() agrees with the recorded attributes on all %" PRIu64
		       " pages\n",
		       pages);
	return differ || rc.refused ? EXIT_FAIL : EXIT_OK;
}

int replay_print_kernel(const struct cvmconv_stats *st)
{
	uint64_t shared = host_engine_shared_bytes(&eng),
		 private_ = host_engine_private_bytes(&eng), kda;
	char a[32], b[32];

	printf("\nkernel (st_blocks of the backings%s)\n",
	       opt.touch ? "" : "; not populated: --touch allocates the live side");
	if (opt.host == REPLAY_INPLACE) {
		/* one file per region: both sides' pages */
		printf("  guest_memfd stand-in allocated %14" PRIu64 "  %s\n", private_,
		       stats_human_bytes(private_, b, sizeof(b)));
		return EXIT_OK;
	}
	printf("  shared backing allocated %20" PRIu64 "  %s\n", shared,
	       stats_human_bytes(shared, a, sizeof(a)));
	printf("  private stand-in allocated %18" PRIu64 "  %s\n", private_,
	       stats_human_bytes(private_, b, sizeof(b)));
	if (!opt.touch || !host_engine_tracked(&eng) || opt.backing == BACKING_NONE)
		return EXIT_OK;
	/* every live shared page was allocated (--touch): what the shared
	 * side holds beyond them is held twice */
	kda = host_engine_kernel_da(&eng);
	printf("  double allocation %27" PRIu64 "  %s  (shared allocated - live shared)\n", kda,
	       stats_human_bytes(kda, a, sizeof(a)));
	if (eng.conv && kda != st->double_alloc_bytes) {
		note("cvmconv-replay: cvmconv's double_alloc_bytes %" PRIu64
		     " differ from the kernel's %" PRIu64,
		     st->double_alloc_bytes, kda);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

int replay_write_outputs(const struct cvmconv_stats *st)
{
	int status = EXIT_OK;

	if (opt.out.csv) {
		FILE *f = fopen(opt.out.csv, "we");
		int err = f ? stats_write_csv(f, st) : -errno;

		if (f && fclose(f) && !err)
			err = -errno;
		if (err) {
			note("cvmconv-replay: --csv %s: %s", opt.out.csv, strerror(-err));
			status = EXIT_FAIL;
		}
	}
	if (opt.out.json) {
		FILE *f = fopen(opt.out.json, "we");
		int err = f ? stats_write_json(f, eng.conv) : -errno;

		if (f && fclose(f) && !err)
			err = -errno;
		if (err) {
			note("cvmconv-replay: --json %s: %s", opt.out.json, strerror(-err));
			status = EXIT_FAIL;
		}
	}
	return status;
}

void replay_print_header(void)
{
	char g[32];

	printf("cvmconv-replay %s (library %s)\n", CVMCONV_VERSION_STRING, cvmconv_version());
	printf("trace:       %s\n", opt.trace);
	printf("attributes:  no /dev/kvm is used: KVM_SET_MEMORY_ATTRIBUTES is served by a strict\n"
	       "             in-tool recorder (4 KiB alignment, no wrap, PRIVATE bit only,\n"
	       "             inside guest memory)\n");
	if (opt.host == REPLAY_QEMU_LIKE)
		printf("host:        the QEMU-like baseline (tools/engine/qemu_like.c): attributes "
		       "and a discard\n"
		       "             of the old side for exactly the range asked, no policy, no "
		       "tracking\n");
	else
		printf("policy:      unaligned %s, granule %s\n", policy_names[opt.policy],
		       stats_human_bytes(opt.granule, g, sizeof(g)));
	if (opt.host == REPLAY_INPLACE) {
		printf("backings:    in place (CVMCONV_REGION_INPLACE): per region one shmem memfd "
		       "standing in\n"
		       "             for a guest_memfd holding both sides; "
		       "KVM_SET_MEMORY_ATTRIBUTES2 is checked\n"
		       "             with the posted uAPI's rules (offsets, PRIVATE only, content "
		       "modes)\n");
		return;
	}
	if (opt.backing == BACKING_SHMEM)
		printf("backings:    shared: shmem memfd (4 KiB pages)");
	else if (opt.backing == BACKING_NONE)
		printf("backings:    shared: none (nothing to punch on the shared side)");
	else
		printf("backings:    shared: %s with %s pages",
		       opt.backing == BACKING_HUGETLB ? "MFD_HUGETLB memfd" : "hugetlbfs file",
		       stats_human_bytes(opt.huge_page_size, g, sizeof(g)));
	printf("; private: shmem memfd standing in for guest_memfd\n");
}
