// SPDX-License-Identifier: MIT
// The README's "From Rust" snippet, run by the build (cargo run --example quickstart).
use cvmconv::{Converter, ExitAction, Region, Unaligned};
use std::io;

fn main() -> io::Result<()> {
    // A real VMM passes its VM fd (.vm_fd(vm.as_fd())) and guest_memfd; here
    // a closure takes the attribute updates and memfds are both sides.
    let conv = Converter::builder()
        .unaligned(Unaligned::Log)
        .set_memory_attributes(|_gpa, _size, _attrs| Ok(()))
        .log(|level, msg| eprintln!("cvmconv {level:?}: {msg}"))
        .build()?;
    let ram = cvmconv::memfd_create("guest-ram", 16 << 20, 4096)?;
    let gmem = cvmconv::memfd_create("gmem-stand-in", 16 << 20, 4096)?;
    conv.add_region(
        &Region::new(0, 16 << 20)
            .shared_fd(&ram, 0)
            .private_fd(&gmem, 0),
    )?;

    // The vCPU loop: after KVM_RUN returns, hand the exit to cvmconv.
    let mut run = vec![0u64; 512]; // stands in for the vCPU's mapped kvm_run
    let p = run.as_mut_ptr() as *mut u8;
    unsafe {
        use cvmconv::sys::kvm::*;
        *(p.add(KVM_RUN_EXIT_REASON) as *mut u32) = KVM_EXIT_HYPERCALL;
        *(p.add(KVM_RUN_HYPERCALL_NR) as *mut u64) = KVM_HC_MAP_GPA_RANGE;
        let args = p.add(KVM_RUN_HYPERCALL_ARGS) as *mut u64;
        *args = 2 << 20; // gpa
        *args.add(1) = 512; // 4 KiB pages
        *args.add(2) = cvmconv::MAP_GPA_RANGE_ENCRYPTED;
    }
    // SAFETY: `run` is kvm_run-shaped and only this thread uses it.
    match unsafe { conv.handle_exit(p.cast()) }? {
        ExitAction::Handled => {}                    // answered: re-enter KVM_RUN
        ExitAction::NotConversion => unreachable!(), // the VMM's own exit handling
    }
    println!(
        "2 MiB at 2 MiB private: {}; {:?}",
        conv.is_private(2 << 20)?,
        conv.stats()?
    );
    Ok(())
}
