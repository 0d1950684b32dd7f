"""catch_up, if_running and the circuit breaker, as plain decisions."""

from __future__ import annotations

import pytest

from chamberlain.records import JobStatus
from chamberlain.schedule.breaker import (
    TRANSITIONS_KEPT,
    Breaker,
    BreakerPolicy,
    BreakerState,
)
from chamberlain.schedule.policy import (
    CATCH_UP_LIMIT,
    MISFIRE_GRACE,
    CatchUp,
    Fire,
    IfRunning,
    place,
    sort_backlog,
)

START = 1_000_000.0
POLICY = BreakerPolicy(threshold=3, reset_after=1800.0)


# -- catch_up ---------------------------------------------------------------------------------

MISSED = [START - 300, START - 200, START - 100]  # fell due while the daemon was down


def test_skip_runs_none_of_the_missed_fires() -> None:
    b = sort_backlog(MISSED, now=START + 1, started_at=START, due_at=float, policy=CatchUp.SKIP)
    assert b.runs == ()
    assert b.dropped == tuple(MISSED)


def test_run_once_runs_one_for_all_of_them_carrying_the_latest() -> None:
    b = sort_backlog(MISSED, now=START + 1, started_at=START, due_at=float, policy=CatchUp.RUN_ONCE)
    assert b.runs == (Fire(START - 100, late=True),)
    assert b.dropped == (START - 300, START - 200)


def test_run_all_runs_each_missed_fire_in_order() -> None:
    b = sort_backlog(MISSED, now=START + 1, started_at=START, due_at=float, policy=CatchUp.RUN_ALL)
    assert b.runs == tuple(Fire(f, late=True) for f in MISSED)
    assert b.dropped == ()


def test_run_all_is_bounded() -> None:
    many = [START - 10_000 + i for i in range(CATCH_UP_LIMIT + 50)]
    b = sort_backlog(
        many, now=START + 1, started_at=START, due_at=float, policy=CatchUp.RUN_ALL, more=True
    )
    assert len(b.runs) == CATCH_UP_LIMIT
    assert b.runs[-1] == Fire(many[-1], late=True)  # the most recent ones
    assert len(b.dropped) == 50
    assert b.more_missed


@pytest.mark.parametrize("policy", list(CatchUp))
def test_fires_handled_on_time_always_run(policy: CatchUp) -> None:
    due = [START + 60]
    b = sort_backlog(due, now=START + 60.004, started_at=START, due_at=float, policy=policy)
    assert b.runs == (Fire(START + 60),)
    assert b.dropped == ()


@pytest.mark.parametrize("policy", list(CatchUp))
def test_a_fire_handled_past_the_grace_counts_as_missed(policy: CatchUp) -> None:
    # The daemon was up, but the machine slept through the fire.
    late = START + 500
    now = late + MISFIRE_GRACE + 1
    b = sort_backlog([late], now=now, started_at=START, due_at=float, policy=policy)
    if policy is CatchUp.SKIP:
        assert b.runs == ()
    else:
        assert b.runs == (Fire(late, late=True),)


def test_missed_and_on_time_fires_together() -> None:
    due = [*MISSED, START + 5]
    b = sort_backlog(due, now=START + 5.1, started_at=START, due_at=float, policy=CatchUp.RUN_ONCE)
    assert b.runs == (Fire(START - 100, late=True), Fire(START + 5))


def test_jitter_counts_towards_lateness() -> None:
    # Nominally 70 s ago, but jittered to 20 s ago: on time.
    nominal = START + 1000
    b = sort_backlog(
        [nominal],
        now=nominal + 70,
        started_at=START,
        due_at=lambda f: f + 50,
        policy=CatchUp.SKIP,
    )
    assert b.runs == (Fire(nominal),)


# -- if_running ---------------------------------------------------------------------------------

NEW = Fire(START)


def test_room_means_enqueue_whatever_the_policy() -> None:
    for policy in IfRunning:
        assert place(policy, [NEW], outstanding=0, max_outstanding=1).enqueue == (NEW,)
        assert place(policy, [NEW], outstanding=2, max_outstanding=3).enqueue == (NEW,)


def test_skip_drops_the_fire_while_max_outstanding_jobs_stand() -> None:
    p = place(IfRunning.SKIP, [NEW], outstanding=1, max_outstanding=1)
    assert p.enqueue == ()
    assert p.skipped == (NEW,)
    assert p.cancel == 0


def test_skip_fills_the_room_there_is_and_drops_the_rest() -> None:
    fires = [Fire(START + i) for i in range(4)]
    p = place(IfRunning.SKIP, fires, outstanding=1, max_outstanding=3)
    assert p.enqueue == tuple(fires[:2])
    assert p.skipped == tuple(fires[2:])


def test_queue_keeps_the_fire_until_there_is_room() -> None:
    p = place(IfRunning.QUEUE, [NEW], outstanding=1, max_outstanding=1)
    assert p.enqueue == ()
    assert p.owed == (NEW,)
    # Kept fires come first next time, in order.
    older = Fire(START - 60)
    p = place(IfRunning.QUEUE, [older, NEW], outstanding=0, max_outstanding=1)
    assert p.enqueue == (older,)
    assert p.owed == (NEW,)


def test_queue_is_bounded() -> None:
    fires = [Fire(START + i) for i in range(10)]
    p = place(IfRunning.QUEUE, fires, outstanding=1, max_outstanding=1, owed_limit=3)
    assert p.owed == tuple(fires[-3:])
    assert p.skipped == tuple(fires[:-3])


def test_cancel_cancels_the_oldest_and_keeps_the_newest_fire() -> None:
    p = place(IfRunning.CANCEL, [NEW], outstanding=1, max_outstanding=1)
    assert p.cancel == 1
    assert p.owed == (NEW,)
    assert p.enqueue == ()
    # Already being cancelled: nothing more to cancel.
    assert (
        place(IfRunning.CANCEL, [NEW], outstanding=1, max_outstanding=1, cancelling=1).cancel == 0
    )
    # Older fires waiting are superseded by the newest.
    older = Fire(START - 60)
    p = place(IfRunning.CANCEL, [older, NEW], outstanding=1, max_outstanding=1)
    assert p.owed == (NEW,)
    assert p.skipped == (older,)


@pytest.mark.parametrize("policy", list(IfRunning))
def test_catch_up_runs_wait_their_turn_whatever_the_policy(policy: IfRunning) -> None:
    missed = [Fire(START - 300 + i, late=True) for i in range(3)]
    p = place(policy, missed, outstanding=0, max_outstanding=1)
    assert p.enqueue == (missed[0],)
    assert p.owed == tuple(missed[1:])
    assert p.skipped == ()
    assert p.cancel == 0


def test_a_fresh_fire_behind_waiting_catch_up_runs_follows_the_policy() -> None:
    waiting = [Fire(START - 60, late=True)]
    p = place(IfRunning.SKIP, [*waiting, NEW], outstanding=1, max_outstanding=1)
    assert p.owed == tuple(waiting)
    assert p.skipped == (NEW,)
    p = place(IfRunning.QUEUE, [*waiting, NEW], outstanding=1, max_outstanding=1)
    assert p.owed == (*waiting, NEW)


def test_cancel_with_several_allowed_makes_one_place() -> None:
    p = place(IfRunning.CANCEL, [NEW], outstanding=3, max_outstanding=3)
    assert p.cancel == 1


# -- the circuit breaker ------------------------------------------------------------------------


def fail(
    breaker: Breaker, now: float, job: str = "j", status: JobStatus = JobStatus.FAILED
) -> Breaker:
    return breaker.record(job_id=job, status=status, error="boom", now=now, policy=POLICY)


def succeed(breaker: Breaker, now: float, job: str = "j") -> Breaker:
    return breaker.record(
        job_id=job, status=JobStatus.SUCCEEDED, error=None, now=now, policy=POLICY
    )


def opened(now: float = START) -> Breaker:
    b = Breaker()
    for i in range(3):
        b = fail(b, now, f"j{i}")
    return b


def test_closed_opens_after_threshold_consecutive_failures() -> None:
    b = fail(fail(Breaker(), START), START + 1, status=JobStatus.TIMED_OUT)
    assert b.state is BreakerState.CLOSED
    assert b.failures == 2
    assert b.admits(POLICY)
    b = fail(b, START + 2, "j3", status=JobStatus.DEAD)
    assert b.state is BreakerState.OPEN
    assert b.opened_at == START + 2
    assert not b.admits(POLICY)
    (step,) = b.transitions
    assert (step.source, step.target, step.at) == (
        BreakerState.CLOSED,
        BreakerState.OPEN,
        START + 2,
    )
    assert "3 consecutive" in step.reason
    assert "job j3 dead: boom" in step.reason


def test_a_success_resets_the_count() -> None:
    b = succeed(fail(fail(Breaker(), START), START), START)
    assert b.failures == 0
    b = fail(fail(b, START), START)
    assert b.state is BreakerState.CLOSED


def test_cancelled_jobs_do_not_count() -> None:
    b = fail(fail(Breaker(), START), START)
    b = b.record(job_id="c", status=JobStatus.CANCELLED, error=None, now=START, policy=POLICY)
    assert b.failures == 2
    b = succeed(b, START)
    assert b.failures == 0


def test_open_turns_half_open_after_reset_after_and_admits_one_probe() -> None:
    b = opened()
    assert b.probe_at(POLICY) == START + 1800
    assert b.tick(START + 1799, POLICY) is b
    b = b.tick(START + 1800, POLICY)
    assert b.state is BreakerState.HALF_OPEN
    assert "reset_after (30m)" in b.transitions[-1].reason
    assert b.admits(POLICY)
    b = b.probing("probe")
    assert not b.admits(POLICY)  # one probe at a time


def test_half_open_closes_when_the_probe_succeeds() -> None:
    b = opened().tick(START + 1800, POLICY).probing("probe")
    b = succeed(b, START + 1810, "probe")
    assert b.state is BreakerState.CLOSED
    assert b.failures == 0
    assert b.opened_at is None
    assert b.admits(POLICY)
    assert [(t.source, t.target) for t in b.transitions] == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    assert "probe succeeded" in b.transitions[-1].reason


def test_half_open_reopens_when_the_probe_fails() -> None:
    b = opened().tick(START + 1800, POLICY).probing("probe")
    b = fail(b, START + 1810, "probe")
    assert b.state is BreakerState.OPEN
    assert b.opened_at == START + 1810  # the wait starts again
    assert b.probe_at(POLICY) == START + 1810 + 1800
    assert "probe failed" in b.transitions[-1].reason


def test_a_cancelled_probe_frees_the_probe_slot() -> None:
    b = opened().tick(START + 1800, POLICY).probing("probe")
    b = b.record(
        job_id="probe", status=JobStatus.CANCELLED, error=None, now=START + 1801, policy=POLICY
    )
    assert b.state is BreakerState.HALF_OPEN
    assert b.admits(POLICY)


def test_outcomes_while_open_do_not_close_it() -> None:
    b = succeed(opened(), START + 10, "late")
    assert b.state is BreakerState.OPEN


def test_reset_closes_from_any_state_and_says_who() -> None:
    b = opened().reset(now=START + 5, reason="reset by token:ops")
    assert b.state is BreakerState.CLOSED
    assert b.failures == 0
    assert b.transitions[-1].reason == "reset by token:ops"
    half = opened().tick(START + 1800, POLICY).reset(now=START + 1801, reason="r")
    assert half.state is BreakerState.CLOSED
    # Closed already: the count goes back to zero, no transition is recorded.
    closed = fail(Breaker(), START).reset(now=START, reason="r")
    assert closed.failures == 0
    assert closed.transitions == ()


def test_a_disabled_breaker_never_opens() -> None:
    off = BreakerPolicy(enabled=False)
    b = Breaker()
    for i in range(10):
        b = b.record(job_id=f"j{i}", status=JobStatus.FAILED, error=None, now=START, policy=off)
    assert b.state is BreakerState.CLOSED
    assert b.admits(off)


def test_transitions_are_bounded() -> None:
    b = Breaker()
    for i in range(TRANSITIONS_KEPT + 5):
        for j in range(3):
            b = fail(b, START + i, f"{i}-{j}")
        b = b.reset(now=START + i, reason=f"reset {i}")
    assert len(b.transitions) == TRANSITIONS_KEPT
    assert b.transitions[-1].reason == f"reset {TRANSITIONS_KEPT + 4}"
