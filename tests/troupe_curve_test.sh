#!/usr/bin/env bash
#   troupe_curve_test.sh TROUPE - CURVE as a user meets it (2-broker.md
#   2.10, docs/cli.md "Security"): `troupe keygen` (modes 0600/0644, no
#   overwrite, bad names and folders); `troupe broker` refusing a bind
#   beyond loopback without --curve/--allow and a secret key file others
#   may read; a CURVE broker on tcp://0.0.0.0 where a client with an
#   allowed key (by options, and by TROUPE_CURVE_SECRET/TROUPE_SERVER_KEY)
#   writes and reads the scratchpad and lists the nodes, while clients
#   without keys, with an unlisted key or with the wrong broker key are
#   refused (exit 1) for kv put/get, send, sub and nodes, write nothing
#   (an allowed client finds no trace) and are logged by the broker;
#   `troupe run` with an embedded CURVE broker (its process children
#   reach it with the keys it passes them) and joining one with --curve
#   and --server-key. The protocol-level refusals are in tr_curve_test.
set -u
troupe=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
failures=0
work=$(mktemp -d /tmp/troupe_curve_test.XXXXXX)
chmod 755 "$work"
export TROUPE_CONTROL_DIR=$work/ctl
export TROUPE_LOG=info
unset TROUPE_BROKER TROUPE_CURVE_SECRET TROUPE_SERVER_KEY
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

wait_for () {
    for _ in $(seq 200); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    return 1
}

mode () {
    stat -c %a "$1"
}

#   ---------------------------------------------------------------------
#   keygen

keys=$work/keys
mkdir "$keys"
expect 0 "broker.public \(public key .{40}\)" "$troupe" keygen broker --dir "$keys"
[ "$(mode "$keys/broker.secret")" = 600 ] && echo "ok: the secret file is 0600" \
    || fail "broker.secret has mode $(mode "$keys/broker.secret")"
[ "$(mode "$keys/broker.public")" = 644 ] && echo "ok: the public file is 0644" \
    || fail "broker.public has mode $(mode "$keys/broker.public")"
grep -q 'secret-key = "' "$keys/broker.secret" && ! grep -q 'secret-key' "$keys/broker.public" \
    && echo "ok: only the secret file holds the secret key" || fail "the key files are wrong"
before=$(cat "$keys/broker.secret")
expect 1 "exists already; not overwritten" "$troupe" keygen broker --dir "$keys"
[ "$(cat "$keys/broker.secret")" = "$before" ] && echo "ok: the secret file is untouched" \
    || fail "keygen overwrote broker.secret"
rm "$keys/broker.public"
expect 1 "exists already" "$troupe" keygen broker --dir "$keys"
[ ! -e "$keys/broker.public" ] && echo "ok: nothing written when one file exists" \
    || fail "keygen wrote broker.public beside an existing broker.secret"
rm "$keys/broker.secret"
expect 0 "broker.public" "$troupe" keygen broker --dir "$keys"
expect 2 "not a key name" "$troupe" keygen ../evil --dir "$keys"
expect 2 "not a key name" "$troupe" keygen .hidden --dir "$keys"
expect 2 "^usage: troupe keygen" "$troupe" keygen
expect 2 "unknown option" "$troupe" keygen x --force
expect 1 "no such folder" "$troupe" keygen x --dir "$work/missing"
( cd "$keys" && "$troupe" keygen alice >/dev/null ) && [ -f "$keys/alice.secret" ] \
    && echo "ok: keygen writes in the current folder by default" || fail "keygen NAME failed"
"$troupe" keygen mallory --dir "$keys" >/dev/null || fail "keygen mallory"
"$troupe" keygen other --dir "$keys" >/dev/null || fail "keygen other"
mkdir "$work/allow"
cp "$keys/alice.public" "$work/allow/"

#   ---------------------------------------------------------------------
#   troupe broker: refusals.

expect 2 "--curve SECRET_FILE and --allow DIR go together" \
    "$troupe" broker --bind 'tcp://127.0.0.1:*' --curve "$keys/broker.secret"
expect 2 "--curve needs a secret key file" "$troupe" broker --bind 'tcp://127.0.0.1:*' --curve
expect 1 "will not listen on 'tcp://0.0.0.0:\*' without CURVE" \
    "$troupe" broker --bind 'tcp://0.0.0.0:*'
expect 1 "will not listen on 'tcp://\*:7799' without CURVE" "$troupe" broker --bind 'tcp://*:7799'
chmod 644 "$keys/broker.secret"
expect 1 "refusing the secret key file .*broker.secret: its mode 0644" \
    "$troupe" broker --bind 'tcp://0.0.0.0:*' --curve "$keys/broker.secret" --allow "$work/allow"
chmod 600 "$keys/broker.secret"
expect 1 "cannot read the allow folder" \
    "$troupe" broker --bind 'tcp://0.0.0.0:*' --curve "$keys/broker.secret" --allow "$work/nope"
install -m 600 "$keys/broker.public" "$work/public-only"
expect 1 "not a secret key file" \
    "$troupe" broker --bind 'tcp://0.0.0.0:*' --curve "$work/public-only" --allow "$work/allow"

#   ---------------------------------------------------------------------
#   A CURVE broker on every interface.

"$troupe" broker --bind 'tcp://0.0.0.0:*' --curve "$keys/broker.secret" --allow "$work/allow" \
    >"$work/broker.log" 2>&1 &
broker_pid=$!
pids+=("$broker_pid")
wait_for grep -q "listening on tcp://" "$work/broker.log" || { cat "$work/broker.log"; exit 1; }
port=$(sed -n 's/^troupe broker: listening on tcp:\/\/0\.0\.0\.0:\([0-9]*\) .*/\1/p' "$work/broker.log")
ep=tcp://127.0.0.1:$port
grep -q "CURVE on, public key .* 1 client keys allowed" "$work/broker.log" \
    && echo "ok: the broker logs its key and the allowed keys" || fail "no CURVE line in the log"
alice=(--curve "$keys/alice.secret" --server-key "$keys/broker.public")

#   Allowed.
expect 0 '^[0-9]+$' "$troupe" kv put shared '"from alice"' --broker "$ep" "${alice[@]}"
expect 0 '^"from alice"$' "$troupe" kv get shared --broker "$ep" "${alice[@]}"
expect 0 'troupe-cli' env TROUPE_BROKER="$ep" TROUPE_CURVE_SECRET="$keys/alice.secret" \
    TROUPE_SERVER_KEY="$keys/broker.public" "$troupe" nodes

#   Refused: no keys, an unlisted key, the wrong broker key.
mallory=(--curve "$keys/mallory.secret" --server-key "$keys/broker.public")
wrong=(--curve "$keys/alice.secret" --server-key "$keys/other.public")
for who in none mallory wrong; do
    case $who in
        none) opts=() ;;
        mallory) opts=("${mallory[@]}") ;;
        wrong) opts=("${wrong[@]}") ;;
    esac
    t=(--broker "$ep" --timeout 500ms ${opts[@]+"${opts[@]}"})
    expect 1 "no broker answered" "$troupe" kv put "evil-$who" 1 "${t[@]}"
    expect 1 "no broker answered" "$troupe" kv get shared "${t[@]}"
    expect 1 "no broker answered" "$troupe" send somebody 1 "${t[@]}"
    expect 1 "no broker answered" "$troupe" sub news --for 300ms "${t[@]}"
    expect 1 "no broker answered" "$troupe" nodes "${t[@]}"
    expect 1 "TR_ENOTFOUND" "$troupe" kv get "evil-$who" --broker "$ep" "${alice[@]}"
done
expect 1 "a broker that refuses this client's key" \
    "$troupe" nodes --broker "$ep" --timeout 300ms "${mallory[@]}"
expect 1 "does not answer a client without --curve" \
    "$troupe" nodes --broker "tcp://0.0.0.0:$port" --timeout 300ms
grep -q "refused a CURVE client from 127.0.0.1, key .*: not in the allow folder" \
    "$work/broker.log" && echo "ok: the broker logs the refused key" \
    || fail "no refusal in the broker's log"
expect 0 '^\["shared"\]$|shared' "$troupe" kv ls --broker "$ep" "${alice[@]}"

#   Client-side refusals.
expect 2 "CURVE takes both --curve SECRET_FILE and --server-key" \
    "$troupe" nodes --broker "$ep" --curve "$keys/alice.secret"
expect 2 "CURVE takes both" env TROUPE_SERVER_KEY="$keys/broker.public" \
    "$troupe" nodes --broker "$ep"
chmod 640 "$keys/alice.secret"
expect 1 "its mode 0640 lets others read or change it.*TR_EACCES|TR_EACCES" \
    "$troupe" nodes --broker "$ep" "${alice[@]}"
chmod 600 "$keys/alice.secret"

#   ---------------------------------------------------------------------
#   troupe run: the embedded broker with CURVE, and joining one.

cat >"$work/secure.yaml" <<EOF
name: secure
children:
  - name: child
    process:
      command: [sh, -c, '"$troupe" kv put child-was-here 1 >/dev/null && echo "child: in with \$TROUPE_CURVE_SECRET"; sleep 60']
EOF
expect 1 "will not start the embedded broker on tcp://0.0.0.0:\* without CURVE" \
    "$troupe" run "$work/secure.yaml" --bind 'tcp://0.0.0.0:*' --for 1s
expect 2 "--curve SECRET_FILE and --allow DIR together" \
    "$troupe" run "$work/secure.yaml" --bind 'tcp://0.0.0.0:*' --curve "$keys/broker.secret"
expect 2 "--server-key is for joining" \
    "$troupe" run "$work/secure.yaml" --server-key "$keys/broker.public"
expect 2 "--allow is for the embedded broker" \
    "$troupe" run "$work/secure.yaml" --broker "$ep" --allow "$work/allow"
expect 0 "child: in with $keys/broker.secret" \
    "$troupe" run "$work/secure.yaml" --bind 'tcp://0.0.0.0:*' --curve "$keys/broker.secret" \
    --allow "$work/allow" --for 2s

#   Joining the standalone broker: alice's tree is listed; mallory's is not.
cat >"$work/joiner.yaml" <<EOF
name: joiner
children:
  - {name: idle, actor: echo}
EOF
"$troupe" run "$work/joiner.yaml" --broker "$ep" --node-id alice-tree "${alice[@]}" --for 20s \
    >"$work/joiner.log" 2>&1 &
joiner_pid=$!
pids+=("$joiner_pid")
listed () { "$troupe" nodes --broker "$ep" "${alice[@]}" 2>/dev/null | grep -q "$1"; }
wait_for listed alice-tree && echo "ok: a tree joins with --curve and --server-key" \
    || { fail "alice's tree never joined"; cat "$work/joiner.log"; }
sed 's/^name: joiner/name: intruder/' "$work/joiner.yaml" >"$work/intruder.yaml"
"$troupe" run "$work/intruder.yaml" --broker "$ep" --node-id mallory-tree "${mallory[@]}" \
    --for 20s >"$work/mallory.log" 2>&1 &
intruder_pid=$!
pids+=("$intruder_pid")
sleep 1.5
! listed mallory-tree && echo "ok: a tree with an unlisted key does not join" \
    || fail "mallory's tree joined"

kill -TERM "$joiner_pid" "$intruder_pid" "$broker_pid"
wait "$joiner_pid" "$intruder_pid" "$broker_pid"

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)"
    exit 1
fi
echo "all passed"
