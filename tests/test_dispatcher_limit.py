"""New limits from a reload (``Limit``): what the Dispatcher starts, and what it leaves be.

The Dispatcher runs alone here, on the mock clock, against a real JobStore; each
Runner is a mailbox the test reads the ``Run`` messages from, and the test plays
the Runner's part of settling a job and reporting it ``Released``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing
from fakes import clock_now, succeeded_outcome

from chamberlain.actors.dispatcher import Dispatcher
from chamberlain.actors.jobstore import JobStore
from chamberlain.actors.mail import (
    DispatcherRequest,
    DispatcherStatistics,
    Enqueue,
    GetJob,
    JobStoreRequest,
    Limit,
    Released,
    Run,
    RunnerRequest,
    Settle,
    Statistics,
    Wake,
)
from chamberlain.actors.mailbox import call
from chamberlain.records import Enqueued, Job, JobStatus, NewJob
from chamberlain.retry import RetryPolicy

PLUGINS = ("a", "b")


@attrs.define
class Harness:
    store: trio.MemorySendChannel[JobStoreRequest]
    dispatcher: trio.MemorySendChannel[DispatcherRequest]
    runners: Mapping[str, trio.MemoryReceiveChannel[RunnerRequest]]

    async def enqueue(self, plugin: str, count: int) -> list[str]:
        jobs = tuple(NewJob(plugin=plugin, command="poll") for _ in range(count))
        done: tuple[Enqueued, ...] = await self._ask(lambda r: Enqueue(jobs=jobs, reply=r))
        return [e.job.id for e in done]

    async def started(self) -> dict[str, set[str]]:
        """The jobs each Runner was handed since last asked, once every actor is idle;
        anything else a Runner was sent is a failure."""
        await trio.testing.wait_all_tasks_blocked()
        found: dict[str, set[str]] = {plugin: set() for plugin in self.runners}
        for plugin, mailbox in self.runners.items():
            while True:
                try:
                    message = mailbox.receive_nowait()
                except trio.WouldBlock:
                    break
                assert isinstance(message, Run), message
                found[plugin].add(message.claimed.job.id)
        return found

    async def finish(self, *job_ids: str) -> None:
        """As a Runner does: record the outcome, then report the slot free."""
        for job_id in job_ids:
            settled: Job | None = await self._ask(
                lambda r, job_id=job_id: Settle(
                    job_id=job_id,
                    attempt=1,
                    outcome=succeeded_outcome(),
                    policy=RetryPolicy(),
                    reply=r,
                )
            )
            assert settled is not None and settled.status is JobStatus.SUCCEEDED
            await self.dispatcher.send(Released(job_id=job_id))

    async def limit(self, max_workers: int, parallelism: Mapping[str, int]) -> None:
        await call(
            self.dispatcher,
            lambda r: Limit(max_workers=max_workers, parallelism=parallelism, reply=r),
            timeout=60,
        )

    async def status(self, *job_ids: str) -> list[JobStatus]:
        out = []
        for job_id in job_ids:
            job: Job | None = await self._ask(
                lambda r, job_id=job_id: GetJob(job_id=job_id, reply=r)
            )
            assert job is not None
            out.append(job.status)
        return out

    async def statistics(self) -> DispatcherStatistics:
        stats: DispatcherStatistics = await call(
            self.dispatcher, lambda r: Statistics(reply=r), timeout=60
        )
        return stats

    async def _ask(self, build: Any) -> Any:
        return await call(self.store, build, timeout=60)


@asynccontextmanager
async def dispatching(
    tmp_path: Path, *, max_workers: int, parallelism: Mapping[str, int]
) -> AsyncIterator[Harness]:
    store_tx, store_rx = trio.open_memory_channel[JobStoreRequest](1024)
    dispatcher_tx, dispatcher_rx = trio.open_memory_channel[DispatcherRequest](math.inf)
    mailboxes = {p: trio.open_memory_channel[RunnerRequest](math.inf) for p in PLUGINS}
    jobstore = JobStore(
        path=str(tmp_path / "state.db"),
        wake_dispatcher=lambda: dispatcher_tx.send_nowait(Wake()),
        now=clock_now,
        # Autojump would move the clock on while a worker thread runs SQL.
        offload=False,
    )
    dispatcher = Dispatcher(
        store=store_tx,
        runners={p: tx for p, (tx, _) in mailboxes.items()},
        max_workers=max_workers,
        parallelism=dict(parallelism),
        now=clock_now,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(jobstore.run, store_rx)
        await nursery.start(dispatcher.run, dispatcher_rx)
        yield Harness(
            store=store_tx,
            dispatcher=dispatcher_tx,
            runners={p: rx for p, (_, rx) in mailboxes.items()},
        )
        nursery.cancel_scope.cancel()


async def test_raising_max_workers_starts_more_of_the_queued_jobs(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with dispatching(tmp_path, max_workers=1, parallelism={"a": 5}) as h:
        jobs = await h.enqueue("a", 4)
        first = (await h.started())["a"]
        await h.limit(3, {"a": 5})
        more = (await h.started())["a"]
        statuses = await h.status(*jobs)
        stats = await h.statistics()
    assert len(first) == 1
    assert len(more) == 2 and not more & first
    assert sorted(s.value for s in statuses) == ["queued", "running", "running", "running"]
    assert (stats.max_workers, stats.running) == (3, 3)


async def test_lowering_max_workers_stops_nothing_and_holds_back_new_starts(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with dispatching(tmp_path, max_workers=3, parallelism={"a": 5}) as h:
        await h.enqueue("a", 5)
        running = sorted((await h.started())["a"])
        await h.limit(1, {"a": 5})
        # Only Runs reach a Runner: a Terminate would fail started().
        assert (await h.started())["a"] == set()
        await h.finish(running[0])
        after_one = (await h.started())["a"]
        await h.finish(*running[1:])
        after_all = (await h.started())["a"]
    assert len(running) == 3
    # Two still in flight against a limit of one: nothing new yet.
    assert after_one == set()
    assert len(after_all) == 1


async def test_a_plugin_left_out_of_parallelism_starts_no_new_job(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with dispatching(tmp_path, max_workers=4, parallelism={"a": 1, "b": 1}) as h:
        a_jobs = await h.enqueue("a", 2)
        b_jobs = await h.enqueue("b", 2)
        first = await h.started()
        (a_running,), (b_running,) = first["a"], first["b"]
        await h.limit(4, {"a": 1})
        # Its job in flight is left alone: no Terminate, and still counted.
        untouched = await h.started()
        in_flight = (await h.statistics()).running_by_plugin
        await h.finish(a_running, b_running)
        then = await h.started()
        b_queued = next(j for j in b_jobs if j != b_running)
        statuses = await h.status(b_running, b_queued)
    assert untouched == {"a": set(), "b": set()}
    assert in_flight == {"a": 1, "b": 1}
    assert then["a"] == {next(j for j in a_jobs if j != a_running)}
    assert then["b"] == set()
    assert statuses == [JobStatus.SUCCEEDED, JobStatus.QUEUED]


async def test_a_plugin_new_in_parallelism_gets_its_queued_jobs_started(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with dispatching(tmp_path, max_workers=4, parallelism={"a": 1}) as h:
        b_jobs = await h.enqueue("b", 3)
        before = await h.started()
        await h.limit(4, {"a": 1, "b": 2})
        after = await h.started()
        statuses = await h.status(*b_jobs)
    assert before == {"a": set(), "b": set()}
    assert len(after["b"]) == 2 and after["b"] <= set(b_jobs)
    assert after["a"] == set()
    assert sorted(s.value for s in statuses) == ["queued", "running", "running"]
