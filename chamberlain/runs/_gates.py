"""What stands between a step's input and its job running, and between its job's
success and the next step: pause, approval, check, CI.

No I/O here.  A job made for a step of a run is *admitted* (:func:`admit`) as it is
stored: it runs, or it is held (stored, visible, never claimed) until what holds it
lets go, or it is cancelled with its run.  A held job is released by the same rule
again, so a job released by ``resume`` into a step that needs an approval stays
held for the approval, and one released by an approval into a paused run stays
held for the resume.

A step with ``check:`` or ``wait_for: ci`` gates what comes after it instead: the
next steps' jobs are stored held on the gate (:attr:`Hold.GATE`) when the step's
job succeeds, and released when its gate passes (:func:`next_gate` says what the
gate waits for next).
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from ._approvals import Approval, ApprovalSpec, Verdict

__all__ = [
    "Admission",
    "GateKind",
    "GateRecord",
    "GateState",
    "Hold",
    "StepGate",
    "admit",
    "next_gate",
]


class Hold(enum.Enum):
    """Why a stored job of a run does not run yet (``held`` on the job)."""

    #: The run is paused: it runs on ``resume`` (or ``run-next-step``).
    PAUSED = "paused"
    #: Its step awaits a person's approval.
    APPROVAL = "approval"
    #: The step before it awaits its check or CI.
    GATE = "gate"


class GateKind(enum.Enum):
    """What a step's gate waits for once its job succeeded."""

    CHECK = "check"
    CI = "ci"


class GateState(enum.Enum):
    """Where a step's gate is."""

    WAITING = "waiting"
    PASSED = "passed"
    FAILED = "failed"


@attrs.frozen(kw_only=True)
class StepGate:
    """A step's run control, from its config: its approval, the ``plugin.command``
    of its check, and whether it waits for CI."""

    approval: ApprovalSpec | None = None
    check: str | None = None
    wait_for_ci: bool = False

    @property
    def needs_approval(self) -> bool:
        """Its jobs wait for a person's word before they run."""
        return self.approval is not None and self.approval.required

    @property
    def gates_next(self) -> bool:
        """The steps after it wait on its check or CI."""
        return self.check is not None or self.wait_for_ci


@attrs.frozen(kw_only=True)
class GateRecord:
    """A step's gate as it stands: which step job it judges, what it waits for, and
    what it found (the check's job and notes, the CI report)."""

    kind: GateKind
    state: GateState
    #: The step's job whose success is being judged; the next steps' held jobs are
    #: its children.
    job_id: str
    at: float
    check_job_id: str | None = None
    #: The commit CI is awaited for (the step job's ``commit``), when it named one.
    sha: str | None = None
    notes: str = ""
    #: The CI report that decided (or last said "pending"), as the events show it.
    signal: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """As the run's steps show it (``check`` or ``ci``)."""
        out: dict[str, Any] = {"state": self.state.value, "job_id": self.job_id, "at": self.at}
        if self.kind is GateKind.CHECK:
            out["check_job_id"] = self.check_job_id
            out["notes"] = self.notes
        else:
            out["sha"] = self.sha
            out["signal"] = self.signal
        return out


def next_gate(gate: StepGate, after: GateKind | None) -> GateKind | None:
    """What a step's gate waits for after ``after`` passed (None: at the start, once
    the step's job succeeded): the check first, then CI; None when nothing is left."""
    order = []
    if gate.check is not None:
        order.append(GateKind.CHECK)
    if gate.wait_for_ci:
        order.append(GateKind.CI)
    if after is None:
        return order[0] if order else None
    later = order[order.index(after) + 1 :] if after in order else []
    return later[0] if later else None


class Admission(enum.Enum):
    """What becomes of a run's job as it is stored or released."""

    #: It runs.
    RUN = "run"
    #: It runs, with its ``with:`` rendered now that its approval is known.
    RUN_APPROVED = "run_approved"
    HOLD_PAUSED = "hold_paused"
    HOLD_APPROVAL = "hold_approval"
    #: Its run was cancelled, or its step rejected: it is cancelled, never run.
    CANCEL = "cancel"


def admit(
    *,
    paused: bool,
    cancelled: bool,
    gate: StepGate | None,
    approval: Approval | None,
    ignore_pause: bool = False,
) -> Admission:
    """What becomes of a job of a run that is ``paused``/``cancelled``, for a step
    whose run control is ``gate`` and whose recorded decision is ``approval``.

    ``ignore_pause``: ``run-next-step`` starts the step on a paused run.
    """
    if cancelled:
        return Admission.CANCEL
    if approval is not None and approval.verdict is Verdict.REJECT:
        return Admission.CANCEL
    if paused and not ignore_pause:
        return Admission.HOLD_PAUSED
    if gate is not None and gate.needs_approval:
        return Admission.HOLD_APPROVAL if approval is None else Admission.RUN_APPROVED
    return Admission.RUN
