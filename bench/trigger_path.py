"""Figure 3, the trigger path: ``POST /trigger/echo/poll`` with every job committed.

wrk loads the real daemon at the framework floor's concurrency, with a bearer
token and a small JSON body; every 202 means the job was committed (one fsync per
group commit) before the answer.  Afterwards the jobs table is counted to prove it.

The daemon would also run those jobs, on the same CPUs, faster than any plugin
can run them: the queue grows, and how much of the machine the dispatcher takes
meanwhile would blur the HTTP figure.  So it is measured twice:

- **ingest only**: the echo plugin's one slot (parallelism 1) is held by a job
  that hangs, so every triggered job is committed and queued but none starts.
  This is the trigger path itself; its ratio to the framework floor is the target.
- **with dispatch**: the plain daemon, running the jobs while it takes new ones;
  the queue depth afterwards says how far the dispatcher fell behind.

Latency at 200 requests per second (the p99 target) is measured both ways too,
with an open-loop client (bench/paced.py).

    python bench/trigger_path.py [--seconds 10] [--floor REQ_PER_S]
"""

from __future__ import annotations

import argparse
import sys

import floor_app
import paced
import report
import servers
import tools

PACED_RATE = 200.0
URL_PATH = "/trigger/echo/poll"

#: The ingest-only daemon: one echo slot, taken by a job that hangs.
HELD = {"plugins": {"echo": {"parallelism": 1}}, "service": {"shutdown_grace": "1s"}}


def stored_jobs(d: servers.Daemon) -> tuple[int, int]:
    """(all jobs, queued jobs) in the daemon's store."""
    with d.store() as db:
        (rows,) = db.execute("SELECT COUNT(*) FROM jobs").fetchone()
        (queued,) = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()
    return int(rows), int(queued)


def ran_during(before: tuple[int, int], after: tuple[int, int]) -> int:
    """How many jobs left the queue between two :func:`stored_jobs` counts.

    Jobs that were still queued at the first count (from an earlier phase) and ran
    meanwhile count too, and none of them twice: what is not queued at the end,
    less what was not queued at the start.  (Subtracting only the final backlog
    from the new rows went negative when earlier jobs were still queued.)
    """
    (rows_before, queued_before), (rows_after, queued_after) = before, after
    return (rows_after - queued_after) - (rows_before - queued_before)


def full_load(
    d: servers.Daemon, seconds: float, *, warm: bool = True
) -> tuple[tools.LoadResult, int]:
    """wrk at the floor's concurrency; the result and how many 202s it counted in all."""
    kw = {"method": "POST", "token": servers.API_KEY, "body": floor_app.BODY}
    runs = []
    if warm:
        runs.append(tools.wrk(d.url + URL_PATH, seconds=1, connections=floor_app.CONNECTIONS, **kw))
    result = tools.wrk(d.url + URL_PATH, seconds=seconds, connections=floor_app.CONNECTIONS, **kw)
    runs.append(result)
    for run in runs:
        if run.errors or run.bad_status:
            raise RuntimeError(f"the daemon answered badly: {run}\n{d.tail()}")
    return result, sum(run.requests for run in runs)


def check_committed(rows: int, accepted: int, before: int) -> None:
    """Every 202 is a stored job.  wrk counts answers it read; requests cut off as it
    stopped may be committed too, so up to one more per connection and run."""
    new = rows - before
    if not accepted <= new <= accepted + 2 * floor_app.CONNECTIONS:
        raise RuntimeError(f"{accepted} answered 202 but {new} jobs were stored")


def paced_latency(
    d: servers.Daemon, rate: float, seconds: float, label: str
) -> list[report.Figure]:
    """p50/p99 at a fixed rate, measured from each request's scheduled time.

    A short run first warms the daemon up: its first requests import the parts of
    the web stack loaded on first use, which is not what a steady load sees.
    """
    url = d.url + URL_PATH
    paced.paced(url, rate=rate, seconds=min(1.0, seconds), body=floor_app.BODY, headers=d.headers())
    run = paced.paced(url, rate=rate, seconds=seconds, body=floor_app.BODY, headers=d.headers())
    if run.failures or run.statuses != (202,):
        raise RuntimeError(f"paced run failed: {run.failures} failures, {run.statuses}")
    return [
        report.Figure(
            name=f"trigger ({label}): p50 at {rate:g} req/s",
            value=report.percentile(run.latencies, 50) * 1000,
            unit="ms",
        ),
        report.Figure(
            name=f"trigger ({label}): p99 at {rate:g} req/s",
            value=report.percentile(run.latencies, 99) * 1000,
            unit="ms",
            target="< 5 ms",
        ),
    ]


def measure(
    seconds: float, *, floor_rate: float | None, max_workers: int, quick: bool = False
) -> list[report.Figure]:
    """The trigger path's figures; the wrk parts are skipped (loudly) without wrk."""
    have_wrk = tools.find("wrk") is not None
    if not have_wrk:
        report.skipped("trigger path under wrk", tools.missing("wrk"))
    rate = 20.0 if quick else PACED_RATE
    paced_seconds = 0.5 if quick else max(seconds, 10.0)
    figures: list[report.Figure] = []
    commits: list[servers.StoreStatistics | None] = []

    with servers.daemon(max_workers=max_workers, extra=HELD) as d:
        status, _ = d.post("/trigger/echo/handle", {"payload": {"mode": "hang"}})
        if status != 202:
            raise RuntimeError(f"could not start the job that holds the slot: {status}")
        figures += paced_latency(d, rate, paced_seconds, "ingest only")
        if have_wrk:
            before, _ = stored_jobs(d)
            result, accepted = full_load(d, seconds, warm=not quick)
            rows, _ = stored_jobs(d)
            check_committed(rows, accepted, before)
            figures += [
                report.Figure(
                    name="trigger (ingest only): rate",
                    value=result.rate,
                    unit="req/s",
                    limit_name="framework floor",
                    limit=floor_rate,
                    target=">= 0.8",
                    note="every 202 committed",
                ),
                report.Figure(name="trigger (ingest only): p50", value=result.p50_ms, unit="ms"),
                report.Figure(name="trigger (ingest only): p99", value=result.p99_ms, unit="ms"),
            ]
    commits.append(servers.store_statistics(d.final_log))

    with servers.daemon(max_workers=max_workers) as d:
        figures += paced_latency(d, rate, paced_seconds, "with dispatch")
        if have_wrk:
            counted = stored_jobs(d)
            result, accepted = full_load(d, seconds, warm=not quick)
            rows, backlog = stored_jobs(d)
            check_committed(rows, accepted, counted[0])
            ran = ran_during(counted, (rows, backlog))
            made = rows - counted[0]
            # The warm-up second loads the daemon too (full_load runs it unless quick).
            loaded_for = seconds + (0 if quick else 1)
            figures += [
                report.Figure(
                    name="trigger (with dispatch): rate",
                    value=result.rate,
                    unit="req/s",
                    limit_name="framework floor",
                    limit=floor_rate,
                    note="every 202 committed",
                ),
                report.Figure(
                    name="trigger (with dispatch): queue after the load",
                    value=backlog,
                    unit="jobs",
                    note=f"the dispatcher ran {ran} of {made}, {ran / loaded_for:.0f}/s",
                ),
            ]
    commits.append(servers.store_statistics(d.final_log))

    requests = sum(c.requests for c in commits if c is not None)
    transactions = sum(c.transactions for c in commits if c is not None)
    if transactions:
        figures.append(
            report.Figure(
                name="jobstore: requests per transaction",
                value=requests / transactions,
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
        floor = floor_app.measure(seconds, warm=not args.quick)
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
