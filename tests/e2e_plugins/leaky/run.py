#!/usr/bin/env python3
"""Payload keys (all optional):

report: answer with the SHA-256 of config.token, config.header and $LEAK_TOKEN, and
the names of the environment's variables; leak: print config.token to stderr (in two
writes with a pause between them, so the line reaches the daemon in two reads, and
once whole) and put it in the result, an event, state_updates and logs; fail: with
leak, answer an error quoting the token instead.
"""

import hashlib
import json
import os
import sys
import time


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


request = json.load(sys.stdin)
config = request.get("config") or {}
# A handle job's input is its event's payload, as in Ductile; other commands' is payload.
if request.get("command") == "handle" and isinstance(request.get("event"), dict):
    payload = request["event"].get("payload") or {}
else:
    payload = request.get("payload") or {}
token = config.get("token", "")

if payload.get("report"):
    result = {
        "config_token": digest(token),
        "config_header": digest(config.get("header", "")),
        "env_token": digest(os.environ.get("LEAK_TOKEN", "")),
        "env_names": sorted(os.environ),
    }
    print(json.dumps({"status": "ok", "result": result}))
    sys.exit(0)

half = len(token) // 2
sys.stderr.write(f"leaking {token[:half]}")
sys.stderr.flush()
time.sleep(0.3)
sys.stderr.write(f"{token[half:]} in pieces\n")
sys.stderr.write(f"whole {token}\n")
sys.stderr.flush()

logs = [{"level": "info", "message": f"the token is {token}"}]
if payload.get("fail"):
    response = {"status": "error", "error": f"bad token {token}", "retry": False, "logs": logs}
else:
    response = {
        "status": "ok",
        "result": {"token": token, "nested": [f"<{token}>"]},
        "events": [{"type": "leaky.leaked", "payload": {"token": token}}],
        "state_updates": {"last_token": token},
        "logs": logs,
    }
print(json.dumps(response))
