"""Real git for the tests: local bare repositories that stand in for remotes.

Nothing leaves the machine: a "remote" is a bare repository under the test's
temporary directory, seeded through a clone of it that the test may push more from.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git; its stdout (a failure raises, with git's stderr in the error)."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout


def bare_remote(root: Path, name: str = "remote") -> Path:
    """``root/<name>.git``: a bare repository with one commit on main (README.md).

    Its seed clone, ``root/<name>-seed``, stays for the test to push more from.
    """
    bare = root / f"{name}.git"
    git("init", "--bare", "--initial-branch=main", str(bare))
    seed = root / f"{name}-seed"
    git("clone", str(bare), str(seed))
    (seed / "README.md").write_text("hello\n")
    git("add", "README.md", cwd=seed)
    git("-c", "user.name=t", "-c", "user.email=t@x", "commit", "-m", "first", cwd=seed)
    git("push", "origin", "HEAD:main", cwd=seed)
    return bare


def remote_head(bare: Path, branch: str) -> str | None:
    """The commit ``branch`` is at on the remote (``git ls-remote``), None without it."""
    line = git("ls-remote", str(bare), f"refs/heads/{branch}").strip()
    return line.split()[0] if line else None
