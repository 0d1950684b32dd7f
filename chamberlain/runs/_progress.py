"""Where a run and its steps are, read from the jobs of its steps.

No I/O here.  A run's steps are its pipeline's steps, in the config's order; each
step's status follows from the jobs made for it (a step runs once per input, so
it may have several), and the run's from its steps and from whether anything of
it is still under way.  A step that has no job once nothing more can come (every
job ended and routed) was never reached: a false ``if:``, a branch not taken, a
step after one that failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs

from ._states import RunStatus, StepStatus

__all__ = ["JobMark", "PipelineRun", "StepProgress", "run_status", "step_progress"]

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

    @property
    def settled(self) -> bool:
        """Nothing more comes of it: it ended, and what it set in motion is stored."""
        if self.status in _UNDER_WAY:
            return False
        return self.routed or self.status not in _ROUTED_ENDINGS


@attrs.frozen(kw_only=True)
class StepProgress:
    """One step of a run as ``GET /runs/{id}`` shows it."""

    step_id: str
    status: StepStatus
    job_ids: tuple[str, ...]
    started_at: float | None
    completed_at: float | None


def _step_status(marks: Sequence[JobMark], *, settled: bool) -> StepStatus:
    if not marks:
        return StepStatus.SKIPPED if settled else StepStatus.PENDING
    statuses = {mark.status for mark in marks}
    if statuses & _UNDER_WAY:
        # Queued and never started: waiting for a worker, not under way yet (a retry
        # waiting out its backoff has started).
        started = any(m.status == "running" or m.started_at is not None for m in marks)
        return StepStatus.RUNNING if started else StepStatus.PENDING
    if statuses & _FAILED:
        return StepStatus.FAILED
    if "cancelled" in statuses:
        return StepStatus.CANCELLED
    return StepStatus.SUCCEEDED


def step_progress(step_ids: Sequence[str], marks: Sequence[JobMark]) -> tuple[StepProgress, ...]:
    """Each of ``step_ids`` (the pipeline's, in order) with its jobs, then any step
    the jobs name that the list lacks (a called pipeline's), in the order of its
    first job."""
    order = list(dict.fromkeys([*step_ids, *(m.step_id for m in marks if m.step_id)]))
    settled = all(mark.settled for mark in marks)
    steps = []
    for step_id in order:
        mine = [mark for mark in marks if mark.step_id == step_id]
        started = [m.started_at for m in mine if m.started_at is not None]
        status = _step_status(mine, settled=settled)
        completed = [m.completed_at for m in mine if m.completed_at is not None]
        steps.append(
            StepProgress(
                step_id=step_id,
                status=status,
                job_ids=tuple(m.job_id for m in mine),
                started_at=min(started) if started else None,
                completed_at=max(completed) if completed and status.finished else None,
            )
        )
    return tuple(steps)


def run_status(marks: Sequence[JobMark]) -> RunStatus:
    """A run's status from its jobs: ``pending`` until one starts, ``running`` until
    everything of it settled, then ``failed`` if a job of it failed, ``cancelled``
    if one was cancelled, else ``succeeded``.

    Needs no step list: a step that never ran decides nothing.
    """
    if marks and all(mark.settled for mark in marks):
        statuses = {_step_status([mark], settled=True) for mark in marks}
        if StepStatus.FAILED in statuses:
            return RunStatus.FAILED
        if StepStatus.CANCELLED in statuses:
            return RunStatus.CANCELLED
        return RunStatus.SUCCEEDED
    if any(mark.started_at is not None or mark.status not in _UNDER_WAY for mark in marks):
        return RunStatus.RUNNING
    return RunStatus.PENDING


@attrs.frozen(kw_only=True)
class PipelineRun:
    """A run as the store finds it: its pipeline, when it was made, its jobs in order."""

    run_id: str
    pipeline: str
    created_at: float
    jobs: tuple[JobMark, ...] = ()

    @property
    def status(self) -> RunStatus:
        """Where it is (:func:`run_status`)."""
        return run_status(self.jobs)

    @property
    def started_at(self) -> float | None:
        """When its first job started."""
        started = [job.started_at for job in self.jobs if job.started_at is not None]
        return min(started) if started else None

    @property
    def completed_at(self) -> float | None:
        """When its last job ended, once it has ended."""
        if not self.status.terminal:
            return None
        ended = [job.completed_at for job in self.jobs if job.completed_at is not None]
        return max(ended) if ended else None

    def steps(self, step_ids: Sequence[str]) -> tuple[StepProgress, ...]:
        """Its steps, ``step_ids`` (its pipeline's, in order) first (:func:`step_progress`)."""
        return step_progress(step_ids, self.jobs)
