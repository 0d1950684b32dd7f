"""A run's and its steps' statuses, and what each action on a run does to them.

No I/O here: given a run's status and its steps as they stand, :func:`decide`
answers what an action (``pause``, ``resume``, ``cancel``, ``run-next-step``,
``retry-latest``) changes and which effects the daemon must carry out, or
:class:`Refused` with the reason a client is told (409).  The JobStore applies a
decision in the transaction that reads the run, so two actions racing each other
are decided one after the other, each on what the other left.

Why the rules are what they are (the failures of the systems this replaces):

* a pause that lets the running step run on is a pause of nothing: ``stop_running``
  stops it too, and it is run again on ``resume``;
* ``resume`` starts what is due at once, rather than waiting for something else to
  wake the run;
* ``cancel`` stops every running job of the run and cancels its queued ones, not
  only the run's record;
* a finished run takes no action but what re-runs a step (``retry-latest`` of a
  failed run): a killed run never comes back by itself.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final

import attrs

__all__ = [
    "RUN_TERMINAL",
    "ActOutcome",
    "Decision",
    "Effect",
    "EffectKind",
    "Refused",
    "RunAction",
    "RunStatus",
    "StepState",
    "StepStatus",
    "decide",
    "settled_status",
]


class RunStatus(enum.Enum):
    """Where a run is."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    AWAITING_APPROVAL = "awaiting_approval"
    BLOCKED = "blocked"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """It has ended: only ``retry-latest`` of a failed run may start it again."""
        return self in RUN_TERMINAL


RUN_TERMINAL: Final = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


class StepStatus(enum.Enum):
    """Where one step of a run is."""

    PENDING = "pending"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    AWAITING_CHECK = "awaiting_check"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"

    @property
    def finished(self) -> bool:
        """Nothing more happens to it unless it is run again."""
        return self in (
            StepStatus.SUCCEEDED,
            StepStatus.FAILED,
            StepStatus.SKIPPED,
            StepStatus.CANCELLED,
        )


class RunAction(enum.Enum):
    """What ``POST /runs/{id}/<action>`` asks for."""

    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    RUN_NEXT_STEP = "run-next-step"
    RETRY_LATEST = "retry-latest"


@attrs.frozen(kw_only=True)
class StepState:
    """One step as a decision sees it: its id, its status, and when it last changed
    (``changed_at``, to tell which failure is the latest)."""

    step_id: str
    status: StepStatus
    changed_at: float = 0.0


class EffectKind(enum.Enum):
    """What the daemon must do to carry a decision out."""

    #: Start the step now (its held input is enqueued; a failed or blocked step is
    #: run again).
    START_STEP = "start_step"
    #: Terminate the step's running jobs (their process groups); a pause's stopped
    #: step goes back to pending, a cancel's to cancelled.
    STOP_STEP = "stop_step"
    #: Enqueue every step whose input is held and that is due (after a resume).
    START_DUE = "start_due"
    #: Cancel the run's queued jobs and mark its unfinished steps cancelled.
    CANCEL_REST = "cancel_rest"


@attrs.frozen(kw_only=True)
class Effect:
    """One thing to do; ``step_id`` names the step for the step effects."""

    kind: EffectKind
    step_id: str | None = None


@attrs.frozen(kw_only=True)
class Decision:
    """An action taken: the run's new status, what to do, and what to tell the client."""

    status: RunStatus
    effects: tuple[Effect, ...]
    message: str


@attrs.frozen(kw_only=True)
class Refused:
    """An action (or an approval's word) the state does not allow (409), and why."""

    reason: str


_ACTIVE: Final = (StepStatus.RUNNING, StepStatus.AWAITING_CHECK)
_RERUNNABLE: Final = (StepStatus.FAILED, StepStatus.BLOCKED)


def settled_status(steps: Sequence[StepState]) -> RunStatus:
    """The status a run that is neither paused nor cancelled has, given its steps.

    A step at ``awaiting_approval`` makes it ``awaiting_approval``; a blocked step
    (a check that failed, CI that failed) ``blocked``; a failed step ``failed``;
    a step running or awaiting its check ``running``; every step finished (and none
    failed) ``succeeded``; otherwise (nothing started yet) ``pending``.
    """
    statuses = {step.status for step in steps}
    if StepStatus.AWAITING_APPROVAL in statuses:
        return RunStatus.AWAITING_APPROVAL
    if StepStatus.BLOCKED in statuses:
        return RunStatus.BLOCKED
    if StepStatus.FAILED in statuses:
        return RunStatus.FAILED
    if statuses & set(_ACTIVE):
        return RunStatus.RUNNING
    if steps and all(step.status.finished for step in steps):
        return RunStatus.SUCCEEDED
    if any(step.status.finished for step in steps):
        # Some finished, the next ones not started yet: under way.
        return RunStatus.RUNNING
    return RunStatus.PENDING


def _first(steps: Sequence[StepState], wanted: Sequence[StepStatus]) -> StepState | None:
    return next((step for step in steps if step.status in wanted), None)


def _latest(steps: Sequence[StepState], wanted: Sequence[StepStatus]) -> StepState | None:
    found = [step for step in steps if step.status in wanted]
    return max(found, key=lambda step: step.changed_at) if found else None


def decide(
    status: RunStatus,
    action: RunAction,
    steps: Sequence[StepState],
    *,
    stop_running: bool = False,
) -> Decision | Refused:
    """What ``action`` does to a run at ``status`` whose steps are ``steps`` (in order).

    ``stop_running`` is ``pause``'s option: the running steps are stopped too, and
    run again on ``resume``.
    """
    match action:
        case RunAction.PAUSE:
            return _pause(status, steps, stop_running=stop_running)
        case RunAction.RESUME:
            if status is not RunStatus.PAUSED:
                return Refused(reason=f"the run is {status.value}, not paused")
            return Decision(
                status=settled_status(steps),
                effects=(Effect(kind=EffectKind.START_DUE),),
                message="resumed: what is due starts now",
            )
        case RunAction.CANCEL:
            if status.terminal:
                return Refused(reason=f"the run has ended ({status.value})")
            stops = tuple(
                Effect(kind=EffectKind.STOP_STEP, step_id=step.step_id)
                for step in steps
                if step.status in _ACTIVE
            )
            return Decision(
                status=RunStatus.CANCELLED,
                effects=(*stops, Effect(kind=EffectKind.CANCEL_REST)),
                message="cancelled: its running jobs are being stopped",
            )
        case RunAction.RUN_NEXT_STEP:
            if status.terminal:
                return Refused(reason=f"the run has ended ({status.value})")
            step = _first(steps, (StepStatus.PENDING, *_RERUNNABLE))
            if step is None:
                return Refused(reason="no step is pending, blocked or failed")
            # A paused run stays paused: only this step runs.
            after = RunStatus.PAUSED if status is RunStatus.PAUSED else RunStatus.RUNNING
            return Decision(
                status=after,
                effects=(Effect(kind=EffectKind.START_STEP, step_id=step.step_id),),
                message=f"step {step.step_id} starts now",
            )
        case RunAction.RETRY_LATEST:
            if status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED):
                return Refused(reason=f"the run has ended ({status.value})")
            step = _latest(steps, _RERUNNABLE)
            if step is None:
                return Refused(reason="no step has failed or is blocked")
            after = RunStatus.PAUSED if status is RunStatus.PAUSED else RunStatus.RUNNING
            return Decision(
                status=after,
                effects=(Effect(kind=EffectKind.START_STEP, step_id=step.step_id),),
                message=f"step {step.step_id} runs again",
            )


def _pause(
    status: RunStatus, steps: Sequence[StepState], *, stop_running: bool
) -> Decision | Refused:
    if status is RunStatus.PAUSED:
        return Refused(reason="the run is paused already")
    if status.terminal:
        return Refused(reason=f"the run has ended ({status.value})")
    stops: tuple[Effect, ...] = ()
    if stop_running:
        stops = tuple(
            Effect(kind=EffectKind.STOP_STEP, step_id=step.step_id)
            for step in steps
            if step.status is StepStatus.RUNNING
        )
    message = "paused: no new step starts"
    if stops:
        message += f"; {', '.join(str(e.step_id) for e in stops)} stopped, to run again on resume"
    return Decision(status=RunStatus.PAUSED, effects=stops, message=message)


@attrs.frozen(kw_only=True)
class ActOutcome:
    """An action carried out: what to tell the client, and the running jobs whose
    processes must be terminated (the Dispatcher's part)."""

    run_id: str
    message: str
    stop: tuple[str, ...] = ()
