"""The MCP server registry on the real daemon, and the ``.mcp.json`` of a job's workspace.

``tests/e2e_plugins/mcp_agent`` answers with what an agent finds in its workspace:
the directory and ``.mcp.json`` with their modes, the document, and the SHA-256 of
each value in it (so the test can tell a secret was resolved although every copy
the daemon keeps is redacted); it also writes the file to stderr.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import TOKENS, DaemonFactory, DaemonProcess, base_config, wait_for

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"

pytestmark = pytest.mark.e2e

GH_VALUE = "ghp-e2e-mcp-value-55aa"
MCP_TOKEN = "mcp-admin-token"
MCP_RO_TOKEN = "mcp-reader-token"

GITHUB = {
    "name": "github",
    "command": ["npx", "-y", "@modelcontextprotocol/server-github"],
    "env": {"GITHUB_TOKEN": "${secret:gh_token}", "LOG_LEVEL": "info"},
}


def mcp_config(tmp_path: Path) -> dict[str, Any]:
    config = base_config(tmp_path)
    config["plugin_roots"] = [str(E2E_PLUGINS)]
    config["plugins"] = {"mcp_agent": {}}
    config["api"]["auth"]["tokens"] = [
        *TOKENS,
        {"name": "mcp", "token": MCP_TOKEN, "scopes": ["mcp:rw"]},
        {"name": "mcpro", "token": MCP_RO_TOKEN, "scopes": ["mcp:ro"]},
    ]
    return config


async def finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        r = await client.get(f"/job/{job_id}", params={"include": "messages"})
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        return job if job["status"] in ("succeeded", "failed", "dead") else None

    job: dict[str, Any] = await wait_for(done)
    return job


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_workspace_gets_the_mcp_config_with_secrets_resolved_there_only(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    config = mcp_config(tmp_path)
    d: DaemonProcess = await daemon(config=config)
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as client:
        r = await client.post("/secrets", json={"name": "gh_token", "value": GH_VALUE})
        assert r.status_code == 201, r.text

        # The registry, by scope.
        r = await client.post("/mcp-servers", json=GITHUB, headers=bearer(MCP_RO_TOKEN))
        assert r.status_code == 403, r.text
        r = await client.post("/mcp-servers", json=GITHUB, headers=bearer(MCP_TOKEN))
        assert r.status_code == 201, r.text
        r = await client.get("/mcp-servers", headers=bearer(MCP_RO_TOKEN))
        assert r.status_code == 200
        assert r.json()["mcp_servers"][0]["env"]["GITHUB_TOKEN"] == "${secret:gh_token}"
        r = await client.delete("/mcp-servers/github", headers=bearer("reader-token"))
        assert r.status_code == 403
        r = await client.post(
            "/mcp-servers",
            json={"name": "broken", "command": ["x"], "env": {"T": "${secret:missing}"}},
            headers=bearer(MCP_TOKEN),
        )
        assert r.status_code == 400
        assert r.json()["error"].startswith("env.T: unknown secret 'missing'")

        # The secret is in use now.
        r = await client.delete("/secrets/gh_token")
        assert r.status_code == 409, r.text
        assert r.json()["references"] == ["mcp-servers[github].env.GITHUB_TOKEN"]

        r = await client.post("/trigger/mcp_agent/poll", json={"mcp_servers": ["nope"]})
        assert r.status_code == 400
        assert r.json()["error"].startswith("mcp_servers[0]: unknown MCP server 'nope'")

        r = await client.post("/trigger/mcp_agent/poll", json={"mcp_servers": ["github"]})
        assert r.status_code == 202, r.text
        job = await finished(client, r.json()["job_id"])
        assert job["status"] == "succeeded", job
        assert job["mcp_servers"] == ["github"]
        found = job["result"]["result"]
        workspace = tmp_path / "workspaces" / job["job_id"]
        assert found["workspace_dir"] == found["env"] == str(workspace)
        assert (found["dir_mode"], found["file_mode"]) == (0o700, 0o600)
        # The plugin saw the value (its digest); the job keeps only the redaction.
        digest = hashlib.sha256(GH_VALUE.encode()).hexdigest()
        assert found["sha256"]["github.GITHUB_TOKEN"] == digest
        assert found["mcp"]["mcpServers"]["github"] == {
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-github"],
            "env": {"GITHUB_TOKEN": "[redacted:gh_token]", "LOG_LEVEL": "info"},
        }
        assert GH_VALUE not in json.dumps(job)
        assert any("[redacted:gh_token]" in m["text"] for m in job["messages"])
        assert not workspace.exists()

        r = await client.post("/trigger/mcp_agent/poll")
        plain = await finished(client, r.json()["job_id"])
        assert plain["result"]["result"] == {"workspace_dir": None, "env": None}
        assert plain["mcp_servers"] == []

    assert await d.stop() == 0
    assert not any(GH_VALUE in line for line in d.stderr_lines())
    assert GH_VALUE.encode() not in await trio.Path(config["state"]["path"]).read_bytes()

    # After a restart the registry is still there, and still holds the secret in use.
    again = await daemon(config=config)
    async with httpx.AsyncClient(base_url=again.base_url, headers=again.headers()) as client:
        r = await client.get("/mcp-servers/github")
        assert r.status_code == 200 and r.json()["command"] == GITHUB["command"]
        r = await client.delete("/secrets/gh_token")
        assert r.status_code == 409, r.text
        r = await client.delete("/mcp-servers/github", headers=bearer(MCP_TOKEN))
        assert r.status_code == 204
        r = await client.delete("/secrets/gh_token")
        assert r.status_code == 204, r.text
    assert await again.stop() == 0
