/* SPDX-License-Identifier: MIT */
/* Exit streams for the benchmarks: the guest model's and synthetic ones. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "perf.h"

#define Q35_HIGHMEM_FROM 0xb0000000ULL /* 2 GiB of low RAM from 2.75 GiB of RAM on */
#define SZ_4G (4ULL << 30)

const char *perf_workload_name(enum perf_workload w)
{
	static const char *const n[PERF_WL_COUNT] = { "boot", "devices", "churn", "gpu" };

	return (unsigned)w < PERF_WL_COUNT ? n[w] : "?";
}

int perf_stream_init(struct perf_stream *s, const char *name, uint64_t ram)
{
	uint64_t lowmem;

	memset(s, 0, sizeof(*s));
	if (ram < (256ULL << 20) || ram % PERF_2M)
		return -EINVAL;
	snprintf(s->name, sizeof(s->name), "%s", name);
	/* the guest model's default low RAM (cvmg_config.lowmem_size) */
	lowmem = ram >= Q35_HIGHMEM_FROM ? 2 * PERF_1G : ram;
	s->reg[0] = (struct perf_region){ 0, lowmem, 0 };
	s->nreg = 1;
	if (ram > lowmem)
		s->reg[s->nreg++] = (struct perf_region){ SZ_4G, ram - lowmem, lowmem };
	s->span = ram;
	return 0;
}

void perf_stream_free(struct perf_stream *s)
{
	free(s->exits);
	free(s->ranges);
	memset(s, 0, sizeof(*s));
}

int perf_grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t n = *cap ? *cap : 1024;
	void *q;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	q = realloc(*p, n * elem);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

static int add_exit(struct perf_stream *s, struct perf_exit e)
{
	if (s->error)
		return s->error;
	if (perf_grow((void **)&s->exits, &s->exits_cap, s->nexits + 1, sizeof(e)))
		return s->error = -ENOMEM;
	s->exits[s->nexits++] = e;
	return 0;
}

int perf_stream_add_map(struct perf_stream *s, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	return add_exit(s, (struct perf_exit){ gpa, npages, (uint32_t)attrs, PERF_EXIT_MAP });
}

int perf_stream_add_batch(struct perf_stream *s, const struct cvmconv_range *r, size_t n)
{
	size_t first = s->nranges;

	if (s->error)
		return s->error;
	if (perf_grow((void **)&s->ranges, &s->ranges_cap, s->nranges + n, sizeof(*r)))
		return s->error = -ENOMEM;
	memcpy(s->ranges + first, r, n * sizeof(*r));
	s->nranges += n;
	return add_exit(s, (struct perf_exit){ first, n, 0, PERF_EXIT_BATCH });
}

void perf_stream_mark(struct perf_stream *s, const char *label)
{
	if (s->nmarks < PERF_MAX_MARKS)
		s->marks[s->nmarks++] = (struct perf_mark){ s->nexits, label };
}

bool perf_stream_offset(const struct perf_stream *s, uint64_t gpa, uint64_t *off, uint64_t *left)
{
	for (int i = 0; i < s->nreg; i++) {
		if (gpa >= s->reg[i].gpa && gpa - s->reg[i].gpa < s->reg[i].size) {
			*off = s->reg[i].off + (gpa - s->reg[i].gpa);
			*left = s->reg[i].size - (gpa - s->reg[i].gpa);
			return true;
		}
	}
	return false;
}

/* snp_begin_psc() (arch/x86/kvm/svm/sev.c) hands the VMM one hypercall per
 * run of entries that are contiguous and have the same operation and page
 * size, npages in 4 KiB units, the 2M hint on 2 MiB entries. */
int perf_stream_batch_as_hypercalls(const struct perf_stream *s, const struct perf_exit *e,
				    int (*fn)(void *opaque, uint64_t gpa, uint64_t npages,
					      uint64_t attrs),
				    void *opaque)
{
	const struct cvmconv_range *r = s->ranges + e->a;

	for (size_t i = 0; i < e->b;) {
		uint64_t gpa = r[i].gpa, size = r[i].size, unit = r[i].size;
		size_t j = i + 1;
		int ret;

		while (j < e->b && r[j].gpa == gpa + size && r[j].to_private == r[i].to_private &&
		       r[j].size == unit) {
			size += r[j].size;
			j++;
		}
		ret = fn(opaque, gpa, size / PERF_4K,
			 (r[i].to_private ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0) |
				 (unit == PERF_2M ? CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M : 0));
		if (ret)
			return ret;
		i = j;
	}
	return 0;
}

/* ---- the guest model ---- */

static int record_exit(void *opaque, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	/* every host answers 0 for a valid request: the guest goes on */
	perf_stream_add_map(opaque, gpa, npages, attrs);
	return 0;
}

static int model(struct perf_stream *s, enum cvmg_platform platform, uint32_t cpus, struct cvmg **m)
{
	struct cvmg_config cfg = {
		.sz = sizeof(cfg),
		.ram_size = s->span,
		.cpus = cpus,
		.seed = 1,
		.mode = CVMG_MODE_LEGACY,
		.platform = platform,
		.exit = record_exit,
		.exit_opaque = s,
		.lowmem_size = s->reg[0].size,
	};

	return cvmg_create(&cfg, m);
}

/* A workload's -ENOMEM is a result (the driver's probe failed); only a
 * terminated guest ends the stream early. */
static int wl_ok(int ret)
{
	return ret == -ENOTRECOVERABLE ? ret : 0;
}

int perf_gen_guest(struct perf_stream *s, enum cvmg_platform platform, enum perf_workload w,
		   uint32_t cpus, uint64_t churn_cycles)
{
	struct cvmg *m;
	int ret = model(s, platform, cpus, &m);

	if (ret)
		return ret;
	snprintf(s->shape, sizeof(s->shape), "guest model, %s, %s, %u CPUs, %llu GiB",
		 cvmg_platform_name(platform), perf_workload_name(w), cpus,
		 (unsigned long long)(s->span >> 30));
	ret = cvmg_boot(m);
	perf_stream_mark(s, "boot");
	if (!ret && w != PERF_WL_BOOT) {
		struct cvmg_virtio_net_opts net = { .sz = sizeof(net), .queue_pairs = cpus };

		ret = wl_ok(cvmg_wl_virtio_net(m, &net, NULL));
		if (!ret)
			ret = wl_ok(cvmg_wl_virtio_blk(m, NULL, NULL));
		if (!ret)
			ret = wl_ok(cvmg_wl_nvme(m, NULL, NULL));
		perf_stream_mark(s, "devices");
	}
	if (!ret && w == PERF_WL_CHURN) {
		struct cvmg_runtime_opts o = { .sz = sizeof(o), .cycles = churn_cycles };

		ret = wl_ok(cvmg_wl_runtime(m, &o, NULL));
		perf_stream_mark(s, "churn");
	}
	if (!ret && w == PERF_WL_GPU) {
		struct cvmg_gpu_opts o = { .sz = sizeof(o),
					   .total_bytes = 256ULL << 20,
					   .chunk_bytes = PERF_2M };

		ret = wl_ok(cvmg_wl_gpu(m, &o, NULL));
		perf_stream_mark(s, "gpu");
	}
	cvmg_destroy(m);
	return ret ? ret : s->error;
}

int perf_gen_tdx_mapgpa(struct perf_stream *s, uint64_t gpa, uint64_t size)
{
	struct cvmg *m;
	int ret = model(s, CVMG_PLATFORM_TDX, 1, &m);

	if (ret)
		return ret;
	snprintf(s->shape, sizeof(s->shape),
		 "TDX MapGPA %llu MiB at 0x%llx to shared and back, 2 MiB chunks",
		 (unsigned long long)(size >> 20), (unsigned long long)gpa);
	/* before boot the model's direct map knows only the RAM layout: the
	 * call goes straight to the platform's exit shaping */
	ret = cvmg_set_memory_decrypted(m, gpa, size / PERF_4K);
	perf_stream_mark(s, "to shared");
	if (!ret)
		ret = cvmg_set_memory_encrypted(m, gpa, size / PERF_4K);
	cvmg_destroy(m);
	return ret ? ret : s->error;
}

/* ---- synthetic ---- */

static uint64_t next_rand(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL); /* splitmix64 */

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

int perf_gen_random_4k(struct perf_stream *s, uint64_t gpa, uint64_t window, uint64_t n,
		       uint64_t seed)
{
	uint64_t pages = window / PERF_4K, x = seed;
	uint8_t *shared = calloc(pages, 1); /* the window starts private */

	if (!shared)
		return -ENOMEM;
	snprintf(s->shape, sizeof(s->shape), "%llu random 4 KiB toggles in %llu MiB at 0x%llx",
		 (unsigned long long)n, (unsigned long long)(window >> 20),
		 (unsigned long long)gpa);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t p = next_rand(&x) % pages;

		shared[p] ^= 1;
		perf_stream_add_map(s, gpa + p * PERF_4K, 1,
				    shared[p] ? 0 : CVMCONV_MAP_GPA_RANGE_ENCRYPTED);
	}
	free(shared);
	return s->error;
}

static int by_gpa(const void *a, const void *b)
{
	const struct cvmconv_range *x = a, *y = b;

	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

int perf_gen_psc(struct perf_stream *s, uint64_t gpa, uint64_t window, uint64_t n, unsigned entries,
		 uint64_t seed)
{
	uint64_t next = window / PERF_2M, x = seed;
	uint64_t n2m = entries / 4 < next / 2 ? entries / 4 : next / 2;
	uint64_t *ext = malloc(next * sizeof(*ext));
	uint8_t *used = malloc(window / PERF_4K);
	struct cvmconv_range *r = malloc(entries * sizeof(*r));
	int ret = 0;

	if (!ext || !used || !r || next < 2) {
		ret = next < 2 ? -EINVAL : -ENOMEM;
		goto out;
	}
	snprintf(s->shape, sizeof(s->shape),
		 "%llu SNP PSCs of %u entries (%llu x 2M, rest 4K) in %llu MiB, random ops",
		 (unsigned long long)n, entries, (unsigned long long)n2m,
		 (unsigned long long)(window >> 20));
	for (uint64_t b = 0; b < n; b++) {
		unsigned k = 0;

		/* a random order of the extents: the first n2m get 2M entries,
		 * 4K entries land in the others */
		for (uint64_t i = 0; i < next; i++)
			ext[i] = i;
		for (uint64_t i = next - 1; i > 0; i--) {
			uint64_t j = next_rand(&x) % (i + 1), t = ext[i];

			ext[i] = ext[j];
			ext[j] = t;
		}
		memset(used, 0, window / PERF_4K);
		for (; k < n2m; k++)
			r[k] = (struct cvmconv_range){ gpa + ext[k] * PERF_2M, PERF_2M,
						       (uint32_t)(next_rand(&x) & 1), 0 };
		while (k < entries) {
			uint64_t e = ext[n2m + next_rand(&x) % (next - n2m)];
			uint64_t p = e * 512 + next_rand(&x) % 512;

			if (used[p])
				continue;
			used[p] = 1;
			r[k++] = (struct cvmconv_range){ gpa + p * PERF_4K, PERF_4K,
							 (uint32_t)(next_rand(&x) & 1), 0 };
		}
		qsort(r, entries, sizeof(*r), by_gpa);
		perf_stream_add_batch(s, r, entries);
	}
	ret = s->error;
out:
	free(ext);
	free(used);
	free(r);
	return ret;
}
