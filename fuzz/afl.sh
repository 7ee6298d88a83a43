#!/usr/bin/env bash
# Build fuzz_exits_fast for AFL++ (Debian's afl++: afl-clang-fast, its
# libFuzzer-compatible driver through -fsanitize=fuzzer, ASan + UBSan) and
# run it bounded, from the committed seeds. Fails on any crash or hang.
#
#   fuzz/afl.sh EXECS [SECONDS]
#
# EXECS: stop after about that many executions (afl-fuzz -E); SECONDS
# (optional): stop after that long as well (-V). Environment: BUILD_DIR
# (default build-afl), AFL_ARGS (extra afl-fuzz flags). Findings go to
# $BUILD_DIR/out/default/crashes and hangs; fuzzer_stats is printed.
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
export AFL_USE_ASAN=1 AFL_USE_UBSAN=1 AFL_QUIET=1
flags=(-std=c11 -D_GNU_SOURCE -O2 -g -fno-omit-frame-pointer -fno-sanitize-recover=all
	-Wall -Wextra -Werror -Iinclude -Isrc -Itests -I"$build_dir/cfg")
objs=()
for s in src/*.c tests/fake_kvm.c fuzz/fuzz_exits_fast.c; do
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
afl-fuzz -i fuzz/corpus/fuzz_exits_fast -o "$out" -m none -t 10000 "${limits[@]}" \
	${user_args[@]+"${user_args[@]}"} -- "$build_dir/fuzz_exits_fast" >"$build_dir/afl.log" 2>&1 ||
	{
		tail -n 30 "$build_dir/afl.log" >&2
		exit 1
	}
stats="$out/default/fuzzer_stats"
grep -E '^(execs_done|execs_per_sec|corpus_count|saved_crashes|saved_hangs|run_time)' "$stats"
crashes=$(awk '$1 == "saved_crashes" {print $3}' "$stats")
hangs=$(awk '$1 == "saved_hangs" {print $3}' "$stats")
if [ "${crashes:-1}" != 0 ] || [ "${hangs:-1}" != 0 ]; then
	echo "FAIL: fuzz_exits_fast under AFL++: $crashes crashes, $hangs hangs in $out/default/" >&2
	exit 1
fi
