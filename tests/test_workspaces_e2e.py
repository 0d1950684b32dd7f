"""Kept workspaces end to end: the real daemon, the bash ``scribe`` plugin, HTTP.

``tests/e2e_plugins/scribe`` appends ``payload.line`` to ``notes.txt`` in its
workspace and answers with every line there, so each test sees what the runs
before left behind.  Waits poll with a deadline.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import (
    BUNDLED_PLUGINS,
    DaemonFactory,
    api_client,
    deep_merge,
    finished_job,
    wait_for,
)

pytestmark = pytest.mark.e2e

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"


def config(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "plugin_roots": [str(BUNDLED_PLUGINS), str(E2E_PLUGINS)],
        "plugins": {"scribe": {"retry": {"backoff_base": "100ms"}}},
    }
    return deep_merge(base, extra)


async def write(c: httpx.AsyncClient, line: str, **body: Any) -> str:
    payload = {"line": line, **body.pop("payload", {})}
    r = await c.post("/trigger/scribe/write", json={"payload": payload, "workspace": True, **body})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["job_id"]
    return job_id


async def test_a_workspace_outlives_its_job_and_is_shared_by_retries_and_follow_ups(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(config())
    root = tmp_path / "workspaces"
    async with api_client(d) as c:
        first = await finished_job(c, await write(c, "one", payload={"fail_once": True}))
        assert first["status"] == "succeeded", first["last_error"]
        # Attempt 1 failed after writing; attempt 2 ran in the same directory.
        assert first["attempt"] == 2
        result = first["result"]["result"]
        assert result["notes"] == ["one", "one"]
        workspace_id = first["workspace_id"]
        path = root / workspace_id
        assert result["workspace"] == result["context_workspace"] == str(path)
        # The plugin's own directory stays its working directory.
        assert result["cwd"] == str(E2E_PLUGINS / "scribe")
        assert (path / "notes.txt").read_text() == "one\none\n"
        assert os.stat(path).st_mode & 0o777 == 0o700

        r = await c.post(f"/job/{first['job_id']}/instruct", json={"prompt": "more"})
        assert r.status_code == 202, r.text
        follow = await finished_job(c, r.json()["job_id"])
        assert follow["workspace_id"] == workspace_id
        assert follow["result"]["result"]["notes"] == ["one", "one", "one"]

        r = await c.get(f"/workspaces/{workspace_id}")
        assert r.status_code == 200, r.text
        shown = r.json()
        assert shown["job_ids"] == [first["job_id"], follow["job_id"]]
        assert shown["path"] == str(path) and shown["in_use"] is False
        assert shown["size_bytes"] >= len("one\none\none\n")
        listed = (await c.get("/workspaces")).json()["workspaces"]
        assert [w["id"] for w in listed] == [workspace_id]

        other = await finished_job(c, await write(c, "two"))
        assert other["workspace_id"] != workspace_id
        assert other["result"]["result"]["notes"] == ["two"]
        # A retry is a new job with the same inputs: a new, empty workspace.
        r = await c.post(f"/job/{other['job_id']}/retry")
        assert r.status_code == 202, r.text
        retried = await finished_job(c, r.json()["job_id"])
        assert retried["workspace_id"] not in (None, other["workspace_id"])
        assert retried["result"]["result"]["notes"] == ["two"]


async def test_a_loop_s_iterations_share_its_workspace(daemon: DaemonFactory) -> None:
    d = await daemon(config())
    async with api_client(d) as c:
        done = await finished_job(
            c, await write(c, "again", loop={"max_iterations": 3, "completion_token": "DONE"})
        )
    assert done["completion_reason"] == "max_iterations"
    lines = [summary["output_summary"] for summary in done["result"]["loop"]["iterations"]]
    assert '"notes":["again","again","again"]' in lines[-1]


async def test_a_workspace_in_use_is_not_deleted_and_one_done_with_is(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    d = await daemon(config())
    async with api_client(d) as c:
        job_id = await write(c, "held", payload={"gate": str(gate)})

        async def running() -> dict[str, Any] | None:
            job: dict[str, Any] = (await c.get(f"/job/{job_id}")).json()
            return job if job["status"] == "running" else None

        job = await wait_for(running)
        workspace_id = job["workspace_id"]
        r = await c.delete(f"/workspaces/{workspace_id}")
        assert r.status_code == 409, r.text
        assert job_id in r.json()["error"]
        await trio.Path(gate).touch()
        await finished_job(c, job_id)
        r = await c.delete(f"/workspaces/{workspace_id}")
        assert r.status_code == 204, r.text
        assert not (tmp_path / "workspaces" / workspace_id).exists()
        assert (await c.get(f"/workspaces/{workspace_id}")).status_code == 404
        # ("/workspaces/.." itself never reaches a workspace route: clients remove the
        # dot segment, RFC 3986 5.2.4, and ask for "/"; its encoded form does reach it.)
        for bad in ("%2e%2e", "not-a-uuid", f"{workspace_id}%2f.."):
            r = await c.get(f"/workspaces/{bad}")
            assert r.status_code == 404, (bad, r.text)
            r = await c.delete(f"/workspaces/{bad}")
            assert r.status_code == 404, (bad, r.text)


async def test_a_link_put_in_a_workspace_s_place_is_removed_not_followed(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(config())
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("do not delete")
    async with api_client(d) as c:
        done = await finished_job(c, await write(c, "x"))
        path = tmp_path / "workspaces" / done["workspace_id"]
        for entry in path.iterdir():
            entry.unlink()
        path.rmdir()
        path.symlink_to(precious)
        r = await c.delete(f"/workspaces/{done['workspace_id']}")
        assert r.status_code == 204, r.text
    assert not path.is_symlink()
    assert (precious / "keep.txt").read_text() == "do not delete"


async def test_workspaces_expire_after_their_ttl(daemon: DaemonFactory, tmp_path: Path) -> None:
    cfg = config(workspaces={"ttl": "1h"})
    d = await daemon(cfg)
    async with api_client(d) as c:
        old = await finished_job(c, await write(c, "old"))
        fresh = await finished_job(c, await write(c, "fresh"))
    assert await d.stop() == 0
    # The first was last used two hours ago.
    with sqlite3.connect(d.state_path) as db:
        db.execute(
            "UPDATE workspaces SET last_used_at = last_used_at - 7200 WHERE id = ?",
            (old["workspace_id"],),
        )
    again = await daemon(cfg)
    root = tmp_path / "workspaces"
    async with api_client(again) as c:

        async def expired() -> bool:
            return (await c.get(f"/workspaces/{old['workspace_id']}")).status_code == 404

        await wait_for(expired)
        assert (await c.get(f"/workspaces/{fresh['workspace_id']}")).status_code == 200
    assert not (root / old["workspace_id"]).exists()
    assert (root / fresh["workspace_id"] / "notes.txt").exists()


async def test_a_spent_disk_budget_refuses_new_workspaces(daemon: DaemonFactory) -> None:
    d = await daemon(config(workspaces={"max_bytes": 4}))
    async with api_client(d) as c:
        first = await finished_job(c, await write(c, "a line longer than four bytes"))
        r = await c.post(
            "/trigger/scribe/write", json={"payload": {"line": "x"}, "workspace": True}
        )
        assert r.status_code == 507, r.text
        assert "workspaces.max_bytes" in r.json()["error"]
        assert r.headers["retry-after"] == "60"
        # A job of an existing workspace (a follow-up) is not a new one.
        r = await c.post(f"/job/{first['job_id']}/instruct", json={"prompt": "go on"})
        assert r.status_code == 202, r.text
        r = await c.post(
            "/trigger/scribe/write", json={"workspace": {"repository": "app", "branch": "b"}}
        )
        assert r.status_code == 400 and "unknown repository 'app'" in r.json()["error"]
