/* SPDX-License-Identifier: MIT */
/*
 * The backing helpers: memfds with 4 KiB, 2 MiB or 1 GiB pages, files on a
 * hugetlbfs mount, and the page size the kernel frees for an fd. Huge
 * pages are optional on a machine: every call here may fail, and says why.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cvmconv.h"

#define MiB (1024 * 1024ULL)
#define GiB (1024 * MiB)

static void try_memfd(uint64_t page_size)
{
	int fd = cvmconv_memfd_create("backing", 2 * page_size, page_size);

	if (fd < 0) {
		printf("memfd with %" PRIu64 " KiB pages: %s\n", page_size / 1024, strerror(-fd));
		return;
	}
	printf("memfd with %" PRIu64 " KiB pages: fd %d, cvmconv_fd_page_size %" PRId64 "\n",
	       page_size / 1024, fd, cvmconv_fd_page_size(fd));
	close(fd);
}

int main(void)
{
	char mnt[256];
	int fd, ret;

	try_memfd(4096);
	try_memfd(2 * MiB); /* MFD_HUGETLB: no huge page is taken until mmap or fallocate */
	try_memfd(GiB);

	ret = cvmconv_hugetlbfs_mount_path(2 * MiB, mnt, sizeof(mnt));
	if (ret)
		printf("hugetlbfs mount for 2 MiB pages: %s\n", strerror(-ret));
	else
		printf("hugetlbfs mount for 2 MiB pages: %s\n", mnt);
	fd = cvmconv_hugetlbfs_create(4 * MiB, 2 * MiB);
	if (fd >= 0) {
		printf("hugetlbfs file: fd %d, page size %" PRId64 "\n", fd,
		       cvmconv_fd_page_size(fd));
		close(fd);
	} else {
		printf("hugetlbfs file: %s\n", strerror(-fd));
	}

	/* wrong arguments are refused, not guessed at */
	printf("size not a multiple of the page size: %s\n",
	       strerror(-cvmconv_memfd_create(NULL, 3 * MiB, 2 * MiB)));
	printf("cvmconv_fd_page_size(-1): %s\n", strerror((int)-cvmconv_fd_page_size(-1)));
	return 0;
}
