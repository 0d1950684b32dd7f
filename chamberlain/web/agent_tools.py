"""The tools an agent is offered: every command, synchronous pipeline and job action.

The MCP server (:mod:`chamberlain.web.mcp_endpoint`) and the discovery routes
(:mod:`chamberlain.web.discovery`) both describe the gateway as tools, and both
must agree on each tool's name, schema and the scope it needs, or an agent would
be offered a tool under one surface that the other refuses.  This module is that
one description, in plain synchronous code:

- :func:`build_catalogue` turns the loaded plugins, the pipelines and the route
  table into a :class:`Catalogue` of :class:`AgentTool`;
- :meth:`Catalogue.offered` is what one caller may call: a tool is listed only when
  the caller's scopes grant the scope it needs, so nothing is listed that is then
  refused;
- :func:`route_call` turns a tool's arguments into the HTTP route it stands for, so
  a tool call is checked and answered by the very handler the API uses.

A command tool is ``<plugin>__<command>``; a synchronous pipeline is
``pipeline__<name>``; the job and run actions have fixed names (:data:`ACTIONS`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs

from chamberlain.config import PipelineConfig
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.plugins.manifest import CommandType
from chamberlain.web.auth import PLUGIN_RW, Scoped, command_scope
from chamberlain.web.spec import Route

__all__ = [
    "ACTIONS",
    "PERMISSIVE",
    "Action",
    "AgentTool",
    "Catalogue",
    "CommandTarget",
    "OperationTarget",
    "PipelineTarget",
    "RouteCall",
    "ToolArgumentError",
    "build_catalogue",
    "pipeline_tool_name",
    "route_call",
    "tool_name",
]

#: Between a plugin's name and its command's in a tool name.  Names may hold
#: underscores themselves, so two names could make one tool name: such a clash is
#: refused by :func:`build_catalogue`.
SEPARATOR = "__"

#: The schema of a command whose manifest declares none: any JSON object.
PERMISSIVE: Mapping[str, Any] = MappingProxyType({"type": "object", "additionalProperties": True})


def tool_name(plugin: str, command: str) -> str:
    """The tool that triggers ``plugin``'s ``command``."""
    return f"{plugin}{SEPARATOR}{command}"


def pipeline_tool_name(pipeline: str) -> str:
    """The tool that runs the synchronous pipeline ``pipeline`` and answers its tree."""
    return f"pipeline{SEPARATOR}{pipeline}"


class ToolArgumentError(ValueError):
    """A tool's arguments cannot be turned into its route's request: the message names
    the argument, for the agent to correct its call."""


@attrs.frozen
class CommandTarget:
    """The tool triggers a plugin's command and waits for its job."""

    plugin: str
    command: str


@attrs.frozen
class PipelineTarget:
    """The tool starts a synchronous pipeline and waits for its tree."""

    pipeline: str


@attrs.frozen
class OperationTarget:
    """The tool is one route of the API (a job or run action), called as it stands."""

    operation_id: str


Target = CommandTarget | PipelineTarget | OperationTarget


@attrs.frozen(kw_only=True)
class AgentTool:
    """One tool: what an agent sees of it, and what it stands for."""

    name: str
    title: str
    description: str
    input_schema: Mapping[str, Any]
    #: The scope a caller needs to call it, and so to be offered it.
    scope: str
    #: True when calling it changes nothing (a read command, a GET route).
    read_only: bool
    target: Target


@attrs.frozen(kw_only=True)
class Action:
    """A job or run action offered as a tool: the route it calls, under a fixed name."""

    name: str
    operation_id: str
    title: str


#: The actions every agent may be offered, by the scope their routes need.
ACTIONS: tuple[Action, ...] = (
    Action(name="get_job", operation_id="getJob", title="Get a job"),
    Action(name="list_jobs", operation_id="listJobs", title="List jobs"),
    Action(name="cancel_job", operation_id="cancelJob", title="Cancel a job"),
    Action(name="send_message", operation_id="sendMessage", title="Message an interactive job"),
    Action(name="get_run", operation_id="getRun", title="Get a pipeline run"),
    Action(name="list_runs", operation_id="listRuns", title="List pipeline runs"),
    Action(name="approve_step", operation_id="approveStep", title="Approve a run's step"),
    Action(name="reject_step", operation_id="rejectStep", title="Reject a run's step"),
    Action(name="reload_config", operation_id="reloadConfig", title="Reload the configuration"),
)


@attrs.frozen
class Catalogue:
    """Every tool the gateway has now, by name, and what could not be offered."""

    tools: Mapping[str, AgentTool]
    #: Why a command or pipeline has no tool (a name clash), one line each.
    problems: tuple[str, ...] = ()

    def get(self, name: str) -> AgentTool | None:
        """The tool called ``name``, or None."""
        return self.tools.get(name)

    def offered(self, can: Callable[[str], bool]) -> tuple[AgentTool, ...]:
        """The tools a caller holding the scopes ``can`` grants may call, by name."""
        return tuple(tool for _, tool in sorted(self.tools.items()) if can(tool.scope))

    def fingerprint(self) -> tuple[tuple[str, str], ...]:
        """What changes when the tool list does: compared to tell clients it changed."""
        return tuple((name, repr(tool)) for name, tool in sorted(self.tools.items()))


def _plain(value: Any) -> Any:
    # Manifests and route specs may hold read-only mappings; schemas go out as JSON.
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _command_tools(plugins: Mapping[str, BoundPlugin]) -> Iterable[AgentTool]:
    for plugin_name in sorted(plugins):
        plugin = plugins[plugin_name]
        for spec in plugin.manifest.commands:
            read = spec.type is CommandType.READ
            about = spec.description or f"The {spec.name} command of {plugin_name}."
            how = (
                " It is interactive: the call answers its job_id while the job waits"
                " for input; send_message talks to it, get_job (include: messages)"
                " shows its answers."
                if spec.interactive
                else " Answers the job's result; if the job is still running when the"
                " call times out, answers its job_id: call get_job with it later."
            )
            yield AgentTool(
                name=tool_name(plugin_name, spec.name),
                title=f"{plugin_name} {spec.name}",
                description=(
                    f"{about}\n\nRuns as a durable job of plugin {plugin_name}"
                    f" ({spec.type.value} command). The arguments are the job's payload.{how}"
                ),
                input_schema=_plain(spec.input_schema) if spec.input_schema else PERMISSIVE,
                scope=command_scope(spec.type),
                read_only=read,
                target=CommandTarget(plugin_name, spec.name),
            )


def _pipeline_tools(
    pipelines: Sequence[PipelineConfig],
    plugins: Mapping[str, BoundPlugin],
    step_ids: Callable[[str], Sequence[str]],
) -> Iterable[AgentTool]:
    for pipeline in pipelines:
        if not pipeline.synchronous:
            continue
        steps = " then ".join(step_ids(pipeline.name))
        schema: Mapping[str, Any] = PERMISSIVE
        starts = ""
        if pipeline.on is not None:
            starts = f" It starts as {pipeline.on} does."
            plugin_name, _, command = pipeline.on.partition(".")
            plugin = plugins.get(plugin_name)
            spec = plugin.command(command) if plugin is not None else None
            if spec is not None and spec.input_schema:
                schema = _plain(spec.input_schema)
        yield AgentTool(
            name=pipeline_tool_name(pipeline.name),
            title=f"pipeline {pipeline.name}",
            description=(
                f"Runs pipeline {pipeline.name} ({steps}) on the arguments as its payload"
                f" and answers every job of its tree and the last step's result.{starts}"
                " If the pipeline is still running when the call times out, answers its"
                " job_id and run_id: call get_run or get_job with them later."
            ),
            input_schema=schema,
            scope=PLUGIN_RW,
            read_only=False,
            target=PipelineTarget(pipeline.name),
        )


def _operation_schema(route: Route, schemas: Mapping[str, Any]) -> dict[str, Any]:
    """The tool arguments a route takes: its path and query parameters and its body's
    properties, under their own names."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in route.params:
        schema = {**_plain(param.schema), "description": param.description}
        properties[param.name] = schema
        if param.required:
            required.append(param.name)
    if route.body is not None:
        body = schemas.get(route.body.schema, {})
        for name, schema in _plain(body.get("properties", {})).items():
            properties.setdefault(name, schema)
        required.extend(name for name in body.get("required", ()) if name not in required)
    answer: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        answer["required"] = required
    return answer


def _action_tools(routes: Sequence[Route], schemas: Mapping[str, Any]) -> Iterable[AgentTool]:
    by_id = {route.operation_id: route for route in routes}
    for action in ACTIONS:
        route = by_id.get(action.operation_id)
        if route is None or not isinstance(route.access, Scoped):
            continue  # a daemon serving without that route offers no tool for it
        description = route.summary
        if route.description:
            description = f"{route.summary}.\n\n{route.description}"
        yield AgentTool(
            name=action.name,
            title=action.title,
            description=description,
            input_schema=_operation_schema(route, schemas),
            scope=route.access.scope,
            read_only=route.method == "GET",
            target=OperationTarget(route.operation_id),
        )


def build_catalogue(
    plugins: Mapping[str, BoundPlugin],
    pipelines: Sequence[PipelineConfig],
    routes: Sequence[Route],
    schemas: Mapping[str, Any],
    *,
    step_ids: Callable[[str], Sequence[str]] = lambda pipeline: (),
) -> Catalogue:
    """Every tool: the actions first, then each command, then each synchronous pipeline.

    ``step_ids(pipeline)`` names the steps of a pipeline that run a job, in order
    (:meth:`~chamberlain.routing.planner.Routing.step_ids`), for its description.

    A name already taken keeps its first owner, and the one left out is named in
    :attr:`Catalogue.problems`, for the daemon to log: an agent must never reach
    one thing under the name of another.
    """
    tools: dict[str, AgentTool] = {}
    problems: list[str] = []
    every = (
        *_action_tools(routes, schemas),
        *_command_tools(plugins),
        *_pipeline_tools(pipelines, plugins, step_ids),
    )
    for tool in every:
        held = tools.get(tool.name)
        if held is not None:
            problems.append(
                f"tool {tool.name!r} ({tool.title}) is not offered: {held.title} has that name"
            )
            continue
        tools[tool.name] = tool
    return Catalogue(MappingProxyType(tools), tuple(problems))


@attrs.frozen(kw_only=True)
class RouteCall:
    """A request to one route of the API, as a tool call makes it."""

    operation_id: str
    path: Mapping[str, str] = attrs.field(factory=dict)
    query: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    #: The JSON body; None sends none.
    body: Mapping[str, Any] | None = None


def _query_value(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, bool):
        return ("true" if value else "false",)
    if isinstance(value, int | float | str):
        return (str(value),)
    if isinstance(value, list) and all(isinstance(item, str | int | float) for item in value):
        return tuple(str(item) for item in value)
    raise ToolArgumentError(f"{name}: expected a string, number or boolean, got {value!r}")


def _path_value(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ToolArgumentError(f"{name}: expected a non-empty string, got {value!r}")
    return value


def route_call(
    tool: AgentTool,
    arguments: Mapping[str, Any],
    routes: Mapping[str, Route],
) -> RouteCall:
    """The request ``tool`` makes for ``arguments``; :class:`ToolArgumentError` when
    they cannot make one (the route itself checks what they say).

    A command is triggered with ``?async=true``: the tool waits for its own job, not
    for a synchronous pipeline it may start (that pipeline has a tool of its own).
    """
    target = tool.target
    if isinstance(target, CommandTarget):
        return RouteCall(
            operation_id="triggerPlugin",
            path={"plugin": target.plugin, "command": target.command},
            query={"async": ("true",)},
            body={"payload": dict(arguments)},
        )
    if isinstance(target, PipelineTarget):
        return RouteCall(
            operation_id="startPipeline",
            path={"name": target.pipeline},
            body={"payload": dict(arguments)},
        )
    route = routes[target.operation_id]
    params = {param.name: param for param in route.params}
    path: dict[str, str] = {}
    query: dict[str, tuple[str, ...]] = {}
    body: dict[str, Any] = {}
    for name, value in arguments.items():
        param = params.get(name)
        if param is None and route.body is None:
            known = ", ".join(params) or "none"
            raise ToolArgumentError(f"unknown argument {name!r} (the arguments are: {known})")
        if param is None:
            body[name] = value
        elif param.location == "path":
            path[name] = _path_value(name, value)
        else:
            query[name] = _query_value(name, value)
    missing = [param.name for param in route.params if param.required and param.name not in path]
    if missing:
        raise ToolArgumentError(f"{missing[0]}: a required argument is missing")
    return RouteCall(
        operation_id=route.operation_id,
        path=path,
        query=query,
        body=body if route.body is not None else None,
    )
