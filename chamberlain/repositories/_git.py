"""Running git: mirrors, worktrees, commits and pushes, the trio I/O edge of repositories.

Every command goes through :func:`git`: an argv (never a shell) run in a new
session with a minimal environment, credential helpers disabled and terminal
prompts off, so git can never stop to ask anyone anything. A repository's token
reaches git one way only: through ``GIT_ASKPASS``, the ``askpass`` script shipped
beside this module, which reads it from ``CHAMBERLAIN_GIT_PASSWORD`` in git's
environment. It is never in argv, never in a URL (:func:`parse_remote` refuses URLs
with credentials), so never in a mirror's ``config``, and it is scrubbed from every
:class:`GitError`.

A *mirror* is a bare ``git clone --mirror`` of a remote; a job's workspace is a git
worktree of a mirror on a branch of its own. Fetching a mirror leaves alone the
branches its worktrees have checked out (see :func:`ensure_mirror`): they are the
jobs' work, not the remote's.

Callers serialize the commands on one mirror (one fetch or worktree change at a
time); git's own locks make a collision fail, not corrupt.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import trio

from chamberlain.records import Changes

from ._rules import check_branch, parse_remote, scrub

__all__ = [
    "ASKPASS",
    "PASSWORD_VARIABLE",
    "GitError",
    "add_worktree",
    "branches_checked_out",
    "changes",
    "commit_all",
    "ensure_mirror",
    "git",
    "push",
    "remove_worktree",
]

#: The askpass helper git runs for a user name and a password (shipped executable).
ASKPASS: Final = Path(__file__).with_name("askpass")
#: The variable through which the helper gets the token.
PASSWORD_VARIABLE: Final = "CHAMBERLAIN_GIT_PASSWORD"
#: What of git's stderr a GitError keeps: its end, where git says what went wrong.
STDERR_TAIL: Final = 2048
#: How long git gets between SIGTERM and SIGKILL once its time is up.
KILL_GRACE: Final = 2.0
#: The variables git gets from our environment; everything else is left out.
_INHERITED: Final = ("PATH", "HOME", "LANG", "SSH_AUTH_SOCK")
_HEADS: Final = "refs/heads/"


class GitError(Exception):
    """A git command failed, or ran out of time.

    ``command`` is the argv (scrubbed), ``returncode`` git's exit status (None when
    it did not start or was killed at its timeout), ``stderr`` the scrubbed last
    2 KB of what it printed there.
    """

    def __init__(
        self, command: Sequence[str], returncode: int | None, stderr: str, reason: str = ""
    ) -> None:
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr
        self.reason = reason or f"exited with status {returncode}"
        super().__init__(self.command, returncode, stderr, self.reason)

    def __str__(self) -> str:
        shown = " ".join(self.command)
        detail = self.stderr.strip()
        return f"`{shown}` {self.reason}" + (f": {detail}" if detail else "")


def _environment(token: str | None, extra: Mapping[str, str]) -> dict[str, str]:
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    env["GIT_TERMINAL_PROMPT"] = "0"
    # ssh cannot ask either: git runs in a session of its own, without a terminal.
    env.update(extra)
    if token:
        if not os.access(ASKPASS, os.X_OK):
            # An installation that lost the executable bit: give it back if we may.
            with contextlib.suppress(OSError):
                ASKPASS.chmod(0o755)
        env["GIT_ASKPASS"] = str(ASKPASS)
        env[PASSWORD_VARIABLE] = token
    return env


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # gone already (PermissionError: the group id is someone else's now)


async def _deliver_cancel(process: trio.Process) -> None:
    # git leads a session of its own: its helpers (git-remote-https, ssh) go with it.
    _signal_group(process.pid, signal.SIGTERM)
    await trio.sleep(KILL_GRACE)
    _signal_group(process.pid, signal.SIGKILL)


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


async def _run(
    args: Sequence[str],
    *,
    cwd: Path | None,
    token: str | None,
    timeout: float,  # noqa: ASYNC109 - a timeout is an error to report, as a GitError
    env: Mapping[str, str] = {},
    ok: Iterable[int] = (0,),
) -> tuple[int, str]:
    """Run git; its exit status and stdout. GitError unless the status is in ``ok``."""
    argv = ["git", "-c", "credential.helper=", *args]
    secrets = [token] if token else []
    shown = [scrub(arg, secrets) for arg in argv]
    result: subprocess.CompletedProcess[bytes] | None = None
    with trio.move_on_after(timeout):
        try:
            result = await trio.run_process(
                argv,
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                cwd=cwd,
                env=_environment(token, env),
                start_new_session=True,
                deliver_cancel=_deliver_cancel,
            )
        except OSError as exc:
            raise GitError(
                shown, None, "", f"could not start: {scrub(str(exc), secrets)}"
            ) from None
    if result is None:
        raise GitError(shown, None, "", f"timed out after {timeout:g}s")
    if result.returncode not in tuple(ok):
        stderr = scrub(_text(result.stderr), secrets)
        raise GitError(shown, result.returncode, stderr[-STDERR_TAIL:])
    return result.returncode, _text(result.stdout)


async def git(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    token: str | None = None,
    timeout: float = 300.0,  # noqa: ASYNC109 - a timeout is an error to report, as a GitError
) -> str:
    """Run ``git <args>`` in ``cwd``; its stdout. GitError when it fails or times out.

    git runs with ``-c credential.helper=`` (no helper stores or offers anything),
    the variables PATH, HOME, LANG and SSH_AUTH_SOCK of our environment and no
    others and ``GIT_TERMINAL_PROMPT=0``, in a session of its own (no terminal for ssh
    to ask on either). With a ``token`` it
    also gets ``GIT_ASKPASS`` (the shipped helper: ``x-access-token`` as the user
    name, the token as the password) and the token in ``CHAMBERLAIN_GIT_PASSWORD``.
    Past ``timeout`` seconds its process group gets SIGTERM, then SIGKILL.
    """
    return (await _run(args, cwd=cwd, token=token, timeout=timeout))[1]


# The file system is touched synchronously here, as by chamberlain.plugins.workspace:
# looking at a directory or renaming one takes microseconds.


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _existing_mirror(mirror: Path) -> bool:
    """Whether ``mirror`` is there (ValueError when something else is in its place)."""
    if not os.path.lexists(mirror):
        return False
    if not ((mirror / "HEAD").is_file() and (mirror / "objects").is_dir()):
        raise ValueError(f"{mirror} exists and is not a git repository")
    return True


def _present(path: Path) -> bool:
    return os.path.lexists(path)


def _copy_index(index: Path, copy: Path) -> None:
    # A copy keeps the index's stat cache: unchanged files are not hashed again.
    if os.path.isfile(index):
        shutil.copyfile(index, copy)


def _staging_for(mirror: Path) -> Path:
    mirror.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{mirror.name}.", suffix=".cloning", dir=mirror.parent))


def _check_free(path: Path) -> None:
    if not os.path.lexists(path):
        return
    if not os.path.islink(path) and os.path.isdir(path):
        with os.scandir(path) as entries:
            if next(entries, None) is None:
                return
    raise ValueError(f"{path} exists and is not an empty directory")


async def ensure_mirror(url: str, mirror: Path, *, token: str | None = None) -> None:
    """Make ``mirror`` a bare mirror of ``url`` (``git clone --mirror``), or bring it up to date.

    The first time, the clone goes into a temporary directory beside ``mirror`` that
    is renamed into place once complete, so a failed clone leaves nothing behind.
    Afterwards ``git fetch --prune origin`` runs with the mirror's refspec minus the
    branches its worktrees have checked out: fetching into one would fail (git
    refuses to move a checked-out branch) and pruning would delete a job's branch
    not yet pushed. When ``url`` differs from the mirror's ``origin``, the origin is
    set to it first. ``url`` may hold no credentials (ValueError): the mirror's
    config holds exactly ``url``.
    """
    parse_remote(url)
    mirror = _absolute(mirror)
    if _existing_mirror(mirror):
        current = await git(["config", "--get", "remote.origin.url"], cwd=mirror)
        if current.strip() != url:
            await git(["remote", "set-url", "origin", url], cwd=mirror)
        keep = sorted(await branches_checked_out(mirror))
        refspecs = ["+refs/*:refs/*", *(f"^{_HEADS}{branch}" for branch in keep)]
        await git(["fetch", "--prune", "origin", *refspecs], cwd=mirror, token=token)
        return
    staging = _staging_for(mirror)
    try:
        await git(["clone", "--mirror", "--", url, str(staging)], token=token)
        os.rename(staging, mirror)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


async def _branch_exists(repository: Path, branch: str) -> bool:
    status, _ = await _run(
        ["show-ref", "--verify", "--quiet", f"{_HEADS}{branch}"],
        cwd=repository,
        token=None,
        timeout=60.0,
        ok=(0, 1),
    )
    return status == 0


async def add_worktree(mirror: Path, path: Path, *, branch: str, base: str) -> None:
    """Check ``branch`` out of ``mirror`` into a new worktree at ``path``.

    An existing branch is checked out as it is; a new one starts at the mirror's
    branch ``base`` (without tracking it). git refuses a branch that another
    worktree has checked out (GitError). ValueError for an unsafe branch name or a
    ``path`` that exists and is not an empty directory.
    """
    check_branch(branch)
    check_branch(base)
    mirror = _absolute(mirror)
    path = _absolute(path)
    _check_free(path)
    if await _branch_exists(mirror, branch):
        await git(["worktree", "add", "--", str(path), branch], cwd=mirror)
    else:
        await git(
            ["worktree", "add", "--no-track", "-b", branch, "--", str(path), f"{_HEADS}{base}"],
            cwd=mirror,
        )


async def remove_worktree(mirror: Path, path: Path) -> None:
    """Remove the worktree at ``path`` (whatever it holds) and prune ``mirror``'s records.

    A ``path`` already gone is fine. Only ``path`` is ever forced: git refuses one
    that is not a worktree of ``mirror`` (GitError). The branch stays in the mirror.
    """
    mirror = _absolute(mirror)
    path = _absolute(path)
    if _present(path):
        await git(["worktree", "remove", "--force", "--", str(path)], cwd=mirror)
    await git(["worktree", "prune"], cwd=mirror)


def _checked_out(porcelain: str) -> set[str]:
    return {
        line.removeprefix(f"branch {_HEADS}")
        for line in porcelain.splitlines()
        if line.startswith(f"branch {_HEADS}")
    }


async def branches_checked_out(mirror: Path) -> set[str]:
    """The branches that ``mirror``'s worktrees have checked out (``worktree list --porcelain``)."""
    return _checked_out(await git(["worktree", "list", "--porcelain"], cwd=_absolute(mirror)))


def _count(numstat: str) -> Changes:
    files = insertions = deletions = 0
    for line in numstat.splitlines():
        added, _, rest = line.partition("\t")
        removed, _, _ = rest.partition("\t")
        if not rest:
            continue
        files += 1
        # A binary file shows "-" for both: it counts as a file, without lines.
        insertions += int(added) if added.isdigit() else 0
        deletions += int(removed) if removed.isdigit() else 0
    return Changes(files_changed=files, insertions=insertions, deletions=deletions)


async def changes(worktree: Path, base: str) -> Changes:
    """What the work in ``worktree`` changes from where its branch left ``base``.

    Counts everything the worktree holds, committed or not: staged, unstaged and
    untracked files (those ``.gitignore`` ignores aside), compared with the merge
    base of HEAD and the branch ``base`` (what ``git diff base...HEAD`` compares
    with). The worktree's own index is left untouched: the files are added to a
    temporary copy of it (``GIT_INDEX_FILE``), which is then diffed with
    ``--numstat`` (not ``--shortstat``, whose words git translates).
    """
    check_branch(base)
    worktree = _absolute(worktree)
    fork = (await git(["merge-base", f"{_HEADS}{base}", "HEAD"], cwd=worktree)).strip()
    index = Path(
        (
            await git(["rev-parse", "--path-format=absolute", "--git-path", "index"], cwd=worktree)
        ).strip()
    )
    with tempfile.TemporaryDirectory(prefix="chamberlain-index-") as scratch:
        temporary = Path(scratch) / "index"
        _copy_index(index, temporary)
        env = {"GIT_INDEX_FILE": str(temporary)}
        await _run(["add", "-A"], cwd=worktree, token=None, timeout=300.0, env=env)
        _, numstat = await _run(
            ["diff", "--cached", "--numstat", "--no-ext-diff", fork],
            cwd=worktree,
            token=None,
            timeout=300.0,
            env=env,
        )
    return _count(numstat)


async def commit_all(worktree: Path, message: str, *, author_name: str, author_email: str) -> bool:
    """Stage everything in ``worktree`` and commit it; False when there was nothing to commit.

    The author (also the committer) is ``author_name <author_email>``. The message
    is one argv element after ``-m``; hooks do not run and nothing is signed (no
    terminal, no agent to ask).
    """
    if not message.strip() or "\x00" in message:
        raise ValueError("a commit message may be neither empty nor hold NUL")
    worktree = _absolute(worktree)
    await git(["add", "-A"], cwd=worktree)
    status, _ = await _run(
        ["diff", "--cached", "--quiet"], cwd=worktree, token=None, timeout=300.0, ok=(0, 1)
    )
    if status == 0:
        return False
    identity = {
        "GIT_AUTHOR_NAME": author_name,
        "GIT_AUTHOR_EMAIL": author_email,
        "GIT_COMMITTER_NAME": author_name,
        "GIT_COMMITTER_EMAIL": author_email,
    }
    await _run(
        ["-c", "commit.gpgSign=false", "commit", "--quiet", "--no-verify", "-m", message],
        cwd=worktree,
        token=None,
        timeout=300.0,
        env=identity,
    )
    return True


async def push(worktree: Path, branch: str, *, url: str, token: str | None = None) -> None:
    """Push ``refs/heads/<branch>`` of ``worktree`` to the same branch at ``url``.

    ``url`` is given explicitly (never a configured remote: a mirror's ``origin``
    would push every ref) and may hold no credentials (ValueError); the token goes
    through askpass, and a local remote (file:// or a path) never asks for it. Not
    forced: a branch that moved on the remote is refused (GitError).
    """
    parse_remote(url)
    check_branch(branch)
    ref = f"{_HEADS}{branch}"
    await git(["push", "--", url, f"{ref}:{ref}"], cwd=_absolute(worktree), token=token)
