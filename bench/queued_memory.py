"""Memory of a deep queue: what 100,000 queued jobs cost the daemon's RSS.

A job the API has accepted lives in the store, not in the daemon: a queue that
outgrows the runners (a flood, a plugin that is down) should cost disk, and next to
no memory.  Anything the daemon keeps per queued job (an index, a timer, a waiter)
shows up here as bytes per job.

The daemon is the trigger path's ingest-only one (trigger_path.HELD): echo's only
slot is held by a job that hangs, so every job submitted after it stays queued.
RSS is read when idle (after a warm-up), then after 100,000 ``echo.poll`` jobs
have been submitted by ``POST /jobs`` in batches of 1,000, once the daemon counts
them all in its queue; the store is checked to hold every one of them queued.

    python bench/queued_memory.py [--jobs 100000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import report
import servers
import trigger_path

#: Jobs submitted before the idle reading, so the first use of the batch route (its
#: imports, its caches) is not charged to the queue.
WARM = 1000
BATCH = 1000
#: The issue's target is for this many jobs; a smaller run reports without it.
TARGET_JOBS = 100_000


def peak_rss_bytes(pid: int) -> int:
    """The most RSS process ``pid`` has held so far, in bytes (VmHWM, from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def submit(d: servers.Daemon, count: int, first: int = 0) -> None:
    """``POST /jobs`` with ``count`` echo/poll jobs, ``BATCH`` per request."""
    for start in range(first, first + count, BATCH):
        size = min(BATCH, first + count - start)
        jobs = [
            {"plugin": "echo", "command": "poll", "payload": {"n": start + i}} for i in range(size)
        ]
        status, body = d.post("/jobs", {"jobs": jobs})
        if status != 202:
            raise RuntimeError(f"POST /jobs answered {status}: {body}")


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 60) -> None:
    """Poll ``condition()`` until it is true; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout:g}s")
        time.sleep(0.02)


def measure(count: int) -> list[report.Figure]:
    """RSS over idle with ``count`` jobs queued, and per job."""
    with servers.daemon(extra=trigger_path.HELD) as d:
        status, held = d.post("/trigger/echo/handle", {"payload": {"mode": "hang"}})
        if status != 202:
            raise RuntimeError(f"could not start the job that holds the slot: {status}")

        def holding() -> bool:
            with d.store() as db:
                row = db.execute("SELECT status FROM jobs WHERE id = ?", (held["job_id"],))
                return bool(row.fetchone() == ("running",))

        wait_for("the hanging job did not start", holding)
        submit(d, WARM)
        wait_for("the warm-up jobs were not all queued", lambda: queue_depth(d) == WARM)
        idle = servers.rss_bytes(d.pid)
        started = time.perf_counter()
        submit(d, count, first=WARM)
        submitted = time.perf_counter() - started
        # Every 202 came after its commit, so the jobs are all stored; the daemon's own
        # count of its queue (one more round trip through it) is read before RSS, so
        # what the last answer left behind it (the dispatcher's wake-up) is done too.
        wait_for(
            "the daemon did not count every job in its queue",
            lambda: queue_depth(d) == WARM + count,
        )
        loaded = servers.rss_bytes(d.pid)
        peak = peak_rss_bytes(d.pid)
        rows, queued = trigger_path.stored_jobs(d)
    if queued != WARM + count or rows != WARM + count + 1:
        raise RuntimeError(f"{queued} of {WARM + count} jobs queued, {rows} stored")
    grown = loaded - idle
    return [
        report.Figure(name="queued: RSS when idle", value=idle / 1e6, unit="MB"),
        report.Figure(
            name=f"queued: RSS over idle for {count:,} jobs",
            value=grown / 1e6,
            unit="MB",
            target="< 40 MB" if count >= TARGET_JOBS else None,
            note=f"{loaded / 1e6:.0f} MB with them queued, peak {peak / 1e6:.0f} MB",
        ),
        report.Figure(
            name="queued: RSS per queued job",
            value=grown / count,
            unit="bytes",
            note=f"{count} jobs checked queued in the store",
        ),
        report.Figure(
            name="queued: submitting",
            value=count / submitted,
            unit="jobs/s",
            note=f"POST /jobs, {BATCH} per request",
        ),
    ]


def queue_depth(d: servers.Daemon) -> int:
    """The queue depth the daemon reports (``GET /healthz``)."""
    return int(d.get("/healthz")["queue_depth"])


def main(argv: list[str] | None = None) -> int:
    """Measure the memory of a deep queue."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run with 2,000 jobs")
    parser.add_argument("--jobs", type=int, default=TARGET_JOBS, help="how many jobs to queue")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    count = 2000 if args.quick else args.jobs
    report.header(f"queued memory ({count:,} jobs behind a held slot)")
    figures = measure(count)
    report.show(figures)
    report.save(args.json, "queued memory", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
