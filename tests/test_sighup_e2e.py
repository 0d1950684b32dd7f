"""SIGHUP reloads the configuration in place: the daemon, and the job it runs, carry on.

What a reload changes is tested in test_reload_e2e.py; this is the signal itself.
"""

from __future__ import annotations

import signal

import httpx
import pytest
import trio
from conftest import DaemonFactory, wait_for

pytestmark = pytest.mark.e2e


async def test_sighup_while_a_job_runs_reloads_and_the_job_finishes(daemon: DaemonFactory) -> None:
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
                lambda: any(
                    r.get("msg", "").startswith("configuration reloaded") for r in d.records()
                )
            ),
            timeout=5,
        )
        await wait_for(lambda: status_is("succeeded"))
        health = await client.get("/healthz")
        assert health.status_code == 200, health.text
        assert health.json()["config_hash"].startswith("sha256:")
        assert d.proc.returncode is None
    assert await d.stop() == 0
