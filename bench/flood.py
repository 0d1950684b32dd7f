"""End to end under a trigger flood: every triggered job run, and who waits meanwhile.

The trigger path (figure 3) and core dispatch (figure 4) are each measured with the
other out of the way.  A real flood has both at once, on the same CPUs: wrk keeps
the floor's 16 connections busy on ``POST /trigger/trivial/poll`` while the runners
work through the queue it builds.  Three questions, one figure (or two) each:

- **end to end**: how fast the flood's jobs are *done*, from its first request to
  the last completion, compared with the spawn bound of the same plugin at the same
  parallelism (measured in the same run): the flood cannot be served faster than its
  jobs can be spawned, and a gateway that starves its runners to answer HTTP shows
  up here;
- **fairness**: the runners' rate while the flood lasts, compared with their rate on
  a ``POST /jobs`` batch of the same daemon with no HTTP load; below one half, the
  HTTP side takes what the runners need;
- **readers**: ``GET /job/{id}`` answered meanwhile, one request at a time from a
  second client, as a person checking a job would see it (p50, p99).

The plugin is bench/plugins/trivial (one ``read``, one ``printf``): the cheapest
job, so the gateway's share is as large as it can be.

    python bench/flood.py [--seconds 5] [--parallel 4] [--spawn-bound JOBS_PER_S]
"""

from __future__ import annotations

import argparse
import http.client
import math
import sys
import threading
import time
import urllib.parse
from typing import Any

import core_dispatch
import floor_app
import report
import servers
import spawn_bound
import tools
import trigger_path

URL_PATH = "/trigger/trivial/poll"
PLUGIN_ROOTS = (tools.REPO / "plugins", tools.BENCH / "plugins")
#: Seconds between the starts of two probe requests: a reader, not a second load.
PROBE_INTERVAL = 0.01


def config(parallel: int) -> dict[str, Any]:
    """What the daemon needs on top of the defaults: the trivial plugin, N slots."""
    return {"plugins": {"trivial": {"parallelism": parallel}}}


def submit_batch(d: servers.Daemon, count: int) -> list[str]:
    """``POST /jobs`` with ``count`` trivial jobs (1,000 per request); their ids."""
    ids: list[str] = []
    for first in range(0, count, 1000):
        size = min(1000, count - first)
        jobs = [
            {"plugin": "trivial", "command": "poll", "payload": {"n": first + i}}
            for i in range(size)
        ]
        status, body = d.post("/jobs", {"jobs": jobs})
        if status != 202:
            raise RuntimeError(f"POST /jobs answered {status}: {body}")
        ids.extend(job["job_id"] for job in body["jobs"])
    return ids


def wait_ids(d: servers.Daemon, ids: list[str], timeout: float) -> None:
    """Wait until the jobs ``ids`` have all ended (core_dispatch's store reader)."""
    burst = core_dispatch.Burst(
        where=f"id IN ({','.join('?' * len(ids))})", args=tuple(ids), submit_seconds=0.0
    )
    core_dispatch.wait_done(d, burst, len(ids), timeout)


def last_seq(d: servers.Daemon) -> int:
    """The newest job's sequence number (0 in an empty store)."""
    with d.store() as db:
        (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()
    return int(seq)


def wait_drained(d: servers.Daemon, seq: int, at_least: int, timeout: float) -> int:
    """Wait until every job stored after sequence number ``seq`` has ended, and there
    are at least ``at_least`` of them; how many there are then.

    Counts again as it goes rather than waiting for a number fixed up front: requests
    wrk cut off as it stopped may still be committed after it has exited.  Those
    commits take milliseconds, the queue they join takes longer to drain, so by the
    time nothing is pending they are all there.
    """
    deadline = time.monotonic() + timeout
    sql = (
        "SELECT COUNT(*), COALESCE(SUM(status IN ('queued', 'running')), 0) FROM jobs WHERE seq > ?"
    )
    with d.store() as db:
        while True:
            total, pending = db.execute(sql, (seq,)).fetchone()
            if total >= at_least and not pending:
                return int(total)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{pending} of {total} jobs still pending after {timeout:g}s")
            time.sleep(0.02)


def all_succeeded(d: servers.Daemon, where: str, args: tuple[Any, ...]) -> tuple[int, float, float]:
    """(count, first completion, last completion) of the selected jobs; raises unless
    every one of them succeeded."""
    with d.store() as db:
        rows = db.execute(
            "SELECT status, COUNT(*), MIN(completed_at), MAX(completed_at) FROM jobs"
            f" WHERE {where} GROUP BY status",
            args,
        ).fetchall()
    by_status = {status: (n, first, last) for status, n, first, last in rows}
    succeeded, first, last = by_status.pop("succeeded", (0, None, None))
    if by_status or not succeeded or first is None or last is None:
        raise RuntimeError(f"not every job succeeded: {rows}\n{d.tail()}")
    return int(succeeded), float(first), float(last)


class Prober(threading.Thread):
    """``GET /job/{id}`` over one keep-alive connection, one request at a time, until
    stopped; each latency in seconds.  Any answer but 200 is a failure, kept for the
    caller to raise: a benchmark thread that raised would go unnoticed."""

    def __init__(self, base: str, ids: list[str], headers: dict[str, str]) -> None:
        super().__init__(name="get-job-probe", daemon=True)
        parsed = urllib.parse.urlsplit(base)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.paths = [f"/job/{job_id}" for job_id in ids]
        self.headers = headers
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        """Probe until :meth:`stop`; see the class docs."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        i = 0
        try:
            while not self.stopping.is_set():
                path = self.paths[i % len(self.paths)]
                i += 1
                started = time.perf_counter()
                try:
                    conn.request("GET", path, headers=self.headers)
                    answer = conn.getresponse()
                    answer.read()
                except (OSError, http.client.HTTPException) as exc:
                    self.failures.append(f"GET {path}: {exc!r}")
                    conn.close()
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                    continue
                self.latencies.append(time.perf_counter() - started)
                if answer.status != 200:
                    self.failures.append(f"GET {path} answered {answer.status}")
                self.stopping.wait(max(0.0, started + PROBE_INTERVAL - time.perf_counter()))
        finally:
            conn.close()

    def stop(self) -> None:
        """Ask the probe to end, and wait until it has."""
        self.stopping.set()
        self.join()


def flood(d: servers.Process, seconds: float) -> tools.LoadResult:
    """wrk at the floor's concurrency on the trivial trigger; raises on a bad answer."""
    result = tools.wrk(
        d.url + URL_PATH,
        method="POST",
        token=servers.API_KEY,
        body=floor_app.BODY,
        connections=floor_app.CONNECTIONS,
        seconds=seconds,
    )
    if result.errors or result.bad_status:
        raise RuntimeError(f"the server answered badly: {result}\n{d.tail()}")
    return result


def floor_reads(seconds: float) -> list[float]:
    """GET latencies of the bare framework app under the same flood: the reads' floor.

    Under wrk's 16 busy connections a GET waits for its turn on the event loop
    whatever it reads; the bare app shows how long that turn is without a store.
    """
    with servers.floor() as server:
        warm = Prober(server.url, ["warm"], {})
        warm.start()
        try:
            flood(server, 1)
        finally:
            warm.stop()
        probe = Prober(server.url, ["floor"], {})
        probe.start()
        try:
            flood(server, seconds)
        finally:
            probe.stop()
    if probe.failures:
        raise RuntimeError(f"GET on the framework floor failed: {probe.failures[:5]}")
    return probe.latencies


def measure(
    seconds: float,
    parallel: int,
    bound: float | None,
    *,
    batch: int = 1000,
    quick: bool = False,
    timeout: float = 600,
) -> list[report.Figure]:
    """The flood's figures; none, with a SKIPPED line, without wrk.

    ``bound`` is the trivial plugin's spawn bound at ``parallel``; ``batch`` the
    size of the no-load ``POST /jobs`` burst the runners are compared with.
    """
    if tools.find("wrk") is None:
        report.skipped("trigger flood", tools.missing("wrk"))
        return []
    warm = 20 if quick else 200
    with servers.daemon(
        max_workers=parallel, plugin_roots=PLUGIN_ROOTS, extra=config(parallel)
    ) as d:
        # Warm-up: the first jobs, GETs and triggers import what the web stack and the
        # runner load on first use.  The warm-up jobs are the ones the probe reads.
        known = submit_batch(d, warm)
        wait_ids(d, known, timeout)
        for job_id in known[:10]:
            d.get(f"/job/{job_id}")
        if not quick:
            seq = last_seq(d)
            warm_up = flood(d, 1)
            wait_drained(d, seq, warm_up.requests, timeout)

        # The runners with no HTTP load: one batch, first to last completion.
        ids = submit_batch(d, batch)
        wait_ids(d, ids, timeout)
        where = f"id IN ({','.join('?' * len(ids))})"
        done, first, last = all_succeeded(d, where, tuple(ids))
        if done != batch:
            raise RuntimeError(f"{done} of {batch} batch jobs succeeded")
        unloaded = (batch - 1) / (last - first) if last > first else math.nan
        # Every job so far has ended (waited for above): what follows is the flood's.
        settle = last_seq(d)

        # The flood, with the probe reading jobs meanwhile.
        probe = Prober(d.url, known, d.headers())
        probe.start()
        started = time.time()
        try:
            result = flood(d, seconds)
        finally:
            ended = time.time()
            probe.stop()
        if probe.failures:
            raise RuntimeError(f"GET /job failed during the flood: {probe.failures[:5]}")
        made = wait_drained(d, settle, result.requests, timeout)
        trigger_path.check_committed(made, result.requests, 0)
        jobs, _, finished = all_succeeded(d, "seq > ?", (settle,))
        with d.store() as db:
            (during,) = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE seq > ? AND completed_at BETWEEN ? AND ?",
                (settle, started, ended),
            ).fetchone()
    window = ended - started
    runners = during / window
    floor_p99 = report.percentile(floor_reads(seconds), 99) * 1000
    return [
        report.Figure(
            name="flood: triggers accepted",
            value=result.rate,
            unit="req/s",
            note=f"{result.requests} 202s in {result.seconds:.1f} s, every one committed",
        ),
        report.Figure(
            name="flood: end to end",
            value=jobs / (finished - started),
            unit="jobs/s",
            limit_name=f"trivial spawn bound N={parallel}",
            limit=bound,
            target=">= 0.5",
            note=(
                f"{jobs} jobs, first request to last completion;"
                f" the last done {finished - ended:.1f} s after the flood"
            ),
        ),
        report.Figure(
            name="flood: runners with no HTTP load",
            value=unloaded,
            unit="jobs/s",
            limit_name=f"trivial spawn bound N={parallel}",
            limit=bound,
            note=f"a POST /jobs batch of {batch}, first to last completion",
        ),
        report.Figure(
            name="flood: runners during the flood",
            value=runners,
            unit="jobs/s",
            limit_name="runners with no HTTP load",
            limit=unloaded,
            target=">= 0.5",
            note=f"{during} jobs done within the {window:.1f} s of wrk; the ratio is the fairness",
        ),
        report.Figure(
            name="flood: GET /job p50",
            value=report.percentile(probe.latencies, 50) * 1000,
            unit="ms",
            note=f"{len(probe.latencies)} GETs, one at a time, during the flood",
        ),
        report.Figure(
            name="flood: GET /job p99",
            value=report.percentile(probe.latencies, 99) * 1000,
            unit="ms",
            limit_name="the bare framework's GET p99 under the same flood",
            limit=floor_p99,
            target="< 10 ms",
        ),
        report.Figure(
            name="flood: framework floor GET p99",
            value=floor_p99,
            unit="ms",
            note="bench/floor_app.py under the same wrk flood: a GET's turn on the event loop",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """Measure the flood, and the trivial plugin's spawn bound it is compared to."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the flood")
    parser.add_argument("--parallel", type=int, default=4, help="service.max_workers (and N)")
    parser.add_argument("--batch", type=int, default=1000, help="jobs in the no-load batch")
    parser.add_argument(
        "--spawn-bound",
        type=float,
        help="the trivial plugin's jobs/s at the same N (default: measure it now)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    seconds = 1.0 if args.quick else args.seconds
    batch = 50 if args.quick else args.batch
    report.header(
        f"trigger flood (wrk, {floor_app.CONNECTIONS} connections, {seconds:g} s,"
        f" {args.parallel} in parallel)"
    )
    figures: list[report.Figure] = []
    bound = args.spawn_bound
    if bound is None:
        spawn = spawn_bound.measure(
            [args.parallel],
            20 if args.quick else 2000,
            quick=args.quick,
            plugin=spawn_bound.plugin_at(spawn_bound.TRIVIAL),
        )
        figures += spawn[:1]
        bound = spawn[0].value
    figures += measure(
        seconds,
        args.parallel,
        bound,
        batch=batch,
        quick=args.quick,
        timeout=60 if args.quick else 600,
    )
    report.show(figures)
    report.save(args.json, "trigger flood", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
