"""CURVE (2-broker.md 2.10) from Python: a broker started with --curve and
an allow folder; a Python client with an allowed key joins and works
with a C node; one with a key the broker does not allow is refused (and
nothing of it is read); wrong server keys and clients without CURVE get
nowhere; key files are read as `troupe keygen` writes them, and secret
files other users could read are refused before anything is sent."""

import os
import stat

import pytest

import troupe
from troupe import curve
from conftest import Broker, EchoNode, cli, clean_env, slow


@pytest.fixture
def keys(tmp_path):
    d = tmp_path / "keys"
    allow = tmp_path / "allow"
    d.mkdir()
    allow.mkdir()
    for name in ("broker", "good", "bad", "cnode"):
        cli("keygen", name, "--dir", str(d), check=True)
    for name in ("good", "cnode"):
        (allow / (name + ".public")).write_bytes((d / (name + ".public")).read_bytes())
    return d, allow


@pytest.fixture
def curve_broker(tmp_path, keys):
    d, allow = keys
    b = Broker(tmp_path, "--heartbeat", "200ms", "--curve", str(d / "broker.secret"),
               "--allow", str(allow))
    yield b
    b.stop()
    b.assert_clean()


def test_key_files(keys):
    d, _ = keys
    public, secret = curve.read_secret(str(d / "good.secret"))
    assert len(public) == 40 and len(secret) == 40
    assert curve.read_public(str(d / "good.public")) == public
    with pytest.raises(troupe.AccessDenied):
        curve.read_secret(str(d / "good.public"))          # mode 0644
    public_only = d / "public-only.secret"
    public_only.write_bytes((d / "good.public").read_bytes())
    os.chmod(public_only, 0o600)
    with pytest.raises(troupe.InvalidArgument):
        curve.read_secret(str(public_only))                 # no secret-key
    with pytest.raises(troupe.NotFound):
        curve.read_public(str(d / "missing.public"))
    loose = d / "loose.secret"
    loose.write_bytes((d / "good.secret").read_bytes())
    os.chmod(loose, 0o644)
    with pytest.raises(troupe.AccessDenied) as info:
        curve.read_secret(str(loose))
    assert "0644" in str(info.value)
    os.chmod(loose, 0o400)
    assert curve.read_secret(str(loose)) == (public, secret)
    # A secret file whose public key is not the secret key's own.
    other = curve.read_public(str(d / "bad.public")).decode()
    forged = d / "forged.secret"
    text = (d / "good.secret").read_text().replace(public.decode(), other)
    forged.write_text(text)
    os.chmod(forged, 0o600)
    with pytest.raises(troupe.InvalidArgument):
        curve.read_secret(str(forged))
    # Not a regular file.
    with pytest.raises(troupe.AccessDenied):
        curve.read_public(str(d))


def test_allowed_client_works_with_a_c_node(tmp_path, keys, curve_broker):
    d, _ = keys
    echo = EchoNode(tmp_path, curve_broker.endpoint, "c-secure", "--curve",
                    str(d / "cnode.secret"), "--server-key", str(d / "broker.public"))
    try:
        with troupe.Node(curve_broker.endpoint, "py-secure", heartbeat_ms=200,
                         curve_secret=str(d / "good.secret"),
                         server_key=str(d / "broker.public")) as n:
            assert n.ask("c-secure", {"secret": True}, timeout=slow(5)) == {"secret": True}
            n.spawn("py-secure-actor", lambda msg: ["py", msg.body])
            env = clean_env(TROUPE_CURVE_SECRET=d / "cnode.secret",
                            TROUPE_SERVER_KEY=d / "broker.public")
            r = cli("ask", "py-secure-actor", "7", "--broker", curve_broker.endpoint, env=env,
                    check=True)
            assert r.stdout.strip() == '["py",7]'
            n.kv.put("secure/k", 1)
    finally:
        echo.stop()
    echo.assert_clean()
    # The same keys from the environment, as troupe run hands them on.
    os.environ["TROUPE_CURVE_SECRET"] = str(d / "good.secret")
    os.environ["TROUPE_SERVER_KEY"] = str(d / "broker.public")
    try:
        with troupe.Node(curve_broker.endpoint, "py-secure-env") as n:
            assert n.kv.get("secure/k").value == 1
    finally:
        del os.environ["TROUPE_CURVE_SECRET"], os.environ["TROUPE_SERVER_KEY"]


def test_wrong_key_is_refused(keys, curve_broker):
    d, _ = keys
    # A key pair the broker does not allow: the handshake is refused, and
    # the binding says so (the broker's ZAP answer reaches the client's
    # CURVE handshake as an authentication failure).
    with pytest.raises(troupe.AccessDenied) as info:
        troupe.Node(curve_broker.endpoint, "py-intruder", curve_secret=str(d / "bad.secret"),
                    server_key=str(d / "broker.public"), connect_timeout=slow(5))
    assert info.value.code == -24
    assert "refused" in str(info.value)
    # The right client key, the wrong server key: the handshake fails.
    with pytest.raises((troupe.AccessDenied, troupe.Timeout)):
        troupe.Node(curve_broker.endpoint, "py-confused", curve_secret=str(d / "good.secret"),
                    server_key=str(d / "bad.public"), connect_timeout=1.0)
    # No CURVE at all: the broker stays silent.
    with pytest.raises(troupe.Timeout):
        troupe.Node(curve_broker.endpoint, "py-plain", connect_timeout=1.0)
    # Half the keys: refused before connecting.
    with pytest.raises(troupe.InvalidArgument):
        troupe.Node(curve_broker.endpoint, "py-half", curve_secret=str(d / "good.secret"))
    # Nothing of the refused clients was read: none of them joined.
    assert "refused" in curve_broker.text() or "refus" in curve_broker.text().lower()
    with troupe.Node(curve_broker.endpoint, "py-check", curve_secret=str(d / "good.secret"),
                     server_key=str(d / "broker.public")) as n:
        ids = [x["id"] for x in n.nodes()]
        assert ids == ["py-check"] or set(ids) == {"py-check"}
