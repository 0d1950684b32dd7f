#!/usr/bin/env python3
"""Reports the workspace as an agent would find it.

The result holds workspace_dir (from the request), CHAMBERLAIN_WORKSPACE (from the
environment), the modes of the directory and of .mcp.json, the document itself,
and the SHA-256 of every env and header value in it, so a test can check that a
secret was resolved without the value itself surviving redaction.
"""

import hashlib
import json
import os
import stat
import sys

request = json.load(sys.stdin)
workspace = request.get("workspace_dir")
found = {"workspace_dir": workspace, "env": os.environ.get("CHAMBERLAIN_WORKSPACE")}
if workspace:
    path = os.path.join(workspace, ".mcp.json")
    with open(path, encoding="utf-8") as file:
        text = file.read()
    document = json.loads(text)
    found["dir_mode"] = stat.S_IMODE(os.stat(workspace).st_mode)
    found["file_mode"] = stat.S_IMODE(os.stat(path).st_mode)
    found["mcp"] = document
    found["sha256"] = {
        f"{name}.{key}": hashlib.sha256(value.encode()).hexdigest()
        for name, server in document["mcpServers"].items()
        for key, value in {**server.get("env", {}), **server.get("headers", {})}.items()
    }
    sys.stderr.write("config: " + text)
    sys.stderr.flush()
print(json.dumps({"status": "ok", "result": found}))
