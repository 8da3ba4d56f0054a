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
