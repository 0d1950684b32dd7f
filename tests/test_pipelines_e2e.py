"""Pipelines, routes and synchronous triggers against the real daemon and plugins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import BUNDLED_PLUGINS, DaemonFactory, DaemonProcess, finished_tree, wait_for

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"

pytestmark = pytest.mark.e2e

CONFIG: dict[str, Any] = {
    "plugin_roots": [str(BUNDLED_PLUGINS), str(E2E_PLUGINS)],
    "plugins": {
        "echo": {"config": {"message": "hello"}, "retry": {"max_attempts": 1}},
        "sys_exec": {"config": {"command": ["echo", "step three"]}},
    },
    "api": {"max_concurrent_sync": 1, "max_sync_timeout": "20s"},
    "routes": [
        {"from": "echo", "event_type": "echo.health", "to": "echo.handle"},
        {"from": "echo", "event_type": "echo.health", "to": "sys_exec.handle"},
        {"from": "emitter", "event_type": "ping", "to": "echo.handle"},
    ],
    "pipelines": [
        {
            "name": "three",
            "on": "echo.poll",
            "execution_mode": "synchronous",
            "timeout": "20s",
            "steps": [
                {
                    "id": "greet",
                    "uses": "echo.handle",
                    "with": {"greeting": "{payload.message} world"},
                },
                {
                    "id": "check",
                    "uses": "echo.handle",
                    "if": {"path": "payload.message", "op": "eq", "value": "hello"},
                },
                {"id": "finish", "uses": "sys_exec"},
            ],
        },
        {
            "name": "gated",
            "on": "manual.gated",
            "execution_mode": "synchronous",
            "steps": [
                {
                    "id": "big",
                    "uses": "echo.handle",
                    "if": {"path": "payload.n", "op": "gt", "value": 100},
                },
                {
                    "id": "after",
                    "uses": "echo.handle",
                    # Never false for these tests' payloads; shown back as written.
                    "if": {
                        "any": [
                            {"path": "payload.n", "op": "exists"},
                            {"not": {"path": "payload.n", "op": "exists"}},
                        ]
                    },
                },
            ],
        },
        {
            "name": "needs_city",
            "on": "manual.city",
            "execution_mode": "synchronous",
            "steps": [{"id": "weather", "uses": "echo.handle", "with": {"city": "{payload.city}"}}],
        },
        {
            "name": "slow",
            "on": "manual.slow",
            "execution_mode": "synchronous",
            "timeout": "1s",
            "steps": [
                {"id": "wait", "uses": "echo.handle", "with": {"mode": "slow", "seconds": 3}}
            ],
        },
        {
            # Holds its caller's slot for seconds: ample time for a second call to
            # find the limit reached, however loaded the machine is.
            "name": "hold",
            "on": "manual.hold",
            "execution_mode": "synchronous",
            "timeout": "30s",
            "steps": [
                {"id": "wait", "uses": "echo.handle", "with": {"mode": "slow", "seconds": 4}}
            ],
        },
    ],
}


@pytest.fixture
async def gw(daemon: DaemonFactory) -> DaemonProcess:
    return await daemon(CONFIG)


def client(d: DaemonProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=d.base_url, headers=d.headers(), timeout=30)


async def test_a_synchronous_trigger_answers_with_the_whole_tree(gw: DaemonProcess) -> None:
    async with client(gw) as c:
        r = await c.post("/trigger/echo/poll", json={"payload": {}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "succeeded"
    assert body["pipeline"] == "three"
    steps = [j["step_id"] for j in body["tree"]]
    assert steps == [None, "greet", "check", "finish"]
    # The last step's result is the answer: sys_exec ran its command.
    assert body["result"]["exit_code"] == 0
    assert body["result"]["stdout"].strip() == "step three"
    greet = body["tree"][1]
    # with: adds to the input's payload (echo.poll's event), as in Ductile.
    assert greet["payload"]["greeting"] == "hello world"
    assert greet["payload"]["message"] == "hello"
    assert greet["payload"]["ductile_upstream_plugin"] == "echo"
    assert greet["parent_job_id"] == body["job_id"]
    assert {j["root_job_id"] for j in body["tree"][1:]} == {body["job_id"]}
    assert body["duration_ms"] > 0


async def test_the_same_pipeline_runs_async_on_request(gw: DaemonProcess) -> None:
    async with client(gw) as c:
        r = await c.post("/trigger/echo/poll?async=true", json={})
    assert r.status_code == 202, r.text
    tree = await finished_tree(gw, r.json()["job_id"], 4)
    assert [j["status"] for j in tree["jobs"]] == ["succeeded"] * 4
    assert [j["step_id"] for j in tree["jobs"]] == [None, "greet", "check", "finish"]


async def test_an_event_fans_out_to_two_routes(gw: DaemonProcess) -> None:
    async with client(gw) as c:
        r = await c.post("/trigger/echo/health", json={})
    assert r.status_code == 202
    tree = await finished_tree(gw, r.json()["job_id"], 3)
    children = sorted((j["plugin"], j["command"]) for j in tree["jobs"][1:])
    assert children == [("echo", "handle"), ("sys_exec", "handle")]
    assert all(j["event"]["type"] == "echo.health" for j in tree["jobs"][1:])
    assert all(j["submitted_by"] == "route:echo" for j in tree["jobs"][1:])


async def test_a_false_if_skips_a_step(gw: DaemonProcess) -> None:
    async with client(gw) as c:
        r = await c.post("/pipeline/gated", json={"payload": {"n": 1}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "succeeded"
    assert [j["step_id"] for j in body["tree"]] == ["after"]
    async with client(gw) as c:
        tree = (await c.get(f"/job/{body['job_id']}/tree?detail=1")).json()
    (note,) = tree["notes"]
    assert note["type"] == "pipeline.step_skipped"
    assert note["step_id"] == "big"


async def test_a_missing_with_path_fails_with_a_clear_error(gw: DaemonProcess) -> None:
    async with client(gw) as c:
        r = await c.post("/pipeline/needs_city", json={"payload": {"town": "x"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "failed"
    assert "payload.city" in body["error"]


async def test_a_slow_pipeline_answers_202_then_finishes(gw: DaemonProcess) -> None:
    async with client(gw) as c:
        r = await c.post("/pipeline/slow", json={})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["timeout_exceeded"] is True
    assert body["status"] == "running"
    tree = await finished_tree(gw, body["job_id"], 1)
    assert tree["jobs"][0]["status"] == "succeeded"


async def test_more_waiting_calls_than_allowed_get_503(gw: DaemonProcess) -> None:
    answers: list[httpx.Response] = []

    async def slow_call() -> None:
        async with client(gw) as c:
            answers.append(await c.post("/pipeline/hold", json={}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_call)
        async with client(gw) as c:

            async def waiting() -> bool:
                stats = (await c.get("/jobs?command=handle&status=running,queued")).json()
                return stats["total"] > 0

            await wait_for(waiting)
            refused = await c.post("/pipeline/hold", json={})
            jobs_before = (await c.get("/jobs")).json()["total"]
    assert refused.status_code == 503
    assert "max_concurrent_sync" in refused.json()["error"]
    assert answers[0].status_code == 200
    async with client(gw) as c:
        assert (await c.get("/jobs")).json()["total"] == jobs_before  # nothing enqueued


async def test_dedupe_on_triggers_and_on_events(gw: DaemonProcess) -> None:
    async with client(gw) as c:
        first = await c.post(
            "/trigger/emitter/poll", json={"dedupe_key": "once", "payload": {"result": 1}}
        )
        second = await c.post(
            "/trigger/emitter/poll", json={"dedupe_key": "once", "payload": {"result": 2}}
        )
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json()["duplicate"] is True
    assert second.json()["job_id"] == first.json()["job_id"]
    ping = {"type": "ping", "payload": {"n": 1}, "dedupe_key": "ping-1"}
    async with client(gw) as c:
        r = await c.post("/trigger/emitter/poll", json={"payload": {"emit": [ping, ping]}})
    tree = await finished_tree(gw, r.json()["job_id"], 2)
    routed = [j for j in tree["jobs"] if j["plugin"] == "echo"]
    assert len(routed) == 1
    assert routed[0]["dedupe_key"] == "ping-1"


async def test_pipelines_are_listed_and_unknown_ones_404(gw: DaemonProcess) -> None:
    async with client(gw) as c:
        listed = (await c.get("/pipelines")).json()["pipelines"]
        missing = await c.post("/pipeline/nope", json={})
        tree = await c.get("/job/nope/tree")
    assert {p["name"] for p in listed} == {"three", "gated", "needs_city", "slow", "hold"}
    (gated,) = (p for p in listed if p["name"] == "gated")
    assert (gated["from_plugin"], gated["if"]) == (None, None)
    assert [step["if"] for step in gated["steps"]] == [
        {"path": "payload.n", "op": "gt", "value": 100},
        {
            "any": [
                {"path": "payload.n", "op": "exists", "value": None},
                {"not": {"path": "payload.n", "op": "exists", "value": None}},
            ]
        },
    ]
    assert missing.status_code == 404
    assert tree.status_code == 404


async def test_every_pipeline_invocation_is_a_run_with_its_steps(gw: DaemonProcess) -> None:
    async with client(gw) as c:
        r = await c.post("/trigger/echo/poll", json={"payload": {}})
        assert r.status_code == 200, r.text
        body = r.json()
        run_id = body["run_id"]
        # The trigger's own job started the run; its steps' jobs carry its id.
        assert [j["run_id"] for j in body["tree"]] == [None, run_id, run_id, run_id]
        run = (await c.get(f"/runs/{run_id}")).json()
        assert (run["pipeline"], run["status"]) == ("three", "succeeded")
        assert [(s["step_id"], s["status"]) for s in run["steps"]] == [
            ("greet", "succeeded"),
            ("check", "succeeded"),
            ("finish", "succeeded"),
        ]
        assert [s["job_ids"] for s in run["steps"]] == [[j["job_id"]] for j in body["tree"][1:]]
        assert run["started_at"] <= run["completed_at"]

        # Started by POST /pipeline: the answer names the run; a step whose if: is
        # false is skipped once the run has settled.
        r = await c.post("/pipeline/gated?async=true", json={"payload": {"n": 5}})
        assert r.status_code == 202, r.text
        gated_id = r.json()["run_id"]

        async def settled() -> dict[str, Any] | None:
            found: dict[str, Any] = (await c.get(f"/runs/{gated_id}")).json()
            return found if found["status"] == "succeeded" else None

        gated = await wait_for(settled)
        assert [(s["step_id"], s["status"]) for s in gated["steps"]] == [
            ("big", "skipped"),
            ("after", "succeeded"),
        ]

        listed = (await c.get("/runs?pipeline=three&status=succeeded,failed")).json()
        assert listed["total"] == 1 and listed["runs"][0]["run_id"] == run_id
        everything = (await c.get("/runs?limit=1")).json()
        assert everything["total"] == 2
        assert [x["run_id"] for x in everything["runs"]] == [gated_id]
        later = (await c.get("/runs?limit=1&offset=1")).json()
        assert [x["run_id"] for x in later["runs"]] == [run_id]
        assert (await c.get("/runs?status=running")).json() == {"runs": [], "total": 0}
        bad = await c.get("/runs?status=bogus")
        assert bad.status_code == 400 and "unknown status 'bogus'" in bad.json()["error"]
        assert (await c.get("/runs/no-such-run")).status_code == 404
