/* SPDX-License-Identifier: MIT */
/* The public API against the strict fake KVM (tests/fake_kvm.c) with small
 * shmem memfds as backings: argument checking, the conversion transaction
 * (one attribute update per changing run, rollback, broken state), hostile
 * guest requests, the alignment policy, kvm_run decoding, stats, tracker
 * memory and concurrent callers. After every state change the fake's
 * attribute map must equal the library's view of every region. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/kvm.h>

#include "cvmconv.h"
#include "fake_kvm.h"
#include "fixture.h"

#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39
#endif
#define KVM_HC_MAP_GPA_RANGE_NR 12
#define MEMORY_EXIT_FLAG_PRIVATE (1ULL << 3)

#define ENC CVMCONV_MAP_GPA_RANGE_ENCRYPTED
#define HINT_2M CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M
#define HINT_1G CVMCONV_MAP_GPA_RANGE_PAGE_SZ_1G
#define HC_EINVAL ((uint64_t) - (int64_t)CVMCONV_KVM_EINVAL)
#define HC_EFAULT ((uint64_t) - (int64_t)CVMCONV_KVM_EFAULT)
#define SZ_1M (1ULL << 20)
#define SZ_4T (4ULL << 40)

/* 6.1 headers lack kvm_run.memory_fault; it sits in the exit union. */
struct memory_fault_exit {
	uint64_t flags, gpa, size;
};
_Static_assert(offsetof(struct kvm_run, hypercall) == 32, "exit union at 32");
_Static_assert(offsetof(struct kvm_run, hypercall.ret) == 88, "hypercall.ret at 88");

/* ---- log capture ---- */

#define LOG_KEEP 64
struct log_capture {
	unsigned lines;
	unsigned by_level[8];
	char msg[LOG_KEEP][256];
	int level[LOG_KEEP];
};

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
static unsigned log_count_matching(const struct log_capture *l, const char *needle, int max_level)
{
	unsigned n = 0;

	for (unsigned i = 0; i < l->lines && i < LOG_KEEP; i++)
		if (l->level[i] <= max_level && strcasestr(l->msg[i], needle))
			n++;
	return n;
}

/* ---- test environment: one context on one fake VM ---- */

#define MAX_REGIONS 8
struct env {
	struct fake_kvm f;
	struct cvmconv *c;
	struct log_capture log;
	struct {
		uint64_t gpa, size;
		int fd_private, fd_shared;
	} reg[MAX_REGIONS];
	unsigned nreg;
};

static struct cvmconv_config env_config(struct env *e, enum cvmconv_unaligned policy,
					uint64_t granule)
{
	struct cvmconv_config cfg = fake_kvm_config(&e->f, policy);

	cfg.granule = granule;
	cfg.log = log_capture_cb;
	cfg.log_opaque = &e->log;
	return cfg;
}

static void env_init_granule(struct env *e, enum cvmconv_unaligned policy, uint64_t granule)
{
	struct cvmconv_config cfg;

	memset(e, 0, sizeof(*e));
	fake_kvm_init(&e->f, FAKE_VM_SW_PROTECTED);
	cfg = env_config(e, policy, granule);
	assert_int_equal(cvmconv_create(&cfg, &e->c), 0);
	assert_non_null(e->c);
}

static void env_init(struct env *e, enum cvmconv_unaligned policy)
{
	env_init_granule(e, policy, 0);
}

static int shmem_fd(uint64_t size)
{
	int fd = memfd_create("cvmconv-test", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	return fd;
}

static struct cvmconv_region region_desc(uint64_t gpa, uint64_t size, int fd_private, int fd_shared,
					 uint32_t flags, int unaligned)
{
	struct cvmconv_region r;

	memset(&r, 0, sizeof(r));
	r.sz = sizeof(r);
	r.gpa = gpa;
	r.size = size;
	r.private_fd = fd_private;
	r.shared_fd = fd_shared;
	r.flags = flags;
	r.unaligned = unaligned;
	return r;
}

/* Region backed by two shmem memfds (the private one stands in for a
 * guest_memfd); @with_fds false: no backing at all. */
static int env_add_region(struct env *e, uint64_t gpa, uint64_t size, uint32_t flags, int unaligned,
			  bool with_fds)
{
	int fdp = with_fds ? shmem_fd(size) : -1;
	int fds = with_fds ? shmem_fd(size) : -1;
	/* without backings: attribute tracking only */
	struct cvmconv_region r = region_desc(
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

static void env_add(struct env *e, uint64_t gpa, uint64_t size)
{
	assert_int_equal(env_add_region(e, gpa, size, 0, -1, true), 0);
}

/* The fake's attribute map equals the library's view in every region. */
static void env_check(struct env *e)
{
	for (unsigned i = 0; i < e->nreg; i++)
		assert_int_equal(fake_kvm_mismatches(&e->f, e->c, e->reg[i].gpa, e->reg[i].size),
				 0);
}

static void env_fini(struct env *e)
{
	cvmconv_destroy(e->c);
	for (unsigned i = 0; i < e->nreg; i++) {
		close(e->reg[i].fd_private);
		close(e->reg[i].fd_shared);
	}
	fake_kvm_fini(&e->f);
}

static struct cvmconv_stats stats(struct env *e)
{
	struct cvmconv_stats st;

	memset(&st, 0, sizeof(st));
	st.sz = sizeof(st);
	assert_int_equal(cvmconv_get_stats(e->c, &st), 0);
	return st;
}

static uint64_t attr_calls(struct env *e)
{
	return e->f.calls[FAKE_CALL_ATTR];
}

static const struct fake_attr_call *last_attr_call(struct env *e, unsigned back)
{
	assert_true(e->f.nlog > back);
	return &e->f.log[e->f.nlog - 1 - back];
}

static void assert_attr_call(const struct fake_attr_call *a, uint64_t gpa, uint64_t size,
			     uint64_t attributes)
{
	assert_int_equal(a->gpa, gpa);
	assert_int_equal(a->size, size);
	assert_int_equal(a->attributes, attributes);
}

/* Snapshot of both views (library per page over all regions, fake ranges). */
struct snapshot {
	uint8_t *lib;
	uint64_t npages;
	struct fake_range *fake;
	unsigned nfake;
};

static void snapshot_take(struct env *e, struct snapshot *s)
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

static void snapshot_free(struct snapshot *s)
{
	free(s->lib);
	free(s->fake);
}

static void assert_unchanged(struct env *e, const struct snapshot *s)
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

static int map(struct env *e, uint64_t gpa, uint64_t npages, uint64_t attrs, uint64_t *hc)
{
	*hc = 0xdeadbeefULL; /* the library must always write it */
	return cvmconv_map_gpa_range(e->c, gpa, npages, attrs, hc);
}

/* A request that must convert: answered 0, hc 0. */
static void map_ok(struct env *e, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	uint64_t hc;

	assert_int_equal(map(e, gpa, npages, attrs, &hc), 0);
	assert_int_equal(hc, 0);
}

/* A request that must be refused: -KVM_EINVAL, nothing changed, no
 * attribute update, counted as rejected (and as an exit). */
static void expect_rejected_at(struct env *e, uint64_t gpa, uint64_t npages, uint64_t attrs,
			       int line)
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
#define expect_rejected(e, gpa, npages, attrs) expect_rejected_at(e, gpa, npages, attrs, __LINE__)

/* ================= create ================= */

static void count_log(void *opaque, int level, const char *msg)
{
	(void)level;
	(void)msg;
	(*(unsigned *)opaque)++;
}

static void test_create_invalid(void **state)
{
	struct fake_kvm f;
	struct cvmconv_config cfg;
	struct cvmconv_ops punch_only = { .punch = fake_kvm_ops.punch };
	struct cvmconv *c = NULL;
	static const uint64_t bad_granules[] = {
		1, 2048, 3 << 20, 0x3000, (1ULL << 21) + 4096, UINT64_MAX
	};
	(void)state;

	fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&f, CVMCONV_UNALIGNED_ALLOW);
	assert_int_equal(cvmconv_create(NULL, &c), -EINVAL);
	assert_int_equal(cvmconv_create(&cfg, NULL), -EINVAL);

	cfg.sz = 0;
	assert_int_equal(cvmconv_create(&cfg, &c), -EINVAL);
	cfg.sz = offsetof(struct cvmconv_config, vm_fd);
	assert_int_equal(cvmconv_create(&cfg, &c), -EINVAL);
	cfg.sz = sizeof(cfg);

	for (size_t i = 0; i < sizeof(bad_granules) / sizeof(bad_granules[0]); i++) {
		cfg.granule = bad_granules[i];
		assert_int_equal(cvmconv_create(&cfg, &c), -EINVAL);
	}
	/* good granules: 4 KiB, 2 MiB, 1 GiB */
	cfg.granule = SZ_4K;
	assert_int_equal(cvmconv_create(&cfg, &c), 0);
	cvmconv_destroy(c);
	cfg.granule = SZ_1G;
	assert_int_equal(cvmconv_create(&cfg, &c), 0);
	cvmconv_destroy(c);
	cfg.granule = 0;

	cfg.unaligned = (enum cvmconv_unaligned)3;
	assert_int_equal(cvmconv_create(&cfg, &c), -EINVAL);
	cfg.unaligned = (enum cvmconv_unaligned) - 1;
	assert_int_equal(cvmconv_create(&cfg, &c), -EINVAL);
	cfg.unaligned = CVMCONV_UNALIGNED_REJECT;

	/* no VM fd and no attribute op: nothing could set attributes */
	cfg.ops = NULL;
	assert_int_equal(cvmconv_create(&cfg, &c), -EINVAL);
	cfg.ops = &punch_only;
	assert_int_equal(cvmconv_create(&cfg, &c), -EINVAL);
	cfg.ops = &fake_kvm_ops;
	assert_int_equal(cvmconv_create(&cfg, &c), 0);
	cvmconv_destroy(c);
	cvmconv_destroy(NULL);
	assert_int_equal(f.calls[FAKE_CALL_ATTR], 0);
	fake_kvm_fini(&f);
}

static void test_create_sz_compat(void **state)
{
	struct fake_kvm f;
	struct {
		struct cvmconv_config cfg;
		uint64_t tail[2];
	} big;
	struct cvmconv_config cfg;
	struct cvmconv *c = NULL;
	struct cvmconv_region r;
	unsigned logged = 0;
	uint64_t hc;
	(void)state;

	fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
	/* a newer caller: larger struct, zero tail works, non-zero tail is refused */
	memset(&big, 0, sizeof(big));
	big.cfg = fake_kvm_config(&f, CVMCONV_UNALIGNED_ALLOW);
	big.cfg.sz = sizeof(big);
	assert_int_equal(cvmconv_create(&big.cfg, &c), 0);
	cvmconv_destroy(c);
	big.tail[1] = 1;
	assert_int_equal(cvmconv_create(&big.cfg, &c), -E2BIG);
	big.tail[1] = 0;
	big.tail[0] = 1ULL << 40;
	assert_int_equal(cvmconv_create(&big.cfg, &c), -E2BIG);

	/* an older caller whose struct ends after ops: what follows is not read
	 * (the log callback set here must never be called) */
	cfg = fake_kvm_config(&f, CVMCONV_UNALIGNED_LOG);
	cfg.log = count_log;
	cfg.log_opaque = &logged;
	cfg.sz = offsetof(struct cvmconv_config, ops) + sizeof(cfg.ops);
	assert_int_equal(cvmconv_create(&cfg, &c), 0);
	r = region_desc(0, 4 * SZ_2M, -1, -1, 0, -1);
	assert_int_equal(cvmconv_add_region(c, &r), 0);
	assert_int_equal(cvmconv_is_private(c, 0), 0);
	/* malformed requests are refused without touching ops or the log */
	for (int i = 0; i < 10; i++) {
		hc = 0;
		assert_int_equal(cvmconv_map_gpa_range(c, SZ_4K, 0, ENC, &hc), 0);
		assert_int_equal(hc, HC_EINVAL);
		assert_int_equal(cvmconv_map_gpa_range(c, 0, 1, 1ULL << 63, &hc), 0);
		assert_int_equal(hc, HC_EINVAL);
	}
	assert_int_equal(logged, 0);
	cvmconv_destroy(c);
	assert_int_equal(f.calls[FAKE_CALL_ATTR], 0);
	fake_kvm_fini(&f);
}

/* ================= regions ================= */

static void test_add_region_invalid(void **state)
{
	struct env e;
	struct cvmconv_region base, r;
	struct {
		struct cvmconv_region r;
		uint64_t tail;
	} big;
	int fd;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	fd = shmem_fd(4 * SZ_2M);
	base = region_desc(4 * SZ_2M, 2 * SZ_2M, fd, fd, 0, -1);

#define BAD_REGION(field, value, err)                               \
	do {                                                        \
		r = base;                                           \
		r.field = value;                                    \
		assert_int_equal(cvmconv_add_region(e.c, &r), err); \
	} while (0)
	BAD_REGION(sz, 0, -EINVAL);
	BAD_REGION(sz, offsetof(struct cvmconv_region, size), -EINVAL);
	BAD_REGION(gpa, 4 * SZ_2M + 0x800, -EINVAL);
	BAD_REGION(gpa, 4 * SZ_2M + 1, -EINVAL);
	BAD_REGION(size, 2 * SZ_2M + 0x800, -EINVAL);
	BAD_REGION(size, 0, -EINVAL);
	BAD_REGION(private_offset, 0x800, -EINVAL);
	BAD_REGION(shared_offset, 0x10, -EINVAL);
	BAD_REGION(flags, 1u << 1, -EINVAL);
	BAD_REGION(flags, CVMCONV_REGION_PRIVATE | 0x80000000u, -EINVAL);
	BAD_REGION(unaligned, 3, -EINVAL);
	BAD_REGION(unaligned, -2, -EINVAL);
	BAD_REGION(private_fd, 999999, -EBADF);
	/* a file range must end within off_t: every punch of it would fail */
	BAD_REGION(shared_offset, (uint64_t)INT64_MAX - SZ_2M + 1, -EINVAL);
	BAD_REGION(private_offset, (uint64_t)INT64_MAX & ~(SZ_4K - 1), -EINVAL);
	BAD_REGION(shared_offset, 1ULL << 63, -EINVAL);
	r = base; /* the last range that fits is accepted */
	r.private_fd = r.shared_fd = -1;
	r.shared_offset = ((uint64_t)INT64_MAX + 1) - SZ_4K - r.size; /* ends at 2^63 - 4 KiB */
	assert_int_equal(cvmconv_add_region(e.c, &r), 0);
	assert_int_equal(cvmconv_remove_region(e.c, r.gpa), 0);
	/* gpa + size overflows */
	r = base;
	r.private_fd = r.shared_fd = -1;
	r.gpa = 0xfffffffffffff000ULL;
	r.size = 0x2000;
	assert_int_equal(cvmconv_add_region(e.c, &r), -EINVAL);
	r.size = 0x1000; /* ends exactly at 2^64: wraps to 0 */
	assert_int_equal(cvmconv_add_region(e.c, &r), -EINVAL);
	r.gpa = SZ_4K;
	r.size = UINT64_MAX & ~(SZ_4K - 1);
	assert_int_equal(cvmconv_add_region(e.c, &r), -EINVAL);
#undef BAD_REGION
	assert_int_equal(cvmconv_add_region(e.c, NULL), -EINVAL);

	/* a newer caller's larger struct: non-zero tail refused, zero accepted */
	memset(&big, 0, sizeof(big));
	big.r = base;
	big.r.sz = sizeof(big);
	big.tail = 5;
	assert_int_equal(cvmconv_add_region(e.c, &big.r), -E2BIG);
	/* nothing was registered by any of these */
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_2M), -ENOENT);
	assert_int_equal(cvmconv_is_private(e.c, 0xfffffffffffff000ULL), -ENOENT);
	big.tail = 0;
	assert_int_equal(cvmconv_add_region(e.c, &big.r), 0);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_2M), 0);
	assert_int_equal(attr_calls(&e), 0);
	cvmconv_destroy(e.c);
	close(fd);
	fake_kvm_fini(&e.f);
}

static void set_memory_fault(struct kvm_run *run, uint64_t flags, uint64_t gpa, uint64_t size);

/* A guest cannot make private a page that has nowhere to live: a region
 * without a private backing refuses such requests (-KVM_EINVAL, nothing
 * changes, counted), unless it was registered CVMCONV_REGION_ATTRS_ONLY;
 * to shared, and the host's own conversions, still work. */
static void test_private_needs_backing(void **state)
{
	struct env e;
	struct cvmconv_region r;
	struct kvm_run run;
	uint64_t hc = 0, calls;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	/* no backing at all, and no ATTRS_ONLY */
	r = region_desc(0, 4 * SZ_2M, -1, -1, 0, -1);
	assert_int_equal(cvmconv_add_region(e.c, &r), 0);
	calls = attr_calls(&e);
	assert_int_equal(cvmconv_map_gpa_range(e.c, 0, 1, CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &hc), 0);
	assert_int_equal(hc, (uint64_t) - (int64_t)CVMCONV_KVM_EINVAL);
	assert_int_equal(attr_calls(&e), calls);
	assert_int_equal(cvmconv_is_private(e.c, 0), 0);
	assert_int_equal(stats(&e).rejected, 1);
	/* nor by a memory fault: refused, fatal for that vCPU (not an endless fault) */
	set_memory_fault(&run, MEMORY_EXIT_FLAG_PRIVATE, SZ_4K, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -EFAULT);
	assert_int_equal(cvmconv_is_private(e.c, SZ_4K), 0);
	/* the host may (it knows where it keeps private memory) */
	assert_int_equal(cvmconv_convert(e.c, 2 * SZ_4K, SZ_4K, true), 0);
	assert_int_equal(cvmconv_is_private(e.c, 2 * SZ_4K), 1);
	/* back to shared is always possible */
	assert_int_equal(cvmconv_map_gpa_range(e.c, 2 * SZ_4K, 1, 0, &hc), 0);
	assert_int_equal(hc, 0);
	assert_int_equal(cvmconv_is_private(e.c, 2 * SZ_4K), 0);
	/* a request spanning it and an attributes-only region is refused whole */
	r = region_desc(4 * SZ_2M, 4 * SZ_2M, -1, -1, CVMCONV_REGION_ATTRS_ONLY, -1);
	assert_int_equal(cvmconv_add_region(e.c, &r), 0);
	assert_int_equal(cvmconv_map_gpa_range(e.c, 4 * SZ_2M - SZ_4K, 2,
					       CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &hc),
			 0);
	assert_int_equal(hc, (uint64_t) - (int64_t)CVMCONV_KVM_EINVAL);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_2M), 0);
	/* the attributes-only region alone converts */
	assert_int_equal(
		cvmconv_map_gpa_range(e.c, 4 * SZ_2M, 1, CVMCONV_MAP_GPA_RANGE_ENCRYPTED, &hc), 0);
	assert_int_equal(hc, 0);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_2M), 1);
	/* ATTRS_ONLY with a private backing makes no sense */
	{
		int fd = shmem_fd(SZ_2M);

		r = region_desc(16 * SZ_2M, SZ_2M, fd, -1, CVMCONV_REGION_ATTRS_ONLY, -1);
		assert_int_equal(cvmconv_add_region(e.c, &r), -EINVAL);
		close(fd);
	}
	cvmconv_destroy(e.c);
	fake_kvm_fini(&e.f);
}

static void test_add_region_overlap(void **state)
{
	struct env e;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 4 * SZ_1M, 4 * SZ_1M);
	assert_int_equal(env_add_region(&e, 4 * SZ_1M, 4 * SZ_1M, 0, -1, true), -EEXIST);
	assert_int_equal(env_add_region(&e, 6 * SZ_1M, 4 * SZ_1M, 0, -1, true), -EEXIST);
	assert_int_equal(env_add_region(&e, 2 * SZ_1M, 4 * SZ_1M, 0, -1, true), -EEXIST);
	assert_int_equal(env_add_region(&e, 5 * SZ_1M, SZ_4K, 0, -1, true), -EEXIST);
	assert_int_equal(env_add_region(&e, 0, 16 * SZ_1M, 0, -1, true), -EEXIST);
	assert_int_equal(env_add_region(&e, 8 * SZ_1M - SZ_4K, SZ_1M, 0, -1, true), -EEXIST);
	assert_int_equal(env_add_region(&e, 3 * SZ_1M, SZ_1M + SZ_4K, 0, -1, true), -EEXIST);
	/* adjacent on both sides */
	env_add(&e, 8 * SZ_1M, 4 * SZ_1M);
	env_add(&e, 3 * SZ_1M, SZ_1M);
	assert_int_equal(cvmconv_is_private(e.c, 3 * SZ_1M), 0);
	assert_int_equal(cvmconv_is_private(e.c, 8 * SZ_1M - SZ_4K), 0);
	assert_int_equal(cvmconv_is_private(e.c, 8 * SZ_1M), 0);
	assert_int_equal(cvmconv_is_private(e.c, 12 * SZ_1M - SZ_4K), 0);
	assert_int_equal(cvmconv_is_private(e.c, 12 * SZ_1M), -ENOENT);
	assert_int_equal(cvmconv_is_private(e.c, 3 * SZ_1M - SZ_4K), -ENOENT);
	assert_int_equal(attr_calls(&e), 0);
	env_fini(&e);
}

static void test_add_region_private_flag(void **state)
{
	struct env e;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 4 * SZ_1M);
	assert_int_equal(env_add_region(&e, 4 * SZ_1M, 4 * SZ_1M, CVMCONV_REGION_PRIVATE, -1, true),
			 0);
	assert_int_equal(attr_calls(&e), 1);
	assert_attr_call(last_attr_call(&e, 0), 4 * SZ_1M, 4 * SZ_1M, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M), 1);
	assert_int_equal(cvmconv_is_private(e.c, 6 * SZ_1M + 5 * SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e.c, 8 * SZ_1M - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M - SZ_4K), 0);
	env_check(&e);
	/* the private region converts like any other: one call back to shared */
	map_ok(&e, 4 * SZ_1M, 512, 0);
	assert_int_equal(attr_calls(&e), 2);
	assert_attr_call(last_attr_call(&e, 0), 4 * SZ_1M, SZ_2M, 0);
	env_check(&e);
	env_fini(&e);

	/* on a VM without private memory the attribute update fails and the
	 * region is not registered */
	memset(&e, 0, sizeof(e));
	fake_kvm_init(&e.f, FAKE_VM_DEFAULT);
	{
		struct cvmconv_config cfg = env_config(&e, CVMCONV_UNALIGNED_ALLOW, 0);

		assert_int_equal(cvmconv_create(&cfg, &e.c), 0);
	}
	assert_int_equal(env_add_region(&e, 0, 4 * SZ_1M, CVMCONV_REGION_PRIVATE, -1, true),
			 -EINVAL);
	assert_int_equal(cvmconv_is_private(e.c, 0), -ENOENT);
	assert_int_equal(e.f.rejected, 1);
	env_fini(&e);
}

static void test_remove_region(void **state)
{
	struct env e;
	uint64_t calls;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 4 * SZ_1M, 4 * SZ_1M);
	map_ok(&e, 4 * SZ_1M, 1, ENC);
	calls = attr_calls(&e);
	assert_int_equal(cvmconv_remove_region(e.c, 0), -ENOENT);
	assert_int_equal(cvmconv_remove_region(e.c, 4 * SZ_1M + SZ_4K), -ENOENT);
	assert_int_equal(cvmconv_remove_region(e.c, 8 * SZ_1M), -ENOENT);
	assert_int_equal(cvmconv_remove_region(e.c, UINT64_MAX), -ENOENT);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M), 1);
	assert_int_equal(cvmconv_remove_region(e.c, 4 * SZ_1M), 0);
	/* attributes are not touched by removal */
	assert_int_equal(attr_calls(&e), calls);
	assert_int_equal(fake_kvm_is_private(&e.f, 4 * SZ_1M), 1);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M), -ENOENT);
	assert_int_equal(cvmconv_remove_region(e.c, 4 * SZ_1M), -ENOENT);
	/* the range can be registered again, and a removed region refuses
	 * guest requests */
	{
		uint64_t hc;

		assert_int_equal(map(&e, 5 * SZ_1M, 1, ENC, &hc), 0);
		assert_int_equal(hc, HC_EINVAL);
	}
	assert_int_equal(env_add_region(&e, 4 * SZ_1M, 8 * SZ_1M, 0, -1, true), 0);
	/* keep only the live region in the consistency list: make the fake
	 * agree with the re-registered (shared) region first */
	assert_int_equal(cvmconv_convert(e.c, 4 * SZ_1M, 8 * SZ_1M, true), 0);
	assert_int_equal(cvmconv_convert(e.c, 4 * SZ_1M, 8 * SZ_1M, false), 0);
	close(e.reg[0].fd_private);
	close(e.reg[0].fd_shared);
	e.reg[0] = e.reg[1];
	e.nreg = 1;
	env_check(&e);
	env_fini(&e);
}

static void test_is_private_outside(void **state)
{
	struct env e;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 4 * SZ_1M, 4 * SZ_1M);
	assert_int_equal(cvmconv_is_private(e.c, 0), -ENOENT);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M - 1), -ENOENT);
	assert_int_equal(cvmconv_is_private(e.c, 8 * SZ_1M), -ENOENT);
	assert_int_equal(cvmconv_is_private(e.c, UINT64_MAX), -ENOENT);
	assert_int_equal(cvmconv_is_private(e.c, 1ULL << 52), -ENOENT);
	/* an unaligned address names the page that contains it */
	map_ok(&e, 4 * SZ_1M, 1, ENC);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M + 1), 1);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M + SZ_4K - 1), 1);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M + SZ_4K), 0);
	env_check(&e);
	env_fini(&e);
}

/* ================= map_gpa_range: happy paths ================= */

static void test_map_to_private_and_back(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 8 * SZ_1M);

	map_ok(&e, SZ_2M, 512, ENC);
	assert_int_equal(attr_calls(&e), 1);
	assert_attr_call(last_attr_call(&e, 0), SZ_2M, SZ_2M, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(cvmconv_is_private(e.c, SZ_2M - SZ_4K), 0);
	assert_int_equal(cvmconv_is_private(e.c, SZ_2M), 1);
	assert_int_equal(cvmconv_is_private(e.c, 2 * SZ_2M - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e.c, 2 * SZ_2M), 0);
	env_check(&e);
	st = stats(&e);
	assert_int_equal(st.exits, 1);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(st.to_private_bytes, SZ_2M);
	assert_int_equal(st.to_shared_bytes, 0);

	map_ok(&e, SZ_2M, 512, 0);
	assert_int_equal(attr_calls(&e), 2);
	assert_attr_call(last_attr_call(&e, 0), SZ_2M, SZ_2M, 0);
	assert_int_equal(cvmconv_is_private(e.c, SZ_2M), 0);
	env_check(&e);
	st = stats(&e);
	assert_int_equal(st.to_shared_bytes, SZ_2M);

	/* hints that match the range; a shared request with the 2M hint stays
	 * a shared request (hint bits are not the encryption bit) */
	map_ok(&e, 2 * SZ_2M, 1024, ENC | HINT_2M);
	assert_attr_call(last_attr_call(&e, 0), 2 * SZ_2M, 2 * SZ_2M, CVMCONV_ATTR_PRIVATE);
	map_ok(&e, 2 * SZ_2M, 512, HINT_2M);
	assert_attr_call(last_attr_call(&e, 0), 2 * SZ_2M, SZ_2M, 0);
	assert_int_equal(cvmconv_is_private(e.c, 2 * SZ_2M), 0);
	assert_int_equal(cvmconv_is_private(e.c, 3 * SZ_2M), 1);
	assert_int_equal(attr_calls(&e), 4);
	/* a single 4 KiB page with an explicit 4K hint, at the region's start */
	map_ok(&e, 0, 1, ENC | CVMCONV_MAP_GPA_RANGE_PAGE_SZ_4K);
	assert_attr_call(last_attr_call(&e, 0), 0, SZ_4K, CVMCONV_ATTR_PRIVATE);
	env_check(&e);
	st = stats(&e);
	assert_int_equal(st.exits, 5);
	assert_int_equal(st.to_private_bytes, SZ_2M + 2 * SZ_2M + SZ_4K);
	assert_int_equal(st.to_shared_bytes, 2 * SZ_2M);
	assert_int_equal(st.attr_updates, attr_calls(&e));
	env_fini(&e);
}

static void test_map_already_in_state(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 8 * SZ_1M);
	map_ok(&e, 0, 2048, 0); /* whole region, already shared */
	assert_int_equal(attr_calls(&e), 0);
	map_ok(&e, SZ_2M, 16, ENC);
	assert_int_equal(attr_calls(&e), 1);
	map_ok(&e, SZ_2M, 16, ENC);
	map_ok(&e, SZ_2M + SZ_4K, 1, ENC);
	assert_int_equal(attr_calls(&e), 1);
	st = stats(&e);
	assert_int_equal(st.exits, 4);
	assert_int_equal(st.to_private_bytes, 16 * SZ_4K);
	assert_int_equal(st.to_shared_bytes, 0);
	assert_int_equal(st.rejected, 0);
	env_check(&e);
	env_fini(&e);
}

static void test_map_half_private(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 8 * SZ_1M);
	map_ok(&e, SZ_2M, 256, ENC); /* [2M, 3M) */
	assert_int_equal(attr_calls(&e), 1);
	map_ok(&e, SZ_2M, 512, ENC); /* [2M, 4M): only [3M, 4M) changes */
	assert_int_equal(attr_calls(&e), 2);
	assert_attr_call(last_attr_call(&e, 0), 3 * SZ_1M, SZ_1M, CVMCONV_ATTR_PRIVATE);
	st = stats(&e);
	assert_int_equal(st.to_private_bytes, SZ_2M);
	env_check(&e);
	/* back to shared over [1M, 5M): only [2M, 4M) changes */
	map_ok(&e, SZ_1M, 1024, 0);
	assert_int_equal(attr_calls(&e), 3);
	assert_attr_call(last_attr_call(&e, 0), SZ_2M, SZ_2M, 0);
	st = stats(&e);
	assert_int_equal(st.to_shared_bytes, SZ_2M);
	env_check(&e);
	env_fini(&e);
}

static void test_map_two_regions_one_call(void **state)
{
	struct env e;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 8 * SZ_1M);
	env_add(&e, 8 * SZ_1M, 8 * SZ_1M);
	map_ok(&e, 6 * SZ_1M, 1024, ENC); /* [6M, 10M) */
	assert_int_equal(attr_calls(&e), 1);
	assert_attr_call(last_attr_call(&e, 0), 6 * SZ_1M, 4 * SZ_1M, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(cvmconv_is_private(e.c, 6 * SZ_1M - SZ_4K), 0);
	assert_int_equal(cvmconv_is_private(e.c, 8 * SZ_1M - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e.c, 8 * SZ_1M), 1);
	assert_int_equal(cvmconv_is_private(e.c, 10 * SZ_1M - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e.c, 10 * SZ_1M), 0);
	env_check(&e);
	assert_int_equal(stats(&e).to_private_bytes, 4 * SZ_1M);
	/* an unaligned request across the boundary, back to shared */
	map_ok(&e, 8 * SZ_1M - SZ_4K, 2, 0);
	assert_int_equal(attr_calls(&e), 2);
	assert_attr_call(last_attr_call(&e, 0), 8 * SZ_1M - SZ_4K, 2 * SZ_4K, 0);
	env_check(&e);
	env_fini(&e);
}

/* ================= hostile requests ================= */

static void hostile_env(struct env *e, enum cvmconv_unaligned policy)
{
	env_init(e, policy);
	env_add(e, 0, 8 * SZ_1M);	   /* R0 */
	env_add(e, 16 * SZ_1M, 8 * SZ_1M); /* R1, gap [8M, 16M) */
	/* host path: no policy, not counted as exits */
	assert_int_equal(cvmconv_convert(e->c, SZ_2M, SZ_1M, true), 0);
	assert_int_equal(cvmconv_convert(e->c, 16 * SZ_1M, SZ_4K, true), 0);
	env_check(e);
}

static void test_hostile_ranges(void **state)
{
	struct env e;
	uint64_t hc = 0;
	(void)state;

	hostile_env(&e, CVMCONV_UNALIGNED_ALLOW);
	expect_rejected(&e, 0, 0, ENC);
	expect_rejected(&e, SZ_2M, 0, 0);
	expect_rejected(&e, SZ_4K + 1, 1, ENC);
	expect_rejected(&e, 0x800, 1, ENC);
	expect_rejected(&e, SZ_2M + 0x10, 16, 0);
	/* overflow of gpa + npages * 4096 */
	expect_rejected(&e, 0xfffffffffffff000ULL, 2, ENC);
	expect_rejected(&e, 0xfffffffffffff000ULL, 1, ENC);
	expect_rejected(&e, 0, 1ULL << 52, ENC);
	expect_rejected(&e, SZ_4K, 1ULL << 52, ENC);
	expect_rejected(&e, 0, UINT64_MAX, ENC);
	expect_rejected(&e, SZ_4K, UINT64_MAX, 0);
	expect_rejected(&e, 0, 1ULL << 63, ENC);
	expect_rejected(&e, 0, (UINT64_MAX >> 12) + 1, ENC); /* npages * 4096 == 2^64 */
	expect_rejected(&e, (1ULL << 52) - SZ_4K, 2, ENC);   /* past MAXPHYADDR */
	/* outside every region */
	expect_rejected(&e, 100 * SZ_1M, 1, ENC);
	expect_rejected(&e, 12 * SZ_1M, 16, ENC); /* in the gap */
	expect_rejected(&e, 24 * SZ_1M, 1, ENC);  /* just past R1 */
	expect_rejected(&e, 1ULL << 51, 1, ENC);
	/* partly outside */
	expect_rejected(&e, 7 * SZ_1M, 512, ENC);	 /* ends past R0 */
	expect_rejected(&e, 8 * SZ_1M - SZ_4K, 2, ENC);	 /* one page past */
	expect_rejected(&e, 16 * SZ_1M - SZ_4K, 2, ENC); /* starts before R1 */
	expect_rejected(&e, 15 * SZ_1M, 512, 0);
	expect_rejected(&e, 24 * SZ_1M - SZ_4K, 2, ENC); /* past R1 end */
	/* spans the gap between R0 and R1 */
	expect_rejected(&e, 6 * SZ_1M, (20 - 6) * 256, ENC);
	expect_rejected(&e, 0, 24 * 256, 0);
	/* hc_ret NULL */
	assert_int_equal(cvmconv_map_gpa_range(e.c, 0, 1, ENC, NULL), -EINVAL);
	assert_int_equal(cvmconv_is_private(e.c, 0), 0);
	(void)hc;
	env_check(&e);
	env_fini(&e);
}

/* The last page below MAXPHYADDR (2^52) is valid; one more is not. */
static void test_map_top_of_address_space(void **state)
{
	const uint64_t limit = 1ULL << 52;
	struct cvmconv_region r;
	struct env e;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	/* a region may not reach past 2^52 */
	r = region_desc(limit, SZ_2M, -1, -1, 0, -1);
	assert_int_equal(cvmconv_add_region(e.c, &r), -EINVAL);
	r = region_desc(limit - 4 * SZ_2M, 5 * SZ_2M, -1, -1, 0, -1);
	assert_int_equal(cvmconv_add_region(e.c, &r), -EINVAL);
	assert_int_equal(env_add_region(&e, limit - 4 * SZ_1M, 4 * SZ_1M, 0, -1, false), 0);
	map_ok(&e, limit - SZ_4K, 1, ENC);
	assert_attr_call(last_attr_call(&e, 0), limit - SZ_4K, SZ_4K, CVMCONV_ATTR_PRIVATE);
	map_ok(&e, limit - SZ_2M, 512, ENC | HINT_2M);
	assert_int_equal(cvmconv_is_private(e.c, limit - SZ_2M), 1);
	expect_rejected(&e, limit - SZ_4K, 2, 0);
	expect_rejected(&e, limit, 1, 0);
	expect_rejected(&e, limit - SZ_2M, 1ULL << 40, 0);
	assert_int_equal(cvmconv_flush(e.c), 0);
	env_check(&e);
	env_fini(&e);
}

static void test_hostile_attrs(void **state)
{
	struct env e;
	(void)state;

	hostile_env(&e, CVMCONV_UNALIGNED_ALLOW);
	/* reserved attribute bits, with and without ENCRYPTED */
	expect_rejected(&e, 4 * SZ_1M, 1, 1ULL << 2);
	expect_rejected(&e, 4 * SZ_1M, 1, 1ULL << 3); /* KVM's PRIVATE bit, not ENCRYPTED */
	expect_rejected(&e, 4 * SZ_1M, 1, 1ULL << 5);
	expect_rejected(&e, 4 * SZ_1M, 1, 1ULL << 63);
	expect_rejected(&e, 4 * SZ_1M, 1, ENC | (1ULL << 2));
	expect_rejected(&e, 4 * SZ_1M, 1, ENC | (1ULL << 5));
	expect_rejected(&e, 4 * SZ_1M, 1, ENC | (1ULL << 63));
	expect_rejected(&e, SZ_2M, 1, 1ULL << 32); /* would-be shared request */
	expect_rejected(&e, 4 * SZ_1M, 1, ~0ULL);
	/* page-size hint 3 */
	expect_rejected(&e, 4 * SZ_1M, 512, 3);
	expect_rejected(&e, 4 * SZ_1M, 512, ENC | 3);
	/* 2M hint: gpa not 2 MiB aligned, npages not a multiple of 512 */
	expect_rejected(&e, 4 * SZ_1M + SZ_4K, 512, ENC | HINT_2M);
	expect_rejected(&e, 3 * SZ_1M, 512, ENC | HINT_2M);
	expect_rejected(&e, 4 * SZ_1M, 256, ENC | HINT_2M);
	expect_rejected(&e, 4 * SZ_1M, 513, ENC | HINT_2M);
	expect_rejected(&e, 4 * SZ_1M, 1, ENC | HINT_2M);
	expect_rejected(&e, SZ_2M, 256, HINT_2M); /* would-be shared request */
	/* 1G hint on a range that is not 1 GiB aligned (and fits the region) */
	expect_rejected(&e, 0, 512, ENC | HINT_1G);
	expect_rejected(&e, 4 * SZ_1M, 1, ENC | HINT_1G);
	env_fini(&e);
}

static void test_hostile_hint_1g(void **state)
{
	struct env e;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	assert_int_equal(env_add_region(&e, SZ_1G, 2 * SZ_1G, 0, -1, false), 0);
	expect_rejected(&e, SZ_1G + SZ_2M, 262144, ENC | HINT_1G);
	expect_rejected(&e, SZ_1G, 262144 + 512, ENC | HINT_1G);
	expect_rejected(&e, SZ_1G, 262144 - 512, ENC | HINT_1G);
	expect_rejected(&e, SZ_1G, 262144 / 2, ENC | HINT_1G);
	/* a 2M hint is fine on a 1 GiB range made of 2 MiB pages */
	map_ok(&e, SZ_1G, 262144, ENC | HINT_2M);
	/* and the 1G hint on an aligned 1 GiB range converts with one call */
	map_ok(&e, 2 * SZ_1G, 262144, ENC | HINT_1G);
	assert_int_equal(attr_calls(&e), 2);
	assert_attr_call(last_attr_call(&e, 0), 2 * SZ_1G, SZ_1G, CVMCONV_ATTR_PRIVATE);
	map_ok(&e, SZ_1G, 2 * 262144, HINT_1G);
	assert_int_equal(attr_calls(&e), 3);
	assert_attr_call(last_attr_call(&e, 0), SZ_1G, 2 * SZ_1G, 0);
	env_check(&e);
	env_fini(&e);
}

static void test_hostile_flood(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	const unsigned n = 100000;
	uint64_t calls;
	unsigned bad = 0;
	struct snapshot s;
	(void)state;

	/* REJECT context so that policy refusals are part of the flood */
	hostile_env(&e, CVMCONV_UNALIGNED_REJECT);
	snapshot_take(&e, &s);
	calls = attr_calls(&e);
	memset(&e.log, 0, sizeof(e.log));
	for (unsigned i = 0; i < n; i++) {
		uint64_t hc = 0, gpa = (uint64_t)(i % 2048) * SZ_4K;
		int ret;

		switch (i % 6) {
		case 0:
			ret = cvmconv_map_gpa_range(e.c, gpa, 0, ENC, &hc);
			break;
		case 1:
			ret = cvmconv_map_gpa_range(e.c, gpa + 8, 1, ENC, &hc);
			break;
		case 2:
			ret = cvmconv_map_gpa_range(e.c, gpa, 1, ENC | (1ULL << 7), &hc);
			break;
		case 3:
			ret = cvmconv_map_gpa_range(e.c, 12 * SZ_1M + gpa, 1, ENC, &hc);
			break;
		case 4:
			ret = cvmconv_map_gpa_range(e.c, gpa, UINT64_MAX - i, 0, &hc);
			break;
		default:
			ret = cvmconv_map_gpa_range(e.c, 4 * SZ_1M + gpa, 1, ENC, &hc);
			break;
		}
		if (ret != 0 || hc != HC_EINVAL)
			bad++;
	}
	assert_int_equal(bad, 0);
	assert_int_equal(attr_calls(&e), calls);
	assert_unchanged(&e, &s);
	snapshot_free(&s);
	st = stats(&e);
	assert_int_equal(st.rejected, n);
	assert_int_equal(st.exits, n);
	assert_true(e.log.lines < 100);
	env_check(&e);
	env_fini(&e);
}

/* ================= alignment policy ================= */

static void test_policy_reject(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	struct snapshot s;
	(void)state;

	env_init_granule(&e, CVMCONV_UNALIGNED_REJECT, SZ_2M);
	env_add(&e, 0, 8 * SZ_1M);
	expect_rejected(&e, SZ_2M, 1, ENC);
	expect_rejected(&e, SZ_2M + SZ_4K, 512, ENC);	/* unaligned start */
	expect_rejected(&e, SZ_2M, 513, ENC);		/* unaligned size */
	expect_rejected(&e, SZ_2M, 256, ENC | HINT_2M); /* malformed as well */
	st = stats(&e);
	assert_int_equal(st.unaligned, 3);
	assert_int_equal(st.rejected, 4);
	/* aligned requests convert */
	map_ok(&e, SZ_2M, 512, ENC);
	map_ok(&e, 2 * SZ_2M, 1024, ENC | HINT_2M);
	assert_int_equal(attr_calls(&e), 2);
	st = stats(&e);
	assert_int_equal(st.unaligned, 3);
	assert_int_equal(st.rejected, 4);
	assert_int_equal(st.to_private_bytes, 3 * SZ_2M);
	env_check(&e);
	/* an unaligned implicit conversion (memory fault) cannot be answered
	 * with an error code: -EPERM, nothing changed */
	{
		struct kvm_run run;
		struct memory_fault_exit mf = { MEMORY_EXIT_FLAG_PRIVATE, SZ_4K, SZ_4K };

		memset(&run, 0, sizeof(run));
		run.exit_reason = KVM_EXIT_MEMORY_FAULT;
		memcpy((char *)&run + 32, &mf, sizeof(mf));
		snapshot_take(&e, &s);
		assert_int_equal(cvmconv_handle_exit(e.c, &run), -EPERM);
		assert_unchanged(&e, &s);
		snapshot_free(&s);
		assert_int_equal(attr_calls(&e), 2);
		assert_int_equal(stats(&e).unaligned, 4);
	}
	env_fini(&e);
}

static void test_policy_log(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	(void)state;

	env_init_granule(&e, CVMCONV_UNALIGNED_LOG, SZ_2M);
	env_add(&e, 0, 8 * SZ_1M);
	map_ok(&e, 0x2a3000, 1, ENC);
	assert_int_equal(cvmconv_is_private(e.c, 0x2a3000), 1);
	assert_int_equal(attr_calls(&e), 1);
	st = stats(&e);
	assert_int_equal(st.unaligned, 1);
	assert_int_equal(st.rejected, 0);
	assert_true(e.log.lines >= 1);
	assert_true(log_count_matching(&e.log, "2a3000", LOG_DEBUG) >= 1);
	/* aligned requests are not counted */
	map_ok(&e, 3 * SZ_2M, 512, ENC);
	assert_int_equal(stats(&e).unaligned, 1);
	env_check(&e);
	env_fini(&e);
}

static void test_policy_allow(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	(void)state;

	env_init_granule(&e, CVMCONV_UNALIGNED_ALLOW, SZ_2M);
	env_add(&e, 0, 8 * SZ_1M);
	map_ok(&e, 0x2a3000, 1, ENC);
	map_ok(&e, 0x2a3000, 1, 0);
	assert_int_equal(attr_calls(&e), 2);
	st = stats(&e);
	assert_int_equal(st.unaligned, 2);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(log_count_matching(&e.log, "", LOG_NOTICE), 0);
	assert_int_equal(e.log.by_level[LOG_WARNING] + e.log.by_level[LOG_NOTICE] +
				 e.log.by_level[LOG_ERR],
			 0);
	env_check(&e);
	env_fini(&e);
}

static void test_policy_granule_4k(void **state)
{
	struct env e;
	(void)state;

	/* with a 4 KiB granule nothing is unaligned, even under REJECT */
	env_init_granule(&e, CVMCONV_UNALIGNED_REJECT, SZ_4K);
	env_add(&e, 0, 8 * SZ_1M);
	map_ok(&e, SZ_4K, 3, ENC);
	assert_int_equal(stats(&e).unaligned, 0);
	env_check(&e);
	env_fini(&e);

	/* with a 1 GiB granule a 2 MiB request is unaligned */
	env_init_granule(&e, CVMCONV_UNALIGNED_REJECT, SZ_1G);
	env_add(&e, 0, 8 * SZ_1M);
	expect_rejected(&e, SZ_2M, 512, ENC | HINT_2M);
	assert_int_equal(stats(&e).unaligned, 1);
	env_fini(&e);
}

static void test_policy_per_region(void **state)
{
	struct env e;
	(void)state;

	/* ALLOW context, region A REJECT, region B default (ALLOW) */
	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	assert_int_equal(env_add_region(&e, 0, 4 * SZ_1M, 0, CVMCONV_UNALIGNED_REJECT, true), 0);
	assert_int_equal(env_add_region(&e, 4 * SZ_1M, 4 * SZ_1M, 0, -1, true), 0);
	expect_rejected(&e, SZ_4K, 1, ENC);
	map_ok(&e, 4 * SZ_1M + SZ_4K, 1, ENC);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M + SZ_4K), 1);
	map_ok(&e, SZ_2M, 512, ENC); /* aligned in A is fine */
	assert_int_equal(stats(&e).unaligned, 2);
	env_check(&e);
	env_fini(&e);

	/* REJECT context, region B explicitly ALLOW */
	env_init(&e, CVMCONV_UNALIGNED_REJECT);
	assert_int_equal(env_add_region(&e, 0, 4 * SZ_1M, 0, -1, true), 0);
	assert_int_equal(env_add_region(&e, 4 * SZ_1M, 4 * SZ_1M, 0, CVMCONV_UNALIGNED_ALLOW, true),
			 0);
	expect_rejected(&e, SZ_4K, 1, ENC);
	map_ok(&e, 4 * SZ_1M + SZ_4K, 1, ENC);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M + SZ_4K), 1);
	env_check(&e);
	env_fini(&e);
}

/* ================= rollback and broken context ================= */

static void test_rollback(void **state)
{
	struct env e;
	struct cvmconv_stats before, after;
	struct snapshot s;
	uint64_t hc, calls;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 4 * SZ_1M);	   /* A */
	env_add(&e, 4 * SZ_1M, 4 * SZ_1M); /* B */
	/* the middle of the request, across the A/B boundary, already private */
	map_ok(&e, 3 * SZ_1M, 512, ENC);
	env_check(&e);

	/* [2M, 6M) needs two runs: [2M, 3M) and [5M, 6M); the second fails */
	snapshot_take(&e, &s);
	before = stats(&e);
	calls = attr_calls(&e);
	fake_kvm_fail_nth(&e.f, FAKE_CALL_ATTR, 2, ENOMEM);
	assert_int_equal(map(&e, SZ_2M, 1024, ENC, &hc), -ENOMEM);
	assert_int_equal(hc, HC_EFAULT);
	assert_int_equal(attr_calls(&e), calls + 3);
	assert_attr_call(last_attr_call(&e, 2), SZ_2M, SZ_1M, CVMCONV_ATTR_PRIVATE);
	assert_attr_call(last_attr_call(&e, 1), 5 * SZ_1M, SZ_1M, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(last_attr_call(&e, 1)->ret, -ENOMEM);
	assert_attr_call(last_attr_call(&e, 0), SZ_2M, SZ_1M, 0); /* the rollback */
	assert_int_equal(last_attr_call(&e, 0)->ret, 0);
	assert_unchanged(&e, &s);
	snapshot_free(&s);
	env_check(&e);
	after = stats(&e);
	assert_int_equal(after.attr_updates, before.attr_updates + 3);
	assert_int_equal(after.to_private_bytes, before.to_private_bytes);
	assert_int_equal(after.broken, 0);

	/* the first update failing needs no rollback */
	fake_kvm_fail_nth(&e.f, FAKE_CALL_ATTR, 1, ENOMEM);
	calls = attr_calls(&e);
	assert_int_equal(map(&e, SZ_2M, 1024, ENC, &hc), -ENOMEM);
	assert_int_equal(hc, HC_EFAULT);
	assert_int_equal(attr_calls(&e), calls + 1);
	env_check(&e);

	/* host-initiated conversions roll back too */
	fake_kvm_fail_nth(&e.f, FAKE_CALL_ATTR, 2, ENOMEM);
	snapshot_take(&e, &s);
	assert_int_equal(cvmconv_convert(e.c, SZ_2M, 4 * SZ_1M, true), -ENOMEM);
	assert_unchanged(&e, &s);
	snapshot_free(&s);
	env_check(&e);

	/* the context still works */
	fake_kvm_fail_clear(&e.f);
	map_ok(&e, SZ_2M, 1024, ENC);
	assert_int_equal(cvmconv_is_private(e.c, SZ_2M), 1);
	assert_int_equal(cvmconv_is_private(e.c, 6 * SZ_1M - SZ_4K), 1);
	env_check(&e);
	env_fini(&e);
}

static void test_rollback_fails_broken(void **state)
{
	struct env e;
	struct cvmconv_region r;
	struct kvm_run run;
	uint64_t hc, calls;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 4 * SZ_1M);
	env_add(&e, 4 * SZ_1M, 4 * SZ_1M);
	map_ok(&e, 3 * SZ_1M, 512, ENC);
	assert_int_equal(stats(&e).broken, 0);

	/* 2nd update and the rollback (3rd) both fail */
	fake_kvm_fail_nth(&e.f, FAKE_CALL_ATTR, 2, ENOMEM);
	e.f.fail_every[FAKE_CALL_ATTR] = true;
	assert_int_equal(map(&e, SZ_2M, 1024, ENC, &hc), -ENOTRECOVERABLE);
	assert_true(attr_calls(&e) >= 4); /* 1 before + run 1 + run 2 + rollback */
	assert_int_equal(stats(&e).broken, 1);

	/* from now on everything refuses, even with a healthy kernel */
	fake_kvm_fail_clear(&e.f);
	calls = attr_calls(&e);
	assert_int_equal(map(&e, 6 * SZ_1M, 1, ENC, &hc), -ENOTRECOVERABLE);
	assert_int_equal(map(&e, 0, 0, ENC, &hc), -ENOTRECOVERABLE);
	assert_int_equal(cvmconv_convert(e.c, 0, SZ_4K, true), -ENOTRECOVERABLE);
	assert_int_equal(cvmconv_flush(e.c), -ENOTRECOVERABLE);
	r = region_desc(64 * SZ_1M, SZ_2M, -1, -1, 0, -1);
	assert_int_equal(cvmconv_add_region(e.c, &r), -ENOTRECOVERABLE);
	memset(&run, 0, sizeof(run));
	run.exit_reason = KVM_EXIT_HYPERCALL;
	run.hypercall.nr = KVM_HC_MAP_GPA_RANGE_NR;
	run.hypercall.args[0] = 6 * SZ_1M;
	run.hypercall.args[1] = 1;
	run.hypercall.args[2] = ENC;
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -ENOTRECOVERABLE);
	assert_int_equal(attr_calls(&e), calls);
	assert_int_equal(stats(&e).broken, 1);
	env_fini(&e);
}

/* ================= host-initiated conversion ================= */

static void test_convert_host(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	struct snapshot s;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_REJECT);
	env_add(&e, 0, 8 * SZ_1M);
	env_add(&e, 16 * SZ_1M, 8 * SZ_1M);
	/* no policy on the host path: 4 KiB in a REJECT context */
	assert_int_equal(cvmconv_convert(e.c, SZ_4K, SZ_4K, true), 0);
	assert_int_equal(cvmconv_is_private(e.c, SZ_4K), 1);
	assert_int_equal(attr_calls(&e), 1);
	assert_attr_call(last_attr_call(&e, 0), SZ_4K, SZ_4K, CVMCONV_ATTR_PRIVATE);
	/* pages 0 and 2 change: two runs around the private page 1 */
	assert_int_equal(cvmconv_convert(e.c, 0, 3 * SZ_4K, true), 0);
	assert_int_equal(attr_calls(&e), 3);
	assert_attr_call(last_attr_call(&e, 1), 0, SZ_4K, CVMCONV_ATTR_PRIVATE);
	assert_attr_call(last_attr_call(&e, 0), 2 * SZ_4K, SZ_4K, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(cvmconv_convert(e.c, 0, 3 * SZ_4K, true), 0); /* no-op */
	assert_int_equal(attr_calls(&e), 3);
	st = stats(&e);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(st.unaligned, 0);
	assert_int_equal(st.exits, 0);
	assert_int_equal(st.to_private_bytes, 3 * SZ_4K);
	env_check(&e);

	/* invalid ranges */
	snapshot_take(&e, &s);
	assert_int_equal(cvmconv_convert(e.c, SZ_4K, 0, false), -EINVAL);
	assert_int_equal(cvmconv_convert(e.c, 0x800, SZ_4K, false), -EINVAL);
	assert_int_equal(cvmconv_convert(e.c, 0, 0x800, false), -EINVAL);
	assert_int_equal(cvmconv_convert(e.c, 0xfffffffffffff000ULL, 0x2000, true), -EINVAL);
	assert_int_equal(cvmconv_convert(e.c, SZ_4K, UINT64_MAX & ~(SZ_4K - 1), false), -EINVAL);
	assert_int_equal(cvmconv_convert(e.c, 8 * SZ_1M, SZ_4K, true), -EINVAL);
	assert_int_equal(cvmconv_convert(e.c, 6 * SZ_1M, 4 * SZ_1M, true), -EINVAL);
	assert_int_equal(cvmconv_convert(e.c, 15 * SZ_1M, 2 * SZ_1M, true), -EINVAL);
	assert_int_equal(cvmconv_convert(e.c, 0, 24 * SZ_1M, false), -EINVAL); /* gap */
	assert_int_equal(attr_calls(&e), 3);
	assert_unchanged(&e, &s);
	snapshot_free(&s);
	st = stats(&e);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(st.exits, 0);
	env_check(&e);
	env_fini(&e);
}

/* ================= kvm_run front end ================= */

static void set_hypercall(struct kvm_run *run, uint64_t nr, uint64_t gpa, uint64_t npages,
			  uint64_t attrs, uint64_t ret)
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

static void set_memory_fault(struct kvm_run *run, uint64_t flags, uint64_t gpa, uint64_t size)
{
	struct memory_fault_exit mf = { flags, gpa, size };

	memset(run, 0, sizeof(*run));
	run->exit_reason = KVM_EXIT_MEMORY_FAULT;
	memcpy((char *)run + 32, &mf, sizeof(mf));
}

static void test_handle_exit_hypercall(void **state)
{
	struct env e;
	struct kvm_run run;
	struct snapshot s;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 8 * SZ_1M);

	set_hypercall(&run, KVM_HC_MAP_GPA_RANGE_NR, SZ_2M, 512, ENC, 0);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 1);
	assert_int_equal(run.hypercall.ret, 0);
	assert_int_equal(cvmconv_is_private(e.c, SZ_2M), 1);
	assert_int_equal(attr_calls(&e), 1);
	env_check(&e);

	/* success overwrites a garbage preset too */
	set_hypercall(&run, KVM_HC_MAP_GPA_RANGE_NR, SZ_2M, 1, 0, 0x1234);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 1);
	assert_int_equal(run.hypercall.ret, 0);
	assert_int_equal(cvmconv_is_private(e.c, SZ_2M), 0);
	env_check(&e);

	/* bad requests: answered with -KVM_EINVAL whatever ret held */
	snapshot_take(&e, &s);
	set_hypercall(&run, KVM_HC_MAP_GPA_RANGE_NR, SZ_2M, 0, ENC, 0);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 1);
	assert_int_equal(run.hypercall.ret, HC_EINVAL);
	set_hypercall(&run, KVM_HC_MAP_GPA_RANGE_NR, SZ_2M, 1, ENC | (1ULL << 9), 0xdeadbeef);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 1);
	assert_int_equal(run.hypercall.ret, HC_EINVAL);
	set_hypercall(&run, KVM_HC_MAP_GPA_RANGE_NR, 64 * SZ_1M, 1, ENC, UINT64_MAX);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 1);
	assert_int_equal(run.hypercall.ret, HC_EINVAL);
	assert_int_equal(attr_calls(&e), 2);
	assert_unchanged(&e, &s);

	/* another hypercall number: not ours, untouched */
	set_hypercall(&run, 11, SZ_2M, 1, ENC, 0x1234);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 0);
	assert_int_equal(run.hypercall.ret, 0x1234);
	set_hypercall(&run, KVM_HC_MAP_GPA_RANGE_NR + (1ULL << 32), SZ_2M, 1, ENC, 0x1234);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 0);
	assert_int_equal(run.hypercall.ret, 0x1234);
	assert_int_equal(attr_calls(&e), 2);
	assert_unchanged(&e, &s);
	snapshot_free(&s);
	assert_int_equal(stats(&e).exits, 5);

	/* other exit reasons and NULL */
	memset(&run, 0, sizeof(run));
	run.exit_reason = KVM_EXIT_IO;
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 0);
	run.exit_reason = KVM_EXIT_MMIO;
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 0);
	run.exit_reason = 0xffffffffu;
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 0);
	assert_int_equal(cvmconv_handle_exit(e.c, NULL), -EINVAL);
	assert_int_equal(stats(&e).exits, 5);
	env_check(&e);
	env_fini(&e);
}

static void test_handle_exit_memory_fault(void **state)
{
	struct env e;
	struct kvm_run run;
	struct snapshot s;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 8 * SZ_1M);

	set_memory_fault(&run, MEMORY_EXIT_FLAG_PRIVATE, 4 * SZ_1M, SZ_2M);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 1);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M), 1);
	assert_int_equal(cvmconv_is_private(e.c, 6 * SZ_1M - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e.c, 6 * SZ_1M), 0);
	assert_int_equal(attr_calls(&e), 1);
	assert_attr_call(last_attr_call(&e, 0), 4 * SZ_1M, SZ_2M, CVMCONV_ATTR_PRIVATE);
	env_check(&e);
	/* a shared access converts back */
	set_memory_fault(&run, 0, 4 * SZ_1M, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), 1);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M), 0);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M + SZ_4K), 1);
	env_check(&e);
	assert_int_equal(stats(&e).exits, 2);

	/* faults the library cannot serve: fatal for the vCPU, nothing changed */
	snapshot_take(&e, &s);
	set_memory_fault(&run, MEMORY_EXIT_FLAG_PRIVATE, 64 * SZ_1M, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -EFAULT);
	set_memory_fault(&run, MEMORY_EXIT_FLAG_PRIVATE, 8 * SZ_1M - SZ_4K, 2 * SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -EFAULT);
	set_memory_fault(&run, MEMORY_EXIT_FLAG_PRIVATE, 0xfffffffffffff000ULL, 2 * SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -EFAULT);
	set_memory_fault(&run, MEMORY_EXIT_FLAG_PRIVATE, SZ_4K, 0);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -EFAULT);
	set_memory_fault(&run, MEMORY_EXIT_FLAG_PRIVATE, SZ_4K + 8, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -EFAULT);
	set_memory_fault(&run, MEMORY_EXIT_FLAG_PRIVATE | 1, SZ_4K, SZ_4K); /* unknown flag */
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -EFAULT);
	set_memory_fault(&run, 1ULL << 63, SZ_4K, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &run), -EFAULT);
	assert_int_equal(attr_calls(&e), 2);
	assert_unchanged(&e, &s);
	snapshot_free(&s);
	env_check(&e);
	env_fini(&e);
}

/* A memory fault converting cannot resolve: the same vCPU (kvm_run) with
 * the same fault, the range already in that state, no conversion since:
 * -ELOOP, logged; another vCPU whose fault was just resolved re-enters (1);
 * after any conversion the first vCPU gets one more chance. */
static void test_handle_exit_fault_loop(void **state)
{
	struct env e;
	struct kvm_run a, b;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 8 * SZ_1M);
	/* vCPU a converts: re-enter */
	set_memory_fault(&a, MEMORY_EXIT_FLAG_PRIVATE, 4 * SZ_1M, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &a), 1);
	/* vCPU b faulted on the same page at the same time: resolved, re-enter */
	set_memory_fault(&b, MEMORY_EXIT_FLAG_PRIVATE, 4 * SZ_1M, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &b), 1);
	/* a faults again, nothing to convert, nothing converted since: a loop */
	set_memory_fault(&a, MEMORY_EXIT_FLAG_PRIVATE, 4 * SZ_1M, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &a), -ELOOP);
	set_memory_fault(&b, MEMORY_EXIT_FLAG_PRIVATE, 4 * SZ_1M, SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &b), -ELOOP);
	assert_true(log_count_matching(&e.log, "converting cannot resolve it", LOG_ERR) >= 1);
	/* another fault of a is not a repeat */
	set_memory_fault(&a, MEMORY_EXIT_FLAG_PRIVATE, 4 * SZ_1M, 2 * SZ_4K);
	assert_int_equal(cvmconv_handle_exit(e.c, &a), 1);
	/* any conversion in between: one more chance */
	set_memory_fault(&b, MEMORY_EXIT_FLAG_PRIVATE, 4 * SZ_1M, SZ_4K);
	assert_int_equal(cvmconv_convert(e.c, 6 * SZ_1M, SZ_4K, true), 0);
	assert_int_equal(cvmconv_handle_exit(e.c, &b), 1);
	assert_int_equal(cvmconv_handle_exit(e.c, &b), -ELOOP);
	/* nothing changed by the refusals */
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M), 1);
	assert_int_equal(cvmconv_is_private(e.c, 4 * SZ_1M + 2 * SZ_4K), 0);
	env_check(&e);
	env_fini(&e);
}

/* ================= stats ================= */

static void test_stats_sz(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	size_t core = offsetof(struct cvmconv_stats, extents) + sizeof(st.extents);
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 8 * SZ_1M);
	assert_int_equal(cvmconv_get_stats(e.c, NULL), -EINVAL);
	memset(&st, 0, sizeof(st));
	assert_int_equal(cvmconv_get_stats(e.c, &st), -EINVAL);
	st.sz = offsetof(struct cvmconv_stats, extents);
	assert_int_equal(cvmconv_get_stats(e.c, &st), -EINVAL);
	st.sz = sizeof(st.sz);
	assert_int_equal(cvmconv_get_stats(e.c, &st), -EINVAL);
	/* an old caller with only the core fields: nothing written past them */
	memset(&st, 0xa5, sizeof(st));
	st.sz = core;
	assert_int_equal(cvmconv_get_stats(e.c, &st), 0);
	assert_int_equal(st.extents, 4);
	for (size_t i = core; i < sizeof(st); i++)
		assert_int_equal(((unsigned char *)&st)[i], 0xa5);
	env_fini(&e);
}

static void test_stats_extents(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 64 * SZ_1M, 64 * SZ_1M);
	st = stats(&e);
	assert_int_equal(st.extents, 32);
	assert_int_equal(st.mixed_extents, 0);
	assert_int_equal(st.guest_bytes, 64 * SZ_1M);
	assert_int_equal(st.huge_mappable_bytes, 64 * SZ_1M);
	assert_true(st.tracker_bytes > 0);

	map_ok(&e, 70 * SZ_1M + 5 * SZ_4K, 1, ENC);
	st = stats(&e);
	assert_int_equal(st.mixed_extents, 1);
	assert_int_equal(st.huge_mappable_bytes, 62 * SZ_1M);
	env_check(&e);
	map_ok(&e, 70 * SZ_1M + 5 * SZ_4K, 1, 0);
	st = stats(&e);
	assert_int_equal(st.mixed_extents, 0);
	assert_int_equal(st.huge_mappable_bytes, 64 * SZ_1M);

	/* a whole private extent is still huge-mappable */
	map_ok(&e, 70 * SZ_1M, 512, ENC);
	st = stats(&e);
	assert_int_equal(st.mixed_extents, 0);
	assert_int_equal(st.huge_mappable_bytes, 64 * SZ_1M);
	/* a request across an extent boundary mixes both extents */
	map_ok(&e, 74 * SZ_1M - SZ_4K, 2, ENC);
	st = stats(&e);
	assert_int_equal(st.mixed_extents, 2);
	assert_int_equal(st.huge_mappable_bytes, 60 * SZ_1M);
	/* filling them makes them uniform again */
	map_ok(&e, 72 * SZ_1M, 512, ENC);
	map_ok(&e, 74 * SZ_1M, 512, ENC);
	st = stats(&e);
	assert_int_equal(st.mixed_extents, 0);
	assert_int_equal(st.huge_mappable_bytes, 64 * SZ_1M);
	assert_int_equal(st.extents, 32);
	env_check(&e);
	env_fini(&e);
}

/* ================= tracker memory ================= */

static void test_tracker_4t(void **state)
{
	struct env e;
	struct cvmconv_stats st;
	const uint64_t top = SZ_4T;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	assert_int_equal(env_add_region(&e, 0, SZ_4T, 0, -1, false), 0);
	e.nreg = 0; /* too big for the page-by-page check: windows below */
	st = stats(&e);
	assert_int_equal(st.guest_bytes, SZ_4T);
	assert_int_equal(st.extents, SZ_4T / SZ_2M);
	assert_true(st.tracker_bytes <= 8 * SZ_1M);

	map_ok(&e, top - SZ_4K, 1, ENC);
	assert_attr_call(last_attr_call(&e, 0), top - SZ_4K, SZ_4K, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(cvmconv_is_private(e.c, top - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e.c, top - 2 * SZ_4K), 0);
	assert_int_equal(cvmconv_is_private(e.c, top), -ENOENT);
	assert_int_equal(fake_kvm_mismatches(&e.f, e.c, top - 4 * SZ_1M, 4 * SZ_1M), 0);

	map_ok(&e, SZ_1G, 262144, ENC | HINT_1G);
	assert_attr_call(last_attr_call(&e, 0), SZ_1G, SZ_1G, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(cvmconv_is_private(e.c, SZ_1G - SZ_4K), 0);
	assert_int_equal(cvmconv_is_private(e.c, SZ_1G), 1);
	assert_int_equal(cvmconv_is_private(e.c, 2 * SZ_1G - SZ_4K), 1);
	assert_int_equal(cvmconv_is_private(e.c, 2 * SZ_1G), 0);
	assert_int_equal(fake_kvm_mismatches(&e.f, e.c, SZ_1G - 4 * SZ_1M, 8 * SZ_1M), 0);
	assert_int_equal(fake_kvm_mismatches(&e.f, e.c, 2 * SZ_1G - 4 * SZ_1M, 8 * SZ_1M), 0);
	st = stats(&e);
	assert_int_equal(st.mixed_extents, 1);
	assert_true(st.tracker_bytes <= 8 * SZ_1M);

	/* back to shared over the whole 4 TiB: one call per changing run */
	assert_int_equal(cvmconv_convert(e.c, 0, SZ_4T, false), 0);
	assert_int_equal(attr_calls(&e), 4);
	assert_attr_call(last_attr_call(&e, 1), SZ_1G, SZ_1G, 0);
	assert_attr_call(last_attr_call(&e, 0), top - SZ_4K, SZ_4K, 0);
	assert_int_equal(cvmconv_is_private(e.c, SZ_1G), 0);
	assert_int_equal(cvmconv_is_private(e.c, top - SZ_4K), 0);
	/* and all of it private with one call */
	assert_int_equal(cvmconv_convert(e.c, 0, SZ_4T, true), 0);
	assert_int_equal(attr_calls(&e), 5);
	assert_attr_call(last_attr_call(&e, 0), 0, SZ_4T, CVMCONV_ATTR_PRIVATE);
	assert_int_equal(cvmconv_is_private(e.c, 0), 1);
	assert_int_equal(cvmconv_is_private(e.c, top - SZ_4K), 1);
	st = stats(&e);
	assert_int_equal(st.mixed_extents, 0);
	assert_int_equal(st.huge_mappable_bytes, SZ_4T);
	assert_true(st.tracker_bytes <= 8 * SZ_1M);
	assert_int_equal(fake_kvm_mismatches(&e.f, e.c, 0, 4 * SZ_1M), 0);
	assert_int_equal(fake_kvm_mismatches(&e.f, e.c, top - 4 * SZ_1M, 8 * SZ_1M), 0);
	env_fini(&e);
}

/* ================= threads ================= */

struct worker {
	struct cvmconv *c;
	uint64_t gpa, size; /* range this worker converts in */
	uint64_t seed;
	unsigned iterations;
	unsigned failures;
	uint8_t *model; /* expected state per page, NULL when ranges overlap */
};

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	uint64_t pages = w->size / SZ_4K;

	for (unsigned i = 0; i < w->iterations; i++) {
		uint64_t first, n, hc = 1, attrs;
		bool priv = xorshift(&w->seed) & 1;

		if (xorshift(&w->seed) & 1) { /* 2 MiB aligned, 2M hint */
			uint64_t ext = pages / 512;

			first = xorshift(&w->seed) % ext * 512;
			n = (1 + xorshift(&w->seed) % 3) * 512;
			if (first + n > pages)
				n = pages - first;
			attrs = HINT_2M;
		} else {
			first = xorshift(&w->seed) % pages;
			n = 1 + xorshift(&w->seed) % 1100;
			if (first + n > pages)
				n = pages - first;
			attrs = 0;
		}
		if (priv)
			attrs |= ENC;
		if (cvmconv_map_gpa_range(w->c, w->gpa + first * SZ_4K, n, attrs, &hc) != 0 ||
		    hc != 0)
			w->failures++;
		else if (w->model)
			memset(w->model + first, priv, n);
	}
	return NULL;
}

static void run_workers(struct env *e, struct worker *w, unsigned n)
{
	pthread_t t[4];

	for (unsigned i = 0; i < n; i++)
		assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(w[i].failures, 0);
	(void)e;
}

static void test_threads_disjoint(void **state)
{
	struct env e;
	struct worker w[2];
	struct cvmconv_stats st;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 16 * SZ_1M);
	env_add(&e, 16 * SZ_1M, 16 * SZ_1M);
	for (unsigned i = 0; i < 2; i++) {
		w[i] = (struct worker){ .c = e.c,
					.gpa = e.reg[i].gpa,
					.size = e.reg[i].size,
					.seed = 0x9e3779b97f4a7c15ULL * (i + 1),
					.iterations = 2000 };
		w[i].model = calloc(w[i].size / SZ_4K, 1);
		assert_non_null(w[i].model);
	}
	run_workers(&e, w, 2);
	env_check(&e);
	for (unsigned i = 0; i < 2; i++) {
		for (uint64_t p = 0; p < w[i].size / SZ_4K; p++)
			if (cvmconv_is_private(e.c, w[i].gpa + p * SZ_4K) != w[i].model[p])
				fail_msg("worker %u page %llu: library %d, expected %d", i,
					 (unsigned long long)p,
					 cvmconv_is_private(e.c, w[i].gpa + p * SZ_4K),
					 w[i].model[p]);
		free(w[i].model);
	}
	st = stats(&e);
	assert_int_equal(st.exits, 4000);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(st.attr_updates, attr_calls(&e));
	env_fini(&e);
}

static void test_threads_overlapping(void **state)
{
	struct env e;
	struct worker w[2];
	struct cvmconv_stats st;
	(void)state;

	env_init(&e, CVMCONV_UNALIGNED_ALLOW);
	env_add(&e, 0, 16 * SZ_1M);
	env_add(&e, 16 * SZ_1M, 16 * SZ_1M);
	for (unsigned i = 0; i < 2; i++)
		w[i] = (struct worker){ .c = e.c,
					.gpa = 0,
					.size = 32 * SZ_1M,
					.seed = 0x2545f4914f6cdd1dULL * (i + 3),
					.iterations = 2000 };
	run_workers(&e, w, 2);
	env_check(&e);
	st = stats(&e);
	assert_int_equal(st.exits, 4000);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(st.attr_updates, attr_calls(&e));
	env_fini(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_invalid),
		cmocka_unit_test(test_create_sz_compat),
		cmocka_unit_test(test_add_region_invalid),
		cmocka_unit_test(test_add_region_overlap),
		cmocka_unit_test(test_private_needs_backing),
		cmocka_unit_test(test_add_region_private_flag),
		cmocka_unit_test(test_remove_region),
		cmocka_unit_test(test_is_private_outside),
		cmocka_unit_test(test_map_to_private_and_back),
		cmocka_unit_test(test_map_already_in_state),
		cmocka_unit_test(test_map_half_private),
		cmocka_unit_test(test_map_two_regions_one_call),
		cmocka_unit_test(test_hostile_ranges),
		cmocka_unit_test(test_map_top_of_address_space),
		cmocka_unit_test(test_hostile_attrs),
		cmocka_unit_test(test_hostile_hint_1g),
		cmocka_unit_test(test_hostile_flood),
		cmocka_unit_test(test_policy_reject),
		cmocka_unit_test(test_policy_log),
		cmocka_unit_test(test_policy_allow),
		cmocka_unit_test(test_policy_granule_4k),
		cmocka_unit_test(test_policy_per_region),
		cmocka_unit_test(test_rollback),
		cmocka_unit_test(test_rollback_fails_broken),
		cmocka_unit_test(test_convert_host),
		cmocka_unit_test(test_handle_exit_hypercall),
		cmocka_unit_test(test_handle_exit_memory_fault),
		cmocka_unit_test(test_handle_exit_fault_loop),
		cmocka_unit_test(test_stats_sz),
		cmocka_unit_test(test_stats_extents),
		cmocka_unit_test(test_tracker_4t),
		cmocka_unit_test(test_threads_disjoint),
		cmocka_unit_test(test_threads_overlapping),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
