"""Figure 2, the framework floor: a bare Quart-Trio POST route under hypercorn.

The daemon's HTTP API stands on this stack; nothing it does per request can be
cheaper than the stack itself.  The route reads the body and answers a small JSON
object with 202, served exactly as the daemon serves its API: one process, trio,
hypercorn under :func:`chamberlain.web.serve.serve_api` (its settings, its accept loop
and connection cap).

    python bench/floor_app.py            # measure (needs wrk)
    python bench/floor_app.py --serve    # just serve, printing "listening URL"
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import TYPE_CHECKING

import report
import tools

if TYPE_CHECKING:
    from quart_trio import QuartTrio

#: The load every HTTP figure is measured at, so their ratios compare like with like.
CONNECTIONS = 16
BODY = b'{"payload": {"k": "v"}}'


def app() -> QuartTrio:
    """The bare app: a POST route and a GET route, no auth, no store."""
    from quart import Response, request
    from quart_trio import QuartTrio

    floor = QuartTrio("floor")

    @floor.post("/trigger/<plugin>/<command>")
    async def trigger(plugin: str, command: str) -> Response:
        await request.get_data()
        body = '{"job_id":"00000000-0000-4000-8000-000000000000","status":"queued"}\n'
        return Response(body, status=202, mimetype="application/json")

    @floor.get("/job/<job_id>")
    async def job(job_id: str) -> Response:
        # What GET /job/{id} costs the stack alone (bench/flood.py probes it).
        body = f'{{"job_id":"{job_id}","status":"succeeded","result":{{}}}}\n'
        return Response(body, status=200, mimetype="application/json")

    return floor


def serve() -> None:
    """Serve the bare app on a free port until SIGTERM."""
    import signal

    import trio
    from servers import free_port

    from chamberlain.config import ApiConfig
    from chamberlain.web.serve import serve_api

    api = ApiConfig(listen=f"127.0.0.1:{free_port()}")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                urls = await nursery.start(partial(serve_api, app(), api))
                print(f"listening {urls[0]}", flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)


def measure(
    seconds: float, connections: int = CONNECTIONS, *, warm: bool = True
) -> list[report.Figure]:
    """Load the floor with wrk; its figures (empty, with a SKIPPED line, without wrk)."""
    if tools.find("wrk") is None:
        report.skipped("framework floor", tools.missing("wrk"))
        return []
    from servers import floor

    with floor() as server:
        if warm:
            # A short warm-up, so the first connections' setup is not in the figure.
            tools.wrk(server.url + "/trigger/echo/poll", method="POST", body=BODY, seconds=1)
        result = tools.wrk(
            server.url + "/trigger/echo/poll",
            method="POST",
            body=BODY,
            connections=connections,
            seconds=seconds,
        )
    if result.errors or result.bad_status:
        raise RuntimeError(f"floor answered badly: {result}")
    return [
        report.Figure(name="framework floor: POST rate", value=result.rate, unit="req/s"),
        report.Figure(name="framework floor: p50", value=result.p50_ms, unit="ms"),
        report.Figure(name="framework floor: p99", value=result.p99_ms, unit="ms"),
    ]


def main(argv: list[str] | None = None) -> int:
    """Measure (or, with --serve, serve) the framework floor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="serve only, until SIGTERM")
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the load")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    report.header(f"framework floor (wrk, {CONNECTIONS} connections)")
    figures = measure(1.0 if args.quick else args.seconds, warm=not args.quick)
    report.show(figures)
    report.save(args.json, "framework floor", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
