#!/bin/sh
# ctest driver for mini-vmm: runs one path, checks the exit status and the
# key lines of its log. Exit 77 (the path cannot run on this machine) is
# passed through with the reason, and ctest reports a skip.
#   test-mini-vmm.sh MINI_VMM simulate|simulate-shmem|native|disasm|real|real-shmem|real-1g|guest-model
set -u
vmm=$1
mode=$2
log=$(mktemp)
trap 'rm -f "$log" "$log.bin" "$log.32" "$log.64"' EXIT

fail() {
	echo "FAIL: $*"
	exit 1
}

# run ARGS...: the log goes to $log and to the test output
run() {
	"$vmm" "$@" >"$log" 2>&1
	rc=$?
	cat "$log"
	echo "--- mini-vmm $* exited $rc"
}

# the exit status of the last run: 0, or 77 passed on with the path's reason
status_ok() {
	if [ "$rc" -eq 77 ]; then
		echo "SKIP: $(grep 'not available' "$log")"
		exit 77
	fi
	[ "$rc" -eq 0 ] || fail "exit status $rc"
}

need() {
	grep -q -- "$1" "$log" || fail "missing line: $1"
}

scenario_lines() {
	need "exit HYPERCALL nr 12"
	need "exit MEMORY_FAULT"
	need "refused as expected"
	need "exit HLT: end of the scenario"
	grep -Eq '^  log_suppressed +[0-9]+   checks failed +0$' "$log" || fail "checks failed row"
	! grep -q "CHECK FAILED" "$log" || fail "a check failed"
}

case "$mode" in
simulate)
	run --simulate
	status_ok
	need "mini-vmm: OK (simulate path"
	need "attributes     : strict recorder"
	scenario_lines
	;;
simulate-shmem)
	run --simulate --shmem
	status_ok
	need "shared backing : shmem memfd"
	need "mini-vmm: OK (simulate path"
	scenario_lines
	;;
native)
	run --native
	status_ok
	need "mini-vmm: OK (native path"
	need "vmcall sites patched"
	scenario_lines
	;;
disasm)
	# The guest bytes decode to the same instructions, at the same offsets,
	# as 32-bit and as 64-bit code; nothing undecodable; one vmcall per map.
	command -v objdump >/dev/null 2>&1 || { echo "SKIP: no objdump"; exit 77; }
	sites=$("$vmm" --dump-guest "$log.bin" | sed -n 's/.* \([0-9][0-9]*\) vmcall sites.*/\1/p')
	[ -n "$sites" ] || fail "--dump-guest"
	objdump -D -b binary -m i386 "$log.bin" | grep -E '^ +[0-9a-f]+:' >"$log.32"
	objdump -D -b binary -m i386:x86-64 "$log.bin" | grep -E '^ +[0-9a-f]+:' >"$log.64"
	sed -n '1,12p' "$log.32"
	! grep -q '(bad)' "$log.32" || fail "undecodable bytes (32-bit)"
	! grep -q '(bad)' "$log.64" || fail "undecodable bytes (64-bit)"
	ops32=$(awk -F'\t' '{ split($3, a, " "); print $1, a[1] }' "$log.32" | md5sum)
	ops64=$(awk -F'\t' '{ split($3, a, " "); print $1, a[1] }' "$log.64" | md5sum)
	[ "$ops32" = "$ops64" ] || fail "32-bit and 64-bit decodings differ"
	maps=$(grep -c 'vmcall' "$log.32")
	[ "$maps" -eq "$sites" ] || fail "$maps vmcall instructions, $sites expected"
	grep -q 'out    %eax,\$0x80' "$log.32" || fail "no step report"
	grep -q 'hlt' "$log.32" || fail "no hlt"
	echo "guest code: $(wc -l <"$log.32") instructions, $maps vmcall, same decoding in both modes"
	;;
real | real-shmem | real-1g)
	# real: the shared side must be on 2 MiB huge pages (the lab and a host
	# with SW_PROTECTED VMs can always raise the pool as root)
	case "$mode" in
	real) run --real ;;
	real-shmem) run --real --shmem ;;
	real-1g) run --real --huge-1g ;;
	esac
	status_ok
	need "mini-vmm: OK (kvm path"
	need "private backing: guest_memfd"
	case "$mode" in
	real) need "shared backing : memfd with 2 MiB huge pages" ;;
	real-shmem) need "shared backing : shmem memfd" ;;
	real-1g) need "shared backing : memfd with 1 GiB huge pages" ;;
	esac
	scenario_lines
	;;
guest-model)
	run --simulate --guest-model
	[ "$rc" -eq 0 ] || fail "exit status $rc (legacy, snp)"
	need "mini-vmm: guest model OK (snp, legacy)"
	run --simulate --guest-model --rfc --platform tdx
	[ "$rc" -eq 0 ] || fail "exit status $rc (rfc, tdx)"
	need "mini-vmm: guest model OK (tdx, rfc)"
	;;
*)
	fail "unknown mode $mode"
	;;
esac
echo "PASS: $mode"
