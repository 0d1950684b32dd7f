"""A step's approval: who decided, what, when, and whether a second word counts.

No I/O here.  A step that asks for approval stops at ``awaiting_approval`` before it
runs; :func:`decide_approval` answers what an ``approve`` or a ``reject`` does to it,
whoever gives it: a person through the API, or the approval's timeout.  Because the
timeout's word goes through the same rule, in the same transaction as the step's
row is read, it can never undo a person's decision or decide twice: once a decision
is recorded, the same word again changes nothing (idempotent, 200) and the other
word is refused (409).  That is the race the workflow engines this replaces lost (a
timer that resumed an already resumed pause).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any

import attrs

from ._states import Refused, StepStatus

__all__ = [
    "TIMEOUT_ACTOR",
    "Approval",
    "ApprovalSpec",
    "Unchanged",
    "Verdict",
    "decide_approval",
    "timeout_at",
]

#: Who an approval's timeout decides as, in the step's record and the run's events.
TIMEOUT_ACTOR = "timeout"


class Verdict(enum.Enum):
    """An approval's decision."""

    APPROVE = "approve"
    REJECT = "reject"


@attrs.frozen(kw_only=True)
class ApprovalSpec:
    """A step's ``approval:``: whether it is required, how long it may wait (None:
    for ever), what its timeout decides, and the JSON Schema its inputs must meet."""

    required: bool = True
    timeout: float | None = None
    on_timeout: Verdict = Verdict.REJECT
    inputs_schema: Mapping[str, Any] | None = None


@attrs.frozen(kw_only=True)
class Approval:
    """A decision recorded on a step."""

    verdict: Verdict
    #: The token's name that decided (``token:<name>``, ``api_key``), or ``timeout``.
    by: str
    at: float
    comment: str = ""
    #: What the approver gave the step (``{approval.inputs.x}`` in its ``with:``).
    inputs: Mapping[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """As the run's steps and events show it."""
        return {
            "decision": "approved" if self.verdict is Verdict.APPROVE else "rejected",
            "by": self.by,
            "at": self.at,
            "comment": self.comment,
            "inputs": dict(self.inputs),
        }


@attrs.frozen(kw_only=True)
class Unchanged:
    """The same word again: nothing changes, and the recorded decision stands."""

    approval: Approval


def decide_approval(
    status: StepStatus,
    recorded: Approval | None,
    word: Approval,
) -> Approval | Unchanged | Refused:
    """What ``word`` (an approve or a reject, with who, when and what) does to a step
    at ``status`` whose recorded decision is ``recorded`` (None: none yet).

    Answers ``word`` itself when it is now the step's decision: an approve lets the
    step run, a reject ends it (and its run) failed.
    """
    if recorded is not None:
        if recorded.verdict is word.verdict:
            return Unchanged(approval=recorded)
        done = "approved" if recorded.verdict is Verdict.APPROVE else "rejected"
        return Refused(reason=f"the step was {done} already, by {recorded.by}")
    if status is not StepStatus.AWAITING_APPROVAL:
        return Refused(reason=f"the step is {status.value}, not awaiting approval")
    return word


def timeout_at(spec: ApprovalSpec, awaiting_since: float) -> float | None:
    """When the timeout of a step awaiting approval since ``awaiting_since`` fires
    (None: it has none)."""
    if spec.timeout is None or not math.isfinite(spec.timeout):
        return None
    return awaiting_since + spec.timeout
