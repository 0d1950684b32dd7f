"""Runs in the store: made with their first job, found by their jobs, forgotten with them."""

from __future__ import annotations

import json
from pathlib import Path

from fakes import EPOCH
from old_stores import store_before

from chamberlain.plugins.envelope import with_control
from chamberlain.records import NewJob
from chamberlain.runs import RunStatus
from chamberlain.store import run_rows
from chamberlain.store.sqlite import SqliteStore


def step(job_id: str, run: str, step_id: str, pipeline: str = "deploy") -> NewJob:
    return NewJob(
        id=job_id,
        plugin="echo",
        command="handle",
        pipeline=pipeline,
        step_id=step_id,
        context=with_control({}, instance_id=run),
    )


def test_a_run_is_made_with_its_first_job_and_forgotten_with_its_last(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    try:
        store.begin()
        first = store.enqueue(step("j1", "run-1", "build"), now=EPOCH, dedupe_ttl=60).job
        store.enqueue(step("j2", "run-1", "ship"), now=EPOCH + 5, dedupe_ttl=60)
        lone = store.enqueue(
            NewJob(id="j3", plugin="echo", command="poll"), now=EPOCH, dedupe_ttl=60
        )
        store.commit()
        assert (first.run_id, lone.job.run_id) == ("run-1", None)
        run = run_rows.get(store.conn, "run-1")
        assert run is not None
        assert (run.pipeline, run.created_at, run.status) == ("deploy", EPOCH, RunStatus.PENDING)
        assert [(m.job_id, m.step_id, m.status) for m in run.jobs] == [
            ("j1", "build", "queued"),
            ("j2", "ship", "queued"),
        ]
        assert run_rows.get(store.conn, "nope") is None
        page, total = run_rows.page(
            store.conn, pipeline="deploy", statuses=frozenset(), limit=10, offset=0
        )
        assert total == 1 and page[0].run_id == "run-1"
        assert run_rows.page(
            store.conn, pipeline="other", statuses=frozenset(), limit=10, offset=0
        ) == ([], 0)

        store.begin()
        store.conn.execute(
            "UPDATE jobs SET status = 'succeeded', completed_at = ?, routed = 1", (EPOCH,)
        )
        assert store.prune(older_than=EPOCH + 1) == 3
        store.commit()
        assert run_rows.get(store.conn, "run-1") is None
    finally:
        store.close()


def test_runs_started_before_the_migration_are_found_by_their_jobs(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = store_before(path, "CREATE TABLE runs")
    rows = [
        ("a1", "old-run", "deploy", "build", 10.0),
        ("a2", "old-run", "deploy", "ship", 20.0),
        ("b1", None, None, None, 5.0),
    ]
    conn.executemany(
        "INSERT INTO jobs (id, plugin, command, payload, context, status, max_attempts,"
        " submitted_by, created_at, run_at, pipeline, step_id)"
        " VALUES (?, 'echo', 'handle', '{}', ?, 'succeeded', 1, 'api', ?, 0, ?, ?)",
        [
            (
                job_id,
                json.dumps(with_control({}, instance_id=run) if run else {}),
                made,
                pipeline,
                step_id,
            )
            for job_id, run, pipeline, step_id, made in rows
        ],
    )
    conn.close()

    store = SqliteStore(path)
    try:
        run = run_rows.get(store.conn, "old-run")
        assert run is not None
        assert (run.pipeline, run.created_at) == ("deploy", 10.0)
        assert [m.job_id for m in run.jobs] == ["a1", "a2"]
        stepped, alone = store.get_job("a1"), store.get_job("b1")
        assert stepped is not None and stepped.run_id == "old-run"
        assert alone is not None and alone.run_id is None
    finally:
        store.close()
