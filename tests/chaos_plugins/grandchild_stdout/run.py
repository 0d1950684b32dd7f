#!/usr/bin/env python3
"""Answers at once, leaving a grandchild (same group) that holds stdout open."""

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
if os.fork() == 0:
    if os.fork() == 0:
        mark("grandchild")
        time.sleep(300)  # stdout (inherited) stays open all this time
    os._exit(0)
print(json.dumps({"status": "ok", "result": "answered; a grandchild lingers"}), flush=True)
