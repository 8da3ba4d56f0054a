#!/bin/sh
#   run.sh SECONDS [BUILD_DIR] - fuzz the envelope decoder.
#
#   Configures a clang build with -DTROUPE_FUZZ=ON in BUILD_DIR (default
#   build-fuzz at the top of the repository), builds tr_envelope_fuzz, and
#   runs it for SECONDS over a scratch copy of tests/fuzz/corpus/envelope
#   (the repository's corpus is never written to). Crash inputs land in
#   BUILD_DIR/fuzz-run/artifacts. Exits non-zero on any crash, leak,
#   timeout or build failure.
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 SECONDS [BUILD_DIR]" >&2
    exit 2
fi
seconds=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${2:-$root/build-fuzz}

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DTROUPE_FUZZ=ON \
      -DTROUPE_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" --target tr_envelope_fuzz -j "$(nproc)"

work=$build/fuzz-run
rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
cp "$root/tests/fuzz/corpus/envelope/"* "$work/corpus/"

status=0
"$build/tests/fuzz/tr_envelope_fuzz" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
    "$work/corpus" || status=$?
if [ "$status" -ne 0 ]; then
    echo "run.sh: the fuzzer failed (exit $status); inputs in $work/artifacts:" >&2
    ls -l "$work/artifacts" >&2
    exit "$status"
fi
echo "run.sh: no crash in $seconds s; corpus grew to $(ls "$work/corpus" | wc -l) inputs"
