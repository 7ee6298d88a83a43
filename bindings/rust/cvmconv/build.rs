// SPDX-License-Identifier: MIT
//! The crate's own tests, doc tests and examples find libcvmconv where
//! cvmconv-sys found it (`DEP_CVMCONV_LIB_DIR`): an rpath, so that
//! `cargo test` and `cargo run --example` work on the in-tree build
//! without LD_LIBRARY_PATH. A VMM that depends on the crate links the same
//! library and finds it at run time as any shared library (installed, or its
//! own rpath).
use std::env;

fn main() {
    if let Ok(dir) = env::var("DEP_CVMCONV_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
