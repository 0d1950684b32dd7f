#!/usr/bin/env python3
"""First attempt: record our pid and hang. Any later attempt: answer ok."""

import json
import os
import sys
import time

request = json.load(sys.stdin)
# A handle job's input is its event's payload, as in Ductile; other commands' is payload.
if request.get("command") == "handle" and isinstance(request.get("event"), dict):
    payload = request["event"].get("payload") or {}
else:
    payload = request.get("payload") or {}
marker_dir = payload["dir"]
marker = os.path.join(marker_dir, request["job_id"])
if not os.path.exists(marker):
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(3600)
print(json.dumps({"status": "ok", "result": {"pid": os.getpid()}}))
