// SPDX-License-Identifier: MIT
//! Every FFI struct's size, alignment and field offsets, every constant, and
//! the KVM UAPI numbers of `cvmconv_sys::kvm`, against what the C compiler
//! says for `include/cvmconv.h` (and `<linux/kvm.h>` where present). The
//! numbers come from a C program that build.rs compiles and runs.

#[allow(dead_code)]
mod c_layout {
    include!(concat!(env!("OUT_DIR"), "/c_layout.rs"));
}

/// Offset of `$field` in `$ty` without a reference to uninitialised memory
/// (`core::mem::offset_of!` is newer than Debian 12's Rust).
macro_rules! field_offset {
    ($ty:path, $field:ident) => {{
        let u = std::mem::MaybeUninit::<$ty>::uninit();
        let base = u.as_ptr();
        // SAFETY: only the address of the field is taken, nothing is read.
        let f = unsafe { std::ptr::addr_of!((*base).$field) };
        (f as usize - base as usize) as u64
    }};
}

/// Size of `$field` in `$ty`, from a zeroed value (every FFI struct is
/// valid all-zero: integers, null pointers, `None` function pointers).
macro_rules! field_size {
    ($ty:path, $field:ident) => {{
        // SAFETY: all-zero is a valid value of every FFI struct.
        let v: $ty = unsafe { std::mem::zeroed() };
        std::mem::size_of_val(&v.$field) as u64
    }};
}

include!(concat!(env!("OUT_DIR"), "/checks.rs"));
include!(concat!(env!("OUT_DIR"), "/functions.rs"));

#[test]
fn structs_and_constants_match_the_c_compiler() {
    assert!(
        c_layout::AVAILABLE.is_empty(),
        "no C layout to compare with: {}",
        c_layout::AVAILABLE
    );
    let checks = layout_checks();
    let bad: Vec<_> = checks.iter().filter(|(_, rust, c)| rust != c).collect();
    for (what, rust, c) in &bad {
        eprintln!("MISMATCH {what}: Rust {rust}, C {c}");
    }
    assert!(
        bad.is_empty(),
        "{} of {} layout checks differ",
        bad.len(),
        checks.len()
    );
    println!(
        "{} sizes, alignments, offsets and constants match the C compiler",
        checks.len()
    );
}

#[test]
fn kvm_numbers_match_the_system_headers() {
    use cvmconv_sys::kvm::*;
    assert!(
        c_layout::AVAILABLE.is_empty(),
        "no C layout: {}",
        c_layout::AVAILABLE
    );
    // The exit union and the hypercall fields are in every <linux/kvm.h>.
    assert!(
        c_layout::KVM.len() >= 7,
        "no <linux/kvm.h> numbers: {:?}",
        c_layout::KVM
    );
    for (name, c) in c_layout::KVM {
        let rust = match *name {
            "KVM_EXIT_HYPERCALL" => KVM_EXIT_HYPERCALL as u64,
            "KVM_EXIT_MEMORY_FAULT" => KVM_EXIT_MEMORY_FAULT as u64,
            "KVM_MEMORY_EXIT_FLAG_PRIVATE" => KVM_MEMORY_EXIT_FLAG_PRIVATE,
            "KVM_HC_MAP_GPA_RANGE" => KVM_HC_MAP_GPA_RANGE,
            "KVM_CAP_EXIT_HYPERCALL" => KVM_CAP_EXIT_HYPERCALL as u64,
            "KVM_RUN_EXIT_REASON" => KVM_RUN_EXIT_REASON as u64,
            "KVM_RUN_EXIT_UNION" => KVM_RUN_EXIT_UNION as u64,
            "KVM_RUN_HYPERCALL_NR" => KVM_RUN_HYPERCALL_NR as u64,
            "KVM_RUN_HYPERCALL_ARGS" => KVM_RUN_HYPERCALL_ARGS as u64,
            "KVM_RUN_HYPERCALL_RET" => KVM_RUN_HYPERCALL_RET as u64,
            "KVM_RUN_HYPERCALL_FLAGS" => KVM_RUN_HYPERCALL_FLAGS as u64,
            "KVM_RUN_MEMORY_FAULT_FLAGS" => KVM_RUN_MEMORY_FAULT_FLAGS as u64,
            "KVM_RUN_MEMORY_FAULT_GPA" => KVM_RUN_MEMORY_FAULT_GPA as u64,
            "KVM_RUN_MEMORY_FAULT_SIZE" => KVM_RUN_MEMORY_FAULT_SIZE as u64,
            other => panic!("the probe printed {other}, which the test does not know"),
        };
        assert_eq!(rust, *c, "{name}: Rust {rust}, <linux/kvm.h> {c}");
    }
    println!("{} KVM numbers match <linux/kvm.h>", c_layout::KVM.len());
}

#[test]
fn every_header_function_is_declared_and_linked() {
    let fns = header_functions();
    // 21 today; a header that lost functions would show here.
    assert!(
        fns.len() >= 21,
        "only {} functions found in the header",
        fns.len()
    );
    for (name, addr) in &fns {
        assert_ne!(*addr, 0, "{name} has no address");
    }
    // SAFETY: cvmconv_version() returns a static NUL-terminated string.
    let v = unsafe { std::ffi::CStr::from_ptr(cvmconv_sys::cvmconv_version()) };
    assert_eq!(v.to_str().unwrap(), cvmconv_sys::CVMCONV_VERSION_STRING);
    println!(
        "{} functions of include/cvmconv.h declared and linked",
        fns.len()
    );
}
