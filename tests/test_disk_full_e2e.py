"""A full disk under the real daemon: writes get 507, reads go on, nothing is lost.

The daemon's state lives on a 3 MiB tmpfs.  A filler file takes every free block;
the daemon must stay up, refuse triggers with 507 ``{"error": "disk full: ..."}``,
keep answering ``GET /job``, say ``degraded`` on ``/healthz`` and ``/ready``, and
hold the outcome of the job that was running.  Once the filler is deleted it must
resume by itself, and every job that got a 202 must exist and succeed.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import DaemonFactory, base_config, wait_for
from figures import record

from chamberlain.plugins.strays import find_job_processes

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TMPFS_SIZE = "3m"


def _mount_tmpfs(where: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount(8) on this machine")
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def _unmount(where: Path) -> None:
    # Lazy, so a daemon that a failing assertion left running cannot keep it busy.
    subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def fill(filler: Path) -> int:
    """Append to ``filler`` until the disk refuses a byte more; its size."""
    fd = os.open(filler, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        for chunk in (65536, 4096, 512, 1):
            try:
                while os.write(fd, b"\0" * chunk):
                    pass
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return filler.stat().st_size


async def test_a_full_disk_refuses_writes_and_recovers(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    mnt = tmp_path / "small"
    _mount_tmpfs(mnt)
    try:
        await _scenario(daemon, tmp_path, mnt)
    finally:
        _unmount(mnt)


async def _scenario(daemon: DaemonFactory, tmp_path: Path, mnt: Path) -> None:
    config = base_config(tmp_path)
    config["state"]["path"] = str(mnt / "state.db")
    d = await daemon(config=config)
    filler = mnt / "filler"
    accepted: set[str] = set()
    refusals = 0
    payload: dict[str, Any] = {"message": "x" * 512}
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers(), timeout=10) as client:

        async def trigger(body: dict[str, Any]) -> httpx.Response:
            nonlocal refusals
            r = await client.post("/trigger/echo/handle", json={"payload": body})
            assert r.status_code in (202, 507), r.text
            if r.status_code == 202:
                accepted.add(r.json()["job_id"])
            else:
                refusals += 1
            return r

        async def status_of(job_id: str) -> str:
            r = await client.get(f"/job/{job_id}")
            assert r.status_code == 200, r.text
            return str(r.json()["status"])

        earlier = (await trigger(payload)).json()["job_id"]
        await wait_for(lambda: _is(status_of(earlier), "succeeded"))
        # Running while the disk fills: its outcome must wait for space, not vanish.
        running = (await trigger({"mode": "slow", "seconds": 2})).json()["job_id"]
        await wait_for(lambda: _is(status_of(running), "running"))

        filled = await trio.to_thread.run_sync(fill, filler)

        async def refused() -> httpx.Response | None:
            # Freed WAL blocks are taken back, so the disk stays full.
            await trio.to_thread.run_sync(fill, filler)
            r = await trigger(payload)
            return r if r.status_code == 507 else None

        refusal = await wait_for(refused, timeout=20)
        assert refusal.json()["error"].startswith("disk full: "), refusal.text
        assert "SQLITE_FULL" in refusal.json()["error"]

        async def degraded() -> dict[str, Any] | None:
            await trio.to_thread.run_sync(fill, filler)
            r = await client.get("/healthz")
            assert r.status_code == 200, r.text
            return r.json() if r.json()["status"] == "degraded" else None

        health = await wait_for(degraded, timeout=20)
        assert "SQLITE_FULL" in health["degraded"]
        ready = await client.get("/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["status"] == "degraded"
        # Reads go on: an earlier job, and the list of jobs.
        assert await status_of(earlier) == "succeeded"
        listed = await client.get("/jobs")
        assert listed.status_code == 200, listed.text
        # The running job's plugin answers while the disk is full: its outcome is
        # held (still "running" in the store), neither lost nor a crash.
        await wait_for(
            lambda: trio.to_thread.run_sync(lambda: not find_job_processes([running])),
            timeout=20,
        )
        assert await status_of(running) == "running"
        assert d.proc.returncode is None, "\n".join(d.lines[-30:])
        assert (await trigger(payload)).status_code == 507

        filler.unlink()
        started = trio.current_time()

        async def recovered() -> bool:
            r = await client.post("/trigger/echo/handle", json={"payload": payload})
            if r.status_code == 202:
                accepted.add(r.json()["job_id"])
            return r.status_code == 202

        await wait_for(recovered, timeout=20)
        await wait_for(lambda: _health_is(client, "ok"), timeout=20)
        resumed_after = trio.current_time() - started
        assert (await client.get("/ready")).status_code == 200
        for _ in range(5):
            await trigger(payload)

        async def all_succeeded() -> bool:
            statuses = [await status_of(job_id) for job_id in sorted(accepted)]
            return all(s == "succeeded" for s in statuses)

        await wait_for(all_succeeded, timeout=30)
        assert running in accepted
    assert d.proc.returncode is None
    assert await d.stop() == 0
    record(
        "disk_full",
        tmpfs=TMPFS_SIZE,
        filler_bytes=filled,
        jobs_accepted=len(accepted),
        triggers_refused_507=refusals,
        jobs_lost=0,
        resumed_after_seconds=round(resumed_after, 2),
    )


async def _is(value: Any, expected: str) -> bool:
    return bool(await value == expected)


async def _health_is(client: httpx.AsyncClient, expected: str) -> bool:
    r = await client.get("/healthz")
    return r.status_code == 200 and r.json()["status"] == expected
