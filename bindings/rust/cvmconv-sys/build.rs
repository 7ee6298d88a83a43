// SPDX-License-Identifier: MIT
//! Finds libcvmconv and its header, tells rustc how to link it, and asks the
//! C compiler for the layout of every FFI struct and the value of every
//! constant of `include/cvmconv.h` (written to `$OUT_DIR/c_layout.rs`, which
//! `tests/layout.rs` compares with the Rust declarations).
//!
//! Where the library comes from, first match wins:
//! 1. `CVMCONV_LIB_DIR` (and `CVMCONV_INCLUDE_DIR`, else the in-tree header):
//!    what the CMake build's `rust_cargo_test` test sets;
//! 2. the in-tree CMake build, `build/` at the top of the repository
//!    (`./build.sh test` or `cmake -S . -B build && cmake --build build`);
//! 3. an installed library, through `pkg-config cvmconv`.
//!
//! Only std: no crate from a registry.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Struct name, then its fields as C spells them (the Rust fields are named
/// the same).
const STRUCTS: &[(&str, &[&str])] = &[
    (
        "cvmconv_ops",
        &[
            "set_memory_attributes",
            "punch",
            "discard_hva",
            "set_gmem_attributes",
        ],
    ),
    (
        "cvmconv_config",
        &[
            "sz",
            "vm_fd",
            "granule",
            "unaligned",
            "ops",
            "ops_opaque",
            "log",
            "log_opaque",
            "flags",
            "inplace_retries",
        ],
    ),
    (
        "cvmconv_region",
        &[
            "sz",
            "gpa",
            "size",
            "private_fd",
            "private_offset",
            "shared_fd",
            "shared_offset",
            "shared_hva",
            "flags",
            "unaligned",
            "content_mode",
        ],
    ),
    (
        "cvmconv_listener",
        &["sz", "before", "after", "opaque", "flags"],
    ),
    ("cvmconv_range", &["gpa", "size", "to_private", "reserved"]),
    (
        "cvmconv_stats",
        &[
            "sz",
            "exits",
            "rejected",
            "unaligned",
            "to_private_bytes",
            "to_shared_bytes",
            "attr_updates",
            "punches",
            "punch_failures",
            "double_alloc_bytes",
            "double_alloc_peak_bytes",
            "mixed_extents",
            "extents",
            "guest_bytes",
            "huge_mappable_bytes",
            "punch_pending_bytes",
            "tracker_bytes",
            "log_suppressed",
            "broken",
            "bookkeeping_steps",
            "shared_alloc_failures",
            "gmem_busy_retries",
            "gmem_busy_failures",
        ],
    ),
];

/// Every constant of the header the crate mirrors.
const CONSTANTS: &[&str] = &[
    "CVMCONV_VERSION_MAJOR",
    "CVMCONV_VERSION_MINOR",
    "CVMCONV_VERSION_PATCH",
    "CVMCONV_VERSION_NUMBER",
    "CVMCONV_KVM_EPERM",
    "CVMCONV_KVM_E2BIG",
    "CVMCONV_KVM_EFAULT",
    "CVMCONV_KVM_EINVAL",
    "CVMCONV_KVM_EOPNOTSUPP",
    "CVMCONV_KVM_ENOSYS",
    "CVMCONV_MAP_GPA_RANGE_PAGE_SZ_MASK",
    "CVMCONV_MAP_GPA_RANGE_PAGE_SZ_4K",
    "CVMCONV_MAP_GPA_RANGE_PAGE_SZ_2M",
    "CVMCONV_MAP_GPA_RANGE_PAGE_SZ_1G",
    "CVMCONV_MAP_GPA_RANGE_ENCRYPTED",
    "CVMCONV_ATTR_PRIVATE",
    "CVMCONV_UNALIGNED_ALLOW",
    "CVMCONV_UNALIGNED_LOG",
    "CVMCONV_UNALIGNED_REJECT",
    "CVMCONV_DEFER_PUNCH",
    "CVMCONV_DEFER_RANGES",
    "CVMCONV_GMEM_ATTRIBUTES",
    "CVMCONV_INPLACE_RETRIES",
    "CVMCONV_INPLACE_RETRIES_MAX",
    "CVMCONV_REGION_PRIVATE",
    "CVMCONV_REGION_ATTRS_ONLY",
    "CVMCONV_REGION_ALLOC_SHARED",
    "CVMCONV_REGION_INPLACE",
    "CVMCONV_CONTENT_UNSPECIFIED",
    "CVMCONV_CONTENT_ZERO",
    "CVMCONV_CONTENT_PRESERVE",
    "CVMCONV_LISTENER_REPLAY",
    "CVMCONV_MAX_LISTENERS",
    "CVMCONV_BATCH_GUEST",
    "CVMCONV_BATCH_MAX",
];

/// The `kvm` module's numbers: (Rust name, C expression, preprocessor
/// condition under which the C headers define it).
const KVM_UAPI: &[(&str, &str, &str)] = &[
    ("KVM_EXIT_HYPERCALL", "KVM_EXIT_HYPERCALL", "1"),
    (
        "KVM_EXIT_MEMORY_FAULT",
        "KVM_EXIT_MEMORY_FAULT",
        "defined(KVM_EXIT_MEMORY_FAULT)",
    ),
    (
        "KVM_MEMORY_EXIT_FLAG_PRIVATE",
        "KVM_MEMORY_EXIT_FLAG_PRIVATE",
        "defined(KVM_MEMORY_EXIT_FLAG_PRIVATE)",
    ),
    (
        "KVM_HC_MAP_GPA_RANGE",
        "KVM_HC_MAP_GPA_RANGE",
        "defined(KVM_HC_MAP_GPA_RANGE)",
    ),
    (
        "KVM_CAP_EXIT_HYPERCALL",
        "KVM_CAP_EXIT_HYPERCALL",
        "defined(KVM_CAP_EXIT_HYPERCALL)",
    ),
    (
        "KVM_RUN_EXIT_REASON",
        "offsetof(struct kvm_run, exit_reason)",
        "1",
    ),
    (
        "KVM_RUN_EXIT_UNION",
        "offsetof(struct kvm_run, hypercall)",
        "1",
    ),
    (
        "KVM_RUN_HYPERCALL_NR",
        "offsetof(struct kvm_run, hypercall.nr)",
        "1",
    ),
    (
        "KVM_RUN_HYPERCALL_ARGS",
        "offsetof(struct kvm_run, hypercall.args)",
        "1",
    ),
    (
        "KVM_RUN_HYPERCALL_RET",
        "offsetof(struct kvm_run, hypercall.ret)",
        "1",
    ),
    (
        "KVM_RUN_HYPERCALL_FLAGS",
        "offsetof(struct kvm_run, hypercall.longmode)",
        "1",
    ),
    (
        "KVM_RUN_MEMORY_FAULT_FLAGS",
        "offsetof(struct kvm_run, memory_fault.flags)",
        "defined(KVM_EXIT_MEMORY_FAULT)",
    ),
    (
        "KVM_RUN_MEMORY_FAULT_GPA",
        "offsetof(struct kvm_run, memory_fault.gpa)",
        "defined(KVM_EXIT_MEMORY_FAULT)",
    ),
    (
        "KVM_RUN_MEMORY_FAULT_SIZE",
        "offsetof(struct kvm_run, memory_fault.size)",
        "defined(KVM_EXIT_MEMORY_FAULT)",
    ),
];

struct Found {
    lib_dir: PathBuf,
    include_dir: PathBuf,
    how: &'static str,
}

fn pkg_config_var(var: &str) -> Option<PathBuf> {
    let out = Command::new("pkg-config")
        .args(["--variable", var, "cvmconv"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    let s = s.trim();
    if s.is_empty() {
        None
    } else {
        Some(PathBuf::from(s))
    }
}

fn find_library(repo: &Path) -> Found {
    let in_tree_include = repo.join("include");
    if let Some(lib) = env::var_os("CVMCONV_LIB_DIR") {
        let include = env::var_os("CVMCONV_INCLUDE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| in_tree_include.clone());
        return Found {
            lib_dir: PathBuf::from(lib),
            include_dir: include,
            how: "CVMCONV_LIB_DIR",
        };
    }
    let in_tree_lib = repo.join("build");
    if in_tree_lib.join("libcvmconv.so").exists() && in_tree_include.join("cvmconv.h").exists() {
        return Found {
            lib_dir: in_tree_lib,
            include_dir: in_tree_include,
            how: "the in-tree CMake build",
        };
    }
    if let (Some(lib), Some(include)) = (pkg_config_var("libdir"), pkg_config_var("includedir")) {
        return Found {
            lib_dir: lib,
            include_dir: include,
            how: "pkg-config",
        };
    }
    panic!(
        "cvmconv-sys: libcvmconv not found. Build it first (./build.sh test, or \
         cmake -S . -B build && cmake --build build at the top of the repository), \
         install it (cmake --install build; pkg-config cvmconv must then find it), \
         or set CVMCONV_LIB_DIR (and CVMCONV_INCLUDE_DIR) to its directories."
    );
}

/// The C probe: prints Rust `const` items with the C compiler's numbers.
fn probe_source() -> String {
    let mut c = String::from(
        "#include <stdalign.h>\n#include <stddef.h>\n#include <stdio.h>\n\
         #include \"cvmconv.h\"\n\
         #if defined(__has_include)\n#if __has_include(<linux/kvm.h>)\n\
         #include <linux/kvm.h>\n#include <linux/kvm_para.h>\n#endif\n#endif\n\
         int main(void)\n{\n",
    );
    for (name, fields) in STRUCTS {
        let up = name.to_uppercase();
        c.push_str(&format!(
            "\tprintf(\"pub const SIZEOF_{up}: usize = %zu;\\n\", sizeof(struct {name}));\n\
             \tprintf(\"pub const ALIGNOF_{up}: usize = %zu;\\n\", alignof(struct {name}));\n"
        ));
        for f in *fields {
            let fu = f.to_uppercase();
            c.push_str(&format!(
                "\tprintf(\"pub const OFFSETOF_{up}_{fu}: usize = %zu;\\n\", \
                 offsetof(struct {name}, {f}));\n"
            ));
            c.push_str(&format!(
                "\tprintf(\"pub const SIZEOF_{up}_{fu}: usize = %zu;\\n\", \
                 sizeof(((struct {name} *)0)->{f}));\n"
            ));
        }
    }
    c.push_str(
        "\tprintf(\"pub const SIZEOF_CVMCONV_UNALIGNED: usize = %zu;\\n\", \
         sizeof(enum cvmconv_unaligned));\n",
    );
    for k in CONSTANTS {
        c.push_str(&format!(
            "\tprintf(\"pub const {k}: u64 = %llu;\\n\", (unsigned long long)({k}));\n"
        ));
    }
    // The KVM UAPI numbers of the `kvm` module, from the system's headers
    // where they have them (Debian 12's are Linux 6.1: no memory fault).
    c.push_str(
        "\tprintf(\"pub const KVM: &[(&str, u64)] = &[\\n\");\n\
         #if defined(__has_include)\n#if __has_include(<linux/kvm.h>)\n#define HAVE_KVM_H 1\n#endif\n#endif\n\
         #ifdef HAVE_KVM_H\n",
    );
    for (rust, cexpr, guard) in KVM_UAPI {
        c.push_str(&format!(
            "#if {guard}\n\tprintf(\"\\t(\\\"{rust}\\\", %llu),\\n\", (unsigned long long)({cexpr}));\n#endif\n"
        ));
    }
    c.push_str("#endif\n\tprintf(\"];\\n\");\n");
    c.push_str("\treturn 0;\n}\n");
    c
}

/// The checks the layout test runs, generated from the same tables: one
/// place names the fields, so a field the table lists but the Rust struct
/// lacks fails to compile, and one it lacks shows in the size.
fn checks_source() -> String {
    let mut r = String::from(
        "/// (what, Rust's number, the C compiler's number) for every size, \
         alignment, offset and constant.\n#[allow(clippy::unnecessary_cast)]\npub fn layout_checks() -> Vec<(&'static str, u64, u64)> {\n\
         \tlet mut v = Vec::new();\n",
    );
    for (name, fields) in STRUCTS {
        let up = name.to_uppercase();
        r.push_str(&format!(
            "\tv.push((\"sizeof(struct {name})\", std::mem::size_of::<cvmconv_sys::{name}>() as u64, \
             c_layout::SIZEOF_{up} as u64));\n\
             \tv.push((\"alignof(struct {name})\", std::mem::align_of::<cvmconv_sys::{name}>() as u64, \
             c_layout::ALIGNOF_{up} as u64));\n"
        ));
        for f in *fields {
            let fu = f.to_uppercase();
            r.push_str(&format!(
                "\tv.push((\"offsetof(struct {name}, {f})\", field_offset!(cvmconv_sys::{name}, {f}), \
                 c_layout::OFFSETOF_{up}_{fu} as u64));\n"
            ));
            r.push_str(&format!(
                "\tv.push((\"sizeof(struct {name}.{f})\", field_size!(cvmconv_sys::{name}, {f}), \
                 c_layout::SIZEOF_{up}_{fu} as u64));\n"
            ));
        }
    }
    r.push_str(
        "\tv.push((\"sizeof(enum cvmconv_unaligned)\", \
         std::mem::size_of::<cvmconv_sys::cvmconv_unaligned>() as u64, \
         c_layout::SIZEOF_CVMCONV_UNALIGNED as u64));\n",
    );
    for k in CONSTANTS {
        r.push_str(&format!(
            "\tv.push((\"{k}\", cvmconv_sys::{k} as u64, c_layout::{k}));\n"
        ));
    }
    r.push_str("\tv\n}\n");
    r
}

/// Every function the header declares, as `(name, address)`: a function the
/// header has and the crate lacks does not compile.
fn functions_source(header: &str) -> String {
    let mut names: Vec<String> = Vec::new();
    for line in header.lines() {
        let rest = match line.trim_start().strip_prefix("CVMCONV_API ") {
            Some(rest) => rest,
            None => continue,
        };
        if let Some(open) = rest.find('(') {
            let before = &rest[..open];
            let name = before
                .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("");
            if name.starts_with("cvmconv_") {
                names.push(name.to_string());
            }
        }
    }
    let mut r = String::from(
        "/// Every function of include/cvmconv.h with its address in the linked library.\n\
         pub fn header_functions() -> Vec<(&'static str, usize)> {\n\tvec![\n",
    );
    for n in &names {
        r.push_str(&format!(
            "\t\t(\"{n}\", cvmconv_sys::{n} as *const () as usize),\n"
        ));
    }
    r.push_str("\t]\n}\n");
    r
}

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let repo = manifest.join("../../..");
    for v in [
        "CVMCONV_LIB_DIR",
        "CVMCONV_INCLUDE_DIR",
        "PKG_CONFIG_PATH",
        "CC",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    println!("cargo:rerun-if-changed=build.rs");

    let found = find_library(&repo);
    let header = found.include_dir.join("cvmconv.h");
    println!("cargo:rerun-if-changed={}", header.display());
    println!(
        "cargo:rerun-if-changed={}",
        found.lib_dir.join("libcvmconv.so").display()
    );
    println!("cargo:rustc-link-search=native={}", found.lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=cvmconv");
    // This crate's own tests run against the library they were built with.
    println!(
        "cargo:rustc-link-arg=-Wl,-rpath,{}",
        found.lib_dir.display()
    );
    // For dependents (DEP_CVMCONV_LIB_DIR, DEP_CVMCONV_INCLUDE_DIR).
    println!("cargo:lib_dir={}", found.lib_dir.display());
    println!("cargo:include_dir={}", found.include_dir.display());
    // How it was found, in the build script's output (cargo -vv shows it).
    println!(
        "cvmconv-sys: libcvmconv from {} ({})",
        found.how,
        found.lib_dir.display()
    );

    let header_text = fs::read_to_string(&header)
        .unwrap_or_else(|e| panic!("cvmconv-sys: cannot read {}: {e}", header.display()));
    fs::write(out.join("checks.rs"), checks_source()).unwrap();
    fs::write(out.join("functions.rs"), functions_source(&header_text)).unwrap();

    // The C compiler's numbers. Without a C compiler the crate still builds,
    // and the layout test fails saying so (it cannot check anything then).
    let probe_c = out.join("layout_probe.c");
    let probe_bin = out.join("layout_probe");
    fs::write(&probe_c, probe_source()).unwrap();
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let compiled = Command::new(&cc)
        .arg("-std=c11")
        .arg("-I")
        .arg(&found.include_dir)
        .arg(&probe_c)
        .arg("-o")
        .arg(&probe_bin)
        .status();
    let layout = match compiled {
        Ok(s) if s.success() => {
            let run = Command::new(&probe_bin)
                .output()
                .expect("cvmconv-sys: running the layout probe");
            assert!(run.status.success(), "cvmconv-sys: the layout probe failed");
            format!(
                "pub const AVAILABLE: &str = \"\";\n{}",
                String::from_utf8(run.stdout).unwrap()
            )
        }
        other => {
            println!(
                "cargo:warning=cvmconv-sys: the C compiler `{cc}` could not build the layout \
                 probe ({other:?}): tests/layout.rs will fail"
            );
            let mut r = format!(
                "pub const AVAILABLE: &str = \"the C compiler `{cc}` failed: {other:?}\";\n"
            );
            for (name, fields) in STRUCTS {
                let up = name.to_uppercase();
                r.push_str(&format!(
                    "pub const SIZEOF_{up}: usize = 0;\npub const ALIGNOF_{up}: usize = 0;\n"
                ));
                for f in *fields {
                    let fu = f.to_uppercase();
                    r.push_str(&format!("pub const OFFSETOF_{up}_{fu}: usize = 0;\n"));
                    r.push_str(&format!("pub const SIZEOF_{up}_{fu}: usize = 0;\n"));
                }
            }
            r.push_str("pub const SIZEOF_CVMCONV_UNALIGNED: usize = 0;\n");
            r.push_str("pub const KVM: &[(&str, u64)] = &[];\n");
            for k in CONSTANTS {
                r.push_str(&format!("pub const {k}: u64 = 0;\n"));
            }
            r
        }
    };
    fs::write(out.join("c_layout.rs"), layout).unwrap();
}
