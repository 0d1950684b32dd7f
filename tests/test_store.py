"""The SQLite store: queries and their guarantees, on a real database file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chamberlain.records import JobFilter, JobStatus, NewJob
from chamberlain.retry import Settlement
from chamberlain.store.sqlite import MIGRATIONS, SqliteStore

NOW = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = SqliteStore(tmp_path / "state.db")
    yield s
    s.close()


def add(store: SqliteStore, plugin: str = "echo", *, now: float = NOW, **kw: object) -> str:
    job = NewJob(plugin=plugin, command=str(kw.pop("command", "poll")), **kw)  # type: ignore[arg-type]
    store.begin()
    store.enqueue(job, now=now, dedupe_ttl=3600)
    store.commit()
    return job.id


def test_wal_mode_and_schema_version(store: SqliteStore, tmp_path: Path) -> None:
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    version = store.conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
    assert version == len(MIGRATIONS)
    # Reopening migrates nothing twice.
    again = SqliteStore(tmp_path / "state.db")
    assert again.migrate() == len(MIGRATIONS)
    rows = again.conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0]
    assert rows == len(MIGRATIONS)
    again.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES (999, 0)")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="schema version 999"):
        SqliteStore(path)


def test_enqueue_then_get(store: SqliteStore) -> None:
    jid = add(store, payload={"n": 1}, submitted_by="token:x")
    job = store.get_job(jid)
    assert job is not None
    assert job.status is JobStatus.QUEUED
    assert job.payload == {"n": 1}
    assert job.attempt == 0
    assert job.submitted_by == "token:x"
    assert store.get_job("nope") is None


def test_claim_is_fifo_and_respects_capacity(store: SqliteStore) -> None:
    a = [add(store, "a", now=NOW + i) for i in range(3)]
    b = [add(store, "b", now=NOW + 10 + i) for i in range(3)]
    store.begin()
    claimed, _ = store.claim({"a": 2, "b": 5}, limit=3, now=NOW + 100)
    store.commit()
    assert [c.job.id for c in claimed] == [a[0], a[1], b[0]]
    assert all(c.job.status is JobStatus.RUNNING and c.job.attempt == 1 for c in claimed)
    stored = store.get_job(a[0])
    assert stored is not None and stored.status is JobStatus.RUNNING and stored.attempt == 1


def test_claim_skips_future_jobs_and_reports_next_due(store: SqliteStore) -> None:
    jid = add(store, "a")
    # As a retry's backoff would leave it:
    store.conn.execute("UPDATE jobs SET run_at = ? WHERE id = ?", (NOW + 50, jid))
    claimed, next_due = store.claim({"a": 1}, limit=1, now=NOW)
    assert claimed == []
    assert next_due == NOW + 50
    claimed, next_due = store.claim({"a": 1}, limit=1, now=NOW + 50)
    assert [c.job.id for c in claimed] == [jid]
    assert next_due is None


def test_claim_carries_plugin_state(store: SqliteStore) -> None:
    add(store, "a")
    store.put_state("a", {"cursor": 3}, now=NOW)
    claimed, _ = store.claim({"a": 1}, limit=1, now=NOW)
    assert claimed[0].state == {"cursor": 3}


def test_settle_guards_on_the_attempt(store: SqliteStore) -> None:
    jid = add(store, "a")
    store.claim({"a": 1}, limit=1, now=NOW)
    stale = store.settle(jid, 7, Settlement(status=JobStatus.SUCCEEDED, completed=True), now=NOW)
    assert stale is None
    done = store.settle(
        jid,
        1,
        Settlement(
            status=JobStatus.SUCCEEDED, completed=True, result={"ok": 1}, new_state={"k": 1}
        ),
        now=NOW + 1,
    )
    assert done is not None
    assert done.status is JobStatus.SUCCEEDED
    assert done.completed_at == NOW + 1
    assert done.result == {"ok": 1}
    assert store.get_states(["a"]) == {"a": {"k": 1}}
    # A second report for the same attempt changes nothing.
    assert (
        store.settle(jid, 1, Settlement(status=JobStatus.FAILED, completed=True), now=NOW) is None
    )


def test_recover_orphans_requeues_or_kills(store: SqliteStore) -> None:
    fresh = add(store, "a", max_attempts=3)
    last = add(store, "b", max_attempts=1)
    store.claim({"a": 1, "b": 1}, limit=2, now=NOW)
    recovered = {j.id: j for j in store.recover_orphans(now=NOW + 5)}
    assert recovered[fresh].status is JobStatus.QUEUED
    assert recovered[fresh].attempt == 1  # the attempt counts
    assert recovered[last].status is JobStatus.DEAD
    # The requeued one is claimable again, as attempt 2.
    claimed, _ = store.claim({"a": 1}, limit=1, now=NOW + 6)
    assert claimed[0].job.attempt == 2


def test_recover_orphans_of_one_plugin_only(store: SqliteStore) -> None:
    add(store, "a")
    other = add(store, "b")
    store.claim({"a": 1, "b": 1}, limit=2, now=NOW)
    assert [j.plugin for j in store.recover_orphans(now=NOW, plugin="a")] == ["a"]
    job = store.get_job(other)
    assert job is not None and job.status is JobStatus.RUNNING


def test_dedupe_while_queued_and_after_success(store: SqliteStore) -> None:
    first = NewJob(plugin="a", command="poll", dedupe_key="k")
    assert not store.enqueue(first, now=NOW, dedupe_ttl=100).duplicate
    again = store.enqueue(
        NewJob(plugin="a", command="poll", dedupe_key="k"), now=NOW, dedupe_ttl=100
    )
    assert again.duplicate and again.job.id == first.id
    # Another command is another target.
    assert not store.enqueue(
        NewJob(plugin="a", command="handle", dedupe_key="k"), now=NOW, dedupe_ttl=100
    ).duplicate
    store.claim({"a": 1}, limit=1, now=NOW)
    store.settle(first.id, 1, Settlement(status=JobStatus.SUCCEEDED, completed=True), now=NOW)
    within = store.enqueue(
        NewJob(plugin="a", command="poll", dedupe_key="k"), now=NOW + 50, dedupe_ttl=100
    )
    assert within.duplicate
    after = store.enqueue(
        NewJob(plugin="a", command="poll", dedupe_key="k"), now=NOW + 101, dedupe_ttl=100
    )
    assert not after.duplicate


def test_list_filters_newest_first_with_total(store: SqliteStore) -> None:
    ids = [
        add(store, "a" if i % 2 else "b", now=NOW + i, submitted_by=f"s{i % 3}") for i in range(10)
    ]
    jobs, total = store.list_jobs(JobFilter(limit=3))
    assert total == 10
    assert [j.id for j in jobs] == ids[::-1][:3]
    jobs, total = store.list_jobs(JobFilter(plugin="a", limit=50))
    assert total == 5 and all(j.plugin == "a" for j in jobs)
    jobs, total = store.list_jobs(JobFilter(since=NOW + 5, until=NOW + 8))
    assert [j.id for j in jobs] == ids[7:4:-1]
    jobs, total = store.list_jobs(JobFilter(submitted_by="s0", offset=1, limit=2))
    assert total == 4 and len(jobs) == 2
    store.claim({"a": 10}, limit=10, now=NOW + 20)
    jobs, total = store.list_jobs(JobFilter(statuses=(JobStatus.RUNNING, JobStatus.SUCCEEDED)))
    assert total == 5


def test_prune_removes_only_old_terminal_jobs(store: SqliteStore) -> None:
    old = add(store, "a")
    young = add(store, "a")
    queued = add(store, "b")
    store.claim({"a": 2}, limit=2, now=NOW)
    store.settle(old, 1, Settlement(status=JobStatus.SUCCEEDED, completed=True), now=NOW)
    store.settle(young, 1, Settlement(status=JobStatus.FAILED, completed=True), now=NOW + 100)
    assert store.prune(older_than=NOW + 50) == 1
    assert store.get_job(old) is None
    assert store.get_job(young) is not None
    assert store.get_job(queued) is not None


def test_queue_depth_and_running(store: SqliteStore) -> None:
    for _ in range(3):
        add(store, "a")
    store.claim({"a": 1}, limit=1, now=NOW)
    assert store.queue_depth() == 2
    assert len(store.running_jobs()) == 1


def test_savepoint_undoes_one_request(store: SqliteStore) -> None:
    store.begin()
    store.savepoint()
    store.enqueue(NewJob(plugin="a", command="poll"), now=NOW, dedupe_ttl=1)
    store.release()
    store.savepoint()
    store.enqueue(NewJob(plugin="b", command="poll"), now=NOW, dedupe_ttl=1)
    store.undo()
    store.commit()
    _, total = store.list_jobs(JobFilter())
    assert total == 1
