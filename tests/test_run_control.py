"""Run control through the real JobStore and actor tree, on trio's mock clock.

Runs are started as ``POST /pipeline/{name}`` starts them (``Routing.start``, then
``Gateway.enqueue_plan``, paused or not), controlled through the gateway methods
the run routes call (``act_on_run``, ``decide_step``, ``report_ci``), and read
back as the API shows them (``get_run`` rendered by ``run_json``, ``run_events``
by ``event_json``).  Plugins are fakes (tests/fakes.py): a job that "runs" for an
hour takes no real time, and an approval timeout of an hour falls due at once.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from fakes import EPOCH, FakePlugins, answered, clock_now, make_daemon

from chamberlain.daemon.tree import Daemon
from chamberlain.plugins.protocol import ProcessResult
from chamberlain.records import Job, JobStatus
from chamberlain.runs import (
    TIMEOUT_ACTOR,
    ActOutcome,
    Approval,
    CiMatch,
    CiSignal,
    CiState,
    Refused,
    RunAction,
    RunStatus,
    Unchanged,
    Verdict,
)
from chamberlain.web.jobs import parse_rfc3339
from chamberlain.web.runs import EVENT_KINDS, event_json, run_json

PLUGINS = ("a", "b", "qa")
ALICE, BOB, CAROL = "token:alice", "token:bob", "token:carol"
SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
OTHER_SHA = "0123456789abcdef0123456789abcdef01234567"
#: How often (mock seconds) a wait looks at the run again.
POLL = 0.5


# -- the harness ------------------------------------------------------------------------


def pipeline(*steps: dict[str, Any], plugins: dict[str, Any] | None = None) -> dict[str, Any]:
    """A config with one pipeline, ``flow``, of ``steps``; jobs are not retried."""
    settings = {name: {"retry": {"max_attempts": 1}} for name in PLUGINS}
    for name, extra in (plugins or {}).items():
        settings[name] = {**settings[name], **extra}
    return {
        "plugins": settings,
        "pipelines": [{"name": "flow", "on": "manual.flow", "steps": list(steps)}],
    }


def approval_step(
    *, on_timeout: str = "reject", timeout: str = "1h", **extra: Any
) -> dict[str, Any]:
    """Step ``two``: run by ``b`` once approved, within ``timeout``."""
    return {
        "id": "two",
        "uses": "b.handle",
        "approval": {"required": True, "timeout": timeout, "on_timeout": on_timeout},
        **extra,
    }


@attrs.define
class Checks:
    """The fake plugins, with ``qa`` answering as a check does: the next of ``verdicts``."""

    fake: FakePlugins
    verdicts: list[str]
    asked: list[dict[str, Any]] = attrs.field(factory=list)

    async def execute(self, **call: Any) -> ProcessResult:
        if call["plugin"] != "qa":
            return await self.fake.execute(**call)
        self.asked.append(json.loads(call["request"]))
        verdict = self.verdicts.pop(0)
        notes = f"review {len(self.asked)}: {verdict}"
        response = {"status": "ok", "result": {"verdict": verdict, "notes": notes}}
        return answered(response, timeout=call["timeout"])


def daemon_for(
    tmp_path: Path, fake: FakePlugins, config: dict[str, Any], checks: Checks | None = None
) -> Daemon:
    daemon = make_daemon(tmp_path, fake, config=config, plugins=PLUGINS)
    if checks is not None:
        daemon = attrs.evolve(daemon, execute=checks.execute)
    return daemon


@contextlib.asynccontextmanager
async def running(daemon: Daemon) -> AsyncIterator[Daemon]:
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        yield daemon
        await daemon.shutdown()


async def start(daemon: Daemon, payload: dict[str, Any], *, paused: bool = False) -> str:
    """Start ``flow`` as ``POST /pipeline/flow`` does (``"start": "paused"``: paused)."""
    routing = daemon.gateway.routing
    flow = routing.pipeline("flow")
    assert flow is not None
    plan = routing.start(flow, payload, submitted_by=ALICE, now=clock_now())
    enqueued = await daemon.gateway.enqueue_plan(plan, paused=paused)
    run_id = enqueued[0].job.run_id
    assert run_id is not None
    return run_id


async def view(daemon: Daemon, run_id: str) -> dict[str, Any]:
    """The run as ``GET /runs/{id}`` shows it."""
    run = await daemon.gateway.get_run(run_id)
    assert run is not None
    shown: dict[str, Any] = run_json(run, daemon.gateway.routing.step_ids(run.pipeline))
    return shown


def step(shown: dict[str, Any], step_id: str) -> dict[str, Any]:
    found: dict[str, Any]
    (found,) = (s for s in shown["steps"] if s["step_id"] == step_id)
    return found


def statuses(shown: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The run's status and each step's."""
    return shown["status"], {s["step_id"]: s["status"] for s in shown["steps"]}


async def until(
    daemon: Daemon, run_id: str, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The run once ``ready`` says so; an hour of mock time at most."""
    with trio.fail_after(3600):
        while True:
            shown = await view(daemon, run_id)
            if ready(shown):
                return shown
            await trio.sleep(POLL)


def at_step(step_id: str, status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda shown: step(shown, step_id)["status"] == status


def run_is(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda shown: shown["status"] == status


async def events(daemon: Daemon, run_id: str, *kinds: str) -> list[dict[str, Any]]:
    """The run's events log as ``GET /runs/{id}/events?kind=...`` lists it."""
    found = await daemon.gateway.run_events(run_id, kinds=frozenset(kinds), after_id=0, limit=5000)
    return [event_json(e) for e in found]


async def act(
    daemon: Daemon, run_id: str, action: RunAction, *, stop_running: bool = False
) -> tuple[ActOutcome | Refused | None, RunStatus | None]:
    done = await daemon.gateway.act_on_run(run_id, action, actor=ALICE, stop_running=stop_running)
    return done.answer, done.status


async def decide(
    daemon: Daemon,
    run_id: str,
    step_id: str,
    verdict: Verdict,
    by: str,
    *,
    comment: str = "",
    inputs: dict[str, Any] | None = None,
) -> tuple[Approval | Unchanged | Refused | None, RunStatus | None]:
    """``POST /runs/{id}/steps/{step}/approve`` (or ``reject``) by ``by``, now."""
    word = Approval(verdict=verdict, by=by, at=clock_now(), comment=comment, inputs=inputs or {})
    done = await daemon.gateway.decide_step(run_id, step_id, word)
    return done.answer, done.status


def due_of(shown: dict[str, Any], step_id: str) -> float:
    """When (trio time) the approval of ``step_id`` times out, as the run shows it."""
    return parse_rfc3339(step(shown, step_id)["approval"]["timeout_at"]) - EPOCH


def ran(fake: FakePlugins, job_id: str) -> int:
    """How many times the fake plugins were asked to run ``job_id``."""
    return sum(1 for r in fake.requests if r["job_id"] == job_id)


def asked_of(fake: FakePlugins, plugin: str) -> list[dict[str, Any]]:
    """The requests the fake plugin ``plugin`` was sent."""
    return [r for r in fake.requests if r["context"].get("ductile_plugin") == plugin]


def the_job(shown: dict[str, Any], step_id: str) -> str:
    (job_id,) = step(shown, step_id)["job_ids"]
    return str(job_id)


async def awaiting_approval(
    daemon: Daemon, run_id: str, step_id: str
) -> tuple[dict[str, Any], float, str]:
    """The run once ``step_id`` awaits its approval, the approval's due time, and the
    step's held job."""
    shown = await until(daemon, run_id, at_step(step_id, "awaiting_approval"))
    return shown, due_of(shown, step_id), the_job(shown, step_id)


# -- approvals and their timeout --------------------------------------------------------


async def test_an_approval_just_before_its_timeout_is_the_one_decision(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = pipeline(
        {"id": "one", "uses": "a.handle", "with": {"sleep": 5}},
        {**approval_step(), "with": {"target": "{approval.inputs.env}"}},
    )
    async with running(daemon_for(tmp_path, fake, config)) as daemon:
        run_id = await start(daemon, {})
        shown, due, held = await awaiting_approval(daemon, run_id, "two")
        # A millisecond before the timeout is due.
        await trio.sleep_until(due - 0.001)
        answer, status = await decide(
            daemon, run_id, "two", Verdict.APPROVE, BOB, inputs={"env": "staging"}
        )
        # Well past the due time: the timeout had its chance.
        await trio.sleep_until(due + 600)
        shown = await until(daemon, run_id, run_is("succeeded"))
        decisions = await events(daemon, run_id, "approval")
    assert isinstance(answer, Approval) and answer.by == BOB
    assert status is RunStatus.RUNNING
    decision = step(shown, "two")["approval"]["decision"]
    assert (decision["decision"], decision["by"]) == ("approved", BOB)
    assert [(e["actor"], e["detail"]["approval"]["decision"]) for e in decisions] == [
        (BOB, "approved")
    ]
    assert ran(fake, held) == 1
    (request,) = (r for r in fake.requests if r["job_id"] == held)
    assert request["event"]["payload"]["target"] == "staging"
    # It ran at once on the approval, not when the timeout fell due.
    assert fake.started_at[held][0] < due


async def test_a_word_given_as_the_timeout_falls_due_is_the_decision_or_an_answer_about_it(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = pipeline({"id": "one", "uses": "a.handle"}, approval_step(on_timeout="reject"))
    async with running(daemon_for(tmp_path, fake, config)) as daemon:
        run_id = await start(daemon, {})
        shown, due, held = await awaiting_approval(daemon, run_id, "two")
        # The person's approve and the timeout's reject wake at the same instant; the
        # scheduler picks the order, and either order must leave one decision.
        await trio.sleep_until(due)
        answer, _ = await decide(daemon, run_id, "two", Verdict.APPROVE, BOB)
        shown = await until(daemon, run_id, lambda s: s["status"] in ("succeeded", "failed"))
        decisions = await events(daemon, run_id, "approval")
    (only,) = decisions
    if isinstance(answer, Approval):
        # The person came first: the timeout found nothing to decide.
        assert only["actor"] == BOB
        assert shown["status"] == "succeeded"
        assert ran(fake, held) == 1
    else:
        # The timeout came first: the person is told so, and nothing ran.
        assert isinstance(answer, Refused)
        assert answer.reason == "the step was rejected already, by timeout"
        assert only["actor"] == TIMEOUT_ACTOR
        assert shown["status"] == "failed"
        assert ran(fake, held) == 0


async def test_a_timeout_that_rejects_fails_the_run_and_a_later_approve_is_refused(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = pipeline({"id": "one", "uses": "a.handle"}, approval_step(on_timeout="reject"))
    async with running(daemon_for(tmp_path, fake, config)) as daemon:
        run_id = await start(daemon, {})
        shown, due, held = await awaiting_approval(daemon, run_id, "two")
        await trio.sleep_until(due - 1)
        assert (await view(daemon, run_id))["status"] == "awaiting_approval"
        shown = await until(daemon, run_id, run_is("failed"))
        failed_at = trio.current_time()
        approve, approve_status = await decide(daemon, run_id, "two", Verdict.APPROVE, BOB)
        reject, reject_status = await decide(daemon, run_id, "two", Verdict.REJECT, BOB)
        job = await daemon.gateway.get_job(held)
        decisions = await events(daemon, run_id, "approval")
    assert due <= failed_at < due + 2 * POLL
    assert statuses(shown) == ("failed", {"one": "succeeded", "two": "failed"})
    decision = step(shown, "two")["approval"]["decision"]
    assert decision["decision"] == "rejected"
    assert decision["by"] == TIMEOUT_ACTOR
    assert decision["comment"] == "the approval timed out"
    assert job is not None and job.status is JobStatus.CANCELLED
    assert job.last_error == "its step was rejected by timeout"
    assert ran(fake, held) == 0
    assert isinstance(approve, Refused)
    assert approve.reason == "the step was rejected already, by timeout"
    assert approve_status is RunStatus.FAILED
    assert isinstance(reject, Unchanged) and reject.approval.by == TIMEOUT_ACTOR
    assert reject_status is RunStatus.FAILED
    (only,) = decisions
    assert only["actor"] == TIMEOUT_ACTOR
    assert only["text"] == "step two rejected by timeout: the approval timed out"


async def test_a_timeout_that_approves_runs_the_step_as_approved_by_the_timeout(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = pipeline(
        {"id": "one", "uses": "a.handle"},
        {**approval_step(on_timeout="approve"), "with": {"by": "{approval.by}"}},
    )
    async with running(daemon_for(tmp_path, fake, config)) as daemon:
        run_id = await start(daemon, {})
        shown, due, held = await awaiting_approval(daemon, run_id, "two")
        await trio.sleep_until(due - 1)
        assert ran(fake, held) == 0
        shown = await until(daemon, run_id, run_is("succeeded"))
        decisions = await events(daemon, run_id, "approval")
    decision = step(shown, "two")["approval"]["decision"]
    assert (decision["decision"], decision["by"]) == ("approved", TIMEOUT_ACTOR)
    assert [e["actor"] for e in decisions] == [TIMEOUT_ACTOR]
    assert ran(fake, held) == 1
    assert due <= fake.started_at[held][0] < due + 1
    (request,) = (r for r in fake.requests if r["job_id"] == held)
    assert request["event"]["payload"]["by"] == TIMEOUT_ACTOR


async def test_a_timeout_s_approval_the_step_cannot_take_fails_the_run(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    # The timeout approves with no inputs, which the step's with: needs.
    config = pipeline(
        {"id": "one", "uses": "a.handle"},
        {**approval_step(on_timeout="approve"), "with": {"target": "{approval.inputs.env}"}},
    )
    async with running(daemon_for(tmp_path, fake, config)) as daemon:
        run_id = await start(daemon, {})
        shown, due, held = await awaiting_approval(daemon, run_id, "two")
        await trio.sleep_until(due - 1)
        shown = await until(daemon, run_id, run_is("failed"))
        job = await daemon.gateway.get_job(held)
    assert statuses(shown) == ("failed", {"one": "succeeded", "two": "failed"})
    assert step(shown, "two")["approval"]["decision"]["by"] == TIMEOUT_ACTOR
    assert job is not None and job.status is JobStatus.FAILED
    assert job.last_error == (
        "pipeline flow step two: with: {approval.inputs.env}: the input has no approval.inputs.env"
    )
    assert ran(fake, held) == 0


async def test_a_timeout_due_while_the_daemon_was_down_fires_once_at_start_up(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = pipeline({"id": "one", "uses": "a.handle"}, approval_step(on_timeout="reject"))
    async with running(daemon_for(tmp_path, fake, config)) as daemon:
        run_id = await start(daemon, {})
        shown = await until(daemon, run_id, at_step("two", "awaiting_approval"))
        due = due_of(shown, "two")
    # The store is closed; the due time passes while no daemon runs.
    await trio.sleep_until(due + 3600)
    restarted_at = trio.current_time()
    async with running(daemon_for(tmp_path, fake, config)) as daemon:
        shown = await until(daemon, run_id, run_is("failed"))
        first = await events(daemon, run_id, "approval")
    # Once more on the same file: what was decided stays decided.
    async with running(daemon_for(tmp_path, fake, config)) as daemon:
        again, _ = await decide(daemon, run_id, "two", Verdict.APPROVE, BOB)
        later = await view(daemon, run_id)
        second = await events(daemon, run_id, "approval")
    (fired,) = first
    assert fired["actor"] == TIMEOUT_ACTOR
    assert parse_rfc3339(fired["detail"]["approval"]["at"]) - EPOCH >= restarted_at
    assert step(shown, "two")["approval"]["decision"]["by"] == TIMEOUT_ACTOR
    assert isinstance(again, Refused)
    assert later["status"] == "failed"
    assert second == first


# -- a person's approve and reject --------------------------------------------------------


async def test_a_reject_fails_the_run_with_its_reason_and_an_approve_after_it_is_refused(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = pipeline(
        {"id": "one", "uses": "a.handle"}, approval_step(), {"id": "three", "uses": "a.handle"}
    )
    async with running(daemon_for(tmp_path, fake, config)) as daemon:
        run_id = await start(daemon, {})
        shown = await until(daemon, run_id, at_step("two", "awaiting_approval"))
        held = the_job(shown, "two")
        reject, reject_status = await decide(
            daemon, run_id, "two", Verdict.REJECT, BOB, comment="not on a Friday"
        )
        shown = await view(daemon, run_id)
        approve, approve_status = await decide(daemon, run_id, "two", Verdict.APPROVE, CAROL)
        again, _ = await decide(daemon, run_id, "two", Verdict.REJECT, CAROL)
        job = await daemon.gateway.get_job(held)
        decisions = await events(daemon, run_id, "approval")
    assert isinstance(reject, Approval) and reject.verdict is Verdict.REJECT
    assert reject_status is RunStatus.FAILED
    assert shown["status"] == "failed" and shown["completed_at"] is not None
    assert step(shown, "two")["status"] == "failed"
    decision = step(shown, "two")["approval"]["decision"]
    assert (decision["decision"], decision["by"], decision["comment"]) == (
        "rejected",
        BOB,
        "not on a Friday",
    )
    assert job is not None and job.status is JobStatus.CANCELLED
    assert job.last_error == f"its step was rejected by {BOB}"
    assert ran(fake, held) == 0
    assert isinstance(approve, Refused)
    assert approve.reason == f"the step was rejected already, by {BOB}"
    assert approve_status is RunStatus.FAILED
    assert isinstance(again, Unchanged) and again.approval.by == BOB
    assert [e["text"] for e in decisions] == [f"step two rejected by {BOB}: not on a Friday"]


async def test_a_second_approve_changes_nothing_and_only_an_awaiting_step_takes_one(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = pipeline({"id": "one", "uses": "a.handle", "with": {"sleep": 30}}, approval_step())
    async with running(daemon_for(tmp_path, fake, config)) as daemon:
        run_id = await start(daemon, {})
        await until(daemon, run_id, at_step("one", "running"))
        running_step, _ = await decide(daemon, run_id, "one", Verdict.APPROVE, BOB)
        too_soon, _ = await decide(daemon, run_id, "two", Verdict.APPROVE, BOB)
        no_step, _ = await decide(daemon, run_id, "nope", Verdict.APPROVE, BOB)
        no_run, _ = await decide(daemon, "no-such-run", "two", Verdict.APPROVE, BOB)
        shown = await until(daemon, run_id, at_step("two", "awaiting_approval"))
        held = the_job(shown, "two")
        first, _ = await decide(daemon, run_id, "two", Verdict.APPROVE, BOB, comment="go")
        second, _ = await decide(daemon, run_id, "two", Verdict.APPROVE, CAROL)
        reject, _ = await decide(daemon, run_id, "two", Verdict.REJECT, CAROL)
        shown = await until(daemon, run_id, run_is("succeeded"))
        decisions = await events(daemon, run_id, "approval")
    assert isinstance(running_step, Refused)
    assert running_step.reason == "the step is running, not awaiting approval"
    assert isinstance(too_soon, Refused)
    assert too_soon.reason == "the step is pending, not awaiting approval"
    assert (no_step, no_run) == (None, None)
    assert isinstance(first, Approval) and first.by == BOB
    # 200 with changed false: the first decision stands, by its author.
    assert isinstance(second, Unchanged)
    assert (second.approval.by, second.approval.comment) == (BOB, "go")
    assert isinstance(reject, Refused)
    assert reject.reason == f"the step was approved already, by {BOB}"
    assert [e["actor"] for e in decisions] == [BOB]
    assert step(shown, "two")["approval"]["decision"]["by"] == BOB
    assert ran(fake, held) == 1


# -- pause and resume ---------------------------------------------------------------------


async def test_a_pause_that_stops_the_running_step_runs_it_again_on_resume(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = pipeline(
        {"id": "one", "uses": "a.handle", "with": {"sleep": 100}},
        {"id": "two", "uses": "b.handle"},
    )
    async with running(daemon_for(tmp_path, fake, config)) as daemon:
        run_id = await start(daemon, {})
        shown = await until(daemon, run_id, at_step("one", "running"))
        stopped = the_job(shown, "one")
        await trio.sleep(10)
        paused, paused_status = await act(daemon, run_id, RunAction.PAUSE, stop_running=True)
        with trio.fail_after(10):
            old = await daemon.gateway.wait_job(stopped)
        alive = fake.running["a"]
        # Ten minutes on the mock clock: a paused run starts nothing meanwhile.
        await trio.sleep(600)
        shown_paused = await view(daemon, run_id)
        started_before_resume = len(fake.requests)
        resumed_at = trio.current_time()
        resumed, resumed_status = await act(daemon, run_id, RunAction.RESUME)
        shown = await until(daemon, run_id, run_is("succeeded"))
    assert isinstance(paused, ActOutcome)
    assert paused.message == "paused: no new step starts; one stopped, to run again on resume"
    assert paused.stop == (stopped,)
    assert paused_status is RunStatus.PAUSED
    assert old is not None and old.status is JobStatus.CANCELLED
    assert alive == 0
    assert statuses(shown_paused) == ("paused", {"one": "pending", "two": "pending"})
    assert shown_paused["paused"] is True
    assert started_before_resume == 1
    assert isinstance(resumed, ActOutcome) and resumed_status is RunStatus.RUNNING
    stopped_again, rerun = step(shown, "one")["job_ids"]
    assert stopped_again == stopped
    # Run again from the start, at once on the resume, and to its end.
    assert fake.started_at[rerun] == [resumed_at]
    assert ran(fake, rerun) == 1
    assert statuses(shown) == ("succeeded", {"one": "succeeded", "two": "succeeded"})
    assert ran(fake, the_job(shown, "two")) == 1


async def test_a_pause_lets_the_running_step_finish_and_resume_starts_the_next_at_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = pipeline(
        {"id": "one", "uses": "a.handle", "with": {"sleep": 100}},
        {"id": "two", "uses": "b.handle"},
    )
    async with running(daemon_for(tmp_path, fake, config)) as daemon:
        run_id = await start(daemon, {})
        shown = await until(daemon, run_id, at_step("one", "running"))
        first = the_job(shown, "one")
        paused, _ = await act(daemon, run_id, RunAction.PAUSE)
        with trio.fail_after(200):
            finished = await daemon.gateway.wait_job(first)
        shown = await until(daemon, run_id, lambda s: step(s, "two")["job_ids"] != [])
        waiting = the_job(shown, "two")
        # Ten minutes on the mock clock: the next step does not start while paused.
        await trio.sleep(600)
        shown_paused = await view(daemon, run_id)
        held = await daemon.gateway.get_job(waiting)
        ran_while_paused = ran(fake, waiting)
        resumed_at = trio.current_time()
        resumed, _ = await act(daemon, run_id, RunAction.RESUME)
        shown = await until(daemon, run_id, run_is("succeeded"))
    assert isinstance(paused, ActOutcome) and paused.stop == ()
    assert paused.message == "paused: no new step starts"
    assert finished is not None and finished.status is JobStatus.SUCCEEDED
    assert ran(fake, first) == 1
    assert statuses(shown_paused) == ("paused", {"one": "succeeded", "two": "pending"})
    assert held is not None and held.status is JobStatus.QUEUED and held.held == "paused"
    assert ran_while_paused == 0
    assert isinstance(resumed, ActOutcome)
    assert fake.started_at[waiting] == [resumed_at]
    assert statuses(shown) == ("succeeded", {"one": "succeeded", "two": "succeeded"})


async def job_when(daemon: Daemon, job_id: str, ready: Callable[[Job], bool]) -> Job:
    """The job once ``ready`` says so; an hour of mock time at most."""
    with trio.fail_after(3600):
        while True:
            job = await daemon.gateway.get_job(job_id)
            if job is not None and ready(job):
                return job
            await trio.sleep(POLL)


def retrying() -> dict[str, Any]:
    """Step ``one`` fails its first attempt and is retried after 30 s."""
    return pipeline(
        {"id": "one", "uses": "a.handle", "with": {"sleep": 10, "fail_until": 2}},
        plugins={"a": {"retry": {"max_attempts": 3, "backoff_base": "30s"}}},
    )


@pytest.mark.parametrize("when", ["during-the-attempt", "during-the-backoff"])
async def test_a_pause_holds_a_step_s_retry_until_resume(
    when: str, tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    async with running(daemon_for(tmp_path, fake, retrying())) as daemon:
        run_id = await start(daemon, {})
        job_id = the_job(await until(daemon, run_id, at_step("one", "running")), "one")
        if when == "during-the-attempt":
            await act(daemon, run_id, RunAction.PAUSE)
        else:
            # Failed once, it waits out its backoff, queued and not held yet.
            await job_when(daemon, job_id, lambda j: j.status is JobStatus.QUEUED)
            await act(daemon, run_id, RunAction.PAUSE)
        held = await job_when(daemon, job_id, lambda j: j.held == "paused")
        # Ten minutes on the mock clock, far past the backoff: no attempt starts.
        await trio.sleep(600)
        shown_paused = await view(daemon, run_id)
        attempts_while_paused = fake.attempts[job_id]
        resumed_at = trio.current_time()
        await act(daemon, run_id, RunAction.RESUME)
        shown = await until(daemon, run_id, run_is("succeeded"))
    assert (held.status, held.attempt) == (JobStatus.QUEUED, 1)
    assert statuses(shown_paused) == ("paused", {"one": "pending"})
    assert attempts_while_paused == 1
    assert fake.started_at[job_id][1] == resumed_at
    assert statuses(shown) == ("succeeded", {"one": "succeeded"})


# -- cancel --------------------------------------------------------------------------------


async def test_a_cancel_stops_the_running_job_cancels_the_queued_and_ends_the_run(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    # Step one gives step two two inputs; b runs one at a time, so one waits queued.
    long = {"type": "work", "payload": {"sleep": 1000}}
    config = pipeline(
        {"id": "one", "uses": "a.handle", "with": {"emit": [long, long]}},
        {"id": "two", "uses": "b.handle"},
        {"id": "three", "uses": "a.handle"},
        plugins={"b": {"parallelism": 1}},
    )
    async with running(daemon_for(tmp_path, fake, config)) as daemon:
        run_id = await start(daemon, {})
        shown = await until(daemon, run_id, lambda s: len(step(s, "two")["job_ids"]) == 2)
        busy, waiting = step(shown, "two")["job_ids"]
        await until(daemon, run_id, lambda s: step(s, "two")["started_at"] is not None)
        began = trio.current_time()
        cancelled, status = await act(daemon, run_id, RunAction.CANCEL)
        with trio.fail_after(10):
            stopped = await daemon.gateway.wait_job(busy)
        took = trio.current_time() - began
        queued = await daemon.gateway.get_job(waiting)
        shown = await view(daemon, run_id)
        after = {action: await act(daemon, run_id, action) for action in RunAction}
        logged = await events(daemon, run_id, "action")
    assert isinstance(cancelled, ActOutcome) and status is RunStatus.CANCELLED
    assert cancelled.stop == (busy,)
    assert stopped is not None and stopped.status is JobStatus.CANCELLED
    assert took < 10
    assert ran(fake, busy) == 1
    assert fake.running["b"] == 0
    assert queued is not None and queued.status is JobStatus.CANCELLED
    assert queued.last_error == f"its run was cancelled by {ALICE}"
    assert ran(fake, waiting) == 0
    assert shown["status"] == "cancelled" and shown["completed_at"] is not None
    assert step(shown, "one")["status"] == "succeeded"
    assert step(shown, "two")["status"] == "cancelled"
    # The step never reached is cancelled with its run, not skipped.
    assert step(shown, "three")["status"] == "cancelled"
    for action, (answer, after_status) in after.items():
        assert isinstance(answer, Refused), action
        assert after_status is RunStatus.CANCELLED
    assert [e["detail"]["action"] for e in logged] == ["cancel"]


# -- checks -------------------------------------------------------------------------------


async def test_a_failed_check_blocks_the_run_and_retry_latest_runs_the_step_and_check_again(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    checks = Checks(fake=fake, verdicts=["fail", "pass"])
    config = pipeline(
        {"id": "one", "uses": "a.handle", "check": {"uses": "qa.handle"}},
        {"id": "two", "uses": "b.handle"},
    )
    async with running(daemon_for(tmp_path, fake, config, checks)) as daemon:
        run_id = await start(daemon, {})
        blocked = await until(daemon, run_id, run_is("blocked"))
        ran_b_while_blocked = len(asked_of(fake, "b"))
        retried, retried_status = await act(daemon, run_id, RunAction.RETRY_LATEST)
        shown = await until(daemon, run_id, run_is("succeeded"))
        judged = await events(daemon, run_id, "check.awaited", "check")
    assert statuses(blocked) == ("blocked", {"one": "failed", "two": "pending"})
    failed_check = step(blocked, "one")["check"]
    assert (failed_check["state"], failed_check["notes"]) == ("failed", "review 1: fail")
    # The step after it was never started.
    assert ran_b_while_blocked == 0
    assert isinstance(retried, ActOutcome) and retried.message == "step one runs again"
    assert retried_status is RunStatus.RUNNING
    first, again = step(shown, "one")["job_ids"]
    assert ran(fake, first) == 1 and ran(fake, again) == 1
    # Each run of the step was checked, and the check was given what it judges.
    assert [a["payload"]["job_id"] for a in checks.asked] == [first, again]
    assert all(a["payload"]["step_id"] == "one" for a in checks.asked)
    assert statuses(shown) == ("succeeded", {"one": "succeeded", "two": "succeeded"})
    assert len(asked_of(fake, "b")) == 1
    passed = step(shown, "one")["check"]
    assert (passed["state"], passed["job_id"], passed["notes"]) == (
        "passed",
        again,
        "review 2: pass",
    )
    assert [e["job_id"] for e in judged if e["kind"] == "check.awaited"] == [first, again]
    verdicts = [(e["actor"], e["detail"]["verdict"]) for e in judged if e["kind"] == "check"]
    assert verdicts == [("check:qa.handle", "fail"), ("check:qa.handle", "pass")]


# -- CI ------------------------------------------------------------------------------------


def ci_pipeline() -> dict[str, Any]:
    """``build`` waits for CI on the commit its job reports; ``ship`` comes after it."""
    return pipeline(
        {"id": "build", "uses": "a.handle", "wait_for": "ci"},
        {"id": "ship", "uses": "b.handle"},
    )


def ci(state: CiState, sha: str = SHA) -> CiSignal:
    return CiSignal(sha=sha, state=state, source="github.check_suite", name="tests")


async def awaiting_ci(daemon: Daemon, commit: str | None) -> tuple[str, dict[str, Any]]:
    """A run whose ``build`` job reported ``commit`` (None: none), now awaiting CI."""
    run_id = await start(daemon, {} if commit is None else {"result": {"commit": commit}})
    return run_id, await until(daemon, run_id, at_step("build", "awaiting_check"))


async def test_ci_success_for_the_reported_commit_advances_the_run(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    async with running(daemon_for(tmp_path, fake, ci_pipeline())) as daemon:
        run_id, waiting = await awaiting_ci(daemon, SHA.upper())
        matched = await daemon.gateway.report_ci(ci(CiState.SUCCESS), None)
        shown = await until(daemon, run_id, run_is("succeeded"))
    assert statuses(waiting) == ("running", {"build": "awaiting_check", "ship": "pending"})
    gate = step(waiting, "build")["ci"]
    assert (gate["state"], gate["sha"]) == ("waiting", SHA)
    assert matched == (CiMatch(run_id=run_id, step_id="build", state=CiState.SUCCESS),)
    assert statuses(shown) == ("succeeded", {"build": "succeeded", "ship": "succeeded"})
    assert step(shown, "build")["ci"]["state"] == "passed"
    assert step(shown, "build")["ci"]["signal"]["source"] == "github.check_suite"


async def test_ci_failure_blocks_the_run_and_starts_nothing_after_the_step(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    async with running(daemon_for(tmp_path, fake, ci_pipeline())) as daemon:
        run_id, _ = await awaiting_ci(daemon, SHA)
        matched = await daemon.gateway.report_ci(ci(CiState.FAILURE), None)
        shown = await until(daemon, run_id, run_is("blocked"))
        late = await daemon.gateway.report_ci(ci(CiState.SUCCESS), None)
        after = await view(daemon, run_id)
    assert [m.state for m in matched] == [CiState.FAILURE]
    # Its own job succeeded: CI blocks it (a failed check fails it).
    assert (step(shown, "build")["status"], step(shown, "build")["ci"]["state"]) == (
        "blocked",
        "failed",
    )
    assert asked_of(fake, "b") == []
    # The first report that decides is the decision.
    assert late == ()
    assert after["status"] == "blocked"


async def test_ci_for_a_step_that_reported_no_commit_is_matched_by_run_id_only(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    async with running(daemon_for(tmp_path, fake, ci_pipeline())) as daemon:
        run_id, waiting = await awaiting_ci(daemon, None)
        by_sha = await daemon.gateway.report_ci(ci(CiState.SUCCESS), None)
        other_run = await daemon.gateway.report_ci(ci(CiState.SUCCESS), "no-such-run")
        still = await view(daemon, run_id)
        by_run = await daemon.gateway.report_ci(ci(CiState.SUCCESS), run_id)
        shown = await until(daemon, run_id, run_is("succeeded"))
    assert step(waiting, "build")["ci"]["sha"] is None
    assert (by_sha, other_run) == ((), ())
    assert step(still, "build")["status"] == "awaiting_check"
    assert by_run == (CiMatch(run_id=run_id, step_id="build", state=CiState.SUCCESS),)
    assert step(shown, "build")["status"] == "succeeded"


async def test_ci_for_an_unknown_commit_matches_nothing_even_with_the_run_id(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    async with running(daemon_for(tmp_path, fake, ci_pipeline())) as daemon:
        run_id, _ = await awaiting_ci(daemon, SHA)
        unknown = await daemon.gateway.report_ci(ci(CiState.SUCCESS, OTHER_SHA), None)
        # A step that reported a commit takes reports for that commit only.
        wrong_commit = await daemon.gateway.report_ci(ci(CiState.SUCCESS, OTHER_SHA), run_id)
        shown = await view(daemon, run_id)
        reports = await events(daemon, run_id, "ci")
    assert (unknown, wrong_commit) == ((), ())
    assert statuses(shown) == ("running", {"build": "awaiting_check", "ship": "pending"})
    assert reports == []


async def test_a_pending_ci_report_is_recorded_and_decides_nothing(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    async with running(daemon_for(tmp_path, fake, ci_pipeline())) as daemon:
        run_id, _ = await awaiting_ci(daemon, SHA)
        pending = await daemon.gateway.report_ci(ci(CiState.PENDING), None)
        shown = await view(daemon, run_id)
        recorded = await events(daemon, run_id, "ci")
        done = await daemon.gateway.report_ci(ci(CiState.SUCCESS), None)
        finished = await until(daemon, run_id, run_is("succeeded"))
    assert pending == (CiMatch(run_id=run_id, step_id="build", state=CiState.PENDING),)
    assert statuses(shown) == ("running", {"build": "awaiting_check", "ship": "pending"})
    assert step(shown, "build")["ci"]["state"] == "waiting"
    assert step(shown, "build")["ci"]["signal"]["state"] == "pending"
    (report,) = recorded
    assert report["actor"] == "github.check_suite"
    assert report["detail"]["signal"]["state"] == "pending"
    assert [m.state for m in done] == [CiState.SUCCESS]
    assert finished["status"] == "succeeded"


# -- run-next-step ------------------------------------------------------------------------


async def test_run_next_step_on_a_paused_run_starts_the_first_pending_step_only(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = pipeline({"id": "one", "uses": "a.handle"}, approval_step(timeout="1d"))
    async with running(daemon_for(tmp_path, fake, config)) as daemon:
        run_id = await start(daemon, {}, paused=True)
        started = await view(daemon, run_id)
        first, first_status = await act(daemon, run_id, RunAction.RUN_NEXT_STEP)
        shown = await until(daemon, run_id, lambda s: step(s, "two")["job_ids"] != [])
        held = the_job(shown, "two")
        second, second_status = await act(daemon, run_id, RunAction.RUN_NEXT_STEP)
        awaiting = await until(daemon, run_id, at_step("two", "awaiting_approval"))
        third, third_status = await act(daemon, run_id, RunAction.RUN_NEXT_STEP)
        approved, _ = await decide(daemon, run_id, "two", Verdict.APPROVE, BOB)
        approved_paused = await view(daemon, run_id)
        ran_before_resume = ran(fake, held)
        await act(daemon, run_id, RunAction.RESUME)
        finished = await until(daemon, run_id, run_is("succeeded"))
    assert statuses(started) == ("paused", {"one": "pending", "two": "pending"})
    assert isinstance(first, ActOutcome) and first.message == "step one starts now"
    assert first_status is RunStatus.PAUSED
    # Step one ran; the paused run did not start step two by itself.
    assert statuses(shown) == ("paused", {"one": "succeeded", "two": "pending"})
    assert isinstance(second, ActOutcome) and second.message == "step two starts now"
    assert second_status is RunStatus.PAUSED
    # Started, step two stops for its approval: run-next-step does not pass it by.
    assert step(awaiting, "two")["status"] == "awaiting_approval"
    assert isinstance(third, Refused)
    assert third.reason == "no step is pending, blocked or failed"
    assert third_status is RunStatus.PAUSED
    # Approved while paused, it waits for the resume.
    assert isinstance(approved, Approval)
    assert approved_paused["status"] == "paused"
    assert ran_before_resume == 0
    assert statuses(finished) == ("succeeded", {"one": "succeeded", "two": "succeeded"})
    assert ran(fake, held) == 1


async def test_run_next_step_is_refused_while_a_running_run_awaits_an_approval(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = pipeline({"id": "one", "uses": "a.handle"}, approval_step(timeout="1d"))
    async with running(daemon_for(tmp_path, fake, config)) as daemon:
        run_id = await start(daemon, {})
        shown = await until(daemon, run_id, at_step("two", "awaiting_approval"))
        held = the_job(shown, "two")
        refused, status = await act(daemon, run_id, RunAction.RUN_NEXT_STEP)
        after = await view(daemon, run_id)
    assert isinstance(refused, Refused)
    assert refused.reason == "no step is pending, blocked or failed"
    assert status is RunStatus.AWAITING_APPROVAL
    assert statuses(after) == (
        "awaiting_approval",
        {"one": "succeeded", "two": "awaiting_approval"},
    )
    assert ran(fake, held) == 0


# -- the events log -----------------------------------------------------------------------


async def test_the_events_log_records_every_change_with_its_actor_and_time(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    checks = Checks(fake=fake, verdicts=["pass"])
    config = pipeline(
        {"id": "one", "uses": "a.handle", "check": {"uses": "qa.handle"}},
        {**approval_step(timeout="1d"), "with": {"result": {"commit": SHA}}},
        {"id": "three", "uses": "a.handle"},
    )
    config["pipelines"][0]["steps"][1]["wait_for"] = "ci"
    async with running(daemon_for(tmp_path, fake, config, checks)) as daemon:
        run_id = await start(daemon, {}, paused=True)
        await trio.sleep(5)
        await act(daemon, run_id, RunAction.RESUME)
        await until(daemon, run_id, at_step("two", "awaiting_approval"))
        await decide(daemon, run_id, "two", Verdict.APPROVE, BOB, comment="ship it")
        await until(daemon, run_id, at_step("two", "awaiting_check"))
        await daemon.gateway.report_ci(ci(CiState.SUCCESS), None)
        shown = await until(daemon, run_id, run_is("succeeded"))
        log = await events(daemon, run_id)
        by_kind = {kind: await events(daemon, run_id, kind) for kind in EVENT_KINDS}
        some = await events(daemon, run_id, "action", "ci")
    assert {e["kind"] for e in log} == set(EVENT_KINDS)
    ids = [e["id"] for e in log]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    times = [e["at"] for e in log]
    assert all(isinstance(at, str) and at.endswith("Z") for at in times)
    assert times == sorted(times)
    assert all(e["actor"] for e in log)
    # The filter: each kind alone, and two at once, in the log's order.
    for kind, found in by_kind.items():
        assert found == [e for e in log if e["kind"] == kind], kind
    assert some == [e for e in log if e["kind"] in ("action", "ci")]
    who = {(e["kind"], e["actor"]) for e in log if e["kind"] not in ("run.status", "step.status")}
    assert who == {
        ("run.created", ALICE),
        ("action", ALICE),
        ("approval.awaited", "chamberlain"),
        ("approval", BOB),
        ("check.awaited", "chamberlain"),
        ("check", "check:qa.handle"),
        ("ci.awaited", "chamberlain"),
        ("ci", "github.check_suite"),
    }
    # Every change of status is there, each from where the one before left it.
    runs = [(e["detail"]["before"], e["detail"]["after"]) for e in by_kind["run.status"]]
    assert runs[0][0] == "pending" and runs[-1][1] == "succeeded"
    assert all(a[1] == b[0] for a, b in itertools.pairwise(runs))
    assert runs[0] == ("pending", "paused")
    for one in shown["steps"]:
        moves = [
            (e["detail"]["before"], e["detail"]["after"])
            for e in by_kind["step.status"]
            if e["step_id"] == one["step_id"]
        ]
        assert moves[0][0] == "pending" and moves[-1][1] == one["status"], one["step_id"]
        assert all(a[1] == b[0] for a, b in itertools.pairwise(moves))
    two = [e["detail"]["after"] for e in by_kind["step.status"] if e["step_id"] == "two"]
    # Approved, it is queued (pending) before it runs.
    # Awaited, approved, run, then held for CI until its report.
    assert two[0] == "awaiting_approval" and two[-1] == "succeeded"
    assert two.index("running") < two.index("awaiting_check")


async def test_a_checked_step_goes_from_running_to_awaiting_check_without_a_success_between(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    checks = Checks(fake=fake, verdicts=["pass"])
    config = pipeline(
        {"id": "one", "uses": "a.handle", "check": {"uses": "qa.handle"}},
        {"id": "two", "uses": "b.handle"},
    )
    async with running(daemon_for(tmp_path, fake, config, checks)) as daemon:
        run_id = await start(daemon, {})
        await until(daemon, run_id, run_is("succeeded"))
        moves = await events(daemon, run_id, "step.status")
    one = [e["detail"]["after"] for e in moves if e["step_id"] == "one"]
    assert one == ["running", "awaiting_check", "succeeded"]
