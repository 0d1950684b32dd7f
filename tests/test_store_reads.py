"""The JobStore's reads mailbox: the API's reads answered off the writer's queue.

A read sent there is answered from the last commit on a connection of its own, so
it never waits for a batch of writes (and their fsync) to be served first.  These
tests hold the database's write lock from outside, which stalls the writer the way
a slow commit does, and watch what each mailbox answers meanwhile.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

from chamberlain.actors.jobstore import JobStore
from chamberlain.actors.mail import (
    Enqueue,
    GetJob,
    JobStoreRequest,
    ListJobs,
    QueueDepth,
    WaitJob,
)
from chamberlain.actors.mailbox import RequestFailed, call
from chamberlain.records import Enqueued, Job, JobFilter, JobStatus, NewJob


def new_job(n: int = 0) -> NewJob:
    return NewJob(plugin="p", command="c", payload={"n": n})


async def enqueue_one(writes: trio.MemorySendChannel[JobStoreRequest], n: int) -> str:
    """Enqueue one job; its id once committed."""
    job = new_job(n)
    (done,) = await call(writes, lambda r: Enqueue(jobs=(job,), reply=r))
    return str(done.job.id)


async def test_a_read_is_answered_while_the_writer_waits_for_the_database(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    writes_tx, writes_rx = trio.open_memory_channel[JobStoreRequest](16)
    reads_tx, reads_rx = trio.open_memory_channel[JobStoreRequest](16)
    store = JobStore(path=str(path), wake_dispatcher=lambda: None)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run, writes_rx, reads_rx)
        with trio.fail_after(10):
            (first,) = await call(writes_tx, lambda r: Enqueue(jobs=(new_job(),), reply=r))

        # Another process takes the write lock: the writer's next batch waits for it.
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        enqueued: list[tuple[Enqueued, ...]] = []
        second_done = trio.Event()

        async def enqueue_second() -> None:
            enqueued.append(await call(writes_tx, lambda r: Enqueue(jobs=(new_job(1),), reply=r)))
            second_done.set()

        nursery.start_soon(enqueue_second)
        try:
            with trio.fail_after(3):
                job: Job | None = await call(
                    reads_tx, lambda r: GetJob(job_id=first.job.id, reply=r)
                )
                found: tuple[tuple[Job, ...], int] = await call(
                    reads_tx, lambda r: ListJobs(filter=JobFilter(), reply=r)
                )
            assert job is not None and job.status is JobStatus.QUEUED
            # The read sees the last commit, not the write still waiting.
            assert [j.id for j in found[0]] == [first.job.id] and found[1] == 1
            assert enqueued == []
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        with trio.fail_after(10):
            await second_done.wait()
            depth: int = await call(reads_tx, lambda r: QueueDepth(reply=r))
        assert depth == 2
        assert store.statistics().reads == 3
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("where", ["file", "memory"])
async def test_a_read_sees_every_write_answered_before_it(tmp_path: Path, where: str) -> None:
    # In memory there is one connection; its reads take turns with the writer's batches.
    path = str(tmp_path / "state.db") if where == "file" else ":memory:"
    writes_tx, writes_rx = trio.open_memory_channel[JobStoreRequest](16)
    reads_tx, reads_rx = trio.open_memory_channel[JobStoreRequest](16)
    store = JobStore(path=path, wake_dispatcher=lambda: None)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run, writes_rx, reads_rx)
        with trio.fail_after(10):
            for n in range(5):
                job_id = await enqueue_one(writes_tx, n)
                job: Job | None = await call(
                    reads_tx, lambda r, j=job_id: GetJob(job_id=j, reply=r)
                )
                assert job is not None and job.payload == {"n": n}
            found: tuple[tuple[Job, ...], int] = await call(
                reads_tx, lambda r: ListJobs(filter=JobFilter(), reply=r)
            )
        assert found[1] == 5
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "build",
    [
        lambda r: Enqueue(jobs=(new_job(),), reply=r),
        # A WaitJob parks its reply with the writer, which answers it at the job's end.
        lambda r: WaitJob(job_id="j", reply=r),
    ],
    ids=["write", "wait"],
)
async def test_the_reads_mailbox_refuses_what_is_not_a_read(tmp_path: Path, build: Any) -> None:
    writes_tx, writes_rx = trio.open_memory_channel[JobStoreRequest](16)
    reads_tx, reads_rx = trio.open_memory_channel[JobStoreRequest](16)
    store = JobStore(path=str(tmp_path / "state.db"), wake_dispatcher=lambda: None)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run, writes_rx, reads_rx)
        with trio.fail_after(10):
            with pytest.raises(RequestFailed) as refused:
                await call(reads_tx, build)
            assert "is not a read" in str(refused.value.__cause__)
            # Nothing was written, and the store still serves both mailboxes.
            depth: int = await call(reads_tx, lambda r: QueueDepth(reply=r))
            assert depth == 0
            (done,) = await call(writes_tx, lambda r: Enqueue(jobs=(new_job(),), reply=r))
            assert done.job.status is JobStatus.QUEUED
        nursery.cancel_scope.cancel()
