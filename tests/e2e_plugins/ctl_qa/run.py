#!/usr/bin/env python3
"""Judge a step: "fail" the first time, "pass" after, with notes saying which review.

The check's payload is {run_id, pipeline, step_id, job_id, payload, result}; the
checked step's payload names the counter file as "qa_counter".
"""

import json
import sys

request = json.load(sys.stdin)
check = request.get("payload") or {}
counter = (check.get("payload") or {})["qa_counter"]
try:
    with open(counter) as f:
        seen = int(f.read() or 0)
except FileNotFoundError:
    seen = 0
seen += 1
with open(counter, "w") as f:
    f.write(str(seen))
verdict = "fail" if seen == 1 else "pass"
notes = f"review {seen} of {check.get('step_id')}: {verdict}"
print(json.dumps({"status": "ok", "result": {"verdict": verdict, "notes": notes}}))
