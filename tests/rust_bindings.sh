#!/usr/bin/env bash
# rust_bindings.sh BUILD_DIR: cargo test of bindings/rust (the cvmconv-sys
# layout test, unit and doc tests, the safe API's tests on real memfds)
# against this build's libcvmconv, then its examples: quickstart (the
# README's "From Rust" snippet) and vmm_loop (the mini-VMM's simulated
# scenario in a Rust vCPU loop) on shmem and, as root, on 2 MiB huge pages.
# Skips (77) when no cargo is found, unless CVMCONV_RUST_REQUIRED=1 (CI).
set -euo pipefail

build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)

cargo=$(command -v cargo || true)
[ -n "$cargo" ] || [ ! -x "$HOME/.cargo/bin/cargo" ] || cargo=$HOME/.cargo/bin/cargo
if [ -z "$cargo" ]; then
	echo "rust_bindings: SKIP: no cargo (./build.sh installs Debian's cargo as root)"
	[ "${CVMCONV_RUST_REQUIRED:-0}" = 1 ] && exit 1
	exit 77
fi

export CARGO_TARGET_DIR=$build/rust-target
export CVMCONV_LIB_DIR=$build
export CVMCONV_INCLUDE_DIR=$src/include
cd "$src/bindings/rust"
echo "rust_bindings: $("$cargo" --version), $(rustc --version 2>/dev/null || echo rustc ?)"
echo "rust_bindings: cargo test (the first build compiles both crates: about 30 s)"
"$cargo" test --offline 2>&1
"$cargo" run --offline -q --example quickstart

# The oldest Rust the crates support is Debian 12's (1.63): where it is
# installed beside a newer one, the tests build and run with it too.
if [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] &&
	[ "$(readlink -f "$cargo")" != "$(readlink -f /usr/bin/cargo)" ]; then
	echo "rust_bindings: cargo test again with Debian's $(/usr/bin/rustc --version)"
	rc=0
	RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO_TARGET_DIR=$build/rust-target-debian \
		/usr/bin/cargo test --offline >"$build/rust-debian.log" 2>&1 || rc=$?
	grep -E '^test result|FAILED|panicked|^error' "$build/rust-debian.log" || true
	if [ "$rc" -ne 0 ]; then
		cat "$build/rust-debian.log"
		echo "rust_bindings: FAIL: cargo test with Debian's Rust"
		exit 1
	fi
fi

echo "rust_bindings: vmm_loop on shmem"
nr=/proc/sys/vm/nr_hugepages
if [ "$(id -u)" -eq 0 ] && [ -w "$nr" ]; then
	old=$(cat "$nr")
	echo 0 >"$nr" 2>/dev/null || true # a pool that cannot back the guest: shmem
	trap 'echo "$old" >"$nr"' EXIT
	"$cargo" run --offline -q --example vmm_loop
	echo "rust_bindings: vmm_loop on 2 MiB huge pages (nr_hugepages $old -> $((old + 8)))"
	echo $((old + 8)) >"$nr"
	"$cargo" run --offline -q --example vmm_loop | tee "$build/rust-vmm-loop.log"
	grep -q 'shared side: 2048 KiB pages' "$build/rust-vmm-loop.log" ||
		{ echo "rust_bindings: FAIL: vmm_loop did not get huge pages"; exit 1; }
else
	"$cargo" run --offline -q --example vmm_loop
	echo "rust_bindings: not root: vmm_loop on huge pages skipped (cannot reserve them)"
fi

# The same loop on a real KVM_X86_SW_PROTECTED_VM in the KVM lab: the
# library's own KVM_SET_MEMORY_ATTRIBUTES calls, a real guest_memfd.
if [ "${CVMCONV_LAB:-on}" = off ]; then
	echo "rust_bindings: vmm_loop --kvm skipped: the KVM lab is off (CVMCONV_LAB=off)"
	exit 0
fi
lab_dir=$(mktemp -d)
trap 'rm -rf "$lab_dir"; [ -z "${old:-}" ] || echo "$old" >"$nr"' EXIT
mkdir "$lab_dir/vmm-loop"
cp "$CARGO_TARGET_DIR/debug/examples/vmm_loop" "$lab_dir/vmm-loop/"
echo "rust_bindings: vmm_loop --kvm in the KVM lab (the first run on a machine builds its kernel)"
rc=0
"$src/tools/kvm-lab/run.sh" --mem 2048 --cpus 2 --timeout 300 --add "$lab_dir/vmm-loop" -- \
	sh -c 'echo 8 > /proc/sys/vm/nr_hugepages && ./vmm_loop --kvm' || rc=$?
if [ "$rc" -eq 77 ]; then
	echo "rust_bindings: vmm_loop --kvm skipped: no KVM lab here (above)"
	[ "${CVMCONV_LAB_REQUIRED:-0}" = 1 ] && exit 1
	exit 0
fi
exit "$rc"
