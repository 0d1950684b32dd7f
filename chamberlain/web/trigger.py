"""``POST /trigger/{plugin}/{command}``: turning a request into a durable job.

The decisions are plain functions: :func:`parse_trigger_body` validates the body
(decoded by :mod:`chamberlain.web.intake`), and :func:`build_job` makes the
:class:`NewJob` (wrapping ``handle`` payloads in an ``api.trigger`` event stamped
by the daemon's clock).  :func:`trigger` strings them together around the one
await that matters: the enqueue, which returns only once the job is committed.
A trigger of the command a synchronous pipeline starts from then waits for the
pipeline (see :mod:`chamberlain.web.synchronous`).  The module owns its two
routes (``/trigger/...`` and its alias ``/plugin/...``) and their schemas.

Check order: 401 (no valid token, before this module runs), 404 (unknown plugin or
command), 403 (the token may not run this type of command), 400 (a query string),
413/400 (the body, then its payload against the command's ``input_schema``, then
its ``mcp_servers`` against the registry), 503 (the daemon is not accepting work, no
synchronous slot is free, or the store did not answer), then 202 (or, after a
synchronous pipeline, 200 with its tree or 202 past its timeout).  A request that
is wrong is refused the same way whatever state the daemon is in.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from chamberlain.callback_rules import CallbackRules
from chamberlain.config.units import parse_duration
from chamberlain.jsoncodec import json_kind
from chamberlain.loops import (
    MAX_FEEDBACK_COMMANDS,
    MAX_ITERATIONS_LIMIT,
    LoopDefaults,
    LoopError,
    parse_loop,
)
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.plugins.input_schema import InvalidPayload
from chamberlain.plugins.manifest import CommandSpec
from chamberlain.plugins.mcp_servers import parse_server_names
from chamberlain.records import NewJob, PullRequestAsk, Worktree, rfc3339
from chamberlain.repositories import check_branch
from chamberlain.web.auth import ByCommand
from chamberlain.web.errors import bad_request, not_found
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import DISK_FULL, TOO_LARGE, decode_json_object, not_accepting
from chamberlain.web.jobs import POLL_AFTER_DOC, accepted_headers
from chamberlain.web.mcp_registry import MCP_SERVERS_OPTION, require_mcp_servers
from chamberlain.web.pull_requests import parse_pull_request_ask
from chamberlain.web.spec import (
    STRING,
    BodySpec,
    Param,
    ResponseSpec,
    Route,
    object_schema,
    ref,
)
from chamberlain.web.synchronous import (
    ASYNC_PARAM,
    SYNC_DONE_DOC,
    SYNC_TIMEOUT_DOC,
    SYNC_UNAVAILABLE,
    answer_synchronously,
    sync_slot,
    wants_async,
)
from chamberlain.web.workspaces import require_workspace_room, require_worktree

#: The command whose payload arrives wrapped in an event, as Ductile expects.
HANDLE = "handle"
EVENT_TYPE = "api.trigger"
EVENT_SOURCE = "api"

MAX_ATTEMPTS_LIMIT = 100
DEDUPE_KEY_MAX = 200

BODY_FIELDS = (
    "payload",
    "timeout",
    "max_attempts",
    "dedupe_key",
    "callback_url",
    "mcp_servers",
    "loop",
    "workspace",
    "pull_request",
)


@attrs.frozen(kw_only=True)
class TriggerOptions:
    """A validated trigger body.  None means "the plugin's default"."""

    payload: Mapping[str, Any] = attrs.field(factory=dict)
    timeout: float | None = None
    max_attempts: int | None = None
    dedupe_key: str | None = None
    callback_url: str | None = None
    #: MCP servers of the registry for the job's workspace (checked to exist by
    #: :func:`~chamberlain.web.mcp_registry.require_mcp_servers`).
    mcp_servers: tuple[str, ...] = ()
    #: A loop job's settings (chamberlain.loops.LoopSpec as JSON), within the plugin's.
    loop: Mapping[str, Any] | None = None
    #: The job runs in a kept workspace of its own (``"workspace": true``), or in a
    #: worktree of a repository's branch (``"workspace": {"repository", ...}``: its
    #: ``base`` empty until :func:`~chamberlain.web.workspaces.require_worktree`
    #: fills in the repository's default branch).
    workspace: bool = False
    worktree: Worktree | None = None
    #: The pull request to open when the job succeeds (a worktree job only).
    pull_request: PullRequestAsk | None = None


def loop_defaults_for(plugin: BoundPlugin, command: str) -> LoopDefaults | None:
    """What a trigger's ``loop`` of ``command`` gets by default; None: it cannot loop."""
    if plugin.interactive(command):
        return None  # a session already runs until its user completes it
    return plugin.settings.loop.defaults()


def _loop(value: object, defaults: LoopDefaults | None, name: str) -> dict[str, Any]:
    if defaults is None:
        raise bad_request(f"{name}: an interactive command cannot run as a loop")
    try:
        spec = parse_loop(value, defaults=defaults, parse_duration=parse_duration, path=name)
    except LoopError as exc:
        raise bad_request(str(exc)) from None
    return spec.to_json()


def _timeout(value: object, limit: float, name: str = "timeout") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise bad_request(
            f"{name} must be a number of seconds or a duration such as '30s',"
            f" not {json_kind(value)}"
        )
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise bad_request(f"{name}: {exc}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise bad_request(f"{name} must be longer than zero, got {value!r}")
    if seconds > limit:
        raise bad_request(f"{name} {seconds:g}s is longer than this command's limit of {limit:g}s")
    return seconds


def _max_attempts(value: object, name: str = "max_attempts") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{name} must be an integer, not {json_kind(value)}")
    if not 1 <= value <= MAX_ATTEMPTS_LIMIT:
        raise bad_request(f"{name} must be from 1 to {MAX_ATTEMPTS_LIMIT}, got {value}")
    return value


def _dedupe_key(value: object, name: str = "dedupe_key") -> str:
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string, not {json_kind(value)}")
    if not value.strip():
        raise bad_request(f"{name} must not be empty")
    if len(value) > DEDUPE_KEY_MAX:
        raise bad_request(f"{name} is longer than {DEDUPE_KEY_MAX} characters")
    return value


def parse_trigger_body(
    raw: bytes,
    *,
    max_timeout: float,
    callbacks: CallbackRules | None = None,
    loop_defaults: LoopDefaults | None = None,
) -> TriggerOptions:
    """Validate a trigger body: ``{"payload": {...}, "timeout", "max_attempts", "dedupe_key"}``.

    Every field is optional and an empty body is fine.  ``timeout`` may not exceed
    ``max_timeout``, the command's configured limit.  Raises a 400
    :class:`~chamberlain.web.errors.ApiError` for anything else, unknown fields
    included: a misspelt option silently ignored would be worse than a refusal.
    """
    return parse_trigger_options(
        decode_json_object(raw),
        max_timeout=max_timeout,
        callbacks=callbacks,
        loop_defaults=loop_defaults,
    )


def parse_trigger_options(
    body: Mapping[str, Any],
    *,
    max_timeout: float,
    fields: Sequence[str] = BODY_FIELDS,
    path: str = "",
    callbacks: CallbackRules | None = None,
    loop_defaults: LoopDefaults | None = None,
) -> TriggerOptions:
    """Validate the options of one trigger, already decoded from JSON.

    ``fields`` are the keys ``body`` may hold (a batch item also names its plugin
    and command); ``path`` prefixes every field named in an error, so a batch can
    say ``jobs[3].timeout`` where a single trigger says ``timeout``.  A
    ``callback_url`` is checked against ``callbacks`` (None: callbacks are off), a
    ``loop`` against ``loop_defaults`` (None: the command cannot loop).
    """
    unknown = sorted(set(body) - set(fields))
    if unknown:
        where = f"{path.rstrip('.')}" if path else "the request body"
        raise bad_request(f"unknown field {unknown[0]!r} in {where}; expected: {', '.join(fields)}")
    payload = body.get("payload", {})
    if not isinstance(payload, dict):
        raise bad_request(f"{path}payload must be a JSON object, not {json_kind(payload)}")
    wanted = _workspace(body["workspace"], f"{path}workspace") if "workspace" in body else False
    pull_request = None
    if body.get("pull_request") is not None:
        if not isinstance(wanted, Worktree):
            raise bad_request(
                f"{path}pull_request needs a repository workspace"
                f' ({path}workspace: {{"repository", "branch"}})'
            )
        pull_request = parse_pull_request_ask(body["pull_request"], path=f"{path}pull_request.")
    return TriggerOptions(
        payload=payload,
        timeout=(
            _timeout(body["timeout"], max_timeout, f"{path}timeout") if "timeout" in body else None
        ),
        max_attempts=(
            _max_attempts(body["max_attempts"], f"{path}max_attempts")
            if "max_attempts" in body
            else None
        ),
        dedupe_key=(
            _dedupe_key(body["dedupe_key"], f"{path}dedupe_key") if "dedupe_key" in body else None
        ),
        callback_url=(
            _callback_url(body["callback_url"], callbacks, f"{path}callback_url")
            if "callback_url" in body
            else None
        ),
        mcp_servers=(
            _mcp_servers(body["mcp_servers"], f"{path}mcp_servers") if "mcp_servers" in body else ()
        ),
        loop=_loop(body["loop"], loop_defaults, f"{path}loop") if "loop" in body else None,
        workspace=wanted is True,
        worktree=wanted if isinstance(wanted, Worktree) else None,
        pull_request=pull_request,
    )


def _workspace(value: object, name: str) -> bool | Worktree:
    if isinstance(value, bool):
        return value
    if not isinstance(value, Mapping):
        raise bad_request(f"{name} must be true, false or an object, not {json_kind(value)}")
    unknown = sorted(str(key) for key in value if key not in ("repository", "branch", "base"))
    if unknown:
        raise bad_request(
            f"{name}: unknown field {', '.join(map(repr, unknown))}; expected repository,"
            " branch, base"
        )
    repository = value.get("repository")
    if not isinstance(repository, str) or not repository:
        raise bad_request(f"{name}.repository must be the name of a configured repository")
    names = {"branch": value.get("branch"), "base": value.get("base", "")}
    for field in ("branch", "base"):
        given = names[field]
        if field == "base" and given == "":
            continue
        if not isinstance(given, str):
            raise bad_request(f"{name}.{field} must be a branch name")
        try:
            check_branch(given)
        except ValueError as exc:
            raise bad_request(f"{name}.{field}: {exc}") from None
    return Worktree(repository=repository, branch=str(names["branch"]), base=str(names["base"]))


def _mcp_servers(value: object, name: str) -> tuple[str, ...]:
    try:
        return parse_server_names(value, where=name)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def _callback_url(value: object, callbacks: CallbackRules | None, name: str) -> str:
    try:
        return (callbacks or CallbackRules()).check(value)
    except ValueError as exc:
        raise bad_request(f"{name}: {exc}") from None


def check_payload(spec: CommandSpec, payload: Mapping[str, Any], *, path: str = "payload") -> None:
    """400 if ``payload`` breaks the command's ``input_schema``, naming field and rule.

    For ``handle`` the schema applies to the payload as the client sends it, not to
    the ``api.trigger`` event the daemon wraps it in.
    """
    try:
        spec.check_payload(payload, path=path)
    except InvalidPayload as exc:
        raise bad_request(str(exc)) from None


def trigger_event(payload: Mapping[str, Any], *, now: float, event_id: str) -> dict[str, Any]:
    """The ``api.trigger`` event a ``handle`` job receives its payload in."""
    return {
        "type": EVENT_TYPE,
        "payload": dict(payload),
        "event_id": event_id,
        "source": EVENT_SOURCE,
        "timestamp": rfc3339(now),
    }


def build_job(
    plugin: str,
    command: str,
    options: TriggerOptions,
    *,
    submitted_by: str,
    default_max_attempts: int,
    now: float,
    event_id: str | None = None,
) -> NewJob:
    """The job a validated trigger creates."""
    event = None
    if command == HANDLE:
        event_id = event_id or str(uuid.uuid4())
        event = trigger_event(options.payload, now=now, event_id=event_id)
    return NewJob(
        source_event_id=event_id if event is not None else None,
        plugin=plugin,
        command=command,
        payload=dict(options.payload),
        event=event,
        submitted_by=submitted_by,
        max_attempts=(
            default_max_attempts if options.max_attempts is None else options.max_attempts
        ),
        timeout=options.timeout,
        dedupe_key=options.dedupe_key,
        callback_url=options.callback_url,
        mcp_servers=options.mcp_servers,
        loop=options.loop,
        workspace_id=str(uuid.uuid4()) if options.workspace or options.worktree else None,
        worktree=options.worktree,
        pull_request_ask=options.pull_request,
    )


async def trigger(call: Call) -> Reply:
    """``POST /trigger/{plugin}/{command}``: enqueue a job; 202 once it is committed."""
    plugin_name, command = call.path["plugin"], call.path["command"]
    plugin = call.gateway.plugins.get(plugin_name)
    if plugin is None:
        raise not_found(f"unknown plugin {plugin_name!r}")
    spec = plugin.command(command)
    if spec is None:
        known = ", ".join(c.name for c in plugin.manifest.commands)
        raise not_found(f"plugin {plugin_name!r} has no command {command!r} (it has: {known})")
    identity = call.require_command(
        spec.type, action=f"run the {spec.type.value} command {plugin_name}/{command}"
    )
    call.check_query()
    pipeline = call.gateway.routing.synchronous_for(plugin_name, command)
    if wants_async(call):
        pipeline = None
    options = parse_trigger_body(
        await call.read_body(),
        max_timeout=plugin.timeout_limit(command),
        callbacks=call.site.callbacks,
        loop_defaults=loop_defaults_for(plugin, command),
    )
    check_payload(spec, options.payload)
    require_mcp_servers(call.gateway, options.mcp_servers)
    if options.worktree is not None:
        options = attrs.evolve(
            options, worktree=await require_worktree(call.gateway, options.worktree)
        )
    if options.workspace or options.worktree:
        await require_workspace_room(call.gateway)
    refusal = not_accepting(call.gateway.lifecycle)
    if refusal is not None:
        raise refusal
    job = build_job(
        plugin_name,
        command,
        options,
        submitted_by=identity.submitted_by,
        default_max_attempts=plugin.max_attempts,
        now=call.site.now(),
    )
    if pipeline is None:
        (enqueued,) = await call.gateway.enqueue([job])
    else:
        # A synchronous pipeline starts from this trigger: hold a waiting slot
        # before enqueueing, so a refusal (503) leaves nothing behind.
        async with sync_slot(call):
            (enqueued,) = await call.gateway.enqueue([job])
            if not enqueued.duplicate:
                return await answer_synchronously(call, enqueued.job, pipeline)
    stored = enqueued.job
    headers = {"Location": f"/job/{stored.id}"}
    if enqueued.duplicate:
        return Reply(
            {
                "job_id": stored.id,
                "status": stored.status.value,
                "plugin": stored.plugin,
                "command": stored.command,
                "duplicate": True,
            },
            200,
            headers,
        )
    return Reply(
        {
            "job_id": stored.id,
            "status": stored.status.value,
            "plugin": stored.plugin,
            "command": stored.command,
        },
        202,
        accepted_headers(stored.id),
    )


_PLUGIN = Param(name="plugin", location="path", description="The plugin's name.", required=True)
_COMMAND = Param(
    name="command", location="path", description="A command the plugin declares.", required=True
)

_TRIGGER_RESPONSES = (
    ResponseSpec(
        status=202,
        description="The job is committed to the store and queued (TriggerAccepted)."
        + SYNC_TIMEOUT_DOC,
        schema=("TriggerAccepted", "SyncTimeout"),
        headers={
            "Location": (
                "The job's URL, to poll (`?wait=` long-polls it); after a synchronous"
                " pipeline's timeout, its tree's URL."
            ),
            "Retry-After": POLL_AFTER_DOC,
        },
    ),
    ResponseSpec(
        status=200,
        description=(
            "A job with this dedupe_key stands already; that job is returned"
            " (TriggerDuplicate)." + SYNC_DONE_DOC
        ),
        schema=("TriggerDuplicate", "SyncResult"),
        headers={"Location": "The existing job's URL; for a synchronous pipeline, its tree's."},
    ),
    ResponseSpec(
        status=400,
        description=(
            "Malformed JSON, a non-object body or payload, an invalid option, a payload"
            " that breaks the command's input_schema (the message names the field and the"
            " rule: `payload.seconds: 'abc' is not of type 'number'`), or an MCP server"
            " that is not registered (`mcp_servers[0]: unknown MCP server 'x'`)."
        ),
    ),
    ResponseSpec(status=404, description="Unknown plugin or command."),
    ResponseSpec(
        status=409,
        description=(
            "The workspace asked for is a branch another workspace has checked out"
            " (the message names it)."
        ),
    ),
    TOO_LARGE,
    SYNC_UNAVAILABLE,
    DISK_FULL,
)

_TRIGGER_DESCRIPTION = (
    "Enqueue a job and answer once it is durably stored. For the `handle` command the"
    " payload is delivered inside an `api.trigger` event. Read commands need"
    " `plugin:ro`, write commands `plugin:rw`. Checks run in this order: token (401),"
    " plugin and command (404), scope (403), body (413, 400), the payload against the"
    " command's `input_schema` and `mcp_servers` against the registry (400), daemon"
    " state (503). When a synchronous pipeline starts from this command, the call waits"
    " for the pipeline (200 with the tree, or 202 past its timeout) unless"
    " `?async=true` is given."
)

_TRIGGER_BODY = BodySpec(
    schema="TriggerRequest",
    description="Optional; an empty body triggers with an empty payload.",
)


def _trigger_route(
    operation_id: str, path: str, summary: str, converters: Mapping[str, str] | None = None
) -> Route:
    # /trigger/... and /plugin/... are one operation under two paths.
    return Route(
        operation_id=operation_id,
        method="POST",
        path=path,
        handler=trigger,
        access=ByCommand(),
        summary=summary,
        description=_TRIGGER_DESCRIPTION,
        tag="jobs",
        params=(_PLUGIN, _COMMAND, ASYNC_PARAM),
        body=_TRIGGER_BODY,
        responses=_TRIGGER_RESPONSES,
        converters=dict(converters or {}),
    )


ROUTES: tuple[Route, ...] = (
    _trigger_route("trigger", "/trigger/{plugin}/{command}", "Run a plugin command as a job"),
    _trigger_route(
        "triggerPlugin",
        "/plugin/{plugin}/{command}",
        "Run a plugin command as a job (same as /trigger)",
        # Not /plugin/{name}/openapi.json, the plugin's document (see web.discovery).
        converters={"command": "plugin_command"},
    ),
)

#: The options of one trigger: the body of ``POST /trigger``, and part of a batch job.
TRIGGER_OPTIONS_SCHEMA: Mapping[str, Any] = {
    "payload": {
        "type": "object",
        "description": "Handed to the plugin; for `handle`, wrapped in an api.trigger event.",
    },
    "timeout": {
        "description": "Seconds (or a duration such as '30s'); at most the command's timeout.",
        "oneOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string"}],
    },
    "max_attempts": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS_LIMIT},
    "dedupe_key": {"type": "string", "minLength": 1, "maxLength": DEDUPE_KEY_MAX},
    "callback_url": {
        "type": "string",
        "format": "uri",
        "description": (
            "POSTed a signed summary when the job ends; http(s) on callbacks.allowed_hosts"
            " only, and only when callbacks.secret is configured."
        ),
    },
    "mcp_servers": MCP_SERVERS_OPTION,
    "workspace": {
        "description": (
            "true: the job runs with a workspace of its own, a directory kept after it"
            " ends and shared by its retries, its loop's iterations and its follow-ups;"
            " {repository, branch, base?}: a git worktree of that branch of a configured"
            " repository (made from base, default the repository's default_branch, when"
            " the branch is new). See docs/WORKSPACES.md. Its request carries"
            " context.workspace and context.repository."
        ),
        "oneOf": [
            {"type": "boolean"},
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "repository": {"type": "string", "minLength": 1},
                    "branch": {"type": "string", "minLength": 1},
                    "base": {"type": "string", "minLength": 1},
                },
                "required": ["repository", "branch"],
            },
        ],
    },
    "pull_request": {
        "description": (
            "With a repository workspace: the pull request to open when the job succeeds"
            " (never otherwise), as POST /job/{id}/pull-request would; the job's"
            " `pull_request` then holds it, or `{error}` when it could not be opened."
        ),
        "oneOf": [{"$ref": "#/components/schemas/PullRequestRequest"}, {"type": "null"}],
    },
    "loop": {
        "description": (
            "Run the command as a loop job: iteration after iteration until one says it is"
            ' complete (`"complete": true`, or a string result whose last line is the'
            " completion token), with feedback commands between iterations. Defaults and"
            " the cap of max_iterations come from plugins.<name>.loop. See docs/LOOPS.md."
        ),
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "max_iterations": {"type": "integer", "minimum": 1, "maximum": MAX_ITERATIONS_LIMIT},
            "completion_token": {
                "type": ["string", "null"],
                "minLength": 1,
                "description": "One line; null: the plugin's default.",
            },
            "feedback": {
                "type": "array",
                "maxItems": MAX_FEEDBACK_COMMANDS,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "command": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string"},
                            "description": 'An argv; a shell only as ["sh", "-c", "…"].',
                        },
                        "timeout": {
                            "description": "Seconds or a duration ('2m'); default (or null) 2m.",
                            "oneOf": [
                                {"type": "number", "exclusiveMinimum": 0},
                                {"type": "string"},
                                {"type": "null"},
                            ],
                        },
                    },
                    "required": ["command"],
                },
            },
            "iteration_timeout": {
                "description": "Seconds or a duration; default (or null): the command's timeout.",
                "oneOf": [
                    {"type": "number", "exclusiveMinimum": 0},
                    {"type": "string"},
                    {"type": "null"},
                ],
            },
        },
    },
}

#: Component schemas these routes refer to (merged into the OpenAPI document).
SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "TriggerRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": dict(TRIGGER_OPTIONS_SCHEMA),
    },
    "TriggerAccepted": object_schema(
        {
            "job_id": {"type": "string", "format": "uuid"},
            "status": {"const": "queued"},
            "plugin": STRING,
            "command": STRING,
        }
    ),
    "TriggerDuplicate": object_schema(
        {
            "job_id": {"type": "string", "format": "uuid"},
            "status": ref("JobStatus"),
            "plugin": STRING,
            "command": STRING,
            "duplicate": {"const": True},
        }
    ),
}
