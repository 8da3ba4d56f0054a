"""Fixtures of the Python binding's tests: real brokers (`troupe broker`),
real C nodes (tr_echo_node), the real command line, on 127.0.0.1.

Programs come from the environment CTest sets (tests/CMakeLists.txt):
TROUPE_BIN (the troupe program) and TROUPE_ECHO_NODE (tr_echo_node);
without them, build-py/ and build/ are tried. TROUPE_TEST_SLOWDOWN
multiplies the time bounds (sanitizer builds run slower).

With TROUPE_SKIP_77=1, a session whose tests were all skipped exits 77,
which CTest reports as skipped (the network-namespace test without root).
"""

import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SLOW = float(os.environ.get("TROUPE_TEST_SLOWDOWN", "1"))


def _find(env, rel):
    if os.environ.get(env):
        return os.environ[env]
    for build in ("build-py", "build"):
        p = ROOT / build / rel
        if p.exists():
            return str(p)
    pytest.exit("%s is not set and %s was not found in build-py/ or build/" % (env, rel), 2)


TROUPE = _find("TROUPE_BIN", "troupe")
ECHO_NODE = _find("TROUPE_ECHO_NODE", "tests/tr_echo_node")


def slow(seconds):
    """A time bound, stretched on slow builds."""
    return seconds * SLOW


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TROUPE_BROKER", "TROUPE_CURVE_SECRET", "TROUPE_SERVER_KEY")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def wait_for(pred, timeout, step=0.02):
    """Polls pred until true (returns its value) or timeout seconds pass
    (returns the last false value)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


class Proc:
    """A child process whose standard error is kept in a file."""

    def __init__(self, args, tmp_path, name, env=None, stdout=None, cwd=None):
        self.log = tmp_path / (name + ".log")
        self.args = args
        self.p = subprocess.Popen(args, stdout=stdout or subprocess.DEVNULL,
                                  stderr=open(self.log, "wb"), stdin=subprocess.DEVNULL,
                                  env=env or clean_env(), text=stdout is not None, cwd=cwd)

    def text(self):
        return self.log.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(slow(10))
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def assert_clean(self):
        """The program ended by SIGTERM exited 0, and no sanitizer (ASan,
        UBSan, TSan builds) reported anything."""
        text = self.text()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                       "WARNING: ThreadSanitizer"):
            assert marker not in text, "%s reported by %s:\n%s" % (marker, self.args[0], text)
        assert self.p.returncode == 0, "%s exited %s:\n%s" % (self.args, self.p.returncode, text)


class Broker(Proc):
    """`troupe broker --bind tcp://127.0.0.1:PORT [options]`, started and
    listening."""

    def __init__(self, tmp_path, *options, port=None, name="broker"):
        self.port = port or free_port()
        self.endpoint = "tcp://127.0.0.1:%d" % self.port
        super().__init__([TROUPE, "broker", "--bind", self.endpoint, *options], tmp_path, name)
        if not wait_for(lambda: "listening" in self.text() or self.p.poll() is not None, slow(10)) \
                or self.p.poll() is not None:
            raise RuntimeError("the broker did not start:\n" + self.text())


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path, "--heartbeat", "200ms")
    yield b
    b.stop()
    b.assert_clean()


class EchoNode(Proc):
    """tr_echo_node: a C node hosting an `echo` actor under a name."""

    def __init__(self, tmp_path, endpoint, name, *options):
        super().__init__([ECHO_NODE, endpoint, name, *options], tmp_path, "echo-" + name,
                         stdout=subprocess.PIPE)
        line = self.p.stdout.readline()
        if line.strip() != "ready " + name:
            self.stop()
            raise RuntimeError("tr_echo_node did not get ready:\n" + self.text())


@pytest.fixture
def echo_node(tmp_path, broker):
    nodes = []

    def start(name, *options, endpoint=None):
        n = EchoNode(tmp_path, endpoint or broker.endpoint, name, *options)
        nodes.append(n)
        return n
    yield start
    for n in nodes:
        n.stop()
    for n in nodes:
        n.assert_clean()


def cli(*args, timeout=20, env=None, check=False):
    """Runs the troupe program; a CompletedProcess with text output. A
    sanitizer's report fails the test whatever the exit status."""
    r = subprocess.run([TROUPE, *args], capture_output=True, text=True, timeout=slow(timeout),
                       env=env or clean_env(), stdin=subprocess.DEVNULL)
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer"):
        assert marker not in r.stderr, "troupe %s: %s" % (" ".join(args), r.stderr)
    if check and r.returncode != 0:
        raise AssertionError("troupe %s: exit %d\n%s%s" % (" ".join(args), r.returncode,
                                                           r.stdout, r.stderr))
    return r


_skipped = {"n": 0}


def pytest_runtest_logreport(report):
    if report.skipped and report.when in ("setup", "call"):
        _skipped["n"] += 1


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("TROUPE_SKIP_77") and session.testscollected \
            and _skipped["n"] >= session.testscollected and exitstatus == 0:
        session.exitstatus = 77
