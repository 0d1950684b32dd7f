"""SIGHUP does not stop the daemon: reloading is not supported yet, dying is worse."""

from __future__ import annotations

import signal

import httpx
import pytest
import trio
from conftest import DaemonFactory, wait_for

pytestmark = pytest.mark.e2e


async def test_sighup_while_a_job_runs_leaves_the_daemon_up(daemon: DaemonFactory) -> None:
    d = await daemon()
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as client:
        r = await client.post(
            "/trigger/echo/poll", json={"payload": {"mode": "slow", "seconds": 1}}
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]

        async def status_is(wanted: str) -> bool:
            job = (await client.get(f"/job/{job_id}")).json()
            return bool(job["status"] == wanted)

        await wait_for(lambda: status_is("running"))
        d.proc.send_signal(signal.SIGHUP)
        await wait_for(
            lambda: trio.to_thread.run_sync(
                lambda: any("SIGHUP received" in r.get("msg", "") for r in d.records())
            ),
            timeout=5,
        )
        await wait_for(lambda: status_is("succeeded"))
        health = await client.get("/healthz")
        assert health.status_code == 200, health.text
        assert d.proc.returncode is None
    assert await d.stop() == 0
