#!/usr/bin/env python3
"""Sends itself SIGKILL (kill -9) before answering."""

import json
import os
import signal
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
os.kill(os.getpid(), signal.SIGKILL)
