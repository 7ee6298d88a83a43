// SPDX-License-Identifier: MIT
//! Safe Rust API of libcvmconv: the host half of private/shared memory
//! conversions for confidential VMs whose private memory lives in
//! guest_memfd. A VMM creates one [`Converter`] per VM, registers each guest
//! memory [`Region`] with its backings, and passes every vCPU exit to
//! [`Converter::handle_exit`]; the library decodes `KVM_HC_MAP_GPA_RANGE`
//! and `KVM_EXIT_MEMORY_FAULT`, updates KVM's memory attributes, punches the
//! stale side (whole huge pages on huge-page backings) and answers the
//! guest. The semantics are the C library's: `man cvmconv`,
//! `docs/semantics.md`.
//!
//! * One owning [`Converter`], `Send + Sync`, freed on drop.
//! * Errors are `std::io::Error` carrying the library's errno.
//! * Kernel calls can be replaced by closures (tests, other hypervisors),
//!   listeners are a [`Listener`] trait; panics in them never cross the FFI
//!   boundary: the library sees an error and rolls back, and the panic
//!   resumes on the calling thread once it has.
//! * std only.
//!
//! A guest converting 2 MiB to private and back, with attribute updates
//! going to a closure instead of a VM (a real VMM passes its VM fd with
//! [`ConverterBuilder::vm_fd`]):
//!
//! ```
//! use cvmconv::{Converter, Region, MAP_GPA_RANGE_ENCRYPTED};
//! use std::sync::{Arc, Mutex};
//!
//! let calls = Arc::new(Mutex::new(Vec::new()));
//! let seen = calls.clone();
//! let conv = Converter::builder()
//!     .set_memory_attributes(move |gpa, size, attrs| {
//!         seen.lock().unwrap().push((gpa, size, attrs));
//!         Ok(())
//!     })
//!     .build()?;
//! let shared = cvmconv::memfd_create("ram", 4 << 20, 4096)?;
//! let private = cvmconv::memfd_create("gmem-stand-in", 4 << 20, 4096)?;
//! conv.add_region(&Region::new(0, 4 << 20).shared_fd(&shared, 0).private_fd(&private, 0))?;
//!
//! // KVM_HC_MAP_GPA_RANGE(gpa 2 MiB, 512 pages, encrypted): answered 0
//! assert_eq!(conv.map_gpa_range(2 << 20, 512, MAP_GPA_RANGE_ENCRYPTED)?, 0);
//! assert!(conv.is_private(2 << 20)?);
//! // a range outside every region is refused, nothing changes
//! assert_eq!(cvmconv::guest_error(conv.map_gpa_range(64 << 20, 1, 0)?), Some(cvmconv::KVM_EINVAL));
//! assert_eq!(*calls.lock().unwrap(), vec![(2 << 20, 2 << 20, cvmconv::ATTR_PRIVATE)]);
//! let st = conv.stats()?;
//! assert_eq!((st.exits, st.rejected, st.to_private_bytes), (2, 1, 2 << 20));
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]

mod backing;
mod converter;
mod error;
mod listener;
mod panic;
mod region;
mod stats;

pub use cvmconv_sys as sys;

pub use backing::{fd_page_size, hugetlbfs_create, hugetlbfs_mount_path, memfd_create, version};
pub use converter::{Converter, ConverterBuilder, ExitAction, Level, Unaligned};
pub use listener::{Listener, ListenerId, Veto};
pub use region::Region;
pub use stats::Stats;

pub use sys::{
    CVMCONV_ATTR_PRIVATE as ATTR_PRIVATE, CVMCONV_BATCH_MAX as BATCH_MAX,
    CVMCONV_DEFER_RANGES as DEFER_RANGES, CVMCONV_KVM_E2BIG as KVM_E2BIG,
    CVMCONV_KVM_EFAULT as KVM_EFAULT, CVMCONV_KVM_EINVAL as KVM_EINVAL,
    CVMCONV_KVM_ENOSYS as KVM_ENOSYS, CVMCONV_KVM_EOPNOTSUPP as KVM_EOPNOTSUPP,
    CVMCONV_KVM_EPERM as KVM_EPERM, CVMCONV_MAP_GPA_RANGE_ENCRYPTED as MAP_GPA_RANGE_ENCRYPTED,
    CVMCONV_MAP_GPA_RANGE_PAGE_SZ_1G as MAP_GPA_RANGE_PAGE_SZ_1G,
    CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M as MAP_GPA_RANGE_PAGE_SZ_2M,
    CVMCONV_MAP_GPA_RANGE_PAGE_SZ_4K as MAP_GPA_RANGE_PAGE_SZ_4K,
    CVMCONV_MAX_LISTENERS as MAX_LISTENERS,
};

/// The KVM error code in a guest answer (`hypercall.ret`): `None` for 0
/// (success), else the positive code (`KVM_EINVAL`, `KVM_EPERM`, ...).
pub fn guest_error(hc_ret: u64) -> Option<u64> {
    if hc_ret == 0 {
        None
    } else {
        Some(hc_ret.wrapping_neg())
    }
}

/// One range of a batch (`struct cvmconv_range`, same layout).
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversion(sys::cvmconv_range);

impl Conversion {
    /// `[gpa, gpa + size)` to private or to shared (4 KiB aligned).
    pub fn new(gpa: u64, size: u64, to_private: bool) -> Conversion {
        Conversion(sys::cvmconv_range {
            gpa,
            size,
            to_private: to_private as u32,
            reserved: 0,
        })
    }

    pub fn to_private(gpa: u64, size: u64) -> Conversion {
        Conversion::new(gpa, size, true)
    }

    pub fn to_shared(gpa: u64, size: u64) -> Conversion {
        Conversion::new(gpa, size, false)
    }

    pub fn gpa(&self) -> u64 {
        self.0.gpa
    }

    pub fn size(&self) -> u64 {
        self.0.size
    }

    pub fn is_to_private(&self) -> bool {
        self.0.to_private == 1
    }
}

/// A maximal run of pages in one state, from [`Converter::for_each_range`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub gpa: u64,
    pub size: u64,
    pub private: bool,
}
