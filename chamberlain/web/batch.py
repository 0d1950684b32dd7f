"""``POST /jobs``: many jobs in one request, committed in one transaction.

A client with a thousand jobs to submit should not pay a thousand round trips and a
thousand commits.  The batch is validated whole before anything is stored: every
job is checked exactly as ``POST /trigger/{plugin}/{command}`` checks one (same
fields, same limits, same scope rule by command type, same payload check against
the command's ``input_schema``), and the first job that is wrong refuses the whole
batch with its index in the message (``jobs[3].timeout must be longer than zero``,
``jobs[3].payload.seconds: 'abc' is not of type 'number'``).  A valid batch travels
to the JobStore as one ``Enqueue``, which it applies in one transaction; the 202
lists the jobs' ids only after that commit, so every id in the answer is durable and
none exists without the others.
A batch never waits for a synchronous pipeline its jobs may start: it answers once
the jobs are stored, as a trigger with ``?async=true`` does.

The decisions are plain functions (:func:`parse_batch_body`, :func:`plan_batch`);
:func:`submit_batch` is the thin async layer around the one await that matters.
The module owns the route and its schemas.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from chamberlain.callback_rules import CallbackRules
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.plugins.manifest import CommandType
from chamberlain.records import Enqueued
from chamberlain.web.auth import ByCommand
from chamberlain.web.errors import bad_request
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import (
    DISK_FULL,
    NOT_ACCEPTING_RESPONSE,
    TOO_LARGE,
    decode_json_object,
    not_accepting,
)
from chamberlain.web.jobs import POLL_AFTER, POLL_AFTER_DOC
from chamberlain.web.mcp_registry import require_mcp_servers
from chamberlain.web.spec import STRING, BodySpec, ResponseSpec, Route, object_schema, ref
from chamberlain.web.trigger import (
    BODY_FIELDS,
    TRIGGER_OPTIONS_SCHEMA,
    TriggerOptions,
    build_job,
    check_payload,
    loop_defaults_for,
    parse_trigger_options,
)
from chamberlain.web.workspaces import require_workspace_room, require_worktree

#: The most jobs one request may carry: enough to amortise the round trip and the
#: commit, small enough that one transaction stays short (a few milliseconds).
MAX_BATCH_JOBS = 1000

#: The fields of one job in the batch.
ITEM_FIELDS = ("plugin", "command", *BODY_FIELDS)


@attrs.frozen(kw_only=True)
class BatchItem:
    """One job of a batch, resolved and validated."""

    plugin: BoundPlugin
    command: str
    options: TriggerOptions


def _name(item: Mapping[str, Any], field: str, path: str) -> str:
    value = item.get(field)
    if value is None:
        raise bad_request(f"{path}{field} is required")
    if not isinstance(value, str) or not value:
        raise bad_request(f"{path}{field} must be a non-empty string")
    return value


def parse_batch_body(raw: bytes) -> list[Mapping[str, Any]]:
    """The job objects of a batch body ``{"jobs": [{...}, ...]}``; 400 otherwise."""
    body = decode_json_object(raw)
    unknown = sorted(set(body) - {"jobs"})
    if unknown:
        raise bad_request(f"unknown field {unknown[0]!r} in the request body; expected: jobs")
    if "jobs" not in body:
        raise bad_request(f"jobs is required: a list of 1 to {MAX_BATCH_JOBS} jobs")
    jobs = body["jobs"]
    if not isinstance(jobs, list):
        raise bad_request("jobs must be a list of job objects")
    if not jobs:
        raise bad_request(f"jobs is empty: a batch holds 1 to {MAX_BATCH_JOBS} jobs")
    if len(jobs) > MAX_BATCH_JOBS:
        raise bad_request(f"jobs holds {len(jobs)} jobs; a batch holds at most {MAX_BATCH_JOBS}")
    for index, item in enumerate(jobs):
        if not isinstance(item, dict):
            raise bad_request(f"jobs[{index}] must be a JSON object")
    return jobs


def plan_batch(
    items: Sequence[Mapping[str, Any]],
    plugins: Mapping[str, BoundPlugin],
    *,
    may_run: Callable[[CommandType, str], object],
    callbacks: CallbackRules | None = None,
) -> list[BatchItem]:
    """Resolve and validate every job of a batch, in order; the first problem refuses all.

    For each job: its plugin and command must exist (400, naming the index: the
    route ``/jobs`` exists, so a bad name inside the body is a bad body, not a 404),
    then ``may_run(command_type, action)`` must pass (it raises the 403), then its
    options are checked like a single trigger's (``callback_url`` against
    ``callbacks``), and its payload against the command's ``input_schema``.
    """
    planned: list[BatchItem] = []
    for index, item in enumerate(items):
        path = f"jobs[{index}]."
        plugin_name = _name(item, "plugin", path)
        command = _name(item, "command", path)
        plugin = plugins.get(plugin_name)
        if plugin is None:
            raise bad_request(f"{path}plugin: unknown plugin {plugin_name!r}")
        spec = plugin.command(command)
        if spec is None:
            known = ", ".join(c.name for c in plugin.manifest.commands)
            raise bad_request(
                f"{path}command: plugin {plugin_name!r} has no command {command!r}"
                f" (it has: {known})"
            )
        may_run(
            spec.type, f"run the {spec.type.value} command {plugin_name}/{command} (jobs[{index}])"
        )
        options = parse_trigger_options(
            item,
            max_timeout=plugin.timeout_limit(command),
            fields=ITEM_FIELDS,
            path=path,
            callbacks=callbacks,
            loop_defaults=loop_defaults_for(plugin, command),
        )
        check_payload(spec, options.payload, path=f"{path}payload")
        planned.append(BatchItem(plugin=plugin, command=command, options=options))
    return planned


def accepted_entry(enqueued: Enqueued) -> dict[str, Any]:
    """One job of the 202 answer; a job that stood already under its dedupe key says so."""
    job = enqueued.job
    entry: dict[str, Any] = {
        "job_id": job.id,
        "plugin": job.plugin,
        "command": job.command,
        "status": job.status.value,
    }
    if enqueued.duplicate:
        entry["duplicate"] = True
    return entry


async def submit_batch(call: Call) -> Reply:
    """``POST /jobs``: enqueue up to 1,000 jobs in one commit; 202 once it is done."""
    call.check_query()
    items = parse_batch_body(await call.read_body())
    planned = plan_batch(
        items,
        call.gateway.plugins,
        may_run=lambda kind, action: call.require_command(kind, action=action),
        callbacks=call.site.callbacks,
    )
    for index, item in enumerate(planned):
        require_mcp_servers(
            call.gateway, item.options.mcp_servers, path=f"jobs[{index}].mcp_servers"
        )
    branches: dict[tuple[str, str], int] = {}
    for index, item in enumerate(planned):
        wanted = item.options.worktree
        if wanted is None:
            continue
        first = branches.setdefault((wanted.repository, wanted.branch), index)
        if first != index:
            raise bad_request(
                f"jobs[{index}].workspace: branch {wanted.branch!r} of {wanted.repository!r}"
                f" is asked for by jobs[{first}] too; one workspace per branch"
            )
        worktree = await require_worktree(call.gateway, wanted)
        planned[index] = attrs.evolve(item, options=attrs.evolve(item.options, worktree=worktree))
    if any(item.options.workspace or item.options.worktree for item in planned):
        await require_workspace_room(call.gateway)
    identity = call.identity
    if identity is None:
        raise RuntimeError("POST /jobs served without authentication")
    refusal = not_accepting(call.gateway.lifecycle)
    if refusal is not None:
        raise refusal
    now = call.site.now()
    jobs = [
        build_job(
            item.plugin.name,
            item.command,
            item.options,
            submitted_by=identity.submitted_by,
            default_max_attempts=item.plugin.max_attempts,
            now=now,
        )
        for item in planned
    ]
    enqueued = await call.gateway.enqueue(jobs)
    return Reply(
        {"jobs": [accepted_entry(e) for e in enqueued]}, 202, {"Retry-After": str(POLL_AFTER)}
    )


ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="submitJobs",
        method="POST",
        path="/jobs",
        handler=submit_batch,
        access=ByCommand(),
        summary="Submit up to 1,000 jobs in one request and one commit",
        description=(
            "Each job is checked exactly like a single trigger, and each needs the scope of"
            " its command's type (`plugin:ro` for read commands, `plugin:rw` for write"
            " commands). The first invalid job refuses the whole batch, naming its index"
            " (`jobs[3].payload ...`); nothing is stored then. A valid batch is committed in"
            " one transaction and answered 202 only after the commit, with the jobs in the"
            " order they were given. A job whose dedupe_key stands already is listed with"
            " `duplicate: true` and the existing job's id and status."
        ),
        tag="jobs",
        body=BodySpec(schema="BatchRequest", description="The jobs to submit.", required=True),
        responses=(
            ResponseSpec(
                status=202,
                description="Every job is committed to the store.",
                schema="BatchAccepted",
                headers={"Retry-After": POLL_AFTER_DOC},
            ),
            ResponseSpec(
                status=400,
                description=(
                    "Malformed JSON, no jobs or more than 1,000, an unknown plugin or command,"
                    " an invalid option, a payload that breaks its command's input_schema, or"
                    " an MCP server that is not registered; the message names the job's index"
                    " and the field (`jobs[3].payload.seconds: 'abc' is not of type"
                    " 'number'`)."
                ),
            ),
            ResponseSpec(
                status=409,
                description="A job's workspace is a branch another workspace has checked out.",
            ),
            TOO_LARGE,
            NOT_ACCEPTING_RESPONSE,
            DISK_FULL,
        ),
    ),
)

#: Component schemas this route refers to (merged into the OpenAPI document).
SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "BatchRequest": object_schema(
        {
            "jobs": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_BATCH_JOBS,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["plugin", "command"],
                    "properties": {
                        "plugin": STRING,
                        "command": STRING,
                        **TRIGGER_OPTIONS_SCHEMA,
                    },
                },
            }
        },
        closed=True,
    ),
    "BatchAccepted": object_schema(
        {
            "jobs": {
                "type": "array",
                "items": object_schema(
                    {
                        "job_id": {"type": "string", "format": "uuid"},
                        "plugin": STRING,
                        "command": STRING,
                        "status": ref("JobStatus"),
                        "duplicate": {"const": True},
                    },
                    required=["job_id", "plugin", "command", "status"],
                ),
            }
        }
    ),
}
