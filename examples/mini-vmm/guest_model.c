/* SPDX-License-Identifier: MIT */
/*
 * --simulate --guest-model: instead of the hand-written scenario, the
 * cvmconv guest model (include/cvmconv/guest.h) boots a confidential guest
 * and brings up virtio devices; every exit it produces, shaped as the chosen
 * platform delivers it, goes to cvmconv_map_gpa_range() over real memfd
 * backings sized to the guest's RAM. The memfds are sparse: only what the
 * guest touches is allocated, and the guest touches (fallocate) the live side
 * of every range it converted, as a guest uses what it converts.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mini-vmm.h"

#ifdef MINI_VMM_GUEST_MODEL

#include <cvmconv/guest.h>

#define GiB (1024 * MiB)
#define HIGH_BASE (4 * GiB)
#define EXITS_SHOWN 8

struct gm {
	struct cvmconv *conv;
	int shared_fd, private_fd;
	uint64_t low, high; /* RAM below 4 GiB at 0, above it at 4 GiB */
	uint64_t exits, refused, host_errors, touch_failures;
	uint8_t *rec; /* attribute recorder: one bit per page of [0, end) */
	uint64_t rec_pages;
	uint64_t rec_calls, rec_refused;
};

/* The RAM layout the model uses with lowmem_size = 0: QEMU q35 puts 2 GiB
 * below 4 GiB when RAM >= 2.75 GiB, else all of it (guest.h). */
static void ram_layout(uint64_t ram, uint64_t *low, uint64_t *high)
{
	*low = ram >= 2 * GiB + 768 * MiB ? 2 * GiB : ram;
	*high = ram - *low;
}

/* file offset of @gpa in the RAM-sized memfds */
static uint64_t ram_offset(const struct gm *g, uint64_t gpa)
{
	return gpa < HIGH_BASE ? gpa : g->low + (gpa - HIGH_BASE);
}

/* Strict, like KVM_SET_MEMORY_ATTRIBUTES (virt/kvm/kvm_main.c). */
static int gm_set_attributes(void *opaque, uint64_t gpa, uint64_t size, uint64_t attrs)
{
	struct gm *g = opaque;

	g->rec_calls++;
	if ((attrs & ~CVMCONV_ATTR_PRIVATE) || size == 0 || gpa + size < gpa ||
	    ((gpa | size) & (PAGE_SIZE_4K - 1)) || (gpa + size) / PAGE_SIZE_4K > g->rec_pages) {
		g->rec_refused++;
		return -EINVAL;
	}
	for (uint64_t p = gpa / PAGE_SIZE_4K; p < (gpa + size) / PAGE_SIZE_4K; p++) {
		if (attrs)
			g->rec[p / 8] |= (uint8_t)(1u << (p % 8));
		else
			g->rec[p / 8] &= (uint8_t) ~(1u << (p % 8));
	}
	return 0;
}

static const struct cvmconv_ops gm_ops = { .set_memory_attributes = gm_set_attributes };

/* The guest uses what it converted: allocate its live side. */
static void touch(struct gm *g, uint64_t gpa, uint64_t size, bool private_)
{
	int fd = private_ ? g->private_fd : g->shared_fd;

	if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)ram_offset(g, gpa), (off_t)size) != 0)
		g->touch_failures++;
}

static int gm_exit(void *opaque, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	struct gm *g = opaque;
	bool private_ = attrs & CVMCONV_MAP_GPA_RANGE_ENCRYPTED;
	uint64_t hc_ret = 0;
	int ret = cvmconv_map_gpa_range(g->conv, gpa, npages, attrs, &hc_ret);

	if (g->exits++ < EXITS_SHOWN)
		printf("  exit %2" PRIu64 ": gpa %#12" PRIx64 " npages %7" PRIu64
		       " attrs %#4" PRIx64 " -> %-7s ret %d, hypercall.ret %" PRId64 "\n",
		       g->exits - 1, gpa, npages, attrs, private_ ? "private" : "shared", ret,
		       (int64_t)hc_ret);
	else if (g->exits == EXITS_SHOWN + 1)
		printf("  ...\n");
	if (ret < 0) {
		g->host_errors++;
		return -CVMCONV_KVM_EFAULT;
	}
	if (hc_ret) {
		g->refused++;
		return (int)(int64_t)hc_ret;
	}
	touch(g, gpa, npages * PAGE_SIZE_4K, private_);
	return 0;
}

static int add_region(struct gm *g, uint64_t gpa, uint64_t size)
{
	struct cvmconv_region r = {
		.sz = sizeof(r),
		.gpa = gpa,
		.size = size,
		.private_fd = g->private_fd,
		.private_offset = ram_offset(g, gpa),
		.shared_fd = g->shared_fd,
		.shared_offset = ram_offset(g, gpa),
		.flags = CVMCONV_REGION_PRIVATE, /* a confidential guest boots private */
		.unaligned = -1,
	};
	int ret = cvmconv_add_region(g->conv, &r);

	if (ret)
		fprintf(stderr, "cvmconv_add_region(%#" PRIx64 "): %s\n", gpa, strerror(-ret));
	return ret;
}

int guest_model_run(bool rfc, int platform, uint64_t ram_mib, bool want_huge)
{
	struct cvmconv_config ccfg = {
		.sz = sizeof(ccfg),
		.vm_fd = -1,
		.unaligned = CVMCONV_UNALIGNED_ALLOW, /* count; the model shows who asked */
		.ops = &gm_ops,
	};
	struct gm g = { .shared_fd = -1, .private_fd = -1 };
	struct cvmg_config mcfg = {
		.sz = sizeof(mcfg),
		.ram_size = ram_mib * MiB,
		.cpus = 2,
		.seed = 1,
		.mode = rfc ? CVMG_MODE_RFC : CVMG_MODE_LEGACY,
		.platform = (enum cvmg_platform)platform,
		.exit = gm_exit,
		.exit_opaque = &g,
	};
	struct cvmg_virtio_net_opts net = { .sz = sizeof(net) };
	struct cvmg_stats ms = { .sz = sizeof(ms) };
	struct cvmconv_stats st = { .sz = sizeof(st) };
	uint64_t ram = ram_mib * MiB, end;
	struct cvmg *m = NULL;
	bool huge = false;
	char why[160] = "--shmem given";
	int ret, rc = 1;

	ram_layout(ram, &g.low, &g.high);
	printf("guest model    : %" PRIu64 " MiB RAM, %s, %s, 2 vCPUs, seed 1\n", ram_mib,
	       cvmg_platform_name(mcfg.platform), cvmg_mode_name(mcfg.mode));
	/* huge pages for the shared side when the pool can cover all of RAM */
	if (want_huge && ram <= 4 * GiB &&
	    hugepages_reserve((long)(ram / HUGE_SIZE), why, sizeof(why))) {
		g.shared_fd = cvmconv_memfd_create("mini-vmm-model-shared", ram, HUGE_SIZE);
		huge = g.shared_fd >= 0;
	} else if (want_huge && ram > 4 * GiB) {
		snprintf(why, sizeof(why), "more than 4 GiB of RAM");
	}
	if (!huge) {
		hugepages_restore();
		g.shared_fd = cvmconv_memfd_create("mini-vmm-model-shared", ram, PAGE_SIZE_4K);
	}
	g.private_fd = cvmconv_memfd_create("mini-vmm-model-private", ram, PAGE_SIZE_4K);
	if (g.shared_fd < 0 || g.private_fd < 0) {
		fprintf(stderr, "memfd_create: failed\n");
		goto out;
	}
	printf("shared backing : %s memfd of %" PRIu64 " MiB (sparse)%s%s%s\n",
	       huge ? "MFD_HUGETLB 2 MiB" : "shmem", ram_mib,
	       huge ? "" : " (no huge pages: ", huge ? "" : why, huge ? "" : ")");
	printf("private backing: shmem memfd of %" PRIu64 " MiB standing in for guest_memfd\n",
	       ram_mib);
	end = g.high ? HIGH_BASE + g.high : g.low;
	g.rec_pages = end / PAGE_SIZE_4K;
	g.rec = calloc((size_t)(g.rec_pages / 8 + 1), 1);
	ccfg.ops_opaque = &g;
	if (!g.rec || cvmconv_create(&ccfg, &g.conv) || add_region(&g, 0, g.low) ||
	    (g.high && add_region(&g, HIGH_BASE, g.high)))
		goto out;

	ret = cvmg_create(&mcfg, &m);
	if (ret) {
		fprintf(stderr, "cvmg_create: %s\n", strerror(-ret));
		goto out;
	}
	ret = cvmg_boot(m);
	printf("  boot: %s\n", ret ? strerror(-ret) : "ok");
	if (!ret) {
		ret = cvmg_wl_virtio_net(m, &net, NULL);
		printf("  virtio-net bring-up: %s\n", ret ? strerror(-ret) : "ok");
	}
	if (!ret) {
		ret = cvmg_wl_virtio_blk(m, NULL, NULL);
		printf("  virtio-blk bring-up: %s\n", ret ? strerror(-ret) : "ok");
	}
	if (cvmg_get_stats(m, &ms) || cvmconv_get_stats(g.conv, &st)) {
		fprintf(stderr, "stats: failed\n");
		goto out;
	}

	printf("\n%-26s %14s   %-26s %14s\n", "cvmconv_get_stats()", "", "guest model / kernel",
	       "");
#define ROW2(f, name, val) \
	printf("  %-24s %14" PRIu64 "   %-26s %14" PRIu64 "\n", #f, st.f, name, (uint64_t)(val))
	ROW2(exits, "exits", ms.exits);
	ROW2(rejected, "exits failed", ms.exits_failed);
	ROW2(unaligned, "unaligned conversions", ms.unaligned);
	ROW2(to_private_bytes, "conversions", ms.conversions);
	ROW2(to_shared_bytes, "pages to shared", ms.pages_to_shared);
	ROW2(attr_updates, "pages to private", ms.pages_to_private);
	ROW2(punches, "swiotlb boot bytes", ms.swiotlb_boot_bytes);
	ROW2(punch_failures, "swiotlb boot start", ms.swiotlb_boot_start);
	ROW2(double_alloc_bytes, "atomic pool bytes (each)", ms.atomic_pool_size);
	ROW2(double_alloc_peak_bytes, "dma allocs", ms.dma_allocs);
	ROW2(mixed_extents, "shared st_blocks KiB", fd_allocated(g.shared_fd) / KiB);
	ROW2(extents, "private st_blocks KiB", fd_allocated(g.private_fd) / KiB);
	ROW2(guest_bytes, "recorder calls", g.rec_calls);
	ROW2(huge_mappable_bytes, "recorder refused", g.rec_refused);
	ROW2(punch_pending_bytes, "touch failures", g.touch_failures);
	ROW2(broken, "host errors", g.host_errors);
#undef ROW2

	rc = 0;
	if (ret) {
		printf("CHECK FAILED: the guest model stopped: %s\n", strerror(-ret));
		rc = 1;
	}
	if (st.exits != ms.exits || g.exits != ms.exits) {
		printf("CHECK FAILED: cvmconv saw %" PRIu64 " requests, the model made %" PRIu64
		       " exits\n",
		       st.exits, ms.exits);
		rc = 1;
	}
	if (g.refused || g.host_errors || ms.exits_failed || st.broken || st.punch_failures ||
	    g.rec_refused) {
		printf("CHECK FAILED: refused %" PRIu64 ", host errors %" PRIu64
		       ", model failures %" PRIu64 "\n",
		       g.refused, g.host_errors, ms.exits_failed);
		rc = 1;
	}
	printf("mini-vmm: guest model %s (%s, %s)\n", rc ? "FAILED" : "OK",
	       cvmg_platform_name(mcfg.platform), cvmg_mode_name(mcfg.mode));
out:
	cvmg_destroy(m);
	cvmconv_destroy(g.conv);
	free(g.rec);
	if (g.shared_fd >= 0)
		close(g.shared_fd);
	if (g.private_fd >= 0)
		close(g.private_fd);
	hugepages_restore();
	return rc;
}

#else /* !MINI_VMM_GUEST_MODEL */

int guest_model_run(bool rfc, int platform, uint64_t ram_mib, bool want_huge)
{
	(void)rfc;
	(void)platform;
	(void)ram_mib;
	(void)want_huge;
	printf("mini-vmm: built without the guest model (guest/ and cvmconv_guest missing)\n");
	return 77;
}

#endif
