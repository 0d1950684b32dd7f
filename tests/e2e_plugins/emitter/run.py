#!/usr/bin/env python3
"""Answer ok with payload["emit"] as events and payload["result"] as the result."""

import json
import sys

request = json.load(sys.stdin)
payload = request.get("payload") or {}
print(
    json.dumps({"status": "ok", "result": payload.get("result"), "events": payload.get("emit", [])})
)
