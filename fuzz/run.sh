#!/usr/bin/env bash
# Build the libFuzzer targets with clang (ASan + UBSan) and run each for a
# bounded time from its committed seed corpus. Fails on any finding (crash,
# sanitizer report, failed harness check, leak, timeout, OOM).
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# Environment: BUILD_DIR (default build-fuzz), CC (default clang),
# FUZZ_JOBS (parallel fuzzing processes per target, default 1),
# FUZZ_ARGS (extra libFuzzer flags), FUZZ_EXITS_LENIENT_BATCH=1 (see
# batch_valid() in fuzz/fuzz_exits_operations.c: fuzz past a known batch finding). New inputs found during the run go to
# $BUILD_DIR/corpus/<target>/ (the committed seeds are not modified);
# crash reproducers to $BUILD_DIR/artifacts/<target>/.
set -euo pipefail

cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
	echo "usage: $0 SECONDS [TARGET...]" >&2
	exit 2
fi
seconds=$1
shift
build_dir=${BUILD_DIR:-build-fuzz}
cc=${CC:-clang}
case "$(basename "$cc")" in
clang*) ;;
*)
	echo "fuzz/run.sh: libFuzzer needs clang (CC=$cc)" >&2
	exit 2
	;;
esac

# Until the top-level CMakeLists.txt adds fuzz/ itself, inject it.
extra=()
if ! grep -Eq '^[[:space:]]*add_subdirectory\([[:space:]]*fuzz([[:space:]]|\))' CMakeLists.txt; then
	extra+=("-DCMAKE_PROJECT_cvmconv_INCLUDE=$PWD/fuzz/add-to-project.cmake")
fi
cmake -S . -B "$build_dir" -DCMAKE_C_COMPILER="$cc" -DCVMCONV_FUZZ=ON \
	-DCVMCONV_TESTS=OFF -DCVMCONV_EXAMPLES=OFF ${extra[@]+"${extra[@]}"} >/dev/null

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	targets=(fuzz_exits fuzz_exits_fast)
	if [ -f tools/trace_parse.c ] && [ -f tools/trace_parse.h ]; then
		targets+=(fuzz_trace_parse)
	else
		echo "fuzz/run.sh: tools/trace_parse.[ch] missing: fuzz_trace_parse skipped" >&2
	fi
fi
cmake --build "$build_dir" -j2 --target "${targets[@]}"
build_dir=$(realpath "$build_dir")
root=$PWD

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
for t in "${targets[@]}"; do
	bin="$build_dir/fuzz/$t"
	work="$build_dir/corpus/$t"
	art="$build_dir/artifacts/$t"
	mkdir -p "$work" "$art"
	log="$build_dir/$t.log"
	echo "=== $t: ${seconds}s (log: $log) ==="
	read -r -a user_args <<<"${FUZZ_ARGS:-}"
	jobs=()
	if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then
		# child logs go to fuzz-<n>.log in the current directory
		jobs=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
	fi
	# -timeout: one input that takes over 10 s is a finding (unbounded work)
	# from the build directory: -jobs writes fuzz-<n>.log files there
	if ! (cd "$build_dir" && "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 ${jobs[@]+"${jobs[@]}"} \
		-artifact_prefix="$art/" ${user_args[@]+"${user_args[@]}"} \
		"$work" "$root/fuzz/corpus/$t") >"$log" 2>&1; then
		status=1
		echo "FAIL: $t found something; reproducers in $art/" >&2
		tail -n 60 "$log" >&2
	fi
	execs=$({ grep -h '^stat::number_of_executed_units' "$log" "$build_dir"/fuzz-*.log \
		2>/dev/null || true; } | awk '{s += $2} END {print s + 0}')
	grep -h '^fuzz_exits: .* operations' "$log" "$build_dir"/fuzz-*.log 2>/dev/null || true
	echo "$t: $execs inputs executed in ${seconds}s"
done
exit $status
