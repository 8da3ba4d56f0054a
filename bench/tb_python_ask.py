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
The series' processes are all started first; then each repetition runs
one measurement of each series in turn (so that all see the same
background load), each warming up, then timing ROUNDS round trips, and
prints "SAMPLE python_ask SERIES RATE" (round trips per second); at the end,
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
# Series: each starts its processes and sockets, puts what stops them on
# `stops`, and gives back one round trip. main runs the repetitions in
# turn, one of each series after the other, so that every series sees the
# same background load (on this shared machine, series run one after the
# other saw loads different enough to move the ratios by half).

def process(stops, *args, what=None):
    """Popen(args), terminated by stops; with what, waits for its ready line."""
    p = subprocess.Popen(list(args), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE if what else None, text=True)
    stops.append(lambda: (p.terminate(), p.wait()))
    if what:
        wait_line(p.stdout, what)
    return p


def series_troupe(troupe_bin, stops):
    import troupe
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    process(stops, troupe_bin, "-q", "broker", "--bind", endpoint)
    time.sleep(0.2)
    process(stops, sys.executable, os.path.abspath(__file__), "--role", "actor", endpoint,
            what="the actor")
    node = troupe.Node(endpoint, "bench-asker-%d" % os.getpid())
    stops.append(node.close)

    def once():
        node.ask("py-echo", PAYLOAD, timeout=5)
    return once


def series_raw_broker(troupe_bin, stops):
    from troupe import codec
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    process(stops, troupe_bin, "-q", "broker", "--bind", endpoint)
    time.sleep(0.2)
    process(stops, sys.executable, os.path.abspath(__file__), "--role", "rawecho", endpoint,
            what="the raw echo")
    sock = _raw_client(endpoint, "bench-rawask-%d" % os.getpid(), "raw-asker")
    stops.append(lambda: sock.close(0))
    ask = _raw_frames("raw-echo", "raw-asker", codec.ASK)

    def once():
        sock.send_multipart(ask)
        while sock.recv_multipart()[0] != _DELIVER:
            pass
    return once


def series_zmq(troupe_bin, stops):
    import zmq
    front = "tcp://127.0.0.1:%d" % free_port()
    back = "tcp://127.0.0.1:%d" % free_port()
    process(stops, sys.executable, os.path.abspath(__file__), "--role", "proxy", front, back,
            what="the proxy")
    process(stops, sys.executable, os.path.abspath(__file__), "--role", "rep", back,
            what="the rep")
    req = zmq.Context.instance().socket(zmq.REQ)
    req.connect(front)
    stops.append(lambda: req.close(0))
    data = b"\xd9\x40" + PAYLOAD.encode()        # the same msgpack str

    def once():
        req.send(data)
        req.recv()
    return once


SERIES = {"troupe_py_ask": series_troupe, "pyzmq_req_rep": series_zmq,
          "raw_py_broker": series_raw_broker}


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
    for s in series:
        if s not in SERIES:
            print("tb_python_ask: unknown series %s" % s, file=sys.stderr)
            return 2
    stops = []
    try:
        runs = [(s, SERIES[s](troupe_bin, stops)) for s in series]
        for _ in range(reps):
            for s, once in runs:
                for _ in range(WARMUP):
                    once()
                t = time.perf_counter()
                for _ in range(rounds):
                    once()
                rate = rounds / (time.perf_counter() - t)
                print("SAMPLE python_ask %s %.1f" % (s, rate), flush=True)
    finally:
        for fn in reversed(stops):
            fn()
    for s in series:
        print("OPS python_ask %s %d" % (s, reps * (rounds + WARMUP)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
