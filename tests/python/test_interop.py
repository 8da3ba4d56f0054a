"""The Python binding with a real broker, real C nodes and the real
command line: C asks Python and Python asks C, errors with their codes,
the scratchpad and the event bus across languages, reconnection."""

import json
import logging
import queue
import signal
import subprocess
import threading
import time

import pytest

import troupe
from conftest import Broker, EchoNode, Proc, TROUPE, clean_env, cli, free_port, slow, wait_for


def node(broker, name, **kw):
    return troupe.Node(broker.endpoint, name, heartbeat_ms=200, **kw)


def test_python_asks_c(broker, echo_node):
    echo_node("c-echo")
    with node(broker, "py-asker") as n:
        for body in ({"a": [1, 2, "x"], "b": None}, "hello", 42, -7, 1.5, b"\x00\xff", [],
                     {"deep": [[[1]]]}, "ünïcødé", True, None):
            assert n.ask("c-echo", body, timeout=slow(5)) == body
        reply = n.ask_message("c-echo", "who", timeout=slow(5))
        assert reply.sender == "c-echo"
        assert reply.raw_body == troupe.codec.pack_value("who")


def got_sender():
    class Any:
        def __eq__(self, other):
            return isinstance(other, str) and other.startswith("$node.troupe-cli")
    return Any()


def test_c_asks_python(broker):
    got = queue.Queue()
    with node(broker, "py-host") as n:
        @n.actor("py-upper")
        def upper(msg):
            got.put((msg.is_ask, msg.sender, msg.body))
            return msg.body.upper() if isinstance(msg.body, str) else {"echo": msg.body}

        r = cli("ask", "py-upper", '"hello"', "--broker", broker.endpoint, check=True)
        assert r.stdout.strip() == '"HELLO"'
        is_ask, sender, body = got.get(timeout=slow(5))
        assert is_ask and body == "hello" and sender.startswith("$node.troupe-cli")
        r = cli("ask", "py-upper", '{"n": [1, 2.5, null]}', "--broker", broker.endpoint,
                check=True)
        assert json.loads(r.stdout) == {"echo": {"n": [1, 2.5, None]}}
        assert got.get(timeout=slow(5))[2] == {"n": [1, 2.5, None]}
        # A tell from C.
        cli("send", "py-upper", '"told"', "--broker", broker.endpoint, check=True)
        assert got.get(timeout=slow(5)) == (False, got_sender(), "told")


def test_handler_errors_reach_c_with_their_codes(broker):
    with node(broker, "py-errors") as n:
        def fails(msg):
            if msg.body == "missing":
                raise troupe.NotFound("no such record")
            if msg.body == "app":
                raise troupe.ApplicationError(-1042, "the application said no")
            if msg.body == "later":
                deferred = msg.defer()
                threading.Timer(0.1, lambda: deferred.reply("done later")).start()
                return None
            raise RuntimeError("boom")

        n.spawn("py-fails", fails)
        r = cli("ask", "py-fails", '"x"', "--broker", broker.endpoint)
        assert r.returncode == 1 and "TR_EHANDLER" in r.stderr
        r = cli("ask", "py-fails", '"missing"', "--broker", broker.endpoint)
        assert r.returncode == 1 and "TR_ENOTFOUND" in r.stderr
        r = cli("ask", "py-fails", '"later"', "--broker", broker.endpoint, check=True)
        assert r.stdout.strip() == '"done later"'
        # The same from Python: the exception class of each code.
        with pytest.raises(troupe.HandlerFailed):
            n.ask("py-fails", "x", timeout=slow(5))
        with pytest.raises(troupe.ApplicationError) as info:
            n.ask("py-fails", "app", timeout=slow(5))
        assert info.value.code == -1042


def test_errors_as_exceptions(broker, echo_node):
    echo_node("c-held")
    with node(broker, "py-err") as n:
        t = time.monotonic()
        with pytest.raises(troupe.NoSuchActor) as info:
            n.ask("nobody-here", 1, timeout=slow(5))
        assert time.monotonic() - t < slow(3)           # bounced at once, not timed out
        assert info.value.code == -3 and info.value.name == "TR_ENOACTOR"
        assert isinstance(info.value, troupe.TroupeError)

        n.spawn("py-sleepy", lambda msg: time.sleep(msg.body) or "woke")
        t = time.monotonic()
        with pytest.raises(troupe.Timeout) as info:
            n.ask("py-sleepy", 1.0, timeout=0.3)
        assert 0.25 < time.monotonic() - t < slow(3)
        assert isinstance(info.value, TimeoutError) and info.value.code == -6

        with pytest.raises(troupe.NameTaken):           # held by the C node
            n.spawn("c-held", lambda m: None)
        with pytest.raises(troupe.NameTaken):
            n.spawn("py-sleepy", lambda m: None)
        # Bad input is refused before anything is sent, precisely.
        for bad in ("", "with space", "x" * 256, "tab\there", "\x7f"):
            with pytest.raises(troupe.InvalidArgument):
                n.ask(bad, 1)
        with pytest.raises(troupe.InvalidArgument):
            n.spawn("$reserved", lambda m: None)
        with pytest.raises(troupe.InvalidArgument):
            n.tell("c-held", object())
        with pytest.raises(troupe.TooDeep):
            deep = []
            for _ in range(40):
                deep = [deep]
            n.tell("c-held", deep)
        with pytest.raises(troupe.InvalidArgument):
            n.publish("bad topic", 1)
        with pytest.raises(troupe.InvalidArgument):
            n.publish("sys.mine", 1)
        with pytest.raises(troupe.InvalidArgument):
            n.kv.put("", 1)
        with pytest.raises(troupe.InvalidArgument):
            n.kv.put("k" * 1025, 1)
        with pytest.raises(troupe.InvalidArgument):
            n.kv.cas("k", -1, 1)
        with pytest.raises(troupe.InvalidArgument):
            n.subscribe("a b")
    with pytest.raises(troupe.InvalidArgument):
        troupe.Node("127.0.0.1:7700")                      # no transport
    with pytest.raises(troupe.InvalidArgument):
        troupe.Node(broker.endpoint, "bad id")
    with pytest.raises(troupe.InvalidArgument):
        troupe.Node(broker.endpoint, "hb", heartbeat_ms=50)
    with pytest.raises(troupe.Timeout):
        troupe.Node("tcp://127.0.0.1:%d" % free_port(), "lonely", connect_timeout=0.5)


def test_actor_class_asks_from_its_name(broker, echo_node):
    echo_node("c-echo2")
    events = []

    class Relay(troupe.Actor):
        def started(self):
            events.append("started")

        def handle(self, msg):
            # An ask from inside a handler, from this actor's name: the
            # C actor's reply comes back to it.
            return {"via": self.name, "c": self.ask("c-echo2", msg.body, timeout=slow(5))}

        def stopped(self):
            events.append("stopped")

    with node(broker, "py-relay-node") as n:
        n.spawn("py-relay", Relay())
        assert n.ask("py-relay", [1, 2], timeout=slow(5)) == {"via": "py-relay", "c": [1, 2]}
        r = cli("ask", "py-relay", '"from C"', "--broker", broker.endpoint, check=True)
        assert json.loads(r.stdout) == {"via": "py-relay", "c": "from C"}
        n.stop_actor("py-relay")
        assert events == ["started", "stopped"]
        with pytest.raises(troupe.NoSuchActor):
            n.ask("py-relay", 1, timeout=slow(5))


def test_node_down_fails_asks_in_flight(broker, tmp_path):
    # A C tree whose 'slowpoke' hangs on "hang MS"; its node is killed
    # while a Python ask waits: the broker's NODE_DOWN fails it at once.
    tree = tmp_path / "slow.yaml"
    tree.write_text("name: slow\nchildren:\n  - {name: slowpoke, actor: flaky}\n")
    run = Proc([TROUPE, "run", str(tree), "--broker", broker.endpoint], tmp_path, "run")
    try:
        with node(broker, "py-down") as n:
            # Until 'slowpoke' answers: a count of names could be another
            # node's (one an earlier test left, not yet gone), and the
            # tree registers its names only once it has started.
            def slowpoke_up():
                try:
                    return n.ask("slowpoke", "ping", timeout=1) == "ok"
                except (troupe.NoSuchActor, troupe.Timeout):
                    return False
            assert wait_for(slowpoke_up, slow(10))
            result = {}

            def asker():
                t = time.monotonic()
                try:
                    n.ask("slowpoke", "hang 20000", timeout=slow(15))
                except troupe.TroupeError as e:
                    result["error"] = e
                result["took"] = time.monotonic() - t
            th = threading.Thread(target=asker)
            th.start()
            time.sleep(0.5)
            run.stop(signal.SIGKILL)
            th.join(slow(15))
            assert isinstance(result.get("error"), troupe.NodeDown), result
            assert result["took"] < slow(5)                # 3 heartbeats of 200 ms, not 15 s
            with pytest.raises(troupe.NoSuchActor):
                n.ask("slowpoke", "x", timeout=slow(5))
    finally:
        run.stop(signal.SIGKILL)


def test_scratchpad_across_languages(broker):
    ep = ("--broker", broker.endpoint)
    with node(broker, "py-kv") as n:
        v1 = n.kv.put("shared/a", {"from": "python", "n": 1})
        r = cli("kv", "get", "shared/a", "--meta", *ep, check=True)
        meta = json.loads(r.stdout)
        assert meta["value"] == {"from": "python", "n": 1} and meta["version"] == v1
        r = cli("kv", "put", "shared/b", '[1, "two"]', *ep, check=True)
        vb = int(r.stdout.strip())
        e = n.kv.get("shared/b")
        assert e == troupe.Entry([1, "two"], vb, 0)
        # Compare-and-set: one winner per version.
        v2 = n.kv.cas("shared/a", v1, "second")
        assert v2 > v1
        with pytest.raises(troupe.Conflict):
            n.kv.cas("shared/a", v1, "stale")
        with pytest.raises(troupe.Conflict):
            n.kv.cas("shared/b", 0, "exists")
        r = cli("kv", "cas", "shared/a", str(v1), '"stale"', *ep)
        assert r.returncode == 1 and "TR_ECONFLICT" in r.stderr
        assert n.kv.get("shared/a").value == "second"
        assert [k for k, _ in n.kv.list("shared/")] == ["shared/a", "shared/b"]
        at, snap = n.kv.snapshot("shared/")
        assert at >= vb and snap["shared/b"] == (vb, [1, "two"])
        # Time to live.
        n.kv.put("shared/ttl", 1, ttl=0.2)
        assert 0 < n.kv.get("shared/ttl").ttl_ms <= 200
        assert wait_for(lambda: cli("kv", "get", "shared/ttl", *ep).returncode == 1, slow(3))
        with pytest.raises(troupe.NotFound):
            n.kv.get("shared/ttl")
        # Watch: changes made by C, in version order, deletions included.
        w = n.kv.watch("shared/", from_version=at)
        cli("kv", "put", "shared/c", "3", *ep, check=True)
        cli("kv", "del", "shared/a", *ep, check=True)
        changes = [w.get(timeout=slow(5)) for _ in range(3)]
        # The TTL key's expiry may come first (it expired after `at`).
        changes = [c for c in changes if c.key != "shared/ttl"]
        while len(changes) < 2:
            c = w.get(timeout=slow(5))
            if c.key != "shared/ttl":
                changes.append(c)
        assert (changes[0].key, changes[0].value, changes[0].deleted) == ("shared/c", 3, False)
        assert (changes[1].key, changes[1].value, changes[1].deleted) == ("shared/a", None, True)
        assert changes[0].version < changes[1].version
        w.close()
        with pytest.raises(troupe.NotFound):
            n.kv.delete("shared/a")
        assert n.kv.delete("shared/b") > changes[1].version


def test_events_across_languages(broker):
    ep = ("--broker", broker.endpoint)
    with node(broker, "py-events") as n:
        sub = n.subscribe("news.")
        cli("pub", "news.c", '{"n": 1}', *ep, check=True)
        cli("pub", "other.c", '2', *ep, check=True)
        ev = sub.get(timeout=slow(5))
        assert (ev.topic, ev.body) == ("news.c", {"n": 1})
        assert ev.sender.startswith("troupe-cli")
        # Python publishes; a C subscriber gets it.
        csub = subprocess.Popen([TROUPE, "sub", "news.", "--count", "1", "--for", "10s", *ep],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=clean_env())
        try:
            line = csub.stderr.readline()
            assert "subscribed" in line, line
            n.publish("news.py", {"from": "python"})
            out, _ = csub.communicate(timeout=slow(10))
            assert json.loads(out) == {"topic": "news.py", "body": {"from": "python"}}
        finally:
            csub.kill()
        # Our own events reach our own subscribers (the broker does not
        # send them back).
        got = sub.get(timeout=slow(5))
        assert (got.topic, got.sender) == ("news.py", "py-events")
        with pytest.raises(troupe.Timeout):
            sub.get(timeout=0.2)                           # other.c was not ours
        # A callback subscription.
        seen = queue.Queue()
        n.subscribe("cb.", callback=seen.put)
        cli("pub", "cb.x", '"y"', *ep, check=True)
        assert seen.get(timeout=slow(5)).body == "y"


def test_reconnects_and_registers_again(tmp_path):
    b = Broker(tmp_path, "--heartbeat", "200ms")
    port = b.port
    try:
        with troupe.Node(b.endpoint, "py-phoenix-node", heartbeat_ms=200) as n:
            n.spawn("py-phoenix", lambda msg: ["back", msg.body])
            n.subscribe("again.")
            assert json.loads(cli("ask", "py-phoenix", "1", "--broker", b.endpoint,
                                  check=True).stdout) == ["back", 1]
            b.stop(signal.SIGKILL)
            assert wait_for(lambda: not n.connected, slow(3))
            # An ask made while the broker is away waits for it (until its
            # own deadline), then goes through.
            result = {}
            th = threading.Thread(target=lambda: result.update(
                r=n.ask("py-phoenix", "meanwhile", timeout=slow(10))))
            th.start()
            time.sleep(0.3)
            b = Broker(tmp_path, "--heartbeat", "200ms", port=port, name="broker2")
            th.join(slow(10))
            assert result.get("r") == ["back", "meanwhile"]
            # Within the backoff bound (5 s): greeted, names held again.
            assert wait_for(lambda: cli("ask", "py-phoenix", "2", "--broker", b.endpoint)
                            .returncode == 0, slow(8))
            assert n.stats["greetings"] >= 2
            cli("pub", "again.x", "1", "--broker", b.endpoint, check=True)
    finally:
        b.stop()
    b.assert_clean()


def test_mailbox_bound(broker):
    with node(broker, "py-full") as n:
        gate = threading.Event()
        n.spawn("py-narrow", lambda msg: gate.wait(slow(10)) and "ok", mailbox=1)
        first = threading.Thread(target=lambda: n.ask("py-narrow", 1, timeout=slow(10)))
        first.start()
        time.sleep(0.2)                                    # handling the first
        second = threading.Thread(target=lambda: n.ask("py-narrow", 2, timeout=slow(10)))
        second.start()
        time.sleep(0.2)                                    # the second waits in the mailbox
        r = cli("ask", "py-narrow", "3", "--broker", broker.endpoint)
        assert r.returncode == 1 and "TR_EFULL" in r.stderr
        with pytest.raises(troupe.MailboxFull):
            n.ask("py-narrow", 4, timeout=slow(5))
        gate.set()
        first.join()
        second.join()


def test_many_threads_asking_at_once(broker, echo_node):
    # Each blocking asker serves the socket itself while it waits: eight
    # of them at once, with an inline actor and a threaded one on the same
    # node, every answer reaching its own asker.
    echo_node("c-many")
    with node(broker, "py-many") as n:
        n.spawn("py-inline", lambda msg: ["inline", msg.body], inline=True)
        n.spawn("py-threaded", lambda msg: ["threaded", msg.body])
        errors_seen = []

        def worker(k):
            try:
                for i in range(150):
                    body = {"k": k, "i": i}
                    assert n.ask("c-many", body, timeout=slow(10)) == body
                    assert n.ask("py-inline", body, timeout=slow(10)) == ["inline", body]
                    assert n.ask("py-threaded", body, timeout=slow(10)) == ["threaded", body]
            except BaseException as e:                     # reported below
                errors_seen.append(e)
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(slow(120))
        assert not errors_seen, errors_seen[:3]
        # A C client meanwhile sees the inline actor as any other.
        r = cli("ask", "py-inline", "1", "--broker", broker.endpoint, check=True)
        assert json.loads(r.stdout) == ["inline", 1]


def test_actors_answered_while_and_after_a_thread_asks_in_a_loop(broker, echo_node):
    # A thread asking in a loop serves its node's socket itself, and the
    # node's own thread leaves the socket to it while it does; the node's
    # actors are answered meanwhile, and at once after the loop ends (the
    # node's thread watches the socket again).
    echo_node("c-loop")
    with node(broker, "py-loop") as a, node(broker, "py-loop-other") as b:
        a.spawn("py-adder", lambda msg: msg.body + 1)
        a.spawn("py-adder-inline", lambda msg: msg.body + 2, inline=True)
        stop = threading.Event()
        asked, failed = [0], []

        def loop():
            try:
                while not stop.is_set():
                    assert a.ask("c-loop", asked[0], timeout=slow(5)) == asked[0]
                    asked[0] += 1
            except BaseException as e:                     # reported below
                failed.append(e)
        t = threading.Thread(target=loop)
        t.start()
        try:
            for i in range(100):
                assert b.ask("py-adder", i, timeout=slow(5)) == i + 1
                assert b.ask("py-adder-inline", i, timeout=slow(5)) == i + 2
        finally:
            stop.set()
            t.join(slow(10))
        assert not failed, failed
        assert asked[0] > 0
        worst = 0.0
        for i in range(50):
            t0 = time.monotonic()
            assert b.ask("py-adder-inline", i, timeout=slow(5)) == i + 2
            assert a.ask("c-loop", i, timeout=slow(5)) == i
            worst = max(worst, time.monotonic() - t0)
        assert worst < slow(0.5)


def test_inline_actor_cannot_wait_on_itself(broker):
    with node(broker, "py-inline-dl") as n:
        def asks_back(msg):
            try:
                n.ask("py-self", 1, timeout=1.0)
            except troupe.WouldDeadlock:
                return "refused"
            return "waited"
        n.spawn("py-self", asks_back, inline=True)
        assert n.ask("py-self", 0, timeout=slow(5)) == "refused"


def test_broker_that_forgot_us_is_greeted_again(tmp_path, caplog):
    # The broker restarts faster than three heartbeats: ZeroMQ reconnects
    # the socket by itself and the new broker has never seen this client.
    # Its next message is answered TR_EPROTO (2.3), and the node greets
    # again and registers its names again at once.
    caplog.set_level(logging.WARNING, logger="troupe")
    b = Broker(tmp_path, "--heartbeat", "1s")
    port = b.port
    try:
        with troupe.Node(b.endpoint, "py-forgotten", heartbeat_ms=1000) as n:
            n.spawn("py-forgotten-actor", lambda msg: "still here")
            greetings = n.stats["greetings"]
            b.stop(signal.SIGKILL)
            b = Broker(tmp_path, "--heartbeat", "1s", port=port, name="broker2")
            assert wait_for(lambda: n.stats.get("greetings", 0) > greetings, slow(8)), \
                b.text()
            r = cli("ask", "py-forgotten-actor", "1", "--broker", b.endpoint, check=True)
            assert r.stdout.strip() == '"still here"'
            assert "no longer knows this node" in caplog.text
    finally:
        b.stop()
    b.assert_clean()
