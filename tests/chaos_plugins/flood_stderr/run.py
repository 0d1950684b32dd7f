#!/usr/bin/env python3
"""Writes 2 MiB to stderr (the daemon keeps only the tail), then answers ok."""

import json
import os
import sys


def mark(role):
    """Leave $CHAOS_MARKS/<job id>.<role>.<pid>, so a test can check this process died."""
    marks = os.environ.get("CHAOS_MARKS")
    if marks:
        name = f"{os.environ['CHAMBERLAIN_JOB_ID']}.{role}.{os.getpid()}"
        with open(os.path.join(marks, name), "w"):
            pass


request = json.load(sys.stdin)
mark("plugin")
line = b"e" * 1023 + b"\n"
for _ in range(2048):
    sys.stderr.buffer.write(line)
sys.stderr.buffer.flush()
print(json.dumps({"status": "ok", "result": "answered after 2 MiB of stderr"}))
