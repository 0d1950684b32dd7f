"""The job counts behind ``GET /jobs``'s total: always equal to counting the rows.

``job_counts`` (migration 0006) is kept by triggers, so every way a job is created,
moved or deleted must leave it exact.  These tests drive the store through long
random sequences of everything the daemon does to jobs and compare the answer with
COUNT(*) after every step; and check that the migration counts the jobs a store
already holds when it is applied.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from old_stores import store_before

from chamberlain.records import JobFilter, JobStatus, NewJob
from chamberlain.retry import Settlement, recover_orphan
from chamberlain.store.sqlite import SqliteStore

NOW = 1_700_000_000.0
PLUGINS = ("echo", "sys_exec", "other")
FILTERS: list[tuple[tuple[JobStatus, ...], str | None]] = [
    ((), None),
    ((JobStatus.QUEUED,), None),
    ((JobStatus.RUNNING,), "echo"),
    ((JobStatus.SUCCEEDED, JobStatus.FAILED), None),
    ((JobStatus.DEAD, JobStatus.CANCELLED, JobStatus.QUEUED), "sys_exec"),
    ((), "other"),
    ((), "no-such-plugin"),
]


def counted(store: SqliteStore, statuses: tuple[JobStatus, ...], plugin: str | None) -> int:
    where, args = ["1"], []
    if statuses:
        where.append(f"status IN ({','.join('?' * len(statuses))})")
        args.extend(s.value for s in statuses)
    if plugin is not None:
        where.append("plugin = ?")
        args.append(plugin)
    sql = f"SELECT COUNT(*) FROM jobs WHERE {' AND '.join(where)}"
    (n,) = store.conn.execute(sql, args).fetchone()
    return int(n)


def check(store: SqliteStore) -> None:
    for statuses, plugin in FILTERS:
        expected = counted(store, statuses, plugin)
        assert store.count_jobs(statuses, plugin) == expected, (statuses, plugin)
        _, total = store.list_jobs(JobFilter(statuses=statuses, plugin=plugin, limit=1))
        assert total == expected, (statuses, plugin)
    assert store.queue_depth() == counted(store, (JobStatus.QUEUED,), None)


def step(store: SqliteStore, rng: random.Random, now: float) -> None:
    """One random thing the daemon does to jobs, in its own transaction."""
    store.begin()
    action = rng.choice(["enqueue", "enqueue", "claim", "settle", "cancel", "recover", "prune"])
    if action == "enqueue":
        for _ in range(rng.randint(1, 5)):
            key = rng.choice([None, None, "k1", "k2"])
            new = NewJob(plugin=rng.choice(PLUGINS), command="poll", dedupe_key=key)
            store.enqueue(new, now=now, dedupe_ttl=3600)
    elif action == "claim":
        store.claim({p: rng.randint(0, 3) for p in PLUGINS}, rng.randint(0, 6), now=now)
    elif action == "settle":
        for job in store.running_jobs()[: rng.randint(1, 3)]:
            status = rng.choice(
                [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.QUEUED, JobStatus.TIMED_OUT]
            )
            settlement = Settlement(
                status=status,
                run_at=now if status is JobStatus.QUEUED else None,
                completed=status is not JobStatus.QUEUED,
            )
            store.settle(job.id, job.attempt, settlement, now=now)
    elif action == "cancel":
        queued = store.conn.execute("SELECT id FROM jobs WHERE status = 'queued'").fetchall()
        if queued:
            store.cancel_queued(rng.choice(queued)[0], now=now, reason="test")
    elif action == "recover":
        for job in store.running_jobs()[:1]:
            store.settle(job.id, job.attempt, recover_orphan(job, now=now), now=now)
    else:
        store.prune(older_than=now - rng.choice([0, 50, 500]), batch=rng.randint(1, 4))
    store.commit()


@pytest.mark.parametrize("seed", range(5))
def test_counts_match_count_star_through_every_change(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    store = SqliteStore(tmp_path / "state.db")
    try:
        check(store)
        for i in range(300):
            step(store, rng, NOW + i * 10)
            check(store)
        # Some of every kind of change happened, so the comparison covered them.
        assert store.count_jobs() > 0
    finally:
        store.close()


def test_a_rolled_back_change_leaves_the_counts_alone(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    try:
        store.begin()
        store.enqueue(NewJob(plugin="echo", command="poll"), now=NOW, dedupe_ttl=60)
        store.commit()
        store.begin()
        store.savepoint()
        store.enqueue(NewJob(plugin="echo", command="poll"), now=NOW, dedupe_ttl=60)
        store.undo()
        store.commit()
        assert store.count_jobs() == 1
        check(store)
    finally:
        store.close()


def test_other_filters_still_count_the_rows(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    try:
        store.begin()
        for command in ("poll", "poll", "handle"):
            new = NewJob(plugin="echo", command=command, submitted_by="token:a")
            store.enqueue(new, now=NOW, dedupe_ttl=60)
        store.commit()
        assert store.list_jobs(JobFilter(command="handle"))[1] == 1
        assert store.list_jobs(JobFilter(submitted_by="token:a", command="poll"))[1] == 2
        assert store.list_jobs(JobFilter(since=NOW + 1))[1] == 0
    finally:
        store.close()


def test_the_migration_counts_the_jobs_already_stored(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    # A store as the release before job_counts left it, holding jobs.
    conn = store_before(path, "job_counts")
    rows = [
        (f"id-{i}", PLUGINS[i % 3], status)
        for i, status in enumerate(["queued", "running", "succeeded", "failed", "dead"] * 7)
    ]
    conn.executemany(
        "INSERT INTO jobs (id, plugin, command, payload, context, status, max_attempts,"
        " submitted_by, created_at, run_at) VALUES (?, ?, 'poll', '{}', '{}', ?, 1, 'api', 0, 0)",
        rows,
    )
    conn.close()

    store = SqliteStore(path)
    try:
        assert store.count_jobs() == len(rows)
        check(store)
        # And the triggers work from there on.
        store.begin()
        store.enqueue(NewJob(plugin="echo", command="poll"), now=NOW, dedupe_ttl=60)
        store.commit()
        assert store.count_jobs() == len(rows) + 1
        check(store)
    finally:
        store.close()
