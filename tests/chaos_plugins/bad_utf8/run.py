#!/usr/bin/env python3
"""Answers ok with invalid UTF-8 inside its JSON and on stderr."""

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
sys.stderr.buffer.write(b"bad bytes: \xff\xfe\xc3\x28\n")
sys.stdout.buffer.write(b'{"status": "ok", "result": "caf\xc3\xa9 \xff\xfe \xc3\x28"}\n')
