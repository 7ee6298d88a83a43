#!/usr/bin/env bash
# The lab suite from the host: packs the programs of BUILD_DIR that need a
# real SW_PROTECTED VM, boots the KVM lab (tools/kvm-lab/run.sh; the first
# run builds its kernel, with progress) and runs tests/lab/suite.sh inside.
#
#   tests/lab/run.sh BUILD_DIR
#
# Exit status: the suite's; 77 when no lab can be had here (the reason is
# printed) unless CVMCONV_LAB_REQUIRED=1 (CI), where that is a failure;
# 77 with CVMCONV_LAB=off.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:?usage: tests/lab/run.sh BUILD_DIR}" && pwd)

if [[ ${CVMCONV_LAB:-on} == off ]]; then
	echo "SKIP: CVMCONV_LAB=off (the KVM lab suite runs in another build of this run)"
	exit 77
fi

stage=$(mktemp -d /tmp/cvmconv-lab-suite.XXXXXX)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/lab"
for f in "$build/examples/mini-vmm/mini-vmm" "$build/tests/lab-attr-diff" \
	"$build/tests/lab-inplace-probe"; do
	[[ -x $f ]] || {
		echo "tests/lab/run.sh: $f is not built" >&2
		exit 1
	}
	cp "$f" "$stage/lab/"
done
for f in "$build"/tests/lab-guest-*; do
	[[ -x $f ]] && cp "$f" "$stage/lab/"
done
cp "$root/examples/mini-vmm/test-mini-vmm.sh" "$here/suite.sh" "$stage/lab/"

rc=0
# 4 GiB and one 1 GiB huge page reserved at boot (it cannot be had later:
# the lab kernel has no CONTIG_ALLOC), 2 MiB ones raised by the programs
"$root/tools/kvm-lab/run.sh" --mem 4096 --cpus 2 --timeout 1500 \
	--append "hugepagesz=1G hugepages=1" \
	--add "$stage/lab" -- sh suite.sh || rc=$?
if [[ $rc -eq 77 && ${CVMCONV_LAB_REQUIRED:-0} == 1 ]]; then
	echo "tests/lab/run.sh: no lab, and CVMCONV_LAB_REQUIRED=1: failing" >&2
	exit 1
fi
exit "$rc"
