// SPDX-License-Identifier: MIT
//! A Rust VMM's vCPU loop around cvmconv, running the mini-VMM's simulated
//! scenario (examples/mini-vmm, `--simulate`): a software guest makes its
//! conversion requests as exits in a kvm_run-shaped buffer, the loop hands
//! each exit to `Converter::handle_exit`, and the guest's memory accesses
//! land on the side KVM would choose (the attribute a strict recorder keeps:
//! the host's /dev/kvm has no memory attributes). The backings are real:
//! the shared side a 2 MiB `MFD_HUGETLB` memfd when the pool has pages
//! (else shmem, saying so), the private side a shmem memfd standing in for
//! guest_memfd. After each step the guest's data and the kernel's own
//! accounting (st_blocks) are checked. Exit status 0 when every check held.
//!
//! cargo run --example vmm_loop

use std::fs::File;
use std::io;
use std::os::raw::{c_int, c_long, c_void};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use cvmconv::sys::kvm::*;
use cvmconv::{guest_error, Converter, ExitAction, Region, Unaligned, ATTR_PRIVATE};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GUEST: u64 = 16 * MIB;
const ENC: u64 = cvmconv::MAP_GPA_RANGE_ENCRYPTED;
const HINT_2M: u64 = cvmconv::MAP_GPA_RANGE_PAGE_SZ_2M;

enum Step {
    Map(u64, u64, u64),           // gpa, bytes, attrs
    Write(u64, u64, u32),         // gpa, bytes, seed
    Check(u64, u64, Option<u32>), // gpa, bytes, seed the guest must read (None: zeros)
    Fault(u64, bool),             // a guest access of the other kind: KVM_EXIT_MEMORY_FAULT
}

/// The core of the mini-VMM's scenario (examples/mini-vmm/scenario.c).
fn scenario() -> Vec<(Step, &'static str)> {
    use Step::*;
    vec![
        (
            Map(2 * MIB, 2 * MIB, ENC | HINT_2M),
            "aligned 2 MiB to private",
        ),
        (Write(2 * MIB, 8 * KIB, 0xa1), "into two private pages"),
        (
            Check(2 * MIB, 8 * KIB, Some(0xa1)),
            "A from the private side",
        ),
        (
            Map(2 * MIB, 2 * MIB, HINT_2M),
            "back to shared: the private side is punched",
        ),
        (
            Check(2 * MIB, 8 * KIB, None),
            "zeros: A is gone, the shared side was punched",
        ),
        (
            Map(6 * MIB + 4 * KIB, 4 * KIB, ENC),
            "unaligned 4 KiB in a 2 MiB extent",
        ),
        (
            Write(6 * MIB + 4 * KIB, 4 * KIB, 0xb2),
            "into the private page",
        ),
        (
            Write(6 * MIB + 8 * KIB, 4 * KIB, 0xc3),
            "into its shared neighbour",
        ),
        (
            Check(6 * MIB + 4 * KIB, 4 * KIB, Some(0xb2)),
            "B from the private side",
        ),
        (
            Check(6 * MIB + 8 * KIB, 4 * KIB, Some(0xc3)),
            "C from the shared side",
        ),
        (
            Map(8 * MIB + 4 * KIB, 2 * MIB + 4 * KIB, ENC),
            "2 MiB + 4 KiB at a 4 KiB offset",
        ),
        (
            Map(8 * MIB, 4 * KIB, ENC),
            "completes [8M,10M): its huge shared page goes",
        ),
        (
            Fault(12 * MIB, true),
            "a private access to a shared page converts it",
        ),
        (
            Map(GUEST, 4 * KIB, ENC),
            "hostile: outside guest memory, refused",
        ),
        (Map(3 * KIB, 4 * KIB, ENC), "hostile: misaligned, refused"),
    ]
}

extern "C" {
    fn mmap(
        addr: *mut c_void,
        len: usize,
        prot: c_int,
        flags: c_int,
        fd: c_int,
        off: c_long,
    ) -> *mut c_void;
}

/// A shared mapping of a whole backing (hugetlbfs has no write(): mmap it).
struct Mapping {
    file: File,
    base: *mut u32,
}

impl Mapping {
    fn new(fd: OwnedFd) -> io::Result<Mapping> {
        const PROT_RW: c_int = 0x1 | 0x2;
        const MAP_SHARED: c_int = 0x01;
        // SAFETY: a new mapping of GUEST bytes of fd; checked below.
        let p = unsafe {
            mmap(
                std::ptr::null_mut(),
                GUEST as usize,
                PROT_RW,
                MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            file: File::from(fd),
            base: p as *mut u32,
        })
    }
    fn write(&self, gpa: u64, v: u32) {
        // SAFETY: gpa < GUEST, 4-byte aligned; the mapping lives as long as self.
        unsafe { self.base.add((gpa / 4) as usize).write_volatile(v) }
    }
    fn read(&self, gpa: u64) -> u32 {
        // SAFETY: as above.
        unsafe { self.base.add((gpa / 4) as usize).read_volatile() }
    }
}

fn pattern(gpa: u64, seed: u32) -> u32 {
    (seed << 24) ^ (gpa as u32 / 4)
}

struct Vmm {
    conv: Converter,
    attrs: Arc<Mutex<Vec<bool>>>,
    shared: Mapping,
    private: Mapping,
    run: Vec<u64>, // the kvm_run stand-in (8-byte aligned)
    checks: u32,
    failed: u32,
}

impl Vmm {
    fn check(&mut self, ok: bool, what: &str) {
        self.checks += 1;
        if !ok {
            self.failed += 1;
            println!("  FAIL {what}");
        }
    }

    fn run_bytes(&mut self) -> *mut u8 {
        self.run.as_mut_ptr() as *mut u8
    }

    /// KVM_RUN returned with the exit in `run`: the vCPU loop's body.
    fn exit(&mut self) -> io::Result<ExitAction> {
        let run = self.run_bytes().cast();
        // SAFETY: `run` is kvm_run-shaped, 4 KiB, used by this thread only.
        unsafe { self.conv.handle_exit(run) }
    }

    fn put(&mut self, off: usize, v: u64) {
        // SAFETY: off + 8 <= 4096, 8-byte aligned.
        unsafe { *(self.run_bytes().add(off) as *mut u64) = v }
    }

    fn hypercall(&mut self, gpa: u64, bytes: u64, attrs: u64) -> io::Result<u64> {
        let p = self.run_bytes();
        // SAFETY: as in put().
        unsafe { *(p.add(KVM_RUN_EXIT_REASON) as *mut u32) = KVM_EXIT_HYPERCALL };
        self.put(KVM_RUN_HYPERCALL_NR, KVM_HC_MAP_GPA_RANGE);
        self.put(KVM_RUN_HYPERCALL_ARGS, gpa);
        self.put(KVM_RUN_HYPERCALL_ARGS + 8, bytes / 4096);
        self.put(KVM_RUN_HYPERCALL_ARGS + 16, attrs);
        self.put(KVM_RUN_HYPERCALL_RET, 0);
        self.put(KVM_RUN_HYPERCALL_FLAGS, 1); // KVM_EXIT_HYPERCALL_LONG_MODE
        assert_eq!(self.exit()?, ExitAction::Handled);
        Ok(self.run[KVM_RUN_HYPERCALL_RET / 8])
    }

    fn memory_fault(&mut self, gpa: u64, private: bool) -> io::Result<ExitAction> {
        let p = self.run_bytes();
        // SAFETY: as in put().
        unsafe { *(p.add(KVM_RUN_EXIT_REASON) as *mut u32) = KVM_EXIT_MEMORY_FAULT };
        self.put(
            KVM_RUN_MEMORY_FAULT_FLAGS,
            if private {
                KVM_MEMORY_EXIT_FLAG_PRIVATE
            } else {
                0
            },
        );
        self.put(KVM_RUN_MEMORY_FAULT_GPA, gpa);
        self.put(KVM_RUN_MEMORY_FAULT_SIZE, 4096);
        self.exit()
    }

    /// The side a guest access to `gpa` lands on, as KVM picks it.
    fn side(&self, gpa: u64) -> &Mapping {
        if self.attrs.lock().unwrap()[(gpa / 4096) as usize] {
            &self.private
        } else {
            &self.shared
        }
    }

    fn step(&mut self, s: &Step, why: &str) -> io::Result<()> {
        match *s {
            Step::Map(gpa, bytes, attrs) => {
                let ret = self.hypercall(gpa, bytes, attrs)?;
                let hostile = gpa % 4096 != 0 || gpa + bytes > GUEST;
                let want = if hostile {
                    Some(cvmconv::KVM_EINVAL)
                } else {
                    None
                };
                self.check(
                    guest_error(ret) == want,
                    &format!("{why}: guest got {ret:#x}"),
                );
            }
            Step::Write(gpa, bytes, seed) => {
                for a in (gpa..gpa + bytes).step_by(4) {
                    self.side(a).write(a, pattern(a, seed));
                }
            }
            Step::Check(gpa, bytes, seed) => {
                let mut bad = 0;
                for a in (gpa..gpa + bytes).step_by(4) {
                    let want = seed.map(|s| pattern(a, s)).unwrap_or(0);
                    bad += (self.side(a).read(a) != want) as u32;
                }
                self.check(bad == 0, &format!("{why}: {bad} words differ"));
            }
            Step::Fault(gpa, private) => {
                let r = self.memory_fault(gpa, private)?;
                let now = self.conv.is_private(gpa)?;
                self.check(r == ExitAction::Handled && now == private, why);
            }
        }
        Ok(())
    }
}

fn allocated(f: &File) -> u64 {
    f.metadata().map(|m| m.blocks() * 512).unwrap_or(0)
}

/// The shared side: 2 MiB huge pages when the pool can back the guest
/// (the mapping reserves them), else shmem.
fn shared_backing() -> io::Result<(OwnedFd, Mapping, u64)> {
    let huge = cvmconv::memfd_create("vmm-loop-shared", GUEST, 2 * MIB)
        .and_then(|fd| Ok((fd.try_clone()?, Mapping::new(fd)?)));
    match huge {
        Ok((fd, map)) => Ok((fd, map, 2 * MIB)),
        Err(e) => {
            println!("vmm_loop: no 16 MiB of 2 MiB huge pages ({e}): the shared side is shmem");
            let fd = cvmconv::memfd_create("vmm-loop-shared", GUEST, 4096)?;
            Ok((fd.try_clone()?, Mapping::new(fd)?, 4096))
        }
    }
}

fn main() -> io::Result<()> {
    println!(
        "vmm_loop (Rust, cvmconv {}): the mini-VMM's simulated scenario",
        cvmconv::version()
    );
    let attrs = Arc::new(Mutex::new(vec![false; (GUEST / 4096) as usize]));
    let rec = attrs.clone();
    let conv = Converter::builder()
        .unaligned(Unaligned::Log)
        .set_memory_attributes(move |gpa, size, a| {
            // KVM's own checks (kvm_vm_ioctl_set_mem_attributes): aligned,
            // non-empty, known attributes
            let mut pages = rec.lock().unwrap();
            if gpa % 4096 != 0 || size % 4096 != 0 || size == 0 || a & !ATTR_PRIVATE != 0 {
                return Err(io::Error::from_raw_os_error(22));
            }
            for p in &mut pages[(gpa / 4096) as usize..((gpa + size) / 4096) as usize] {
                *p = a != 0;
            }
            Ok(())
        })
        .log(|level, msg| println!("  log {level:?}: {msg}"))
        .build()?;
    let (shared_fd, shared, page) = shared_backing()?;
    let private_fd = cvmconv::memfd_create("vmm-loop-gmem-stand-in", GUEST, 4096)?;
    conv.add_region(
        &Region::new(0, GUEST)
            .shared_fd(&shared_fd, 0)
            .private_fd(&private_fd, 0),
    )?;
    let private = Mapping::new(private_fd)?;
    // the host fills guest RAM, as a VMM loading a kernel would
    for a in (0..GUEST).step_by(4096) {
        shared.write(a, 0);
    }
    let mut vmm = Vmm {
        conv,
        attrs,
        shared,
        private,
        run: vec![0; 512],
        checks: 0,
        failed: 0,
    };
    println!(
        "shared side: {} KiB pages, fd {}",
        page / KIB,
        vmm.shared.file.as_raw_fd()
    );

    println!(
        "{:>3}  {:<52} {:>10} {:>10}",
        "#", "step", "shared KiB", "private KiB"
    );
    for (i, (s, why)) in scenario().iter().enumerate() {
        vmm.step(s, why)?;
        println!(
            "{i:>3}  {why:<52} {:>10} {:>10}",
            allocated(&vmm.shared.file) / KIB,
            allocated(&vmm.private.file) / KIB
        );
    }
    // The kernel's numbers at the end. hugetlb: [8M,10M) was punched whole
    // (step 11); [2M,4M), punched at step 0, came back when the guest read
    // it at step 4; the 4 KiB conversions free nothing. shmem: every page
    // that went private was punched (2 MiB, 4 KiB, 2 MiB + 4 KiB, 4 KiB and
    // the faulting page), and step 4's read brought back two pages.
    let st = vmm.conv.stats()?;
    let shared_want = if page == 2 * MIB {
        GUEST - 2 * MIB
    } else {
        GUEST - 2 * MIB + 8 * KIB - 4 * KIB - (2 * MIB + 4 * KIB) - 4 * KIB - 4 * KIB
    };
    let got = allocated(&vmm.shared.file);
    vmm.check(
        got == shared_want,
        &format!("shared side holds {got} bytes, want {shared_want}"),
    );
    vmm.check(
        st.rejected == 2,
        &format!("{} requests refused, want 2", st.rejected),
    );
    vmm.check(st.exits == 8, &format!("{} exits, want 8", st.exits));
    println!("stats: {}", vmm.conv.stats_json()?);
    println!("vmm_loop: {} checks, {} failed", vmm.checks, vmm.failed);
    std::process::exit(if vmm.failed == 0 { 0 } else { 1 });
}
