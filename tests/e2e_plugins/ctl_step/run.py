#!/usr/bin/env python3
"""Payload keys (all optional), applied in this order:

pids: a directory; a child process (``sleep``) is started and "<own pid> <child pid>"
written to <pids>/<job id>; gate: a path to wait for (30 s at most) before answering.
The answer is ok, with the job's id and the payload's ``approved_by`` (if any).
"""

import json
import os
import subprocess
import sys
import time

request = json.load(sys.stdin)
# A handle job's input is its event's payload, as in Ductile; other commands' is payload.
if request.get("command") == "handle" and isinstance(request.get("event"), dict):
    payload = request["event"].get("payload") or {}
else:
    payload = request.get("payload") or {}

child = None
pids = payload.get("pids")
if pids:
    # In the plugin's process group: only stopping the whole group stops it.
    child = subprocess.Popen(["sleep", "30"])
    path = os.path.join(pids, request["job_id"])
    with open(path + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    os.rename(path + ".tmp", path)

gate = payload.get("gate")
if gate:
    deadline = time.monotonic() + 30
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)

if child is not None:
    child.kill()
    child.wait()
result = {"job_id": request["job_id"]}
if "approved_by" in payload:
    result["approved_by"] = payload["approved_by"]
print(json.dumps({"status": "ok", "result": result}))
