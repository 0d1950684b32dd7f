"""The Scheduler's books in SQLite (migration 0002), and jobs that name their schedule."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from chamberlain.records import JobStatus, NewJob
from chamberlain.schedule.books import BreakerBook, ScheduleBook
from chamberlain.schedule.breaker import Breaker, BreakerState, Transition
from chamberlain.schedule.policy import Fire
from chamberlain.store import schedule_books as books
from chamberlain.store.sqlite import MIGRATIONS, SqliteStore, _statements

NOW = 1_714_557_600.0


def test_books_and_breakers_round_trip_and_are_forgotten(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    book = ScheduleBook(
        plugin="echo",
        id="tick",
        spec="every=1m tz=UTC window=- not_on=-",
        tracked_since=NOW - 3600,
        last_fire_at=NOW,
        last_run_at=NOW + 0.004,
        last_job_id="j1",
        last_status="succeeded",
        last_skip_at=NOW - 60,
        last_skip_reason="if_running: skip",
        owed=(Fire(NOW - 120, late=True), Fire(NOW - 60)),
    )
    breaker = BreakerBook(
        plugin="echo",
        command="poll",
        breaker=Breaker(
            state=BreakerState.HALF_OPEN,
            failures=3,
            opened_at=NOW - 1800,
            probe_job_id="p1",
            transitions=(
                Transition(
                    source=BreakerState.CLOSED, target=BreakerState.OPEN, reason="3 failed", at=1.0
                ),
                Transition(
                    source=BreakerState.OPEN, target=BreakerState.HALF_OPEN, reason="probe", at=2.0
                ),
            ),
        ),
    )
    books.save(store.conn, books=[book], breakers=[breaker], forget=(), forget_breakers=(), now=NOW)
    loaded = books.load(store.conn)
    assert loaded.books == {("echo", "tick"): book}
    assert loaded.breakers == {("echo", "poll"): breaker}
    # Saving again updates in place.
    books.save(
        store.conn,
        books=[ScheduleBook(plugin="echo", id="tick", spec="s", tracked_since=NOW)],
        breakers=[],
        forget=(),
        forget_breakers=(),
        now=NOW,
    )
    assert books.load(store.conn).books[("echo", "tick")].owed == ()
    books.save(
        store.conn,
        books=[],
        breakers=[],
        forget=[("echo", "tick")],
        forget_breakers=[("echo", "poll")],
        now=NOW,
    )
    empty = books.load(store.conn)
    assert (dict(empty.books), dict(empty.breakers)) == ({}, {})
    store.close()


def test_outstanding_jobs_of_a_schedule_and_their_statuses(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    mine = [
        store.enqueue(
            NewJob(plugin="echo", command="poll", schedule_id="tick", submitted_by="scheduler"),
            now=NOW + i,
            dedupe_ttl=0,
        ).job
        for i in range(3)
    ]
    other = store.enqueue(
        NewJob(plugin="echo", command="poll", schedule_id="other"), now=NOW, dedupe_ttl=0
    ).job
    store.enqueue(NewJob(plugin="echo", command="poll"), now=NOW, dedupe_ttl=0)
    store.cancel_queued(mine[1].id, now=NOW, reason="cancelled")
    found = books.outstanding(store.conn, [("echo", "tick"), ("echo", "other"), ("b", "tick")])
    assert found == {
        ("echo", "tick"): (mine[0].id, mine[2].id),  # oldest first; the cancelled one is gone
        ("echo", "other"): (other.id,),
        ("b", "tick"): (),
    }
    assert mine[0].schedule_id == "tick"
    assert store.get_job(mine[0].id).to_json()["schedule_id"] == "tick"  # type: ignore[union-attr]
    assert books.statuses(store.conn, [mine[1].id, mine[0].id, "gone"]) == {
        mine[1].id: JobStatus.CANCELLED,
        mine[0].id: JobStatus.QUEUED,
    }
    store.close()


def test_a_store_from_before_schedules_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
    for statement in _statements(MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations VALUES (1, 0)")
    conn.execute(
        "INSERT INTO jobs (id, plugin, command, payload, context, status, max_attempts,"
        " submitted_by, created_at, run_at) VALUES ('old', 'echo', 'poll', '{}', '{}',"
        " 'succeeded', 1, 'api', 1, 1)"
    )
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    job = store.get_job("old")
    assert job is not None and job.schedule_id is None
    assert books.load(store.conn).books == {}
    store.close()
