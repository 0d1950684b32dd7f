"""Connections end to end: the real daemon, spoken to over raw loopback sockets.

Every test here is about what happens to the TCP connection *after* (or instead of)
an answer: closed when the client asked for it, closed when the client stalls,
and bounded in number, so that clients which never finish cannot use up the
daemon's file descriptors and starve ``/healthz``.  Raw sockets, because an HTTP
client library hides exactly what is being tested (whether and when EOF comes).
"""

from __future__ import annotations

import resource
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from conftest import API_KEY, DaemonFactory, DaemonProcess, wait_for
from procfs import open_fds

pytestmark = pytest.mark.e2e

#: Every wait on the server has this much slack over the figure it checks.
SLACK = 1.5


@asynccontextmanager
async def connect(d: DaemonProcess) -> AsyncIterator[trio.SocketStream]:
    """A fresh TCP connection to the daemon's API."""
    url = urlsplit(d.base_url)
    assert url.hostname is not None and url.port is not None
    stream = await trio.open_tcp_stream(url.hostname, url.port)
    async with stream:
        yield stream


async def until_eof(stream: trio.SocketStream, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long after the call it closed.

    Fails when the server keeps the connection open for longer than ``within``.
    """
    started = trio.current_time()
    data = bytearray()
    with trio.fail_after(within):
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                break  # reset: closed just as well
            if not chunk:
                break
            data += chunk
    return bytes(data), trio.current_time() - started


async def one_response(stream: trio.SocketStream, within: float) -> bytes:
    """Read exactly one response with a ``Content-Length``, leaving the connection open."""
    data = bytearray()
    with trio.fail_after(within):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            assert chunk, f"closed before a full response: {bytes(data)!r}"
            data += chunk
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            chunk = await stream.receive_some(65536)
            assert chunk, "closed in the middle of a body"
            body += chunk
    return head + b"\r\n\r\n" + body


def status_of(response: bytes) -> int:
    """The status code of a raw HTTP response."""
    return int(response.split(b" ", 2)[1])


def fd_count(d: DaemonProcess) -> int:
    """How many descriptors the daemon holds open right now."""
    return len(open_fds(d.proc.pid))


async def test_close_requests_get_their_answer_then_eof(daemon: DaemonFactory) -> None:
    d = await daemon({"api": {"keep_alive_timeout": "1s"}})
    requests = {
        "Connection: close": b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "HTTP/1.0": b"GET /healthz HTTP/1.0\r\n\r\n",
    }
    for name, request in requests.items():
        async with connect(d) as stream:
            await stream.send_all(request)
            response, closed_after = await until_eof(stream, within=SLACK)
        assert status_of(response) == 200, (name, response)
        assert b'"status"' in response, (name, response)

    # An idle keep-alive connection is closed once api.keep_alive_timeout passes.
    async with connect(d) as stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert status_of(await one_response(stream, within=SLACK)) == 200
        rest, closed_after = await until_eof(stream, within=1.0 + SLACK)
    assert rest == b""
    assert closed_after >= 0.5


async def test_a_stalled_body_is_disconnected(daemon: DaemonFactory) -> None:
    d = await daemon({"api": {"read_timeout": "1s", "keep_alive_timeout": "30s"}})
    stalled = b"POST /trigger/echo/poll HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n%b\r\n{"
    cases = {
        # Refused before the body matters: told to close, and closed.
        "unauthenticated": (stalled % b"", 401),
        # Waited for, for api.read_timeout, then answered 408 and closed.
        "authenticated": (stalled % f"Authorization: Bearer {API_KEY}\r\n".encode(), 408),
    }
    for name, (request, status) in cases.items():
        async with connect(d) as stream:
            await stream.send_all(request)
            # The answer may wait for read_timeout, then for the drain (as long again).
            response, _ = await until_eof(stream, within=2 * 1.0 + SLACK + 1.0)
        assert status_of(response) == status, (name, response)
        assert b"connection: close" in response.lower(), (name, response)


async def test_stalled_connections_over_the_cap_do_not_starve_healthz(
    daemon: DaemonFactory,
) -> None:
    cap = 20
    d = await daemon(
        {
            "api": {
                "max_connections": cap,
                # Long enough that only the cap can save /healthz here.
                "keep_alive_timeout": "60s",
                "read_timeout": "60s",
            }
        }
    )
    healthz = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    # One answer first, so that whatever the first request opens for good (the
    # store's read connection) is in the baseline.
    async with connect(d) as stream:
        await stream.send_all(healthz)
        assert status_of(await one_response(stream, within=5.0)) == 200
    baseline = fd_count(d)
    # A descriptor budget the stalled clients would exhaust without the cap: the
    # daemon keeps its own descriptors and room for 40 connections.
    soft, hard = resource.prlimit(d.proc.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(d.proc.pid, resource.RLIMIT_NOFILE, (baseline + 40, hard))
    stalls = [
        # Headers that never end.
        b"POST /trigger/echo/poll HTTP/1.1\r\nHost: t\r\n",
        # A body that never ends, from a caller whose body the daemon waits for.
        b"POST /trigger/echo/poll HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n"
        + f"Authorization: Bearer {API_KEY}\r\n\r\n{{".encode(),
        # Nothing at all.
        b"",
    ]
    held = 3 * cap
    async with AsyncExitStack() as clients:
        for i in range(held):
            stream = await clients.enter_async_context(connect(d))
            if stalls[i % len(stalls)]:
                await stream.send_all(stalls[i % len(stalls)])

        started = trio.current_time()
        async with connect(d) as stream:
            await stream.send_all(healthz)
            response = await one_response(stream, within=5.0)
        answered_after = trio.current_time() - started
        assert status_of(response) == 200, response
        assert answered_after < 5.0
        # The daemon holds no more than the cap, whatever the clients hold.
        assert fd_count(d) <= baseline + cap + 2

    # Every stalled client hung up: nothing they opened stays behind in the daemon.
    async def back_to_baseline() -> bool:
        return fd_count(d) <= baseline

    await wait_for(back_to_baseline, timeout=10.0)
    resource.prlimit(d.proc.pid, resource.RLIMIT_NOFILE, (soft, hard))


async def test_an_event_stream_to_an_http_1_0_client_ends_with_eof(daemon: DaemonFactory) -> None:
    # HTTP/1.0 has no chunked encoding: the end of a stream is the end of the connection.
    d = await daemon()
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers(), timeout=10.0) as c:
        r = await c.post("/trigger/echo/poll", json={})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]

        async def finished() -> bool:
            job = (await c.get(f"/job/{job_id}")).json()
            return job["status"] not in ("queued", "running")

        await wait_for(finished)
    async with connect(d) as stream:
        await stream.send_all(
            f"GET /job/{job_id}/stream HTTP/1.0\r\nAuthorization: Bearer {API_KEY}\r\n\r\n".encode()
        )
        response, _ = await until_eof(stream, within=5.0)
    assert status_of(response) == 200, response
    assert b"event: done" in response, response
