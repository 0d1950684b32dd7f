#!/usr/bin/env python3
"""Answer ok with the input payload as the result (and emit no event)."""

import json
import sys

request = json.load(sys.stdin)
# A handle job's input is its event's payload, as in Ductile; other commands' is payload.
if request.get("command") == "handle" and isinstance(request.get("event"), dict):
    payload = request["event"].get("payload") or {}
else:
    payload = request.get("payload") or {}
print(json.dumps({"status": "ok", "result": payload}))
