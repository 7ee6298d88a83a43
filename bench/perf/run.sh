#!/usr/bin/env bash
# Every performance benchmark of docs/performance.md, in one command.
#
#   bench/perf/run.sh [--quick]   build, run all benchmarks, redraw the plot
#   bench/perf/run.sh plot        only the double allocation plot
#
# Builds in ${BUILD_DIR:-build} (configured like ./build.sh: RelWithDebInfo,
# the shared library with LTO, unless the cache says otherwise; extra cmake
# arguments from CVMCONV_CMAKE_ARGS; CVMCONV_PERF_NO_BUILD=1 skips the
# build, as the bench-perf target does). Needs root (huge pages are raised and
# restored), valgrind (callgrind) and gnuplot; as root, missing valgrind and
# gnuplot-nox are installed with apt-get. Each benchmark's output is also
# kept in BUILD_DIR/bench/perf/results/. --quick runs the smaller stream set
# and skips callgrind. Exit status: 1 when a benchmark failed or cvmconv
# differs from the oracle (the tables say where), else 0.
set -euo pipefail

cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build}
perf=$build/bench/perf
results=$perf/results
quick=
mode=all
case "${1:-}" in
"") ;;
--quick) quick=--quick ;;
plot) mode=plot ;;
*)
	echo "usage: $0 [--quick | plot]" >&2
	exit 2
	;;
esac

# --- tools ---
need=()
command -v gnuplot >/dev/null 2>&1 || need+=(gnuplot-nox)
[ "$mode" = plot ] || command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
# shellcheck source=tools/apt-need.sh
. tools/apt-need.sh
apt_need run.sh "${need[@]}"

# --- build ---
cmake_args=()
if [ -n "${CVMCONV_CMAKE_ARGS:-}" ]; then
	read -r -a cmake_args <<<"$CVMCONV_CMAKE_ARGS"
fi
targets=(perf_streams)
[ "$mode" = plot ] || targets+=(perf_instr perf_tracker perf_throughput perf_latency perf_concurrency)
# CVMCONV_PERF_NO_BUILD=1: the caller built them (the bench-perf target)
if [ -z "${CVMCONV_PERF_NO_BUILD:-}" ] &&
	! { cmake -S . -B "$build" ${cmake_args[@]+"${cmake_args[@]}"} >/dev/null &&
		cmake --build "$build" -j2 --target "${targets[@]}"; }; then
	echo "run.sh: build failed (is bench/perf added: add_subdirectory(perf) in bench/CMakeLists.txt," >&2
	echo "        add_subdirectory(bench) in the top-level CMakeLists.txt?)" >&2
	exit 1
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
# whether the shared library was really built with -flto
lto=no
if grep -qs -- -flto "$build/CMakeFiles/cvmconv.dir/link.txt"; then
	lto=yes
fi
echo "build: $build, CMAKE_BUILD_TYPE=$build_type, shared library linked with LTO: $lto"
case "$build_type:$lto" in
Release:yes | RelWithDebInfo:yes) ;;
*) echo "run.sh: warning: not an optimised LTO build: instruction counts are not representative" >&2 ;;
esac
mkdir -p "$results"

status=0
section() {
	echo
	echo "=== $1 ==="
	echo "\$ $2"
}
# run NAME CMD...: run a benchmark, keep its output, remember a failure
run() {
	local name=$1 rc=0
	shift
	section "$name" "$*"
	"$@" 2>&1 | tee "$results/$name.txt" || rc=$?
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
		echo "run.sh: $name failed (exit status $rc)"
		status=1
	fi
}

plot() {
	local dat=$results/double-alloc.dat
	if [ ! -s "$dat" ]; then
		echo "run.sh: no plot data ($dat)"
		status=1
		return
	fi
	if ! command -v gnuplot >/dev/null 2>&1; then
		echo "run.sh: gnuplot missing: the plot was not redrawn (apt-get install gnuplot-nox)"
		status=1
		return
	fi
	local spans
	spans=$(awk '/^# mark/ { printf "%s%s %d-%d", sep, $4, from + 1, $3; sep = ", "; from = $3 }' "$dat")
	mkdir -p docs/img
	gnuplot -e "datafile='$dat'; outfile='docs/img/double-alloc.png'" \
		-e "subtitle='SEV-SNP shaping, 16 GiB mainline guest model, 4 vCPUs; exits: $spans'" \
		bench/perf/plot/double-alloc.gp
	echo "plot: docs/img/double-alloc.png (data $dat)"
}

if [ "$mode" = plot ]; then
	run streams-plot "$perf/perf_streams" --only snp/churn --tables dalloc \
		--series "$results/double-alloc.dat"
	plot
	exit $status
fi

start=$SECONDS
run streams "$perf/perf_streams" $quick --check --series "$results/double-alloc.dat"
run streams-shmem "$perf/perf_streams" $quick --check --tables calls --shared shmem --diag 0
run tracker "$perf/perf_tracker"
if [ -z "$quick" ]; then
	run instr-native "$perf/perf_instr"
	run instr bench/perf/instr.sh "$perf/perf_instr" "$results/callgrind"
	# The same library without LTO, for a breakdown where every function
	# keeps its name (with LTO most of the work is inlined into
	# transact_locked); its own build tree, perf_instr only.
	nolto=$build-nolto
	if cmake -S . -B "$nolto" -DCMAKE_BUILD_TYPE="$build_type" -DCVMCONV_LTO=OFF \
		-DCVMCONV_TESTS=OFF -DCVMCONV_EXAMPLES=OFF >/dev/null &&
		cmake --build "$nolto" -j2 --target perf_instr >/dev/null; then
		export INSTR_NOTE="Without LTO ($nolto), for the per-function breakdown only; the targets apply to the LTO build above."
		run instr-nolto bench/perf/instr.sh "$nolto/bench/perf/perf_instr" \
			"$results/callgrind-nolto" --only steady-
		unset INSTR_NOTE
	else
		echo "run.sh: the build without LTO ($nolto) failed: no per-function breakdown"
	fi
fi
run throughput "$perf/perf_throughput"
run latency "$perf/perf_latency"
run concurrency "$perf/perf_concurrency"
if [ -z "$quick" ]; then
	section plot "gnuplot bench/perf/plot/double-alloc.gp"
	plot
fi
echo
echo "run.sh: done in $((SECONDS - start)) s; outputs in $results"
exit $status
