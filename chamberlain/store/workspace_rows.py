"""SQL for workspaces (migration 0014): the rows that say which exist and who uses them.

The directories themselves are :class:`chamberlain.plugins.workspace.Workspaces`'
business; a row is made with the first job that asks for the workspace (in the
transaction that stores the job), touched after each attempt that used it, and
deleted before its directory is removed, so a crash in between leaves a directory
without a row, which the next start sweeps, never a row without its directory that
a job would be told to use.  Synchronous, on the JobStore's connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from chamberlain import jsoncodec
from chamberlain.records import PullRequest, Workspace, WorkspaceRefusal, Worktree

_COLUMNS = "id, created_at, last_used_at, size_bytes, repository, branch, base, pull_request"
#: Statuses of a job that still needs its workspace.
_LIVE = "('queued', 'running')"


def _workspace(conn: sqlite3.Connection, row: Sequence[Any]) -> Workspace:
    jobs = conn.execute(
        "SELECT id, status IN ('queued', 'running') FROM jobs WHERE workspace_id = ? ORDER BY seq",
        (row[0],),
    ).fetchall()
    return Workspace(
        id=row[0],
        created_at=row[1],
        last_used_at=row[2],
        size_bytes=row[3],
        repository=row[4],
        branch=row[5],
        base=row[6],
        job_ids=tuple(job[0] for job in jobs),
        in_use=any(job[1] for job in jobs),
        # Migration 0015: the pull request of its branch.
        pull_request=None if row[7] is None else PullRequest.from_json(json.loads(row[7])),
    )


def ensure(
    conn: sqlite3.Connection, workspace_id: str, *, now: float, worktree: Worktree | None = None
) -> None:
    """Make the row of a workspace a new job asks for (nothing if it exists)."""
    conn.execute(
        "INSERT INTO workspaces (id, created_at, last_used_at, repository, branch, base)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        (
            workspace_id,
            now,
            now,
            None if worktree is None else worktree.repository,
            None if worktree is None else worktree.branch,
            None if worktree is None else worktree.base,
        ),
    )


def holding_branch(conn: sqlite3.Connection, repository: str, branch: str) -> str | None:
    """The workspace that has ``branch`` of ``repository`` checked out, if any."""
    row = conn.execute(
        "SELECT id FROM workspaces WHERE repository = ? AND branch = ?", (repository, branch)
    ).fetchone()
    return None if row is None else str(row[0])


def record_pull_request(
    conn: sqlite3.Connection, workspace_id: str, job_id: str, pull_request: PullRequest
) -> None:
    """Keep the pull request opened from a workspace's branch, on it and on the job that
    asked for it (with its changes as they were when it was pushed)."""
    encoded = jsoncodec.dumps(pull_request.to_json())
    conn.execute("UPDATE workspaces SET pull_request = ? WHERE id = ?", (encoded, workspace_id))
    conn.execute(
        "UPDATE jobs SET pull_request = ?, changes = ? WHERE id = ?",
        (encoded, jsoncodec.dumps(pull_request.changes.to_json()), job_id),
    )


def using_repository(conn: sqlite3.Connection, repository: str) -> list[str]:
    """The workspaces that are worktrees of ``repository``."""
    rows = conn.execute(
        "SELECT id FROM workspaces WHERE repository = ? ORDER BY id", (repository,)
    ).fetchall()
    return [str(row[0]) for row in rows]


def touch(conn: sqlite3.Connection, workspace_id: str, *, size_bytes: int, now: float) -> bool:
    """Record a use of the workspace and its size now; False when it is gone."""
    cursor = conn.execute(
        "UPDATE workspaces SET last_used_at = ?, size_bytes = ? WHERE id = ?",
        (now, size_bytes, workspace_id),
    )
    return cursor.rowcount > 0


def get(conn: sqlite3.Connection, workspace_id: str) -> Workspace | None:
    """One workspace, or None."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM workspaces WHERE id = ?", (workspace_id,)
    ).fetchone()
    return None if row is None else _workspace(conn, row)


def list_all(conn: sqlite3.Connection) -> list[Workspace]:
    """Every workspace, the most recently used first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM workspaces ORDER BY last_used_at DESC, id"
    ).fetchall()
    return [_workspace(conn, row) for row in rows]


def ids(conn: sqlite3.Connection) -> list[str]:
    """The ids of every workspace that exists."""
    return [row[0] for row in conn.execute("SELECT id FROM workspaces ORDER BY id")]


def usage(conn: sqlite3.Connection) -> int:
    """Bytes the workspaces hold, as last measured."""
    (total,) = conn.execute("SELECT COALESCE(SUM(size_bytes), 0) FROM workspaces").fetchone()
    return int(total)


def delete(conn: sqlite3.Connection, workspace_id: str) -> WorkspaceRefusal | None:
    """Forget a workspace no job needs any more; why not, or None once it is gone."""
    found = get(conn, workspace_id)
    if found is None:
        return WorkspaceRefusal.UNKNOWN
    if found.in_use:
        return WorkspaceRefusal.IN_USE
    conn.execute("DELETE FROM workspaces WHERE id = ?", (workspace_id,))
    return None


def expire(conn: sqlite3.Connection, *, used_before: float) -> list[tuple[str, str | None]]:
    """Forget the workspaces last used before ``used_before`` that no job needs.

    Answers each one's id and the repository it is a worktree of (None: none).
    """
    rows = conn.execute(
        "SELECT id, repository FROM workspaces WHERE last_used_at < ? AND id NOT IN"
        f" (SELECT workspace_id FROM jobs WHERE workspace_id IS NOT NULL AND status IN {_LIVE})",
        (used_before,),
    ).fetchall()
    expired = [(str(row[0]), row[1]) for row in rows]
    conn.executemany("DELETE FROM workspaces WHERE id = ?", [(id_,) for id_, _ in expired])
    return expired
