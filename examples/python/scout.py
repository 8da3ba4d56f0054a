#!/usr/bin/python3
"""scout.py - a Python agent in a C supervision tree (examples/python/tree.yaml).

What it shows:
  - A Python program joining the troupe as a process child of `troupe run`:
    it finds the tree's broker in TROUPE_BROKER (and CURVE keys, if any,
    in TROUPE_CURVE_SECRET / TROUPE_SERVER_KEY), registers the actor name
    'scout', and is restarted by its supervisor like any child.
  - The event bus: it subscribes to the C tree's own supervision events
    (sys.actor.failed, sys.actor.restarted), which the C runtime
    publishes when the C actor 'worker' fails and is restarted, and it
    publishes events of its own ('scout.alert') that any node sees.
  - The scratchpad: it counts failures per actor in 'health/NAME' with
    compare-and-set (safe against other writers: a lost race is retried
    against the new version), and watches 'config/' to pick up a new alert
    threshold written by anyone (`troupe kv put config/threshold 5`).
  - Asks both ways: the C actor 'reporter' (a built-in driver) asks 'scout'
    for a report every two seconds and logs the answer; scout tells the C
    counter 'tally' about every failure it sees and asks it for its count.

How to run it (from the repository's root, after `make`):

    build/troupe run examples/python/tree.yaml --for 20s

The log shows the C worker failing and being restarted, scout's own lines
(prefixed with its child name, 'scout'), and the reporter's asks answered
by Python. From another terminal meanwhile:

    build/troupe kv ls health/               # scout's counts
    build/troupe kv put config/threshold 2   # scout adopts it at once
    build/troupe sub scout.                  # scout's alerts
    build/troupe ask scout '"report"'        # ask the Python agent from C

The tree starts this file with /usr/bin/python3 and PYTHONPATH set to
bindings/python; with the binding installed (`pip install bindings/python`)
PYTHONPATH is not needed.
"""

import logging
import sys
import threading

import troupe

log = logging.getLogger("scout")


class Scout(troupe.Actor):
    """Answers 'report' with what it has seen; anything else is echoed."""

    def __init__(self, state):
        self.state = state

    def handle(self, msg):
        if msg.body == "report":
            counts = {}
            for key, _version in self.node.kv.list("health/"):
                counts[key[len("health/"):]] = self.node.kv.get(key).value
            with self.state["lock"]:
                seen = self.state["seen"]
                threshold = self.state["threshold"]
            tally = self.ask("tally", "count", timeout=1.0)     # a C actor
            return {"failures": counts, "events_seen": seen, "tally": tally,
                    "threshold": threshold}
        return {"scout": msg.body}


def count_failure(node, name):
    """health/NAME += 1 with compare-and-set: another writer's update in
    between makes our write fail with troupe.Conflict, and we retry on the
    value it left."""
    key = "health/" + name
    while True:
        try:
            entry = node.kv.get(key)
            value, version = entry.value, entry.version
        except troupe.NotFound:
            value, version = 0, 0                # 0: the key must not exist
        try:
            node.kv.cas(key, version, value + 1)
            return value + 1
        except troupe.Conflict:
            continue


def main():
    #  Standard output: troupe run logs each line of it with the child's name.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    state = {"lock": threading.Lock(), "seen": 0, "threshold": 3}
    node = troupe.Node(node_id="scout")                # TROUPE_BROKER from troupe run
    node.spawn("scout", Scout(state))

    def on_event(event):
        name = event.body.get("name") if isinstance(event.body, dict) else None
        with state["lock"]:
            state["seen"] += 1
            threshold = state["threshold"]
        if event.topic == "sys.actor.failed" and name:
            n = count_failure(node, name)
            node.tell("tally", "failure")              # the C counter counts tells
            log.info("saw %s fail (%s); %d failure(s) so far", name,
                     event.body.get("reason"), n)
            if n % threshold == 0:
                node.publish("scout.alert", {"actor": name, "failures": n})
                log.info("published scout.alert: %s failed %d times", name, n)
        elif event.topic == "sys.actor.restarted" and name:
            log.info("saw %s restarted (restart %s)", name, event.body.get("restarts"))

    node.subscribe("sys.actor.", callback=on_event)

    def on_config(change):
        if isinstance(change, troupe.Change) and change.key == "config/threshold" \
                and isinstance(change.value, int) and change.value > 0:
            with state["lock"]:
                state["threshold"] = change.value
            log.info("threshold is now %d (version %d)", change.value, change.version)

    node.kv.watch("config/", callback=on_config)
    log.info("scout is up as node '%s', watching the C tree", node.node_id)
    node.run()                                          # until SIGTERM from the supervisor


if __name__ == "__main__":
    main()
