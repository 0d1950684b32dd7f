"""MCP tool calls: what a call through ``/mcp`` costs over the HTTP API it stands for.

One real daemon, the bundled echo plugin, and the official ``mcp`` SDK's client
(``ClientSession`` over ``streamable_http_client``, one session reused) under trio,
like the daemon.  A command's tool call enqueues its job and waits for it, so the
same work over plain HTTP is ``POST /trigger/echo/poll`` then
``GET /job/{id}?wait=30s`` until the job is finished (one client reused): both end
when the client holds the job's result.

- **tool call**: ``echo__poll`` called ``--calls`` times one after another, against
  the HTTP round trip.  The two alternate call by call, so a noisy spell on a
  shared machine falls on both and the ratio MCP / HTTP stays fair;
- **protocol only**: ``get_job`` on a finished job against ``GET /job/{id}``, also
  alternating: one request each and no job run, so the difference is what MCP's
  framing costs a call;
- **in the daemon**: from the daemon's own log, how long it held each ``POST /mcp``
  of those calls and how much of that was the tool's handler (for ``echo__poll``,
  the trigger and the wait for its job);
- **CPU per call**: the daemon's (from /proc) and the client's, over ``--calls``
  calls of each kind in a row, for ``echo__poll`` and for ``get_job``;
- **tools/list**: the catalogue listed ``--calls`` times on the session;
- **concurrent sessions**: calls per second with ``--sessions`` sessions each
  calling ``echo__poll`` one after another, against as many HTTP clients doing the
  round trip.

    python bench/mcp_calls.py [--calls 200] [--sessions 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

import httpx
import report
import servers
import trio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

TOOL = "echo__poll"
#: A job in these is not finished yet.
PENDING = ("queued", "running")

Call = Callable[[], Awaitable[float]]


@asynccontextmanager
async def mcp_session(d: servers.Daemon) -> AsyncIterator[ClientSession]:
    """An initialized MCP session with ``d``, ended with a DELETE as clients do."""
    async with (
        httpx.AsyncClient(headers=d.headers(), timeout=httpx.Timeout(30, read=120)) as http,
        streamable_http_client(f"{d.url}/mcp", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def api_client(d: servers.Daemon) -> httpx.AsyncClient:
    """A client of ``d``'s HTTP API with the all-scopes key."""
    return httpx.AsyncClient(base_url=d.url, headers=d.headers(), timeout=60)


async def mcp_call(session: ClientSession) -> float:
    """One ``echo__poll`` call: seconds until its job's result is back."""
    started = time.perf_counter()
    result = await session.call_tool(TOOL, {})
    elapsed = time.perf_counter() - started
    answer = result.structuredContent or {}
    if result.isError or answer.get("status") != "succeeded":
        raise RuntimeError(f"{TOOL} answered {answer or result.content}")
    return elapsed


async def http_call(c: httpx.AsyncClient) -> float:
    """The same work over the API: trigger, then long-poll the job until it is done."""
    started = time.perf_counter()
    r = await c.post("/trigger/echo/poll", json={})
    if r.status_code != 202:
        raise RuntimeError(f"trigger answered {r.status_code}: {r.text}")
    job = r.json()
    while job["status"] in PENDING:
        r = await c.get(f"/job/{job['job_id']}", params={"wait": "30s"})
        if r.status_code != 200:
            raise RuntimeError(f"GET /job answered {r.status_code}: {r.text}")
        job = r.json()
    elapsed = time.perf_counter() - started
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job['job_id']} {job['status']}: {job['last_error']}")
    return elapsed


async def mcp_get_job(session: ClientSession, job_id: str) -> float:
    """One ``get_job`` call on a finished job: one request, no job run."""
    started = time.perf_counter()
    result = await session.call_tool("get_job", {"job_id": job_id})
    elapsed = time.perf_counter() - started
    if result.isError:
        raise RuntimeError(f"get_job answered {result.content}")
    return elapsed


async def http_get_job(c: httpx.AsyncClient, job_id: str) -> float:
    """``GET /job/{id}`` of a finished job."""
    started = time.perf_counter()
    r = await c.get(f"/job/{job_id}")
    elapsed = time.perf_counter() - started
    if r.status_code != 200:
        raise RuntimeError(f"GET /job answered {r.status_code}: {r.text}")
    return elapsed


async def list_tools(session: ClientSession) -> float:
    """One ``tools/list``: seconds to the catalogue."""
    started = time.perf_counter()
    listed = await session.list_tools()
    elapsed = time.perf_counter() - started
    if not any(tool.name == TOOL for tool in listed.tools):
        raise RuntimeError(f"tools/list does not offer {TOOL}")
    return elapsed


def log_records(d: servers.Daemon) -> list[dict[str, Any]]:
    """What the daemon has logged so far, one record a line."""
    records = []
    for line in d.log.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def in_daemon(records: Sequence[Mapping[str, Any]], tool: str) -> tuple[list[float], list[float]]:
    """The daemon's own timings (ms) of the ``tool`` calls in ``records``: each
    ``POST /mcp`` from its arrival to its answer's end, and the tool's handler."""
    requests, handlers = [], []
    for record in records:
        message = str(record.get("msg", ""))
        if message.startswith("POST /mcp 200 "):
            requests.append(float(message.rsplit(" ", 1)[1].removesuffix("ms")))
        elif message.startswith(f"mcp tool {tool}:"):
            handlers.append(float(record["duration_ms"]))
    return requests, handlers


async def alternate(calls: int, first: Call, second: Call) -> tuple[list[float], list[float]]:
    """``calls`` of each, one of ``first`` then one of ``second``: their latencies."""
    one: list[float] = []
    two: list[float] = []
    for _ in range(calls):
        one.append(await first())
        two.append(await second())
    return one, two


async def cpu_per_call(d: servers.Daemon, calls: int, call: Call) -> tuple[float, float]:
    """CPU seconds per call of the daemon and of this process, over ``calls`` in a row."""
    daemon, client = servers.cpu_seconds(d.pid), time.process_time()
    for _ in range(calls):
        await call()
    return (
        (servers.cpu_seconds(d.pid) - daemon) / calls,
        (time.process_time() - client) / calls,
    )


async def at_once(calls: int, callers: Sequence[Call]) -> float:
    """Calls per second with every caller making ``calls`` calls one after another."""

    async def one(call: Call) -> None:
        for _ in range(calls):
            await call()

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for call in callers:
            nursery.start_soon(one, call)
    return len(callers) * calls / (time.perf_counter() - started)


async def concurrent(d: servers.Daemon, sessions: int, calls: int) -> tuple[float, float]:
    """Calls per second with ``sessions`` MCP sessions at once, then with as many HTTP
    clients; each opened (and its tool list cached) before the clock starts."""
    async with AsyncExitStack() as stack:
        opened = [await stack.enter_async_context(mcp_session(d)) for _ in range(sessions)]
        for session in opened:
            await session.list_tools()
        over_mcp = await at_once(calls, [partial(mcp_call, s) for s in opened])
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(api_client(d)) for _ in range(sessions)]
        over_http = await at_once(calls, [partial(http_call, c) for c in clients])
    return over_mcp, over_http


def measure(calls: int, sessions: int) -> list[report.Figure]:
    """The figures of one run (see the module docstring)."""
    return trio.run(_measure, calls, sessions)


async def _measure(calls: int, sessions: int) -> list[report.Figure]:
    extra = {"plugins": {"echo": {"parallelism": sessions}}}
    with servers.daemon(max_workers=sessions, extra=extra) as d:
        async with api_client(d) as c, mcp_session(d) as session:
            done = (await session.call_tool(TOOL, {})).structuredContent or {}
            job_id = str(done["job_id"])
            mcp_job, http_job = (
                partial(mcp_get_job, session, job_id),
                partial(http_get_job, c, job_id),
            )
            for _ in range(min(20, calls)):  # warm-up: every path once, the schema cache
                await mcp_call(session)
                await http_call(c)
                await mcp_job()
                await http_job()
                await list_tools(session)
            since = len(log_records(d))
            over_mcp, over_http = await alternate(
                calls, partial(mcp_call, session), partial(http_call, c)
            )
            logged = log_records(d)
            call_in_daemon = in_daemon(logged[since:], TOOL)
            get_mcp, get_http = await alternate(calls, mcp_job, http_job)
            get_in_daemon = in_daemon(log_records(d)[len(logged) :], "get_job")
            cpu = {
                "mcp call": await cpu_per_call(d, calls, partial(mcp_call, session)),
                "http call": await cpu_per_call(d, calls, partial(http_call, c)),
                "mcp get": await cpu_per_call(d, calls, mcp_job),
                "http get": await cpu_per_call(d, calls, http_job),
            }
            listing = [await list_tools(session) for _ in range(calls)]
            offered = len((await session.list_tools()).tools)
        mcp_rate, http_rate = await concurrent(d, sessions, calls)

    def ms(samples: list[float], q: float) -> float:
        return report.percentile(samples, q) * 1000

    def daemon_figure(what: str, timings: tuple[list[float], list[float]]) -> report.Figure:
        requests, handlers = timings
        return report.Figure(
            name=f"mcp: {what} in the daemon p50",
            value=report.percentile(requests, 50),
            unit="ms",
            note=(
                f"POST /mcp from its arrival until its answer is sent; the handler"
                f" {report.percentile(handlers, 50):.2f} ms of it"
            ),
        )

    def cpu_figures(what: str, mcp: str, http: str, limit_name: str) -> list[report.Figure]:
        return [
            report.Figure(
                name=f"mcp: {side} CPU per {what}",
                value=cpu[mcp][index] * 1000,
                unit="ms",
                limit_name=limit_name,
                limit=cpu[http][index] * 1000,
                note=f"{calls} in a row",
            )
            for index, side in enumerate(("daemon", "client"))
        ]

    return [
        report.Figure(
            name=f"mcp: {TOOL} call p50",
            value=ms(over_mcp, 50),
            unit="ms",
            limit_name="HTTP p50",
            limit=ms(over_http, 50),
            note=f"{calls} calls on one session, one after another",
        ),
        report.Figure(
            name=f"mcp: {TOOL} call p99",
            value=ms(over_mcp, 99),
            unit="ms",
            limit_name="HTTP p99",
            limit=ms(over_http, 99),
        ),
        report.Figure(
            name="http: trigger + wait p50",
            value=ms(over_http, 50),
            unit="ms",
            note=(
                f"p99 {ms(over_http, 99):.1f} ms: POST /trigger/echo/poll,"
                " GET /job/{id}?wait=30s until done"
            ),
        ),
        report.Figure(
            name="mcp: get_job call p50",
            value=ms(get_mcp, 50),
            unit="ms",
            limit_name="GET /job p50",
            limit=ms(get_http, 50),
            note=(
                f"p99 {ms(get_mcp, 99):.1f} ms against {ms(get_http, 99):.1f} ms:"
                " a finished job, no job run"
            ),
        ),
        daemon_figure(f"{TOOL} call", call_in_daemon),
        daemon_figure("get_job call", get_in_daemon),
        *cpu_figures(f"{TOOL} call", "mcp call", "http call", "HTTP"),
        *cpu_figures("get_job call", "mcp get", "http get", "GET /job"),
        report.Figure(
            name="mcp: tools/list p50",
            value=ms(listing, 50),
            unit="ms",
            note=f"p99 {ms(listing, 99):.1f} ms, {offered} tools",
        ),
        report.Figure(
            name=f"mcp: calls with {sessions} sessions at once",
            value=mcp_rate,
            unit="calls/s",
            limit_name=f"{sessions} HTTP clients",
            limit=http_rate,
            note=f"each {TOOL} one call after another",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """Measure MCP tool calls."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 calls, 2 sessions")
    parser.add_argument("--calls", type=int, default=200, help="calls of each kind")
    parser.add_argument("--sessions", type=int, default=4, help="sessions at once")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    calls, sessions = (20, 2) if args.quick else (args.calls, args.sessions)
    report.header(f"MCP tool calls ({calls} calls, {sessions} sessions)")
    figures = measure(calls, sessions)
    report.show(figures)
    report.save(args.json, "MCP tool calls", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
