"""Runs against the real daemon and real plugins: the walk the runs issue asks for.

A run of three steps is started paused and resumed; its first step passes a check
(``tests/e2e_plugins/flow_qa``), its second waits for a person's approval with typed
inputs, which reach the plugins, and its third waits for CI on the commit it
reports until a signed GitHub ``check_suite`` webhook says the commit passed. The
events log, and ``/events/stream``, show every step of it with who and when.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    BUNDLED_PLUGINS,
    DaemonFactory,
    DaemonProcess,
    api_client,
    run_step,
    run_when,
    wait_for,
)
from sse_client import Event, open_stream

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"

pytestmark = pytest.mark.e2e

CI_SECRET = "ci-secret"
#: The commit the CI-gated steps report (their ``with:`` hands it to flow_step,
#: which answers with its payload as its result).
SHA = hashlib.sha1(b"the commit step three made").hexdigest()
OTHER_SHA = hashlib.sha1(b"a commit nobody waits for").hexdigest()

#: Who the runs are started and decided by: the conftest token with plugin:rw and jobs:rw.
TOKEN = "rw-token"
ACTOR = "token:rw"

INPUTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"x": {"type": "string", "enum": ["staging", "production"]}},
    "required": ["x"],
}

CONFIG: dict[str, Any] = {
    "plugin_roots": [str(BUNDLED_PLUGINS), str(E2E_PLUGINS)],
    "plugins": {
        "flow_step": {"retry": {"max_attempts": 1}},
        "flow_qa": {"retry": {"max_attempts": 1}},
    },
    "webhooks": {
        "endpoints": [
            {"path": "/hooks/github-ci", "ci": True, "kind": "github", "secret": CI_SECRET}
        ]
    },
    "pipelines": [
        {
            "name": "flow",
            "on": "manual.flow",
            "steps": [
                {
                    "id": "implement",
                    "uses": "flow_step.handle",
                    "with": {"summary": "implemented {payload.task}"},
                    "check": {"uses": "flow_qa.review"},
                },
                {
                    # Approval inputs are read by the approved step's own with:; the
                    # step after it gets them through this step's result.
                    "id": "ship",
                    "uses": "flow_step.handle",
                    "approval": {"required": True, "inputs_schema": INPUTS_SCHEMA},
                    "with": {
                        "target": "{approval.inputs.x}",
                        "approved_by": "{approval.by}",
                        "approval_note": "{approval.comment}",
                    },
                },
                {
                    "id": "verify",
                    "uses": "flow_step.handle",
                    "wait_for": "ci",
                    "with": {"target": "{payload.result.target}", "commit": SHA},
                },
            ],
        },
        {
            "name": "ci_only",
            "on": "manual.ci_only",
            "steps": [
                {
                    "id": "build",
                    "uses": "flow_step.handle",
                    "wait_for": "ci",
                    "with": {"commit": SHA},
                }
            ],
        },
        {
            "name": "checked",
            "on": "manual.checked",
            "steps": [
                {"id": "draft", "uses": "flow_step.handle", "check": {"uses": "flow_qa.review"}},
                # Held on draft's check, then released by its verdict.
                {"id": "publish", "uses": "flow_step.handle"},
            ],
        },
    ],
}


@pytest.fixture
async def gw(daemon: DaemonFactory) -> DaemonProcess:
    return await daemon(CONFIG)


def check_suite(sha: str) -> bytes:
    """A GitHub ``check_suite`` delivery body, as GitHub sends it once CI ended."""
    return json.dumps(
        {
            "action": "completed",
            "check_suite": {
                "head_sha": sha,
                "head_branch": "main",
                "status": "completed",
                "conclusion": "success",
                "app": {"name": "GitHub Actions"},
            },
            "repository": {"full_name": "me/repo"},
        }
    ).encode()


def signed(body: bytes, secret: str = CI_SECRET) -> dict[str, str]:
    """GitHub's headers for ``body``: the event name and its HMAC-SHA256 signature."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "check_suite",
        "X-GitHub-Delivery": hashlib.sha1(body + secret.encode()).hexdigest(),
        "X-Hub-Signature-256": f"sha256={digest}",
    }


async def deliver(d: DaemonProcess, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST a delivery to the CI endpoint, without a bearer token (as GitHub does)."""
    async with httpx.AsyncClient(base_url=d.base_url, timeout=30) as c:
        return await c.post("/hooks/github-ci", content=body, headers=headers)


async def test_a_paused_run_walks_check_approval_and_ci_to_success(
    gw: DaemonProcess, tmp_path: Path
) -> None:
    qa_gate = tmp_path / "qa-go"
    async with api_client(gw, TOKEN) as c:
        # -- started paused: stored, nothing runs ------------------------------------------
        r = await c.post(
            "/pipeline/flow",
            json={
                "payload": {"task": "a --dry-run flag", "qa_gate": str(qa_gate)},
                "start": "paused",
            },
        )
        assert r.status_code == 202, r.text
        started = r.json()
        run_id = started["run_id"]
        assert started["pipeline"] == "flow"
        run = (await c.get(f"/runs/{run_id}")).json()
        assert (run["status"], run["paused"]) == ("paused", True)
        assert [(s["step_id"], s["status"]) for s in run["steps"]] == [
            ("implement", "pending"),
            ("ship", "pending"),
            ("verify", "pending"),
        ]
        (first_job,) = run_step(run, "implement")["job_ids"]
        # A job started after the held one runs to its end: the dispatcher went past
        # the held job and left it alone.
        witness = await c.post("/trigger/echo/health", json={})
        assert witness.status_code == 202, witness.text
        ended = await c.get(f"/job/{witness.json()['job_id']}?wait=30s")
        assert ended.json()["status"] == "succeeded"
        held = (await c.get(f"/job/{first_job}")).json()
        assert (held["status"], held["held"], held["started_at"]) == ("queued", "paused", None)
        assert (await c.get(f"/runs/{run_id}")).json()["status"] == "paused"

        # -- resume: step 1 runs, then awaits its check until the check answers ------------
        r = await c.post(f"/runs/{run_id}/resume")
        assert r.status_code == 200, r.text
        assert r.json()["run_id"] == run_id
        # Released, not started yet: what is due is queued at once.
        assert r.json() == {
            "run_id": run_id,
            "status": "pending",
            "message": "resumed: what is due starts now",
        }
        run = await run_when(c, run_id, "running", implement="awaiting_check")
        assert run["paused"] is False
        check = run_step(run, "implement")["check"]
        assert (check["state"], check["job_id"]) == ("waiting", first_job)

        async def check_running() -> dict[str, Any] | None:
            job: dict[str, Any] = (await c.get(f"/job/{check['check_job_id']}")).json()
            return job if job["status"] == "running" else None

        # The check runs (it waits for qa_gate): the step awaits it meanwhile.
        check_job = await wait_for(check_running)
        run = (await c.get(f"/runs/{run_id}")).json()
        assert run_step(run, "implement")["status"] == "awaiting_check"
        assert (check_job["plugin"], check_job["command"]) == ("flow_qa", "review")
        assert check_job["submitted_by"] == "check:flow/implement"
        assert check_job["payload"]["result"]["summary"] == "implemented a --dry-run flag"
        done = (await c.get(f"/job/{first_job}")).json()
        assert done["status"] == "succeeded"
        assert done["result"]["result"]["summary"] == "implemented a --dry-run flag"
        # Step 2's job is stored, held on step 1's gate until the check passes.
        assert run_step(run, "ship")["status"] == "pending"
        (gated,) = run_step(run, "ship")["job_ids"]
        held = (await c.get(f"/job/{gated}")).json()
        assert (held["status"], held["held"], held["started_at"]) == ("queued", "gate", None)
        qa_gate.touch()

        # -- step 2 awaits approval; bad inputs are refused; approval with inputs ----------
        run = await run_when(
            c, run_id, "awaiting_approval", implement="succeeded", ship="awaiting_approval"
        )
        check = run_step(run, "implement")["check"]
        assert check["state"] == "passed"
        assert check["notes"] == "reviewed implement of flow: pass"
        ship = run_step(run, "ship")
        assert ship["approval"]["decision"] is None
        assert ship["approval"]["awaiting_since"] is not None
        assert ship["approval"]["timeout_at"] is None
        assert ship["job_ids"] == [gated]
        ship_job = gated
        waiting = (await c.get(f"/job/{ship_job}")).json()
        assert (waiting["status"], waiting["held"]) == ("queued", "approval")
        assert (run_step(run, "verify")["status"], run_step(run, "verify")["job_ids"]) == (
            "pending",
            [],
        )

        refused = await c.post(
            f"/runs/{run_id}/steps/ship/approve", json={"comment": "go", "inputs": {"x": "moon"}}
        )
        assert refused.status_code == 400, refused.text
        assert refused.json() == {
            "error": "inputs.x: 'moon' is not one of ['staging', 'production']"
        }
        missing = await c.post(f"/runs/{run_id}/steps/ship/approve", json={"inputs": {}})
        assert missing.status_code == 400, missing.text
        assert missing.json() == {"error": "inputs: 'x' is a required property"}
        # Nothing was recorded: the step still awaits its decision.
        still = run_step((await c.get(f"/runs/{run_id}")).json(), "ship")
        assert (still["status"], still["approval"]["decision"]) == ("awaiting_approval", None)

        r = await c.post(
            f"/runs/{run_id}/steps/ship/approve",
            json={"comment": "ship it", "inputs": {"x": "staging"}},
        )
        assert r.status_code == 200, r.text
        approved = r.json()
        assert (approved["run_id"], approved["step_id"], approved["changed"]) == (
            run_id,
            "ship",
            True,
        )
        decision = approved["approval"]
        assert decision["decision"] == "approved"
        assert decision["by"] == ACTOR
        assert (decision["comment"], decision["inputs"]) == ("ship it", {"x": "staging"})
        assert decision["at"] >= ship["approval"]["awaiting_since"]

        # -- step 3 reports its commit and waits for CI -------------------------------------
        run = await run_when(c, run_id, "running", ship="succeeded", verify="awaiting_check")
        shipped = (await c.get(f"/job/{ship_job}")).json()
        # The approval's inputs, comment and approver reached step 2's plugin ...
        assert shipped["status"] == "succeeded"
        reached = shipped["result"]["result"]
        assert (reached["target"], reached["approved_by"], reached["approval_note"]) == (
            "staging",
            ACTOR,
            "ship it",
        )
        # ... and step 3's, through step 2's result.
        verify = run_step(run, "verify")
        (verify_job,) = verify["job_ids"]
        verified = (await c.get(f"/job/{verify_job}")).json()
        assert verified["status"] == "succeeded"
        assert verified["result"]["result"]["target"] == "staging"
        assert verified["result"]["result"]["commit"] == SHA
        assert (verify["ci"]["state"], verify["ci"]["sha"]) == ("waiting", SHA)
        assert verify["ci"]["job_id"] == verify_job

        body = check_suite(SHA)
        r = await deliver(gw, body, signed(body))
        assert r.status_code == 202, r.text
        assert r.json() == {
            "matched": True,
            "sha": SHA,
            "state": "success",
            "runs": [{"run_id": run_id, "step_id": "verify"}],
        }

        # -- the run succeeded; its record shows each step ---------------------------------
        run = await run_when(
            c, run_id, "succeeded", implement="succeeded", ship="succeeded", verify="succeeded"
        )
        assert run["paused"] is False
        assert run["created_at"] <= run["started_at"] <= run["completed_at"]
        assert [s["job_ids"] for s in run["steps"]] == [[first_job], [ship_job], [verify_job]]
        for s in run["steps"]:
            assert s["started_at"] is not None and s["completed_at"] is not None, s
        assert run_step(run, "ship")["approval"]["decision"] == decision
        assert run_step(run, "verify")["ci"]["state"] == "passed"
        assert run_step(run, "verify")["ci"]["signal"]["source"] == "github.check_suite"

        # -- the events log shows every step of it, with who and when -----------------------
        r = await c.get(f"/runs/{run_id}/events")
        assert r.status_code == 200, r.text
        assert r.json()["run_id"] == run_id
        events = r.json()["events"]
        ids = [e["id"] for e in events]
        assert ids == sorted(set(ids))  # oldest first, each once
        assert [e["at"] for e in events] == sorted(e["at"] for e in events)
        assert all(e["actor"] for e in events)
        said = [(e["kind"], e["actor"], e["step_id"]) for e in events]
        # The run's story, in the order it happened (step and run statuses between).
        story = [
            ("run.created", ACTOR, None),
            ("action", ACTOR, None),
            ("check.awaited", "chamberlain", "implement"),
            ("check", "check:flow_qa.review", "implement"),
            ("approval.awaited", "chamberlain", "ship"),
            ("approval", ACTOR, "ship"),
            ("ci.awaited", "chamberlain", "verify"),
            ("ci", "github.check_suite", "verify"),
        ]
        at = [said.index(entry) for entry in story]
        assert at == sorted(at), said
        created = events[at[0]]
        assert created["detail"]["paused"] is True and created["detail"]["pipeline"] == "flow"
        resumed = events[at[1]]
        assert resumed["detail"]["action"] == "resume"
        assert events[at[3]]["detail"]["verdict"] == "pass"
        assert events[at[3]]["detail"]["notes"] == "reviewed implement of flow: pass"
        assert events[at[5]]["detail"]["approval"]["inputs"] == {"x": "staging"}
        assert events[at[6]]["detail"]["sha"] == SHA
        assert events[at[7]]["detail"]["signal"]["state"] == "success"

        def moves(kind: str, step_id: str | None = None) -> list[tuple[str, str]]:
            return [
                (e["detail"]["before"], e["detail"]["after"])
                for e in events
                if e["kind"] == kind and e["step_id"] == step_id
            ]

        assert moves("run.status") == [
            ("pending", "paused"),
            ("paused", "pending"),
            ("pending", "running"),
            ("running", "awaiting_approval"),
            ("awaiting_approval", "running"),
            ("running", "succeeded"),
        ]
        # Each step's way, as logged (the last test below shows what comes
        # between a gated step's job and its gate).
        implement = moves("step.status", "implement")
        assert implement[0] == ("pending", "running")
        assert implement[-1] == ("awaiting_check", "succeeded")
        # Approved, its job is queued (pending), then runs.
        assert [after for _, after in moves("step.status", "ship")] == [
            "awaiting_approval",
            "pending",
            "running",
            "succeeded",
        ]
        verify_moves = moves("step.status", "verify")
        assert verify_moves[0] == ("pending", "running")
        assert verify_moves[-1] == ("awaiting_check", "succeeded")
        for e in events:
            if e["kind"] in ("run.status", "step.status"):
                assert e["actor"] == "chamberlain", e

        # ?kind= filters, comma-separated and repeated; ?limit= keeps the oldest.
        r = await c.get(f"/runs/{run_id}/events?kind=approval,ci&kind=check")
        assert [e["kind"] for e in r.json()["events"]] == ["check", "approval", "ci"]
        assert [e["id"] for e in r.json()["events"]] == [ids[i] for i in (at[3], at[5], at[7])]
        r = await c.get(f"/runs/{run_id}/events?kind=run.created")
        assert [e["id"] for e in r.json()["events"]] == [created["id"]]
        r = await c.get(f"/runs/{run_id}/events?limit=3")
        assert [e["id"] for e in r.json()["events"]] == ids[:3]
        r = await c.get(f"/runs/{run_id}/events?kind=step.status&limit=2")
        assert [e["id"] for e in r.json()["events"]] == [
            e["id"] for e in events if e["kind"] == "step.status"
        ][:2]
        bad = await c.get(f"/runs/{run_id}/events?kind=bogus")
        assert bad.status_code == 400 and "unknown kind 'bogus'" in bad.json()["error"]
        assert (await c.get(f"/runs/{run_id}/events?limit=0")).status_code == 400


async def test_ci_reports_need_a_signature_and_the_awaited_commit(gw: DaemonProcess) -> None:
    async with api_client(gw, TOKEN) as c:
        r = await c.post("/pipeline/ci_only", json={"payload": {}})
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        await run_when(c, run_id, "running", build="awaiting_check")

        # A report for a commit nobody waits for: received, matched to nothing.
        body = check_suite(OTHER_SHA)
        r = await deliver(gw, body, signed(body))
        assert r.status_code == 202, r.text
        assert r.json() == {"matched": False, "sha": OTHER_SHA, "state": "success", "runs": []}

        # The awaited commit, but signed with the wrong secret or not at all: refused.
        body = check_suite(SHA)
        wrong = await deliver(gw, body, signed(body, "not-the-secret"))
        assert wrong.status_code == 403
        assert wrong.json() == {"error": "forbidden"}
        unsigned = {k: v for k, v in signed(body).items() if k != "X-Hub-Signature-256"}
        assert (await deliver(gw, body, unsigned)).status_code == 403

        # None of them moved the step.
        run = (await c.get(f"/runs/{run_id}")).json()
        assert run["status"] == "running"
        assert (run_step(run, "build")["status"], run_step(run, "build")["ci"]["state"]) == (
            "awaiting_check",
            "waiting",
        )
        events = (await c.get(f"/runs/{run_id}/events?kind=ci")).json()["events"]
        assert events == []

        # The signed report for its commit is the one the step takes.
        r = await deliver(gw, body, signed(body))
        assert r.status_code == 202, r.text
        assert r.json()["matched"] is True
        assert r.json()["runs"] == [{"run_id": run_id, "step_id": "build"}]
        await run_when(c, run_id, "succeeded", build="succeeded")


async def test_a_runs_events_come_live_on_the_events_stream(gw: DaemonProcess) -> None:
    def of_run(e: Event, run_id: str) -> bool:
        return e.event == "run" and e.data["run"]["run_id"] == run_id

    async with open_stream(gw.base_url, "/events/stream", gw.headers(), timeout=30) as s:
        assert s.status == 200
        connected = await s.next()
        assert connected is not None and connected.event == "connected"
        async with api_client(gw, TOKEN) as c:
            r = await c.post("/pipeline/checked", json={"payload": {}})
            assert r.status_code == 202, r.text
            run_id = r.json()["run_id"]
            # At most this many events (the run's and its jobs' status changes), each
            # within the stream's deadline, until the run's last change.
            seen: list[Event] = []
            for _ in range(100):
                event = await s.next()
                assert event is not None, seen
                seen.append(event)
                run = event.data.get("run") or {}
                if of_run(event, run_id) and (run["kind"], run.get("after")) == (
                    "run.status",
                    "succeeded",
                ):
                    break
            else:
                raise AssertionError(f"the run did not end within 100 events: {seen}")
            logged = (await c.get(f"/runs/{run_id}/events")).json()["events"]
            steps = (await c.get(f"/runs/{run_id}")).json()["steps"]
    live = [e for e in seen if of_run(e, run_id)]
    # Every event of the durable log came live, in order, with the log's ids.
    assert [e.id for e in live] == [e["id"] for e in logged]
    assert [e.data["run"]["kind"] for e in live] == [e["kind"] for e in logged]
    assert [e.data["run"]["actor"] for e in live] == [e["actor"] for e in logged]
    assert [e.data["text"] for e in live] == [e["text"] for e in logged]
    assert all(e.data["kind"] == "run" for e in live)
    kinds = [e.data["run"]["kind"] for e in live]
    assert kinds[0] == "run.created"
    # The check's verdict came before the step it held back ran.
    verdict = kinds.index("check")
    assert kinds.index("check.awaited") < verdict
    publish = [i for i, e in enumerate(live) if e.data["run"]["step_id"] == "publish"]
    assert publish and min(publish) > verdict
    # The jobs' own status changes come on the same stream, as status events.
    for shown in steps:
        (job_id,) = shown["job_ids"]
        changes = [
            e.data["status"] for e in seen if e.event == "status" and e.data["job_id"] == job_id
        ]
        assert changes[-2:] == ["running", "succeeded"], (shown, changes)


async def test_a_checked_step_is_never_shown_succeeded_before_its_check_passed(
    gw: DaemonProcess,
) -> None:
    async with api_client(gw, TOKEN) as c:
        r = await c.post("/pipeline/checked", json={"payload": {}})
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        await run_when(c, run_id, "succeeded", draft="succeeded", publish="succeeded")
        events = (await c.get(f"/runs/{run_id}/events?kind=step.status")).json()["events"]
    draft = [e for e in events if e["step_id"] == "draft"]
    assert [(e["detail"]["before"], e["detail"]["after"]) for e in draft] == [
        ("pending", "running"),
        ("running", "awaiting_check"),
        ("awaiting_check", "succeeded"),
    ]
