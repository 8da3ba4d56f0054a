"""examples/python keeps working: its tree runs the Python agent 'scout'
beside C actors; scout sees the C worker fail on the event bus, counts
the failures in the scratchpad, answers the C reporter, and a C client
asks it and reads its counts."""

import json
import os
import pathlib
import re
import signal

from conftest import Proc, TROUPE, cli, clean_env, slow, wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_scout_in_a_c_tree(tmp_path):
    env = clean_env(TROUPE_LOG="info")
    run = Proc([TROUPE, "run", str(ROOT / "examples" / "python" / "tree.yaml"), "--for", "60s"],
               tmp_path, "run", env=env, cwd=ROOT)      # the tree's paths are the repository's
    try:
        assert wait_for(lambda: "saw worker fail" in run.text(), slow(25)), run.text()
        m = re.search(r"embedded broker on (\S+)", run.text())
        assert m, run.text()
        broker = ("--broker", m.group(1))
        assert wait_for(lambda: cli("kv", "get", "health/worker", *broker).returncode == 0,
                        slow(10)), run.text()
        count = int(cli("kv", "get", "health/worker", *broker, check=True).stdout)
        assert count >= 1
        report = json.loads(cli("ask", "scout", '"report"', *broker, check=True).stdout)
        assert report["failures"]["worker"] >= count and report["threshold"] == 3
        assert isinstance(report["tally"], int) and report["tally"] >= 1
        # A new threshold through the scratchpad reaches scout's watch.
        cli("kv", "put", "config/threshold", "2", *broker, check=True)
        assert wait_for(lambda: "threshold is now 2" in run.text(), slow(10)), run.text()
        assert wait_for(lambda: 'scout "report" ->' in run.text(), slow(10)), run.text()
    finally:
        run.stop(signal.SIGTERM)
    run.assert_clean()
