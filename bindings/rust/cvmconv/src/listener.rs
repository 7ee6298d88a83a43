// SPDX-License-Identifier: MIT
//! Listeners: Rust trait objects behind `struct cvmconv_listener`.

use std::io;
use std::os::raw::c_void;
use std::sync::Arc;

use cvmconv_sys as sys;

use crate::panic::guard;

/// Why a listener's `before` refuses a conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Veto;

/// Hears every run of pages that changes state, in guest-physical order
/// (`struct cvmconv_listener`): the place to unmap shared pages from an
/// IOMMU before they turn private, and to map them once they turn shared.
///
/// Both methods run with the library's region locks held, possibly on
/// several threads at once (requests on disjoint regions run in parallel),
/// and must not call back into the [`Converter`](crate::Converter). A panic
/// in `before` vetoes the request; a panic in either is re-raised on the
/// thread that made the request once the library has rolled back.
pub trait Listener: Send + Sync {
    /// Before the attribute update of `[gpa, gpa + size)`. `Err(Veto)`
    /// refuses the whole request: nothing changes, a guest gets
    /// `-KVM_EPERM`, and this listener hears no `after` for the run.
    fn before(&self, gpa: u64, size: u64, to_private: bool) -> Result<(), Veto> {
        let _ = (gpa, size, to_private);
        Ok(())
    }

    /// Once the run is converted (`Ok`), or abandoned (`Err` with
    /// `ECANCELED`: vetoed or failed, undo what `before` did). Every
    /// `before` that returned `Ok` gets exactly one `after`.
    fn after(&self, gpa: u64, size: u64, to_private: bool, result: io::Result<()>) {
        let _ = (gpa, size, to_private, result);
    }
}

/// A registered listener, as [`Converter::add_listener`](crate::Converter::add_listener) returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(pub(crate) i32);

impl ListenerId {
    /// The id of a listener registered with the library (as
    /// `cvmconv_add_listener()` returned it), for
    /// [`Converter::remove_listener`](crate::Converter::remove_listener).
    pub fn from_raw(id: i32) -> ListenerId {
        ListenerId(id)
    }

    /// The library's listener id.
    pub fn raw(self) -> i32 {
        self.0
    }
}

/// What the library's `opaque` points to: a thin pointer to the trait object.
pub(crate) struct ListenerSlot {
    listener: Arc<dyn Listener>,
}

unsafe extern "C" fn tramp_before(
    opaque: *mut c_void,
    gpa: u64,
    size: u64,
    to_private: bool,
) -> i32 {
    // SAFETY: opaque is a ListenerSlot the Converter keeps until the
    // listener is removed (the library calls nothing after that).
    let slot = unsafe { &*(opaque as *const ListenerSlot) };
    guard(-libc_ecanceled(), || {
        match slot.listener.before(gpa, size, to_private) {
            Ok(()) => 0,
            Err(Veto) => -1,
        }
    })
}

unsafe extern "C" fn tramp_after(
    opaque: *mut c_void,
    gpa: u64,
    size: u64,
    to_private: bool,
    result: i32,
) {
    // SAFETY: as above.
    let slot = unsafe { &*(opaque as *const ListenerSlot) };
    let result = if result == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(-result))
    };
    guard((), || slot.listener.after(gpa, size, to_private, result))
}

const fn libc_ecanceled() -> i32 {
    125 // ECANCELED on Linux
}

impl ListenerSlot {
    pub(crate) fn new(listener: Arc<dyn Listener>) -> Self {
        ListenerSlot { listener }
    }

    /// The C struct for this slot; `self` must stay where it is while
    /// registered (it lives in an `Arc`).
    pub(crate) fn raw(&self, replay: bool) -> sys::cvmconv_listener {
        sys::cvmconv_listener {
            sz: std::mem::size_of::<sys::cvmconv_listener>(),
            before: Some(tramp_before),
            after: Some(tramp_after),
            opaque: self as *const ListenerSlot as *mut c_void,
            flags: if replay {
                sys::CVMCONV_LISTENER_REPLAY
            } else {
                0
            },
        }
    }
}
