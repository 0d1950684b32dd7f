"""``POST /jobs`` end to end: the real daemon, the bundled echo plugin, real SQLite.

What only the real daemon can show: the ids in a 202 are on disk (they survive a
SIGKILL the moment the answer arrives), every job of the batch then runs, and a
refused batch leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from conftest import DaemonFactory, DaemonProcess, wait_for

pytestmark = pytest.mark.e2e


def client(d: DaemonProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=d.base_url, headers=d.headers(), timeout=10.0)


async def all_jobs(d: DaemonProcess) -> dict[str, dict[str, Any]]:
    async with client(d) as c:
        r = await c.get("/jobs", params={"limit": 500, "detail": "full"})
    assert r.status_code == 200, r.text
    return {job["job_id"]: job for job in r.json()["jobs"]}


async def test_a_batch_is_durable_at_202_and_every_job_runs(daemon: DaemonFactory) -> None:
    # max_workers 1 keeps most of the batch queued when the daemon is killed.
    d = await daemon({"service": {"max_workers": 1}})
    jobs = [{"plugin": "echo", "command": "poll", "payload": {"n": n}} for n in range(40)]
    jobs[7] = {"plugin": "echo", "command": "handle", "payload": {"n": 7}}
    async with client(d) as c:
        r = await c.post("/jobs", json={"jobs": jobs})
    assert r.status_code == 202, r.text
    d.kill()
    await d.wait()

    accepted = r.json()["jobs"]
    assert [(a["plugin"], a["command"], a["status"]) for a in accepted] == [
        ("echo", j["command"], "queued") for j in jobs
    ]
    ids = [a["job_id"] for a in accepted]

    # A new daemon on the same store finds every job and runs it.
    again = await daemon({"service": {"max_workers": 1}, "state": {"path": str(d.state_path)}})
    stored = await all_jobs(again)
    assert set(ids) <= set(stored)

    async def finished() -> dict[str, dict[str, Any]] | None:
        now = await all_jobs(again)
        done = all(now[i]["status"] not in ("queued", "running") for i in ids)
        return now if done else None

    final = await wait_for(finished, timeout=60)
    for n, job_id in enumerate(ids):
        job = final[job_id]
        assert job["status"] == "succeeded", job
        assert job["payload"] == {"n": n}
        assert job["submitted_by"] == "api_key"
    handled = final[ids[7]]
    assert handled["event"]["type"] == "api.trigger"
    assert handled["result"]["result"]["request"]["event"]["payload"] == {
        "n": 7,
        "ductile_plugin": "echo",  # the request context, merged in as by Ductile
    }


async def test_a_refused_batch_stores_nothing(daemon: DaemonFactory) -> None:
    d = await daemon()
    jobs: list[dict[str, Any]] = [{"plugin": "echo", "command": "poll"} for _ in range(5)]
    jobs[4]["max_attempts"] = 0
    async with client(d) as c:
        r = await c.post("/jobs", json={"jobs": jobs})
        assert r.status_code == 400
        assert r.json()["error"].startswith("jobs[4].max_attempts")
        listed = await c.get("/jobs")
    assert listed.json()["total"] == 0


async def test_duplicates_within_one_batch_resolve_to_the_first(daemon: DaemonFactory) -> None:
    d = await daemon()
    job = {"plugin": "echo", "command": "poll", "dedupe_key": "once"}
    async with client(d) as c:
        r = await c.post("/jobs", json={"jobs": [job, job]})
    assert r.status_code == 202, r.text
    first, second = r.json()["jobs"]
    assert "duplicate" not in first
    assert second["duplicate"] is True
    assert second["job_id"] == first["job_id"]
    assert set(await all_jobs(d)) == {first["job_id"]}
