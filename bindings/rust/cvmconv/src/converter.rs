// SPDX-License-Identifier: MIT
//! The owning context: [`Converter`] and its [`ConverterBuilder`].

use std::ffi::CStr;
use std::io;
use std::ops::ControlFlow;
use std::os::raw::c_void;
use std::os::unix::io::{BorrowedFd, RawFd};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex};

use cvmconv_sys as sys;

use crate::error::{check, to_c, EIO};
use crate::listener::{ListenerId, ListenerSlot};
use crate::panic::{guard, resume};
use crate::region::Region;
use crate::stats::Stats;
use crate::{Conversion, Listener, Run};

/// What to do with a guest request whose start or size is not a multiple of
/// the granule (`enum cvmconv_unaligned`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unaligned {
    /// Convert and count.
    Allow,
    /// Convert, count and log (rate limited).
    Log,
    /// Change nothing and answer the guest `-KVM_EINVAL`.
    Reject,
}

impl Unaligned {
    pub(crate) fn raw(self) -> sys::cvmconv_unaligned {
        match self {
            Unaligned::Allow => sys::CVMCONV_UNALIGNED_ALLOW,
            Unaligned::Log => sys::CVMCONV_UNALIGNED_LOG,
            Unaligned::Reject => sys::CVMCONV_UNALIGNED_REJECT,
        }
    }
}

/// Severity of a log line (syslog's levels, as the library passes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
    Notice,
    Info,
    Debug,
}

impl Level {
    fn from_syslog(level: i32) -> Level {
        match level {
            i32::MIN..=3 => Level::Error,
            4 => Level::Warning,
            5 => Level::Notice,
            6 => Level::Info,
            _ => Level::Debug,
        }
    }
}

/// What [`Converter::handle_exit`] did with an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitAction {
    /// A conversion exit, handled and answered: re-enter `KVM_RUN`.
    Handled,
    /// Not a conversion exit: `kvm_run` is untouched, the VMM handles it.
    NotConversion,
}

type SetAttrFn = dyn Fn(u64, u64, u64) -> io::Result<()> + Send + Sync;
type PunchFn = dyn Fn(RawFd, u64, u64) -> io::Result<()> + Send + Sync;
type DiscardFn = dyn Fn(*mut c_void, u64) -> io::Result<()> + Send + Sync;
type LogFn = dyn Fn(Level, &str) + Send + Sync;

/// The Rust closures behind `cvmconv_ops` and the log callback; the
/// library holds a pointer to this (`ops_opaque`, `log_opaque`) for the
/// context's whole life.
#[derive(Default)]
struct Callbacks {
    set_memory_attributes: Option<Box<SetAttrFn>>,
    punch: Option<Box<PunchFn>>,
    discard_hva: Option<Box<DiscardFn>>,
    log: Option<Box<LogFn>>,
}

unsafe extern "C" fn tramp_set_attr(opaque: *mut c_void, gpa: u64, size: u64, attrs: u64) -> i32 {
    // SAFETY: opaque is the Callbacks the Converter keeps alive.
    let cb = unsafe { &*(opaque as *const Callbacks) };
    guard(-EIO, || match &cb.set_memory_attributes {
        Some(f) => to_c(f(gpa, size, attrs)),
        None => -EIO, // not registered with the library, never called
    })
}

unsafe extern "C" fn tramp_punch(opaque: *mut c_void, fd: i32, offset: u64, len: u64) -> i32 {
    // SAFETY: as above.
    let cb = unsafe { &*(opaque as *const Callbacks) };
    guard(-EIO, || match &cb.punch {
        Some(f) => to_c(f(fd, offset, len)),
        None => -EIO,
    })
}

unsafe extern "C" fn tramp_discard(opaque: *mut c_void, hva: *mut c_void, len: u64) -> i32 {
    // SAFETY: as above.
    let cb = unsafe { &*(opaque as *const Callbacks) };
    guard(-EIO, || match &cb.discard_hva {
        Some(f) => to_c(f(hva, len)),
        None => -EIO,
    })
}

unsafe extern "C" fn tramp_log(opaque: *mut c_void, level: i32, msg: *const sys::c_char) {
    // SAFETY: as above; msg is a NUL-terminated string valid for the call.
    let cb = unsafe { &*(opaque as *const Callbacks) };
    let text = unsafe { CStr::from_ptr(msg as *const std::os::raw::c_char) }.to_string_lossy();
    guard((), || {
        if let Some(f) = &cb.log {
            f(Level::from_syslog(level), &text)
        }
    })
}

unsafe extern "C" fn tramp_range(opaque: *mut c_void, gpa: u64, size: u64, private: bool) -> i32 {
    // SAFETY: opaque is the `&mut dyn FnMut` of for_each_range, live for the call.
    let f = unsafe { &mut *(opaque as *mut &mut dyn FnMut(Run) -> ControlFlow<()>) };
    guard(1, || match f(Run { gpa, size, private }) {
        ControlFlow::Continue(()) => 0,
        ControlFlow::Break(()) => 1,
    })
}

/// Builds a [`Converter`]: the VM, the policy, and optionally Rust closures
/// in place of the kernel calls (`cvmconv_ops`) and a log sink.
///
/// ```
/// use cvmconv::{Converter, Unaligned};
/// let conv = Converter::builder()
///     .unaligned(Unaligned::Reject)
///     // no VM here: attribute updates go to a closure instead of KVM
///     .set_memory_attributes(|_gpa, _size, _attrs| Ok(()))
///     .build()
///     .unwrap();
/// assert_eq!(conv.stats().unwrap().exits, 0);
/// ```
#[derive(Default)]
pub struct ConverterBuilder {
    vm_fd: Option<RawFd>,
    granule: u64,
    unaligned: Option<Unaligned>,
    defer_punch: bool,
    callbacks: Callbacks,
}

impl ConverterBuilder {
    /// The KVM VM fd (`KVM_SET_MEMORY_ATTRIBUTES` goes to it unless
    /// [`set_memory_attributes`](Self::set_memory_attributes) is given). The
    /// fd must stay open as long as the converter.
    pub fn vm_fd(mut self, fd: BorrowedFd<'_>) -> Self {
        use std::os::unix::io::AsRawFd;
        self.vm_fd = Some(fd.as_raw_fd());
        self
    }

    /// Alignment granule of the unaligned policy: a power of two >= 4 KiB;
    /// 0 (the default) means 2 MiB.
    pub fn granule(mut self, bytes: u64) -> Self {
        self.granule = bytes;
        self
    }

    /// Default unaligned policy of regions (default [`Unaligned::Allow`]).
    pub fn unaligned(mut self, policy: Unaligned) -> Self {
        self.unaligned = Some(policy);
        self
    }

    /// `CVMCONV_DEFER_PUNCH`: stale memory is punched by
    /// [`Converter::flush`], off the vCPU threads.
    pub fn defer_punch(mut self, on: bool) -> Self {
        self.defer_punch = on;
        self
    }

    /// Replace `KVM_SET_MEMORY_ATTRIBUTES`: `f(gpa, size, attributes)`.
    /// Called with region locks held, possibly from several threads at
    /// once; must not call back into the converter.
    pub fn set_memory_attributes(
        mut self,
        f: impl Fn(u64, u64, u64) -> io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.callbacks.set_memory_attributes = Some(Box::new(f));
        self
    }

    /// Replace `fallocate(PUNCH_HOLE | KEEP_SIZE)`: `f(fd, offset, len)`.
    /// May run beside a conversion on the same region (during a flush),
    /// always on ranges nothing else touches.
    pub fn punch(
        mut self,
        f: impl Fn(RawFd, u64, u64) -> io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.callbacks.punch = Some(Box::new(f));
        self
    }

    /// Replace `madvise(MADV_REMOVE)` of a region's `shared_hva`:
    /// `f(hva, len)`.
    pub fn discard_hva(
        mut self,
        f: impl Fn(*mut c_void, u64) -> io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.callbacks.discard_hva = Some(Box::new(f));
        self
    }

    /// Where log lines go (none by default). Never called concurrently;
    /// must not call back into the converter.
    pub fn log(mut self, f: impl Fn(Level, &str) + Send + Sync + 'static) -> Self {
        self.callbacks.log = Some(Box::new(f));
        self
    }

    /// `cvmconv_create()`.
    ///
    /// Errors: `EINVAL` (bad granule, no VM fd and no attribute closure),
    /// `EOPNOTSUPP` (the VM has no private memory attribute), `ENOMEM`.
    pub fn build(self) -> io::Result<Converter> {
        let callbacks = Arc::new(self.callbacks);
        let opaque = Arc::as_ptr(&callbacks) as *mut c_void;
        let ops = sys::cvmconv_ops {
            set_memory_attributes: callbacks
                .set_memory_attributes
                .as_ref()
                .map(|_| tramp_set_attr as _),
            punch: callbacks.punch.as_ref().map(|_| tramp_punch as _),
            discard_hva: callbacks.discard_hva.as_ref().map(|_| tramp_discard as _),
            set_gmem_attributes: None,
        };
        let cfg = sys::cvmconv_config {
            sz: std::mem::size_of::<sys::cvmconv_config>(),
            vm_fd: self.vm_fd.unwrap_or(-1),
            granule: self.granule,
            unaligned: self.unaligned.unwrap_or(Unaligned::Allow).raw(),
            ops: &ops,
            ops_opaque: opaque,
            log: callbacks.log.as_ref().map(|_| tramp_log as _),
            log_opaque: opaque,
            flags: if self.defer_punch {
                sys::CVMCONV_DEFER_PUNCH
            } else {
                0
            },
            inplace_retries: 0,
        };
        let mut raw = ptr::null_mut();
        // SAFETY: cfg and ops are valid for the call (the library copies
        // them); opaque outlives the context (the Converter owns it).
        let rc = unsafe { sys::cvmconv_create(&cfg, &mut raw) };
        if rc < 0 {
            resume(); // a log closure's panic, if any
            check(rc)?;
        }
        let conv = Converter {
            raw: NonNull::new(raw).expect("cvmconv_create returned 0 and no context"),
            _callbacks: callbacks,
            listeners: Mutex::new(Vec::new()),
        };
        resume(); // after `conv` owns the context: an unwind destroys it
        Ok(conv)
    }
}

/// One VM's conversion context (`struct cvmconv`), freed on drop.
///
/// Every method may be called from any thread at any time: the C library is
/// thread-safe but for `cvmconv_destroy()`, which only `Drop` calls, when no
/// other borrow can exist. Callbacks (closures of the builder, listeners)
/// run on the thread whose call caused them.
pub struct Converter {
    raw: NonNull<sys::cvmconv>,
    _callbacks: Arc<Callbacks>,
    listeners: Mutex<Vec<(i32, Arc<ListenerSlot>)>>,
}

// SAFETY: every cvmconv_* function but cvmconv_destroy() is thread-safe
// (include/cvmconv.h); destroy runs in Drop, with exclusive access. The
// callbacks are Send + Sync.
unsafe impl Send for Converter {}
unsafe impl Sync for Converter {}

impl Drop for Converter {
    fn drop(&mut self) {
        // SAFETY: no other call is in progress (&mut self). The callbacks
        // and listener slots are dropped after this, when nothing calls them.
        unsafe { sys::cvmconv_destroy(self.raw.as_ptr()) }
    }
}

/// A C call that may run Rust callbacks: re-raise their panic afterwards.
fn call<R>(f: impl FnOnce() -> R) -> R {
    let r = f();
    resume();
    r
}

impl Converter {
    /// A builder with no VM, 2 MiB granule, [`Unaligned::Allow`].
    pub fn builder() -> ConverterBuilder {
        ConverterBuilder::default()
    }

    /// The raw context, for calls the safe API does not cover. It stays
    /// valid as long as `self`.
    pub fn as_raw(&self) -> *mut sys::cvmconv {
        self.raw.as_ptr()
    }

    /// `cvmconv_add_region()`: register guest memory and its backings.
    ///
    /// Errors: `EINVAL` (alignment, flags, size), `EEXIST` (overlap),
    /// `EBADF`, `ENOMEM`, `ENOTRECOVERABLE`, or the attribute update's.
    pub fn add_region(&self, region: &Region) -> io::Result<()> {
        // SAFETY: the region struct is valid for the call (copied).
        call(|| check(unsafe { sys::cvmconv_add_region(self.as_raw(), region.raw()) })).map(drop)
    }

    /// `cvmconv_remove_region()`. Errors: `ENOENT`.
    pub fn remove_region(&self, gpa: u64) -> io::Result<()> {
        // SAFETY: plain values.
        check(unsafe { sys::cvmconv_remove_region(self.as_raw(), gpa) }).map(drop)
    }

    /// `cvmconv_handle_exit()`: decode a conversion exit of `run` and
    /// answer it.
    ///
    /// `Err` is fatal for the VM (host failure, a memory fault the guest
    /// cannot be answered for, `ELOOP`: the same fault again with nothing
    /// changed); see `man cvmconv_handle_exit`.
    ///
    /// # Safety
    ///
    /// `run` must point to a vCPU's `struct kvm_run` (KVM's mapping, or a
    /// buffer of at least 256 bytes laid out as it is) that stays valid for
    /// the call and that no other thread reads or writes meanwhile: the
    /// library reads the exit and writes `hypercall.ret`. Passing the same
    /// pointer for the same vCPU every time lets the library recognise a
    /// fault that repeats.
    pub unsafe fn handle_exit(&self, run: *mut sys::kvm_run) -> io::Result<ExitAction> {
        // SAFETY: the caller's promise above.
        let rc = call(|| unsafe { sys::cvmconv_handle_exit(self.as_raw(), run) });
        Ok(match check(rc)? {
            0 => ExitAction::NotConversion,
            _ => ExitAction::Handled,
        })
    }

    /// `cvmconv_map_gpa_range()`: one `KVM_HC_MAP_GPA_RANGE` request from
    /// the guest's `args[0..2]` (`npages` in 4 KiB pages). `Ok` is what the
    /// guest must find in `hypercall.ret`: 0, or a KVM error negated (as
    /// [`guest_error`](crate::guest_error) decodes) for a refused request —
    /// nothing changed then. `Err` is a host failure (the request was rolled
    /// back; the guest gets `-KVM_EFAULT` should the VMM re-enter) or
    /// `ENOTRECOVERABLE`.
    pub fn map_gpa_range(&self, gpa: u64, npages: u64, attrs: u64) -> io::Result<u64> {
        let mut hc_ret = 0u64;
        // SAFETY: hc_ret is valid for the call.
        call(|| {
            check(unsafe {
                sys::cvmconv_map_gpa_range(self.as_raw(), gpa, npages, attrs, &mut hc_ret)
            })
        })?;
        Ok(hc_ret)
    }

    /// `cvmconv_convert()`: a host-initiated conversion (no guest policy).
    /// Errors: `EINVAL`, `EPERM` (a listener vetoed), `ENOTRECOVERABLE`,
    /// or the attribute update's (rolled back).
    pub fn convert(&self, gpa: u64, size: u64, to_private: bool) -> io::Result<()> {
        // SAFETY: plain values.
        call(|| check(unsafe { sys::cvmconv_convert(self.as_raw(), gpa, size, to_private) }))
            .map(drop)
    }

    /// `cvmconv_convert_batch()` of a host list: all ranges convert or none.
    /// Errors: `EINVAL` (an invalid entry or overlap), `EPERM`, `E2BIG`
    /// (more than `CVMCONV_BATCH_MAX`), `ENOMEM`, `ENOTRECOVERABLE`, or the
    /// attribute update's.
    pub fn convert_batch(&self, ranges: &[Conversion]) -> io::Result<()> {
        // SAFETY: Conversion is repr(transparent) over cvmconv_range.
        call(|| {
            check(unsafe {
                sys::cvmconv_convert_batch(
                    self.as_raw(),
                    ranges.as_ptr() as *const sys::cvmconv_range,
                    ranges.len(),
                    0,
                    ptr::null_mut(),
                )
            })
        })
        .map(drop)
    }

    /// `cvmconv_convert_batch()` of a guest's list (`CVMCONV_BATCH_GUEST`:
    /// counted as one request, policy applies). `Ok` is the guest's answer
    /// as for [`map_gpa_range`](Self::map_gpa_range).
    pub fn guest_batch(&self, ranges: &[Conversion]) -> io::Result<u64> {
        let mut hc_ret = 0u64;
        // SAFETY: as above; hc_ret valid for the call.
        call(|| {
            check(unsafe {
                sys::cvmconv_convert_batch(
                    self.as_raw(),
                    ranges.as_ptr() as *const sys::cvmconv_range,
                    ranges.len(),
                    sys::CVMCONV_BATCH_GUEST,
                    &mut hc_ret,
                )
            })
        })?;
        Ok(hc_ret)
    }

    /// `cvmconv_flush()`: punch stale memory that is still allocated
    /// (deferred punches, failed ones). `Err` carries the last punch error;
    /// what failed stays pending.
    pub fn flush(&self) -> io::Result<()> {
        // SAFETY: plain call.
        call(|| check(unsafe { sys::cvmconv_flush(self.as_raw()) })).map(drop)
    }

    /// `cvmconv_get_poll_fd()`: readable while punches wait; then call
    /// [`flush`](Self::flush). The fd belongs to the converter.
    pub fn poll_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: plain call.
        let fd = unsafe { sys::cvmconv_get_poll_fd(self.as_raw()) };
        assert!(
            fd >= 0,
            "cvmconv_get_poll_fd of a live context failed: {fd}"
        );
        // SAFETY: the eventfd lives as long as the context, hence self.
        unsafe { BorrowedFd::borrow_raw(fd) }
    }

    /// `cvmconv_is_private()`: the library's view of the page holding `gpa`.
    /// Errors: `ENOENT` (not in a region).
    pub fn is_private(&self, gpa: u64) -> io::Result<bool> {
        // SAFETY: plain values.
        check(unsafe { sys::cvmconv_is_private(self.as_raw(), gpa) }).map(|v| v == 1)
    }

    /// `cvmconv_for_each_range()`: the maximal runs of one state in
    /// `[gpa, gpa + size)`, ascending; `f` returns `Break` to stop. It runs
    /// with the library's locks held: it must not call the converter.
    /// Errors: `EINVAL` (misaligned, empty, wrapping range).
    pub fn for_each_range(
        &self,
        gpa: u64,
        size: u64,
        mut f: impl FnMut(Run) -> ControlFlow<()>,
    ) -> io::Result<()> {
        let mut dynf: &mut dyn FnMut(Run) -> ControlFlow<()> = &mut f;
        let opaque = &mut dynf as *mut &mut dyn FnMut(Run) -> ControlFlow<()> as *mut c_void;
        // SAFETY: opaque points to dynf, live for the call.
        call(|| {
            check(unsafe {
                sys::cvmconv_for_each_range(self.as_raw(), gpa, size, Some(tramp_range), opaque)
            })
        })
        .map(drop)
    }

    /// The runs of [`for_each_range`](Self::for_each_range), collected.
    pub fn ranges(&self, gpa: u64, size: u64) -> io::Result<Vec<Run>> {
        let mut v = Vec::new();
        self.for_each_range(gpa, size, |r| {
            v.push(r);
            ControlFlow::Continue(())
        })?;
        Ok(v)
    }

    /// `cvmconv_add_listener()`: hear every run of pages that changes
    /// state. With `replay`, the listener first hears every current run
    /// through `after()` (`CVMCONV_LISTENER_REPLAY`). Errors: `ENOSPC`
    /// (`CVMCONV_MAX_LISTENERS` reached).
    pub fn add_listener(
        &self,
        listener: Arc<dyn Listener>,
        replay: bool,
    ) -> io::Result<ListenerId> {
        let slot = Arc::new(ListenerSlot::new(listener));
        let raw = slot.raw(replay);
        // Hold the list across registration, so remove_listener() of the
        // new id cannot miss its slot.
        let mut list = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: raw is valid for the call (copied); its opaque, the slot,
        // lives in the list until the listener is removed or the context
        // destroyed.
        let rc = unsafe { sys::cvmconv_add_listener(self.as_raw(), &raw) };
        // Registered: keep the slot before a replay's panic resumes, or the
        // library would keep a pointer to a freed slot.
        if rc >= 0 {
            list.push((rc, slot));
        }
        drop(list);
        resume();
        let id = check(rc)?;
        Ok(ListenerId(id))
    }

    /// `cvmconv_remove_listener()`: no callback of it runs after the return.
    /// Errors: `ENOENT`.
    pub fn remove_listener(&self, id: ListenerId) -> io::Result<()> {
        let mut list = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: plain values.
        check(unsafe { sys::cvmconv_remove_listener(self.as_raw(), id.0) })?;
        list.retain(|(i, _)| *i != id.0);
        Ok(())
    }

    /// `cvmconv_get_stats()`.
    pub fn stats(&self) -> io::Result<Stats> {
        let mut st = sys::cvmconv_stats {
            sz: std::mem::size_of::<sys::cvmconv_stats>(),
            ..Default::default()
        };
        // SAFETY: st is valid and st.sz says how much may be written.
        check(unsafe { sys::cvmconv_get_stats(self.as_raw(), &mut st) })?;
        Ok(Stats::from(st))
    }

    /// `cvmconv_stats_json()`: the counters as one JSON object.
    pub fn stats_json(&self) -> io::Result<String> {
        let mut buf = vec![0u8; 1024];
        loop {
            // SAFETY: buf is valid for buf.len() bytes.
            let need = check(unsafe {
                sys::cvmconv_stats_json(
                    self.as_raw(),
                    buf.as_mut_ptr() as *mut sys::c_char,
                    buf.len(),
                )
            })? as usize;
            if need < buf.len() {
                buf.truncate(need);
                return String::from_utf8(buf).map_err(|_| io::Error::from_raw_os_error(EIO));
            }
            buf.resize(need + 1, 0);
        }
    }
}
