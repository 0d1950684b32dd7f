"""Scheduler: how late scheduled runs start, and what waiting for them costs.

Two measurements on the real daemon, each with 50 schedules on the echo plugin:

- **lateness**: 50 schedules fire together every ``--every`` (1 s by default) for
  ``--seconds``.  For every run, read back from the store: *enqueue lateness*
  (``created_at`` minus the instant it was scheduled for: the Scheduler's own
  delay, wake-up to commit) and *start lateness* (``started_at`` minus that
  instant: adds the dispatch and the wait for a free worker, since all 50 are due
  at once).  p50, p99 and the maximum of each.
- **idle**: 50 schedules that will not fire during the window (yearly cron
  expressions); CPU% of the daemon from ``/proc/<pid>/stat`` (utime + stime),
  RSS, and context switches of the event loop's thread per second: the Scheduler
  sleeps until the next due instant (re-reading the wall clock at most every
  30 s), so this is close to 0.

    python bench/scheduler_lateness.py [--schedules 50] [--every 1s] [--seconds 60]
                                       [--idle-seconds 60] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import report
import servers


def _instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def lateness(schedules: int, every: str, seconds: float) -> list[report.Figure]:
    """Enqueue and start lateness of ``schedules`` schedules firing together."""
    settings = {
        "schedules": [{"id": f"s{i:02d}", "every": every} for i in range(schedules)],
        # Runs held back by a busy plugin are not what this measures.
        "parallelism": os.cpu_count() or 4,
    }
    query = (
        "SELECT created_at, started_at, json_extract(context, '$.schedule.scheduled_for')"
        " FROM jobs WHERE submitted_by = 'scheduler' AND created_at >= ?"
    )
    workers = os.cpu_count() or 4
    with (
        tempfile.TemporaryDirectory(prefix="bench-sched-") as tmp,
        servers.daemon(Path(tmp), max_workers=workers, extra={"plugins": {"echo": settings}}) as d,
    ):
        started = time.time()
        time.sleep(seconds)
        with d.store() as db:
            rows = db.execute(query, (started,)).fetchall()
    enqueue = [created - _instant(nominal) for created, _, nominal in rows]
    start = [began - _instant(nominal) for _, began, nominal in rows if began is not None]
    runs = f"{len(rows)} runs of {schedules} schedules every {every}, {seconds:g} s"
    figures = []
    for name, samples in (("enqueue", enqueue), ("start", start)):
        for q in (50, 99):
            figures.append(
                report.Figure(
                    name=f"scheduler: {name} lateness p{q}",
                    value=1000 * report.percentile(samples, q),
                    unit="ms",
                    note=runs if (name, q) == ("enqueue", 50) else "",
                )
            )
        figures.append(
            report.Figure(
                name=f"scheduler: {name} lateness max",
                value=1000 * max(samples, default=float("nan")),
                unit="ms",
            )
        )
    return figures


def idle_cost(schedules: int, seconds: float) -> list[report.Figure]:
    """CPU, RSS and wake-ups of a daemon holding ``schedules`` schedules that are not due."""
    settings = {
        "schedules": [
            # Midnight on 1 January, in as many zones: armed, far away, never due now.
            {"id": f"y{i:02d}", "cron": "0 0 1 1 *", "timezone": zone}
            for i, zone in zip(range(schedules), _zones(schedules), strict=True)
        ]
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-sched-idle-") as tmp,
        servers.daemon(Path(tmp), extra={"plugins": {"echo": settings}}) as d,
    ):
        listed = d.get("/schedules")["schedules"]
        if len(listed) != schedules:
            raise RuntimeError(f"{len(listed)} schedules loaded, {schedules} expected")
        cpu0, switches0, t0 = (
            servers.cpu_seconds(d.pid),
            loop_switches(d.pid),
            time.monotonic(),
        )
        time.sleep(seconds)
        cpu1, switches1, t1 = (
            servers.cpu_seconds(d.pid),
            loop_switches(d.pid),
            time.monotonic(),
        )
        rss = servers.rss_bytes(d.pid)
    elapsed = t1 - t0
    return [
        report.Figure(
            name="scheduler idle: CPU",
            value=100 * (cpu1 - cpu0) / elapsed,
            unit="%",
            target="~0",
            note=f"{schedules} schedules, over {elapsed:.0f} s",
        ),
        report.Figure(name="scheduler idle: RSS", value=rss / 1e6, unit="MB"),
        report.Figure(
            name="scheduler idle: event-loop wake-ups",
            value=(switches1 - switches0) / elapsed,
            unit="/s",
        ),
    ]


def loop_switches(pid: int) -> int:
    """Context switches of the process's main thread, where trio's event loop runs.

    Worker threads (SQL) come and go, so summing over threads can even go down;
    the main thread's count is the number of times the loop woke up.
    """
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
            total += int(line.split()[1])
    return total


def _zones(count: int) -> list[str]:
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]
    return [zones[i % len(zones)] for i in range(count)]


def main(argv: list[str] | None = None) -> int:
    """Measure firing lateness and the idle cost of the Scheduler."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=50)
    parser.add_argument("--every", default="1s", help="the interval of the firing schedules")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long they fire")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="how long to watch idle")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    seconds = 3.0 if args.quick else args.seconds
    idle_seconds = 2.0 if args.quick else args.idle_seconds
    report.header(f"scheduler ({args.schedules} schedules)")
    figures = lateness(args.schedules, args.every, seconds)
    figures += idle_cost(args.schedules, idle_seconds)
    report.show(figures)
    report.save(args.json, "scheduler", figures, every=args.every, seconds=seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
