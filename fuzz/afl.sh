#!/usr/bin/env bash
# Build fuzz_exits_fast for AFL++ (Debian's afl++: afl-clang-fast, its
# libFuzzer-compatible driver through -fsanitize=fuzzer, ASan + UBSan) and
# run it bounded, from the committed seeds. Fails on any crash or hang.
#
#   fuzz/afl.sh EXECS [SECONDS]
#
# EXECS: stop after about that many executions (afl-fuzz -E); SECONDS
# (optional): stop after that long as well (-V). Environment: BUILD_DIR
# (default build-afl), AFL_ARGS (extra afl-fuzz flags), AFL_SANITIZE
# (asan, the default: ASan + UBSan; none: only the harness's own checks,
# about 4 times the executions a second), AFL_JOBS (instances, default 1:
# one main and AFL_JOBS - 1 secondaries sharing the queue; EXECS then
# counts per instance). Findings go to $BUILD_DIR/out/*/crashes and hangs;
# every instance's fuzzer_stats is printed.
set -euo pipefail

cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]] || { [ $# -ge 2 ] && ! [[ $2 =~ ^[0-9]+$ ]]; }; then
	echo "usage: $0 EXECS [SECONDS]" >&2
	exit 2
fi
execs=$1
seconds=${2:-}
build_dir=${BUILD_DIR:-build-afl}
if ! command -v afl-clang-fast >/dev/null || ! command -v afl-fuzz >/dev/null; then
	echo "fuzz/afl.sh: afl-clang-fast/afl-fuzz not found (apt-get install afl++)" >&2
	exit 2
fi

# cvmconv_config.h from the ordinary configure step (plain clang: only the
# header is used)
cmake -S . -B "$build_dir/cfg" -DCMAKE_C_COMPILER=clang -DCVMCONV_TESTS=OFF \
	-DCVMCONV_EXAMPLES=OFF >/dev/null
obj="$build_dir/obj"
mkdir -p "$obj"
export AFL_QUIET=1
if [ "${AFL_SANITIZE:-asan}" = asan ]; then
	export AFL_USE_ASAN=1 AFL_USE_UBSAN=1
fi
flags=(-std=c11 -D_GNU_SOURCE -O2 -g -fno-omit-frame-pointer -fno-sanitize-recover=all
	-Wall -Wextra -Werror -Iinclude -Isrc -Itests -I"$build_dir/cfg")
objs=()
for s in src/*.c tests/fake_kvm.c tests/fake_gmem.c fuzz/fuzz_exits_fast_*.c; do
	o="$obj/$(basename "${s%.c}").o"
	afl-clang-fast "${flags[@]}" -c "$s" -o "$o"
	objs+=("$o")
done
libs=(-lpthread)
if grep -Eq '^#define CVMCONV_HAVE_LIBHUGETLBFS 1' "$build_dir/cfg/cvmconv_config.h"; then
	libs+=(-lhugetlbfs)
fi
# the kernel calls of src/kvm.c (and the smaps read) land in the model
afl-clang-fast -fsanitize=fuzzer "${objs[@]}" -o "$build_dir/fuzz_exits_fast" "${libs[@]}" \
	-Wl,--wrap=ioctl,--wrap=fallocate,--wrap=madvise,--wrap=fopen

out="$build_dir/out"
rm -rf "$out"
limits=(-E "$execs")
[ -n "$seconds" ] && limits+=(-V "$seconds")
read -r -a user_args <<<"${AFL_ARGS:-}"
export AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:symbolize=0:detect_leaks=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1}
# -m none: ASan reserves terabytes of address space; -t 10000: an input over
# 10 s is a hang (unbounded work)
jobs=${AFL_JOBS:-1}
pids=()
for ((j = 0; j < jobs; j++)); do
	if ((j == 0)); then role=(-M main); else role=(-S "s$j"); fi
	afl-fuzz -i fuzz/corpus/fuzz_exits_fast -o "$out" -m none -t 10000 "${role[@]}" \
		"${limits[@]}" ${user_args[@]+"${user_args[@]}"} -- "$build_dir/fuzz_exits_fast" \
		>"$build_dir/afl-$j.log" 2>&1 &
	pids+=($!)
done
status=0
for ((j = 0; j < jobs; j++)); do
	if ! wait "${pids[$j]}"; then
		tail -n 30 "$build_dir/afl-$j.log" >&2
		status=1
	fi
done
total=0
for stats in "$out"/*/fuzzer_stats; do
	echo "== $stats"
	grep -E '^(execs_done|execs_per_sec|corpus_count|saved_crashes|saved_hangs|run_time|stability)' "$stats"
	crashes=$(awk '$1 == "saved_crashes" {print $3}' "$stats")
	hangs=$(awk '$1 == "saved_hangs" {print $3}' "$stats")
	total=$((total + $(awk '$1 == "execs_done" {print $3}' "$stats")))
	if [ "${crashes:-1}" != 0 ] || [ "${hangs:-1}" != 0 ]; then
		echo "FAIL: fuzz_exits_fast under AFL++: $crashes crashes, $hangs hangs in ${stats%/*}/" >&2
		status=1
	fi
done
echo "fuzz/afl.sh: $total executions in all ($jobs instance(s), sanitizers: ${AFL_SANITIZE:-asan})"
exit $status
