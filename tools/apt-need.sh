# shellcheck shell=bash
# Sourced by build.sh, bench/perf/run.sh and .ci/run: the one way the
# project's scripts install missing Debian packages.
#
#   apt_need WHO PACKAGE...
#
# installs those of PACKAGE... that dpkg does not list as installed (every
# one of them where there is no dpkg), as root with apt-get (after an
# update: a fresh machine's lists may be stale), printing "WHO: installing
# ..." first; not root or no apt-get: a warning on stderr, and the caller
# goes on without them. Returns apt-get's status, else 0.
apt_need() {
	local who=$1 p
	local missing=()
	shift
	for p in "$@"; do
		if ! command -v dpkg-query >/dev/null 2>&1 ||
			! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		echo "$who: warning: missing packages (need root and apt-get to install): ${missing[*]}" >&2
		return 0
	fi
	echo "$who: installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			"${missing[@]}" >/dev/null
}
