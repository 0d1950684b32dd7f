#!/usr/bin/env python3
"""Writes 20 MiB to stdout, twice the daemon's cap."""

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
chunk = b"x" * (1024 * 1024)
try:
    for _ in range(20):
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
except BrokenPipeError:
    pass  # the daemon stopped reading at its cap, as it should
