"""SQL for the Scheduler's books (migration 0002): schedules and circuit breakers.

Like :mod:`chamberlain.store.sqlite`, synchronous and called only by the JobStore
actor, inside the transaction of the batch it is serving, on its connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from chamberlain.records import JobStatus
from chamberlain.schedule.books import (
    BreakerBook,
    BreakerKey,
    ScheduleBook,
    ScheduleKey,
    StoredSchedules,
)
from chamberlain.schedule.breaker import Breaker, BreakerState, Transition
from chamberlain.schedule.policy import Fire

#: SQLite's default limit on bound parameters is 999 in older builds.
_CHUNK = 400


def load(conn: sqlite3.Connection) -> StoredSchedules:
    """Every schedule's book and every breaker."""
    books = {
        (row["plugin"], row["id"]): ScheduleBook(
            plugin=row["plugin"],
            id=row["id"],
            spec=row["spec"],
            tracked_since=row["tracked_since"],
            last_fire_at=row["last_fire_at"],
            last_run_at=row["last_run_at"],
            last_job_id=row["last_job_id"],
            last_status=row["last_status"],
            last_skip_at=row["last_skip_at"],
            last_skip_reason=row["last_skip_reason"],
            owed=tuple(Fire(float(f["at"]), late=bool(f["late"])) for f in json.loads(row["owed"])),
        )
        for row in conn.execute("SELECT * FROM schedules")
    }
    breakers = {
        (row["plugin"], row["command"]): BreakerBook(
            plugin=row["plugin"],
            command=row["command"],
            breaker=Breaker(
                state=BreakerState(row["state"]),
                failures=row["failures"],
                opened_at=row["opened_at"],
                probe_job_id=row["probe_job_id"],
                transitions=tuple(_transition(t) for t in json.loads(row["transitions"])),
            ),
        )
        for row in conn.execute("SELECT * FROM circuit_breakers")
    }
    return StoredSchedules(books=books, breakers=breakers)


def save(
    conn: sqlite3.Connection,
    *,
    books: Iterable[ScheduleBook],
    breakers: Iterable[BreakerBook],
    forget: Iterable[ScheduleKey],
    forget_breakers: Iterable[BreakerKey],
    now: float,
) -> None:
    """Write books and breakers as they now stand; drop those no longer configured."""
    conn.executemany(
        "INSERT INTO schedules (plugin, id, spec, tracked_since, last_fire_at, last_run_at,"
        " last_job_id, last_status, last_skip_at, last_skip_reason, owed, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (plugin, id) DO UPDATE SET spec = excluded.spec,"
        " tracked_since = excluded.tracked_since, last_fire_at = excluded.last_fire_at,"
        " last_run_at = excluded.last_run_at, last_job_id = excluded.last_job_id,"
        " last_status = excluded.last_status, last_skip_at = excluded.last_skip_at,"
        " last_skip_reason = excluded.last_skip_reason, owed = excluded.owed,"
        " updated_at = excluded.updated_at",
        [
            (
                b.plugin,
                b.id,
                b.spec,
                b.tracked_since,
                b.last_fire_at,
                b.last_run_at,
                b.last_job_id,
                b.last_status,
                b.last_skip_at,
                b.last_skip_reason,
                json.dumps([{"at": f.nominal, "late": f.late} for f in b.owed]),
                now,
            )
            for b in books
        ],
    )
    conn.executemany(
        "INSERT INTO circuit_breakers (plugin, command, state, failures, opened_at,"
        " probe_job_id, transitions, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (plugin, command) DO UPDATE SET state = excluded.state,"
        " failures = excluded.failures, opened_at = excluded.opened_at,"
        " probe_job_id = excluded.probe_job_id, transitions = excluded.transitions,"
        " updated_at = excluded.updated_at",
        [
            (
                b.plugin,
                b.command,
                b.breaker.state.value,
                b.breaker.failures,
                b.breaker.opened_at,
                b.breaker.probe_job_id,
                json.dumps([_transition_json(t) for t in b.breaker.transitions]),
                now,
            )
            for b in breakers
        ],
    )
    conn.executemany("DELETE FROM schedules WHERE plugin = ? AND id = ?", list(forget))
    conn.executemany(
        "DELETE FROM circuit_breakers WHERE plugin = ? AND command = ?", list(forget_breakers)
    )


def outstanding(
    conn: sqlite3.Connection, keys: Sequence[ScheduleKey]
) -> dict[ScheduleKey, tuple[str, ...]]:
    """For each schedule, the ids of its queued and running jobs, oldest first."""
    found: dict[ScheduleKey, list[str]] = {key: [] for key in keys}
    for plugin, schedule_id in keys:
        for row in conn.execute(
            "SELECT id FROM jobs WHERE plugin = ? AND schedule_id = ?"
            " AND status IN ('queued', 'running') ORDER BY seq",
            (plugin, schedule_id),
        ):
            found[(plugin, schedule_id)].append(row["id"])
    return {key: tuple(ids) for key, ids in found.items()}


def statuses(conn: sqlite3.Connection, job_ids: Sequence[str]) -> dict[str, JobStatus]:
    """The current status of each job that still exists."""
    found: dict[str, JobStatus] = {}
    ids = list(dict.fromkeys(job_ids))
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(f"SELECT id, status FROM jobs WHERE id IN ({marks})", chunk):
            found[row["id"]] = JobStatus(row["status"])
    return found


def _transition_json(step: Transition) -> dict[str, Any]:
    return {
        "from": step.source.value,
        "to": step.target.value,
        "reason": step.reason,
        "at": step.at,
    }


def _transition(data: Mapping[str, Any]) -> Transition:
    return Transition(
        source=BreakerState(data["from"]),
        target=BreakerState(data["to"]),
        reason=data["reason"],
        at=data["at"],
    )
