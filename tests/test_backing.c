/* SPDX-License-Identifier: MIT */
/*
 * Backing helpers against the real kernel: cvmconv_memfd_create (shmem,
 * 2 MiB and 1 GiB MFD_HUGETLB), cvmconv_hugetlbfs_create and
 * cvmconv_hugetlbfs_mount_path (on a hugetlbfs mount of this machine, or one
 * the test mounts on a mkdtemp directory as root, in a private mount
 * namespace when possible, and unmounts after), cvmconv_fd_page_size, and a
 * region whose shared side is a hugetlbfs file: converting a whole 2 MiB
 * range to private frees one huge page of the file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <dirent.h>

#include <linux/magic.h>

#include "conv_util.h"

#define HP_1G_SYSFS "/sys/kernel/mm/hugepages/hugepages-1048576kB"

static bool is_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFD);

	return fl >= 0 && (fl & FD_CLOEXEC);
}

static uint64_t fd_size(int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	return (uint64_t)st.st_size;
}

/* Is there a hugetlbfs mount with @page_size pages (per mountinfo)? The
 * page size is the pagesize= super option, else the default huge page
 * size, which is 2 MiB on this machine (fixture reserve checks it). */
static bool hugetlbfs_mounted(uint64_t page_size)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		const char *sep = strstr(line, " - hugetlbfs ");
		const char *ps;
		uint64_t sz = SZ_2M;

		if (!sep)
			continue;
		ps = strstr(sep, "pagesize=");
		if (ps) {
			char *end;
			unsigned long long v = strtoull(ps + 9, &end, 10);

			sz = v << (*end == 'G' ? 30 : *end == 'M' ? 20 : *end == 'K' ? 10 : 0);
		}
		found = sz == page_size;
	}
	fclose(f);
	return found;
}

/* ---- cvmconv_memfd_create ---- */

static void test_memfd_shmem(void **state)
{
	struct statfs sfs;
	int fd;

	(void)state;
	fd = cvmconv_memfd_create("cvmconv-backing", 1 << 20, SZ_4K);
	assert_true(fd >= 0);
	assert_int_equal(cvmconv_fd_page_size(fd), SZ_4K);
	assert_int_equal(fd_size(fd), 1 << 20);
	assert_int_equal(fd_allocated_bytes(fd), 0);
	assert_true(is_cloexec(fd));
	assert_int_equal(fstatfs(fd, &sfs), 0);
	assert_int_equal((unsigned long)sfs.f_type, (unsigned long)TMPFS_MAGIC);
	close(fd);

	fd = cvmconv_memfd_create(NULL, SZ_4K, SZ_4K); /* default name */
	assert_true(fd >= 0);
	assert_int_equal(cvmconv_fd_page_size(fd), SZ_4K);
	close(fd);
}

static void test_memfd_2m(void **state)
{
	int fd;

	(void)state;
	/* no huge page needs to be free: memfd_create + ftruncate reserve
	 * nothing (hugetlbfs reserves at mmap time) */
	fd = cvmconv_memfd_create("cvmconv-2m", 4 * SZ_2M, SZ_2M);
	if (fd < 0 && access("/sys/kernel/mm/hugepages/hugepages-2048kB", F_OK) != 0)
		FIXTURE_SKIP("kernel has no 2 MiB huge pages: %s", strerror(-fd));
	assert_true(fd >= 0);
	assert_int_equal(cvmconv_fd_page_size(fd), SZ_2M);
	assert_int_equal(fd_size(fd), 4 * SZ_2M);
	assert_int_equal(fd_allocated_bytes(fd), 0);
	assert_true(is_cloexec(fd));
	close(fd);
}

static void test_memfd_1g(void **state)
{
	int fd;

	(void)state;
	fd = cvmconv_memfd_create("cvmconv-1g", SZ_1G, SZ_1G);
	if (access(HP_1G_SYSFS, F_OK) != 0) {
		/* the kernel refuses MFD_HUGE_1GB: an error, never an fd */
		assert_true(fd < 0);
		FIXTURE_SKIP("no 1 GiB huge pages on this kernel (%s absent); "
			     "cvmconv_memfd_create returned %s",
			     HP_1G_SYSFS, strerror(-fd));
	}
	assert_true(fd >= 0);
	assert_int_equal(cvmconv_fd_page_size(fd), SZ_1G);
	assert_int_equal(fd_size(fd), SZ_1G);
	assert_true(is_cloexec(fd));
	close(fd);
}

static void test_memfd_bad_args(void **state)
{
	(void)state;
	assert_int_equal(cvmconv_memfd_create("x", SZ_4K + 1, SZ_4K), -EINVAL);
	assert_int_equal(cvmconv_memfd_create("x", 3ULL << 20, SZ_2M), -EINVAL);
	assert_int_equal(cvmconv_memfd_create("x", SZ_2M + SZ_4K, SZ_2M), -EINVAL);
	assert_int_equal(cvmconv_memfd_create("x", SZ_1G + SZ_2M, SZ_1G), -EINVAL);
	/* page sizes other than 4 KiB, 2 MiB and 1 GiB */
	assert_int_equal(cvmconv_memfd_create("x", 1 << 20, 8192), -EINVAL);
	assert_int_equal(cvmconv_memfd_create("x", 1 << 20, 64 << 10), -EINVAL);
	assert_int_equal(cvmconv_memfd_create("x", 1 << 20, 0), -EINVAL);
}

/* ---- cvmconv_fd_page_size ---- */

static void test_fd_page_size(void **state)
{
	char path[] = "/tmp/cvmconv-backing-XXXXXX";
	int fd;

	(void)state;
	assert_int_equal(cvmconv_fd_page_size(-1), -EBADF);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	/* not hugetlbfs: the kernel frees 4 KiB pages */
	assert_int_equal(cvmconv_fd_page_size(fd), SZ_4K);
	close(fd);
	assert_int_equal(cvmconv_fd_page_size(fd), -EBADF); /* closed */
}

/* ---- hugetlbfs ---- */

struct mnt {
	char dir[64];
	bool mounted;	  /* we mounted it */
	bool preexisting; /* a 2 MiB hugetlbfs mount existed before the test */
	char why[160];	  /* why no mount is available, for the skip */
};

static struct mnt *mnt_of(struct conv_env *e)
{
	return e->extra;
}

static void test_hugetlbfs_absent(void **state)
{
	char buf[PATH_MAX];

	(void)state;
	if (hugetlbfs_mounted(SZ_2M))
		FIXTURE_SKIP("a 2 MiB hugetlbfs mount exists: cannot check -ENOENT");
	assert_int_equal(cvmconv_hugetlbfs_mount_path(SZ_2M, buf, sizeof(buf)), -ENOENT);
	assert_int_equal(cvmconv_hugetlbfs_create(2 * SZ_2M, SZ_2M), -ENOENT);
}

static void test_hugetlbfs_1g_absent(void **state)
{
	char buf[PATH_MAX];

	(void)state;
	if (hugetlbfs_mounted(SZ_1G))
		FIXTURE_SKIP("a 1 GiB hugetlbfs mount exists: cannot check -ENOENT");
	assert_int_equal(cvmconv_hugetlbfs_mount_path(SZ_1G, buf, sizeof(buf)), -ENOENT);
	assert_int_equal(cvmconv_hugetlbfs_create(SZ_1G, SZ_1G), -ENOENT);
}

/* Make sure a 2 MiB hugetlbfs mount exists: use the machine's, else mount
 * one (root) on a mkdtemp directory, in a private mount namespace when
 * possible so that nothing else sees it and nothing leaks on a crash. */
static int mnt_setup(void **state)
{
	struct conv_env *e;
	struct mnt *m;

	if (conv_env_setup(state))
		return -1;
	e = *state;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -1;
	e->extra = m;
	if (hugetlbfs_mounted(SZ_2M)) {
		m->preexisting = true;
		return 0;
	}
	if (geteuid() != 0) {
		snprintf(m->why, sizeof(m->why), "no 2 MiB hugetlbfs mount and not root");
		return 0;
	}
	if (unshare(CLONE_NEWNS) == 0)
		(void)mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	snprintf(m->dir, sizeof(m->dir), "/tmp/cvmconv-hugetlbfs-XXXXXX");
	if (!mkdtemp(m->dir)) {
		snprintf(m->why, sizeof(m->why), "mkdtemp: %s", strerror(errno));
		m->dir[0] = '\0';
		return 0;
	}
	if (mount("none", m->dir, "hugetlbfs", 0, "pagesize=2M") != 0) {
		snprintf(m->why, sizeof(m->why), "mount -t hugetlbfs -o pagesize=2M %s: %s", m->dir,
			 strerror(errno));
		return 0;
	}
	m->mounted = true;
	return 0;
}

static int mnt_teardown(void **state)
{
	struct conv_env *e = *state;
	struct mnt m;

	if (!e)
		return 0;
	if (!mnt_of(e))
		return conv_env_teardown(state);
	m = *mnt_of(e);
	/* close every file on the mount first */
	conv_env_teardown(state);
	if (m.mounted && umount(m.dir) != 0)
		fprintf(stderr, "umount %s: %s\n", m.dir, strerror(errno));
	if (m.dir[0])
		rmdir(m.dir);
	return 0;
}

static bool dir_empty(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	bool empty = true;

	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			empty = false;
	closedir(d);
	return empty;
}

static void test_hugetlbfs_create(void **state)
{
	struct conv_env *e = *state;
	struct mnt *m = mnt_of(e);
	char buf[PATH_MAX];
	struct statfs sfs;
	struct stat st;
	struct cvmconv_region r;
	long free0;
	int fd;

	if (!m->preexisting && !m->mounted)
		FIXTURE_SKIP("no hugetlbfs mount: %s", m->why);

	/* the mount the library will use */
	assert_int_equal(cvmconv_hugetlbfs_mount_path(SZ_2M, buf, sizeof(buf)), 0);
	if (m->mounted)
		assert_string_equal(buf, m->dir);
	assert_int_equal(statfs(buf, &sfs), 0);
	assert_int_equal((unsigned long)sfs.f_type, (unsigned long)HUGETLBFS_MAGIC);
	assert_int_equal(sfs.f_bsize, SZ_2M);
	/* no mount path fits in one byte */
	assert_int_equal(cvmconv_hugetlbfs_mount_path(SZ_2M, buf, 1), -ENAMETOOLONG);
	assert_int_equal(cvmconv_hugetlbfs_create(3ULL << 20, SZ_2M), -EINVAL);

	/* an unlinked 4 MiB file of 2 MiB pages */
	fd = cvmconv_hugetlbfs_create(2 * SZ_2M, SZ_2M);
	assert_true(fd >= 0);
	e->shared_fd = fd;
	e->shared_size = 2 * SZ_2M;
	assert_int_equal(cvmconv_fd_page_size(fd), SZ_2M);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 2 * SZ_2M);
	assert_int_equal(st.st_nlink, 0);
	assert_true(is_cloexec(fd));
	if (m->mounted)
		assert_true(dir_empty(m->dir));

	/* as a region's shared side: a whole 2 MiB range to private frees a
	 * huge page of the file, a 4 KiB one frees nothing */
	ENV_RESERVE(e, 4);
	env_ctx(e, CVMCONV_UNALIGNED_ALLOW);
	env_private(e, 2 * SZ_2M);
	e->shared_map = map_fd(fd, 2 * SZ_2M);
	assert_non_null(e->shared_map);
	pattern_fill(e->shared_map, 0, PAGES_OF(2 * SZ_2M), 7);
	assert_int_equal(fd_allocated_bytes(fd), 2 * SZ_2M);
	r = region_desc(SZ_1G, 2 * SZ_2M, e->private_fd, fd, NULL);
	assert_int_equal(cvmconv_add_region(e->c, &r), 0);
	free0 = hugepages_free();

	guest_map(e->c, SZ_1G + SZ_2M + SZ_4K, SZ_4K, true, 0);
	assert_int_equal(fd_allocated_bytes(fd), 2 * SZ_2M);
	assert_int_equal(hugepages_free(), free0);

	assert_int_equal(cvmconv_convert(e->c, SZ_1G, SZ_2M, true), 0);
	assert_int_equal(cvmconv_is_private(e->c, SZ_1G), 1);
	assert_int_equal(cvmconv_is_private(e->c, SZ_1G + SZ_2M - SZ_4K), 1);
	assert_int_equal(fd_allocated_bytes(fd), SZ_2M);
	assert_int_equal(hugepages_free(), free0 + 1);
	assert_int_equal(fake_kvm_mismatches(&e->fake, e->c, SZ_1G, 2 * SZ_2M), 0);
	assert_int_equal(stats_of(e->c).double_alloc_bytes, SZ_4K);
	{
		uint8_t *b = malloc(2 * SZ_2M);

		assert_non_null(b);
		read_into(fd, b, 2 * SZ_2M);
		for (uint64_t p = PAGES_PER_2M; p < 2 * PAGES_PER_2M; p++)
			if (!pattern_check(b, p, 7)) {
				free(b);
				fail_msg("page %llu of the live huge page lost its data",
					 (unsigned long long)p);
			}
		free(b);
	}
}

/* ---- the page size of a host mapping with a long path ---- */

static uint64_t hva_discards;

static int count_discard(void *opaque, void *hva, uint64_t len)
{
	(void)opaque;
	(void)hva;
	(void)len;
	hva_discards++;
	return 0;
}

/* Where the path starts in the /proc/self/smaps header line of @addr. */
static size_t smaps_path_column(const void *addr)
{
	char line[4096];
	size_t col = 0;
	FILE *f = fopen("/proc/self/smaps", "re");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && (uintptr_t)addr == lo) {
			col = (size_t)(strchr(line, '/') - line);
			break;
		}
	}
	fclose(f);
	assert_true(col > 0);
	return col;
}

/* A hugetlbfs file mapped through a path longer than one 512-byte read of
 * /proc/self/smaps, named so that the second piece of its header line reads
 * "VmFlags: sh": the library must still find KernelPageSize 2048 kB, so a
 * 4 KiB conversion inside the mapping discards nothing (a huge page is never
 * partly freed). Read in pieces, the line ended the search before
 * KernelPageSize with the 4 KiB default. */
static void test_hva_long_smaps_line(void **state)
{
	struct conv_env *e = *state;
	char root[] = "/tmp/cvmconv-smaps-XXXXXX", dir[PATH_MAX], file[PATH_MAX], name[256];
	struct cvmconv_ops ops = { .discard_hva = count_discard };
	struct cvmconv_config cfg;
	struct cvmconv_region r;
	void *map;
	size_t col, at;
	int fd;

	if (geteuid() != 0)
		FIXTURE_SKIP("mounting hugetlbfs needs root");
	/* a private mount namespace: nothing leaks should the test fail (the
	 * type is ignored for MS_PRIVATE; "none" keeps valgrind quiet) */
	if (unshare(CLONE_NEWNS) == 0)
		(void)mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL);
	assert_non_null(mkdtemp(root));
	/* a mount point of about 420 characters */
	snprintf(dir, sizeof(dir), "%s/%0200d", root, 0);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "/%0200d", 1);
	assert_int_equal(mkdir(dir, 0700), 0);
	if (mount("none", dir, "hugetlbfs", 0, "pagesize=2M") != 0) {
		int err = errno;

		rmdir(dir);
		*strrchr(dir, '/') = '\0';
		rmdir(dir);
		rmdir(root);
		FIXTURE_SKIP("mount -t hugetlbfs: %s", strerror(err));
	}
	snprintf(file, sizeof(file), "%s/f", dir);
	fd = open(file, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)SZ_2M), 0);
	map = mmap(NULL, SZ_2M, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	assert_true(map != MAP_FAILED);
	/* rename so that byte 511 of the header line (where the second
	 * 512-byte piece begins) starts "VmFlags: sh" */
	col = smaps_path_column(map);
	at = 511 - col - strlen(dir) - 1;
	assert_true(col + strlen(dir) + 1 < 511 && at < 200);
	memset(name, 'x', at);
	snprintf(name + at, sizeof(name) - at, "VmFlags: sh");
	{
		char renamed[PATH_MAX];

		snprintf(renamed, sizeof(renamed), "%s/%s", dir, name);
		assert_int_equal(rename(file, renamed), 0);
		snprintf(file, sizeof(file), "%s", renamed);
	}
	assert_int_equal(smaps_path_column(map), col);

	env_ctx(e, CVMCONV_UNALIGNED_ALLOW);
	cvmconv_destroy(e->c);
	cfg = fake_kvm_config(&e->fake, CVMCONV_UNALIGNED_ALLOW);
	ops.set_memory_attributes = fake_kvm_ops.set_memory_attributes;
	cfg.ops = &ops;
	assert_int_equal(cvmconv_create(&cfg, &e->c), 0);
	r = region_desc(SZ_1G, SZ_2M, -1, -1, map);
	hva_discards = 0;
	assert_int_equal(cvmconv_add_region(e->c, &r), 0);
	assert_int_equal(cvmconv_convert(e->c, SZ_1G + SZ_4K, SZ_4K, true), 0);
	assert_int_equal(hva_discards, 0); /* huge: the page stays, counted */
	assert_int_equal(stats_of(e->c).double_alloc_bytes, SZ_4K);
	assert_int_equal(cvmconv_convert(e->c, SZ_1G, SZ_2M, true), 0);
	assert_int_equal(hva_discards, 1); /* the whole huge page, once */

	cvmconv_destroy(e->c);
	e->c = NULL;
	munmap(map, SZ_2M);
	close(fd);
	unlink(file);
	assert_int_equal(umount(dir), 0);
	rmdir(dir);
	*strrchr(dir, '/') = '\0';
	rmdir(dir);
	rmdir(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memfd_shmem),
		cmocka_unit_test(test_memfd_2m),
		cmocka_unit_test(test_memfd_1g),
		cmocka_unit_test(test_memfd_bad_args),
		cmocka_unit_test(test_fd_page_size),
		cmocka_unit_test_setup_teardown(test_hva_long_smaps_line, conv_env_setup,
						conv_env_teardown),
		cmocka_unit_test(test_hugetlbfs_absent),
		cmocka_unit_test(test_hugetlbfs_1g_absent),
		cmocka_unit_test_setup_teardown(test_hugetlbfs_create, mnt_setup, mnt_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
