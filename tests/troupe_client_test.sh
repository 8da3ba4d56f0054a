#!/usr/bin/env bash
#   troupe_client_test.sh TROUPE ECHO_NODE - the client commands (send,
#   ask, pub, sub, nodes, kv) as a user meets them, against a real
#   `troupe broker` on a free port. ECHO_NODE (tests/tr_echo_node.c) is a
#   small node joined to the broker that hosts one `echo` actor.
#
#   Checked: ask gets back the JSON it sent; send is taken, and fails
#   (exit 1, TR_ENOACTOR) for a name nobody has, as ask does; nodes lists
#   the echo node (and not itself); sub prints the events its prefix
#   matches, one JSON line each, and stops at --count or --for; bad JSON
#   exits 2 with LINE:COLUMN before anything is sent; a missing broker
#   exits 1 within the timeout, whether named by --broker or
#   $TROUPE_BROKER; kv put, get, cas, del, ls and TTLs, once the broker
#   serves the scratchpad (skipped, and said, if it does not).
set -u
troupe=$1
echo_node=$2
failures=0
work=$(mktemp -d /tmp/troupe_client_test.XXXXXX)
pids=()
cleanup () {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
unset TROUPE_BROKER

fail () {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

#   expect STATUS PATTERN COMMAND... : runs the command, checks its exit
#   status and that its output (stdout and stderr) matches PATTERN.
expect () {
    local status=$1 pattern=$2
    shift 2
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$status" ]; then
        fail "'$*' exited $rc, expected $status; output:"; echo "$out"
    elif ! grep -Eq -- "$pattern" <<<"$out"; then
        fail "'$*' output does not match /$pattern/:"; echo "$out"
    else
        echo "ok: $*"
    fi
}

#   expect_out EXPECTED COMMAND... : the command exits 0 and prints
#   exactly EXPECTED on standard output.
expect_out () {
    local expected=$1
    shift
    local out rc
    out=$("$@" 2>"$work/stderr")
    rc=$?
    if [ "$rc" -ne 0 ]; then
        fail "'$*' exited $rc; stderr:"; cat "$work/stderr"
    elif [ "$out" != "$expected" ]; then
        fail "'$*' printed '$out', expected '$expected'"
    else
        echo "ok: $* -> $out"
    fi
}

#   wait_for COMMAND... : retries the command for up to 20 s.
wait_for () {
    for _ in $(seq 400); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    return 1
}

listening () {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

#   ---------------------------------------------------------------------
#   Usage errors, before any broker.

expect 0 '^usage: troupe send NAME JSON'   "$troupe" send --help
expect 0 '^usage: troupe ask NAME JSON'    "$troupe" help ask
expect 0 '^usage: troupe kv get KEY'       "$troupe" kv --help
expect 0 'tcp://127\.0\.0\.1:7700'         "$troupe" help sub
expect 0 'nodes +list the nodes'           "$troupe" help
expect 2 'missing arguments'               "$troupe" send echo
expect 2 'missing arguments'               "$troupe" ask
expect 2 "unknown option '--frob'"         "$troupe" ask echo 1 --frob
expect 2 "unexpected argument 'x'"         "$troupe" pub topic 1 x
expect 2 '--timeout needs a duration'      "$troupe" ask echo 1 --timeout soon
expect 2 '--broker needs an endpoint'      "$troupe" nodes --broker
expect 2 "'has space' is not a valid actor name" "$troupe" send 'has space' 1
expect 2 "'sys.' are the runtime's own"    "$troupe" pub sys.actor.started '{}'
expect 2 '--count needs a whole number'    "$troupe" sub x --count 0
expect 2 "no operation 'frob'"             "$troupe" kv frob
expect 2 'not a valid key'                 "$troupe" kv get 'a b'
expect 2 'VERSION must be a whole number'  "$troupe" kv cas k -1 '1'
expect 2 '--count needs a whole number'    "$troupe" kv watch prefix. --count x
#   Bad JSON is refused, where it is wrong, before any broker is sought
#   (none runs at the default endpoint's port here, or it would not
#   matter: nothing is sent).
expect 2 'the message is not valid JSON: 1:8: a trailing comma' "$troupe" send echo '{"a":1,}'
expect 2 'not valid JSON: 2:4: unexpected end of input'         "$troupe" ask echo $'[1,\n 2,'
expect 2 'the body is not valid JSON: 1:1: .*single quotes'     "$troupe" pub t "'x'"
expect 2 'the value is not valid JSON: 1:1: .*may not start with 0' "$troupe" kv put k '01'
expect 2 'not valid JSON: 1:8: duplicate key "a"'               "$troupe" kv cas k 0 '{"a":1,"a":2}'
expect 2 'not valid JSON: 1:1: unexpected end of input'         "$troupe" send echo ''

#   ---------------------------------------------------------------------
#   No broker: exit 1 within the timeout, named by --broker or by
#   $TROUPE_BROKER, and the default endpoint when neither is given.

#   A port nothing listens on: bind one, note it, free it.
"$troupe" broker --bind 'tcp://127.0.0.1:*' >"$work/dead.log" 2>&1 &
dead_pid=$!
pids+=("$dead_pid")
wait_for grep -q "listening on tcp://" "$work/dead.log" || { fail "no broker started"; exit 1; }
dead=$(sed -n 's/^troupe broker: listening on \(tcp:[^ ]*\) .*/\1/p' "$work/dead.log")
kill -TERM "$dead_pid"; wait "$dead_pid"

start=$(date +%s%N)
expect 1 "troupe ask: no broker answered at $dead within 500ms" \
    "$troupe" ask echo 1 --broker "$dead" --timeout 500ms
elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$elapsed" -lt 5000 ] && echo "ok: it gave up in ${elapsed} ms" || fail "it took ${elapsed} ms"
expect 1 "troupe send: no broker answered at $dead within 2s" "$troupe" send echo 1 --broker "$dead"
TROUPE_BROKER=$dead expect 1 "troupe nodes: no broker answered at $dead within 300ms" \
    "$troupe" nodes --timeout 300ms
TROUPE_BROKER=$dead expect 1 "troupe kv get: no broker answered at $dead" \
    "$troupe" kv get k --timeout 300ms
if ! listening 7700; then
    expect 1 'troupe pub: no broker answered at tcp://127.0.0.1:7700 within 300ms' \
        "$troupe" pub t 1 --timeout 300ms
fi

#   ---------------------------------------------------------------------
#   A broker on a free port, and an echo actor on a node of its own.

"$troupe" broker --bind 'tcp://127.0.0.1:*' >"$work/broker.log" 2>&1 &
pids+=("$!")
wait_for grep -q "listening on tcp://" "$work/broker.log" || { fail "no broker"; cat "$work/broker.log"; exit 1; }
endpoint=$(sed -n 's/^troupe broker: listening on \(tcp:[^ ]*\) .*/\1/p' "$work/broker.log")
echo "broker at $endpoint"
export TROUPE_BROKER=$endpoint

"$echo_node" "$endpoint" echo-one >"$work/echo.log" 2>&1 &
echo_pid=$!
pids+=("$echo_pid")
wait_for grep -q "^ready echo-one" "$work/echo.log" || { fail "the echo node never got ready"; cat "$work/echo.log"; exit 1; }

#   ask: the answer is the JSON sent, written canonically.
expect_out '{"a":[1,2.5,"x",true,null],"b":{"c":-7}}' \
    "$troupe" ask echo-one '{"a":[1,2.5,"x",true,null],"b":{"c":-7}}'
expect_out '"café 😀 \" \\"' "$troupe" ask echo-one '"caf\u00e9 \ud83d\ude00 \" \\"'
expect_out '{"n":1.0,"big":18446744073709551615,"neg":-9223372036854775808}' \
    "$troupe" ask echo-one ' { "n" : 1.0 , "big" : 18446744073709551615, "neg": -9223372036854775808 } '
expect_out '-42' "$troupe" ask echo-one -42
expect_out '[]' "$troupe" ask echo-one '[]' --timeout 10s
expect_out '3' "$troupe" ask echo-one 3 --broker "$endpoint"
expect 1 'troupe ask: nobody-here: no such actor \(TR_ENOACTOR\)' "$troupe" ask nobody-here '{}'

#   send: taken, or sent back.
expect_out '' "$troupe" send echo-one '{"note":"hello"}'
expect 1 'troupe send: .*no actor named .nobody-here.*TR_ENOACTOR' "$troupe" send nobody-here 1

#   nodes: the echo node, not the command's own.
echo_id="echo-node-$echo_pid"
expect "0" "^$echo_id +node +[0-9.]+s +2\$" "$troupe" nodes
out=$("$troupe" nodes 2>&1)
grep -q "troupe-cli" <<<"$out" && fail "nodes lists itself: $out" || echo "ok: nodes leaves itself out"
expect 0 "\"id\": \"$echo_id\"" "$troupe" nodes --json

#   pub and sub: the prefix's events, one JSON line each, --count.
"$troupe" sub news. --count 2 >"$work/sub.out" 2>"$work/sub.err" &
sub_pid=$!
pids+=("$sub_pid")
wait_for grep -q "subscribed to 'news.'" "$work/sub.err" || fail "sub never subscribed: $(cat "$work/sub.err")"
expect_out '' "$troupe" pub news.first '{"n":1,"tags":["a","b"]}'
expect_out '' "$troupe" pub other.topic '"not for news."'
expect_out '' "$troupe" pub news.second 2.5
wait "$sub_pid"; rc=$?
[ "$rc" -eq 0 ] && echo "ok: sub stops after --count 2" || fail "sub exited $rc"
expected='{"topic":"news.first","body":{"n":1,"tags":["a","b"]}}
{"topic":"news.second","body":2.5}'
[ "$(cat "$work/sub.out")" = "$expected" ] && echo "ok: sub printed the two events" \
    || fail "sub printed: $(cat "$work/sub.out")"

#   kv watch: each change under the prefix as a JSON line, in order,
#   removals with a null value; --count ends it.
"$troupe" kv watch watched. --count 3 >"$work/watch.out" 2>"$work/watch.err" &
watch_pid=$!
pids+=("$watch_pid")
wait_for grep -q "watching 'watched.'" "$work/watch.err" || fail "kv watch never started: $(cat "$work/watch.err")"
"$troupe" kv put watched.a '{"n":1}' >/dev/null
"$troupe" kv put elsewhere.b 2 >/dev/null
"$troupe" kv put watched.c '[true]' >/dev/null
"$troupe" kv del watched.a >/dev/null
wait "$watch_pid"; rc=$?
[ "$rc" -eq 0 ] && echo "ok: kv watch stops after --count 3" || fail "kv watch exited $rc"
if python3 -c '
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
got = [(l["key"], l["value"]) for l in lines]
assert got == [("watched.a", {"n": 1}), ("watched.c", [True]), ("watched.a", None)], got
v = [l["version"] for l in lines]
assert v == sorted(v) and len(set(v)) == 3, v
' "$work/watch.out"; then
    echo "ok: kv watch printed the three changes in version order"
else
    fail "kv watch printed: $(cat "$work/watch.out")"
fi

#   sub --for: stops on time, with nothing to print; SIGTERM stops it too.
start=$(date +%s%N)
expect_out '' "$troupe" sub quiet. --for 300ms
elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$elapsed" -lt 10000 ] && echo "ok: sub --for 300ms ended in ${elapsed} ms" || fail "sub --for took ${elapsed} ms"
"$troupe" sub '' >"$work/all.out" 2>"$work/all.err" &
sub_pid=$!
pids+=("$sub_pid")
wait_for grep -q "subscribed to ''" "$work/all.err" || fail "sub '' never subscribed"
"$troupe" pub any.thing null
wait_for grep -q '"topic":"any.thing","body":null' "$work/all.out" \
    && echo "ok: sub '' sees every topic" || fail "sub '' printed: $(cat "$work/all.out")"
kill -TERM "$sub_pid"
wait "$sub_pid"; rc=$?
[ "$rc" -eq 0 ] && echo "ok: sub stops on SIGTERM with status 0" || fail "sub exited $rc after SIGTERM"

#   ---------------------------------------------------------------------
#   kv, if the broker serves the scratchpad.

out=$("$troupe" kv put probe.key 1 2>&1); rc=$?
if [ "$rc" -ne 0 ] && grep -q "TR_EINVAL" <<<"$out"; then
    echo "SKIP: kv: the broker does not serve the scratchpad yet ($out)"
else
    expect 0 '^[0-9]+$' "$troupe" kv del probe.key
    v1=$("$troupe" kv put cfg.a '{"x":[1,2],"y":"z"}')
    [[ "$v1" =~ ^[0-9]+$ ]] && echo "ok: kv put prints the version $v1" || fail "kv put printed '$v1'"
    expect_out '{"x":[1,2],"y":"z"}' "$troupe" kv get cfg.a
    expect 0 "^\\{\"value\":\\{\"x\":\\[1,2\\],\"y\":\"z\"\\},\"version\":$v1,\"ttl_ms\":0\\}\$" \
        "$troupe" kv get cfg.a --meta
    expect 1 "'cfg.a' is not at version 0 .*TR_ECONFLICT" "$troupe" kv cas cfg.a 0 '1'
    expect 1 "'cfg.a' is not at version $((v1 + 1000)).*TR_ECONFLICT" \
        "$troupe" kv cas cfg.a $((v1 + 1000)) '1'
    v2=$("$troupe" kv cas cfg.a "$v1" '2.5')
    [[ "$v2" =~ ^[0-9]+$ ]] && [ "$v2" -gt "$v1" ] && echo "ok: kv cas at $v1 gives $v2" \
        || fail "kv cas printed '$v2'"
    expect_out '2.5' "$troupe" kv get cfg.a
    v3=$("$troupe" kv cas cfg.new 0 '"fresh"')
    [[ "$v3" =~ ^[0-9]+$ ]] && echo "ok: kv cas 0 creates a key" || fail "kv cas 0 printed '$v3'"
    "$troupe" kv put other.b 'null' >/dev/null
    expect_out "cfg.a $v2
cfg.new $v3" "$troupe" kv ls cfg.
    expect_out "[[\"cfg.a\",$v2],[\"cfg.new\",$v3]]" "$troupe" kv ls cfg. --json
    expect 0 "^other.b [0-9]+\$" "$troupe" kv ls other
    expect 0 "cfg.a $v2" "$troupe" kv ls
    expect 0 '^[0-9]+$' "$troupe" kv del cfg.a
    expect 1 "cfg.a: not found \\(TR_ENOTFOUND\\)" "$troupe" kv get cfg.a
    expect 1 "cfg.a: not found \\(TR_ENOTFOUND\\)" "$troupe" kv del cfg.a
    expect 0 '^[0-9]+$' "$troupe" kv put brief 1 --ttl 300ms
    expect 0 '"ttl_ms":[1-9][0-9]*\}' "$troupe" kv get brief --meta
    gone () { ! "$troupe" kv get brief >/dev/null 2>&1; }
    wait_for gone && echo "ok: a key put --ttl 300ms expires" || fail "brief never expired"
fi

#   The echo node leaves cleanly; then ask finds nobody.
kill -TERM "$echo_pid"
wait "$echo_pid"; rc=$?
[ "$rc" -eq 0 ] && echo "ok: the echo node stops with status 0" || fail "echo node exited $rc"
expect 1 'TR_ENOACTOR' "$troupe" ask echo-one 1

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all checks passed"
