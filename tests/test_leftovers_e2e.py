"""No process outlives its job, even one that left its process group (``setsid``).

The real daemon as a subprocess runs ``tests/e2e_plugins/escaper``, which answers ok
at once and leaves two sleepers behind: one in its process group and one escapee in
a session of its own, its pipes closed.  The test looks at ``/proc``, not at the
daemon's word: the escapees die soon after their jobs succeed, no zombie is left
among the daemon's children, and escapees that a SIGKILLed daemon left behind die
at its next start, while those of another live daemon are left alone.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import procfs
import pytest
import trio
from conftest import BUNDLED_PLUGINS, DaemonFactory, DaemonProcess, base_config, wait_for
from figures import record

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not procfs.PROC.is_dir(), reason="needs /proc (Linux)"),
]

JOBS = 4


def escaper_config(tmp_path: Path, state: str = "state.db", **service: Any) -> dict[str, Any]:
    cfg = base_config(tmp_path)
    cfg["plugin_roots"] = [str(BUNDLED_PLUGINS), str(E2E_PLUGINS)]
    cfg["state"] = {"path": str(tmp_path / state)}
    cfg["service"] = {**cfg["service"], **service}
    return cfg


async def run_escapers(d: DaemonProcess, marks: Path, n: int) -> dict[str, tuple[int, int]]:
    """Run ``n`` escaper jobs to success: job id -> (in-group pid, escapee pid)."""
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as client:
        ids = []
        for _ in range(n):
            r = await client.post("/trigger/escaper/poll", json={"payload": {"dir": str(marks)}})
            assert r.status_code == 202, r.text
            ids.append(r.json()["job_id"])

        async def all_succeeded() -> bool:
            for job_id in ids:
                job = (await client.get(f"/job/{job_id}")).json()
                assert job["status"] in ("queued", "running", "succeeded"), job
                if job["status"] != "succeeded":
                    return False
            return True

        await wait_for(all_succeeded, timeout=30)
    return {
        j: (
            int((marks / f"{j}.group").read_text()),
            int((marks / f"{j}.escapee").read_text()),
        )
        for j in ids
    }


async def test_escapees_of_succeeded_jobs_are_killed_and_reaped(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    d = await daemon(config=escaper_config(tmp_path))
    began = trio.current_time()
    pids = await run_escapers(d, marks, JOBS)
    succeeded = trio.current_time()
    everyone = [pid for pair in pids.values() for pid in pair]

    def gone() -> bool:
        # Dead, and not left as a zombie child of the daemon (which adopted them).
        ours = {s.pid for s in procfs.children(d.proc.pid)}
        return not procfs.survivors(everyone) and not ours & set(everyone)

    await wait_for(lambda: trio.to_thread.run_sync(gone), timeout=10)
    took = trio.current_time() - succeeded
    assert not procfs.zombies(d.proc.pid)
    killed = [r for r in d.records() if "left over from a previous run" in r.get("msg", "")]
    assert {r["pid"] for r in killed} >= {escapee for _, escapee in pids.values()}
    assert d.proc.returncode is None
    record(
        "test_leftovers_e2e::test_escapees_of_succeeded_jobs_are_killed_and_reaped",
        jobs=JOBS,
        escapees=JOBS,
        escapees_alive_after=0,
        seconds_to_gone_after_success=round(took, 2),
        seconds_total=round(trio.current_time() - began, 2),
        zombies=0,
    )


async def test_escapees_of_a_sigkilled_daemon_die_at_its_next_start(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    # A sweep that never comes in time: the escapees live until the daemon dies.
    first = await daemon(config=escaper_config(tmp_path, sweep_interval="1h"))
    pids = await run_escapers(first, marks, JOBS)
    escapees = [escapee for _, escapee in pids.values()]
    assert procfs.survivors(escapees) == sorted(escapees)
    # Adopted: their parent died, and the daemon, a subreaper, took them in.
    await wait_for(
        lambda: trio.to_thread.run_sync(
            lambda: all(
                (st := procfs.stat(p)) is not None and st.ppid == first.proc.pid for p in escapees
            )
        ),
        timeout=5,
    )

    # Another daemon, on another state, starting meanwhile leaves them alone: their
    # daemon is alive.
    other = await daemon(config=escaper_config(tmp_path, state="other.db"))
    assert procfs.survivors(escapees) == sorted(escapees)
    assert await other.stop() == 0

    first.kill()
    assert await first.wait() == -signal.SIGKILL
    assert procfs.survivors(escapees) == sorted(escapees)

    again = await daemon(config=escaper_config(tmp_path))
    await wait_for(
        lambda: trio.to_thread.run_sync(lambda: not procfs.survivors(escapees)), timeout=10
    )
    killed = {r["pid"] for r in again.records() if "left over" in r.get("msg", "")}
    assert killed >= set(escapees)
    assert await again.stop() == 0
    record(
        "test_leftovers_e2e::test_escapees_of_a_sigkilled_daemon_die_at_its_next_start",
        jobs=JOBS,
        escapees_alive_at_sigkill=len(escapees),
        spared_by_another_live_daemon=len(escapees),
        killed_at_next_start=len(killed & set(escapees)),
        survivors=0,
    )
