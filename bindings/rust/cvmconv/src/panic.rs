// SPDX-License-Identifier: MIT
//! Panics never cross the FFI boundary. Every Rust callback the C library
//! calls runs inside `catch_unwind`; a panic becomes an error for the
//! library (an op fails with EIO, a listener's `before` vetoes) and its
//! payload waits in a thread-local slot. The library calls callbacks only on
//! the thread that called into it, so the safe wrapper that made that call
//! resumes the panic once the library has returned — after the library
//! handled the failure (rolled back, left its state consistent).

use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};

thread_local! {
    static PENDING: RefCell<Option<Box<dyn Any + Send + 'static>>> = RefCell::new(None);
}

/// Runs `f`; on a panic stores the payload (the first one wins) and returns
/// `on_panic`.
pub(crate) fn guard<R>(on_panic: R, f: impl FnOnce() -> R) -> R {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            PENDING.with(|p| {
                let mut p = p.borrow_mut();
                if p.is_none() {
                    *p = Some(payload);
                }
            });
            on_panic
        }
    }
}

/// Called after every C call that may run callbacks: re-raises a panic a
/// callback raised during it.
pub(crate) fn resume() {
    if let Some(payload) = PENDING.with(|p| p.borrow_mut().take()) {
        panic::resume_unwind(payload);
    }
}
