#!/usr/bin/env python3
"""Closes stdout without answering and keeps running for a second."""

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
os.close(1)
time.sleep(1)
sys.stderr.write("still running after closing stdout\n")
