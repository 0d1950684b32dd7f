"""``chamberlain mcp``: the daemon's ``/mcp`` for clients that speak MCP over stdio only.

A desktop app starts ``chamberlain mcp --url … --token …`` as its MCP server and
talks JSON-RPC on its stdin and stdout; this process passes every message on to the
daemon's streamable HTTP endpoint and every answer and notification back, with the
official SDK's transports at both ends.  It holds no state of its own: the session
is the daemon's, and the tools, scopes and answers are exactly those of ``/mcp``.

Before bridging, one request checks that the daemon answers and takes the token,
so a wrong URL or token is one line on stderr and an exit code (docs/CLI.md), not
a client left waiting on a server that will never answer.  Anything the client
sends while the daemon goes away ends the bridge the same way.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

from ._connection import Connection, ConnectionError, resolve
from ._exits import ExitCode

if TYPE_CHECKING:
    import httpx

__all__ = ["bridge", "cmd_mcp", "preflight", "run_bridge"]

#: How long the daemon may take to start answering a message; a tool call waits for
#: its job (``mcp.call_timeout``) well within it.
READ_TIMEOUT = 3600.0


def _headers(connection: Connection) -> dict[str, str]:
    headers = {"User-Agent": "chamberlain-mcp-bridge"}
    if connection.token:
        headers["Authorization"] = f"Bearer {connection.token}"
    return headers


def _said(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.text.strip()[:200]


def preflight(connection: Connection, client: httpx.Client) -> tuple[ExitCode, str] | None:
    """Why ``connection`` cannot serve MCP sessions, with the exit code; None when it can.

    A GET without a session is refused by the MCP transport itself (400) once the
    host check and the token have passed, so any other refusal is what a session
    would meet too.
    """
    import httpx

    url = f"{connection.url}/mcp"
    try:
        response = client.get(url, headers={**_headers(connection), "Accept": "text/event-stream"})
    except httpx.TransportError as exc:
        return (
            ExitCode.UNREACHABLE,
            f"cannot reach the daemon at {connection.url} ({connection.source}):"
            f" {exc or type(exc).__name__}",
        )
    if response.status_code in (401, 403):
        where = (
            "no token given" if not connection.token else f"the token of {connection.token_source}"
        )
        return (
            ExitCode.AUTH_REFUSED,
            f"{url}: {response.status_code} {_said(response)} ({where})",
        )
    if response.status_code == 404:
        return ExitCode.FAILED, f"{url}: 404: this daemon serves no MCP server (mcp.enabled)"
    if response.status_code in (400, 405, 406) or response.status_code < 300:
        return None
    return ExitCode.FAILED, f"{url}: {response.status_code} {_said(response)}"


async def _pump(source: Any, sink: Any, what: str) -> None:
    """Pass ``source``'s messages to ``sink`` until ``source`` ends, then close ``sink``.

    An exception in the stream (a line that is not JSON-RPC, a bad answer) is said on
    stderr and the rest goes on: one bad message must not end the session.
    """
    async with sink:
        async for message in source:
            if isinstance(message, Exception):
                print(f"chamberlain mcp: {what}: {message}", file=sys.stderr)
                continue
            await sink.send(message)


async def bridge(
    connection: Connection,
    *,
    stdin: Any | None = None,
    stdout: Any | None = None,
) -> None:
    """Pass MCP messages between stdio (or ``stdin``/``stdout``, anyio text files)
    and the daemon's ``/mcp`` until the client closes stdin."""
    import anyio
    import httpx
    from mcp.client.streamable_http import streamable_http_client
    from mcp.server.stdio import stdio_server

    http = httpx.AsyncClient(
        headers=_headers(connection),
        timeout=httpx.Timeout(30.0, read=READ_TIMEOUT),
        follow_redirects=True,
    )
    async with (
        http,
        stdio_server(stdin, stdout) as (from_client, to_client),
        streamable_http_client(f"{connection.url}/mcp", http_client=http) as (
            from_daemon,
            to_daemon,
            _,
        ),
        anyio.create_task_group() as nursery,
    ):

        async def upstream() -> None:
            await _pump(from_client, to_daemon, "ignored input")
            # The client closed stdin: it is done, and so is the bridge.
            nursery.cancel_scope.cancel()

        nursery.start_soon(upstream)
        nursery.start_soon(_pump, from_daemon, to_client, "from the daemon")


def run_bridge(connection: Connection, *, stderr: TextIO | None = None) -> int:
    """Check the connection, then bridge stdio to it; the exit code."""
    import anyio
    import httpx

    # httpx logs every request at INFO; a client reads the bridge's stderr for problems.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("mcp").setLevel(logging.WARNING)
    err = stderr or sys.stderr
    with httpx.Client(timeout=10.0) as client:
        problem = preflight(connection, client)
    if problem is not None:
        code, message = problem
        print(f"chamberlain mcp: {message}", file=err)
        return code
    try:
        anyio.run(bridge, connection)
    except KeyboardInterrupt:
        return ExitCode.SUCCEEDED
    except Exception as exc:  # the daemon went away mid-session, say
        detail: BaseException = exc
        while isinstance(detail, BaseExceptionGroup) and len(detail.exceptions) == 1:
            detail = detail.exceptions[0]
        print(f"chamberlain mcp: the bridge to {connection.url} ended: {detail!r}", file=err)
        return ExitCode.UNREACHABLE
    return ExitCode.SUCCEEDED


def cmd_mcp(args: argparse.Namespace) -> int:
    """``chamberlain mcp``: bridge stdio to the daemon the connection options name."""
    try:
        connection = resolve(
            url=args.url, token=args.token, profile=args.profile, config=args.config
        )
    except ConnectionError as exc:
        print(f"chamberlain mcp: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    return run_bridge(connection)
