"""Chaos: hundreds of jobs of misbehaving plugins, at full concurrency, on the real daemon.

Every plugin under ``tests/chaos_plugins`` misbehaves in one way (segfault, kill -9,
no output, half a response, prose, 20 MiB of stdout, 2 MiB of stderr, ignoring
SIGTERM, a child trapping TERM, a grandchild holding stdout open, closing stdout
early, never reading stdin, a bounded fork bomb, invalid UTF-8), and ``healthy``
does its job.  They all run mixed together, over HTTP, as fast as the daemon takes
them.  Afterwards the test looks at the machine, not at the daemon's word for it:

* every job is terminal, with the status its plugin's behaviour calls for, and
  every healthy job succeeded with its own answer;
* the daemon's open fds and threads are back to what they were before the storm,
  it has no child left (so no zombie), and its memory stayed bounded;
* no process any plugin started is alive: the pids the plugins wrote down, their
  process groups, and anything carrying one of the jobs' ids in its environment.

Adding a chaos plugin: a folder under ``tests/chaos_plugins`` and a line in
:data:`EXPECTED`.
"""

from __future__ import annotations

import random
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

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHAOS_PLUGINS = Path(__file__).resolve().parent / "chaos_plugins"

MAX_WORKERS = 8
STDOUT_MAX = 10 * 1024 * 1024  # the daemon's cap (Limits.stdout_max)
#: Enough to fill a pipe buffer several times over: the daemon's write must not hang
#: on a plugin that never reads it.
STDIN_PAD = 256 * 1024


@attrs.frozen
class Expect:
    """What a chaos plugin's job must end as, and a piece of its error message."""

    status: str
    error: str | None = None
    jobs: int = 8
    payload: dict[str, Any] = attrs.field(factory=dict)


#: Every chaos plugin, the verdict its behaviour calls for, and how many jobs it gets.
#: Jobs run with max_attempts 1, so a retryable failure ends ``dead`` at once.
EXPECTED: dict[str, Expect] = {
    "healthy": Expect("succeeded", jobs=100),
    "segfault": Expect("dead", "SIGSEGV"),
    "selfkill": Expect("dead", "SIGKILL"),
    "silent": Expect("dead", "empty output"),
    "truncated": Expect("dead", "not JSON"),
    "nonjson": Expect("dead", "not JSON"),
    "flood_stdout": Expect("dead", "stdout exceeded"),
    "flood_stderr": Expect("succeeded"),
    # Each holds a worker for the timeout plus the 5 s kill grace: a few suffice.
    # A timeout is retried like a failure (retry.on_timeout), so it ends dead too.
    "ignore_term": Expect("dead", "timed out", jobs=3),
    "trapping_child": Expect("dead", "timed out", jobs=4),
    "grandchild_stdout": Expect("succeeded"),
    "early_close": Expect("dead", "empty output"),
    "no_stdin": Expect("succeeded", payload={"pad": "p" * STDIN_PAD}),
    "forkbomb": Expect("succeeded"),
    "bad_utf8": Expect("succeeded"),
}

#: Plugins that hang on purpose get a short timeout.
TIMEOUTS = {"ignore_term": "1s", "trapping_child": "1s"}


def chaos_config(tmp_path: Path, **service: Any) -> dict[str, Any]:
    """Config for a daemon serving only the chaos plugins."""
    config = base_config(tmp_path)
    config["service"].update({"max_workers": MAX_WORKERS, **service})
    config["plugin_roots"] = [str(CHAOS_PLUGINS)]
    config["plugins"] = {
        name: {"timeouts": {"poll": TIMEOUTS[name]}} if name in TIMEOUTS else {}
        for name in EXPECTED
    }
    for plugin in config["plugins"].values():
        # The plugins leave their marks where the daemon's $CHAOS_MARKS says.
        plugin["env_passthrough"] = ["CHAOS_MARKS"]
    return config


async def all_terminal(client: httpx.AsyncClient) -> bool:
    """True once no job is queued or running."""
    r = await client.get("/jobs", params={"status": "queued,running", "limit": 1})
    assert r.status_code == 200, r.text
    return bool(r.json()["total"] == 0)


async def fetch_jobs(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """Every job the daemon knows, by id."""
    jobs: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        r = await client.get("/jobs", params={"limit": 500, "offset": offset, "detail": "full"})
        assert r.status_code == 200, r.text
        page = r.json()
        jobs.update((j["job_id"], j) for j in page["jobs"])
        offset += len(page["jobs"])
        if offset >= page["total"] or not page["jobs"]:
            return jobs


@attrs.define
class Vitals:
    """The daemon process's resources at one moment."""

    fds: dict[int, str]
    threads: int
    rss_kib: int

    @classmethod
    def of(cls, pid: int) -> Vitals:
        return cls(
            fds=procfs.open_fds(pid), threads=procfs.threads(pid), rss_kib=procfs.rss_kib(pid)
        )


async def warm_up(client: httpx.AsyncClient) -> None:
    """Run a few healthy jobs, so lazily created resources exist before the baseline."""
    ids = []
    for n in range(MAX_WORKERS):
        r = await client.post("/trigger/healthy/poll", json={"payload": {"n": n}})
        assert r.status_code == 202, r.text
        ids.append(r.json()["job_id"])
    await wait_for(lambda: all_terminal(client), timeout=30)


async def test_hundreds_of_misbehaving_jobs_leave_nothing_behind(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    d: DaemonProcess = await daemon(
        config=chaos_config(tmp_path),
        env={"CHAOS_MARKS": str(marks)},
    )
    pid = d.proc.pid
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(
        base_url=d.base_url, headers=d.headers(), timeout=30, limits=limits
    ) as client:
        await warm_up(client)
    before = Vitals.of(pid)

    plan = [(plugin, n) for plugin, expect in EXPECTED.items() for n in range(expect.jobs)]
    random.Random(8).shuffle(plan)
    submitted: dict[str, tuple[str, int]] = {}
    peak_rss = before.rss_kib
    done = trio.Event()

    async def watch_memory() -> None:
        nonlocal peak_rss
        while not done.is_set():
            peak_rss = max(peak_rss, procfs.rss_kib(pid))
            with trio.move_on_after(0.05):
                await done.wait()

    began = trio.current_time()
    async with (
        httpx.AsyncClient(
            base_url=d.base_url, headers=d.headers(), timeout=30, limits=limits
        ) as client,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(watch_memory)

        async def submit(plugin: str, n: int) -> None:
            body = {"payload": {"n": n, **EXPECTED[plugin].payload}, "max_attempts": 1}
            r = await client.post(f"/trigger/{plugin}/poll", json=body)
            assert r.status_code == 202, r.text
            submitted[r.json()["job_id"]] = (plugin, n)

        async with trio.open_nursery() as submitters:
            for plugin, n in plan:
                submitters.start_soon(submit, plugin, n)
        await wait_for(lambda: all_terminal(client), timeout=180, interval=0.2)
        took = trio.current_time() - began
        jobs = await fetch_jobs(client)
        done.set()

    # -- every job ended the way its plugin's behaviour calls for
    wrong = []
    for job_id, (plugin, n) in submitted.items():
        job, expect = jobs[job_id], EXPECTED[plugin]
        error = job["last_error"] or ""
        if job["status"] != expect.status or (expect.error and expect.error not in error):
            wrong.append((plugin, job["status"], error[:200]))
        if plugin == "healthy":
            assert job["result"]["result"]["n"] == n
            assert job["result"]["result"]["job_id"] == job_id
    assert not wrong, wrong
    assert len(submitted) == len(plan)
    bad_utf8 = next(jobs[j] for j, (p, _) in submitted.items() if p == "bad_utf8")
    assert "\ufffd" in bad_utf8["result"]["result"]

    # -- no process of any job is alive
    all_marks = procfs.read_marks(marks)
    assert {m.role for m in all_marks} >= {"plugin", "child", "grandchild", "bomb"}

    def leftovers() -> list[Any]:
        pids = procfs.survivors(m.pid for m in all_marks)
        groups = procfs.group_members(m.pid for m in all_marks if m.role == "plugin")
        marked = find_job_processes(list(submitted))
        return [*pids, *groups, *marked]

    await wait_for(lambda: trio.to_thread.run_sync(lambda: not leftovers()), timeout=10)

    # -- the daemon is back to its baseline: fds, threads, children
    def settled() -> bool:
        now = Vitals.of(pid)
        return (
            len(now.fds) <= len(before.fds)
            and now.threads <= before.threads
            and not procfs.children(pid)
        )

    try:
        await wait_for(lambda: trio.to_thread.run_sync(settled), timeout=20)
    finally:
        after = Vitals.of(pid)
    assert not procfs.zombies(pid)
    pipes_before = sum(t.startswith("pipe:") for t in before.fds.values())
    pipes_after = sum(t.startswith("pipe:") for t in after.fds.values())
    assert pipes_after <= pipes_before, after.fds

    # -- memory stayed bounded: at most every worker's stdout buffer (and a copy of
    # it), however much the plugins wrote.
    bound_kib = (2 * MAX_WORKERS * STDOUT_MAX) // 1024 + 64 * 1024
    assert peak_rss - before.rss_kib < bound_kib, (before.rss_kib, peak_rss)

    assert d.proc.returncode is None  # it never went down
    record(
        "test_chaos::test_hundreds_of_misbehaving_jobs_leave_nothing_behind",
        jobs=len(submitted),
        chaos_jobs=sum(1 for p, _ in submitted.values() if p != "healthy"),
        healthy_jobs=sum(1 for p, _ in submitted.values() if p == "healthy"),
        plugins=len(EXPECTED),
        processes_checked=len(all_marks),
        seconds=round(took, 1),
        fds_before=len(before.fds),
        fds_after=len(after.fds),
        threads_before=before.threads,
        threads_after=after.threads,
        rss_before_mib=round(before.rss_kib / 1024, 1),
        rss_peak_mib=round(peak_rss / 1024, 1),
        lost=0,
    )
