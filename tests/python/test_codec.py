"""The binding's codec and errors beyond the vectors: every refusal of the
encoders with its precise error, values Python cannot hold, and the
error list checked against include/troupe/tr_error.h itself."""

import pathlib
import re

import msgpack
import pytest

import troupe
from troupe import codec, errors
from troupe.codec import ASK, ERROR, REPLY, TELL, Envelope

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_error_list_matches_tr_error_h():
    text = (ROOT / "include" / "troupe" / "tr_error.h").read_text()
    entries = re.findall(r'X \((\w+),\s*(-?\d+), "([^"]*)"\)', text)
    assert len(entries) >= 31
    for name, code, meaning in entries:
        code = int(code)
        assert errors.CODES[name] == code
        assert errors.strerror(code) == meaning
        assert errors.errname(code) == "TR_" + name
        if code:
            e = errors.error_for(code, "detail")
            assert type(e) is errors.exception_class(code) and e.code == code
            assert isinstance(e, troupe.TroupeError)
            assert str(e) == "detail: %s (TR_%s)" % (meaning, name)
    # One class per code, none shared.
    classes = [errors.exception_class(int(c)) for _, c, _ in entries if int(c)]
    assert len(set(classes)) == len(classes)
    assert errors.error_for(-1234).code == -1234
    assert isinstance(errors.error_for(-1234), troupe.ApplicationError)
    assert type(errors.error_for(-999)) is troupe.TroupeError     # unknown, still a failure
    with pytest.raises(ValueError):
        troupe.ApplicationError(-5)


def ok_env(**kw):
    env = Envelope(TELL, 1, "pong", "ping")
    for k, v in kw.items():
        setattr(env, k, v)
    return env


@pytest.mark.parametrize("fields, why", [
    (dict(kind=0), "kind"),
    (dict(kind=5), "kind"),
    (dict(to=""), "to"),
    (dict(to="a b"), "to"),
    (dict(to="x" * 256), "to"),
    (dict(sender="a\tb"), "from"),
    (dict(id=-1), "id"),
    (dict(id=1 << 64), "id"),
    (dict(deadline=-5), "deadline"),
    (dict(trace=1 << 64), "trace"),
    (dict(corr=3), "corr"),
    (dict(kind=REPLY), "corr"),
    (dict(kind=ERROR, corr=2), "error"),
    (dict(kind=ERROR, corr=2, error=3), "error"),
    (dict(kind=ERROR, corr=2, error=-(1 << 31) - 1), "error"),
    (dict(error=-3), "error"),
    (dict(priority=2), "priority"),
])
def test_encoder_refuses_what_decoders_refuse(fields, why):
    with pytest.raises(troupe.InvalidArgument) as info:
        codec.encode_envelope(ok_env(**fields))
    assert why in str(info.value)


def test_round_trips_and_limits():
    env = Envelope(ERROR, 9, "agent", "db", corr=7, error=-1042, trace=5, priority=-1,
                   deadline=1700000000123456, body=codec.pack_value({"why": "busy"}))
    assert codec.decode_envelope(codec.encode_envelope(env)) == env
    # The example of 1-envelope.md 1.6.
    assert codec.encode_envelope(Envelope(TELL, 1, "pong", "ping", body=b"\xa2hi")) == \
        bytes.fromhex("86 00 01 01 01 02 01 04 a4 70 6f 6e 67 05 a4 70 69 6e 67 0a a2 68 69")
    with pytest.raises(troupe.TooBig):
        codec.encode_envelope(ok_env(body=b"\xc6" + (17 * 1024 * 1024).to_bytes(4, "big")
                                     + bytes(17 * 1024 * 1024)))
    with pytest.raises(codec.DecodeError) as info:
        codec.decode_envelope(bytes(17 * 1024 * 1024 + 1))
    assert info.value.code == -13
    # Values.
    deep = 1
    for _ in range(33):
        deep = [deep]
    with pytest.raises(troupe.TooDeep):
        codec.pack_value(deep)
    assert codec.pack_value(deep[0]) is not None                  # 32 deep: fine
    with pytest.raises(troupe.InvalidArgument):
        codec.pack_value({1, 2})
    with pytest.raises(troupe.InvalidArgument):
        codec.pack_value(1 << 64)
    with pytest.raises(troupe.Malformed):
        codec.check_value(b"\x92\x01")                           # cut short
    with pytest.raises(troupe.Malformed):
        codec.check_value(b"\x01\x02")                           # two values
    # What Python cannot hold as it came: arrays as map keys become
    # tuples; invalid UTF-8 in a str survives the round trip.
    assert codec.unpack_value(b"\x81\x91\x01\x02") == {(1,): 2}
    weird = b"\xa2\xff\xfe"
    assert codec.pack_value(codec.unpack_value(weird)) == weird
    assert codec.unpack_value(b"") is None
    assert codec.pack_value(codec.Raw(b"\xc0")) == b"\xc0"
    with pytest.raises(troupe.Malformed):
        codec.pack_value(codec.Raw(b"\xc1"))


def test_names_keys_topics():
    assert codec.name_ok("a") and codec.name_ok("x" * 255) and codec.name_ok("aktör-日本")
    assert codec.name_ok("a\u00a0b") and codec.name_ok(b"\xf4\x8f\xbf\xbf")
    for bad in ("", "x" * 256, "a b", "a\x00", "a\x7f", "a\u0085", "\ud800", b"\xc0\xaf",
                b"\xed\xa0\x80", 5, None):
        assert not codec.name_ok(bad), bad
    assert codec.check_text("", 0, 255, "prefix") == ""
    with pytest.raises(troupe.InvalidArgument):
        codec.check_text("", 1, 255, "topic")
    with pytest.raises(troupe.InvalidArgument):
        codec.check_text("k" * 1025, 1, 1024, "key")


def test_commands():
    frame = codec.encode_command("KV_CAS", 11, "cfg/a", 17, 0)
    cmd = codec.read_command(frame)
    assert (cmd.verb, cmd.seq, cmd.args) == ("KV_CAS", 11, ["cfg/a", 17, 0])
    assert codec.canonical(frame) == frame
    assert msgpack.unpackb(frame) == ["KV_CAS", 11, "cfg/a", 17, 0]
    with pytest.raises(codec.DecodeError) as info:
        codec.read_command(codec.encode_command("KV_CAS", 11, "cfg a", 17, 0))
    assert info.value.code == -1
    with pytest.raises(codec.DecodeError) as info:
        codec.read_command(codec.encode_command("KV_CAS", 11, "cfg/a", -1, 0))
    assert info.value.code == -12
    raw = codec.Raw(b"\x93\x01\x02\x03")
    assert codec.read_command(codec.encode_command("OK", 3, raw)).arg(0) == [1, 2, 3]


def test_hostile_bytes_only_ever_raise_decode_error():
    # Every vector, cut, flipped, spliced and padded at random (a fixed
    # seed): the decoders answer or raise codec.DecodeError, nothing else
    # (no IndexError, no UnicodeError, no RecursionError), and what they
    # accept encodes again.
    import random
    vectors = ROOT / "protocols" / "vectors"
    envs = [p.read_bytes() for p in sorted((vectors / "envelope").glob("*.bin"))]
    frames = [p.read_bytes() for p in sorted((vectors / "broker").glob("*.bin"))]
    rng = random.Random(20261121)

    def mutate(data, pool):
        data = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(5)
            if op == 0 and data:
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            elif op == 1 and data:
                del data[rng.randrange(len(data)):]
            elif op == 2:
                data.insert(rng.randint(0, len(data)), rng.randrange(256))
            elif op == 3:
                other = rng.choice(pool)
                at = rng.randint(0, len(other))
                data[rng.randint(0, len(data)):] = other[at:]
            elif data:
                data[rng.randrange(len(data))] = rng.choice((0xc1, 0xdd, 0xdf, 0xdb, 0xff, 0x00))
        return bytes(data)

    accepted = 0
    for _ in range(20000):
        data = mutate(rng.choice(envs), envs)
        try:
            env = codec.decode_envelope(data)
        except codec.DecodeError:
            continue
        accepted += 1
        assert codec.decode_envelope(codec.encode_envelope(env)) == env
        try:
            codec.unpack_value(env.body)
        except troupe.Malformed:
            pass                        # a body Python cannot hold (a map as a map key)
    for _ in range(20000):
        data = mutate(rng.choice(frames), frames)
        try:
            cmd = codec.read_command(data)
        except codec.DecodeError:
            continue
        accepted += 1
        for raw in cmd.raw_args:
            codec.canonical(raw)
    assert accepted > 100               # the mutations were not all refused


# ---------------------------------------------------------------------------
# The fast paths against the full ones. decode_envelope reads the canonical
# layout byte by byte and leaves everything else to the bounded reader
# (_decode_envelope_full); encode_envelope writes the common case at a
# glance and leaves everything else to _encode_envelope_full; check_value
# and pack_value judge a scalar from its header. Each must give exactly
# what the full path gives.

def _decode_both(data):
    try:
        fast = codec._decode_canonical(data)
    except (IndexError, codec.DecodeError):
        fast = None
    try:
        full = codec._decode_envelope_full(data)
    except codec.DecodeError as e:
        full = e
    if fast is not None:
        assert fast == full, data.hex()
    try:
        public = codec.decode_envelope(data)
    except codec.DecodeError as e:
        assert isinstance(full, codec.DecodeError), data.hex()
        assert (e.code, e.why) == (full.code, full.why), data.hex()
    else:
        assert public == full, data.hex()
    return fast is not None


_SAMPLES = [
    Envelope(ASK, 300, "py-echo", "$node.a", deadline=1763715000000000,
             body=codec.pack_value("x" * 40)),
    Envelope(REPLY, 70000, "$node.a", "py-echo", corr=300, priority=-1, trace=5,
             body=codec.pack_value([1, {"a": 2}])),
    Envelope(ERROR, 1, "é", "", corr=1 << 40, error=-1042, priority=1),
    Envelope(TELL, 0, "x" * 40, "y", body=b"\xc0"),
    Envelope(TELL, (1 << 64) - 1, "a" * 255, "b" * 200, deadline=(1 << 64) - 1,
             trace=1 << 32, body=codec.pack_value({"deep": [[[[1]]]]})),
]


def test_canonical_reader_agrees_on_every_byte_changed():
    # Every sample, cut at every length, and every byte replaced by every
    # value: where the canonical reader answers, the bounded reader gives
    # the same envelope; decode_envelope gives the bounded reader's answer
    # or its very error.
    fast = 0
    for env in _SAMPLES[:4]:
        data = codec.encode_envelope(env)
        assert _decode_both(data)
        for i in range(len(data) + 1):
            _decode_both(data[:i])
            _decode_both(data[:i] + b"\x00")
            if i < len(data):
                for b in range(256):
                    fast += _decode_both(data[:i] + bytes((b,)) + data[i + 1:])
    assert fast > 1000                  # the fast path was taken, not only refused
    assert _decode_both(codec.encode_envelope(_SAMPLES[4]))


def test_canonical_reader_leaves_valid_non_canonical_forms_to_the_full_one():
    env = _SAMPLES[0]
    data = codec.encode_envelope(env)
    # The same envelope with its keys out of order, and with a map 16
    # header: valid, not canonical, decoded all the same.
    for variant in (msgpack.packb({4: "py-echo", 0: 1, 1: ASK, 2: 300, 5: "$node.a",
                                   6: 1763715000000000, 10: "x" * 40}),
                    b"\xde\x00\x07" + data[1:]):
        assert variant != data
        assert codec._decode_canonical(variant) is None
        assert codec.decode_envelope(variant) == env
    # An integer wider than it needs is read in place (its value is all
    # that counts).
    wide = data.replace(b"\x02\xcd\x01\x2c", b"\x02\xce\x00\x00\x01\x2c")
    assert wide != data and _decode_both(wide)
    assert codec.decode_envelope(wide) == env


def test_body_ext32_of_length_ffffffff_is_malformed():
    # msgpack's C reader (1.0) takes this for an empty ext (its length plus
    # the type byte overflows 32 bits); the bounded reader does not.
    data = codec.encode_envelope(Envelope(TELL, 1, "pong", "ping", body=b"\xc0"))
    data = data[:-1] + b"\xc9\xff\xff\xff\xff\x01"
    with pytest.raises(codec.DecodeError) as info:
        codec.decode_envelope(data)
    assert info.value.code == errors.CODES["EMALFORMED"]


def test_fast_encoder_agrees_with_the_full_one():
    import random
    rng = random.Random(5)
    names = ["a", "py-echo", "$node.x-1", "é", "x" * 255, "x" * 256, "", "a b", "\x7f", 7, None]
    ints = [0, 1, 127, 128, 255, 256, 65535, 65536, (1 << 32) - 1, 1 << 32, (1 << 64) - 1,
            1 << 64, -1, -32, -33, -128, -129, -(1 << 31), -(1 << 31) - 1, True, 2.0]
    bodies = [b"", b"\xc0", codec.pack_value("x" * 64), bytearray(b"\x01"), "str"]

    def outcome(fn, env):
        try:
            return fn(env)
        except Exception as e:          # the same exception, same words
            return (type(e), str(e))

    written = 0
    for _ in range(20000):
        kind = rng.choice([TELL, ASK, REPLY, ERROR])
        env = Envelope(kind, rng.choice(ints[:11]), rng.choice(names[:5]), rng.choice(names[:5]))
        if kind >= REPLY:
            env.corr = rng.choice(ints[1:11])
        if kind == ERROR:
            env.error = rng.choice([-1, -33, -129, -(1 << 31)])
        for f in ("deadline", "trace", "priority", "body"):
            if rng.random() < 0.5:
                setattr(env, f, rng.choice({"priority": [-1, 0, 1], "body": bodies[:3]}
                                           .get(f, ints[:11])))
        if rng.random() < 0.3:          # one field anything at all
            f = rng.choice(["kind", "id", "to", "sender", "corr", "deadline", "priority",
                            "trace", "error", "body"])
            setattr(env, f, rng.choice(ints + names + bodies))
        a = outcome(codec.encode_envelope, env)
        assert a == outcome(codec._encode_envelope_full, env), env
        written += isinstance(a, bytes)
    assert written > 5000


def test_scalar_values_judged_from_their_headers():
    for value in ("", "x" * 31, "x" * 32, "é" * 200, "x" * 70000, b"", b"\x00" * 300, 0, -1,
                  1 << 63, -(1 << 63), 1.5, True, None):
        data = codec.pack_value(value)
        assert data == msgpack.packb(value, use_bin_type=True)
        codec.check_value(data)
        for cut in (data[:-1], data + b"\x00"):
            if cut:
                with pytest.raises(troupe.Malformed):
                    codec.check_value(cut)
