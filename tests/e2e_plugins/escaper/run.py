#!/usr/bin/env python3
"""Answer ok, leaving a sleeper in the group and a setsid escapee; record their pids."""

import json
import os
import subprocess
import sys

request = json.load(sys.stdin)
# A handle job's input is its event's payload, as in Ductile; other commands' is payload.
if request.get("command") == "handle" and isinstance(request.get("event"), dict):
    payload = request["event"].get("payload") or {}
else:
    payload = request.get("payload") or {}
base = os.path.join(payload["dir"], request["job_id"])


def sleeper(new_session: bool) -> subprocess.Popen[bytes]:
    """A sleeper with none of our pipes, in our group or in a session of its own."""
    quiet = subprocess.DEVNULL
    return subprocess.Popen(
        ["sleep", "300"], stdin=quiet, stdout=quiet, stderr=quiet, start_new_session=new_session
    )


in_group = sleeper(False)
escapee = sleeper(True)
for suffix, child in ((".group", in_group), (".escapee", escapee)):
    with open(base + suffix + ".tmp", "w") as f:
        f.write(str(child.pid))
    os.rename(base + suffix + ".tmp", base + suffix)
print(json.dumps({"status": "ok", "result": {"pid": os.getpid()}}))
