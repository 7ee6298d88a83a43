#!/usr/bin/env bash
# The USDT probes of docs/tracing.md are in libcvmconv.so (readelf -n), and,
# where bpftrace can attach here, a real trace of a program converting
# memory sees them fire.
#
#   tests/usdt_probes.sh BUILD_DIR
set -euo pipefail

build=${1:?usage: usdt_probes.sh BUILD_DIR}
lib=$build/libcvmconv.so
prog=$build/examples/api/api-example-quickstart
probes=(hypercall hypercall_done memory_fault memory_fault_done refused attr_update
	attr_update_done rollback alloc_shared_failed punch flush flush_done)

if ! grep -q '^CVMCONV_HAVE_SDT:INTERNAL=1' "$build/CMakeCache.txt" 2>/dev/null; then
	echo "SKIP: the library was built without <sys/sdt.h> (Debian: systemtap-sdt-dev), so without probes"
	exit 77
fi
command -v readelf >/dev/null || { echo "SKIP: no readelf (Debian: binutils)"; exit 77; }
notes=$(readelf -n "$lib")
fail=0
for p in "${probes[@]}"; do
	if ! grep -q "Name: $p\$" <<<"$notes"; then
		echo "FAIL: probe cvmconv:$p is not in $lib"
		fail=1
	fi
done
echo "usdt_probes: ${#probes[@]} probes in $(basename "$lib"): ${probes[*]}"
((fail == 0)) || exit 1

# a real trace: the quickstart converts 2 MiB through a hypercall
if ! command -v bpftrace >/dev/null; then
	echo "usdt_probes: trace part skipped: no bpftrace (Debian: bpftrace)"
	exit 0
fi
if ! timeout 20 bpftrace -e 'BEGIN { exit(); }' >/dev/null 2>&1; then
	echo "usdt_probes: trace part skipped: bpftrace cannot load programs here (not root, or no BPF)"
	exit 0
fi
out=$(timeout 60 bpftrace -e "
usdt:$prog:cvmconv:hypercall { @hypercalls = count(); }
usdt:$prog:cvmconv:attr_update { @attr_bytes = sum(arg1); }" -c "$prog" 2>&1 || true)
hc=$(awk '/^@hypercalls:/ { print $2 }' <<<"$out")
bytes=$(awk '/^@attr_bytes:/ { print $2 }' <<<"$out")
echo "usdt_probes: bpftrace saw ${hc:-0} hypercall(s), ${bytes:-0} bytes of attribute updates"
if [[ -z $hc || $hc -lt 1 || -z $bytes || $bytes -lt 4096 ]]; then
	echo "FAIL: the trace saw no conversion; bpftrace said:"
	echo "$out"
	exit 1
fi

# The README's Tracing one-liner itself, on a program the guest of which is
# refused (a reserved attribute bit): -p for -c, and the library path for
# the program's (the examples link the library statically, probes included).
readme=$(cd "$(dirname "$0")/.." && pwd)/README.md
one_liner=$(sed -n "s/^bpftrace -p \"\$(pidof my-vmm)\" -e '\(.*\)'\$/\1/p" "$readme" | head -1)
if [[ -z $one_liner ]]; then
	echo "FAIL: no bpftrace one-liner found in README.md's Tracing section"
	exit 1
fi
hostile=$build/examples/api/api-example-handle_exit
one_liner=${one_liner//\/usr\/local\/lib\/libcvmconv.so/$hostile}
out=$(timeout 60 bpftrace -e "$one_liner" -c "$hostile" 2>&1 || true)
reasons=$(grep -c '^@\[' <<<"$out" || true)
echo "usdt_probes: the README one-liner saw $reasons refusal reason(s):"
grep '^@\[' <<<"$out" || true
if [[ $reasons -lt 1 ]]; then
	echo "FAIL: the README's one-liner saw no refusal; bpftrace said:"
	echo "$out"
	exit 1
fi
