"""The MCP server's decisions (its answers, the hosts it accepts, its logging) and,
on an in-process daemon of fake plugins, the tool list changing under a session."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import trio
from conftest import wait_for
from fakes import FakePlugins, fake_plugin, make_daemon
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client
from mcp.server.transport_security import TransportSecurityMiddleware
from starlette.requests import Request

from chamberlain.config import ApiConfig, McpConfig
from chamberlain.daemon.tree import Daemon
from chamberlain.plugins.binding import bind_plugins
from chamberlain.plugins.registry import Discovery
from chamberlain.web.mcp_endpoint import (
    job_answer,
    pipeline_answer,
    quiet_sdk_logs,
    security_settings,
)

pytestmark = pytest.mark.filterwarnings(
    # See tests/test_mcp_endpoint_e2e.py: the SDK client's abandoned event stream.
    r"ignore:Async generator '(httpx|httpx_sse|httpcore)\.:ResourceWarning"
)

KEY = "in-process-key"


def job(status: str, **fields: Any) -> dict[str, Any]:
    return {"job_id": "j1", "status": status, "result": None, "last_error": None, **fields}


def test_a_succeeded_job_answers_what_its_command_answered() -> None:
    answer = job_answer(
        job("succeeded", result={"status": "ok", "result": {"n": 1}, "logs": []}), waited=30
    )
    assert not answer.is_error
    assert answer.structured == {"job_id": "j1", "status": "succeeded", "result": {"n": 1}}


@pytest.mark.parametrize("status", ["failed", "dead", "timed_out", "cancelled"])
def test_a_job_that_did_not_succeed_is_a_tool_error_naming_why(status: str) -> None:
    answer = job_answer(job(status, last_error="exit 1: boom"), waited=30)
    assert answer.is_error
    assert answer.text == f"job j1 {status}: exit 1: boom"
    assert answer.structured["error"] == "exit 1: boom"
    # Without a last_error the status says what happened.
    assert job_answer(job(status), waited=30).structured["error"] == status


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_job_still_going_answers_its_id_to_poll(status: str) -> None:
    answer = job_answer(job(status), waited=2.5)
    assert not answer.is_error
    assert answer.structured["job_id"] == "j1" and answer.structured["status"] == status
    assert "2.5s" in answer.structured["message"] and "get_job" in answer.structured["message"]


def test_a_pipeline_answers_its_tree_or_its_ids() -> None:
    done = {"job_id": "r", "run_id": "u", "status": "succeeded", "pipeline": "p", "tree": []}
    assert pipeline_answer(done, 200, waited=30).structured == done
    failed = {**done, "status": "failed", "error": "step b: exit 2"}
    answer = pipeline_answer(failed, 200, waited=30)
    assert answer.is_error and answer.text == "pipeline p failed: step b: exit 2"
    going = pipeline_answer(
        {"job_id": "r", "run_id": "u", "status": "running", "timeout_exceeded": True},
        202,
        waited=30,
    )
    assert not going.is_error
    assert (going.structured["job_id"], going.structured["run_id"]) == ("r", "u")
    skipped = {"pipeline": "p", "status": "skipped", "message": "every step's if: was false"}
    assert not pipeline_answer(skipped, 200, waited=30).is_error


async def allows(middleware: TransportSecurityMiddleware, host: str, origin: str = "") -> bool:
    headers = [(b"host", host.encode())]
    if origin:
        headers.append((b"origin", origin.encode()))
    request = Request({"type": "http", "method": "POST", "path": "/mcp", "headers": headers})
    return await middleware.validate_request(request, is_post=False) is None


async def test_only_loopback_the_listener_and_allowed_hosts_pass() -> None:
    local = TransportSecurityMiddleware(security_settings(McpConfig(), ApiConfig()))
    assert await allows(local, "127.0.0.1:8080")
    assert await allows(local, "localhost")
    assert await allows(local, "[::1]:8080")
    assert await allows(local, "localhost:8080", "http://localhost:3000")
    assert not await allows(local, "evil.example")
    assert not await allows(local, "127.0.0.1.evil.example:8080")
    assert not await allows(local, "127.0.0.1:8080", "https://evil.example")

    lan = ApiConfig(listen="192.168.1.5:8080")
    named = McpConfig(allowed_hosts=("gw.lan:*",), allowed_origins=("https://app.example",))
    middleware = TransportSecurityMiddleware(security_settings(named, lan))
    assert await allows(middleware, "192.168.1.5:8080")
    assert await allows(middleware, "gw.lan:8080")
    assert await allows(middleware, "gw.lan:8080", "https://app.example")
    assert not await allows(middleware, "gw.lan")  # name:* wants a port
    assert not await allows(middleware, "other.lan:8080")

    # A wildcard listener is reached by names only its operator knows.
    anywhere = TransportSecurityMiddleware(
        security_settings(McpConfig(), ApiConfig(listen="0.0.0.0:8080"))
    )
    assert await allows(anywhere, "127.0.0.1:8080")
    assert not await allows(anywhere, "0.0.0.0:8080")


def test_the_sdk_logs_warnings_only_and_not_a_session_s_normal_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    quiet_sdk_logs()
    quiet_sdk_logs()  # idempotent: one filter
    transport = logging.getLogger("mcp.server.streamable_http")
    assert len(transport.filters) == 1
    with caplog.at_level(logging.DEBUG, logger="mcp.server.streamable_http"):
        logging.getLogger("mcp.server.lowlevel.server").info("Processing request of type X")
        try:
            raise anyio.ClosedResourceError
        except anyio.ClosedResourceError:
            transport.exception("Error in standalone SSE writer")
        try:
            raise RuntimeError("real trouble")
        except RuntimeError:
            transport.exception("Error in standalone SSE writer")
    assert [r.getMessage() for r in caplog.records] == ["Error in standalone SSE writer"]
    assert caplog.records[0].exc_info is not None
    assert isinstance(caplog.records[0].exc_info[1], RuntimeError)


# -- an in-process daemon ----------------------------------------------------------


@pytest.fixture
async def served(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Daemon]:
    fake = FakePlugins()
    config = {"api": {"enabled": True, "listen": "127.0.0.1:0", "auth": {"api_key": KEY}}}
    d = make_daemon(tmp_path, fake, config=config, serve_web=True)
    await nursery.start(d.run)
    yield d
    with trio.fail_after(30):
        await d.shutdown()


@asynccontextmanager
async def session(
    d: Daemon, notifications: list[types.ServerNotification]
) -> AsyncIterator[ClientSession]:
    async def heard(message: Any) -> None:
        if isinstance(message, types.ServerNotification):
            notifications.append(message)

    async with (
        httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http,
        streamable_http_client(f"{d.urls[0]}/mcp", http_client=http) as (read, write, _),
        ClientSession(read, write, message_handler=heard) as s,
    ):
        await s.initialize()
        yield s


async def test_a_session_is_told_when_the_tools_change(served: Daemon, tmp_path: Path) -> None:
    endpoint = served.mcp
    assert endpoint is not None
    heard: list[types.ServerNotification] = []
    async with session(served, heard) as s:
        before = {tool.name for tool in (await s.list_tools()).tools}
        assert {"a__poll", "b__handle"} <= before and "c__poll" not in before

        async def streaming() -> bool:
            return endpoint.statistics().event_streams == 1

        # The session's stream of notifications is open once its client has started it.
        await wait_for(streaming)
        assert await endpoint.tools_changed() == 0  # nothing changed: nobody is told

        manifests = tuple(fake_plugin(tmp_path, name) for name in ("a", "b", "c"))
        served.gateway.plugins = bind_plugins(
            served.config, Discovery(plugins={m.name: m for m in manifests}, skipped=())
        )
        assert await endpoint.tools_changed() == 1

        async def told() -> bool:
            return any(isinstance(n.root, types.ToolListChangedNotification) for n in heard)

        await wait_for(told)
        after = {tool.name for tool in (await s.list_tools()).tools}
        assert after - before == {"c__poll", "c__handle"}
        called = await s.call_tool("list_jobs", {"limit": 1})
        assert called.isError is False
    assert endpoint.statistics().tool_calls == 1

    async def closed() -> bool:
        return endpoint.statistics().requests_in_flight == 0

    await wait_for(closed)
    assert endpoint.statistics().event_streams == 0
