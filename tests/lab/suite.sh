#!/bin/sh
# The lab suite, run inside the KVM lab (a real KVM_X86_SW_PROTECTED_VM) by
# tests/lab/run.sh: every step's output, then one line per step and a
# summary. Exit 0 when every step passed, 1 otherwise. A step that exits 77
# (it cannot run here) is a failure too: in the lab everything can run.
set -u
cd "$(dirname "$0")"
export PATH="$PWD:$PATH"

pass=0
failed=0
summary=""

step() {
	name=$1
	shift
	echo
	echo "=== lab step: $name ($*)"
	start=$(date +%s)
	"$@"
	rc=$?
	secs=$(($(date +%s) - start))
	if [ "$rc" -eq 0 ]; then
		pass=$((pass + 1))
		summary="$summary
  PASS  $name (${secs} s)"
	else
		failed=$((failed + 1))
		summary="$summary
  FAIL  $name (exit $rc, ${secs} s)"
	fi
}

# mini-vmm's real path: its ctest driver checks the exit status and the
# key lines; every step and check of the scenario must pass
step "mini-vmm --real, 2 MiB hugetlb shared side" sh ./test-mini-vmm.sh ./mini-vmm real
step "mini-vmm --real --shmem" sh ./test-mini-vmm.sh ./mini-vmm real-shmem
step "mini-vmm --real --huge-1g, 1 GiB hugetlb shared side" \
	sh ./test-mini-vmm.sh ./mini-vmm real-1g
# the fake KVM against the kernel: 10,000 seeded calls
step "fake KVM vs kernel: KVM_SET_MEMORY_ATTRIBUTES" ./lab-attr-diff 10000 1
# a real guest converting thousands of times, shmem and 2 MiB hugetlb shared sides
for prog in lab-guest-random; do
	[ -x "./$prog" ] || continue
	step "real guest, random conversions, shmem shared side" "./$prog" --steps 3000 --seed 1
	step "real guest, random conversions, 2 MiB hugetlb shared side" \
		"./$prog" --steps 3000 --seed 2 --huge
done

echo
echo "=== lab suite: $pass passed, $failed failed$summary"
[ "$failed" -eq 0 ]
