#!/usr/bin/env bash
# Handler instructions per exit with callgrind (docs/performance.md).
#
#   bench/perf/instr.sh PERF_INSTR [OUT_DIR [PERF_INSTR ARGUMENTS...]]
#
# Runs PERF_INSTR (the perf_instr binary, linked to the shared libcvmconv)
# under callgrind, collecting only inside the library's entry points
# (cvmconv_map_gpa_range, cvmconv_convert_batch) and everything they call,
# one dump per block of N exits. Prints instructions per exit of block a
# (exits W+1..W+N) and block b (W+N+1..W+2N, i.e. total(2N) - total(N)),
# the targets, and a per-function breakdown (self cost, callgrind_annotate)
# of the main configurations. The dumps stay in OUT_DIR (default: a new
# directory under /tmp) for callgrind_annotate or kcachegrind. Arguments
# after OUT_DIR go to perf_instr (e.g. --only steady-). INSTR_NOTE, if set,
# is printed first (run.sh uses it for the build without LTO that it runs
# for a per-function breakdown: there every function keeps its name).
set -euo pipefail

bin=${1:?usage: instr.sh PERF_INSTR [OUT_DIR [PERF_INSTR ARGUMENTS...]]}
out=${2:-$(mktemp -d /tmp/cvmconv-instr.XXXXXX)}
shift $(($# < 2 ? $# : 2))
mkdir -p "$out"
rm -f "$out"/cg.out "$out"/cg.out.*

for tool in valgrind callgrind_annotate; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "instr.sh: $tool not found (apt-get install valgrind)" >&2
		exit 77
	fi
done

[ -z "${INSTR_NOTE:-}" ] || echo "$INSTR_NOTE"
echo "callgrind: $(valgrind --version); dumps in $out"
echo "library: $(ldd "$bin" | awk '/libcvmconv/ { print $3 }')"
rc=0
valgrind --tool=callgrind --collect-atstart=no \
	--toggle-collect=cvmconv_map_gpa_range --toggle-collect=cvmconv_convert_batch \
	--compress-strings=no --compress-pos=no \
	--callgrind-out-file="$out/cg.out" "$bin" "$@" >"$out/perf_instr.txt" 2>"$out/valgrind.log" ||
	rc=$?
if [ "$rc" -ne 0 ]; then
	# the configurations measured before the failure are still reported
	echo "instr.sh: perf_instr failed under valgrind (exit status $rc) in:"
	tail -n 1 "$out/perf_instr.txt"
	echo
	grep -E "Process terminating|Access not within|at 0x|by 0x" "$out/valgrind.log" | head -8
fi

# config block n ir, one line per dump
for f in "$out"/cg.out.[0-9]*; do
	desc=$(sed -n 's/^desc: Trigger: Client Request: //p' "$f")
	ir=$(sed -n 's/^summary: //p' "$f")
	echo "$desc $ir $f"
done | sort >"$out/blocks.txt"

echo
echo "Instructions per exit (no-op kernel ops; callgrind Ir inside the entry points)."
echo "a = exits W+1..W+N, b = exits W+N+1..W+2N = total(2N) - total(N); psc: per batch of 253 entries"
printf "%-22s %6s %10s %10s\n" "config" "N" "a" "b"
awk '{ per[$1 " " $2] = $4 / $3; n[$1] = $3 }
     END { for (k in n) printf "%-22s %6d %10.0f %10.0f\n", k, n[k], per[k " a"], per[k " b"] }' \
	"$out/blocks.txt" | sort

b() { awk -v c="$1" '$1 == c && $2 == "b" { printf "%.0f", $4 / $3 }' "$out/blocks.txt"; }
verdict() { # value limit
	awk -v v="$1" -v l="$2" 'BEGIN { print (v <= l ? "met" : "MISSED") }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

target() { # label config limit
	local v
	v=$(b "$2")
	[ -n "$v" ] && echo "  $1: $v instructions (<= $3: $(verdict "$v" "$3"))"
}
scaling() { # label config-1g config-16t
	local a z
	a=$(b "$2")
	z=$(b "$3")
	[ -n "$a" ] && [ -n "$z" ] &&
		echo "  $1: 16 TiB / 1 GiB = $(ratio "$z" "$a") (<= 1.1: $(verdict "$(ratio "$z" "$a")" 1.1))"
}
if grep -q '^steady-' "$out/blocks.txt"; then
	echo
	echo "Targets (block b, steady state: 300 existing runs, paired convert/unconvert):"
fi
for back in memfd none; do
	target "4 KiB exit, backings $back" "steady-4k/1g/$back" 1000 || true
	target "2 MiB exit, backings $back" "steady-2m/1g/$back" 1500 || true
	scaling "4 KiB exit, backings $back" "steady-4k/1g/$back" "steady-4k/16t/$back" || true
	scaling "2 MiB exit, backings $back" "steady-2m/1g/$back" "steady-2m/16t/$back" || true
done

# Self cost per function (file:function as callgrind_annotate names it: with
# LTO, code inlined from another file shows as that file's part of the
# function it was inlined into), per exit, for the main configurations.
breakdown() { # config inclusive(yes|no)
	local f n what=self
	f=$(awk -v c="$1" '$1 == c && $2 == "b" { print $5 }' "$out/blocks.txt")
	n=$(awk -v c="$1" '$1 == c && $2 == "b" { print $3 }' "$out/blocks.txt")
	[ -n "$f" ] || return 0
	[ "$2" = no ] || what=inclusive
	echo
	echo "$1, block b: $what instructions per exit by function (top 20)"
	callgrind_annotate --inclusive="$2" --auto=no --threshold=100 "$f" 2>/dev/null |
		awk -v n="$n" -v incl="$2" '
			/file:function/ { body = 1; next }
			body && /^ *[0-9,]+ / {
				v = $1; gsub(",", "", v)
				name = $0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", name)
				sub(/ \[.*\]$/, "", name)
				# the callers outside the library carry no cost of their own
				if (name ~ /__libc_start_main|\(below main\)|:0x[0-9a-f]+$|perf_instr\.c:(main|one_exit)$/)
					next
				sub(/^.*\/src\//, "src/", name)
				sub(/^.*\/bench\/perf\//, "bench/perf/", name)
				sub(/^\.\/nptl\/\.\/nptl\//, "glibc nptl/", name)
				# inclusive lists a function again for code inlined into
				# it from elsewhere: keep the larger figure
				if (!(name in cost) || v > cost[name])
					cost[name] = v
				sum += v
			}
			END {
				for (k in cost)
					printf "%8.1f  %s\n", cost[k] / n, k
				if (incl == "no")
					printf "%8.1f  (total)\n", sum / n
			}' | sort -rn | head -21
}
for c in steady-4k/1g/memfd steady-2m/1g/memfd random-4k/1g/memfd psc-253/1g/memfd; do
	breakdown "$c" no
	breakdown "$c" yes
done

exit "$rc"
