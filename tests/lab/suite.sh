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
	# bounded: a step that hangs fails (124 or 137) and the suite goes on
	timeout -s KILL 300 "$@"
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
# in-place conversion: the library's detection on a kernel without
# KVM_SET_MEMORY_ATTRIBUTES2 (6.12): the region is refused by probing
step "in place: KVM_SET_MEMORY_ATTRIBUTES2 probed on a real guest_memfd" ./lab-inplace-probe
# A real guest (tests/lab/lab_guest_random.c) converting through the
# library, reading its pages back, the double allocation compared with the
# kernel's after every step; shmem and 2 MiB hugetlb shared sides. The
# scenarios are the host suites' (test_integrity's random conversions,
# test_selftest_pattern, test_hugepage_tdx, test_punch_failure, test_stress)
# on a real SW_PROTECTED VM with a real guest_memfd.
g=./lab-guest-random
step "real guest: random conversions, shmem" $g --scenario random --steps 3000 --seed 1
step "real guest: random conversions, 2 MiB hugetlb" $g --scenario random --steps 3000 --seed 2 --huge
step "real guest: KVM selftest pattern, shmem" $g --scenario selftest
step "real guest: KVM selftest pattern, 2 MiB hugetlb" $g --scenario selftest --huge
step "real guest: TDX-split MapGPA, 2 MiB hugetlb" $g --scenario tdx-split --steps 40 --seed 3 --huge
step "real guest: punch failures and flush, shmem" $g --scenario punch-failure --steps 800 --seed 4
step "real guest: punch failures and flush, 2 MiB hugetlb" \
	$g --scenario punch-failure --steps 800 --seed 5 --huge
step "real guest: 4 vCPU threads, 2 MiB hugetlb" $g --scenario stress --vcpus 4 --steps 800 --seed 8 --huge
step "real guest: 3 vCPU threads, shmem" $g --scenario stress --vcpus 3 --steps 800 --seed 7
# an empty hugetlb pool: CVMCONV_REGION_ALLOC_SHARED refuses the conversion
# (-KVM_EFAULT, rolled back); without it the guest's write fails instead
step "real guest: empty hugetlb pool, ALLOC_SHARED and without" $g --scenario alloc-shared
# the pool raced by another process (tools/pool_hog.c) while the guest
# converts back and forth: refused whole with ALLOC_SHARED, waits without
step "real guest: 2 MiB pool raced by another process" $g --scenario pool-race --steps 600 --seed 11
# overlapping and disjoint ranges from 2 and 3 vCPU threads at once: the
# final state against a sequential replay and the kernel's attributes
step "real guest: 2 vCPUs, overlapping ranges, shmem, replay + kernel" \
	$g --scenario stress --overlap --vcpus 2 --steps 400 --seed 12
step "real guest: 3 vCPUs, overlapping ranges, 2 MiB hugetlb, replay + kernel" \
	$g --scenario stress --overlap --vcpus 3 --steps 300 --seed 13 --huge
# the real kernel's own failures (fail-nth, failslab, fail_page_alloc) at
# every position of multi-run requests and batches (tests/lab/lab_kernel_faults.c);
# bursts of 2 defeat the xarray's one retry, so KVM_SET_MEMORY_ATTRIBUTES
# itself fails; bursts of 3 reach rollbacks too (the context breaks, no data lost)
step "real kernel faults at every position, shmem + madvise" $g --scenario kernel-faults
step "real kernel faults at every position, 2 MiB hugetlb" $g --scenario kernel-faults --huge
step "real kernel faults, bursts of 2, shmem" $g --scenario kernel-faults --burst 2
step "real kernel faults, bursts of 2, 2 MiB hugetlb" $g --scenario kernel-faults --burst 2 --huge
step "real kernel faults, bursts of 3, 2 MiB hugetlb" $g --scenario kernel-faults --burst 3 --huge
# a fault no conversion can resolve (a private page of a memslot without
# guest_memfd), on two vCPU threads: -ELOOP instead of an endless loop
step "real guest: endless memory faults refused (-ELOOP), 2 vCPUs" $g --scenario fault-loop

echo
echo "=== lab suite: $pass passed, $failed failed$summary"
[ "$failed" -eq 0 ]
