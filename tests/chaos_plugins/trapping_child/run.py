#!/usr/bin/env python3
"""Forks a child that traps SIGTERM and carries on, then hangs itself."""

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
mark("plugin")
if os.fork() == 0:
    signal.signal(signal.SIGTERM, lambda *_: None)
    mark("child")
    while True:
        time.sleep(60)
while True:
    time.sleep(60)
