"""Figure 3, the trigger path: ``POST /trigger/echo/poll`` with every job committed.

wrk loads the real daemon at the framework floor's concurrency, with a bearer
token and a small JSON body; every 202 means the job was committed (one fsync per
group commit) before the answer.  Afterwards the jobs table is counted to prove it,
and the queue depth shows whether the dispatcher (running those jobs through the
echo plugin meanwhile, on the same CPUs) kept up.  Then a paced run measures the
latency at 200 requests per second, the issue's p99 target.

    python bench/trigger_path.py [--seconds 10] [--floor REQ_PER_S]
"""

from __future__ import annotations

import argparse
import re
import sys
import time

import floor_app
import paced
import report
import servers
import tools

PACED_RATE = 200.0
_SERVED = re.compile(r'"served (\d+) requests in (\d+) transactions"')


def drain(d: servers.Daemon, timeout: float) -> tuple[float, int]:
    """Wait until no job is queued or running; (seconds it took, jobs left if it timed out)."""
    started = time.perf_counter()
    deadline = started + timeout
    while True:
        health = d.get("/healthz")
        left = int(health["queue_depth"]) + int(health["running"])
        if left == 0 or time.perf_counter() > deadline:
            return time.perf_counter() - started, left
        time.sleep(0.05)


def group_commits(d: servers.Daemon) -> tuple[int, int] | None:
    """(requests, transactions) the JobStore logged as it stopped."""
    for match in _SERVED.finditer(d.final_log):
        return int(match.group(1)), int(match.group(2))
    return None


def measure(
    seconds: float, *, floor_rate: float | None, max_workers: int, quick: bool = False
) -> list[report.Figure]:
    """The trigger path's figures; the wrk part is skipped (loudly) without wrk."""
    figures: list[report.Figure] = []
    have_wrk = tools.find("wrk") is not None
    url_path = "/trigger/echo/poll"
    body = floor_app.BODY
    with servers.daemon(max_workers=max_workers) as d:
        accepted = 0
        if have_wrk:
            warm = tools.wrk(
                d.url + url_path, method="POST", token=servers.API_KEY, body=body, seconds=1
            )
            result = tools.wrk(
                d.url + url_path,
                method="POST",
                token=servers.API_KEY,
                body=body,
                connections=floor_app.CONNECTIONS,
                seconds=seconds,
            )
            if result.errors or result.bad_status or warm.errors or warm.bad_status:
                raise RuntimeError(f"the daemon answered badly: {result}\n{d.tail()}")
            accepted = warm.requests + result.requests
            health = d.get("/healthz")
            backlog = int(health["queue_depth"])
            with d.store() as db:
                (rows,) = db.execute("SELECT COUNT(*) FROM jobs").fetchone()
            # wrk counts answers it read; requests cut off as it stopped may be committed
            # too, so rows may exceed the 202s by up to one per connection and run.
            if not accepted <= rows <= accepted + 2 * floor_app.CONNECTIONS:
                raise RuntimeError(f"{accepted} answered 202 but {rows} jobs are stored")
            figures += [
                report.Figure(
                    name="trigger: POST rate (committed)",
                    value=result.rate,
                    unit="req/s",
                    limit_name="framework floor",
                    limit=floor_rate,
                    target=">= 0.8",
                ),
                report.Figure(name="trigger: p50 under full load", value=result.p50_ms, unit="ms"),
                report.Figure(name="trigger: p99 under full load", value=result.p99_ms, unit="ms"),
                report.Figure(
                    name="trigger: jobs stored / 202 answers",
                    value=rows,
                    unit=f"/ {accepted}",
                    note="every 202 committed",
                ),
                report.Figure(
                    name="trigger: queue depth after the load",
                    value=backlog,
                    unit="jobs",
                    note=f"dispatcher ran {rows - backlog} of {rows} meanwhile",
                ),
            ]
            waited, left = drain(d, timeout=5 if quick else 600)
            if not left:
                figures.append(
                    report.Figure(
                        name="trigger: time to drain that backlog",
                        value=waited,
                        unit="s",
                        note=f"{backlog / waited:.0f} jobs/s" if backlog and waited else "",
                    )
                )
        else:
            report.skipped("trigger path under wrk", tools.missing("wrk"))
        rate = 20.0 if quick else PACED_RATE
        run = paced.paced(
            d.url + url_path,
            rate=rate,
            seconds=1.0 if quick else max(seconds, 10.0),
            body=body,
            headers=d.headers(),
        )
        if run.failures or run.statuses != (202,):
            raise RuntimeError(f"paced run failed: {run.failures} failures, {run.statuses}")
        figures += [
            report.Figure(
                name=f"trigger: p50 at {rate:g} req/s",
                value=report.percentile(run.latencies, 50) * 1000,
                unit="ms",
            ),
            report.Figure(
                name=f"trigger: p99 at {rate:g} req/s",
                value=report.percentile(run.latencies, 99) * 1000,
                unit="ms",
                target="< 5 ms",
            ),
        ]
        drain(d, timeout=5 if quick else 600)
    commits = group_commits(d)
    if commits is not None:
        requests, transactions = commits
        figures.append(
            report.Figure(
                name="jobstore: requests per transaction",
                value=requests / max(1, transactions),
                unit="",
                note=f"{requests} requests in {transactions} commits",
            )
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    """Measure the trigger path, and the framework floor it is compared to."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the wrk load")
    parser.add_argument("--max-workers", type=int, default=4, help="service.max_workers")
    parser.add_argument(
        "--floor", type=float, help="framework floor in req/s (default: measure it now)"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    seconds = 1.0 if args.quick else args.seconds
    report.header(f"trigger path (wrk, {floor_app.CONNECTIONS} connections)")
    figures: list[report.Figure] = []
    floor_rate = args.floor
    if floor_rate is None:
        floor = floor_app.measure(seconds)
        figures += floor
        floor_rate = floor[0].value if floor else None
    figures += measure(
        seconds, floor_rate=floor_rate, max_workers=args.max_workers, quick=args.quick
    )
    report.show(figures)
    report.save(args.json, "trigger path", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
