#!/usr/bin/env bash
#   troupe_install_test.sh BUILD_DIR CONSUMER_DIR - installs the build into
#   a scratch prefix, then builds and runs a program against it three
#   ways: find_package with the shared library, find_package with the
#   static one, and pkg-config.
set -eu
build=$(cd "$1" && pwd)
consumer=$(cd "$2" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
prefix=$scratch/prefix

cmake --install "$build" --prefix "$prefix" > "$scratch/install.log"
for f in include/troupe.h include/troupe/tr_version.h bin/troupe; do
    [ -e "$prefix/$f" ] || { echo "FAIL: $f not installed"; exit 1; }
done
libdir=$(dirname "$(find "$prefix" -name 'libtroupe.so' | head -n 1)")
[ -e "$libdir/libtroupe.a" ] || { echo "FAIL: static library not installed"; exit 1; }
echo "ok: installed into $prefix (libdir $libdir)"

#   The installed program runs from its own prefix.
LD_LIBRARY_PATH=$libdir "$prefix/bin/troupe" --version

#   find_package (troupe)
cmake -S "$consumer" -B "$scratch/consumer" -DCMAKE_PREFIX_PATH="$prefix" > "$scratch/configure.log"
cmake --build "$scratch/consumer" > "$scratch/build.log"
LD_LIBRARY_PATH=$libdir "$scratch/consumer/consumer_shared"
"$scratch/consumer/consumer_static"
echo "ok: find_package (troupe), shared and static"

#   pkg-config --cflags --libs troupe
export PKG_CONFIG_PATH=$libdir/pkgconfig
cc -o "$scratch/consumer_pc" "$consumer/consumer.c" $(pkg-config --cflags --libs troupe)
LD_LIBRARY_PATH=$libdir "$scratch/consumer_pc"
#   The static library with shared dependencies (Debian's libczmq.pc does
#   not support --static linking of czmq itself).
cc -o "$scratch/consumer_pc_static" "$consumer/consumer.c" \
   $(pkg-config --cflags troupe) "$libdir/libtroupe.a" \
   $(pkg-config --libs libzmq libczmq yaml-0.1 libcurl) $(pkg-config --libs msgpack-c 2>/dev/null || pkg-config --libs msgpack) -lpthread -ldl
"$scratch/consumer_pc_static"
echo "ok: pkg-config, shared and static"
