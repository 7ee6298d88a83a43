# shellcheck shell=bash
# Helpers shared by build-kernel.sh and run.sh (sourced, not run).

# shellcheck disable=SC2034 # used by the scripts that source this
LAB_CACHE=${CVMCONV_LAB_CACHE:-/var/cache/cvmconv-lab}
LAB_SRC_PKG=linux-source-6.12

# Exit status meaning "no lab can be had here" (automake/ctest skip).
LAB_SKIP=77

lab_say() { printf 'kvm-lab: %s\n' "$*" >&2; }
lab_skip() {
	lab_say "no lab: $*"
	exit "$LAB_SKIP"
}

lab_pkg_installed() {
	[[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

lab_pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }

# lab_need_packages PKG...: install the missing ones (root only, quietly,
# saying which); without root or when apt fails, skip with the reason.
lab_need_packages() {
	local p missing=()
	command -v dpkg-query >/dev/null || lab_skip "not a Debian system (no dpkg-query); install by hand: $*"
	for p in "$@"; do
		lab_pkg_installed "$p" || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	if ((EUID != 0)); then
		lab_skip "missing Debian packages: ${missing[*]} (run once as root to install them)"
	fi
	lab_say "installing Debian packages: ${missing[*]}"
	local log
	log=$(mktemp "${TMPDIR:-/tmp}/kvm-lab-apt.XXXXXX")
	# The package lists may be absent or stale on a fresh machine: update first.
	if ! { apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			"${missing[@]}"; } >"$log" 2>&1; then
		tail -n 20 "$log" >&2
		rm -f "$log"
		lab_skip "apt-get could not install: ${missing[*]}"
	fi
	rm -f "$log"
}

# Packages the lab needs at run time. Debian's busybox (dynamic) conflicts
# with busybox-static; run.sh copies whichever is there with its libraries,
# so do not replace an installed busybox.
lab_run_packages() {
	local pkgs=(qemu-system-x86 cpio gcc libc6-dev)
	lab_pkg_installed busybox || pkgs+=(busybox-static)
	printf '%s\n' "${pkgs[@]}"
}

# Packages the kernel build needs.
lab_build_packages() {
	printf '%s\n' "$LAB_SRC_PKG" flex bison bc libelf-dev libssl-dev make gcc libc6-dev xz-utils
}
