#!/usr/bin/env bash
# Install the built tree into a scratch prefix and build a consumer against
# it twice — with find_package(cvmconv) and with pkg-config — then check the
# exported symbols and that the public header stands alone (C11 -pedantic, C++).
# usage: run.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
cc=${CC:-cc}

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name libcvmconv.so -print -quit)")
echo "installed into $prefix (libdir $libdir)"

# 1. CMake package
cmake -S "$src/tests/install" -B "$work/cm" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" >/dev/null
cmake --build "$work/cm" >/dev/null
LD_LIBRARY_PATH=$libdir "$work/cm/consumer_shared"
"$work/cm/consumer_static"
readelf -d "$work/cm/consumer_shared" | grep -q 'NEEDED.*libcvmconv.so.0' || { echo "FAIL: consumer not linked against SONAME libcvmconv.so.0"; exit 1; }

# 2. pkg-config
export PKG_CONFIG_PATH=$libdir/pkgconfig
"$cc" -std=c11 -Wall -Werror "$src/tests/install/consumer.c" -o "$work/pc_shared" $(pkg-config --cflags --libs cvmconv)
LD_LIBRARY_PATH=$libdir "$work/pc_shared"
"$cc" -std=c11 -Wall -Werror "$src/tests/install/consumer.c" -o "$work/pc_static" -static-libgcc \
	$(pkg-config --cflags cvmconv) "$libdir/libcvmconv.a" $(pkg-config --static --libs-only-l cvmconv | sed 's/-lcvmconv//')
"$work/pc_static"

# 3. only the API is exported
bad=$(nm -D --defined-only "$libdir/libcvmconv.so" | awk '$2 ~ /[TDBR]/ {print $3}' | sed 's/@.*//' | grep -v '^cvmconv_' | grep -v '^CVMCONV_' || true)
[ -z "$bad" ] || { echo "FAIL: non-API symbols exported: $bad"; exit 1; }
soname=$(readelf -d "$libdir/libcvmconv.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = libcvmconv.so.0 ] || { echo "FAIL: SONAME is '$soname'"; exit 1; }

# 4. the header alone: C11 pedantic, and C++
echo '#include <cvmconv.h>' > "$work/h.c"
"$cc" -std=c11 -pedantic -Wall -Wextra -Werror -I"$prefix/include" -c "$work/h.c" -o /dev/null
if command -v c++ >/dev/null; then
	cp "$work/h.c" "$work/h.cc"
	c++ -std=c++11 -pedantic -Wall -Wextra -Werror -I"$prefix/include" -c "$work/h.cc" -o /dev/null
else
	echo "note: no C++ compiler, C++ header check not run"
fi
echo "install consumer: OK"
