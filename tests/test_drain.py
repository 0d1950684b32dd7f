"""SIGTERM under load, as systemd sends it: drain, terminate what will not finish, exit 0.

The daemon is full (every worker busy, more jobs queued) when SIGTERM arrives.  From
that moment ``/ready`` answers 503 and triggers are refused, jobs that can finish
within ``service.shutdown_grace`` do, and the rest have their process groups
terminated (SIGTERM, then SIGKILL for a plugin that ignores it) and go back to the
queue with the interrupted attempt given back.  The daemon exits 0 with no plugin
process left anywhere, and the next start runs what was put back.
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import procfs
import pytest
import trio
from conftest import DaemonFactory, DaemonProcess, base_config, wait_for
from figures import record

from chamberlain.plugins.strays import find_job_processes

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHAOS_PLUGINS = Path(__file__).resolve().parent / "chaos_plugins"
GRACE = 2.0
KILL_GRACE = 5.0  # Limits.kill_grace: SIGTERM to SIGKILL


def drain_config(tmp_path: Path, *, hang_timeout: str) -> dict[str, Any]:
    config = base_config(tmp_path)
    config["service"].update({"max_workers": 5, "shutdown_grace": f"{GRACE:g}s"})
    config["plugin_roots"] = [str(CHAOS_PLUGINS)]
    config["plugins"] = {
        "healthy": {},
        # Not retried: each timeout ends its job, so the restart settles at once.
        "trapping_child": {"timeouts": {"poll": hang_timeout}, "retry": {"on_timeout": False}},
        "ignore_term": {"timeouts": {"poll": hang_timeout}, "retry": {"on_timeout": False}},
    }
    for plugin in config["plugins"].values():
        # The plugins leave their marks where the daemon's $CHAOS_MARKS says.
        plugin["env_passthrough"] = ["CHAOS_MARKS"]
    return config


def rows(state: Path, ids: list[str]) -> dict[str, tuple[str, int, str | None]]:
    conn = sqlite3.connect(state)
    try:
        marks = ",".join("?" * len(ids))
        found = conn.execute(
            f"SELECT id, status, attempt, last_error FROM jobs WHERE id IN ({marks})", ids
        ).fetchall()
    finally:
        conn.close()
    return {r[0]: (r[1], r[2], r[3]) for r in found}


async def test_sigterm_under_load_drains_then_exits_zero_leaving_no_process(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {"CHAOS_MARKS": str(marks)}
    d: DaemonProcess = await daemon(config=drain_config(tmp_path, hang_timeout="10m"), env=env)
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers(), timeout=10) as client:

        async def trigger(plugin: str, payload: dict[str, Any]) -> str:
            r = await client.post(f"/trigger/{plugin}/poll", json={"payload": payload})
            assert r.status_code == 202, r.text
            job_id: str = r.json()["job_id"]
            return job_id

        async def running() -> bool:
            r = await client.get("/jobs", params={"status": "running", "limit": 1})
            return bool(r.json()["total"] == 5)

        # Five workers, five jobs: two finish within the grace, three will not.
        short = [await trigger("healthy", {"sleep": 1.0}) for _ in range(2)]
        long = await trigger("healthy", {"sleep_once": 600})
        trapping = await trigger("trapping_child", {})
        stubborn = await trigger("ignore_term", {})
        await wait_for(running, timeout=20)
        queued = [await trigger("healthy", {"n": n}) for n in range(10)]

        d.proc.send_signal(signal.SIGTERM)
        began = trio.current_time()

        async def refusing() -> bool:
            return (await client.get("/ready")).status_code == 503

        await wait_for(refusing, timeout=1, interval=0.01)
        ready_503_after = trio.current_time() - began
        r = await client.post("/trigger/healthy/poll", json={})
        assert r.status_code == 503, r.text
        assert "draining" in r.json()["error"]
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "draining"

    assert await d.wait(timeout=GRACE + KILL_GRACE + 10) == 0
    took = trio.current_time() - began
    assert took < GRACE + KILL_GRACE + 3, took

    interrupted = [long, trapping, stubborn]
    everyone = short + interrupted + queued

    def nothing_left() -> bool:
        pids = procfs.survivors(m.pid for m in procfs.read_marks(marks))
        return not pids and not find_job_processes(everyone)

    await wait_for(lambda: trio.to_thread.run_sync(nothing_left), timeout=5)

    state = rows(d.state_path, everyone)
    assert all(state[j][0] == "succeeded" for j in short), state
    for job_id in interrupted:
        assert state[job_id] == ("queued", 0, "interrupted by shutdown"), state[job_id]
    assert all(state[j][:2] == ("queued", 0) for j in queued), state
    with sqlite3.connect(d.state_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    assert any("shutdown grace of" in line for line in d.lines)

    # The next start runs everything that was put back.
    again = await daemon(config=drain_config(tmp_path, hang_timeout="1s"), env=env)
    async with httpx.AsyncClient(
        base_url=again.base_url, headers=again.headers(), timeout=10
    ) as client:

        async def finished() -> bool:
            r = await client.get("/jobs", params={"status": "queued,running", "limit": 1})
            return bool(r.json()["total"] == 0)

        await wait_for(finished, timeout=30)
    state = rows(again.state_path, everyone)
    assert all(state[j][0] == "succeeded" for j in [*short, long, *queued]), state
    assert state[long][1] == 1  # the interrupted attempt did not count
    assert state[trapping][0] == state[stubborn][0] == "timed_out"
    assert await again.stop() == 0
    record(
        "test_drain::test_sigterm_under_load_drains_then_exits_zero_leaving_no_process",
        jobs=len(everyone),
        running_at_sigterm=5,
        queued_at_sigterm=len(queued),
        finished_in_grace=len(short),
        terminated_and_requeued=len(interrupted),
        ready_503_after_s=round(ready_503_after, 3),
        exit_after_s=round(took, 2),
        exit_code=0,
        lost=0,
    )
