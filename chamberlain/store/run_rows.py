"""SQL for runs (migration 0016): which jobs make up each pipeline invocation.

Synchronous, on the JobStore's connection.  A run's row is made with the first job
of it that is stored (in that job's transaction); its jobs carry its id in
``jobs.run_id``, the control block's ``pipeline_instance_id``.  What a run *is*
(its steps, its status) is worked out from those jobs by
:mod:`chamberlain.runs`; this module only finds them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from chamberlain.plugins.envelope import control
from chamberlain.records import NewJob
from chamberlain.runs import JobMark, PipelineRun, RunStatus

#: What a run's view reads of each of its jobs.
_MARKS = "id, step_id, status, routed, created_at, started_at, completed_at"


def run_of(job: NewJob) -> str | None:
    """The run a new job is a step of: its control block's instance, for a pipeline's
    step (None for any other job)."""
    if job.pipeline is None:
        return None
    instance = control(job.context).get("pipeline_instance_id")
    return instance if isinstance(instance, str) and instance else None


def ensure(conn: sqlite3.Connection, run_id: str, pipeline: str, *, now: float) -> None:
    """Make the row of a run whose first job is being stored (nothing if it exists)."""
    conn.execute(
        "INSERT INTO runs (id, pipeline, created_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
        (run_id, pipeline, now),
    )


def _marks(rows: Sequence[Any]) -> tuple[JobMark, ...]:
    return tuple(
        JobMark(
            job_id=row[0],
            step_id=row[1],
            status=row[2],
            routed=bool(row[3]),
            created_at=row[4],
            started_at=row[5],
            completed_at=row[6],
        )
        for row in rows
    )


def get(conn: sqlite3.Connection, run_id: str) -> PipelineRun | None:
    """A run with its jobs in creation order; None if unknown."""
    row = conn.execute("SELECT pipeline, created_at FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    jobs = conn.execute(
        f"SELECT {_MARKS} FROM jobs WHERE run_id = ? ORDER BY seq", (run_id,)
    ).fetchall()
    return PipelineRun(run_id=run_id, pipeline=row[0], created_at=row[1], jobs=_marks(jobs))


def page(
    conn: sqlite3.Connection,
    *,
    pipeline: str | None,
    statuses: Collection[RunStatus],
    limit: int,
    offset: int,
) -> tuple[list[PipelineRun], int]:
    """The runs (of ``pipeline``, in ``statuses``, when given), the newest first, from
    ``offset``, at most ``limit``; and how many match in all.

    A run's status is worked out from its jobs, so the filter reads every run of
    the pipeline with its jobs (as many as ``service.job_retention`` keeps).
    """
    where, args = ("WHERE runs.pipeline = ?", (pipeline,)) if pipeline is not None else ("", ())
    rows = conn.execute(
        f"SELECT id, pipeline, created_at FROM runs {where} ORDER BY created_at DESC, id",
        args,
    ).fetchall()
    jobs: dict[str, list[Any]] = {}
    marks = ", ".join(f"jobs.{column.strip()}" for column in _MARKS.split(","))
    for row in conn.execute(
        f"SELECT jobs.run_id, {marks} FROM jobs JOIN runs ON runs.id = jobs.run_id {where}"
        " ORDER BY jobs.seq",
        args,
    ):
        jobs.setdefault(row[0], []).append(row[1:])
    runs = [
        PipelineRun(
            run_id=row[0], pipeline=row[1], created_at=row[2], jobs=_marks(jobs.get(row[0], []))
        )
        for row in rows
    ]
    if statuses:
        runs = [run for run in runs if run.status in statuses]
    return runs[offset : offset + limit], len(runs)


def forget_empty(conn: sqlite3.Connection) -> None:
    """Forget the runs whose every job has been pruned."""
    conn.execute(
        "DELETE FROM runs WHERE id NOT IN (SELECT run_id FROM jobs WHERE run_id IS NOT NULL)"
    )
