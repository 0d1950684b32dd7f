"""A disk that refuses writes: the decisions, the JobStore living through it, the WAL.

The JobStore tests make SQLite itself refuse to grow the database
(``PRAGMA max_page_count``), which raises the same ``SQLITE_FULL`` a full disk does;
tests/test_disk_full_e2e.py fills a real tmpfs under the real daemon.
"""

from __future__ import annotations

import os
import sqlite3
import typing
from pathlib import Path
from typing import Any

import pytest
import trio
from figures import record

from chamberlain.actors import storage_faults
from chamberlain.actors.dispatcher import Dispatcher
from chamberlain.actors.jobstore import JobStore
from chamberlain.actors.mail import (
    CancelJob,
    CancelQueued,
    Claim,
    ClaimResult,
    DispatcherRequest,
    DispatcherStatistics,
    Enqueue,
    GetJob,
    JobStoreRequest,
    JournalRequest,
    ListJobs,
    QueueDepth,
    RecordOutput,
    RunningJobs,
    Settle,
    Statistics,
)
from chamberlain.actors.mailbox import ReplyTo, RequestFailed, call
from chamberlain.actors.storage_faults import (
    RETRY_FIRST,
    RETRY_MAX,
    Disposition,
    StorageFull,
    disposition,
    retry_delay,
    storage_failure,
)
from chamberlain.plugins.protocol import Outcome, OutcomeKind
from chamberlain.records import Enqueued, JobFilter, JobStatus, NewJob
from chamberlain.retry import RetryPolicy
from chamberlain.store.sqlite import SqliteStore

BIG = "x" * 30_000


def full_error(tmp_path: Path) -> sqlite3.Error:
    """The error SQLite raises when the database may not grow: SQLITE_FULL."""
    conn = sqlite3.connect(tmp_path / "tiny.db")
    try:
        conn.execute("CREATE TABLE t (x)")
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count={pages}")
        with pytest.raises(sqlite3.Error) as caught:
            conn.execute("INSERT INTO t VALUES (?)", (BIG,))
    finally:
        conn.close()
    return caught.value


# -- the decisions ---------------------------------------------------------------------


def test_a_full_database_is_a_storage_failure(tmp_path: Path) -> None:
    error = full_error(tmp_path)
    assert storage_failure(error) == "SQLITE_FULL: database or disk is full"


def test_every_io_error_is_a_storage_failure() -> None:
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorcode = sqlite3.SQLITE_IOERR | (3 << 8)  # SQLITE_IOERR_WRITE
    error.sqlite_errorname = "SQLITE_IOERR_WRITE"
    assert storage_failure(error) == "SQLITE_IOERR_WRITE: disk I/O error"


def test_other_errors_are_not_storage_failures(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db")
    with pytest.raises(sqlite3.OperationalError) as caught:
        conn.execute("SELECT * FROM nowhere")
    conn.close()
    assert storage_failure(caught.value) is None
    assert storage_failure(sqlite3.OperationalError("no code")) is None
    assert storage_failure(OSError(28, "No space left on device")) is None
    assert storage_failure(ValueError("boom")) is None


def test_the_codes_are_sqlites() -> None:
    assert storage_faults.SQLITE_FULL == sqlite3.SQLITE_FULL
    assert storage_faults.SQLITE_IOERR == sqlite3.SQLITE_IOERR


def _members(union: Any) -> set[type]:
    out: set[type] = set()
    for member in typing.get_args(union):
        out |= _members(member) if typing.get_args(member) else {member}
    return out


def test_every_request_type_is_classified() -> None:
    members = _members(JobStoreRequest) | _members(JournalRequest)
    assert members == set(storage_faults.DISPOSITIONS)


def test_clients_writes_are_refused_reads_served_and_actors_writes_held() -> None:
    def reply() -> ReplyTo[Any]:
        return ReplyTo(trio.open_memory_channel[Any](1)[0])

    assert disposition(Enqueue(jobs=(), reply=reply())) is Disposition.REFUSE
    assert disposition(RecordOutput(job_id="j", lines=(), reply=reply())) is Disposition.REFUSE
    assert disposition(GetJob(job_id="j", reply=reply())) is Disposition.READ
    assert disposition(ListJobs(filter=JobFilter(), reply=reply())) is Disposition.READ
    assert disposition(QueueDepth(reply=reply())) is Disposition.READ
    settle = Settle(job_id="j", attempt=1, outcome=_failed(), policy=RetryPolicy(), reply=reply())
    assert disposition(settle) is Disposition.HOLD
    assert disposition(Claim(capacity={}, limit=1, reply=reply())) is Disposition.POSTPONE


def test_the_backoff_doubles_up_to_its_cap() -> None:
    delays = [retry_delay(n) for n in range(1, 10)]
    assert delays[0] == RETRY_FIRST
    assert delays[1] == 2 * RETRY_FIRST
    assert delays == sorted(delays)
    assert delays[-1] == RETRY_MAX
    assert retry_delay(10_000) == RETRY_MAX


# -- the JobStore on a database that may not grow ---------------------------------------


def _failed() -> Outcome:
    return Outcome(
        kind=OutcomeKind.FAILED,
        retryable=False,
        error=BIG,
        response=None,
        raw_output=None,
        exit_code=1,
        signal=None,
        stderr_tail="",
    )


class Pending:
    """One request sent to the JobStore and its answer, once it comes."""

    def __init__(self, build: Any) -> None:
        self.send, self.receive = trio.open_memory_channel[Any](1)
        self.request = build(ReplyTo(self.send))

    def answer(self) -> Any:
        return self.receive.receive_nowait()

    async def wait(self) -> Any:
        with trio.fail_after(10):
            return await self.receive.receive()


async def test_the_jobstore_refuses_writes_serves_reads_and_recovers(tmp_path: Path) -> None:
    tx, rx = trio.open_memory_channel[JobStoreRequest](64)
    store = JobStore(path=str(tmp_path / "state.db"), wake_dispatcher=lambda: None)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run, rx)

        async def ask(build: Any) -> Any:
            pending = Pending(build)
            await tx.send(pending.request)
            return await pending.wait()

        first = NewJob(plugin="p", command="c", payload={})
        (done,) = await ask(lambda r: Enqueue(jobs=(first,), reply=r))
        claimed: ClaimResult = await ask(lambda r: Claim(capacity={"p": 1}, limit=1, reply=r))
        assert [c.job.id for c in claimed.jobs] == [done.job.id]

        # The database may not grow by a page from now on.
        assert store._store is not None
        conn = store._store.conn
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count={pages}")

        # One batch: a client's write, a read, the runner's outcome, a claim.
        big = NewJob(plugin="p", command="c", payload={"blob": BIG})
        enqueue = Pending(lambda r: Enqueue(jobs=(big,), reply=r))
        read = Pending(lambda r: GetJob(job_id=done.job.id, reply=r))
        settle = Pending(
            lambda r: Settle(
                job_id=done.job.id, attempt=1, outcome=_failed(), policy=RetryPolicy(), reply=r
            )
        )
        claim = Pending(lambda r: Claim(capacity={"p": 1}, limit=1, reply=r))
        for pending in (enqueue, read, settle, claim):
            tx.send_nowait(pending.request)

        refusal = await enqueue.wait()
        assert isinstance(refusal.error, StorageFull)
        assert "SQLITE_FULL" in str(refusal.error)
        job = await read.wait()
        assert job.id == done.job.id and job.status is JobStatus.RUNNING
        postponed = await claim.wait()
        assert postponed.jobs == () and postponed.next_due is not None
        stats = store.statistics()
        assert stats.degraded is not None and "SQLITE_FULL" in stats.degraded
        assert stats.storage_failures >= 1
        assert stats.held == 1
        with pytest.raises(trio.WouldBlock):
            settle.answer()  # held, not refused: a runner cannot take an error

        conn.execute("PRAGMA max_page_count=1073741823")
        settled = await settle.wait()
        assert settled.id == done.job.id and settled.status is JobStatus.FAILED
        assert settled.last_error == BIG
        answer: tuple[Enqueued, ...] = await ask(lambda r: Enqueue(jobs=(big,), reply=r))
        assert answer[0].job.payload == {"blob": BIG}
        stats = store.statistics()
        assert stats.degraded is None and stats.held == 0
        nursery.cancel_scope.cancel()


# -- the WAL under a burst -------------------------------------------------------------


def burst(store: SqliteStore, batches: int, per_batch: int) -> int:
    """Commit ``batches`` transactions of ``per_batch`` 1 KiB jobs; the largest WAL seen."""
    wal = Path(f"{store.path}-wal")
    largest = 0
    for n in range(batches):
        store.begin()
        for i in range(per_batch):
            store.enqueue(
                NewJob(plugin="p", command="c", payload={"n": n, "i": i, "pad": "x" * 1024}),
                now=float(n),
                dedupe_ttl=0.0,
            )
        store.commit()
        largest = max(largest, wal.stat().st_size)
    return largest


def test_the_wal_stays_small_under_a_burst(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    try:
        largest = burst(store, batches=100, per_batch=50)
        store.checkpoint()
        after = os.stat(f"{store.path}-wal").st_size
    finally:
        store.close()
    record("wal_burst", jobs=5000, largest_wal_bytes=largest, wal_after_checkpoint=after)
    # The autocheckpoint threshold plus about one batch (SQLite's default let this
    # burst grow the WAL to 4.3 MiB and left it there).
    assert largest < 1536 * 1024
    assert after == 0


# -- a cancel during the outage ---------------------------------------------------------


async def test_a_cancel_the_disk_refuses_is_answered_and_the_dispatcher_goes_on() -> None:
    """The Dispatcher waits for the store's answer to a cancel: a refusal must reach
    the caller as the error, never stall or crash the Dispatcher."""
    store_tx, store_rx = trio.open_memory_channel[JobStoreRequest](16)
    refused: list[str] = []

    async def full_store() -> None:
        async for request in store_rx:
            match request:
                case RunningJobs(reply=reply):
                    reply.send(())
                case Claim(reply=reply):
                    reply.send(ClaimResult(jobs=(), next_due=None))
                case CancelQueued(job_id=job_id, reply=reply):
                    refused.append(job_id)
                    reply.fail(StorageFull("SQLITE_FULL: database or disk is full"))

    dispatcher = Dispatcher(store=store_tx, runners={}, max_workers=1, parallelism={})
    disp_tx, disp_rx = trio.open_memory_channel[DispatcherRequest](16)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(full_store)
        await nursery.start(dispatcher.run, disp_rx)
        with pytest.raises(RequestFailed) as failed:
            await call(disp_tx, lambda r: CancelJob(job_id="queued-1", reply=r), timeout=5)
        assert isinstance(failed.value.__cause__, StorageFull)
        # Still serving: a second request is answered.
        stats: DispatcherStatistics = await call(disp_tx, lambda r: Statistics(reply=r), timeout=5)
        assert stats is not None
        nursery.cancel_scope.cancel()
    assert refused == ["queued-1"]
    assert (
        disposition(
            CancelQueued(
                job_id="j", reason="cancelled", reply=ReplyTo(trio.open_memory_channel[Any](1)[0])
            )
        )
        is Disposition.REFUSE
    )
