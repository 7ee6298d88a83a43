#!/usr/bin/env bash
# Build the KVM lab kernel (Debian linux-source-6.12, tinyconfig plus
# config.fragment) or find it in the cache. See docs/kvm-lab.md.
#
#   build-kernel.sh [--force] [--print-key]
#
# stdout: the path of the cached bzImage, nothing else (run.sh reads it);
# progress goes to stderr. Exit status: 0 image ready, 1 the build failed
# (log tail shown), 77 no build possible here (packages missing and not
# root, no cache dir, ...).
#
# Environment: CVMCONV_LAB_CACHE (default /var/cache/cvmconv-lab),
# CVMCONV_LAB_JOBS (make -j, default 2: the build machines are shared).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

# Bump when the steps below change what a given fragment builds into.
RECIPE=1
fragment=$here/config.fragment
jobs=${CVMCONV_LAB_JOBS:-2}
force=0
print_key=0

while (($#)); do
	case $1 in
	--force) force=1 ;;
	--print-key) print_key=1 ;;
	-h | --help)
		awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
		exit 0
		;;
	*)
		lab_say "build-kernel.sh: unknown argument: $1"
		exit 2
		;;
	esac
	shift
done

mapfile -t pkgs < <(lab_build_packages)
lab_need_packages "${pkgs[@]}"

src_version=$(lab_pkg_version "$LAB_SRC_PKG")
tarball=/usr/src/$LAB_SRC_PKG.tar.xz
[[ -r $tarball ]] || lab_skip "$tarball missing although $LAB_SRC_PKG is installed"

# The key: what determines the image. Same fragment + same source package
# version + same recipe = same kernel.
key=$({
	printf 'recipe %s\nsource %s %s\n' "$RECIPE" "$LAB_SRC_PKG" "$src_version"
	cat "$fragment"
} | sha256sum | cut -c1-16)
image=$LAB_CACHE/bzImage-$key

if ((print_key)); then
	printf '%s\n' "$key"
	exit 0
fi

# A finished image is only ever renamed into place, so it can be used
# without the lock (also by users who cannot write the cache).
if ((!force)) && [[ -r $image ]]; then
	printf '%s\n' "$image"
	exit 0
fi

if ! mkdir -p "$LAB_CACHE" 2>/dev/null || [[ ! -w $LAB_CACHE ]]; then
	lab_skip "cache $LAB_CACHE is not writable (set CVMCONV_LAB_CACHE)"
fi

# One build at a time: a second run waits and then finds the image.
exec 9>"$LAB_CACHE/lock"
if ! flock -n 9; then
	lab_say "another lab kernel build holds $LAB_CACHE/lock; waiting"
	flock 9
fi
if ((!force)) && [[ -r $image ]]; then
	printf '%s\n' "$image"
	exit 0
fi

t0=$SECONDS
elapsed() { printf '%dm%02ds' $(((SECONDS - t0) / 60)) $(((SECONDS - t0) % 60)); }

srcdir=$LAB_CACHE/src-$src_version
builddir=$LAB_CACHE/build-$src_version
log=$LAB_CACHE/build-$key.log
: >"$log"

fail() {
	lab_say "kernel build failed: $*"
	lab_say "last lines of $log:"
	tail -n 40 "$log" >&2
	exit 1
}

if [[ ! -e $srcdir/.kvm-lab-extracted ]]; then
	lab_say "[1/4] extracting $tarball ($src_version) to $srcdir"
	rm -rf "$srcdir" "$srcdir.tmp"
	mkdir -p "$srcdir.tmp"
	tar -xf "$tarball" -C "$srcdir.tmp" --strip-components=1 >>"$log" 2>&1 ||
		fail "could not extract $tarball"
	touch "$srcdir.tmp/.kvm-lab-extracted"
	mv "$srcdir.tmp" "$srcdir"
else
	lab_say "[1/4] source $src_version already extracted in $srcdir"
fi

kmake() { make -C "$srcdir" O="$builddir" "$@"; }

lab_say "[2/4] [$(elapsed)] configuring: tinyconfig + $(basename "$fragment") (key $key)"
mkdir -p "$builddir"
kmake tinyconfig >>"$log" 2>&1 || fail "make tinyconfig"
# Later assignments override earlier ones in a .config; olddefconfig then
# resolves dependencies (and drops what cannot be had: checked below).
cat "$fragment" >>"$builddir/.config"
kmake olddefconfig >>"$log" 2>&1 || fail "make olddefconfig"

# Every CONFIG_X=... of the fragment must have stuck.
missing=()
while IFS= read -r line; do
	grep -qxF "$line" "$builddir/.config" || missing+=("${line%%=*}")
done < <(grep -E '^CONFIG_[A-Z0-9_]+=' "$fragment")
if ((${#missing[@]})); then
	lab_say "options of the fragment that did not stick: ${missing[*]}"
	for opt in CONFIG_KVM CONFIG_KVM_AMD CONFIG_KVM_SW_PROTECTED_VM; do
		for m in "${missing[@]}"; do
			[[ $m == "$opt" ]] && fail "$opt is required and did not stick (check its dependencies)"
		done
	done
else
	lab_say "      all $(grep -cE '^CONFIG_[A-Z0-9_]+=' "$fragment") options of the fragment stuck"
fi

# The number of files compiled by the previous build gives a rough total.
count_file=$LAB_CACHE/last-build-files
prev_total=$(cat "$count_file" 2>/dev/null || true)
lab_say "[3/4] [$(elapsed)] make -j$jobs bzImage (full log: $log)"
kmake -j"$jobs" bzImage >>"$log" 2>&1 &
make_pid=$!
# Ctrl-C or a kill of this script must not leave make running.
trap 'kill "$make_pid" 2>/dev/null || true' EXIT
while kill -0 "$make_pid" 2>/dev/null; do
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		sleep 1
		kill -0 "$make_pid" 2>/dev/null || break
	done
	kill -0 "$make_pid" 2>/dev/null || break
	n=$(grep -cE '^  (CC|AS|LD|AR|OBJCOPY)' "$log" || true)
	last=$(grep -E '^  (CC|AS|LD|AR|OBJCOPY)' "$log" | tail -n 1 | sed 's/^ *//; s/  */ /g' || true)
	lab_say "      [$(elapsed)] $n files built${prev_total:+ (last full build: $prev_total)}; ${last:-starting}"
done
rc=0
wait "$make_pid" || rc=$?
trap - EXIT
((rc == 0)) || fail "make bzImage exited $rc"
grep -cE '^  (CC|AS|LD|AR|OBJCOPY)' "$log" >"$count_file.tmp" || true
# Only a build from scratch tells the full count; keep the largest seen.
if [[ -z $prev_total ]] || (($(cat "$count_file.tmp") > prev_total)); then
	mv "$count_file.tmp" "$count_file"
else
	rm -f "$count_file.tmp"
fi

lab_say "[4/4] [$(elapsed)] caching $image"
cp "$builddir/arch/x86/boot/bzImage" "$image.tmp"
cp "$builddir/.config" "$LAB_CACHE/config-$key"
mv "$image.tmp" "$image"
lab_say "kernel ready after $(elapsed)"
printf '%s\n' "$image"
