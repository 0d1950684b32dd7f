"""Migration 0010: the Router handles failed, timed-out and dead jobs (their on-hook
pipelines), but not those that ended before the migration."""

from __future__ import annotations

from pathlib import Path

from fakes import EPOCH
from old_stores import store_before

from chamberlain.records import NewJob
from chamberlain.store.sqlite import SqliteStore

STATUSES = ("queued", "running", "succeeded", "failed", "timed_out", "dead", "cancelled")


def test_jobs_that_ended_before_the_migration_fire_no_hooks(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = store_before(path, "timed_out")
    conn.executemany(
        "INSERT INTO jobs (id, plugin, command, payload, context, status, max_attempts,"
        " submitted_by, created_at, run_at, routed) VALUES (?, 'echo', 'poll', '{}', '{}', ?,"
        " 1, 'api', 0, 0, 0)",
        [(f"old-{status}", status) for status in STATUSES],
    )
    conn.close()

    store = SqliteStore(path)
    try:
        # A succeeded job left unrouted is still routed (as before the migration).
        assert [job.id for job in store.unrouted(100)] == ["old-succeeded"]
        store.begin()
        for status in ("failed", "timed_out", "dead", "cancelled"):
            done = store.enqueue(
                NewJob(id=f"new-{status}", plugin="echo", command="poll"), now=EPOCH, dedupe_ttl=60
            )
            store.conn.execute("UPDATE jobs SET status = ? WHERE id = ?", (status, done.job.id))
        store.commit()
        # Jobs ending from now on are routed for their hooks; cancelled ones give none.
        assert [job.id for job in store.unrouted(100)] == [
            "old-succeeded",
            "new-failed",
            "new-timed_out",
            "new-dead",
        ]
        store.begin()
        assert store.mark_routed("new-failed") and not store.mark_routed("new-failed")
        store.commit()
        assert "new-failed" not in [job.id for job in store.unrouted(100)]
    finally:
        store.close()
