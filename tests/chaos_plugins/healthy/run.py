#!/usr/bin/env python3
"""Answers ok with what it was asked; payload.sleep (seconds) first, and
payload.sleep_once only on the job's first run (a marker in $CHAOS_MARKS says so)."""

import json
import os
import sys
import time


def mark(role):
    """Leave $CHAOS_MARKS/<job id>.<role>.<pid>, so a test can check this process died."""
    marks = os.environ.get("CHAOS_MARKS")
    if marks:
        name = f"{os.environ['CHAMBERLAIN_JOB_ID']}.{role}.{os.getpid()}"
        with open(os.path.join(marks, name), "w"):
            pass


request = json.load(sys.stdin)
mark("plugin")
# A handle job's input is its event's payload, as in Ductile; other commands' is payload.
if request.get("command") == "handle" and isinstance(request.get("event"), dict):
    payload = request["event"].get("payload") or {}
else:
    payload = request.get("payload") or {}
delay = float(payload.get("sleep", 0))
marks = os.environ.get("CHAOS_MARKS")
if payload.get("sleep_once") and marks:
    first = os.path.join(marks, f"{request['job_id']}.slept")
    if not os.path.exists(first):
        open(first, "w").close()
        delay = float(payload["sleep_once"])
time.sleep(delay)
result = {
    "job_id": request["job_id"],
    "n": payload.get("n"),
    "env": {k: os.environ.get(k) for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "CHAMBERLAIN_JOB_ID")},
}
print(json.dumps({"status": "ok", "result": result}), flush=True)
mark("done")
