#!/usr/bin/env bash
# replay_test.sh REPLAY DATA_DIR
#
# cvmconv-replay end to end on the committed sample traces. Every expected
# figure below is derived by hand from the trace, step by step, in the
# comments; the replay must agree exactly.
set -uo pipefail

replay=$1
data=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

failures=0
fail() {
	echo "FAIL: $*" >&2
	failures=$((failures + 1))
}

# json_get FILE KEY: the integer value of "KEY" in the one-line JSON object
json_get() {
	grep -o "\"$2\":[0-9]*" "$1" | head -n1 | cut -d: -f2
}

# expect_json FILE WHAT KEY=VALUE...
expect_json() {
	local file=$1 what=$2 kv key want got
	shift 2
	for kv in "$@"; do
		key=${kv%%=*}
		want=${kv#*=}
		got=$(json_get "$file" "$key")
		if [ "$got" != "$want" ]; then
			fail "$what: $key = ${got:-<missing>}, expected $want"
		fi
	done
}

# run WHAT EXPECTED_STATUS ARGS...: output in $tmp/out, $tmp/err
run() {
	local what=$1 want=$2 status
	shift 2
	"$replay" "$@" >"$tmp/out" 2>"$tmp/err"
	status=$?
	if [ "$status" != "$want" ]; then
		fail "$what: exit status $status, expected $want"
		sed 's/^/    /' "$tmp/err" >&2
	fi
}

expect_in() { # expect_in FILE WHAT PATTERN
	grep -qE -- "$3" "$1" || fail "$2: no line matching '$3' in $(basename "$1")"
}

ftrace=$data/tdx-split.trace
own=$data/own-format.trace

# ---------------------------------------------------------------------------
# tdx-split.trace, default: --policy allow --granule 2m --backing shmem,
# layout inferred. All gpas lie below 1 GiB, so guest memory is [0, 1 GiB):
# 512 extents of 2 MiB, all shared at start.
#
#   exit  request                                   result
#   c1    0x10001000 +0x200 pages, private          unaligned; 512 pages -> private
#   c2    0x10201000 +0x200, private                unaligned; 512 pages
#   c3    0x10401000 +0x200, private                unaligned; 512 pages
#   c4    0x10601000 +0x200, private                unaligned; 512 pages
#   --    nr 0x5                                    skipped (not MAP_GPA_RANGE)
#   s1    0x10200000 +1, shared                     unaligned; 1 page -> shared
#   s2    0x10000000 +1, private                    unaligned; 1 page (extent 256M now whole)
#   s3    0x20000000 +1, private                    unaligned; 1 page
#   s4    0x20000000 +1, private                    unaligned; already private: no kernel call
#   h1    0x30000000 attrs 0x80                     refused: reserved bit (before policy)
#   h2    0x30001000 +0x200 attrs 0x11              refused: 2M hint, not 2 MiB aligned
#   a1    0x10400000 +0x200 attrs 0x1, shared       aligned; 512 pages -> shared
#
# exits 11 (the 0xc lines), rejected 2, unaligned 8 (c1-c4, s1-s4).
# attr_updates 8: c1-c4, s1-s3, a1 (s4 changes nothing). Each is one run,
# and on 4 KiB backings each run's stale side is punched at once: punches 8.
# to_private = 4 * 2 MiB + 2 * 4 KiB = 8396800; to_shared = 4 KiB + 2 MiB =
# 2101248. Final state: extent 256M whole private, 258M private but page 0,
# 260M shared again, 262M private, 264M page 0 private, 512M page 0
# private: mixed_extents 3 (258M, 264M, 512M); huge_mappable = 509 * 2 MiB.
# ---------------------------------------------------------------------------
run "ftrace default" 0 "$ftrace" --json "$tmp/a.json" --csv "$tmp/a.csv"
expect_json "$tmp/a.json" "ftrace default" exits=11 rejected=2 unaligned=8 attr_updates=8 \
	punches=8 punch_failures=0 to_private_bytes=8396800 to_shared_bytes=2101248 \
	double_alloc_bytes=0 double_alloc_peak_bytes=0 mixed_extents=3 extents=512 \
	guest_bytes=1073741824 huge_mappable_bytes=1067450368 broken=0
expect_in "$tmp/out" "ftrace default" "no /dev/kvm is used"
expect_in "$tmp/out" "ftrace default" '^memory: +\[0x0, 0x40000000\) 1 GiB \(inferred'
expect_in "$tmp/out" "ftrace default" 'kvm_hypercall lines +12$'
expect_in "$tmp/out" "ftrace default" 'other hypercalls \(skipped\) +1$'
expect_in "$tmp/out" "ftrace default" 'agrees with the recorded attributes on all 262144 pages'
expect_in "$tmp/out" "ftrace default" '^  double_alloc_peak_bytes +0 '
expect_in "$tmp/err" "ftrace default" '^line 35: cvmconv: .*reserved attribute bits'
# CSV: the field names, then the same values as the JSON
head -n1 "$tmp/a.csv" | grep -q '^exits,rejected,unaligned,to_private_bytes,to_shared_bytes,attr_updates,punches,punch_failures,double_alloc_bytes,double_alloc_peak_bytes,mixed_extents,extents,guest_bytes,huge_mappable_bytes,punch_pending_bytes,tracker_bytes,log_suppressed,broken,bookkeeping_steps,shared_alloc_failures,gmem_busy_retries,gmem_busy_failures$' ||
	fail "csv header: $(head -n1 "$tmp/a.csv")"
sed -n 2p "$tmp/a.csv" | grep -q '^11,2,8,8396800,2101248,8,8,0,0,0,3,512,1073741824,1067450368,0,' ||
	fail "csv values: $(sed -n 2p "$tmp/a.csv")"

# --policy reject: the 8 unaligned requests are refused as well (10 in all);
# a1 then finds extent 260M still shared: nothing to do, no kernel call.
run "ftrace reject" 0 "$ftrace" --policy reject --json "$tmp/b.json"
expect_json "$tmp/b.json" "ftrace reject" exits=11 rejected=10 unaligned=8 attr_updates=0 \
	punches=0 to_private_bytes=0 to_shared_bytes=0 mixed_extents=0

# --granule 4k: every request is 4 KiB aligned, so reject refuses only the
# two malformed ones: as the default run, but unaligned 0.
run "ftrace 4k reject" 0 "$ftrace" --granule 4k --policy reject --json "$tmp/c.json"
expect_json "$tmp/c.json" "ftrace 4k reject" exits=11 rejected=2 unaligned=0 attr_updates=8 \
	punches=8 to_private_bytes=8396800

# --granule 1g: the aligned 2 MiB a1 is unaligned now too: 9.
run "ftrace 1g" 0 "$ftrace" --granule 1g --json "$tmp/c1.json"
expect_json "$tmp/c1.json" "ftrace 1g" exits=11 rejected=2 unaligned=9 attr_updates=8

# --backing none: no shared side to punch; only the two runs to shared
# punch (the private stand-in): punches 2.
run "ftrace none" 0 "$ftrace" --backing none --json "$tmp/d.json"
expect_json "$tmp/d.json" "ftrace none" attr_updates=8 punches=2 double_alloc_bytes=0

# --policy log: same figures as allow, the library logs each unaligned one
run "ftrace log" 0 "$ftrace" --policy log --json "$tmp/e.json"
expect_json "$tmp/e.json" "ftrace log" rejected=2 unaligned=8 attr_updates=8
expect_in "$tmp/err" "ftrace log" '^line 19: cvmconv: unaligned conversion to private: gpa 0x10001000'

# standard input gives the same result (read twice via a spool file)
"$replay" - --json "$tmp/f.json" <"$ftrace" >/dev/null 2>&1 || fail "stdin: exit status $?"
cmp -s "$tmp/a.json" "$tmp/f.json" || fail "stdin: JSON differs from the file run"

# --start private: one attribute update at add_region (counted), and c1-c4,
# s2-s4 find their pages private already; s1 and a1 convert to shared.
run "ftrace start private" 0 "$ftrace" --start private --json "$tmp/g.json"
expect_json "$tmp/g.json" "ftrace start private" attr_updates=3 to_private_bytes=0 \
	to_shared_bytes=2101248

# --host in-place (CVMCONV_REGION_INPLACE, one guest_memfd stand-in per
# region): the same requests, the same attribute updates (one
# KVM_SET_MEMORY_ATTRIBUTES2 each, every run inside the one region) and the
# same final state, but nothing to punch: punches 0, double allocation 0.
# With --touch the one file holds each page once: the whole 1 GiB, no more.
run "ftrace in place" 0 "$ftrace" --host in-place --json "$tmp/ip.json"
expect_json "$tmp/ip.json" "ftrace in place" exits=11 rejected=2 unaligned=8 attr_updates=8 \
	punches=0 to_private_bytes=8396800 to_shared_bytes=2101248 double_alloc_bytes=0 \
	double_alloc_peak_bytes=0 mixed_extents=3 huge_mappable_bytes=1067450368 broken=0
expect_in "$tmp/out" "ftrace in place" '^backings: +in place \(CVMCONV_REGION_INPLACE\)'
expect_in "$tmp/out" "ftrace in place" 'agrees with the recorded attributes on all 262144 pages'
run "ftrace in place touch" 0 "$ftrace" --host in-place --touch
expect_in "$tmp/out" "ftrace in place touch" 'guest_memfd stand-in allocated +1073741824 '
# --gmem-busy-every N: every Nth to-private guest_memfd update finds a
# transient host reference and is refused once with EAGAIN; the library
# tries it again and it goes through. The to-private updates are c1-c4,
# s2 and s3 (s4 makes no call): N = 1 busies all 6 (attr_updates 8 + 6
# retries = 14), N = 2 the 2nd, 4th and 6th (c2, c4, s3: 11); the end
# state is the same.
run "ftrace in place busy 1" 0 "$ftrace" --host in-place --gmem-busy-every 1 --json "$tmp/ib1.json"
expect_json "$tmp/ib1.json" "ftrace in place busy 1" gmem_busy_retries=6 gmem_busy_failures=0 \
	attr_updates=14 to_private_bytes=8396800 mixed_extents=3 broken=0
expect_in "$tmp/out" "ftrace in place busy 1" 'agrees with the recorded attributes on all 262144 pages'
run "ftrace in place busy 2" 0 "$ftrace" --host in-place --gmem-busy-every 2 --json "$tmp/ib2.json"
expect_json "$tmp/ib2.json" "ftrace in place busy 2" gmem_busy_retries=3 attr_updates=11
run "usage busy without in place" 2 "$ftrace" --gmem-busy-every 2
run "usage in place backing" 2 "$ftrace" --host in-place --backing hugetlb
run "usage host" 2 "$ftrace" --host qemu

# --host qemu-like: the baseline (tools/engine/qemu_like.c) takes every one
# of the 11 exits: it ignores every attribute bit but the encrypted one, so
# h1 (attrs 0x80) becomes a to-shared conversion of a shared page and h2 a
# to-private conversion of 512 unaligned pages, and s4 converts again what
# is private already: 11 attribute updates (10 MiB private, 2 MiB shared),
# and on 4 KiB backings one discard of the old side each: 11. h2 leaves two
# more extents mixed (0x30000000 and 0x30200000): 5. The options of
# cvmconv alone are refused.
run "ftrace qemu-like" 0 "$ftrace" --host qemu-like
expect_in "$tmp/out" "ftrace qemu-like" '^  conversions +11$'
expect_in "$tmp/out" "ftrace qemu-like" '^  attribute updates +11$'
expect_in "$tmp/out" "ftrace qemu-like" '^  discards \(punches\) +11$'
expect_in "$tmp/out" "ftrace qemu-like" '^  mixed extents \(the attributes\) +5$'
expect_in "$tmp/out" "ftrace qemu-like" '11 update\(s\): 10.0 MiB set private, 2.0 MiB set shared, 0 refused'
run "usage qemu-like policy" 2 "$ftrace" --host qemu-like --policy reject
run "usage qemu-like json" 2 "$ftrace" --host qemu-like --json "$tmp/q.json"
run "usage qemu-like none" 2 "$ftrace" --host qemu-like --backing none

# ---------------------------------------------------------------------------
# own-format.trace on two adjacent 64 MiB regions at 4 GiB (32 extents
# each), policy allow:
#   L1  map 4G +512 attrs 0x11           aligned; 2 MiB private; 1 update, 1 punch
#   L2  map 4G+2M +0x200                 aligned; 2 MiB; 1 update, 1 punch
#   L3  fault 4G+4M+4K 4096 private      unaligned; 4 KiB; 1 update, 1 punch
#   L4  the same fault                   unaligned; nothing to do
#   L5  convert 4G+6M 2 MiB private      host, no policy; 1 update, 1 punch
#   L6  convert 4G+16M 4096 private      host; 1 update, 1 punch
#   L7  map 4G+62M +1024 (4 MiB)         aligned, spans both regions: one
#                                        update, one punch per region (2)
#   L8  map 0x1000                       refused: outside guest memory
#   L9  fault 4G+128M shared             refused: outside (-EFAULT)
#   L10 convert 4G+2K                    host refusal -EINVAL (not in rejected)
#   L11 map attrs 0x20                   refused: reserved bit
#   L12 map npages 0                     refused: zero pages
#   L13 map gpa 2^64-1                   refused: gpa not 4 KiB aligned
#   L14 map 4G +512 attrs 0              aligned; 2 MiB back to shared
# exits 11 (map + fault lines), rejected 5, unaligned 2, attr_updates 7,
# punches 8, to_private = 2M + 2M + 4K + 2M + 4K + 4M = 10493952,
# to_shared 2097152; mixed extents: 4G+4M (one page) and 4G+16M (one page).
# ---------------------------------------------------------------------------
mem=(--mem 64M@0x100000000 --mem 64M@0x104000000)
run "own allow" 0 "$own" "${mem[@]}" --json "$tmp/h.json"
expect_json "$tmp/h.json" "own allow" exits=11 rejected=5 unaligned=2 attr_updates=7 \
	punches=8 to_private_bytes=10493952 to_shared_bytes=2097152 mixed_extents=2 \
	extents=64 guest_bytes=134217728 huge_mappable_bytes=130023424
expect_in "$tmp/out" "own allow" 'memory faults replayed +3$'
expect_in "$tmp/out" "own allow" 'refused \(fatal for a vCPU\) +1$'
expect_in "$tmp/out" "own allow" 'refused \(-EINVAL\) +1$'
expect_in "$tmp/err" "own allow" '^line 22: fault gpa 0x108000000 size 0x1000 shared: refused'

# in place: L7's run crosses from one region's guest_memfd into the
# other's: two KVM_SET_MEMORY_ATTRIBUTES2 pieces where the two-backing host
# made one KVM_SET_MEMORY_ATTRIBUTES (attr_updates 8); no punches.
run "own in place" 0 "$own" "${mem[@]}" --host in-place --json "$tmp/h2.json"
expect_json "$tmp/h2.json" "own in place" exits=11 rejected=5 unaligned=2 attr_updates=8 \
	punches=0 to_private_bytes=10493952 to_shared_bytes=2097152 mixed_extents=2
expect_in "$tmp/out" "own in place" 'memory faults replayed +3$'
expect_in "$tmp/out" "own in place" 'agrees with the recorded attributes on all 32768 pages'

# the baseline on the same trace: L8 (outside), L12 (no pages), L13
# (unaligned) and L9's fault and L10's convert fail (QEMU stops the vCPU):
# 14 conversions, 5 failed; the 9 others each set attributes, L4 again for
# pages already private; 10 discards (L7 one per region).
run "own qemu-like" 0 "$own" "${mem[@]}" --host qemu-like
expect_in "$tmp/out" "own qemu-like" 'refused \(QEMU stops the vCPU\) +3$'
expect_in "$tmp/out" "own qemu-like" '^  conversions +14$'
expect_in "$tmp/out" "own qemu-like" '^    failed \(QEMU stops the vCPU\) +5$'
expect_in "$tmp/out" "own qemu-like" '^  attribute updates +9$'
expect_in "$tmp/out" "own qemu-like" '^  discards \(punches\) +10$'

# policy reject: L3 and L4 are refused by policy (-EPERM for a fault):
# rejected 7, one update and one punch fewer, 4 KiB less to private, and
# only the host's lone page at 4G+16M is left mixed.
run "own reject" 0 "$own" "${mem[@]}" --policy reject --json "$tmp/i.json"
expect_json "$tmp/i.json" "own reject" exits=11 rejected=7 unaligned=2 attr_updates=6 \
	punches=7 to_private_bytes=10489856 mixed_extents=1
expect_in "$tmp/err" "own reject" '^line 11: fault gpa 0x100401000 size 0x1000 private: refused \(policy\)'

# Inferred layout: the gpas span 0x1000 .. 0x108001000 (hostile 2^64-1 is
# beyond 2^52 and ignored): [0, 5 GiB).
run "own inferred" 0 "$own" --json "$tmp/j.json"
expect_in "$tmp/out" "own inferred" '^memory: +\[0x0, 0x140000000\) 5 GiB \(inferred'
expect_json "$tmp/j.json" "own inferred" guest_bytes=5368709120 extents=2560

# ---------------------------------------------------------------------------
# Malformed input: reported with line numbers and counted; fatal only with
# --strict: lines 2-6 and 8. Line 6 is 5000 bytes long, line 8 a megabyte
# without a newline.
# ---------------------------------------------------------------------------
{
	echo "map 0x1000 1 0x10"                                        # 1 ok
	echo "map 0x1000 1"                                             # 2 malformed
	echo " q-1 [000] 1.0: kvm_hypercall: nr 0xc a0 0x2000 a1"       # 3 malformed
	echo "map 18446744073709551616 1 0"                             # 4 malformed
	echo "fault 0x1000 4096 sideways"                               # 5 malformed
	printf 'map 0x3000 1 0x10%*s\n' 4983 ''                         # 6 too long
	echo " q-1 [000] 1.0: kvm_hypercall: nr 0xc a0 0x2000 a1 0x1 a2 0x10 a3 0x0" # 7 ok
	head -c 1048576 /dev/zero | tr '\0' 'x'                         # 8 too long
} >"$tmp/bad.trace"
run "malformed" 0 "$tmp/bad.trace" --mem 1G --json "$tmp/k.json"
expect_in "$tmp/out" "malformed" 'malformed \(skipped\) +6$'
expect_in "$tmp/err" "malformed" 'bad.trace:2:13: map: missing <attrs>'
expect_in "$tmp/err" "malformed" 'bad.trace:3:51: kvm_hypercall: a1 is not 0x-prefixed hex'
expect_in "$tmp/err" "malformed" 'bad.trace:4:5: map: <gpa> does not fit in 64 bits'
expect_in "$tmp/err" "malformed" 'bad.trace:5:19: fault: expected private or shared'
expect_in "$tmp/err" "malformed" 'bad.trace:6:4097: line longer than 4096 bytes'
expect_in "$tmp/err" "malformed" 'bad.trace:8:4097: line longer than 4096 bytes'
expect_json "$tmp/k.json" "malformed" exits=2 attr_updates=2

# A line cut by the reader stays too long even when the bytes kept end in
# line-ending characters: 4096 bytes, "\r\r", then more text.
{ printf 'map 0x1000 1 0x10%*s\r\rxyz\n' 4079 ''; echo "map 0x2000 1 0x10"; } >"$tmp/cut.trace"
run "cut line" 0 "$tmp/cut.trace" --mem 1G --json "$tmp/k2.json"
expect_in "$tmp/err" "cut line" 'cut.trace:1:4097: line longer than 4096 bytes'
expect_json "$tmp/k2.json" "cut line" exits=1

run "malformed strict" 1 "$tmp/bad.trace" --mem 1G --strict
expect_in "$tmp/err" "malformed strict" 'bad.trace:2:13: map: missing <attrs> \(--strict'
expect_in "$tmp/out" "malformed strict" '^  lines +2$'

# ---------------------------------------------------------------------------
# Usage errors: exit 2.
# ---------------------------------------------------------------------------
run "usage policy" 2 "$ftrace" --policy bogus
run "usage granule" 2 "$ftrace" --granule 3k
run "usage no trace" 2
run "usage two traces" 2 "$ftrace" "$own"
run "usage missing file" 2 "$tmp/does-not-exist.trace"
run "usage mem unaligned" 2 "$ftrace" --mem 1000
run "usage mem overlap" 2 "$ftrace" --mem 1G --mem 4M@512M
run "usage mem hugetlb" 2 "$ftrace" --mem 3M --backing hugetlb
run "usage mem beyond 2^52" 2 "$ftrace" --mem 1G@0xfffffc0001000
run "usage quiet verbose" 2 "$ftrace" -q -v
printf 'map 0xffffffffff000 1 0x10\nmap 0x0 1 0x10\n' >"$tmp/wide.trace"
run "usage inferred too wide" 2 "$tmp/wide.trace"
expect_in "$tmp/err" "usage inferred too wide" 'give the layout with --mem'

# ---------------------------------------------------------------------------
# Huge pages (root, 2 MiB hugetlb): --backing hugetlb --touch on the ftrace
# sample. The shared side is one MFD_HUGETLB memfd, fully allocated at start
# (512 huge pages). A shared huge page is punched when its last page turns
# private: c2 completes 258M, c3 260M, c4 262M, s2 256M: 4 punches; s1 and
# a1 punch the private stand-in: punches 6. Double allocation = private
# pages inside held shared huge pages; it peaks after s1 re-allocates 258M
# (511 + 511 + 1 pages = 4190208) and ends at 258M's 511 + 264M's 1 + 512M's
# 1 = 513 pages = 2101248. The kernel then holds 512 - 2 (256M, 262M) huge
# pages on the shared side, and 512 + 511 + 512 + 1 + 1 = 1537 private pages.
# ---------------------------------------------------------------------------
if [ ! -e /sys/kernel/mm/hugepages/hugepages-2048kB ]; then
	echo "SKIP: huge page part: the kernel has no 2 MiB huge pages"
elif [ "$(id -u)" -ne 0 ] && [ "$(cat /proc/sys/vm/nr_hugepages)" -lt 512 ]; then
	echo "SKIP: huge page part: not root and fewer than 512 huge pages configured"
else
	# read the pool size under the lock every tool and test fixture takes
	# while it has the pool raised, so that another run does not race us
	pool() {
		if command -v flock >/dev/null 2>&1; then
			flock /tmp/cvmconv-hugepages.lock cat /proc/sys/vm/nr_hugepages
		else
			cat /proc/sys/vm/nr_hugepages
		fi
	}
	# run_huge WHAT ARGS...: a --touch run on huge pages; status 0 when it
	# ran, else it skipped (no pool to be had) or failed, and said so
	run_huge() {
		local what=$1 status
		shift
		"$replay" "$@" >"$tmp/out" 2>"$tmp/err"
		status=$?
		if [ $status -eq 1 ] && grep -q "needs 512 huge pages" "$tmp/err"; then
			echo "SKIP: huge page part ($what): $(grep -m1 'needs' "$tmp/err")"
		elif [ $status -ne 0 ]; then
			fail "$what: exit status $status"
			sed 's/^/    /' "$tmp/err" >&2
		fi
		return $status
	}
	before=$(pool)
	run_huge hugetlb "$ftrace" --backing hugetlb --touch --json "$tmp/l.json"
	status=$?
	after=$(pool)
	if [ $status -eq 0 ]; then
		expect_json "$tmp/l.json" "hugetlb" exits=11 attr_updates=8 punches=6 \
			double_alloc_bytes=2101248 double_alloc_peak_bytes=4190208 mixed_extents=3
		expect_in "$tmp/out" "hugetlb" 'shared backing allocated +1069547520 '
		expect_in "$tmp/out" "hugetlb" 'private stand-in allocated +6295552 '
		# the kernel's own double allocation, checked against cvmconv's
		expect_in "$tmp/out" "hugetlb" '^  double allocation +2101248 '
	fi
	# The baseline on the same huge pages never discards a shared huge
	# page (c1-c4, s2-s4, h2: 8 skipped; s1, a1, h1 discard the private
	# side: 3): all 512 stay allocated and every private page inside
	# them is held twice: 1537 + h2's 512 = 2049 pages = 8392704.
	if run_huge "hugetlb qemu-like" "$ftrace" --host qemu-like --backing hugetlb --touch; then
		expect_in "$tmp/out" "hugetlb qemu-like" '^  discards \(punches\) +3$'
		expect_in "$tmp/out" "hugetlb qemu-like" 'skipped: shared side huge +8$'
		expect_in "$tmp/out" "hugetlb qemu-like" 'shared backing allocated +1073741824 '
		expect_in "$tmp/out" "hugetlb qemu-like" '^  double allocation +8392704 '
	fi
	[ "$before" = "$after" ] || fail "hugetlb: nr_hugepages $before before, $after after"
fi

# hugetlbfs: with a mount, the same figures as hugetlb; without, a clear
# message and exit 1.
"$replay" "$ftrace" --backing hugetlbfs --json "$tmp/m.json" >"$tmp/out" 2>"$tmp/err"
status=$?
if [ $status -eq 0 ]; then
	expect_json "$tmp/m.json" "hugetlbfs" punches=6 double_alloc_bytes=2101248
elif grep -q "no hugetlbfs mount" "$tmp/err"; then
	[ $status -eq 1 ] || fail "hugetlbfs without a mount: exit status $status, expected 1"
	echo "note: no hugetlbfs mount; checked the message instead"
else
	fail "hugetlbfs: exit status $status"
	sed 's/^/    /' "$tmp/err" >&2
fi

if [ $failures -ne 0 ]; then
	echo "replay_test: $failures failure(s)" >&2
	exit 1
fi
echo "replay_test: all checks passed"
