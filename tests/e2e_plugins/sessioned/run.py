#!/usr/bin/env python3
"""Answer with the request; the session's turn is one more than the follow-up's."""

import json
import sys

request = json.load(sys.stdin)
session = (request.get("follow_up") or {}).get("session") or {}
turn = int(session.get("turn", 0)) + 1
print(json.dumps({"status": "ok", "result": {"request": request}, "session": {"turn": turn}}))
