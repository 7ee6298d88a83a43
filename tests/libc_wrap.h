/* SPDX-License-Identifier: MIT */
/* The libc calls a test or fuzz executable intercepts with the linker
 * (-Wl,--wrap=NAME): the library's call to NAME lands in __wrap_NAME, which
 * reaches libc's through __real_NAME. Used by tests/fault_injection/ and
 * fuzz/fuzz_exits_fast_*.c; each executable defines the __wrap_ functions of
 * the calls it wraps. */
#ifndef CVMCONV_TEST_LIBC_WRAP_H
#define CVMCONV_TEST_LIBC_WRAP_H

#include <stddef.h>
#include <sys/types.h>

/* the kernel calls of src/kvm.c's default ops */
int __real_ioctl(int fd, unsigned long req, ...);
int __real_fallocate(int fd, int mode, off_t off, off_t len);
int __real_madvise(void *addr, size_t len, int advice);
int __wrap_ioctl(int fd, unsigned long req, ...);
int __wrap_fallocate(int fd, int mode, off_t off, off_t len);
int __wrap_madvise(void *addr, size_t len, int advice);

/* the allocators */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);

#endif
