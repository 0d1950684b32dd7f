#!/usr/bin/env python3
"""Answer ok with payload["count"] events of type burst.item, numbered from 0."""

import json
import sys

request = json.load(sys.stdin)
count = int((request.get("payload") or {}).get("count", 1))
events = [{"type": "burst.item", "payload": {"n": n}} for n in range(count)]
print(json.dumps({"status": "ok", "result": {"emitted": count}, "events": events}))
