"""Fetching a repository's mirror on demand: the ``execute`` of the ``core.repository`` Runner.

``POST /repositories/{name}/sync`` (and ``POST /repositories/sync``, one per
repository) creates a job of the built-in ``core.repository`` plugin, so a sync is
stored, claimed, shown and polled like any job (``GET /job/{id}``), and cancelled
with ``POST /job/{id}/cancel``.  Its Runner is the ordinary one; only the run
differs: instead of starting a process, it runs ``git fetch --prune`` on the bare
mirror (a clone the first time, :func:`chamberlain.repositories.ensure_mirror`)
under the mirror's lock, shared with the worktrees being made, and answers the
Runner with the protocol v2 response a plugin would have printed.

A sync is tried once: a remote that cannot be reached now is the caller's to ask
again, and a wrong URL would only fail three more times.  Its error text is git's,
scrubbed of the token.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs
import trio

from chamberlain.actors.repository_book import RepositoryBook
from chamberlain.config import Config
from chamberlain.plugins.binding import SYNC_PLUGIN, BoundPlugin, builtin_plugin
from chamberlain.plugins.protocol import ProcessResult
from chamberlain.plugins.workspace import Workspaces, size_of
from chamberlain.records import NewJob, rfc3339
from chamberlain.repositories import GitError, ensure_mirror, git
from chamberlain.vault import UnknownSecret, Vault

#: The one command of the built-in plugin whose jobs fetch mirrors (SYNC_PLUGIN).
SYNC_COMMAND: Final = "sync"


def sync_plugin(config: Config) -> BoundPlugin:
    """The built-in ``core.repository`` plugin (``plugins.core.repository`` tunes its
    ``parallelism`` and ``timeouts.sync``, like any plugin's)."""
    # Syncs of different repositories run at once; those of one wait for its lock.
    return builtin_plugin(
        config,
        SYNC_PLUGIN,
        SYNC_COMMAND,
        description="Fetches a repository's bare mirror (git fetch --prune).",
        parallelism=2,
    )


def sync_job(repository: str, *, submitted_by: str) -> NewJob:
    """The job that fetches ``repository``'s mirror."""
    return NewJob(
        plugin=SYNC_PLUGIN,
        command=SYNC_COMMAND,
        payload={"repository": repository},
        submitted_by=submitted_by,
        max_attempts=1,
    )


@attrs.define(eq=False)
class RepositorySync:
    """Fetches one repository's mirror; called by the Runner as its ``execute``."""

    repositories: RepositoryBook
    workspaces: Workspaces
    vault: Vault
    #: Shared with the Runners that make worktrees of the mirrors.
    mirror_locks: dict[str, trio.Lock]
    now: Callable[[], float] = time.time

    async def __call__(self, *, request: bytes, timeout: float, **_: Any) -> ProcessResult:  # noqa: ASYNC109
        """Sync the repository named by the job in ``request`` (its v2 request line)."""
        started = time.monotonic()
        payload = json.loads(request).get("payload")
        answer: Mapping[str, Any] | None = None
        with trio.move_on_after(timeout):
            answer = await self._sync(payload if isinstance(payload, Mapping) else {})
        return ProcessResult.in_daemon(answer, timeout=timeout, duration=time.monotonic() - started)

    async def _sync(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        name = payload.get("repository")
        if not isinstance(name, str):
            return _failed("a core.repository job's payload names its repository")
        config = self.repositories.get(name)
        mirror = self.workspaces.mirror_path(name)
        if config is None:
            return _failed(f"repository {name!r} is not configured")
        if mirror is None:
            return _failed("repositories need a state directory (state.path) for their mirrors")
        try:
            token = None if config.token is None else self.vault.resolve(config.token)
        except UnknownSecret as exc:
            return _failed(f"repository {name}: {exc}")
        try:
            async with self.mirror_locks.setdefault(name, trio.Lock()):
                await ensure_mirror(config.url, mirror, token=token)
                heads = await git(
                    ["for-each-ref", "--format=%(refname)", "refs/heads/"], cwd=mirror
                )
        except (GitError, ValueError) as exc:
            return _failed(f"could not fetch {name}: {exc}")
        size = await trio.to_thread.run_sync(size_of, mirror)
        return {
            "status": "ok",
            "result": {
                "repository": name,
                "synced_at": rfc3339(self.now()),
                "mirror_bytes": size,
                "branches": len(heads.splitlines()),
            },
        }


def _failed(error: str) -> dict[str, Any]:
    return {"status": "error", "error": error, "retry": False}
