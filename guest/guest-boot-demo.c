/* SPDX-License-Identifier: MIT */
/*
 * guest-boot-demo: boot a 16 GiB, 4-vCPU guest (boot + virtio-net with 4
 * queue pairs + virtio-blk with 4 queues + NVMe with 4 IO queues) in legacy
 * and RFC mode on each platform and print what reached the host.
 * Usage: guest-boot-demo [ram_GiB [cpus [seed]]]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <cvmconv/guest.h>

int main(int argc, char **argv)
{
	uint64_t gib = argc > 1 ? strtoull(argv[1], NULL, 0) : 16;
	uint32_t cpus = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 0) : 4;
	uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 0) : 1;
	int rc = 0;

	printf("%" PRIu64 " GiB, %u vCPUs, seed %" PRIu64
	       ": boot + virtio-net(%u qp) + virtio-blk(%u q) + nvme(%u io q)\n",
	       gib, cpus, seed, cpus, cpus, cpus);
	printf("%-7s %-7s %10s %7s %9s %10s %12s %14s %12s\n", "mode", "platf", "conversions",
	       "exits", "unaligned", "pages->sh", "swiotlb", "swiotlb_start", "atomic_pool");
	for (int mode = CVMG_MODE_LEGACY; mode <= CVMG_MODE_RFC; mode++) {
		for (int p = CVMG_PLATFORM_SNP; p <= CVMG_PLATFORM_KVM_PV; p++) {
			struct cvmg_config cfg = {
				.sz = sizeof(cfg),
				.ram_size = gib << 30,
				.cpus = cpus,
				.seed = seed,
				.mode = (enum cvmg_mode)mode,
				.platform = (enum cvmg_platform)p,
			};
			struct cvmg_virtio_net_opts net = { .sz = sizeof(net),
							    .queue_pairs = cpus };
			struct cvmg_stats st = { .sz = sizeof(st) };
			struct cvmg *m;
			int ret;

			ret = cvmg_create(&cfg, &m);
			if (ret) {
				fprintf(stderr, "cvmg_create: %d\n", ret);
				return 1;
			}
			ret = cvmg_boot(m);
			if (!ret)
				ret = cvmg_wl_virtio_net(m, &net, NULL);
			if (!ret)
				ret = cvmg_wl_virtio_blk(m, NULL, NULL);
			if (!ret)
				ret = cvmg_wl_nvme(m, NULL, NULL);
			cvmg_get_stats(m, &st);
			printf("%-7s %-7s %10" PRIu64 " %7" PRIu64 " %9" PRIu64 " %10" PRIu64
			       " %9" PRIu64 "MiB %#14" PRIx64 " %9" PRIu64 "KiB%s\n",
			       cvmg_mode_name((enum cvmg_mode)mode),
			       cvmg_platform_name((enum cvmg_platform)p), st.conversions, st.exits,
			       st.unaligned, st.pages_to_shared, st.swiotlb_boot_bytes >> 20,
			       st.swiotlb_boot_start, st.atomic_pool_size >> 10,
			       ret ? " (failed)" : "");
			if (ret)
				rc = 1;
			cvmg_destroy(m);
		}
	}
	return rc;
}
