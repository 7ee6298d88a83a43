#!/usr/bin/env bash
# cvmconv build helper.
#   ./build.sh demo   configure + build into build/, run the mini-VMM on real
#                     KVM: on the host if it offers SW_PROTECTED VMs, else in
#                     the KVM lab (tools/kvm-lab/; the first run builds its
#                     kernel, with progress), else simulated; it says which
#   ./build.sh convert-demo   the same, running examples/convert-demo
#   ./build.sh test   configure + build into build/, run the test suites (ctest),
#                     the KVM lab suite among them
#   ./build.sh lab    the same build, then only the KVM lab suite (tests/lab/)
#   ./build.sh asan   the same tests in build-asan/ with ASan + UBSan
#   ./build.sh tsan   the same tests in build-tsan/ with TSan
# Environment: CC (compiler), BUILD_DIR (overrides the build directory),
# CVMCONV_CMAKE_ARGS (extra cmake arguments, split on spaces), CVMCONV_LAB=off
# (no KVM lab: the demo runs simulated, the lab suite skips, saying so).
# As root, missing build dependencies are installed with apt-get, and the
# demo and tests raise /proc/sys/vm/nr_hugepages themselves (restoring it).
set -euo pipefail

cd "$(dirname "$0")"

usage() {
	echo "usage: $0 {demo|convert-demo|test|lab|asan|tsan}" >&2
	exit 2
}

[ $# -eq 1 ] || usage
mode=$1
case "$mode" in
demo | convert-demo | test | lab) default_dir=build sanitize= ;;
asan) default_dir=build-asan sanitize=address ;;
tsan) default_dir=build-tsan sanitize=thread ;;
*) usage ;;
esac
build_dir=${BUILD_DIR:-$default_dir}

# --- dependencies (Debian/Ubuntu) ---
need_pkgs=(cmake gcc make pkg-config libcmocka-dev libhugetlbfs-dev man-db systemtap-sdt-dev bpftrace)
# cargo for the Rust bindings' tests: Debian's, unless one is on PATH or in ~/.cargo
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
	need_pkgs+=(cargo)
fi
case "$(basename "${CC:-gcc}")" in
clang*) need_pkgs+=(clang) ;;
esac
# shellcheck source=tools/apt-need.sh
. tools/apt-need.sh
apt_need build.sh "${need_pkgs[@]}"

# --- configure and build ---
cmake_args=()
if [ -n "$sanitize" ]; then
	cmake_args+=("-DCVMCONV_SANITIZE=$sanitize")
fi
if [ -n "${CVMCONV_CMAKE_ARGS:-}" ]; then
	read -r -a extra <<<"$CVMCONV_CMAKE_ARGS"
	cmake_args+=("${extra[@]}")
fi
cmake -S . -B "$build_dir" ${cmake_args[@]+"${cmake_args[@]}"}
cmake --build "$build_dir" -j2

run_demo() {
	local vmm="$build_dir/examples/mini-vmm/mini-vmm" rc=0

	# 1. the host's own KVM, if it offers SW_PROTECTED VMs
	"$vmm" --real || rc=$?
	[ "$rc" -eq 77 ] || return "$rc"
	# 2. the KVM lab: the same binary on a nested Linux 6.12 (77: no lab here)
	if [ "${CVMCONV_LAB:-on}" = off ] || [ -n "$sanitize" ]; then
		echo "build.sh demo: no SW_PROTECTED VM on this host, and the KVM lab is off" \
			"(CVMCONV_LAB=off or a sanitizer build): running the simulated path"
		"$vmm" --simulate
		return
	fi
	echo
	echo "build.sh demo: this host's /dev/kvm has no SW_PROTECTED VMs (above);" \
		"running the real path in the KVM lab (tools/kvm-lab, docs/kvm-lab.md)"
	rc=0
	tools/kvm-lab/run.sh --add "$build_dir/examples/mini-vmm" -- mini-vmm --real || rc=$?
	if [ "$rc" -ne 77 ]; then
		[ "$rc" -ne 0 ] || echo "build.sh demo: the real KVM path ran in the KVM lab" \
			"(KVM_X86_SW_PROTECTED_VM, real guest_memfd)"
		return "$rc"
	fi
	# 3. simulated
	echo
	echo "build.sh demo: no KVM lab here either (above); running the simulated path"
	"$vmm" --simulate
}

run_lab() {
	ctest --test-dir "$build_dir" --output-on-failure -R '^kvm_lab$'
}

run_convert_demo() {
	"$build_dir/examples/convert-demo/convert-demo"
}

run_tests() {
	ctest --test-dir "$build_dir" --output-on-failure
}

case "$mode" in
demo) run_demo ;;
lab) run_lab ;;
convert-demo) run_convert_demo ;;
test) run_tests ;;
asan)
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
	run_tests
	run_demo
	;;
tsan)
	export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
	run_tests
	;;
esac
