"""Run control against the real daemon and real plugin processes.

Reject, pause (with the running step stopped, and without), cancel, retry-latest
after a failed check, approval timeouts, a SIGKILL of the daemon while a run awaits
approval, and run-next-step on a paused run, each seen through the HTTP API and,
where a process is stopped, through the processes themselves.

``tests/e2e_plugins/ctl_step`` is the step: it can start a child process, record
both pids and keep running until a file the test creates appears, so a test can
stop it mid-way and see that no process of it survives. ``tests/e2e_plugins/ctl_qa``
is a check that fails a step's first review and passes the next.
"""

from __future__ import annotations

import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import (
    BUNDLED_PLUGINS,
    DaemonFactory,
    api_client,
    deep_merge,
    finished_job,
    run_step,
    run_when,
    wait_for,
)
from procfs import alive, survivors

from chamberlain.plugins.strays import find_job_processes

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"

pytestmark = pytest.mark.e2e

#: Who starts and decides the runs: the conftest token with plugin:rw and jobs:rw.
TOKEN = "rw-token"
ACTOR = "token:rw"

STEP = "ctl_step.handle"

CONFIG: dict[str, Any] = {
    "plugin_roots": [str(BUNDLED_PLUGINS), str(E2E_PLUGINS)],
    "plugins": {
        "ctl_step": {"retry": {"max_attempts": 1}},
        "ctl_qa": {"retry": {"max_attempts": 1}},
    },
    "pipelines": [
        {
            "name": "pair",
            "on": "manual.pair",
            "steps": [{"id": "first", "uses": STEP}, {"id": "second", "uses": STEP}],
        },
        {
            "name": "forked",
            "on": "manual.forked",
            "steps": [
                {"split": [{"id": "left", "uses": STEP}, {"id": "right", "uses": STEP}]},
                {"id": "after", "uses": STEP},
            ],
        },
        {
            "name": "reviewed",
            "on": "manual.reviewed",
            "steps": [
                {"id": "draft", "uses": STEP, "check": {"uses": "ctl_qa.review"}},
                {"id": "publish", "uses": STEP},
            ],
        },
        {
            "name": "approved",
            "on": "manual.approved",
            "steps": [
                {"id": "prepare", "uses": STEP},
                {"id": "ship", "uses": STEP, "approval": {"required": True}},
                {"id": "notify", "uses": STEP},
            ],
        },
        {
            # Any positive duration is a valid timeout; one second keeps the test short.
            "name": "timed_reject",
            "on": "manual.timed_reject",
            "steps": [
                {
                    "id": "ship",
                    "uses": STEP,
                    "approval": {"required": True, "timeout": "1s", "on_timeout": "reject"},
                }
            ],
        },
        {
            "name": "timed_approve",
            "on": "manual.timed_approve",
            "steps": [
                {
                    "id": "ship",
                    "uses": STEP,
                    "approval": {"required": True, "timeout": "1s", "on_timeout": "approve"},
                    "with": {"approved_by": "{approval.by}"},
                }
            ],
        },
        {
            "name": "three",
            "on": "manual.three",
            "steps": [
                {"id": "one", "uses": STEP},
                {"id": "two", "uses": STEP},
                {"id": "three", "uses": STEP},
            ],
        },
    ],
}


# -- helpers ------------------------------------------------------------------------------


async def start(
    c: httpx.AsyncClient, pipeline: str, payload: dict[str, Any] | None = None, **body: Any
) -> str:
    """Start a run of ``pipeline``; its id."""
    r = await c.post(f"/pipeline/{pipeline}", json={"payload": payload or {}, **body})
    assert r.status_code == 202, r.text
    run_id: str = r.json()["run_id"]
    return run_id


async def job(c: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    r = await c.get(f"/job/{job_id}")
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


async def held_job(c: httpx.AsyncClient, run_id: str, step_id: str) -> dict[str, Any]:
    """The job of ``step_id`` once it is stored and held by the run's pause."""

    async def held() -> dict[str, Any] | None:
        ids = run_step((await c.get(f"/runs/{run_id}")).json(), step_id)["job_ids"]
        if not ids:
            return None
        found = await job(c, ids[-1])
        return found if found["held"] == "paused" else None

    result: dict[str, Any] = await wait_for(held)
    return result


async def events(c: httpx.AsyncClient, run_id: str, kind: str = "") -> list[dict[str, Any]]:
    r = await c.get(f"/runs/{run_id}/events" + (f"?kind={kind}" if kind else ""))
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["events"]
    return found


def read_pids(directory: Path, job_id: str) -> tuple[int, int] | None:
    """(plugin pid, child pid) that ctl_step recorded for ``job_id``, once it has."""
    try:
        plugin, child = (directory / job_id).read_text().split()
    except FileNotFoundError:
        return None
    return int(plugin), int(child)


async def all_gone(*pids: int) -> None:
    """Wait (10 s at most) until none of ``pids`` is alive."""

    async def gone() -> bool:
        return not survivors(pids)

    await wait_for(gone, timeout=10)


def instant(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# -- approvals ----------------------------------------------------------------------------


async def test_a_rejected_step_fails_its_run_and_the_decision_stands(
    daemon: DaemonFactory,
) -> None:
    d = await daemon(CONFIG)
    async with api_client(d, TOKEN) as c:
        run_id = await start(c, "approved")
        run = await run_when(
            c, run_id, "awaiting_approval", prepare="succeeded", ship="awaiting_approval"
        )
        (ship_job,) = run_step(run, "ship")["job_ids"]
        awaiting_since = run_step(run, "ship")["approval"]["awaiting_since"]

        # Only a step awaiting approval can be decided: not one done, nor one not reached.
        for other, shown in (("prepare", "succeeded"), ("notify", "pending")):
            r = await c.post(f"/runs/{run_id}/steps/{other}/approve", json={})
            assert r.status_code == 409, r.text
            assert r.json() == {
                "error": f"cannot approve step {other} of run {run_id}:"
                f" the step is {shown}, not awaiting approval",
                "status": "awaiting_approval",
            }
        assert (await c.post(f"/runs/{run_id}/steps/nope/approve", json={})).status_code == 404

        r = await c.post(f"/runs/{run_id}/steps/ship/reject", json={"comment": "not today"})
        assert r.status_code == 200, r.text
        rejected = r.json()
        decision = rejected.pop("approval")
        assert rejected == {
            "run_id": run_id,
            "step_id": "ship",
            "status": "failed",
            "message": "step ship rejected",
            "changed": True,
        }
        assert (decision["decision"], decision["by"], decision["comment"]) == (
            "rejected",
            ACTOR,
            "not today",
        )
        assert decision["at"] >= awaiting_since

        # The run ended failed; the rejected step never ran, nor did the one after it.
        run = await run_when(
            c, run_id, "failed", prepare="succeeded", ship="failed", notify="skipped"
        )
        assert run["completed_at"] is not None
        assert run_step(run, "ship")["approval"]["decision"] == decision
        assert run_step(run, "notify")["job_ids"] == []
        never = await job(c, ship_job)
        assert (never["status"], never["started_at"]) == ("cancelled", None)
        assert never["last_error"] == f"its step was rejected by {ACTOR}"

        # Decided once: the other word is refused, the same word changes nothing.
        r = await c.post(f"/runs/{run_id}/steps/ship/approve", json={"comment": "ok then"})
        assert r.status_code == 409, r.text
        assert r.json() == {
            "error": f"cannot approve step ship of run {run_id}:"
            f" the step was rejected already, by {ACTOR}",
            "status": "failed",
        }
        r = await c.post(f"/runs/{run_id}/steps/ship/reject", json={"comment": "again"})
        assert r.status_code == 200, r.text
        again = r.json()
        assert (again["changed"], again["status"], again["message"]) == (
            False,
            "failed",
            "step ship was rejected already",
        )
        assert again["approval"] == decision

        # The log has the rejection once, with who and why, and the run's end after it.
        log = await events(c, run_id)
        (said,) = (e for e in log if e["kind"] == "approval")
        assert (said["actor"], said["step_id"], said["job_id"]) == (ACTOR, "ship", ship_job)
        assert said["text"] == f"step ship rejected by {ACTOR}: not today"
        assert said["detail"]["approval"]["decision"] == "rejected"
        kinds = [e["kind"] for e in log]
        assert kinds.index("approval.awaited") < kinds.index("approval")
        ended = [e for e in log if e["kind"] == "run.status"][-1]
        assert (ended["detail"]["after"], ended["id"] > said["id"]) == ("failed", True)


async def test_approval_timeouts_decide_once_as_configured(daemon: DaemonFactory) -> None:
    d = await daemon(CONFIG)
    async with api_client(d, TOKEN) as c:
        rejecting = await start(c, "timed_reject")
        approving = await start(c, "timed_approve")

        # Nobody acts: on_timeout: reject fails the run, as "timeout".
        run = await run_when(c, rejecting, "failed", ship="failed")
        approval = run_step(run, "ship")["approval"]
        timeout_at, since = instant(approval["timeout_at"]), instant(approval["awaiting_since"])
        assert abs(timeout_at - since - 1.0) <= 0.002
        decision = approval["decision"]
        assert (decision["decision"], decision["by"], decision["comment"]) == (
            "rejected",
            "timeout",
            "the approval timed out",
        )
        assert instant(decision["at"]) >= timeout_at
        (never,) = run_step(run, "ship")["job_ids"]
        assert (await job(c, never))["started_at"] is None
        (said,) = await events(c, rejecting, "approval")
        assert (said["actor"], said["text"]) == (
            "timeout",
            "step ship rejected by timeout: the approval timed out",
        )
        # A person coming late gets an answer about the timeout's decision.
        r = await c.post(f"/runs/{rejecting}/steps/ship/approve", json={})
        assert r.status_code == 409, r.text
        assert r.json()["error"].endswith("the step was rejected already, by timeout")

        # on_timeout: approve runs the step, which reads who approved it.
        run = await run_when(c, approving, "succeeded", ship="succeeded")
        decision = run_step(run, "ship")["approval"]["decision"]
        assert (decision["decision"], decision["by"]) == ("approved", "timeout")
        (ran,) = run_step(run, "ship")["job_ids"]
        assert (await job(c, ran))["result"]["result"]["approved_by"] == "timeout"
        (said,) = await events(c, approving, "approval")
        assert said["actor"] == "timeout"


async def test_a_run_awaiting_approval_survives_a_sigkill_of_the_daemon(
    daemon: DaemonFactory,
) -> None:
    d = await daemon(CONFIG)
    async with api_client(d, TOKEN) as c:
        run_id = await start(c, "approved")
        before = await run_when(
            c, run_id, "awaiting_approval", prepare="succeeded", ship="awaiting_approval"
        )
    d.kill()
    assert await d.stop() == -signal.SIGKILL

    again = await daemon(CONFIG)
    async with api_client(again, TOKEN) as c:
        r = await c.get(f"/runs/{run_id}")
        assert r.status_code == 200, r.text
        after = r.json()
        assert after["status"] == "awaiting_approval"
        assert [(s["step_id"], s["status"]) for s in after["steps"]] == [
            ("prepare", "succeeded"),
            ("ship", "awaiting_approval"),
            ("notify", "pending"),
        ]
        assert run_step(after, "ship") == run_step(before, "ship")

        r = await c.post(f"/runs/{run_id}/steps/ship/approve", json={"comment": "after the crash"})
        assert r.status_code == 200, r.text
        assert r.json()["changed"] is True
        run = await run_when(
            c, run_id, "succeeded", prepare="succeeded", ship="succeeded", notify="succeeded"
        )
        # The job held before the crash is the one that ran.
        assert run_step(run, "ship")["job_ids"] == run_step(before, "ship")["job_ids"]
        log = await events(c, run_id)
    assert [e["kind"] for e in log].count("approval.awaited") == 1
    (said,) = (e for e in log if e["kind"] == "approval")
    assert said["text"] == f"step ship approved by {ACTOR}: after the crash"


async def test_a_paused_run_with_its_step_running_survives_a_sigkill_of_the_daemon(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    # Crash recovery counts the interrupted attempt and requeues it after the retry
    # backoff: give the step a second attempt, soon.
    retry = {"max_attempts": 2, "backoff_base": "100ms"}
    config = deep_merge(CONFIG, {"plugins": {"ctl_step": {"retry": retry}}})
    gate = tmp_path / "go"
    d = await daemon(config)
    async with api_client(d, TOKEN) as c:
        run_id = await start(c, "pair", {"pids": str(tmp_path), "gate": str(gate)})
        run = await run_when(c, run_id, "running", first="running")
        (interrupted,) = run_step(run, "first")["job_ids"]
        plugin, child = await wait_for(
            lambda: trio.to_thread.run_sync(read_pids, tmp_path, interrupted)
        )
        r = await c.post(f"/runs/{run_id}/pause")
        assert (r.status_code, r.json()["status"]) == (200, "paused"), r.text
    d.kill()
    assert await d.stop() == -signal.SIGKILL

    again = await daemon(config)
    # The step's processes, left behind by the killed daemon, are killed at start-up.
    await all_gone(plugin, child)
    async with api_client(again, TOKEN) as c:
        # Recovered into the queue, the interrupted job is held by the pause it
        # survived: nothing of the run starts until it is resumed.
        run = await run_when(c, run_id, "paused", first="pending", second="pending")
        assert run["paused"] is True
        recovered = await held_job(c, run_id, "first")
        assert (recovered["job_id"], recovered["status"]) == (interrupted, "queued")
        await trio.to_thread.run_sync(gate.touch)
        r = await c.post(f"/runs/{run_id}/resume")
        assert r.status_code == 200, r.text
        run = await run_when(c, run_id, "succeeded", first="succeeded", second="succeeded")
        assert run_step(run, "first")["job_ids"] == [interrupted]
        assert (await job(c, interrupted))["attempt"] == 2


# -- pause, resume, cancel ----------------------------------------------------------------


async def test_pause_stops_the_running_step_on_request_and_resume_runs_it_again(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(CONFIG)
    async with api_client(d, TOKEN) as c:
        # -- stop_running: the step's processes are stopped; resume runs it afresh --------
        gate = tmp_path / "go-stopped"
        run_id = await start(c, "pair", {"pids": str(tmp_path), "gate": str(gate)})
        run = await run_when(c, run_id, "running", first="running")
        (stopped,) = run_step(run, "first")["job_ids"]
        plugin, child = await wait_for(
            lambda: trio.to_thread.run_sync(read_pids, tmp_path, stopped)
        )
        assert find_job_processes([stopped]).keys() == {plugin, child}

        r = await c.post(f"/runs/{run_id}/pause", json={"stop_running": True})
        assert r.status_code == 200, r.text
        assert r.json() == {
            "run_id": run_id,
            "status": "paused",
            "message": "paused: no new step starts; first stopped, to run again on resume",
        }
        await all_gone(plugin, child)
        assert find_job_processes([stopped]) == {}
        run = await run_when(c, run_id, "paused", first="pending", second="pending")
        # Its end is recorded once the runner has seen the process go.
        assert (await finished_job(c, stopped))["status"] == "cancelled"
        rerun = await held_job(c, run_id, "first")
        assert run_step(run, "first")["job_ids"] == [stopped, rerun["job_id"]]
        assert (rerun["status"], rerun["started_at"]) == ("queued", None)
        refused = await c.post(f"/runs/{run_id}/pause")
        assert refused.status_code == 409, refused.text
        assert refused.json() == {
            "error": f"cannot pause run {run_id}: the run is paused already",
            "status": "paused",
        }

        gate.touch()
        r = await c.post(f"/runs/{run_id}/resume")
        assert r.status_code == 200, r.text
        assert r.json()["message"] == "resumed: what is due starts now"
        run = await run_when(c, run_id, "succeeded", first="succeeded", second="succeeded")
        assert run_step(run, "first")["job_ids"] == [stopped, rerun["job_id"]]
        # It ran as a process of its own.
        fresh = read_pids(tmp_path, rerun["job_id"])
        assert fresh is not None and fresh[0] != plugin
        pause, resume = await events(c, run_id, "action")
        assert (pause["actor"], pause["detail"]["stop_running"]) == (ACTOR, True)
        assert resume["detail"]["action"] == "resume"

        # -- a plain pause: the running step finishes, the next waits for resume ----------
        gate = tmp_path / "go-plain"
        run_id = await start(c, "pair", {"pids": str(tmp_path), "gate": str(gate)})
        run = await run_when(c, run_id, "running", first="running")
        (first,) = run_step(run, "first")["job_ids"]
        plugin, _ = await wait_for(lambda: trio.to_thread.run_sync(read_pids, tmp_path, first))
        r = await c.post(f"/runs/{run_id}/pause", json={})
        assert r.status_code == 200, r.text
        assert r.json()["message"] == "paused: no new step starts"
        assert alive(plugin)

        gate.touch()
        held = await held_job(c, run_id, "second")
        run = await run_when(c, run_id, "paused", first="succeeded", second="pending")
        assert run_step(run, "first")["job_ids"] == [first]
        assert (held["status"], held["started_at"]) == ("queued", None)

        r = await c.post(f"/runs/{run_id}/resume")
        assert r.status_code == 200, r.text
        run = await run_when(c, run_id, "succeeded", first="succeeded", second="succeeded")
        assert run_step(run, "second")["job_ids"] == [held["job_id"]]
        actions = [e["detail"] for e in await events(c, run_id, "action")]
    assert [(a["action"], a["stop_running"]) for a in actions] == [
        ("pause", False),
        ("resume", False),
    ]


async def test_cancel_stops_the_running_process_group_and_ends_the_run(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    # One job of ctl_step at a time: the second branch waits in the queue.
    d = await daemon(deep_merge(CONFIG, {"plugins": {"ctl_step": {"parallelism": 1}}}))
    async with api_client(d, TOKEN) as c:
        run_id = await start(c, "forked", {"pids": str(tmp_path), "gate": str(tmp_path / "no")})

        async def one_running() -> tuple[str, str, tuple[int, int]] | None:
            run = (await c.get(f"/runs/{run_id}")).json()
            jobs = {s["step_id"]: s["job_ids"] for s in run["steps"]}
            if not (jobs["left"] and jobs["right"]):
                return None
            for ids in (jobs["left"] + jobs["right"], jobs["right"] + jobs["left"]):
                pids = read_pids(tmp_path, ids[0])
                if pids is not None:
                    return ids[0], ids[1], pids
            return None

        running, queued, (plugin, child) = await wait_for(one_running)
        assert (await job(c, queued))["status"] == "queued"
        assert find_job_processes([running, queued]).keys() == {plugin, child}

        r = await c.post(f"/runs/{run_id}/cancel")
        assert r.status_code == 200, r.text
        assert r.json() == {
            "run_id": run_id,
            "status": "cancelled",
            "message": "cancelled: its running jobs are being stopped",
        }
        # The plugin and the child it started: its whole process group.
        await all_gone(plugin, child)
        assert find_job_processes([running, queued]) == {}
        run = await run_when(
            c, run_id, "cancelled", left="cancelled", right="cancelled", after="cancelled"
        )
        assert run["completed_at"] is not None
        assert run_step(run, "after")["job_ids"] == []
        stopped, never = await job(c, running), await job(c, queued)
        assert stopped["status"] == "cancelled" and stopped["started_at"] is not None
        assert (never["status"], never["started_at"]) == ("cancelled", None)
        assert never["last_error"] == f"its run was cancelled by {ACTOR}"

        # Nothing brings a cancelled run back.
        for action in ("pause", "resume", "run-next-step", "retry-latest", "cancel"):
            r = await c.post(f"/runs/{run_id}/{action}")
            assert r.status_code == 409, (action, r.text)
            assert r.json()["status"] == "cancelled"
        assert (await c.post(f"/runs/{run_id}/pause")).json()["error"] == (
            f"cannot pause run {run_id}: the run has ended (cancelled)"
        )
        (cancel,) = await events(c, run_id, "action")
        assert (cancel["actor"], cancel["detail"]["action"]) == (ACTOR, "cancel")
    assert not alive(plugin) and not alive(child)


# -- retry-latest, run-next-step ----------------------------------------------------------


async def test_retry_latest_reruns_a_step_whose_check_failed(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(CONFIG)
    counter = tmp_path / "reviews"
    async with api_client(d, TOKEN) as c:
        run_id = await start(c, "reviewed", {"qa_counter": str(counter)})
        run = await run_when(c, run_id, "blocked", draft="failed")
        draft = run_step(run, "draft")
        (first,) = draft["job_ids"]
        # The step's own job succeeded: its check failed it.
        assert (await job(c, first))["status"] == "succeeded"
        assert (draft["check"]["state"], draft["check"]["notes"]) == (
            "failed",
            "review 1 of draft: fail",
        )
        # The next step's job, held on the gate, was dropped; the step may still come.
        publish = run_step(run, "publish")
        (dropped,) = publish["job_ids"]
        assert publish["status"] == "pending"
        assert (await job(c, dropped))["status"] == "cancelled"

        r = await c.post(f"/runs/{run_id}/retry-latest")
        assert r.status_code == 200, r.text
        assert r.json()["message"] == "step draft runs again"
        run = await run_when(c, run_id, "succeeded", draft="succeeded", publish="succeeded")
        draft = run_step(run, "draft")
        assert draft["job_ids"][0] == first and len(draft["job_ids"]) == 2
        assert (await job(c, draft["job_ids"][1]))["status"] == "succeeded"
        assert (draft["check"]["state"], draft["check"]["notes"]) == (
            "passed",
            "review 2 of draft: pass",
        )
        assert counter.read_text() == "2"  # the check ran twice, not more
        published = run_step(run, "publish")["job_ids"]
        assert published[0] == dropped and len(published) == 2

        checks = await events(c, run_id, "check")
        assert [(e["detail"]["verdict"], e["actor"]) for e in checks] == [
            ("fail", "check:ctl_qa.review"),
            ("pass", "check:ctl_qa.review"),
        ]
        (retry,) = await events(c, run_id, "action")
        assert (retry["actor"], retry["detail"]["action"]) == (ACTOR, "retry-latest")
        assert checks[0]["id"] < retry["id"] < checks[1]["id"]
        r = await c.post(f"/runs/{run_id}/retry-latest")
        assert r.status_code == 409, r.text
        assert r.json() == {
            "error": f"cannot retry-latest run {run_id}: the run has ended (succeeded)",
            "status": "succeeded",
        }


async def test_run_next_step_on_a_paused_run_starts_one_step_and_stays_paused(
    daemon: DaemonFactory,
) -> None:
    d = await daemon(CONFIG)
    async with api_client(d, TOKEN) as c:
        run_id = await start(c, "three", start="paused")
        first = await held_job(c, run_id, "one")

        r = await c.post(f"/runs/{run_id}/run-next-step")
        assert r.status_code == 200, r.text
        assert r.json() == {"run_id": run_id, "status": "paused", "message": "step one starts now"}
        # Step one ran; step two's job is stored but held: the run is still paused.
        second = await held_job(c, run_id, "two")
        run = await run_when(c, run_id, "paused", one="succeeded", two="pending", three="pending")
        assert run_step(run, "one")["job_ids"] == [first["job_id"]]
        assert run_step(run, "three")["job_ids"] == []

        r = await c.post(f"/runs/{run_id}/run-next-step")
        assert r.status_code == 200, r.text
        assert r.json()["message"] == "step two starts now"
        third = await held_job(c, run_id, "three")
        await run_when(c, run_id, "paused", one="succeeded", two="succeeded", three="pending")
        assert run_step((await c.get(f"/runs/{run_id}")).json(), "two")["job_ids"] == [
            second["job_id"]
        ]

        r = await c.post(f"/runs/{run_id}/resume")
        assert r.status_code == 200, r.text
        run = await run_when(
            c, run_id, "succeeded", one="succeeded", two="succeeded", three="succeeded"
        )
        assert run_step(run, "three")["job_ids"] == [third["job_id"]]
        actions = [e["detail"]["action"] for e in await events(c, run_id, "action")]
    assert actions == ["run-next-step", "run-next-step", "resume"]
