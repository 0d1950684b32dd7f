"""The Scheduler in the real actor tree, on trio's autojump clock, with fake plugins.

Each test starts the daemon at a chosen wall-clock instant (the mock clock counts
from there), lets days pass in no real time, and reads back the jobs the
schedules enqueued: their ``scheduled_for`` says which run each one was, their
``created_at`` when it was enqueued.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import trio
from fakes import FakePlugins, fake_plugin

from chamberlain.actors.mail import ReplacePlans
from chamberlain.actors.mailbox import call
from chamberlain.config import Config, parse_config
from chamberlain.daemon.tree import Daemon
from chamberlain.plugins.binding import BoundPlugin, bind_plugins
from chamberlain.plugins.registry import Discovery
from chamberlain.records import Job, JobFilter, JobStatus, NewJob
from chamberlain.schedule.books import ScheduleStatus
from chamberlain.schedule.breaker import BreakerState
from chamberlain.schedule.plan import SchedulePlan, build_plans
from chamberlain.schedule.timing import jitter_offset
from chamberlain.web.jobs import parse_rfc3339

UTC = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


@attrs.define
class Switchable(FakePlugins):
    """A fake plugin that fails every job (for good) while ``broken`` is set."""

    broken: bool = False

    async def execute(self, *, request: bytes, **kwargs: Any) -> Any:
        if self.broken:
            req = json.loads(request)
            req["payload"] = {**(req.get("payload") or {}), "fatal": True}
            request = json.dumps(req).encode()
        return await super().execute(request=request, **kwargs)


def instant(zone: ZoneInfo, text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def wall(zone: ZoneInfo, t: float) -> str:
    return datetime.fromtimestamp(t, zone).isoformat(timespec="minutes")


@attrs.define
class World:
    """A daemon factory sharing one state file and one wall clock."""

    tmp_path: Path
    fake: FakePlugins
    epoch: float
    plugin: dict[str, Any]
    max_workers: int = 4
    shutdown_grace: str = "1s"
    #: Added to the wall clock: a machine that slept through some time.
    slept: float = 0.0

    def now(self) -> float:
        return self.epoch + trio.current_time() + self.slept

    def daemon(self, plugin: dict[str, Any] | None = None) -> Daemon:
        cfg, plugins = self.configured(plugin)
        return Daemon(
            config=cfg,
            plugins=plugins,
            state_path=str(self.tmp_path / "state.db"),
            serve_web=False,
            handle_signals=False,
            store_offload=False,
            now=self.now,
            execute=self.fake.execute,
        )

    def plans(self, *schedules: dict[str, Any]) -> tuple[SchedulePlan, ...]:
        """The plans a reload to plugin ``a`` with these schedules gives the Scheduler."""
        _, plugins = self.configured({**self.plugin, "schedules": list(schedules)})
        return build_plans(plugins)

    def configured(
        self, plugin: dict[str, Any] | None = None
    ) -> tuple[Config, dict[str, BoundPlugin]]:
        cfg = parse_config(
            {
                "service": {"max_workers": self.max_workers, "shutdown_grace": self.shutdown_grace},
                "api": {"enabled": False},
                # Long timeouts: the fake plugin "runs" for as long as a test needs.
                "plugins": {
                    "a": {
                        "timeouts": {"poll": "1d", "handle": "1d"},
                        **(plugin if plugin is not None else self.plugin),
                    }
                },
            },
            base_dir=self.tmp_path,
        )
        manifest = fake_plugin(self.tmp_path, "a")
        return cfg, bind_plugins(cfg, Discovery(plugins={"a": manifest}, skipped=()))


def world(
    tmp_path: Path,
    start: str,
    *schedules: dict[str, Any],
    zone: ZoneInfo = UTC,
    fake: FakePlugins | None = None,
    **plugin: Any,
) -> World:
    return World(
        tmp_path=tmp_path,
        fake=fake or FakePlugins(),
        epoch=instant(zone, start),
        plugin={"schedules": list(schedules), **plugin},
    )


async def scheduled(daemon: Daemon) -> list[Job]:
    jobs, _ = await daemon.gateway.list_jobs(JobFilter(submitted_by="scheduler", limit=500))
    return sorted(jobs, key=lambda j: j.seq)


def nominal(job: Job) -> float:
    return parse_rfc3339(job.context["schedule"]["scheduled_for"])


async def run_for(w: World, seconds: float, plugin: dict[str, Any] | None = None) -> list[Job]:
    """Run a daemon for ``seconds`` of mock time; the scheduled jobs it saw, oldest first."""
    daemon = w.daemon(plugin)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await trio.sleep(seconds)
        jobs = await scheduled(daemon)
        await daemon.shutdown()
    return jobs


async def status_of(daemon: Daemon, schedule_id: str = "default") -> ScheduleStatus:
    (found,) = [s for s in await daemon.gateway.list_schedules() if s.id == schedule_id]
    return found


# -- every kind fires on time -------------------------------------------------------------------


async def test_an_interval_fires_on_its_grid_on_time(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    w = world(tmp_path, "2024-05-01 10:02:30", {"every": "5m"})
    jobs = await run_for(w, 3600)
    assert [wall(UTC, nominal(j)) for j in jobs[:3]] == [
        "2024-05-01T10:05+00:00",
        "2024-05-01T10:10+00:00",
        "2024-05-01T10:15+00:00",
    ]
    assert len(jobs) == 12
    # Enqueued at the due instant: the scheduler sleeps until then, it does not poll.
    assert all(abs(j.created_at - nominal(j)) < 0.01 for j in jobs)
    assert all(j.status is JobStatus.SUCCEEDED for j in jobs)
    first = jobs[0]
    assert first.plugin == "a" and first.command == "poll" and first.schedule_id == "default"
    assert first.context["schedule"]["catch_up"] is False


async def test_a_handle_schedule_delivers_its_payload_in_an_event(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    w = world(
        tmp_path, "2024-05-01 10:00:30", {"every": "1m", "command": "handle", "payload": {"x": 1}}
    )
    jobs = await run_for(w, 61)
    (job,) = jobs
    assert job.payload == {"x": 1}
    assert job.event is not None
    assert job.event["type"] == "schedule.fired"
    assert job.event["payload"] == {"x": 1}
    assert job.source_event_id == job.event["event_id"]
    (request,) = w.fake.requests
    assert request["context"]["schedule"]["id"] == "default"


async def test_cron_in_new_york_across_spring_forward(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    w = world(
        tmp_path,
        "2024-03-09 12:00",
        {"id": "night", "cron": "30 2 * * *", "timezone": "America/New_York"},
        {"id": "hourly", "every": "hourly", "timezone": "America/New_York"},
        zone=NEW_YORK,
    )
    jobs = await run_for(w, 2.5 * 86400)
    night = [wall(NEW_YORK, j.created_at) for j in jobs if j.schedule_id == "night"]
    assert night == ["2024-03-10T03:00-04:00", "2024-03-11T02:30-04:00"]
    hourly = [nominal(j) for j in jobs if j.schedule_id == "hourly"]
    day = [
        t
        for t in hourly
        if instant(NEW_YORK, "2024-03-10 00:00") <= t < instant(NEW_YORK, "2024-03-11 00:00")
    ]
    assert len(day) == 23  # the hour that does not exist does not run


async def test_berlin_fall_back_hourly_runs_25_times_and_daily_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    w = world(
        tmp_path,
        "2024-10-26 12:00",
        {"id": "hourly", "every": "hourly", "timezone": "Europe/Berlin"},
        {"id": "night", "cron": "30 2 * * *", "timezone": "Europe/Berlin"},
        zone=BERLIN,
    )
    jobs = await run_for(w, 2 * 86400)
    start, end = instant(BERLIN, "2024-10-27 00:00"), instant(BERLIN, "2024-10-28 00:00")
    hourly = [nominal(j) for j in jobs if j.schedule_id == "hourly" and start <= nominal(j) < end]
    assert len(hourly) == 25
    night = [wall(BERLIN, nominal(j)) for j in jobs if j.schedule_id == "night"]
    assert night == ["2024-10-27T02:30+02:00", "2024-10-28T02:30+01:00"]


async def test_at_fires_once_and_after_fires_once_after_the_start(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    w = world(
        tmp_path,
        "2024-05-01 10:00",
        {"id": "once", "at": "2024-05-01T11:30:00Z"},
        {"id": "boot", "after": "90s"},
    )
    daemon = w.daemon()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await trio.sleep(3 * 3600)
        jobs = await scheduled(daemon)
        once, boot = await status_of(daemon, "once"), await status_of(daemon, "boot")
        await daemon.shutdown()
    assert [(j.schedule_id, wall(UTC, j.created_at)) for j in jobs] == [
        ("boot", "2024-05-01T10:01+00:00"),
        ("once", "2024-05-01T11:30+00:00"),
    ]
    assert once.next_run is None and boot.next_run is None
    assert once.book.last_run_at == instant(UTC, "2024-05-01 11:30")
    # A restart runs "after" again (it counts from each start) but not "at".
    again = await run_for(w, 3600)
    assert [j.schedule_id for j in again] == ["boot", "once", "boot"]


async def test_jitter_spreads_runs_within_its_bound(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    w = world(
        tmp_path,
        "2024-05-01 10:00:00",
        *({"id": f"s{i}", "every": "10m", "jitter": "2m"} for i in range(8)),
    )
    jobs = await run_for(w, 3600 + 120)
    delays = [j.created_at - nominal(j) for j in jobs]
    assert len(jobs) == 8 * 6
    assert all(0 <= d < 120.01 for d in delays)
    assert max(delays) - min(delays) > 60  # they do not all start together
    # Each delay is the seeded function of the schedule and the instant: a restart
    # gives every run the very same delay.
    for job in jobs:
        key = f"a/{job.schedule_id}"
        expected = jitter_offset(key, nominal(job), 120.0, seed="chamberlain", room=600.0)
        assert abs(job.created_at - nominal(job) - expected) < 0.01


async def test_windows_and_weekdays(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    # Wednesday 2024-05-01 .. Tuesday 2024-05-07; hourly from 09:00 to 12:00, not at weekends.
    w = world(
        tmp_path,
        "2024-05-01 00:00",
        {
            "every": "1h",
            "only_between": "09:00-12:00",
            "not_on": ["sat", "sun"],
            "timezone": "Europe/Berlin",
        },
        zone=BERLIN,
    )
    jobs = await run_for(w, 7 * 86400)
    fires = [datetime.fromtimestamp(nominal(j), BERLIN) for j in jobs]
    assert len(fires) == 5 * 3
    assert {f.hour for f in fires} == {9, 10, 11}
    assert {f.strftime("%a") for f in fires} == {"Mon", "Tue", "Wed", "Thu", "Fri"}


# -- catch_up after a restart --------------------------------------------------------------------


async def down_for(
    w: World, seconds: float, schedule: dict[str, Any], later: dict[str, Any] | None = None
) -> list[Job]:
    """Run 30 minutes, stop, stay down for ``seconds``, start again (with ``later``
    when given); the jobs the second daemon enqueued in its first minute."""
    first = await run_for(w, 1800, {"schedules": [schedule]})
    assert len(first) == 3
    await trio.sleep(seconds)
    daemon = w.daemon({"schedules": [later or schedule]})
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await trio.sleep(60)
        jobs = [j for j in await scheduled(daemon) if j.id not in {f.id for f in first}]
        await daemon.shutdown()
    return jobs


async def test_catch_up_skip_runs_nothing_that_was_missed(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    w = world(tmp_path, "2024-05-01 10:00:30")
    jobs = await down_for(w, 3600, {"every": "10m", "catch_up": "skip"})
    assert jobs == []
    assert (
        await _book(w)
    ).last_skip_reason == "missed 6 run(s) while the daemon was down or asleep (catch_up: skip)"


async def test_catch_up_run_once_runs_one_for_all(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    w = world(tmp_path, "2024-05-01 10:00:30")
    jobs = await down_for(w, 3600, {"every": "10m", "catch_up": "run_once"})
    (job,) = jobs
    assert job.context["schedule"]["catch_up"] is True
    # It carries the latest instant that was missed.
    assert wall(UTC, nominal(job)) == "2024-05-01T11:30+00:00"


async def test_catch_up_run_all_runs_each_missed_run(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    w = world(tmp_path, "2024-05-01 10:00:30")
    jobs = await down_for(w, 3600, {"every": "10m", "catch_up": "run_all"})
    assert [wall(UTC, nominal(j))[11:16] for j in jobs] == [
        "10:40",
        "10:50",
        "11:00",
        "11:10",
        "11:20",
        "11:30",
    ]
    assert all(j.context["schedule"]["catch_up"] for j in jobs)


async def test_catch_up_run_all_is_bounded(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    w = world(tmp_path, "2024-05-01 10:00:30")
    jobs = await down_for(w, 3 * 86400, {"every": "10m", "catch_up": "run_all"})
    assert len(jobs) == 100
    # The most recent ones.
    assert wall(UTC, nominal(jobs[-1])) == "2024-05-04T10:30+00:00"
    assert (await _book(w)).last_skip_reason == (
        "missed more than 100 run(s) while the daemon was down or asleep (catch_up: run_all)"
    )


async def test_a_machine_that_slept_through_runs_applies_catch_up(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Suspended for an hour: the wall clock jumps, trio's (monotonic) clock does not.
    w = world(tmp_path, "2024-05-01 10:00:30", {"every": "10m", "catch_up": "run_once"})
    daemon = w.daemon()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await trio.sleep(25 * 60)  # 10:10 and 10:20 run
        w.slept = 3600.0
        # The Scheduler was asleep until 10:30 by trio's clock; it re-reads the wall
        # clock within MAX_SLEEP and finds 10:30 .. 11:20 in the past.
        await trio.sleep(31)
        jobs = await scheduled(daemon)
        await daemon.shutdown()
    assert [(wall(UTC, nominal(j))[11:16], j.context["schedule"]["catch_up"]) for j in jobs] == [
        ("10:10", False),
        ("10:20", False),
        ("11:20", True),
    ]


async def test_a_changed_timing_does_not_catch_up_the_old_one(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    w = world(tmp_path, "2024-05-01 10:00:30")
    jobs = await down_for(
        w, 3600, {"every": "10m", "catch_up": "run_all"}, {"every": "15m", "catch_up": "run_all"}
    )
    assert jobs == []  # 10m -> 15m: the books start afresh, nothing was missed


async def _book(w: World) -> Any:
    return (await _books(w))[("a", "default")]


async def _books(w: World) -> dict[Any, Any]:
    from chamberlain.store import schedule_books
    from chamberlain.store.sqlite import SqliteStore

    store = SqliteStore(w.tmp_path / "state.db")
    try:
        return dict(schedule_books.load(store.conn).books)
    finally:
        store.close()


# -- if_running ------------------------------------------------------------------------------


async def test_if_running_skip_drops_fires_while_a_job_runs(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    w = world(tmp_path, "2024-05-01 10:00:30", {"every": "1m", "payload": {"sleep": 150}})
    daemon = w.daemon()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await trio.sleep(600)
        jobs = await scheduled(daemon)
        stats = daemon.scheduler.statistics()
        await daemon.shutdown()
    # Each run takes 2.5 minutes: the two fires during it are skipped.
    assert [wall(UTC, nominal(j))[11:16] for j in jobs] == ["10:01", "10:04", "10:07", "10:10"]
    assert (stats.enqueued, stats.skipped, stats.missed) == (4, 6, 0)
    assert stats.next_run == instant(UTC, "2024-05-01 10:11")
    assert w.fake.peak["a"] == 1
    book = await _book(w)
    assert book.last_skip_reason == (
        "if_running: skip: 1 job(s) of this schedule still queued or running"
    )


async def test_max_outstanding_allows_that_many_at_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    w = world(
        tmp_path,
        "2024-05-01 10:00:30",
        {"every": "1m", "payload": {"sleep": 150}, "max_outstanding": 2},
    )
    await run_for(w, 900)
    assert w.fake.peak["a"] == 2


async def test_if_running_queue_runs_held_fires_one_after_another(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    w = world(
        tmp_path,
        "2024-05-01 10:00:30",
        {"every": "1m", "payload": {"sleep": 150}, "if_running": "queue"},
    )
    daemon = w.daemon()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await trio.sleep(300)
        status = await status_of(daemon)
        await daemon.shutdown()
    # Nothing was dropped, and they never overlapped although the plugin could.
    assert w.fake.peak["a"] == 1
    assert status.book.last_skip_reason is None
    assert len(status.book.owed) >= 2
    # The held fires survive a restart and run, in order.
    again = w.daemon()
    async with trio.open_nursery() as nursery:
        await nursery.start(again.run)
        await trio.sleep(1200)
        jobs = await scheduled(again)
        await again.shutdown()
    minutes = [wall(UTC, nominal(j))[11:16] for j in jobs]
    assert minutes[:5] == ["10:01", "10:02", "10:03", "10:04", "10:05"]
    assert minutes == sorted(minutes)
    assert w.fake.peak["a"] == 1


async def test_if_running_cancel_replaces_the_running_job(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    w = world(
        tmp_path,
        "2024-05-01 10:00:30",
        {"every": "10m", "payload": {"sleep": 100_000}, "if_running": "cancel"},
    )
    daemon = w.daemon()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await trio.sleep(35 * 60)
        jobs = await scheduled(daemon)
        await daemon.shutdown()
    assert [wall(UTC, nominal(j))[11:16] for j in jobs] == ["10:10", "10:20", "10:30"]
    assert [j.status for j in jobs] == [JobStatus.CANCELLED, JobStatus.CANCELLED, JobStatus.RUNNING]
    # The replacement started right after the cancelled one was gone.
    second = w.fake.started_at[jobs[1].id][0]
    assert 600 <= second - w.fake.started_at[jobs[0].id][0] < 610
    assert w.fake.peak["a"] == 1


# -- the circuit breaker -----------------------------------------------------------------------


async def test_every_breaker_transition(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    fake = Switchable(broken=True)
    w = world(
        tmp_path,
        "2024-05-01 10:00:30",
        {"every": "1m"},
        fake=fake,
        circuit_breaker={"threshold": 3, "reset_after": "10m"},
    )
    daemon = w.daemon()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        # 10:01, 10:02, 10:03 fail: open.
        await trio.sleep(3 * 60 + 10)
        s = await status_of(daemon)
        assert s.breaker.breaker.state is BreakerState.OPEN
        assert s.breaker.probe_at == instant(UTC, "2024-05-01 10:13")
        # While open, scheduled runs are held back ...
        await trio.sleep(5 * 60)
        assert len(await scheduled(daemon)) == 3
        s = await status_of(daemon)
        assert s.book.last_skip_reason == "circuit breaker for a/poll is open"
        # ... but a job triggered by hand runs, and does not count.
        (manual,) = await daemon.gateway.enqueue([NewJob(plugin="a", command="poll")])
        done = await daemon.gateway.wait_job(manual.job.id)
        assert done is not None and done.status is JobStatus.FAILED
        # 10:13: half open; the 10:13 run is the probe; it fails: open again.
        await trio.sleep(5 * 60)
        s = await status_of(daemon)
        assert s.breaker.breaker.state is BreakerState.OPEN
        assert len(await scheduled(daemon)) == 4
        # Repaired: the next probe (10:23) succeeds and closes the breaker.
        fake.broken = False
        await trio.sleep(11 * 60)
        s = await status_of(daemon)
        jobs = await scheduled(daemon)
        await daemon.shutdown()
    assert s.breaker.breaker.state is BreakerState.CLOSED
    assert [(t.source.value, t.target.value) for t in s.breaker.breaker.transitions] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    reasons = [t.reason for t in s.breaker.breaker.transitions]
    assert reasons[0].startswith("3 consecutive scheduled runs failed")
    assert reasons[1].startswith("reset_after (10m) has passed")
    assert reasons[2].startswith("probe failed")
    assert reasons[4].startswith("probe succeeded")
    times = [wall(UTC, t.at)[11:16] for t in s.breaker.breaker.transitions]
    assert times == ["10:03", "10:13", "10:13", "10:23", "10:23"]
    assert [wall(UTC, nominal(j))[11:16] for j in jobs[:5]] == [
        "10:01",
        "10:02",
        "10:03",
        "10:13",
        "10:23",
    ]
    assert [j.status for j in jobs] == [JobStatus.FAILED] * 4 + [JobStatus.SUCCEEDED] * 2


async def test_reset_closes_the_breaker_and_it_stays_open_across_a_restart(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = Switchable(broken=True)
    w = world(
        tmp_path,
        "2024-05-01 10:00:30",
        {"every": "1m"},
        fake=fake,
        circuit_breaker={"threshold": 2, "reset_after": "1h"},
    )
    jobs = await run_for(w, 5 * 60)
    assert len(jobs) == 2
    daemon = w.daemon()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await trio.sleep(120)
        before = await status_of(daemon)
        unknown = await daemon.gateway.reset_breaker("a", "nope", by="token:ops")
        fake.broken = False
        reset_at = w.now()
        after = await daemon.gateway.reset_breaker("a", "default", by="token:ops")
        await trio.sleep(90)
        ran = [j for j in await scheduled(daemon) if j.created_at >= reset_at]
        await daemon.shutdown()
    assert before.breaker.breaker.state is BreakerState.OPEN  # durable
    assert ran
    assert all(j.status is JobStatus.SUCCEEDED for j in ran)
    assert unknown is None
    assert after is not None
    assert after.breaker.breaker.state is BreakerState.CLOSED
    assert after.breaker.breaker.transitions[-1].reason == "reset by token:ops"


# -- draining, books, statuses -------------------------------------------------------------------


async def test_draining_stops_scheduled_runs_first(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Two may run at once, so only the pause keeps the 10:02 run from being enqueued
    # while the daemon waits for the 10:01 one to finish.
    w = world(
        tmp_path,
        "2024-05-01 10:00:30",
        {"every": "1m", "payload": {"sleep": 100}, "max_outstanding": 2},
    )
    w.shutdown_grace = "5m"
    daemon = w.daemon()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await trio.sleep(70)
        draining_from = w.now()
        await daemon.shutdown()
        stopped_at = w.now()
    assert stopped_at - draining_from >= 50  # it did wait for the running job
    jobs = await _jobs_in_store(w)
    assert [wall(UTC, nominal(j))[11:16] for j in jobs] == ["10:01"]
    assert jobs[0].status is JobStatus.SUCCEEDED


async def _jobs_in_store(w: World) -> list[Job]:
    from chamberlain.store.sqlite import SqliteStore

    store = SqliteStore(w.tmp_path / "state.db")
    try:
        jobs, _ = store.list_jobs(JobFilter(submitted_by="scheduler", limit=500))
        return jobs
    finally:
        store.close()


async def test_list_schedules_reports_next_and_last_run(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    w = world(
        tmp_path,
        "2024-05-01 10:00:30",
        {
            "id": "office",
            "cron": "*/5 9-17 * * 1-5",
            "timezone": "Europe/Berlin",
            "payload": {"sleep": 400},
            "catch_up": "run_once",
            "if_running": "queue",
        },
    )
    daemon = w.daemon()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await trio.sleep(4 * 60 + 40)
        s = await status_of(daemon, "office")
        await daemon.shutdown()
    assert (s.plugin, s.id, s.command, s.kind, s.spec) == (
        "a",
        "office",
        "poll",
        "cron",
        "*/5 9-17 * * 1-5",
    )
    assert (s.timezone, s.catch_up, s.if_running, s.max_outstanding) == (
        "Europe/Berlin",
        "run_once",
        "queue",
        1,
    )
    assert s.book.last_run_at == instant(UTC, "2024-05-01 10:05")
    assert s.book.last_status == "running"  # read live: the job is still running
    assert s.next_run == instant(UTC, "2024-05-01 10:10")
    assert s.breaker.breaker.state is BreakerState.CLOSED


# -- a reload replaces the plans -----------------------------------------------------------------


async def replace(daemon: Daemon, plans: tuple[SchedulePlan, ...]) -> None:
    """Hand the running Scheduler new plans, as a reload does; back once in effect."""
    await call(daemon.scheduler.address, lambda r: ReplacePlans(plans=plans, reply=r), timeout=5)


async def test_a_reload_adds_a_schedule_that_fires_at_its_time(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    first = {"id": "first", "every": "10m"}
    w = world(tmp_path, "2024-05-01 10:00:30", first)
    daemon = w.daemon()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await trio.sleep(11 * 60)  # 10:10 runs
        before = await status_of(daemon, "first")
        await replace(daemon, w.plans(first, {"id": "second", "cron": "17 * * * *"}))
        added = await status_of(daemon, "second")
        kept = await status_of(daemon, "first")
        await trio.sleep(20 * 60)  # up to 10:31:30
        jobs = await scheduled(daemon)
        await daemon.shutdown()
    assert added.next_run == instant(UTC, "2024-05-01 10:17")
    # The schedule that stayed kept its books and its next run.
    assert (kept.book, kept.next_run) == (before.book, before.next_run)
    assert [(j.schedule_id, wall(UTC, nominal(j))[11:16]) for j in jobs] == [
        ("first", "10:10"),
        ("second", "10:17"),
        ("first", "10:20"),
        ("first", "10:30"),
    ]
    # Enqueued at its instant: the reload woke the Scheduler to sleep until then.
    assert all(abs(j.created_at - nominal(j)) < 0.01 for j in jobs)


async def test_a_schedule_a_reload_removed_never_fires_again(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    keep, gone = {"id": "keep", "every": "5m"}, {"id": "gone", "every": "5m"}
    w = world(tmp_path, "2024-05-01 10:00:30", keep, gone)
    daemon = w.daemon()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await trio.sleep(6 * 60)  # 10:05 runs, for both
        await replace(daemon, w.plans(keep))
        listed = [s.id for s in await daemon.gateway.list_schedules()]
        await trio.sleep(3600)
        jobs = await scheduled(daemon)
        stats = daemon.scheduler.statistics()
        await daemon.shutdown()
    assert listed == ["keep"]
    assert stats.schedules == 1
    assert [wall(UTC, nominal(j))[11:16] for j in jobs if j.schedule_id == "gone"] == ["10:05"]
    assert len([j for j in jobs if j.schedule_id == "keep"]) == 13  # 10:05 .. 11:05
    # Its books went from the store with the commit that followed.
    assert set(await _books(w)) == {("a", "keep")}


async def test_a_scheduler_started_without_schedules_runs_one_a_reload_adds(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    w = world(tmp_path, "2024-05-01 10:00:30")
    daemon = w.daemon()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await trio.sleep(3600)
        assert await daemon.gateway.list_schedules() == ()
        await replace(daemon, w.plans({"every": "5m"}))  # at 11:00:30
        await trio.sleep(11 * 60)
        jobs = await scheduled(daemon)
        await daemon.shutdown()
    assert [wall(UTC, nominal(j))[11:16] for j in jobs] == ["11:05", "11:10"]
    assert all(abs(j.created_at - nominal(j)) < 0.01 for j in jobs)
