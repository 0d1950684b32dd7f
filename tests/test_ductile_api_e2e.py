"""Ductile's clients against the real daemon: the HTTP calls they make, as they make them.

Ductile's CLI reaches these routes through ``ductile api <endpoint>``
(``cmd/ductile/api.go``): a GET with ``Authorization: Bearer <token>`` and no
body.  Its skill file (``skills/ductile/references/api.md``) shows the
``/job-logs`` query used here.  Each test asserts the fields those clients read.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import httpx
import pytest
from conftest import DaemonFactory, DaemonProcess, wait_for

pytestmark = pytest.mark.e2e

BROKEN = {
    "plugins": {
        "echo": {
            "schedules": [
                {"id": "broken", "command": "handle", "every": "1s", "payload": {"mode": "fatal"}},
                {"id": "later", "cron": "0 3 * * *", "timezone": "Europe/Berlin"},
            ],
            "circuit_breaker": {"threshold": 2, "reset_after": "1h"},
        }
    }
}


async def ductile_api(d: DaemonProcess, endpoint: str, token: str | None) -> Any:
    """``ductile api <endpoint>``: GET, a bearer token when it has one, no body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=d.base_url, timeout=10.0) as c:
        r = await c.get(endpoint, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_ductile_clients_read_health_schedules_and_job_logs(
    daemon: DaemonFactory,
) -> None:
    d = await daemon(BROKEN)

    async def circuit_open() -> dict[str, Any] | None:
        health: dict[str, Any] = await ductile_api(d, "/healthz", None)
        return health if health["plugins_circuit_open"] == 1 else None

    health = await wait_for(circuit_open, timeout=30)
    assert health["status"] == "ok"
    assert health["version"] == metadata.version("chamberlain")
    assert health["plugins_loaded"] >= 1
    assert isinstance(health["queue_depth"], int)

    body = await ductile_api(d, "/scheduler/jobs", "jobsro-token")
    rows = {row["schedule_id"]: row for row in body["jobs"]}
    assert rows["broken"]["plugin"] == "echo"
    assert (rows["broken"]["command"], rows["broken"]["mode"]) == ("handle", "every")
    assert (rows["later"]["command"], rows["later"]["mode"]) == ("poll", "cron")
    assert rows["later"]["timezone"] == "Europe/Berlin"
    assert rows["later"]["next_run_at"].endswith("Z")
    assert {row["status"] for row in body["jobs"]} == {"scheduled"}

    logs = await ductile_api(
        d,
        "/job-logs?plugin=echo&status=failed&from=2026-01-01T00:00:00Z&limit=50",
        "jobsro-token",
    )
    assert logs["total"] >= 2
    for row in logs["logs"]:
        assert row["status"] == "failed"
        assert (row["plugin"], row["command"], row["submitted_by"]) == (
            "echo",
            "handle",
            "scheduler",
        )
        assert row["log_id"] == f"{row['job_id']}-{row['attempt']}"
        assert row["last_error"]
        assert "result" not in row


async def test_job_logs_of_one_job_with_its_result(daemon: DaemonFactory) -> None:
    d = await daemon()
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers("rw-token")) as c:
        r = await c.post("/trigger/echo/poll", json={"payload": {"n": 1}})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    async def logged() -> dict[str, Any] | None:
        body: dict[str, Any] = await ductile_api(
            d, f"/job-logs?job_id={job_id}&include_result=true", "jobsro-token"
        )
        return body if body["logs"] else None

    body = await wait_for(logged, timeout=20)
    (row,) = body["logs"]
    assert (row["job_id"], row["status"], body["total"]) == (job_id, "succeeded", 1)
    assert row["result"]["status"] == "ok"
    assert row["completed_at"] >= row["created_at"]
