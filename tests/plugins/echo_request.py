#!/usr/bin/env python3
"""Answers with the request it read, its working directory and its environment."""

import json
import os
import sys

request = json.loads(sys.stdin.readline())
result = {
    "request": request,
    "cwd": os.getcwd(),
    "unbuffered": os.environ.get("PYTHONUNBUFFERED"),
    "foo": os.environ.get("FOO"),
}
print(json.dumps({"status": "ok", "result": result}))
