#!/bin/sh
#   run.sh SECONDS [BUILD_DIR] - fuzz every target, SECONDS each.
#
#   The targets are the files tests/fuzz/tr_NAME_fuzz.c (envelope: the
#   envelope decoder; tree: the tree-file loader). Configures a clang
#   build with -DTROUPE_FUZZ=ON in BUILD_DIR (default build-fuzz at the
#   top of the repository), builds every target, and runs each in turn
#   for SECONDS over a scratch copy of tests/fuzz/corpus/NAME (the
#   repository's corpus is never written to), with the dictionary
#   tests/fuzz/tr_NAME_fuzz.dict if there is one. Crash inputs land in
#   BUILD_DIR/fuzz-run/NAME/artifacts. Stops at the first crash, leak,
#   timeout or build failure and exits non-zero.
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 SECONDS [BUILD_DIR]" >&2
    exit 2
fi
seconds=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${2:-$root/build-fuzz}

names=
for source in "$root"/tests/fuzz/tr_*_fuzz.c; do
    name=${source##*/tr_}
    names="$names ${name%_fuzz.c}"
done
targets=
for name in $names; do
    targets="$targets tr_${name}_fuzz"
done

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DTROUPE_FUZZ=ON \
      -DTROUPE_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
# shellcheck disable=SC2086
cmake --build "$build" --target $targets -j "$(nproc)"

for name in $names; do
    work=$build/fuzz-run/$name
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/artifacts"
    cp "$root/tests/fuzz/corpus/$name/"* "$work/corpus/"
    dict=$root/tests/fuzz/tr_${name}_fuzz.dict
    set -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
           -print_final_stats=1 -artifact_prefix="$work/artifacts/"
    if [ -f "$dict" ]; then
        set -- "$@" -dict="$dict"
    fi

    echo "run.sh: fuzzing $name for $seconds s"
    status=0
    "$build/tests/fuzz/tr_${name}_fuzz" "$@" "$work/corpus" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "run.sh: the $name fuzzer failed (exit $status); inputs in $work/artifacts:" >&2
        ls -l "$work/artifacts" >&2
        exit "$status"
    fi
    echo "run.sh: $name: no crash in $seconds s; corpus grew to $(ls "$work/corpus" | wc -l) inputs"
done
