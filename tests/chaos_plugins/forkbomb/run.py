#!/usr/bin/env python3
"""A fork bomb, bounded by its own depth counter (RLIMIT_NPROC does not bind root):
2**DEPTH processes, all in the plugin's process group; the leader then answers ok."""

import json
import os
import resource
import sys
import time


def mark(role):
    """Leave $CHAOS_MARKS/<job id>.<role>.<pid>, so a test can check this process died."""
    marks = os.environ.get("CHAOS_MARKS")
    if marks:
        name = f"{os.environ['CHAMBERLAIN_JOB_ID']}.{role}.{os.getpid()}"
        with open(os.path.join(marks, name), "w"):
            pass


DEPTH = 5  # 2**5 = 32 processes at most

request = json.load(sys.stdin)
try:
    resource.setrlimit(resource.RLIMIT_NPROC, (256, 256))
except (ValueError, OSError):
    pass
mark("plugin")
leader = True
for _ in range(DEPTH):
    if os.fork() == 0:
        leader = False
        mark("bomb")
if not leader:
    time.sleep(300)
    os._exit(0)
print(json.dumps({"status": "ok", "result": "bomb planted"}), flush=True)
