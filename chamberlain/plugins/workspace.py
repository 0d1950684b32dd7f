"""A job's workspace: a private directory for one attempt, or kept for the job's chain.

A job that asks for a workspace (``"workspace": true`` in its trigger) runs in a
*kept* one, ``<state dir>/workspaces/<workspace id>/``: made at its first attempt,
shared by its retries, its loop's iterations and its follow-ups, and removed only
by ``DELETE /workspaces/{id}`` or ``workspaces.ttl`` after its last use
(:meth:`Workspaces.keep`, :meth:`Workspaces.discard`).  What follows is about the
other kind, the directory of one attempt.

A job that asks for MCP servers (``"mcp_servers": [...]`` in its trigger) runs with
a workspace holding the ``.mcp.json`` its agent reads
(:func:`chamberlain.plugins.mcp_servers.mcp_config`): ``<state dir>/workspaces/<job
id>/``, or a fresh temporary directory when the state is in memory.  The plugin
learns where from ``workspace_dir`` in its request (Ductile's field) and from
``CHAMBERLAIN_WORKSPACE`` in its environment.

The directory is created mode 0700 and its files 0600, whatever the umask: the
file holds resolved secrets, readable by the daemon's user only.  The Runner
removes it when the attempt ends, whatever the outcome, and a daemon that died
before it could do so leaves workspaces that the next start sweeps
(:meth:`Workspaces.sweep`, called by the JobStore once it has recovered the jobs
that were running).  A job without MCP servers gets no workspace at all.

The decisions (where, which names are safe) are plain functions; the file system
is touched only by :class:`Workspaces`' methods, synchronously: creating a small
directory and one file costs microseconds.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Final

import attrs

log = logging.getLogger("chamberlain.plugins")

#: Where a plugin finds its workspace, besides the request's ``workspace_dir``.
WORKSPACE_VARIABLE: Final = "CHAMBERLAIN_WORKSPACE"
#: The file an agent is pointed at (``claude --mcp-config .mcp.json``).
MCP_CONFIG_FILE: Final = ".mcp.json"
#: The directory beside the database that holds every workspace.
WORKSPACES_DIR: Final = "workspaces"
#: The directory beside it that holds the repositories' bare mirrors.
MIRRORS_DIR: Final = "repos"
#: What marks a temporary workspace (in-memory state) in the system's temp directory.
TEMP_PREFIX: Final = "chamberlain-workspace-"

_IN_MEMORY: Final = ":memory:"


def workspace_root(state_path: str) -> Path | None:
    """The directory beside the database that holds the workspaces; None for ``:memory:``."""
    if state_path == _IN_MEMORY:
        return None
    return Path(state_path).absolute().parent / WORKSPACES_DIR


def check_entry_name(name: str) -> str:
    """``name`` if it is safe as one directory entry; ValueError otherwise.

    Job ids are UUIDs and file names are chosen here, but a name that could climb
    out of its directory must never reach the file system.
    """
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise ValueError(f"{name!r} is not a safe file name")
    return name


def workspace_environment(path: Path | None) -> dict[str, str]:
    """The variables a job's process gets for its workspace (none without one)."""
    return {} if path is None else {WORKSPACE_VARIABLE: str(path)}


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        # The mode os.open gives is masked by the umask: set it exactly.
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _make_removable(top: Path) -> None:
    """Make every directory under ``top`` (itself too) writable and searchable.

    A plugin may leave a directory read-only, which would stop its removal.  Links
    are never followed: only what ``lstat`` shows to be a directory is changed.
    """

    def make_writable(path: str) -> None:
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.lstat(path).st_mode):
                os.chmod(path, 0o700)

    make_writable(str(top))
    # Top-down: each directory is made listable before the walk goes into it.
    for directory, subdirectories, _ in os.walk(top):
        for name in subdirectories:
            make_writable(os.path.join(directory, name))


def size_of(path: Path) -> int:
    """Bytes the files under ``path`` take, links not followed (0 when it is gone)."""
    total = 0
    for directory, subdirectories, files in os.walk(path):
        for name in (*files, *subdirectories):
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything in it, read-only directories included.

    Symbolic links inside are removed, never followed.  A path already gone is fine.
    """
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except PermissionError:
        _make_removable(path)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(path)


@attrs.frozen
class Workspaces:
    """Where workspaces are made: under ``root``, or each in a temporary directory (None)."""

    root: Path | None = None

    def create(self, job_id: str, files: Mapping[str, bytes]) -> Path:
        """A new, private workspace for ``job_id`` holding ``files`` (name -> content).

        What an earlier attempt of the job left there (one cut short by a crash of
        the daemon) is removed first.
        """
        check_entry_name(job_id)
        for name in files:
            check_entry_name(name)
        if self.root is None:
            path = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{job_id}-"))
        else:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self.root / job_id
            if path.is_symlink() or path.exists():
                remove_tree(path) if not path.is_symlink() else path.unlink()
            os.mkdir(path, 0o700)
        try:
            os.chmod(path, 0o700)
            for name, data in files.items():
                _write_private(path / name, data)
        except BaseException:
            remove_tree(path)
            raise
        return path

    def keep(self, workspace_id: str) -> Path:
        """The directory of the kept workspace ``workspace_id``, made if missing.

        Raises OSError when its place holds something that is not a directory of
        ours (a symbolic link put there): a workspace is never followed out of the
        root.
        """
        if self.root is None:
            raise OSError("kept workspaces need a state directory (state.path is :memory:)")
        check_entry_name(workspace_id)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.root / workspace_id
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise OSError(f"{path} is not a directory; refusing to use it as a workspace")
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    def mirror_path(self, repository: str) -> Path | None:
        """Where the bare mirror of ``repository`` lives (None: no state directory)."""
        if self.root is None:
            return None
        return self.root.parent / MIRRORS_DIR / f"{check_entry_name(repository)}.git"

    def kept_path(self, workspace_id: str) -> Path | None:
        """Where the kept workspace ``workspace_id`` lives (None: no state directory)."""
        return None if self.root is None else self.root / check_entry_name(workspace_id)

    def place(self, path: Path, files: Mapping[str, bytes]) -> None:
        """Write ``files`` into a kept workspace, private, replacing what had their names."""
        for name in files:
            check_entry_name(name)
        for name, data in files.items():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path / name)
            _write_private(path / name, data)

    def lift(self, path: Path, names: Collection[str]) -> None:
        """Remove the files :meth:`place` wrote (they hold secrets) once the attempt ends."""
        for name in names:
            try:
                os.unlink(path / check_entry_name(name))
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error(
                    "could not remove %s from the workspace %s: %s",
                    name,
                    path,
                    exc,
                    extra={"component": "runner", "path": str(path)},
                )

    def discard(self, workspace_id: str) -> None:
        """Remove a kept workspace's directory (its row is already gone).

        A symbolic link put in its place is removed, never followed: a delete never
        reaches outside the root.
        """
        path = self.kept_path(workspace_id)
        if path is None:
            return
        try:
            if path.is_symlink():
                path.unlink()
            else:
                remove_tree(path)
        except OSError as exc:
            # Its row is gone: what is left is swept at the next start.
            log.error(
                "could not remove the workspace %s: %s",
                path,
                exc,
                extra={"component": "jobstore", "path": str(path)},
            )

    def remove(self, path: Path) -> None:
        """Remove a workspace :meth:`create` made; a failure is logged, never raised.

        The attempt is over whatever happens here, and its outcome must still be
        recorded; a workspace left behind is swept at the next start.
        """
        try:
            remove_tree(path)
        except OSError as exc:
            log.error(
                "could not remove the workspace %s: %s",
                path,
                exc,
                extra={"component": "runner", "path": str(path)},
            )

    def sweep(self, keep: Collection[str] = ()) -> list[str]:
        """Remove every workspace under ``root`` but those of the jobs in ``keep``.

        Called at start-up, once no job is running: what is left is a dead daemon's.
        Answers the job ids whose workspaces were removed.
        """
        if self.root is None:
            return []
        try:
            entries = sorted(os.scandir(self.root), key=lambda entry: entry.name)
        except FileNotFoundError:
            return []
        removed: list[str] = []
        for entry in entries:
            if entry.name in keep:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    remove_tree(Path(entry.path))
                else:
                    os.unlink(entry.path)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    continue
                log.error(
                    "could not remove the stale workspace %s: %s",
                    entry.path,
                    exc,
                    extra={"component": "jobstore", "path": entry.path},
                )
                continue
            removed.append(entry.name)
        return removed
