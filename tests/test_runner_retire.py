"""A Runner told to retire (a reload removed its plugin), or given a new plugin.

The Runner runs alone here, on the mock clock, against a real JobStore: the jobs are
enqueued and claimed straight from the store, and the Dispatcher is a mailbox the
test reads the Runner's ``Released`` reports from.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing
from fakes import EPOCH, FakePlugins, clock_now, fake_plugin

from chamberlain.actors.jobstore import JobStore
from chamberlain.actors.mail import (
    Claim,
    ClaimResult,
    DispatcherRequest,
    Enqueue,
    GetJob,
    JobStoreRequest,
    Released,
    Run,
    RunnerRequest,
    Terminate,
    WaitJob,
)
from chamberlain.actors.mailbox import call
from chamberlain.actors.runner import Runner
from chamberlain.config import parse_config
from chamberlain.plugins.binding import BoundPlugin, bind_plugins
from chamberlain.plugins.protocol import ProcessResult, TerminationReason
from chamberlain.plugins.registry import Discovery
from chamberlain.records import Enqueued, Job, JobStatus, NewJob


def bound(tmp_path: Path, settings: dict[str, Any] | None = None) -> BoundPlugin:
    """Fake plugin ``a`` bound with ``plugins.a`` set to ``settings``."""
    config = parse_config({"plugins": {"a": settings or {}}}, base_dir=tmp_path)
    manifest = fake_plugin(tmp_path, "a")
    return bind_plugins(config, Discovery(plugins={"a": manifest}, skipped=()))["a"]


@attrs.define
class Starts:
    """The fake plugins, with an event per job set as its process starts."""

    fake: FakePlugins = attrs.field(factory=FakePlugins)
    events: dict[str, trio.Event] = attrs.field(factory=dict)

    def of(self, job_id: str) -> trio.Event:
        return self.events.setdefault(job_id, trio.Event())

    async def execute(self, **kwargs: Any) -> ProcessResult:
        self.of(json.loads(kwargs["request"])["job_id"]).set()
        return await self.fake.execute(**kwargs)


@attrs.define
class Harness:
    runner: Runner
    store: trio.MemorySendChannel[JobStoreRequest]
    mailbox: trio.MemorySendChannel[RunnerRequest]
    reports: trio.MemoryReceiveChannel[DispatcherRequest]
    starts: Starts
    #: Set once ``Runner.run`` has returned.
    returned: trio.Event

    async def run(self, payload: dict[str, Any], *, max_attempts: int = 1) -> str:
        """Enqueue a job of ``a``, claim it and hand it to the Runner; its id."""
        job = NewJob(plugin="a", command="poll", payload=payload, max_attempts=max_attempts)
        (done,) = await self._ask(lambda r: Enqueue(jobs=(job,), reply=r))
        assert isinstance(done, Enqueued)
        claimed: ClaimResult = await self._ask(lambda r: Claim(capacity={"a": 1}, limit=1, reply=r))
        (one,) = claimed.jobs
        assert one.job.id == done.job.id
        await self.mailbox.send(Run(claimed=one))
        return one.job.id

    async def started(self, job_id: str) -> None:
        with trio.fail_after(60):
            await self.starts.of(job_id).wait()

    async def ended(self, job_id: str) -> Job:
        job: Job | None = await self._ask(lambda r: WaitJob(job_id=job_id, reply=r))
        assert job is not None
        return job

    async def job(self, job_id: str) -> Job:
        job: Job | None = await self._ask(lambda r: GetJob(job_id=job_id, reply=r))
        assert job is not None
        return job

    async def released(self) -> str:
        """The id of the next job the Runner reports released."""
        with trio.fail_after(3600):
            report = await self.reports.receive()
        assert isinstance(report, Released)
        return report.job_id

    async def _ask(self, build: Any) -> Any:
        return await call(self.store, build, timeout=3600)


@asynccontextmanager
async def runner_of(tmp_path: Path, plugin: BoundPlugin) -> AsyncIterator[Harness]:
    store_tx, store_rx = trio.open_memory_channel[JobStoreRequest](1024)
    reports_tx, reports_rx = trio.open_memory_channel[DispatcherRequest](1024)
    mailbox_tx, mailbox_rx = trio.open_memory_channel[RunnerRequest](math.inf)
    jobstore = JobStore(
        path=str(tmp_path / "state.db"),
        wake_dispatcher=lambda: None,
        now=clock_now,
        # Autojump would move the clock on while a worker thread runs SQL.
        offload=False,
    )
    starts = Starts()
    runner = Runner(
        plugin=plugin, store=store_tx, dispatcher=reports_tx, now=clock_now, execute=starts.execute
    )
    returned = trio.Event()

    async def serve(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await runner.run(mailbox_rx, task_status=task_status)
        returned.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(jobstore.run, store_rx)
        await nursery.start(serve)
        yield Harness(
            runner=runner,
            store=store_tx,
            mailbox=mailbox_tx,
            reports=reports_rx,
            starts=starts,
            returned=returned,
        )
        nursery.cancel_scope.cancel()


async def returned(h: Harness) -> float:
    """Wait for ``Runner.run`` to return; the mock time it did."""
    with trio.fail_after(3600):
        await h.returned.wait()
    return trio.current_time()


# -------------------------------------------------------------------------- retiring


async def test_a_retire_with_nothing_in_flight_returns_at_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with runner_of(tmp_path, bound(tmp_path)) as h:
        await trio.testing.wait_all_tasks_blocked()
        serving = not h.returned.is_set() and not h.runner.retired.is_set()
        await h.mailbox.send(h.runner.retirement())
        assert await returned(h) == 0.0
        assert h.runner.retired.is_set()
    assert serving


async def test_a_retire_waits_until_the_job_in_flight_has_settled(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with runner_of(tmp_path, bound(tmp_path)) as h:
        job_id = await h.run({"sleep": 30})
        await h.mailbox.send(h.runner.retirement())
        at = await returned(h)
        assert h.runner.retired.is_set()
        # Settled and reported before the Runner returned, not cut short.
        assert h.reports.receive_nowait() == Released(job_id=job_id)
        job = await h.job(job_id)
    assert at == 30.0
    assert job.status is JobStatus.SUCCEEDED
    assert job.completed_at == EPOCH + 30.0
    assert h.starts.fake.attempts[job_id] == 1


async def test_a_retiring_runner_still_stops_its_job_when_told(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with runner_of(tmp_path, bound(tmp_path)) as h:
        job_id = await h.run({"sleep": 3000})
        await h.mailbox.send(h.runner.retirement())
        await h.started(job_id)
        await h.mailbox.send(Terminate(reason=TerminationReason.CANCELLED, job_id=job_id))
        at = await returned(h)
        job = await h.job(job_id)
    assert at == 0.0
    assert job.status is JobStatus.CANCELLED


async def test_a_retire_sent_before_unretire_is_ignored(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    again = bound(tmp_path, {"timeouts": {"poll": "90s"}})
    async with runner_of(tmp_path, bound(tmp_path)) as h:
        before = h.runner.generation
        # Still unread when a second reload gives the name back.
        h.mailbox.send_nowait(h.runner.retirement())
        assert h.runner.unretire(again)
        assert h.runner.generation == before + 1
        assert h.runner.plugin is again
        await trio.testing.wait_all_tasks_blocked()
        kept_serving = not h.returned.is_set()
        job = await h.ended(await h.run({"sleep": 10}))
        assert job.status is JobStatus.SUCCEEDED
        assert not h.returned.is_set() and not h.runner.retired.is_set()
        # The current generation's Retire is obeyed.
        await h.mailbox.send(h.runner.retirement())
        await returned(h)
    assert kept_serving


async def test_unretire_after_a_retire_read_keeps_the_runner_once_its_job_ends(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with runner_of(tmp_path, bound(tmp_path)) as h:
        first = await h.run({"sleep": 30})
        await h.mailbox.send(h.runner.retirement())
        await h.started(first)
        await trio.testing.wait_all_tasks_blocked()
        # The Retire was read while the job ran: only unretire keeps the Runner.
        assert h.mailbox.statistics().current_buffer_used == 0
        assert h.runner.unretire(bound(tmp_path))
        assert (await h.ended(first)).status is JobStatus.SUCCEEDED
        assert await h.released() == first
        second = await h.ended(await h.run({}))
        assert second.status is JobStatus.SUCCEEDED
        assert not h.returned.is_set() and not h.runner.retired.is_set()


async def test_unretire_is_refused_once_the_runner_has_returned(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    original = bound(tmp_path)
    async with runner_of(tmp_path, original) as h:
        await h.mailbox.send(h.runner.retirement())
        await returned(h)
        generation = h.runner.generation
        assert not h.runner.unretire(bound(tmp_path, {"parallelism": 1}))
        assert h.runner.generation == generation
        assert h.runner.plugin is original


# ------------------------------------------------------------------- a new plugin


async def test_a_new_plugin_reaches_new_jobs_and_not_the_one_running(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with runner_of(tmp_path, bound(tmp_path, {"timeouts": {"poll": "60s"}})) as h:
        old = await h.run({"sleep": 30})
        await h.started(old)
        h.runner.plugin = bound(tmp_path, {"timeouts": {"poll": "10s"}})
        new = await h.run({"sleep": 30})
        ran_old, ran_new = await h.ended(old), await h.ended(new)
    # Under the old 60 s it finishes its 30 s; under the new 10 s it is stopped.
    assert ran_old.status is JobStatus.SUCCEEDED
    assert ran_new.status is JobStatus.DEAD
    assert ran_new.last_error is not None and "timed out after 10s" in ran_new.last_error
    assert ran_new.completed_at == EPOCH + 10.0


async def test_a_job_running_as_the_plugin_changes_is_retried_by_its_old_policy(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    slow = {"retry": {"backoff_base": "100s", "backoff_max": "1h"}}
    fast = {"retry": {"backoff_base": "1s", "backoff_max": "1h"}}
    async with runner_of(tmp_path, bound(tmp_path, slow)) as h:
        old = await h.run({"sleep": 5, "fail_until": 2}, max_attempts=2)
        await h.started(old)
        h.runner.plugin = bound(tmp_path, fast)
        new = await h.run({"fail_until": 2}, max_attempts=2)
        settled: dict[str, float] = {}
        for _ in range(2):
            job_id = await h.released()
            settled[job_id] = clock_now()
        retried_old, retried_new = await h.job(old), await h.job(new)
    assert settled == {new: EPOCH, old: EPOCH + 5.0}
    assert retried_old.status is JobStatus.QUEUED and retried_new.status is JobStatus.QUEUED
    # Each backoff is its base plus at most 10 % jitter.
    assert 100.0 <= retried_old.run_at - settled[old] <= 110.0
    assert 1.0 <= retried_new.run_at - settled[new] <= 1.1
