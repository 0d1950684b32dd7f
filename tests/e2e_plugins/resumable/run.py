#!/usr/bin/env python3
"""First attempt: record our pid and hang. Any later attempt: answer ok."""

import json
import os
import sys
import time

request = json.load(sys.stdin)
marker_dir = request["payload"]["dir"]
marker = os.path.join(marker_dir, request["job_id"])
if not os.path.exists(marker):
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(3600)
print(json.dumps({"status": "ok", "result": {"pid": os.getpid()}}))
