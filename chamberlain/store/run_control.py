"""SQL for run control (migration 0017): holding and releasing a run's jobs, its
actions, approvals, checks, CI reports, approval timeouts, and its events log.

Synchronous, on the JobStore's connection, inside its transactions: every change
here is decided by :mod:`chamberlain.runs` on the run as this transaction reads
it, and committed with whatever else the transaction did, so two words racing
each other (a person's approval and its timeout, a cancel and a step's end) are
decided one after the other, each on what the other left.

A job that must not run yet is stored ``queued`` with ``held`` saying why and a
``run_at`` no claim reaches (:data:`HELD_RUN_AT`): it is on record, listed, and
cancellable like any queued job, and releasing it is one update.  Events are
job messages of kind ``run`` (:func:`chamberlain.store.job_messages.append_run_event`),
written once per transaction for what changed (:func:`refresh`), plus one per
action, approval, check verdict and CI report.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from chamberlain.records import Job, JobStatus, NewJob, RoutePlan, rfc3339
from chamberlain.routing.planner import Routing
from chamberlain.runs import (
    TIMEOUT_ACTOR,
    ActOutcome,
    Admission,
    Approval,
    CiMatch,
    CiSignal,
    CiState,
    EffectKind,
    GateKind,
    GateRecord,
    GateState,
    Hold,
    PipelineRun,
    Refused,
    RunAction,
    RunStatus,
    StepStatus,
    Unchanged,
    Verdict,
    admit,
    check_verdict,
    decide,
    decide_approval,
    next_gate,
)
from chamberlain.store import job_messages, run_rows

if TYPE_CHECKING:
    from chamberlain.store.sqlite import SqliteStore

__all__ = [
    "HELD_RUN_AT",
    "act",
    "admit_job",
    "approve",
    "ci_report",
    "next_timeout",
    "refresh",
    "route",
    "start_paused",
    "sweep_timeouts",
    "take_ended",
]

#: The ``run_at`` of a held job: later than any claim's "now", so none takes it.
HELD_RUN_AT: Final = 1e300


# -- events ---------------------------------------------------------------------------


def _first_job(conn: sqlite3.Connection, run_id: str) -> str | None:
    row = conn.execute(
        "SELECT id FROM jobs WHERE run_id = ? ORDER BY seq LIMIT 1", (run_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def record_event(
    conn: sqlite3.Connection,
    run_id: str,
    kind: str,
    text: str,
    *,
    actor: str,
    now: float,
    step_id: str | None = None,
    job_id: str | None = None,
    **detail: Any,
) -> None:
    """Add one event to a run's log, on ``job_id`` (the run's first job by default)."""
    on = job_id or _first_job(conn, run_id)
    if on is None:
        return
    event = {"run_id": run_id, "kind": kind, "actor": actor, "step_id": step_id, **detail}
    job_messages.append_run_event(conn, on, text, event, now=now)


def refresh(conn: sqlite3.Connection, run_ids: Collection[str], gates: Routing, now: float) -> None:
    """Record how each of ``run_ids`` and its steps changed since last recorded: one
    ``run.created`` for a new run, one ``step.status`` per step that moved, one
    ``run.status`` when the run did."""
    for run_id in sorted(run_ids):
        run = run_rows.get(conn, run_id)
        if run is None:
            continue
        row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        before: dict[str, Any] = json.loads(row[0]) if row and row[0] else {}
        steps = run.steps(gates.step_ids(run.pipeline))
        now_steps = {step.step_id: step.status.value for step in steps}
        status = run.status.value
        if not before:
            first = conn.execute(
                "SELECT submitted_by FROM jobs WHERE run_id = ? ORDER BY seq LIMIT 1", (run_id,)
            ).fetchone()
            by = str(first[0]) if first else "unknown"
            paused = " paused" if run.paused else ""
            record_event(
                conn,
                run_id,
                "run.created",
                f"run of {run.pipeline} started{paused} by {by}",
                actor=by,
                now=now,
                pipeline=run.pipeline,
                paused=run.paused,
            )
        was_steps: dict[str, str] = before.get("steps", {})
        for step in steps:
            was = was_steps.get(step.step_id, StepStatus.PENDING.value)
            if was == step.status.value:
                continue
            record_event(
                conn,
                run_id,
                "step.status",
                f"step {step.step_id}: {was} -> {step.status.value}",
                actor="chamberlain",
                now=now,
                step_id=step.step_id,
                job_id=step.job_ids[-1] if step.job_ids else None,
                before=was,
                after=step.status.value,
            )
        was_status = before.get("status", RunStatus.PENDING.value)
        if was_status != status:
            record_event(
                conn,
                run_id,
                "run.status",
                f"run: {was_status} -> {status}",
                actor="chamberlain",
                now=now,
                before=was_status,
                after=status,
            )
        conn.execute(
            "UPDATE runs SET status = ? WHERE id = ?",
            (json.dumps({"status": status, "steps": now_steps}), run_id),
        )


# -- holding and releasing --------------------------------------------------------------


def take_ended(store: SqliteStore) -> list[Job]:
    """The jobs run control ended without running them since the last call."""
    ended = [store.get_job(job_id) for job_id in store.ended_here]
    store.ended_here.clear()
    return [job for job in ended if job is not None]


def start_paused(conn: sqlite3.Connection, plan: RoutePlan, *, now: float) -> None:
    """Make the runs ``plan`` starts paused before their jobs are stored, so each is
    held as it comes."""
    for job in plan.jobs:
        run_id = run_rows.run_of(job)
        if run_id is not None:
            run_rows.ensure(conn, run_id, job.pipeline or "", now=now)
            conn.execute("UPDATE runs SET paused = 1 WHERE id = ?", (run_id,))


def _run_flags(conn: sqlite3.Connection, run_id: str) -> tuple[bool, bool]:
    row = conn.execute("SELECT paused, cancelled_at FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return False, False
    return bool(row[0]), row[1] is not None


def _approval_of(conn: sqlite3.Connection, run_id: str, step_id: str) -> Approval | None:
    steps = run_rows.records(conn, [run_id]).get(run_id, {})
    record = steps.get(step_id)
    return None if record is None else record.approval


def hold(conn: sqlite3.Connection, job_id: str, hold: Hold) -> None:
    """Hold the queued job ``job_id``, for ``hold``'s reason."""
    conn.execute(
        "UPDATE jobs SET held = ?, run_at = ? WHERE id = ? AND status = 'queued'",
        (hold.value, HELD_RUN_AT, job_id),
    )


def requeued(conn: sqlite3.Connection, job: Job) -> None:
    """A job of a run queued again by its settlement (a retry after its backoff, an
    orphan recovered after a crash): held if its run is paused, since no attempt of
    a paused run starts until it is resumed."""
    if job.run_id is not None and job.status is JobStatus.QUEUED:
        paused, _ = _run_flags(conn, job.run_id)
        if paused:
            hold(conn, job.id, Hold.PAUSED)


def _end_unrun(store: SqliteStore, job_id: str, status: JobStatus, reason: str, now: float) -> None:
    """End a job of a run that never ran (cancelled with its run, failed to shape)."""
    ended = store.conn.execute(
        "UPDATE jobs SET status = ?, held = NULL, completed_at = ?, last_error = ?"
        " WHERE id = ? AND status = 'queued' RETURNING id",
        (status.value, now, reason, job_id),
    ).fetchone()
    if ended is not None:
        store.ended_here.append(job_id)


def admit_job(
    store: SqliteStore, job: Job, gates: Routing, now: float, *, ignore_pause: bool = False
) -> bool:
    """Run, hold or cancel ``job`` (a queued job of a run's step, just stored or just
    released), as :func:`chamberlain.runs.admit` decides; whether its row changed."""
    conn = store.conn
    if job.run_id is None or job.step_id is None or job.pipeline is None:
        return False
    paused, cancelled = _run_flags(conn, job.run_id)
    gate = gates.gate_of(job.pipeline, job.step_id)
    approval = _approval_of(conn, job.run_id, job.step_id)
    admission = admit(
        paused=paused,
        cancelled=cancelled,
        gate=gate,
        approval=approval,
        ignore_pause=ignore_pause,
    )
    store.touched_runs.add(job.run_id)
    match admission:
        case Admission.RUN:
            if job.held is None:
                return False
            conn.execute(
                "UPDATE jobs SET held = NULL, run_at = ? WHERE id = ? AND status = 'queued'",
                (now, job.id),
            )
        case Admission.RUN_APPROVED:
            assert approval is not None
            shaped = gates.approved_payload(job, approval.to_json())
            if shaped.error is not None:
                _end_unrun(store, job.id, JobStatus.FAILED, shaped.error, now)
                return True
            conn.execute(
                "UPDATE jobs SET held = NULL, run_at = ?, payload = ?, event = ?"
                " WHERE id = ? AND status = 'queued'",
                (
                    now,
                    json.dumps(dict(shaped.payload)),
                    None if shaped.event is None else json.dumps(dict(shaped.event)),
                    job.id,
                ),
            )
        case Admission.HOLD_PAUSED:
            hold(conn, job.id, Hold.PAUSED)
        case Admission.HOLD_APPROVAL:
            hold(conn, job.id, Hold.APPROVAL)
            assert gate is not None and gate.approval is not None
            _await_approval(store, job, gate.approval.timeout, now)
        case Admission.CANCEL:
            reason = "its run was cancelled"
            if approval is not None and approval.verdict is Verdict.REJECT:
                reason = f"its step was rejected by {approval.by}"
            _end_unrun(store, job.id, JobStatus.CANCELLED, reason, now)
    return True


def _await_approval(store: SqliteStore, job: Job, timeout: float | None, now: float) -> None:
    assert job.run_id is not None and job.step_id is not None
    timeout_at = None if timeout is None else now + timeout
    made = store.conn.execute(
        "INSERT INTO run_steps (run_id, step_id, awaiting_since, timeout_at, changed_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, step_id) DO UPDATE SET"
        " awaiting_since = excluded.awaiting_since, timeout_at = excluded.timeout_at"
        " WHERE run_steps.awaiting_since IS NULL RETURNING run_id",
        (job.run_id, job.step_id, now, timeout_at, now),
    ).fetchone()
    if made is not None:
        until = "" if timeout_at is None else f" until {rfc3339(timeout_at)}"
        record_event(
            store.conn,
            job.run_id,
            "approval.awaited",
            f"step {job.step_id} awaits approval{until}",
            actor="chamberlain",
            now=now,
            step_id=job.step_id,
            job_id=job.id,
            timeout_at=timeout_at,
        )


def _held(
    conn: sqlite3.Connection,
    run_id: str,
    hold: Hold,
    *,
    step_id: str | None = None,
    parent: str | None = None,
) -> list[str]:
    where = ["run_id = ?", "held = ?", "status = 'queued'"]
    args: list[object] = [run_id, hold.value]
    if step_id is not None:
        where.append("step_id = ?")
        args.append(step_id)
    if parent is not None:
        where.append("parent_job_id = ?")
        args.append(parent)
    rows = conn.execute(f"SELECT id FROM jobs WHERE {' AND '.join(where)} ORDER BY seq", args)
    return [str(row[0]) for row in rows]


def _release(
    store: SqliteStore,
    job_ids: Sequence[str],
    gates: Routing,
    now: float,
    *,
    ignore_pause: bool = False,
) -> None:
    for job_id in job_ids:
        job = store.get_job(job_id)
        if job is None or job.status is not JobStatus.QUEUED:
            continue
        replaced = _replaced(store, job.id)
        if replaced is not None and replaced.status is JobStatus.SUCCEEDED:
            # A step a pause stopped finished before its process could be stopped:
            # it is not run twice.
            _end_unrun(store, job.id, JobStatus.CANCELLED, "the job it re-ran succeeded", now)
            store.conn.execute("UPDATE jobs SET superseded = 1 WHERE id = ?", (job.id,))
            store.conn.execute("UPDATE jobs SET superseded = 0 WHERE id = ?", (replaced.id,))
            continue
        # Passed as stored, held: admit_job releases a held job it lets run (a job it
        # sees unheld is left as it is).
        admit_job(store, job, gates, now, ignore_pause=ignore_pause)


def _replaced(store: SqliteStore, job_id: str) -> Job | None:
    row = store.conn.execute("SELECT rerun_of FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None or row[0] is None else store.get_job(row[0])


def rerun_of(job: Job) -> NewJob:
    """The job that runs ``job``'s step again in its run: its inputs and its place
    (pipeline, step, parent, root), a fresh life.

    Unlike a retry (``POST /job/{id}/retry``), it continues the run: when it
    succeeds, the steps after it follow.  It keeps no dedupe key (the job it re-runs
    holds that).
    """
    return NewJob(
        plugin=job.plugin,
        command=job.command,
        payload=dict(job.payload),
        event=None if job.event is None else dict(job.event),
        context=dict(job.context),
        submitted_by=job.submitted_by,
        max_attempts=job.max_attempts,
        timeout=job.timeout,
        parent_job_id=job.parent_job_id,
        source_event_id=job.source_event_id,
        pipeline=job.pipeline,
        step_id=job.step_id,
        root_job_id=job.root_job_id,
        depth=job.depth,
        workspace_id=job.workspace_id,
        pull_request_ask=job.pull_request_ask,
    )


def _rerun(
    store: SqliteStore,
    job: Job,
    now: float,
    dedupe_ttl: float,
    *,
    hold: Hold | None = None,
    ignore_pause: bool = False,
) -> Job:
    made = store.enqueue(
        rerun_of(job), now=now, dedupe_ttl=dedupe_ttl, hold=hold, ignore_pause=ignore_pause
    ).job
    store.conn.execute("UPDATE jobs SET superseded = 1 WHERE id = ?", (job.id,))
    store.conn.execute("UPDATE jobs SET rerun_of = ? WHERE id = ?", (job.id, made.id))
    return made


# -- actions ------------------------------------------------------------------------------


def _step_jobs(
    store: SqliteStore, run_id: str, step_id: str, statuses: Collection[str]
) -> list[Job]:
    marks = ",".join("?" * len(statuses))
    rows = store.conn.execute(
        "SELECT id FROM jobs WHERE run_id = ? AND step_id = ? AND superseded = 0"
        f" AND status IN ({marks}) ORDER BY seq",
        (run_id, step_id, *statuses),
    ).fetchall()
    jobs = [store.get_job(row[0]) for row in rows]
    return [job for job in jobs if job is not None]


def act(
    store: SqliteStore,
    run_id: str,
    action: RunAction,
    *,
    actor: str,
    gates: Routing,
    now: float,
    dedupe_ttl: float,
    stop_running: bool = False,
) -> ActOutcome | Refused | None:
    """Carry out ``action`` on run ``run_id`` (None: no such run)."""
    conn = store.conn
    run = run_rows.get(conn, run_id)
    if run is None:
        return None
    step_ids = gates.step_ids(run.pipeline)
    decision = decide(run.status, action, run.step_states(step_ids), stop_running=stop_running)
    if isinstance(decision, Refused):
        return decision
    store.touched_runs.add(run_id)
    stop: list[str] = []
    if action is RunAction.PAUSE:
        conn.execute("UPDATE runs SET paused = 1 WHERE id = ?", (run_id,))
        # What is queued and not started (waiting for a worker, or for a retry's
        # backoff) is held now too: the pause reaches every job, not only new ones.
        conn.execute(
            "UPDATE jobs SET held = ?, run_at = ? WHERE run_id = ? AND status = 'queued'"
            " AND held IS NULL",
            (Hold.PAUSED.value, HELD_RUN_AT, run_id),
        )
    elif action is RunAction.RESUME:
        conn.execute("UPDATE runs SET paused = 0 WHERE id = ?", (run_id,))
    for effect in decision.effects:
        match effect.kind:
            case EffectKind.STOP_STEP if action is RunAction.PAUSE:
                assert effect.step_id is not None
                for job in _step_jobs(store, run_id, effect.step_id, ("running",)):
                    _rerun(store, job, now, dedupe_ttl, hold=Hold.PAUSED)
                    stop.append(job.id)
            case EffectKind.STOP_STEP:
                pass  # a cancel stops every running job of the run, below
            case EffectKind.START_DUE:
                _release(store, _held(conn, run_id, Hold.PAUSED), gates, now)
            case EffectKind.START_STEP:
                assert effect.step_id is not None
                _start_step(store, run, effect.step_id, gates, now, dedupe_ttl)
            case EffectKind.CANCEL_REST:
                conn.execute(
                    "UPDATE runs SET cancelled_at = ?, paused = 0 WHERE id = ?", (now, run_id)
                )
                rows = conn.execute(
                    "SELECT id FROM jobs WHERE run_id = ? AND status = 'queued'", (run_id,)
                ).fetchall()
                for (job_id,) in rows:
                    _end_unrun(
                        store, job_id, JobStatus.CANCELLED, f"its run was cancelled by {actor}", now
                    )
                stop.extend(
                    str(row[0])
                    for row in conn.execute(
                        "SELECT id FROM jobs WHERE run_id = ? AND status = 'running'", (run_id,)
                    )
                )
    record_event(
        conn,
        run_id,
        "action",
        f"{action.value} by {actor}: {decision.message}",
        actor=actor,
        now=now,
        action=action.value,
        stop_running=stop_running,
        message=decision.message,
    )
    return ActOutcome(run_id=run_id, message=decision.message, stop=tuple(stop))


def _start_step(
    store: SqliteStore,
    run: PipelineRun,
    step_id: str,
    gates: Routing,
    now: float,
    dedupe_ttl: float,
) -> None:
    """Start a step now: its jobs held by a pause; else (it failed, or its gate did)
    its latest jobs again."""
    conn = store.conn
    held = _held(conn, run.run_id, Hold.PAUSED, step_id=step_id)
    if held:
        _release(store, held, gates, now, ignore_pause=True)
        return
    record = run.records.get(step_id)
    if record is not None and record.blocked and record.gate is not None:
        gated = store.get_job(record.gate.job_id)
        again = [gated] if gated is not None else []
        conn.execute(
            "UPDATE run_steps SET gate = NULL, check_job_id = NULL, sha = NULL, changed_at = ?"
            " WHERE run_id = ? AND step_id = ?",
            (now, run.run_id, step_id),
        )
    else:
        again = _step_jobs(store, run.run_id, step_id, ("failed", "timed_out", "dead", "cancelled"))
    for job in again:
        _rerun(store, job, now, dedupe_ttl, ignore_pause=True)


# -- approvals ----------------------------------------------------------------------------


def approve(
    store: SqliteStore,
    run_id: str,
    step_id: str,
    word: Approval,
    *,
    gates: Routing,
    now: float,
) -> Approval | Unchanged | Refused | None:
    """Give ``word`` (an approve or a reject) to step ``step_id`` of run ``run_id``, as
    :func:`chamberlain.runs.decide_approval` rules (None: no such run or step)."""
    conn = store.conn
    run = run_rows.get(conn, run_id)
    if run is None:
        return None
    steps = {step.step_id: step for step in run.steps(gates.step_ids(run.pipeline))}
    step = steps.get(step_id)
    if step is None:
        return None
    record = run.records.get(step_id)
    outcome = decide_approval(step.status, None if record is None else record.approval, word)
    if not isinstance(outcome, Approval):
        return outcome
    store.touched_runs.add(run_id)
    conn.execute(
        "INSERT INTO run_steps (run_id, step_id, approval, changed_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (run_id, step_id) DO UPDATE SET approval = excluded.approval,"
        " changed_at = excluded.changed_at",
        (run_id, step_id, run_rows.approval_json(outcome), now),
    )
    decided = "approved" if outcome.verdict is Verdict.APPROVE else "rejected"
    comment = f": {outcome.comment}" if outcome.comment else ""
    held = _held(conn, run_id, Hold.APPROVAL, step_id=step_id)
    record_event(
        conn,
        run_id,
        "approval",
        f"step {step_id} {decided} by {outcome.by}{comment}",
        actor=outcome.by,
        now=now,
        step_id=step_id,
        job_id=held[0] if held else None,
        approval=outcome.to_json(),
    )
    # Released into the rule again: an approval runs them (unless the run is paused),
    # a reject cancels them.
    _release(store, held, gates, now)
    return outcome


def next_timeout(conn: sqlite3.Connection) -> float | None:
    """When the soonest approval timeout still to fire is due (None: none is)."""
    (at,) = conn.execute(
        "SELECT MIN(timeout_at) FROM run_steps WHERE timeout_at IS NOT NULL AND approval IS NULL"
    ).fetchone()
    return None if at is None else float(at)


def sweep_timeouts(store: SqliteStore, gates: Routing, now: float) -> int:
    """Give every approval whose timeout is due its ``on_timeout`` word, through the
    same rule a person's goes through; how many were decided."""
    due = store.conn.execute(
        "SELECT run_id, step_id FROM run_steps WHERE timeout_at IS NOT NULL"
        " AND approval IS NULL AND timeout_at <= ? ORDER BY timeout_at",
        (now,),
    ).fetchall()
    decided = 0
    for run_id, step_id in due:
        pipeline = store.conn.execute(
            "SELECT pipeline FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        gate = gates.gate_of(pipeline[0], step_id) if pipeline else None
        verdict = gate.approval.on_timeout if gate and gate.approval else Verdict.REJECT
        word = Approval(verdict=verdict, by=TIMEOUT_ACTOR, at=now, comment="the approval timed out")
        outcome = approve(store, run_id, step_id, word, gates=gates, now=now)
        if isinstance(outcome, Approval):
            decided += 1
        else:
            # Nothing left to decide (the run was cancelled meanwhile): never again.
            store.conn.execute(
                "UPDATE run_steps SET timeout_at = NULL WHERE run_id = ? AND step_id = ?",
                (run_id, step_id),
            )
    return decided


# -- gates: checks and CI -------------------------------------------------------------------


def _commit_of(job: Job) -> str | None:
    """The commit a step's job reports (``result.commit``, or ``commit`` beside it)."""
    response = job.result if isinstance(job.result, Mapping) else {}
    inner = response.get("result")
    for where in (inner if isinstance(inner, Mapping) else {}, response):
        sha = where.get("commit")
        if isinstance(sha, str) and sha.strip():
            return sha.strip().lower()
    return None


def _set_gate(
    conn: sqlite3.Connection, run_id: str, step_id: str, gate: GateRecord, now: float
) -> None:
    waiting_ci = gate.kind is GateKind.CI and gate.state is GateState.WAITING
    conn.execute(
        "INSERT INTO run_steps (run_id, step_id, gate, check_job_id, sha, changed_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, step_id) DO UPDATE SET"
        " gate = excluded.gate, check_job_id = excluded.check_job_id, sha = excluded.sha,"
        " changed_at = excluded.changed_at",
        (
            run_id,
            step_id,
            run_rows.gate_json(gate),
            gate.check_job_id if gate.state is GateState.WAITING else None,
            gate.sha if waiting_ci else None,
            now,
        ),
    )


def _open_gate(
    store: SqliteStore, job: Job, kind: GateKind, gates: Routing, now: float, dedupe_ttl: float
) -> None:
    """Start the ``kind`` part of the gate of ``job``'s step: its check job, or the
    wait for CI."""
    assert job.run_id is not None and job.step_id is not None and job.pipeline is not None
    gate = gates.gate_of(job.pipeline, job.step_id)
    sha = _commit_of(job)
    if kind is GateKind.CHECK:
        assert gate is not None and gate.check is not None
        target = gates.resolve_target(gate.check)
        assert target is not None, "checked at start-up"
        plugin, command = target
        response = job.result if isinstance(job.result, Mapping) else {}
        check = store.enqueue(
            NewJob(
                plugin=plugin,
                command=command,
                payload={
                    "run_id": job.run_id,
                    "pipeline": job.pipeline,
                    "step_id": job.step_id,
                    "job_id": job.id,
                    "payload": dict(job.payload),
                    "result": response.get("result"),
                },
                context=dict(job.context),
                submitted_by=f"check:{job.pipeline}/{job.step_id}",
                max_attempts=gates.plugins[plugin].max_attempts,
                parent_job_id=job.id,
                pipeline=job.pipeline,
                root_job_id=job.root_job_id or job.id,
                depth=job.depth + 1,
            ),
            now=now,
            dedupe_ttl=dedupe_ttl,
        ).job
        record = GateRecord(
            kind=kind,
            state=GateState.WAITING,
            job_id=job.id,
            at=now,
            check_job_id=check.id,
            sha=sha,
        )
        text = f"step {job.step_id} awaits its check ({gate.check}, job {check.id})"
    else:
        record = GateRecord(kind=kind, state=GateState.WAITING, job_id=job.id, at=now, sha=sha)
        text = f"step {job.step_id} awaits CI" + (f" for {sha}" if sha else " (no commit reported)")
    _set_gate(store.conn, job.run_id, job.step_id, record, now)
    record_event(
        store.conn,
        job.run_id,
        f"{kind.value}.awaited",
        text,
        actor="chamberlain",
        now=now,
        step_id=job.step_id,
        job_id=job.id,
        sha=sha,
    )


def _gate_decided(
    store: SqliteStore,
    run_id: str,
    step_id: str,
    record: GateRecord,
    passed: bool,
    gates: Routing,
    now: float,
    dedupe_ttl: float,
) -> None:
    """A gate's part said pass or fail: the next part starts, or the next steps are
    released (pass), or they are dropped and the run is blocked (fail)."""
    conn = store.conn
    store.touched_runs.add(run_id)
    children = _held(conn, run_id, Hold.GATE, parent=record.job_id)
    if not passed:
        _set_gate(conn, run_id, step_id, attrs.evolve(record, state=GateState.FAILED, at=now), now)
        for job_id in children:
            _end_unrun(
                store,
                job_id,
                JobStatus.CANCELLED,
                f"the {record.kind.value} of step {step_id} failed",
                now,
            )
            conn.execute("UPDATE jobs SET superseded = 1 WHERE id = ?", (job_id,))
        return
    run = conn.execute("SELECT pipeline FROM runs WHERE id = ?", (run_id,)).fetchone()
    gate = gates.gate_of(run[0], step_id) if run else None
    following = next_gate(gate, record.kind) if gate is not None else None
    gated = store.get_job(record.job_id)
    if following is not None and gated is not None:
        _open_gate(store, gated, following, gates, now, dedupe_ttl)
        return
    _set_gate(conn, run_id, step_id, attrs.evolve(record, state=GateState.PASSED, at=now), now)
    _release(store, children, gates, now)


def route(
    store: SqliteStore,
    job: Job,
    planner: Callable[[Job, float], RoutePlan],
    gates: Routing,
    now: float,
    dedupe_ttl: float,
) -> None:
    """Apply the plan of the ended ``job`` with its run's control: a check job's
    verdict decides its step's gate; a gated step's next steps are stored held on
    its gate, which opens now."""
    conn = store.conn
    plan = planner(job, now)
    check = conn.execute(
        "SELECT run_id, step_id, gate FROM run_steps WHERE check_job_id = ?", (job.id,)
    ).fetchone()
    gate = None
    if job.run_id is not None and job.step_id is not None and job.pipeline is not None:
        gate = gates.gate_of(job.pipeline, job.step_id)
    first = None
    if gate is not None and job.status is JobStatus.SUCCEEDED and not _superseded(conn, job.id):
        first = next_gate(gate, None)
    store.apply_plan(
        plan, now=now, dedupe_ttl=dedupe_ttl, hold_children_of=job if first is not None else None
    )
    if job.run_id is not None:
        store.touched_runs.add(job.run_id)
    if first is not None:
        _open_gate(store, job, first, gates, now, dedupe_ttl)
    if check is not None:
        run_id, step_id, text = check
        record = run_rows.gate_from_json(text)
        if record is None or record.state is not GateState.WAITING or record.check_job_id != job.id:
            return
        response = job.result if isinstance(job.result, Mapping) else {}
        if job.status is JobStatus.SUCCEEDED:
            verdict = check_verdict(response.get("result"))
        else:
            verdict = check_verdict(None)
            verdict = attrs.evolve(
                verdict, notes=f"the check job {job.status.value}: {job.last_error or 'no reason'}"
            )
        # The verdict is logged before what it sets going (a CI wait, the next
        # step's approval), as a CI report is.
        record_event(
            conn,
            run_id,
            "check",
            f"step {step_id}: the check {'passed' if verdict.passed else 'failed'}"
            + (f": {verdict.notes}" if verdict.notes else ""),
            actor=f"check:{job.plugin}.{job.command}",
            now=now,
            step_id=step_id,
            job_id=job.id,
            verdict="pass" if verdict.passed else "fail",
            notes=verdict.notes,
        )
        _gate_decided(
            store,
            run_id,
            step_id,
            attrs.evolve(record, notes=verdict.notes),
            verdict.passed,
            gates,
            now,
            dedupe_ttl,
        )


def _superseded(conn: sqlite3.Connection, job_id: str) -> bool:
    row = conn.execute("SELECT superseded FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return bool(row and row[0])


def ci_report(
    store: SqliteStore,
    signal: CiSignal,
    *,
    run_id: str | None,
    gates: Routing,
    now: float,
    dedupe_ttl: float,
) -> tuple[CiMatch, ...]:
    """Give a CI report to the steps waiting for it: those waiting on its commit, or
    (``run_id``) the given run's step waiting on CI, if it awaits no other commit."""
    conn = store.conn
    if run_id is not None:
        rows = conn.execute(
            "SELECT run_id, step_id, gate FROM run_steps WHERE run_id = ? AND gate IS NOT NULL",
            (run_id,),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT run_id, step_id, gate FROM run_steps WHERE sha = ?", (signal.sha,)
        ).fetchall()
    matched = []
    for found_run, step_id, text in rows:
        record = run_rows.gate_from_json(text)
        if (
            record is None
            or record.kind is not GateKind.CI
            or record.state is not GateState.WAITING
        ):
            continue
        if record.sha is not None and record.sha != signal.sha:
            continue
        matched.append(CiMatch(run_id=found_run, step_id=step_id, state=signal.state))
        store.touched_runs.add(found_run)
        report = attrs.evolve(record, signal=signal.to_json())
        record_event(
            conn,
            found_run,
            "ci",
            f"step {step_id}: CI {signal.state.value} ({signal.source}"
            + (f", {signal.name}" if signal.name else "")
            + f") for {signal.sha}",
            actor=signal.source,
            now=now,
            step_id=step_id,
            job_id=record.job_id,
            signal=signal.to_json(),
        )
        if signal.state is CiState.PENDING:
            _set_gate(conn, found_run, step_id, report, now)
            continue
        _gate_decided(
            store,
            found_run,
            step_id,
            report,
            signal.state is CiState.SUCCESS,
            gates,
            now,
            dedupe_ttl,
        )
    return tuple(matched)
