/* SPDX-License-Identifier: MIT */
/*
 * Public helpers that create backings of a known page size: shmem and
 * MFD_HUGETLB memfds, files on a hugetlbfs mount, and the page size probe the
 * library itself uses to decide how a backing can be punched.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include "internal.h"
#include "cvmconv_config.h"

#ifdef CVMCONV_HAVE_LIBHUGETLBFS
#include <hugetlbfs.h>
#endif

/* include/uapi/linux/memfd.h: the huge page size is log2(size) stored at bit
 * 26 of the flags (asm-generic/hugetlb_encode.h). glibc's <sys/mman.h> has
 * MFD_HUGETLB but not the size encodings, and <linux/memfd.h> would redefine
 * glibc's MFD_* macros, so the two needed values are spelt out here. */
#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << MFD_HUGE_SHIFT)
#endif
#ifndef MFD_HUGE_1GB
#define MFD_HUGE_1GB (30U << MFD_HUGE_SHIFT)
#endif

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* A size that ftruncate can take and that is a whole number of pages. */
static bool size_ok(uint64_t size, uint64_t page_size)
{
	return size != 0 && size <= INT64_MAX && size % page_size == 0;
}

int cvmconv_memfd_create(const char *name, uint64_t size, uint64_t page_size)
{
	unsigned int flags = MFD_CLOEXEC;
	int fd;

	if (page_size == PAGE_4K)
		; /* plain shmem: punching frees 4 KiB pages */
	else if (page_size == SIZE_2M)
		flags |= MFD_HUGETLB | MFD_HUGE_2MB;
	else if (page_size == SIZE_1G)
		flags |= MFD_HUGETLB | MFD_HUGE_1GB;
	else
		return -EINVAL;
	if (!size_ok(size, page_size))
		return -EINVAL;

	fd = memfd_create(name ? name : "cvmconv", flags);
	if (fd < 0)
		return -errno;
	/* Size only: hugetlbfs reserves pages at mmap time, shmem on touch. */
	if (ftruncate(fd, (off_t)size) != 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/* "2M", "1024M", "1G", "2048K", "2097152": the forms hugetlbfs_show_options
 * (fs/hugetlbfs/inode.c) and mount(8) users write. 0 if unparsable. */
static uint64_t parse_size(const char *s, size_t n)
{
	uint64_t v = 0;
	size_t i = 0;

	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
		if (v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (i == 0)
		return 0;
	if (i < n) {
		unsigned int shift;

		switch (s[i]) {
		case 'k':
		case 'K':
			shift = 10;
			break;
		case 'm':
		case 'M':
			shift = 20;
			break;
		case 'g':
		case 'G':
			shift = 30;
			break;
		default:
			return 0;
		}
		if (i + 1 != n || v > (UINT64_MAX >> shift))
			return 0;
		v <<= shift;
	}
	return v;
}

/* Default huge page size: what a hugetlbfs mount without pagesize= uses. */
static uint64_t default_huge_page_size(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[128];
	unsigned long long kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Hugepagesize: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb << 10;
}

/* Undo the octal escapes (\040 space, \011 tab, \012 newline, \134
 * backslash) that show_mountinfo (fs/proc_namespace.c) writes, in place. */
static void unescape_path(char *s)
{
	char *out = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)(((s[1] - '0') << 6) | ((s[2] - '0') << 3) | (s[3] - '0'));
			s += 3;
		} else {
			*out++ = *s;
		}
	}
	*out = '\0';
}

/* Value of option @key ("pagesize") in a comma-separated list ("rw,pagesize=2M"):
 * pointer to it and its length in *n; NULL when absent. With @key "ro" and no
 * '=', a bare flag matches with *n = 0. */
static const char *find_option(const char *list, const char *key, size_t *n)
{
	size_t klen = strlen(key);

	for (const char *p = list;;) {
		size_t len = strcspn(p, ",");

		if (len >= klen && strncmp(p, key, klen) == 0) {
			if (len == klen) {
				*n = 0;
				return p + len;
			}
			if (p[klen] == '=') {
				*n = len - klen - 1;
				return p + klen + 1;
			}
		}
		if (p[len] == '\0')
			return NULL;
		p += len + 1;
	}
}

static bool has_flag(const char *list, const char *flag)
{
	size_t n;

	return find_option(list, flag, &n) && n == 0;
}

/* Page size from a hugetlbfs super options string ("rw,pagesize=2M,..."). */
static uint64_t mount_page_size(const char *super_opts, uint64_t default_size)
{
	size_t n;
	const char *v = find_option(super_opts, "pagesize", &n);

	return v ? parse_size(v, n) : default_size;
}

/*
 * First writable hugetlbfs mount with @page_size pages in
 * /proc/self/mountinfo. Line format (Documentation/filesystems/proc.rst):
 * id parent maj:min root mount-point mount-opts [optional...] - fstype source super-opts
 */
static int find_mount_in_mountinfo(uint64_t page_size, char *buf, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	uint64_t def = 0;
	bool def_read = false;
	int ret = -ENOENT;

	if (!f)
		return -ENOENT;
	while (getline(&line, &cap, f) > 0) {
		char *save = NULL, *tok, *mnt = NULL, *mnt_opts = NULL, *fstype = NULL;
		char *super_opts = NULL;
		bool after_sep = false;
		int field = 0, post = 0;
		uint64_t size;

		line[strcspn(line, "\n")] = '\0';
		for (tok = strtok_r(line, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
			field++;
			if (!after_sep) {
				if (field == 5)
					mnt = tok;
				else if (field == 6)
					mnt_opts = tok;
				else if (field > 6 && strcmp(tok, "-") == 0)
					after_sep = true;
				continue;
			}
			post++;
			if (post == 1)
				fstype = tok;
			else if (post == 3)
				super_opts = tok;
		}
		if (!mnt || !mnt_opts || !fstype || strcmp(fstype, "hugetlbfs") != 0)
			continue;
		if (has_flag(mnt_opts, "ro") || (super_opts && has_flag(super_opts, "ro")))
			continue;
		if (!def_read) {
			def = default_huge_page_size();
			def_read = true;
		}
		size = mount_page_size(super_opts ? super_opts : "", def);
		if (size != page_size)
			continue;
		unescape_path(mnt);
		if (strlen(mnt) >= len) {
			ret = -ENAMETOOLONG;
			continue; /* another mount may fit */
		}
		memcpy(buf, mnt, strlen(mnt) + 1);
		ret = 0;
		break;
	}
	free(line);
	fclose(f);
	return ret;
}

int cvmconv_hugetlbfs_mount_path(uint64_t page_size, char *buf, size_t len)
{
	int ret;

	if (!buf)
		return -EINVAL;
	if (!is_pow2(page_size) || page_size <= PAGE_4K)
		return -ENOENT; /* hugetlbfs has no such page size */
	/* mountinfo first: it is current (libhugetlbfs caches the mounts it
	 * saw when it was loaded) and asking libhugetlbfs about a size with
	 * no mount only makes it complain on stderr. */
	ret = find_mount_in_mountinfo(page_size, buf, len);
#ifdef CVMCONV_HAVE_LIBHUGETLBFS
	if (ret == 0 && page_size <= LONG_MAX) {
		/* A mount exists: let libhugetlbfs choose, so that an admin's
		 * HUGETLB_PATH choice is honoured; keep ours if it has none. */
		const char *p = hugetlbfs_find_path_for_size((long)page_size);

		if (p && strlen(p) < len)
			memcpy(buf, p, strlen(p) + 1);
	}
#endif
	return ret;
}

int cvmconv_hugetlbfs_create(uint64_t size, uint64_t page_size)
{
	char path[PATH_MAX];
	static const char tmpl[] = "/cvmconv.XXXXXX";
	struct statfs sfs;
	size_t n;
	int fd, ret;

	if (!is_pow2(page_size) || page_size <= PAGE_4K || !size_ok(size, page_size))
		return -EINVAL;
	ret = cvmconv_hugetlbfs_mount_path(page_size, path, sizeof(path) - (sizeof(tmpl) - 1));
	if (ret == -ENAMETOOLONG)
		return -ENOENT; /* no mount whose path we can use */
	if (ret)
		return ret;
	n = strlen(path);
	memcpy(path + n, tmpl, sizeof(tmpl));

	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* Unlinked at once: the memory belongs to the fd, and a crashed VMM
	 * leaves no file holding huge pages behind. */
	unlink(path);
	if (fstatfs(fd, &sfs) != 0) {
		ret = -errno;
		goto fail;
	}
	/* The mount table said so, but check what the kernel will punch in. */
	if ((unsigned long)sfs.f_type != (unsigned long)HUGETLBFS_MAGIC ||
	    (uint64_t)sfs.f_bsize != page_size) {
		ret = -ENOENT;
		goto fail;
	}
	if (ftruncate(fd, (off_t)size) != 0) {
		ret = -errno;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return ret;
}

int64_t cvmconv_fd_page_size(int fd)
{
	struct statfs sfs;

	if (fstatfs(fd, &sfs) != 0)
		return -errno;
	/* hugetlbfs (and MFD_HUGETLB memfds, which live on an internal
	 * hugetlbfs mount) report their huge page size as the block size and
	 * free memory only in whole huge pages: hugetlbfs_punch_hole zeroes
	 * partial pages instead (fs/hugetlbfs/inode.c). */
	if ((unsigned long)sfs.f_type == (unsigned long)HUGETLBFS_MAGIC)
		return (int64_t)sfs.f_bsize;
	return (int64_t)PAGE_4K;
}

const char *cvmconv_version(void)
{
	return CVMCONV_VERSION_STRING;
}
