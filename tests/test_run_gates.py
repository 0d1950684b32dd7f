"""Run control without I/O, beyond the action table: what holds a run's job or lets
it run, what a step's gate waits for next, an approval's record and the words that
come after it, a run's and its steps' statuses read from held, superseded and
gated jobs, and what each forge's CI report says."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest

from chamberlain.runs import (
    TIMEOUT_ACTOR,
    Admission,
    Approval,
    ApprovalSpec,
    CiSignal,
    CiState,
    Decision,
    EffectKind,
    GateKind,
    GateRecord,
    GateState,
    Hold,
    JobMark,
    PipelineRun,
    Refused,
    RunAction,
    RunStatus,
    StepGate,
    StepRecord,
    StepStatus,
    Unchanged,
    Verdict,
    admit,
    ci_signal,
    decide,
    decide_approval,
    next_gate,
    run_status,
    step_progress,
    timeout_at,
)
from chamberlain.store import run_rows

S = StepStatus
R = RunStatus


def word(
    verdict: Verdict, by: str = "token:alice", at: float = 100.0, comment: str = ""
) -> Approval:
    return Approval(verdict=verdict, by=by, at=at, comment=comment, inputs={"env": "prod"})


APPROVED = word(Verdict.APPROVE)
REJECTED = word(Verdict.REJECT, comment="not today")

# -- admission ------------------------------------------------------------------------------

ASKS = StepGate(approval=ApprovalSpec())
#: ``approval: {required: false}`` asks nobody.
OPTIONAL = StepGate(approval=ApprovalSpec(required=False))
#: A check or a CI wait gates the steps after it, not its own job.
CHECKED = StepGate(check="qa.review", wait_for_ci=True)

ADMISSIONS = [
    pytest.param(False, False, None, None, False, Admission.RUN, id="a-plain-step-runs"),
    pytest.param(False, False, CHECKED, None, False, Admission.RUN, id="a-checked-step-runs"),
    pytest.param(False, False, OPTIONAL, None, False, Admission.RUN, id="an-optional-approval"),
    pytest.param(False, False, ASKS, None, False, Admission.HOLD_APPROVAL, id="awaits-approval"),
    pytest.param(False, False, ASKS, APPROVED, False, Admission.RUN_APPROVED, id="approved"),
    pytest.param(False, False, ASKS, REJECTED, False, Admission.CANCEL, id="rejected"),
    # A rejection stands even where the step's config no longer asks.
    pytest.param(False, False, None, REJECTED, False, Admission.CANCEL, id="rejected-no-ask"),
    pytest.param(True, False, None, None, False, Admission.HOLD_PAUSED, id="paused"),
    # The pause holds first; the approval is asked for once it is resumed.
    pytest.param(True, False, ASKS, None, False, Admission.HOLD_PAUSED, id="paused-unapproved"),
    pytest.param(True, False, ASKS, APPROVED, False, Admission.HOLD_PAUSED, id="paused-approved"),
    pytest.param(True, False, ASKS, REJECTED, False, Admission.CANCEL, id="paused-rejected"),
    # run-next-step starts a step of a paused run, but never past its approval.
    pytest.param(True, False, None, None, True, Admission.RUN, id="run-next-step"),
    pytest.param(True, False, ASKS, None, True, Admission.HOLD_APPROVAL, id="next-unapproved"),
    pytest.param(True, False, ASKS, APPROVED, True, Admission.RUN_APPROVED, id="next-approved"),
    pytest.param(False, True, None, None, False, Admission.CANCEL, id="cancelled"),
    pytest.param(False, True, ASKS, APPROVED, False, Admission.CANCEL, id="cancelled-approved"),
    pytest.param(True, True, None, None, True, Admission.CANCEL, id="cancelled-run-next-step"),
]


@pytest.mark.parametrize(
    ("paused", "cancelled", "gate", "approval", "ignore_pause", "expected"), ADMISSIONS
)
def test_a_run_s_job_runs_is_held_or_is_cancelled(
    paused: bool,
    cancelled: bool,
    gate: StepGate | None,
    approval: Approval | None,
    ignore_pause: bool,
    expected: Admission,
) -> None:
    decided = admit(
        paused=paused,
        cancelled=cancelled,
        gate=gate,
        approval=approval,
        ignore_pause=ignore_pause,
    )
    assert decided is expected


def test_the_admission_table_reaches_every_admission() -> None:
    assert {case.values[-1] for case in ADMISSIONS} == set(Admission)


def test_a_held_job_is_released_by_the_same_rule_so_pause_and_approval_both_hold() -> None:
    # Stored while paused, resumed into the approval, approved while paused again,
    # resumed: it runs only once both have let go.
    steps = [
        (True, None, Admission.HOLD_PAUSED),
        (False, None, Admission.HOLD_APPROVAL),
        (True, APPROVED, Admission.HOLD_PAUSED),
        (False, APPROVED, Admission.RUN_APPROVED),
    ]
    seen = [
        (paused, approval, admit(paused=paused, cancelled=False, gate=ASKS, approval=approval))
        for paused, approval, _ in steps
    ]
    assert seen == steps


@pytest.mark.parametrize(
    ("gate", "needs_approval", "gates_next"),
    [
        (StepGate(), False, False),
        (ASKS, True, False),
        (OPTIONAL, False, False),
        (StepGate(check="qa.review"), False, True),
        (StepGate(wait_for_ci=True), False, True),
        (StepGate(approval=ApprovalSpec(), check="qa.review"), True, True),
    ],
)
def test_a_step_s_gate_says_what_it_waits_for(
    gate: StepGate, needs_approval: bool, gates_next: bool
) -> None:
    assert (gate.needs_approval, gate.gates_next) == (needs_approval, gates_next)


# -- the gate after a step's job ------------------------------------------------------------

CHECK, CI = GateKind.CHECK, GateKind.CI


@pytest.mark.parametrize(
    ("gate", "order"),
    [
        (StepGate(), []),
        (StepGate(check="qa.review"), [CHECK]),
        (StepGate(wait_for_ci=True), [CI]),
        (StepGate(check="qa.review", wait_for_ci=True), [CHECK, CI]),
        # An approval is asked before the job runs: it is no part of the gate after it.
        (StepGate(approval=ApprovalSpec()), []),
    ],
)
def test_a_step_s_gate_runs_its_check_then_waits_for_ci(
    gate: StepGate, order: list[GateKind]
) -> None:
    walked = []
    part = next_gate(gate, None)
    while part is not None:
        walked.append(part)
        assert len(walked) <= len(GateKind), walked
        part = next_gate(gate, part)
    assert walked == order


def test_a_gate_part_the_step_does_not_have_leads_nowhere() -> None:
    # A record left by an older config (CI awaited, now only a check) ends the gate.
    assert next_gate(StepGate(check="qa.review"), CI) is None
    assert next_gate(StepGate(wait_for_ci=True), CHECK) is None


def test_a_gate_shows_its_check_or_its_ci_report() -> None:
    check = GateRecord(
        kind=CHECK,
        state=GateState.FAILED,
        job_id="j1",
        at=5.0,
        check_job_id="j2",
        sha="a" * 40,
        notes="2 failures",
    )
    assert check.to_json() == {
        "state": "failed",
        "job_id": "j1",
        "at": 5.0,
        "check_job_id": "j2",
        "notes": "2 failures",
    }
    signal = {"sha": "a" * 40, "state": "pending"}
    ci = GateRecord(kind=CI, state=GateState.WAITING, job_id="j1", at=6.0, sha="a" * 40)
    assert attrs.evolve(ci, signal=signal).to_json() == {
        "state": "waiting",
        "job_id": "j1",
        "at": 6.0,
        "sha": "a" * 40,
        "signal": signal,
    }


@pytest.mark.parametrize(
    "gate",
    [
        GateRecord(kind=CHECK, state=GateState.PASSED, job_id="j", at=1.5, check_job_id="c"),
        GateRecord(
            kind=CI,
            state=GateState.FAILED,
            job_id="j",
            at=2.5,
            sha="b" * 64,
            notes="",
            signal={"sha": "b" * 64, "state": "failure", "source": "gitlab.pipeline"},
        ),
    ],
    ids=["check", "ci"],
)
def test_a_gate_reads_back_from_its_column_as_it_was_stored(gate: GateRecord) -> None:
    # What a restarted daemon finds of a step's gate is what it stored.
    assert run_rows.gate_from_json(run_rows.gate_json(gate)) == gate


# -- approvals ------------------------------------------------------------------------------


def test_an_approval_spec_asks_for_ever_and_rejects_on_timeout_by_default() -> None:
    spec = ApprovalSpec()
    assert (spec.required, spec.timeout, spec.on_timeout, spec.inputs_schema) == (
        True,
        None,
        Verdict.REJECT,
        None,
    )


@pytest.mark.parametrize(
    ("timeout", "fires"),
    [(None, None), (0.0, 500.0), (90.5, 590.5), (math.inf, None), (math.nan, None)],
)
def test_an_approval_s_timeout_fires_after_its_wait_or_never(
    timeout: float | None, fires: float | None
) -> None:
    assert timeout_at(ApprovalSpec(timeout=timeout), 500.0) == fires


def test_an_approval_shows_who_decided_what_and_when() -> None:
    rejected = Approval(verdict=Verdict.REJECT, by=TIMEOUT_ACTOR, at=7.0)
    assert rejected.to_json() == {
        "decision": "rejected",
        "by": "timeout",
        "at": 7.0,
        "comment": "",
        "inputs": {},
    }
    approved = word(Verdict.APPROVE, comment="ship it")
    shown = approved.to_json()
    assert shown == {
        "decision": "approved",
        "by": "token:alice",
        "at": 100.0,
        "comment": "ship it",
        "inputs": {"env": "prod"},
    }
    # What a reader does with the answer does not touch the recorded decision.
    shown["inputs"]["env"] = "dev"
    assert approved.inputs == {"env": "prod"}


@pytest.mark.parametrize("approval", [APPROVED, REJECTED, word(Verdict.APPROVE, by="api_key")])
def test_an_approval_reads_back_from_its_column_as_it_was_recorded(approval: Approval) -> None:
    # A run awaiting its step's approval survives a restart with the decision intact.
    assert run_rows._approval(run_rows.approval_json(approval)) == approval


# Every status a step can be at when a second word comes: a recorded decision
# decides, whatever the step has moved on to.
@pytest.mark.parametrize("status", list(StepStatus), ids=lambda s: s.value)
def test_a_second_word_changes_nothing_or_is_refused_naming_who_decided(
    status: StepStatus,
) -> None:
    bob = word(Verdict.REJECT, by="token:bob", at=300.0)
    assert decide_approval(status, REJECTED, bob) == Unchanged(approval=REJECTED)
    assert decide_approval(status, APPROVED, word(Verdict.APPROVE, by="token:bob")) == Unchanged(
        approval=APPROVED
    )
    refused = decide_approval(status, APPROVED, bob)
    assert refused == Refused(reason="the step was approved already, by token:alice")
    late = decide_approval(status, REJECTED, word(Verdict.APPROVE, by="token:bob"))
    assert late == Refused(reason="the step was rejected already, by token:alice")


def test_the_timeout_decides_as_timeout_and_a_person_s_word_after_it_is_a_second_word() -> None:
    timer = Approval(verdict=Verdict.REJECT, by=TIMEOUT_ACTOR, at=86500.0)
    assert decide_approval(S.AWAITING_APPROVAL, None, timer) == timer
    # The person who would have rejected anyway: nothing changes, the timeout stands.
    assert decide_approval(S.FAILED, timer, REJECTED) == Unchanged(approval=timer)
    late = decide_approval(S.FAILED, timer, APPROVED)
    assert late == Refused(reason="the step was rejected already, by timeout")
    approving = Approval(verdict=Verdict.APPROVE, by=TIMEOUT_ACTOR, at=86500.0)
    refused = decide_approval(S.RUNNING, approving, REJECTED)
    assert refused == Refused(reason="the step was approved already, by timeout")


# -- where a run and its steps are ----------------------------------------------------------

STEPS = ("a", "b", "c")
ENDED = frozenset({"succeeded", "failed", "timed_out", "dead", "cancelled"})


def job(
    step: str,
    status: str,
    *,
    job_id: str = "",
    at: float = 1.0,
    ran: bool = True,
    held: Hold | None = None,
    superseded: bool = False,
) -> JobMark:
    """A job of ``step`` at ``status``, made at ``at``; ``ran``: it started (a queued
    job never has, unless it waits out a retry's backoff)."""
    started = ran and status != "queued"
    return JobMark(
        job_id=job_id or f"{step}-{status}",
        step_id=step,
        status=status,
        # A cancelled job is never routed: it settles as it ends.
        routed=status in ENDED and status != "cancelled",
        created_at=at,
        started_at=at if started else None,
        completed_at=at + 1.0 if status in ENDED else None,
        held=held,
        superseded=superseded,
    )


def gated(state: GateState, kind: GateKind = CHECK, step: str = "a") -> dict[str, StepRecord]:
    gate = GateRecord(
        kind=kind,
        state=state,
        job_id=f"{step}-succeeded",
        at=5.0,
        check_job_id="check-1" if kind is CHECK else None,
    )
    return {step: StepRecord(step_id=step, gate=gate, changed_at=5.0)}


def asked(step: str = "b", approval: Approval | None = None) -> dict[str, StepRecord]:
    record = StepRecord(
        step_id=step,
        awaiting_since=3.0,
        timeout_at=3.0 + 86400,
        approval=approval,
        changed_at=4.0 if approval else 3.0,
    )
    return {step: record}


def pipeline_run(
    *jobs: JobMark,
    records: dict[str, StepRecord] | None = None,
    paused: bool = False,
    cancelled_at: float | None = None,
) -> PipelineRun:
    return PipelineRun(
        run_id="run-1",
        pipeline="flow",
        created_at=0.5,
        jobs=jobs,
        records=records or {},
        paused=paused,
        cancelled_at=cancelled_at,
    )


def shown(run: PipelineRun) -> tuple[str, dict[str, str]]:
    """The run's status and its steps', as ``GET /runs/{id}`` shows them."""
    return run.status.value, {step.step_id: step.status.value for step in run.steps(STEPS)}


SUPERSEDED_FAILURE = job("a", "failed", job_id="a-1", superseded=True)
STATES = [
    pytest.param(
        pipeline_run(job("a", "queued", held=Hold.PAUSED), paused=True),
        ("paused", {"a": "pending", "b": "pending", "c": "pending"}),
        id="started-paused",
    ),
    pytest.param(
        pipeline_run(job("a", "succeeded"), job("b", "queued", held=Hold.PAUSED), paused=True),
        ("paused", {"a": "succeeded", "b": "pending", "c": "pending"}),
        id="paused-between-steps",
    ),
    # A pause without stop_running lets the running step run on.
    pytest.param(
        pipeline_run(job("a", "running"), paused=True),
        ("paused", {"a": "running", "b": "pending", "c": "pending"}),
        id="paused-with-a-step-running",
    ),
    # A pause that stopped the step: its job is superseded by one held for the resume.
    pytest.param(
        pipeline_run(
            job("a", "cancelled", job_id="a-1", superseded=True),
            job("a", "queued", job_id="a-2", at=2.0, held=Hold.PAUSED),
            paused=True,
        ),
        ("paused", {"a": "pending", "b": "pending", "c": "pending"}),
        id="paused-with-the-step-stopped",
    ),
    # A retry waiting out its backoff has started; held by a pause, it has not.
    pytest.param(
        pipeline_run(job("a", "queued")),
        ("pending", {"a": "pending", "b": "pending", "c": "pending"}),
        id="queued-not-started-yet",
    ),
    pytest.param(
        pipeline_run(attrs.evolve(job("a", "queued"), started_at=1.0)),
        ("running", {"a": "running", "b": "pending", "c": "pending"}),
        id="a-retry-waiting-its-backoff",
    ),
    pytest.param(
        pipeline_run(
            attrs.evolve(job("a", "queued"), started_at=1.0, held=Hold.PAUSED), paused=True
        ),
        ("paused", {"a": "pending", "b": "pending", "c": "pending"}),
        id="a-retry-held-by-a-pause",
    ),
    pytest.param(
        pipeline_run(
            job("a", "succeeded"), job("b", "queued", held=Hold.APPROVAL), records=asked()
        ),
        ("awaiting_approval", {"a": "succeeded", "b": "awaiting_approval", "c": "pending"}),
        id="awaiting-approval",
    ),
    pytest.param(
        pipeline_run(
            job("a", "succeeded"),
            job("b", "queued", held=Hold.APPROVAL),
            records=asked(),
            paused=True,
        ),
        ("paused", {"a": "succeeded", "b": "awaiting_approval", "c": "pending"}),
        id="paused-while-awaiting-approval",
    ),
    pytest.param(
        pipeline_run(job("a", "succeeded"), job("b", "running"), records=asked(approval=APPROVED)),
        ("running", {"a": "succeeded", "b": "running", "c": "pending"}),
        id="approved-and-running",
    ),
    pytest.param(
        pipeline_run(
            job("a", "succeeded"),
            job("b", "cancelled", ran=False),
            records=asked(approval=REJECTED),
        ),
        ("failed", {"a": "succeeded", "b": "failed", "c": "skipped"}),
        id="rejected",
    ),
    pytest.param(
        pipeline_run(
            job("a", "succeeded"),
            job("b", "queued", held=Hold.GATE),
            records=gated(GateState.WAITING),
        ),
        ("running", {"a": "awaiting_check", "b": "pending", "c": "pending"}),
        id="awaiting-its-check",
    ),
    pytest.param(
        pipeline_run(
            job("a", "succeeded"),
            job("b", "queued", held=Hold.GATE),
            records=gated(GateState.WAITING, CI),
        ),
        ("running", {"a": "awaiting_check", "b": "pending", "c": "pending"}),
        id="awaiting-ci",
    ),
    # The last step's check: nothing is held after it, and the run is under way.
    pytest.param(
        pipeline_run(job("a", "succeeded"), records=gated(GateState.WAITING)),
        ("running", {"a": "awaiting_check", "b": "pending", "c": "pending"}),
        id="awaiting-its-check-last",
    ),
    pytest.param(
        pipeline_run(job("a", "succeeded"), job("b", "queued"), records=gated(GateState.PASSED)),
        ("running", {"a": "succeeded", "b": "pending", "c": "pending"}),
        id="check-passed",
    ),
    # A failed check drops the next steps' held jobs; retry-latest may still bring them.
    pytest.param(
        pipeline_run(
            job("a", "succeeded"),
            job("b", "cancelled", ran=False, superseded=True),
            records=gated(GateState.FAILED),
        ),
        ("blocked", {"a": "failed", "b": "pending", "c": "pending"}),
        id="check-failed",
    ),
    pytest.param(
        pipeline_run(
            job("a", "succeeded"),
            job("b", "cancelled", ran=False, superseded=True),
            records=gated(GateState.FAILED),
            paused=True,
        ),
        ("paused", {"a": "failed", "b": "pending", "c": "pending"}),
        id="check-failed-then-paused",
    ),
    # Failed CI blocks a step whose own job succeeded (a failed check fails it).
    pytest.param(
        pipeline_run(
            job("a", "succeeded"),
            job("b", "cancelled", ran=False, superseded=True),
            records=gated(GateState.FAILED, CI),
        ),
        ("blocked", {"a": "blocked", "b": "pending", "c": "pending"}),
        id="ci-failed",
    ),
    # Ended, but its gate not open yet (that is the next transaction): under way,
    # never succeeded for a moment.
    pytest.param(
        pipeline_run(attrs.evolve(job("a", "succeeded"), routed=False)),
        ("running", {"a": "running", "b": "pending", "c": "pending"}),
        id="ended-not-routed-yet",
    ),
    pytest.param(
        pipeline_run(SUPERSEDED_FAILURE, job("a", "running", job_id="a-2", at=3.0)),
        ("running", {"a": "running", "b": "pending", "c": "pending"}),
        id="retried",
    ),
    pytest.param(
        pipeline_run(
            SUPERSEDED_FAILURE,
            job("a", "succeeded", job_id="a-2", at=3.0),
            job("b", "succeeded"),
            job("c", "succeeded"),
        ),
        ("succeeded", {"a": "succeeded", "b": "succeeded", "c": "succeeded"}),
        id="retried-and-passed",
    ),
    pytest.param(
        pipeline_run(SUPERSEDED_FAILURE, job("a", "dead", job_id="a-2", at=3.0)),
        ("failed", {"a": "failed", "b": "skipped", "c": "skipped"}),
        id="retried-and-failed-again",
    ),
    # The running job is being stopped: the run is cancelled at once, the step when
    # its job ends.
    pytest.param(
        pipeline_run(job("a", "succeeded"), job("b", "running"), cancelled_at=9.0),
        ("cancelled", {"a": "succeeded", "b": "running", "c": "cancelled"}),
        id="cancelled-while-a-job-runs",
    ),
    pytest.param(
        pipeline_run(job("a", "succeeded"), job("b", "cancelled"), cancelled_at=9.0),
        ("cancelled", {"a": "succeeded", "b": "cancelled", "c": "cancelled"}),
        id="cancelled-its-jobs-ended",
    ),
    pytest.param(
        pipeline_run(
            job("a", "succeeded"),
            job("b", "cancelled", ran=False),
            records=asked(),
            cancelled_at=9.0,
        ),
        ("cancelled", {"a": "succeeded", "b": "cancelled", "c": "cancelled"}),
        id="cancelled-while-awaiting-approval",
    ),
    pytest.param(
        pipeline_run(
            job("a", "succeeded"),
            job("b", "cancelled", ran=False),
            records=gated(GateState.WAITING, CI),
            cancelled_at=9.0,
        ),
        ("cancelled", {"a": "cancelled", "b": "cancelled", "c": "cancelled"}),
        id="cancelled-while-awaiting-ci",
    ),
]


@pytest.mark.parametrize(("run", "expected"), STATES)
def test_a_run_and_its_steps_follow_its_jobs_holds_and_records(
    run: PipelineRun, expected: tuple[str, dict[str, str]]
) -> None:
    assert shown(run) == expected


def test_run_status_agrees_with_the_run_s_view() -> None:
    for case in STATES:
        run = case.values[0]
        assert isinstance(run, PipelineRun)
        cancelled = run.cancelled_at is not None
        status = run_status(run.jobs, run.records, paused=run.paused, cancelled=cancelled)
        assert status is run.status, case.id


def test_a_superseded_job_stays_listed_but_no_longer_dates_its_step() -> None:
    run = pipeline_run(
        job("a", "failed", job_id="a-1", at=1.0, superseded=True),
        job("a", "succeeded", job_id="a-2", at=10.0),
    )
    (first, *_) = run.steps(STEPS)
    assert first.job_ids == ("a-1", "a-2")
    assert (first.status, first.started_at, first.completed_at) == (S.SUCCEEDED, 10.0, 11.0)


def test_a_step_ends_when_its_gate_or_approval_decided_not_when_its_job_did() -> None:
    checking = pipeline_run(job("a", "succeeded"), records=gated(GateState.WAITING))
    assert checking.steps(STEPS)[0].completed_at is None
    failed = pipeline_run(job("a", "succeeded"), records=gated(GateState.FAILED))
    assert failed.steps(STEPS)[0].completed_at == 5.0
    # The rejection (at 4.0) comes after its held job was cancelled (at 3.0).
    rejected = pipeline_run(
        job("b", "cancelled", ran=False, at=2.0), records=asked(approval=REJECTED)
    )
    step = rejected.steps(STEPS)[1]
    assert (step.status, step.started_at, step.completed_at) == (S.FAILED, None, 4.0)
    assert rejected.status is R.FAILED and rejected.completed_at == 4.0


def test_a_step_shows_its_record() -> None:
    records = asked(approval=APPROVED)
    steps = step_progress(STEPS, [job("a", "succeeded"), job("b", "running")], records)
    assert [step.record for step in steps] == [None, records["b"], None]
    assert steps[1].record is not None and steps[1].record.approval == APPROVED


def test_a_cancelled_run_ends_at_its_cancel_while_its_jobs_are_stopped() -> None:
    run = pipeline_run(job("a", "running"), cancelled_at=9.0)
    assert run.status.terminal
    # Ended at the cancel, even though its job is still being stopped.
    assert run.completed_at == 9.0


# -- the steps a decision sees --------------------------------------------------------------


def test_a_decision_sees_the_steps_with_a_job_and_when_each_last_changed() -> None:
    run = pipeline_run(
        job("a", "failed", job_id="a-1", at=1.0, superseded=True),
        job("a", "succeeded", job_id="a-2", at=7.0),
        job("b", "queued", at=9.0, held=Hold.APPROVAL),
        records=asked(),
    )
    states = run.step_states(STEPS)
    # c has no job yet: nothing of it can be started, so it is left out.
    assert [(s.step_id, s.status, s.changed_at) for s in states] == [
        ("a", S.SUCCEEDED, 8.0),
        ("b", S.AWAITING_APPROVAL, 9.0),
    ]


def test_run_next_step_on_a_paused_run_starts_the_held_step() -> None:
    run = pipeline_run(
        job("a", "succeeded"), job("b", "queued", at=3.0, held=Hold.PAUSED), paused=True
    )
    decided = decide(run.status, RunAction.RUN_NEXT_STEP, run.step_states(STEPS))
    assert isinstance(decided, Decision)
    assert decided.status is R.PAUSED
    assert [(e.kind, e.step_id) for e in decided.effects] == [(EffectKind.START_STEP, "b")]


def test_retry_latest_on_a_failed_run_re_runs_the_failed_step_past_the_skipped_ones() -> None:
    run = pipeline_run(job("a", "succeeded"), job("b", "failed", at=3.0))
    assert shown(run) == ("failed", {"a": "succeeded", "b": "failed", "c": "skipped"})
    decided = decide(run.status, RunAction.RETRY_LATEST, run.step_states(STEPS))
    assert isinstance(decided, Decision)
    assert [(e.kind, e.step_id) for e in decided.effects] == [(EffectKind.START_STEP, "b")]


@pytest.mark.parametrize("kind", list(GateKind), ids=lambda k: k.value)
def test_retry_latest_on_a_blocked_run_re_runs_the_step_whose_gate_failed(kind: GateKind) -> None:
    run = pipeline_run(
        job("a", "succeeded"),
        job("b", "cancelled", ran=False, at=5.0, superseded=True),
        records=gated(GateState.FAILED, kind),
    )
    assert run.status is R.BLOCKED
    decided = decide(run.status, RunAction.RETRY_LATEST, run.step_states(STEPS))
    assert isinstance(decided, Decision)
    assert [(e.kind, e.step_id) for e in decided.effects] == [(EffectKind.START_STEP, "a")]


def test_a_blocked_run_paused_is_paused_and_resumes_blocked() -> None:
    blocked = pipeline_run(
        job("a", "succeeded"),
        job("b", "cancelled", ran=False, superseded=True),
        records=gated(GateState.FAILED),
    )
    paused = decide(blocked.status, RunAction.PAUSE, blocked.step_states(STEPS))
    assert isinstance(paused, Decision) and paused.status is R.PAUSED
    held = attrs.evolve(blocked, paused=True)
    assert held.status is R.PAUSED
    resumed = decide(held.status, RunAction.RESUME, held.step_states(STEPS))
    assert isinstance(resumed, Decision), resumed
    assert attrs.evolve(held, paused=False).status is R.BLOCKED


@pytest.mark.parametrize("action", list(RunAction), ids=lambda a: a.value)
def test_a_cancelled_run_refuses_every_action(action: RunAction) -> None:
    run = pipeline_run(job("a", "succeeded"), job("b", "cancelled"), cancelled_at=9.0)
    assert isinstance(decide(run.status, action, run.step_states(STEPS)), Refused)


# -- CI reports -----------------------------------------------------------------------------

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_a_ci_report_shows_its_commit_state_and_source() -> None:
    full = CiSignal(
        sha=SHA, state=CiState.FAILURE, source="github.status", name="ci/lint", url="https://ci/2"
    )
    assert full.to_json() == {
        "sha": SHA,
        "state": "failure",
        "source": "github.status",
        "name": "ci/lint",
        "url": "https://ci/2",
    }
    bare = CiSignal(sha=SHA, state=CiState.PENDING, source="gitlab.pipeline")
    assert bare.to_json() == {
        "sha": SHA,
        "state": "pending",
        "source": "gitlab.pipeline",
        "name": None,
        "url": None,
    }


GITHUB_RUNS = [
    ("completed", "success", CiState.SUCCESS),
    ("completed", "neutral", CiState.SUCCESS),
    ("completed", "skipped", CiState.SUCCESS),
    ("completed", "failure", CiState.FAILURE),
    ("completed", "cancelled", CiState.FAILURE),
    ("completed", "timed_out", CiState.FAILURE),
    ("completed", "action_required", CiState.FAILURE),
    ("completed", "stale", CiState.FAILURE),
    ("completed", "startup_failure", CiState.FAILURE),
    # Completed, yet it cannot say it passed.
    ("completed", None, CiState.FAILURE),
    ("queued", None, CiState.PENDING),
    ("in_progress", None, CiState.PENDING),
    ("requested", None, CiState.PENDING),
    ("waiting", None, CiState.PENDING),
    # Only a completed run's conclusion counts.
    ("in_progress", "failure", CiState.PENDING),
]


@pytest.mark.parametrize("event", ["check_suite", "workflow_run"])
@pytest.mark.parametrize(("status", "conclusion", "state"), GITHUB_RUNS)
def test_a_github_suite_or_workflow_passes_only_on_a_passing_conclusion(
    event: str, status: str, conclusion: str | None, state: CiState
) -> None:
    item: dict[str, Any] = {"head_sha": SHA, "status": status}
    if conclusion is not None:
        item["conclusion"] = conclusion
    signal = ci_signal(event, {"action": "completed", event: item})
    assert signal == CiSignal(sha=SHA, state=state, source=f"github.{event}")


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("success", CiState.SUCCESS),
        ("failure", CiState.FAILURE),
        ("error", CiState.FAILURE),
        ("pending", CiState.PENDING),
        ("unknown", CiState.PENDING),
    ],
)
def test_a_github_commit_status_decides_on_success_failure_or_error(
    state: str, expected: CiState
) -> None:
    signal = ci_signal("status", {"sha": SHA.upper(), "state": state})
    assert signal == CiSignal(sha=SHA, state=expected, source="github.status")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("success", CiState.SUCCESS),
        ("failed", CiState.FAILURE),
        ("canceled", CiState.FAILURE),
        ("created", CiState.PENDING),
        ("waiting_for_resource", CiState.PENDING),
        ("preparing", CiState.PENDING),
        ("pending", CiState.PENDING),
        ("running", CiState.PENDING),
        ("manual", CiState.PENDING),
        ("scheduled", CiState.PENDING),
        ("canceling", CiState.PENDING),
    ],
)
def test_a_gitlab_pipeline_decides_once_it_ended(status: str, expected: CiState) -> None:
    payload = {
        "object_kind": "pipeline",
        "object_attributes": {"sha": SHA.upper(), "status": status},
    }
    signal = ci_signal("Pipeline Hook", payload)
    assert signal == CiSignal(sha=SHA, state=expected, source="gitlab.pipeline")


def test_a_ci_report_is_named_by_its_workflow_its_app_or_its_pipeline() -> None:
    both = {"head_sha": SHA, "status": "queued", "name": "CI", "app": {"name": "Actions"}}
    workflow = ci_signal("workflow_run", {"workflow_run": both})
    assert workflow is not None and workflow.name == "CI"
    unnamed = {**both, "name": ""}
    suite = ci_signal("check_suite", {"check_suite": unnamed})
    assert suite is not None and suite.name == "Actions"
    nameless = ci_signal("check_suite", {"check_suite": {**unnamed, "app": "Actions"}})
    assert nameless is not None and nameless.name is None
    attributes = {"sha": SHA, "status": "running", "ref": "main", "url": "https://gl/p/1"}
    pipeline = {"object_kind": "pipeline", "object_attributes": attributes}
    by_ref = ci_signal("Pipeline Hook", pipeline)
    assert by_ref is not None and (by_ref.name, by_ref.url) == ("main", "https://gl/p/1")
    named = {**pipeline, "object_attributes": {**attributes, "name": "nightly"}}
    by_name = ci_signal("Pipeline Hook", named)
    assert by_name is not None and by_name.name == "nightly"


@pytest.mark.parametrize(
    ("sha", "matched"),
    [
        ("f" * 64, "f" * 64),
        ("ABCDEF" + "0" * 34, "abcdef" + "0" * 34),
        (SHA[:7], None),
        (SHA + "0", None),
        ("g" * 40, None),
        (None, None),
        (12345, None),
    ],
    ids=["sha-256", "upper-case", "short", "41-digits", "not-hex", "missing", "a-number"],
)
def test_a_ci_report_names_a_whole_commit_or_none(sha: object, matched: str | None) -> None:
    reports = [
        ci_signal("check_suite", {"check_suite": {"head_sha": sha, "status": "queued"}}),
        ci_signal("workflow_run", {"workflow_run": {"head_sha": sha, "status": "queued"}}),
        ci_signal("status", {"sha": sha, "state": "pending"}),
        ci_signal(
            "Pipeline Hook",
            {"object_kind": "pipeline", "object_attributes": {"sha": sha, "status": "running"}},
        ),
    ]
    assert [None if r is None else r.sha for r in reports] == [matched] * 4
