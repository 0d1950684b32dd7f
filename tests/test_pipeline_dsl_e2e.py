"""Ductile's pipeline DSL against the real daemon: steps without ids, nested steps,
split, call, on-hook with notify_on_complete, max_depth and the config root of a
step's if."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import BUNDLED_PLUGINS, DaemonFactory, DaemonProcess, finished_tree, wait_for

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"

pytestmark = pytest.mark.e2e


def emitter(**config: Any) -> dict[str, Any]:
    """Another configured instance of the scripted emitter plugin."""
    return {"uses": "emitter", "config": config}


CONFIG: dict[str, Any] = {
    "plugin_roots": [str(BUNDLED_PLUGINS), str(E2E_PLUGINS)],
    "plugins": {
        "echo": {"retry": {"max_attempts": 1}, "notify_on_complete": True},
        "emitter": {},
        "left": emitter(enabled=True),
        "right": emitter(enabled=False),
        "sink": emitter(),
        "failsink": emitter(),
    },
    "pipelines": [
        {
            "name": "fan",
            "on": "manual.fan",
            "steps": [
                {"uses": "emitter.handle"},
                {
                    "split": [
                        {"uses": "left.handle"},
                        {"steps": [{"uses": "right.handle"}, {"id": "tail", "uses": "emitter"}]},
                    ]
                },
                {"id": "join", "uses": "sink"},
            ],
        },
        {
            "name": "outer",
            "on": "manual.outer",
            "steps": [{"id": "prep", "uses": "emitter"}, {"id": "sub", "call": "inner"}],
        },
        {
            "name": "inner",
            "on": "inner.never",
            "steps": [{"id": "one", "uses": "left"}, {"id": "two", "uses": "right"}],
        },
        {
            "name": "deep",
            "on": "manual.deep",
            "max_depth": 1,
            "steps": [
                {"id": "a1", "uses": "emitter"},
                {"id": "a2", "uses": "emitter"},
                {"id": "a3", "uses": "emitter"},
            ],
        },
        {
            "name": "cfg",
            "on": "manual.cfg",
            "steps": [
                {"id": "start", "uses": "emitter"},
                {
                    "id": "on",
                    "uses": "left",
                    "if": {"path": "config.enabled", "op": "eq", "value": True},
                },
                {
                    "id": "off",
                    "uses": "right",
                    "if": {"path": "config.enabled", "op": "eq", "value": True},
                },
            ],
        },
        {
            "name": "on-fail",
            "on-hook": "job.failed",
            "from_plugin": "echo",
            "steps": [{"uses": "failsink"}, {"id": "then", "uses": "sink"}],
        },
        {
            "name": "on-done",
            "on-hook": "job.completed",
            "if": {"path": "payload.command", "op": "eq", "value": "health"},
            "steps": [{"id": "noted", "uses": "sink"}],
        },
    ],
}


@pytest.fixture
async def gw(daemon: DaemonFactory) -> DaemonProcess:
    return await daemon(CONFIG)


def client(d: DaemonProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=d.base_url, headers=d.headers(), timeout=30)


async def start(d: DaemonProcess, name: str, payload: dict[str, Any] | None = None) -> str:
    async with client(d) as c:
        r = await c.post(f"/pipeline/{name}", json={"payload": payload or {}})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["job_id"]
    return job_id


def steps(tree: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return sorted((j["pipeline"], j["step_id"], j["plugin"]) for j in tree["jobs"])


async def test_nested_steps_and_split_run_with_ductiles_ids(gw: DaemonProcess) -> None:
    root = await start(gw, "fan", {"n": 1})
    tree = await finished_tree(gw, root, 6)
    assert [j["status"] for j in tree["jobs"]] == ["succeeded"] * 6
    # Unnamed steps are step_1, step_2, ... depth first; the step after the split
    # runs once for each branch that finished.
    assert steps(tree) == [
        ("fan", "join", "sink"),
        ("fan", "join", "sink"),
        ("fan", "step_1", "emitter"),
        ("fan", "step_2", "left"),
        ("fan", "step_3", "right"),
        ("fan", "tail", "emitter"),
    ]
    by_id = {j["job_id"]: j for j in tree["jobs"]}
    parents = sorted(
        by_id[j["parent_job_id"]]["step_id"] for j in tree["jobs"] if j["step_id"] == "join"
    )
    assert parents == ["step_2", "tail"]


async def test_a_call_runs_the_called_pipelines_steps(gw: DaemonProcess) -> None:
    root = await start(gw, "outer")
    tree = await finished_tree(gw, root, 3)
    assert steps(tree) == [
        ("inner", "one", "left"),
        ("inner", "two", "right"),
        ("outer", "prep", "emitter"),
    ]
    assert all(j["status"] == "succeeded" for j in tree["jobs"])


async def test_max_depth_stops_a_pipeline_with_a_note(gw: DaemonProcess) -> None:
    root = await start(gw, "deep")
    tree = await finished_tree(gw, root, 2)
    assert [j["step_id"] for j in tree["jobs"]] == ["a1", "a2"]

    async def noted() -> list[dict[str, Any]]:
        async with client(gw) as c:
            body = (await c.get(f"/job/{root}/tree?detail=1")).json()
        return [n for n in body["notes"] if n["type"] == "routing.depth_exceeded"]

    (note,) = await wait_for(noted)
    assert (note["depth"], note["limit"]) == (1, 1)
    assert note["job_id"] == tree["jobs"][1]["job_id"]


async def test_a_step_if_reads_its_plugins_config(gw: DaemonProcess) -> None:
    root = await start(gw, "cfg")
    tree = await finished_tree(gw, root, 2)
    assert [j["step_id"] for j in tree["jobs"]] == ["start", "on"]

    async def skipped() -> list[str]:
        async with client(gw) as c:
            body = (await c.get(f"/job/{root}/tree?detail=1")).json()
        return [n["step_id"] for n in body["notes"] if n["type"] == "pipeline.step_skipped"]

    assert await wait_for(skipped) == ["off"]


async def hook_jobs(d: DaemonProcess, plugin: str, count: int) -> list[dict[str, Any]]:
    """The ended jobs of ``plugin`` once there are ``count`` of them."""
    async with client(d) as c:

        async def found() -> list[dict[str, Any]] | None:
            body = (await c.get("/jobs", params={"plugin": plugin, "detail": "full"})).json()
            jobs: list[dict[str, Any]] = body["jobs"]
            ended = all(j["status"] not in ("queued", "running") for j in jobs)
            return jobs if len(jobs) >= count and ended else None

        result: list[dict[str, Any]] = await wait_for(found, timeout=30)
        return result


async def test_a_failed_job_fires_its_job_failed_hook_once(gw: DaemonProcess) -> None:
    async with client(gw) as c:
        r = await c.post("/trigger/echo/handle", json={"payload": {"mode": "fatal"}})
    assert r.status_code == 202, r.text
    failed_id = r.json()["job_id"]
    (hook,) = await hook_jobs(gw, "failsink", 1)
    assert hook["event"]["type"] == "job.failed"
    assert hook["event"]["payload"] == {
        **hook["event"]["payload"],
        "job_id": failed_id,
        "plugin": "echo",
        "command": "handle",
        "status": "failed",
    }
    assert "asked to fail" in hook["event"]["payload"]["error"]
    assert (hook["pipeline"], hook["parent_job_id"], hook["submitted_by"]) == (
        "on-fail",
        None,
        "hook:on-fail",
    )
    # The hook pipeline runs to its end, in a tree of its own.
    tree = await finished_tree(gw, hook["job_id"], 2)
    assert [(j["plugin"], j["step_id"]) for j in tree["jobs"]] == [
        ("failsink", "step_1"),
        ("sink", "then"),
    ]
    # The failed job's tree notes that its hook fired; no second hook job appears.
    failed = await finished_tree(gw, failed_id, 1)
    assert [n["type"] for n in failed["notes"]] == ["job.failed"]
    assert len(await hook_jobs(gw, "failsink", 1)) == 1


async def test_a_succeeded_job_fires_job_completed_when_the_if_holds(gw: DaemonProcess) -> None:
    async with client(gw) as c:
        r = await c.post("/trigger/echo/health", json={})
        assert r.status_code == 202, r.text
        healthy = r.json()["job_id"]
    (hook,) = await hook_jobs(gw, "sink", 1)
    assert (hook["pipeline"], hook["step_id"]) == ("on-done", "noted")
    assert hook["event"]["payload"]["job_id"] == healthy
    assert hook["event"]["payload"]["status"] == "succeeded"
