"""The tool catalogue: what an agent is offered for each command, pipeline and action,
under which scope, and the request each tool call makes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from fakes import fake_plugin

from chamberlain.config import Config, parse_config
from chamberlain.plugins.binding import BoundPlugin, bind_plugins
from chamberlain.plugins.manifest import CommandSpec, CommandType
from chamberlain.plugins.registry import Discovery
from chamberlain.routing.planner import build_routing
from chamberlain.web.agent_tools import (
    ACTIONS,
    PERMISSIVE,
    CommandTarget,
    OperationTarget,
    PipelineTarget,
    ToolArgumentError,
    build_catalogue,
    route_call,
)
from chamberlain.web.auth import grants
from chamberlain.web.openapi import SCHEMAS
from chamberlain.web.routes import ROUTES

ROUTES_BY_ID = {route.operation_id: route for route in ROUTES}


def config(tmp_path: Path, pipelines: list[dict[str, Any]] | None = None) -> Config:
    return parse_config({"pipelines": pipelines or []}, base_dir=tmp_path)


def plugins(tmp_path: Path, cfg: Config, *names: str) -> dict[str, BoundPlugin]:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    manifests = tuple(fake_plugin(tmp_path, name, handle_schema=schema) for name in names)
    return dict(bind_plugins(cfg, Discovery(plugins={m.name: m for m in manifests}, skipped=())))


SYNC = {
    "name": "weather",
    "on": "a.handle",
    "execution_mode": "synchronous",
    "steps": [{"id": "fetch", "uses": "b.handle"}, {"id": "tell", "uses": "b.poll"}],
}
ASYNC = {"name": "nightly", "on": "tick.now", "steps": [{"id": "only", "uses": "a.poll"}]}


def test_each_command_is_a_tool_needing_its_type_s_scope(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    catalogue = build_catalogue(plugins(tmp_path, cfg, "a", "b"), (), ROUTES, SCHEMAS)
    poll, handle = catalogue.get("a__poll"), catalogue.get("a__handle")
    assert poll is not None and handle is not None
    assert (poll.scope, poll.read_only, poll.target) == (
        "plugin:ro",
        True,
        CommandTarget("a", "poll"),
    )
    assert (handle.scope, handle.read_only) == ("plugin:rw", False)
    # The manifest's schema, or any object when it declares none.
    assert handle.input_schema["required"] == ["city"]
    assert poll.input_schema == PERMISSIVE
    assert "job_id" in poll.description and "get_job" in poll.description
    assert catalogue.problems == ()


def test_synchronous_pipelines_are_tools_taking_their_first_command_s_schema(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, [SYNC, ASYNC])
    found = plugins(tmp_path, cfg, "a", "b")
    routing = build_routing(cfg.routes, cfg.pipelines, found)
    catalogue = build_catalogue(found, cfg.pipelines, ROUTES, SCHEMAS, step_ids=routing.step_ids)
    tool = catalogue.get("pipeline__weather")
    assert tool is not None
    assert (tool.scope, tool.target) == ("plugin:rw", PipelineTarget("weather"))
    assert tool.input_schema["required"] == ["city"]
    assert "fetch then tell" in tool.description
    assert catalogue.get("pipeline__nightly") is None


def test_actions_take_their_route_s_parameters_and_scope(tmp_path: Path) -> None:
    catalogue = build_catalogue({}, (), ROUTES, SCHEMAS)
    assert {action.name for action in ACTIONS} <= set(catalogue.tools)
    get_job = catalogue.get("get_job")
    approve = catalogue.get("approve_step")
    assert get_job is not None and approve is not None
    assert (get_job.scope, get_job.read_only) == ("jobs:ro", True)
    assert get_job.input_schema["required"] == ["job_id"]
    assert set(get_job.input_schema["properties"]) == {"job_id", "include", "wait"}
    assert get_job.input_schema["additionalProperties"] is False
    assert (approve.scope, approve.read_only) == ("jobs:rw", False)
    assert set(approve.input_schema["properties"]) == {"run_id", "step_id", "comment", "inputs"}
    # A daemon serving without a route offers no tool for it.
    without = build_catalogue({}, (), [r for r in ROUTES if r.operation_id != "cancelJob"], SCHEMAS)
    assert without.get("cancel_job") is None and without.get("get_job") is not None


def test_a_name_two_things_would_share_keeps_its_first_owner(tmp_path: Path) -> None:
    # Plugin "pipeline" has a command "weather": its tool is pipeline__weather, which
    # is also the synchronous pipeline's name.
    sync = {**SYNC, "steps": [{"id": "fetch", "uses": "a.handle"}]}
    cfg = config(tmp_path, [sync])
    found = plugins(tmp_path, cfg, "a")
    manifest = attrs.evolve(
        fake_plugin(tmp_path, "pipeline"),
        commands=(CommandSpec(name="weather", type=CommandType.READ),),
    )
    found.update(bind_plugins(cfg, Discovery(plugins={"pipeline": manifest}, skipped=())))
    catalogue = build_catalogue(found, cfg.pipelines, ROUTES, SCHEMAS)
    kept = catalogue.get("pipeline__weather")
    assert kept is not None and kept.target == CommandTarget("pipeline", "weather")
    (problem,) = catalogue.problems
    assert "pipeline__weather" in problem and "pipeline weather" in problem


def test_a_caller_is_offered_only_what_its_scopes_grant(tmp_path: Path) -> None:
    cfg = config(tmp_path, [SYNC])
    catalogue = build_catalogue(plugins(tmp_path, cfg, "a", "b"), cfg.pipelines, ROUTES, SCHEMAS)

    def offered(*scopes: str) -> set[str]:
        return {tool.name for tool in catalogue.offered(lambda s: grants(scopes, s))}

    assert offered("plugin:ro") == {"a__poll", "b__poll"}
    assert offered("jobs:ro") == {"get_job", "list_jobs", "get_run", "list_runs"}
    assert "cancel_job" in offered("jobs:rw") and "get_job" in offered("jobs:rw")
    assert offered("read:*") == offered("plugin:ro") | offered("jobs:ro")
    assert offered("*") == set(catalogue.tools)
    assert offered() == set()
    names = [tool.name for tool in catalogue.offered(lambda s: True)]
    assert names == sorted(names)


def test_the_catalogue_s_fingerprint_follows_the_tools(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    two = build_catalogue(plugins(tmp_path, cfg, "a", "b"), (), ROUTES, SCHEMAS)
    again = build_catalogue(plugins(tmp_path, cfg, "a", "b"), (), ROUTES, SCHEMAS)
    three = build_catalogue(plugins(tmp_path, cfg, "a", "b", "c"), (), ROUTES, SCHEMAS)
    assert two.fingerprint() == again.fingerprint() != three.fingerprint()


def test_a_command_call_triggers_asynchronously_with_the_arguments_as_payload(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, [SYNC])
    catalogue = build_catalogue(plugins(tmp_path, cfg, "a"), cfg.pipelines, ROUTES, SCHEMAS)
    handle, pipeline = catalogue.get("a__handle"), catalogue.get("pipeline__weather")
    assert handle is not None and pipeline is not None
    call = route_call(handle, {"city": "Oslo"}, ROUTES_BY_ID)
    assert call.operation_id == "triggerPlugin"
    assert call.path == {"plugin": "a", "command": "handle"}
    # Its own job is waited for, not the synchronous pipeline it starts.
    assert call.query == {"async": ("true",)}
    assert call.body == {"payload": {"city": "Oslo"}}
    started = route_call(pipeline, {"city": "Oslo"}, ROUTES_BY_ID)
    assert (started.operation_id, started.path) == ("startPipeline", {"name": "weather"})
    assert started.body == {"payload": {"city": "Oslo"}} and started.query == {}


def test_an_action_call_puts_each_argument_where_its_route_takes_it() -> None:
    catalogue = build_catalogue({}, (), ROUTES, SCHEMAS)
    get_job, list_jobs = catalogue.get("get_job"), catalogue.get("list_jobs")
    approve = catalogue.get("approve_step")
    assert get_job is not None and list_jobs is not None and approve is not None
    call = route_call(get_job, {"job_id": "j1", "wait": "5s"}, ROUTES_BY_ID)
    assert (call.path, call.query, call.body) == ({"job_id": "j1"}, {"wait": ("5s",)}, None)
    listed = route_call(list_jobs, {"limit": 5, "status": ["failed", "dead"]}, ROUTES_BY_ID)
    assert listed.query == {"limit": ("5",), "status": ("failed", "dead")}
    decided = route_call(
        approve, {"run_id": "r", "step_id": "s", "inputs": {"env": "prod"}}, ROUTES_BY_ID
    )
    assert decided.path == {"run_id": "r", "step_id": "s"}
    assert decided.body == {"inputs": {"env": "prod"}}
    assert isinstance(approve.target, OperationTarget)


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("get_job", {}, "job_id: a required argument is missing"),
        ("get_job", {"job_id": 3}, "job_id: expected a non-empty string, got 3"),
        ("get_job", {"job_id": "j", "colour": "red"}, "unknown argument 'colour'"),
        ("list_jobs", {"status": {"a": 1}}, "status: expected a string, number or boolean"),
    ],
)
def test_arguments_no_request_can_carry_are_refused_by_name(
    tool: str, arguments: dict[str, Any], message: str
) -> None:
    found = build_catalogue({}, (), ROUTES, SCHEMAS).get(tool)
    assert found is not None
    with pytest.raises(ToolArgumentError, match=message):
        route_call(found, arguments, ROUTES_BY_ID)


def test_an_interactive_command_s_tool_says_how_to_talk_to_its_job(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    manifest = attrs.evolve(
        fake_plugin(tmp_path, "chat"),
        commands=(CommandSpec(name="session", type=CommandType.WRITE, interactive=True),),
    )
    found = bind_plugins(cfg, Discovery(plugins={"chat": manifest}, skipped=()))
    tool = build_catalogue(found, (), ROUTES, SCHEMAS).get("chat__session")
    assert tool is not None
    assert "send_message" in tool.description and "get_job" in tool.description
