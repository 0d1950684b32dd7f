#!/usr/bin/env python3
"""Ignores SIGTERM and hangs: only SIGKILL ends it."""

import json
import os
import signal
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
signal.signal(signal.SIGTERM, signal.SIG_IGN)
mark("plugin")
while True:
    time.sleep(60)
