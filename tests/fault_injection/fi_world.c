/* SPDX-License-Identifier: MIT */
/* Fault injection: the world (a context, two adjacent regions over real
 * memfds, a model), its checks, and requests through each entry point. */
#include "fi.h"

/* ---- the world: a context, two adjacent regions, a model ---- */

static int w_attr(void *opaque, uint64_t gpa, uint64_t size, uint64_t attrs)
{
	struct world *w = opaque;
	int err = sched_next(&w->s[FAKE_CALL_ATTR]), ret;

	if (err)
		return -err;
	alloc.in_fake++;
	ret = fake_kvm_ops.set_memory_attributes(&w->fake, gpa, size, attrs);
	alloc.in_fake--;
	return ret;
}

static int w_punch(void *opaque, int fd, uint64_t off, uint64_t len)
{
	struct world *w = opaque;
	int err;

	/* the oracle sees every attempt, also those made to fail */
	fake_kvm_live_in_punch(&w->fake, fd, NULL, off, len);
	err = sched_next(&w->s[FAKE_CALL_PUNCH]);
	return err ? -err : fake_kvm_ops.punch(&w->fake, fd, off, len);
}

static int w_discard(void *opaque, void *hva, uint64_t len)
{
	struct world *w = opaque;
	int err;

	fake_kvm_live_in_punch(&w->fake, -1, hva, 0, len);
	err = sched_next(&w->s[FAKE_CALL_DISCARD]);
	return err ? -err : fake_kvm_ops.discard_hva(&w->fake, hva, len);
}

static int w_gmem(void *opaque, int fd, uint64_t offset, uint64_t size, uint64_t attrs,
		  uint64_t flags, uint64_t *error_offset)
{
	struct world *w = opaque;
	int err = sched_next(&w->s[FAKE_CALL_GMEM]), ret;

	if (err) {
		if (err == EAGAIN)
			*error_offset = offset; /* the first page, as the kernel would */
		return -err;
	}
	alloc.in_fake++;
	ret = fake_kvm_ops.set_gmem_attributes(&w->fake, fd, offset, size, attrs, flags,
					       error_offset);
	alloc.in_fake--;
	return ret;
}

static const struct cvmconv_ops w_ops = { w_attr, w_punch, w_discard, w_gmem };

static int l_before(void *opaque, uint64_t gpa, uint64_t size, bool to_private)
{
	struct world *w = opaque;

	(void)gpa;
	(void)size;
	(void)to_private;
	w->befores++;
	return 0;
}

static void l_after(void *opaque, uint64_t gpa, uint64_t size, bool to_private, int result)
{
	struct world *w = opaque;

	(void)gpa;
	(void)size;
	(void)to_private;
	if (result == 0)
		w->afters_ok++;
	else
		w->afters_cancel++;
}

uint8_t *side_map(struct wregion *r, bool private_side)
{
	return private_side ? r->private_map : r->shared_map;
}

/* Pattern of page @p on a side: fixture pattern, seed = region, side. */
uint32_t seed_of(unsigned ri, bool private_side)
{
	return 0x100 + ri * 2 + private_side;
}

static void write_live(struct world *w, unsigned ri, uint64_t p)
{
	struct wregion *r = &w->r[ri];
	bool priv = r->priv[p];

	pattern_fill(side_map(r, priv), p, 1, seed_of(ri, priv));
	r->written[priv][p] = true;
}

int memfd_of(uint64_t size, bool huge)
{
	int fd = memfd_create("fi", MFD_CLOEXEC | (huge ? MFD_HUGETLB : 0));

	if (fd >= 0 && ftruncate(fd, (off_t)size) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

void *map_whole(int fd, uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

/* The context (fake ops with injection, or the default kernel ops through
 * the wrapped libc calls) with a listener. */
void world_ctx(struct world *w, bool default_ops)
{
	struct cvmconv_config cfg;
	struct cvmconv_listener l = { sizeof(l), l_before, l_after, NULL, 0 };

	fake_kvm_init(&w->fake, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&w->fake, CVMCONV_UNALIGNED_ALLOW);
	w->default_ops = default_ops;
	if (default_ops) {
		cfg.ops = NULL;
		cfg.ops_opaque = NULL;
		cfg.vm_fd = kern.vm_fd;
		kern.fake = &w->fake;
	} else {
		cfg.ops = &w_ops;
		cfg.ops_opaque = w;
	}
	assert_int_equal(cvmconv_create(&cfg, &w->c), 0);
	l.opaque = w;
	assert_true(cvmconv_add_listener(w->c, &l) >= 0);
}

/* Region @ri at BASE + ri * RSIZE; the guest wrote every page (shared). */
/* CVMCONV_REGION_* flags of the regions world_region() adds (reset by
 * world_get()). */
uint32_t next_region_flags;

void world_region(struct world *w, enum backing kind)
{
	unsigned ri = w->nreg;
	struct wregion *r = &w->r[ri];
	struct cvmconv_region reg = { .sz = sizeof(reg),
				      .unaligned = -1,
				      .flags = next_region_flags };

	memset(r, 0, sizeof(*r));
	r->gpa = BASE + ri * RSIZE;
	r->kind = kind;
	r->shared_size = RSIZE;
	if (kind == B_INPLACE) {
		assert_int_equal(fake_gmem_init(&r->gmem, RSIZE,
						CVMCONV_CONTENT_ZERO | CVMCONV_CONTENT_PRESERVE),
				 0);
		fake_kvm_attach_gmem(&w->fake, &r->gmem);
		if (w->default_ops)
			kern.gmem = &r->gmem;
		r->shared_fd = -1;
		r->private_fd = r->gmem.fd;
		r->shared_map = r->private_map = r->gmem.map;
		reg.flags |= CVMCONV_REGION_INPLACE;
		reg.content_mode = CVMCONV_CONTENT_PRESERVE;
		reg.gpa = r->gpa;
		reg.size = RSIZE;
		reg.private_fd = r->private_fd;
		reg.shared_fd = -1;
		reg.shared_hva = r->shared_map;
		assert_int_equal(fake_kvm_add_region(&w->fake, w->c, &reg), 0);
		w->nreg++;
		for (uint64_t p = 0; p < RPAGES; p++)
			write_live(w, ri, p);
		return;
	}
	if (kind == B_ANON) {
		r->shared_fd = -1;
		r->shared_map = mmap(NULL, RSIZE, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		assert_true(r->shared_map != MAP_FAILED);
	} else {
		r->shared_fd = memfd_of(RSIZE, kind == B_HUGE);
		assert_true(r->shared_fd >= 0);
		r->shared_map = map_whole(r->shared_fd, RSIZE);
	}
	r->private_fd = test_private_fd(RSIZE); /* guest_memfd where the host has it */
	assert_true(r->private_fd >= 0);
	r->private_map = map_whole(r->private_fd, RSIZE);
	reg.gpa = r->gpa;
	reg.size = RSIZE;
	reg.private_fd = r->private_fd;
	reg.shared_fd = kind == B_HVA ? -1 : r->shared_fd;
	reg.shared_hva = kind == B_HVA || kind == B_ANON ? r->shared_map : NULL;
	assert_int_equal(fake_kvm_add_region(&w->fake, w->c, &reg), 0);
	w->nreg++;
	for (uint64_t p = 0; p < RPAGES; p++)
		write_live(w, ri, p);
}

/* Worlds live in a static pool, not on a test's stack: a failed assertion
 * leaves the test with longjmp, and the per-test teardown then frees what
 * it left behind. */
static struct world worlds[NWORLDS];
static bool world_used[NWORLDS];

struct world *world_get(void)
{
	for (unsigned i = 0; i < NWORLDS; i++)
		if (!world_used[i]) {
			world_used[i] = true;
			memset(&worlds[i], 0, sizeof(worlds[i]));
			next_region_flags = 0;
			return &worlds[i];
		}
	fail_msg("out of worlds");
	return NULL;
}

void world_free(struct world *w)
{
	cvmconv_destroy(w->c);
	for (unsigned i = 0; i < w->nreg; i++) {
		if (w->r[i].kind == B_INPLACE) {
			if (kern.gmem == &w->r[i].gmem)
				kern.gmem = NULL;
			fake_gmem_fini(&w->r[i].gmem);
			continue;
		}
		munmap(w->r[i].shared_map, w->r[i].shared_size);
		munmap(w->r[i].private_map, RSIZE);
		if (w->r[i].shared_fd >= 0)
			close(w->r[i].shared_fd);
		close(w->r[i].private_fd);
	}
	fake_kvm_fini(&w->fake);
	if (w->reserved)
		hugepages_release();
	memset(w, 0, sizeof(*w));
	world_used[w - worlds] = false;
}

int teardown_worlds(void **state)
{
	(void)state;
	alloc_disarm();
	memset(kern.s, 0, sizeof(kern.s));
	kern.armed = false;
	for (unsigned i = 0; i < NWORLDS; i++)
		if (world_used[i])
			world_free(&worlds[i]);
	return 0;
}

struct cvmconv_stats stats(struct world *w)
{
	struct cvmconv_stats st;

	memset(&st, 0, sizeof(st));
	st.sz = sizeof(st);
	assert_int_equal(cvmconv_get_stats(w->c, &st), 0);
	return st;
}

void model_set(struct world *w, uint64_t gpa, uint64_t size, bool private_)
{
	for (uint64_t a = gpa; a < gpa + size; a += SZ_4K) {
		unsigned ri = (unsigned)((a - BASE) / RSIZE);
		uint64_t p = (a - w->r[ri].gpa) / SZ_4K;

		/* a side that becomes live holds nothing of the guest's yet */
		if (w->r[ri].priv[p] != private_)
			w->r[ri].written[private_][p] = false;
		w->r[ri].priv[p] = private_;
	}
}

/* After a successful conversion: the guest writes the pages it now owns
 * on their new live side. */
void write_converted(struct world *w, uint64_t gpa, uint64_t size)
{
	for (uint64_t a = gpa; a < gpa + size; a += SZ_4K) {
		unsigned ri = (unsigned)((a - BASE) / RSIZE);

		write_live(w, ri, (a - w->r[ri].gpa) / SZ_4K);
	}
}

/* Library == fake kernel == model; the live side of every page holds its
 * pattern. */
void check_world(struct world *w)
{
	for (unsigned ri = 0; ri < w->nreg; ri++) {
		struct wregion *r = &w->r[ri];

		for (uint64_t p = 0; p < RPAGES; p++) {
			uint64_t gpa = r->gpa + p * SZ_4K;
			bool priv = r->priv[p];

			if (cvmconv_is_private(w->c, gpa) != priv ||
			    fake_kvm_is_private(&w->fake, gpa) != priv)
				fail_msg("R%u page %llu: library %d fake %d model %d", ri,
					 (unsigned long long)p, cvmconv_is_private(w->c, gpa),
					 fake_kvm_is_private(&w->fake, gpa), priv);
			if (r->written[priv][p] &&
			    !pattern_check(side_map(r, priv), p, seed_of(ri, priv)))
				fail_msg("R%u page %llu: live %s side lost its data", ri,
					 (unsigned long long)p, priv ? "private" : "shared");
		}
	}
}

/* Resident pages of an anonymous mapping (mincore): what it holds. */
static uint64_t resident_bytes(void *map, uint64_t size)
{
	unsigned char vec[RPAGES];
	uint64_t n = 0;

	assert_int_equal(mincore(map, size, vec), 0);
	for (uint64_t i = 0; i < size / SZ_4K; i++)
		n += vec[i] & 1;
	return n * SZ_4K;
}

/* Kernel allocation of the 4 KiB sides == their live pages (+ @extra). */
void check_allocation(struct world *w, uint64_t extra)
{
	uint64_t want = 0, got = 0;

	for (unsigned ri = 0; ri < w->nreg; ri++) {
		struct wregion *r = &w->r[ri];

		/* every live page was written; a hugetlb side is checked by
		 * test_punch_huge in whole huge pages */
		for (uint64_t p = 0; p < RPAGES; p++)
			want += r->priv[p] || r->kind != B_HUGE ? SZ_4K : 0;
		got += fd_allocated_bytes(r->private_fd);
		if (r->kind == B_INPLACE)
			continue; /* one file: every page once */
		if (r->kind == B_ANON)
			got += resident_bytes(r->shared_map, RSIZE);
		else if (r->kind != B_HUGE)
			got += fd_allocated_bytes(r->shared_fd);
	}
	assert_int_equal(got, want + extra);
}

/* cvmconv_flush() recovers: 0, nothing pending, allocation == live. */
void check_flush_recovers(struct world *w)
{
	struct cvmconv_stats st;

	assert_int_equal(cvmconv_flush(w->c), 0);
	st = stats(w);
	assert_int_equal(st.punch_pending_bytes, 0);
	check_allocation(w, 0);
	check_world(w);
}

/* ---- requests through each entry point ---- */

/* Ask for [gpa, gpa + size) to become @to_private through @e. Returns the
 * VMM's return value (handle_exit's 1 mapped to 0); *hc the guest's code
 * (0 where the entry has none). */
int request(struct world *w, enum entry e, uint64_t gpa, uint64_t size, bool to_private,
	    uint64_t *hc)
{
	struct kvm_run run;
	struct cvmconv_range rg[2];
	int ret;

	*hc = 0;
	switch (e) {
	case E_MAP:
		*hc = 0xdead;
		return cvmconv_map_gpa_range(w->c, gpa, size / SZ_4K,
					     to_private ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0, hc);
	case E_RUN:
		memset(&run, 0, sizeof(run));
		run.exit_reason = KVM_EXIT_HYPERCALL;
		run.hypercall.nr = KVM_HC_MAP_GPA_RANGE;
		run.hypercall.args[0] = gpa;
		run.hypercall.args[1] = size / SZ_4K;
		run.hypercall.args[2] = to_private ? CVMCONV_MAP_GPA_RANGE_ENCRYPTED : 0;
		run.hypercall.ret = 0xdead;
		ret = cvmconv_handle_exit(w->c, &run);
		*hc = run.hypercall.ret;
		return ret == 1 ? 0 : ret;
	case E_FAULT: {
		struct cvmconv_kvm_memory_fault *mf;

		memset(&run, 0, sizeof(run));
		run.exit_reason = KVM_EXIT_MEMORY_FAULT;
		mf = cvmconv_run_memory_fault(&run);
		mf->gpa = gpa;
		mf->size = size;
		mf->flags = to_private ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0;
		ret = cvmconv_handle_exit(w->c, &run);
		return ret == 1 ? 0 : ret;
	}
	case E_CONVERT:
		return cvmconv_convert(w->c, gpa, size, to_private);
	case E_BATCH_GUEST:
	case E_BATCH_HOST:
		/* two adjacent halves: the batch merges them */
		rg[0] = (struct cvmconv_range){ gpa, size / 2, to_private, 0 };
		rg[1] = (struct cvmconv_range){ gpa + size / 2, size - size / 2, to_private, 0 };
		if (e == E_BATCH_GUEST)
			*hc = 0xdead;
		return cvmconv_convert_batch(w->c, rg, size >= 2 * SZ_4K ? 2 : 1,
					     e == E_BATCH_GUEST ? CVMCONV_BATCH_GUEST : 0,
					     e == E_BATCH_GUEST ? hc : NULL);
	default:
		fail();
	}
	return 0;
}

bool entry_has_hc(enum entry e)
{
	return e == E_MAP || e == E_RUN || e == E_BATCH_GUEST;
}
