#!/usr/bin/env bash
#   troupe_netns_test.sh TROUPE ECHO_NODE - a broker and a node on two
#   "hosts" of this machine: two network namespaces joined by a veth pair
#   (10.199.X.1 the broker's, 10.199.X.2 the node's, X from our pid). The
#   link between them is cut and restored, to check that both sides see
#   the other go and that the node comes back (protocols/2-broker.md 2.5).
#   The broker listens beyond loopback, so with CURVE (2.10): keys made
#   with `troupe keygen`, the node's and the client's allowed.
#
#   Checked: asks from the broker's host reach `remote-echo` on the node's
#   host and are answered, and `troupe nodes` lists the node. Then three
#   outages. The link cut at the node's end, then at the broker's, each
#   kept down 3 s: within about three heartbeats the broker drops the node
#   (`troupe nodes` leaves it out); an ask in flight when the link went
#   fails then (TR_ENODE), and one sent after fails at once with
#   TR_ENOACTOR, neither waiting for its timeout; the node notices it lost
#   the broker; once the link is back the node reconnects within its
#   backoff bound and registers its names again, and asks are answered.
#   Then a one-way loss (the node's packets to the broker dropped, the
#   broker's still delivered) ended as soon as the broker drops the node,
#   before the node has seen anything wrong: the node must still find
#   out (the broker answers its heartbeats TR_EPROTO, 2.3) and greet
#   again. The detection and recovery times are printed.
#
#   Needs root and `ip netns` (iproute2); without them it says SKIP and
#   exits 77, which CTest shows as skipped. No packet leaves the two
#   namespaces: they hold nothing but their loopback and the veth pair.
#   Everything made is removed on exit, whatever happens.
set -u
troupe=$1
echo_node=$2
#   Sanitizer builds run slower: every time bound is multiplied by this.
slow=${TROUPE_TEST_SLOWDOWN:-1}
failures=0

skip () {
    echo "SKIP: $*"
    exit 77
}
[ "$(id -u)" -eq 0 ] || skip "needs root to make network namespaces"
command -v ip >/dev/null 2>&1 || skip "no 'ip' command (iproute2)"

#   Names unique to this run; X keeps addresses apart between runs too,
#   though each pair of namespaces only ever sees its own.
nsb=trb-$$
nsn=trn-$$
vethb=vb$$
vethn=vn$$
x=$(( $$ % 250 + 1 ))
ipb=10.199.$x.1
ipn=10.199.$x.2
endpoint=tcp://$ipb:7700
heartbeat=200
work=$(mktemp -d /tmp/troupe_netns_test.XXXXXX)
pids=()
made=()
cleanup () {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    #   Anything else still in our namespaces was started here too.
    for ns in "${made[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
unset TROUPE_BROKER TROUPE_CURVE_SECRET TROUPE_SERVER_KEY

fail () {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

#   Stops here: what follows would only fail for the same reason.
die () {
    fail "$*"
    for f in "$work"/*.log; do echo "--- $(basename "$f")"; cat "$f"; done
    exit 1
}

now_ms () {
    echo $(( $(date +%s%N) / 1000000 ))
}

#   log_ms HH:MM:SS.mmm : that time of day (the log's) in ms since midnight.
log_ms () {
    local h m s ms
    IFS=':.' read -r h m s ms <<<"$1"
    echo $(( ((10#$h * 60 + 10#$m) * 60 + 10#$s) * 1000 + 10#$ms ))
}

#   on_b / on_n COMMAND... : runs the command on the broker's / node's host.
on_b () { ip netns exec "$nsb" "$@"; }
on_n () { ip netns exec "$nsn" "$@"; }

#   poll MS COMMAND... : retries the command every 20 ms until it
#   succeeds (0) or MS have passed (1).
poll () {
    local deadline=$(( $(now_ms) + $1 ))
    shift
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        [ "$(now_ms)" -ge "$deadline" ] && return 1
        sleep 0.02
    done
}

#   ---------------------------------------------------------------------
#   Two hosts and a cable.

ip netns add "$nsb" 2>"$work/netns.err" || skip "cannot make a network namespace: $(cat "$work/netns.err")"
made+=("$nsb")
ip netns add "$nsn" || die "cannot make a second network namespace"
made+=("$nsn")
ip link add "$vethb" netns "$nsb" type veth peer name "$vethn" netns "$nsn" \
    || die "cannot make a veth pair"
ip -n "$nsb" addr add "$ipb/24" dev "$vethb" || die "cannot address $vethb"
ip -n "$nsn" addr add "$ipn/24" dev "$vethn" || die "cannot address $vethn"
for ns in "$nsb" "$nsn"; do
    ip -n "$ns" link set lo up || die "cannot bring up lo in $ns"
done
ip -n "$nsb" link set "$vethb" up || die "cannot bring up $vethb"
ip -n "$nsn" link set "$vethn" up || die "cannot bring up $vethn"
#   The one-way loss drops the node's packets to the broker by a route:
#   the broker's must still come in, whatever the reverse path says.
ip netns exec "$nsn" sysctl -qw net.ipv4.conf.all.rp_filter=0 \
    net.ipv4.conf.default.rp_filter=0 "net.ipv4.conf.$vethn.rp_filter=0" \
    || die "cannot turn off rp_filter in $nsn"
echo "hosts: $nsb ($ipb, $vethb) and $nsn ($ipn, $vethn)"

#   Keys: the broker's, and the node's and the client commands' allowed.
keys=$work/keys
mkdir -m 700 "$keys" "$work/allow"
for k in broker node client; do
    "$troupe" keygen "$k" --dir "$keys" >/dev/null 2>"$work/keygen.log" \
        || die "troupe keygen $k: $(cat "$work/keygen.log")"
done
cp "$keys/node.public" "$keys/client.public" "$work/allow/"
export TROUPE_CURVE_SECRET=$keys/client.secret TROUPE_SERVER_KEY=$keys/broker.public

#   ---------------------------------------------------------------------
#   The broker on one, the echo node on the other.

#   `ip netns exec` execs the command: $! is the program's own pid.
ip netns exec "$nsb" env TROUPE_LOG=info "$troupe" broker --bind "$endpoint" \
    --heartbeat ${heartbeat}ms --curve "$keys/broker.secret" --allow "$work/allow" \
    >"$work/broker.log" 2>&1 &
broker_pid=$!
pids+=("$broker_pid")
poll $((10000 * slow)) grep -q "listening on $endpoint" "$work/broker.log" \
    || die "the broker never listened on $endpoint"

ip netns exec "$nsn" env TROUPE_LOG=info "$echo_node" "$endpoint" remote-echo \
    --heartbeat $heartbeat --curve "$keys/node.secret" --server-key "$keys/broker.public" \
    >"$work/node.log" 2>&1 &
node_pid=$!
pids+=("$node_pid")
node_id=echo-node-$node_pid
poll $((20000 * slow)) grep -q "^ready remote-echo" "$work/node.log" \
    || die "the echo node never got ready over the veth pair"
echo "ok: $node_id on $nsn joined the broker at $endpoint"

#   ask_echo BODY : an ask from the broker's host to remote-echo, which
#   answers BODY as it came.
ask_echo () {
    [ "$(on_b "$troupe" ask remote-echo "$1" --broker "$endpoint" --timeout 1s 2>/dev/null)" = "$1" ]
}
#   listed : the broker lists the node, holding its two names.
listed () {
    on_b "$troupe" nodes --broker "$endpoint" --timeout 1s 2>/dev/null \
        | grep -Eq "^$node_id +node +[0-9.]+s +2\$"
}
unlisted () {
    local out
    out=$(on_b "$troupe" nodes --broker "$endpoint" --timeout 1s 2>/dev/null) || return 1
    ! grep -q "^$node_id " <<<"$out"
}

ask_echo '{"over":"veth","n":[1,2.5,null]}' && echo "ok: an ask crosses the link and is answered" \
    || fail "ask to remote-echo across the link: $(on_b "$troupe" ask remote-echo 1 --broker "$endpoint" 2>&1)"
listed && echo "ok: troupe nodes lists $node_id" \
    || fail "troupe nodes: $(on_b "$troupe" nodes --broker "$endpoint" 2>&1)"
#   The node's host is a client host too.
out=$(on_n "$troupe" ask remote-echo '"from the node host"' --broker "$endpoint" 2>&1)
[ "$out" = '"from the node host"' ] && echo "ok: an ask from the node's host goes round the broker" \
    || fail "ask from $nsn: $out"

#   ---------------------------------------------------------------------
#   Outages.

#   Detection: the broker declares a peer silent for 3H dead; it last
#   heard the node at most H before the cut, so it drops it between 2H
#   and 3H after, plus its poll. Recovery: the node retries with backoff
#   from 100 ms doubling to 5 s (+20%), each attempt waiting 3H for the
#   greeting, so it is back at most about 6.6 s after the link is.
detect_max=$((3000 * slow))
recover_max=$((10000 * slow))
detections=()
recoveries=()

#   outage WHAT CUT RESTORE HOLD : one round. CUT and RESTORE are commands
#   (words split); HOLD is "3s" (the link stays down 3 s from the cut)
#   or "drop" (it comes back as soon as the broker has dropped the node).
outage () {
    local what=$1 cut=$2 restore=$3 hold=$4
    local out rc start elapsed t0 t1 losses joins drops cut_at line inflight
    losses=$(grep -c "lost the broker" "$work/node.log")
    joins=$(grep -c "joined the broker" "$work/node.log")
    drops=$(grep -c "'$node_id' left (silent" "$work/broker.log")
    dropped () {
        [ "$(grep -c "'$node_id' left (silent" "$work/broker.log")" -gt "$drops" ]
    }
    echo "--- $what"
    cut_at=$(log_ms "$(date +%T.%3N)")
    t0=$(now_ms)
    $cut || die "cannot cut: $cut"
    if [ "$hold" = drop ]; then
        #   As soon as the broker says so in its log; the node has heard
        #   the broker all along and suspects nothing.
        poll "$detect_max" dropped || die "the broker never dropped $node_id"
        t1=$(now_ms)
        $restore || die "cannot restore: $restore"
        detections+=("$(( t1 - t0 ))")
        echo "ok: the broker dropped $node_id $(( t1 - t0 )) ms after the cut; restored"
    else
        #   An ask sent as the link goes: it reaches the broker, which
        #   sends it into the dead link, then says the node is down
        #   (TR_ENODE; TR_ENOACTOR if the ask came after the broker knew).
        #   Either way long before its own timeout.
        on_b "$troupe" ask remote-echo '"lost"' --broker "$endpoint" --timeout 10s \
            >"$work/inflight.out" 2>&1 &
        inflight=$!
        if poll "$detect_max" unlisted; then
            elapsed=$(( $(now_ms) - t0 ))
            detections+=("$elapsed")
            echo "ok: the broker dropped $node_id ${elapsed} ms after the cut" \
                 "(heartbeat ${heartbeat} ms)"
        else
            die "the broker still lists $node_id $detect_max ms after the cut"
        fi
        wait "$inflight"; rc=$?
        elapsed=$(( $(now_ms) - t0 ))
        out=$(cat "$work/inflight.out")
        if [ "$rc" -eq 1 ] && grep -Eq "TR_ENODE|TR_ENOACTOR" <<<"$out" \
           && [ "$elapsed" -lt $((detect_max + 2000 * slow)) ]; then
            echo "ok: the ask sent as the link went fails ${elapsed} ms after the cut: $out"
        else
            fail "the ask sent as the link went exited $rc ${elapsed} ms after the cut" \
                 "(expected 1, TR_ENODE, well within its 10s): $out"
        fi
        #   An ask now fails at once: nobody holds the name.
        start=$(now_ms)
        out=$(on_b "$troupe" ask remote-echo 1 --broker "$endpoint" --timeout 5s 2>&1)
        rc=$?
        elapsed=$(( $(now_ms) - start ))
        if [ "$rc" -eq 1 ] && grep -q "TR_ENOACTOR" <<<"$out" \
           && [ "$elapsed" -lt $((2000 * slow)) ]; then
            echo "ok: an ask to remote-echo fails in ${elapsed} ms: $out"
        else
            fail "an ask to remote-echo while cut off exited $rc in ${elapsed} ms" \
                 "(expected 1, TR_ENOACTOR, well within its 5s): $out"
        fi
        #   The node sees the broker go too.
        poll "$detect_max" eval '[ "$(grep -c "lost the broker" "$work/node.log")" -gt "$losses" ]' \
            && echo "ok: the node noticed it lost the broker" \
            || fail "the node never said it lost the broker"
        #   Keep the link down a while, so that the node tries and fails a
        #   few times and its backoff grows (an outage, not a blip).
        while [ $(( $(now_ms) - t0 )) -lt 3000 ]; do sleep 0.1; done
        on_b "$troupe" nodes --broker "$endpoint" --timeout 1s 2>/dev/null | grep -q "^$node_id " \
            && fail "the broker lists $node_id again while the link is still down"
        t1=$(now_ms)
        $restore || die "cannot restore: $restore"
    fi
    #   When the broker itself says it dropped the node, by its log (the
    #   times above add how long the commands took).
    line=$(grep "'$node_id' left (silent" "$work/broker.log" | sed -n "$((drops + 1))p")
    [ -n "$line" ] && echo "   the broker's log: $(( $(log_ms "${line%% *}") - cut_at )) ms" \
        "after the cut: ${line#* I troupe: }"

    if poll "$recover_max" ask_echo '{"back":true}'; then
        elapsed=$(( $(now_ms) - t1 ))
        recoveries+=("$elapsed")
        echo "ok: remote-echo answers again ${elapsed} ms after the link came back"
    else
        die "remote-echo does not answer $recover_max ms after the link came back"
    fi
    listed && echo "ok: troupe nodes lists $node_id again" || fail "the node is not listed again"
    [ "$(grep -c "joined the broker" "$work/node.log")" -gt "$joins" ] \
        && echo "ok: the node greeted the broker again" || fail "the node never joined again"
}

outage "the link cut at the node's end ($vethn)" \
    "ip -n $nsn link set $vethn down" "ip -n $nsn link set $vethn up" 3s
outage "the link cut at the broker's end ($vethb)" \
    "ip -n $nsb link set $vethb down" "ip -n $nsb link set $vethb up" 3s
outage "one way: the node's packets to the broker dropped" \
    "ip -n $nsn route add blackhole $ipb/32" "ip -n $nsn route del blackhole $ipb/32" drop

#   ---------------------------------------------------------------------
#   Both stop cleanly.

kill -TERM "$node_pid"
wait "$node_pid"; rc=$?
[ "$rc" -eq 0 ] && echo "ok: the echo node stops with status 0" || fail "the echo node exited $rc"
kill -TERM "$broker_pid"
wait "$broker_pid"; rc=$?
[ "$rc" -eq 0 ] && echo "ok: the broker stops with status 0" || fail "the broker exited $rc"

echo "detection (ms): ${detections[*]}; recovery (ms): ${recoveries[*]}"
if [ "$failures" -ne 0 ]; then
    for f in "$work"/*.log; do echo "--- $(basename "$f")"; cat "$f"; done
    echo "$failures check(s) failed"
    exit 1
fi
echo "all checks passed"
