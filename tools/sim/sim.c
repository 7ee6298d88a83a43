/* SPDX-License-Identifier: MIT */
/* cvmconv-sim's engine (see sim.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "attr_recorder.h"
#include "host_engine.h"
#include "qemu_like.h"
#include "sim.h"

#define SZ_1M (1ULL << 20)
#define SZ_1G (1ULL << 30)
#define SZ_4G (4ULL << 30)
#define VMEMMAP_LOST_PER_SPLIT (28ULL * 1024) /* HVO: 7 of 8 vmemmap pages of a 2 MiB page */
#define Q35_HIGHMEM_FROM 0xb0000000ULL	      /* pc_q35_init(): 2 GiB low from 2.75 GiB on */
#define KERNEL_AT (16 * SZ_1M)		      /* the model's CONFIG_PHYSICAL_START */
#define KERNEL_SIZE (48 * SZ_1M)	      /* the model's default kernel image */
#define CMA_MAX_ALIGN_ORDER 8		      /* CONFIG_CMA_ALIGNMENT default: 1 MiB */

struct sim {
	const struct sim_scenario *sc;
	struct sim_result *res;
	bool dry;
	struct host_engine_config ecfg; /* the layout and the host */
	struct host_engine eng;
	bool eng_open;
	bool inplace_; /* SIM_HOST_INPLACE (not in a dry run) */
	long free0;    /* HugePages_Free before the host was set up */
	uint64_t lowmem;
	struct cvmg *m;
	/* dry run: huge pages ever made shared */
	uint64_t *touched;
	/* failure of the simulation itself */
	int fatal;
	char *why;
	size_t why_len;
	/* CMA-style area of SIM_GUEST_CMA */
	uint64_t cma_base, cma_size, cma_next;
	uint32_t *cma_ref; /* per 2 MiB unit: buffers using it */
};

/* ---- names and defaults ---- */

const char *sim_phase_name(enum sim_phase p)
{
	static const char *const n[SIM_PHASE_COUNT] = { "devices", "churn", "frag", "gpu",
							"stream" };

	return (unsigned)p < SIM_PHASE_COUNT ? n[p] : "?";
}

const char *sim_guest_name(enum sim_guest g)
{
	static const char *const n[SIM_GUEST_COUNT] = { "legacy", "rfc", "cma" };

	return (unsigned)g < SIM_GUEST_COUNT ? n[g] : "?";
}

const char *sim_host_name(enum sim_host h)
{
	static const char *const n[SIM_HOST_COUNT] = { "qemu-like", "cvmconv", "in-place", "none" };

	return (unsigned)h < SIM_HOST_COUNT ? n[h] : "?";
}

void sim_scenario_defaults(struct sim_scenario *sc)
{
	memset(sc, 0, sizeof(*sc));
	sc->ram = 16 * SZ_1G;
	sc->cpus = 4;
	sc->seed = 1;
	sc->guest = SIM_GUEST_LEGACY;
	sc->platform = CVMG_PLATFORM_SNP;
	sc->host = SIM_HOST_CVMCONV;
	sc->policy = CVMCONV_UNALIGNED_ALLOW;
	sc->phases[0] = SIM_PHASE_DEVICES;
	sc->nphases = 1;
	sc->workload = "devices";
	sc->shared_huge = true;
}

static int __attribute__((format(printf, 3, 4))) fail(struct sim *s, int err, const char *fmt, ...)
{
	va_list ap;

	if (s->why && s->why_len && !s->fatal) {
		va_start(ap, fmt);
		vsnprintf(s->why, s->why_len, fmt, ap);
		va_end(ap);
	}
	if (!s->fatal)
		s->fatal = err;
	return err;
}

long sim_hugepages_free(void)
{
	return host_engine_hugepages_free();
}

/* An engine failure: its reason becomes the simulation's. */
static int engine_fail(struct sim *s, int err)
{
	return fail(s, err, "%s", s->eng.why);
}

static unsigned order_of(uint64_t size)
{
	uint64_t x = (size - 1) / SIM_SZ_4K;

	return x ? (unsigned)(64 - __builtin_clzll(x)) : 0;
}

/* ---- layout ---- */

static int layout(struct sim *s)
{
	const struct sim_scenario *sc = s->sc;
	struct host_engine_config *c = &s->ecfg;

	if (sc->ram < 256 * SZ_1M || sc->ram % SIM_SZ_2M || sc->ram > (64ULL << 40))
		return fail(s, -EINVAL, "RAM must be a multiple of 2 MiB from 256 MiB to 64 TiB");
	/* the model's default low RAM (guest.h: cvmg_config.lowmem_size) */
	s->lowmem = sc->ram >= Q35_HIGHMEM_FROM ? 2 * SZ_1G : sc->ram;
	c->reg[0] = (struct host_engine_region){ 0, s->lowmem, 0 };
	c->nreg = 1;
	if (sc->ram > s->lowmem)
		c->reg[c->nreg++] =
			(struct host_engine_region){ SZ_4G, sc->ram - s->lowmem, s->lowmem };
	c->span = sc->ram;
	return 0;
}

/* memfd offset of @gpa, and the bytes of its region from there */
static bool offset_of(const struct sim *s, uint64_t gpa, uint64_t *off, uint64_t *left)
{
	return host_engine_regions_offset(s->ecfg.reg, s->ecfg.nreg, gpa, off, left);
}

/* After every exit: the kernel's double allocation, its peak, and whether
 * cvmconv's own figure says the same. */
static void sample(struct sim *s, uint64_t gpa)
{
	struct sim_result *r = s->res;
	/* in place nothing can be held twice (host_engine_kernel_da()), and
	 * reading a guest_memfd's allocation is a mincore() of the whole
	 * guest: only at the end (collect()) */
	uint64_t kda = s->inplace_ ? 0 : host_engine_kernel_da(&s->eng);

	if (kda > r->kernel_da_peak)
		r->kernel_da_peak = kda;
	if (s->eng.conv) {
		struct cvmconv_stats st = { .sz = sizeof(st) };

		if (!cvmconv_get_stats(s->eng.conv, &st) && st.double_alloc_bytes != kda) {
			if (!r->lib_kernel_mismatches)
				r->first_mismatch_gpa = gpa;
			r->lib_kernel_mismatches++;
		}
	}
}

/* ---- exits ---- */

static bool granule_aligned(uint64_t gpa, uint64_t npages)
{
	return !(gpa % SIM_SZ_2M) && !((npages * SIM_SZ_4K) % SIM_SZ_2M);
}

static void dry_exit(struct sim *s, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	uint64_t end = gpa + npages * SIM_SZ_4K;

	if (attrs & CVMCONV_MAP_GPA_RANGE_ENCRYPTED)
		return;
	while (gpa < end) {
		uint64_t off, left, n;

		if (!offset_of(s, gpa, &off, &left))
			return;
		n = end - gpa < left ? end - gpa : left;
		for (uint64_t h = off / SIM_SZ_2M; h <= (off + n - 1) / SIM_SZ_2M; h++) {
			if (!((s->touched[h / 64] >> (h % 64)) & 1)) {
				s->touched[h / 64] |= 1ULL << (h % 64);
				s->res->touched_hugepages++;
			}
		}
		gpa += n;
	}
}

/* cvmg_exit_fn: one exit as KVM hands it to the VMM. */
static int guest_exit(void *opaque, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	struct sim *s = opaque;
	const struct sim_scenario *sc = s->sc;
	uint64_t hc_ret = 0;
	int ret;

	if (sc->trace && !s->dry)
		fprintf(sc->trace, "map 0x%" PRIx64 " 0x%" PRIx64 " 0x%" PRIx64 "\n", gpa, npages,
			attrs);
	if (s->fatal)
		return -CVMCONV_KVM_EFAULT;
	if (s->dry) {
		/* the same answers the real hosts give, so the guest takes the
		 * same path: only cvmconv refuses, by policy */
		if ((sc->host == SIM_HOST_CVMCONV || sc->host == SIM_HOST_INPLACE) &&
		    sc->policy == CVMCONV_UNALIGNED_REJECT && !granule_aligned(gpa, npages))
			return -CVMCONV_KVM_EINVAL;
		dry_exit(s, gpa, npages, attrs);
		return 0;
	}
	ret = host_engine_map_gpa_range(&s->eng, gpa, npages, attrs, &hc_ret);
	if (ret < 0) {
		/* QEMU stops the vCPU on an error; the guest never sees one */
		s->res->host_errors++;
		hc_ret = s->eng.conv ? (uint64_t)-CVMCONV_KVM_EFAULT : 0;
	}
	if (!(attrs & CVMCONV_MAP_GPA_RANGE_ENCRYPTED) && npages < (UINT64_MAX >> 12) &&
	    host_engine_touch_gpa(&s->eng, gpa, npages * SIM_SZ_4K))
		engine_fail(s, -ENOMEM);
	sample(s, gpa);
	return (int)(int64_t)hc_ret;
}

static void log_cb(void *opaque, int level, const char *msg)
{
	struct sim *s = opaque;

	if (s->sc->verbose || level <= LOG_ERR)
		fprintf(stderr, "cvmconv: %s\n", msg);
}

/* ---- the host ---- */

static int host_init(struct sim *s)
{
	const struct sim_scenario *sc = s->sc;
	struct host_engine_config *c = &s->ecfg;
	int ret;

	c->host = sc->host == SIM_HOST_QEMU_LIKE ? HOST_ENGINE_QEMU_LIKE
		  : sc->host == SIM_HOST_INPLACE ? HOST_ENGINE_INPLACE
						 : HOST_ENGINE_CVMCONV;
	c->shared = sc->shared_huge ? HOST_ENGINE_SHARED_MFD_HUGETLB : HOST_ENGINE_SHARED_SHMEM;
	c->map_shared = true;
	c->start_private = !sc->populate_all;
	c->policy = sc->policy;
	c->log = log_cb;
	c->log_opaque = s;
	c->gmem_busy_every = sc->gmem_busy_every;
	c->shared_name = "cvmconv-sim-shared";
	s->eng_open = true;
	ret = host_engine_open(&s->eng, c);
	if (ret)
		return engine_fail(s, ret);
	if (sc->shared_huge && !s->inplace_)
		s->free0 = sim_hugepages_free();
	ret = host_engine_start(&s->eng);
	if (ret)
		return engine_fail(s, ret);
	if (!sc->populate_all)
		return 0;
	/*
	 * Memory starts shared and populated (a VMM that preallocates or
	 * writes guest RAM before launch), then becomes private before the
	 * guest runs: one host conversion per region.
	 */
	if (host_engine_touch(&s->eng, 0, c->span))
		return engine_fail(s, -ENOMEM);
	for (int i = 0; i < c->nreg; i++) {
		if (sc->trace)
			fprintf(sc->trace, "convert 0x%" PRIx64 " 0x%" PRIx64 " private\n",
				c->reg[i].gpa, c->reg[i].size);
		ret = host_engine_convert(&s->eng, c->reg[i].gpa, c->reg[i].size, true);
		if (ret)
			return fail(s, ret, "initial conversion to private: %s", strerror(-ret));
	}
	return 0;
}

/* ---- the CMA-style alternative (SIM_GUEST_CMA) ---- */

/*
 * The reviewers' alternative to a fixed pool: reserve the most coherent DMA
 * memory the guest may need at boot (here: by enlarging the model's kernel
 * image reservation, so the buddy allocator never hands it out), and
 * convert it on demand in whole 2 MiB units, through the model's
 * set_memory_decrypted() (its checker and platform exit shaping apply).
 * Buffers are placed like cma_alloc(): first fit from the bottom, aligned
 * to their order capped at CONFIG_CMA_ALIGNMENT (1 MiB). GPU buffers are
 * kept, so nothing is converted back. Not modelled: movable allocations
 * borrowing idle CMA memory.
 */
static int cma_alloc(struct sim *s, uint64_t size, uint64_t *gpa)
{
	unsigned order = order_of(size);
	uint64_t align = SIM_SZ_4K << (order < CMA_MAX_ALIGN_ORDER ? order : CMA_MAX_ALIGN_ORDER);
	uint64_t start = (s->cma_next + align - 1) & ~(align - 1);
	uint64_t u0, u1, u;
	int ret;

	if (start + size > s->cma_size)
		return -ENOMEM;
	u0 = start / SIM_SZ_2M;
	u1 = (start + size - 1) / SIM_SZ_2M;
	for (u = u0; u <= u1;) {
		uint64_t run = u;

		if (s->cma_ref[u]) {
			u++;
			continue;
		}
		while (run <= u1 && !s->cma_ref[run])
			run++;
		ret = cvmg_set_memory_decrypted(s->m, s->cma_base + u * SIM_SZ_2M,
						(run - u) * (SIM_SZ_2M / SIM_SZ_4K));
		if (ret)
			return ret;
		s->res->cma_shared_bytes += (run - u) * SIM_SZ_2M;
		u = run;
	}
	for (u = u0; u <= u1; u++)
		s->cma_ref[u]++;
	s->cma_next = start + size;
	*gpa = s->cma_base + start;
	return 0;
}

static int cma_gpu(struct sim *s, uint64_t total, uint64_t chunk)
{
	struct sim_result *r = s->res;
	int ret = 0;

	for (uint64_t done = 0; done < total; done += chunk) {
		uint64_t size = total - done < chunk ? total - done : chunk, gpa;

		ret = cma_alloc(s, size, &gpa);
		if (ret == -ENOTRECOVERABLE)
			return ret;
		if (ret) {
			r->cma_failures++;
			r->gpu_failures++;
			continue;
		}
		r->cma_allocs++;
		r->gpu_bytes_got += size;
	}
	return r->cma_failures ? -ENOMEM : 0;
}

/* ---- the guest ---- */

static void add_wl(struct sim_result *r, const struct cvmg_wl_result *w)
{
	r->dma_allocs += w->allocs;
	r->dma_alloc_failures += w->alloc_failures;
	r->maps += w->maps;
	r->map_failures += w->map_failures;
}

static void note_error(struct sim_result *r, int ret)
{
	if (ret && !r->first_error)
		r->first_error = ret;
}

static int phase_stream(struct sim *s)
{
	const struct sim_scenario *sc = s->sc;
	struct cvmg_device_opts o = { .sz = sizeof(o), .name = "bounce" };
	struct cvmg_stats st = { .sz = sizeof(st) };
	uint64_t chunk = sc->stream_chunk ? sc->stream_chunk : 256 * 1024;
	uint64_t total, room = s->lowmem / 2;
	uint32_t dev;
	int ret;

	cvmg_get_stats(s->m, &st);
	total = sc->stream_bytes ? sc->stream_bytes : 2 * st.swiotlb_boot_bytes;
	ret = cvmg_device_add(s->m, &o, &dev);
	for (uint64_t i = 0; !ret && i * chunk < total; i++) {
		/* distinct page-aligned buffers in low RAM; only their
		 * addresses matter to the slot search */
		uint64_t orig = (i * chunk) % room, tlb;

		ret = cvmg_dma_map(s->m, dev, (uint32_t)(i % sc->cpus), orig, chunk, &tlb);
		if (ret == -ENOMEM) {
			s->res->map_failures++;
			ret = 0;
		} else if (!ret) {
			s->res->maps++;
		}
	}
	return ret;
}

static int run_phase(struct sim *s, enum sim_phase p)
{
	const struct sim_scenario *sc = s->sc;
	struct cvmg_wl_result w = { .sz = sizeof(w) };
	int ret = 0, r2;

	switch (p) {
	case SIM_PHASE_DEVICES: {
		struct cvmg_virtio_net_opts net = { .sz = sizeof(net), .queue_pairs = sc->cpus };

		ret = cvmg_wl_virtio_net(s->m, &net, &w);
		add_wl(s->res, &w);
		note_error(s->res, ret);
		if (ret == -ENOTRECOVERABLE)
			return ret;
		r2 = cvmg_wl_virtio_blk(s->m, NULL, &w);
		add_wl(s->res, &w);
		note_error(s->res, r2);
		if (r2 == -ENOTRECOVERABLE)
			return r2;
		ret = cvmg_wl_nvme(s->m, NULL, &w);
		add_wl(s->res, &w);
		break;
	}
	case SIM_PHASE_CHURN: {
		struct cvmg_runtime_opts o = { .sz = sizeof(o), .cycles = sc->churn_cycles };

		ret = cvmg_wl_runtime(s->m, &o, &w);
		add_wl(s->res, &w);
		break;
	}
	case SIM_PHASE_FRAG:
		ret = cvmg_churn(s->m, sc->frag_steps ? sc->frag_steps : 1000000);
		break;
	case SIM_PHASE_GPU: {
		uint64_t total = sc->gpu_total ? sc->gpu_total : 256 * SZ_1M;
		uint64_t chunk = sc->gpu_chunk ? sc->gpu_chunk : SIM_SZ_2M;
		struct cvmg_gpu_opts o = { .sz = sizeof(o),
					   .total_bytes = total,
					   .chunk_bytes = chunk };

		s->res->gpu_bytes_wanted += total;
		if (sc->guest == SIM_GUEST_CMA) {
			ret = cma_gpu(s, total, chunk);
			break;
		}
		ret = cvmg_wl_gpu(s->m, &o, &w);
		add_wl(s->res, &w);
		s->res->gpu_bytes_got += w.alloc_bytes;
		s->res->gpu_failures += w.alloc_failures;
		break;
	}
	case SIM_PHASE_STREAM:
		ret = phase_stream(s);
		break;
	case SIM_PHASE_COUNT:
		ret = -EINVAL;
		break;
	}
	note_error(s->res, ret);
	return ret;
}

static int guest_run(struct sim *s)
{
	const struct sim_scenario *sc = s->sc;
	uint64_t cma =
		sc->cma_bytes ? sc->cma_bytes : (sc->gpu_total ? sc->gpu_total : 256 * SZ_1M);
	struct cvmg_config cfg = {
		.sz = sizeof(cfg),
		.ram_size = sc->ram,
		.cpus = sc->cpus,
		.seed = sc->seed,
		.mode = sc->guest == SIM_GUEST_LEGACY ? CVMG_MODE_LEGACY : CVMG_MODE_RFC,
		.platform = sc->platform,
		.flags = ((sc->guest == SIM_GUEST_LEGACY && sc->swiotlb_dynamic)
				  ? CVMG_F_SWIOTLB_DYNAMIC
				  : 0) |
			 ((sc->guest != SIM_GUEST_LEGACY && sc->enforce_checker)
				  ? CVMG_F_CHECKER_ENFORCE
				  : 0),
		.exit = guest_exit,
		.exit_opaque = s,
		.lowmem_size = s->lowmem,
	};
	int ret;

	if (sc->guest == SIM_GUEST_CMA) {
		cma = (cma + SIM_SZ_2M - 1) & ~(SIM_SZ_2M - 1);
		/* the reservation follows the image, below the firmware in low RAM
		 * (the model's check: image + firmware + 64 MiB must fit) */
		if (KERNEL_AT + KERNEL_SIZE + cma + 64 * SZ_1M + 0x1711000 > s->lowmem)
			return fail(s, -EINVAL,
				    "a %" PRIu64 " MiB CMA-style area does not fit in %" PRIu64
				    " MiB of low RAM (it is placed after the kernel image)",
				    (uint64_t)(cma / SZ_1M), (uint64_t)(s->lowmem / SZ_1M));
		cfg.kernel_size = KERNEL_SIZE + cma;
		s->cma_base = KERNEL_AT + KERNEL_SIZE;
		s->cma_size = cma;
		s->res->cma_reserved_bytes = cma;
		s->cma_ref = calloc(cma / SIM_SZ_2M, sizeof(*s->cma_ref));
		if (!s->cma_ref)
			return fail(s, -ENOMEM, "out of memory");
	}
	ret = cvmg_create(&cfg, &s->m);
	if (ret)
		return fail(s, ret, "cvmg_create: %s (RAM, CPUs or CMA size)", strerror(-ret));
	ret = cvmg_boot(s->m);
	note_error(s->res, ret);
	for (size_t i = 0; !ret && i < sc->nphases && !s->fatal; i++) {
		ret = run_phase(s, sc->phases[i]);
		if (ret != -ENOTRECOVERABLE)
			ret = 0; /* a failed allocation is a result; go on */
	}
	return 0;
}

static void collect(struct sim *s)
{
	struct sim_result *r = s->res;
	struct host_engine *e = &s->eng;
	struct cvmg_stats g = { .sz = sizeof(g) };
	struct attr_recorder_counts rc;

	if (s->m && !cvmg_get_stats(s->m, &g)) {
		r->conversions = g.conversions;
		r->exits = g.exits;
		r->exits_failed = g.exits_failed;
		r->unaligned = g.unaligned;
		memcpy(r->unaligned_by_site, g.unaligned_by_site, sizeof(r->unaligned_by_site));
		r->checker_records = cvmg_checker_records(s->m);
		r->terminated = g.terminated;
		r->swiotlb_boot_start = g.swiotlb_boot_start;
		r->swiotlb_boot_bytes = g.swiotlb_boot_bytes;
		r->swiotlb_growth_attempts = g.swiotlb_growth_attempts;
		r->swiotlb_growth_failures = g.swiotlb_growth_failures;
		r->swiotlb_dyn_pools = g.swiotlb_dyn_pools;
		r->swiotlb_dyn_bytes = g.swiotlb_dyn_bytes;
		r->swiotlb_transient_pools = g.swiotlb_transient_pools;
		r->free_2m_blocks = g.free_2m_blocks;
		r->swiotlb_used_bytes = g.swiotlb_used_slots * 2048; /* IO_TLB_SIZE */
		r->checker_rejected = g.checker_rejected;
		for (unsigned o = 8; o <= CVMG_MAX_ORDER; o++) {
			r->free_dma32_1m += g.free_blocks_zone[1][o] << (o - 8);
			if (o >= 9)
				r->free_dma32_2m += g.free_blocks_zone[1][o] << (o - 9);
		}
	}
	if (s->dry)
		return;
	attr_recorder_get_counts(e->rec, &rc);
	r->attr_calls = rc.calls - r->attr_setup_calls;
	r->attr_refused = rc.refused;
	r->gmem_calls = e->gmem_calls;
	if (e->conv) {
		struct cvmconv_stats st = { .sz = sizeof(st) };

		cvmconv_get_stats(e->conv, &st);
		r->have_lib = true;
		r->punches = st.punches;
		r->punch_failures = st.punch_failures;
		r->rejected = st.rejected;
		r->lib_da = st.double_alloc_bytes;
		r->lib_da_peak = st.double_alloc_peak_bytes;
		r->lib_mixed = st.mixed_extents;
		r->lib_huge_mappable = st.huge_mappable_bytes;
		r->gmem_busy_retries = st.gmem_busy_retries;
		r->gmem_busy_failures = st.gmem_busy_failures;
	} else if (e->ql) {
		struct qemu_like_counts qc;
		struct qemu_like_memory qm;

		qemu_like_get_counts(e->ql, &qc);
		r->punches = qc.discards;
		r->punch_failures = qc.discard_failures;
		if (!qemu_like_measure(e->ql, e->live_shared_pages * SIM_SZ_4K, &qm) &&
		    qm.double_alloc_bytes != host_engine_kernel_da(e))
			fail(s, -EPROTO, "qemu_like_measure disagrees with the engine");
	}
	r->have_kernel = true;
	r->shared_alloc_bytes = host_engine_alloc_bytes(e->shared_fd);
	/* in place the one file is reported once, as the shared side */
	r->private_alloc_bytes = s->inplace_ ? 0 : host_engine_alloc_bytes(e->private_fd);
	r->kernel_da = host_engine_kernel_da(e);
	if (r->kernel_da > r->kernel_da_peak)
		r->kernel_da_peak = r->kernel_da;
	r->guest_bytes = s->ecfg.span;
	r->live_shared_bytes = e->live_shared_pages * SIM_SZ_4K;
	r->mixed_extents = e->mixed;
	r->huge_mappable_bytes = (e->nextents - e->mixed) * SIM_SZ_2M;
	r->vmemmap_lost_bytes = e->mixed * VMEMMAP_LOST_PER_SPLIT;
	r->ept_table_pages = e->mixed;
}

static void teardown(struct sim *s)
{
	cvmg_destroy(s->m);
	if (s->eng_open)
		host_engine_close(&s->eng);
	free(s->touched);
	free(s->cma_ref);
}

static int run(const struct sim_scenario *sc, struct sim_result *res, bool dry, char *why,
	       size_t why_len)
{
	struct sim s = { .sc = sc, .res = res, .dry = dry, .why = why, .why_len = why_len };
	struct timespec t0, t1;
	long free1;

	memset(res, 0, sizeof(*res));
	res->hugepages_used = -1;
	res->kernel_da_hpfree = -1;
	if (why && why_len)
		why[0] = 0;
	s.inplace_ = sc && sc->host == SIM_HOST_INPLACE && !dry;
	s.free0 = -1;
	if (!sc || sc->cpus == 0 || (unsigned)sc->guest >= SIM_GUEST_COUNT ||
	    (unsigned)sc->host >= SIM_HOST_NONE || sc->nphases > SIM_MAX_PHASES)
		return fail(&s, -EINVAL, "bad scenario");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (layout(&s))
		return s.fatal;
	if (dry) {
		uint64_t nextents = s.ecfg.span / SIM_SZ_2M;

		s.touched = calloc((nextents + 63) / 64, sizeof(uint64_t));
		if (!s.touched)
			return fail(&s, -ENOMEM, "out of memory");
		if (sc->populate_all)
			res->touched_hugepages = nextents;
		else
			guest_run(&s);
		collect(&s);
		teardown(&s);
		return s.fatal;
	}
	if (!host_init(&s)) {
		struct attr_recorder_counts rc;

		attr_recorder_get_counts(s.eng.rec, &rc);
		res->attr_setup_calls = rc.calls;
		guest_run(&s);
	}
	if (s.eng.rec) {
		collect(&s);
		free1 = sc->shared_huge && !s.inplace_ ? sim_hugepages_free() : -1;
		if (s.free0 >= 0 && free1 >= 0) {
			res->hugepages_used = s.free0 - free1;
			res->kernel_da_hpfree = res->hugepages_used * (int64_t)SIM_SZ_2M -
						(int64_t)res->live_shared_bytes;
		}
	}
	teardown(&s);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	res->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (!s.fatal && res->attr_refused)
		fail(&s, -EPROTO, "the strict recorder refused %" PRIu64 " attribute updates",
		     res->attr_refused);
	return s.fatal;
}

int sim_run(const struct sim_scenario *sc, struct sim_result *res, char *why, size_t why_len)
{
	if (!res)
		return -EINVAL;
	return run(sc, res, false, why, why_len);
}

int sim_hugepages_needed(const struct sim_scenario *sc, uint64_t *n, char *why, size_t why_len)
{
	struct sim_result r;
	int ret;

	if (!n)
		return -EINVAL;
	ret = run(sc, &r, true, why, why_len);
	*n = r.touched_hugepages;
	return ret;
}
