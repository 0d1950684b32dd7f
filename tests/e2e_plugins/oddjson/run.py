#!/usr/bin/env python3
"""Payload keys (all optional), applied in this order:

wait_for: a path to wait for before answering; surrogate: answer with a lone
surrogate (the JSON escape \\ud800) at result.x; deep: answer with a result nested
that many levels deep.  Otherwise it answers ok with its job id.
"""

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

wait_for = payload.get("wait_for")
if wait_for:
    while not os.path.exists(wait_for):
        time.sleep(0.01)

if payload.get("surrogate"):
    # json.dumps escapes the lone surrogate as the six ASCII characters \ud800.
    print(json.dumps({"status": "ok", "result": {"x": "\ud800"}}))
elif payload.get("deep"):
    depth = int(payload["deep"])
    print('{"status": "ok", "result": ' + "[" * depth + "]" * depth + "}")
else:
    print(json.dumps({"status": "ok", "result": {"job_id": request["job_id"]}}))
