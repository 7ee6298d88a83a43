// SPDX-License-Identifier: MIT
//! Backing helpers: memfds and hugetlbfs files with 4 KiB, 2 MiB or 1 GiB
//! pages, and the unit the kernel frees for an fd.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use cvmconv_sys as sys;

use crate::error::check;

fn owned(rc: i32) -> io::Result<OwnedFd> {
    let fd = check(rc)?;
    // SAFETY: the library returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `cvmconv_memfd_create()`: a memfd of `size` bytes (a multiple of
/// `page_size`: 4096 for shmem, 2 MiB or 1 GiB for `MFD_HUGETLB`).
/// Errors: `EINVAL`, `ENODEV` (no huge pages of that size), or the kernel's.
pub fn memfd_create(name: &str, size: u64, page_size: u64) -> io::Result<OwnedFd> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(22))?;
    // SAFETY: name is NUL-terminated and valid for the call.
    owned(unsafe {
        sys::cvmconv_memfd_create(name.as_ptr() as *const sys::c_char, size, page_size)
    })
}

/// `cvmconv_hugetlbfs_create()`: an unlinked file on a hugetlbfs mount with
/// `page_size` pages. Errors: `EINVAL`, `ENOENT` (no such mount), or the
/// kernel's.
pub fn hugetlbfs_create(size: u64, page_size: u64) -> io::Result<OwnedFd> {
    // SAFETY: plain values.
    owned(unsafe { sys::cvmconv_hugetlbfs_create(size, page_size) })
}

/// `cvmconv_hugetlbfs_mount_path()`: the mount used for `page_size`.
/// Errors: `ENOENT`, `ENAMETOOLONG`.
pub fn hugetlbfs_mount_path(page_size: u64) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: buf is valid for its length.
    check(unsafe {
        sys::cvmconv_hugetlbfs_mount_path(
            page_size,
            buf.as_mut_ptr() as *mut sys::c_char,
            buf.len(),
        )
    })?;
    // (CStr::from_bytes_until_nul is newer than Debian 12's Rust.)
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    Ok(PathBuf::from(OsStr::from_bytes(&buf[..end])))
}

/// `cvmconv_fd_page_size()`: the huge page size on hugetlbfs, else 4096.
/// Errors: `EBADF`, or fstatfs's.
pub fn fd_page_size(fd: &impl AsRawFd) -> io::Result<u64> {
    // SAFETY: plain values.
    let v = unsafe { sys::cvmconv_fd_page_size(fd.as_raw_fd()) };
    if v < 0 {
        Err(io::Error::from_raw_os_error(-v as i32))
    } else {
        Ok(v as u64)
    }
}

/// `cvmconv_version()`: the library's version string.
pub fn version() -> &'static str {
    // SAFETY: a static NUL-terminated ASCII string.
    unsafe { CStr::from_ptr(sys::cvmconv_version() as *const std::os::raw::c_char) }
        .to_str()
        .unwrap_or("?")
}
