"""SQL for loop jobs (migration 0013): their iterations, a stop asked for.

An iteration is saved whole each time the loop driver learns something about it
(started, a run failed, finished, its feedback in), with a system message saying
what happened, so a stream shows the loop as it goes and a crash loses at most
the run under way.  Every save is guarded by the job's attempt, as a settle is:
a superseded attempt (one recovered as an orphan meanwhile) writes nothing.  Like
:mod:`chamberlain.store.sqlite` it is synchronous and runs only on the JobStore's
connection, inside its transactions.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from chamberlain.records import FeedbackResult, Iteration, Job, JobStatus, MessageKind
from chamberlain.store.sqlite import SqliteStore

_COLUMNS = (
    "number, runs, failures, started_at, completed_at, exit_code, error, promise_detected,"
    " output_summary, feedback"
)


def _iteration(row: Sequence[Any]) -> Iteration:
    return Iteration(
        number=row[0],
        runs=row[1],
        failures=row[2],
        started_at=row[3],
        completed_at=row[4],
        exit_code=row[5],
        error=row[6],
        promise_detected=bool(row[7]),
        output_summary=row[8],
        feedback=tuple(FeedbackResult.from_json(item) for item in json.loads(row[9])),
    )


def save_iteration(
    conn: sqlite3.Connection,
    job_id: str,
    attempt: int,
    iteration: Iteration,
    *,
    note: str,
    now: float,
) -> bool | None:
    """Keep ``iteration`` of the job's running ``attempt``, with the system message ``note``.

    Answers whether a stop was asked for (the loop driver reads it after every
    save), or None, saving nothing, when that attempt is no longer the job's.
    """
    row = conn.execute(
        "SELECT loop_stop FROM jobs WHERE id = ? AND status = 'running' AND attempt = ?",
        (job_id, attempt),
    ).fetchone()
    if row is None:
        return None
    feedback = json.dumps([result.to_json() for result in iteration.feedback], ensure_ascii=False)
    conn.execute(
        f"INSERT INTO job_iterations (job_id, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (job_id, number) DO UPDATE SET runs = excluded.runs,"
        " failures = excluded.failures, started_at = excluded.started_at,"
        " completed_at = excluded.completed_at, exit_code = excluded.exit_code,"
        " error = excluded.error, promise_detected = excluded.promise_detected,"
        " output_summary = excluded.output_summary, feedback = excluded.feedback",
        (
            job_id,
            iteration.number,
            iteration.runs,
            iteration.failures,
            iteration.started_at,
            iteration.completed_at,
            iteration.exit_code,
            iteration.error,
            int(iteration.promise_detected),
            iteration.output_summary,
            feedback,
        ),
    )
    conn.execute(
        "INSERT INTO job_messages (job_id, seq, ts, kind, text) VALUES (?,"
        " (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_messages WHERE job_id = ?), ?, ?, ?)",
        (job_id, job_id, now, MessageKind.SYSTEM.value, note),
    )
    return bool(row[0])


def iterations(conn: sqlite3.Connection, job_id: str) -> list[Iteration]:
    """The job's iterations so far, in order (the last may be under way)."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM job_iterations WHERE job_id = ? ORDER BY number", (job_id,)
    ).fetchall()
    return [_iteration(row) for row in rows]


def request_stop(store: SqliteStore, job_id: str) -> Job | None:
    """Ask a loop job that is queued or running to stop after its current iteration.

    Answered with the job as it now stands (None when unknown); nothing changes for
    a job that is not a loop or has ended.
    """
    statuses = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
    store.conn.execute(
        "UPDATE jobs SET loop_stop = 1 WHERE id = ? AND loop IS NOT NULL AND status IN (?, ?)",
        (job_id, *statuses),
    )
    return store.get_job(job_id)
