"""Events, routes and pipelines through the real actor tree, on a mock clock.

The fake plugins answer with the events and results their payload asks for, so a
payload can script a whole workflow: ``{"emit": [{"type": "a.done", "payload": {...}}]}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from fakes import FakePlugins, fake_plugin, make_daemon, submit

from chamberlain.actors.router import Router
from chamberlain.config import ConfigError, parse_config
from chamberlain.daemon.tree import Daemon
from chamberlain.plugins.binding import bind_plugins
from chamberlain.plugins.registry import Discovery
from chamberlain.records import Job, JobStatus, NewJob, Tree
from chamberlain.routing.planner import MAX_DEPTH, build_routing


def emit(*events: dict[str, Any]) -> dict[str, Any]:
    return {"emit": list(events)}


async def run_tree(daemon: Daemon, job: NewJob) -> Tree:
    (root,) = await submit(daemon, job)
    with trio.fail_after(3600):
        tree = await daemon.gateway.wait_tree(root)
    assert tree is not None
    return tree


def by_step(tree: Tree) -> dict[str | None, list[Job]]:
    out: dict[str | None, list[Job]] = {}
    for job in tree.jobs:
        out.setdefault(job.step_id, []).append(job)
    return out


THREE_STEPS = {
    "pipelines": [
        {
            "name": "three",
            "on": "a.poll",
            "steps": [
                {
                    "id": "first",
                    "uses": "b",
                    "with": {
                        "n": "{payload.n}",
                        "label": "n={payload.n}",
                        "emit": "{payload.emit}",
                    },
                },
                {"id": "second", "uses": "a.handle"},
                {"id": "third", "uses": "b.handle", "baggage": {"who": "{payload.who}"}},
            ],
        }
    ]
}


async def test_a_three_step_pipeline_runs_in_order_with_lineage(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake, config=THREE_STEPS)
    # Each step's payload scripts the next one's input.
    third_input = {"who": "me", "result": "all done"}
    second_input = emit({"type": "a.second", "payload": third_input})
    root_payload = emit(
        {
            "type": "a.polled",
            "payload": {"n": 7, **emit({"type": "b.first", "payload": second_input})},
        }
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        tree = await run_tree(daemon, NewJob(plugin="a", command="poll", payload=root_payload))
        await daemon.shutdown()
    steps = by_step(tree)
    (root,) = steps[None]
    (first,) = steps["first"]
    (second,) = steps["second"]
    (third,) = steps["third"]
    assert [(j.status, j.last_error) for j in tree.jobs] == [(JobStatus.SUCCEEDED, None)] * 4
    assert [j.id for j in tree.jobs] == [root.id, first.id, second.id, third.id]
    # with: a bare reference keeps its type, mixed text interpolates
    assert first.payload["n"] == 7
    assert first.payload["label"] == "n=7"
    assert (first.plugin, first.command) == ("b", "handle")
    # lineage
    assert first.parent_job_id == root.id
    assert second.parent_job_id == first.id
    assert third.parent_job_id == second.id
    assert {j.root_job_id for j in (first, second, third)} == {root.id}
    assert [j.depth for j in tree.jobs] == [0, 1, 2, 3]
    assert {j.pipeline for j in (first, second, third)} == {"three"}
    # the step's input event came from the previous step, with core-assigned fields
    assert second.event is not None and second.event["type"] == "b.first"
    assert second.source_event_id == second.event["event_id"]
    assert second.event["source"] == "b"
    assert second.event["timestamp"].endswith("Z")
    # context carries Ductile's keys for the plugin, the pipeline, the step and the
    # run, and baggage onwards
    requests = {r["job_id"]: r for r in fake.requests}
    run = first.context["ductile"]["pipeline_instance_id"]
    control = {"pipeline_instance_id": run, "route_depth": 2, "route_max_depth": 3}
    assert requests[second.id]["context"] == {
        "ductile_plugin": "a",
        "ductile": control,
        "ductile_pipeline": "three",
        "ductile_step_id": "second",
        "ductile_pipeline_instance_id": run,
        "ductile_route_depth": 2,
        "ductile_route_max_depth": 3,
    }
    assert requests[third.id]["context"]["who"] == "me"
    assert requests[third.id]["context"]["ductile_pipeline_instance_id"] == run


async def test_routes_fan_out_to_every_match(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = {
        "routes": [
            {"from": "a", "event_type": "a.ping", "to": "b"},
            {"from": "a", "event_type": "a.ping", "to": "c.poll"},
            {"from": "a", "event_type": "a.other", "to": "b"},
            {"from": "b", "event_type": "a.ping", "to": "c"},
        ]
    }
    daemon = make_daemon(tmp_path, fake, config=config, plugins=("a", "b", "c"))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        tree = await run_tree(
            daemon,
            NewJob(
                plugin="a",
                command="poll",
                payload=emit({"type": "a.ping", "payload": {"x": 1}}, {"type": "a.unrouted"}),
            ),
        )
        await daemon.shutdown()
    children = sorted((j.plugin, j.command) for j in tree.jobs[1:])
    assert children == [("b", "handle"), ("c", "poll")]
    assert all(j.payload == {"x": 1, "ductile_upstream_plugin": "a"} for j in tree.jobs[1:])
    assert all(j.submitted_by == "route:a" for j in tree.jobs[1:])


async def test_a_false_if_skips_the_step_and_the_next_gets_its_input(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = {
        "pipelines": [
            {
                "name": "gated",
                "on": "a.poll",
                "steps": [
                    {
                        "id": "big",
                        "uses": "b",
                        "if": {"path": "payload.n", "op": "gt", "value": 10},
                    },
                    {"id": "always", "uses": "a.handle"},
                ],
            }
        ]
    }
    daemon = make_daemon(tmp_path, fake, config=config)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        tree = await run_tree(
            daemon,
            NewJob(plugin="a", command="poll", payload=emit({"type": "t", "payload": {"n": 3}})),
        )
        await daemon.shutdown()
    steps = by_step(tree)
    assert "big" not in steps
    (always,) = steps["always"]
    assert always.payload == {"n": 3, "ductile_upstream_plugin": "a"}
    assert always.parent_job_id == steps[None][0].id
    (note,) = tree.notes
    assert note["type"] == "pipeline.step_skipped"
    assert note["step_id"] == "big"
    assert "payload.n gt 10" in note["reason"]


async def test_a_missing_with_path_fails_the_step_visibly(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = {
        "pipelines": [
            {
                "name": "broken",
                "on": "a.poll",
                "steps": [
                    {"id": "needs_city", "uses": "b", "with": {"city": "{payload.city}"}},
                    {"id": "after", "uses": "a.handle"},
                ],
            }
        ]
    }
    daemon = make_daemon(tmp_path, fake, config=config)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        tree = await run_tree(
            daemon, NewJob(plugin="a", command="poll", payload={"result": {"town": "x"}})
        )
        await daemon.shutdown()
    steps = by_step(tree)
    (failed,) = steps["needs_city"]
    assert failed.status is JobStatus.FAILED
    assert failed.last_error is not None
    assert "with:" in failed.last_error and "payload.city" in failed.last_error
    assert "after" not in steps  # the pipeline stops at a failed step
    assert failed.id not in fake.attempts  # it never ran


async def test_a_step_without_events_hands_on_its_result(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = {"pipelines": [{"name": "p", "on": "a.poll", "steps": [{"id": "s", "uses": "b"}]}]}
    daemon = make_daemon(tmp_path, fake, config=config)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        tree = await run_tree(
            daemon, NewJob(plugin="a", command="poll", payload={"result": {"total": 42}})
        )
        await daemon.shutdown()
    (step,) = by_step(tree)["s"]
    assert step.payload == {"total": 42, "ductile_upstream_plugin": "a"}
    assert step.event is not None and step.event["type"] == "a.poll.result"


async def test_an_event_type_starts_a_pipeline(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = {
        "pipelines": [
            {"name": "on_event", "on": "weather.changed", "steps": [{"id": "s", "uses": "b"}]}
        ]
    }
    daemon = make_daemon(tmp_path, fake, config=config)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        tree = await run_tree(
            daemon,
            NewJob(
                plugin="a",
                command="poll",
                payload=emit({"type": "weather.changed", "payload": {"c": 1}}, {"type": "noise"}),
            ),
        )
        await daemon.shutdown()
    (step,) = by_step(tree)["s"]
    assert step.payload == {"c": 1, "ductile_upstream_plugin": "a"}


async def test_event_dedupe_keys_suppress_a_second_job(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    config = {"routes": [{"from": "a", "event_type": "a.ping", "to": "b"}]}
    daemon = make_daemon(tmp_path, fake, config=config)
    ping = {"type": "a.ping", "payload": {"sleep": 100}, "dedupe_key": "k1"}
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        tree = await run_tree(daemon, NewJob(plugin="a", command="poll", payload=emit(ping, ping)))
        await daemon.shutdown()
    routed = [j for j in tree.jobs if j.plugin == "b"]
    assert len(routed) == 1
    assert routed[0].dedupe_key == "k1"


async def test_a_router_crash_loses_no_step(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake, config=THREE_STEPS)
    original = Router._route_all
    crashes = 0

    async def flaky(self: Router) -> None:
        nonlocal crashes
        if crashes < 2:
            crashes += 1
            raise RuntimeError("injected router fault")
        await original(self)

    monkeypatch.setattr(Router, "_route_all", flaky)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        tree = await run_tree(
            daemon,
            NewJob(
                plugin="a",
                command="poll",
                payload=emit({"type": "t", "payload": {"n": 1, "emit": []}}),
            ),
        )
        stats = daemon.root.statistics()
        await daemon.shutdown()
    assert [j.step_id for j in tree.jobs] == [None, "first", "second", "third"]
    assert stats.restart_counts()["root/router"] == 2


async def test_runaway_event_loops_stop_at_the_depth_limit(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = FakePlugins()
    # a.handle answers with the event it was given, which routes back to a.handle.
    config = {"routes": [{"from": "a", "event_type": "loop", "to": "a"}]}
    daemon = make_daemon(tmp_path, fake, config=config)
    loop = {"type": "loop", "payload": {"reemit": True}}
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        tree = await run_tree(daemon, NewJob(plugin="a", command="poll", payload=emit(loop)))
        await daemon.shutdown()
    assert max(j.depth for j in tree.jobs) == MAX_DEPTH
    assert any(n["type"] == "routing.depth_exceeded" for n in tree.notes)


async def test_started_by_hand(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    fake = FakePlugins()
    daemon = make_daemon(tmp_path, fake, config=THREE_STEPS)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        routing = daemon.gateway.routing
        pipeline = routing.pipeline("three")
        assert pipeline is not None
        plan = routing.start(pipeline, {"n": 2, "emit": []}, submitted_by="api_key", now=0.0)
        enqueued = await daemon.gateway.enqueue_plan(plan)
        root = enqueued[0].job
        with trio.fail_after(3600):
            tree = await daemon.gateway.wait_tree(root.id)
        await daemon.shutdown()
    assert tree is not None
    assert [j.step_id for j in tree.jobs] == ["first", "second", "third"]
    assert tree.jobs[0].payload["label"] == "n=2"
    assert tree.jobs[0].root_job_id is None


def routing_problems(tmp_path: Path, config: dict[str, Any]) -> list[str]:
    cfg = parse_config(config, base_dir=tmp_path)
    plugins = bind_plugins(
        cfg, Discovery(plugins={n: fake_plugin(tmp_path, n) for n in ("a", "b")}, skipped=())
    )
    with pytest.raises(ConfigError) as info:
        build_routing(cfg.routes, cfg.pipelines, plugins)
    return list(info.value.problems)


def test_start_up_validation_names_each_problem(tmp_path: Path) -> None:
    problems = routing_problems(
        tmp_path,
        {
            "routes": [{"from": "ghost", "event_type": "x", "to": "b.nope"}],
            "pipelines": [
                {
                    "name": "p",
                    "on": "a.poll",
                    "steps": [
                        {"id": "s", "uses": "zz"},
                        {
                            "id": "s",
                            "uses": "b",
                            "with": {"x": "{payload..x}", "y": "{nowhere.y}", "z": "{open"},
                        },
                        {"id": "t", "uses": "b", "if": {"path": "payload x", "op": "eq"}},
                    ],
                },
                {
                    "name": "p",
                    "on": "x",
                    "execution_mode": "synchronous",
                    "steps": [{"id": "u", "uses": "b"}],
                },
            ],
        },
    )
    text = "\n".join(problems)
    assert "routes[0].from: no loaded plugin named 'ghost'" in text
    assert "routes[0].to: 'b.nope' is not a loaded plugin[.command]" in text
    assert "pipelines[0].steps[0].uses: 'zz'" in text
    assert "pipelines[0].steps[1].id: duplicate step id 's'" in text
    assert "pipelines[0].steps[1].with: bad path 'payload..x'" in text
    assert "pipelines[0].steps[1].with: bad path 'nowhere.y'" in text
    assert "pipelines[0].steps[1].with: unbalanced brace" in text
    assert "pipelines[0].steps[2].if.path: bad path 'payload x'" in text
    assert "pipelines[1].name: duplicate pipeline name 'p'" in text
    assert "pipelines[1].on: a synchronous pipeline starts from a trigger" in text


def test_start_up_validation_names_each_run_control_problem(tmp_path: Path) -> None:
    problems = routing_problems(
        tmp_path,
        {
            "pipelines": [
                {
                    "name": "gated",
                    "on": "a.poll",
                    "steps": [
                        {"id": "checked", "uses": "b", "check": {"uses": "b.nope"}},
                        {
                            "id": "asked",
                            "uses": "b",
                            "approval": {"inputs_schema": {"type": "no-such-type"}},
                        },
                        {
                            "id": "timed",
                            "uses": "b",
                            "approval": {
                                "timeout": "1h",
                                "on_timeout": "approve",
                                "inputs_schema": {"type": "object", "required": ["env", "why"]},
                            },
                        },
                    ],
                },
            ],
        },
    )
    assert problems[0] == (
        "pipelines[0].steps[0].check.uses: 'b.nope' is not a loaded plugin[.command]"
    )
    assert problems[1].startswith("pipelines[0].steps[1].approval.inputs_schema: ")
    assert problems[2:] == [
        "pipelines[0].steps[2].approval.on_timeout: approve gives no inputs,"
        " but inputs_schema requires env, why"
    ]


def test_pipelines_that_start_each_other_are_refused(tmp_path: Path) -> None:
    problems = routing_problems(
        tmp_path,
        {
            "pipelines": [
                {"name": "ping", "on": "a.poll", "steps": [{"id": "s", "uses": "b.poll"}]},
                {"name": "pong", "on": "b.poll", "steps": [{"id": "s", "uses": "a.poll"}]},
            ]
        },
    )
    assert any("cycle" in p and "ping" in p and "pong" in p for p in problems)
