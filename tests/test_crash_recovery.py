"""kill -9 at random moments: no job that got a 202 is ever lost.

A loop starts the real daemon, loads it with jobs over HTTP and kills it with
SIGKILL at a moment drawn from four phases:

``enqueue``   while triggers are in flight;
``dispatch``  the instant a trigger is acknowledged (the job is being claimed);
``run``       while plugin processes run;
``result``    the instant a plugin has answered (the daemon is reading and recording it).

After every kill the database must pass ``PRAGMA integrity_check``.  A last start
then runs whatever is left, and every job that was acknowledged must have
succeeded; a job whose plugin answered ok more than once must show that recovery
re-ran it (attempt > 1): nothing succeeds twice behind the books' back.

The loop is bounded for CI; ``bench/soak_crash.py`` runs the same loop for longer.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import httpx
import procfs
import pytest
import trio
from conftest import DaemonFactory, DaemonProcess, base_config, wait_for
from figures import record

from chamberlain.plugins.strays import find_job_processes

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    # A daemon killed mid-request leaves httpx's request-body generator unfinished;
    # that is the client's bookkeeping, not something the daemon did.
    pytest.mark.filterwarnings(
        "ignore:Async generator 'httpx._content.ByteStream.__aiter__':ResourceWarning"
    ),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <async_generator object ByteStream.__aiter__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]

CHAOS_PLUGINS = Path(__file__).resolve().parent / "chaos_plugins"
PHASES = ("enqueue", "dispatch", "run", "result")
#: Cycles in CI; the soak in bench/ takes its own count.
CYCLES = int(os.environ.get("CHAMBERLAIN_CRASH_CYCLES", "20"))
SEED = int(os.environ.get("CHAMBERLAIN_CRASH_SEED", "8"))
SUBMITTERS = 4
#: Triggers each client sends per cycle: enough to keep every worker busy, few
#: enough that the final start does not spend minutes catching up.
PER_SUBMITTER = 3


def crash_config(tmp_path: Path) -> dict[str, Any]:
    config = base_config(tmp_path)
    config["service"].update({"max_workers": 4})
    config["plugin_roots"] = [str(CHAOS_PLUGINS)]
    config["plugins"] = {"healthy": {}}
    for plugin in config["plugins"].values():
        # The plugins leave their marks where the daemon's $CHAOS_MARKS says.
        plugin["env_passthrough"] = ["CHAOS_MARKS"]
    return config


def integrity(state: Path) -> str:
    conn = sqlite3.connect(state)
    try:
        (verdict,) = conn.execute("PRAGMA integrity_check").fetchone()
    finally:
        conn.close()
    return str(verdict)


@attrs.define
class Load:
    """Triggers sent by a few concurrent clients, until the daemon dies or they are done."""

    daemon: DaemonProcess
    rng: random.Random
    accepted: dict[str, int] = attrs.field(factory=dict)
    first_accepted: trio.Event = attrs.field(factory=trio.Event)
    sent: int = 0

    async def submit(self, cycle: int) -> None:
        async with httpx.AsyncClient(
            base_url=self.daemon.base_url, headers=self.daemon.headers(), timeout=5
        ) as client:
            for _ in range(PER_SUBMITTER):
                body = {
                    "payload": {"sleep": round(self.rng.uniform(0, 0.2), 3)},
                    "max_attempts": 50,
                }
                self.sent += 1
                try:
                    r = await client.post("/trigger/healthy/poll", json=body)
                except httpx.TransportError:
                    return  # killed mid-request: this job may or may not exist
                assert r.status_code == 202, r.text
                self.accepted[r.json()["job_id"]] = cycle
                self.first_accepted.set()


async def wait_for_mark(marks: Path, role: str, known: int, timeout: float = 10) -> None:
    """Return as soon as there are more than ``known`` marks of ``role``."""

    def count() -> int:
        return sum(1 for m in procfs.read_marks(marks) if m.role == role)

    await wait_for(
        lambda: trio.to_thread.run_sync(lambda: count() > known), timeout=timeout, interval=0.002
    )


async def kill_moment(phase: str, load: Load, marks: Path, rng: random.Random) -> None:
    """Return at the moment of ``phase`` in the life of the current load."""
    seen = Counter(m.role for m in procfs.read_marks(marks))
    match phase:
        case "enqueue":
            await load.first_accepted.wait()
            await trio.sleep(rng.uniform(0.0, 0.03))  # triggers still in flight
        case "dispatch":
            await load.first_accepted.wait()
        case "run":
            await wait_for_mark(marks, "plugin", seen["plugin"])
        case "result":
            await wait_for_mark(marks, "done", seen["done"])


async def test_sigkill_at_random_moments_loses_no_accepted_job(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {"CHAOS_MARKS": str(marks)}
    rng = random.Random(SEED)
    accepted: dict[str, int] = {}
    kills: Counter[str] = Counter()
    sent = 0
    state = tmp_path / "state.db"

    for cycle in range(CYCLES):
        d = await daemon(config=crash_config(tmp_path), env=env)
        phase = PHASES[cycle % len(PHASES)]
        load = Load(daemon=d, rng=random.Random(rng.random()))
        async with trio.open_nursery() as nursery:
            for _ in range(SUBMITTERS):
                nursery.start_soon(load.submit, cycle)
            await kill_moment(phase, load, marks, rng)
            d.kill()
        kills[phase] += 1
        await d.wait()
        accepted.update(load.accepted)
        sent += load.sent
        assert integrity(state) == "ok", f"cycle {cycle} ({phase})"

    final = await daemon(config=crash_config(tmp_path), env=env)
    async with httpx.AsyncClient(
        base_url=final.base_url, headers=final.headers(), timeout=10
    ) as client:

        async def finished() -> bool:
            r = await client.get("/jobs", params={"status": "queued,running", "limit": 1})
            return bool(r.json()["total"] == 0)

        await wait_for(finished, timeout=120, interval=0.2)
        jobs: dict[str, dict[str, Any]] = {}
        for job_id in accepted:
            r = await client.get(f"/job/{job_id}")
            assert r.status_code == 200, f"accepted job {job_id} is lost: {r.text}"
            jobs[job_id] = r.json()
    assert await final.stop() == 0
    assert integrity(state) == "ok"

    answered = Counter(m.job_id for m in procfs.read_marks(marks) if m.role == "done")
    not_succeeded = {j: job["status"] for j, job in jobs.items() if job["status"] != "succeeded"}
    assert not not_succeeded, not_succeeded
    twice = {j: job["attempt"] for j, job in jobs.items() if answered[j] > 1}
    assert all(attempt > 1 for attempt in twice.values()), twice
    assert all(answered[j] >= 1 for j in jobs)  # succeeded means its plugin answered ok
    recovered = sum(1 for job in jobs.values() if job["attempt"] > 1)
    assert not find_job_processes(list(accepted))
    record(
        "test_crash_recovery::test_sigkill_at_random_moments_loses_no_accepted_job",
        cycles=CYCLES,
        kills=dict(kills),
        triggers_sent=sent,
        accepted=len(accepted),
        succeeded=len(jobs),
        rerun_by_recovery=recovered,
        plugin_answered_twice=len(twice),
        integrity_checks=CYCLES + 1,
        seed=SEED,
        lost=len(accepted) - len(jobs),
    )
