#!/usr/bin/env bash
#   troupe_broker_test.sh TROUPE - `troupe broker` as a user meets it: it
#   prints the endpoint it bound (the real port for "*"), listens there,
#   refuses a port in use (exit 1) and bad options (exit 2; CURVE's are
#   tested by troupe_curve_test), and stops on SIGTERM and
#   SIGINT with status 0. With --data DIR it keeps the scratchpad's log
#   there (--fsync taken and logged, the log replayed on the next start),
#   and refuses with exit 1 a folder that is missing, in use by another
#   broker or holds a damaged log. The protocol itself is tested by
#   tr_broker_test, the scratchpad's durability by tr_scratch_test.
set -u
troupe=$1
failures=0
work=$(mktemp -d /tmp/troupe_broker_test.XXXXXX)
export TROUPE_LOG=info
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

#   listening PORT: true if something accepts TCP connections there.
listening () {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

#   start_broker LOG ARGS...: starts `troupe broker ARGS...` in the
#   background and waits for it to print its endpoint. Sets $broker_pid
#   and $endpoint.
start_broker () {
    local log=$1
    shift
    "$troupe" broker "$@" >"$log" 2>&1 &
    broker_pid=$!
    pids+=("$broker_pid")
    if ! wait_for grep -q "listening on tcp://" "$log"; then
        fail "the broker never printed its endpoint"; cat "$log"
        return 1
    fi
    endpoint=$(sed -n 's/^troupe broker: listening on \(tcp:[^ ]*\) .*/\1/p' "$log")
}

#   ---------------------------------------------------------------------
#   Usage errors.

expect 0 '^usage: troupe broker --bind'    "$troupe" broker --help
expect 0 '^usage: troupe broker --bind'    "$troupe" help broker
expect 0 'broker +run a broker'            "$troupe" help
expect 2 '--bind ENDPOINT is required'     "$troupe" broker
expect 2 '--bind needs an endpoint'        "$troupe" broker --bind
expect 2 "unexpected argument '--frob'"    "$troupe" broker --bind 'tcp://127.0.0.1:*' --frob
expect 2 "unexpected argument 'extra'"     "$troupe" broker --bind 'tcp://127.0.0.1:*' extra
expect 2 '--heartbeat needs a duration'    "$troupe" broker --bind 'tcp://127.0.0.1:*' --heartbeat soon
expect 2 '--heartbeat needs a duration'    "$troupe" broker --bind 'tcp://127.0.0.1:*' --heartbeat 5ms
expect 2 '--heartbeat needs a duration'    "$troupe" broker --bind 'tcp://127.0.0.1:*' --heartbeat
expect 2 '--data needs a folder'           "$troupe" broker --bind 'tcp://127.0.0.1:*' --data
expect 2 '--fsync needs always, everysec or no' \
    "$troupe" broker --bind 'tcp://127.0.0.1:*' --data "$work" --fsync sometimes
expect 2 '--fsync needs always, everysec or no' \
    "$troupe" broker --bind 'tcp://127.0.0.1:*' --data "$work" --fsync
expect 2 '--fsync applies to the log of --data' \
    "$troupe" broker --bind 'tcp://127.0.0.1:*' --fsync always
expect 2 '--curve needs a secret key file' "$troupe" broker --bind 'tcp://127.0.0.1:*' --curve
expect 2 "unexpected argument '--keys'"    "$troupe" broker --bind 'tcp://127.0.0.1:*' --keys k
expect 2 "cannot listen on 'nonsense'"     "$troupe" broker --bind nonsense

#   ---------------------------------------------------------------------
#   A free port: the real one is printed, and listened on.

start_broker "$work/any.log" --bind 'tcp://127.0.0.1:*' --heartbeat 500ms || exit 1
port=${endpoint##*:}
if [[ "$endpoint" =~ ^tcp://127\.0\.0\.1:[0-9]+$ ]] && [ "$port" -gt 0 ]; then
    echo "ok: the bound endpoint is printed: $endpoint"
else
    fail "the printed endpoint '$endpoint' is not tcp://127.0.0.1:PORT"
fi
listening "$port" && echo "ok: it listens on $port" || fail "nothing listens on $port"
grep -q "heartbeat 500 ms" "$work/any.log" && echo "ok: --heartbeat is taken" \
    || fail "the log does not show the heartbeat: $(cat "$work/any.log")"

#   The same port again: exit 1, with the reason.
expect 1 "cannot listen on 'tcp://127.0.0.1:$port'.*address is in use" \
    "$troupe" broker --bind "tcp://127.0.0.1:$port"
kill -0 "$broker_pid" 2>/dev/null && echo "ok: the first broker is unharmed" || fail "the first broker died"

#   SIGTERM: stops, status 0, the port is free again.
kill -TERM "$broker_pid"
wait "$broker_pid"; rc=$?
[ "$rc" -eq 0 ] && echo "ok: SIGTERM stops the broker with status 0" || fail "exit status $rc after SIGTERM"
grep -q "stopping the broker" "$work/any.log" && echo "ok: the stop is logged" || fail "no stop line in the log"

#   ---------------------------------------------------------------------
#   A given port, and SIGINT.

start_broker "$work/given.log" --bind "tcp://127.0.0.1:$port" || exit 1
[ "$endpoint" = "tcp://127.0.0.1:$port" ] && echo "ok: a given port is kept" \
    || fail "asked for port $port, got '$endpoint'"
listening "$port" && echo "ok: it listens on $port" || fail "nothing listens on $port"
kill -INT "$broker_pid"
wait "$broker_pid"; rc=$?
[ "$rc" -eq 0 ] && echo "ok: SIGINT stops the broker with status 0" || fail "exit status $rc after SIGINT"
not_listening () { ! listening "$port"; }
wait_for not_listening && echo "ok: the port is closed after the stop" || fail "port $port still open"

#   ---------------------------------------------------------------------
#   The data folder.

expect 1 "cannot use the data folder '$work/missing': no such folder" \
    "$troupe" broker --bind 'tcp://127.0.0.1:*' --data "$work/missing"
mkdir -p "$work/damaged"
echo "not a scratchpad log" >"$work/damaged/scratchpad.log"
expect 1 "cannot use the data folder '$work/damaged': its scratchpad log is damaged" \
    "$troupe" broker --bind 'tcp://127.0.0.1:*' --data "$work/damaged"

mkdir -p "$work/data"
start_broker "$work/data1.log" --bind 'tcp://127.0.0.1:*' --data "$work/data" --fsync always \
    || exit 1
grep -q "scratchpad log in $work/data (fsync always): replayed 0 records" "$work/data1.log" \
    && echo "ok: --data and --fsync are taken" || fail "no log line for the data folder: $(cat "$work/data1.log")"
[ -s "$work/data/scratchpad.log" ] && echo "ok: the log file is created" \
    || fail "no $work/data/scratchpad.log"
expect 1 "cannot use the data folder '$work/data': another broker uses it" \
    "$troupe" broker --bind 'tcp://127.0.0.1:*' --data "$work/data"
kill -TERM "$broker_pid"
wait "$broker_pid"; rc=$?
[ "$rc" -eq 0 ] && echo "ok: a broker with --data stops with status 0" || fail "exit status $rc after SIGTERM"
#   Started again on the same folder (the default policy), it replays the
#   log; the folder is free again once it has stopped.
start_broker "$work/data2.log" --bind 'tcp://127.0.0.1:*' --data "$work/data" || exit 1
grep -q "scratchpad log in $work/data (fsync everysec): replayed" "$work/data2.log" \
    && echo "ok: restarted on the same folder, everysec by default" \
    || fail "no replay on restart: $(cat "$work/data2.log")"
kill -INT "$broker_pid"
wait "$broker_pid"; rc=$?
[ "$rc" -eq 0 ] && echo "ok: stopped again with status 0" || fail "exit status $rc after SIGINT"

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all checks passed"
