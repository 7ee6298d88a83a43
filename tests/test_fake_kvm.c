/* SPDX-License-Identifier: MIT */
/* The fake KVM must be as strict as kvm_vm_ioctl_set_mem_attributes
 * (KVM-FACTS.md) and keep an exact attribute map: every other suite trusts
 * it. These tests use only the fake, not the library. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_kvm.h"
#include "fixture.h"

#define ATTR_P CVMCONV_ATTR_PRIVATE

static int set_attr(struct fake_kvm *f, uint64_t gpa, uint64_t size, uint64_t attrs)
{
	return fake_kvm_ops.set_memory_attributes(f, gpa, size, attrs);
}

static void test_validation(void **state)
{
	struct fake_kvm f;
	(void)state;

	fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
	assert_int_equal(set_attr(&f, 0, SZ_4K, 1ULL << 2), -EINVAL);
	assert_int_equal(set_attr(&f, 0, SZ_4K, ATTR_P | 1), -EINVAL);
	assert_int_equal(set_attr(&f, 0, SZ_4K, 1ULL << 63), -EINVAL);
	assert_int_equal(set_attr(&f, 0, 0, ATTR_P), -EINVAL);
	assert_int_equal(set_attr(&f, 0, 0, 0), -EINVAL);
	assert_int_equal(set_attr(&f, 0xfffffffffffff000ULL, 0x2000, ATTR_P), -EINVAL);
	/* address + size == 2^64 wraps to 0 */
	assert_int_equal(set_attr(&f, 0xfffffffffffff000ULL, 0x1000, ATTR_P), -EINVAL);
	assert_int_equal(set_attr(&f, 0x800, SZ_4K, ATTR_P), -EINVAL);
	assert_int_equal(set_attr(&f, 0, 0x800, ATTR_P), -EINVAL);
	assert_int_equal(set_attr(&f, 0x1000, 0x1800, 0), -EINVAL);
	assert_int_equal(f.rejected, 10);
	assert_int_equal(f.calls[FAKE_CALL_ATTR], 10);
	assert_int_equal(f.npriv, 0);
	/* the largest valid range */
	assert_int_equal(set_attr(&f, 0xffffffffffffe000ULL, 0x1000, ATTR_P), 0);
	assert_int_equal(fake_kvm_is_private(&f, 0xffffffffffffe000ULL), 1);
	assert_int_equal(fake_kvm_is_private(&f, 0xfffffffffffff000ULL), 0);
	assert_int_equal(set_attr(&f, 0, 0xfffffffffffff000ULL, 0), 0);
	assert_int_equal(f.npriv, 0);
	assert_int_equal(f.nlog, 12);
	assert_int_equal(f.log[0].ret, -EINVAL);
	assert_int_equal(f.log[11].ret, 0);
	assert_int_equal(f.log[11].size, 0xfffffffffffff000ULL);
	fake_kvm_fini(&f);

	/* PRIVATE is not supported on a default VM; 0 is */
	fake_kvm_init(&f, FAKE_VM_DEFAULT);
	assert_int_equal(set_attr(&f, 0, SZ_4K, ATTR_P), -EINVAL);
	assert_int_equal(set_attr(&f, 0, SZ_4K, 0), 0);
	assert_int_equal(f.npriv, 0);
	fake_kvm_fini(&f);
}

/* Random overwrites against a page bitmap. */
static void test_interval_model(void **state)
{
	enum { PAGES = 2048 };
	static unsigned char model[PAGES];
	struct fake_kvm f;
	unsigned seed = 12345;
	(void)state;

	memset(model, 0, sizeof(model));
	fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
	for (int it = 0; it < 20000; it++) {
		unsigned a = (unsigned)rand_r(&seed) % PAGES;
		unsigned len = 1 + (unsigned)rand_r(&seed) % (it % 7 == 0 ? PAGES : 16);
		bool priv = rand_r(&seed) & 1;

		if (a + len > PAGES)
			len = PAGES - a;
		assert_int_equal(
			set_attr(&f, (uint64_t)a * SZ_4K, (uint64_t)len * SZ_4K, priv ? ATTR_P : 0),
			0);
		memset(model + a, priv, len);
		if (it % 97 == 0 || it > 19990) {
			for (unsigned p = 0; p < PAGES; p++)
				assert_int_equal(fake_kvm_is_private(&f, (uint64_t)p * SZ_4K),
						 model[p]);
			/* sorted, disjoint, merged (no two ranges touch) */
			for (unsigned i = 0; i < f.npriv; i++) {
				assert_true(f.priv[i].start < f.priv[i].end);
				if (i)
					assert_true(f.priv[i - 1].end < f.priv[i].start);
			}
		}
	}
	fake_kvm_fini(&f);
}

static void test_interval_cap(void **state)
{
	struct fake_kvm f;
	uint64_t i;
	(void)state;

	fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
	/* every other page private: one range each, up to the cap */
	for (i = 0; i < (1u << 20); i++)
		assert_int_equal(set_attr(&f, i * 2 * SZ_4K, SZ_4K, ATTR_P), 0);
	assert_int_equal(f.npriv, 1u << 20);
	assert_int_equal(set_attr(&f, i * 2 * SZ_4K, SZ_4K, ATTR_P), -ENOMEM);
	/* splitting a range would also exceed it; nothing changed */
	assert_int_equal(set_attr(&f, 0, 0x10000000000ULL, ATTR_P), 0);
	assert_int_equal(f.npriv, 1);
	assert_int_equal(set_attr(&f, 0x1000, 0x1000, 0), 0);
	assert_int_equal(f.npriv, 2);
	/* a huge range at the top of the address space is one entry */
	assert_int_equal(set_attr(&f, 1ULL << 63, (1ULL << 63) - SZ_4K, ATTR_P), 0);
	assert_int_equal(f.npriv, 3);
	assert_true(f.cap <= (1u << 20));
	fake_kvm_fini(&f);
}

static void test_injection(void **state)
{
	struct fake_kvm f;
	(void)state;

	fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
	assert_int_equal(set_attr(&f, 0, SZ_4K, ATTR_P), 0);
	fake_kvm_fail_nth(&f, FAKE_CALL_ATTR, 2, ENOMEM);
	assert_int_equal(set_attr(&f, SZ_4K, SZ_4K, ATTR_P), 0);
	/* injected failures come before validation and change nothing */
	assert_int_equal(set_attr(&f, 2 * SZ_4K, SZ_4K, ATTR_P), -ENOMEM);
	assert_int_equal(fake_kvm_is_private(&f, 2 * SZ_4K), 0);
	assert_int_equal(set_attr(&f, 2 * SZ_4K, SZ_4K, ATTR_P), 0);
	assert_int_equal(f.calls[FAKE_CALL_ATTR], 4);
	assert_int_equal(f.log[2].ret, -ENOMEM);
	/* fail_every: from the n-th call on */
	fake_kvm_fail_nth(&f, FAKE_CALL_ATTR, 2, EIO);
	f.fail_every[FAKE_CALL_ATTR] = true;
	assert_int_equal(set_attr(&f, 0, SZ_4K, 0), 0);
	assert_int_equal(set_attr(&f, 0, SZ_4K, 0), -EIO);
	assert_int_equal(set_attr(&f, 0, SZ_4K, 0), -EIO);
	fake_kvm_fail_clear(&f);
	assert_int_equal(set_attr(&f, 0, SZ_4K, 0), 0);
	assert_int_equal(fake_kvm_is_private(&f, 0), 0);
	fake_kvm_fini(&f);
}

static void test_log_keeps_last_64(void **state)
{
	struct fake_kvm f;
	(void)state;

	fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
	for (uint64_t i = 0; i < 100; i++)
		assert_int_equal(set_attr(&f, i * SZ_4K, SZ_4K, ATTR_P), 0);
	assert_int_equal(f.nlog, 64);
	assert_int_equal(f.log[0].gpa, 36 * SZ_4K);
	assert_int_equal(f.log[63].gpa, 99 * SZ_4K);
	assert_int_equal(f.npriv, 1);
	fake_kvm_fini(&f);
}

static void test_punch_and_discard(void **state)
{
	struct fake_kvm f;
	int fd = memfd_create("fake-test", MFD_CLOEXEC);
	char *map;
	(void)state;

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 16 * SZ_4K), 0);
	map = map_fd(fd, 16 * SZ_4K);
	assert_non_null(map);
	pattern_fill(map, 0, 16, 7);
	assert_int_equal(fd_allocated_bytes(fd), 16 * SZ_4K);
	fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
	assert_int_equal(fake_kvm_ops.punch(&f, fd, 0, 0), -EINVAL);
	assert_int_equal(fake_kvm_ops.punch(&f, -1, 0, SZ_4K), -EBADF);
	assert_int_equal(fake_kvm_ops.punch(&f, fd, 0, 2 * SZ_4K), 0);
	assert_int_equal(fd_allocated_bytes(fd), 14 * SZ_4K);
	assert_int_equal(fake_kvm_ops.discard_hva(&f, map + 4 * SZ_4K, 0), -EINVAL);
	assert_int_equal(fake_kvm_ops.discard_hva(&f, map + 4 * SZ_4K, 2 * SZ_4K), 0);
	assert_int_equal(fd_allocated_bytes(fd), 12 * SZ_4K);
	/* reading a hole of a shmem mapping allocates the page again */
	assert_true(page_is_zero(map, 0));
	assert_true(page_is_zero(map, 5));
	assert_true(pattern_check(map, 2, 7));
	fake_kvm_fail_nth(&f, FAKE_CALL_PUNCH, 1, EIO);
	assert_int_equal(fake_kvm_ops.punch(&f, fd, 8 * SZ_4K, SZ_4K), -EIO);
	assert_true(pattern_check(map, 8, 7));
	fake_kvm_fail_nth(&f, FAKE_CALL_DISCARD, 1, EAGAIN);
	assert_int_equal(fake_kvm_ops.discard_hva(&f, map + 8 * SZ_4K, SZ_4K), -EAGAIN);
	assert_true(pattern_check(map, 8, 7));
	assert_int_equal(f.calls[FAKE_CALL_PUNCH], 4);
	assert_int_equal(f.calls[FAKE_CALL_DISCARD], 3);
	fake_kvm_fini(&f);
	munmap(map, 16 * SZ_4K);
	close(fd);
}

static void test_config(void **state)
{
	struct fake_kvm f;
	struct cvmconv_config cfg;
	(void)state;

	fake_kvm_init(&f, FAKE_VM_SW_PROTECTED);
	cfg = fake_kvm_config(&f, CVMCONV_UNALIGNED_REJECT);
	assert_int_equal(cfg.sz, sizeof(cfg));
	assert_int_equal(cfg.vm_fd, -1);
	assert_ptr_equal(cfg.ops, &fake_kvm_ops);
	assert_ptr_equal(cfg.ops_opaque, &f);
	assert_int_equal(cfg.unaligned, CVMCONV_UNALIGNED_REJECT);
	fake_kvm_fini(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_validation),
		cmocka_unit_test(test_interval_model),
		cmocka_unit_test(test_interval_cap),
		cmocka_unit_test(test_injection),
		cmocka_unit_test(test_log_keeps_last_64),
		cmocka_unit_test(test_punch_and_discard),
		cmocka_unit_test(test_config),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
