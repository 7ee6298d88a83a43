#!/usr/bin/env bash
# Self-test of the KVM lab, run on the host: three boots of run.sh.
#   1. inside: the vCPU count, the mounts, --env, the working directory, a dynamically
#      linked program whose library sits under /tmp (RUNPATH) and one in
#      LD_LIBRARY_PATH, 1 GiB huge pages, and the KVM probe (probe.c:
#      /dev/kvm, KVM_CAP_VM_TYPES bit 1, a SW_PROTECTED VM with guest_memfd);
#   2. COMMAND's exit status and output (no trailing newline) come out;
#   3. a lab that does not finish is killed at --timeout (exit 124).
# Exit status: 0 all passed, 1 a check failed, 77 no lab here.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
run=$here/run.sh
work=$(mktemp -d "${TMPDIR:-/tmp}/kvm-lab-selftest.XXXXXX")
trap 'rm -rf "$work"' EXIT
fails=0
pass() { printf 'selftest: ok   %s\n' "$*"; }
fail() {
	printf 'selftest: FAIL %s\n' "$*"
	fails=$((fails + 1))
}

# Build the kernel first so that a missing lab is a skip, not three.
rc=0
"$here/build-kernel.sh" >/dev/null || rc=$?
((rc == 0)) || exit $((rc == 77 ? 77 : 1))

# A shared library and a program using it through a RUNPATH under /tmp, as
# a CMake build tree in /tmp would have it.
mkdir -p "$work/t" "$work/libdir"
cat >"$work/libdir/labtest.c" <<'EOF'
int labtest_answer(void) { return 42; }
EOF
cat >"$work/t/hello.c" <<'EOF'
#include <stdio.h>
int labtest_answer(void);
int main(void) { printf("hello from a dynamic program: %d\n", labtest_answer()); return 0; }
EOF
gcc -shared -fPIC -o "$work/libdir/liblabtest.so" "$work/libdir/labtest.c"
gcc -o "$work/t/hello" "$work/t/hello.c" -L"$work/libdir" -llabtest -Wl,-rpath,"$work/libdir"
cp "$work/t/hello" "$work/t/hello-ldpath"
# A copy without RUNPATH: it must find the library via LD_LIBRARY_PATH,
# which run.sh sets to the --add dirs holding .so files.
mkdir -p "$work/solib"
cp "$work/libdir/liblabtest.so" "$work/solib/"
gcc -o "$work/t/hello-ldpath" "$work/t/hello.c" -L"$work/libdir" -llabtest

cat >"$work/t/inside.sh" <<'EOF'
#!/bin/sh
# Runs inside the lab; exit status = number of failed checks.
n=0
check() { if eval "$2"; then echo "inside: ok   $1"; else echo "inside: FAIL $1"; n=$((n + 1)); fi; }
fstype() { awk -v m="$1" '$2 == m { t = $3 } END { print t }' /proc/mounts; }
check "root"                 '[ "$(id -u)" = 0 ]'
check "3 vCPUs online (--cpus 3)" '[ "$(nproc)" = 3 ]'
check "cwd is /add/t"        '[ "$(pwd)" = /add/t ]'
check "--env passed"         '[ "$LAB_SELFTEST" = "a b'"'"'c" ]'
check "/proc is proc"        '[ "$(fstype /proc)" = proc ]'
check "/sys is sysfs"        '[ "$(fstype /sys)" = sysfs ]'
check "/dev is devtmpfs"     '[ "$(fstype /dev)" = devtmpfs ]'
check "/tmp is tmpfs"        '[ "$(fstype /tmp)" = tmpfs ]'
check "/dev/hugepages"       '[ "$(fstype /dev/hugepages)" = hugetlbfs ]'
check "/dev/hugepages-1G"    '[ "$(fstype /dev/hugepages-1G)" = hugetlbfs ]'
check "one 1 GiB page"       '[ "$(cat /sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages)" = 1 ]'
check "debugfs fault injection" '[ -d /sys/kernel/debug/failslab ]'
check "library under /tmp (RUNPATH)" '[ "$(./hello)" = "hello from a dynamic program: 42" ]'
check "library via LD_LIBRARY_PATH"  '[ "$(./hello-ldpath)" = "hello from a dynamic program: 42" ]'
check "/dev/kvm"             '[ -c /dev/kvm ]'
if kvm-lab-probe; then echo "inside: ok   probe"; else echo "inside: FAIL probe"; n=$((n + 1)); fi
exit $n
EOF

echo "selftest: boot 1: checks inside the lab (run.sh warns that ldd cannot find liblabtest.so for hello-ldpath: expected)"
rc=0
"$run" --probe --add "$work/t" --add "$work/solib" --env "LAB_SELFTEST=a b'c" \
	--cpus 3 --mem 4096 --append "hugepagesz=1G hugepages=1" -- sh inside.sh || rc=$?
case $rc in
0) pass "boot 1: every check inside passed" ;;
77) exit 77 ;;
*) fail "boot 1: exit $rc" ;;
esac

echo "selftest: boot 2: exit status and output"
rc=0
out=$("$run" -- sh -c 'echo first; printf "second, no newline"; exit 7') || rc=$?
if ((rc == 7)); then pass "exit status 7 came out"; else fail "exit status: got $rc, want 7"; fi
if [[ $out == $'first\nsecond, no newline' ]]; then
	pass "output came out as printed"
else
	fail "output: got [$out]"
fi

echo "selftest: boot 3: --timeout"
rc=0
# Killed during the boot or during the sleep: 124 either way.
"$run" --timeout 20 -- sleep 1000 || rc=$?
if ((rc == 124)); then pass "a hanging lab ends with 124"; else fail "timeout: got $rc, want 124"; fi

if ((fails)); then
	echo "selftest: $fails check(s) failed"
	exit 1
fi
echo "selftest: all passed"
