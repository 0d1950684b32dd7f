"""What each JobStore request says follows its commit: plain functions of its result."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from fakes import stored_job, succeeded_outcome

from chamberlain.actors.mail import (
    NO_EFFECTS,
    CancelQueued,
    Claim,
    ClaimResult,
    CommitSchedules,
    DueCallbacks,
    Effects,
    Enqueue,
    EnqueuePlan,
    EnqueueWebhook,
    GetCallbacks,
    GetJob,
    GetMessages,
    GetQueue,
    GetStatusChanges,
    GetTree,
    JobStatuses,
    ListJobs,
    LoadSchedules,
    OutstandingJobs,
    QueueDepth,
    RecordCallbackAttempt,
    RecordOutput,
    RecoverOrphans,
    RouteSettled,
    RunningJobs,
    Settle,
    StoreRequest,
    TreePending,
    WaitJob,
)
from chamberlain.actors.mailbox import ReplyTo
from chamberlain.callback_rules import CallbackState
from chamberlain.records import Enqueued, JobFilter, JobStatus, MessageKind, NewJob, RoutePlan
from chamberlain.retry import RetryPolicy

RUNNING = stored_job(id="run", status=JobStatus.RUNNING)
QUEUED = stored_job(id="q", status=JobStatus.QUEUED)
SUCCEEDED = stored_job(id="ok", status=JobStatus.SUCCEEDED)
DEAD = stored_job(id="dead", status=JobStatus.DEAD)
CANCELLED = stored_job(id="gone", status=JobStatus.CANCELLED)


def reply() -> ReplyTo[Any]:
    send, _ = trio.open_memory_channel[Any](1)
    return ReplyTo(send)


def settle() -> Settle:
    return Settle(
        job_id="j1", attempt=1, outcome=succeeded_outcome(), policy=RetryPolicy(), reply=reply()
    )


def enqueued() -> tuple[Enqueued, ...]:
    return (Enqueued(job=QUEUED),)


READ_ONLY: list[tuple[StoreRequest[Any], Any]] = [
    (Claim(capacity={"a": 1}, limit=1, reply=reply()), ClaimResult(jobs=(), next_due=None)),
    (GetJob(job_id="q", reply=reply()), QUEUED),
    (ListJobs(filter=JobFilter(), reply=reply()), ((DEAD,), 1)),
    (QueueDepth(reply=reply()), 3),
    (RunningJobs(reply=reply()), (RUNNING,)),
    (TreePending(root_ids=("q",), reply=reply()), {"q": 0}),
    (GetTree(job_id="q", reply=reply()), None),
    (RecordOutput(job_id="run", lines=((1.0, "x", MessageKind.STDERR),), reply=reply()), 1),
    (GetMessages(job_id="run", limit=10, reply=reply()), ()),
    (GetStatusChanges(after_id=0, limit=10, reply=reply()), ()),
    (GetQueue(limit=10, reply=reply()), None),
    (GetCallbacks(job_id="ok", reply=reply()), None),
    (DueCallbacks(limit=10, busy=frozenset(), reply=reply()), ((), None)),
    (
        RecordCallbackAttempt(
            delivery_id="d",
            state=CallbackState.DELIVERED,
            next_attempt_at=None,
            status_code=200,
            error=None,
            reply=reply(),
        ),
        None,
    ),
    (LoadSchedules(reply=reply()), None),
    (OutstandingJobs(keys=(("a", "s"),), reply=reply()), {}),
    (JobStatuses(job_ids=("dead",), reply=reply()), {"dead": JobStatus.DEAD}),
]


@pytest.mark.parametrize(
    ("request_", "result"), READ_ONLY, ids=[type(r).__name__ for r, _ in READ_ONLY]
)
def test_requests_that_finish_and_create_nothing_wake_nobody(
    request_: StoreRequest[Any], result: Any
) -> None:
    effects = request_.effects(result)
    assert effects == NO_EFFECTS
    assert not effects.wake_dispatcher
    assert not effects.wake_router
    assert effects.finished == ()
    assert effects.wait_for is None


CREATING: list[StoreRequest[Any]] = [
    Enqueue(jobs=(NewJob(plugin="a", command="poll"),), reply=reply()),
    EnqueuePlan(plan=RoutePlan(), reply=reply()),
    CommitSchedules(jobs=(NewJob(plugin="a", command="poll"),), reply=reply()),
]


@pytest.mark.parametrize("request_", CREATING, ids=[type(r).__name__ for r in CREATING])
def test_requests_that_create_jobs_wake_the_dispatcher_only(request_: StoreRequest[Any]) -> None:
    assert request_.effects(enqueued()) == Effects(wake_dispatcher=True)


def test_a_webhook_delivery_wakes_the_dispatcher_only() -> None:
    request = EnqueueWebhook(endpoint="e", delivery_id="d", plan=RoutePlan(), reply=reply())
    assert request.effects((QUEUED, False)) == Effects(wake_dispatcher=True)


def test_a_settle_that_ends_the_job_finishes_it_and_rings_the_router() -> None:
    for ended in (SUCCEEDED, DEAD, stored_job(status=JobStatus.FAILED)):
        effects = settle().effects(ended)
        assert effects.finished == (ended,)
        assert effects.wake_router
        assert not effects.wake_dispatcher
        assert effects.wait_for is None


def test_a_settle_that_requeues_or_is_stale_finishes_nothing() -> None:
    assert settle().effects(QUEUED) == NO_EFFECTS
    assert settle().effects(None) == NO_EFFECTS


def test_cancelling_a_queued_job_finishes_it_and_rings_the_router() -> None:
    effects = CancelQueued(job_id="gone", reason="cancelled", reply=reply()).effects(
        (CANCELLED, True)
    )
    assert effects.finished == (CANCELLED,)
    assert effects.wake_router
    assert not effects.wake_dispatcher


@pytest.mark.parametrize(
    "result", [(RUNNING, False), (CANCELLED, False), (None, False)], ids=["running", "done", "none"]
)
def test_a_cancel_that_changed_nothing_finishes_nothing(result: Any) -> None:
    assert CancelQueued(job_id="x", reason="cancelled", reply=reply()).effects(result) == NO_EFFECTS


def test_recovered_orphans_given_up_finish_and_the_requeued_ones_are_runnable() -> None:
    request = RecoverOrphans(plugin="a", reply=reply())
    effects = request.effects((QUEUED, DEAD))
    assert effects.finished == (DEAD,)
    assert effects.wake_router
    assert effects.wake_dispatcher
    requeued = request.effects((QUEUED,))
    assert requeued == Effects(wake_dispatcher=True)
    assert not requeued.wake_router


def test_waiting_on_an_unfinished_job_parks_the_answer() -> None:
    for unfinished in (QUEUED, RUNNING):
        effects = WaitJob(job_id=unfinished.id, reply=reply()).effects(unfinished)
        assert effects == Effects(wait_for=unfinished.id)
        assert not effects.wake_router


def test_waiting_on_a_finished_or_unknown_job_answers_at_once() -> None:
    assert WaitJob(job_id="ok", reply=reply()).effects(SUCCEEDED) == NO_EFFECTS
    assert WaitJob(job_id="nope", reply=reply()).effects(None) == NO_EFFECTS


def test_routing_wakes_the_dispatcher_only_when_it_routed_something() -> None:
    request = RouteSettled(planner=lambda job, now: RoutePlan(), limit=10, reply=reply())
    assert request.effects(0) == NO_EFFECTS
    # The Router asked, so it needs no ring.
    assert request.effects(2) == Effects(wake_dispatcher=True)


def test_effects_finish_only_terminal_jobs() -> None:
    assert Effects.ending((QUEUED, RUNNING, CANCELLED)).finished == (CANCELLED,)
    with pytest.raises(ValueError, match="not terminal"):
        Effects(finished=(RUNNING,))
