"""Figure 7, store scale: reading jobs back with 1,000,000 of them in the store.

The store is built directly (bulk INSERTs into the real schema, created by the
daemon's own SqliteStore and its migrations), because a million HTTP calls would
measure the trigger path again, slowly.  The rows look like a month of real use:
mostly succeeded jobs carrying the echo plugin's full response, some failures,
two plugins, three submitters.  Then the daemon starts on that store and one
client reads, one request at a time (the latency a person paging sees):

- ``GET /jobs?limit=50`` (the target: summaries), also with ``detail=full``,
  filtered by status and by plugin, and the page halfway down twice: by
  ``offset`` and by the ``after`` cursor of the page before it;
- ``GET /job/{id}`` for random ids.

Bytes per job on disk are measured after the daemon stopped (WAL checkpointed).

Then a second, small store of jobs with large bodies (a 50 KB payload and a
50 KB result each, about what issue 14's 970 KB for 9 jobs were): the bytes and
latency of a 50-job page as a summary, with ``detail=full`` and with
``fields=status``, and the store's own read of those 50 jobs with their bodies and
without.

    python bench/store_scale.py [--jobs 1000000] [--requests 200] [--keep PATH]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paced
import report
import servers

from chamberlain.records import JobFilter
from chamberlain.store.sqlite import SqliteStore

#: Most recent first, like the API: the store holds about 20 days of jobs, inside the
#: default 30-day retention so that nothing is pruned under the measurement.
SPAN_SECONDS = 20 * 86400

STATUSES = ["succeeded"] * 90 + ["failed"] * 6 + ["dead"] * 3 + ["timed_out"]
SUBMITTERS = ["api_key", "token:ci", "token:laptop"]

#: Jobs of the large-body store (at most), and the size of each body (payload, result).
LARGE_JOBS = 1000
BODY_BYTES = 50_000


def _result(plugin: str, job_id: str) -> str:
    """A stored response about the size of the echo plugin's real one."""
    request = {
        "protocol": 2,
        "job_id": job_id,
        "command": "poll",
        "config": {},
        "state": {"last_command": "poll", "last_job_id": job_id},
        "context": {},
        "payload": {"k": "v"},
        "deadline_at": "2024-05-01T12:00:00.000Z",
    }
    return json.dumps(
        {
            "status": "ok",
            "result": {"message": plugin, "request": request},
            "error": None,
            "retry": True,
            "events": [{"type": f"{plugin}.poll", "payload": {"job_id": job_id}}],
            "state_updates": {"last_command": "poll", "last_job_id": job_id},
            "logs": [{"level": "info", "message": f"{plugin}: poll done"}],
        },
        separators=(",", ":"),
    )


def _rows(count: int, now: float) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(9)
    step = SPAN_SECONDS / count
    for i in range(count):
        job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        plugin = "echo" if rng.random() < 0.7 else "sys_exec"
        status = rng.choice(STATUSES)
        created = now - SPAN_SECONDS + i * step
        ok = status == "succeeded"
        yield (
            job_id,
            plugin,
            "poll",
            '{"k":"v"}',
            "{}",
            status,
            1 if ok else 4,
            4,
            rng.choice(SUBMITTERS),
            created,
            created + 0.01,
            created + 0.02,
            created,
            None if ok else f"{plugin}: asked to fail",
            _result(plugin, job_id) if ok else None,
        )


def build_store(path: Path, count: int) -> float:
    """Create the schema with SqliteStore, then bulk-insert ``count`` jobs; seconds taken."""
    started = time.perf_counter()
    SqliteStore(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        # Building a benchmark fixture: durability of the build itself is irrelevant.
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO jobs (id, plugin, command, payload, context, status, attempt,"
            " max_attempts, submitted_by, created_at, started_at, completed_at, run_at,"
            " last_error, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _rows(count, time.time()),
        )
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return time.perf_counter() - started


def _latency_figures(
    name: str, latencies: tuple[float, ...], target: str | None
) -> list[report.Figure]:
    return [
        report.Figure(
            name=f"{name} p50",
            value=report.percentile(latencies, 50) * 1000,
            unit="ms",
            target=target,
        ),
        report.Figure(name=f"{name} p99", value=report.percentile(latencies, 99) * 1000, unit="ms"),
    ]


def measure(count: int, requests: int, keep: Path | None = None) -> list[report.Figure]:
    """Build (or reuse) the store, then time the reads against the daemon on it."""
    figures: list[report.Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        path = keep or Path(tmp) / "state.db"
        if keep is not None and keep.exists():
            with sqlite3.connect(keep) as db:
                (existing,) = db.execute("SELECT COUNT(*) FROM jobs").fetchone()
            if existing != count:
                raise RuntimeError(f"{keep} holds {existing} jobs, not {count}; remove it first")
        else:
            took = build_store(path, count)
            figures.append(
                report.Figure(
                    name="store: building it", value=took, unit="s", note=f"{count:,} jobs"
                )
            )
        with sqlite3.connect(path) as db:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM jobs WHERE seq IN"
                    " (SELECT abs(random()) % ? + 1 FROM jobs LIMIT ?)",
                    (count, requests),
                )
            ]
        workdir = Path(tmp) / "daemon"
        workdir.mkdir()
        deep = count // 2
        with servers.daemon(workdir, state=path) as d:
            headers = d.headers()
            # The cursor a client paging there holds: the page before's ``next``.
            cursor = d.get(f"/jobs?limit=1&offset={deep - 1}&fields=job_id")["next"]
            for name, query, target in (
                ("GET /jobs?limit=50", "/jobs?limit=50", "< 20 ms"),
                ("GET /jobs?limit=50&detail=full", "/jobs?limit=50&detail=full", None),
                ("GET /jobs?limit=50&status=failed", "/jobs?limit=50&status=failed", None),
                ("GET /jobs?limit=50&plugin=sys_exec", "/jobs?limit=50&plugin=sys_exec", None),
                (f"GET /jobs?limit=50&offset={deep}", f"/jobs?limit=50&offset={deep}", None),
                (
                    f"GET /jobs?limit=50&after=<cursor at {deep}>",
                    f"/jobs?limit=50&after={cursor}",
                    None,
                ),
            ):
                paced.sequential(d.url, [query] * 3, headers=headers)  # warm caches
                latencies = paced.sequential(d.url, [query] * requests, headers=headers)
                figures += _latency_figures(name, latencies, target)
            latencies = paced.sequential(d.url, [f"/job/{i}" for i in ids], headers=headers)
            figures += _latency_figures("GET /job/{id}", latencies, None)
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
        figures.append(
            report.Figure(
                name="store: bytes per job on disk",
                value=size / count,
                unit="B",
                note=f"{size / 1e6:,.0f} MB for {count:,} jobs, indexes included",
            )
        )
        # A smoke run's 2,000 jobs make 100 large ones: enough for a page, and quick.
        large = min(LARGE_JOBS, max(50, count // 20))
        figures += measure_bodies(Path(tmp) / "large", large, requests)
    return figures


def build_large_store(path: Path, count: int) -> None:
    """A store of ``count`` succeeded jobs, each with a large payload and result."""
    SqliteStore(path).close()
    now = time.time()
    payload = json.dumps({"document": "p" * BODY_BYTES})
    result = json.dumps({"status": "ok", "result": {"report": "r" * BODY_BYTES}})
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")  # a fixture: its own durability is irrelevant
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO jobs (id, plugin, command, payload, context, status, attempt,"
            " max_attempts, submitted_by, created_at, started_at, completed_at, run_at,"
            " result) VALUES (?, 'echo', 'poll', ?, '{}', 'succeeded', 1, 4, 'api_key',"
            " ?, ?, ?, ?, ?)",
            (
                (str(uuid.uuid4()), payload, now - count + i, now, now, now, result)
                for i in range(count)
            ),
        )
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def _store_read(path: Path, flt: JobFilter, rounds: int) -> tuple[float, ...]:
    """Seconds each of ``rounds`` reads of ``flt`` takes in the store itself."""
    store = SqliteStore(path)
    try:
        store.list_jobs(flt)  # warm the page cache
        took = []
        for _ in range(rounds):
            started = time.perf_counter()
            store.list_jobs(flt)
            took.append(time.perf_counter() - started)
        return tuple(took)
    finally:
        store.close()


def measure_bodies(workdir: Path, count: int, requests: int) -> list[report.Figure]:
    """A 50-job page of jobs with large bodies: bytes and latency, summary vs full."""
    workdir.mkdir()
    path = workdir / "state.db"
    build_large_store(path, count)
    figures: list[report.Figure] = []
    for name, flt in (
        ("store: 50 large jobs read with bodies", JobFilter(limit=50)),
        ("store: 50 large jobs read without", JobFilter(limit=50, bodies=False)),
    ):
        figures += _latency_figures(name, _store_read(path, flt, requests), None)
    with servers.daemon(workdir, state=path) as d:
        headers = d.headers()
        for view, query in (
            ("summary", "/jobs?limit=50"),
            ("detail=full", "/jobs?limit=50&detail=full"),
            ("fields=status", "/jobs?limit=50&fields=status"),
        ):
            request = urllib.request.Request(d.url + query, headers=headers)
            with urllib.request.urlopen(request, timeout=60) as answer:
                size = len(answer.read())
            figures.append(
                report.Figure(
                    name=f"50 large jobs, {view}: bytes",
                    value=size / 1000,
                    unit="KB",
                    note=f"{BODY_BYTES // 1000} KB payload + {BODY_BYTES // 1000} KB result a job",
                )
            )
            paced.sequential(d.url, [query] * 3, headers=headers)  # warm caches
            latencies = paced.sequential(d.url, [query] * requests, headers=headers)
            figures += _latency_figures(f"50 large jobs, {view}", latencies, None)
    return figures


def main(argv: list[str] | None = None) -> int:
    """Measure reads at store scale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs in the store")
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement")
    parser.add_argument("--keep", type=Path, help="build the store here once and reuse it")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    count = 2000 if args.quick else args.jobs
    requests = 10 if args.quick else args.requests
    report.header(f"store scale ({count:,} jobs)")
    figures = measure(count, requests, args.keep)
    report.show(figures)
    report.save(args.json, "store scale", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
