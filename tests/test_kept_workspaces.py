"""Kept workspaces below the API: their rows (a real SQLite) and their directories."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chamberlain.plugins.workspace import MCP_CONFIG_FILE, Workspaces, size_of
from chamberlain.records import NewJob, WorkspaceRefusal
from chamberlain.store import workspace_rows
from chamberlain.store.sqlite import SqliteStore

NOW = 1_700_000_000.0
WS = "6f1c0a2e-0000-4000-8000-000000000001"


@pytest.fixture
def store() -> Iterator[SqliteStore]:
    s = SqliteStore(":memory:")
    yield s
    s.close()


def test_a_workspace_row_comes_with_its_first_job_and_lists_every_job(
    store: SqliteStore,
) -> None:
    first = store.enqueue(NewJob(plugin="p", command="c", workspace_id=WS), now=NOW, dedupe_ttl=0)
    later = store.enqueue(
        NewJob(plugin="p", command="c", workspace_id=WS), now=NOW + 5, dedupe_ttl=0
    )
    found = workspace_rows.get(store.conn, WS)
    assert found is not None
    assert found.job_ids == (first.job.id, later.job.id)
    assert (found.created_at, found.in_use) == (NOW, True)
    assert workspace_rows.delete(store.conn, WS) is WorkspaceRefusal.IN_USE
    assert workspace_rows.touch(store.conn, WS, size_bytes=123, now=NOW + 9)
    assert workspace_rows.usage(store.conn) == 123
    assert workspace_rows.expire(store.conn, used_before=NOW + 10_000) == []  # still in use
    store.conn.execute("UPDATE jobs SET status = 'succeeded'")
    assert workspace_rows.expire(store.conn, used_before=NOW + 9) == []  # used at NOW + 9
    assert workspace_rows.expire(store.conn, used_before=NOW + 10) == [(WS, None)]
    assert workspace_rows.get(store.conn, WS) is None
    assert workspace_rows.delete(store.conn, WS) is WorkspaceRefusal.UNKNOWN
    assert not workspace_rows.touch(store.conn, WS, size_bytes=1, now=NOW)


def test_a_kept_workspace_is_private_keeps_its_files_and_loses_its_secrets(
    tmp_path: Path,
) -> None:
    workspaces = Workspaces(tmp_path / "workspaces")
    path = workspaces.keep(WS)
    assert os.stat(path).st_mode & 0o777 == 0o700
    (path / "work.txt").write_text("mine")
    workspaces.place(path, {MCP_CONFIG_FILE: b"{}"})
    workspaces.place(path, {MCP_CONFIG_FILE: b'{"again": 1}'})  # replaced, not refused
    assert os.stat(path / MCP_CONFIG_FILE).st_mode & 0o777 == 0o600
    workspaces.lift(path, (MCP_CONFIG_FILE,))
    assert sorted(p.name for p in path.iterdir()) == ["work.txt"]
    assert workspaces.keep(WS) == path and (path / "work.txt").read_text() == "mine"
    assert size_of(path) >= 4
    # The sweep at start keeps it; it removes what is not a kept workspace.
    (tmp_path / "workspaces" / "stale-attempt").mkdir()
    assert workspaces.sweep(keep=[WS]) == ["stale-attempt"]
    workspaces.discard(WS)
    assert not path.exists()
    assert size_of(path) == 0


def test_a_link_in_a_workspace_s_place_is_neither_used_nor_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    workspaces = Workspaces(tmp_path / "workspaces")
    (tmp_path / "workspaces").mkdir()
    (tmp_path / "workspaces" / WS).symlink_to(outside)
    with pytest.raises(OSError, match="is not a directory"):
        workspaces.keep(WS)
    workspaces.discard(WS)
    assert not (tmp_path / "workspaces" / WS).exists()
    assert (outside / "keep.txt").read_text() == "x"
    with pytest.raises(ValueError, match="not a safe file name"):
        workspaces.keep("../escape")
    with pytest.raises(OSError, match="need a state directory"):
        Workspaces(None).keep(WS)
