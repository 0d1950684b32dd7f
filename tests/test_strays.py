"""Which processes the leftover sweep kills, on real processes, and what a sweep costs."""

from __future__ import annotations

import functools
import math
import os
import subprocess
import threading
import time
from collections.abc import Iterator

import procfs
import pytest
import trio
import trio.testing
from conftest import wait_for
from figures import record

from chamberlain.daemon import subreaper
from chamberlain.plugins.strays import (
    JOB_ID_VARIABLE,
    RUN_VARIABLE,
    DaemonIdentity,
    RunBook,
    find_job_processes,
    kill_leftover_processes,
    read_stat,
)

pytestmark = pytest.mark.skipif(not procfs.PROC.is_dir(), reason="needs /proc (Linux)")


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started by a test; killed and reaped afterwards whatever happens."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def sleeper(started: list[subprocess.Popen[bytes]], **env: str) -> int:
    p = subprocess.Popen(["sleep", "300"], env={"PATH": os.environ["PATH"], **env})
    started.append(p)
    return p.pid


def dead_daemon(book: RunBook) -> DaemonIdentity:
    """The identity of a process that ran on this machine and is gone."""
    p = subprocess.Popen(["sleep", "300"])
    st = read_stat(p.pid)
    assert st is not None
    p.kill()
    p.wait()
    return DaemonIdentity(namespace=book.identity().namespace, pid=p.pid, started=st.started)


async def test_the_sweep_kills_exactly_what_no_live_run_owns(
    sleepers: list[subprocess.Popen[bytes]],
) -> None:
    book = RunBook()
    me = book.identity()
    over, _ = book.begin()
    book.end(over)
    running, running_marker = book.begin()
    gone = dead_daemon(book)
    # A live process standing for another daemon: alive, so its plugins are its own.
    other = sleeper(sleepers)
    other_st = read_stat(other)
    assert other_st is not None
    live_other = DaemonIdentity(namespace=me.namespace, pid=other, started=other_st.started)
    foreign_ns = DaemonIdentity(namespace=me.namespace + 1, pid=gone.pid, started=gone.started)

    doomed = {
        sleeper(sleepers, **{JOB_ID_VARIABLE: "j1", RUN_VARIABLE: me.marker(over)}): "j1",
        sleeper(sleepers, **{JOB_ID_VARIABLE: "j2", RUN_VARIABLE: gone.marker(3)}): "j2",
        # Started by a daemon older than the run marker, for a job found running.
        sleeper(sleepers, **{JOB_ID_VARIABLE: "j3"}): "j3",
    }
    spared = [
        # A dead daemon's, but not a job of ours: another state's, its daemon's to kill.
        sleeper(sleepers, **{JOB_ID_VARIABLE: "j9", RUN_VARIABLE: gone.marker(4)}),
        sleeper(sleepers, **{JOB_ID_VARIABLE: "j4", RUN_VARIABLE: running_marker}),
        sleeper(sleepers, **{JOB_ID_VARIABLE: "j5", RUN_VARIABLE: live_other.marker(1)}),
        sleeper(sleepers, **{JOB_ID_VARIABLE: "j6", RUN_VARIABLE: foreign_ns.marker(1)}),
        sleeper(sleepers, **{JOB_ID_VARIABLE: "j7"}),  # no marker, job not running
        sleeper(sleepers, **{JOB_ID_VARIABLE: "j8", RUN_VARIABLE: "made.up"}),
    ]

    killed = kill_leftover_processes(["j3"], book=book, known=lambda job: job == "j2")

    # Leftovers of other tests' daemons may go too: only ours are judged here.
    assert {pid: job for pid, job in killed.items() if pid in doomed or pid in spared} == doomed
    await wait_for(lambda: trio.to_thread.run_sync(lambda: not procfs.survivors(doomed)))
    assert procfs.survivors(spared) == sorted(spared)
    book.end(running)
    assert spared[1] in kill_leftover_processes(book=book)


def test_a_run_is_in_progress_from_begin_to_end_and_its_leader_is_booked() -> None:
    book = RunBook()
    run, marker = book.begin()
    assert marker.endswith(f".{run}")
    assert book.in_progress(run)
    leaders, forking_since = book.leaders()
    assert leaders == frozenset() and forking_since is not None
    book.spawned(run, 4242)
    assert book.leaders() == (frozenset({4242}), None)
    book.end(run)
    assert not book.in_progress(run)
    assert book.leaders() == (frozenset(), None)
    assert book.ended == 1
    again, _ = book.begin()
    assert again != run  # numbers are never reused


@pytest.mark.parametrize("extra", [0, 400])
def test_what_a_sweep_costs(sleepers: list[subprocess.Popen[bytes]], extra: int) -> None:
    for _ in range(extra):
        sleeper(sleepers)
    processes = sum(1 for e in procfs.PROC.iterdir() if e.name.isdigit())
    rounds = 20
    began = time.perf_counter()
    for _ in range(rounds):
        # The same look at every process's environment, without the kills.
        find_job_processes(["no-such-job"])
    per_sweep = (time.perf_counter() - began) / rounds
    # Generous: it is a look at every process, and the machine is shared.
    assert per_sweep < processes * 2e-3
    record(
        f"test_strays::test_what_a_sweep_costs[{extra}]",
        processes=processes,
        ms_per_sweep=round(per_sweep * 1e3, 2),
        us_per_process=round(per_sweep / processes * 1e6, 1),
    )


async def test_the_sweeper_sleeps_until_runs_end_and_sweeps_them_together(
    mock_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A mock clock moved by hand: the sweep runs in a worker thread, which an
    # autojumping clock would race.
    sweeps: list[float] = []
    swept = threading.Event()

    def sweep() -> dict[int, str]:  # in the worker thread
        sweeps.append(mock_clock.current_time())
        swept.set()
        return {}

    monkeypatch.setattr(subreaper, "kill_leftover_processes", sweep)
    book = RunBook()
    monkeypatch.setattr(subreaper, "RUNS", book)
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(subreaper.tend_leftovers, interval=1.0, adopt=False))
        mock_clock.jump(86400)  # a day without a run ending: no sweep
        await trio.testing.wait_all_tasks_blocked()
        assert sweeps == []
        # Nor any timer: the idle sweeper waits for a run to end instead of polling.
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == math.inf
        first, _ = book.begin()
        second, _ = book.begin()
        book.end(first)
        book.end(second)
        await trio.testing.wait_all_tasks_blocked()
        assert sweeps == []  # not before the interval has passed
        began = mock_clock.current_time()
        mock_clock.jump(1.0)
        # A real-time bound: the mock clock stands still while the thread works.
        assert await trio.to_thread.run_sync(swept.wait, 10)
        mock_clock.jump(100)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    # One sweep for both, one interval after they ended.
    assert sweeps == [began + 1.0]
