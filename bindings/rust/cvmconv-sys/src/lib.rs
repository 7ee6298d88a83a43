// SPDX-License-Identifier: MIT
//! Raw FFI declarations of libcvmconv, one for one with `include/cvmconv.h`:
//! the `#[repr(C)]` structs, the constants and the functions. Everything here
//! is `unsafe` to use and documented in the header (and in `man cvmconv_*`);
//! the `cvmconv` crate is the safe API over it.
//!
//! The layout of every struct and the value of every constant are checked
//! against the C compiler's own numbers by `tests/layout.rs`, and every
//! function the header declares must be declared here for that test to build.
#![allow(non_camel_case_types)]
#![no_std]

use core::ffi::c_void;

/// C's `int` (`core::ffi::c_int` is newer than the Rust in Debian 12).
pub type c_int = i32;
/// C's `char`.
pub type c_char = i8;

pub const CVMCONV_VERSION_MAJOR: u32 = 0;
pub const CVMCONV_VERSION_MINOR: u32 = 1;
pub const CVMCONV_VERSION_PATCH: u32 = 0;
pub const CVMCONV_VERSION_NUMBER: u32 =
    CVMCONV_VERSION_MAJOR * 10000 + CVMCONV_VERSION_MINOR * 100 + CVMCONV_VERSION_PATCH;
pub const CVMCONV_VERSION_STRING: &str = "0.1.0";

/// KVM hypercall error codes as the guest sees them
/// (include/uapi/linux/kvm_para.h); `hypercall.ret` holds their negation.
pub const CVMCONV_KVM_EPERM: u64 = 1;
pub const CVMCONV_KVM_E2BIG: u64 = 7;
pub const CVMCONV_KVM_EFAULT: u64 = 14;
pub const CVMCONV_KVM_EINVAL: u64 = 22;
pub const CVMCONV_KVM_EOPNOTSUPP: u64 = 95;
pub const CVMCONV_KVM_ENOSYS: u64 = 1000;

/// `KVM_HC_MAP_GPA_RANGE` attribute bits (`args[2]`).
pub const CVMCONV_MAP_GPA_RANGE_PAGE_SZ_MASK: u64 = 3;
pub const CVMCONV_MAP_GPA_RANGE_PAGE_SZ_4K: u64 = 0;
pub const CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M: u64 = 1;
pub const CVMCONV_MAP_GPA_RANGE_PAGE_SZ_1G: u64 = 2;
pub const CVMCONV_MAP_GPA_RANGE_ENCRYPTED: u64 = 1 << 4;

/// `KVM_MEMORY_ATTRIBUTE_PRIVATE`.
pub const CVMCONV_ATTR_PRIVATE: u64 = 1 << 3;

/// `enum cvmconv_unaligned`.
pub type cvmconv_unaligned = u32;
pub const CVMCONV_UNALIGNED_ALLOW: cvmconv_unaligned = 0;
pub const CVMCONV_UNALIGNED_LOG: cvmconv_unaligned = 1;
pub const CVMCONV_UNALIGNED_REJECT: cvmconv_unaligned = 2;

/// `cvmconv_config.flags`.
pub const CVMCONV_DEFER_PUNCH: u32 = 1 << 0;
pub const CVMCONV_DEFER_RANGES: u32 = 32;
pub const CVMCONV_GMEM_ATTRIBUTES: u32 = 1 << 4;
pub const CVMCONV_INPLACE_RETRIES: u32 = 4;
pub const CVMCONV_INPLACE_RETRIES_MAX: u32 = 64;

/// `cvmconv_region.flags`.
pub const CVMCONV_REGION_PRIVATE: u32 = 1 << 0;
pub const CVMCONV_REGION_ATTRS_ONLY: u32 = 1 << 1;
pub const CVMCONV_REGION_ALLOC_SHARED: u32 = 1 << 2;
pub const CVMCONV_REGION_INPLACE: u32 = 1 << 3;

/// `cvmconv_region.content_mode` (`KVM_SET_MEMORY_ATTRIBUTES2` flags).
pub const CVMCONV_CONTENT_UNSPECIFIED: u64 = 0;
pub const CVMCONV_CONTENT_ZERO: u64 = 1 << 0;
pub const CVMCONV_CONTENT_PRESERVE: u64 = 1 << 1;

/// `cvmconv_listener.flags`.
pub const CVMCONV_LISTENER_REPLAY: u32 = 1 << 0;
pub const CVMCONV_MAX_LISTENERS: u32 = 8;

/// `cvmconv_convert_batch()` flags and limit.
pub const CVMCONV_BATCH_GUEST: u32 = 1 << 0;
pub const CVMCONV_BATCH_MAX: usize = 4096;

/// The opaque context (`struct cvmconv`).
#[repr(C)]
pub struct cvmconv {
    _private: [u8; 0],
}

/// The vCPU's `struct kvm_run` (`<linux/kvm.h>`), only ever behind a pointer.
/// Cast the pointer a KVM crate hands out (kvm-bindings' `kvm_run`, say).
#[repr(C)]
pub struct kvm_run {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct cvmconv_ops {
    pub set_memory_attributes: Option<
        unsafe extern "C" fn(opaque: *mut c_void, gpa: u64, size: u64, attributes: u64) -> c_int,
    >,
    pub punch: Option<
        unsafe extern "C" fn(opaque: *mut c_void, fd: c_int, offset: u64, len: u64) -> c_int,
    >,
    pub discard_hva:
        Option<unsafe extern "C" fn(opaque: *mut c_void, hva: *mut c_void, len: u64) -> c_int>,
    /// In-place regions: `KVM_SET_MEMORY_ATTRIBUTES2` on the guest_memfd.
    pub set_gmem_attributes: Option<
        unsafe extern "C" fn(
            opaque: *mut c_void,
            gmem_fd: c_int,
            offset: u64,
            size: u64,
            attributes: u64,
            flags: u64,
            error_offset: *mut u64,
        ) -> c_int,
    >,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cvmconv_config {
    pub sz: usize,
    pub vm_fd: c_int,
    pub granule: u64,
    pub unaligned: cvmconv_unaligned,
    pub ops: *const cvmconv_ops,
    pub ops_opaque: *mut c_void,
    pub log: Option<unsafe extern "C" fn(opaque: *mut c_void, level: c_int, msg: *const c_char)>,
    pub log_opaque: *mut c_void,
    pub flags: u32,
    pub inplace_retries: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cvmconv_region {
    pub sz: usize,
    pub gpa: u64,
    pub size: u64,
    pub private_fd: c_int,
    pub private_offset: u64,
    pub shared_fd: c_int,
    pub shared_offset: u64,
    pub shared_hva: *mut c_void,
    pub flags: u32,
    pub unaligned: c_int,
    pub content_mode: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cvmconv_listener {
    pub sz: usize,
    pub before: Option<
        unsafe extern "C" fn(opaque: *mut c_void, gpa: u64, size: u64, to_private: bool) -> c_int,
    >,
    pub after: Option<
        unsafe extern "C" fn(
            opaque: *mut c_void,
            gpa: u64,
            size: u64,
            to_private: bool,
            result: c_int,
        ),
    >,
    pub opaque: *mut c_void,
    pub flags: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct cvmconv_range {
    pub gpa: u64,
    pub size: u64,
    pub to_private: u32,
    pub reserved: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct cvmconv_stats {
    pub sz: usize,
    pub exits: u64,
    pub rejected: u64,
    pub unaligned: u64,
    pub to_private_bytes: u64,
    pub to_shared_bytes: u64,
    pub attr_updates: u64,
    pub punches: u64,
    pub punch_failures: u64,
    pub double_alloc_bytes: u64,
    pub double_alloc_peak_bytes: u64,
    pub mixed_extents: u64,
    pub extents: u64,
    pub guest_bytes: u64,
    pub huge_mappable_bytes: u64,
    pub punch_pending_bytes: u64,
    pub tracker_bytes: u64,
    pub log_suppressed: u64,
    pub broken: u64,
    pub bookkeeping_steps: u64,
    pub shared_alloc_failures: u64,
    pub gmem_busy_retries: u64,
    pub gmem_busy_failures: u64,
}

extern "C" {
    pub fn cvmconv_create(cfg: *const cvmconv_config, out: *mut *mut cvmconv) -> c_int;
    pub fn cvmconv_destroy(c: *mut cvmconv);
    pub fn cvmconv_add_region(c: *mut cvmconv, r: *const cvmconv_region) -> c_int;
    pub fn cvmconv_remove_region(c: *mut cvmconv, gpa: u64) -> c_int;
    pub fn cvmconv_map_gpa_range(
        c: *mut cvmconv,
        gpa: u64,
        npages: u64,
        attrs: u64,
        hc_ret: *mut u64,
    ) -> c_int;
    pub fn cvmconv_handle_exit(c: *mut cvmconv, run: *mut kvm_run) -> c_int;
    pub fn cvmconv_convert(c: *mut cvmconv, gpa: u64, size: u64, to_private: bool) -> c_int;
    pub fn cvmconv_flush(c: *mut cvmconv) -> c_int;
    pub fn cvmconv_get_poll_fd(c: *mut cvmconv) -> c_int;
    pub fn cvmconv_is_private(c: *mut cvmconv, gpa: u64) -> c_int;
    pub fn cvmconv_for_each_range(
        c: *mut cvmconv,
        gpa: u64,
        size: u64,
        cb: Option<
            unsafe extern "C" fn(
                opaque: *mut c_void,
                gpa: u64,
                size: u64,
                is_private: bool,
            ) -> c_int,
        >,
        opaque: *mut c_void,
    ) -> c_int;
    pub fn cvmconv_add_listener(c: *mut cvmconv, l: *const cvmconv_listener) -> c_int;
    pub fn cvmconv_remove_listener(c: *mut cvmconv, id: c_int) -> c_int;
    pub fn cvmconv_convert_batch(
        c: *mut cvmconv,
        ranges: *const cvmconv_range,
        n: usize,
        flags: u32,
        hc_ret: *mut u64,
    ) -> c_int;
    pub fn cvmconv_get_stats(c: *mut cvmconv, st: *mut cvmconv_stats) -> c_int;
    pub fn cvmconv_stats_json(c: *mut cvmconv, buf: *mut c_char, len: usize) -> c_int;
    pub fn cvmconv_memfd_create(name: *const c_char, size: u64, page_size: u64) -> c_int;
    pub fn cvmconv_hugetlbfs_create(size: u64, page_size: u64) -> c_int;
    pub fn cvmconv_hugetlbfs_mount_path(page_size: u64, buf: *mut c_char, len: usize) -> c_int;
    pub fn cvmconv_fd_page_size(fd: c_int) -> i64;
    pub fn cvmconv_version() -> *const c_char;
}

/// KVM UAPI numbers a VMM loop needs around `cvmconv_handle_exit()`
/// (`include/uapi/linux/kvm.h`, `include/uapi/linux/kvm_para.h`), for Rust
/// VMMs whose KVM bindings predate guest_memfd. Checked against the C
/// headers by `tests/layout.rs` where the system headers have them.
pub mod kvm {
    /// `kvm_run.exit_reason` for a hypercall exit.
    pub const KVM_EXIT_HYPERCALL: u32 = 3;
    /// `kvm_run.exit_reason` for a private/shared mismatch (Linux 6.8+).
    pub const KVM_EXIT_MEMORY_FAULT: u32 = 39;
    /// `kvm_run.memory_fault.flags`: the guest wanted private memory.
    pub const KVM_MEMORY_EXIT_FLAG_PRIVATE: u64 = 1 << 3;
    /// `kvm_run.hypercall.nr` of a conversion request.
    pub const KVM_HC_MAP_GPA_RANGE: u64 = 12;
    /// `KVM_ENABLE_CAP` capability that makes KVM exit for the hypercalls
    /// in `args[0]` (set `1 << KVM_HC_MAP_GPA_RANGE`).
    pub const KVM_CAP_EXIT_HYPERCALL: u32 = 201;
    /// Byte offset of `exit_reason` (u32) in `struct kvm_run`.
    pub const KVM_RUN_EXIT_REASON: usize = 8;
    /// Byte offset of the exit union (`hypercall`, `memory_fault`, ...).
    pub const KVM_RUN_EXIT_UNION: usize = 32;
    /// Byte offsets of `hypercall.nr`, `.args[0]`, `.ret` and `.flags`
    /// (`longmode` in older headers).
    pub const KVM_RUN_HYPERCALL_NR: usize = 32;
    pub const KVM_RUN_HYPERCALL_ARGS: usize = 40;
    pub const KVM_RUN_HYPERCALL_RET: usize = 88;
    pub const KVM_RUN_HYPERCALL_FLAGS: usize = 96;
    /// Byte offsets of `memory_fault.flags`, `.gpa` and `.size`.
    pub const KVM_RUN_MEMORY_FAULT_FLAGS: usize = 32;
    pub const KVM_RUN_MEMORY_FAULT_GPA: usize = 40;
    pub const KVM_RUN_MEMORY_FAULT_SIZE: usize = 48;
}
