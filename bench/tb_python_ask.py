#!/usr/bin/python3
"""tb_python_ask.py - Python actor ask round trips per second through the
broker, against raw pyzmq request/reply through a zmq proxy with the same
payload (bench/run's python_ask).

usage: tb_python_ask.py TROUPE REPS ROUNDS [SERIES...]

Series (default: all three), each party a process of its own (3
processes, tcp loopback), strict ping-pong with a 64-byte str body:
  troupe_py_ask   a Python asker (troupe.Node.ask, blocking API) -> the C
                  broker (`TROUPE broker`) -> a Python actor (spawned
                  inline: its handler runs on the node's I/O thread)
  pyzmq_req_rep   a pyzmq REQ -> zmq.proxy(ROUTER, DEALER) in a Python
                  process -> a pyzmq REP echoing
  raw_py_broker   the floor any client of the broker can reach: pyzmq
                  DEALERs that greet and register, then send prepared
                  SEND frames through the broker and wait for DELIVER,
                  with no codec and no binding at all
Each repetition warms up, then times ROUNDS round trips, and prints
"SAMPLE python_ask SERIES RATE" (round trips per second); at the end,
"OPS python_ask SERIES N" gives the round trips of all repetitions, warm-up
included, for bench/run's perf counters. Uses
/usr/bin/python3 and the binding from bindings/python (or an installed
one). Exits 1 if anything fails.
"""

import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bindings", "python"))

PAYLOAD = "x" * 64
WARMUP = 200


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def spawn(*args):
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), *args],
                            stdin=subprocess.DEVNULL)


def wait_line(proc_out, what):
    line = proc_out.readline()
    if not line:
        raise SystemExit("tb_python_ask: %s did not start" % what)
    return line


# ---------------------------------------------------------------------------
# Roles (run in their own processes)

def role_actor(endpoint):
    import troupe
    node = troupe.Node(endpoint, "bench-actor-%d" % os.getpid())
    node.spawn("py-echo", lambda msg: msg.raw_body and troupe.codec.Raw(msg.raw_body),
               inline=True)
    print("ready", flush=True)
    node.run()


def _raw_client(endpoint, node_id, name):
    """A pyzmq DEALER greeted by the broker, holding name."""
    import zmq
    from troupe import codec
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(endpoint)
    sock.send(codec.encode_command("HELLO", 1, "TRP", 1, 0, node_id, "actor", 1000))
    assert codec.read_command(sock.recv_multipart()[0]).verb == "OK"
    sock.send(codec.encode_command("REGISTER", 2, name))
    assert codec.read_command(sock.recv_multipart()[0]).verb == "OK"
    return sock


_DELIVER = b"\x92\xa7DELIVER\x00"


def _raw_frames(to, sender, kind, corr=0):
    from troupe import codec
    env = codec.Envelope(kind, 7 if kind == codec.ASK else 8, to, sender, corr=corr,
                         body=codec.pack_value(PAYLOAD))
    return [codec.encode_command("SEND", 0, to), codec.encode_envelope(env)]


def role_rawecho(endpoint):
    from troupe import codec
    sock = _raw_client(endpoint, "bench-rawecho-%d" % os.getpid(), "raw-echo")
    reply = _raw_frames("raw-asker", "raw-echo", codec.REPLY, corr=7)
    print("ready", flush=True)
    while True:
        if sock.recv_multipart()[0] == _DELIVER:
            sock.send_multipart(reply)


def role_rep(endpoint):
    import zmq
    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    rep.connect(endpoint)
    print("ready", flush=True)
    while True:
        rep.send(rep.recv())


def role_proxy(front, back):
    import zmq
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.bind(front)
    dealer = ctx.socket(zmq.DEALER)
    dealer.bind(back)
    print("ready", flush=True)
    zmq.proxy(router, dealer)


# ---------------------------------------------------------------------------
# Series

def series_troupe(troupe_bin, reps, rounds):
    import troupe
    port = free_port()
    endpoint = "tcp://127.0.0.1:%d" % port
    broker = subprocess.Popen([troupe_bin, "-q", "broker", "--bind", endpoint],
                              stdin=subprocess.DEVNULL)
    actor = None
    try:
        time.sleep(0.2)
        actor = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", "actor",
                                  endpoint], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                 text=True)
        wait_line(actor.stdout, "the actor")
        with troupe.Node(endpoint, "bench-asker-%d" % os.getpid()) as node:
            for _ in range(reps):
                for _ in range(WARMUP):
                    node.ask("py-echo", PAYLOAD, timeout=5)
                t = time.perf_counter()
                for _ in range(rounds):
                    node.ask("py-echo", PAYLOAD, timeout=5)
                rate = rounds / (time.perf_counter() - t)
                print("SAMPLE python_ask troupe_py_ask %.1f" % rate, flush=True)
    finally:
        for p in (actor, broker):
            if p is not None:
                p.terminate()
                p.wait()


def series_raw_broker(troupe_bin, reps, rounds):
    from troupe import codec
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    broker = subprocess.Popen([troupe_bin, "-q", "broker", "--bind", endpoint],
                              stdin=subprocess.DEVNULL)
    echo = None
    try:
        time.sleep(0.2)
        echo = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", "rawecho",
                                 endpoint], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                text=True)
        wait_line(echo.stdout, "the raw echo")
        sock = _raw_client(endpoint, "bench-rawask-%d" % os.getpid(), "raw-asker")
        ask = _raw_frames("raw-echo", "raw-asker", codec.ASK)

        def once():
            sock.send_multipart(ask)
            while sock.recv_multipart()[0] != _DELIVER:
                pass
        for _ in range(reps):
            for _ in range(WARMUP):
                once()
            t = time.perf_counter()
            for _ in range(rounds):
                once()
            rate = rounds / (time.perf_counter() - t)
            print("SAMPLE python_ask raw_py_broker %.1f" % rate, flush=True)
        sock.close(0)
    finally:
        for p in (echo, broker):
            if p is not None:
                p.terminate()
                p.wait()


def series_zmq(reps, rounds):
    import zmq
    front = "tcp://127.0.0.1:%d" % free_port()
    back = "tcp://127.0.0.1:%d" % free_port()
    procs = []
    try:
        for args in (("--role", "proxy", front, back), ("--role", "rep", back)):
            p = subprocess.Popen([sys.executable, os.path.abspath(__file__), *args],
                                 stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
            procs.append(p)
            wait_line(p.stdout, args[1])
        ctx = zmq.Context()
        req = ctx.socket(zmq.REQ)
        req.connect(front)
        data = b"\xd9\x40" + PAYLOAD.encode()        # the same msgpack str
        for _ in range(reps):
            for _ in range(WARMUP):
                req.send(data)
                req.recv()
            t = time.perf_counter()
            for _ in range(rounds):
                req.send(data)
                req.recv()
            rate = rounds / (time.perf_counter() - t)
            print("SAMPLE python_ask pyzmq_req_rep %.1f" % rate, flush=True)
        req.close(0)
        ctx.term()
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def main(argv):
    if len(argv) >= 2 and argv[1] == "--role":
        role = argv[2]
        {"actor": lambda: role_actor(argv[3]), "rep": lambda: role_rep(argv[3]),
         "rawecho": lambda: role_rawecho(argv[3]),
         "proxy": lambda: role_proxy(argv[3], argv[4])}[role]()
        return 0
    if len(argv) < 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    troupe_bin, reps, rounds = argv[1], int(argv[2]), int(argv[3])
    series = argv[4:] or ["troupe_py_ask", "pyzmq_req_rep", "raw_py_broker"]
    runs = {"troupe_py_ask": lambda: series_troupe(troupe_bin, reps, rounds),
            "pyzmq_req_rep": lambda: series_zmq(reps, rounds),
            "raw_py_broker": lambda: series_raw_broker(troupe_bin, reps, rounds)}
    for s in series:
        if s not in runs:
            print("tb_python_ask: unknown series %s" % s, file=sys.stderr)
            return 2
    for s in series:
        runs[s]()
    for s in series:
        print("OPS python_ask %s %d" % (s, reps * (rounds + WARMUP)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
