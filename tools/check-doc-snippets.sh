#!/usr/bin/env bash
# check-doc-snippets.sh [--fix] [ROOT]
#
# Code in the docs that is marked
#
#     <!-- snippet: examples/integration/qemu_like.c -->
#     ```c
#     ...
#     ```
#
# must be byte-for-byte the named file (relative to ROOT, default: the
# repository this script is in), so that what the docs show is what the
# build compiles. Also every examples/integration/*.c and examples/api/*.c
# must be shown somewhere. Exit 0 when all match, 1 otherwise; a diff says
# where they differ. --fix first rewrites every marked block from its file.
set -euo pipefail

fix=0
if [ "${1:-}" = "--fix" ]; then
	fix=1
	shift
fi
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mapfile -t docs < <( (find docs -name '*.md' -type f; echo README.md) | LC_ALL=C sort)
if [ ${#docs[@]} -eq 0 ]; then
	echo "check-doc-snippets: no docs/*.md under $root" >&2
	exit 1
fi

if [ "$fix" -eq 1 ]; then
	for doc in "${docs[@]}"; do
		awk '
			inside {
				if ($0 ~ /^```[[:space:]]*$/) {
					while ((getline l < path) > 0) print l
					close(path)
					inside = 0; print; next
				}
				next
			}
			want && /^```/ { inside = 1; want = 0; print; next }
			want && !/^[[:space:]]*$/ { want = 0 }
			/^<!-- snippet: [^ ]+ -->[[:space:]]*$/ {
				path = $0
				sub(/^<!-- snippet: /, "", path)
				sub(/ -->[[:space:]]*$/, "", path)
				want = 1
			}
			{ print }
		' "$doc" >"$tmp/fixed"
		if ! cmp -s "$doc" "$tmp/fixed"; then
			cat "$tmp/fixed" >"$doc"
			echo "check-doc-snippets: refreshed $doc"
		fi
	done
fi

# Extract every marked block into $tmp/N.block; list "N<TAB>file<TAB>doc:line".
awk -v out="$tmp" '
	FNR == 1 { want = 0; inside = 0 }
	inside {
		if ($0 ~ /^```[[:space:]]*$/) { inside = 0; close(block); next }
		print > block
		next
	}
	want {
		if ($0 ~ /^[[:space:]]*$/) next
		if ($0 ~ /^```/) {
			inside = 1; want = 0
			block = out "/" n ".block"
			printf "" > block
			next
		}
		printf "%d\t%s\t%s:%d\tNOFENCE\n", n, path, FILENAME, markline >> (out "/list")
		want = 0
	}
	match($0, /^<!-- snippet: [^ ]+ -->[[:space:]]*$/) {
		path = $0
		sub(/^<!-- snippet: /, "", path)
		sub(/ -->[[:space:]]*$/, "", path)
		n++
		markline = FNR
		want = 1
		printf "%d\t%s\t%s:%d\tOK\n", n, path, FILENAME, FNR >> (out "/list")
	}
	END { if (inside) print "unterminated code block in " FILENAME > "/dev/stderr" }
' "${docs[@]}"

fail=0
checked=0
declare -A shown=()
if [ -f "$tmp/list" ]; then
	while IFS=$'\t' read -r n path where state; do
		if [ "$state" = NOFENCE ]; then
			# the OK line of the same marker is reported below as missing
			echo "$where: marker for $path is not followed by a fenced code block" >&2
			fail=1
			continue
		fi
		shown[$path]=1
		if [ ! -f "$path" ]; then
			echo "$where: $path does not exist" >&2
			fail=1
		elif [ ! -f "$tmp/$n.block" ]; then
			: # reported by its NOFENCE line
		elif ! cmp -s "$path" "$tmp/$n.block"; then
			echo "$where: the code block differs from $path:" >&2
			diff -u "$path" "$tmp/$n.block" --label "$path" --label "$where" >&2 || true
			fail=1
		else
			checked=$((checked + 1))
		fi
	done <"$tmp/list"
fi

for f in examples/integration/*.c examples/api/*.c; do
	[ -e "$f" ] || continue
	if [ -z "${shown[$f]:-}" ]; then
		echo "check-doc-snippets: $f is not shown in any docs/*.md (add a <!-- snippet: $f --> block)" >&2
		fail=1
	fi
done

if [ "$checked" -eq 0 ]; then
	echo "check-doc-snippets: no <!-- snippet: FILE --> blocks found in docs/" >&2
	fail=1
fi
if [ "$fail" -ne 0 ]; then
	exit 1
fi
echo "check-doc-snippets: $checked snippet(s) match their files"
