"""A Python actor as a process child of a `troupe run` tree that joins a
broker: killed with SIGKILL, it is restarted by its supervisor and
registers the same name again. Meanwhile asks to it fail as the protocol
says: one in flight when it dies fails with TR_ENODE (NODE_DOWN) instead
of waiting for its timeout, and one sent while no client holds the name
fails at once with TR_ENOACTOR (BOUNCE); once it is back, asks from
Python and from C reach the new incarnation."""

import os
import pathlib
import signal
import sys
import threading
import time

import troupe
from conftest import Proc, TROUPE, cli, clean_env, slow, wait_for

HERE = pathlib.Path(__file__).resolve().parent


def test_process_child_killed_and_restarted(tmp_path, broker):
    tree = tmp_path / "pytree.yaml"
    tree.write_text(
        "name: pytree\n"
        "intensity: {max_restarts: 5, period: 30s}\n"
        "defaults:\n"
        "  backoff: {min: 300ms, max: 1s}\n"
        "children:\n"
        "  - name: worker\n"
        "    process:\n"
        "      command: [%s, %s, py-child]\n"
        "    shutdown: 2s\n" % (sys.executable, HERE / "child_actor.py"))
    run = Proc([TROUPE, "run", str(tree), "--broker", broker.endpoint], tmp_path, "run",
               env=clean_env(PYTHONPATH=os.environ.get("PYTHONPATH", "")))
    try:
        with troupe.Node(broker.endpoint, "py-supervised-asker", heartbeat_ms=200) as n:
            def ask(body, timeout=slow(5)):
                return n.ask("py-child", body, timeout=timeout)

            def up():
                try:
                    return ask("ping", 1.0)
                except troupe.TroupeError:
                    return None
            first = wait_for(up, slow(20), step=0.1)
            assert first, "the child never answered:\n" + run.text()
            pid1 = first[0]

            # An ask in flight when the child dies.
            result = {}

            def in_flight():
                t = time.monotonic()
                try:
                    ask({"sleep": 30}, timeout=slow(20))
                except troupe.TroupeError as e:
                    result["error"] = e
                result["took"] = time.monotonic() - t
            th = threading.Thread(target=in_flight)
            th.start()
            time.sleep(0.5)
            os.kill(pid1, signal.SIGKILL)
            th.join(slow(20))
            assert isinstance(result.get("error"), troupe.NodeDown), result
            assert result["took"] < slow(5)

            # While the name is free: refused at once, not timed out.
            outcomes = []
            deadline = time.monotonic() + slow(20)
            second = None
            while time.monotonic() < deadline:
                t = time.monotonic()
                try:
                    second = ask("again", slow(5))
                    break
                except (troupe.NoSuchActor, troupe.NodeDown) as e:
                    outcomes.append((type(e).__name__, time.monotonic() - t))
                time.sleep(0.05)
            assert second is not None, "never restarted:\n" + run.text()
            assert outcomes, "the restart came before any ask could see the gap"
            assert all(took < slow(3) for _, took in outcomes), outcomes
            assert any(name == "NoSuchActor" for name, _ in outcomes), outcomes
            pid2 = second[0]
            assert pid2 != pid1 and second[1] == "again"
            # The same name from C.
            r = cli("ask", "py-child", '"from C"', "--broker", broker.endpoint, check=True)
            assert r.stdout.strip() == '[%d,"from C"]' % pid2
        assert "restarting 'worker'" in run.text() or "worker" in run.text()
    finally:
        run.stop()
    run.assert_clean()
    # Stopping the tree stopped the child too: nothing outlives troupe run.
    assert wait_for(lambda: not _alive(pid2), slow(5))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
