/* SPDX-License-Identifier: MIT */
/* The environment the test_api_*.c suites share: one context on the strict
 * fake KVM (tests/fake_kvm.c) with small shmem memfds as backings, a log
 * capture, snapshots of both views, and the request helpers. */
#include "api_env.h"
#include "conv_util.h"

/* ---- log capture ---- */

static void log_capture_cb(void *opaque, int level, const char *msg)
{
	struct log_capture *l = opaque;

	if (l->lines < LOG_KEEP) {
		snprintf(l->msg[l->lines], sizeof(l->msg[0]), "%s", msg);
		l->level[l->lines] = level;
	}
	if (level >= 0 && level < 8)
		l->by_level[level]++;
	l->lines++;
}

/* Lines kept that contain @needle (case-insensitive) at a level <= @max_level. */
unsigned log_count_matching(const struct log_capture *l, const char *needle, int max_level)
{
	unsigned n = 0;

	for (unsigned i = 0; i < l->lines && i < LOG_KEEP; i++)
		if (l->level[i] <= max_level && strcasestr(l->msg[i], needle))
			n++;
	return n;
}

/* ---- test environment: one context on one fake VM ---- */

struct cvmconv_config env_config(struct env *e, enum cvmconv_unaligned policy, uint64_t granule)
{
	struct cvmconv_config cfg = fake_kvm_config(&e->f, policy);

	cfg.granule = granule;
	cfg.log = log_capture_cb;
	cfg.log_opaque = &e->log;
	return cfg;
}

void env_init_granule(struct env *e, enum cvmconv_unaligned policy, uint64_t granule)
{
	struct cvmconv_config cfg;

	memset(e, 0, sizeof(*e));
	fake_kvm_init(&e->f, FAKE_VM_SW_PROTECTED);
	cfg = env_config(e, policy, granule);
	assert_int_equal(cvmconv_create(&cfg, &e->c), 0);
	assert_non_null(e->c);
}

void env_init(struct env *e, enum cvmconv_unaligned policy)
{
	env_init_granule(e, policy, 0);
}

int shmem_fd(uint64_t size)
{
	int fd = memfd_create("cvmconv-test", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	return fd;
}

/* conv_util.h's region descriptor, with @flags and @unaligned */
struct cvmconv_region env_region_desc(uint64_t gpa, uint64_t size, int fd_private, int fd_shared,
				      uint32_t flags, int unaligned)
{
	struct cvmconv_region r = region_desc(gpa, size, fd_private, fd_shared, NULL);

	r.flags = flags;
	r.unaligned = unaligned;
	return r;
}

/* Region backed by two shmem memfds (the private one stands in for a
 * guest_memfd); @with_fds false: no backing at all. */
int env_add_region(struct env *e, uint64_t gpa, uint64_t size, uint32_t flags, int unaligned,
		   bool with_fds)
{
	int fdp = with_fds ? shmem_fd(size) : -1;
	int fds = with_fds ? shmem_fd(size) : -1;
	/* without backings: attribute tracking only */
	struct cvmconv_region r = env_region_desc(
		gpa, size, fdp, fds, flags | (with_fds ? 0 : CVMCONV_REGION_ATTRS_ONLY), unaligned);
	int ret = cvmconv_add_region(e->c, &r);

	if (ret == 0) {
		assert_true(e->nreg < MAX_REGIONS);
		e->reg[e->nreg].gpa = gpa;
		e->reg[e->nreg].size = size;
		e->reg[e->nreg].fd_private = fdp;
		e->reg[e->nreg].fd_shared = fds;
		e->nreg++;
	} else {
		if (fdp >= 0)
			close(fdp);
		if (fds >= 0)
			close(fds);
	}
	return ret;
}

void env_add(struct env *e, uint64_t gpa, uint64_t size)
{
	assert_int_equal(env_add_region(e, gpa, size, 0, -1, true), 0);
}

/* The fake's attribute map equals the library's view in every region. */
void env_check(struct env *e)
{
	for (unsigned i = 0; i < e->nreg; i++)
		assert_int_equal(fake_kvm_mismatches(&e->f, e->c, e->reg[i].gpa, e->reg[i].size),
				 0);
}

void env_fini(struct env *e)
{
	cvmconv_destroy(e->c);
	for (unsigned i = 0; i < e->nreg; i++) {
		close(e->reg[i].fd_private);
		close(e->reg[i].fd_shared);
	}
	fake_kvm_fini(&e->f);
}

struct cvmconv_stats stats(struct env *e)
{
	struct cvmconv_stats st;

	memset(&st, 0, sizeof(st));
	st.sz = sizeof(st);
	assert_int_equal(cvmconv_get_stats(e->c, &st), 0);
	return st;
}

uint64_t attr_calls(struct env *e)
{
	return e->f.calls[FAKE_CALL_ATTR];
}

const struct fake_attr_call *last_attr_call(struct env *e, unsigned back)
{
	assert_true(e->f.nlog > back);
	return &e->f.log[e->f.nlog - 1 - back];
}

void assert_attr_call(const struct fake_attr_call *a, uint64_t gpa, uint64_t size,
		      uint64_t attributes)
{
	assert_int_equal(a->gpa, gpa);
	assert_int_equal(a->size, size);
	assert_int_equal(a->attributes, attributes);
}

void snapshot_take(struct env *e, struct snapshot *s)
{
	uint64_t n = 0, k = 0;

	for (unsigned i = 0; i < e->nreg; i++)
		n += e->reg[i].size / SZ_4K;
	s->npages = n;
	s->lib = malloc(n ? n : 1);
	assert_non_null(s->lib);
	for (unsigned i = 0; i < e->nreg; i++)
		for (uint64_t g = e->reg[i].gpa; g < e->reg[i].gpa + e->reg[i].size; g += SZ_4K)
			s->lib[k++] = (uint8_t)cvmconv_is_private(e->c, g);
	s->nfake = e->f.npriv;
	s->fake = malloc((size_t)(s->nfake ? s->nfake : 1) * sizeof(*s->fake));
	assert_non_null(s->fake);
	if (s->nfake)
		memcpy(s->fake, e->f.priv, (size_t)s->nfake * sizeof(*s->fake));
}

void snapshot_free(struct snapshot *s)
{
	free(s->lib);
	free(s->fake);
}

void assert_unchanged(struct env *e, const struct snapshot *s)
{
	struct snapshot now;

	snapshot_take(e, &now);
	assert_int_equal(now.npages, s->npages);
	assert_memory_equal(now.lib, s->lib, s->npages);
	assert_int_equal(now.nfake, s->nfake);
	if (s->nfake)
		assert_memory_equal(now.fake, s->fake, s->nfake * sizeof(*s->fake));
	snapshot_free(&now);
}

int map(struct env *e, uint64_t gpa, uint64_t npages, uint64_t attrs, uint64_t *hc)
{
	*hc = 0xdeadbeefULL; /* the library must always write it */
	return cvmconv_map_gpa_range(e->c, gpa, npages, attrs, hc);
}

/* A request that must convert: answered 0, hc 0. */
void map_ok(struct env *e, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	uint64_t hc;

	assert_int_equal(map(e, gpa, npages, attrs, &hc), 0);
	assert_int_equal(hc, 0);
}

/* A request that must be refused: -KVM_EINVAL, nothing changed, no
 * attribute update, counted as rejected (and as an exit). */
void expect_rejected_at(struct env *e, uint64_t gpa, uint64_t npages, uint64_t attrs, int line)
{
	struct cvmconv_stats before = stats(e), after;
	uint64_t calls = attr_calls(e);
	struct snapshot s;
	uint64_t hc;
	int ret;

	snapshot_take(e, &s);
	ret = map(e, gpa, npages, attrs, &hc);
	if (ret != 0 || hc != HC_EINVAL || attr_calls(e) != calls)
		print_error("line %d: gpa %#llx npages %#llx attrs %#llx: ret %d hc %#llx "
			    "attr calls +%llu\n",
			    line, (unsigned long long)gpa, (unsigned long long)npages,
			    (unsigned long long)attrs, ret, (unsigned long long)hc,
			    (unsigned long long)(attr_calls(e) - calls));
	assert_int_equal(ret, 0);
	assert_int_equal(hc, HC_EINVAL);
	assert_int_equal(attr_calls(e), calls);
	assert_unchanged(e, &s);
	snapshot_free(&s);
	after = stats(e);
	assert_int_equal(after.rejected, before.rejected + 1);
	assert_int_equal(after.exits, before.exits + 1);
	assert_int_equal(after.to_private_bytes, before.to_private_bytes);
	assert_int_equal(after.to_shared_bytes, before.to_shared_bytes);
	env_check(e);
}

void set_hypercall(struct kvm_run *run, uint64_t nr, uint64_t gpa, uint64_t npages, uint64_t attrs,
		   uint64_t ret)
{
	memset(run, 0, sizeof(*run));
	run->exit_reason = KVM_EXIT_HYPERCALL;
	run->hypercall.nr = nr;
	run->hypercall.args[0] = gpa;
	run->hypercall.args[1] = npages;
	run->hypercall.args[2] = attrs;
	run->hypercall.ret = ret;
	run->hypercall.longmode = 1; /* flags: KVM_EXIT_HYPERCALL_LONG_MODE */
}

void set_memory_fault(struct kvm_run *run, uint64_t flags, uint64_t gpa, uint64_t size)
{
	struct memory_fault_exit mf = { flags, gpa, size };

	memset(run, 0, sizeof(*run));
	run->exit_reason = KVM_EXIT_MEMORY_FAULT;
	memcpy((char *)run + 32, &mf, sizeof(mf));
}
