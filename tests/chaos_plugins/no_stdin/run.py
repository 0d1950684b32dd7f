#!/usr/bin/env python3
"""Never reads its request (which may be larger than a pipe buffer), answers ok."""

import json
import os


def mark(role):
    """Leave $CHAOS_MARKS/<job id>.<role>.<pid>, so a test can check this process died."""
    marks = os.environ.get("CHAOS_MARKS")
    if marks:
        name = f"{os.environ['CHAMBERLAIN_JOB_ID']}.{role}.{os.getpid()}"
        with open(os.path.join(marks, name), "w"):
            pass


mark("plugin")
print(json.dumps({"status": "ok", "result": "answered without reading stdin"}), flush=True)
