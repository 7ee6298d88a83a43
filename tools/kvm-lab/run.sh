#!/usr/bin/env bash
# Run a command as root inside the KVM lab: a nested Linux 6.12 with
# KVM_SW_PROTECTED_VM under QEMU (TCG), booted from an initramfs built here.
# See docs/kvm-lab.md.
#
#   run.sh [options] [--add DIR]... [--] COMMAND [ARGS...]
#   run.sh --probe                      the KVM capability probe (probe.c)
#
#   --add PATH        copy directory (or file) PATH to /add/<basename> inside;
#                     its ELF programs get their shared libraries (ldd) too
#   --env NAME=VALUE  set a variable for COMMAND (repeatable)
#   --mem MiB         guest RAM (default 2048)
#   --cpus N          guest vCPUs (default 2)
#   --append ARGS     extra kernel command line (repeatable), e.g.
#                     "hugepages=64 hugepagesz=1G hugepages=2"
#   --timeout SECONDS kill the lab after this long (default 600)
#   --probe           also add the probe as /add/kvm-lab-probe/kvm-lab-probe;
#                     it is the command when none is given
#   --kernel FILE     boot this bzImage instead of build-kernel.sh's
#   --tcg-threads single|multi
#                     QEMU's TCG threading (default single: multi-threaded
#                     TCG corrupts nested SVM guest state now and then, see
#                     docs/kvm-lab.md "Multi-threaded TCG")
#   --verbose         show the whole console (kernel messages, boot)
#
# COMMAND runs in /add/<basename of the first --add> (or / without --add),
# with stdin from /dev/null and PATH = system dirs, then every /add dir.
# Exit status: COMMAND's; 77 no lab here (the reason is printed); 124 the
# lab timed out; 125 the lab ended without reporting COMMAND's status
# (panic, QEMU error; the console tail is printed); 2 usage.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

# The header comment above is the usage text.
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die_usage() {
	lab_say "$*"
	usage >&2
	exit 2
}

adds=()
envs=()
appends=()
mem=2048
cpus=2
timeout_s=600
probe=0
kernel=
verbose=0
tcg_threads=single

while (($#)); do
	case $1 in
	--add)
		(($# >= 2)) || die_usage "--add needs a path"
		[[ -e $2 ]] || die_usage "--add $2: no such file or directory"
		adds+=("$2")
		shift
		;;
	--env)
		(($# >= 2)) || die_usage "--env needs NAME=VALUE"
		[[ $2 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die_usage "--env $2: not NAME=VALUE"
		envs+=("$2")
		shift
		;;
	--mem | --cpus | --timeout)
		if (($# < 2)) || [[ ! $2 =~ ^[0-9]+$ ]] || (($2 == 0)); then
			die_usage "$1 needs a positive number"
		fi
		case $1 in
		--mem) mem=$2 ;;
		--cpus) cpus=$2 ;;
		--timeout) timeout_s=$2 ;;
		esac
		shift
		;;
	--append)
		(($# >= 2)) || die_usage "--append needs an argument"
		appends+=("$2")
		shift
		;;
	--kernel)
		if (($# < 2)) || [[ ! -r $2 ]]; then
			die_usage "--kernel needs a readable bzImage"
		fi
		kernel=$2
		shift
		;;
	--tcg-threads)
		[[ $# -ge 2 && ($2 == single || $2 == multi) ]] ||
			die_usage "--tcg-threads needs single or multi"
		tcg_threads=$2
		shift
		;;
	--probe) probe=1 ;;
	--verbose) verbose=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	--)
		shift
		break
		;;
	-*) die_usage "unknown option: $1" ;;
	*) break ;;
	esac
	shift
done
(($# || probe)) || die_usage "no command given"

# Two --add of the same basename would land on one /add dir.
declare -A seen=()
for a in "${adds[@]}"; do
	b=$(basename "$(realpath "$a")")
	[[ -z ${seen[$b]:-} ]] || die_usage "--add $a: /add/$b is taken by ${seen[$b]}"
	seen[$b]=$a
done

# ---- what the host needs -------------------------------------------------
mapfile -t pkgs < <(lab_run_packages)
lab_need_packages "${pkgs[@]}"
command -v qemu-system-x86_64 >/dev/null || lab_skip "qemu-system-x86_64 not found"
busybox=$(command -v busybox || true)
[[ -n $busybox ]] || busybox=/bin/busybox
[[ -x $busybox ]] || lab_skip "no busybox (install busybox-static)"

if [[ -z $kernel ]]; then
	rc=0
	kernel=$("$here/build-kernel.sh") || rc=$?
	case $rc in
	0) ;;
	77) exit 77 ;;
	*)
		# a build that fails where it could run is a failure, not a skip
		lab_say "the lab kernel could not be built (build-kernel.sh exited $rc)"
		exit 1
		;;
	esac
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kvm-lab.XXXXXX")
qemu_pid=
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	[[ -z $qemu_pid ]] || kill "$qemu_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ((probe)); then
	mkdir -p "$work/kvm-lab-probe"
	# Static: the probe must not depend on what the initramfs carries.
	gcc -static -O2 -Wall -Wextra -o "$work/kvm-lab-probe/kvm-lab-probe" "$here/probe.c" ||
		lab_skip "could not compile probe.c with gcc -static"
	adds+=("$work/kvm-lab-probe")
	(($#)) || set -- kvm-lab-probe
fi

# ---- the initramfs -------------------------------------------------------
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc,add,lab,root}

cp "$busybox" "$root/bin/busybox"
while IFS= read -r applet; do
	[[ -e $root/$applet || $applet == bin/busybox ]] || ln -s /bin/busybox "$root/$applet"
done < <("$busybox" --list-full)
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

# Library dirs the loader searches by itself (no ld.so.cache inside).
is_system_libdir() {
	case $1 in
	/lib/x86_64-linux-gnu | /usr/lib/x86_64-linux-gnu | /lib | /usr/lib | /lib64 | /usr/lib64) return 0 ;;
	esac
	return 1
}

# is_elf_program FILE: an ELF executable or shared object (not a .o).
is_elf_program() {
	local h
	h=$(od -An -tx1 -N18 "$1" 2>/dev/null | tr -d ' \n')
	[[ $h == 7f454c46* ]] && [[ ${h:32:2} == 02 || ${h:32:2} == 03 ]]
}

declare -A libs_done=()
declare -A extra_libdirs=()
# copy_libs FILE: put the libraries ldd resolves for FILE (and the dynamic
# loader) at the same paths inside, so RUNPATHs and the loader path work.
copy_libs() {
	local line path
	while IFS= read -r line; do
		path=
		if [[ $line =~ =\>\ (/[^ ]+) ]]; then
			path=${BASH_REMATCH[1]}
		elif [[ $line =~ ^[[:space:]]*(/[^ ]+)\ \( ]]; then
			path=${BASH_REMATCH[1]}
		elif [[ $line == *"not found"* ]]; then
			lab_say "warning: $1: ${line#"${line%%[![:space:]]*}"}"
		fi
		[[ -n $path && -z ${libs_done[$path]:-} ]] || continue
		libs_done[$path]=1
		mkdir -p "$root$(dirname "$path")"
		cp -L "$path" "$root$path"
		is_system_libdir "$(dirname "$path")" || extra_libdirs[$(dirname "$path")]=1
	done < <(ldd "$1" 2>/dev/null || true)
}

# Inside paths of the --add dirs: for PATH and LD_LIBRARY_PATH.
add_paths=()
so_dirs=()
for a in "${adds[@]}"; do
	src=$(realpath "$a")
	name=$(basename "$src")
	add_paths+=("/add/$name")
	if [[ -d $src ]]; then
		mkdir -p "$root/add/$name"
		cp -a "$src/." "$root/add/$name/"
	else
		cp -a "$src" "$root/add/$name"
	fi
	while IFS= read -r -d '' f; do
		is_elf_program "$f" && copy_libs "$f"
	done < <(find "$src" -type f -print0)
	while IFS= read -r d; do
		so_dirs+=("/add/$name${d#"$src"}")
	done < <(find "$src" -name '*.so*' \( -type f -o -type l \) -printf '%h\n' | sort -u)
done
# busybox may be the dynamic Debian one; glibc dlopens libgcc_s for
# pthread_cancel/exit unwinding, which ldd does not show.
copy_libs "$root/bin/busybox"
for g in /lib/x86_64-linux-gnu/libgcc_s.so.1 /usr/lib/x86_64-linux-gnu/libgcc_s.so.1; do
	if [[ -e $g && -z ${libs_done[$g]:-} ]]; then
		mkdir -p "$root$(dirname "$g")"
		cp -L "$g" "$root$g"
		libs_done[$g]=1
	fi
done
ld_path=("${so_dirs[@]}" "${!extra_libdirs[@]}")

# sh_quote WORD: WORD single-quoted for any POSIX sh (busybox ash).
sh_quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
join_colon() {
	local IFS=:
	printf '%s' "$*"
}

{
	printf '# generated by run.sh: the environment and COMMAND\n'
	printf 'export HOME=/root\n'
	printf 'export PATH=%s\n' "$(sh_quote "$(join_colon /bin /sbin /usr/bin /usr/sbin "${add_paths[@]}")")"
	((${#ld_path[@]} == 0)) ||
		printf 'export LD_LIBRARY_PATH=%s\n' "$(sh_quote "$(join_colon "${ld_path[@]}")")"
	for e in "${envs[@]}"; do
		printf 'export %s=%s\n' "${e%%=*}" "$(sh_quote "${e#*=}")"
	done
	printf 'cd %s || exit 126\n' "$(sh_quote "${add_paths[0]:-/}")"
	printf 'exec'
	for w in "$@"; do
		printf ' %s' "$(sh_quote "$w")"
	done
	printf ' </dev/null\n'
} >"$root/lab/cmd"

cat >"$root/init" <<EOF
#!/bin/sh
# PID 1 of the lab (generated by run.sh). It must not exit: that panics.
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mkdir -p /dev/shm /dev/hugepages
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t hugetlbfs hugetlbfs /dev/hugepages
if [ -d /sys/kernel/mm/hugepages/hugepages-1048576kB ]; then
	mkdir -p /dev/hugepages-1G
	mount -t hugetlbfs -o pagesize=1G hugetlbfs /dev/hugepages-1G
fi
# Files packed under /tmp (libraries at build-tree paths) survive the mount.
mv /tmp /.tmp-packed && mkdir -m 1777 /tmp && mount -t tmpfs -o mode=1777 tmpfs /tmp &&
	cp -a /.tmp-packed/. /tmp/ && rm -rf /.tmp-packed
# No RTC: start from the host's clock at packing time.
date -s @$(date +%s) >/dev/null 2>&1
echo CVMCONV-LAB-BEGIN
/bin/sh /lab/cmd
rc=\$?
printf '\nCVMCONV-LAB-EXIT=%d\n' "\$rc"
# Let the UART drain before the reset ends QEMU.
sleep 1
reboot -f
EOF
chmod +x "$root/init"

(cd "$root" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) | gzip -1 >"$work/initramfs.gz"

# ---- boot ------------------------------------------------------------------
cmdline="console=ttyS0 panic=-1"
((verbose)) || cmdline+=" quiet"
for a in "${appends[@]}"; do
	cmdline+=" $a"
done

# stream_console: the console from the begin marker to the exit marker,
# without CRs. The line before the marker is the "\n" the marker starts
# with, or the last line of output that had no newline: print it only then.
stream_console() {
	local line on=0 held='' have=0
	while IFS= read -r line || [[ -n $line ]]; do
		line=${line//$'\r'/}
		if ((verbose)); then
			printf '%s\n' "$line"
			continue
		fi
		if ((!on)); then
			[[ $line == CVMCONV-LAB-BEGIN ]] && on=1
			continue
		fi
		if [[ $line == *CVMCONV-LAB-EXIT=* ]]; then
			((have)) && [[ -n $held ]] && printf '%s\n' "$held"
			[[ -z ${line%%CVMCONV-LAB-EXIT=*} ]] || printf '%s\n' "${line%%CVMCONV-LAB-EXIT=*}"
			on=0 have=0
			continue
		fi
		((have)) && printf '%s\n' "$held"
		held=$line have=1
	done
	((!have)) || printf '%s\n' "$held"
}

lab_say "booting: $(basename "$kernel"), ${mem} MiB, $cpus vCPUs ($tcg_threads-threaded TCG), initramfs $(du -k "$work/initramfs.gz" | cut -f1) KiB, timeout ${timeout_s}s"
t0=$SECONDS
mkfifo "$work/console"
# stdin from /dev/null: QEMU must not grab a terminal (or stop on SIGTTOU).
timeout -k 10 "$timeout_s" qemu-system-x86_64 \
	-M q35 -cpu EPYC,+svm,+npt,+pdpe1gb -smp "$cpus" -m "$mem" -accel "tcg,thread=$tcg_threads" \
	-nodefaults -no-user-config -display none -serial stdio -monitor none -no-reboot \
	-kernel "$kernel" -initrd "$work/initramfs.gz" -append "$cmdline" \
	</dev/null >"$work/console" 2>"$work/qemu.err" &
qemu_pid=$!
tee "$work/console.log" <"$work/console" | stream_console
qrc=0
wait "$qemu_pid" || qrc=$?
qemu_pid=
secs=$((SECONDS - t0))

status=$(grep -ao 'CVMCONV-LAB-EXIT=[0-9]*' "$work/console.log" | tail -n 1 | cut -d= -f2 || true)
if [[ -n $status ]]; then
	lab_say "exit $status (boot + run ${secs}s)"
	exit "$status"
fi
if ((qrc == 124 || qrc == 137)); then
	lab_say "timed out after ${timeout_s}s (--timeout); last console lines:"
	tail -n 30 "$work/console.log" | tr -d '\r' >&2
	exit 124
fi
lab_say "the lab ended without COMMAND's exit status (QEMU exit $qrc, ${secs}s; --verbose shows the boot); last console lines:"
tail -n 30 "$work/console.log" | tr -d '\r' >&2
# The EPYC model asks for features TCG lacks: QEMU warns about each, harmlessly.
if grep -qv "TCG doesn't support requested feature" "$work/qemu.err"; then
	lab_say "QEMU said:"
	grep -v "TCG doesn't support requested feature" "$work/qemu.err" >&2
fi
exit 125
