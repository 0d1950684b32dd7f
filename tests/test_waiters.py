"""Callers that give up waiting for a job or a tree are forgotten, not kept forever.

The JobStore parks WaitJob replies and the Router WaitTree replies until the job or
tree finishes.  A caller whose deadline passes (or whose HTTP request is cancelled)
must not leave its reply behind: the actors here run alone on the mock clock, with
a real store file, and many callers time out while a job stays queued.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from chamberlain.actors.jobstore import JobStore
from chamberlain.actors.mail import (
    CancelQueued,
    Enqueue,
    JobStoreRequest,
    RouterRequest,
    WaitJob,
    WaitTree,
    WakeRouter,
)
from chamberlain.actors.mailbox import ActorUnavailable, ReplyTo, Waiters, call
from chamberlain.actors.router import Router
from chamberlain.records import Enqueued, Job, JobStatus, NewJob, Tree
from chamberlain.routing.planner import build_routing

#: Callers that give up, far more than a sweep lets pile up.
GIVE_UPS = 500


# -- the parts ------------------------------------------------------------------------


def test_a_reply_is_abandoned_once_its_caller_stops_listening() -> None:
    send, receive = trio.open_memory_channel[Any](1)
    reply: ReplyTo[int] = ReplyTo(send)
    listening = not reply.abandoned
    receive.close()
    assert listening
    assert reply.abandoned
    reply.send(1)  # still harmless


def test_waiters_sweep_out_abandoned_replies_and_keep_live_ones() -> None:
    waiters: Waiters[str, int] = Waiters(floor=8)
    live_send, live_receive = trio.open_memory_channel[Any](1)
    waiters.add("job", ReplyTo(live_send))
    for _ in range(GIVE_UPS):
        send, receive = trio.open_memory_channel[Any](1)
        waiters.add("job", ReplyTo(send))
        waiters.add("other", ReplyTo(send))
        receive.close()
        assert len(waiters) <= 2 * 8 + 2
    assert waiters.prune() > 0
    assert len(waiters) == 1
    assert waiters.keys() == {"job"}
    (kept,) = waiters.pop("job")
    kept.send(7)
    assert live_receive.receive_nowait() == 7
    assert len(waiters) == 0
    assert waiters.pop("job") == []


def test_live_replies_are_never_swept_out() -> None:
    waiters: Waiters[str, int] = Waiters(floor=4)
    keep = []
    for n in range(100):
        send, receive = trio.open_memory_channel[Any](1)
        keep.append(receive)
        waiters.add(str(n), ReplyTo(send))
    assert len(waiters) == 100
    assert waiters.prune() == 0


# -- the actors -----------------------------------------------------------------------


@attrs.define
class Actors:
    store: trio.MemorySendChannel[JobStoreRequest]
    router: trio.MemorySendChannel[RouterRequest]
    jobstore: JobStore
    routing_actor: Router

    async def queued_job(self) -> Job:
        done: tuple[Enqueued, ...] = await call(
            self.store, lambda r: Enqueue(jobs=(NewJob(plugin="a", command="poll"),), reply=r)
        )
        return done[0].job

    async def cancel(self, job_id: str) -> None:
        await call(self.store, lambda r: CancelQueued(job_id=job_id, reason="test", reply=r))


@asynccontextmanager
async def store_and_router(tmp_path: Path) -> AsyncIterator[Actors]:
    store_tx, store_rx = trio.open_memory_channel[JobStoreRequest](1024)
    router_tx, router_rx = trio.open_memory_channel[RouterRequest](1024)

    def ring() -> None:
        router_tx.send_nowait(WakeRouter())

    jobstore = JobStore(
        path=str(tmp_path / "state.db"),
        wake_dispatcher=lambda: None,
        wake_router=ring,
        # Autojump would move the clock on while a worker thread runs SQL.
        offload=False,
    )
    router = Router(store=store_tx, routing=build_routing((), (), {}))
    async with trio.open_nursery() as nursery:
        await nursery.start(jobstore.run, store_rx)
        await nursery.start(router.run, router_rx)
        yield Actors(store=store_tx, router=router_tx, jobstore=jobstore, routing_actor=router)
        nursery.cancel_scope.cancel()


async def give_up(mailbox: trio.MemorySendChannel[Any], build: Any) -> None:
    with pytest.raises(ActorUnavailable):
        await call(mailbox, build, timeout=1)


async def test_wait_job_callers_that_time_out_are_not_kept(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with store_and_router(tmp_path) as actors, trio.open_nursery() as nursery:
        job = await actors.queued_job()
        answers: list[Job | None] = []
        answered = trio.Event()

        async def wait_live() -> None:
            answers.append(await call(actors.store, lambda r: WaitJob(job_id=job.id, reply=r)))
            answered.set()

        nursery.start_soon(wait_live)
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(GIVE_UPS):
            await give_up(actors.store, lambda r: WaitJob(job_id=job.id, reply=r))
        parked = actors.jobstore.statistics().waiters
        # One live caller, and at most a sweep's worth of those that gave up.
        assert 1 <= parked <= 2 * Waiters().floor + 1
        await actors.cancel(job.id)
        with trio.fail_after(10):
            await answered.wait()
        assert actors.jobstore.statistics().waiters == 0
    (answer,) = answers
    assert answer is not None and answer.status is JobStatus.CANCELLED


async def test_wait_tree_callers_that_time_out_are_not_kept(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with store_and_router(tmp_path) as actors, trio.open_nursery() as nursery:
        job = await actors.queued_job()
        other = await actors.queued_job()
        answers: list[Tree | None] = []
        answered = trio.Event()

        async def wait_live() -> None:
            answers.append(
                await call(actors.router, lambda r: WaitTree(root_job_id=job.id, reply=r))
            )
            answered.set()

        nursery.start_soon(wait_live)
        await trio.testing.wait_all_tasks_blocked()
        for n in range(GIVE_UPS):
            root = (job, other)[n % 2].id
            await give_up(actors.router, lambda r, root=root: WaitTree(root_job_id=root, reply=r))
        assert 1 <= actors.routing_actor.statistics().waiters <= 2 * Waiters().floor + 1
        # A ring (here: a job of another tree ended) sweeps out every caller gone.
        await actors.cancel(other.id)
        await trio.testing.wait_all_tasks_blocked()
        assert actors.routing_actor.statistics().waiters == 1
        assert not answers
        await actors.cancel(job.id)
        with trio.fail_after(10):
            await answered.wait()
        assert actors.routing_actor.statistics().waiters == 0
    (tree,) = answers
    assert tree is not None
    assert [j.status for j in tree.jobs] == [JobStatus.CANCELLED]
