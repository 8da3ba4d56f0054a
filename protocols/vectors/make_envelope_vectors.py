#!/usr/bin/env python3
"""make_envelope_vectors.py - writes the envelope test vectors.

Every vector is written byte by byte from protocols/1-envelope.md and the
msgpack specification, with no msgpack library, so the vectors do not
inherit the habits of any one encoder. The output is:

    protocols/vectors/envelope/*.bin    one envelope (or non-envelope) each
    protocols/vectors/envelope.txt      the manifest: what a decoder must say

Run it from anywhere; it writes next to itself. The output is a pure
function of this file: re-running it reproduces the same bytes, and .bin
files that are no longer listed are removed.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "envelope")
MANIFEST = os.path.join(HERE, "envelope.txt")

U64_MAX = (1 << 64) - 1
I32_MIN = -(1 << 31)


# ---------------------------------------------------------------------------
#  msgpack, by hand. The short helpers give the shortest form (what the
#  canonical form requires); the explicit ones give one chosen form.

def fixint(v):
    assert 0 <= v <= 0x7f
    return bytes([v])

def u8(v):  return b"\xcc" + struct.pack(">B", v)
def u16(v): return b"\xcd" + struct.pack(">H", v)
def u32(v): return b"\xce" + struct.pack(">I", v)
def u64(v): return b"\xcf" + struct.pack(">Q", v)
def i8(v):  return b"\xd0" + struct.pack(">b", v)
def i16(v): return b"\xd1" + struct.pack(">h", v)
def i32(v): return b"\xd2" + struct.pack(">i", v)
def i64(v): return b"\xd3" + struct.pack(">q", v)

def uint(v):
    """Shortest encoding of a non-negative integer."""
    assert 0 <= v <= U64_MAX
    if v <= 0x7f:
        return fixint(v)
    if v <= 0xff:
        return u8(v)
    if v <= 0xffff:
        return u16(v)
    if v <= 0xffffffff:
        return u32(v)
    return u64(v)

def sint(v):
    """Shortest encoding of any integer (non-negative ones as uint)."""
    if v >= 0:
        return uint(v)
    if v >= -32:
        return bytes([0x100 + v])
    if v >= -0x80:
        return i8(v)
    if v >= -0x8000:
        return i16(v)
    if v >= -0x80000000:
        return i32(v)
    return i64(v)

def fixstr(b):
    assert len(b) < 32
    return bytes([0xa0 | len(b)]) + b

def str8(b):  return b"\xd9" + struct.pack(">B", len(b)) + b
def str16(b): return b"\xda" + struct.pack(">H", len(b)) + b
def str32(b): return b"\xdb" + struct.pack(">I", len(b)) + b

def mstr(b):
    """Shortest str encoding of the bytes b."""
    if len(b) < 32:
        return fixstr(b)
    if len(b) <= 0xff:
        return str8(b)
    if len(b) <= 0xffff:
        return str16(b)
    return str32(b)

def bin8(b):  return b"\xc4" + struct.pack(">B", len(b)) + b
def bin16(b): return b"\xc5" + struct.pack(">H", len(b)) + b
def bin32(b): return b"\xc6" + struct.pack(">I", len(b)) + b

def map_header(n):
    if n < 16:
        return bytes([0x80 | n])
    if n <= 0xffff:
        return b"\xde" + struct.pack(">H", n)
    return b"\xdf" + struct.pack(">I", n)

def array_header(n):
    if n < 16:
        return bytes([0x90 | n])
    if n <= 0xffff:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)

NIL = b"\xc0"
FALSE = b"\xc2"
TRUE = b"\xc3"

def float32(x): return b"\xca" + struct.pack(">f", x)
def float64(x): return b"\xcb" + struct.pack(">d", x)

def nested_arrays(depth, inner=b""):
    """depth arrays, each holding the next; the innermost holds inner."""
    assert depth >= 1
    if depth == 1:
        return array_header(1 if inner else 0) + inner
    return b"\x91" * (depth - 1) + array_header(1 if inner else 0) + inner


# ---------------------------------------------------------------------------
#  Envelopes

def fields(kind, id, to, frm=b"", corr=0, deadline=0, priority=0,
           trace=0, error=0, body=b""):
    """The decoded fields of a valid envelope, with their defaults."""
    return {"kind": kind, "priority": priority, "id": id, "corr": corr,
            "trace": trace, "deadline": deadline, "error": error,
            "to": to, "from": frm, "body": body}

def canonical(f):
    """The canonical form (spec 1.1) of the fields f."""
    pairs = [(0, uint(1)), (1, uint(f["kind"])), (2, uint(f["id"]))]
    if f["corr"]:
        pairs.append((3, uint(f["corr"])))
    pairs.append((4, mstr(f["to"])))
    pairs.append((5, mstr(f["from"])))
    if f["deadline"]:
        pairs.append((6, uint(f["deadline"])))
    if f["priority"]:
        pairs.append((7, sint(f["priority"])))
    if f["trace"]:
        pairs.append((8, uint(f["trace"])))
    if f["error"]:
        pairs.append((9, sint(f["error"])))
    if f["body"]:
        pairs.append((10, f["body"]))
    return map_header(len(pairs)) + b"".join(uint(k) + v for k, v in pairs)

def envelope(pairs, count=None):
    """A map of raw (key bytes, value bytes) pairs, written in the order
    given; count overrides the number of pairs in the header."""
    n = len(pairs) if count is None else count
    return map_header(n) + b"".join(k + v for k, v in pairs)

def pairs_of(f):
    """The canonical pairs of f as a list of [key bytes, value bytes], to
    be edited into non-canonical or invalid envelopes."""
    data = canonical(f)
    out = []
    r = _Reader(data)
    n = r.map_header()
    for _ in range(n):
        start = r.pos
        r.skip()
        key = data[start:r.pos]
        start = r.pos
        r.skip()
        out.append([key, data[start:r.pos]])
    assert r.pos == len(data)
    return out

def with_pair(pairs, key, value):
    """pairs with the value of key replaced (or appended if absent)."""
    out = [list(p) for p in pairs]
    for p in out:
        if p[0] == uint(key):
            p[1] = value
            return out
    out.append([uint(key), value])
    return out

def without(pairs, key):
    return [p for p in pairs if p[0] != uint(key)]


class _Reader:
    """Just enough msgpack reading to split our own canonical output into
    pairs (keys and values there are ints, strs and the bodies below)."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def byte(self):
        b = self.data[self.pos]
        self.pos += 1
        return b

    def be(self, n):
        if self.pos + n > len(self.data):
            raise IndexError("truncated")
        v = int.from_bytes(self.data[self.pos:self.pos + n], "big")
        self.pos += n
        return v

    def map_header(self):
        t = self.byte()
        if 0x80 <= t <= 0x8f:
            return t & 0x0f
        if t == 0xde:
            return self.be(2)
        assert t == 0xdf
        return self.be(4)

    def is_one_value(self):
        """True if the data is exactly one msgpack value."""
        try:
            self.skip()
        except IndexError:
            return False
        return self.pos == len(self.data)

    def skip(self):
        t = self.byte()
        if t <= 0x7f or t >= 0xe0 or t in (0xc0, 0xc2, 0xc3):
            return
        if 0x80 <= t <= 0x8f:
            for _ in range(2 * (t & 0x0f)):
                self.skip()
        elif 0x90 <= t <= 0x9f:
            for _ in range(t & 0x0f):
                self.skip()
        elif 0xa0 <= t <= 0xbf:
            self.pos += t & 0x1f
        elif t in (0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3):
            self.pos += 1 << ((t - 0xcc) % 4)
        elif t in (0xca, 0xcb):
            self.pos += 4 if t == 0xca else 8
        elif t in (0xc4, 0xc5, 0xc6, 0xd9, 0xda, 0xdb):
            width = 1 << ((t - 0xc4) if t <= 0xc6 else (t - 0xd9))
            n = self.be(width)
            self.pos += n
        elif t in (0xc7, 0xc8, 0xc9):
            n = self.be(1 << (t - 0xc7))
            self.pos += n + 1
        elif 0xd4 <= t <= 0xd8:
            self.pos += 1 + (1 << (t - 0xd4))
        elif t in (0xdc, 0xdd):
            for _ in range(self.be(2 if t == 0xdc else 4)):
                self.skip()
        elif t in (0xde, 0xdf):
            for _ in range(2 * self.be(2 if t == 0xde else 4)):
                self.skip()
        else:
            raise ValueError("byte 0x%02x" % t)
        if self.pos > len(self.data):
            raise IndexError("truncated")


# ---------------------------------------------------------------------------
#  The vectors

VECTORS = []        # (name, result, fields or None, canonical, data, comment)

def ok(name, comment, data, f, canon):
    """A valid envelope that decodes to f. canon says whether data is
    exactly the canonical form of f; checked here, both ways."""
    assert (data == canonical(f)) == canon, name
    if f["body"]:
        assert _Reader(f["body"]).is_one_value(), name
    VECTORS.append((name, "TR_OK", f, canon, data, comment))

def bad(name, comment, data, result="TR_EMALFORMED"):
    VECTORS.append((name, result, None, False, data, comment))

def ok_canonical(name, comment, f):
    ok(name, comment, canonical(f), f, True)


#  A few envelopes the invalid vectors are made from.
TELL = fields(1, 1, b"pong", b"ping", body=fixstr(b"hi"))
ASK = fields(2, 7, b"db", b"agent", deadline=1700000000123456)
REPLY = fields(3, 8, b"agent", b"db", corr=7, body=b"\x93\x01\x02\x03")
ERROR = fields(4, 9, b"agent", b"db", corr=7, error=-3)

def vectors_valid():
    #  1.6, copied from the specification's hex dump.
    example = bytes.fromhex("86 00 01 01 01 02 01 04 a4 70 6f 6e 67"
                            " 05 a4 70 69 6e 67 0a a2 68 69")
    ok("ok-example", "the example of section 1.6", example, TELL, True)

    #  Each kind.
    ok_canonical("ok-tell-anonymous", "a tell from an anonymous sender, no body",
                 fields(1, 2, b"pong"))
    ok_canonical("ok-ask-deadline", "an ask with a deadline (uint64) and a trace id",
                 fields(2, 300, b"db", b"agent", deadline=1700000000123456,
                        trace=0xfeedface))
    ok_canonical("ok-reply-corr", "a reply carrying corr, body [1,2,3]", REPLY)
    ok_canonical("ok-error-code", "an error with code -3 (TR_ENOACTOR), no body", ERROR)
    ok_canonical("ok-error-int16", "an error with an application code -1000 (int 16)",
                 fields(4, 10, b"agent", b"db", corr=7, error=-1000))
    ok_canonical("ok-error-int32-min", "an error with code -2^31 (int 32)",
                 fields(4, 11, b"agent", b"db", corr=7, error=I32_MIN))
    ok_canonical("ok-error-body", "an error may carry a body",
                 fields(4, 12, b"agent", b"db", corr=7, error=-12,
                        body=fixstr(b"bad input")))

    #  Priorities.
    ok_canonical("ok-priority-low", "priority -1 (negative fixint 0xff)",
                 fields(1, 3, b"pong", b"ping", priority=-1))
    ok_canonical("ok-priority-high", "priority 1",
                 fields(1, 4, b"pong", b"ping", priority=1))

    #  Integer sizes at the boundaries of the shortest forms.
    for i, v in enumerate((127, 128, 255, 256, 65535, 65536,
                           0xffffffff, 0x100000000)):
        ok_canonical("ok-id-%d" % i, "id %d in its shortest form" % v,
                     fields(1, v, b"pong", b"ping"))
    ok_canonical("ok-max-ids", "64-bit maximum id, corr, deadline and trace",
                 fields(3, U64_MAX, b"agent", b"db", corr=U64_MAX,
                        deadline=U64_MAX, trace=U64_MAX))
    ok_canonical("ok-blocking-id", "id with the top bit set (a blocking sender)",
                 fields(2, 1 << 63, b"db", b"agent", deadline=1))

    #  Names.
    ok_canonical("ok-name-utf8", "UTF-8 names (2-, 3- and 4-byte sequences)",
                 fields(1, 5, "akt\u00f6r-\u65e5\u672c".encode(),
                        "\U0001f600bot".encode()))
    ok_canonical("ok-name-31", "a 31-byte name (the longest fixstr)",
                 fields(1, 5, b"n" * 31, b"ping"))
    ok_canonical("ok-name-32", "a 32-byte name (str 8 in canonical form)",
                 fields(1, 5, b"n" * 32, b"ping"))
    ok_canonical("ok-name-255", "a 255-byte name, the longest allowed",
                 fields(1, 5, b"x" * 255, b"y" * 255))
    ok_canonical("ok-name-punct", "names may hold any printable ASCII but space",
                 fields(1, 5, b"$runtime/a=b#c", b"~!\"'\\"))
    ok_canonical("ok-name-u00a0", "U+00A0 (just past the C1 controls) is allowed",
                 fields(1, 5, b"a\xc2\xa0b", b"ping"))
    ok_canonical("ok-name-u10ffff", "U+10FFFF, the last code point, is allowed",
                 fields(1, 5, b"\xf4\x8f\xbf\xbf", b"ping"))

    #  Bodies of each msgpack family.
    bodies = [
        ("nil", NIL), ("false", FALSE), ("true", TRUE),
        ("uint64", u64(U64_MAX)), ("int64", i64(-(1 << 63))),
        ("negfixint", b"\xe0"),
        ("float32", float32(1.5)), ("float64", float64(-2.25)),
        ("bin8", bin8(b"\x00\x01\xff")), ("bin16", bin16(b"\xc1" * 300)),
        ("bin32", bin32(b"abc")),
        ("fixext1", b"\xd4\x01\x02"), ("fixext16", b"\xd8\x05" + bytes(range(16))),
        ("ext8", b"\xc7\x03\x7f" + b"abc"), ("ext16", b"\xc8\x00\x01\x02x"),
        ("ext32", b"\xc9\x00\x00\x00\x00\xff"),
        ("str8", str8(b"hello")), ("str16", str16(b"hello")),
        ("str32", str32(b"hello")), ("str-utf8", mstr("h\u00e9".encode())),
        ("empty-array", b"\x90"), ("empty-map", b"\x80"),
        ("array16", b"\xdc\x00\x02\x01\x02"), ("array32", b"\xdd\x00\x00\x00\x01\xc0"),
        ("map16", b"\xde\x00\x01\xa1k\xc3"), ("map32", b"\xdf\x00\x00\x00\x01\x01\x02"),
        ("nested", map_header(2) + fixstr(b"list") + array_header(3) + b"\x01"
         + map_header(1) + fixstr(b"x") + NIL + array_header(0)
         + float64(0.5) + map_header(1) + fixstr(b"k") + b"\x80"),
    ]
    for name, body in bodies:
        ok_canonical("ok-body-" + name, "body: " + name,
                     fields(1, 6, b"pong", b"ping", body=body))
    ok_canonical("ok-body-depth-32", "body nested exactly 32 deep (the limit)",
                 fields(1, 6, b"pong", b"ping", body=nested_arrays(32, b"\x01")))
    deep_mixed = b"\x81\x00" * 16 + b"\x91" * 15 + b"\x90"
    ok_canonical("ok-body-depth-32-mixed", "16 maps then 16 arrays, 32 deep",
                 fields(1, 6, b"pong", b"ping", body=deep_mixed))

    #  Valid but not canonical.
    p = pairs_of(TELL)
    ok("ok-noncanon-uint16", "version, kind and id as uint 16 / uint 8",
       envelope(with_pair(with_pair(with_pair(p, 0, u8(1)), 1, u16(1)), 2, u16(1))),
       TELL, False)
    ok("ok-noncanon-uint64-key", "keys written as uint 64 and int 8",
       envelope([[u64(0), uint(1)], [i8(1), uint(1)]] + p[2:]), TELL, False)
    ok("ok-noncanon-int-id", "id written as int 64 and version as int 8",
       envelope(with_pair(with_pair(p, 2, i64(1)), 0, i8(1))), TELL, False)
    f = fields(1, 3, b"pong", b"ping", priority=-1)
    ok("ok-noncanon-priority-int8", "priority -1 as int 8",
       envelope(with_pair(pairs_of(f), 7, i8(-1))), f, False)
    f = fields(1, 4, b"pong", b"ping", priority=1)
    ok("ok-noncanon-priority-int64", "priority 1 as int 64",
       envelope(with_pair(pairs_of(f), 7, i64(1))), f, False)
    ok("ok-noncanon-order", "keys in descending order",
       envelope(list(reversed(p))), TELL, False)
    ok("ok-noncanon-version-last", "version written last",
       envelope(p[1:] + p[:1]), TELL, False)
    ok("ok-noncanon-str8", "to as str 8, from as str 32",
       envelope(with_pair(with_pair(p, 4, str8(b"pong")), 5, str32(b"ping"))),
       TELL, False)
    ok("ok-noncanon-no-from", "from left out (canonical form writes \"\")",
       envelope(without(p, 5)), fields(1, 1, b"pong", body=fixstr(b"hi")), False)
    ok("ok-noncanon-defaults", "optional fields written with their defaults",
       envelope(p + [[uint(6), uint(0)], [uint(7), uint(0)], [uint(8), u64(0)]]),
       TELL, False)
    reserved = map_header(2) + fixstr(b"a") + array_header(3) + b"\x01\x02\x80" \
        + fixstr(b"b") + bin8(b"\xc1\xc1")
    ok("ok-reserved-11", "reserved key 11 with a nested value, skipped",
       envelope(p[:4] + [[uint(11), reserved]] + p[4:]), TELL, False)
    ok("ok-reserved-63", "reserved key 63 (the last) holding nil, and key 12",
       envelope(p + [[uint(63), NIL], [uint(12), b"\xd8\x00" + b"\x00" * 16]]),
       TELL, False)
    ok("ok-reserved-depth-32", "reserved key 20 nested exactly 32 deep",
       envelope(p + [[uint(20), nested_arrays(32)]]), TELL, False)
    ok("ok-map16", "the envelope map itself written as map 16",
       b"\xde\x00\x06" + b"".join(k + v for k, v in p), TELL, False)
    ok("ok-map32", "the envelope map itself written as map 32",
       b"\xdf\x00\x00\x00\x06" + b"".join(k + v for k, v in p), TELL, False)
    f = fields(2, 7, b"db", b"agent")
    ok("ok-ask-no-deadline", "an ask without a deadline (SHOULD, not MUST)",
       canonical(f), f, True)


def vectors_structure():
    ex = canonical(TELL)
    p = pairs_of(TELL)
    bad("bad-empty", "empty buffer", b"")
    bad("bad-not-map-array", "top level is an array", b"\x91\x01")
    bad("bad-not-map-nil", "top level is nil", NIL)
    bad("bad-not-map-int", "top level is an integer", b"\x01")
    bad("bad-not-map-str", "top level is a string", fixstr(b"env"))
    bad("bad-c1-top", "0xc1 where the top-level value starts", b"\xc1")
    for cut in (1, 2, 5, 8, 13, len(ex) - 1):
        bad("bad-truncated-%d" % cut, "the example cut to %d bytes" % cut, ex[:cut])
    big = canonical(fields(3, U64_MAX, b"agent", b"db", corr=U64_MAX))
    bad("bad-truncated-u64", "cut inside a uint 64 id", big[:10])
    bad("bad-truncated-map16", "cut inside a map 16 header", b"\xde\x00")
    bad("bad-truncated-map32", "cut inside a map 32 header", b"\xdf\x00\x00\x00")
    bad("bad-count-fixmap", "fixmap of 15 pairs, 6 present", b"\x8f" + ex[1:])
    bad("bad-count-map16", "map 16 of 65535 pairs, 6 present",
        b"\xde\xff\xff" + ex[1:])
    bad("bad-count-map32", "map 32 of 2^32-1 pairs, 6 present",
        b"\xdf\xff\xff\xff\xff" + ex[1:])
    bad("bad-count-too-small", "map count 5 with 6 pairs: a trailing pair",
        b"\x85" + ex[1:])
    bad("bad-trailing-byte", "one byte after the map", ex + b"\x00")
    bad("bad-trailing-nil", "nil after the map", ex + NIL)
    bad("bad-body-array32-huge", "array 32 of 2^32-1 elements in the body "
        "(5 bytes asking for gigabytes)",
        envelope(p[:-1] + [[uint(10), b"\xdd\xff\xff\xff\xff"]]))
    bad("bad-body-map32-huge", "map 32 of 2^32-1 pairs in the body",
        envelope(p[:-1] + [[uint(10), b"\xdf\xff\xff\xff\xff\x01\x02"]]))
    bad("bad-body-str32-huge", "str 32 of 2^32-1 bytes in the body",
        envelope(p[:-1] + [[uint(10), b"\xdb\xff\xff\xff\xffabc"]]))
    bad("bad-body-bin32-huge", "bin 32 of 2^32-1 bytes in the body",
        envelope(p[:-1] + [[uint(10), b"\xc6\xff\xff\xff\xff"]]))
    bad("bad-body-ext32-huge", "ext 32 of 2^32-1 bytes in the body",
        envelope(p[:-1] + [[uint(10), b"\xc9\xff\xff\xff\xff\x01"]]))
    bad("bad-body-fixext-short", "fixext 16 with 15 data bytes, body last",
        envelope(p[:-1] + [[uint(10), b"\xd8\x01" + b"\x00" * 15]]))
    bad("bad-body-c1", "0xc1 as the body", envelope(p[:-1] + [[uint(10), b"\xc1"]]))
    bad("bad-body-c1-nested", "0xc1 inside an array in the body",
        envelope(p[:-1] + [[uint(10), b"\x92\x01\xc1"]]))
    bad("bad-body-missing", "key 10 with no value: the map ends",
        envelope(p[:-1] + [[uint(10), b""]]))
    bad("bad-key-c1", "0xc1 where a key starts", envelope([[b"\xc1", b"\x01"]] + p))
    bad("bad-key-duplicate", "kind written twice (same value)",
        envelope(p[:2] + [p[1]] + p[2:]))
    bad("bad-key-duplicate-reserved", "reserved key 11 written twice",
        envelope(p + [[uint(11), NIL], [uint(11), NIL]]))
    bad("bad-key-64", "key 64", envelope(p + [[uint(64), NIL]]))
    bad("bad-key-u64-max", "key 2^64-1", envelope(p + [[u64(U64_MAX), NIL]]))
    bad("bad-key-negative", "key -1", envelope(p + [[b"\xff", NIL]]))
    bad("bad-key-negative-int8", "key -128 as int 8", envelope(p + [[i8(-128), NIL]]))
    bad("bad-key-string", "key \"0\" as a string",
        envelope([[fixstr(b"0"), uint(1)]] + p[1:]))
    bad("bad-key-nil", "key nil", envelope(p + [[NIL, NIL]]))
    bad("bad-key-float", "key 11.0 as a float", envelope(p + [[float64(11.0), NIL]]))
    bad("bad-body-depth-33", "body nested 33 deep",
        envelope(p[:-1] + [[uint(10), nested_arrays(33, b"\x01")]]), "TR_EDEPTH")
    bad("bad-body-depth-33-empty", "body nested 33 deep, innermost empty",
        envelope(p[:-1] + [[uint(10), nested_arrays(33)]]), "TR_EDEPTH")
    bad("bad-body-depth-33-maps", "body: 33 maps nested as values",
        envelope(p[:-1] + [[uint(10), b"\x81\x00" * 33 + b"\x01"]]), "TR_EDEPTH")
    bad("bad-reserved-depth-33", "reserved key 11 nested 33 deep",
        envelope(p + [[uint(11), nested_arrays(33)]]), "TR_EDEPTH")
    bad("bad-body-depth-huge", "body of 10000 nested arrays",
        envelope(p[:-1] + [[uint(10), b"\x91" * 10000 + b"\x01"]]), "TR_EDEPTH")


def vectors_fields():
    p = pairs_of(TELL)
    bad("bad-no-version", "field 0 missing", envelope(without(p, 0)))
    bad("bad-version-2", "version 2", envelope(with_pair(p, 0, uint(2))), "TR_EVERSION")
    bad("bad-version-0", "version 0", envelope(with_pair(p, 0, uint(0))), "TR_EVERSION")
    bad("bad-version-u64-max", "version 2^64-1",
        envelope(with_pair(p, 0, u64(U64_MAX))), "TR_EVERSION")
    bad("bad-version-2-kind-9", "version 2 with kind 9: the version wins",
        envelope(with_pair(with_pair(p, 0, uint(2)), 1, uint(9))), "TR_EVERSION")
    bad("bad-version-2-no-to", "version 2 without to: the version wins",
        envelope(without(with_pair(p, 0, uint(2)), 4)), "TR_EVERSION")
    bad("bad-version-2-only", "a map holding only version 2",
        envelope([[uint(0), uint(2)]]), "TR_EVERSION")
    bad("bad-version-2-corr-tell", "version 2, a tell with corr: the version wins",
        envelope(with_pair(with_pair(p, 0, uint(2)), 3, uint(5))), "TR_EVERSION")
    bad("bad-version-2-kind-str", "version 2 with kind a string: the version wins "
        "(the fields are well-formed msgpack)",
        envelope(with_pair(with_pair(p, 0, uint(2)), 1, fixstr(b"tell"))),
        "TR_EVERSION")
    bad("bad-version-2-last", "version 2 written after a to of type bin",
        envelope(with_pair(p[1:], 4, bin8(b"pong")) + [[uint(0), uint(2)]]),
        "TR_EVERSION")
    bad("bad-version-str", "version as a string", envelope(with_pair(p, 0, fixstr(b"1"))))
    bad("bad-version-negative", "version -1", envelope(with_pair(p, 0, b"\xff")))
    bad("bad-version-nil", "version nil", envelope(with_pair(p, 0, NIL)))
    bad("bad-no-kind", "field 1 missing", envelope(without(p, 1)))
    bad("bad-no-id", "field 2 missing", envelope(without(p, 2)))
    bad("bad-no-to", "field 4 missing", envelope(without(p, 4)))
    bad("bad-only-version", "a map holding only version 1", envelope([[uint(0), uint(1)]]))
    bad("bad-kind-0", "kind 0", envelope(with_pair(p, 1, uint(0))))
    bad("bad-kind-5", "kind 5", envelope(with_pair(p, 1, uint(5))))
    bad("bad-kind-u64-max", "kind 2^64-1", envelope(with_pair(p, 1, u64(U64_MAX))))
    bad("bad-kind-negative", "kind -1", envelope(with_pair(p, 1, b"\xff")))
    bad("bad-kind-str", "kind as a string", envelope(with_pair(p, 1, fixstr(b"tell"))))
    bad("bad-id-negative", "id -1", envelope(with_pair(p, 2, b"\xff")))
    bad("bad-id-str", "id as a string", envelope(with_pair(p, 2, fixstr(b"1"))))
    bad("bad-id-float", "id as a float", envelope(with_pair(p, 2, float64(1.0))))
    bad("bad-deadline-negative", "deadline -1 as int 64",
        envelope(with_pair(p, 6, i64(-1))))
    bad("bad-trace-nil", "trace nil", envelope(with_pair(p, 8, NIL)))
    bad("bad-priority-2", "priority 2", envelope(with_pair(p, 7, uint(2))))
    bad("bad-priority-minus-2", "priority -2", envelope(with_pair(p, 7, b"\xfe")))
    bad("bad-priority-huge", "priority 2^63 (out of int 64)",
        envelope(with_pair(p, 7, u64(1 << 63))))
    bad("bad-priority-int64-min", "priority -2^63",
        envelope(with_pair(p, 7, i64(-(1 << 63)))))
    bad("bad-priority-true", "priority true", envelope(with_pair(p, 7, TRUE)))

    #  corr and error against the kind.
    ask = pairs_of(ASK)
    reply = pairs_of(REPLY)
    error = pairs_of(ERROR)
    bad("bad-corr-in-tell", "corr in a tell", envelope(with_pair(p, 3, uint(5))))
    bad("bad-corr-0-in-tell", "corr 0 in a tell: present is enough",
        envelope(with_pair(p, 3, uint(0))))
    bad("bad-corr-in-ask", "corr in an ask", envelope(with_pair(ask, 3, uint(5))))
    bad("bad-reply-no-corr", "reply without corr", envelope(without(reply, 3)))
    bad("bad-reply-corr-0", "corr 0 in a reply", envelope(with_pair(reply, 3, uint(0))))
    bad("bad-reply-corr-negative", "corr -1 in a reply",
        envelope(with_pair(reply, 3, b"\xff")))
    bad("bad-error-no-corr", "error without corr", envelope(without(error, 3)))
    bad("bad-error-no-code", "error without code", envelope(without(error, 9)))
    bad("bad-error-code-in-tell", "error code in a tell",
        envelope(with_pair(p, 9, sint(-3))))
    bad("bad-error-code-in-reply", "error code in a reply",
        envelope(with_pair(reply, 9, sint(-3))))
    bad("bad-error-code-0", "error code 0 in an error",
        envelope(with_pair(error, 9, uint(0))))
    bad("bad-error-code-0-in-tell", "error code 0 in a tell: present is enough",
        envelope(with_pair(p, 9, uint(0))))
    bad("bad-error-code-positive", "error code 3 in an error",
        envelope(with_pair(error, 9, uint(3))))
    bad("bad-error-code-below-int32", "error code -2^31-1 (not 32-bit)",
        envelope(with_pair(error, 9, i64(I32_MIN - 1))))
    bad("bad-error-code-str", "error code as a string",
        envelope(with_pair(error, 9, fixstr(b"-3"))))

    #  Names.
    def bad_to(name, comment, value):
        bad("bad-to-" + name, comment, envelope(with_pair(p, 4, value)))
    bad_to("empty", "to \"\"", fixstr(b""))
    bad_to("space", "to with a space", fixstr(b"po ng"))
    bad_to("nul", "to with a NUL byte", fixstr(b"po\x00ng"))
    bad_to("control", "to with U+0001", fixstr(b"po\x01ng"))
    bad_to("tab", "to with a tab", fixstr(b"po\tng"))
    bad_to("del", "to with U+007F", fixstr(b"pong\x7f"))
    bad_to("c1", "to with U+0085 (a C1 control)", fixstr(b"po\xc2\x85ng"))
    bad_to("c1-9f", "to with U+009F (the last C1 control)", fixstr(b"po\xc2\x9f"))
    bad_to("overlong-2", "to with an overlong '/' (c0 af)", fixstr(b"a\xc0\xafb"))
    bad_to("overlong-3", "to with an overlong '/' (e0 80 af)", fixstr(b"a\xe0\x80\xafb"))
    bad_to("overlong-4", "to with an overlong U+FFFF (f0 8f bf bf)",
           fixstr(b"a\xf0\x8f\xbf\xbf"))
    bad_to("surrogate", "to with a surrogate U+D800 (ed a0 80)", fixstr(b"a\xed\xa0\x80"))
    bad_to("surrogate-low", "to with a surrogate U+DFFF (ed bf bf)", fixstr(b"\xed\xbf\xbf"))
    bad_to("above-10ffff", "to with U+110000 (f4 90 80 80)", fixstr(b"\xf4\x90\x80\x80"))
    bad_to("f5", "to with lead byte f5", fixstr(b"\xf5\x80\x80\x80"))
    bad_to("ff", "to with byte ff", fixstr(b"a\xff"))
    bad_to("lone-continuation", "to with a lone continuation byte", fixstr(b"a\x80b"))
    bad_to("truncated-utf8", "to ending inside a 3-byte sequence", fixstr(b"ab\xe6\x97"))
    bad_to("bad-continuation", "to with a 2-byte lead then ASCII", fixstr(b"\xc3A"))
    bad_to("256", "to of 256 bytes", mstr(b"x" * 256))
    bad_to("bin", "to as bin 8 (bin is not a string)", bin8(b"pong"))
    bad_to("int", "to as an integer", uint(4))
    bad_to("nil", "to nil", NIL)
    bad_to("array", "to as an array of one string", array_header(1) + fixstr(b"pong"))
    bad("bad-to-str-past-end", "to, written last, claims 9 bytes and has 4",
        envelope(without(p, 4) + [[uint(4), b"\xa9pong"]]))
    bad("bad-from-space", "from with a space", envelope(with_pair(p, 5, fixstr(b"pi ng"))))
    bad("bad-from-256", "from of 256 bytes", envelope(with_pair(p, 5, mstr(b"y" * 256))))
    bad("bad-from-bin", "from as bin", envelope(with_pair(p, 5, bin8(b"ping"))))
    bad("bad-from-nil", "from nil (anonymous is \"\", not nil)",
        envelope(with_pair(p, 5, NIL)))
    bad("bad-from-surrogate", "from with a surrogate",
        envelope(with_pair(p, 5, fixstr(b"\xed\xa0\x80"))))


# ---------------------------------------------------------------------------
#  Output

def name_field(key, value):
    """to=/from= for plain printable ASCII, to_hex=/from_hex= otherwise."""
    if value and all(0x21 <= c <= 0x7e for c in value):
        return "%s=%s" % (key, value.decode("ascii"))
    return "%s_hex=%s" % (key, value.hex())

def manifest_line(name, result, f, canon):
    words = ["envelope/%s.bin" % name, result]
    if f is not None:
        for key in ("kind", "priority", "id", "corr", "trace", "deadline", "error"):
            words.append("%s=%d" % (key, f[key]))
        words.append(name_field("to", f["to"]))
        words.append(name_field("from", f["from"]))
        words.append("body=" + f["body"].hex())
        words.append("canonical=" + ("yes" if canon else "no"))
    return " ".join(words)

HEADER = """\
# Envelope test vectors (protocols/1-envelope.md), version 1.
# Written by make_envelope_vectors.py; do not edit by hand.
#
# One vector per line:  FILE RESULT [key=value ...]
#   FILE     path of the vector, relative to this manifest's directory
#   RESULT   what a decoder must return: TR_OK, TR_EMALFORMED, TR_EVERSION,
#            TR_EDEPTH or TR_ETOOBIG
# TR_OK lines also give every decoded field, in this order:
#   kind= priority= id= corr= trace= deadline= error=   decimal integers
#            (absent optional fields give their default, 0)
#   to= from=          the name, when it is 1+ bytes of printable ASCII
#   to_hex= from_hex=  the name as hex otherwise (from_hex= is "")
#   body=              the body's msgpack bytes as hex ("" for no body)
#   canonical=yes|no   yes: FILE is byte for byte the canonical form of
#                      these fields (spec 1.1), as an encoder must write it
# Lines starting with # are comments; the one above each vector says what
# it holds. Values never contain spaces.
"""

def main():
    vectors_valid()
    vectors_structure()
    vectors_fields()
    names = [v[0] for v in VECTORS]
    assert len(names) == len(set(names)), "duplicate vector names"

    os.makedirs(OUT_DIR, exist_ok=True)
    for old in os.listdir(OUT_DIR):
        if old.endswith(".bin"):
            os.remove(os.path.join(OUT_DIR, old))
    lines = [HEADER]
    for name, result, f, canon, data, comment in VECTORS:
        with open(os.path.join(OUT_DIR, name + ".bin"), "wb") as out:
            out.write(data)
        lines.append("# %s\n%s\n" % (comment, manifest_line(name, result, f, canon)))
    valid = sum(1 for v in VECTORS if v[1] == "TR_OK")
    lines.append("# %d vectors: %d valid, %d invalid\n"
                 % (len(VECTORS), valid, len(VECTORS) - valid))
    with open(MANIFEST, "w", newline="\n") as out:
        out.write("".join(lines))
    print("wrote %d vectors (%d valid, %d invalid) to %s"
          % (len(VECTORS), valid, len(VECTORS) - valid, OUT_DIR))

if __name__ == "__main__":
    main()
