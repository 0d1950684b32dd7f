"""Figure 4, core dispatch: jobs made inside the daemon, run through the echo plugin.

The HTTP layer is out of the way here: one request brings a whole burst, and the
figure is how fast the daemon then claims, spawns, reads and settles the jobs,
from the first completion to the last, compared with the spawn bound (figure 1)
at the same parallelism.  The daemon's own CPU time per job is reported too: it
is the gateway's cost, the part that should be close to zero.

Workloads (each makes a burst of echo jobs inside the daemon, then the same
measurement runs):

- ``batch``: ``POST /jobs`` with up to 1,000 jobs, answered after one commit;
- ``fanout``: one job of bench/plugins/burst emits as many events, which a route
  fans out to ``echo.poll``, one job per event (the Router creates them all in one
  transaction).

Adding a workload is one ``submit`` function and one line in ``WORKLOADS``.

    python bench/core_dispatch.py [--jobs 1000] [--parallel 4] [--spawn-bound JOBS_PER_S]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import attrs
import report
import servers
import spawn_bound
import tools

#: The plugins and the route the fan-out burst needs, merged into the daemon's config.
FANOUT_CONFIG: dict[str, Any] = {
    "plugin_roots": [str(tools.REPO / "plugins"), str(tools.BENCH / "plugins")],
    "routes": [{"from": "burst", "event_type": "burst.item", "to": "echo.poll"}],
}


@attrs.frozen(kw_only=True)
class Burst:
    """How to find a workload's jobs in the store, and how long making them took."""

    #: A WHERE clause and its arguments that select exactly the burst's echo jobs.
    where: str
    args: tuple[Any, ...]
    submit_seconds: float


def submit_batch(d: servers.Daemon, count: int) -> Burst:
    """``POST /jobs`` with ``count`` echo/poll jobs (at most 1,000 per request)."""
    ids: list[str] = []
    started = time.perf_counter()
    for first in range(0, count, 1000):
        size = min(1000, count - first)
        jobs = [
            {"plugin": "echo", "command": "poll", "payload": {"n": first + i}} for i in range(size)
        ]
        status, body = d.post("/jobs", {"jobs": jobs})
        if status != 202:
            raise RuntimeError(f"POST /jobs answered {status}: {body}")
        ids.extend(job["job_id"] for job in body["jobs"])
    marks = ",".join("?" * len(ids))
    return Burst(
        where=f"id IN ({marks})", args=tuple(ids), submit_seconds=time.perf_counter() - started
    )


def submit_fanout(d: servers.Daemon, count: int) -> Burst:
    """One burst job emitting ``count`` events; the route makes an echo job of each."""
    started = time.perf_counter()
    status, body = d.post("/trigger/burst/poll", {"payload": {"count": count}})
    if status != 202:
        raise RuntimeError(f"POST /trigger/burst/poll answered {status}: {body}")
    return Burst(
        where="parent_job_id = ?",
        args=(body["job_id"],),
        submit_seconds=time.perf_counter() - started,
    )


#: Workload name -> how it makes its burst, and the config it needs.
WORKLOADS: dict[str, tuple[Callable[[servers.Daemon, int], Burst], dict[str, Any]]] = {
    "batch": (submit_batch, {}),
    "fanout": (submit_fanout, FANOUT_CONFIG),
}


def wait_done(d: servers.Daemon, burst: Burst, count: int, timeout: float) -> None:
    """Wait until the burst's ``count`` jobs all exist and have ended.

    Reads the store, so the waiting costs the daemon nothing; and counts ended jobs
    rather than pending ones, since a fan-out's jobs appear only once the emitting
    job has been routed.
    """
    deadline = time.monotonic() + timeout
    terminal = "('succeeded', 'failed', 'timed_out', 'cancelled', 'dead')"
    sql = f"SELECT COUNT(*) FROM jobs WHERE {burst.where} AND status IN {terminal}"
    with d.store() as db:
        while True:
            (done,) = db.execute(sql, burst.args).fetchone()
            if done >= count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {count} jobs ended within {timeout:g}s")
            time.sleep(0.02)


def run_workload(
    name: str,
    submit: Callable[[servers.Daemon, int], Burst],
    extra: dict[str, Any],
    *,
    count: int,
    parallel: int,
    bound: float | None,
    timeout: float,
) -> list[report.Figure]:
    """Start a daemon, warm it up, run one burst to the end, and read the store."""
    with servers.daemon(max_workers=parallel, extra=extra) as d:
        warm = min(count, 2 * parallel)
        wait_done(d, submit(d, warm), warm, timeout)
        cpu_before = servers.cpu_seconds(d.pid)
        burst = submit(d, count)
        wait_done(d, burst, count, timeout)
        cpu = servers.cpu_seconds(d.pid) - cpu_before
        with d.store() as db:
            rows = db.execute(
                "SELECT status, COUNT(*), MIN(completed_at), MAX(completed_at) FROM jobs"
                f" WHERE {burst.where} GROUP BY status",
                burst.args,
            ).fetchall()
    by_status = {status: (n, first, last) for status, n, first, last in rows}
    succeeded, first, last = by_status.pop("succeeded", (0, None, None))
    if by_status or succeeded != count or first is None or last is None:
        raise RuntimeError(f"not every job succeeded: {rows}")
    rate = (count - 1) / (last - first) if last > first else float("nan")
    store = servers.store_statistics(d.final_log)
    busy: list[report.Figure] = []
    if store is not None and store.transactions:
        jobs = count + warm
        per_job = store.busy / jobs
        busy.append(
            report.Figure(
                name=f"dispatch ({name}): JobStore time per job",
                value=per_job * 1000,
                unit="ms",
                note=(
                    f"{store.transactions / jobs:.2f} transactions per job,"
                    f" {store.busy / store.transactions * 1000:.2f} ms each;"
                    f" busy {100 * per_job * rate:.0f}% of the time at this rate"
                ),
            )
        )
    return [
        report.Figure(
            name=f"dispatch ({name}): first to last completion",
            value=rate,
            unit="jobs/s",
            limit_name=f"spawn bound N={parallel}",
            limit=bound,
            target=">= 0.6",
            note=f"{count} jobs, max_workers {parallel}",
        ),
        report.Figure(
            name=f"dispatch ({name}): daemon CPU per job",
            value=cpu / count * 1000,
            unit="ms",
            note="the gateway's own cost per job",
        ),
        report.Figure(
            name=f"dispatch ({name}): submitting the burst",
            value=burst.submit_seconds * 1000,
            unit="ms",
            note=f"{count} jobs, 202 after the commit",
        ),
        *busy,
    ]


def measure(
    count: int, parallel: int, bound: float | None, *, timeout: float = 600
) -> list[report.Figure]:
    """Every workload's figures."""
    figures: list[report.Figure] = []
    for name, (submit, extra) in WORKLOADS.items():
        figures += run_workload(
            name,
            submit,
            extra,
            count=count,
            parallel=parallel,
            bound=bound,
            timeout=timeout,
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    """Measure core dispatch, and the spawn bound it is compared to."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in the burst")
    parser.add_argument("--parallel", type=int, default=4, help="service.max_workers (and N)")
    parser.add_argument(
        "--spawn-bound", type=float, help="jobs/s at the same N (default: measure it now)"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    count = 20 if args.quick else args.jobs
    report.header(f"core dispatch ({count} jobs, {args.parallel} in parallel)")
    figures: list[report.Figure] = []
    bound = args.spawn_bound
    if bound is None:
        spawn = spawn_bound.measure([args.parallel], 20 if args.quick else 2000, quick=args.quick)
        figures += spawn[:1]
        bound = spawn[0].value
    figures += measure(count, args.parallel, bound, timeout=60 if args.quick else 600)
    report.show(figures)
    report.save(args.json, "core dispatch", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
