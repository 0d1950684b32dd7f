#!/usr/bin/env python3
"""Judge a step: {"verdict": <its payload's qa_verdict or "pass">, "notes": ...}.

The check's payload is {run_id, pipeline, step_id, job_id, payload, result}: the
checked step's payload and result. A "qa_gate" path in that payload is waited for
(30 s at most) first, so a test can see the step awaiting its check.
"""

import json
import os
import sys
import time

request = json.load(sys.stdin)
check = request.get("payload") or {}
step_payload = check.get("payload") or {}
gate = step_payload.get("qa_gate")
if gate:
    deadline = time.monotonic() + 30
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
verdict = step_payload.get("qa_verdict", "pass")
notes = f"reviewed {check.get('step_id')} of {check.get('pipeline')}: {verdict}"
print(json.dumps({"status": "ok", "result": {"verdict": verdict, "notes": notes}}))
