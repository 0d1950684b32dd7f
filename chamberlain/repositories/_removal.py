"""Removing a kept workspace: through git first when it is a worktree, then its directory."""

from __future__ import annotations

import logging

import trio

from chamberlain.plugins.workspace import Workspaces

from ._git import GitError, remove_worktree

log = logging.getLogger("chamberlain.workspaces")


async def remove_workspace(
    workspaces: Workspaces, workspace_id: str, repository: str | None
) -> None:
    """Remove a kept workspace whose row is gone: through git first for a worktree
    (so its mirror forgets it and its branch is free), then its directory."""
    path = workspaces.kept_path(workspace_id)
    mirror = None if repository is None else workspaces.mirror_path(repository)
    if path is not None and mirror is not None and mirror.exists() and not path.is_symlink():
        try:
            await remove_worktree(mirror, path)
        except GitError as exc:
            log.error(
                "git could not remove the worktree %s: %s",
                path,
                exc,
                extra={"component": "workspaces", "workspace_id": workspace_id},
            )
    await trio.to_thread.run_sync(workspaces.discard, workspace_id)
