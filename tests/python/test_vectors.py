"""The binding against every binary test vector of protocols/vectors
(envelope.txt and broker.txt): each decodes to the result its manifest
gives, and each vector marked canonical=yes is written back byte for
byte by the binding's encoders (canonical=no ones are not)."""

import os
import pathlib

import pytest

from troupe import codec, errors

VECTORS = pathlib.Path(os.environ.get(
    "TROUPE_VECTORS",
    pathlib.Path(__file__).resolve().parents[2] / "protocols" / "vectors"))


def _manifest(name):
    rows = []
    for line in (VECTORS / name).read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        rows.append(line)
    return rows


ENVELOPES = _manifest("envelope.txt")
BROKER = _manifest("broker.txt")


def _announced(name):
    # The manifest's last line: "# N vectors: V valid, I invalid".
    last = (VECTORS / name).read_text(encoding="utf-8").rstrip().splitlines()[-1]
    return int(last.split()[1])


def test_manifests_complete():
    assert len(ENVELOPES) == _announced("envelope.txt") > 0
    assert len(BROKER) == _announced("broker.txt") > 0


def _fields(tokens):
    out = {}
    for t in tokens:
        k, _, v = t.partition("=")
        out[k] = v
    return out


@pytest.mark.parametrize("line", ENVELOPES, ids=lambda l: l.split()[0])
def test_envelope_vector(line):
    tokens = line.split(" ")
    path, result = tokens[0], tokens[1]
    data = (VECTORS / path).read_bytes()
    if result != "TR_OK":
        with pytest.raises(codec.DecodeError) as info:
            codec.decode_envelope(data)
        assert errors.errname(info.value.code) == result, info.value.why
        return
    env = codec.decode_envelope(data)
    f = _fields(tokens[2:])
    for k in ("kind", "priority", "id", "corr", "trace", "deadline", "error"):
        assert getattr(env, k) == int(f[k]), k
    if "to" in f:
        assert env.to == f["to"]
    else:
        assert env.to.encode("utf-8").hex() == f["to_hex"]
    if "from" in f:
        assert env.sender == f["from"]
    else:
        assert env.sender.encode("utf-8").hex() == f["from_hex"]
    assert env.body.hex() == f["body"]
    written = codec.encode_envelope(env)
    if f["canonical"] == "yes":
        assert written == data
    else:
        assert written != data
        assert codec.decode_envelope(written) == env


@pytest.mark.parametrize("line", BROKER, ids=lambda l: l.split()[0])
def test_broker_vector(line):
    head = line.split(" # ")[0].split(" ")
    path, result = head[0], head[1]
    data = (VECTORS / path).read_bytes()
    if result == "error":
        with pytest.raises(codec.DecodeError) as info:
            codec.read_command(data)
        assert errors.errname(info.value.code) == head[2], info.value.why
        return
    verb, seq, nargs, canon = head[2], int(head[3]), int(head[4]), head[5]
    cmd = codec.read_command(data)
    assert (cmd.verb, cmd.seq, len(cmd.raw_args)) == (verb, seq, nargs)
    # Written again: the known arguments from their Python values, the
    # ones past them as their canonical msgpack.
    args = list(cmd.args)
    if cmd.verb == "HELLO":
        args[0] = "TRP"
    args += [codec.Raw(codec.canonical(r)) for r in cmd.raw_args[len(args):]]
    written = codec.encode_command(cmd.verb, cmd.seq, *args)
    if canon == "canonical=yes":
        assert codec.canonical(data) == data
        assert written == data
    else:
        assert codec.canonical(data) != data
        assert codec.read_command(written).args == cmd.args
