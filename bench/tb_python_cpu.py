#!/usr/bin/python3
"""tb_python_cpu.py - where python_ask's microseconds go: CPU per round
trip of the thread doing the work at each end, for a raw pyzmq loop, a
loop doing only the protocol's work, and the binding (bench/notes/
python_ask.md).

usage: tb_python_cpu.py [ROUNDS]   (default 8000)

One Python end at a time, against a fake broker written in raw pyzmq in
a process of its own (so that the other end is the same for all):
  asker  the fake broker answers every ask at once. raw: send_multipart
         of prepared frames, recv_multipart; protocol: make and encode
         the ask's envelope, decode and check the reply's, match it,
         unpack its body; binding: troupe.Node.ask. CPU of the asking
         thread (time.thread_time).
  actor  the fake broker sends asks one at a time and waits for each
         answer. raw: answers with prepared frames; protocol: decodes
         and checks the ask, makes and encodes the reply; binding: an
         inline actor of a troupe.Node. CPU of the thread that answers
         (/proc/self/task, clock ticks: about 1 us resolution here).
Prints "CPU <end> <kind> <us>" lines, each kind measured twice, in turn.
"""

import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bindings", "python"))

import zmq                                      # noqa: E402

import troupe                                   # noqa: E402
from troupe import codec                        # noqa: E402
from troupe.codec import Envelope               # noqa: E402

PAYLOAD = "x" * 64
BODY = codec.pack_value(PAYLOAD)
DELIVER = codec.encode_command("DELIVER", 0)
WARMUP = 500


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------
# The fake broker (a process of its own)

def _greet(router):
    """Answers HELLO and REGISTER until a name not starting with $ is
    registered; returns (peer identity, that name)."""
    while True:
        frames = router.recv_multipart()
        cmd = codec.read_command(frames[1])
        if cmd.verb == "HELLO":
            router.send_multipart([frames[0], codec.encode_command(
                "OK", cmd.seq, "TRP", 1, 0, "fake", 1000, {})])
        elif cmd.verb == "REGISTER":
            router.send_multipart([frames[0], codec.encode_command("OK", cmd.seq)])
            if not cmd.args[0].startswith("$"):
                return frames[0], cmd.args[0]


def role_answer(endpoint):
    """Answers every SEND of an ask with a DELIVER of its reply."""
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.bind(endpoint)
    print("ready", flush=True)
    while True:
        frames = router.recv_multipart()
        if frames[1].startswith(b"\x93\xa4SEND"):
            ask = codec.decode_envelope(frames[2])
            reply = Envelope(codec.REPLY, 1, ask.sender, ask.to, corr=ask.id, body=ask.body)
            router.send_multipart([frames[0], DELIVER, codec.encode_envelope(reply)])
            continue
        cmd = codec.read_command(frames[1])
        if cmd.verb == "HELLO":
            router.send_multipart([frames[0], codec.encode_command(
                "OK", cmd.seq, "TRP", 1, 0, "fake", 1000, {})])
        elif cmd.verb in ("REGISTER", "UNREGISTER"):
            router.send_multipart([frames[0], codec.encode_command("OK", cmd.seq)])


def role_drive(endpoint, rounds, reps):
    """Sends asks to the registered actor one at a time; prints "go" and
    "done" around each repetition of rounds asks."""
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.bind(endpoint)
    print("ready", flush=True)
    peer, name = _greet(router)

    def once(i):
        ask = Envelope(codec.ASK, i, name, "$node.fake-asker",
                       deadline=time.time_ns() // 1000 + 60_000_000, body=BODY)
        router.send_multipart([peer, DELIVER, codec.encode_envelope(ask)])
        while not router.recv_multipart()[1].startswith(b"\x93\xa4SEND"):
            pass
    for i in range(1, WARMUP + 1):
        once(i)
    for _ in range(reps):
        print("go", flush=True)
        for i in range(rounds):
            once(WARMUP + 1 + i)
        print("done", flush=True)
    time.sleep(1)


def fake(role, endpoint, *args):
    p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", role, endpoint,
                          *map(str, args)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         text=True)
    if p.stdout.readline().strip() != "ready":
        raise SystemExit("tb_python_cpu: the fake broker did not start")
    return p


def dealer(endpoint, node_id, name=None):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(endpoint)
    sock.send(codec.encode_command("HELLO", 1, "TRP", 1, 0, node_id, "actor", 1000))
    sock.recv_multipart()
    if name:
        sock.send(codec.encode_command("REGISTER", 2, name))
        sock.recv_multipart()
    return sock


# ---------------------------------------------------------------------------
# The asking end

def asker(rounds):
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    broker = fake("answer", endpoint)
    sock = dealer(endpoint, "cpu-raw-asker")
    node = troupe.Node(endpoint, "cpu-binding-asker")
    ids = iter(range(1, 1 << 62))
    raw_ask = [codec.encode_send("py-echo"), codec.encode_envelope(
        Envelope(codec.ASK, 7, "py-echo", "$node.cpu-raw-asker", body=BODY))]

    def raw():
        sock.send_multipart(raw_ask)
        sock.recv_multipart()

    def protocol():
        ask = Envelope(codec.ASK, next(ids), "py-echo", "$node.cpu-raw-asker", 0,
                       time.time_ns() // 1000 + 5_000_000, 0, 0, 0, codec.pack_value(PAYLOAD))
        sock.send_multipart([codec.encode_send("py-echo"), codec.encode_envelope(ask)])
        while True:
            frames = sock.recv_multipart()
            if frames[0] == DELIVER:
                reply = codec.decode_envelope(frames[1])
                if reply.corr == ask.id:
                    return codec.unpack_value(reply.body)

    def binding():
        node.ask("py-echo", PAYLOAD, timeout=5)
    try:
        for kind, once in [("raw", raw), ("protocol", protocol), ("binding", binding)] * 2:
            for _ in range(WARMUP):
                once()
            t = time.thread_time()
            for _ in range(rounds):
                once()
            print("CPU asker %s %.1f" % (kind, (time.thread_time() - t) / rounds * 1e6),
                  flush=True)
    finally:
        node.close()
        sock.close(0)
        broker.terminate()
        broker.wait()


# ---------------------------------------------------------------------------
# The answering end

def _thread_cpu(tid):
    fields = open("/proc/self/task/%d/stat" % tid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(kind, driver, tid, rounds):
    for _ in range(2):
        if driver.stdout.readline().strip() != "go":
            raise SystemExit("tb_python_cpu: the fake broker stopped")
        t = _thread_cpu(tid)
        driver.stdout.readline()
        print("CPU actor %s %.1f" % (kind, (_thread_cpu(tid) - t) / rounds * 1e6), flush=True)


def _loop_actor(kind, rounds, answer):
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    driver = fake("drive", endpoint, rounds, 2)
    sock = dealer(endpoint, "cpu-%s-actor" % kind, "py-echo")

    def loop():
        while True:
            try:
                frames = sock.recv_multipart()
            except zmq.ZMQError:
                return
            if frames[0] == DELIVER:
                sock.send_multipart(answer(frames[1]))
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        _measure(kind, driver, thread.native_id, rounds)
    finally:
        driver.terminate()
        driver.wait()


def actor(rounds):
    raw_reply = [codec.encode_send("x"), codec.encode_envelope(
        Envelope(codec.REPLY, 7, "x", "py-echo", corr=1, body=BODY))]
    ids = iter(range(1, 1 << 62))
    _loop_actor("raw", rounds, lambda payload: raw_reply)

    def protocol(payload):
        ask = codec.decode_envelope(payload)
        reply = Envelope(codec.REPLY, next(ids), ask.sender, ask.to, ask.id, 0, ask.priority,
                         ask.trace, 0, codec.pack_value(codec.Raw(ask.body)))
        return [codec.encode_send(reply.to), codec.encode_envelope(reply)]
    _loop_actor("protocol", rounds, protocol)
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    driver = fake("drive", endpoint, rounds, 2)
    node = troupe.Node(endpoint, "cpu-binding-actor")
    try:
        node.spawn("py-echo", lambda msg: codec.Raw(msg.raw_body), inline=True)
        _measure("binding", driver, node._engine._thread.native_id, rounds)
    finally:
        node.close()
        driver.terminate()
        driver.wait()


def main(argv):
    if len(argv) >= 4 and argv[1] == "--role":
        if argv[2] == "answer":
            role_answer(argv[3])
        else:
            role_drive(argv[3], int(argv[4]), int(argv[5]))
        return 0
    rounds = int(argv[1]) if len(argv) > 1 else 8000
    asker(rounds)
    actor(rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
