"""Runs: a pipeline's invocation as something a person controls, step by step.

The decisions, without I/O: a run's and its steps' statuses and what each action
does to them (``_states``), what holds a run's job or lets it run (``_gates``),
where a run and its steps are, read from their jobs and records (``_progress``),
a step's approval and the one rule every word of it goes through, a person's or
a timeout's (``_approvals``), and what a check's response or a CI webhook says
about a step (``_signals``).  Everything public is re-exported here.
"""

from ._approvals import (
    TIMEOUT_ACTOR,
    Approval,
    ApprovalSpec,
    Unchanged,
    Verdict,
    decide_approval,
    timeout_at,
)
from ._gates import Admission, GateKind, GateRecord, GateState, Hold, StepGate, admit, next_gate
from ._progress import (
    JobMark,
    PipelineRun,
    StepProgress,
    StepRecord,
    run_status,
    step_progress,
)
from ._signals import CheckVerdict, CiMatch, CiSignal, CiState, check_verdict, ci_signal
from ._states import (
    RUN_TERMINAL,
    ActOutcome,
    Decision,
    Effect,
    EffectKind,
    Refused,
    RunAction,
    RunStatus,
    StepState,
    StepStatus,
    decide,
    settled_status,
)

__all__ = [
    "RUN_TERMINAL",
    "TIMEOUT_ACTOR",
    "ActOutcome",
    "Admission",
    "Approval",
    "ApprovalSpec",
    "CheckVerdict",
    "CiMatch",
    "CiSignal",
    "CiState",
    "Decision",
    "Effect",
    "EffectKind",
    "GateKind",
    "GateRecord",
    "GateState",
    "Hold",
    "JobMark",
    "PipelineRun",
    "Refused",
    "RunAction",
    "RunStatus",
    "StepGate",
    "StepProgress",
    "StepRecord",
    "StepState",
    "StepStatus",
    "Unchanged",
    "Verdict",
    "admit",
    "check_verdict",
    "ci_signal",
    "decide",
    "decide_approval",
    "next_gate",
    "run_status",
    "settled_status",
    "step_progress",
    "timeout_at",
]
