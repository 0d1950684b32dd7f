"""Job control: ``POST /job/{id}/cancel``, ``POST /job/{id}/retry``, ``GET /queue``.

Cancel builds on the core's cancel (the Dispatcher cancels a queued job in the
store at once and has a running one's process group terminated: SIGTERM, grace,
SIGKILL) and answers once the job is terminal, or 202 ``cancelling`` when that
takes longer than :data:`CANCEL_WAIT`.  Retry creates a new job from a finished
one: same plugin, command, payload, event and callback.  The decisions
(:func:`cancel_answer`, :func:`retry_job`) are plain functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import trio

from chamberlain.records import CancelResult, Job, JobStatus, NewJob, new_job_id
from chamberlain.web.auth import JOBS_RO, JOBS_RW, Scoped, command_scope
from chamberlain.web.errors import ApiError, JobConflict, not_found
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import (
    DISK_FULL,
    NO_QUERY,
    NOT_ACCEPTING_RESPONSE,
    UNAVAILABLE,
    decode_json_object,
    limit_param,
    not_accepting,
)
from chamberlain.web.jobs import JOB_ID_PARAM, MAX_LIMIT, POLL_AFTER_DOC, accepted_headers
from chamberlain.web.spec import BodySpec, Param, ResponseSpec, Route
from chamberlain.web.trigger import MAX_ATTEMPTS_LIMIT, parse_trigger_options
from chamberlain.web.workspaces import require_workspace_room

#: How long a cancel waits for a running job's process group to be gone: the
#: plugin's SIGTERM grace (5 s) and then some.
CANCEL_WAIT = 10.0

QUEUE_DEFAULT_LIMIT = 100

RETRY_FIELDS = ("max_attempts",)


def cancel_answer(job_id: str, found: CancelResult, settled: Job | None) -> Reply:
    """The answer to a cancel: what the core did (``found``) and how the job ended.

    ``settled`` is the job once terminal after a running job was told to stop, or
    None when it was not terminal within the wait (202 ``cancelling``).
    """
    if found.was_running:
        if settled is None:
            return Reply({"job_id": job_id, "status": "cancelling", "was_running": True}, 202)
        if settled.status is not JobStatus.CANCELLED:
            raise JobConflict(
                f"job {job_id} finished as {settled.status.value} before it could be cancelled",
                status=settled.status.value,
            )
        return Reply({"job_id": job_id, "status": settled.status.value, "was_running": True})
    job = found.job
    if job is None:
        raise not_found(f"unknown job {job_id!r}")
    if not found.accepted:
        raise JobConflict(
            f"job {job_id} is already {job.status.value}; only queued or running jobs"
            " can be cancelled",
            status=job.status.value,
        )
    return Reply({"job_id": job_id, "status": job.status.value, "was_running": False})


async def cancel_job(call: Call) -> Reply:
    """``POST /job/{job_id}/cancel``: cancel a queued or running job."""
    job_id = call.path["job_id"]
    found = await call.gateway.cancel_job(job_id)
    settled = None
    if found.was_running:
        with trio.move_on_after(CANCEL_WAIT):
            settled = await call.gateway.wait_job(job_id)
    return cancel_answer(job_id, found, settled)


def parse_retry_body(raw: bytes) -> int | None:
    """The ``max_attempts`` a retry body asks for (None: the plugin's default)."""
    options = parse_trigger_options(
        decode_json_object(raw), max_timeout=math.inf, fields=RETRY_FIELDS
    )
    return options.max_attempts


def retry_job(
    original: Job,
    *,
    max_attempts: int,
    submitted_by: str,
    callback_url: str | None,
    shares_workspace: bool = False,
) -> NewJob:
    """The job a retry creates: the original's inputs, a fresh life.

    It keeps the plugin, command, payload, event (and so its event id), timeout,
    callback, MCP servers and loop settings; when the original had a workspace, it
    shares it if ``shares_workspace`` (a worktree: its branch is the job's, and so is
    the pull request it asked for), and
    asks for a new, empty one otherwise; it does not keep the dedupe key (a retry is asked for
    on purpose) or any pipeline place (a retried step does not continue its old
    pipeline).
    """
    return NewJob(
        plugin=original.plugin,
        command=original.command,
        payload=dict(original.payload),
        event=None if original.event is None else dict(original.event),
        context=dict(original.context),
        submitted_by=submitted_by,
        max_attempts=max_attempts,
        timeout=original.timeout,
        source_event_id=original.source_event_id,
        callback_url=callback_url,
        mcp_servers=original.mcp_servers,
        loop=original.loop,
        workspace_id=(
            original.workspace_id
            if shares_workspace or original.workspace_id is None
            else new_job_id()
        ),
        # Its worktree's pull request, opened when the retry succeeds.
        pull_request_ask=original.pull_request_ask if shares_workspace else None,
    )


async def carried_over(call: Call, original: Job) -> str | None:
    """The callback URL a new job made of ``original`` keeps (a retry, a follow-up).

    409 when that URL, or an MCP server the job names, is no longer allowed.
    """
    callback_url = (await call.gateway.callbacks(original.id)).url
    if callback_url is not None:
        try:
            call.site.callbacks.check(callback_url)
        except ValueError as exc:
            raise ApiError(409, f"the job's callback_url is no longer allowed: {exc}") from None
    gone = call.gateway.unknown_mcp_servers(original.mcp_servers) if original.mcp_servers else []
    if gone:
        raise ApiError(
            409, f"the job's MCP server {', '.join(map(repr, gone))} is no longer registered"
        )
    return callback_url


async def retry(call: Call) -> Reply:
    """``POST /job/{job_id}/retry``: run a finished job again as a new job."""
    job_id = call.path["job_id"]
    original = await call.gateway.get_job(job_id)
    if original is None:
        raise not_found(f"unknown job {job_id!r}")
    plugin = call.gateway.plugins.get(original.plugin)
    if plugin is None:
        raise ApiError(
            409, f"job {job_id} ran plugin {original.plugin!r}, which is no longer loaded"
        )
    spec = plugin.command(original.command)
    if spec is None:
        raise ApiError(
            409, f"plugin {original.plugin!r} no longer has the command {original.command!r}"
        )
    # Re-running is running: the caller needs the command's own scope too.
    identity = call.require(
        command_scope(spec.type),
        action=f"re-run the {spec.type.value} command {original.plugin}/{original.command}",
    )
    max_attempts = parse_retry_body(await call.read_body())
    if not original.status.terminal:
        raise JobConflict(
            f"job {job_id} is {original.status.value}; only a finished job can be retried",
            status=original.status.value,
        )
    callback_url = await carried_over(call, original)
    refusal = not_accepting(call.gateway.lifecycle)
    if refusal is not None:
        raise refusal
    shares = False
    if original.workspace_id is not None:
        kept = await call.gateway.get_workspace(original.workspace_id)
        shares = kept is not None and kept.repository is not None
        if not shares:
            await require_workspace_room(call.gateway)
    new = retry_job(
        original,
        max_attempts=plugin.max_attempts if max_attempts is None else max_attempts,
        submitted_by=identity.submitted_by,
        callback_url=callback_url,
        shares_workspace=shares,
    )
    (enqueued,) = await call.gateway.enqueue([new])
    job = enqueued.job
    return Reply(
        {
            "job_id": job.id,
            "original_job_id": job_id,
            "status": job.status.value,
            "plugin": job.plugin,
            "command": job.command,
        },
        202,
        accepted_headers(job.id),
    )


async def queue(call: Call) -> Reply:
    """``GET /queue``: what runs now and what waits, in the order it will run."""
    limit = limit_param(call.query, default=QUEUE_DEFAULT_LIMIT, maximum=MAX_LIMIT)
    view = await call.gateway.queue(limit)
    health = await call.gateway.health()
    return Reply(
        {
            "running": [job.to_json() for job in view.running],
            "queued": [job.to_json() for job in view.queued],
            "running_total": view.running_total,
            "queued_total": view.queued_total,
            "max_workers": health.max_workers,
            "limit": limit,
        }
    )


SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "CancelAnswer": {
        "type": "object",
        "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "status": {
                "type": "string",
                "enum": ["cancelled", "cancelling"],
                "description": "`cancelling`: the process group is still being stopped (202).",
            },
            "was_running": {"type": "boolean"},
        },
        "required": ["job_id", "status", "was_running"],
    },
    "Conflict": {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "status": {"$ref": "#/components/schemas/JobStatus"},
            "followed_by": {
                "type": "string",
                "format": "uuid",
                "description": "A job already followed up: its follow-up, to instruct instead.",
            },
        },
        "required": ["error"],
    },
    "RetryRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "max_attempts": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_ATTEMPTS_LIMIT,
                "description": "Default: the plugin's retry.max_attempts.",
            }
        },
    },
    "RetryAccepted": {
        "type": "object",
        "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "original_job_id": {"type": "string", "format": "uuid"},
            "status": {"const": "queued"},
            "plugin": {"type": "string"},
            "command": {"type": "string"},
        },
        "required": ["job_id", "original_job_id", "status", "plugin", "command"],
    },
    "Queue": {
        "type": "object",
        "properties": {
            "running": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
            "queued": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
            "running_total": {"type": "integer", "minimum": 0},
            "queued_total": {"type": "integer", "minimum": 0},
            "max_workers": {"type": "integer", "minimum": 1},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        },
        "required": [
            "running",
            "queued",
            "running_total",
            "queued_total",
            "max_workers",
            "limit",
        ],
    },
}

ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="cancelJob",
        method="POST",
        path="/job/{job_id}/cancel",
        handler=cancel_job,
        access=Scoped(JOBS_RW),
        summary="Cancel a queued or running job",
        description=(
            "A queued job becomes `cancelled` at once. A running job's process group gets"
            " SIGTERM, then SIGKILL after the plugin's grace; the answer comes once the"
            f" job is `cancelled`, or after {CANCEL_WAIT:g}s as 202 `cancelling`."
        ),
        tag="jobs",
        params=(JOB_ID_PARAM,),
        responses=(
            ResponseSpec(status=200, description="The job is cancelled.", schema="CancelAnswer"),
            ResponseSpec(
                status=202,
                description="A running job is being stopped; it ends `cancelled` shortly.",
                schema="CancelAnswer",
            ),
            NO_QUERY,
            ResponseSpec(status=404, description="Unknown job."),
            ResponseSpec(
                status=409,
                description="The job is already terminal (its status is in the body).",
                schema="Conflict",
            ),
            UNAVAILABLE,
            DISK_FULL,
        ),
    ),
    Route(
        operation_id="retryJob",
        method="POST",
        path="/job/{job_id}/retry",
        handler=retry,
        access=Scoped(JOBS_RW),
        summary="Run a finished job again, as a new job",
        description=(
            "Creates a new job with the same plugin, command, payload, event, timeout and"
            " callback. Needs `jobs:rw` and the command's own scope (`plugin:ro` for read"
            " commands, `plugin:rw` for write): a token that may not run a command may"
            " not re-run it either."
        ),
        tag="jobs",
        params=(JOB_ID_PARAM,),
        body=BodySpec(schema="RetryRequest", description="Optional."),
        responses=(
            ResponseSpec(
                status=202,
                description="The new job is committed and queued.",
                schema="RetryAccepted",
                headers={
                    "Location": "The new job's URL, to poll (`?wait=` long-polls it).",
                    "Retry-After": POLL_AFTER_DOC,
                },
            ),
            ResponseSpec(status=400, description="A bad body or a query parameter."),
            ResponseSpec(status=404, description="Unknown job."),
            ResponseSpec(
                status=409,
                description=(
                    "The job is not finished yet, or its plugin, command, callback or MCP"
                    " servers are no longer available."
                ),
                schema="Conflict",
            ),
            NOT_ACCEPTING_RESPONSE,
            DISK_FULL,
        ),
    ),
    Route(
        operation_id="getQueue",
        method="GET",
        path="/queue",
        handler=queue,
        access=Scoped(JOBS_RO),
        summary="What runs now and what waits",
        description=(
            "Running jobs by start time, and queued jobs in the order they will be"
            " dispatched (a retry waiting out its backoff counts as queued)."
        ),
        tag="jobs",
        params=(
            Param(
                name="limit",
                location="query",
                description=f"Jobs listed in each of the two lists, 1 to {MAX_LIMIT}.",
                schema={
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_LIMIT,
                    "default": QUEUE_DEFAULT_LIMIT,
                },
            ),
        ),
        responses=(
            ResponseSpec(status=200, description="The queue.", schema="Queue"),
            ResponseSpec(status=400, description="A bad or unknown query parameter."),
            UNAVAILABLE,
        ),
    ),
)
