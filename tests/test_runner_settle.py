"""A Runner whose outcome the store refuses fails that job alone, on a mock clock.

The protocol refuses what the store could not encode, so this is a second line:
should an outcome still be refused when it is settled, the Runner records a failed
attempt in its place instead of crashing, and the plugin's other running jobs are
not touched (a crash would kill them and report them interrupted).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from fakes import FakePlugins, finish, make_daemon, submit

from chamberlain.actors import runner
from chamberlain.plugins.protocol import (
    Outcome,
    OutcomeKind,
    ProcessResult,
    Response,
    decide_outcome,
)
from chamberlain.records import JobStatus, NewJob


def poisoned(result: ProcessResult) -> Outcome:
    """A success whose result no JSON encoder can write, for a job that asks for it."""
    if b"poison" not in result.stdout:
        return decide_outcome(result)
    return Outcome(
        kind=OutcomeKind.SUCCEEDED,
        retryable=False,
        error=None,
        response=Response(status="ok", result={"x": "\ud800"}),
        raw_output=None,
        exit_code=0,
        signal=None,
        stderr_tail="",
    )


async def test_an_outcome_the_store_refuses_fails_that_job_alone(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "decide_outcome", poisoned)
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        bystander, poison = await submit(
            daemon,
            NewJob(plugin="a", command="poll", payload={"sleep": 30}, max_attempts=1),
            NewJob(plugin="a", command="poll", payload={"result": "poison"}, max_attempts=1),
        )
        jobs = await finish(daemon, [bystander, poison])
        stats = daemon.root.statistics()
        await daemon.shutdown()
    done, refused = jobs
    assert (done.status, done.attempt) == (JobStatus.SUCCEEDED, 1)
    assert refused.status is JobStatus.DEAD
    assert refused.last_error is not None
    assert "the outcome could not be stored" in refused.last_error
    assert "surrogates not allowed" in refused.last_error
    assert stats.restart_counts().get("root/runners/a", 0) == 0
    assert fake.attempts[bystander] == 1
