#!/usr/bin/env bash
#   reliability.sh - the long runs of troupe's reliability tests, and
#   tests/RELIABILITY.md rewritten with their figures (`make reliability`).
#
#   Runs, on the plain build in $BUILD (default build):
#     - tr_hostile_test for HOSTILE_SECONDS (default 300): a real broker
#       under hostile clients while well-behaved nodes work through it;
#     - tr_load_test at LOAD_NODES x LOAD_ACTORS (default 16 x 1,000)
#       with LOAD_MESSAGES (default 1,000,000) mixed tells and asks;
#     - every fuzz target for FUZZ_SECONDS each (default 600), from the
#       repository's seed corpora.
#   `make test` runs the short versions of the same tests (15 s, 4 x 250,
#   100,000, and 60 s of fuzzing in CI). Exits non-zero if any fails;
#   RELIABILITY.md is written either way, saying what failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
HOSTILE_SECONDS=${HOSTILE_SECONDS:-300}
LOAD_NODES=${LOAD_NODES:-16}
LOAD_ACTORS=${LOAD_ACTORS:-1000}
LOAD_MESSAGES=${LOAD_MESSAGES:-1000000}
FUZZ_SECONDS=${FUZZ_SECONDS:-600}
OUT=tests/RELIABILITY.md
LOGS=$BUILD/reliability
mkdir -p "$LOGS"
failed=()

say () { printf 'reliability: %s\n' "$*" >&2; }

#   The figures of a KEY=VALUE line that a test printed after WORD.
field () {   # field LOGFILE WORD KEY
    grep "^$2 " "$1" | tail -1 | tr ' ' '\n' | sed -n "s/^$3=//p"
}

say "hostile clients for $HOSTILE_SECONDS s"
TROUPE_BIN=$BUILD/troupe TROUPE_HOSTILE_SECONDS=$HOSTILE_SECONDS \
    "$BUILD/tests/tr_hostile_test" > "$LOGS/hostile.log" 2>&1 || failed+=(hostile)

say "load: $LOAD_NODES nodes x $LOAD_ACTORS actors, $LOAD_MESSAGES messages"
TROUPE_BIN=$BUILD/troupe TROUPE_LOAD_NODES=$LOAD_NODES TROUPE_LOAD_ACTORS=$LOAD_ACTORS \
    TROUPE_LOAD_MESSAGES=$LOAD_MESSAGES "$BUILD/tests/tr_load_test" > "$LOGS/load.log" 2>&1 \
    || failed+=(load)

say "fuzzing every target for $FUZZ_SECONDS s"
scripts/install-deps.sh --fuzz
tests/fuzz/run.sh "$FUZZ_SECONDS" > "$LOGS/fuzz.log" 2>&1 || failed+=(fuzz)

h=$LOGS/hostile.log
l=$LOGS/load.log
{
    echo "# Reliability figures"
    echo
    echo "Written by \`make reliability\` (scripts/reliability.sh) on $(date -u +%Y-%m-%d),"
    echo "$(nproc) cores, $(uname -sr). The short versions of these tests run in"
    echo "\`make test\`; this page holds the long ones. Failed: ${failed[*]:-none}."
    echo
    echo "## Hostile clients against a running broker"
    echo
    echo "\`TROUPE_HOSTILE_SECONDS=$HOSTILE_SECONDS build/tests/tr_hostile_test\`: a \`troupe broker\`"
    echo "process under random and mutated frames, truncated multipart messages,"
    echo "oversized frames, wrong versions, floods of registrations and"
    echo "subscriptions past their quotas, a subscriber that never reads, and"
    echo "clients that vanish without BYE, all at once, while one node asks an"
    echo "echo actor on another and writes and reads the scratchpad."
    echo
    echo "| what | figure |"
    echo "|---|---:|"
    echo "| duration | $(field "$h" HOSTILE seconds) s |"
    echo "| well-behaved asks / failed | $(field "$h" HOSTILE asks) / $(field "$h" HOSTILE asks_failed) |"
    echo "| well-behaved scratchpad put+get / failed | $(field "$h" HOSTILE kv) / $(field "$h" HOSTILE kv_failed) |"
    echo "| broker memory at start / peak / after (KiB) | $(field "$h" HOSTILE rss_start_kb) / $(field "$h" HOSTILE rss_max_kb) / $(field "$h" HOSTILE rss_after_kb) |"
    echo "| stated bound | 262,144 KiB |"
    echo "| refused as malformed / other requests refused | $(field "$h" HOSTILE malformed) / $(field "$h" HOSTILE refused) |"
    echo "| event copies dropped for the slow subscriber | $(field "$h" HOSTILE event_copies_dropped) |"
    echo "| clients declared dead | $(field "$h" HOSTILE dead) |"
    echo
    echo "## Load: many nodes, many actors, one broker"
    echo
    echo "\`TROUPE_LOAD_NODES=$LOAD_NODES TROUPE_LOAD_ACTORS=$LOAD_ACTORS TROUPE_LOAD_MESSAGES=$LOAD_MESSAGES build/tests/tr_load_test\`:"
    echo "one ask in four (timeout 10 s), the rest tells, to actors picked at random"
    echo "on other nodes."
    echo
    echo "| what | figure |"
    echo "|---|---:|"
    echo "| nodes x actors | $(field "$l" LOAD nodes) x $(field "$l" LOAD actors_per_node) |"
    echo "| messages | $(field "$l" LOAD messages) |"
    echo "| completion (first message to last counted) | $(field "$l" LOAD total_ms) ms |"
    echo "| throughput | $(field "$l" LOAD msgs_per_s) messages/s |"
    echo "| tells sent / received / refused / dead letters | $(field "$l" LOAD tells) / $(field "$l" LOAD tells_received) / $(field "$l" LOAD tells_refused) / $(field "$l" LOAD dead_letters) |"
    echo "| asks sent / answered / failed / late | $(field "$l" LOAD asks) / $(field "$l" LOAD asks_ok) / $(field "$l" LOAD asks_failed) / $(field "$l" LOAD asks_late) |"
    echo "| ask latency p50 / p99 / max | $(field "$l" LOAD ask_p50_us) / $(field "$l" LOAD ask_p99_us) / $(field "$l" LOAD ask_max_us) us |"
    echo "| broker memory at start / peak | $(field "$l" LOAD broker_rss_start_kb) / $(field "$l" LOAD broker_rss_peak_kb) KiB |"
    echo
    echo "## Fuzzing"
    echo
    echo "\`tests/fuzz/run.sh $FUZZ_SECONDS\` (libFuzzer, clang), each target from its seed"
    echo "corpus in tests/fuzz/corpus:"
    echo
    echo "| target | executions | coverage (edges) | features | crashes |"
    echo "|---|---:|---:|---:|---:|"
    for target in tests/fuzz/tr_*_fuzz.c; do
        name=${target##*/tr_}
        name=${name%_fuzz.c}
        block=$(sed -n "/fuzzing $name for/,/run.sh: $name:/p" "$LOGS/fuzz.log")
        runs=$(printf '%s\n' "$block" | sed -n 's/^stat::number_of_executed_units: *//p' | tail -1)
        cov=$(printf '%s\n' "$block" | grep -o 'cov: [0-9]*' | tail -1 | cut -d' ' -f2)
        ft=$(printf '%s\n' "$block" | grep -o 'ft: [0-9]*' | tail -1 | cut -d' ' -f2)
        if printf '%s\n' "$block" | grep -q "run.sh: $name: no crash"; then crashes=0; else crashes="see $LOGS/fuzz.log"; fi
        echo "| $name | ${runs:-?} | ${cov:-?} | ${ft:-?} | $crashes |"
    done
    echo
    echo "## Not covered yet"
    echo
    echo "- The chaos test (SIGKILL, SIGSTOP/SIGCONT, broker restarts and cut links"
    echo "  under load, with delivery accounting) and the soak test (memory and"
    echo "  descriptors sampled over a long run): not written yet."
} > "$OUT"
say "wrote $OUT"
if [ ${#failed[@]} -gt 0 ]; then
    say "failed: ${failed[*]} (logs in $LOGS)"
    exit 1
fi
