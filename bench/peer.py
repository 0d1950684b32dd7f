"""Figure 5, the peer: a synchronous pipeline against adnanh/webhook, same plugin.

webhook (Debian package ``webhook``) runs a command per HTTP request and answers
with its output; it stores nothing.  Chamberlain answering a synchronous pipeline
does more (every job committed, settled, routed), and the target is to stay within
0.75 of webhook anyway.  Both run the bundled echo plugin twice per request:

- chamberlain: ``POST /trigger/echo/poll`` with a synchronous pipeline on
  ``echo.poll`` whose one step runs ``echo.handle`` (a pipeline has at least one
  step), so each answer waits for two jobs, both committed and settled;
- webhook: a hook whose command runs the plugin twice with a ready request on its
  stdin (webhook cannot feed a body to stdin; a fixed request only favours it).

Both are loaded by wrk at the same concurrency.

    python bench/peer.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import floor_app
import report
import servers
import spawn_bound
import tools

WRAPPER = """#!/bin/sh
# The pipeline runs the plugin twice (its root job and one step), so does this hook;
# webhook cannot feed a body to stdin, so both runs read the request from a file.
./run.sh < {request} > /dev/null
exec ./run.sh < {request}
"""

#: A synchronous pipeline on echo.poll with one step: two plugin runs per request.
PIPELINE = {
    "name": "peer",
    "on": "echo.poll",
    "execution_mode": "synchronous",
    "steps": [{"id": "again", "uses": "echo.handle"}],
}


def webhook_rate(seconds: float, connections: int, *, warm: bool) -> list[report.Figure]:
    """webhook running the echo plugin per request."""
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        request = Path(tmp) / "request.json"
        request.write_bytes(spawn_bound.echo_request())
        wrapper = Path(tmp) / "hook.sh"
        wrapper.write_text(WRAPPER.format(request=request))
        wrapper.chmod(0o755)
        hooks = [
            {
                "id": "echo",
                "execute-command": str(wrapper),
                "command-working-directory": str(servers.ECHO),
                "include-command-output-in-response": True,
                "http-methods": ["POST"],
            }
        ]
        with servers.webhook(hooks) as hook:
            url = hook.url + "/hooks/echo"
            if warm:
                tools.wrk(
                    url, method="POST", body=floor_app.BODY, connections=connections, seconds=1
                )
            result = tools.wrk(
                url, method="POST", body=floor_app.BODY, connections=connections, seconds=seconds
            )
    if result.errors or result.bad_status:
        raise RuntimeError(f"webhook answered badly: {result}")
    return [
        report.Figure(name="webhook: echo twice per request", value=result.rate, unit="req/s"),
        report.Figure(name="webhook: p99", value=result.p99_ms, unit="ms"),
    ]


def pipeline_rate(
    seconds: float, connections: int, webhook: float | None, max_workers: int, *, warm: bool
) -> list[report.Figure]:
    """Chamberlain answering a one-job synchronous pipeline per request."""
    extra = {"pipelines": [PIPELINE], "api": {"max_concurrent_sync": 4 * connections}}
    with servers.daemon(max_workers=max_workers, extra=extra) as d:
        url = d.url + "/trigger/echo/poll"
        if warm:
            tools.wrk(
                url,
                method="POST",
                token=servers.API_KEY,
                body=floor_app.BODY,
                connections=connections,
                seconds=1,
            )
        result = tools.wrk(
            url,
            method="POST",
            token=servers.API_KEY,
            body=floor_app.BODY,
            connections=connections,
            seconds=seconds,
        )
    if result.errors or result.bad_status:
        raise RuntimeError(f"the daemon answered badly: {result}\n{d.tail()}")
    return [
        report.Figure(
            name="sync pipeline: two echo jobs per request",
            value=result.rate,
            unit="req/s",
            limit_name="webhook",
            limit=webhook,
            target=">= 0.75",
            note=f"max_workers {max_workers}",
        ),
        report.Figure(name="sync pipeline: p99", value=result.p99_ms, unit="ms"),
    ]


def measure(
    seconds: float, connections: int, max_workers: int, *, warm: bool = True
) -> list[report.Figure]:
    """Both sides of the comparison, as far as the tools and the daemon allow."""
    if tools.find("wrk") is None:
        report.skipped("peer comparison", tools.missing("wrk"))
        return []
    figures: list[report.Figure] = []
    webhook: float | None = None
    if tools.find("webhook") is None:
        report.skipped("webhook side", tools.missing("webhook"))
    else:
        figures += webhook_rate(seconds, connections, warm=warm)
        webhook = figures[0].value
    figures += pipeline_rate(seconds, connections, webhook, max_workers, warm=warm)
    return figures


def main(argv: list[str] | None = None) -> int:
    """Measure the peer comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load")
    parser.add_argument("--connections", type=int, default=floor_app.CONNECTIONS)
    parser.add_argument("--max-workers", type=int, default=4, help="service.max_workers")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    report.header(f"peer: webhook vs a synchronous pipeline ({args.connections} connections)")
    figures = measure(
        1.0 if args.quick else args.seconds,
        args.connections,
        args.max_workers,
        warm=not args.quick,
    )
    report.show(figures)
    report.save(args.json, "peer", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
