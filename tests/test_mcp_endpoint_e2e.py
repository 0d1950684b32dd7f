"""The MCP server against a real daemon, driven by the official SDK's client.

Over streamable HTTP (``/mcp``) and through the stdio bridge (``chamberlain mcp``):
what an agent is offered, what its calls answer (a result, a tool error, the id of
a job that outlives the call), the resources, and what a token without the scope is
refused.  The bridge is spawned the way a desktop app spawns its MCP servers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
import yaml
from conftest import API_KEY, DaemonFactory, DaemonProcess, api_client, wait_for
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError
from mcp.types import CallToolResult, TextContent, TextResourceContents
from pydantic import AnyUrl

from chamberlain.web.mcp_endpoint import FORBIDDEN, RESOURCE_NOT_FOUND

pytestmark = [
    pytest.mark.e2e,
    # The SDK's client abandons its event stream's response when its session closes;
    # under trio, the generators of httpx, httpx-sse and httpcore are then finalized
    # unexhausted.  Only their warning is let through: it is the client's, not the
    # daemon's (which runs in its own process).
    pytest.mark.filterwarnings(
        r"ignore:Async generator '(httpx|httpx_sse|httpcore)\.:ResourceWarning"
    ),
]

CONFIG: dict[str, Any] = {
    "mcp": {"call_timeout": "2s"},
    "plugins": {"echo": {"retry": {"max_attempts": 1, "on_timeout": False}}},
    "pipelines": [
        {
            "name": "shout",
            "on": "mcp.shout",
            "execution_mode": "synchronous",
            "timeout": "20s",
            "steps": [
                {"id": "first", "uses": "echo.handle", "with": {"word": "{payload.word}"}},
                {"id": "second", "uses": "echo.handle"},
            ],
        },
        {
            "name": "later",
            "on": "mcp.later",
            "steps": [{"id": "only", "uses": "echo.handle"}],
        },
    ],
}


#: What a client sends first, for the tests that speak HTTP to /mcp themselves.
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream"}


@asynccontextmanager
async def session(
    d: DaemonProcess, token: str = API_KEY, *, terminate: bool = True
) -> AsyncIterator[ClientSession]:
    """An initialized MCP session with ``d``, authenticated by ``token``; ``terminate``:
    end it with a DELETE (as clients do) when the block ends."""
    async with (
        httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=httpx.Timeout(30, read=120)
        ) as http,
        streamable_http_client(
            f"{d.base_url}/mcp", http_client=http, terminate_on_close=terminate
        ) as (read, write, _),
        ClientSession(read, write) as s,
    ):
        await s.initialize()
        yield s


def text(result: CallToolResult) -> str:
    """The answer's text, for clients that read no structured content."""
    (content,) = result.content
    assert isinstance(content, TextContent), content
    return content.text


def structured(result: CallToolResult) -> dict[str, Any]:
    assert result.structuredContent is not None, result
    # The text is the same answer, for clients that read only text.
    assert result.content and result.content[0].type == "text"
    return dict(result.structuredContent)


@pytest.fixture
async def d(daemon: DaemonFactory) -> DaemonProcess:
    return await daemon(CONFIG)


async def test_every_command_pipeline_and_job_action_is_a_tool_with_its_schema(
    d: DaemonProcess,
) -> None:
    async with session(d) as s:
        tools = {tool.name: tool for tool in (await s.list_tools()).tools}
        async with httpx.AsyncClient(base_url=d.base_url) as c:
            plugins = (
                await c.get("/plugins?detail=1", headers={"Authorization": f"Bearer {API_KEY}"})
            ).json()["plugins"]

    commands = {f"{p['name']}__{c['name']}": c for p in plugins for c in p["commands"]}
    # Every command of every plugin, under <plugin>__<command>, with its manifest's
    # description and schema; a command without a schema takes any object.
    assert set(commands) <= set(tools)
    for name, command in commands.items():
        assert command["description"] in (tools[name].description or ""), name
        if command["input_schema"] is not None:
            assert tools[name].inputSchema == command["input_schema"], name
        else:
            assert tools[name].inputSchema == {"type": "object", "additionalProperties": True}
    assert tools["echo__handle"].inputSchema["properties"] == {
        "mode": {"type": "string"},
        "seconds": {"type": "number"},
    }
    assert tools["echo__poll"].annotations is not None
    assert tools["echo__poll"].annotations.readOnlyHint is True
    assert tools["echo__handle"].annotations is not None
    assert tools["echo__handle"].annotations.readOnlyHint is False
    # The synchronous pipeline is a tool; the asynchronous one is not.
    assert "pipeline__shout" in tools and "pipeline__later" not in tools
    # The job and run actions, each with its route's arguments.
    for action in ("get_job", "list_jobs", "cancel_job", "send_message", "approve_step"):
        assert action in tools, action
    assert tools["get_job"].inputSchema["required"] == ["job_id"]
    assert set(tools["approve_step"].inputSchema["required"]) == {"run_id", "step_id"}
    assert {"comment", "inputs"} <= set(tools["approve_step"].inputSchema["properties"])
    assert tools["send_message"].inputSchema["required"] == ["job_id", "message"]


async def test_a_command_that_succeeds_answers_its_job_s_result(d: DaemonProcess) -> None:
    async with session(d) as s:
        answer = await s.call_tool("echo__handle", {"mode": "plain", "seconds": 0})
    assert answer.isError is False
    body = structured(answer)
    assert body["status"] == "succeeded"
    async with httpx.AsyncClient(base_url=d.base_url) as c:
        job = (
            await c.get(f"/job/{body['job_id']}", headers={"Authorization": f"Bearer {API_KEY}"})
        ).json()
    # The arguments were the job's payload, and the answer is what the command answered.
    assert job["payload"] == {"mode": "plain", "seconds": 0}
    assert job["submitted_by"] == "api_key"
    assert body["result"] == job["result"]["result"]
    assert json.loads(text(answer)) == body


async def test_a_job_that_fails_is_a_tool_error_with_its_last_error(d: DaemonProcess) -> None:
    async with session(d) as s:
        failed = await s.call_tool("echo__handle", {"mode": "fatal"})
        refused = await s.call_tool("echo__handle", {"mode": 7})
    assert failed.isError is True
    body = structured(failed)
    assert body["status"] in ("failed", "dead")
    assert body["error"]
    assert body["error"] in text(failed)
    # A payload the command's schema refuses is a tool error naming the field: the
    # agent can correct its call.  No job was made.
    assert refused.isError is True
    assert "payload.mode: 7 is not of type 'string'" in text(refused)
    assert structured(refused)["status"] == 400


async def test_a_job_outliving_the_call_answers_its_id_and_get_job_its_result_later(
    d: DaemonProcess,
) -> None:
    async with session(d) as s:
        with trio.fail_after(15):
            started = trio.current_time()
            pending = await s.call_tool("echo__handle", {"mode": "slow", "seconds": 4})
            waited = trio.current_time() - started
        assert pending.isError is False
        body = structured(pending)
        assert body["status"] in ("queued", "running")
        assert "get_job" in body["message"]
        # It answered at the call timeout (2 s), not at the job's end.
        assert waited < 3.9
        done = await s.call_tool("get_job", {"job_id": body["job_id"], "wait": "20s"})
    assert done.isError is False
    job = structured(done)
    assert (job["job_id"], job["status"]) == (body["job_id"], "succeeded")
    assert job["payload"] == {"mode": "slow", "seconds": 4}


async def test_a_synchronous_pipeline_answers_with_its_tree(d: DaemonProcess) -> None:
    async with session(d) as s:
        answer = await s.call_tool("pipeline__shout", {"word": "hey"})
    assert answer.isError is False, answer.content
    body = structured(answer)
    assert (body["pipeline"], body["status"]) == ("shout", "succeeded")
    tree = body["tree"]
    assert [job["step_id"] for job in tree] == ["first", "second"]
    assert all(job["status"] == "succeeded" for job in tree)
    assert tree[0]["payload"] == {"word": "hey"}
    assert body["run_id"] and all(job["run_id"] == body["run_id"] for job in tree)
    assert body["result"] == tree[-1]["result"]["result"]


async def test_jobs_and_plugins_are_resources(d: DaemonProcess) -> None:
    async with session(d) as s:
        done = structured(await s.call_tool("echo__poll", {}))
        listed = {str(r.uri) for r in (await s.list_resources()).resources}
        templates = {t.uriTemplate for t in (await s.list_resource_templates()).resourceTemplates}
        job = await s.read_resource(AnyUrl(f"job://{done['job_id']}"))
        plugin = await s.read_resource(AnyUrl("plugin://echo"))
        with pytest.raises(McpError) as missing:
            await s.read_resource(AnyUrl("job://no-such-job"))
        with pytest.raises(McpError) as unknown:
            await s.read_resource(AnyUrl("file:///etc/passwd"))
    assert {"plugin://echo", f"job://{done['job_id']}"} <= listed
    assert templates == {"job://{job_id}", "plugin://{name}"}
    (content,) = job.contents
    assert isinstance(content, TextResourceContents) and content.mimeType == "application/json"
    shown = json.loads(content.text)
    # The job with its messages: what GET /job/{id}?include=messages shows.
    assert (shown["job_id"], shown["status"]) == (done["job_id"], "succeeded")
    assert any(m["kind"] == "log" and m["text"] == "echo: poll done" for m in shown["messages"])
    assert shown["messages"][-1]["status"] == "succeeded"
    (manifest,) = plugin.contents
    assert isinstance(manifest, TextResourceContents)
    assert {c["name"] for c in json.loads(manifest.text)["commands"]} == {
        "poll",
        "handle",
        "health",
    }
    assert missing.value.error.code == RESOURCE_NOT_FOUND
    assert "no-such-job" in missing.value.error.message
    assert unknown.value.error.code == RESOURCE_NOT_FOUND


async def test_a_read_only_token_is_offered_only_what_it_may_call(d: DaemonProcess) -> None:
    async with session(d, "ro-token") as s:  # plugin:ro
        offered = {tool.name for tool in (await s.list_tools()).tools}
        read = await s.call_tool("echo__poll", {})
        with pytest.raises(McpError) as write:
            await s.call_tool("echo__handle", {})
        with pytest.raises(McpError) as jobs:
            await s.call_tool("get_job", {"job_id": structured(read)["job_id"]})
        with pytest.raises(McpError) as unknown:
            await s.call_tool("no_such__tool", {})
        resources = {str(r.uri) for r in (await s.list_resources()).resources}
    assert {"echo__poll", "echo__health"} <= offered
    assert not offered & {"echo__handle", "pipeline__shout", "get_job", "cancel_job"}
    assert read.isError is False
    # Called anyway, a tool it was not offered is an MCP error naming the scope.
    assert write.value.error.code == FORBIDDEN
    assert "plugin:rw" in write.value.error.message
    assert jobs.value.error.code == FORBIDDEN
    assert unknown.value.error.code == -32602
    # Plugins, but no jobs, are its resources.
    assert "plugin://echo" in resources and not any(r.startswith("job://") for r in resources)

    async with session(d, "reader-token") as s:  # read:*
        offered = {tool.name for tool in (await s.list_tools()).tools}
    assert {"get_job", "list_jobs", "get_run", "list_runs", "echo__poll"} <= offered
    assert not offered & {"cancel_job", "send_message", "approve_step", "echo__handle"}

    # Operators see the refusals in the metrics, by tool.
    async with api_client(d) as c:
        metrics = (await c.get("/metrics")).text
    assert 'chamberlain_mcp_tool_calls_total{outcome="ok",tool="echo__poll"} 1.0' in metrics
    assert 'chamberlain_mcp_tool_calls_total{outcome="refused",tool="echo__handle"} 1.0' in metrics
    assert 'chamberlain_mcp_tool_calls_total{outcome="refused",tool="?"} 1.0' in metrics
    assert 'chamberlain_http_requests_total{method="POST",route="/mcp",status="200"}' in metrics


async def test_an_admin_reloads_through_a_tool_and_is_offered_the_new_plugin(
    d: DaemonProcess,
) -> None:
    config = yaml.safe_load(d.config_path.read_text())
    async with session(d, "rw-token") as s:
        assert "reload_config" not in {tool.name for tool in (await s.list_tools()).tools}
    async with session(d) as s:
        tools = {tool.name for tool in (await s.list_tools()).tools}
        assert "reload_config" in tools and "herald__poll" not in tools
        config["plugins"]["herald"] = {"uses": "echo"}
        d.config_path.write_text(yaml.safe_dump(config))
        answer = await s.call_tool("reload_config", {})
        assert answer.isError is False, text(answer)
        assert {"path": "plugins.herald", "change": "added"} in structured(answer)["changes"]
        assert "herald__poll" in {tool.name for tool in (await s.list_tools()).tools}

        config["service"]["max_workers"] = 0
        d.config_path.write_text(yaml.safe_dump(config))
        refused = await s.call_tool("reload_config", {})
        # A tool error the agent reads, with every problem at its YAML path.
        assert refused.isError is True
        assert "service.max_workers" in text(refused)


async def test_mcp_refuses_bad_tokens_and_foreign_hosts_with_json(d: DaemonProcess) -> None:
    async with httpx.AsyncClient(base_url=d.base_url) as c:
        anonymous = await c.post("/mcp", json=INITIALIZE, headers=ACCEPT)
        wrong = await c.post(
            "/mcp", json=INITIALIZE, headers={**ACCEPT, "Authorization": "Bearer x"}
        )
        # A page on another site, its name rebound to this address, sends its own Host.
        rebound = await c.post(
            "/mcp",
            json=INITIALIZE,
            headers={**ACCEPT, "Authorization": f"Bearer {API_KEY}", "Host": "evil.example"},
        )
        foreign = await c.post(
            "/mcp",
            json=INITIALIZE,
            headers={
                **ACCEPT,
                "Authorization": f"Bearer {API_KEY}",
                "Origin": "https://evil.example",
            },
        )
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert "error" in anonymous.json()
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid token"
    assert rebound.status_code == 421 and "mcp.allowed_hosts" in rebound.json()["error"]
    assert foreign.status_code == 403 and "mcp.allowed_origins" in foreign.json()["error"]


async def test_a_session_answers_only_the_token_that_opened_it(d: DaemonProcess) -> None:
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    async with httpx.AsyncClient(base_url=d.base_url) as c:
        opened = await c.post(
            "/mcp", json=INITIALIZE, headers={**ACCEPT, "Authorization": "Bearer rw-token"}
        )
        assert opened.status_code == 200, opened.text
        sid = opened.headers["mcp-session-id"]
        own = {**ACCEPT, "Authorization": "Bearer rw-token", "Mcp-Session-Id": sid}
        done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await c.post("/mcp", json=done, headers=own)).status_code == 202
        # Another valid token with the session's id is answered as if there were none.
        other = {**own, "Authorization": f"Bearer {API_KEY}"}
        stolen = await c.post("/mcp", json=listing, headers=other)
        mine = await c.post("/mcp", json=listing, headers=own)
    assert stolen.status_code == 404
    assert mine.status_code == 200 and '"echo__handle"' in mine.text


async def test_allowed_hosts_let_a_named_host_through(daemon: DaemonFactory) -> None:
    d = await daemon({"mcp": {"allowed_hosts": ["gateway.lan:*"]}})
    headers = {**ACCEPT, "Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=d.base_url) as c:
        named = await c.post(
            "/mcp", json=INITIALIZE, headers={**headers, "Host": "gateway.lan:8080"}
        )
        other = await c.post("/mcp", json=INITIALIZE, headers={**headers, "Host": "other.lan:80"})
    # The named host opens a session; one not named is still refused.
    assert named.status_code == 200 and named.headers["mcp-session-id"], named.text
    assert other.status_code == 421


async def test_mcp_can_be_turned_off(daemon: DaemonFactory) -> None:
    d = await daemon({"mcp": {"enabled": False}})
    async with httpx.AsyncClient(base_url=d.base_url) as c:
        r = await c.post("/mcp", json={}, headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 404 and "error" in r.json()


def bridge_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CHAMBERLAIN_")}


async def test_the_stdio_bridge_serves_the_same_tools(d: DaemonProcess) -> None:
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "chamberlain", "mcp", "--url", d.base_url, "--token", "rw-token"],
        env=bridge_env(),
    )
    async with stdio_client(server) as (read, write), ClientSession(read, write) as s:
        info = await s.initialize()
        offered = {tool.name for tool in (await s.list_tools()).tools}
        answer = await s.call_tool("echo__handle", {"mode": "plain"})
        with pytest.raises(McpError) as refused:
            await s.read_resource(AnyUrl("job://nope"))
    assert info.serverInfo.name == "chamberlain"
    assert {"echo__handle", "pipeline__shout", "cancel_job"} <= offered
    assert answer.isError is False and structured(answer)["status"] == "succeeded"
    # Errors come through the bridge as the daemon gave them.
    assert refused.value.error.code == RESOURCE_NOT_FOUND


async def test_the_bridge_says_why_it_cannot_start(d: DaemonProcess) -> None:
    def bridge(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chamberlain", "mcp", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=bridge_env(),
            stdin=subprocess.DEVNULL,
        )

    wrong = await trio.to_thread.run_sync(bridge, "--url", d.base_url, "--token", "nope")
    down = await trio.to_thread.run_sync(bridge, "--url", "http://127.0.0.1:9", "--token", "x")
    assert wrong.returncode == 6
    assert "401 invalid token" in wrong.stderr and wrong.stdout == ""
    assert down.returncode == 5 and "cannot reach the daemon" in down.stderr


async def test_a_call_in_flight_does_not_hold_the_daemon_s_stop(d: DaemonProcess) -> None:
    async def hanging() -> list[dict[str, Any]]:
        async with api_client(d) as c:
            jobs: list[dict[str, Any]] = (await c.get("/jobs?status=running")).json()["jobs"]
            return jobs

    async with session(d, terminate=False) as s, trio.open_nursery() as nursery:
        nursery.start_soon(s.call_tool, "echo__handle", {"mode": "hang"})
        await wait_for(hanging)
        d.proc.terminate()
        # The session's tasks end with the daemon's web actor; the job is stopped at
        # the shutdown grace (5 s) and the daemon exits as it always does.
        with trio.fail_after(20):
            await d.proc.wait()
        nursery.cancel_scope.cancel()
    assert d.proc.returncode == 0
