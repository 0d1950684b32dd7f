"""The decisions of runs, without I/O: actions on every state, approvals, checks, CI."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from chamberlain.runs import (
    TIMEOUT_ACTOR,
    Approval,
    ApprovalSpec,
    CiSignal,
    CiState,
    Decision,
    Effect,
    EffectKind,
    JobMark,
    PipelineRun,
    Refused,
    RunAction,
    RunStatus,
    StepState,
    StepStatus,
    Unchanged,
    Verdict,
    check_verdict,
    ci_signal,
    decide,
    decide_approval,
    run_status,
    settled_status,
    step_progress,
    timeout_at,
)

S = StepStatus
#: A two-step run as it stands in each status.
STEPS: dict[RunStatus, tuple[StepState, ...]] = {
    status: (StepState(step_id="a", status=a), StepState(step_id="b", status=b))
    for status, (a, b) in {
        RunStatus.PENDING: (S.PENDING, S.PENDING),
        RunStatus.RUNNING: (S.RUNNING, S.PENDING),
        RunStatus.PAUSED: (S.SUCCEEDED, S.PENDING),
        RunStatus.AWAITING_APPROVAL: (S.SUCCEEDED, S.AWAITING_APPROVAL),
        RunStatus.BLOCKED: (S.BLOCKED, S.PENDING),
        RunStatus.SUCCEEDED: (S.SUCCEEDED, S.SUCCEEDED),
        RunStatus.FAILED: (S.FAILED, S.PENDING),
        RunStatus.CANCELLED: (S.CANCELLED, S.CANCELLED),
    }.items()
}
R = RunStatus
A = RunAction
NO = None  # refused: 409
#: Every pair of state and action: the run's status after it, or NO, and the step
#: it starts (run-next-step, retry-latest).
TABLE: dict[tuple[RunStatus, RunAction], tuple[RunStatus | None, str | None]] = {
    (R.PENDING, A.PAUSE): (R.PAUSED, None),
    (R.RUNNING, A.PAUSE): (R.PAUSED, None),
    (R.PAUSED, A.PAUSE): (NO, None),
    (R.AWAITING_APPROVAL, A.PAUSE): (R.PAUSED, None),
    (R.BLOCKED, A.PAUSE): (R.PAUSED, None),
    (R.SUCCEEDED, A.PAUSE): (NO, None),
    (R.FAILED, A.PAUSE): (NO, None),
    (R.CANCELLED, A.PAUSE): (NO, None),
    (R.PENDING, A.RESUME): (NO, None),
    (R.RUNNING, A.RESUME): (NO, None),
    (R.PAUSED, A.RESUME): (R.RUNNING, None),
    (R.AWAITING_APPROVAL, A.RESUME): (NO, None),
    (R.BLOCKED, A.RESUME): (NO, None),
    (R.SUCCEEDED, A.RESUME): (NO, None),
    (R.FAILED, A.RESUME): (NO, None),
    (R.CANCELLED, A.RESUME): (NO, None),
    (R.PENDING, A.CANCEL): (R.CANCELLED, None),
    (R.RUNNING, A.CANCEL): (R.CANCELLED, None),
    (R.PAUSED, A.CANCEL): (R.CANCELLED, None),
    (R.AWAITING_APPROVAL, A.CANCEL): (R.CANCELLED, None),
    (R.BLOCKED, A.CANCEL): (R.CANCELLED, None),
    (R.SUCCEEDED, A.CANCEL): (NO, None),
    (R.FAILED, A.CANCEL): (NO, None),
    (R.CANCELLED, A.CANCEL): (NO, None),
    (R.PENDING, A.RUN_NEXT_STEP): (R.RUNNING, "a"),
    (R.RUNNING, A.RUN_NEXT_STEP): (R.RUNNING, "b"),
    (R.PAUSED, A.RUN_NEXT_STEP): (R.PAUSED, "b"),
    (R.AWAITING_APPROVAL, A.RUN_NEXT_STEP): (NO, None),
    (R.BLOCKED, A.RUN_NEXT_STEP): (R.RUNNING, "a"),
    (R.SUCCEEDED, A.RUN_NEXT_STEP): (NO, None),
    (R.FAILED, A.RUN_NEXT_STEP): (NO, None),
    (R.CANCELLED, A.RUN_NEXT_STEP): (NO, None),
    (R.PENDING, A.RETRY_LATEST): (NO, None),
    (R.RUNNING, A.RETRY_LATEST): (NO, None),
    (R.PAUSED, A.RETRY_LATEST): (NO, None),
    (R.AWAITING_APPROVAL, A.RETRY_LATEST): (NO, None),
    (R.BLOCKED, A.RETRY_LATEST): (R.RUNNING, "a"),
    (R.SUCCEEDED, A.RETRY_LATEST): (NO, None),
    (R.FAILED, A.RETRY_LATEST): (R.RUNNING, "a"),
    (R.CANCELLED, A.RETRY_LATEST): (NO, None),
}


def test_the_table_covers_every_pair_of_state_and_action() -> None:
    assert set(TABLE) == {(status, action) for status in RunStatus for action in RunAction}


@pytest.mark.parametrize(("status", "action"), list(TABLE), ids=lambda v: v.value)
def test_every_action_on_every_state(status: RunStatus, action: RunAction) -> None:
    after, started = TABLE[status, action]
    decided = decide(status, action, STEPS[status])
    if after is None:
        assert isinstance(decided, Refused), decided
        assert decided.reason
        return
    assert isinstance(decided, Decision), decided
    assert decided.status is after
    assert decided.message
    starts = [e.step_id for e in decided.effects if e.kind is EffectKind.START_STEP]
    assert starts == ([] if started is None else [started])


def test_a_pause_stops_the_running_step_only_when_asked() -> None:
    steps = (StepState(step_id="a", status=S.RUNNING), StepState(step_id="b", status=S.PENDING))
    plain = decide(R.RUNNING, A.PAUSE, steps)
    assert isinstance(plain, Decision) and plain.effects == ()
    stopping = decide(R.RUNNING, A.PAUSE, steps, stop_running=True)
    assert isinstance(stopping, Decision)
    assert stopping.effects == (Effect(kind=EffectKind.STOP_STEP, step_id="a"),)
    assert "a stopped, to run again on resume" in stopping.message


def test_a_resume_starts_what_is_due_and_settles_the_status() -> None:
    decided = decide(R.PAUSED, A.RESUME, STEPS[R.AWAITING_APPROVAL])
    assert isinstance(decided, Decision)
    assert decided.status is R.AWAITING_APPROVAL
    assert decided.effects == (Effect(kind=EffectKind.START_DUE),)


def test_a_cancel_stops_every_active_step_then_the_rest() -> None:
    steps = (
        StepState(step_id="a", status=S.SUCCEEDED),
        StepState(step_id="b", status=S.RUNNING),
        StepState(step_id="c", status=S.AWAITING_CHECK),
        StepState(step_id="d", status=S.PENDING),
    )
    decided = decide(R.RUNNING, A.CANCEL, steps)
    assert isinstance(decided, Decision)
    assert decided.effects == (
        Effect(kind=EffectKind.STOP_STEP, step_id="b"),
        Effect(kind=EffectKind.STOP_STEP, step_id="c"),
        Effect(kind=EffectKind.CANCEL_REST),
    )


def test_retry_latest_picks_the_step_that_failed_last() -> None:
    steps = (
        StepState(step_id="a", status=S.FAILED, changed_at=10.0),
        StepState(step_id="b", status=S.BLOCKED, changed_at=20.0),
        StepState(step_id="c", status=S.FAILED, changed_at=15.0),
    )
    decided = decide(R.BLOCKED, A.RETRY_LATEST, steps)
    assert isinstance(decided, Decision)
    assert decided.effects == (Effect(kind=EffectKind.START_STEP, step_id="b"),)
    paused = decide(R.PAUSED, A.RETRY_LATEST, steps)
    assert isinstance(paused, Decision) and paused.status is R.PAUSED


@pytest.mark.parametrize(
    ("statuses", "settled"),
    [
        ((), R.PENDING),
        ((S.PENDING, S.PENDING), R.PENDING),
        ((S.SUCCEEDED, S.PENDING), R.RUNNING),
        ((S.RUNNING, S.PENDING), R.RUNNING),
        ((S.SUCCEEDED, S.AWAITING_CHECK), R.RUNNING),
        ((S.SUCCEEDED, S.AWAITING_APPROVAL), R.AWAITING_APPROVAL),
        ((S.BLOCKED, S.PENDING), R.BLOCKED),
        ((S.FAILED, S.PENDING), R.FAILED),
        ((S.SUCCEEDED, S.SKIPPED), R.SUCCEEDED),
        # An approval waited for outranks a failure elsewhere: a person has a say.
        ((S.FAILED, S.AWAITING_APPROVAL), R.AWAITING_APPROVAL),
    ],
)
def test_a_run_s_status_follows_its_steps(
    statuses: tuple[StepStatus, ...], settled: RunStatus
) -> None:
    steps = [StepState(step_id=str(i), status=s) for i, s in enumerate(statuses)]
    assert settled_status(steps) is settled


def word(verdict: Verdict, by: str = "token:alice", at: float = 100.0) -> Approval:
    return Approval(verdict=verdict, by=by, at=at, comment="ok", inputs={"env": "prod"})


def test_an_approval_is_decided_once() -> None:
    approve, reject = word(Verdict.APPROVE), word(Verdict.REJECT, by="token:bob")
    assert decide_approval(S.AWAITING_APPROVAL, None, approve) == approve
    assert decide_approval(S.AWAITING_APPROVAL, None, reject) == reject
    # The same word again changes nothing: the first one stands, who and when.
    again = decide_approval(S.RUNNING, approve, word(Verdict.APPROVE, by="token:carol", at=200))
    assert again == Unchanged(approval=approve)
    # The other word is refused, naming who decided.
    late = decide_approval(S.FAILED, reject, approve)
    assert (
        isinstance(late, Refused) and late.reason == "the step was rejected already, by token:bob"
    )
    # A step that awaits no approval takes none.
    for status in StepStatus:
        if status is not S.AWAITING_APPROVAL:
            refused = decide_approval(status, None, approve)
            assert isinstance(refused, Refused), status
            assert refused.reason == f"the step is {status.value}, not awaiting approval"


def test_a_timeout_never_undoes_a_person_s_decision() -> None:
    spec = ApprovalSpec(timeout=86400.0, on_timeout=Verdict.REJECT)
    assert timeout_at(spec, 1000.0) == 87400.0
    assert timeout_at(ApprovalSpec(), 1000.0) is None
    person = word(Verdict.APPROVE)
    timer = Approval(verdict=spec.on_timeout, by=TIMEOUT_ACTOR, at=87400.0)
    # Whichever is recorded first decides; the other comes to nothing.
    assert isinstance(decide_approval(S.RUNNING, person, timer), Refused)
    assert decide_approval(S.AWAITING_APPROVAL, None, timer) == timer
    assert isinstance(decide_approval(S.FAILED, timer, person), Refused)
    timer_approves = Approval(verdict=Verdict.APPROVE, by=TIMEOUT_ACTOR, at=87400.0)
    assert decide_approval(S.RUNNING, person, timer_approves) == Unchanged(approval=person)
    assert person.to_json() == {
        "decision": "approved",
        "by": "token:alice",
        "at": 100.0,
        "comment": "ok",
        "inputs": {"env": "prod"},
    }


@pytest.mark.parametrize(
    ("result", "passed", "notes"),
    [
        ({"verdict": "pass", "notes": "12 tests"}, True, "12 tests"),
        ({"verdict": "fail", "notes": "2 failures"}, False, "2 failures"),
        ({"verdict": "fail"}, False, ""),
        ({"verdict": "maybe"}, False, "the check's verdict is 'maybe', not 'pass' or 'fail'"),
        ({"notes": "x"}, False, "the check's verdict is None, not 'pass' or 'fail': x"),
        ("pass", False, "the check answered no verdict"),
        (None, False, "the check answered no verdict"),
    ],
)
def test_a_check_s_verdict(result: object, passed: bool, notes: str) -> None:
    verdict = check_verdict(result)
    assert (verdict.passed, verdict.notes) == (passed, notes)


SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("event", "payload", "expected"),
    [
        (
            "check_suite",
            {
                "action": "completed",
                "check_suite": {
                    "head_sha": SHA,
                    "status": "completed",
                    "conclusion": "success",
                    "app": {"name": "GitHub Actions"},
                },
            },
            CiSignal(
                sha=SHA, state=CiState.SUCCESS, source="github.check_suite", name="GitHub Actions"
            ),
        ),
        (
            "check_suite",
            {
                "check_suite": {
                    "head_sha": SHA.upper(),
                    "status": "completed",
                    "conclusion": "timed_out",
                }
            },
            CiSignal(sha=SHA, state=CiState.FAILURE, source="github.check_suite"),
        ),
        (
            "check_suite",
            {"action": "requested", "check_suite": {"head_sha": SHA, "status": "queued"}},
            CiSignal(sha=SHA, state=CiState.PENDING, source="github.check_suite"),
        ),
        (
            "workflow_run",
            {
                "workflow_run": {
                    "head_sha": SHA,
                    "name": "CI",
                    "status": "completed",
                    "conclusion": "skipped",
                    "html_url": "https://github.com/o/r/actions/runs/1",
                }
            },
            CiSignal(
                sha=SHA,
                state=CiState.SUCCESS,
                source="github.workflow_run",
                name="CI",
                url="https://github.com/o/r/actions/runs/1",
            ),
        ),
        (
            "status",
            {"sha": SHA, "state": "error", "context": "ci/build", "target_url": "https://ci/1"},
            CiSignal(
                sha=SHA,
                state=CiState.FAILURE,
                source="github.status",
                name="ci/build",
                url="https://ci/1",
            ),
        ),
        (
            "status",
            {"sha": SHA, "state": "pending"},
            CiSignal(sha=SHA, state=CiState.PENDING, source="github.status"),
        ),
        (
            "Pipeline Hook",
            {
                "object_kind": "pipeline",
                "object_attributes": {"sha": SHA, "status": "failed", "ref": "feature-x"},
            },
            CiSignal(sha=SHA, state=CiState.FAILURE, source="gitlab.pipeline", name="feature-x"),
        ),
        (
            "Pipeline Hook",
            {"object_kind": "pipeline", "object_attributes": {"sha": SHA, "status": "skipped"}},
            CiSignal(sha=SHA, state=CiState.PENDING, source="gitlab.pipeline"),
        ),
        # No commit to match a run by, or no CI report at all.
        ("check_suite", {"check_suite": {"head_sha": "main", "status": "completed"}}, None),
        ("status", {"state": "success"}, None),
        ("Pipeline Hook", {"object_kind": "push", "object_attributes": {"sha": SHA}}, None),
        ("push", {"after": SHA}, None),
        ("workflow_run", {"workflow_run": "nope"}, None),
    ],
)
def test_a_ci_webhook_names_its_commit_and_state(
    event: str, payload: dict[str, Any], expected: CiSignal | None
) -> None:
    assert ci_signal(event, payload) == expected


def mark(
    step: str | None,
    status: str,
    *,
    routed: bool = True,
    started: float | None = 1.0,
    completed: float | None = 2.0,
    job: str = "",
) -> JobMark:
    return JobMark(
        job_id=job or f"{step}-{status}",
        step_id=step,
        status=status,
        routed=routed,
        started_at=started,
        completed_at=completed if status not in ("queued", "running") else None,
    )


def test_a_run_is_pending_until_a_job_starts_and_running_until_all_settle() -> None:
    assert run_status([mark("a", "queued", started=None)]) is R.PENDING
    assert run_status([mark("a", "running")]) is R.RUNNING
    # Succeeded, but what it sets in motion is not stored yet: more may come.
    assert run_status([mark("a", "succeeded", routed=False)]) is R.RUNNING
    assert run_status([mark("a", "succeeded"), mark("b", "queued", started=None)]) is R.RUNNING
    # A failure while another branch still runs: under way until that one settles.
    assert run_status([mark("a", "failed"), mark("b", "running")]) is R.RUNNING
    assert run_status([mark("a", "succeeded"), mark("b", "succeeded")]) is R.SUCCEEDED
    assert run_status([mark("a", "succeeded"), mark("b", "dead")]) is R.FAILED
    assert run_status([mark("a", "timed_out")]) is R.FAILED
    # A cancelled job is never routed: it settles as it ends.
    assert run_status([mark("a", "cancelled", routed=False)]) is R.CANCELLED


def test_a_run_s_steps_are_its_pipeline_s_in_order_with_their_jobs() -> None:
    jobs = [
        mark("fetch", "succeeded", job="j1", started=5.0, completed=6.0),
        mark("notify", "succeeded", job="j3", started=9.0, completed=10.0),
        mark("build", "succeeded", job="j2", started=7.0, completed=8.0),
        mark("build", "running", job="j4", started=7.5),
        mark("called", "queued", job="j5", started=None),
    ]
    steps = step_progress(["fetch", "build", "test", "notify"], jobs)
    assert [(s.step_id, s.status, s.job_ids) for s in steps] == [
        ("fetch", S.SUCCEEDED, ("j1",)),
        ("build", S.RUNNING, ("j2", "j4")),
        ("test", S.PENDING, ()),
        ("notify", S.SUCCEEDED, ("j3",)),
        # A step of a called pipeline, after the run's own.
        ("called", S.PENDING, ("j5",)),
    ]
    build = steps[1]
    assert (build.started_at, build.completed_at) == (7.0, None)
    assert (steps[0].started_at, steps[0].completed_at) == (5.0, 6.0)
    # Once nothing more can come, a step never reached was skipped.
    done = step_progress(["fetch", "test"], [mark("fetch", "succeeded")])
    assert [(s.step_id, s.status) for s in done] == [("fetch", S.SUCCEEDED), ("test", S.SKIPPED)]


def test_a_run_s_times() -> None:
    run = PipelineRun(
        run_id="r",
        pipeline="p",
        created_at=1.0,
        jobs=(
            mark("a", "succeeded", started=3.0, completed=4.0),
            mark("b", "running", started=5.0),
        ),
    )
    assert (run.status, run.started_at, run.completed_at) == (R.RUNNING, 3.0, None)
    ended = attrs.evolve(run, jobs=(mark("a", "succeeded", started=3.0, completed=4.0),))
    assert (ended.status, ended.completed_at) == (R.SUCCEEDED, 4.0)
