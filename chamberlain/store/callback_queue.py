"""SQL for callbacks (migration 0003): the URLs jobs asked for, and their deliveries.

A delivery is inserted in the transaction that ends its job, so it exists before
the first attempt and survives any crash after the job's end is recorded; each
attempt then updates the row.  Synchronous, JobStore connection only.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from chamberlain.callback_rules import CallbackDelivery, CallbackState, delivery_body, event_name
from chamberlain.records import Job, NewJob

_COLUMNS = (
    "id, job_id, url, event, body, state, attempts, next_attempt_at, last_status_code,"
    " last_error, created_at, delivered_at"
)


def _delivery(row: Sequence[Any]) -> CallbackDelivery:
    return CallbackDelivery(
        id=row[0],
        job_id=row[1],
        url=row[2],
        event=row[3],
        body=row[4].encode("utf-8"),
        state=CallbackState(row[5]),
        attempts=row[6],
        next_attempt_at=row[7],
        last_status_code=row[8],
        last_error=row[9],
        created_at=row[10],
        delivered_at=row[11],
    )


def register_callbacks(conn: sqlite3.Connection, created: Iterable[tuple[NewJob, bool]]) -> None:
    """Remember the callback URL of each newly created job that has one.

    ``created`` pairs each requested job with whether it was a duplicate; a
    duplicate answered with an existing job registers nothing.
    """
    rows = [
        (new.id, new.callback_url)
        for new, duplicate in created
        if new.callback_url is not None and not duplicate
    ]
    if rows:
        conn.executemany("INSERT INTO job_callbacks (job_id, url) VALUES (?, ?)", rows)


def callback_url(conn: sqlite3.Connection, job_id: str) -> str | None:
    """The callback URL a job was triggered with, if any."""
    row = conn.execute("SELECT url FROM job_callbacks WHERE job_id = ?", (job_id,)).fetchone()
    return None if row is None else str(row[0])


def create_deliveries(conn: sqlite3.Connection, ended: Sequence[Job], *, now: float) -> int:
    """Record one pending delivery for each ended job that asked for a callback."""
    if not ended:
        return 0
    by_id = {job.id: job for job in ended}
    marks = ",".join("?" * len(by_id))
    rows = conn.execute(
        f"SELECT job_id, url FROM job_callbacks WHERE job_id IN ({marks})", tuple(by_id)
    ).fetchall()
    for job_id, url in rows:
        job = by_id[job_id]
        conn.execute(
            f"INSERT INTO callback_deliveries ({_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, NULL, NULL, ?, NULL)",
            (
                str(uuid.uuid4()),
                job.id,
                url,
                event_name(job),
                delivery_body(job).decode("utf-8"),
                now,
                now,
            ),
        )
    return len(rows)


def due_deliveries(
    conn: sqlite3.Connection, *, now: float, limit: int, busy: Collection[str] = ()
) -> tuple[list[CallbackDelivery], float | None]:
    """Pending deliveries due by ``now`` (not in ``busy``), and the next due instant."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM callback_deliveries"
        " WHERE state = 'pending' AND next_attempt_at <= ?"
        " ORDER BY next_attempt_at, created_at LIMIT ?",
        (now, limit + len(busy)),
    ).fetchall()
    due = [_delivery(r) for r in rows if r[0] not in busy][:limit]
    (next_due,) = conn.execute(
        "SELECT MIN(next_attempt_at) FROM callback_deliveries"
        " WHERE state = 'pending' AND next_attempt_at > ?",
        (now,),
    ).fetchone()
    return due, next_due


def record_attempt(
    conn: sqlite3.Connection,
    delivery_id: str,
    *,
    state: CallbackState,
    next_attempt_at: float | None,
    status_code: int | None,
    error: str | None,
    now: float,
) -> CallbackDelivery | None:
    """Count one attempt of a delivery and store its outcome."""
    row = conn.execute(
        "UPDATE callback_deliveries SET attempts = attempts + 1, state = ?,"
        " next_attempt_at = ?, last_status_code = ?, last_error = ?,"
        " delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END"
        f" WHERE id = ? AND state = 'pending' RETURNING {_COLUMNS}",
        (
            state.value,
            next_attempt_at,
            status_code,
            error,
            state.value,
            now,
            delivery_id,
        ),
    ).fetchone()
    return None if row is None else _delivery(row)


def job_deliveries(conn: sqlite3.Connection, job_id: str) -> list[CallbackDelivery]:
    """Every delivery of a job's callback, oldest first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM callback_deliveries WHERE job_id = ? ORDER BY created_at",
        (job_id,),
    ).fetchall()
    return [_delivery(r) for r in rows]
