#!/usr/bin/env bash
# Every exported cvmconv_ symbol of the built library has a man page, and
# every page renders with `man -l` without a warning.
#
#   tests/man_pages.sh BUILD_DIR
set -euo pipefail

build=${1:?usage: man_pages.sh BUILD_DIR}
lib=$build/libcvmconv.so
man_dir=$build/man
command -v man >/dev/null || { echo "SKIP: no man command (Debian: man-db)"; exit 77; }
command -v nm >/dev/null || { echo "SKIP: no nm (Debian: binutils)"; exit 77; }
[[ -r $lib ]] || { echo "man_pages: $lib not built" >&2; exit 1; }
fail=0
n=0
while read -r sym; do
	page=$man_dir/man3/$sym.3
	n=$((n + 1))
	if [[ ! -r $page ]]; then
		echo "FAIL: $sym is exported but has no page ($page)"
		fail=1
	fi
done < <(nm -D --defined-only "$lib" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' | grep '^cvmconv_')
for page in "$man_dir"/man3/*.3 "$man_dir"/man7/cvmconv.7; do
	if ! out=$(MANWIDTH=80 man -l --warnings "$page" 2>&1 >/dev/null) || [[ -n $out ]]; then
		echo "FAIL: $page does not render cleanly: $out"
		fail=1
	fi
done
echo "man_pages: $n exported functions, $(ls "$man_dir"/man3/*.3 | wc -l) pages in man3, cvmconv(7)"
exit "$fail"
