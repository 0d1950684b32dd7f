#!/usr/bin/env python3
"""Payload keys (all optional), applied in this order:

lines: stderr lines to write at once; count: that many numbered lines more;
children: a directory to record pids in (own pid, and a child that ignores SIGTERM);
wait_for: a path to wait for before going on; hang: sleep until killed;
after: stderr lines to write after the wait; fail: answer with a retryable error.
"""

import json
import os
import signal
import subprocess
import sys
import time

request = json.load(sys.stdin)
# A handle job's input is its event's payload, as in Ductile; other commands' is payload.
if request.get("command") == "handle" and isinstance(request.get("event"), dict):
    payload = request["event"].get("payload") or {}
else:
    payload = request.get("payload") or {}

for line in payload.get("lines", []):
    print(line, file=sys.stderr)
for n in range(payload.get("count", 0)):
    print(f"line {n}", file=sys.stderr)

children = payload.get("children")
if children:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)",
        ]
    )
    with open(os.path.join(children, "pids.tmp"), "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    os.rename(os.path.join(children, "pids.tmp"), os.path.join(children, "pids"))
    # The plugin itself ignores SIGTERM too, so only the SIGKILL after the grace stops it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

wait_for = payload.get("wait_for")
if wait_for:
    while not os.path.exists(wait_for):
        time.sleep(0.01)

if payload.get("hang"):
    time.sleep(3600)

for line in payload.get("after", []):
    print(line, file=sys.stderr)

if payload.get("fail"):
    print(json.dumps({"status": "error", "error": "asked to fail", "retry": True}))
else:
    print(json.dumps({"status": "ok", "result": {"job_id": request["job_id"]}}))
