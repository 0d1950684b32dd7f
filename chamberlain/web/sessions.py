"""Interactive jobs and follow-ups: ``/job/{id}/message``, ``/complete``, ``/instruct``.

A message or a complete goes to the running job's session (the Runner holds it,
through the Dispatcher); the answer comes once a message is stored, so a 200 means
the message survives a crash.  A follow-up is a new job made of a finished one in
the store's transaction that checks it is finished and not followed yet.  The
checks that need no actor (the body, the job's state as last read) are plain
functions here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chamberlain.plugins.binding import BoundPlugin
from chamberlain.plugins.conversation import MESSAGE_MAX_BYTES
from chamberlain.records import (
    FollowUpRefusal,
    Job,
    JobStatus,
    NewJob,
    SessionRefusal,
    SessionReply,
)
from chamberlain.web.auth import JOBS_RW, Scoped, command_scope
from chamberlain.web.control import carried_over
from chamberlain.web.errors import ApiError, JobConflict, bad_request, not_found
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import (
    DISK_FULL,
    NO_QUERY,
    NOT_ACCEPTING_RESPONSE,
    UNAVAILABLE,
    decode_json_object,
    not_accepting,
)
from chamberlain.web.jobs import JOB_ID_PARAM, POLL_AFTER_DOC, accepted_headers
from chamberlain.web.spec import BodySpec, ResponseSpec, Route
from chamberlain.web.trigger import check_payload

#: How long a client told ``busy`` should wait before sending again.
BUSY_RETRY_AFTER = 1


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"{name} must be a non-empty string")
    if len(value.encode("utf-8", errors="replace")) > MESSAGE_MAX_BYTES:
        raise bad_request(f"{name} is longer than {MESSAGE_MAX_BYTES} bytes")
    return value


def _only(body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request(
            f"unknown field {', '.join(map(repr, unknown))}; expected {', '.join(allowed)}"
        )


def parse_message(raw: bytes) -> str:
    """The text of a ``/message`` body: ``{"message": "<text>"}``; 400 otherwise."""
    body = decode_json_object(raw)
    _only(body, ("message",))
    return _text(body, "message")


def parse_instruction(raw: bytes) -> tuple[str, Mapping[str, Any] | None]:
    """The prompt and payload of an ``/instruct`` body; 400 otherwise."""
    body = decode_json_object(raw)
    _only(body, ("prompt", "payload"))
    payload = body.get("payload")
    if payload is not None and not isinstance(payload, dict):
        raise bad_request("payload must be an object")
    return _text(body, "prompt"), payload


def session_conflict(job: Job, plugin: BoundPlugin | None) -> JobConflict | None:
    """Why a job, as last read, cannot take a message or a complete (None: it may)."""
    if plugin is None or not plugin.interactive(job.command):
        return JobConflict(
            f"{job.plugin}/{job.command} is not an interactive command",
            status=job.status.value,
        )
    if job.status is not JobStatus.RUNNING:
        return JobConflict(
            f"job {job.id} is {job.status.value}; only a running interactive job takes messages",
            status=job.status.value,
        )
    return None


def refusal_error(job: Job, reply: SessionReply) -> ApiError:
    """The answer to a session's refusal."""
    match reply.refused:
        case SessionRefusal.BUSY:
            return ApiError(
                503,
                f"job {job.id} has too many messages waiting to be handed to its plugin",
                headers={"Retry-After": str(BUSY_RETRY_AFTER)},
            )
        case SessionRefusal.NOT_INTERACTIVE:
            return JobConflict(
                f"{job.plugin}/{job.command} is not an interactive command",
                status=job.status.value,
            )
        case SessionRefusal.COMPLETING:
            return JobConflict(
                f"job {job.id}'s session is being completed; it takes no more messages",
                status=JobStatus.RUNNING.value,
            )
    return JobConflict(f"job {job.id} is no longer running", status=job.status.value)


async def _refusal(call: Call, job: Job, reply: SessionReply) -> ApiError:
    """The answer to a refusal, with the job's status as it is now when it ended."""
    if reply.refused is SessionRefusal.NOT_RUNNING:
        # It was running when read: it ended (or was requeued) since.
        job = await call.gateway.get_job(job.id) or job
    return refusal_error(job, reply)


async def _running_session(call: Call) -> Job:
    job_id = call.path["job_id"]
    job = await call.gateway.get_job(job_id)
    if job is None:
        raise not_found(f"unknown job {job_id!r}")
    conflict = session_conflict(job, call.gateway.plugins.get(job.plugin))
    if conflict is not None:
        raise conflict
    return job


async def send_message(call: Call) -> Reply:
    """``POST /job/{job_id}/message``: hand a running interactive job a user's message."""
    message = parse_message(await call.read_body())
    job = await _running_session(call)
    reply = await call.gateway.converse(job.id, message)
    if reply.refused is not None:
        raise await _refusal(call, job, reply)
    return Reply({"job_id": job.id, "message_sent": True, "message_id": reply.message_id})


async def complete(call: Call) -> Reply:
    """``POST /job/{job_id}/complete``: end a running interactive job's session."""
    job = await _running_session(call)
    reply = await call.gateway.converse(job.id, None)
    if reply.refused is not None:
        raise await _refusal(call, job, reply)
    return Reply({"job_id": job.id, "status": "completing"}, 202)


def follow_up_job(
    old: Job,
    *,
    prompt: str,
    payload: Mapping[str, Any] | None,
    max_attempts: int,
    submitted_by: str,
    callback_url: str | None,
) -> NewJob:
    """The follow-up of ``old``: its plugin, command, payload (unless one is given),
    timeout, callback, MCP servers, loop settings, workspace (and the pull request
    asked for of it), and the prompt.

    The session it is sent is filled in by the store, from the old job as it stands
    in the transaction that makes the follow-up.
    """
    return NewJob(
        plugin=old.plugin,
        command=old.command,
        payload=dict(old.payload if payload is None else payload),
        context=dict(old.context),
        submitted_by=submitted_by,
        max_attempts=max_attempts,
        timeout=old.timeout,
        callback_url=callback_url,
        mcp_servers=old.mcp_servers,
        follows=old.id,
        follow_up={"prompt": prompt},
        # A loop's follow-up is a loop again, with the same settings; it works in
        # the same workspace.
        loop=old.loop,
        workspace_id=old.workspace_id,
        # Its worktree's pull request: the follow-up's work is pushed to it too.
        pull_request_ask=old.pull_request_ask,
    )


async def instruct(call: Call) -> Reply:
    """``POST /job/{job_id}/instruct``: a follow-up of a finished job, as a new job."""
    job_id = call.path["job_id"]
    prompt, payload = parse_instruction(await call.read_body())
    old = await call.gateway.get_job(job_id)
    if old is None:
        raise not_found(f"unknown job {job_id!r}")
    plugin = call.gateway.plugins.get(old.plugin)
    spec = None if plugin is None else plugin.command(old.command)
    if plugin is None or spec is None:
        raise JobConflict(
            f"job {job_id} ran {old.plugin}/{old.command}, which is no longer loaded",
            status=old.status.value,
        )
    identity = call.require(
        command_scope(spec.type),
        action=f"run the {spec.type.value} command {old.plugin}/{old.command}",
    )
    if payload is not None:
        check_payload(spec, payload)
    _check_followable(old)
    callback_url = await carried_over(call, old)
    refusal = not_accepting(call.gateway.lifecycle)
    if refusal is not None:
        raise refusal
    made = await call.gateway.follow_up(
        follow_up_job(
            old,
            prompt=prompt,
            payload=payload,
            max_attempts=plugin.max_attempts,
            submitted_by=identity.submitted_by,
            callback_url=callback_url,
        )
    )
    if isinstance(made, FollowUpRefusal):
        # The job changed since it was read: ask again for the reason as it is now.
        now = await call.gateway.get_job(job_id)
        if now is None or made is FollowUpRefusal.UNKNOWN:
            raise not_found(f"unknown job {job_id!r}")
        _check_followable(now)
        raise JobConflict(f"job {job_id} cannot be followed up", status=now.status.value)
    return Reply(
        {"job_id": made.id, "follows": job_id, "status": made.status.value},
        202,
        accepted_headers(made.id),
    )


def _check_followable(job: Job) -> None:
    if not job.status.terminal:
        raise JobConflict(
            f"job {job.id} is {job.status.value}; only a finished job can be followed up",
            status=job.status.value,
        )
    if job.followed_by is not None:
        raise JobConflict(
            f"job {job.id} was already followed up by job {job.followed_by}; instruct that one",
            status=job.status.value,
            followed_by=job.followed_by,
        )


SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "MessageRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "message": {
                "type": "string",
                "minLength": 1,
                "description": f"What the user says; at most {MESSAGE_MAX_BYTES} bytes of UTF-8.",
            }
        },
        "required": ["message"],
    },
    "MessageSent": {
        "type": "object",
        "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "message_sent": {"const": True},
            "message_id": {
                "type": "string",
                "description": "The id the plugin is sent the message with (`message_id`).",
            },
        },
        "required": ["job_id", "message_sent", "message_id"],
    },
    "Completing": {
        "type": "object",
        "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "status": {"const": "completing"},
        },
        "required": ["job_id", "status"],
    },
    "InstructRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "prompt": {
                "type": "string",
                "minLength": 1,
                "description": f"The follow-up instruction; at most {MESSAGE_MAX_BYTES} bytes.",
            },
            "payload": {
                "type": "object",
                "description": "The new job's payload. Default: the old job's.",
            },
        },
        "required": ["prompt"],
    },
    "FollowUpAccepted": {
        "type": "object",
        "properties": {
            "job_id": {"type": "string", "format": "uuid", "description": "The new job."},
            "follows": {"type": "string", "format": "uuid", "description": "The old job."},
            "status": {"const": "queued"},
        },
        "required": ["job_id", "follows", "status"],
    },
}

_SESSION_CONFLICT = ResponseSpec(
    status=409,
    description=(
        "The job is not running (queued or finished; its status is in the body), its"
        " command is not interactive, or its session is being completed."
    ),
    schema="Conflict",
)

ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="sendMessage",
        method="POST",
        path="/job/{job_id}/message",
        handler=send_message,
        access=Scoped(JOBS_RW),
        summary="Send a running interactive job a message",
        description=(
            "The message is stored as a `user_input` message of the job (streamed over"
            " SSE) before the answer, then written to the plugin's stdin as"
            ' `{"type": "input", "message", "message_id"}`. A retried attempt is sent every'
            " message so far as its `transcript`."
        ),
        tag="jobs",
        params=(JOB_ID_PARAM,),
        body=BodySpec(schema="MessageRequest", description="The message.", required=True),
        responses=(
            ResponseSpec(
                status=200, description="The message is stored and sent.", schema="MessageSent"
            ),
            ResponseSpec(status=400, description="A bad body or a query parameter."),
            ResponseSpec(status=404, description="Unknown job."),
            _SESSION_CONFLICT,
            ResponseSpec(
                status=503,
                description=(
                    "Too many messages wait to be handed to the plugin, or the daemon did"
                    " not answer in time."
                ),
                headers={"Retry-After": "Seconds to wait before trying again."},
            ),
            DISK_FULL,
        ),
    ),
    Route(
        operation_id="completeSession",
        method="POST",
        path="/job/{job_id}/complete",
        handler=complete,
        access=Scoped(JOBS_RW),
        summary="Complete a running interactive job's session",
        description=(
            'The plugin is sent `{"type": "complete"}` and its stdin is closed. The job ends'
            " with the plugin's response, or fails (retryably) when none comes within the"
            " plugin's kill grace. Completing twice is harmless."
        ),
        tag="jobs",
        params=(JOB_ID_PARAM,),
        responses=(
            ResponseSpec(
                status=202,
                description="The session is being completed; poll the job for its end.",
                schema="Completing",
            ),
            NO_QUERY,
            ResponseSpec(status=404, description="Unknown job."),
            _SESSION_CONFLICT,
            UNAVAILABLE,
            DISK_FULL,
        ),
    ),
    Route(
        operation_id="instructJob",
        method="POST",
        path="/job/{job_id}/instruct",
        handler=instruct,
        access=Scoped(JOBS_RW),
        summary="Follow a finished job up with a new instruction",
        description=(
            "Creates a new job of the same plugin and command, whose request carries"
            ' `"follow_up": {"job_id": <old>, "prompt", "session": <the old job\'s session>}`'
            " (an agent resumes its conversation from it). It keeps the old job's payload"
            " (unless one is given), timeout, callback and MCP servers. A job is followed"
            " up once: instruct the newest job of a chain. Needs `jobs:rw` and the"
            " command's own scope."
        ),
        tag="jobs",
        params=(JOB_ID_PARAM,),
        body=BodySpec(schema="InstructRequest", description="The instruction.", required=True),
        responses=(
            ResponseSpec(
                status=202,
                description="The follow-up is committed and queued.",
                schema="FollowUpAccepted",
                headers={
                    "Location": "The new job's URL, to poll (`?wait=` long-polls it).",
                    "Retry-After": POLL_AFTER_DOC,
                },
            ),
            ResponseSpec(
                status=400,
                description="A bad body, a payload its input_schema refuses, or a query parameter.",
            ),
            ResponseSpec(status=404, description="Unknown job."),
            ResponseSpec(
                status=409,
                description=(
                    "The job is still queued or running, was already followed up"
                    " (`followed_by` names the follow-up), or its plugin, command,"
                    " callback or MCP servers are no longer available."
                ),
                schema="Conflict",
            ),
            NOT_ACCEPTING_RESPONSE,
            DISK_FULL,
        ),
    ),
)
