"""The Scheduler's decisions, driven directly: plain floats for time, no trio, no store.

Each test builds a :class:`ScheduleEngine`, loads it with books (as the store would
hand them over after a restart), and drives passes the way the actor does:
``advance`` at a wall-clock instant, ``place`` with the schedules' outstanding job
ids, ``committed`` once "saved".  Jobs finish when a test says so (``settled``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from chamberlain.config import parse_config
from chamberlain.records import Job, JobStatus, NewJob
from chamberlain.schedule.books import (
    BreakerBook,
    ScheduleBook,
    ScheduleKey,
    StoredSchedules,
)
from chamberlain.schedule.breaker import Breaker, BreakerPolicy, BreakerState
from chamberlain.schedule.engine import (
    EARLY,
    Cancellation,
    Commit,
    ScheduledRun,
    ScheduleEngine,
    Step,
)
from chamberlain.schedule.plan import SchedulePlan
from chamberlain.schedule.policy import CATCH_UP_LIMIT, OWED_LIMIT, Fire
from chamberlain.schedule.timing import jitter_offset, resolve_zone

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
KEY: ScheduleKey = ("a", "default")
BREAKER = BreakerPolicy(threshold=3, reset_after=600.0)
NO_BOOKS = StoredSchedules(books={}, breakers={})


def at(text: str, zone: ZoneInfo = UTC) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def hhmm(t: float, zone: ZoneInfo = UTC) -> str:
    return datetime.fromtimestamp(t, zone).strftime("%H:%M")


def plan(breaker: BreakerPolicy = BREAKER, **schedule: Any) -> SchedulePlan:
    """A schedule of plugin ``a``, configured as in a config file (UTC unless told)."""
    cfg = parse_config(
        {"plugins": {"a": {"schedules": [{"timezone": "UTC", **schedule}]}}},
        base_dir=Path("/cfg"),
        environ={},
    )
    (config,) = cfg.plugins["a"].schedules
    zone, zone_name = resolve_zone(config.timezone)
    return SchedulePlan(
        plugin="a", config=config, zone=zone, zone_name=zone_name, max_attempts=1, breaker=breaker
    )


def started(
    *plans: SchedulePlan,
    at: float,
    stored: StoredSchedules = NO_BOOKS,
    seed: str = "chamberlain",
) -> ScheduleEngine:
    """An engine loaded at ``at``, its first pass (the one right after loading) done."""
    engine = ScheduleEngine(plans=plans, seed=seed)
    engine.load(stored, started_at=at, now=at)
    assert engine.next_wakeup() == -math.inf  # the first pass is due at once
    run(engine, at)
    return engine


def run(
    engine: ScheduleEngine,
    now: float,
    outstanding: Mapping[ScheduleKey, Sequence[str]] | None = None,
) -> Step:
    """One pass at ``now``, its commit reported saved."""
    due = engine.advance(now)
    step = engine.place(due, outstanding or {})
    if step.commit is not None:
        engine.committed(step.commit)
    return step


def runs(step: Step) -> tuple[ScheduledRun, ...]:
    return () if step.commit is None else step.commit.runs


def fired(step: Step) -> list[tuple[str, bool]]:
    """(HH:MM of the nominal instant, catch-up) of each job a pass enqueued."""
    return [(hhmm(r.fire.nominal), r.fire.late) for r in runs(step)]


def finished(job: NewJob, status: JobStatus, *, at: float, error: str | None = None) -> Job:
    """``job`` as the store reports it once it reached ``status``."""
    return Job(
        id=job.id,
        plugin=job.plugin,
        command=job.command,
        payload=job.payload,
        event=job.event,
        context=job.context,
        status=status,
        attempt=1,
        max_attempts=job.max_attempts,
        submitted_by=job.submitted_by,
        timeout=None,
        dedupe_key=None,
        created_at=at,
        started_at=at,
        completed_at=at,
        run_at=at,
        last_error=error,
        result=None,
        parent_job_id=None,
        source_event_id=job.source_event_id,
        schedule_id=job.schedule_id,
    )


def drive(
    engine: ScheduleEngine,
    start: float,
    until: float,
    outcome: JobStatus = JobStatus.SUCCEEDED,
) -> list[ScheduledRun]:
    """Pass at every wake-up the engine asks for up to ``until``; each job ends with
    ``outcome`` at once (failures with the error "boom").  The jobs enqueued, oldest first."""
    enqueued: list[ScheduledRun] = []
    now = start
    for _ in range(10_000):
        wakeup = engine.next_wakeup()
        if wakeup is None or wakeup > until:
            return enqueued
        now = max(now, wakeup)
        for scheduled in runs(run(engine, now)):
            enqueued.append(scheduled)
            error = None if outcome is JobStatus.SUCCEEDED else "boom"
            engine.settled(finished(scheduled.job, outcome, at=now, error=error), now=now)
    raise AssertionError("the engine keeps asking to be woken without progress")


def book_after(engine: ScheduleEngine, key: ScheduleKey = KEY) -> ScheduleBook:
    status = engine.status(key)
    assert status is not None
    return status.book


def breaker_of(engine: ScheduleEngine, key: ScheduleKey = KEY) -> Breaker:
    status = engine.status(key)
    assert status is not None
    return status.breaker.breaker


def texts(engine: ScheduleEngine, level: int | None = None) -> list[str]:
    return [n.text for n in engine.take_notes() if level is None or n.level == level]


def restarted(
    engine: ScheduleEngine, *plans: SchedulePlan, at: float, breakers: Iterable[BreakerBook] = ()
) -> ScheduleEngine:
    """A new engine (a restarted daemon) loaded with the books ``engine`` kept."""
    books = {s.book.key: s.book for s in engine.statuses()}
    return started(
        *plans,
        at=at,
        stored=StoredSchedules(books=books, breakers={b.key: b for b in breakers}),
    )


# -- due instants ---------------------------------------------------------------------------


def test_the_engine_sleeps_until_the_next_instant_and_fires_then() -> None:
    engine = started(plan(every="5m"), at=at("2024-05-01 10:02:30"))
    assert engine.next_wakeup() == at("2024-05-01 10:05")
    # Not a moment early ...
    assert runs(run(engine, at("2024-05-01 10:04:59"))) == ()
    # ... but a rounding error away is close enough.
    step = run(engine, at("2024-05-01 10:05") - EARLY / 2)
    (scheduled,) = runs(step)
    assert scheduled.fire == Fire(at("2024-05-01 10:05"))
    assert scheduled.job.schedule_id == "default" and scheduled.job.command == "poll"
    assert scheduled.job.context["schedule"]["catch_up"] is False
    # The job and the book that records it are committed together.
    assert step.commit is not None
    (book,) = step.commit.books
    assert book.last_fire_at == at("2024-05-01 10:05")
    assert (book.last_job_id, book.last_status) == (scheduled.job.id, "queued")
    assert engine.next_wakeup() == at("2024-05-01 10:10")
    assert texts(engine, logging.INFO)[-1] == (
        "scheduled run of a/default enqueued: poll for 2024-05-01T10:05:00.000Z, 0 ms after"
    )


def test_loading_saves_new_books_and_breakers_once() -> None:
    engine = ScheduleEngine(plans=(plan(every="5m"),))
    engine.load(NO_BOOKS, started_at=at("2024-05-01 10:02:30"), now=at("2024-05-01 10:02:30"))
    first = engine.place(engine.advance(at("2024-05-01 10:02:30")), {})
    assert first.commit is not None
    assert [b.key for b in first.commit.books] == [KEY]
    assert [(b.key, b.breaker) for b in first.commit.breakers] == [(("a", "poll"), Breaker())]
    assert first.commit.books[0].tracked_since == at("2024-05-01 10:02:30")
    # Nothing changed since: no commit at all.
    assert engine.place(engine.advance(at("2024-05-01 10:03")), {}).commit is None


def test_the_counters_count_only_what_was_committed() -> None:
    engine = started(plan(every="1m"), at=at("2024-05-01 10:00:30"))
    step = engine.place(engine.advance(at("2024-05-01 10:01")), {})
    assert len(runs(step)) == 1
    assert engine.statistics().enqueued == 0
    assert isinstance(step.commit, Commit)
    engine.committed(step.commit)
    stats = engine.statistics()
    assert (stats.schedules, stats.enqueued, stats.skipped, stats.missed) == (1, 1, 0, 0)
    assert stats.next_run == at("2024-05-01 10:02")


def test_at_runs_once_and_after_counts_from_the_start() -> None:
    engine = started(
        plan(id="once", at="2024-05-01T11:30:00Z"),
        plan(id="boot", after="90s"),
        plan(id="gone", at="2024-05-01T09:00:00Z"),  # passed before it was added
        at=at("2024-05-01 10:00"),
    )
    ran = drive(engine, at("2024-05-01 10:00"), at("2024-05-02 10:00"))
    assert [(r.job.schedule_id, hhmm(r.fire.nominal)) for r in ran] == [
        ("boot", "10:01"),
        ("once", "11:30"),
    ]
    assert engine.next_wakeup() is None  # nothing will ever run again
    assert all(s.next_run is None for s in engine.statuses())
    assert engine.statistics().next_run is None


def test_windows_and_weekdays_exclude_instants_and_the_engine_sleeps_over_them() -> None:
    # Wednesday 2024-05-01 .. Tuesday 2024-05-07, Berlin time.
    office = plan(
        every="1h", only_between="09:00-12:00", not_on=["sat", "sun"], timezone="Europe/Berlin"
    )
    start = at("2024-05-01 00:00", BERLIN)
    engine = started(office, at=start)
    friday = drive(engine, start, at("2024-05-03 11:00", BERLIN))
    assert [datetime.fromtimestamp(r.fire.nominal, BERLIN).hour for r in friday] == [9, 10, 11] * 3
    # After Friday's last run, one sleep to Monday morning: nothing is skipped at
    # the weekend, it never falls due.
    assert engine.next_wakeup() == at("2024-05-06 09:00", BERLIN)
    week = friday + drive(engine, at("2024-05-03 11:00", BERLIN), start + 7 * 86400)
    assert len(week) == 5 * 3
    days = {datetime.fromtimestamp(r.fire.nominal, BERLIN).strftime("%a") for r in week}
    assert days == {"Mon", "Tue", "Wed", "Thu", "Fri"}
    assert engine.statistics().skipped == 0


# -- jitter ---------------------------------------------------------------------------------


def test_jitter_delays_each_run_by_its_seeded_offset() -> None:
    spread = plan(every="10m", jitter="2m")
    engine = started(spread, at=at("2024-05-01 10:00:30"), seed="box")
    nominal = at("2024-05-01 10:10")
    delay = jitter_offset("a/default", nominal, 120.0, seed="box", room=600.0)
    assert 0 < delay < 120
    assert engine.next_wakeup() == nominal + delay
    status = engine.status(KEY)
    assert status is not None and status.next_run == nominal + delay
    # The nominal instant passing is not enough: the run waits for its delay.
    assert runs(run(engine, nominal)) == ()
    (scheduled,) = runs(run(engine, nominal + delay))
    assert scheduled.fire == Fire(nominal)
    assert scheduled.job.context["schedule"]["scheduled_for"] == "2024-05-01T10:10:00.000Z"
    # A restarted daemon (same seed) gives the run the same delay; another seed another.
    assert started(spread, at=at("2024-05-01 10:00:30"), seed="box").next_wakeup() == (
        nominal + delay
    )
    assert started(spread, at=at("2024-05-01 10:00:30"), seed="other").next_wakeup() != (
        nominal + delay
    )


# -- catch_up after a restart ---------------------------------------------------------------

DOWN_FROM = "2024-05-01 10:25"
BACK_AT = "2024-05-01 11:35:30"


def down_and_back(catch_up: str, back_at: str = BACK_AT) -> tuple[ScheduleEngine, Step]:
    """Ran 10:10 and 10:20, was down from 10:25, started again at ``back_at``; the
    engine of the second start and its first pass."""
    every = plan(every="10m", catch_up=catch_up)
    first = started(every, at=at("2024-05-01 10:00:30"))
    assert len(drive(first, at("2024-05-01 10:00:30"), at(DOWN_FROM))) == 2
    engine = ScheduleEngine(plans=(every,))
    books = {s.book.key: s.book for s in first.statuses()}
    engine.load(StoredSchedules(books=books, breakers={}), started_at=at(back_at), now=at(back_at))
    return engine, run(engine, at(back_at))


def test_catch_up_skip_runs_none_of_the_missed_instants() -> None:
    engine, step = down_and_back("skip")
    assert runs(step) == ()
    book = book_after(engine)
    assert book.last_skip_reason == (
        "missed 7 run(s) while the daemon was down or asleep (catch_up: skip)"
    )
    assert book.last_skip_at == at("2024-05-01 11:30")
    assert book.last_fire_at == at("2024-05-01 11:30")  # handled: never counted again
    assert engine.statistics().missed == 7
    assert texts(engine, logging.WARNING) == [f"schedule a/default: {book.last_skip_reason}"]
    assert engine.next_wakeup() == at("2024-05-01 11:40")


def test_catch_up_run_once_runs_one_carrying_the_latest_instant() -> None:
    engine, step = down_and_back("run_once")
    assert fired(step) == [("11:30", True)]
    (scheduled,) = runs(step)
    assert scheduled.job.context["schedule"]["catch_up"] is True
    assert engine.statistics().missed == 6
    assert texts(engine, logging.INFO)[-1].endswith(" (catch-up)")


def test_catch_up_run_all_runs_each_missed_instant_one_after_another() -> None:
    engine, step = down_and_back("run_all")
    # Catch-up runs wait their turn (max_outstanding 1), whatever if_running says.
    assert fired(step) == [("10:30", True)]
    assert [hhmm(f.nominal) for f in book_after(engine).owed] == [
        "10:40",
        "10:50",
        "11:00",
        "11:10",
        "11:20",
        "11:30",
    ]
    (first,) = runs(step)
    # Still running at 11:40: if_running (skip) drops the new fire, never a catch-up run.
    now = at("2024-05-01 11:40")
    assert runs(run(engine, now, {KEY: (first.job.id,)})) == ()
    assert book_after(engine).last_skip_at == now
    assert len(book_after(engine).owed) == 6
    # It finished: the next one goes.
    engine.settled(finished(first.job, JobStatus.SUCCEEDED, at=now), now=now)
    assert fired(run(engine, now)) == [("10:40", True)]
    assert len(book_after(engine).owed) == 5
    assert engine.statistics().missed == 0


def test_catch_up_run_all_is_bounded_to_the_latest_runs() -> None:
    engine, step = down_and_back("run_all", back_at="2024-05-04 10:35:30")
    assert len(runs(step)) + len(book_after(engine).owed) == CATCH_UP_LIMIT
    assert book_after(engine).owed[-1] == Fire(at("2024-05-04 10:30"), late=True)
    assert book_after(engine).last_skip_reason == (
        "missed more than 100 run(s) while the daemon was down or asleep (catch_up: run_all)"
    )


def test_a_pass_more_than_a_minute_late_counts_as_missed() -> None:
    # The machine slept from 10:15 to 11:25: 10:20 .. 11:20 were handled late.
    engine = started(plan(every="10m", catch_up="run_once"), at=at("2024-05-01 10:00:30"))
    assert len(drive(engine, at("2024-05-01 10:00:30"), at("2024-05-01 10:15"))) == 1
    assert fired(run(engine, at("2024-05-01 11:25"))) == [("11:20", True)]
    assert engine.statistics().missed == 6
    # Within the grace a run is on time.
    assert fired(run(engine, at("2024-05-01 11:30:59"))) == [("11:30", False)]


def test_an_instant_that_passed_while_the_daemon_was_down_is_missed_however_recent() -> None:
    every = plan(every="10m")
    first = started(every, at=at("2024-05-01 10:00:30"))
    assert len(drive(first, at("2024-05-01 10:00:30"), at("2024-05-01 10:29:50"))) == 2
    # Back 20 s after 10:30: on time by the grace, but it fell due before the start.
    engine = restarted(first, every, at=at("2024-05-01 10:30:20"))
    assert engine.statistics().enqueued == 0
    assert engine.statistics().missed == 1
    assert book_after(engine).last_skip_at == at("2024-05-01 10:30")


def test_a_changed_timing_starts_its_books_afresh() -> None:
    first = started(plan(every="10m", catch_up="run_all"), at=at("2024-05-01 10:00:30"))
    ran = drive(first, at("2024-05-01 10:00:30"), at("2024-05-01 10:25"))
    later = plan(every="15m", catch_up="run_all")
    engine = restarted(first, later, at=at("2024-05-01 11:35:30"))
    assert engine.statistics().enqueued == 0  # nothing of the old timing is caught up
    book = book_after(engine)
    assert book.spec == later.fingerprint
    assert book.tracked_since == at("2024-05-01 11:35:30")
    assert book.last_job_id == ran[-1].job.id  # the history stays visible
    assert texts(engine)[0] == (
        "schedule a/default: timing changed (every=10m tz=UTC window=- not_on=- ->"
        " every=15m tz=UTC window=- not_on=-); runs of the old timing are not caught up"
    )


def test_books_of_schedules_no_longer_configured_are_forgotten() -> None:
    stale = ScheduleBook(plugin="gone", id="old", spec="every=1m", tracked_since=0.0)
    stored = StoredSchedules(
        books={stale.key: stale},
        breakers={("gone", "poll"): BreakerBook(plugin="gone", command="poll")},
    )
    engine = ScheduleEngine(plans=(plan(every="1m"),))
    engine.load(stored, started_at=at("2024-05-01 10:00:30"), now=at("2024-05-01 10:00:30"))
    step = engine.place(engine.advance(at("2024-05-01 10:00:30")), {})
    assert step.commit is not None
    assert (step.commit.forget, step.commit.forget_breakers) == ((stale.key,), (("gone", "poll"),))
    engine.committed(step.commit)
    later = engine.place(engine.advance(at("2024-05-01 10:01")), {})
    assert later.commit is not None and later.commit.forget == ()


# -- if_running -----------------------------------------------------------------------------


def test_if_running_skip_drops_fires_while_a_job_is_outstanding() -> None:
    engine = started(plan(every="1m"), at=at("2024-05-01 10:00:30"))
    (first,) = runs(run(engine, at("2024-05-01 10:01")))
    busy = {KEY: (first.job.id,)}
    assert runs(run(engine, at("2024-05-01 10:02"), busy)) == ()
    assert runs(run(engine, at("2024-05-01 10:03"), busy)) == ()
    book = book_after(engine)
    assert book.last_skip_at == at("2024-05-01 10:03")
    assert book.last_skip_reason == (
        "if_running: skip: 1 job(s) of this schedule still queued or running"
    )
    assert book.owed == ()
    assert engine.statistics().skipped == 2
    assert texts(engine)[-1] == (
        "schedule a/default: run for 2024-05-01T10:03:00.000Z skipped: "
        "if_running: skip: 1 job(s) of this schedule still queued or running"
    )
    # Gone: the next one runs.
    assert fired(run(engine, at("2024-05-01 10:04"))) == [("10:04", False)]


def test_max_outstanding_lets_that_many_run_at_once() -> None:
    engine = started(plan(every="1m", max_outstanding=2), at=at("2024-05-01 10:00:30"))
    (one,) = runs(run(engine, at("2024-05-01 10:01")))
    (two,) = runs(run(engine, at("2024-05-01 10:02"), {KEY: (one.job.id,)}))
    both = {KEY: (one.job.id, two.job.id)}
    assert runs(run(engine, at("2024-05-01 10:03"), both)) == ()
    assert book_after(engine).last_skip_reason == (
        "if_running: skip: 2 job(s) of this schedule still queued or running"
    )


def test_if_running_queue_holds_fires_until_a_job_finishes() -> None:
    engine = started(plan(every="1m", if_running="queue"), at=at("2024-05-01 10:00:30"))
    (first,) = runs(run(engine, at("2024-05-01 10:01")))
    busy = {KEY: (first.job.id,)}
    run(engine, at("2024-05-01 10:02"), busy)
    run(engine, at("2024-05-01 10:03"), busy)
    assert book_after(engine).owed == (Fire(at("2024-05-01 10:02")), Fire(at("2024-05-01 10:03")))
    assert book_after(engine).last_skip_reason is None
    status = engine.status(KEY)
    assert status is not None and status.if_running == "queue"
    # The job finishes between two instants: the oldest held fire goes at once.
    now = at("2024-05-01 10:03:20")
    engine.settled(finished(first.job, JobStatus.SUCCEEDED, at=now), now=now)
    due = engine.advance(now)
    assert due.keys == (KEY,) and due.fires[KEY] == ()  # nothing new fell due
    assert fired(engine.place(due, {})) == [("10:02", False)]
    assert book_after(engine).owed == (Fire(at("2024-05-01 10:03")),)


def test_if_running_queue_keeps_at_most_the_newest_hundred() -> None:
    engine = started(plan(every="1s", if_running="queue"), at=at("2024-05-01 10:00:00.5"))
    (first,) = runs(run(engine, at("2024-05-01 10:00:01")))
    busy = {KEY: (first.job.id,)}
    for second in range(2, OWED_LIMIT + 4):
        run(engine, at("2024-05-01 10:00:00") + second, busy)
    owed = book_after(engine).owed
    assert len(owed) == OWED_LIMIT
    assert owed[-1] == Fire(at("2024-05-01 10:00:00") + OWED_LIMIT + 3)
    assert book_after(engine).last_skip_reason == (
        "if_running: queue: more than 100 runs already waiting"
    )
    assert engine.statistics().skipped == 2


def test_if_running_cancel_cancels_the_oldest_then_runs_the_new_fire() -> None:
    engine = started(plan(every="10m", if_running="cancel"), at=at("2024-05-01 10:00:30"))
    (first,) = runs(run(engine, at("2024-05-01 10:10")))
    busy = {KEY: (first.job.id,)}
    step = run(engine, at("2024-05-01 10:20"), busy)
    assert runs(step) == ()
    assert step.cancels == (Cancellation(plugin="a", schedule_id="default", job_id=first.job.id),)
    assert book_after(engine).owed == (Fire(at("2024-05-01 10:20")),)
    # Gone: the new fire runs at once, on time.
    engine.cancels_settled(KEY, [first.job.id])
    assert fired(run(engine, at("2024-05-01 10:20:02"))) == [("10:20", False)]
    assert book_after(engine).owed == ()


def test_a_cancel_that_did_not_take_is_tried_again() -> None:
    engine = started(plan(every="10m", if_running="cancel"), at=at("2024-05-01 10:00:30"))
    (first,) = runs(run(engine, at("2024-05-01 10:10")))
    busy = {KEY: (first.job.id,)}
    assert len(run(engine, at("2024-05-01 10:20"), busy).cancels) == 1
    # The owner gave up waiting for it to be gone; the job is still outstanding.
    engine.cancels_settled(KEY, [first.job.id])
    again = run(engine, at("2024-05-01 10:21"), busy)
    assert [c.job_id for c in again.cancels] == [first.job.id]


def test_a_cancel_whose_news_was_lost_does_not_block_later_cancels() -> None:
    engine = started(plan(every="10m", if_running="cancel"), at=at("2024-05-01 10:00:30"))
    (first,) = runs(run(engine, at("2024-05-01 10:10")))
    assert len(run(engine, at("2024-05-01 10:20"), {KEY: (first.job.id,)}).cancels) == 1
    # The cancelled job is gone, but neither its settling nor the cancel's end was
    # heard of: the store's answer is what counts.
    step = run(engine, at("2024-05-01 10:30"), {})
    (second,) = runs(step)
    assert second.fire == Fire(at("2024-05-01 10:20"))
    later = run(engine, at("2024-05-01 10:40"), {KEY: (second.job.id,)})
    assert [c.job_id for c in later.cancels] == [second.job.id]


def test_if_running_cancel_keeps_only_the_newest_fire_while_cancelling() -> None:
    engine = started(plan(every="10m", if_running="cancel"), at=at("2024-05-01 10:00:30"))
    (first,) = runs(run(engine, at("2024-05-01 10:10")))
    busy = {KEY: (first.job.id,)}
    assert len(run(engine, at("2024-05-01 10:20"), busy).cancels) == 1
    # The cancelled job takes its time: 10:30 replaces the held 10:20, and the
    # job already being cancelled is not cancelled again.
    step = run(engine, at("2024-05-01 10:30"), busy)
    assert step.cancels == ()
    assert book_after(engine).owed == (Fire(at("2024-05-01 10:30")),)
    assert book_after(engine).last_skip_reason == (
        "if_running: cancel: 1 job(s) of this schedule still queued or running"
    )


def test_if_running_cancel_with_max_outstanding_cancels_only_to_make_room() -> None:
    engine = started(
        plan(every="10m", if_running="cancel", max_outstanding=2), at=at("2024-05-01 10:00:30")
    )
    (one,) = runs(run(engine, at("2024-05-01 10:10")))
    (two,) = runs(run(engine, at("2024-05-01 10:20"), {KEY: (one.job.id,)}))
    both = {KEY: (one.job.id, two.job.id)}
    step = run(engine, at("2024-05-01 10:30"), both)
    assert [c.job_id for c in step.cancels] == [one.job.id]  # the oldest, and only it
    # The next fire comes before the oldest is gone: its place is already being
    # made, so the other job is left alone.
    assert run(engine, at("2024-05-01 10:40"), both).cancels == ()
    assert book_after(engine).owed == (Fire(at("2024-05-01 10:40")),)


# -- the circuit breaker --------------------------------------------------------------------


def failing(engine: ScheduleEngine, scheduled: ScheduledRun, now: float) -> None:
    engine.settled(finished(scheduled.job, JobStatus.FAILED, at=now, error="boom"), now=now)


def open_breaker(engine: ScheduleEngine) -> list[ScheduledRun]:
    """10:01, 10:02, 10:03 fail."""
    return drive(engine, at("2024-05-01 10:00:30"), at("2024-05-01 10:03"), JobStatus.FAILED)


def test_the_breaker_opens_after_threshold_failures_and_holds_runs_back() -> None:
    engine = started(plan(every="1m"), at=at("2024-05-01 10:00:30"))
    ran = open_breaker(engine)
    assert len(ran) == 3
    breaker = breaker_of(engine)
    assert breaker.state is BreakerState.OPEN and breaker.failures == 3
    assert texts(engine, logging.WARNING) == [
        f"circuit breaker for a/poll: closed -> open: 3 consecutive scheduled runs failed"
        f" (last: job {ran[-1].job.id} failed: boom)"
    ]
    assert runs(run(engine, at("2024-05-01 10:04"))) == ()
    assert book_after(engine).last_skip_reason == "circuit breaker for a/poll is open"
    assert engine.statistics().skipped == 1
    status = engine.status(KEY)
    assert status is not None and status.breaker.probe_at == at("2024-05-01 10:13")


def test_a_probe_goes_after_reset_after_and_closes_the_breaker_when_it_succeeds() -> None:
    engine = started(plan(every="1m", max_outstanding=5), at=at("2024-05-01 10:00:30"))
    open_breaker(engine)
    drive(engine, at("2024-05-01 10:03"), at("2024-05-01 10:12"))
    assert engine.statistics().enqueued == 3
    step = run(engine, at("2024-05-01 10:13"))
    (probe,) = runs(step)
    assert step.commit is not None
    (saved,) = step.commit.breakers
    assert (saved.breaker.state, saved.breaker.probe_job_id) == (
        BreakerState.HALF_OPEN,
        probe.job.id,
    )
    # One probe at a time, even where if_running would allow more.
    assert runs(run(engine, at("2024-05-01 10:14"), {KEY: (probe.job.id,)})) == ()
    assert book_after(engine).last_skip_reason == (
        "circuit breaker for a/poll is half_open (a probe run is underway)"
    )
    now = at("2024-05-01 10:14:30")
    engine.settled(finished(probe.job, JobStatus.SUCCEEDED, at=now), now=now)
    breaker = breaker_of(engine)
    assert breaker.state is BreakerState.CLOSED
    assert [(t.source.value, t.target.value) for t in breaker.transitions] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert [hhmm(t.at) for t in breaker.transitions] == ["10:03", "10:13", "10:14"]
    assert fired(run(engine, at("2024-05-01 10:15"))) == [("10:15", False)]


def test_a_failed_probe_opens_the_breaker_for_another_reset_after() -> None:
    engine = started(plan(every="1m"), at=at("2024-05-01 10:00:30"))
    open_breaker(engine)
    ran = drive(engine, at("2024-05-01 10:03"), at("2024-05-01 10:13"), JobStatus.FAILED)
    assert [hhmm(r.fire.nominal) for r in ran] == ["10:13"]  # the probe
    breaker = breaker_of(engine)
    assert breaker.state is BreakerState.OPEN
    assert breaker.transitions[-1].reason.startswith("probe failed")
    assert breaker.probe_at(BREAKER) == at("2024-05-01 10:23")


def test_the_engine_wakes_for_the_probe_even_when_nothing_else_is_due() -> None:
    engine = started(plan(every="1h"), at=at("2024-05-01 09:59:30"))
    for scheduled in runs(run(engine, at("2024-05-01 10:00"))):
        failing(engine, scheduled, at("2024-05-01 10:00"))
    for n in (1, 2):
        for scheduled in runs(run(engine, at("2024-05-01 10:00") + n * 3600)):
            failing(engine, scheduled, at("2024-05-01 10:00") + n * 3600)
    assert breaker_of(engine).state is BreakerState.OPEN
    engine.pause()
    # Paused, no schedule is due, but the breaker still turns half open on time.
    assert engine.next_wakeup() == at("2024-05-01 12:10")
    run(engine, at("2024-05-01 12:10"))
    assert breaker_of(engine).state is BreakerState.HALF_OPEN


def test_cancelled_jobs_do_not_count_and_a_success_resets_the_count() -> None:
    engine = started(plan(every="1m"), at=at("2024-05-01 10:00:30"))
    outcomes = [JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.SUCCEEDED]
    for minute, outcome in enumerate(outcomes, start=1):
        now = at("2024-05-01 10:00") + minute * 60
        (scheduled,) = runs(run(engine, now))
        engine.settled(finished(scheduled.job, outcome, at=now), now=now)
        if outcome is JobStatus.FAILED:
            assert breaker_of(engine).failures == (1 if minute == 1 else 2)
    assert breaker_of(engine) == Breaker()
    status = engine.status(KEY)
    assert status is not None and status.book.last_status == "succeeded"


def test_one_breaker_guards_every_schedule_of_a_command() -> None:
    policy = BreakerPolicy(threshold=3, reset_after=7200.0)
    engine = started(
        plan(policy, id="fast", every="1m"),
        plan(policy, id="slow", every="1h"),
        at=at("2024-05-01 10:00:30"),
    )
    open_breaker(engine)  # "fast" fails three times
    assert drive(engine, at("2024-05-01 10:03"), at("2024-05-01 11:00")) == []
    slow = engine.status(("a", "slow"))
    assert slow is not None
    assert (slow.book.last_skip_at, slow.book.last_skip_reason) == (
        at("2024-05-01 11:00"),
        "circuit breaker for a/poll is open",
    )
    assert slow.breaker.breaker.state is BreakerState.OPEN


def test_a_stored_breaker_stays_open_after_a_restart() -> None:
    engine = started(plan(every="1m"), at=at("2024-05-01 10:00:30"))
    open_breaker(engine)
    saved = BreakerBook(plugin="a", command="poll", breaker=breaker_of(engine))
    again = restarted(engine, plan(every="1m"), at=at("2024-05-01 10:05:30"), breakers=[saved])
    assert runs(run(again, at("2024-05-01 10:06"))) == ()
    assert breaker_of(again).state is BreakerState.OPEN


def test_reset_closes_the_breaker_and_is_saved_with_the_next_commit() -> None:
    engine = started(plan(every="1m"), at=at("2024-05-01 10:00:30"))
    open_breaker(engine)
    now = at("2024-05-01 10:03:30")
    assert not engine.reset_breaker(("a", "nope"), by="token:ops", now=now)
    assert engine.reset_breaker(KEY, by="token:ops", now=now)
    breaker = breaker_of(engine)
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 0
    assert (breaker.transitions[-1].reason, breaker.transitions[-1].at) == (
        "reset by token:ops",
        now,
    )
    step = engine.place(engine.advance(now), {})
    assert step.commit is not None
    assert [b.breaker.state for b in step.commit.breakers] == [BreakerState.CLOSED]
    engine.committed(step.commit)
    assert fired(run(engine, at("2024-05-01 10:04"))) == [("10:04", False)]


def test_resetting_a_closed_breaker_clears_its_count_and_is_saved() -> None:
    engine = started(plan(every="1m"), at=at("2024-05-01 10:00:30"))
    drive(engine, at("2024-05-01 10:00:30"), at("2024-05-01 10:02"), JobStatus.FAILED)
    assert breaker_of(engine).failures == 2
    # Settling flagged the breaker for saving; save it, so the reset stands alone.
    run(engine, at("2024-05-01 10:02:10"))
    assert engine.reset_breaker(KEY, by="token:ops", now=at("2024-05-01 10:02:20"))
    step = engine.place(engine.advance(at("2024-05-01 10:02:20")), {})
    assert step.commit is not None
    (saved,) = step.commit.breakers
    assert saved.breaker == Breaker()
    assert breaker_of(engine).transitions == ()  # no state changed: nothing to record
    engine.committed(step.commit)
    # Even a reset that changes nothing is written (and so answered once saved).
    assert engine.reset_breaker(KEY, by="token:ops", now=at("2024-05-01 10:02:30"))
    again = engine.place(engine.advance(at("2024-05-01 10:02:30")), {})
    assert again.commit is not None and len(again.commit.breakers) == 1


def test_a_disabled_breaker_never_holds_a_run_back() -> None:
    engine = started(
        plan(BreakerPolicy(enabled=False, threshold=1), every="1m"),
        at=at("2024-05-01 10:00:30"),
    )
    ran = drive(engine, at("2024-05-01 10:00:30"), at("2024-05-01 10:10"), JobStatus.FAILED)
    assert len(ran) == 10
    assert breaker_of(engine).state is BreakerState.CLOSED


# -- settled jobs, pause, restarts ----------------------------------------------------------


def test_only_the_last_job_of_a_schedule_sets_its_last_status() -> None:
    engine = started(plan(every="1m", max_outstanding=2), at=at("2024-05-01 10:00:30"))
    (one,) = runs(run(engine, at("2024-05-01 10:01")))
    (two,) = runs(run(engine, at("2024-05-01 10:02"), {KEY: (one.job.id,)}))
    engine.settled(finished(one.job, JobStatus.SUCCEEDED, at=at("2024-05-01 10:02:30")), now=0.0)
    assert book_after(engine).last_status == "queued"
    engine.settled(finished(two.job, JobStatus.TIMED_OUT, at=at("2024-05-01 10:02:40")), now=0.0)
    assert book_after(engine).last_status == "timed_out"
    step = engine.place(engine.advance(at("2024-05-01 10:02:50")), {})
    assert step.commit is not None
    assert [b.last_status for b in step.commit.books] == ["timed_out"]


def test_paused_it_enqueues_nothing_and_says_so_once() -> None:
    engine = started(plan(every="1m"), at=at("2024-05-01 10:00:30"))
    engine.take_notes()
    engine.pause()
    engine.pause()
    assert texts(engine) == ["scheduler paused: the daemon is draining"]
    assert engine.next_wakeup() is None
    due = engine.advance(at("2024-05-01 10:05"))
    assert due.keys == ()
    assert runs(engine.place(due, {})) == ()
    assert engine.paused and engine.statistics().paused
    assert all(s.paused for s in engine.statuses())


def test_reloading_starts_over_from_the_books_but_keeps_counters_and_pause() -> None:
    engine = started(plan(every="1m", if_running="queue"), at=at("2024-05-01 10:00:30"))
    (first,) = runs(run(engine, at("2024-05-01 10:01")))
    saved = {KEY: book_after(engine)}
    # The 10:02 fire is held, but the commit recording that is never saved: the
    # owner restarts and loads what the store has.
    engine.place(engine.advance(at("2024-05-01 10:02")), {KEY: (first.job.id,)})
    assert book_after(engine).owed == (Fire(at("2024-05-01 10:02")),)
    engine.load(
        StoredSchedules(books=saved, breakers={}),
        started_at=at("2024-05-01 10:00:30"),
        now=at("2024-05-01 10:02:30"),
    )
    assert book_after(engine).owed == ()
    assert engine.statistics().enqueued == 1
    # The 10:02 fire is not lost: it is handled again, on time.
    assert fired(run(engine, at("2024-05-01 10:02:30"))) == [("10:02", False)]
    engine.pause()
    engine.load(
        StoredSchedules(books=saved, breakers={}),
        started_at=at("2024-05-01 10:00:30"),
        now=at("2024-05-01 10:03:30"),
    )
    assert engine.paused
    assert engine.statistics().enqueued == 2


# -- status ---------------------------------------------------------------------------------


def test_status_reports_the_configuration_the_books_and_the_breaker() -> None:
    office = plan(
        id="office",
        cron="*/5 9-17 * * 1-5",
        timezone="Europe/Berlin",
        only_between="08:00-18:30",
        not_on=["sat", "sun"],
        jitter="30s",
        catch_up="run_once",
        if_running="queue",
        max_outstanding=2,
    )
    engine = started(office, at=at("2024-05-01 10:00:30"))
    assert engine.status(("a", "nope")) is None
    (status,) = engine.statuses()
    assert (status.plugin, status.id, status.command, status.kind, status.spec) == (
        "a",
        "office",
        "poll",
        "cron",
        "*/5 9-17 * * 1-5",
    )
    assert (status.timezone, status.only_between, status.not_on) == (
        "Europe/Berlin",
        "08:00-18:30",
        ("sun", "sat"),
    )
    assert (status.jitter, status.catch_up, status.if_running, status.max_outstanding) == (
        30.0,
        "run_once",
        "queue",
        2,
    )
    nominal = at("2024-05-01 10:05")
    assert status.next_run == nominal + jitter_offset(
        "a/office", nominal, 30.0, seed="chamberlain", room=300.0
    )
    assert status.breaker.command == "poll"
    assert status.breaker.policy == BREAKER
    assert status.breaker.breaker == Breaker()
    assert (status.book.spec, status.book.last_run_at) == (office.fingerprint, None)
    assert not status.paused


@pytest.mark.parametrize("first_pass", [False, True])
def test_next_run_is_unknown_only_before_the_first_pass(first_pass: bool) -> None:
    engine = ScheduleEngine(plans=(plan(every="5m"),))
    engine.load(NO_BOOKS, started_at=at("2024-05-01 10:02:30"), now=at("2024-05-01 10:02:30"))
    if first_pass:
        run(engine, at("2024-05-01 10:02:30"))
    (status,) = engine.statuses()
    assert status.next_run == (at("2024-05-01 10:05") if first_pass else None)


# -- a reload replaces the plans ------------------------------------------------------------


def test_replace_leaves_an_unchanged_schedule_exactly_as_it_was() -> None:
    engine = started(plan(every="5m", jitter="1m"), at=at("2024-05-01 10:02:30"))
    (first,) = runs(run(engine, at("2024-05-01 10:06")))
    before = engine.status(KEY)
    assert before is not None
    # A reload builds new plans; equal ones are the same schedule.
    engine.replace((plan(every="5m", jitter="1m"),), now=at("2024-05-01 10:07"))
    after = engine.status(KEY)
    assert after is not None
    assert (after.next_run, after.book) == (before.next_run, before.book)
    assert after.book.last_job_id == first.job.id
    assert engine.next_wakeup() == before.next_run
    # Nothing to save: the books did not change.
    assert engine.place(engine.advance(at("2024-05-01 10:07")), {}).commit is None
    assert texts(engine)[-1] == "scheduler reloaded: 1 schedules (0 added, 0 changed, 0 removed)"


def test_replace_with_a_changed_cron_runs_the_new_timing_from_now_without_catching_up() -> None:
    engine = started(plan(cron="0 * * * *"), at=at("2024-05-01 09:59:30"))
    (first,) = runs(run(engine, at("2024-05-01 10:00")))
    assert engine.next_wakeup() == at("2024-05-01 11:00")
    engine.take_notes()
    every_quarter = plan(cron="*/15 * * * *")
    engine.replace((every_quarter,), now=at("2024-05-01 10:20"))
    # 10:15 of the new timing passed before the reload: it is not run.
    assert engine.next_wakeup() == at("2024-05-01 10:30")
    status = engine.status(KEY)
    assert status is not None and status.next_run == at("2024-05-01 10:30")
    assert (status.spec, status.book.spec) == ("*/15 * * * *", every_quarter.fingerprint)
    assert status.book.tracked_since == at("2024-05-01 10:20")
    assert status.book.last_job_id == first.job.id  # the history stays visible
    assert runs(run(engine, at("2024-05-01 10:20"))) == ()
    assert fired(run(engine, at("2024-05-01 10:30"))) == [("10:30", False)]
    assert "schedule a/default: timing changed (cron=0 * * * * tz=UTC" in texts(engine)[0]


def test_replace_with_a_changed_jitter_moves_only_the_next_run() -> None:
    engine = started(plan(every="10m", jitter="2m"), at=at("2024-05-01 10:00:30"))
    assert engine.next_wakeup() != at("2024-05-01 10:10")
    engine.replace((plan(every="10m"),), now=at("2024-05-01 10:05"))
    assert engine.next_wakeup() == at("2024-05-01 10:10")
    assert book_after(engine).tracked_since == at("2024-05-01 10:00:30")  # same books
    assert fired(run(engine, at("2024-05-01 10:10"))) == [("10:10", False)]
    assert texts(engine)[-3] == "schedule a/default changed"


def test_a_removed_schedule_never_fires_again_and_is_no_longer_reported() -> None:
    keep, gone = plan(id="keep", every="5m"), plan(id="gone", every="5m")
    engine = started(keep, gone, at=at("2024-05-01 10:02:30"))
    assert {r.job.schedule_id for r in runs(run(engine, at("2024-05-01 10:05")))} == {
        "keep",
        "gone",
    }
    engine.replace((plan(id="keep", every="5m"),), now=at("2024-05-01 10:06"))
    assert [s.id for s in engine.statuses()] == ["keep"]
    assert engine.status(("a", "gone")) is None
    assert engine.statistics().schedules == 1
    assert not engine.reset_breaker(("a", "gone"), by="token:ops", now=at("2024-05-01 10:06"))
    # Its books are dropped with the next commit, as at a start without it.
    step = engine.place(engine.advance(at("2024-05-01 10:06")), {})
    assert step.commit is not None and step.commit.forget == (("a", "gone"),)
    engine.committed(step.commit)
    ran = drive(engine, at("2024-05-01 10:06"), at("2024-05-01 11:00"))
    assert {r.job.schedule_id for r in ran} == {"keep"}
    assert len(ran) == 11
    assert "schedule a/gone removed" in texts(engine)


def test_an_added_schedule_fires_at_its_first_instant_after_the_reload() -> None:
    engine = started(plan(id="one", every="1h"), at=at("2024-05-01 10:00:30"))
    engine.take_notes()
    engine.replace(
        (
            plan(id="one", every="1h"),
            plan(id="two", every="5m"),
            plan(id="boot", after="90s"),
            plan(id="past", at="2024-05-01T09:00:00Z"),
        ),
        now=at("2024-05-01 10:02"),
    )
    assert engine.next_wakeup() == at("2024-05-01 10:03:30")
    assert [s.id for s in engine.statuses()] == ["one", "two", "boot", "past"]
    step = run(engine, at("2024-05-01 10:02"))
    assert runs(step) == ()  # nothing from before the reload is caught up
    assert step.commit is not None
    assert {b.id: b.tracked_since for b in step.commit.books} == {
        "two": at("2024-05-01 10:02"),
        "boot": at("2024-05-01 10:02"),
        "past": at("2024-05-01 10:02"),
    }
    ran = drive(engine, at("2024-05-01 10:02"), at("2024-05-01 10:10"))
    # "after" counts from the reload; an "at" that already passed never runs.
    assert [(r.job.schedule_id, hhmm(r.fire.nominal), r.fire.late) for r in ran] == [
        ("boot", "10:03", False),
        ("two", "10:05", False),
        ("two", "10:10", False),
    ]
    assert ran[0].fire.nominal == at("2024-05-01 10:03:30")
    assert texts(engine)[:4] == [
        "schedule a/two added",
        "schedule a/boot added",
        "schedule a/past added",
        "scheduler reloaded: 4 schedules (3 added, 0 changed, 0 removed)",
    ]


def test_an_added_after_still_counts_from_the_reload_when_the_owner_restarts() -> None:
    engine = started(plan(id="one", every="1h"), at=at("2024-05-01 10:00:30"))
    engine.replace(
        (plan(id="one", every="1h"), plan(id="boot", after="5m")), now=at("2024-05-01 10:02")
    )
    books = {s.book.key: s.book for s in engine.statuses()}
    engine.load(
        StoredSchedules(books=books, breakers={}),
        started_at=at("2024-05-01 10:00:30"),
        now=at("2024-05-01 10:03"),
    )
    ran = drive(engine, at("2024-05-01 10:03"), at("2024-05-01 10:30"))
    assert [(r.job.schedule_id, r.fire.nominal) for r in ran] == [("boot", at("2024-05-01 10:07"))]


def test_the_breaker_of_a_kept_schedule_survives_a_replace() -> None:
    engine = started(plan(every="1m"), at=at("2024-05-01 10:00:30"))
    open_breaker(engine)
    opened = breaker_of(engine)
    assert opened.state is BreakerState.OPEN
    # The payload changed: the same schedule, the same breaker, still open.
    engine.replace((plan(every="1m", payload={"x": 1}),), now=at("2024-05-01 10:03:30"))
    assert breaker_of(engine) == opened
    assert runs(run(engine, at("2024-05-01 10:04"))) == ()
    assert book_after(engine).last_skip_reason == "circuit breaker for a/poll is open"
    (probe,) = runs(run(engine, at("2024-05-01 10:13")))
    assert probe.job.payload == {"x": 1}  # the new plan builds the jobs


def test_a_replace_applies_new_breaker_settings_to_the_kept_state() -> None:
    engine = started(plan(every="1h"), at=at("2024-05-01 09:59:30"))
    failed = drive(engine, at("2024-05-01 09:59:30"), at("2024-05-01 12:00"), JobStatus.FAILED)
    assert len(failed) == 3
    assert breaker_of(engine).state is BreakerState.OPEN
    assert engine.next_wakeup() == at("2024-05-01 12:10")  # the probe, after 10 minutes
    quicker = BreakerPolicy(threshold=3, reset_after=120.0)
    engine.replace((plan(quicker, every="1h"),), now=at("2024-05-01 12:01"))
    # Still open since 12:00, but a probe may go two minutes after it opened.
    assert breaker_of(engine).state is BreakerState.OPEN
    assert engine.next_wakeup() == at("2024-05-01 12:02")
    status = engine.status(KEY)
    assert status is not None and status.breaker.probe_at == at("2024-05-01 12:02")
    run(engine, at("2024-05-01 12:02"))
    assert breaker_of(engine).state is BreakerState.HALF_OPEN


def test_a_replace_keeps_held_fires_and_jobs_being_cancelled() -> None:
    engine = started(plan(every="1m", if_running="queue"), at=at("2024-05-01 10:00:30"))
    (first,) = runs(run(engine, at("2024-05-01 10:01")))
    run(engine, at("2024-05-01 10:02"), {KEY: (first.job.id,)})
    assert book_after(engine).owed == (Fire(at("2024-05-01 10:02")),)
    engine.replace(
        (plan(every="1m", if_running="queue", payload={"x": 1}),), now=at("2024-05-01 10:02:10")
    )
    assert book_after(engine).owed == (Fire(at("2024-05-01 10:02")),)
    now = at("2024-05-01 10:02:20")
    engine.settled(finished(first.job, JobStatus.SUCCEEDED, at=now), now=now)
    (held,) = runs(run(engine, now))
    assert (hhmm(held.fire.nominal), held.job.payload) == ("10:02", {"x": 1})

    cancelling = started(plan(every="10m", if_running="cancel"), at=at("2024-05-01 10:00:30"))
    (running,) = runs(run(cancelling, at("2024-05-01 10:10")))
    busy = {KEY: (running.job.id,)}
    assert len(run(cancelling, at("2024-05-01 10:20"), busy).cancels) == 1
    cancelling.replace(
        (plan(every="10m", if_running="cancel", payload={"x": 1}),), now=at("2024-05-01 10:25")
    )
    # The job being cancelled is not cancelled a second time.
    assert run(cancelling, at("2024-05-01 10:30"), busy).cancels == ()


def test_a_replace_keeps_the_pause() -> None:
    engine = started(plan(every="1m"), at=at("2024-05-01 10:00:30"))
    engine.pause()
    engine.replace((plan(every="1m"), plan(id="two", every="1m")), now=at("2024-05-01 10:00:40"))
    assert engine.paused
    assert engine.next_wakeup() is None
    assert runs(run(engine, at("2024-05-01 10:05"))) == ()
    assert all(s.paused for s in engine.statuses())
