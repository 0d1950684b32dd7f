"""The store's side of interactive jobs and follow-ups (migration 0012), on a real SQLite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chamberlain.joblog import COMPLETING_TEXT
from chamberlain.plugins.protocol import Outcome, OutcomeKind, Response
from chamberlain.records import (
    FollowUpRefusal,
    Job,
    JobFilter,
    JobStatus,
    MessageKind,
    NewJob,
    UserInput,
)
from chamberlain.retry import RetryPolicy, recover_orphan, settle
from chamberlain.store import job_messages, session_rows
from chamberlain.store.sqlite import SqliteStore

NOW = 1_700_000_000.0


@pytest.fixture
def store() -> Iterator[SqliteStore]:
    s = SqliteStore(":memory:")
    yield s
    s.close()


def running(store: SqliteStore, new: NewJob | None = None) -> Job:
    job = store.enqueue(new or NewJob(plugin="p", command="ask"), now=NOW, dedupe_ttl=0).job
    (claimed,), _ = store.claim({job.plugin: 1}, 1, now=NOW)
    assert claimed.job.id == job.id
    return claimed.job


def answered(job: Job, session: dict[str, object] | None) -> Outcome:
    return Outcome(
        kind=OutcomeKind.SUCCEEDED,
        retryable=False,
        error=None,
        response=Response(status="ok", result="r", session=session),
        raw_output=None,
        exit_code=0,
        signal=None,
        stderr_tail="",
    )


def finish(store: SqliteStore, job: Job, session: dict[str, object] | None = None) -> Job:
    settlement = settle(job, answered(job, session), now=NOW, policy=RetryPolicy(), state={})
    done = store.settle(job.id, job.attempt, settlement, now=NOW)
    assert done is not None
    return done


def test_an_input_is_kept_only_for_the_attempt_that_runs(store: SqliteStore) -> None:
    job = running(store)
    assert session_rows.mark_session(store.conn, job.id, job.attempt, waiting=True, now=NOW)
    assert store.get_job(job.id).waiting_for_input is True  # type: ignore[union-attr]
    kept = session_rows.record_input(
        store.conn, job.id, job.attempt, message_id="m1", message="hello", now=NOW + 1
    )
    assert kept
    assert store.get_job(job.id).waiting_for_input is False  # type: ignore[union-attr]
    # A superseded attempt, or a job that is not running, keeps nothing.
    stale = session_rows.record_input(
        store.conn, job.id, job.attempt - 1, message_id="m0", message="old", now=NOW
    )
    assert not stale
    assert not session_rows.mark_session(store.conn, job.id, 99, waiting=True, now=NOW)
    inputs = [
        m for m in job_messages.job_messages(store.conn, job.id) if m.kind is MessageKind.USER_INPUT
    ]
    assert [(m.text, m.message_id, m.to_json()["message_id"]) for m in inputs] == [
        ("hello", "m1", "m1")
    ]
    assert session_rows.transcript(store.conn, job.id) == [
        UserInput(message_id="m1", message="hello", at=NOW + 1)
    ]


def test_a_completing_session_takes_no_more_input_and_stays_completing(
    store: SqliteStore,
) -> None:
    job = running(store)
    session_rows.record_input(store.conn, job.id, job.attempt, message_id="a", message="1", now=NOW)
    assert session_rows.mark_session(store.conn, job.id, job.attempt, waiting=False, now=NOW)
    assert not session_rows.record_input(
        store.conn, job.id, job.attempt, message_id="b", message="2", now=NOW
    )
    texts = [m.text for m in job_messages.job_messages(store.conn, job.id)]
    assert COMPLETING_TEXT in texts
    # A crash recovers the attempt; the retry still knows the session was completed,
    # and its transcript holds what was said.
    (orphan,) = store.running_jobs()
    store.settle(orphan.id, orphan.attempt, recover_orphan(orphan, now=NOW), now=NOW)
    (again,), _ = store.claim({"p": 1}, 1, now=NOW)
    assert again.job.attempt == 2 and again.job.completing and not again.job.waiting_for_input
    assert [i.message for i in session_rows.transcript(store.conn, job.id)] == ["1"]


def test_the_session_of_a_response_is_kept_with_the_job(store: SqliteStore) -> None:
    job = finish(store, running(store), {"session_id": "s1"})
    assert job.session == {"session_id": "s1"}
    assert job.to_json()["session"] == {"session_id": "s1"}


def test_a_follow_up_is_made_once_and_carries_the_chain_s_newest_session(
    store: SqliteStore,
) -> None:
    old = running(store)
    follow = NewJob(plugin="p", command="ask", follows=old.id, follow_up={"prompt": "next"})
    made = session_rows.enqueue_follow_up(store, follow, now=NOW, dedupe_ttl=0)
    assert made is FollowUpRefusal.NOT_FINISHED
    finish(store, old, {"session_id": "s1"})
    first = session_rows.enqueue_follow_up(store, follow, now=NOW, dedupe_ttl=0)
    assert isinstance(first, Job)
    assert first.follows == old.id and first.instruction == "next"
    assert first.follow_up == {"prompt": "next", "session": {"session_id": "s1"}}
    assert store.get_job(old.id).followed_by == first.id  # type: ignore[union-attr]
    again = NewJob(plugin="p", command="ask", follows=old.id, follow_up={"prompt": "fork"})
    assert session_rows.enqueue_follow_up(store, again, now=NOW, dedupe_ttl=0) is (
        FollowUpRefusal.FOLLOWED
    )
    unknown = NewJob(plugin="p", command="ask", follows="nope", follow_up={"prompt": "x"})
    assert session_rows.enqueue_follow_up(store, unknown, now=NOW, dedupe_ttl=0) is (
        FollowUpRefusal.UNKNOWN
    )
    # The follow-up ends without a session of its own: its follow-up gets the old one.
    (claimed,), _ = store.claim({"p": 1}, 1, now=NOW)
    finish(store, claimed.job, None)
    third = session_rows.enqueue_follow_up(
        store,
        NewJob(plugin="p", command="ask", follows=first.id, follow_up={"prompt": "more"}),
        now=NOW,
        dedupe_ttl=0,
    )
    assert isinstance(third, Job)
    assert third.follow_up is not None
    assert third.follow_up["session"] == {"session_id": "s1"}
    assert third.status is JobStatus.QUEUED


def test_a_listing_without_bodies_leaves_the_session_out(store: SqliteStore) -> None:
    finish(store, running(store), {"big": "x" * 1000})
    (listed,), _ = store.list_jobs(JobFilter(bodies=False))
    assert listed.session is None
    (full,), _ = store.list_jobs(JobFilter())
    assert full.session == {"big": "x" * 1000}
