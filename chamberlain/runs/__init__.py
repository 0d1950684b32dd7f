"""Runs: a pipeline's invocation as something a person controls, step by step.

The decisions, without I/O: a run's and its steps' statuses and what each action
does to them (``_states``), where a run and its steps are, read from their jobs
(``_progress``), a step's approval and the one rule every word of it
goes through, a person's or a timeout's (``_approvals``), and what a check's
response or a CI webhook says about a step (``_signals``).  Everything public is
re-exported here.
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
from ._progress import JobMark, PipelineRun, StepProgress, run_status, step_progress
from ._signals import CheckVerdict, CiSignal, CiState, check_verdict, ci_signal
from ._states import (
    RUN_TERMINAL,
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
    "Approval",
    "ApprovalSpec",
    "CheckVerdict",
    "CiSignal",
    "CiState",
    "Decision",
    "Effect",
    "EffectKind",
    "JobMark",
    "PipelineRun",
    "Refused",
    "RunAction",
    "RunStatus",
    "StepProgress",
    "StepState",
    "StepStatus",
    "Unchanged",
    "Verdict",
    "check_verdict",
    "ci_signal",
    "decide",
    "decide_approval",
    "run_status",
    "settled_status",
    "step_progress",
    "timeout_at",
]
