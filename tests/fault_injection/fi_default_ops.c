/* SPDX-License-Identifier: MIT */
/* Fault injection: the default kernel ops of src/kvm.c through the wrapped
 * ioctl/fallocate/madvise. */
#include "fi.h"

/* ---- the default kernel ops (src/kvm.c) through the wrapped libc ---- */

static int dummy_vm_fd(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	kern.vm_fd = fd;
	memset(kern.s, 0, sizeof(kern.s));
	kern.armed = false;
	return fd;
}

void test_default_ops_probe(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++) {
		struct fake_kvm f;
		struct cvmconv_config cfg;
		struct cvmconv *c = NULL;
		int fd = dummy_vm_fd(), err = errnos[i], want;

		fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
		cfg = fake_kvm_config(&f, CVMCONV_UNALIGNED_ALLOW);
		cfg.ops = NULL;
		cfg.vm_fd = fd;
		/* one failure: EINTR is retried, ENOTTY/EINVAL mean "no KVM" */
		sched_set(&kern.s[K_PROBE], &err, 1, false);
		want = err == EINTR ? 0 : err == EINVAL ? -EOPNOTSUPP : -err;
		assert_int_equal(cvmconv_create(&cfg, &c), want);
		injected[S_KVM_IOCTL][i]++;
		if (!want)
			assert_int_equal(kern.s[K_PROBE].calls, 2);
		cvmconv_destroy(c);
		/* persistent EINTR gives up (bounded) */
		if (err == EINTR) {
			c = NULL;
			sched_set(&kern.s[K_PROBE], &err, 1, true);
			assert_int_equal(cvmconv_create(&cfg, &c), -EINTR);
			assert_null(c);
			assert_true(kern.s[K_PROBE].calls > 1 && kern.s[K_PROBE].calls <= 100000);
		}
		fake_kvm_fini(&f);
		close(fd);
		kern.vm_fd = -2;
	}
}

void test_default_ops_attr(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++) {
		for (int persistent = 0; persistent < 2; persistent++) {
			struct world *w = world_get();
			int fd = dummy_vm_fd(), err = errnos[i];
			bool retried = err == EINTR || err == EAGAIN;
			uint64_t hc;
			int ret;

			world_ctx(w, true);
			world_region(w, B_SHMEM);
			sched_set(&kern.s[K_ATTR], &err, 1, persistent);
			ret = request(w, E_MAP, BASE, SZ_2M, true, &hc);
			injected[S_KVM_IOCTL][i]++;
			if (retried && !persistent) {
				/* absorbed by the retry loop of kvm_set_memory_attributes */
				assert_int_equal(ret, 0);
				assert_int_equal(hc, 0);
				assert_int_equal(kern.s[K_ATTR].calls, 2);
				model_set(w, BASE, SZ_2M, true);
				write_converted(w, BASE, SZ_2M);
			} else {
				assert_int_equal(ret, -err);
				assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
				if (retried) /* bounded */
					assert_true(kern.s[K_ATTR].calls > 1 &&
						    kern.s[K_ATTR].calls <= 100000);
				else
					assert_int_equal(kern.s[K_ATTR].calls, 1);
			}
			memset(&kern.s[K_ATTR], 0, sizeof(kern.s[K_ATTR]));
			check_world(w);
			check_flush_recovers(w);
			world_free(w);
			close(fd);
			kern.vm_fd = -2;
		}
	}
}

static void default_ops_release_case(enum backing kind, int err, bool persistent)
{
	struct world *w = world_get();
	int fd = dummy_vm_fd();
	bool by_address = kind == B_HVA || kind == B_ANON;
	enum kcall k = by_address ? K_MADVISE : K_FALLOCATE;
	bool retried = !by_address && err == EINTR && !persistent;
	const uint64_t gpa = BASE + 4 * SZ_4K, size = 4 * SZ_4K;
	uint64_t hc;

	world_ctx(w, true);
	world_region(w, kind);
	sched_set(&kern.s[k], &err, 1, persistent);
	kern.armed = true;
	assert_int_equal(request(w, E_MAP, gpa, size, true, &hc), 0);
	kern.armed = false;
	injected[by_address ? S_KVM_MADVISE : S_KVM_FALLOCATE][err_index(err)]++;
	assert_int_equal(hc, 0);
	model_set(w, gpa, size, true);
	write_converted(w, gpa, size);
	check_world(w);
	if (retried) {
		/* kvm_punch retries EINTR: nothing pending */
		assert_int_equal(stats(w).punch_pending_bytes, 0);
		check_allocation(w, 0);
	} else {
		if (stats(w).punch_pending_bytes != size)
			fail_msg("%s failed with %s%s, yet %llu of %llu stale bytes are counted "
				 "pending (kernel still holds %llu bytes of them)",
				 kind == B_HVA	  ? "madvise(MADV_REMOVE)"
				 : kind == B_ANON ? "madvise(MADV_DONTNEED)"
						  : "fallocate(PUNCH_HOLE)",
				 strerrorname_np(err), persistent ? " (always)" : " (once)",
				 (unsigned long long)stats(w).punch_pending_bytes,
				 (unsigned long long)size, (unsigned long long)size);
		check_allocation(w, size);
		if (persistent && err == EINTR && !by_address)
			assert_true(kern.s[k].calls > 1 && kern.s[k].calls <= 100000);
	}
	memset(&kern.s[k], 0, sizeof(kern.s[k]));
	check_flush_recovers(w);
	world_free(w);
	close(fd);
	kern.vm_fd = -2;
}

void test_default_ops_punch_madvise(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++)
		for (int persistent = 0; persistent < 2; persistent++) {
			default_ops_release_case(B_SHMEM, errnos[i], persistent);
			default_ops_release_case(B_HVA, errnos[i], persistent);
			default_ops_release_case(B_ANON, errnos[i], persistent);
		}
}

/* CVMCONV_REGION_ALLOC_SHARED: the allocation of the shared side
 * (fallocate mode 0, src/kvm.c kvm_allocate) fails, in the first region of
 * a request or in the second after the first was allocated. The request is
 * rolled back whatever the errno (EINTR is not retried: shmem_fallocate
 * gives up on a pending signal), the guest gets -KVM_EFAULT, and what the
 * first region got is punched again: the kernel holds the live pages only. */
void test_alloc_shared(void **state)
{
	static const enum entry entries[] = { E_MAP, E_RUN, E_CONVERT, E_BATCH_GUEST };

	(void)state;
	for (unsigned i = 0; i < NERR; i++)
		for (unsigned k = 0; k < sizeof(entries) / sizeof(entries[0]); k++)
			for (int second = 0; second < 2; second++) {
				struct world *w = world_get();
				const int errs[2] = { second ? 0 : errnos[i], errnos[i] };
				/* the last 8 pages of R0, the first 8 of R1 */
				uint64_t gpa = second ? BASE + RSIZE - 8 * SZ_4K : BASE;
				uint64_t size = second ? 16 * SZ_4K : 8 * SZ_4K, hc;
				struct cvmconv_stats before;
				int ret;

				world_ctx(w, false);
				next_region_flags = CVMCONV_REGION_ALLOC_SHARED;
				world_region(w, B_SHMEM);
				world_region(w, B_SHMEM);
				assert_int_equal(request(w, E_CONVERT, gpa, size, true, &hc), 0);
				model_set(w, gpa, size, true);
				write_converted(w, gpa, size);
				check_allocation(w, 0);
				before = stats(w);
				sched_set(&kern.s[K_FALLOCATE], errs, 2, false);
				kern.armed = true;
				ret = request(w, entries[k], gpa, size, false, &hc);
				kern.armed = false;
				injected[S_ALLOC_SHARED][i]++;
				assert_int_equal(ret, -errnos[i]);
				if (entries[k] != E_CONVERT)
					assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
				assert_int_equal(stats(w).shared_alloc_failures,
						 before.shared_alloc_failures + 1);
				assert_int_equal(stats(w).to_shared_bytes, before.to_shared_bytes);
				assert_int_equal(stats(w).broken, 0);
				memset(&kern.s[K_FALLOCATE], 0, sizeof(kern.s[K_FALLOCATE]));
				check_world(w);
				check_allocation(w, 0);
				/* the same request, the kernel willing: it goes through */
				assert_int_equal(request(w, entries[k], gpa, size, false, &hc), 0);
				model_set(w, gpa, size, false);
				check_world(w);
				check_flush_recovers(w);
				world_free(w);
			}
}

void test_default_ops_gmem(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NERR; i++) {
		int err = errnos[i];

		/* the probe: EINTR is retried, EINVAL is how a kernel with
		 * the ioctl answers a zero-size call, anything else stops */
		for (int what = 0; what < 2; what++) {
			struct world *w = world_get();
			struct wregion *r = &w->r[0];
			int fd = dummy_vm_fd(), want;
			struct cvmconv_region reg = { .sz = sizeof(reg),
						      .gpa = BASE,
						      .size = RSIZE,
						      .shared_fd = -1,
						      .flags = CVMCONV_REGION_INPLACE,
						      .unaligned = -1,
						      .content_mode = CVMCONV_CONTENT_PRESERVE };

			world_ctx(w, true);
			assert_int_equal(fake_gmem_init(&r->gmem, RSIZE, CVMCONV_CONTENT_PRESERVE),
					 0);
			kern.gmem = &r->gmem;
			reg.private_fd = r->gmem.fd;
			if (what == 0) {
				sched_set(&kern.s[K_GMEM], &err, 1, false);
				want = err == EINTR || err == EINVAL ? 0 : -err;
			} else {
				/* capability read fails: no mode can be trusted */
				sched_set(&kern.s[K_PROBE], &err, 1, false);
				want = err == EINTR ? 0 : -EOPNOTSUPP;
			}
			assert_int_equal(cvmconv_add_region(w->c, &reg), want);
			injected[S_KVM_IOCTL][i]++;
			assert_int_equal(stats(w).guest_bytes, want ? 0 : RSIZE);
			kern.gmem = NULL;
			fake_gmem_fini(&r->gmem);
			world_free(w);
			close(fd);
			kern.vm_fd = -2;
		}
		/* the conversion */
		for (int persistent = 0; persistent < 2; persistent++) {
			struct world *w = world_get();
			int fd = dummy_vm_fd();
			bool absorbed = !persistent && (err == EINTR || err == EAGAIN);
			struct cvmconv_stats st;
			uint64_t hc;
			int ret;

			world_ctx(w, true);
			world_region(w, B_INPLACE);
			sched_set(&kern.s[K_GMEM], &err, 1, persistent);
			ret = request(w, E_MAP, BASE, SZ_2M, true, &hc);
			injected[S_KVM_IOCTL][i]++;
			st = stats(w);
			if (absorbed) {
				assert_int_equal(ret, 0);
				assert_int_equal(hc, 0);
				/* EINTR by kvm.c, EAGAIN by the library (counted) */
				assert_int_equal(st.gmem_busy_retries, err == EAGAIN);
				model_set(w, BASE, SZ_2M, true);
				write_converted(w, BASE, SZ_2M);
			} else {
				assert_int_equal(ret, -err);
				assert_int_equal(hc, HC(CVMCONV_KVM_EFAULT));
				if (err == EAGAIN)
					assert_int_equal(st.gmem_busy_failures, 1);
				/* persistent EINTR gives up, bounded */
				if (err == EINTR)
					assert_true(kern.s[K_GMEM].calls > 1 &&
						    kern.s[K_GMEM].calls <= 100000);
			}
			check_world(w);
			assert_int_equal(st.punches, 0);
			assert_int_equal(st.double_alloc_bytes, 0);
			world_free(w);
			close(fd);
			kern.vm_fd = -2;
		}
	}
}
