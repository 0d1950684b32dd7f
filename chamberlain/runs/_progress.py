"""Where a run and its steps are, read from the jobs of its steps and its records.

No I/O here.  A run's steps are its pipeline's steps, in the config's order; each
step's status follows from the jobs made for it (a step runs once per input, so
it may have several) and from its record (its approval, its check or CI), and the
run's from its steps, from whether it is paused or cancelled, and from whether
anything of it is still under way.  A step that has no job once nothing more can
come (every job ended and routed) was never reached: a false ``if:``, a branch
not taken, a step after one that failed.

A job run again (``retry-latest``, a step a pause stopped) is *superseded* by the
job that re-runs it: only the newest say what the step is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import attrs

from ._approvals import Approval, Verdict
from ._gates import GateKind, GateRecord, GateState, Hold
from ._states import RunStatus, StepState, StepStatus

__all__ = [
    "JobMark",
    "PipelineRun",
    "StepProgress",
    "StepRecord",
    "run_status",
    "step_progress",
]

#: Job statuses that end a job; the routed ones among them have set in motion what
#: they will.
_ROUTED_ENDINGS: Final = frozenset({"succeeded", "failed", "timed_out", "dead"})
_FAILED: Final = frozenset({"failed", "timed_out", "dead"})
_UNDER_WAY: Final = frozenset({"queued", "running"})


@attrs.frozen(kw_only=True)
class JobMark:
    """What a run's view needs of one of its jobs."""

    job_id: str
    step_id: str | None
    status: str
    #: Its plan (events, next steps) has been applied; meaningful once it ended.
    routed: bool = False
    created_at: float = 0.0
    started_at: float | None = None
    completed_at: float | None = None
    #: Why it is stored but does not run yet (queued jobs only).
    held: Hold | None = None
    #: A newer job runs its step again: it says nothing of the step any more.
    superseded: bool = False

    @property
    def settled(self) -> bool:
        """Nothing more comes of it: it ended, and what it set in motion is stored."""
        if self.status in _UNDER_WAY:
            return False
        return self.routed or self.status not in _ROUTED_ENDINGS


@attrs.frozen(kw_only=True)
class StepRecord:
    """What a run keeps of one step besides its jobs: its approval (awaited since
    when, until when, and the decision) and its gate (a check's or CI's)."""

    step_id: str
    awaiting_since: float | None = None
    timeout_at: float | None = None
    approval: Approval | None = None
    gate: GateRecord | None = None
    changed_at: float = 0.0

    @property
    def rejected(self) -> bool:
        """A person (or the timeout) rejected the step: it, and its run, failed."""
        return self.approval is not None and self.approval.verdict is Verdict.REJECT

    @property
    def blocked(self) -> bool:
        """Its check or CI failed: the run waits for ``retry-latest``."""
        return self.gate is not None and self.gate.state is GateState.FAILED

    @property
    def checking(self) -> bool:
        """Its check or CI has not said yet."""
        return self.gate is not None and self.gate.state is GateState.WAITING


@attrs.frozen(kw_only=True)
class StepProgress:
    """One step of a run as ``GET /runs/{id}`` shows it."""

    step_id: str
    status: StepStatus
    job_ids: tuple[str, ...]
    started_at: float | None
    completed_at: float | None
    record: StepRecord | None = None


def _live(marks: Sequence[JobMark]) -> list[JobMark]:
    return [mark for mark in marks if not mark.superseded]


def _step_status(
    marks: Sequence[JobMark],
    record: StepRecord | None = None,
    *,
    settled: bool,
    cancelled: bool = False,
) -> StepStatus:
    live = _live(marks)
    if record is not None and record.rejected:
        return StepStatus.FAILED
    if any(mark.held is Hold.APPROVAL for mark in live):
        return StepStatus.AWAITING_APPROVAL
    if not live:
        # A cancelled run's steps that never got a job were cancelled, not skipped.
        if cancelled:
            return StepStatus.CANCELLED
        return StepStatus.SKIPPED if settled else StepStatus.PENDING
    statuses = {mark.status for mark in live}
    if statuses & _UNDER_WAY:
        # Queued and never started (or held): waiting, not under way yet (a retry
        # waiting out its backoff has started).
        started = any(
            m.status == "running" or (m.started_at is not None and m.held is None) for m in live
        )
        return StepStatus.RUNNING if started else StepStatus.PENDING
    if statuses & _FAILED:
        return StepStatus.FAILED
    if "cancelled" in statuses:
        return StepStatus.CANCELLED
    if not cancelled and not all(mark.routed for mark in live):
        # Its jobs succeeded, but what follows them (the next steps, the step's
        # check or CI wait) is stored a transaction later: until then the step is
        # under way, never "succeeded" a moment before it awaits its check.
        return StepStatus.RUNNING
    if record is not None and record.checking:
        # A cancel stops the check; CI for a cancelled run decides nothing.
        return StepStatus.CANCELLED if cancelled else StepStatus.AWAITING_CHECK
    if record is not None and record.blocked:
        # A failed check judged the step's work; failed CI blocks a step whose own
        # job succeeded, until retry-latest runs it for a new commit.
        assert record.gate is not None
        return StepStatus.BLOCKED if record.gate.kind is GateKind.CI else StepStatus.FAILED
    return StepStatus.SUCCEEDED


def step_progress(
    step_ids: Sequence[str],
    marks: Sequence[JobMark],
    records: Mapping[str, StepRecord] | None = None,
    *,
    cancelled: bool = False,
) -> tuple[StepProgress, ...]:
    """Each of ``step_ids`` (the pipeline's, in order) with its jobs and record, then
    any step the jobs name that the list lacks (a called pipeline's), in the order
    of its first job.  In a ``cancelled`` run, the steps nothing of which runs any
    more are ``cancelled``."""
    records = records or {}
    order = list(dict.fromkeys([*step_ids, *(m.step_id for m in marks if m.step_id)]))
    settled = _settled(marks, records)
    steps = []
    for step_id in order:
        mine = [mark for mark in marks if mark.step_id == step_id]
        live = _live(mine)
        started = [m.started_at for m in live if m.started_at is not None]
        record = records.get(step_id)
        status = _step_status(mine, record, settled=settled, cancelled=cancelled)
        completed = [m.completed_at for m in live if m.completed_at is not None]
        if record is not None and status.finished and record.changed_at:
            completed.append(record.changed_at)
        steps.append(
            StepProgress(
                step_id=step_id,
                status=status,
                job_ids=tuple(m.job_id for m in mine),
                started_at=min(started) if started else None,
                completed_at=max(completed) if completed and status.finished else None,
                record=record,
            )
        )
    return tuple(steps)


def _settled(marks: Sequence[JobMark], records: Mapping[str, StepRecord]) -> bool:
    # A failed check or CI is no end: ``retry-latest`` may pass it, and the steps
    # after it may still come.
    return all(mark.settled for mark in _live(marks)) and not any(
        record.checking or record.blocked for record in records.values()
    )


def run_status(
    marks: Sequence[JobMark],
    records: Mapping[str, StepRecord] | None = None,
    *,
    paused: bool = False,
    cancelled: bool = False,
) -> RunStatus:
    """A run's status from its jobs and records.

    ``cancelled`` (by ``cancel``) it stays; a rejected step fails it.  Once
    everything of it settled (a failed check or CI has not: a retry may still pass
    it), it is ``failed`` if a job of it failed, ``cancelled`` if one was
    cancelled, ``succeeded`` otherwise.  Until then it is ``paused`` while paused,
    ``blocked`` on a failed gate, ``awaiting_approval`` while a step waits for a
    person, ``running`` once a job of it started, and ``pending`` before.
    """
    records = records or {}
    live = _live(marks)
    if cancelled:
        return RunStatus.CANCELLED
    if any(record.rejected for record in records.values()):
        return RunStatus.FAILED
    if live and _settled(marks, records):
        statuses = {_step_status([mark], settled=True) for mark in live}
        if StepStatus.FAILED in statuses:
            return RunStatus.FAILED
        if StepStatus.CANCELLED in statuses:
            return RunStatus.CANCELLED
        return RunStatus.SUCCEEDED
    if paused:
        return RunStatus.PAUSED
    if any(record.blocked for record in records.values()):
        return RunStatus.BLOCKED
    if any(mark.held is Hold.APPROVAL for mark in live):
        return RunStatus.AWAITING_APPROVAL
    if any(
        (mark.started_at is not None and mark.held is None) or mark.status not in _UNDER_WAY
        for mark in marks
    ):
        return RunStatus.RUNNING
    return RunStatus.PENDING


@attrs.frozen(kw_only=True)
class PipelineRun:
    """A run as the store finds it: its pipeline, when it was made, its jobs in order,
    its steps' records, and whether it was paused or cancelled."""

    run_id: str
    pipeline: str
    created_at: float
    jobs: tuple[JobMark, ...] = ()
    records: Mapping[str, StepRecord] = attrs.field(factory=dict)
    paused: bool = False
    cancelled_at: float | None = None

    @property
    def status(self) -> RunStatus:
        """Where it is (:func:`run_status`)."""
        return run_status(
            self.jobs, self.records, paused=self.paused, cancelled=self.cancelled_at is not None
        )

    @property
    def started_at(self) -> float | None:
        """When its first job started."""
        started = [job.started_at for job in self.jobs if job.started_at is not None]
        return min(started) if started else None

    @property
    def completed_at(self) -> float | None:
        """When it ended, once it has: its last job's end, or its cancel."""
        if not self.status.terminal:
            return None
        ended = [job.completed_at for job in self.jobs if job.completed_at is not None]
        ended.extend(r.changed_at for r in self.records.values() if r.changed_at)
        if self.cancelled_at is not None:
            ended.append(self.cancelled_at)
        return max(ended) if ended else None

    def steps(self, step_ids: Sequence[str]) -> tuple[StepProgress, ...]:
        """Its steps, ``step_ids`` (its pipeline's, in order) first (:func:`step_progress`)."""
        return step_progress(
            step_ids, self.jobs, self.records, cancelled=self.cancelled_at is not None
        )

    def step_states(self, step_ids: Sequence[str]) -> tuple[StepState, ...]:
        """Its steps as :func:`~chamberlain.runs.decide` sees them: a pending step
        that has no job yet (its input has not come) is left out, since nothing of
        it can be started."""
        states = []
        for step in self.steps(step_ids):
            live = [m for m in self.jobs if m.step_id == step.step_id and not m.superseded]
            if step.status is StepStatus.PENDING and not live:
                continue
            changed = [m.completed_at or m.created_at for m in live]
            if step.record is not None:
                changed.append(step.record.changed_at)
            # A step with no live job (never reached, or cancelled with its run
            # before it got one) has nothing to date it by.
            at = max(changed, default=0.0)
            states.append(StepState(step_id=step.step_id, status=step.status, changed_at=at))
        return tuple(states)
