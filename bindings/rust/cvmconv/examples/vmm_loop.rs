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
//! With `--kvm` (the KVM lab: a kernel with KVM_SW_PROTECTED_VM) the same
//! loop runs against a real `KVM_X86_SW_PROTECTED_VM`: the library's own
//! `KVM_SET_MEMORY_ATTRIBUTES` calls on the VM fd, a real guest_memfd bound
//! to the memslot as the private side (punched with fallocate). The host
//! cannot read guest_memfd, so the guest's private writes are allocations
//! (fallocate, as the guest's fault would make them), private reads are not
//! checked, and the private side is measured where the kernel counts it:
//! guest_memfd pages are unevictable (virt/kvm/guest_memfd.c), so
//! /proc/meminfo's Unevictable. No vCPU runs: the exits are the software
//! guest's. Exit status 77 when there is no such VM here.
//!
//! cargo run --example vmm_loop [-- --kvm]

use std::fs::File;
use std::io;
use std::os::raw::{c_int, c_long, c_ulong, c_void};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::{AsFd, AsRawFd, FromRawFd, OwnedFd};
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
    Held(u64),                    // the kernel counts this many bytes on the private side
}

/// The core of the mini-VMM's scenario (examples/mini-vmm/scenario.c).
fn scenario() -> Vec<(Step, &'static str)> {
    use Step::*;
    vec![
        (
            Map(2 * MIB, 2 * MIB, ENC | HINT_2M),
            "aligned 2 MiB to private",
        ),
        (
            Write(2 * MIB, 2 * MIB, 0xa1),
            "into the whole private extent",
        ),
        (Held(2 * MIB), "the kernel holds it on the private side"),
        (
            Check(2 * MIB, 8 * KIB, Some(0xa1)),
            "A from the private side",
        ),
        (
            Map(2 * MIB, 2 * MIB, HINT_2M),
            "back to shared: the private side is punched",
        ),
        (Held(0), "the kernel freed it"),
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
    fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
    fn fallocate(fd: c_int, mode: c_int, offset: i64, len: i64) -> c_int;
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

/// The private side: a shmem stand-in the host maps, or a real guest_memfd.
enum Private {
    StandIn(Mapping),
    Gmem { file: File, unevictable_base: u64 },
}

impl Private {
    /// Bytes the kernel has allocated to it.
    fn allocated(&self) -> u64 {
        match self {
            Private::StandIn(m) => allocated(&m.file),
            Private::Gmem {
                unevictable_base, ..
            } => unevictable().saturating_sub(*unevictable_base),
        }
    }
}

impl Private {
    /// How far the kernel's count may be off: none for st_blocks; for
    /// Unevictable the per-CPU vmstat deltas not yet folded into the
    /// global counter (mm/vmstat.c: up to a threshold of pages per CPU,
    /// at most 125), so 512 KiB on the lab's 2 CPUs.
    fn tolerance(&self) -> u64 {
        match self {
            Private::StandIn(_) => 0,
            Private::Gmem { .. } => 512 * KIB,
        }
    }
}

/// /proc/meminfo Unevictable, bytes.
fn unevictable() -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    m.lines()
        .find_map(|l| l.strip_prefix("Unevictable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * KIB)
        .unwrap_or(0)
}

struct Vmm {
    conv: Converter,
    attrs: Option<Arc<Mutex<Vec<bool>>>>, // the recorder; None: real KVM
    shared: Mapping,
    private: Private,
    run: Vec<u64>, // the kvm_run stand-in (8-byte aligned)
    checks: u32,
    failed: u32,
    skipped: u32,
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

    /// Whether a guest access to `gpa` lands on the private side, as KVM
    /// picks it: the recorder's attribute, or (real KVM, which cannot be
    /// asked) the library's view.
    fn is_private(&self, gpa: u64) -> bool {
        match &self.attrs {
            Some(a) => a.lock().unwrap()[(gpa / 4096) as usize],
            None => self.conv.is_private(gpa).unwrap_or(false),
        }
    }

    /// The mapping a guest access to `gpa` touches; None: guest_memfd,
    /// which the host cannot map.
    fn side(&self, gpa: u64) -> Option<&Mapping> {
        match (self.is_private(gpa), &self.private) {
            (false, _) => Some(&self.shared),
            (true, Private::StandIn(m)) => Some(m),
            (true, Private::Gmem { .. }) => None,
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
                    match (self.side(a), &self.private) {
                        (Some(m), _) => m.write(a, pattern(a, seed)),
                        // the guest's write to a private page allocates it;
                        // guest_memfd allocates only with FALLOC_FL_KEEP_SIZE
                        // (virt/kvm/guest_memfd.c, kvm_gmem_fallocate)
                        (None, Private::Gmem { file, .. }) if a % 4096 == 0 => {
                            // SAFETY: plain syscall on an fd we own.
                            let r = unsafe { fallocate(file.as_raw_fd(), 1, a as i64, 4096) };
                            let e = io::Error::last_os_error();
                            self.check(r == 0, &format!("{why}: fallocate of guest_memfd: {e}"));
                        }
                        (None, _) => {}
                    }
                }
            }
            Step::Check(gpa, bytes, seed) => {
                let (mut bad, mut unseen) = (0, 0);
                for a in (gpa..gpa + bytes).step_by(4) {
                    let want = seed.map(|s| pattern(a, s)).unwrap_or(0);
                    match self.side(a) {
                        Some(m) => bad += (m.read(a) != want) as u32,
                        None => unseen += 1,
                    }
                }
                if unseen * 4 < bytes {
                    self.check(bad == 0, &format!("{why}: {bad} words differ"));
                } else {
                    self.skipped += 1; // private data on guest_memfd: the host cannot read it
                }
            }
            Step::Held(want) => {
                let (got, tol) = (self.private.allocated(), self.private.tolerance());
                self.check(
                    got + tol >= want && got <= want + tol,
                    &format!("{why}: private side holds {got} bytes, want {want} +- {tol}"),
                );
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

/// A real KVM_X86_SW_PROTECTED_VM with a guest_memfd memslot over the
/// shared mapping (include/uapi/linux/kvm.h: KVM_CREATE_VM = _IO(0xAE, 1),
/// KVM_CREATE_GUEST_MEMFD = _IOWR(0xAE, 0xd4, 64 bytes),
/// KVM_SET_USER_MEMORY_REGION2 = _IOW(0xAE, 0x49, 160 bytes),
/// KVM_X86_SW_PROTECTED_VM = 1, KVM_MEM_GUEST_MEMFD = 1 << 2).
fn sw_protected_vm(shared: &Mapping) -> Result<(OwnedFd, OwnedFd), String> {
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm: {e}"))?;
    // SAFETY: KVM ioctls with the argument types the UAPI gives them.
    let vm = unsafe { ioctl(kvm.as_raw_fd(), 0xae01, 1 as c_ulong) };
    if vm < 0 {
        return Err(format!(
            "KVM_CREATE_VM(KVM_X86_SW_PROTECTED_VM): {} (a kernel without KVM_SW_PROTECTED_VM)",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: a new fd.
    let vm = unsafe { OwnedFd::from_raw_fd(vm) };
    let mut gmem_args = [0u64; 8]; // size, flags, reserved[6]
    gmem_args[0] = GUEST;
    // SAFETY: as above; the struct is 64 bytes.
    let gmem = unsafe { ioctl(vm.as_raw_fd(), 0xc040_aed4, gmem_args.as_mut_ptr()) };
    if gmem < 0 {
        return Err(format!(
            "KVM_CREATE_GUEST_MEMFD: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: a new fd.
    let gmem = unsafe { OwnedFd::from_raw_fd(gmem) };
    let mut slot = [0u64; 20]; // struct kvm_userspace_memory_region2
    slot[0] = 4 << 32; // slot 0, flags KVM_MEM_GUEST_MEMFD
    slot[2] = GUEST; // guest_phys_addr 0, memory_size
    slot[3] = shared.base as u64; // userspace_addr
    slot[5] = gmem.as_raw_fd() as u64; // guest_memfd_offset 0, guest_memfd
                                       // SAFETY: as above; the struct is 160 bytes.
    if unsafe { ioctl(vm.as_raw_fd(), 0x40a0_ae49, slot.as_mut_ptr()) } < 0 {
        return Err(format!(
            "KVM_SET_USER_MEMORY_REGION2: {}",
            io::Error::last_os_error()
        ));
    }
    Ok((vm, gmem))
}

fn main() -> io::Result<()> {
    let real = std::env::args().any(|a| a == "--kvm");
    println!(
        "vmm_loop (Rust, cvmconv {}): the mini-VMM's simulated scenario, {}",
        cvmconv::version(),
        if real {
            "attributes and guest_memfd of a real KVM_X86_SW_PROTECTED_VM"
        } else {
            "attributes kept by a strict recorder, a shmem stand-in for guest_memfd"
        }
    );
    let (shared_fd, shared, page) = shared_backing()?;
    let mut builder = Converter::builder()
        .unaligned(Unaligned::Log)
        .log(|level, msg| println!("  log {level:?}: {msg}"));
    let (attrs, private, _vm, private_fd) = if real {
        let (vm, gmem) = match sw_protected_vm(&shared) {
            Ok(v) => v,
            Err(why) => {
                println!("vmm_loop: SKIP --kvm: {why}");
                std::process::exit(77);
            }
        };
        builder = builder.vm_fd(vm.as_fd());
        let file = File::from(gmem.try_clone()?);
        let base = unevictable();
        (
            None,
            Private::Gmem {
                file,
                unevictable_base: base,
            },
            Some(vm),
            gmem,
        )
    } else {
        let attrs = Arc::new(Mutex::new(vec![false; (GUEST / 4096) as usize]));
        let rec = attrs.clone();
        builder = builder.set_memory_attributes(move |gpa, size, a| {
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
        });
        let fd = cvmconv::memfd_create("vmm-loop-gmem-stand-in", GUEST, 4096)?;
        (
            Some(attrs),
            Private::StandIn(Mapping::new(fd.try_clone()?)?),
            None,
            fd,
        )
    };
    // the VM (real KVM) must outlive the converter: declared before it
    let conv = builder.build()?;
    conv.add_region(
        &Region::new(0, GUEST)
            .shared_fd(&shared_fd, 0)
            .private_fd(&private_fd, 0),
    )?;
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
        skipped: 0,
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
            vmm.private.allocated() / KIB
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
    vmm.step(&Step::Held(4 * KIB), "at the end, the private side holds B")?;
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
    let unread = if real {
        format!(
            ", {} reads of guest_memfd not checked (the host cannot read it)",
            vmm.skipped
        )
    } else {
        String::new()
    };
    println!(
        "vmm_loop: {} checks, {} failed{unread}",
        vmm.checks, vmm.failed
    );
    std::process::exit(if vmm.failed == 0 { 0 } else { 1 });
}
