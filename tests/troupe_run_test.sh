#!/usr/bin/env bash
#   troupe_run_test.sh TROUPE - `troupe run` and the commands that steer a
#   running tree, as a user meets them: tree-file errors with positions,
#   status (table and --json) against a live tree, restart / stop / start
#   / breaker reset / add, unknown names, orderly stop on SIGTERM and
#   SIGINT, --for, a root that fails (exit 1 with the chain of reasons),
#   no process child left behind (also when troupe dies of SIGSEGV), a
#   second tree of the same name refused, and the control socket closed
#   to other users.
set -u
troupe=$1
failures=0
work=$(mktemp -d /tmp/troupe_run_test.XXXXXX)
chmod 755 "$work"     #  so that only the control folder keeps others out
export TROUPE_CONTROL_DIR=$work/ctl
export TROUPE_LOG=info
mkdir -m 700 "$TROUPE_CONTROL_DIR"
pids=()
cleanup () {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

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

#   wait_for COMMAND... : retries the command for up to 10 s.
wait_for () {
    for _ in $(seq 200); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    return 1
}

#   alive PID: true while the process exists and is not a zombie.
alive () {
    [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat"
}

#   json_get EXPR: reads `troupe status --json` from stdin and prints the
#   Python expression EXPR over it (as `t`).
json_get () {
    python3 -c "import json, sys; t = json.load(sys.stdin); print($1)"
}

#   start_tree FILE LOG: starts `troupe run FILE` in the background and
#   waits until its control socket answers. Sets $tree_pid.
start_tree () {
    "$troupe" run "$1" >"$2" 2>&1 &
    tree_pid=$!
    pids+=("$tree_pid")
    if ! wait_for "$troupe" status; then
        fail "the tree from $1 never answered 'troupe status'"; cat "$2"
        return 1
    fi
}

#   ---------------------------------------------------------------------
#   Tree files with mistakes: position and message, nothing starts.

cat >"$work/broken.yaml" <<'EOF'
name: t
children:
  - {name: a, actor: echo
EOF
expect 1 'broken.yaml:[0-9]+:[0-9]+: ' "$troupe" run "$work/broken.yaml"

cat >"$work/unknown_key.yaml" <<'EOF'
name: t
children:
  - name: a
    actor: echo
    restrat: permanent
EOF
expect 1 "unknown_key.yaml:5:5: .*unknown key 'restrat'" "$troupe" run "$work/unknown_key.yaml"

cat >"$work/unknown_type.yaml" <<'EOF'
name: t
children:
  - {name: a, actor: nosuchtype}
EOF
expect 1 "unknown_type.yaml:3:22: .*nosuchtype" "$troupe" run "$work/unknown_type.yaml"
expect 1 "no-such-file.yaml" "$troupe" run "$work/no-such-file.yaml"
expect 2 '^usage: troupe run'  "$troupe" run
expect 2 '--for needs a duration' "$troupe" run "$work/broken.yaml" --for soon
expect 2 "unknown option '--bogus'" "$troupe" run "$work/broken.yaml" --bogus

#   ---------------------------------------------------------------------
#   Nothing is running yet.

expect 1 'no tree is running' "$troupe" status
expect 2 '^usage: troupe status' "$troupe" status extra
expect 2 '^usage: troupe breaker' "$troupe" breaker reset
expect 0 'flaky +fails on command' "$troupe" types

#   ---------------------------------------------------------------------
#   A live tree.

cat >"$work/live.yaml" <<EOF
name: live
intensity: {max_restarts: 50, period: 10s}
defaults:
  backoff: {min: 10ms, max: 50ms}
children:
  - name: tally
    actor: counter
  - name: worker
    actor: flaky
    breaker: {failures: 2, reset_timeout: 1h, max_reset_timeout: 1h}
  - name: sleeper
    process:
      command: [sh, -c, 'sleep 300 & wait']
    shutdown: 2s
  - name: team
    supervisor:
      strategy: simple_one_for_one
      template: {actor: echo}
  - name: chaos
    actor: driver
    params: {target: worker, every: 20ms, script: [fail]}
EOF
start_tree "$work/live.yaml" "$work/live.log" || exit 1

expect 0 '^NAME +KIND +STATE' "$troupe" status
expect 0 '^  tally +actor +running' "$troupe" status
expect 0 '^  sleeper +process +running .*pid [0-9]+' "$troupe" status

status_json=$("$troupe" status --json)
if ! name=$(json_get 't["name"]' <<<"$status_json"); then
    fail "status --json is not JSON:"; echo "$status_json"
elif [ "$name" != live ]; then
    fail "status --json names the root '$name', not 'live'"
else
    kids=$(json_get '",".join(c["name"] for c in t["children"])' <<<"$status_json")
    [ "$kids" = "tally,worker,sleeper,team,chaos" ] \
        && echo "ok: status --json lists the children in start order" \
        || fail "status --json children: $kids"
    kind=$(json_get '[c["kind"] for c in t["children"] if c["name"] == "sleeper"][0]' <<<"$status_json")
    [ "$kind" = process ] && echo "ok: status --json kinds" || fail "sleeper's kind is $kind"
fi

#   'chaos' makes 'worker' fail until its breaker opens, which it then
#   stays (reset_timeout 1h).
breaker_open () {
    [ "$("$troupe" status --json | json_get '[c["breaker"]["state"] for c in t["children"] if c["name"] == "worker"][0]')" = open ]
}
wait_for breaker_open && echo "ok: the breaker opened" || fail "worker's breaker did not open"
expect 0 'worker breaker closed' "$troupe" breaker reset worker
expect 1 'not found' "$troupe" breaker reset nobody

restarts () {
    "$troupe" status --json | json_get "[c['restarts'] for c in t['children'] if c['name'] == '$1'][0]"
}
expect 0 'tally restarted' "$troupe" restart tally
[ "$(restarts tally)" = 1 ] && echo "ok: restart counted" || fail "tally restarts: $(restarts tally)"
expect 0 'tally stopped' "$troupe" stop tally
expect 0 '^  tally +actor +stopped' "$troupe" status
expect 0 'tally started' "$troupe" start tally
expect 1 'already exists|EEXIST' "$troupe" start tally
expect 1 'not found' "$troupe" restart nobody
expect 0 'helper started' "$troupe" add team helper
expect 0 '^    helper +actor +running' "$troupe" status
expect 1 'EINVAL' "$troupe" add live other
expect 1 'ENOTFOUND' "$troupe" add tally other
expect 0 '^  tally' "$troupe" status --tree live
expect 1 "no tree named 'other'" "$troupe" status --tree other

#   The process child: kill it, it comes back with a new pid.
sleeper_pid () {
    "$troupe" status --json | json_get '[c["pid"] for c in t["children"] if c["name"] == "sleeper"][0]'
}
first=$(sleeper_pid)
kill -KILL "$first"
new_pid () { p=$(sleeper_pid); [ -n "$p" ] && [ "$p" != 0 ] && [ "$p" != "$first" ]; }
wait_for new_pid && echo "ok: the killed process child was restarted" \
    || fail "sleeper was not restarted after SIGKILL"
second=$(sleeper_pid)

#   The client commands find the running tree's embedded broker.
expect 0 "node +[0-9]" env -u TROUPE_BROKER "$troupe" nodes
expect 0 '^0$' env -u TROUPE_BROKER "$troupe" ask tally 0

#   A second tree of the same name is refused; the first goes on.
expect 1 "a tree named 'live' is already running" "$troupe" run "$work/live.yaml" --for 1s
expect 0 '^live' "$troupe" status

#   Another user cannot reach the control socket.
if command -v setpriv >/dev/null && [ -x /usr/bin/python3 ] && [ "$(id -u)" -eq 0 ]; then
    sock="$TROUPE_CONTROL_DIR/live.sock"
    mode=$(stat -c %a "$sock")
    [ "$mode" = 600 ] && echo "ok: the socket is 0600" || fail "socket mode $mode"
    if setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 -c "
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError:
    sys.exit(0)
sys.exit(1)" "$sock"; then
        echo "ok: another user cannot connect to the control socket"
    else
        fail "user nobody could connect to $sock"
    fi
fi

#   SIGTERM: orderly stop, exit 0, socket gone, no process left behind.
kill -TERM "$tree_pid"
wait "$tree_pid"; rc=$?
[ "$rc" -eq 0 ] && echo "ok: SIGTERM stops the tree with status 0" || fail "exit status $rc after SIGTERM"
grep -q "stopping tree 'live'" "$work/live.log" && echo "ok: the stop is logged" || fail "no stop line in the log"
[ ! -e "$TROUPE_CONTROL_DIR/live.sock" ] && echo "ok: the control socket is removed" || fail "socket left"
alive "$second" && fail "process child $second outlived the tree" || echo "ok: no process child left"
grep -Eq 'I troupe: .*chaos: worker "fail"' "$work/live.log" && echo "ok: actor logs in the tree's log" \
    || fail "the driver's lines are not in the log"

#   ---------------------------------------------------------------------
#   The embedded broker: on an ipc socket by default, on --bind if given;
#   process children find it in TROUPE_BROKER.

cat >"$work/brokered.yaml" <<'EOF'
name: brokered
children:
  - {name: say, process: {command: [sh, -c, 'echo "broker=$TROUPE_BROKER"; sleep 60']}}
EOF
expect 0 "say: broker=ipc://$TROUPE_CONTROL_DIR/brokered.broker" \
    "$troupe" run "$work/brokered.yaml" --for 500ms
expect 0 "say: broker=tcp://127.0.0.1:[0-9]+" \
    "$troupe" run "$work/brokered.yaml" --for 500ms --bind 'tcp://127.0.0.1:*'
expect 0 "say: broker=$" env -u TROUPE_BROKER "$troupe" run "$work/brokered.yaml" --for 500ms --no-broker
expect 2 "exclude each other" "$troupe" run "$work/brokered.yaml" --no-broker --bind tcp://127.0.0.1:1
expect 2 "--broker needs a value" "$troupe" run "$work/brokered.yaml" --broker
expect 1 "cannot start the embedded broker" "$troupe" run "$work/brokered.yaml" --bind nonsense

#   ---------------------------------------------------------------------
#   SIGINT, and --for.

start_tree "$work/live.yaml" "$work/live2.log" || exit 1
kill -INT "$tree_pid"
wait "$tree_pid"; rc=$?
[ "$rc" -eq 0 ] && echo "ok: SIGINT stops the tree with status 0" || fail "exit status $rc after SIGINT"
expect 0 "ran for [0-9]+ ms: stopping tree 'live'" "$troupe" run "$work/live.yaml" --for 300ms

#   ---------------------------------------------------------------------
#   A root that fails: exit 1 and the chain of reasons.

cat >"$work/doomed.yaml" <<'EOF'
name: doomed
intensity: {max_restarts: 1, period: 10s}
defaults: {backoff: {min: 0ms, max: 0ms}, breaker: off}
children:
  - name: inner
    supervisor:
      intensity: {max_restarts: 2, period: 10s}
      children:
        - {name: quitter, process: {command: [sh, -c, 'exit 7']}}
EOF
expect 1 "tree 'doomed' failed: .*'doomed'.*'inner'.*status 7" "$troupe" run "$work/doomed.yaml"

#   A tree that cannot start at all.
cat >"$work/nostart.yaml" <<'EOF'
name: nostart
children:
  - {name: ok, actor: echo}
  - {name: bad, actor: flaky, params: {fail_init: true}}
EOF
expect 1 "tree 'nostart' could not start: .*'bad'" "$troupe" run "$work/nostart.yaml"
expect 1 "could not start: .*no-such-program" "$troupe" run <(printf 'name: np\nchildren:\n  - {name: p, process: {command: [no-such-program]}}\n')

#   ---------------------------------------------------------------------
#   troupe dies of SIGSEGV: its process children die with it.

cat >"$work/crash.yaml" <<'EOF'
name: crash
children:
  - {name: sleeper, process: {command: [sh, -c, 'sleep 300 & wait']}}
EOF
start_tree "$work/crash.yaml" "$work/crash.log" || exit 1
child=$("$troupe" status --json | json_get 't["children"][0]["pid"]')
kill -SEGV "$tree_pid"
wait "$tree_pid" 2>/dev/null
gone () { ! alive "$child"; }
wait_for gone && echo "ok: no process child outlives a crash" || fail "process $child outlived SIGSEGV"
rm -f "$TROUPE_CONTROL_DIR/crash.sock"

#   A stale socket from a crashed run does not block the next one.
touch "$TROUPE_CONTROL_DIR/stale.sock"
expect 0 "ran for" "$troupe" run <(printf 'name: stale\nchildren: []\n') --for 100ms

#   The control folder must be private.
chmod 755 "$TROUPE_CONTROL_DIR"
expect 1 'refusing the control folder' "$troupe" status
chmod 700 "$TROUPE_CONTROL_DIR"

#   ---------------------------------------------------------------------
#   The main job (examples/main.yaml, what `make run` runs), for a few
#   seconds: its agents answer, its supervisors and breakers act as its
#   comment says, and it stops in order. And every example loads.

src=$(cd "$(dirname "$0")/.." && pwd)
"$troupe" run "$src/examples/main.yaml" --for 9s --status >"$work/main.log" 2>&1
rc=$?
[ "$rc" -eq 0 ] && echo "ok: the main job ran and stopped" || fail "the main job exited $rc"
for pattern in \
    'intake: triage "I want a refund for order 42" -> \{"category":"billing","urgency":3' \
    "llm 'triage': answer does not fit" \
    'drafter: writer "Reply to a customer asking for a refund" -> "' \
    "breaker of 'primary' opened" \
    'cashier: primary "quote cake" -> "backup: ' \
    "breaker of 'primary' closed" \
    'clerk: orders "A-17" -> \{"order":"A-17","status":"shipped"\}' \
    "supervisor 'desk': restarting 'orders'" \
    "supervisor 'back': restarting 'db'" \
    'ticker: tick 1' \
    "team 'study': integrated 2 result\\(s\\), 0 failed" \
    'asker: study "Should the bakery switch its delivery vans to electric\?" -> \{"output":\{"draft":"Switch the delivery vans to electric\. .* next year\."\},"score":0\.9,"iterations":3,"scores":\[0\.3,0\.6,0\.9\],"reached":true\}' \
    '^  archive +process +running' \
    '^    study +actor +running' \
    'ran for' \
    '^NAME +KIND +STATE +RESTARTS' \
    '^main +supervisor +running' \
    '^    orders +actor +running +[1-9]'; do
    grep -Eq -- "$pattern" "$work/main.log" && echo "ok: main job: /$pattern/" \
        || { fail "the main job's log lacks /$pattern/:"; tail -40 "$work/main.log"; }
done
for example in "$src"/examples/*.yaml; do
    expect 0 "ran for" "$troupe" run "$example" --for 300ms
done

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all checks passed"
