"""``GET /job/{id}/stream`` and ``GET /events/stream``: live observation over SSE.

The handlers only check the request (token, job, ids, filters) and then hand the
stream generators of :mod:`chamberlain.web.sse` to the app, so every refusal is
still a JSON error with its status and only a stream that can start starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chamberlain.records import MessageKind
from chamberlain.web.auth import EVENTS_RO, JOBS_RO, Scoped
from chamberlain.web.errors import bad_request, not_found
from chamberlain.web.handler import Call, StreamReply
from chamberlain.web.intake import UNAVAILABLE
from chamberlain.web.jobs import JOB_ID_PARAM, parse_statuses
from chamberlain.web.spec import Param, ResponseSpec, Route
from chamberlain.web.sse import (
    MEDIA_TYPE,
    STREAM_HEADERS,
    job_stream,
    parse_event_id,
    status_stream,
)

_LAST_EVENT_ID = Param(
    name="last_event_id",
    location="query",
    description=(
        "Resume after this event id, like the `Last-Event-ID` header (which wins when"
        " both are given). For clients that cannot set headers."
    ),
    schema={"type": "integer", "minimum": 0},
)


def _single(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def resume_point(call: Call) -> int | None:
    """The id the client already has: ``Last-Event-ID``, else ``?last_event_id``."""
    header = call.header("Last-Event-ID")
    try:
        if header is not None and header.strip():
            return parse_event_id(header)
        return parse_event_id(_single(call.query, "last_event_id"), name="last_event_id")
    except ValueError as exc:
        raise bad_request(str(exc)) from None


async def job_events(call: Call) -> StreamReply:
    """``GET /job/{job_id}/stream``: the job's messages and status changes, live."""
    job_id = call.path["job_id"]
    after = resume_point(call)
    if await call.gateway.get_job(job_id) is None:
        raise not_found(f"unknown job {job_id!r}")
    api = call.site.api
    chunks = job_stream(
        call.gateway,
        job_id,
        after=after or 0,
        keepalive=api.sse_keepalive,
        buffer=api.sse_buffer,
    )
    return StreamReply(chunks=chunks, media_type=MEDIA_TYPE, headers=STREAM_HEADERS)


async def all_events(call: Call) -> StreamReply:
    """``GET /events/stream``: every job's status changes, live, filtered."""
    after = resume_point(call)
    plugin = _single(call.query, "plugin")
    if plugin is not None and plugin not in call.gateway.plugins:
        raise bad_request(f"unknown plugin {plugin!r}")
    statuses = parse_statuses(call.query.get("status", ()))
    api = call.site.api
    chunks = status_stream(
        call.gateway,
        after=after,
        plugin=plugin,
        statuses=statuses,
        keepalive=api.sse_keepalive,
        buffer=api.sse_buffer,
    )
    return StreamReply(chunks=chunks, media_type=MEDIA_TYPE, headers=STREAM_HEADERS)


_STREAM_DESCRIPTION = (
    " Every event has an `id:`; reconnect with `Last-Event-ID` (browsers' EventSource"
    " does this by itself) to resume without gaps or repeats. Idle streams carry a"
    " `: keepalive` comment every `api.sse_keepalive` (15 s). A client that reads too"
    " slowly to keep up is disconnected, and resumes from the store on reconnecting."
)

SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "JobMessage": {
        "type": "object",
        "properties": {
            "seq": {"type": "integer", "minimum": 1},
            "ts": {"type": "string", "format": "date-time"},
            "kind": {
                "type": "string",
                "enum": [kind.value for kind in MessageKind],
                "description": (
                    "`stderr`: a line the plugin wrote there; `log`: an entry of its"
                    " response's `logs`; `stdout`: an interactive plugin's output;"
                    " `user_input`: what a user sent an interactive job; `system`:"
                    " written by the daemon (status changes, waits for input, markers)."
                ),
            },
            "text": {"type": "string"},
            "status": {
                "$ref": "#/components/schemas/JobStatus",
                "description": "Status changes only: the job's new status.",
            },
            "attempt": {"type": "integer", "description": "Status changes only."},
            "level": {
                "type": "string",
                "description": "Log entries only: the level the plugin gave, or `info`.",
            },
            "message_id": {
                "type": "string",
                "description": "User inputs only: the id the plugin was sent it with.",
            },
        },
        "required": ["seq", "ts", "kind", "text"],
    },
    "Delivery": {
        "type": "object",
        "properties": {
            "delivery_id": {"type": "string", "format": "uuid"},
            "url": {"type": "string"},
            "event": {"type": "string", "examples": ["job.succeeded"]},
            "state": {"type": "string", "enum": ["pending", "delivered", "failed"]},
            "attempts": {"type": "integer", "minimum": 0},
            "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
            "last_status_code": {"type": ["integer", "null"]},
            "last_error": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "delivered_at": {"type": ["string", "null"], "format": "date-time"},
        },
        "required": ["delivery_id", "url", "event", "state", "attempts"],
    },
    "JobDetail": {
        "allOf": [
            {"$ref": "#/components/schemas/Job"},
            {
                "type": "object",
                "properties": {
                    "messages": {
                        "description": "With ?include=messages.",
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/JobMessage"},
                    },
                    "callback_url": {
                        "description": "With ?include=callbacks.",
                        "type": ["string", "null"],
                    },
                    "callbacks": {
                        "description": "With ?include=callbacks: every delivery.",
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Delivery"},
                    },
                },
            },
        ]
    },
    "EventStream": {
        "type": "string",
        "description": (
            "Server-Sent Events. Each event: `id: <n>`, `event: <name>`, `data: <JSON>`."
            " The data of `message` and `status` events is a JobEvent."
        ),
    },
    "JobEvent": {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "description": "Global, growing message id."},
            "seq": {"type": "integer", "description": "Per-job, growing message number."},
            "job_id": {"type": "string", "format": "uuid"},
            "plugin": {"type": "string"},
            "command": {"type": "string"},
            "ts": {"type": "string", "format": "date-time"},
            "kind": {
                "type": "string",
                "enum": [kind.value for kind in MessageKind],
                "description": (
                    "`stderr`: a line the plugin wrote there; `log`: an entry of its"
                    " response's `logs`; `stdout`: an interactive plugin's output;"
                    " `user_input`: what a user sent an interactive job; `system`:"
                    " written by the daemon (status changes, waits for input, markers)."
                ),
            },
            "text": {"type": "string"},
            "status": {
                "$ref": "#/components/schemas/JobStatus",
                "description": "Status changes only.",
            },
            "attempt": {"type": "integer", "description": "Status changes only."},
        },
        "required": ["id", "seq", "job_id", "plugin", "command", "ts", "kind", "text"],
    },
}

ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="streamJob",
        method="GET",
        path="/job/{job_id}/stream",
        handler=job_events,
        access=Scoped(JOBS_RO),
        summary="Follow a job live (Server-Sent Events)",
        description=(
            "Events: `connected` (data `{job}`: the job now), then `message` (a stderr line"
            " or a system message) and `status` (a status change) in order, replayed from"
            " the start or after `Last-Event-ID` and then live, and finally `done` (data"
            " `{job}`: the finished job) before the stream closes. Ids are the job's"
            " message numbers (`seq`)." + _STREAM_DESCRIPTION
        ),
        tag="jobs",
        params=(JOB_ID_PARAM, _LAST_EVENT_ID),
        responses=(
            ResponseSpec(
                status=200,
                description="The stream.",
                schema="EventStream",
                media_type=MEDIA_TYPE,
            ),
            ResponseSpec(status=400, description="A bad Last-Event-ID or query parameter."),
            ResponseSpec(status=404, description="Unknown job."),
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="streamEvents",
        method="GET",
        path="/events/stream",
        handler=all_events,
        access=Scoped(EVENTS_RO),
        summary="Follow every job's status changes live (Server-Sent Events)",
        description=(
            "Events: `connected` (data `{queued, running, last_event_id}`), then `status`"
            " for every status change of every job that passes the filters. Ids are global"
            " message ids. Without `Last-Event-ID` the stream starts now; with one, the"
            " changes since are replayed first." + _STREAM_DESCRIPTION
        ),
        tag="jobs",
        params=(
            Param(name="plugin", location="query", description="Only this plugin's jobs."),
            Param(
                name="status",
                location="query",
                description="Only changes to these statuses: comma-separated and/or repeated.",
                schema={"type": "string", "examples": ["succeeded,failed,dead"]},
                repeatable=True,
            ),
            _LAST_EVENT_ID,
        ),
        responses=(
            ResponseSpec(
                status=200,
                description="The stream.",
                schema="EventStream",
                media_type=MEDIA_TYPE,
            ),
            ResponseSpec(
                status=400,
                description="A bad Last-Event-ID, an unknown plugin or status, or query.",
            ),
            UNAVAILABLE,
        ),
    ),
)
