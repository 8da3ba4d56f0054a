"""Python actors on another host: two network namespaces of this machine
joined by a veth pair (10.198.X.1 the broker's host, 10.198.X.2 the
other), as tests/troupe_netns_test.sh makes them. The broker listens
beyond loopback, so with CURVE keys from `troupe keygen`.

On the far host: a Python actor (child_actor.py, a process of its own)
and a C node (tr_echo_node). Checked: the C command line on the broker's
host asks the Python actor across the link; the Python actor asks a C
actor on the broker's host; the link is cut at the far end: an ask in
flight to the Python actor fails with TR_ENODE once the broker drops its
node (about 3 heartbeats), a later one at once with TR_ENOACTOR; the link
comes back: the Python node reconnects within its backoff, registers its
name again, and answers.

Needs root and `ip netns` (iproute2): skipped otherwise, and CTest runs
this file with TROUPE_SKIP_77=1 so that a skipped run exits 77. No packet
leaves the two namespaces; everything made is removed at the end."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ECHO_NODE, TROUPE, slow, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))


def _can():
    if os.geteuid() != 0:
        return "needs root to make network namespaces"
    if not shutil.which("ip"):
        return "no 'ip' command (iproute2)"
    return None


pytestmark = pytest.mark.skipif(_can() is not None, reason=str(_can()))


def sh(*args, check=True, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=slow(30), **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr))
    return r


class Hosts:
    def __init__(self, tmp_path):
        pid = os.getpid()
        self.nsb, self.nsn = "tpb-%d" % pid, "tpn-%d" % pid
        self.vb, self.vn = "pb%d" % pid, "pn%d" % pid
        x = pid % 250 + 1
        self.ipb, self.ipn = "10.198.%d.1" % x, "10.198.%d.2" % x
        self.procs = []
        self.made = []
        self.tmp = tmp_path
        r = sh("ip", "netns", "add", self.nsb, check=False)
        if r.returncode != 0:
            pytest.skip("cannot make a network namespace: " + r.stderr.strip())
        self.made.append(self.nsb)
        sh("ip", "netns", "add", self.nsn)
        self.made.append(self.nsn)
        sh("ip", "link", "add", self.vb, "netns", self.nsb, "type", "veth", "peer", "name",
           self.vn, "netns", self.nsn)
        sh("ip", "-n", self.nsb, "addr", "add", self.ipb + "/24", "dev", self.vb)
        sh("ip", "-n", self.nsn, "addr", "add", self.ipn + "/24", "dev", self.vn)
        for ns, dev in ((self.nsb, self.vb), (self.nsn, self.vn)):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", dev, "up")

    def start(self, ns, args, name, env):
        log = open(self.tmp / (name + ".log"), "wb")
        p = subprocess.Popen(["ip", "netns", "exec", ns, *args], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL, env=env)
        self.procs.append(p)
        return p

    def log(self, name):
        return (self.tmp / (name + ".log")).read_text(errors="replace")

    def close(self):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        for ns in self.made:
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", ns, check=False)


def test_python_actor_on_another_host(tmp_path):
    hosts = Hosts(tmp_path)
    try:
        _run(hosts, tmp_path)
    except BaseException:
        for name in ("broker", "c-near", "py-far", "c-far"):
            try:
                print("--- %s\n%s" % (name, hosts.log(name)))
            except OSError:
                pass
        raise
    finally:
        hosts.close()


def _run(h, tmp_path):
    keys, allow = tmp_path / "keys", tmp_path / "allow"
    keys.mkdir(mode=0o700)
    allow.mkdir()
    for k in ("broker", "far", "near", "client"):
        sh(TROUPE, "keygen", k, "--dir", str(keys))
    for k in ("far", "near", "client"):
        shutil.copy(keys / (k + ".public"), allow)
    endpoint = "tcp://%s:7700" % h.ipb
    env = {k: v for k, v in os.environ.items() if not k.startswith("TROUPE_")}
    env.update(TROUPE_BIN=TROUPE)
    h.start(h.nsb, [TROUPE, "broker", "--bind", endpoint, "--heartbeat", "200ms", "--curve",
                    str(keys / "broker.secret"), "--allow", str(allow)], "broker", env)
    assert wait_for(lambda: "listening" in h.log("broker"), slow(10)), h.log("broker")
    # A C actor on the broker's host, and the far host's C node.
    h.start(h.nsb, [ECHO_NODE, endpoint, "c-near", "--heartbeat", "200", "--curve",
                    str(keys / "near.secret"), "--server-key", str(keys / "broker.public")],
            "c-near", env)
    assert wait_for(lambda: "ready c-near" in h.log("c-near"), slow(20)), h.log("c-near")
    # The Python actor on the far host, a process of its own.
    far_env = dict(env, TROUPE_BROKER=endpoint, TROUPE_CURVE_SECRET=str(keys / "far.secret"),
                   TROUPE_SERVER_KEY=str(keys / "broker.public"),
                   PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    h.start(h.nsn, [sys.executable, os.path.join(HERE, "child_actor.py"), "py-far"], "py-far",
            far_env)
    assert wait_for(lambda: "serving py-far" in h.log("py-far"), slow(20)), h.log("py-far")

    client_env = dict(env, TROUPE_CURVE_SECRET=str(keys / "client.secret"),
                      TROUPE_SERVER_KEY=str(keys / "broker.public"))

    def ask_from_b(body, timeout="2s"):
        return sh("ip", "netns", "exec", h.nsb, TROUPE, "ask", "py-far", body, "--broker",
                  endpoint, "--timeout", timeout, check=False, env=client_env)

    # C on the broker's host asks the Python actor across the link.
    r = ask_from_b('{"over": "veth"}')
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(',{"over":"veth"}]')
    # The Python actor asks a C actor on the broker's host.
    r = ask_from_b('{"ask": "c-near"}')
    assert r.returncode == 0, r.stderr
    assert '{"ask":"c-near"}' in r.stdout

    # The link cut at the far end: an ask in flight fails with TR_ENODE
    # once the broker drops the far node, not at its 20 s timeout (the
    # handler itself takes 3 s, so that the actor is free again later).
    inflight = subprocess.Popen(["ip", "netns", "exec", h.nsb, TROUPE, "ask", "py-far",
                                 '{"sleep": 3}', "--broker", endpoint, "--timeout", "20s"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=client_env)
    time.sleep(0.5)
    t = time.monotonic()
    sh("ip", "-n", h.nsn, "link", "set", h.vn, "down")
    try:
        _, err = inflight.communicate(timeout=slow(10))
        took = time.monotonic() - t
        assert inflight.returncode == 1 and "TR_ENODE" in err, err
        assert took < slow(3), took
        r = ask_from_b('"while cut"')
        assert r.returncode == 1 and "TR_ENOACTOR" in r.stderr, r.stderr
        time.sleep(2)
    finally:
        sh("ip", "-n", h.nsn, "link", "set", h.vn, "up")
    # Back within the backoff bound: the same name, answering again.
    t = time.monotonic()
    assert wait_for(lambda: ask_from_b('"after"', "1s").returncode == 0, slow(12), step=0.2), \
        h.log("py-far")
    print("the far Python node answered again %.1f s after the link came back"
          % (time.monotonic() - t))
    assert "lost the broker" in h.log("py-far")
