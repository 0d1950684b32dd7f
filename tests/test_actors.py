"""The actor tree on a mock clock, with fake plugin processes.

The logic lives in the actors, not in the processes, so these tests swap
``run_plugin`` for a fake that follows instructions in the job's payload and
records what it saw.  Time is trio's MockClock with autojump: a job that "runs"
for an hour takes no real time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from fakes import FakePlugins, fake_plugin, finish, make_daemon, submit

from chamberlain.actors.dispatcher import Dispatcher
from chamberlain.actors.jobstore import JobStore
from chamberlain.actors.runner import Runner
from chamberlain.config import parse_config
from chamberlain.plugins.binding import BoundPlugin, bind_plugins
from chamberlain.plugins.process import ProcessControl
from chamberlain.plugins.registry import Discovery
from chamberlain.records import Job, JobStatus, NewJob, Tree, rfc3339
from chamberlain.supervision import SupervisorGaveUp


async def test_jobs_run_within_worker_and_parallelism_limits(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake, config={"plugins": {"a": {"parallelism": 2}}})
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        ids = await submit(
            daemon,
            *(NewJob(plugin="a", command="poll", payload={"sleep": 10}) for _ in range(10)),
            *(NewJob(plugin="b", command="poll", payload={"sleep": 10}) for _ in range(10)),
        )
        jobs = await finish(daemon, ids)
        await daemon.shutdown()
    assert all(j.status is JobStatus.SUCCEEDED for j in jobs)
    assert fake.peak["a"] == 2
    assert fake.peak_total == 3


async def test_not_concurrency_safe_runs_one_at_a_time(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(
        tmp_path, fake, manifests=(fake_plugin(tmp_path, "solo", concurrency_safe=False),)
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        ids = await submit(
            daemon, *(NewJob(plugin="solo", command="poll", payload={"sleep": 1}) for _ in range(5))
        )
        await finish(daemon, ids)
        await daemon.shutdown()
    assert fake.peak["solo"] == 1


async def test_fifo_order_within_a_plugin(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake, config={"plugins": {"a": {"parallelism": 1}}})
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        ids = await submit(
            daemon, *(NewJob(plugin="a", command="poll", payload={"sleep": 1}) for _ in range(6))
        )
        await finish(daemon, ids)
        await daemon.shutdown()
    assert [r["job_id"] for r in fake.requests] == ids


async def test_retries_back_off_exponentially_then_succeed(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(
        tmp_path,
        fake,
        config={"plugins": {"a": {"retry": {"max_attempts": 4, "backoff_base": "10s"}}}},
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        (jid,) = await submit(
            daemon, NewJob(plugin="a", command="poll", payload={"fail_until": 3}, max_attempts=4)
        )
        (job,) = await finish(daemon, [jid])
        await daemon.shutdown()
    assert job.status is JobStatus.SUCCEEDED
    assert job.attempt == 3
    t = fake.started_at[jid]
    # base * 2**(n-1) plus up to 10% jitter
    assert 10 <= t[1] - t[0] <= 11.5
    assert 20 <= t[2] - t[1] <= 22.5


async def test_exhausted_retries_make_a_dead_job_and_fatal_fails_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(
        tmp_path, fake, config={"plugins": {"a": {"retry": {"backoff_base": "1s"}}}}
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        dead, fatal = await submit(
            daemon,
            NewJob(plugin="a", command="poll", payload={"fail_until": 99}, max_attempts=3),
            NewJob(plugin="a", command="poll", payload={"fatal": True}, max_attempts=3),
        )
        jobs = await finish(daemon, [dead, fatal])
        await daemon.shutdown()
    assert [j.status for j in jobs] == [JobStatus.DEAD, JobStatus.FAILED]
    assert fake.attempts[dead] == 3
    assert fake.attempts[fatal] == 1
    assert jobs[0].last_error is not None and "gave up after 3 attempts" in jobs[0].last_error


async def test_timeout_from_the_trigger_is_applied(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    no_retry = {"plugins": {"a": {"retry": {"on_timeout": False}}}}
    daemon = make_daemon(tmp_path, fake, config=no_retry)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        (jid,) = await submit(
            daemon, NewJob(plugin="a", command="poll", payload={"sleep": 50}, timeout=5)
        )
        (job,) = await finish(daemon, [jid])
        await daemon.shutdown()
    assert job.status is JobStatus.TIMED_OUT
    assert fake.attempts[jid] == 1


async def test_a_timed_out_job_is_retried_by_default_then_dead(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(
        tmp_path, fake, config={"plugins": {"a": {"retry": {"backoff_base": "1s"}}}}
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        (jid,) = await submit(
            daemon,
            NewJob(plugin="a", command="poll", payload={"sleep": 50}, timeout=5, max_attempts=3),
        )
        (job,) = await finish(daemon, [jid])
        await daemon.shutdown()
    assert job.status is JobStatus.DEAD
    assert fake.attempts[jid] == 3
    assert job.last_error == "timed out after 5s (gave up after 3 attempts)"


async def test_plugin_state_is_merged_and_passed_back(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake, config={"plugins": {"a": {"parallelism": 1}}})
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        for updates in ({"x": 1, "y": 1}, {"y": 2}, {}):
            ids = await submit(
                daemon, NewJob(plugin="a", command="poll", payload={"state_updates": updates})
            )
            await finish(daemon, ids)
        await daemon.shutdown()
    assert [r["state"] for r in fake.requests] == [{}, {"x": 1, "y": 1}, {"x": 1, "y": 2}]


async def test_the_request_carries_config_payload_and_event(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake, config={"plugins": {"a": {"config": {"token": "t"}}}})
    event = {"type": "api.trigger", "payload": {"n": 1}}
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        ids = await submit(
            daemon,
            NewJob(plugin="a", command="poll", payload={"n": 1}),
            NewJob(plugin="a", command="handle", payload={"n": 1}, event=event),
        )
        await finish(daemon, ids)
        await daemon.shutdown()
    poll, handle = sorted(fake.requests, key=lambda r: r["command"] != "poll")
    assert poll["protocol"] == 2
    assert poll["config"] == {"token": "t"}
    assert poll["payload"] == {"n": 1}
    assert "event" not in poll
    # As in Ductile: a handle job's payload is its event, and the event's payload
    # has the request context merged in.
    assert handle["payload"] == event
    assert handle["context"] == {"ductile_plugin": "a"}
    assert handle["event"] == {"type": "api.trigger", "payload": {"n": 1, "ductile_plugin": "a"}}
    assert poll["deadline_at"].endswith("Z")


async def test_a_crashing_dispatcher_is_restarted_and_no_job_is_lost(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake)
    original = Dispatcher._handle
    crashes = 0

    def flaky(self: Dispatcher, message: Any, books: Any) -> bool:
        nonlocal crashes
        if type(message).__name__ == "Released" and crashes < 2:
            crashes += 1
            raise RuntimeError("injected dispatcher fault")
        return original(self, message, books)

    monkeypatch.setattr(Dispatcher, "_handle", flaky)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        ids = await submit(
            daemon, *(NewJob(plugin="a", command="poll", payload={"sleep": 2}) for _ in range(12))
        )
        jobs = await finish(daemon, ids)
        stats = daemon.root.statistics()
        await daemon.shutdown()
    assert all(j.status is JobStatus.SUCCEEDED for j in jobs)
    assert stats.restart_counts()["root/dispatcher"] == 2
    # Nothing ran twice: a restarted dispatcher rebuilds its books from the store.
    assert set(fake.attempts.values()) == {1}


async def test_a_crashing_runner_requeues_its_jobs(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake)
    original = Runner._execute
    crashed = False

    async def crash_once(self: Runner, job: Job, state: object, control: ProcessControl) -> None:
        nonlocal crashed
        if not crashed and job.payload.get("crash"):
            crashed = True
            await trio.sleep(1)  # let its sibling start, so the crash has a victim
            raise RuntimeError("injected runner fault")
        await original(self, job, state, control)

    monkeypatch.setattr(Runner, "_execute", crash_once)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        victim, crasher = await submit(
            daemon,
            NewJob(plugin="a", command="poll", payload={"sleep": 30}),
            NewJob(plugin="a", command="poll", payload={"crash": True}),
        )
        jobs = await finish(daemon, [victim, crasher])
        stats = daemon.root.statistics()
        await daemon.shutdown()
    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED]
    # Both were running when the runner died: recovered, and the attempt counted.
    assert [j.attempt for j in jobs] == [2, 2]
    assert stats.restart_counts()["root/runners/a"] == 1


async def test_a_crashing_jobstore_restarts_the_rest(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake)
    original = JobStore._serve
    crashed = False

    async def crash_on_settle(self: JobStore, batch: list[Any]) -> None:
        nonlocal crashed
        if not crashed and any(type(r).__name__ == "Settle" for r in batch):
            crashed = True
            raise RuntimeError("injected store fault")
        await original(self, batch)

    monkeypatch.setattr(JobStore, "_serve", crash_on_settle)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        ids = await submit(
            daemon, *(NewJob(plugin="a", command="poll", payload={"sleep": 1}) for _ in range(4))
        )
        jobs = await finish(daemon, ids)
        stats = daemon.root.statistics()
        await daemon.shutdown()
    assert all(j.status is JobStatus.SUCCEEDED for j in jobs)
    counts = stats.restart_counts()
    assert counts["root/jobstore"] == 1


async def test_past_the_intensity_budget_the_daemon_gives_up(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake)

    def always(self: Dispatcher, message: Any, books: Any) -> bool:
        raise RuntimeError("injected permanent fault")

    monkeypatch.setattr(Dispatcher, "_handle", always)
    with pytest.raises(BaseExceptionGroup) as info:  # noqa: PT012
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            await submit(daemon, NewJob(plugin="a", command="poll"))
            for _ in range(20):
                await submit(daemon, NewJob(plugin="a", command="poll"))
                await trio.sleep(1)
    assert info.group_contains(SupervisorGaveUp)


async def test_shutdown_lets_short_jobs_finish_and_requeues_long_ones(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(
        tmp_path, fake, config={"service": {"max_workers": 3, "shutdown_grace": "10s"}}
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        short, long = await submit(
            daemon,
            NewJob(plugin="a", command="poll", payload={"sleep": 5}),
            NewJob(plugin="a", command="poll", payload={"sleep": 500}),
        )
        await trio.sleep(1)
        began = trio.current_time()
        await daemon.shutdown()
        took = trio.current_time() - began
    assert 10 <= took < 20
    # Reopen the store to see what the next start will find.
    from chamberlain.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "state.db")
    s, lg = store.get_job(short), store.get_job(long)
    store.close()
    assert s is not None and s.status is JobStatus.SUCCEEDED
    assert lg is not None and lg.status is JobStatus.QUEUED
    assert lg.attempt == 0  # the interrupted attempt was given back
    assert lg.last_error == "interrupted by shutdown"


async def test_draining_daemon_reports_it(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        assert daemon.lifecycle.accepting
        health = await daemon.gateway.health()
        assert health.plugins_loaded == 2
        assert health.max_workers == 3
        await daemon.shutdown()
    assert not daemon.lifecycle.accepting


def test_bound_plugin_defaults(tmp_path: Path) -> None:
    cfg = parse_config({"plugins": {"a": {"timeouts": {"poll": "5s"}}}}, base_dir=tmp_path)
    plugins = bind_plugins(cfg, Discovery(plugins={"a": fake_plugin(tmp_path, "a")}, skipped=()))
    a: BoundPlugin = plugins["a"]
    assert a.timeout_for("poll") == 5.0
    assert a.timeout_for("handle") == 120.0
    assert a.timeout_for("health") == 10.0
    assert a.timeout_for("init") == 30.0
    assert a.timeout_for("other") == 60.0


async def test_cancel_a_queued_job(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake, config={"plugins": {"a": {"parallelism": 1}}})
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        busy, waiting = await submit(
            daemon,
            NewJob(plugin="a", command="poll", payload={"sleep": 30}),
            NewJob(plugin="a", command="poll", payload={"sleep": 1}),
        )
        await trio.sleep(1)
        result = await daemon.gateway.cancel_job(waiting)
        again = await daemon.gateway.cancel_job(waiting)
        (busy_job,) = await finish(daemon, [busy])
        await daemon.shutdown()
    assert result.accepted
    assert not result.was_running
    assert result.job is not None and result.job.status is JobStatus.CANCELLED
    assert not again.accepted  # already terminal: nothing changed
    assert again.job is not None and again.job.status is JobStatus.CANCELLED
    assert waiting not in fake.attempts  # it never ran
    assert busy_job.status is JobStatus.SUCCEEDED


async def test_cancel_a_running_job_terminates_it(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        (jid,) = await submit(daemon, NewJob(plugin="a", command="poll", payload={"sleep": 1000}))
        await trio.sleep(5)
        began = trio.current_time()
        result = await daemon.gateway.cancel_job(jid)
        second = await daemon.gateway.cancel_job(jid)
        (job,) = await finish(daemon, [jid])
        took = trio.current_time() - began
        await daemon.shutdown()
    assert result.was_running
    assert result.accepted
    assert second.was_running
    assert job.status is JobStatus.CANCELLED
    assert job.attempt == 1
    assert took < 10


async def test_cancel_an_unknown_job(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    daemon = make_daemon(tmp_path, FakePlugins())
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        result = await daemon.gateway.cancel_job("no-such-job")
        await daemon.shutdown()
    assert result.job is None
    assert not result.accepted


async def test_cancelling_the_last_queued_job_of_a_tree_answers_its_waiter(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake, config={"plugins": {"a": {"parallelism": 1}}})
    trees: list[Tree | None] = []
    answered = trio.Event()

    async def wait_tree(root: str) -> None:
        trees.append(await daemon.gateway.wait_tree(root))
        answered.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        _, waiting = await submit(
            daemon,
            NewJob(plugin="a", command="poll", payload={"sleep": 1000}, timeout=2000),
            NewJob(plugin="a", command="poll"),
        )
        nursery.start_soon(wait_tree, waiting)
        # The Router holds the wait; the busy job runs long, so no Settle rings it.
        await trio.testing.wait_all_tasks_blocked()
        began = trio.current_time()
        result = await daemon.gateway.cancel_job(waiting)
        with trio.fail_after(3600):
            await answered.wait()
        took = trio.current_time() - began
        still_busy = fake.running["a"]
        await daemon.shutdown()
    assert result.accepted
    assert took < 10
    assert still_busy == 1
    (tree,) = trees
    assert tree is not None
    assert [j.status for j in tree.jobs] == [JobStatus.CANCELLED]


async def test_an_orphan_given_up_after_a_runner_crash_answers_its_tree_waiter(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake)
    original = Runner._execute
    crash = trio.Event()

    async def crash_on_cue(self: Runner, job: Job, state: object, control: ProcessControl) -> None:
        if job.payload.get("crash"):
            await crash.wait()
            raise RuntimeError("injected runner fault")
        await original(self, job, state, control)

    monkeypatch.setattr(Runner, "_execute", crash_on_cue)
    trees: list[Tree | None] = []
    answered = trio.Event()

    async def wait_tree(root: str) -> None:
        trees.append(await daemon.gateway.wait_tree(root))
        answered.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        # The only other job runs long: no Settle rings the Router meanwhile.
        await submit(
            daemon, NewJob(plugin="b", command="poll", payload={"sleep": 1000}, timeout=2000)
        )
        (victim,) = await submit(
            daemon, NewJob(plugin="a", command="poll", payload={"crash": True}, max_attempts=1)
        )
        nursery.start_soon(wait_tree, victim)
        await trio.testing.wait_all_tasks_blocked()
        began = trio.current_time()
        crash.set()
        with trio.fail_after(3600):
            await answered.wait()
        took = trio.current_time() - began
        stats = daemon.root.statistics()
        await daemon.shutdown()
    assert stats.restart_counts()["root/runners/a"] == 1
    assert took < 10
    (tree,) = trees
    assert tree is not None
    assert [j.status for j in tree.jobs] == [JobStatus.DEAD]


async def test_the_deadline_the_plugin_gets_follows_the_daemon_clock(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fixed = 1_600_000_000.0
    # make_daemon's daemon, on a wall clock that stands still.
    daemon = attrs.evolve(make_daemon(tmp_path, fake := FakePlugins()), now=lambda: fixed)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        ids = await submit(daemon, NewJob(plugin="a", command="poll", timeout=90))
        await finish(daemon, ids)
        await daemon.shutdown()
    (request,) = fake.requests
    assert request["deadline_at"] == rfc3339(fixed + 90)
