#!/usr/bin/env python3
"""Payload keys (all optional):

split: pieces of one stderr line, written with a pause between them, so the line
reaches the daemon in separate reads; fail: pieces of an error to answer with
instead of the environment.
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

pieces = payload.get("split", [])
for index, piece in enumerate(pieces):
    sys.stderr.write(piece)
    sys.stderr.flush()
    if index < len(pieces) - 1:
        time.sleep(0.2)
if pieces:
    sys.stderr.write("\n")
    sys.stderr.flush()

if payload.get("fail"):
    error = "".join(payload["fail"])
    print(json.dumps({"status": "error", "error": error, "retry": False}))
else:
    print(json.dumps({"status": "ok", "result": {"env": dict(os.environ)}}))
