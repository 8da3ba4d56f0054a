"""The byte formats: envelopes (protocols/1-envelope.md) and the broker
protocol's command frames (protocols/2-broker.md), written from those
specifications.

Decoding treats every input as hostile. A small msgpack reader of its own
walks the bytes with every count and length checked against what is left
(nothing is allocated in proportion to a count not yet backed by bytes),
nesting bounded, the byte 0xc1 refused; it says what was wrong with a
:class:`DecodeError` carrying the code a troupe decoder gives
(``TR_EMALFORMED``, ``TR_EDEPTH``, ``TR_ETOOBIG``, ``TR_EVERSION``,
``TR_EINVAL``, ``TR_EPROTO``). An envelope's body is kept as the msgpack
bytes it arrived as (``Envelope.body``); :func:`unpack_value` turns it
into Python values when someone asks.

Encoding writes the canonical forms (shortest integers, strings and
headers; an envelope's keys ascending, defaults left out), which the test
vectors in protocols/vectors check byte for byte.

Envelopes cross every message, so both directions have a fast path for
the common case beside the full one: :func:`decode_envelope` reads the
canonical layout byte by byte and gives anything else to the bounded
reader (which alone says what is wrong); :func:`encode_envelope` writes
fields of their exact types at a glance and gives anything else to the
full encoder; names already judged are remembered (bounded tables). The
tests check that each fast path gives exactly what the full one gives.
"""

from __future__ import annotations

import re
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import msgpack

from . import errors

__all__ = [
    "DecodeError", "Envelope", "Command", "Raw",
    "TELL", "ASK", "REPLY", "ERROR",
    "MAX_ENVELOPE", "MAX_FRAME", "BODY_DEPTH", "ARG_DEPTH",
    "encode_envelope", "decode_envelope", "encode_command", "parse_command",
    "check_command", "pack_value", "unpack_value", "check_value",
    "canonical", "name_ok", "check_name", "VERBS",
]

#: Envelope kinds (1.1).
TELL, ASK, REPLY, ERROR = 1, 2, 3, 4
#: Largest envelope and largest frame: 17 MiB (1.2, 2.6).
MAX_ENVELOPE = 17 * 1024 * 1024
MAX_FRAME = 17 * 1024 * 1024
#: Deepest nesting in a body or a value (1.2, 2.1).
BODY_DEPTH = 32
#: Deepest nesting in one argument of a command frame (2.1).
ARG_DEPTH = 34
#: Longest verb (2.1).
VERB_MAX = 32

_EMALFORMED = errors.CODES["EMALFORMED"]
_EDEPTH = errors.CODES["EDEPTH"]
_ETOOBIG = errors.CODES["ETOOBIG"]
_EVERSION = errors.CODES["EVERSION"]
_EINVAL = errors.CODES["EINVAL"]
_EPROTO = errors.CODES["EPROTO"]


class DecodeError(Exception):
    """Bytes that are not what the specification says. ``code`` is the
    troupe code a decoder answers with, ``why`` what was wrong."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__("%s: %s" % (errors.errname(code), why))
        self.code = code
        self.why = why

    def to_error(self) -> errors.TroupeError:
        """The same failure as a TroupeError of the code's class."""
        return errors.error_for(self.code, self.why)


def _bad(why: str, code: int = _EMALFORMED) -> DecodeError:
    return DecodeError(code, why)


# ---------------------------------------------------------------------------
# A bounded msgpack reader

#  What each first byte is. For every byte: (kind, n)
#    _SCALAR  n bytes follow (fixints, nil, bools: 0; floats, fixext)
#    _FIXSTR  a str of n bytes follows
#    _STR     a str whose length is in the next n bytes
#    _BIN     bin, length in the next n bytes
#    _EXT     ext, length in the next n bytes, then a type byte
#    _FIXARR / _FIXMAP  a container of n elements / pairs
#    _ARR / _MAP        a container whose count is in the next n bytes
#    _BAD     0xc1, never used
_SCALAR, _FIXSTR, _STR, _BIN, _EXT, _FIXARR, _FIXMAP, _ARR, _MAP, _BAD = range(10)


def _type_table() -> List[Tuple[int, int]]:
    t: List[Tuple[int, int]] = [(_BAD, 0)] * 256
    for b in range(0x00, 0x80):
        t[b] = (_SCALAR, 0)
    for b in range(0x80, 0x90):
        t[b] = (_FIXMAP, b & 0x0F)
    for b in range(0x90, 0xA0):
        t[b] = (_FIXARR, b & 0x0F)
    for b in range(0xA0, 0xC0):
        t[b] = (_FIXSTR, b & 0x1F)
    for b in range(0xE0, 0x100):
        t[b] = (_SCALAR, 0)
    t[0xC0] = t[0xC2] = t[0xC3] = (_SCALAR, 0)
    t[0xC4], t[0xC5], t[0xC6] = (_BIN, 1), (_BIN, 2), (_BIN, 4)
    t[0xC7], t[0xC8], t[0xC9] = (_EXT, 1), (_EXT, 2), (_EXT, 4)
    t[0xCA], t[0xCB] = (_SCALAR, 4), (_SCALAR, 8)
    t[0xCC], t[0xCD], t[0xCE], t[0xCF] = (_SCALAR, 1), (_SCALAR, 2), (_SCALAR, 4), (_SCALAR, 8)
    t[0xD0], t[0xD1], t[0xD2], t[0xD3] = (_SCALAR, 1), (_SCALAR, 2), (_SCALAR, 4), (_SCALAR, 8)
    t[0xD4], t[0xD5], t[0xD6], t[0xD7], t[0xD8] = (
        (_SCALAR, 2), (_SCALAR, 3), (_SCALAR, 5), (_SCALAR, 9), (_SCALAR, 17))
    t[0xD9], t[0xDA], t[0xDB] = (_STR, 1), (_STR, 2), (_STR, 4)
    t[0xDC], t[0xDD] = (_ARR, 2), (_ARR, 4)
    t[0xDE], t[0xDF] = (_MAP, 2), (_MAP, 4)
    return t


_TYPES = _type_table()


def _length(b: bytes, p: int, end: int, n: int) -> int:
    """The big-endian unsigned integer of n (1, 2 or 4) bytes at p."""
    if p + n > end:
        raise _bad("a length or count runs past the end")
    return int.from_bytes(b[p:p + n], "big")


def _skip(b: bytes, p: int, end: int, limit: int) -> int:
    """Walks one msgpack value at p and returns where it ends. Containers
    may nest `limit` deep (the value's own array or map is level 1);
    deeper is TR_EDEPTH. Iterative, so hostile nesting costs no stack."""
    remaining = 1               # values left at this level
    stack: List[int] = []       # what was left at the levels above
    types = _TYPES
    while True:
        if p >= end:
            raise _bad("a value runs past the end")
        kind, n = types[b[p]]
        p += 1
        count = -1
        if kind == _SCALAR:
            p += n
        elif kind == _FIXSTR:
            p += n
        elif kind == _STR or kind == _BIN:
            p += n + _length(b, p, end, n)
        elif kind == _EXT:
            p += n + 1 + _length(b, p, end, n)
        elif kind == _FIXARR:
            count = n
        elif kind == _FIXMAP:
            count = 2 * n
        elif kind == _ARR:
            count = _length(b, p, end, n)
            p += n
        elif kind == _MAP:
            count = 2 * _length(b, p, end, n)
            p += n
        else:
            raise _bad("the byte 0xc1 where a value starts")
        if p > end:
            raise _bad("a value runs past the end")
        remaining -= 1
        if count >= 0:
            if count > end - p:
                raise _bad("a count larger than the bytes left")
            if len(stack) + 1 > limit:
                raise _bad("containers nested more than %d deep" % limit, _EDEPTH)
            if count:
                stack.append(remaining)
                remaining = count
                continue
        while remaining == 0:
            if not stack:
                return p
            remaining = stack.pop()


def _read_int(b: bytes, p: int, end: int) -> Tuple[Optional[int], int]:
    """An integer in any msgpack form at p: (value, next). (None, p) if
    the value there is not an integer (the caller says which field)."""
    if p >= end:
        raise _bad("a value runs past the end")
    t = b[p]
    if t <= 0x7F:
        return t, p + 1
    if t >= 0xE0:
        return t - 0x100, p + 1
    if 0xCC <= t <= 0xD3:
        n = 1 << ((t - 0xCC) & 3)
        if p + 1 + n > end:
            raise _bad("an integer runs past the end")
        return int.from_bytes(b[p + 1:p + 1 + n], "big", signed=t >= 0xD0), p + 1 + n
    return None, p


def _read_str(b: bytes, p: int, end: int) -> Tuple[Optional[bytes], int]:
    """A str at p: (its bytes, next), or (None, p) if not a str."""
    if p >= end:
        raise _bad("a value runs past the end")
    t = b[p]
    if 0xA0 <= t <= 0xBF:
        n, q = t & 0x1F, p + 1
    elif 0xD9 <= t <= 0xDB:
        k = 1 << (t - 0xD9)
        n, q = _length(b, p + 1, end, k), p + 1 + k
    else:
        return None, p
    if q + n > end:
        raise _bad("a str runs past the end")
    return bytes(b[q:q + n]), q + n


def _read_container(b: bytes, p: int, end: int, want_map: bool) -> Tuple[Optional[int], int]:
    """An array (or map) header at p: (count, next) or (None, p)."""
    if p >= end:
        raise _bad("a value runs past the end")
    t = b[p]
    if want_map:
        if 0x80 <= t <= 0x8F:
            return t & 0x0F, p + 1
        if t == 0xDE or t == 0xDF:
            k = 2 if t == 0xDE else 4
            return _length(b, p + 1, end, k), p + 1 + k
    else:
        if 0x90 <= t <= 0x9F:
            return t & 0x0F, p + 1
        if t == 0xDC or t == 0xDD:
            k = 2 if t == 0xDC else 4
            return _length(b, p + 1, end, k), p + 1 + k
    return None, p


# ---------------------------------------------------------------------------
# Names, keys, topics (1.2, 2.1)

_FORBIDDEN = re.compile("[\x00-\x20\x7f-\x9f\ud800-\udfff]")


def _alphabet_ok(raw: bytes) -> bool:
    """True if raw is UTF-8 (shortest forms, no surrogates, nothing above
    U+10FFFF) without control characters or spaces. Any length."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return _FORBIDDEN.search(text) is None


def name_ok(name: Any) -> bool:
    """True if name (str or bytes) is a valid name: 1 to 255 bytes of the
    names' alphabet (1-envelope.md 1.2)."""
    if isinstance(name, str):
        try:
            raw = name.encode("utf-8")
        except UnicodeEncodeError:
            return False
    elif isinstance(name, (bytes, bytearray)):
        raw = bytes(name)
    else:
        return False
    return 1 <= len(raw) <= 255 and _alphabet_ok(raw)


def check_name(name: Any, what: str = "name") -> str:
    """Returns name if valid; raises troupe.InvalidArgument otherwise."""
    if type(name) is str and name in _names_written:
        return name                             # judged before
    if not isinstance(name, str) or not name_ok(name):
        raise errors.InvalidArgument("%s %r is not a valid name (1 to 255 bytes of "
                                     "UTF-8, no spaces or control characters)" % (what, name))
    return name


def _text_ok(s: Any, lo: int, hi: int) -> bool:
    if not isinstance(s, str):
        return False
    try:
        raw = s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return lo <= len(raw) <= hi and _alphabet_ok(raw)


def check_text(s: Any, lo: int, hi: int, what: str) -> str:
    """Returns s if it is a str of lo..hi bytes of the names' alphabet (a
    key, topic or prefix, 2.1); raises troupe.InvalidArgument otherwise."""
    if not _text_ok(s, lo, hi):
        raise errors.InvalidArgument("%s %r must be %d to %d bytes of UTF-8 without spaces "
                                     "or control characters" % (what, s, lo, hi))
    return s


# ---------------------------------------------------------------------------
# Names already judged. The same few names cross every message of a
# node; whether a name is valid depends on its bytes alone, so the answer
# is kept, in tables of at most _NAMES_MAX entries emptied when full (a
# peer sending ever new names costs the full check each time, no more).

_NAMES_MAX = 4096
#: Valid names read: their UTF-8 bytes -> the str.
_names_read: Dict[bytes, str] = {}
#: Valid names written: the str -> its msgpack str (header and UTF-8).
_names_written: Dict[str, bytes] = {}


def _read_name(raw: bytes) -> Optional[str]:
    """raw (bytes) as a str if it is a valid name, else None."""
    s = _names_read.get(raw)
    if s is None:
        if not (1 <= len(raw) <= 255 and _alphabet_ok(raw)):
            return None
        s = raw.decode("utf-8")
        if len(_names_read) >= _NAMES_MAX:
            _names_read.clear()
        _names_read[raw] = s
    return s


def _packed_name(name: Any) -> Optional[bytes]:
    """name's msgpack str if name is a str and a valid name, else None."""
    if type(name) is not str:
        return None
    w = _names_written.get(name)
    if w is None:
        if not name_ok(name):
            return None
        raw = name.encode("utf-8")
        w = _w_str_header(len(raw)) + raw
        if len(_names_written) >= _NAMES_MAX:
            _names_written.clear()
        _names_written[name] = w
    return w


# ---------------------------------------------------------------------------
# Writing (shortest forms)

_pack_u8 = struct.Struct(">B").pack
_pack_u16 = struct.Struct(">BH").pack
_pack_u32 = struct.Struct(">BI").pack
_pack_u64 = struct.Struct(">BQ").pack
_pack_i8 = struct.Struct(">Bb").pack
_pack_i16 = struct.Struct(">Bh").pack
_pack_i32 = struct.Struct(">Bi").pack
_pack_i64 = struct.Struct(">Bq").pack


def _w_int(v: int) -> bytes:
    if v >= 0:
        if v < 0x80:
            return _pack_u8(v)
        if v <= 0xFF:
            return b"\xcc" + _pack_u8(v)
        if v <= 0xFFFF:
            return _pack_u16(0xCD, v)
        if v <= 0xFFFFFFFF:
            return _pack_u32(0xCE, v)
        return _pack_u64(0xCF, v)
    if v >= -32:
        return _pack_u8(v + 0x100)
    if v >= -0x80:
        return _pack_i8(0xD0, v)
    if v >= -0x8000:
        return _pack_i16(0xD1, v)
    if v >= -0x80000000:
        return _pack_i32(0xD2, v)
    return _pack_i64(0xD3, v)


def _w_str_header(n: int) -> bytes:
    if n < 32:
        return _pack_u8(0xA0 | n)
    if n <= 0xFF:
        return b"\xd9" + _pack_u8(n)
    if n <= 0xFFFF:
        return _pack_u16(0xDA, n)
    return _pack_u32(0xDB, n)


def _w_str(raw: bytes) -> bytes:
    return _w_str_header(len(raw)) + raw


def _w_header(n: int, fix: int, b16: int, b32: int) -> bytes:
    if n < 16:
        return _pack_u8(fix | n)
    if n <= 0xFFFF:
        return _pack_u16(b16, n)
    return _pack_u32(b32, n)


class Raw(bytes):
    """One value already encoded as msgpack, written as is by
    :func:`encode_command` (as an envelope's body is)."""


_packer_opts = dict(use_bin_type=True, unicode_errors="surrogateescape")


def pack_value(value: Any) -> bytes:
    """value as one msgpack value (str as str, bytes as bin). Raises
    troupe.InvalidArgument for a value msgpack cannot hold, troupe.TooDeep
    past 32 levels, troupe.TooBig past 17 MiB."""
    if type(value) in _PLAIN:
        #  One value without containers, written by this thread's packer
        #  (no Python code runs while it packs such a value): only its size
        #  is left to judge.
        try:
            packer = _local.packer
        except AttributeError:
            packer = _local.packer = msgpack.Packer(**_packer_opts)
        try:
            data = packer.pack(value)
        except (TypeError, ValueError, OverflowError) as e:
            raise errors.InvalidArgument("cannot encode %s as msgpack: %s"
                                         % (type(value).__name__, e)) from None
        if len(data) > MAX_ENVELOPE:
            raise errors.TooBig("a value of %d bytes (the most is %d)"
                                % (len(data), MAX_ENVELOPE))
        return data
    if isinstance(value, Raw):
        data = bytes(value)
    else:
        try:
            data = msgpack.packb(value, **_packer_opts)
        except (TypeError, ValueError, OverflowError) as e:
            raise errors.InvalidArgument("cannot encode %s as msgpack: %s"
                                         % (type(value).__name__, e)) from None
    check_value(data)
    return data


_local = threading.local()


#  Types that msgpack writes as one value without containers.
_PLAIN = frozenset((str, bytes, int, float, bool, type(None)))


def _plain_end(data: bytes, p: int, end: int) -> int:
    """Where the value at p ends if it is a scalar other than ext 8/16/32
    that fits before end, read from its header alone; -1 for anything
    else (a container, an ext, 0xc1, a value cut short)."""
    kind, n = _TYPES[data[p]]
    if kind == _SCALAR or kind == _FIXSTR:
        q = p + 1 + n
    elif kind == _STR or kind == _BIN:
        if p + 1 + n > end:
            return -1
        q = p + 1 + n + int.from_bytes(data[p + 1:p + 1 + n], "big")
    else:
        return -1
    return q if q <= end else -1


def check_value(data: bytes, limit: int = BODY_DEPTH) -> None:
    """Checks that data is exactly one msgpack value nested at most `limit`
    deep; raises troupe.Malformed, TooDeep or TooBig otherwise."""
    if len(data) > MAX_ENVELOPE:
        raise errors.TooBig("a value of %d bytes (the most is %d)" % (len(data), MAX_ENVELOPE))
    if data and _plain_end(data, 0, len(data)) == len(data):
        return                                  # a scalar, exactly: nothing to walk
    try:
        if _skip(data, 0, len(data), limit) != len(data):
            raise _bad("bytes after the value")
    except DecodeError as e:
        raise e.to_error() from None


def unpack_value(data: bytes) -> Any:
    """One msgpack value as Python values: str for str (invalid UTF-8 kept
    with surrogateescape), bytes for bin, list, dict (map keys that are
    arrays become tuples), int, float, bool, None, msgpack.ExtType.
    ``b""`` (an empty body) gives None."""
    if not data:
        return None
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False,
                               unicode_errors="surrogateescape")
    except TypeError:
        #  An array as a map key: unhashable as a list, fine as a tuple.
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=False,
                                   unicode_errors="surrogateescape")
        except Exception as e:
            raise errors.Malformed("the value cannot be represented in Python: %s" % e) from None
    except Exception as e:
        raise errors.Malformed("not one msgpack value: %s" % e) from None


def canonical(data: bytes) -> bytes:
    """The canonical form of one well-formed msgpack value (every integer,
    str, array and map header in its shortest form, as 2.1 and the
    vectors define it; floats, bin and ext kept as written). Raises DecodeError if data is not one value."""
    out: List[bytes] = []
    p = _canonical(data, 0, len(data), out, 0)
    if p != len(data):
        raise _bad("bytes after the value")
    return b"".join(out)


def _canonical(b: bytes, p: int, end: int, out: List[bytes], depth: int) -> int:
    if depth > 64:
        raise _bad("nested too deep to rewrite", _EDEPTH)
    v, q = _read_int(b, p, end)
    if v is not None:
        out.append(_w_int(v))
        return q
    s, q = _read_str(b, p, end)
    if s is not None:
        out.append(_w_str(s))
        return q
    for want_map in (False, True):
        n, q = _read_container(b, p, end, want_map)
        if n is not None:
            if want_map:
                out.append(_w_header(n, 0x80, 0xDE, 0xDF))
            else:
                out.append(_w_header(n, 0x90, 0xDC, 0xDD))
            for _ in range(2 * n if want_map else n):
                q = _canonical(b, q, end, out, depth + 1)
            return q
    q = _skip(b, p, end, 1)
    out.append(bytes(b[p:q]))          # nil, bools, floats, bin, ext: as written
    return q


# ---------------------------------------------------------------------------
# Envelopes (1-envelope.md)

@dataclass
class Envelope:
    """One actor message as it crosses a process boundary (1.1).

    ``body`` holds the payload's msgpack bytes as they travel (``b""``: no
    body); ``deadline`` is Unix time in microseconds (0: none)."""

    kind: int
    id: int
    to: str
    sender: str = ""
    corr: int = 0
    deadline: int = 0
    priority: int = 0
    trace: int = 0
    error: int = 0
    body: bytes = b""


_KIND_NAMES = {TELL: "tell", ASK: "ask", REPLY: "reply", ERROR: "error"}


_U64_END = 1 << 64
_I32_MIN = -(1 << 31)
#  Positive fixints and map headers of up to 15 pairs, written.
_FIX = [bytes((i,)) for i in range(256)]


def encode_envelope(env: Envelope) -> bytes:
    """The canonical bytes of env (1.1). Raises troupe.InvalidArgument for
    a field out of its range or a bad name, troupe.TooBig past 17 MiB."""
    #  The common case at a glance: fields of their exact types within
    #  their ranges, names judged before (_packed_name). Anything else,
    #  valid or not, is written or refused by _encode_envelope_full.
    kind, env_id, corr, error = env.kind, env.id, env.corr, env.error
    deadline, trace, priority, body = env.deadline, env.trace, env.priority, env.body
    to, sender = env.to, env.sender
    if type(to) is str and type(sender) is str:
        to = _names_written.get(to) or _packed_name(to)
        sender = b"\xa0" if sender == "" else (_names_written.get(sender)
                                                 or _packed_name(sender))
    else:
        to = None
    if (to is None or sender is None or type(kind) is not int or type(env_id) is not int
            or type(corr) is not int or type(error) is not int or type(deadline) is not int
            or type(trace) is not int or type(priority) is not int or type(body) is not bytes
            or not 0 <= env_id < _U64_END or not 0 <= deadline < _U64_END
            or not 0 <= trace < _U64_END or not -1 <= priority <= 1):
        return _encode_envelope_full(env)
    if kind == ASK or kind == TELL:
        if corr or error:
            return _encode_envelope_full(env)
    elif kind == REPLY:
        if not 0 < corr < _U64_END or error:
            return _encode_envelope_full(env)
    elif kind == ERROR:
        if not 0 < corr < _U64_END or not _I32_MIN <= error < 0:
            return _encode_envelope_full(env)
    else:
        return _encode_envelope_full(env)
    #  A key and its value in two items each: the pairs are counted.
    parts = [b"", b"\x00", b"\x01", b"\x01", _FIX[kind], b"\x02",
             _FIX[env_id] if env_id < 128 else _w_int(env_id)]
    if corr:
        parts += (b"\x03", _FIX[corr] if corr < 128 else _w_int(corr))
    parts += (b"\x04", to, b"\x05", sender)
    if deadline:
        parts += (b"\x06", _w_int(deadline))
    if priority:
        parts += (b"\x07", b"\x01" if priority > 0 else b"\xff")
    if trace:
        parts += (b"\x08", _w_int(trace))
    if error:
        parts += (b"\x09", _w_int(error))
    if body:
        parts += (b"\x0a", body)
    parts[0] = _FIX[0x80 | (len(parts) - 1) // 2]
    data = b"".join(parts)
    if len(data) > MAX_ENVELOPE:
        return _encode_envelope_full(env)       # says TooBig
    return data


def _encode_envelope_full(env: Envelope) -> bytes:
    """encode_envelope for any envelope: every field judged, each refusal
    with its precise error."""
    if env.kind not in _KIND_NAMES:
        raise errors.InvalidArgument("kind %r is not 1..4" % (env.kind,))
    to = env.to.encode("utf-8") if isinstance(env.to, str) else b""
    if not name_ok(to):
        raise errors.InvalidArgument("to %r is not a valid name" % (env.to,))
    sender = env.sender.encode("utf-8") if isinstance(env.sender, str) else b"\x00"
    if sender and not name_ok(sender):
        raise errors.InvalidArgument("from %r is not a valid name" % (env.sender,))
    for fname in ("id", "corr", "deadline", "trace"):
        v = getattr(env, fname)
        if not isinstance(v, int) or not 0 <= v < 1 << 64:
            raise errors.InvalidArgument("%s %r is not a 64-bit uint" % (fname, v))
    answer = env.kind in (REPLY, ERROR)
    if answer and env.corr == 0:
        raise errors.InvalidArgument("a reply or an error needs corr")
    if not answer and env.corr:
        raise errors.InvalidArgument("corr belongs to replies and errors only")
    if env.kind == ERROR and not -(1 << 31) <= env.error < 0:
        raise errors.InvalidArgument("an error needs a negative 32-bit code")
    if env.kind != ERROR and env.error:
        raise errors.InvalidArgument("error belongs to errors only")
    if env.priority not in (-1, 0, 1):
        raise errors.InvalidArgument("priority %r is not -1..1" % (env.priority,))
    parts = [b"", b"\x00\x01\x01", _w_int(env.kind), b"\x02", _w_int(env.id)]
    n = 5
    if env.corr:
        parts += [b"\x03", _w_int(env.corr)]
        n += 1
    parts += [b"\x04", _w_str(to), b"\x05", _w_str(sender)]
    if env.deadline:
        parts += [b"\x06", _w_int(env.deadline)]
        n += 1
    if env.priority:
        parts += [b"\x07", _w_int(env.priority)]
        n += 1
    if env.trace:
        parts += [b"\x08", _w_int(env.trace)]
        n += 1
    if env.error:
        parts += [b"\x09", _w_int(env.error)]
        n += 1
    if env.body:
        parts += [b"\x0a", env.body]
        n += 1
    parts[0] = _pack_u8(0x80 | n)
    data = b"".join(parts)
    if len(data) > MAX_ENVELOPE:
        raise errors.TooBig("an envelope of %d bytes (the most is %d)" % (len(data), MAX_ENVELOPE))
    return data


def decode_envelope(data: bytes) -> Envelope:
    """Decodes and checks one envelope (1.2). Raises DecodeError with the
    code the specification gives (TR_EMALFORMED, TR_EVERSION, TR_EDEPTH,
    TR_ETOOBIG). The body is a slice of data (its msgpack bytes)."""
    #  The common case first: the canonical layout every troupe encoder
    #  writes (1.1: a fixmap, keys ascending as fixints, integers and
    #  names in their shortest forms), read byte by byte. It yields an
    #  envelope only if the bytes are that layout and valid by every rule
    #  of 1.2 (version, kinds, ranges, corr and error by kind, names, the
    #  body one value nested at most 32 deep). Anything else, valid or
    #  not, goes to the bounded reader, which decides and says precisely
    #  what is wrong.
    try:
        env = _decode_canonical(data)
    except (IndexError, DecodeError):
        env = None
    if env is None:
        env = _decode_envelope_full(data)
    return env


_from_bytes = int.from_bytes


def _decode_canonical(data: bytes) -> Optional[Envelope]:
    """decode_envelope's common case (see there): the envelope if data is
    a valid envelope in the canonical layout, else None. Reads past the
    end raise IndexError (the caller takes it as None)."""
    end = len(data)
    if type(data) is not bytes or not 8 <= end <= MAX_ENVELOPE:
        return None
    n = data[0] - 0x84                      # pairs after version, kind, id and to
    if not 0 <= n <= 11 or data[1] != 0 or data[2] != 1 or data[3] != 1 or data[5] != 2:
        return None
    kind = data[4]
    if not 1 <= kind <= 4:
        return None
    p = 7
    env_id = data[6]
    if env_id >= 0x80:
        if not 0xcc <= env_id <= 0xcf:
            return None
        p = 7 + (1 << (env_id - 0xcc))
        env_id = _from_bytes(data[7:p], "big")
    k = data[p]
    corr = 0
    if k == 3:
        corr = data[p + 1]
        q = p + 2
        if corr >= 0x80:
            if not 0xcc <= corr <= 0xcf:
                return None
            q = p + 2 + (1 << (corr - 0xcc))
            corr = _from_bytes(data[p + 2:q], "big")
        if corr == 0 or kind < 3:
            return None
        p = q
        n -= 1
        k = data[p]
    elif kind >= 3:
        return None
    if k != 4:
        return None
    t = data[p + 1]
    if 0xa0 <= t <= 0xbf:
        s = p + 2
        p = s + t - 0xa0
    elif t == 0xd9:
        s = p + 3
        p = s + data[p + 2]
    else:
        return None
    if p > end:
        return None
    raw = data[s:p]
    to = _names_read.get(raw) or _read_name(raw)
    if to is None:
        return None
    sender = ""
    deadline = priority = trace = error = 0
    body = b""
    last = 4
    while n:
        n -= 1
        k = data[p]
        if not last < k <= 10:
            return None
        last = k
        t = data[p + 1]
        if k == 10:                         # the body: anything, one value
            q = _plain_end(data, p + 1, end)
            if q < 0:
                q = _skip(data, p + 1, end, BODY_DEPTH)
            body = data[p + 1:q]
            p = q
        elif k == 5:
            if 0xa0 <= t <= 0xbf:
                s = p + 2
                p = s + t - 0xa0
            elif t == 0xd9:
                s = p + 3
                p = s + data[p + 2]
            else:
                return None
            if p > end:
                return None
            if p > s:
                raw = data[s:p]
                sender = _names_read.get(raw) or _read_name(raw)
                if sender is None:
                    return None
        elif k == 7:
            if t == 1:
                priority = 1
            elif t == 0xff:
                priority = -1
            elif t != 0:
                return None
            p += 2
        elif k == 9:
            if t >= 0xe0:
                error = t - 0x100
                p += 2
            elif 0xd0 <= t <= 0xd2:
                q = p + 2 + (1 << (t - 0xd0))
                error = _from_bytes(data[p + 2:q], "big", signed=True)
                p = q
            else:
                return None
            if error >= 0:
                return None
        else:                               # 6 deadline, 8 trace: uints
            v = t
            q = p + 2
            if t >= 0x80:
                if not 0xcc <= t <= 0xcf:
                    return None
                q = p + 2 + (1 << (t - 0xcc))
                v = _from_bytes(data[p + 2:q], "big")
            p = q
            if k == 6:
                deadline = v
            else:
                trace = v
    if p != end or (kind == ERROR) != (error != 0):
        return None
    return Envelope(kind, env_id, to, sender, corr, deadline, priority, trace, error, body)


def _decode_envelope_full(data: bytes) -> Envelope:
    """decode_envelope by the bounded pure-Python reader alone: any input,
    every refusal with its precise code."""
    end = len(data)
    if end > MAX_ENVELOPE:
        raise _bad("an envelope larger than 17 MiB", _ETOOBIG)
    b = data
    n, p = _read_container(b, 0, end, True)
    if n is None:
        raise _bad("the envelope is not a msgpack map")
    if 2 * n > end - p:
        raise _bad("a map count larger than the bytes left")
    #  First the form: keys, and every value well-formed within the depth.
    at: List[Optional[int]] = [None] * 64
    for _ in range(n):
        k, q = _read_int(b, p, end)
        if k is None or k < 0 or k >= 64:
            if k is None:
                _skip(b, p, end, BODY_DEPTH)       # 0xc1 and cut keys say so
            raise _bad("a key that is not an integer 0..63")
        if at[k] is not None:
            raise _bad("key %d appears twice" % k)
        at[k] = q
        p = _skip(b, q, end, BODY_DEPTH)
    if p != end:
        raise _bad("bytes after the envelope's map")
    #  The version before any other field's meaning.
    if at[0] is None:
        raise _bad("no version (key 0)")
    version, _ = _read_int(b, at[0], end)
    if version is None or version < 0:
        raise _bad("the version is not a uint")
    if version != 1:
        raise _bad("envelope version %d (this is version 1)" % version, _EVERSION)

    def uint(key: int, what: str, lo: int = 0, hi: int = (1 << 64) - 1) -> int:
        pos = at[key]
        if pos is None:
            return 0
        v, _ = _read_int(b, pos, end)
        if v is None or not lo <= v <= hi:
            raise _bad("%s is not an integer in %d..%d" % (what, lo, hi))
        return v

    def name(key: int, what: str) -> str:
        pos = at[key]
        raw, _ = _read_str(b, pos, end)
        if raw is None:
            raise _bad("%s is not a str" % what)
        if what == "from" and raw == b"":
            return ""
        if not (1 <= len(raw) <= 255 and _alphabet_ok(raw)):
            raise _bad("%s is not a valid name" % what)
        return raw.decode("utf-8")

    if at[1] is None or at[2] is None or at[4] is None:
        raise _bad("kind, id or to missing")
    kind = uint(1, "kind", 1, 4)
    env_id = uint(2, "id")
    corr = uint(3, "corr")
    deadline = uint(6, "deadline")
    priority = uint(7, "priority", -1, 1)
    trace = uint(8, "trace")
    error = uint(9, "error", -(1 << 31), (1 << 31) - 1)
    answer = kind == REPLY or kind == ERROR
    if answer and (at[3] is None or corr == 0):
        raise _bad("a reply or an error without corr")
    if not answer and at[3] is not None:
        raise _bad("corr in a tell or an ask")
    if kind == ERROR and (at[9] is None or error >= 0):
        raise _bad("an error without a negative error code")
    if kind != ERROR and at[9] is not None:
        raise _bad("an error code in a message that is not an error")
    to = name(4, "to")
    sender = name(5, "from") if at[5] is not None else ""
    body = b""
    if at[10] is not None:
        body = bytes(b[at[10]:_skip(b, at[10], end, BODY_DEPTH)])
    return Envelope(kind, env_id, to, sender, corr, deadline, priority, trace, error, body)


# ---------------------------------------------------------------------------
# Command frames (2-broker.md)

#  Argument types of 2.3 and 2.4.
_A_ANY, _A_UINT, _A_CODE, _A_STR, _A_NAME, _A_KEY, _A_TOPIC, _A_PREFIX, _A_KPREFIX, \
    _A_NAMES, _A_KIND, _A_HEARTBEAT, _A_SIZES, _A_TOPICS, _A_UINTS = range(15)

#: Each verb: (arguments required, the types of those this version reads).
#: OK's results depend on the request, which the frame does not name.
VERBS = {
    "HELLO": (6, (_A_STR, _A_UINT, _A_UINT, _A_NAME, _A_KIND, _A_HEARTBEAT)),
    "OK": (0, ()),
    "ERROR": (2, (_A_CODE, _A_STR)),
    "REGISTER": (1, (_A_NAME,)),
    "UNREGISTER": (1, (_A_NAME,)),
    "SEND": (1, (_A_NAME,)),
    "DELIVER": (0, ()),
    "BOUNCE": (2, (_A_NAME, _A_CODE)),
    "SENDS": (2, (_A_NAMES, _A_SIZES)),                 # 1.1
    "DELIVERS": (1, (_A_SIZES,)),                       # 1.1
    "PUBS": (2, (_A_TOPICS, _A_SIZES)),                 # 1.1
    "EVENTS": (3, (_A_NAME, _A_TOPICS, _A_SIZES, _A_UINT)),  # 1.1, DROPPED optional
    "MULTI": (2, (_A_SIZES, _A_UINTS)),                 # 1.1: command and payload sizes
    "NODES": (0, ()),
    "HEARTBEAT": (0, ()),
    "BYE": (0, ()),
    "NODE_DOWN": (2, (_A_NAME, _A_NAMES)),
    "SUB": (1, (_A_PREFIX,)),
    "UNSUB": (1, (_A_PREFIX,)),
    "PUB": (1, (_A_TOPIC,)),
    "EVENT": (2, (_A_TOPIC, _A_NAME, _A_UINT)),          # DROPPED optional
    "KV_GET": (1, (_A_KEY,)),
    "KV_PUT": (2, (_A_KEY, _A_UINT)),
    "KV_CAS": (3, (_A_KEY, _A_UINT, _A_UINT)),
    "KV_DEL": (1, (_A_KEY,)),
    "KV_LIST": (1, (_A_KPREFIX,)),
    "KV_SNAPSHOT": (1, (_A_KPREFIX,)),
    "KV_WATCH": (2, (_A_KPREFIX, _A_UINT)),
    "KV_UNWATCH": (1, (_A_KPREFIX,)),
    "KV_CHANGE": (3, (_A_KPREFIX, _A_KEY, _A_UINT)),
    "KV_RESYNC": (1, (_A_KPREFIX,)),
}


@dataclass
class Command:
    """One command frame as read: the verb (str), SEQ, and each argument
    after SEQ as its msgpack bytes (``raw_args``). ``args`` holds the
    arguments this version knows, read as Python values (str, int, list of
    str) once :func:`check_command` has passed."""

    verb: str
    seq: int
    raw_args: List[bytes]
    args: List[Any] = field(default_factory=list)

    def arg(self, i: int) -> Any:
        """Argument i (0 is the first after SEQ) as a Python value, or None
        if absent."""
        if i < len(self.args):
            return self.args[i]
        if i < len(self.raw_args):
            return unpack_value(self.raw_args[i])
        return None


def encode_command(verb: str, seq: int, *args: Any) -> bytes:
    """The frame [verb, seq, args...] in canonical form. Arguments are
    Python values (str, int, list, dict...) or :class:`Raw` msgpack."""
    parts = [_w_header(2 + len(args), 0x90, 0xDC, 0xDD),
             _w_str(verb.encode("ascii")), _w_int(seq)]
    for a in args:
        if isinstance(a, Raw):
            parts.append(bytes(a))
        elif isinstance(a, bool) or a is None:
            parts.append(b"\xc3" if a is True else b"\xc2" if a is False else b"\xc0")
        elif isinstance(a, int):
            parts.append(_w_int(a))
        elif isinstance(a, str):
            parts.append(_w_str(a.encode("utf-8", "surrogateescape")))
        else:
            parts.append(msgpack.packb(a, **_packer_opts))
    return b"".join(parts)


_SEND_HEAD = b"\x93\xa4SEND\x00"


def encode_send(to: str) -> bytes:
    """encode_command("SEND", 0, to), the frame before every envelope a
    node sends, for a valid name (troupe.InvalidArgument otherwise)."""
    w = _packed_name(to)
    if w is None:
        check_name(to, "to")                    # raises
    return _SEND_HEAD + w


def parse_command(data: bytes) -> Command:
    """Reads a frame's head: an array of at least two elements starting
    with a str verb of 1 to 32 bytes and a uint SEQ. Every argument is
    walked (well-formed, nested at most 34 deep) and nothing may follow.
    Raises DecodeError (TR_ETOOBIG, TR_EMALFORMED; ``seq`` attribute set
    when SEQ could be read). An unknown verb is not an error here."""
    end = len(data)
    b = data
    if end > MAX_FRAME:
        raise _bad("a frame larger than max_frame", _ETOOBIG)
    n, p = _read_container(b, 0, end, False)
    if n is None:
        raise _bad("a command frame must be a msgpack array")
    if n > end - p:
        raise _bad("an array count larger than the bytes left")
    if n < 2:
        raise _bad("a command needs a verb and a SEQ")
    verb, q = _read_str(b, p, end)
    if verb is None or not 1 <= len(verb) <= VERB_MAX:
        e = _bad("the verb must be a str of 1 to 32 bytes")
        try:
            s, _ = _read_int(b, _skip(b, p, end, ARG_DEPTH), end)
            e.seq = s if s is not None and s >= 0 else 0  # type: ignore[attr-defined]
        except DecodeError:
            pass
        raise e
    seq, q = _read_int(b, q, end)
    if seq is None or seq < 0:
        raise _bad("SEQ must be a uint")
    raw_args = []
    p = q
    for _ in range(n - 2):
        try:
            q = _skip(b, p, end, ARG_DEPTH)
        except DecodeError as e:
            #  Too deep is malformed here (2.6), not TR_EDEPTH.
            raise _bad(e.why) from None
        raw_args.append(bytes(b[p:q]))
        p = q
    if p != end:
        raise _bad("bytes after the command's array")
    try:
        word = verb.decode("utf-8")
    except UnicodeDecodeError:
        word = verb.decode("latin-1")           # an unknown verb all the same
    return Command(word, seq, raw_args)


def _read_arg(raw: bytes, kind: int) -> Any:
    end = len(raw)
    if kind in (_A_UINT, _A_HEARTBEAT):
        v, _ = _read_int(raw, 0, end)
        if v is None or v < 0:
            raise _bad("expected a uint argument")
        return v
    if kind == _A_CODE:
        v, _ = _read_int(raw, 0, end)
        if v is None or not -(1 << 31) <= v < 0:
            raise _bad("an error CODE must be a negative 32-bit int")
        return v
    if kind == _A_NAMES or kind == _A_TOPICS:
        n, p = _read_container(raw, 0, end, False)
        if n is None:
            raise _bad("expected an array of names")
        out = []
        for _ in range(n):
            s, p = _read_str(raw, p, end)
            if s is None:
                raise _bad("expected an array of names (str)")
            out.append(s)
        return out
    if kind == _A_SIZES or kind == _A_UINTS:
        n, p = _read_container(raw, 0, end, False)
        if n is None:
            raise _bad("expected an array of sizes")
        sizes = []
        for _ in range(n):
            v, p = _read_int(raw, p, end)
            if v is None or v < 0:
                raise _bad("expected an array of sizes (uint)")
            sizes.append(v)
        return sizes
    if kind == _A_ANY:
        return unpack_value(raw)
    s, _ = _read_str(raw, 0, end)
    if s is None:
        raise _bad("expected a str argument")
    return s


def _judge_arg(v: Any, kind: int) -> Optional[str]:
    if kind == _A_NAME:
        return None if 1 <= len(v) <= 255 and _alphabet_ok(v) else "not a valid name"
    if kind == _A_SIZES:
        return None if all(v >= 1 for v in v) else "a size of 0 in a list of sizes"
    if kind == _A_TOPICS:
        ok = all(1 <= len(s) <= 255 and _alphabet_ok(s) for s in v)
        return None if ok else "not a list of valid topics"
    if kind == _A_NAMES:
        ok = all(1 <= len(s) <= 255 and _alphabet_ok(s) for s in v)
        return None if ok else "not a list of valid names"
    if kind == _A_KEY:
        return None if 1 <= len(v) <= 1024 and _alphabet_ok(v) else "not a valid key"
    if kind == _A_TOPIC:
        return None if 1 <= len(v) <= 255 and _alphabet_ok(v) else "not a valid topic"
    if kind == _A_PREFIX:
        return None if len(v) <= 255 and _alphabet_ok(v) else "not a valid prefix"
    if kind == _A_KPREFIX:
        return None if len(v) <= 1024 and _alphabet_ok(v) else "not a valid prefix"
    if kind == _A_KIND:
        return None if v in (b"node", b"actor", b"client") else "KIND must be node, actor or client"
    if kind == _A_HEARTBEAT:
        return None if 100 <= v <= 60000 else "HEARTBEAT_MS must be 100 to 60000"
    return None


def check_command(cmd: Command) -> Command:
    """Checks a parsed frame against 2.3 and 2.4, in this order: the verb
    is known (else TR_EINVAL); HELLO's signature "TRP" (else TR_EPROTO) and
    MAJOR 1 (else TR_EMALFORMED for a non-uint, TR_EVERSION for another);
    the arguments required are there, each of its msgpack type (else
    TR_EMALFORMED); their values (names, keys, topics, prefixes, KIND,
    HEARTBEAT_MS) are valid (else TR_EINVAL). Arguments past those known
    are not judged (2.8). Raises DecodeError; returns cmd with ``args``
    filled (strs decoded, names as lists of str)."""
    schema = VERBS.get(cmd.verb)
    if schema is None:
        raise _bad("unknown verb %r" % cmd.verb, _EINVAL)
    required, types = schema
    raw = cmd.raw_args
    if cmd.verb == "HELLO":
        sig = _read_str(raw[0], 0, len(raw[0]))[0] if raw else None
        if sig != b"TRP":
            raise _bad("HELLO must start with the signature \"TRP\"", _EPROTO)
        major = _read_int(raw[1], 0, len(raw[1]))[0] if len(raw) > 1 else None
        if major is None or major < 0:
            raise _bad("HELLO's MAJOR must be a uint")
        if major != 1:
            raise _bad("another major version of the protocol (%d)" % major, _EVERSION)
    if len(raw) < required:
        raise _bad("%s needs %d arguments" % (cmd.verb, required))
    known = min(len(raw), len(types))
    values = [_read_arg(raw[i], types[i]) for i in range(known)]
    for i in range(known):
        why = _judge_arg(values[i], types[i])
        if why:
            raise _bad("%s: argument %d: %s" % (cmd.verb, i + 1, why), _EINVAL)
    out: List[Any] = []
    for i in range(known):
        v = values[i]
        if isinstance(v, bytes):
            v = v.decode("utf-8", "surrogateescape")
        elif isinstance(v, list) and types[i] in (_A_NAMES, _A_TOPICS):
            v = [s.decode("utf-8") for s in v]
        out.append(v)
    cmd.args = out
    return cmd


def read_command(data: bytes) -> Command:
    """parse_command then check_command."""
    return check_command(parse_command(data))


def args_of(values: Sequence[bytes]) -> List[Any]:
    """Each msgpack value of values as Python values."""
    return [unpack_value(v) for v in values]
