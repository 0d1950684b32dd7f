"""Plugin answers the daemon cannot keep, on the real daemon with a real plugin process.

A response holding a lone surrogate (the JSON escape ``\\ud800``), or nested past
the documented depth limit, is an invalid response: that attempt fails with an
error saying what and where, while another job of the same plugin, running at the
same time, goes on untouched and the plugin's Runner is never restarted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import BUNDLED_PLUGINS, DaemonFactory, wait_for

from chamberlain.plugins.protocol import MAX_RESPONSE_DEPTH

pytestmark = pytest.mark.e2e

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"


async def test_a_response_the_daemon_cannot_keep_fails_that_job_alone(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(
        {
            "plugin_roots": [str(BUNDLED_PLUGINS), str(E2E_PLUGINS)],
            "plugins": {"oddjson": {"parallelism": 4}},
        }
    )
    release = tmp_path / "release"
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as client:

        async def trigger(payload: dict[str, Any]) -> str:
            r = await client.post(
                "/trigger/oddjson/poll", json={"payload": payload, "max_attempts": 1}
            )
            assert r.status_code == 202, r.text
            job_id: str = r.json()["job_id"]
            return job_id

        async def job(job_id: str) -> dict[str, Any]:
            r = await client.get(f"/job/{job_id}")
            assert r.status_code == 200, r.text
            found: dict[str, Any] = r.json()
            return found

        async def settled(job_id: str) -> dict[str, Any]:
            async def check() -> dict[str, Any] | None:
                found = await job(job_id)
                return found if found["status"] not in ("queued", "running") else None

            found: dict[str, Any] = await wait_for(check)
            return found

        bystander = await trigger({"wait_for": str(release)})

        async def bystander_running() -> bool:
            return bool((await job(bystander))["status"] == "running")

        await wait_for(bystander_running)

        surrogate = await settled(await trigger({"surrogate": True}))
        assert surrogate["status"] == "dead", surrogate
        assert "lone surrogate (U+D800) at result.x" in surrogate["last_error"]
        # The invalid output is kept for diagnosis, as the JSON text it was.
        assert "\\ud800" in surrogate["result"]

        # The envelope is level 1, so a result of MAX - 1 levels is just within the limit.
        within = await settled(await trigger({"deep": MAX_RESPONSE_DEPTH - 1}))
        assert within["status"] == "succeeded", within
        for depth in (MAX_RESPONSE_DEPTH, 5000):
            deep = await settled(await trigger({"deep": depth}))
            assert deep["status"] == "dead", deep
            assert f"nested more than {MAX_RESPONSE_DEPTH} levels" in deep["last_error"]
            assert "RecursionError" not in deep["last_error"]

        # The bystander ran all along, in its first and only attempt.
        assert (await job(bystander))["status"] == "running"
        release.touch()
        done = await settled(bystander)
        assert (done["status"], done["attempt"]) == ("succeeded", 1), done
        assert done["result"]["result"] == {"job_id": bystander}

        health = (await client.get("/healthz")).json()
        assert health["restarts_total"] == 0, health
    assert not any("interrupted" in line for line in d.stderr_lines())
