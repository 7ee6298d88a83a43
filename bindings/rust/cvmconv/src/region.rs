// SPDX-License-Identifier: MIT
//! [`Region`]: a range of guest memory and its backings
//! (`struct cvmconv_region`).

use std::os::raw::c_void;
use std::os::unix::io::AsRawFd;

use cvmconv_sys as sys;

use crate::Unaligned;

/// Guest memory `[gpa, gpa + size)` with its private side (a guest_memfd)
/// and its shared side (a memfd, hugetlbfs or tmpfs file, or a host
/// mapping). The fds are borrowed: they must stay open while the region is
/// registered (the library punches holes in them).
///
/// ```
/// # use cvmconv::Region;
/// let shared = cvmconv::memfd_create("guest-ram", 4 << 20, 4096).unwrap();
/// let region = Region::new(0, 4 << 20).shared_fd(&shared, 0).attrs_only();
/// # let _ = region;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Region {
    raw: sys::cvmconv_region,
}

impl Region {
    /// A region with no backing, shared at start, the context's policy.
    /// `gpa` and `size` must be 4 KiB aligned, `size > 0`.
    pub fn new(gpa: u64, size: u64) -> Region {
        Region {
            raw: sys::cvmconv_region {
                sz: std::mem::size_of::<sys::cvmconv_region>(),
                gpa,
                size,
                private_fd: -1,
                private_offset: 0,
                shared_fd: -1,
                shared_offset: 0,
                shared_hva: std::ptr::null_mut(),
                flags: 0,
                unaligned: -1,
                content_mode: 0,
            },
        }
    }

    /// The private side: a guest_memfd at `offset` (4 KiB aligned).
    pub fn private_fd(mut self, fd: &impl AsRawFd, offset: u64) -> Region {
        self.raw.private_fd = fd.as_raw_fd();
        self.raw.private_offset = offset;
        self
    }

    /// The shared side: a file at `offset`, punched with fallocate.
    pub fn shared_fd(mut self, fd: &impl AsRawFd, offset: u64) -> Region {
        self.raw.shared_fd = fd.as_raw_fd();
        self.raw.shared_offset = offset;
        self
    }

    /// The host mapping of the shared side; without a shared fd the library
    /// discards stale memory there with `madvise(MADV_REMOVE)`.
    ///
    /// # Safety
    ///
    /// `hva` must map the region's shared memory, `size` bytes, for as long
    /// as the region is registered: the library discards the contents of
    /// stale pages there, and nothing else may rely on them.
    pub unsafe fn shared_hva(mut self, hva: *mut c_void) -> Region {
        self.raw.shared_hva = hva;
        self
    }

    /// `CVMCONV_REGION_PRIVATE`: the region starts private (one attribute
    /// update at registration).
    pub fn start_private(mut self) -> Region {
        self.raw.flags |= sys::CVMCONV_REGION_PRIVATE;
        self
    }

    /// `CVMCONV_REGION_ATTRS_ONLY`: track attributes without a private
    /// backing.
    pub fn attrs_only(mut self) -> Region {
        self.raw.flags |= sys::CVMCONV_REGION_ATTRS_ONLY;
        self
    }

    /// `CVMCONV_REGION_ALLOC_SHARED`: allocate the shared side of pages the
    /// moment they turn shared; a failed allocation (an empty hugetlb pool)
    /// rolls the request back instead of a SIGBUS later.
    pub fn alloc_shared(mut self) -> Region {
        self.raw.flags |= sys::CVMCONV_REGION_ALLOC_SHARED;
        self
    }

    /// This region's unaligned policy instead of the context's.
    pub fn unaligned(mut self, policy: Unaligned) -> Region {
        self.raw.unaligned = policy.raw() as i32;
        self
    }

    /// The C struct.
    pub fn raw(&self) -> &sys::cvmconv_region {
        &self.raw
    }
}
