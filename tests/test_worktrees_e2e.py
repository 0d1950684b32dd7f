"""Workspaces that are git worktrees of a repository's mirror, end to end.

The remote is a local bare repository made by the test; the ``scribe`` plugin
appends a line to ``notes.txt`` in its workspace.  Nothing leaves the machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    BUNDLED_PLUGINS,
    DaemonFactory,
    DaemonProcess,
    api_client,
    deep_merge,
    finished_job,
)
from git_remotes import bare_remote, git

pytestmark = pytest.mark.e2e

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"
TOKEN = "tok-9f3a-do-not-leak"


def config(bare: Path, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "plugin_roots": [str(BUNDLED_PLUGINS), str(E2E_PLUGINS)],
        "plugins": {"scribe": {"retry": {"max_attempts": 1}}},
        "repositories": {
            "app": {"url": str(bare), "default_branch": "main", "token": "${REPO_TOKEN}"},
            "away": {"url": "https://127.0.0.1:9/owner/away.git", "token": "${REPO_TOKEN}"},
        },
    }
    return deep_merge(base, extra)


async def start(daemon: DaemonFactory, bare: Path) -> DaemonProcess:
    return await daemon(config(bare), env={"REPO_TOKEN": TOKEN})


async def write(c: httpx.AsyncClient, workspace: Any, line: str = "work") -> httpx.Response:
    return await c.post(
        "/trigger/scribe/write", json={"payload": {"line": line}, "workspace": workspace}
    )


async def test_a_job_works_in_a_worktree_of_its_branch_and_holds_that_branch(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    bare = bare_remote(tmp_path)
    d = await start(daemon, bare)
    feature = {"repository": "app", "branch": "feature-x"}
    async with api_client(d) as c:
        r = await write(c, feature, "first")
        assert r.status_code == 202, r.text
        done = await finished_job(c, r.json()["job_id"])
        assert done["status"] == "succeeded", done["last_error"]
        path = Path(done["result"]["result"]["workspace"])
        assert path == tmp_path / "workspaces" / done["workspace_id"]
        # A worktree of the mirror, on its own branch made from main.
        assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=path).strip() == "feature-x"
        assert (path / "README.md").read_text() == "hello\n"
        assert (path / "notes.txt").read_text() == "first\n"

        # The branch is held: a second job asking for it is refused, the first's
        # worktree untouched.
        # A retry works on in the same worktree: the branch is the job's.
        r = await c.post(f"/job/{done['job_id']}/retry")
        assert r.status_code == 202, r.text
        retried = await finished_job(c, r.json()["job_id"])
        assert retried["workspace_id"] == done["workspace_id"]
        assert retried["result"]["result"]["notes"] == ["first", "first"]
        (path / "notes.txt").write_text("first\n")

        r = await write(c, feature, "second")
        assert r.status_code == 409, r.text
        assert done["workspace_id"] in r.json()["error"]
        assert (path / "notes.txt").read_text() == "first\n"

        shown = (await c.get(f"/workspaces/{done['workspace_id']}")).json()
        assert (shown["repository"], shown["branch"]) == ("app", "feature-x")
        repo = (await c.get("/repositories/app")).json()
        assert repo["url"] == str(bare) and repo["default_branch"] == "main"
        assert repo["mirror_bytes"] > 0 and repo["last_sync_at"] is not None
        names = [r["name"] for r in (await c.get("/repositories")).json()["repositories"]]
        assert names == ["app", "away"]
        assert (await c.get("/repositories/nope")).status_code == 404

        # Deleted through git: the mirror forgets the worktree, the branch is free.
        r = await c.delete(f"/workspaces/{done['workspace_id']}")
        assert r.status_code == 204, r.text
        mirror = tmp_path / "repos" / "app.git"
        assert str(path) not in git("worktree", "list", cwd=mirror)
        r = await write(c, feature, "again")
        assert r.status_code == 202, r.text
        again = await finished_job(c, r.json()["job_id"])
        assert again["status"] == "succeeded", again["last_error"]

        for bad, error in [
            ({"repository": "nope", "branch": "x"}, "unknown repository 'nope'"),
            ({"repository": "app", "branch": "a..b"}, "workspace.branch"),
            ({"repository": "app", "branch": "-rf"}, "workspace.branch"),
            ({"repository": "app"}, "workspace.branch must be a branch name"),
            ({"repository": "app", "branch": "x", "path": "/"}, "unknown field 'path'"),
        ]:
            r = await write(c, bad)
            assert r.status_code == 400, (bad, r.text)
            assert error in r.json()["error"], (bad, r.json())


async def test_the_token_never_shows_anywhere(daemon: DaemonFactory, tmp_path: Path) -> None:
    bare = bare_remote(tmp_path)
    d = await start(daemon, bare)
    async with api_client(d) as c:
        ok = await finished_job(
            c, (await write(c, {"repository": "app", "branch": "b1"})).json()["job_id"]
        )
        r = await write(c, {"repository": "away", "branch": "b2"})
        assert r.status_code == 202, r.text
        failed = await finished_job(c, r.json()["job_id"])
        listings = [
            (await c.get(path)).text
            for path in ("/repositories", "/workspaces", f"/job/{ok['job_id']}")
        ]
    assert failed["status"] in ("failed", "dead")
    assert "the job was not started: could not make the worktree of away@b2" in failed["last_error"]
    await d.stop()
    seen = [json.dumps(ok), json.dumps(failed), *listings, "\n".join(d.stderr_lines())]
    for root in (tmp_path / "repos", tmp_path / "workspaces"):
        for file in root.rglob("*"):
            if file.is_file() and not file.is_symlink():
                seen.append(file.read_bytes().decode("utf-8", "replace"))
    seen.append(d.state_path.read_bytes().decode("utf-8", "replace"))
    assert not [text for text in seen if TOKEN in text]
