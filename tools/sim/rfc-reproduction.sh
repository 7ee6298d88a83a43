#!/usr/bin/env bash
# Run every cvmconv-sim command of docs/rfc-reproduction.md, in the order the
# page uses them, and print each command before its output. As root, for
# huge pages (nr_hugepages is raised and restored by cvmconv-sim itself).
#   tools/sim/rfc-reproduction.sh [path/to/cvmconv-sim]   (default build/tools/cvmconv-sim)
set -euo pipefail

sim=${1:-"$(dirname "$0")/../../build/tools/cvmconv-sim"}
[ -x "$sim" ] || { echo "no cvmconv-sim at $sim (build first)" >&2; exit 2; }

run() {
	echo "\$ cvmconv-sim $*"
	"$sim" -q "$@"
	echo
}

run
run --workload churn
run --ram 2G --populate all --platform tdx --workload devices
run --ram 1G --workload boot --host cvmconv --platform tdx
run --ram 4G --workload boot --host cvmconv
run --enforce-checker --guest rfc --ram 4G --host cvmconv
run --policy reject --host cvmconv
run --workload gpu --guest all --platform tdx --host cvmconv
run --workload gpu --guest legacy,rfc,cma --platform tdx --host cvmconv --gpu-chunk 256K \
	--gpu-total 1536M --cma 1536M
run --ram 2G --platform tdx --host cvmconv --guest legacy,rfc --swiotlb-dynamic \
	--workload boot+frag+stream --stream-bytes 512M
for n in 300000 400000 500000 600000; do
	run --ram 2G --platform tdx --host cvmconv --guest legacy,rfc --workload boot+frag \
		--frag-steps $n
done
run --ram 2G --platform tdx --host cvmconv --guest legacy,rfc --swiotlb-dynamic \
	--workload boot+frag+stream --frag-steps 500000 --stream-bytes 512M
run --ram 2G --platform tdx --host cvmconv --guest legacy,rfc,cma --workload boot+frag+gpu \
	--gpu-total 512M
run --ram 2G --platform tdx --host cvmconv --guest rfc,cma --workload boot+frag+gpu \
	--gpu-chunk 256K --gpu-total 512M
run --host all --guest legacy,rfc --workload churn
run --host in-place --guest legacy --workload churn --gmem-busy-every 8
