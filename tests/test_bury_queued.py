"""Burying the queued jobs of plugins a reload removed: they end dead, with the reason.

First the store's ``bury_queued`` on a real database file, then ``BuryQueued``
through the JobStore actor, whose callers waiting on those jobs must be answered.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
from fakes import EPOCH, clock_now, stored_job

from chamberlain.actors.jobstore import JobStore
from chamberlain.actors.mail import (
    NO_EFFECTS,
    BuryQueued,
    Enqueue,
    JobStoreRequest,
    WaitJob,
)
from chamberlain.actors.mailbox import ReplyTo, call
from chamberlain.records import Enqueued, Job, JobStatus, NewJob
from chamberlain.retry import Settlement
from chamberlain.store import job_messages
from chamberlain.store.sqlite import SqliteStore

REASON = "plugin a was removed by a configuration reload"
NOW = EPOCH


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state.db")
    yield s
    s.close()


def add(store: SqliteStore, plugin: str) -> str:
    job = NewJob(plugin=plugin, command="poll")
    store.begin()
    store.enqueue(job, now=NOW, dedupe_ttl=3600)
    store.commit()
    return job.id


def stored(store: SqliteStore, job_id: str) -> Job:
    job = store.get_job(job_id)
    assert job is not None
    return job


# ----------------------------------------------------------------------- the store


def test_queued_jobs_of_the_named_plugins_end_dead_with_the_reason(store: SqliteStore) -> None:
    running = add(store, "a")
    claimed, _ = store.claim({"a": 1}, limit=1, now=NOW)
    assert [c.job.id for c in claimed] == [running]
    queued = add(store, "a")
    waiting = add(store, "a")
    # As a retry's backoff leaves it: queued, due later.
    store.conn.execute("UPDATE jobs SET run_at = ? WHERE id = ?", (NOW + 600, waiting))
    other = add(store, "b")
    also = add(store, "c")

    store.begin()
    buried = store.bury_queued(["a", "c"], now=NOW + 5, reason=REASON)
    store.commit()

    assert {job.id for job in buried} == {queued, waiting, also}
    for job in buried:
        assert (job.status, job.last_error, job.completed_at) == (JobStatus.DEAD, REASON, NOW + 5)
        record = stored(store, job.id)
        assert record.status is JobStatus.DEAD
        assert record.to_json()["last_error"] == REASON
        last = job_messages.job_messages(store.conn, job.id)[-1]
        assert last.text == f"finished: dead ({REASON})"
    assert stored(store, running).status is JobStatus.RUNNING
    assert stored(store, running).last_error is None
    assert (stored(store, other).status, stored(store, other).last_error) == (
        JobStatus.QUEUED,
        None,
    )
    # The job in flight still records its own outcome.
    done = store.settle(
        running, 1, Settlement(status=JobStatus.SUCCEEDED, completed=True), now=NOW + 9
    )
    assert done is not None and done.status is JobStatus.SUCCEEDED


def test_burying_what_has_no_queued_job_ends_nothing(store: SqliteStore) -> None:
    job_id = add(store, "a")
    assert store.bury_queued([], now=NOW, reason=REASON) == []
    assert store.bury_queued(["nobody"], now=NOW, reason=REASON) == []
    assert stored(store, job_id).status is JobStatus.QUEUED
    (first,) = store.bury_queued(["a"], now=NOW, reason=REASON)
    assert first.id == job_id
    # Once dead it is no longer queued: a second burial returns nothing.
    assert store.bury_queued(["a"], now=NOW + 1, reason="again") == []
    assert stored(store, job_id).last_error == REASON


# ----------------------------------------------------------------------- the actor


def test_buried_jobs_are_what_the_request_ends() -> None:
    dead = stored_job(id="d", status=JobStatus.DEAD, last_error=REASON)
    request = BuryQueued(
        plugins=frozenset({"a"}),
        reason=REASON,
        reply=ReplyTo(trio.open_memory_channel[tuple[Job, ...]](1)[0]),
    )
    effects = request.effects((dead,))
    assert effects.finished == (dead,)
    assert effects.wake_router
    assert request.effects(()) == NO_EFFECTS


async def test_buried_jobs_answer_their_waiters_and_count_as_ended(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    ended: list[Job] = []
    rings: list[None] = []
    store_tx, store_rx = trio.open_memory_channel[JobStoreRequest](math.inf)
    jobstore = JobStore(
        path=str(tmp_path / "state.db"),
        wake_dispatcher=lambda: None,
        wake_router=lambda: rings.append(None),
        job_finished=ended.append,
        now=clock_now,
        # Autojump would move the clock on while a worker thread runs SQL.
        offload=False,
    )
    answers: dict[str, Job | None] = {}

    async def wait(job_id: str) -> None:
        answers[job_id] = await call(store_tx, lambda r: WaitJob(job_id=job_id, reply=r))

    async with trio.open_nursery() as nursery:
        await nursery.start(jobstore.run, store_rx)
        jobs = tuple(NewJob(plugin=p, command="poll") for p in ("a", "a", "b"))
        done: tuple[Enqueued, ...] = await call(store_tx, lambda r: Enqueue(jobs=jobs, reply=r))
        first, second, other = (e.job.id for e in done)
        for job_id in (first, second, other):
            nursery.start_soon(wait, job_id)
        await trio.testing.wait_all_tasks_blocked()
        parked = jobstore.statistics().waiters
        rang = len(rings)
        buried: tuple[Job, ...] = await call(
            store_tx, lambda r: BuryQueued(plugins=frozenset({"a"}), reason=REASON, reply=r)
        )
        await trio.testing.wait_all_tasks_blocked()
        answered = dict(answers)
        left = jobstore.statistics().waiters
        nursery.cancel_scope.cancel()
    assert parked == 3
    assert {job.id for job in buried} == {first, second}
    assert set(answered) == {first, second}
    for job in answered.values():
        assert job is not None
        assert (job.status, job.last_error) == (JobStatus.DEAD, REASON)
    assert left == 1
    assert {job.id for job in ended} == {first, second}
    assert len(rings) > rang
