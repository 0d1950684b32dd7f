"""SQL for runs (migrations 0016, 0017): which jobs make up each pipeline invocation,
and what each run keeps of its steps besides (approvals, gates).

Synchronous, on the JobStore's connection.  A run's row is made with the first job
of it that is stored (in that job's transaction); its jobs carry its id in
``jobs.run_id``, the control block's ``pipeline_instance_id``.  What a run *is*
(its steps, its status) is worked out from those jobs by
:mod:`chamberlain.runs`; this module only finds them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from chamberlain.plugins.envelope import control
from chamberlain.records import NewJob
from chamberlain.runs import (
    Approval,
    GateKind,
    GateRecord,
    GateState,
    Hold,
    JobMark,
    PipelineRun,
    RunStatus,
    StepRecord,
    Verdict,
)

#: What a run's view reads of each of its jobs.
_MARKS = "id, step_id, status, routed, created_at, started_at, completed_at, held, superseded"
_RUNS = "id, pipeline, created_at, paused, cancelled_at"


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
            held=None if row[7] is None else Hold(row[7]),
            superseded=bool(row[8]),
        )
        for row in rows
    )


def gate_from_json(text: str | None) -> GateRecord | None:
    """A gate from its column (None: none)."""
    if text is None:
        return None
    raw = json.loads(text)
    return GateRecord(
        kind=GateKind(raw["kind"]),
        state=GateState(raw["state"]),
        job_id=raw["job_id"],
        at=raw["at"],
        check_job_id=raw.get("check_job_id"),
        sha=raw.get("sha"),
        notes=raw.get("notes", ""),
        signal=raw.get("signal"),
    )


def gate_json(gate: GateRecord) -> str:
    """A gate as its column holds it."""
    return json.dumps(
        {
            "kind": gate.kind.value,
            "state": gate.state.value,
            "job_id": gate.job_id,
            "at": gate.at,
            "check_job_id": gate.check_job_id,
            "sha": gate.sha,
            "notes": gate.notes,
            "signal": gate.signal,
        }
    )


def _approval(text: str | None) -> Approval | None:
    if text is None:
        return None
    raw = json.loads(text)
    return Approval(
        verdict=Verdict(raw["verdict"]),
        by=raw["by"],
        at=raw["at"],
        comment=raw.get("comment", ""),
        inputs=raw.get("inputs") or {},
    )


def approval_json(approval: Approval) -> str:
    """An approval as its column holds it."""
    return json.dumps(
        {
            "verdict": approval.verdict.value,
            "by": approval.by,
            "at": approval.at,
            "comment": approval.comment,
            "inputs": dict(approval.inputs),
        }
    )


def records(conn: sqlite3.Connection, run_ids: Collection[str]) -> dict[str, dict[str, StepRecord]]:
    """The step records of ``run_ids``, by run and step."""
    found: dict[str, dict[str, StepRecord]] = {}
    ids = list(run_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for row in conn.execute(
            "SELECT run_id, step_id, awaiting_since, timeout_at, approval, gate, changed_at"
            f" FROM run_steps WHERE run_id IN ({','.join('?' * len(chunk))})",
            chunk,
        ):
            found.setdefault(row[0], {})[row[1]] = StepRecord(
                step_id=row[1],
                awaiting_since=row[2],
                timeout_at=row[3],
                approval=_approval(row[4]),
                gate=gate_from_json(row[5]),
                changed_at=row[6],
            )
    return found


def _run(row: Sequence[Any], jobs: Sequence[Any], steps: dict[str, StepRecord]) -> PipelineRun:
    return PipelineRun(
        run_id=row[0],
        pipeline=row[1],
        created_at=row[2],
        paused=bool(row[3]),
        cancelled_at=row[4],
        jobs=_marks(jobs),
        records=steps,
    )


def get(conn: sqlite3.Connection, run_id: str) -> PipelineRun | None:
    """A run with its jobs in creation order and its steps' records; None if unknown."""
    row = conn.execute(f"SELECT {_RUNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    jobs = conn.execute(
        f"SELECT {_MARKS} FROM jobs WHERE run_id = ? ORDER BY seq", (run_id,)
    ).fetchall()
    return _run(row, jobs, records(conn, [run_id]).get(run_id, {}))


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
        f"SELECT {_RUNS} FROM runs {where} ORDER BY created_at DESC, id", args
    ).fetchall()
    jobs: dict[str, list[Any]] = {}
    marks = ", ".join(f"jobs.{column.strip()}" for column in _MARKS.split(","))
    for row in conn.execute(
        f"SELECT jobs.run_id, {marks} FROM jobs JOIN runs ON runs.id = jobs.run_id {where}"
        " ORDER BY jobs.seq",
        args,
    ):
        jobs.setdefault(row[0], []).append(row[1:])
    steps = records(conn, [row[0] for row in rows])
    runs = [_run(row, jobs.get(row[0], []), steps.get(row[0], {})) for row in rows]
    if statuses:
        runs = [run for run in runs if run.status in statuses]
    return runs[offset : offset + limit], len(runs)


def forget_empty(conn: sqlite3.Connection) -> None:
    """Forget the runs whose every job has been pruned."""
    conn.execute(
        "DELETE FROM runs WHERE id NOT IN (SELECT run_id FROM jobs WHERE run_id IS NOT NULL)"
    )
