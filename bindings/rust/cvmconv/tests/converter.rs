// SPDX-License-Identifier: MIT
//! The safe API against the real library and real memfds: conversions and
//! the kernel's own accounting (st_blocks), hostile requests, kvm_run exits,
//! listeners, panics in callbacks, errors as errno, threads.

use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::{AsRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cvmconv::{
    guest_error, Conversion, Converter, ExitAction, Listener, Region, Run, Unaligned, Veto,
    ATTR_PRIVATE, KVM_EINVAL, KVM_EPERM, MAP_GPA_RANGE_ENCRYPTED,
};
use cvmconv_sys::kvm;

const MIB: u64 = 1 << 20;
const SIZE: u64 = 8 * MIB;

/// Bytes the kernel has allocated to an fd (st_blocks is in 512-byte units).
fn allocated(fd: &OwnedFd) -> u64 {
    std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap()
        .blocks()
        * 512
}

/// Writes `len` bytes into the memfd at `off`, so the kernel allocates them.
fn touch(fd: &OwnedFd, off: u64, len: u64) {
    use std::os::unix::fs::FileExt;
    let f = File::from(fd.try_clone().unwrap());
    f.write_all_at(&vec![0x5a; len as usize], off).unwrap();
}

/// A strict recorder of attribute updates (the host's /dev/kvm has no
/// memory attributes): 4 KiB aligned, attributes 0 or PRIVATE, inside the
/// guest, as KVM checks them.
fn recorder(
    attrs: Arc<Mutex<Vec<bool>>>,
) -> impl Fn(u64, u64, u64) -> io::Result<()> + Send + Sync + 'static {
    move |gpa, size, a| {
        let mut pages = attrs.lock().unwrap();
        if gpa % 4096 != 0 || size % 4096 != 0 || size == 0 || (a != 0 && a != ATTR_PRIVATE) {
            return Err(io::Error::from_raw_os_error(22));
        }
        let (first, n) = ((gpa / 4096) as usize, (size / 4096) as usize);
        if first + n > pages.len() {
            return Err(io::Error::from_raw_os_error(22));
        }
        for p in &mut pages[first..first + n] {
            *p = a == ATTR_PRIVATE;
        }
        Ok(())
    }
}

/// A converter whose attribute updates go to the recorder.
fn converter(attrs: Arc<Mutex<Vec<bool>>>) -> Converter {
    Converter::builder()
        .unaligned(Unaligned::Allow)
        .set_memory_attributes(recorder(attrs))
        .build()
        .unwrap()
}

struct Guest {
    conv: Converter,
    attrs: Arc<Mutex<Vec<bool>>>,
    shared: OwnedFd,
    private: OwnedFd,
}

fn guest() -> Guest {
    let attrs = Arc::new(Mutex::new(vec![false; (SIZE / 4096) as usize]));
    let conv = converter(attrs.clone());
    let shared = cvmconv::memfd_create("test-shared", SIZE, 4096).unwrap();
    let private = cvmconv::memfd_create("test-private", SIZE, 4096).unwrap();
    conv.add_region(
        &Region::new(0, SIZE)
            .shared_fd(&shared, 0)
            .private_fd(&private, 0),
    )
    .unwrap();
    Guest {
        conv,
        attrs,
        shared,
        private,
    }
}

#[test]
fn conversions_punch_the_stale_side_as_the_kernel_counts_it() {
    let g = guest();
    touch(&g.shared, 0, SIZE);
    assert_eq!(allocated(&g.shared), SIZE);
    assert_eq!(
        g.conv
            .map_gpa_range(2 * MIB, 512, MAP_GPA_RANGE_ENCRYPTED)
            .unwrap(),
        0
    );
    assert_eq!(
        allocated(&g.shared),
        SIZE - 2 * MIB,
        "the shared side of [2M,4M) is punched"
    );
    assert!(g.attrs.lock().unwrap()[512..1024].iter().all(|&p| p));
    touch(&g.private, 2 * MIB, 2 * MIB);
    assert_eq!(g.conv.map_gpa_range(2 * MIB, 512, 0).unwrap(), 0);
    assert_eq!(
        allocated(&g.private),
        0,
        "back to shared: the private side is punched"
    );
    let st = g.conv.stats().unwrap();
    assert_eq!(
        (st.exits, st.to_private_bytes, st.to_shared_bytes),
        (2, 2 * MIB, 2 * MIB)
    );
    assert!(g.conv.stats_json().unwrap().contains("\"exits\":2"));
}

#[test]
fn hostile_requests_are_refused_and_change_nothing() {
    let g = guest();
    let bad = [
        (0, 0, MAP_GPA_RANGE_ENCRYPTED),              // empty
        (4095, 1, MAP_GPA_RANGE_ENCRYPTED),           // misaligned
        (SIZE, 1, MAP_GPA_RANGE_ENCRYPTED),           // outside the regions
        (u64::MAX - 4095, 2, 0),                      // wraps
        (0, 1, 1 << 40),                              // reserved attribute bit
        (4096, 1, cvmconv::MAP_GPA_RANGE_PAGE_SZ_2M), // hint the range contradicts
    ];
    for (gpa, n, a) in bad {
        let r = g.conv.map_gpa_range(gpa, n, a).unwrap();
        assert_eq!(guest_error(r), Some(KVM_EINVAL), "({gpa:#x}, {n}, {a:#x})");
    }
    assert!(g.attrs.lock().unwrap().iter().all(|&p| !p));
    let st = g.conv.stats().unwrap();
    assert_eq!((st.exits, st.rejected, st.attr_updates), (6, 6, 0));
}

/// A kvm_run buffer as KVM lays it out (the fields cvmconv reads).
#[repr(C, align(8))]
struct RunBuf([u8; 4096]);

impl RunBuf {
    fn put_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn put_u64(&mut self, off: usize, v: u64) {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }
    fn u64_at(&self, off: usize) -> u64 {
        u64::from_ne_bytes(self.0[off..off + 8].try_into().unwrap())
    }
    fn ptr(&mut self) -> *mut cvmconv::sys::kvm_run {
        self.0.as_mut_ptr().cast()
    }
}

#[test]
fn handle_exit_answers_hypercalls_and_memory_faults() {
    let g = guest();
    let mut run = RunBuf([0xa5; 4096]);
    run.put_u32(kvm::KVM_RUN_EXIT_REASON, kvm::KVM_EXIT_HYPERCALL);
    run.put_u64(kvm::KVM_RUN_HYPERCALL_NR, kvm::KVM_HC_MAP_GPA_RANGE);
    run.put_u64(kvm::KVM_RUN_HYPERCALL_ARGS, 0);
    run.put_u64(kvm::KVM_RUN_HYPERCALL_ARGS + 8, 1 << 20); // npages: more than the guest has
    run.put_u64(kvm::KVM_RUN_HYPERCALL_ARGS + 16, MAP_GPA_RANGE_ENCRYPTED);
    run.put_u64(kvm::KVM_RUN_HYPERCALL_FLAGS, 0);
    // SAFETY: run is a live kvm_run-shaped buffer used by this thread only.
    assert_eq!(
        unsafe { g.conv.handle_exit(run.ptr()) }.unwrap(),
        ExitAction::Handled
    );
    assert_eq!(
        guest_error(run.u64_at(kvm::KVM_RUN_HYPERCALL_RET)),
        Some(KVM_EINVAL)
    );

    run.put_u64(kvm::KVM_RUN_HYPERCALL_ARGS + 8, 16);
    assert_eq!(
        unsafe { g.conv.handle_exit(run.ptr()) }.unwrap(),
        ExitAction::Handled
    );
    assert_eq!(run.u64_at(kvm::KVM_RUN_HYPERCALL_RET), 0);
    assert!(g.conv.is_private(15 * 4096).unwrap() && !g.conv.is_private(16 * 4096).unwrap());

    // a shared access to a private page: converted to shared
    run.put_u32(kvm::KVM_RUN_EXIT_REASON, kvm::KVM_EXIT_MEMORY_FAULT);
    run.put_u64(kvm::KVM_RUN_MEMORY_FAULT_FLAGS, 0);
    run.put_u64(kvm::KVM_RUN_MEMORY_FAULT_GPA, 4096);
    run.put_u64(kvm::KVM_RUN_MEMORY_FAULT_SIZE, 4096);
    assert_eq!(
        unsafe { g.conv.handle_exit(run.ptr()) }.unwrap(),
        ExitAction::Handled
    );
    assert!(!g.conv.is_private(4096).unwrap());
    // the same fault again with nothing changed: ELOOP, fatal
    let e = unsafe { g.conv.handle_exit(run.ptr()) }.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(40), "{e}");

    // not a conversion exit: untouched
    run.put_u32(kvm::KVM_RUN_EXIT_REASON, 5 /* KVM_EXIT_HLT */);
    let before = run.0.to_vec();
    assert_eq!(
        unsafe { g.conv.handle_exit(run.ptr()) }.unwrap(),
        ExitAction::NotConversion
    );
    assert_eq!(run.0.to_vec(), before);
}

#[derive(Default)]
struct Iommu {
    log: Mutex<Vec<String>>,
    veto: AtomicBool,
}

impl Listener for Iommu {
    fn before(&self, gpa: u64, size: u64, to_private: bool) -> Result<(), Veto> {
        self.log
            .lock()
            .unwrap()
            .push(format!("before {gpa:#x}+{size:#x} {to_private}"));
        if self.veto.load(Ordering::SeqCst) {
            Err(Veto)
        } else {
            Ok(())
        }
    }
    fn after(&self, gpa: u64, size: u64, to_private: bool, result: io::Result<()>) {
        self.log.lock().unwrap().push(format!(
            "after {gpa:#x}+{size:#x} {to_private} {}",
            result
                .map(|_| 0)
                .unwrap_or_else(|e| e.raw_os_error().unwrap())
        ));
    }
}

#[test]
fn listeners_hear_replay_runs_and_veto() {
    let g = guest();
    g.conv.convert(0, 2 * MIB, true).unwrap();
    let iommu = Arc::new(Iommu::default());
    let id = g.conv.add_listener(iommu.clone(), true).unwrap();
    assert_eq!(
        *iommu.log.lock().unwrap(),
        [
            "after 0x0+0x200000 true 0",
            "after 0x200000+0x600000 false 0"
        ],
        "replay: every current run once"
    );
    iommu.log.lock().unwrap().clear();
    iommu.veto.store(true, Ordering::SeqCst);
    let r = g.conv.map_gpa_range(0, 16, 0).unwrap();
    assert_eq!(guest_error(r), Some(KVM_EPERM));
    assert!(
        g.conv.is_private(0).unwrap(),
        "a vetoed request changes nothing"
    );
    iommu.veto.store(false, Ordering::SeqCst);
    g.conv
        .guest_batch(&[
            Conversion::to_shared(0, 4096),
            Conversion::to_private(4 * MIB, 4096),
        ])
        .unwrap();
    assert_eq!(
        *iommu.log.lock().unwrap(),
        [
            "before 0x0+0x10000 false",
            "before 0x0+0x1000 false",
            "before 0x400000+0x1000 true",
            "after 0x0+0x1000 false 0",
            "after 0x400000+0x1000 true 0"
        ]
    );
    g.conv.remove_listener(id).unwrap();
    assert_eq!(
        g.conv.remove_listener(id).unwrap_err().raw_os_error(),
        Some(2)
    );
    let runs = g.conv.ranges(0, SIZE).unwrap();
    assert_eq!(
        runs[0],
        Run {
            gpa: 0,
            size: 4096,
            private: false
        }
    );
    assert_eq!(runs.len(), 5);
    let mut first = None;
    g.conv
        .for_each_range(0, SIZE, |r| {
            first = Some(r);
            ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!(first, Some(runs[0]));
}

#[test]
fn a_panicking_callback_rolls_back_and_resumes_on_the_caller() {
    let attrs = Arc::new(Mutex::new(vec![false; (SIZE / 4096) as usize]));
    let calls = Arc::new(AtomicU64::new(0));
    let c2 = calls.clone();
    let a2 = attrs.clone();
    let conv = Converter::builder()
        .set_memory_attributes(move |gpa, size, a| {
            // the second update of a batch panics; the rollback then works
            if c2.fetch_add(1, Ordering::SeqCst) == 1 {
                panic!("attribute update panics");
            }
            let mut p = a2.lock().unwrap();
            for i in gpa / 4096..(gpa + size) / 4096 {
                p[i as usize] = a == ATTR_PRIVATE;
            }
            Ok(())
        })
        .build()
        .unwrap();
    conv.add_region(&Region::new(0, SIZE).attrs_only()).unwrap();
    let batch = [
        Conversion::to_private(0, 4096),
        Conversion::to_private(8192, 4096),
    ];
    let r = panic::catch_unwind(AssertUnwindSafe(|| conv.convert_batch(&batch)));
    let msg = r.unwrap_err();
    assert_eq!(msg.downcast_ref::<&str>(), Some(&"attribute update panics"));
    assert!(
        !conv.is_private(0).unwrap() && !conv.is_private(8192).unwrap(),
        "rolled back"
    );
    assert!(attrs.lock().unwrap().iter().all(|&p| !p));
    assert_eq!(conv.stats().unwrap().broken, 0);
    conv.convert(0, 4096, true).unwrap(); // still works
    assert!(conv.is_private(0).unwrap());
}

#[test]
fn errors_carry_the_errno() {
    let g = guest();
    let again = Region::new(4 * MIB, 4096).attrs_only();
    assert_eq!(
        g.conv.add_region(&again).unwrap_err().raw_os_error(),
        Some(17)
    ); // EEXIST
    assert_eq!(
        g.conv.remove_region(4096).unwrap_err().raw_os_error(),
        Some(2)
    ); // ENOENT
    assert_eq!(g.conv.is_private(SIZE).unwrap_err().raw_os_error(), Some(2));
    assert_eq!(
        g.conv.convert(1, 4096, true).unwrap_err().raw_os_error(),
        Some(22)
    );
    let too_many = vec![Conversion::to_private(0, 4096); cvmconv::BATCH_MAX + 1];
    assert_eq!(
        g.conv.convert_batch(&too_many).unwrap_err().raw_os_error(),
        Some(7)
    ); // E2BIG
    let no_vm = Converter::builder().build();
    assert_eq!(no_vm.err().unwrap().raw_os_error(), Some(22)); // no VM fd, no attribute closure
    assert_eq!(
        cvmconv::memfd_create("x", 4097, 4096)
            .unwrap_err()
            .raw_os_error(),
        Some(22)
    );
    assert_eq!(cvmconv::fd_page_size(&g.shared).unwrap(), 4096);
}

#[test]
fn deferred_punches_wait_for_flush() {
    let attrs = Arc::new(Mutex::new(vec![false; (SIZE / 4096) as usize]));
    let conv = Converter::builder()
        .defer_punch(true)
        .set_memory_attributes(recorder(attrs))
        .build()
        .unwrap();
    let shared = cvmconv::memfd_create("deferred", SIZE, 4096).unwrap();
    conv.add_region(&Region::new(0, SIZE).shared_fd(&shared, 0).attrs_only())
        .unwrap();
    touch(&shared, 0, SIZE);
    conv.convert(0, 2 * MIB, true).unwrap();
    assert_eq!(allocated(&shared), SIZE, "deferred: nothing punched yet");
    assert_eq!(conv.stats().unwrap().punch_pending_bytes, 2 * MIB);
    assert!(conv.poll_fd().as_raw_fd() >= 0);
    conv.flush().unwrap();
    assert_eq!(allocated(&shared), SIZE - 2 * MIB);
    assert_eq!(conv.stats().unwrap().punch_pending_bytes, 0);
}

#[test]
fn one_converter_serves_many_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Converter>();
    let g = Arc::new(guest());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let g = g.clone();
            std::thread::spawn(move || {
                let base = t * 2 * MIB;
                for i in 0..200u64 {
                    let gpa = base + (i / 2) * 4096; // each page to private, then back
                    let a = if i % 2 == 0 {
                        MAP_GPA_RANGE_ENCRYPTED
                    } else {
                        0
                    };
                    assert_eq!(g.conv.map_gpa_range(gpa, 1, a).unwrap(), 0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = g.conv.stats().unwrap();
    assert_eq!(st.exits, 800);
    assert!(
        g.attrs.lock().unwrap().iter().all(|&p| !p),
        "every page ends shared"
    );
}

struct PanicsInReplay {
    heard: AtomicU64,
}

impl Listener for PanicsInReplay {
    fn after(&self, _gpa: u64, _size: u64, _to_private: bool, _result: io::Result<()>) {
        if self.heard.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("replay panics");
        }
    }
}

#[test]
fn a_listener_that_panics_in_its_replay_stays_registered_and_alive() {
    let g = guest();
    let l = Arc::new(PanicsInReplay {
        heard: AtomicU64::new(0),
    });
    let r = panic::catch_unwind(AssertUnwindSafe(|| g.conv.add_listener(l.clone(), true)));
    assert!(r.is_err(), "the replay's panic reaches the caller");
    // the converter keeps its own reference while the library may call it
    assert_eq!(
        Arc::strong_count(&l),
        2,
        "registered listener not kept alive"
    );
    // the library registered it: it keeps hearing conversions, through a
    // slot that must still be alive
    g.conv.convert(0, 4096, true).unwrap();
    assert_eq!(
        l.heard.load(Ordering::SeqCst),
        2,
        "the replay's run, then the conversion"
    );
    assert_eq!(
        g.conv
            .remove_listener(cvmconv::ListenerId::from_raw(0))
            .ok(),
        Some(())
    );
}
