"""Pull requests of worktree jobs, end to end: a real daemon, git and a fake forge.

The remote is a local bare repository; the forge is :mod:`fake_forge`, a real HTTP
server that answers as GitHub's REST API does and records what it was sent.  The
``scribe`` plugin appends a line to ``notes.txt`` in its worktree.  Nothing leaves
the machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import (
    BUNDLED_PLUGINS,
    DaemonFactory,
    DaemonProcess,
    api_client,
    deep_merge,
    finished_job,
    wait_for,
)
from fake_forge import FakeForge, running_fake_forge
from git_remotes import bare_remote, git, remote_head

pytestmark = pytest.mark.e2e

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"
TOKEN = "tok-7c1e-never-shown"


def hostile(marker: Path) -> str:
    """A title of shell and template syntax a careless gateway would run or expand."""
    return f"Fix $(touch {marker}) `touch {marker}` ${{HOME}} '; rm -rf / #"


@pytest.fixture
def forge() -> Iterator[FakeForge]:
    with running_fake_forge(token=TOKEN) as fake:
        yield fake


def config(bare: Path, forge: FakeForge, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "plugin_roots": [str(BUNDLED_PLUGINS), str(E2E_PLUGINS)],
        "plugins": {"scribe": {"retry": {"max_attempts": 1}}},
        "repositories": {
            "app": {
                "url": str(bare),
                "token": "${REPO_TOKEN}",
                "forge": "github",
                "forge_repo": "owner/app",
                "api_url": forge.url,
                "author": {"name": "Gateway Bot", "email": "bot@example.invalid"},
            },
        },
    }
    return deep_merge(base, extra)


async def start(daemon: DaemonFactory, bare: Path, forge: FakeForge) -> DaemonProcess:
    return await daemon(config(bare, forge), env={"REPO_TOKEN": TOKEN})


async def write(c: httpx.AsyncClient, branch: str, **options: Any) -> str:
    payload = options.pop("payload", {"line": "work"})
    r = await c.post(
        "/trigger/scribe/write",
        json={"payload": payload, "workspace": {"repository": "app", "branch": branch}, **options},
    )
    assert r.status_code == 202, r.text
    job_id: str = r.json()["job_id"]
    return job_id


def pulls_posted(forge: FakeForge) -> list[dict[str, Any]]:
    return [r.json for r in forge.requests if r.method == "POST" and r.json is not None]


async def test_a_pull_request_commits_pushes_and_opens_once(
    daemon: DaemonFactory, tmp_path: Path, forge: FakeForge
) -> None:
    bare = bare_remote(tmp_path)
    d = await start(daemon, bare, forge)
    async with api_client(d) as c:
        done = await finished_job(c, await write(c, "feature-x"))
        assert done["status"] == "succeeded", done["last_error"]
        # A worktree job's record says what it changed: notes.txt, one line.
        assert done["changes"] == {"files_changed": 1, "insertions": 1, "deletions": 0}
        assert done["pull_request"] is None
        assert remote_head(bare, "feature-x") is None

        marker = tmp_path / "pwned"
        title = hostile(marker)
        ask = {"title": title, "body": "Adds notes.\n\n$(whoami)", "draft": True}
        r = await c.post(f"/job/{done['job_id']}/pull-request", json=ask)
        assert r.status_code == 200, r.text
        opened = r.json()
        assert opened == {
            "pr_url": "https://github.com/owner/app/pull/1",
            "pr_number": 1,
            "branch": "feature-x",
            "target_branch": "main",
            "changes": {"files_changed": 1, "insertions": 1, "deletions": 0},
        }
        # Pushed: the remote has the branch at the worktree's commit, by the author.
        path = Path(done["result"]["result"]["workspace"])
        head = git("rev-parse", "HEAD", cwd=path).strip()
        assert remote_head(bare, "feature-x") == head
        shown = git("log", "-1", "--format=%an <%ae>%n%B", "feature-x", cwd=bare)
        assert shown.startswith(f"Gateway Bot <bot@example.invalid>\n{title}\n\nAdds notes.")
        assert git("status", "--porcelain", cwd=path) == ""
        assert not marker.exists()
        # The forge was asked once, with exactly what was asked, and the token.
        assert pulls_posted(forge) == [
            {
                "title": title,
                "head": "feature-x",
                "base": "main",
                "body": "Adds notes.\n\n$(whoami)",
                "draft": True,
            }
        ]
        posted = next(r for r in forge.requests if r.method == "POST")
        assert posted.path == "/repos/owner/app/pulls"
        assert posted.headers["authorization"] == f"Bearer {TOKEN}"

        # Idempotent: the same pull request again, nothing more asked of the forge.
        again = await c.post(f"/job/{done['job_id']}/pull-request", json={"title": "Other"})
        assert again.status_code == 200, again.text
        assert again.json() == opened
        assert len(pulls_posted(forge)) == 1
        job = (await c.get(f"/job/{done['job_id']}")).json()
        assert job["pull_request"] == opened
        workspace = (await c.get(f"/workspaces/{done['workspace_id']}")).json()
        assert workspace["pull_request"] == opened

        # A follow-up works on in the worktree; its pull request is the same one,
        # with its new commit pushed to it.
        r = await c.post(f"/job/{done['job_id']}/instruct", json={"prompt": "more"})
        assert r.status_code == 202, r.text
        follow = await finished_job(c, r.json()["job_id"])
        assert follow["status"] == "succeeded", follow["last_error"]
        r = await c.post(f"/job/{follow['job_id']}/pull-request", json={"title": "More"})
        assert r.status_code == 200, r.text
        assert r.json()["pr_number"] == 1
        assert r.json()["changes"] == {"files_changed": 1, "insertions": 2, "deletions": 0}
        assert remote_head(bare, "feature-x") == git("rev-parse", "HEAD", cwd=path).strip()
        assert len(pulls_posted(forge)) == 1
        records = [
            (await c.get(f"/job/{job_id}?include=messages")).text
            for job_id in (done["job_id"], follow["job_id"])
        ]
        records.append((await c.get("/workspaces")).text)
    await d.stop()
    # The token went to git (askpass) and to the forge (a header), and nowhere else:
    # not the mirror's config, the worktree, the store, the records or the log.
    seen = [*records, "\n".join(d.stderr_lines())]
    for root in (tmp_path / "repos", tmp_path / "workspaces"):
        seen.extend(
            file.read_bytes().decode("utf-8", "replace")
            for file in root.rglob("*")
            if file.is_file() and not file.is_symlink()
        )
    seen.append(d.state_path.read_bytes().decode("utf-8", "replace"))
    assert any("feature-x" in text for text in seen)
    assert not [text for text in seen if TOKEN in text]


async def test_what_gets_no_pull_request(
    daemon: DaemonFactory, tmp_path: Path, forge: FakeForge
) -> None:
    bare = bare_remote(tmp_path)
    d = await start(daemon, bare, forge)
    async with api_client(d) as c:
        ask = {"title": "Propose"}
        ok = await finished_job(c, await write(c, "ok"))
        for bad, error in [
            ({}, "title must be a non-empty string"),
            ({"title": "  "}, "title must be a non-empty string"),
            ({"title": "two\nlines"}, "title must be one line"),
            ({"title": "x" * 300}, "title must be one line of at most 255"),
            ({"title": "t", "target_branch": "a..b"}, "target_branch"),
            ({"title": "t", "draft": "yes"}, "draft must be true or false"),
            ({"title": "t", "labels": []}, "unknown field 'labels'"),
        ]:
            r = await c.post(f"/job/{ok['job_id']}/pull-request", json=bad)
            assert r.status_code == 400, (bad, r.text)
            assert error in r.json()["error"], (bad, r.json())
        r = await c.post("/job/no-such-job/pull-request", json=ask)
        assert r.status_code == 404, r.text

        failed = await finished_job(c, await write(c, "broken", payload={"fail_once": True}))
        assert failed["status"] in ("failed", "dead")
        # No changes: echo leaves its worktree as it found it.
        r = await c.post(
            "/trigger/echo/poll", json={"workspace": {"repository": "app", "branch": "idle"}}
        )
        idle = await finished_job(c, r.json()["job_id"])
        assert idle["status"] == "succeeded", idle["last_error"]
        assert idle["changes"] == {"files_changed": 0, "insertions": 0, "deletions": 0}
        r = await c.post("/trigger/echo/poll", json={"workspace": True})
        plain = await finished_job(c, r.json()["job_id"])
        r = await c.post("/trigger/echo/poll", json={})
        bare_job = await finished_job(c, r.json()["job_id"])
        for job, reason in [
            (failed, "not_succeeded"),
            (idle, "no_changes"),
            (plain, "no_repository"),
            (bare_job, "no_repository"),
        ]:
            r = await c.post(f"/job/{job['job_id']}/pull-request", json=ask)
            assert r.status_code == 409, (reason, r.text)
            assert r.json()["reason"] == reason, r.json()
            assert r.json()["status"] == job["status"]
        assert plain["changes"] is None and bare_job["changes"] is None

        # A workspace a job of it still uses: its work is not finished.
        gate = tmp_path / "gate"
        busy = await write(c, "busy", payload={"line": "x", "gate": str(gate)})
        r = await c.post(f"/job/{busy}/pull-request", json=ask)
        assert r.status_code == 409 and r.json()["reason"] == "not_succeeded", r.text
        gate.touch()
        await finished_job(c, busy)
        # ... or a follow-up of it that runs in the workspace now.
        later = tmp_path / "later"
        r = await c.post(
            f"/job/{busy}/instruct",
            json={"prompt": "more", "payload": {"line": "y", "gate": str(later)}},
        )
        assert r.status_code == 202, r.text
        follow_up = r.json()["job_id"]
        r = await c.post(f"/job/{busy}/pull-request", json=ask)
        assert r.status_code == 409 and r.json()["reason"] == "in_use", r.text
        later.touch()
        await finished_job(c, follow_up)

        # The forge failing: a 502 with its words, never the token, and nothing kept;
        # asking again opens it.
        forge.fail_next(status=500, body={"message": f"internal error near {TOKEN}"})
        r = await c.post(f"/job/{ok['job_id']}/pull-request", json=ask)
        assert r.status_code == 502, r.text
        assert "GitHub answered 500" in r.json()["error"]
        assert TOKEN not in r.text
        assert remote_head(bare, "ok") is not None
        r = await c.post(f"/job/{ok['job_id']}/pull-request", json=ask)
        assert r.status_code == 200, r.text
        assert r.json()["pr_number"] == 1
    assert not [r for r in forge.requests if r.json and r.json.get("head") != "ok"]


async def test_an_automatic_pull_request_opens_on_success_only(
    daemon: DaemonFactory, tmp_path: Path, forge: FakeForge
) -> None:
    bare = bare_remote(tmp_path)
    d = await start(daemon, bare, forge)
    async with api_client(d) as c:
        auto = {"title": "Automatic", "body": "by the job"}
        done = await finished_job(c, await write(c, "auto-ok", pull_request=auto))
        assert done["status"] == "succeeded", done["last_error"]
        assert done["pull_request"] == {
            "pr_url": "https://github.com/owner/app/pull/1",
            "pr_number": 1,
            "branch": "auto-ok",
            "target_branch": "main",
            "changes": {"files_changed": 1, "insertions": 1, "deletions": 0},
        }
        assert remote_head(bare, "auto-ok") is not None

        failed = await finished_job(
            c, await write(c, "auto-failed", payload={"fail_once": True}, pull_request=auto)
        )
        assert failed["status"] in ("failed", "dead")
        assert failed["pull_request"] is None
        assert failed["changes"] == {"files_changed": 2, "insertions": 1, "deletions": 0}

        # Cancelled while it works: nothing is pushed, nobody is asked.
        gate = tmp_path / "gate"
        job_id = await write(
            c, "auto-cancelled", payload={"line": "x", "gate": str(gate)}, pull_request=auto
        )

        async def running() -> bool:
            return bool((await c.get(f"/job/{job_id}")).json()["status"] == "running")

        await wait_for(running)
        r = await c.post(f"/job/{job_id}/cancel")
        assert r.status_code in (200, 202), r.text
        cancelled = await finished_job(c, job_id)
        assert cancelled["status"] == "cancelled"
        assert cancelled["pull_request"] is None

        for bad, error in [
            ({"workspace": True, "pull_request": auto}, "pull_request needs a repository"),
            ({"pull_request": auto}, "pull_request needs a repository"),
        ]:
            r = await c.post("/trigger/scribe/write", json=bad)
            assert r.status_code == 400, r.text
            assert error in r.json()["error"]
        r = await c.post(
            "/trigger/scribe/write",
            json={"workspace": {"repository": "app", "branch": "b"}, "pull_request": {}},
        )
        assert r.status_code == 400 and "pull_request.title" in r.json()["error"], r.text
        gate.touch()
    assert remote_head(bare, "auto-failed") is None
    assert remote_head(bare, "auto-cancelled") is None
    assert [p["head"] for p in pulls_posted(forge)] == ["auto-ok"]


async def test_repositories_added_at_run_time_are_kept_synced_and_removed(
    daemon: DaemonFactory, tmp_path: Path, forge: FakeForge
) -> None:
    bare = bare_remote(tmp_path)
    extra = bare_remote(tmp_path, "extra")
    d = await start(daemon, bare, forge)
    entry = {"name": "extra", "url": str(extra), "token": "${secret:repo-token}"}
    async with api_client(d) as c:
        for bad, error in [
            (entry, "token: unknown secret 'repo-token'"),
            ({**entry, "token": TOKEN}, "token: must be a reference to a registered secret"),
            ({**entry, "url": "https://u:p@example.com/o/r.git"}, "url:"),
            ({**entry, "name": "../up"}, "name: invalid repository name"),
            ({**entry, "colour": "red"}, "colour: unknown key"),
            ({"url": str(extra)}, "name: required"),
        ]:
            r = await c.post("/repositories", json=bad)
            assert r.status_code == 400, (bad, r.text)
            assert error in r.json()["error"], (bad, r.json())
            assert TOKEN not in r.text
        r = await c.post("/secrets", json={"name": "repo-token", "value": TOKEN})
        assert r.status_code == 201, r.text
        r = await c.post("/repositories", json=entry)
        assert r.status_code == 201, r.text
        assert r.headers["Location"] == "/repositories/extra"
        assert r.json()["source"] == "api" and r.json()["last_sync_at"] is None
        r = await c.post("/repositories", json=entry)
        assert r.status_code == 409, r.text
        r = await c.post("/repositories", json={**entry, "name": "app"})
        assert r.status_code == 409 and "config" in r.json()["error"], r.text
        listed = (await c.get("/repositories")).json()["repositories"]
        assert [(x["name"], x["source"]) for x in listed] == [("app", "config"), ("extra", "api")]
        # The secret is in use: the registry says where.
        r = await c.delete("/secrets/repo-token")
        assert r.status_code == 409 and "repositories[extra].token" in r.text, r.text

        # A sync is a job to poll.
        r = await c.post("/repositories/extra/sync")
        assert r.status_code == 202, r.text
        assert r.json()["repository"] == "extra"
        assert r.headers["Location"] == f"/job/{r.json()['job_id']}"
        synced = await finished_job(c, r.json()["job_id"])
        assert synced["status"] == "succeeded", synced["last_error"]
        assert synced["plugin"] == "core.repository"
        assert synced["result"]["result"]["branches"] == 1
        shown = (await c.get("/repositories/extra")).json()
        assert shown["last_sync_at"] is not None and shown["mirror_bytes"] > 0

        # What the remote gained reaches the mirror with the next sync.
        seed = tmp_path / "extra-seed"
        git("push", "origin", "HEAD:refs/heads/second", cwd=seed)
        r = await c.post("/repositories/sync")
        assert r.status_code == 202, r.text
        syncs = r.json()["syncs"]
        assert [s["repository"] for s in syncs] == ["app", "extra"]
        results = {s["repository"]: await finished_job(c, s["job_id"]) for s in syncs}
        assert results["extra"]["result"]["result"]["branches"] == 2
        assert results["app"]["status"] == "succeeded", results["app"]["last_error"]
        assert (await c.post("/repositories/nope/sync")).status_code == 404

        # Usable by a trigger at once; not removable while a worktree of it lives.
        r = await c.post(
            "/trigger/scribe/write",
            json={"payload": {"line": "x"}, "workspace": {"repository": "extra", "branch": "w"}},
        )
        used = await finished_job(c, r.json()["job_id"])
        assert used["status"] == "succeeded", used["last_error"]
        r = await c.delete("/repositories/extra")
        assert r.status_code == 409 and "DELETE /workspaces" in r.json()["error"], r.text
        r = await c.delete("/repositories/app")
        assert r.status_code == 409 and "config" in r.json()["error"], r.text
    await d.stop()

    # Kept in the store: still there after a restart.
    d = await start(daemon, bare, forge)
    async with api_client(d) as c:
        assert (await c.get("/repositories/extra")).json()["source"] == "api"
        assert (await c.delete(f"/workspaces/{used['workspace_id']}")).status_code == 204
        assert (await c.delete("/repositories/extra")).status_code == 204
        assert (await c.get("/repositories/extra")).status_code == 404
        assert (await c.delete("/repositories/extra")).status_code == 404
        assert not (tmp_path / "repos" / "extra.git").exists()
        assert (await c.delete("/secrets/repo-token")).status_code == 204
    await d.stop()
    seen = ["\n".join(d.stderr_lines()), d.state_path.read_bytes().decode("utf-8", "replace")]
    assert not [text for text in seen if TOKEN in text]


async def test_a_sync_that_fails_says_why_without_the_token(
    daemon: DaemonFactory, tmp_path: Path, forge: FakeForge
) -> None:
    bare = bare_remote(tmp_path)
    away = {"url": "https://127.0.0.1:9/owner/away.git", "token": "${REPO_TOKEN}"}
    d = await daemon(config(bare, forge, repositories={"away": away}), env={"REPO_TOKEN": TOKEN})
    async with api_client(d) as c:
        r = await c.post("/repositories/away/sync")
        assert r.status_code == 202, r.text
        with trio.fail_after(60):
            failed = await finished_job(c, r.json()["job_id"])
        assert failed["status"] in ("failed", "dead")
        assert "could not fetch away" in failed["last_error"]
        assert failed["attempt"] == 1
        text = json.dumps(failed)
    assert TOKEN not in text
