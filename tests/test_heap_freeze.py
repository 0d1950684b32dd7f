"""A started daemon exempts its start-up heap from full garbage collections.

Full collections walk every tracked object; a daemon's modules, config and actors
are tens of thousands of them, which made each full collection a stall of tens of
milliseconds for every request in flight.  ``chamberlain start`` freezes them once
the daemon is ready (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import trio
from fakes import FakePlugins, finish, make_daemon, submit

from chamberlain.records import JobStatus, NewJob


@pytest.fixture
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    # What a test froze would never be collected in this long-lived test process.
    gc.unfreeze()


async def test_a_daemon_that_freezes_its_heap_runs_jobs_as_usual(
    tmp_path: Path, autojump_clock: trio.abc.Clock, thawed: None
) -> None:
    fake = FakePlugins()
    daemon = attrs.evolve(make_daemon(tmp_path, fake), freeze_heap=True)
    assert gc.get_freeze_count() == 0
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        # Everything alive at start-up is exempt, and it is most of the heap.
        frozen = gc.get_freeze_count()
        assert frozen > len(gc.get_objects())
        ids = await submit(daemon, NewJob(plugin="a", command="poll"))
        (job,) = await finish(daemon, ids)
        await daemon.shutdown()
    assert job.status is JobStatus.SUCCEEDED


async def test_daemons_in_a_shared_process_leave_the_heap_alone(
    tmp_path: Path, autojump_clock: trio.abc.Clock, thawed: None
) -> None:
    daemon = make_daemon(tmp_path, FakePlugins())
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        assert gc.get_freeze_count() == 0
        await daemon.shutdown()
