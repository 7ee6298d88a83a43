#!/usr/bin/env bash
# Run every test executable of a (non-sanitizer) build under valgrind
# memcheck: any invalid access, use of uninitialised memory, or definitely /
# indirectly lost block fails.
#
#   tests/valgrind.sh BUILD_DIR [TEST...]
#
# Tests are the executables of BUILD_DIR/tests (test_* and fault_injection)
# and BUILD_DIR/tools/tests, if any. CVMCONV_TEST_QUICK=1 is exported so
# that the long randomised suites run a tenth of their steps. Logs go to
# BUILD_DIR/valgrind/<test>.log.
set -uo pipefail

if [ $# -lt 1 ]; then
	echo "usage: $0 BUILD_DIR [TEST...]" >&2
	exit 2
fi
build_dir=$1
shift
if ! command -v valgrind >/dev/null 2>&1; then
	echo "valgrind.sh: valgrind not installed" >&2
	exit 2
fi
if grep -Eq '^CVMCONV_SANITIZE:STRING=.+' "$build_dir/CMakeCache.txt" 2>/dev/null; then
	echo "valgrind.sh: $build_dir is a sanitizer build; use a plain one" >&2
	exit 2
fi

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
	while IFS= read -r t; do
		tests+=("$t")
	done < <(find "$build_dir/tests" "$build_dir/tools/tests" -maxdepth 1 -type f -executable \
		\( -name 'test_*' -o -name 'fault_injection' \) 2>/dev/null | sort)
fi
if [ ${#tests[@]} -eq 0 ]; then
	echo "valgrind.sh: no test executables under $build_dir" >&2
	exit 2
fi

supp=$(cd "$(dirname "$0")" && pwd)/valgrind.supp
export CVMCONV_TEST_QUICK=1
mkdir -p "$build_dir/valgrind"
failed=()
start=$SECONDS
for t in "${tests[@]}"; do
	[ -x "$t" ] || t="$build_dir/tests/$t"
	name=$(basename "$t")
	log="$build_dir/valgrind/$name.log"
	t0=$SECONDS
	# run from the test's directory, as ctest does
	# --error-exitcode=1 as asked; a memcheck error is told apart from a
	# failing test by the error summary in the log
	(cd "$(dirname "$t")" && valgrind --error-exitcode=1 --leak-check=full \
		--errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
		--track-origins=yes --trace-children=no --suppressions="$supp" \
		"./$name") >"$log" 2>&1
	rc=$?
	errors=$(grep -Eo 'ERROR SUMMARY: [0-9]+' "$log" | tail -n 1 | grep -Eo '[0-9]+$' || echo '?')
	if [ "$rc" -eq 0 ]; then
		echo "valgrind: $name ok ($((SECONDS - t0)) s)"
	else
		echo "valgrind: $name FAILED ($((SECONDS - t0)) s): ${errors} memcheck errors," \
			"exit $rc; see $log" >&2
		grep -E '==[0-9]+== (Invalid|Conditional|Use of|Syscall param|.*definitely lost|.*indirectly lost|Mismatched)' \
			"$log" | head -n 10 >&2
		failed+=("$name")
	fi
done
echo "valgrind: ${#tests[@]} executables in $((SECONDS - start)) s, ${#failed[@]} failed${failed[*]:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
