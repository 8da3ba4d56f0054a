#!/usr/bin/python3
"""A JSON-lines process that misbehaves on request.

Each request is a JSON object with an "op" (and an "id", which answers
carry back):
  echo      {"id", "echo": text}
  pid       {"id", "pid": this process's pid}
  slow      sleeps "ms" milliseconds, then answers like echo
  stderr    writes 2000 lines of noise to stderr, then answers like echo
  garbage   writes a line that is not JSON
  hang      never answers
  exit      exits with status "code" (default 4) without answering
  huge      answers with a line of "size" bytes
  wrong_id  answers with another id
  extra     answers, then writes a second line nobody asked for
"""
import json
import os
import sys
import time


def answer(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    req = json.loads(line)
    op = req.get("op")
    rid = req.get("id")
    if op == "pid":
        answer({"id": rid, "pid": os.getpid()})
    elif op == "slow":
        time.sleep(req.get("ms", 300) / 1000.0)
        answer({"id": rid, "echo": req.get("text")})
    elif op == "stderr":
        for i in range(2000):
            sys.stderr.write("lines.py: noise %d of 2000, padding padding padding\n" % i)
        sys.stderr.flush()
        answer({"id": rid, "echo": req.get("text")})
    elif op == "garbage":
        sys.stdout.write("this is not json\n")
        sys.stdout.flush()
    elif op == "hang":
        time.sleep(3600)
    elif op == "exit":
        sys.exit(req.get("code", 4))
    elif op == "huge":
        answer({"id": rid, "x": "a" * req.get("size", 100000)})
    elif op == "wrong_id":
        answer({"id": (rid or 0) + 1000})
    elif op == "extra":
        answer({"id": rid, "echo": req.get("text")})
        answer({"id": rid, "again": True})
    else:
        answer({"id": rid, "echo": req.get("text")})
