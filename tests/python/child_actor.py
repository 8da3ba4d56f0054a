"""child_actor.py NAME - a Python actor run as a process child of a
`troupe run` tree (test_process.py). It joins the broker the tree hands
on (TROUPE_BROKER, and TROUPE_CURVE_SECRET / TROUPE_SERVER_KEY if any)
and hosts NAME, which answers an ask with [its pid, the body]; the body
{"sleep": S} makes it sleep S seconds first, and {"ask": OTHER} makes
it ask the actor OTHER (with the same body) and answer [its pid, that
answer]. test_netns.py runs it on another host. It runs until SIGTERM."""

import os
import sys
import time

import troupe


NODE = None


def handle(msg):
    if isinstance(msg.body, dict) and "sleep" in msg.body:
        time.sleep(msg.body["sleep"])
    if isinstance(msg.body, dict) and "ask" in msg.body:
        return [os.getpid(), NODE.ask(msg.body["ask"], msg.body, timeout=5.0, sender=msg.to)]
    return [os.getpid(), msg.body]


def main():
    global NODE
    name = sys.argv[1]
    node = NODE = troupe.Node(node_id="%s-%d" % (name, os.getpid()), heartbeat_ms=200)
    node.spawn(name, handle)
    print("serving %s as pid %d" % (name, os.getpid()), flush=True)
    node.run()


if __name__ == "__main__":
    main()
