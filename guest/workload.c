/* SPDX-License-Identifier: MIT */
/*
 * Layer 7, workloads: what drivers allocate and map, with the sizes they
 * use, and the uptime churn between them (cvmg_churn(), churn.c). They drive
 * the public API of the layers below.
 *
 * Rings are split virtqueues (QEMU's default; packed=off): vring_size(num, 64)
 * bytes from dma_alloc_coherent() per queue (drivers/virtio/virtio_ring.c:
 * vring_alloc_queue; virtio_pci_modern passes SMP_CACHE_BYTES). A 256-entry
 * ring is 6726 bytes: an order-1 block with 2 pages converted.
 * virtio-net (drivers/net/virtio_net.c): rx/tx per queue pair plus the
 * 64-entry control queue; every rx ring is filled with mergeable buffers of
 * 1536 bytes carved from 32 KiB page frags (skb_page_frag_refill), each
 * dma-mapped (one 2 KiB slot each) and left posted.
 * virtio-blk (drivers/block/virtio_blk.c): one ring per queue, nothing
 * mapped until I/O.
 * NVMe (drivers/nvme/host/pci.c): min_align_mask 4095 (NVME_CTRL_PAGE_SIZE);
 * admin queue NVME_AQ_DEPTH = 32 (2 KiB SQ, 512 B CQ); two 4 KiB shadow
 * doorbell buffers (QEMU's controller offers DBBUF); IO queues of
 * min(MQES + 1, io_queue_depth = 1024) entries: 64 KiB SQ (64 B entries),
 * 16 KiB CQ (16 B entries); PRP-list dma_pool pages are taken with
 * GFP_ATOMIC from the I/O path (nvme_setup_prps), so legacy serves them from
 * the atomic pool; identify data is bounced (2 x 4 KiB map + unmap).
 * GPU-like: hundreds of MiB of coherent buffers in equal chunks, kept.
 * Runtime: seeded cycles of coherent alloc/free (4 KiB .. 1 MiB, a fifth of
 * them GFP_ATOMIC), streaming maps (64 B .. 256 KiB, random CPU; buffers of
 * 4 KiB and more page aligned, smaller ones at 64-byte offsets) and kernel churn between them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cvmg.h"
#include "util.h"
#include "vring.h"

struct held {
	uint64_t addr, size;
	uint32_t dev;
	bool mapped;
};

struct heldv {
	struct held *v;
	size_t len, cap;
};

static int held_push(struct heldv *h, uint64_t addr, uint64_t size, uint32_t dev, bool mapped)
{
	int ret = grow_array((void **)&h->v, sizeof(*h->v), &h->cap, h->len + 1);

	if (!ret)
		h->v[h->len++] = (struct held){ addr, size, dev, mapped };
	return ret;
}

static int held_release(struct cvmg *m, const struct held *x)
{
	return x->mapped ? cvmg_dma_unmap(m, x->dev, x->addr, x->size)
			 : cvmg_dma_free(m, x->dev, x->addr, x->size);
}

/* Undo a failed probe (newest first). */
static void held_unwind(struct cvmg *m, struct heldv *h)
{
	while (h->len)
		(void)held_release(m, &h->v[--h->len]);
}

static void res_init(struct cvmg_wl_result *r)
{
	if (r) {
		size_t sz = r->sz;

		memset(r, 0, MIN(sz, sizeof(*r)));
		r->sz = sz;
	}
}

static void res_add(struct cvmg_wl_result *r, bool map, int ret, uint64_t bytes)
{
	if (!r || r->sz < sizeof(*r))
		return;
	if (map) {
		if (ret) {
			r->map_failures++;
		} else {
			r->maps++;
			r->map_bytes += bytes;
		}
	} else if (ret) {
		r->alloc_failures++;
	} else {
		r->allocs++;
		r->alloc_bytes += bytes;
	}
}

static int add_dev(struct cvmg *m, const char *name, uint32_t min_align, uint32_t *dev)
{
	struct cvmg_device_opts o = { .sz = sizeof(o), .name = name, .min_align_mask = min_align };

	return cvmg_device_add(m, &o, dev);
}

static int coherent(struct cvmg *m, uint32_t dev, uint64_t size, uint32_t flags, struct heldv *h,
		    struct cvmg_wl_result *res)
{
	uint64_t gpa;
	int ret = cvmg_dma_alloc(m, dev, size, flags, &gpa);

	res_add(res, false, ret, size);
	if (!ret)
		ret = held_push(h, gpa, size, dev, false);
	return ret;
}

static int mapped(struct cvmg *m, uint32_t dev, uint32_t cpu, uint64_t orig, uint64_t size,
		  struct heldv *h, struct cvmg_wl_result *res)
{
	uint64_t tlb;
	int ret = cvmg_dma_map(m, dev, cpu, orig, size, &tlb);

	res_add(res, true, ret, size);
	if (!ret && h)
		ret = held_push(h, tlb, size, dev, true);
	else if (!ret)
		ret = cvmg_dma_unmap(m, dev, tlb, size);
	return ret;
}

static int probe_done(struct cvmg *m, struct heldv *h, int ret)
{
	if (ret && ret != -ENOTRECOVERABLE && !m->mem.terminated)
		held_unwind(m, h);
	free(h->v);
	return m->mem.terminated ? -ENOTRECOVERABLE : ret;
}

int cvmg_wl_virtio_net(struct cvmg *m, const struct cvmg_virtio_net_opts *o,
		       struct cvmg_wl_result *res)
{
	uint32_t qp = o && o->queue_pairs ? o->queue_pairs : 1;
	uint32_t ring = o && o->ring_size ? o->ring_size : 256;
	uint32_t buf = o && o->rx_buf_size ? o->rx_buf_size : 1536;
	struct heldv h = { 0 };
	uint64_t *frags = NULL;
	size_t nfrags = 0, frags_cap = 0;
	uint32_t dev;
	int ret;

	if (!m || !m->booted || (o && o->sz < sizeof(*o)) || buf > 32768 || ring > 32768)
		return -EINVAL;
	res_init(res);
	ret = add_dev(m, "virtio-net", 0, &dev);
	for (uint32_t q = 0; q < qp && !ret; q++) {
		ret = coherent(m, dev, vring_bytes(ring), 0, &h, res); /* rx */
		if (!ret)
			ret = coherent(m, dev, vring_bytes(ring), 0, &h, res); /* tx */
	}
	if (!ret)
		ret = coherent(m, dev, vring_bytes(64), 0, &h, res); /* ctrl */
	/* fill every rx ring: page frags of 32 KiB, buffers mapped one by one */
	for (uint32_t q = 0; q < qp && !ret; q++) {
		uint64_t frag = 0, off = 32768;

		for (uint32_t i = 0; i < ring && !ret; i++) {
			if (off + buf > 32768) {
				uint64_t pfn;

				if (buddy_alloc(&m->mem.buddy, ZONE_NORMAL, ZONE_DMA32, 3, &pfn)) {
					ret = -ENOMEM;
					break;
				}
				ret = grow_array((void **)&frags, sizeof(*frags), &frags_cap,
						 nfrags + 1);
				if (ret) {
					buddy_free(&m->mem.buddy, pfn, 3);
					break;
				}
				frags[nfrags++] = pfn;
				frag = pfn << PAGE_SHIFT;
				off = 0;
			}
			ret = mapped(m, dev, q % m->cfg.cpus, frag + off, buf, &h, res);
			off += buf;
		}
	}
	if (ret && !m->mem.terminated) /* the failed probe frees its rx page frags too */
		for (size_t i = 0; i < nfrags; i++)
			buddy_free(&m->mem.buddy, frags[i], 3);
	free(frags);
	return probe_done(m, &h, ret);
}

int cvmg_wl_virtio_blk(struct cvmg *m, const struct cvmg_virtio_blk_opts *o,
		       struct cvmg_wl_result *res)
{
	uint32_t nq = o && o->queues ? o->queues : (m ? m->cfg.cpus : 1);
	uint32_t ring = o && o->ring_size ? o->ring_size : 256;
	struct heldv h = { 0 };
	uint32_t dev;
	int ret;

	if (!m || !m->booted || (o && o->sz < sizeof(*o)) || ring > 32768)
		return -EINVAL;
	res_init(res);
	ret = add_dev(m, "virtio-blk", 0, &dev);
	for (uint32_t q = 0; q < nq && !ret; q++)
		ret = coherent(m, dev, vring_bytes(ring), 0, &h, res);
	return probe_done(m, &h, ret);
}

int cvmg_wl_nvme(struct cvmg *m, const struct cvmg_nvme_opts *o, struct cvmg_wl_result *res)
{
	uint32_t nq = o && o->io_queues ? o->io_queues : (m ? m->cfg.cpus : 1);
	uint32_t depth = o && o->queue_depth ? o->queue_depth : 1024;
	uint32_t prp = o && o->prp_pages ? o->prp_pages : nq;
	struct heldv h = { 0 };
	uint64_t id_buf = 0;
	uint32_t dev;
	int ret;

	if (!m || !m->booted || (o && o->sz < sizeof(*o)) || depth > 65536)
		return -EINVAL;
	res_init(res);
	ret = add_dev(m, "nvme", 4095, &dev);
	if (!ret)
		ret = coherent(m, dev, 32 * 16, 0, &h, res); /* admin CQ */
	if (!ret)
		ret = coherent(m, dev, 32 * 64, 0, &h, res); /* admin SQ */
	/* identify controller and namespace: kmalloc'ed 4 KiB, bounced */
	if (!ret) {
		uint64_t pfn;

		ret = buddy_alloc(&m->mem.buddy, ZONE_NORMAL, ZONE_DMA32, 0, &pfn);
		id_buf = pfn << PAGE_SHIFT;
		for (int i = 0; i < 2 && !ret; i++)
			ret = mapped(m, dev, 0, id_buf, 4096, NULL, res);
		if (id_buf)
			buddy_free(&m->mem.buddy, pfn, 0);
	}
	if (!ret)
		ret = coherent(m, dev, 4096, 0, &h, res); /* dbbuf_dbs */
	if (!ret)
		ret = coherent(m, dev, 4096, 0, &h, res); /* dbbuf_eis */
	for (uint32_t q = 0; q < nq && !ret; q++) {
		ret = coherent(m, dev, (uint64_t)depth * 16, 0, &h, res);
		if (!ret)
			ret = coherent(m, dev, (uint64_t)depth * 64, 0, &h, res);
	}
	for (uint32_t i = 0; i < prp && !ret; i++) /* "prp list page" dma_pool */
		ret = coherent(m, dev, 4096, CVMG_DMA_ATOMIC, &h, res);
	if (!ret) /* "prp list 256" dma_pool */
		ret = coherent(m, dev, 4096, CVMG_DMA_ATOMIC, &h, res);
	return probe_done(m, &h, ret);
}

int cvmg_wl_gpu(struct cvmg *m, const struct cvmg_gpu_opts *o, struct cvmg_wl_result *res)
{
	uint64_t total = o && o->total_bytes ? o->total_bytes : 256 * SZ_1M;
	uint64_t chunk = o && o->chunk_bytes ? o->chunk_bytes : SZ_2M;
	struct heldv h = { 0 };
	bool failed = false;
	uint32_t dev;
	int ret;

	if (!m || !m->booted || (o && o->sz < sizeof(*o)) || chunk > total)
		return -EINVAL;
	res_init(res);
	ret = add_dev(m, "gpu", 0, &dev);
	for (uint64_t done = 0; done < total && !ret; done += chunk) {
		ret = coherent(m, dev, MIN(chunk, total - done), 0, &h, res);
		if (ret == -ENOMEM) {
			failed = true;
			ret = 0;
		}
	}
	free(h.v); /* the GPU keeps its buffers */
	if (m->mem.terminated)
		return -ENOTRECOVERABLE;
	return ret ? ret : failed ? -ENOMEM : 0;
}

int cvmg_churn(struct cvmg *m, uint64_t steps)
{
	if (!m || !m->booted)
		return -EINVAL;
	if (m->mem.terminated)
		return -ENOTRECOVERABLE;
	return churn_run(&m->churn, &m->mem.buddy, &m->rng, m->cfg.churn_fill_pct, steps);
}

static const uint64_t rt_alloc_sizes[] = { 4096, 8192, 16384, 65536, 131072, 262144, 1048576 };
static const uint64_t rt_map_sizes[] = { 64, 1536, 4096, 16384, 65536, 262144 };

int cvmg_wl_runtime(struct cvmg *m, const struct cvmg_runtime_opts *o, struct cvmg_wl_result *res)
{
	uint64_t cycles = o && o->cycles ? o->cycles : 10000;
	uint32_t churn = o && o->churn_per_cycle ? o->churn_per_cycle : 4;
	uint32_t max = o && o->max_inflight ? o->max_inflight : 64;
	struct heldv coh = { 0 }, map = { 0 };
	uint32_t dev;
	int ret;

	if (!m || !m->booted || (o && o->sz < sizeof(*o)))
		return -EINVAL;
	res_init(res);
	ret = add_dev(m, "runtime", 0, &dev);
	for (uint64_t c = 0; c < cycles && !ret; c++) {
		uint64_t r = rng_below(&m->rng, 100);

		if (r < 15 && coh.len < max) {
			uint64_t size = rt_alloc_sizes[rng_below(&m->rng, 7)];
			uint32_t fl = rng_below(&m->rng, 5) ? 0 : CVMG_DMA_ATOMIC;

			ret = coherent(m, dev, size, fl, &coh, res);
			if (ret == -ENOMEM)
				ret = 0;
		} else if (r < 30 && coh.len) {
			uint64_t i = rng_below(&m->rng, coh.len);
			struct held x = coh.v[i];

			coh.v[i] = coh.v[--coh.len];
			ret = held_release(m, &x);
		} else if (r < 80 && map.len < max) {
			uint64_t size = rt_map_sizes[rng_below(&m->rng, 6)];
			uint64_t pages = m->mem.layout.lowmem >> PAGE_SHIFT;
			/* block I/O buffers are pages; packets sit at 64-byte offsets */
			uint64_t orig = (rng_below(&m->rng, pages - 64) << PAGE_SHIFT) +
					(size >= PAGE_SZ ? 0 : rng_below(&m->rng, 64) << 6);
			uint32_t cpu = (uint32_t)rng_below(&m->rng, m->cfg.cpus);

			ret = mapped(m, dev, cpu, orig, size, &map, res);
			if (ret == -ENOMEM)
				ret = 0;
		} else if (map.len) {
			uint64_t i = rng_below(&m->rng, map.len);
			struct held x = map.v[i];

			map.v[i] = map.v[--map.len];
			ret = held_release(m, &x);
		}
		if (ret && ret != -ENOTRECOVERABLE)
			ret = 0; /* a failed allocation, map or leaked free is counted, not fatal */
		if (!ret)
			ret = cvmg_churn(m, churn);
	}
	if (!m->mem.terminated) {
		held_unwind(m, &map);
		held_unwind(m, &coh);
	}
	free(coh.v);
	free(map.v);
	if (m->mem.terminated)
		return -ENOTRECOVERABLE;
	return ret == -ENOMEM ? 0 : ret;
}
