#!/usr/bin/env python3
"""make_broker_vectors.py - writes the broker protocol's test vectors.

Every vector is one command frame (the first frame of a message,
protocols/2-broker.md 2.1), written byte by byte from the specification
and the msgpack specification, with no msgpack library. The msgpack
helpers are those of make_envelope_vectors.py, which writes the same way.
The output is:

    protocols/vectors/broker/*.bin    one command frame (or non-frame) each
    protocols/vectors/broker.txt      the manifest: what a reader must say

Run it from anywhere; it writes next to itself. The output is a pure
function of this file: re-running it reproduces the same bytes, and .bin
files that are no longer listed are removed.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True         # no __pycache__ among the vectors
from make_envelope_vectors import (     # noqa: E402  (msgpack by hand)
    U64_MAX, uint, sint, fixstr, str8, str16, str32, mstr, bin8,
    u8, u16, u32, u64, i8, i16, i32, i64, array_header, map_header,
    nested_arrays, NIL, FALSE, TRUE, float32, float64)

OUT_DIR = os.path.join(HERE, "broker")
MANIFEST = os.path.join(HERE, "broker.txt")

I32_MIN = -(1 << 31)


# ---------------------------------------------------------------------------
#  Values and frames

def s(text):
    """A str, shortest form, from a Python str or bytes."""
    return mstr(text.encode() if isinstance(text, str) else text)

def frame(verb, seq, *args, count=None):
    """[VERB, SEQ, ARG...] in canonical form; each arg is already bytes.
    verb and seq may also be given as bytes to write them some other
    way; count overrides the array's element count."""
    head = s(verb) if isinstance(verb, str) else verb
    seq = uint(seq) if isinstance(seq, int) else seq
    n = 2 + len(args) if count is None else count
    return array_header(n) + head + seq + b"".join(args)

def smap(pairs):
    """A map with str keys, in the order given."""
    return map_header(len(pairs)) + b"".join(s(k) + v for k, v in pairs)

def arr(*items):
    return array_header(len(items)) + b"".join(items)


# ---------------------------------------------------------------------------
#  Reading back, just enough to judge the canonical form: every integer,
#  str, array and map header in its shortest form (the C writer's
#  tr__wire_uint, _int, _str, _array, _map). Other values (nil, bools,
#  floats, bin, ext) are kept as written.

class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise IndexError("truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def be(self, n):
        return int.from_bytes(self.take(n), "big")

    def value(self):
        """The next value, re-encoded in canonical form."""
        start = self.pos
        t = self.be(1)
        if t <= 0x7f:
            return uint(t)
        if t >= 0xe0:
            return sint(t - 0x100)
        if 0x80 <= t <= 0x8f:
            return self.container(t & 0x0f, 2, map_header)
        if 0x90 <= t <= 0x9f:
            return self.container(t & 0x0f, 1, array_header)
        if 0xa0 <= t <= 0xbf:
            return mstr(self.take(t & 0x1f))
        if 0xcc <= t <= 0xcf:
            return uint(self.be(1 << (t - 0xcc)))
        if 0xd0 <= t <= 0xd3:
            width = 1 << (t - 0xd0)
            v = self.be(width)
            if v >= 1 << (8 * width - 1):
                v -= 1 << (8 * width)
            return sint(v)
        if 0xd9 <= t <= 0xdb:
            return mstr(self.take(self.be(1 << (t - 0xd9))))
        if t in (0xdc, 0xdd):
            return self.container(self.be(2 if t == 0xdc else 4), 1, array_header)
        if t in (0xde, 0xdf):
            return self.container(self.be(2 if t == 0xde else 4), 2, map_header)
        #  Kept as written.
        if t in (0xc0, 0xc2, 0xc3):
            pass
        elif t in (0xca, 0xcb):
            self.take(4 if t == 0xca else 8)
        elif t in (0xc4, 0xc5, 0xc6):
            self.take(self.be(1 << (t - 0xc4)))
        elif t in (0xc7, 0xc8, 0xc9):
            self.take(self.be(1 << (t - 0xc7)) + 1)
        elif 0xd4 <= t <= 0xd8:
            self.take(1 + (1 << (t - 0xd4)))
        else:
            raise ValueError("byte 0x%02x" % t)
        return self.data[start:self.pos]

    def container(self, n, per, header):
        return header(n) + b"".join(self.value() for _ in range(n * per))

def is_canonical(data):
    r = _Reader(data)
    return r.value() == data and r.pos == len(data)


# ---------------------------------------------------------------------------
#  The vectors

VECTORS = []        # (name, result, canonical or None, data, comment)

def ok(name, comment, data, verb, seq, nargs):
    VECTORS.append((name, "ok %s %d %d" % (verb, seq, nargs),
                    is_canonical(data), data, comment))

def bad(name, comment, data, code="TR_EMALFORMED"):
    VECTORS.append((name, "error " + code, None, data, comment))

#  One canonical frame of every verb, as 2.3 and 2.4 give it.
HELLO = ["TRP", 1, 0, "node-1", "node", 1000]
def hello(*args):
    """HELLO's arguments as bytes; pass Python values (str/int) or bytes."""
    return [a if isinstance(a, bytes) else (s(a) if isinstance(a, str) else uint(a))
            for a in args]

LIMITS = smap([("max_frame", uint(17825792)), ("max_names", uint(100000)),
               ("max_subs", uint(10000)), ("max_key", uint(1024)),
               ("max_value", uint(1048576)), ("max_list", uint(100000)),
               ("max_queue", uint(10000)), ("max_batch", uint(256))])

#  (file name, verb, seq, args, comment): the canonical frames.
CANONICAL = [
    ("hello", "HELLO", 1, hello(*HELLO),
     "a node greets: TRP 1.0, node id node-1, heartbeat 1000 ms"),
    ("hello-1-1", "HELLO", 1, hello("TRP", 1, 1, "node-1", "node", 1000),
     "a node greets: TRP 1.1 (SENDS, DELIVERS), node id node-1, heartbeat 1000 ms"),
    ("ok-welcome", "OK", 1,
     [s("TRP"), uint(1), uint(1), s("broker-1"), uint(1000), LIMITS],
     "the broker's answer to HELLO 1.1, with every limit of 2.6 at its default"),
    ("ok", "OK", 7, [], "a plain OK (REGISTER, UNREGISTER, SUB, ...)"),
    ("ok-version", "OK", 8, [uint(42)], "OK to KV_PUT, KV_CAS or KV_DEL: version 42"),
    ("ok-nodes", "OK", 9,
     [arr(smap([("id", s("node-1")), ("kind", s("node")), ("names", uint(3)),
                ("age_ms", uint(1500))]),
          smap([("id", s("cli")), ("kind", s("client")), ("names", uint(0)),
                ("age_ms", uint(20))]))],
     "OK to NODES: two clients"),
    ("ok-kv-get", "OK", 10, [smap([("n", uint(1))]), uint(17), uint(0)],
     "OK to KV_GET: value {\"n\": 1}, version 17, no expiry"),
    ("ok-kv-list", "OK", 11, [arr(arr(s("cfg/a"), uint(3)), arr(s("cfg/b"), uint(5)))],
     "OK to KV_LIST: two keys with their versions"),
    ("ok-kv-snapshot", "OK", 12,
     [uint(5), arr(arr(s("cfg/a"), uint(3), s("x")), arr(s("cfg/b"), uint(5), NIL))],
     "OK to KV_SNAPSHOT: at version 5, two keys with versions and values"),
    ("error", "ERROR", 7, [sint(-4), s("name already registered")],
     "ERROR TR_EEXIST (-4) to request 7"),
    ("error-malformed-seq-0", "ERROR", 0, [sint(-12), s("malformed input")],
     "ERROR TR_EMALFORMED (-12) with SEQ 0: the request's SEQ could not be read"),
    ("register", "REGISTER", 2, [s("pong")], "register the name pong"),
    ("unregister", "UNREGISTER", 3, [s("pong")], "unregister the name pong"),
    ("send", "SEND", 0, [s("pong")], "route the envelope in the payload to pong"),
    ("deliver", "DELIVER", 0, [], "the broker delivers the envelope in the payload"),
    ("bounce", "BOUNCE", 0, [s("pong"), sint(-3)],
     "the broker bounces an envelope: no client holds pong (TR_ENOACTOR)"),
    ("sends", "SENDS", 0, [arr(s("pong"), s("ping"), s("pong")), arr(uint(40), uint(38), uint(41))],
     "route three envelopes, one after another in the payload (40, 38 and 41 bytes), "
     "to pong, ping and pong"),
    ("sends-one", "SENDS", 0, [arr(s("pong")), arr(uint(300))],
     "route one envelope of 300 bytes to pong"),
    ("delivers", "DELIVERS", 0, [arr(uint(40), uint(41))],
     "the broker delivers two envelopes (40 and 41 bytes) in the payload"),
    ("pubs", "PUBS", 0, [arr(s("app.order.placed"), s("app.order.paid")), arr(uint(12), uint(1))],
     "publish two events: bodies of 12 bytes and of 1 byte (nil) one after another"),
    ("events", "EVENTS", 0, [s("node-1"), arr(s("app.order.placed"), s("app.order.paid")),
                             arr(uint(12), uint(1))],
     "two events from node-1, bodies one after another in the payload"),
    ("events-dropped", "EVENTS", 0, [s("node-1"), arr(s("app.a")), arr(uint(3)), uint(7)],
     "one event from node-1, 7 events dropped before it (DROPPED)"),
    ("multi", "MULTI", 0, [arr(uint(12), uint(18)), arr(uint(0), uint(64))],
     "two messages in one: a command frame of 12 bytes without a payload, then one "
     "of 18 bytes with a payload of 64"),
    ("nodes", "NODES", 4, [], "list the connected clients"),
    ("heartbeat", "HEARTBEAT", 0, [], "a heartbeat"),
    ("bye", "BYE", 0, [], "the client leaves"),
    ("node-down", "NODE_DOWN", 0, [s("node-1"), arr(s("pong"), s("ping"))],
     "node-1 went down holding pong and ping"),
    ("node-down-no-names", "NODE_DOWN", 0, [s("node-2"), arr()],
     "node-2 went down holding no names"),
    ("sub", "SUB", 5, [s("sys.")], "subscribe to the topics under sys."),
    ("sub-all", "SUB", 6, [s("")], "subscribe to every topic (prefix \"\")"),
    ("unsub", "UNSUB", 7, [s("sys.")], "unsubscribe from sys."),
    ("pub", "PUB", 0, [s("app.order.placed")], "publish the event in the payload"),
    ("event", "EVENT", 0, [s("app.order.placed"), s("node-1")],
     "an event from node-1, body in the payload"),
    ("event-dropped", "EVENT", 0, [s("app.order.placed"), s("node-1"), uint(12)],
     "an event, 12 events dropped before it (DROPPED)"),
    ("kv-get", "KV_GET", 8, [s("cfg/a")], "read key cfg/a"),
    ("kv-put", "KV_PUT", 9, [s("cfg/a"), uint(0)],
     "write key cfg/a (value in the payload), no expiry"),
    ("kv-put-ttl", "KV_PUT", 10, [s("lock/x"), uint(30000)],
     "write key lock/x, expiring in 30 s"),
    ("kv-cas", "KV_CAS", 11, [s("cfg/a"), uint(17), uint(0)],
     "write cfg/a only if its version is 17"),
    ("kv-cas-create", "KV_CAS", 12, [s("cfg/new"), uint(0), uint(5000)],
     "create cfg/new only if it does not exist (EXPECTED 0), TTL 5 s"),
    ("kv-del", "KV_DEL", 13, [s("cfg/a")], "delete cfg/a"),
    ("kv-list", "KV_LIST", 14, [s("cfg/")], "list the keys under cfg/"),
    ("kv-list-all", "KV_LIST", 15, [s("")], "list every key (prefix \"\")"),
    ("kv-snapshot", "KV_SNAPSHOT", 16, [s("cfg/")], "snapshot the keys under cfg/"),
    ("kv-watch", "KV_WATCH", 17, [s("cfg/"), uint(5)], "watch cfg/ from version 5"),
    ("kv-watch-now", "KV_WATCH", 18, [s("cfg/"), uint(0)], "watch cfg/ from now (FROM 0)"),
    ("kv-unwatch", "KV_UNWATCH", 19, [s("cfg/")], "stop watching cfg/"),
    ("kv-change", "KV_CHANGE", 0, [s("cfg/"), s("cfg/a"), uint(18)],
     "cfg/a changed (version 18, value in the payload)"),
    ("kv-resync", "KV_RESYNC", 0, [s("cfg/")], "the watch on cfg/ ended: snapshot again"),
]

def vectors_canonical():
    for name, verb, seq, args, comment in CANONICAL:
        ok("ok-" + name, comment, frame(verb, seq, *args), verb, seq, len(args))

    #  Boundaries of the values.
    ok("ok-hello-actor", "HELLO of kind actor, heartbeat 100 (the least)",
       frame("HELLO", 1, *hello("TRP", 1, 0, "py-agent", "actor", 100)), "HELLO", 1, 6)
    ok("ok-hello-client", "HELLO of kind client, heartbeat 60000 (the most)",
       frame("HELLO", 1, *hello("TRP", 1, 0, "cli:4242", "client", 60000)), "HELLO", 1, 6)
    ok("ok-hello-minor-9", "HELLO speaking 1.9: a newer minor is accepted",
       frame("HELLO", 1, *hello("TRP", 1, 9, "node-1", "node", 1000)), "HELLO", 1, 6)
    ok("ok-seq-max", "SEQ 2^64-1 (uint 64)", frame("NODES", U64_MAX), "NODES", U64_MAX, 0)
    ok("ok-seq-0-request", "a request with SEQ 0: the codec does not judge SEQ",
       frame("REGISTER", 0, s("pong")), "REGISTER", 0, 1)
    ok("ok-seq-128", "SEQ 128 (uint 8)", frame("NODES", 128), "NODES", 128, 0)
    ok("ok-name-255", "REGISTER a 255-byte name, the longest",
       frame("REGISTER", 2, s("n" * 255)), "REGISTER", 2, 1)
    ok("ok-name-utf8", "REGISTER a name of 2-, 3- and 4-byte UTF-8",
       frame("REGISTER", 2, s("akt\u00f6r-\u65e5\U0001f600")), "REGISTER", 2, 1)
    ok("ok-name-punct", "REGISTER a name of printable ASCII but space",
       frame("REGISTER", 2, s("$rt/a=b#c~!\"'\\")), "REGISTER", 2, 1)
    ok("ok-key-1024", "KV_GET a 1024-byte key, the longest (str 16)",
       frame("KV_GET", 8, s("k" * 1024)), "KV_GET", 8, 1)
    ok("ok-key-1", "KV_GET a 1-byte key", frame("KV_GET", 8, s("k")), "KV_GET", 8, 1)
    ok("ok-topic-255", "PUB a 255-byte topic, the longest",
       frame("PUB", 0, s("t" * 255)), "PUB", 0, 1)
    ok("ok-sub-prefix-255", "SUB a 255-byte prefix, the longest",
       frame("SUB", 5, s("p" * 255)), "SUB", 5, 1)
    ok("ok-kv-prefix-1024", "KV_WATCH a 1024-byte prefix, the longest",
       frame("KV_WATCH", 17, s("p" * 1024), uint(0)), "KV_WATCH", 17, 2)
    ok("ok-kv-change-u64", "KV_CHANGE with version 2^64-1",
       frame("KV_CHANGE", 0, s(""), s("k"), u64(U64_MAX)), "KV_CHANGE", 0, 3)
    ok("ok-error-int32-min", "ERROR with code -2^31 (int 32), the least",
       frame("ERROR", 3, i32(I32_MIN), s("")), "ERROR", 3, 2)
    ok("ok-error-app-code", "ERROR with an application code -1000 (int 16)",
       frame("ERROR", 3, sint(-1000), s("quota")), "ERROR", 3, 2)
    ok("ok-error-unknown-code", "ERROR with a code this version does not know (-99)",
       frame("ERROR", 3, sint(-99), s("later")), "ERROR", 3, 2)
    deep_value = nested_arrays(32, b"\x01")
    ok("ok-ok-depth-34", "OK to KV_SNAPSHOT whose value nests 32 deep: the "
       "argument nests 34 deep, the limit",
       frame("OK", 12, uint(5), arr(arr(s("k"), uint(1), deep_value))), "OK", 12, 2)


def vectors_noncanonical():
    reg = [s("pong")]
    ok("ok-seq-uint8", "SEQ 5 as uint 8", frame("REGISTER", u8(5), *reg), "REGISTER", 5, 1)
    ok("ok-seq-uint16", "SEQ 5 as uint 16", frame("REGISTER", u16(5), *reg), "REGISTER", 5, 1)
    ok("ok-seq-uint32", "SEQ 5 as uint 32", frame("REGISTER", u32(5), *reg), "REGISTER", 5, 1)
    ok("ok-seq-uint64", "SEQ 5 as uint 64", frame("REGISTER", u64(5), *reg), "REGISTER", 5, 1)
    ok("ok-seq-int8", "SEQ 5 as int 8 (a non-negative int is a uint)",
       frame("REGISTER", i8(5), *reg), "REGISTER", 5, 1)
    ok("ok-seq-int64", "SEQ 2^63-1 as int 64",
       frame("REGISTER", i64((1 << 63) - 1), *reg), "REGISTER", (1 << 63) - 1, 1)
    ok("ok-seq-int16-0", "SEQ 0 as int 16", frame("SEND", i16(0), *reg), "SEND", 0, 1)
    ok("ok-verb-str8", "the verb as str 8", frame(str8(b"REGISTER"), 2, *reg),
       "REGISTER", 2, 1)
    ok("ok-verb-str16", "the verb as str 16", frame(str16(b"REGISTER"), 2, *reg),
       "REGISTER", 2, 1)
    ok("ok-verb-str32", "the verb as str 32", frame(str32(b"REGISTER"), 2, *reg),
       "REGISTER", 2, 1)
    body = fixstr(b"REGISTER") + uint(2) + s("pong")
    ok("ok-array16", "the frame as array 16", b"\xdc\x00\x03" + body, "REGISTER", 2, 1)
    ok("ok-array32", "the frame as array 32", b"\xdd\x00\x00\x00\x03" + body,
       "REGISTER", 2, 1)
    ok("ok-name-str8", "the name as str 8", frame("REGISTER", 2, str8(b"pong")),
       "REGISTER", 2, 1)
    ok("ok-name-str32", "the name as str 32", frame("REGISTER", 2, str32(b"pong")),
       "REGISTER", 2, 1)
    ok("ok-error-code-int8", "ERROR code -4 as int 8",
       frame("ERROR", 7, i8(-4), s("taken")), "ERROR", 7, 2)
    ok("ok-error-code-int64", "ERROR code -4 as int 64",
       frame("ERROR", 7, i64(-4), s("taken")), "ERROR", 7, 2)
    ok("ok-bounce-code-int32", "BOUNCE code -5 as int 32",
       frame("BOUNCE", 0, s("pong"), i32(-5)), "BOUNCE", 0, 2)
    ok("ok-hello-uint64s", "HELLO with MAJOR, MINOR and HEARTBEAT_MS as uint 64",
       frame("HELLO", 1, *hello("TRP", u64(1), u64(0), "node-1", "node", u64(1000))),
       "HELLO", 1, 6)
    ok("ok-hello-int-major", "HELLO with MAJOR as int 8",
       frame("HELLO", 1, *hello("TRP", i8(1), 0, "node-1", "node", 1000)), "HELLO", 1, 6)
    ok("ok-kv-cas-uint16", "KV_CAS with EXPECTED and TTL_MS as uint 16",
       frame("KV_CAS", 11, s("cfg/a"), u16(17), u16(0)), "KV_CAS", 11, 3)
    ok("ok-sub-empty-str8", "SUB \"\" as str 8", frame("SUB", 6, str8(b"")), "SUB", 6, 1)
    ok("ok-node-down-array16", "NODE_DOWN's names as array 16",
       frame("NODE_DOWN", 0, s("node-1"), b"\xdc\x00\x01" + s("pong")),
       "NODE_DOWN", 0, 2)

    #  Arguments past those this version knows (2.8).
    ok("ok-extra-nil", "REGISTER with an extra nil argument",
       frame("REGISTER", 2, s("pong"), NIL), "REGISTER", 2, 2)
    ok("ok-extra-many", "REGISTER with extra arguments of every family",
       frame("REGISTER", 2, s("pong"), TRUE, FALSE, float32(1.5), float64(-2.0),
             bin8(b"\x00\xc1"), b"\xd4\x01\x02", b"\xc7\x01\x05x",
             smap([("opt", arr(uint(1), NIL))]), sint(-7), u64(U64_MAX)),
       "REGISTER", 2, 11)
    ok("ok-extra-heartbeat", "HEARTBEAT with an extra map (a later minor's field)",
       frame("HEARTBEAT", 0, smap([("load", uint(3))])), "HEARTBEAT", 0, 1)
    ok("ok-extra-hello", "HELLO with a seventh argument",
       frame("HELLO", 1, *hello(*HELLO), s("features")), "HELLO", 1, 7)
    ok("ok-extra-event", "EVENT with DROPPED and one argument more",
       frame("EVENT", 0, s("a.b"), s("node-1"), uint(0), NIL), "EVENT", 0, 4)
    ok("ok-extra-error", "ERROR with a third argument (details)",
       frame("ERROR", 7, sint(-1), s("bad"), smap([("arg", uint(1))])), "ERROR", 7, 3)
    ok("ok-extra-depth-34", "KV_GET with an extra argument nested 34 deep (the limit)",
       frame("KV_GET", 8, s("k"), nested_arrays(34)), "KV_GET", 8, 2)
    ok("ok-extra-str-any", "an extra str that is not a name is not judged",
       frame("REGISTER", 2, s("pong"), s("has space \x01")), "REGISTER", 2, 2)


def vectors_structure():
    reg = frame("REGISTER", 2, s("pong"))
    bad("bad-empty", "an empty frame", b"")
    bad("bad-not-array-map", "a map, not an array", smap([("REGISTER", uint(2))]))
    bad("bad-not-array-nil", "nil", NIL)
    bad("bad-not-array-int", "an integer", uint(1))
    bad("bad-not-array-str", "the verb alone, not in an array", s("HEARTBEAT"))
    bad("bad-not-array-bin", "a bin holding a frame", bin8(reg))
    bad("bad-c1", "the byte 0xc1 (never used in msgpack)", b"\xc1")
    bad("bad-empty-array", "an empty array", arr())
    bad("bad-verb-only", "[VERB] without SEQ", arr(s("HEARTBEAT")))
    bad("bad-seq-only", "[SEQ] without a verb", arr(uint(0)))
    bad("bad-verb-int", "the verb as an integer", frame(uint(1), 2, s("pong")))
    bad("bad-verb-bin", "the verb as bin (bin is not a str)",
        frame(bin8(b"REGISTER"), 2, s("pong")))
    bad("bad-verb-nil", "the verb nil", frame(NIL, 2))
    bad("bad-verb-array", "the verb inside an array", frame(arr(s("REGISTER")), 2))
    bad("bad-verb-c1", "0xc1 where the verb starts", frame(b"\xc1", 2))
    bad("bad-verb-empty", "the verb \"\"", frame(s(""), 2))
    bad("bad-verb-33", "a verb of 33 bytes (the limit is 32)", frame(s("V" * 33), 2))
    bad("bad-verb-long", "a verb of 300 bytes", frame(s("V" * 300), 2))
    bad("bad-verb-str32-huge", "a verb claiming 2^32-1 bytes",
        b"\x92\xdb\xff\xff\xff\xffREGISTER\x02")
    bad("bad-seq-str", "SEQ as a str", frame("REGISTER", s("2"), s("pong")))
    bad("bad-seq-nil", "SEQ nil", frame("REGISTER", NIL, s("pong")))
    bad("bad-seq-negative", "SEQ -1 (negative fixint)", frame("REGISTER", b"\xff", s("pong")))
    bad("bad-seq-negative-int8", "SEQ -1 as int 8", frame("REGISTER", i8(-1), s("pong")))
    bad("bad-seq-int64-min", "SEQ -2^63", frame("REGISTER", i64(-(1 << 63)), s("pong")))
    bad("bad-seq-float", "SEQ 2.0 as float 64", frame("REGISTER", float64(2.0), s("pong")))
    bad("bad-seq-true", "SEQ true", frame("REGISTER", TRUE, s("pong")))
    bad("bad-seq-array", "SEQ as an array", frame("REGISTER", arr(uint(2)), s("pong")))
    bad("bad-seq-truncated", "SEQ a uint 64 cut after 3 bytes",
        b"\x92" + s("NODES") + b"\xcf\x00\x00\x00")
    bad("bad-count-fixarray", "a fixarray of 15 elements holding 3",
        b"\x9f" + reg[1:])
    bad("bad-count-array16", "an array 16 of 65535 elements holding 3",
        b"\xdc\xff\xff" + reg[1:])
    bad("bad-count-array32", "an array 32 of 2^32-1 elements holding 3 "
        "(5 bytes asking for gigabytes)", b"\xdd\xff\xff\xff\xff" + reg[1:])
    bad("bad-count-too-small", "an array of 2 holding 3: the name trails",
        b"\x92" + reg[1:])
    bad("bad-trailing-byte", "one byte after the frame", reg + b"\x00")
    bad("bad-trailing-nil", "nil after the frame", reg + NIL)
    bad("bad-trailing-frame", "a second frame after the first", reg + reg)
    bad("bad-trailing-c1", "0xc1 after the frame", reg + b"\xc1")
    bad("bad-trailing-unknown-verb", "an unknown verb with a byte after the frame: "
        "the frame's form is judged first", frame("FROB", 1) + b"\x00")
    bad("bad-arg-c1", "0xc1 as an extra argument", frame("REGISTER", 2, s("pong"), b"\xc1"))
    bad("bad-arg-c1-nested", "0xc1 inside an extra array",
        frame("REGISTER", 2, s("pong"), b"\x92\x01\xc1"))
    bad("bad-arg-str32-huge", "an extra str claiming 2^32-1 bytes",
        frame("REGISTER", 2, s("pong"), b"\xdb\xff\xff\xff\xffabc"))
    bad("bad-arg-map32-huge", "an extra map 32 of 2^32-1 pairs",
        frame("REGISTER", 2, s("pong"), b"\xdf\xff\xff\xff\xff\x01\x02"))
    bad("bad-arg-fixext-short", "an extra fixext 16 with 15 data bytes",
        frame("REGISTER", 2, s("pong"), b"\xd8\x01" + b"\x00" * 15))
    bad("bad-arg-missing", "an array of 4 holding 3: the last argument is missing",
        frame("REGISTER", 2, s("pong"), count=4))
    bad("bad-depth-35", "an extra argument nested 35 deep (the limit is 34)",
        frame("KV_GET", 8, s("k"), nested_arrays(35)))
    bad("bad-depth-35-maps", "an extra argument of maps nested 35 deep",
        frame("KV_GET", 8, s("k"), b"\x81\x00" * 34 + b"\x80"))
    bad("bad-depth-ok-answer", "OK to KV_SNAPSHOT whose value nests 33 deep: "
        "the argument nests 35 deep",
        frame("OK", 12, uint(5), arr(arr(s("k"), uint(1), nested_arrays(33, b"\x01")))))
    bad("bad-depth-huge", "an extra argument of 10,000 nested arrays",
        frame("KV_GET", 8, s("k"), b"\x91" * 9999 + b"\x90"))

    #  Every cut of a few frames is malformed: the array's count is never met.
    cuts = [("hello", frame("HELLO", 1, *hello(*HELLO))),
            ("kv-cas", frame("KV_CAS", 300, s("cfg/a"), uint(70000), uint(0))),
            ("node-down", frame("NODE_DOWN", 0, s("node-1"), arr(s("pong"), s("ping")))),
            ("error", frame("ERROR", 65536, i16(-12), s("malformed")))]
    for name, data in cuts:
        for cut in range(len(data)):
            bad("bad-cut-%s-%d" % (name, cut),
                "%s cut to %d of its %d bytes" % (name.upper(), cut, len(data)),
                data[:cut])


def vectors_unknown():
    bad("unknown-verb", "an unknown verb FROB: read, then refused as unknown",
        frame("FROB", 5), "TR_EINVAL")
    bad("unknown-verb-args", "an unknown verb with arguments",
        frame("KV_INCR", 5, s("cfg/a"), uint(1)), "TR_EINVAL")
    bad("unknown-verb-lower", "register in lower case (verbs are case-sensitive)",
        frame("register", 5, s("pong")), "TR_EINVAL")
    bad("unknown-verb-prefix", "HELL, a prefix of HELLO", frame("HELL", 5), "TR_EINVAL")
    bad("unknown-verb-longer", "HELLOS, HELLO with a letter more", frame("HELLOS", 5),
        "TR_EINVAL")
    bad("unknown-verb-32", "a verb of 32 bytes (the longest read)",
        frame("V" * 32, 5), "TR_EINVAL")
    bad("unknown-verb-space", "a verb with a trailing space", frame("OK ", 5), "TR_EINVAL")
    bad("unknown-verb-nul", "OK followed by a NUL byte", frame(b"\xa3OK\x00", 5),
        "TR_EINVAL")
    bad("unknown-verb-utf8", "a verb in UTF-8", frame("H\u00c9LLO", 5), "TR_EINVAL")


#  Wrong types: for each verb, the canonical frame with one argument
#  replaced. The second value list is the wrong values tried.
NOT_UINT = [("str", s("5")), ("negative", b"\xff"), ("nil", NIL), ("float", float64(5.0)),
            ("bool", TRUE)]
NOT_STR = [("int", uint(4)), ("bin", bin8(b"pong")), ("nil", NIL), ("array", arr(s("pong")))]
NOT_CODE = [("zero", uint(0)), ("positive", uint(3)), ("str", s("-4")),
            ("below-int32", i64(I32_MIN - 1)), ("nil", NIL)]
KIND_OF = {"A_UINT": NOT_UINT, "A_STR": NOT_STR, "A_CODE": NOT_CODE}

#  The type of each argument of each verb, as 2.4 gives it (HELLO's first
#  two are tested on their own, as their errors differ).
SCHEMA = {
    "ERROR": ["A_CODE", "A_STR"],
    "REGISTER": ["A_STR"], "UNREGISTER": ["A_STR"], "SEND": ["A_STR"],
    "SENDS": ["A_NAMES", "A_SIZES"], "DELIVERS": ["A_SIZES"],
    "PUBS": ["A_TOPICS", "A_SIZES"], "EVENTS": ["A_STR", "A_TOPICS", "A_SIZES", "A_UINT"],
    "MULTI": ["A_SIZES", "A_UINTS"],
    "BOUNCE": ["A_STR", "A_CODE"],
    "NODE_DOWN": ["A_STR", "A_NAMES"],
    "SUB": ["A_STR"], "UNSUB": ["A_STR"], "PUB": ["A_STR"],
    "EVENT": ["A_STR", "A_STR", "A_UINT"],
    "KV_GET": ["A_STR"], "KV_PUT": ["A_STR", "A_UINT"],
    "KV_CAS": ["A_STR", "A_UINT", "A_UINT"], "KV_DEL": ["A_STR"],
    "KV_LIST": ["A_STR"], "KV_SNAPSHOT": ["A_STR"], "KV_WATCH": ["A_STR", "A_UINT"],
    "KV_UNWATCH": ["A_STR"], "KV_CHANGE": ["A_STR", "A_STR", "A_UINT"],
    "KV_RESYNC": ["A_STR"],
}

def canonical_of(verb):
    """The first canonical frame of verb with the most arguments."""
    best = None
    for name, v, seq, args, comment in CANONICAL:
        if v == verb and (best is None or len(args) > len(best[1])):
            best = (seq, args)
    return best

def vectors_types():
    for verb, types in SCHEMA.items():
        seq, args = canonical_of(verb)
        slug = verb.lower().replace("_", "-")
        for i, t in enumerate(types):
            if t in ("A_NAMES", "A_SIZES", "A_TOPICS", "A_UINTS"):
                continue
            for what, value in KIND_OF[t]:
                wrong = list(args)
                wrong[i] = value
                bad("bad-type-%s-arg%d-%s" % (slug, i + 1, what),
                    "%s with argument %d (%s) as %s" % (verb, i + 1, t[2:].lower(), what),
                    frame(verb, seq, *wrong))
        required = len(types) - (1 if verb in ("EVENT", "EVENTS") else 0)
        for n in range(required):
            bad("bad-missing-%s-%d" % (slug, n), "%s with %d of its %d arguments"
                % (verb, n, required), frame(verb, seq, *args[:n]))

    nd = [s("node-1")]
    bad("bad-type-node-down-names-str", "NODE_DOWN's names as a str, not an array",
        frame("NODE_DOWN", 0, *nd, s("pong")))
    bad("bad-type-node-down-names-map", "NODE_DOWN's names as a map",
        frame("NODE_DOWN", 0, *nd, smap([("pong", NIL)])))
    bad("bad-type-node-down-names-int", "NODE_DOWN's names holding an integer",
        frame("NODE_DOWN", 0, *nd, arr(s("pong"), uint(1))))
    bad("bad-type-node-down-names-nested", "NODE_DOWN's names holding an array",
        frame("NODE_DOWN", 0, *nd, arr(arr(s("pong")))))
    bad("bad-type-node-down-names-bin", "NODE_DOWN's names holding a bin",
        frame("NODE_DOWN", 0, *nd, arr(bin8(b"pong"))))
    names, sizes = arr(s("pong")), arr(uint(40))
    bad("bad-type-sends-names-str", "SENDS's names as a str, not an array",
        frame("SENDS", 0, s("pong"), sizes))
    bad("bad-type-sends-names-int", "SENDS's names holding an integer",
        frame("SENDS", 0, arr(uint(1)), sizes))
    bad("bad-type-sends-sizes-uint", "SENDS's sizes as a uint, not an array",
        frame("SENDS", 0, names, uint(40)))
    bad("bad-type-sends-sizes-str", "SENDS's sizes holding a str",
        frame("SENDS", 0, names, arr(s("40"))))
    bad("bad-type-sends-sizes-negative", "SENDS's sizes holding -1",
        frame("SENDS", 0, names, arr(b"\xff")))
    bad("bad-type-delivers-sizes-map", "DELIVERS's sizes as a map",
        frame("DELIVERS", 0, smap([("a", uint(1))])))
    bad("bad-type-delivers-sizes-nil", "DELIVERS's sizes holding nil",
        frame("DELIVERS", 0, arr(uint(3), NIL)))
    bad("bad-type-pubs-topics-str", "PUBS's topics as a str, not an array",
        frame("PUBS", 0, s("a.b"), sizes))
    bad("bad-type-pubs-topics-bin", "PUBS's topics holding a bin",
        frame("PUBS", 0, arr(bin8(b"a.b")), sizes))
    bad("bad-type-events-sizes-str", "EVENTS's sizes holding a str",
        frame("EVENTS", 0, s("node-1"), arr(s("a.b")), arr(s("3"))))
    bad("bad-type-multi-sizes-str", "MULTI's command sizes holding a str",
        frame("MULTI", 0, arr(s("12")), arr(uint(0))))
    bad("bad-type-multi-payloads-negative", "MULTI's payload sizes holding -1",
        frame("MULTI", 0, arr(uint(12)), arr(b"\xff")))
    bad("bad-type-multi-payloads-map", "MULTI's payload sizes as a map",
        frame("MULTI", 0, arr(uint(12)), smap([("a", uint(0))])))
    bad("bad-type-before-value", "KV_PUT with a bad key and TTL_MS a str: "
        "form is judged before values",
        frame("KV_PUT", 9, s("bad key"), s("0")))


def vectors_hello():
    def h(*args):
        return frame("HELLO", 1, *hello(*args))
    bad("bad-hello-no-args", "HELLO with no arguments: no signature",
        frame("HELLO", 1), "TR_EPROTO")
    bad("bad-hello-signature", "HELLO with the signature TRQ",
        h("TRQ", 1, 0, "node-1", "node", 1000), "TR_EPROTO")
    bad("bad-hello-signature-lower", "HELLO with the signature trp",
        h("trp", 1, 0, "node-1", "node", 1000), "TR_EPROTO")
    bad("bad-hello-signature-bin", "HELLO with the signature as bin",
        h(bin8(b"TRP"), 1, 0, "node-1", "node", 1000), "TR_EPROTO")
    bad("bad-hello-signature-int", "HELLO with the signature as an integer",
        h(1, 1, 0, "node-1", "node", 1000), "TR_EPROTO")
    bad("bad-hello-signature-only", "HELLO with the signature and nothing else",
        h("TRP"))
    bad("bad-hello-major-str", "HELLO with MAJOR as a str", h("TRP", "1", 0, "n", "node", 1000))
    bad("bad-hello-major-negative", "HELLO with MAJOR -1",
        h("TRP", b"\xff", 0, "n", "node", 1000))
    bad("bad-hello-major-2", "HELLO speaking 2.0", h("TRP", 2, 0, "node-1", "node", 1000),
        "TR_EVERSION")
    bad("bad-hello-major-0", "HELLO speaking 0.9", h("TRP", 0, 9, "node-1", "node", 1000),
        "TR_EVERSION")
    bad("bad-hello-major-2-other", "HELLO 2.0 with arguments of other types: the "
        "version is judged first", h("TRP", 2, s("x"), NIL), "TR_EVERSION")
    bad("bad-hello-major-2-only", "HELLO 2.0 with nothing after MAJOR", h("TRP", 2),
        "TR_EVERSION")
    bad("bad-hello-major-2-trailing", "HELLO 2.0 with a byte after the frame: the "
        "frame's form comes first", h("TRP", 2) + b"\x00")
    bad("bad-hello-5-args", "HELLO without HEARTBEAT_MS", h("TRP", 1, 0, "node-1", "node"))
    bad("bad-hello-minor-str", "HELLO with MINOR as a str",
        h("TRP", 1, "0", "node-1", "node", 1000))
    bad("bad-hello-node-id-int", "HELLO with NODE_ID an integer",
        h("TRP", 1, 0, 7, "node", 1000))
    bad("bad-hello-kind-nil", "HELLO with KIND nil", h("TRP", 1, 0, "node-1", NIL, 1000))
    bad("bad-hello-heartbeat-str", "HELLO with HEARTBEAT_MS a str",
        h("TRP", 1, 0, "node-1", "node", "1000"))
    bad("bad-hello-heartbeat-negative", "HELLO with HEARTBEAT_MS -1000",
        h("TRP", 1, 0, "node-1", "node", sint(-1000)))
    inval = [("node-id-empty", "NODE_ID \"\"", ("TRP", 1, 0, "", "node", 1000)),
             ("node-id-space", "NODE_ID with a space", ("TRP", 1, 0, "node 1", "node", 1000)),
             ("node-id-256", "NODE_ID of 256 bytes", ("TRP", 1, 0, "n" * 256, "node", 1000)),
             ("kind-nodes", "KIND nodes", ("TRP", 1, 0, "node-1", "nodes", 1000)),
             ("kind-upper", "KIND NODE", ("TRP", 1, 0, "node-1", "NODE", 1000)),
             ("kind-empty", "KIND \"\"", ("TRP", 1, 0, "node-1", "", 1000)),
             ("heartbeat-99", "HEARTBEAT_MS 99", ("TRP", 1, 0, "node-1", "node", 99)),
             ("heartbeat-60001", "HEARTBEAT_MS 60001",
              ("TRP", 1, 0, "node-1", "node", 60001)),
             ("heartbeat-0", "HEARTBEAT_MS 0", ("TRP", 1, 0, "node-1", "node", 0)),
             ("heartbeat-u64-max", "HEARTBEAT_MS 2^64-1",
              ("TRP", 1, 0, "node-1", "node", U64_MAX))]
    for name, comment, args in inval:
        bad("bad-hello-" + name, "HELLO with " + comment, h(*args), "TR_EINVAL")


#  Bad names, each tried in every place a name goes.
BAD_NAMES = [
    ("empty", b""), ("space", b"po ng"), ("nul", b"po\x00ng"), ("tab", b"po\tng"),
    ("control", b"po\x01ng"), ("del", b"pong\x7f"), ("c1", b"po\xc2\x85ng"),
    ("overlong", b"a\xc0\xafb"), ("surrogate", b"a\xed\xa0\x80"),
    ("above-10ffff", b"\xf4\x90\x80\x80"), ("ff", b"a\xff"),
    ("lone-continuation", b"a\x80b"), ("truncated-utf8", b"ab\xe6\x97"),
    ("256", b"x" * 256),
]

def vectors_values():
    for name, value in BAD_NAMES:
        bad("bad-name-register-" + name, "REGISTER a name: " + name,
            frame("REGISTER", 2, s(value)), "TR_EINVAL")
    places = [
        ("unregister", "UNREGISTER's NAME", lambda v: frame("UNREGISTER", 3, s(v))),
        ("send", "SEND's TO", lambda v: frame("SEND", 0, s(v))),
        ("bounce", "BOUNCE's TO", lambda v: frame("BOUNCE", 0, s(v), sint(-3))),
        ("node-down-id", "NODE_DOWN's NODE_ID",
         lambda v: frame("NODE_DOWN", 0, s(v), arr(s("pong")))),
        ("node-down-list", "a name in NODE_DOWN's list",
         lambda v: frame("NODE_DOWN", 0, s("node-1"), arr(s("pong"), s(v)))),
        ("event-from", "EVENT's FROM", lambda v: frame("EVENT", 0, s("a.b"), s(v))),
        ("hello", "HELLO's NODE_ID",
         lambda v: frame("HELLO", 1, *hello("TRP", 1, 0, s(v), "node", 1000))),
    ]
    for place, comment, make in places:
        for name, value in (BAD_NAMES[0], BAD_NAMES[1], BAD_NAMES[8], BAD_NAMES[13]):
            bad("bad-name-%s-%s" % (place, name), "%s: %s" % (comment, name),
                make(value), "TR_EINVAL")

    def inval(name, comment, data):
        bad(name, comment, data, "TR_EINVAL")
    for verb in ("KV_GET", "KV_DEL"):
        slug = verb.lower().replace("_", "-")
        inval("bad-key-%s-empty" % slug, verb + " the key \"\"", frame(verb, 8, s("")))
        inval("bad-key-%s-1025" % slug, verb + " a key of 1025 bytes",
              frame(verb, 8, s("k" * 1025)))
    inval("bad-key-put-space", "KV_PUT a key with a space",
          frame("KV_PUT", 9, s("cfg a"), uint(0)))
    inval("bad-key-cas-control", "KV_CAS a key with a newline",
          frame("KV_CAS", 11, s("cfg\na"), uint(1), uint(0)))
    inval("bad-key-change-surrogate", "KV_CHANGE a key with a surrogate",
          frame("KV_CHANGE", 0, s(""), s(b"k\xed\xbf\xbf"), uint(3)))
    inval("bad-key-change-empty", "KV_CHANGE the key \"\"",
          frame("KV_CHANGE", 0, s(""), s(""), uint(3)))
    inval("bad-size-sends-0", "SENDS with a size of 0",
          frame("SENDS", 0, arr(s("pong"), s("ping")), arr(uint(40), uint(0))))
    inval("bad-size-delivers-0", "DELIVERS with a size of 0", frame("DELIVERS", 0, arr(uint(0))))
    inval("bad-name-sends-space", "SENDS to a name with a space",
          frame("SENDS", 0, arr(s("pong"), s("a b")), arr(uint(40), uint(41))))
    inval("bad-topic-pubs-space", "PUBS a topic with a space",
          frame("PUBS", 0, arr(s("a.b"), s("a b")), arr(uint(1), uint(1))))
    inval("bad-topic-events-empty", "EVENTS the topic \"\"",
          frame("EVENTS", 0, s("node-1"), arr(s("")), arr(uint(1))))
    inval("bad-size-multi-0", "MULTI with a command frame of 0 bytes",
          frame("MULTI", 0, arr(uint(12), uint(0)), arr(uint(0), uint(0))))
    inval("bad-size-pubs-0", "PUBS with a size of 0",
          frame("PUBS", 0, arr(s("a.b")), arr(uint(0))))
    inval("bad-name-events-from", "EVENTS from a name with a space",
          frame("EVENTS", 0, s("node 1"), arr(s("a.b")), arr(uint(1))))
    inval("bad-topic-empty", "PUB the topic \"\"", frame("PUB", 0, s("")))
    inval("bad-topic-256", "PUB a topic of 256 bytes", frame("PUB", 0, s("t" * 256)))
    inval("bad-topic-space", "PUB a topic with a space", frame("PUB", 0, s("a b")))
    inval("bad-topic-event-empty", "EVENT the topic \"\"",
          frame("EVENT", 0, s(""), s("node-1")))
    inval("bad-prefix-sub-256", "SUB a prefix of 256 bytes", frame("SUB", 5, s("p" * 256)))
    inval("bad-prefix-unsub-tab", "UNSUB a prefix with a tab", frame("UNSUB", 7, s("a\t")))
    inval("bad-prefix-sub-cut-utf8", "SUB a prefix ending inside a UTF-8 sequence",
          frame("SUB", 5, s(b"caf\xc3")))
    for verb in ("KV_LIST", "KV_SNAPSHOT", "KV_UNWATCH", "KV_RESYNC"):
        slug = verb.lower().replace("_", "-")
        inval("bad-prefix-%s-1025" % slug, verb + " a prefix of 1025 bytes",
              frame(verb, 14, s("p" * 1025)))
    inval("bad-prefix-kv-watch-space", "KV_WATCH a prefix with a space",
          frame("KV_WATCH", 17, s("cfg /"), uint(0)))
    inval("bad-prefix-kv-change-nul", "KV_CHANGE a prefix with a NUL",
          frame("KV_CHANGE", 0, s("cfg\x00"), s("cfg/a"), uint(3)))


# ---------------------------------------------------------------------------
#  Output

HEADER = """\
# Broker protocol test vectors (protocols/2-broker.md), TRP 1.1: command
# frames (the first frame of a message).
# Written by make_broker_vectors.py; do not edit by hand.
#
# One vector per line:  FILE RESULT... # MEANING
#   FILE     path of the vector, relative to this manifest's directory
#   RESULT   what a reader that reads the frame and checks its arguments
#            must say, either
#              ok VERB SEQ NARGS canonical=yes|no
#                the frame is valid: its verb, SEQ (decimal) and the number
#                of arguments after SEQ; canonical=yes when FILE is byte for
#                byte how an encoder writes it (every integer, str, array
#                and map header in its shortest form, 2.4's canonical frames)
#            or
#              error CODE
#                the code a broker answers with: TR_EMALFORMED (not one
#                msgpack array [str VERB, uint SEQ, ARG...], bytes after it,
#                nesting past 34 levels in an argument, missing arguments or
#                arguments of the wrong type), TR_EINVAL (an unknown verb, or
#                a bad name, key, topic, prefix, KIND or HEARTBEAT_MS),
#                TR_EPROTO (HELLO without the signature "TRP"), TR_EVERSION
#                (HELLO of another MAJOR)
#   MEANING  what the frame holds, in words (after " # ")
# The payload frame is not part of a vector. Lines starting with # are
# comments.
"""

def main():
    vectors_canonical()
    vectors_noncanonical()
    vectors_structure()
    vectors_unknown()
    vectors_types()
    vectors_hello()
    vectors_values()
    names = [v[0] for v in VECTORS]
    assert len(names) == len(set(names)), "duplicate vector names"

    os.makedirs(OUT_DIR, exist_ok=True)
    for old in os.listdir(OUT_DIR):
        if old.endswith(".bin"):
            os.remove(os.path.join(OUT_DIR, old))
    lines = [HEADER]
    for name, result, canon, data, comment in VECTORS:
        with open(os.path.join(OUT_DIR, name + ".bin"), "wb") as out:
            out.write(data)
        if canon is not None:
            result += " canonical=" + ("yes" if canon else "no")
        assert "#" not in result and "\n" not in comment
        lines.append("broker/%s.bin %s # %s\n" % (name, result, comment))
    valid = sum(1 for v in VECTORS if v[1].startswith("ok "))
    lines.append("# %d vectors: %d valid, %d invalid\n"
                 % (len(VECTORS), valid, len(VECTORS) - valid))
    with open(MANIFEST, "w", newline="\n") as out:
        out.write("".join(lines))
    print("wrote %d vectors (%d valid, %d invalid) to %s"
          % (len(VECTORS), valid, len(VECTORS) - valid, OUT_DIR))

if __name__ == "__main__":
    main()
