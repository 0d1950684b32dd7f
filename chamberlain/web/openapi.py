"""The OpenAPI 3.1 description of the API, generated from the route table.

:func:`build_openapi` reads the same :class:`~chamberlain.web.spec.Route` records the
app is built from: paths, methods, parameters, bodies, responses and who may call
what.  Protected operations carry the bearer security requirement and the scope
they need in ``x-required-scope`` (a string, or for the trigger routes an object
mapping the command type to its scope).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

from chamberlain.model import JobStatus
from chamberlain.web.auth import ByCommand, Public, Scoped
from chamberlain.web.batch import MAX_BATCH_JOBS
from chamberlain.web.control import SCHEMAS as CONTROL_SCHEMAS
from chamberlain.web.docs import SCHEMAS as DOCS_SCHEMAS
from chamberlain.web.handler import Call, Reply
from chamberlain.web.jobs import MAX_LIMIT
from chamberlain.web.metrics import SCHEMAS as METRICS_SCHEMAS
from chamberlain.web.pipelines import SCHEMAS as PIPELINE_SCHEMAS
from chamberlain.web.schedules import SCHEMAS as SCHEDULE_SCHEMAS
from chamberlain.web.spec import Param, Route
from chamberlain.web.streams import SCHEMAS as STREAM_SCHEMAS
from chamberlain.web.trigger import DEDUPE_KEY_MAX, MAX_ATTEMPTS_LIMIT
from chamberlain.web.webhooks import SCHEMAS as WEBHOOK_SCHEMAS

OPENAPI_VERSION = "3.1.0"
SECURITY_SCHEME = "bearerAuth"

_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _object(
    properties: Mapping[str, Any], *, required: Iterable[str] | None = None, closed: bool = False
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": dict(properties),
        "required": list(properties) if required is None else list(required),
    }
    if closed:
        schema["additionalProperties"] = False
    return schema


_STATUS_ENUM = [s.value for s in JobStatus]

_COMMAND = _object(
    {
        "name": _STRING,
        "type": {"type": "string", "enum": ["read", "write"]},
        "description": _STRING,
        "input_schema": {"type": ["object", "null"]},
        "output_schema": {"type": ["object", "null"]},
        "timeout": {"type": "number", "description": "Seconds a job may run."},
    }
)

#: The options of one trigger: the body of ``POST /trigger``, and part of a batch job.
_TRIGGER_OPTIONS: Mapping[str, Any] = {
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
}

#: Named schemas under ``components.schemas``; routes refer to them by name.
SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "Error": {
        "type": "object",
        "properties": {"error": _STRING},
        "required": ["error"],
        "description": "Every non-2xx answer has this shape; some add fields.",
    },
    "JobStatus": {"type": "string", "enum": _STATUS_ENUM},
    "TriggerRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": dict(_TRIGGER_OPTIONS),
    },
    "TriggerAccepted": _object(
        {
            "job_id": {"type": "string", "format": "uuid"},
            "status": {"const": "queued"},
            "plugin": _STRING,
            "command": _STRING,
        }
    ),
    "TriggerDuplicate": _object(
        {
            "job_id": {"type": "string", "format": "uuid"},
            "status": _ref("JobStatus"),
            "plugin": _STRING,
            "command": _STRING,
            "duplicate": {"const": True},
        }
    ),
    "BatchRequest": _object(
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
                        "plugin": _STRING,
                        "command": _STRING,
                        **_TRIGGER_OPTIONS,
                    },
                },
            }
        },
        closed=True,
    ),
    "BatchAccepted": _object(
        {
            "jobs": {
                "type": "array",
                "items": _object(
                    {
                        "job_id": {"type": "string", "format": "uuid"},
                        "plugin": _STRING,
                        "command": _STRING,
                        "status": _ref("JobStatus"),
                        "duplicate": {"const": True},
                    },
                    required=["job_id", "plugin", "command", "status"],
                ),
            }
        }
    ),
    "Job": _object(
        {
            "job_id": {"type": "string", "format": "uuid"},
            "status": _ref("JobStatus"),
            "plugin": _STRING,
            "command": _STRING,
            "payload": {"type": "object"},
            "event": {
                "description": "The event a handle job received (null for other commands).",
                "type": ["object", "null"],
            },
            "submitted_by": _STRING,
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": _NULLABLE_TIME,
            "completed_at": _NULLABLE_TIME,
            "next_retry_at": _NULLABLE_TIME,
            "attempt": {"type": "integer", "minimum": 0},
            "max_attempts": {"type": "integer", "minimum": 1},
            "last_error": _NULLABLE_STRING,
            "result": {
                "description": (
                    "The plugin's response {status, result, error, events, state_updates,"
                    " logs}, or its raw output when that was not valid JSON."
                )
            },
            "dedupe_key": _NULLABLE_STRING,
            "parent_job_id": _NULLABLE_STRING,
            "source_event_id": _NULLABLE_STRING,
            "root_job_id": {
                "description": "The first job of this job's pipeline or event tree.",
                "type": ["string", "null"],
            },
            "pipeline": {"description": "The pipeline this job is a step of.", **_NULLABLE_STRING},
            "step_id": {"description": "Its step in that pipeline.", **_NULLABLE_STRING},
            "schedule_id": {
                "description": "The schedule (of this plugin) that enqueued the job.",
                **_NULLABLE_STRING,
            },
        }
    ),
    "JobList": _object(
        {
            "jobs": {"type": "array", "items": _ref("Job")},
            "total": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            "offset": {"type": "integer", "minimum": 0},
        }
    ),
    "Command": _COMMAND,
    "Plugin": _object(
        {
            "name": _STRING,
            "version": _STRING,
            "description": _STRING,
            "parallelism": {"type": "integer", "minimum": 1},
            "commands": {"type": "array", "items": _ref("Command")},
        }
    ),
    "PluginList": _object({"plugins": {"type": "array", "items": _ref("Plugin")}}),
    "Health": _object(
        {
            "status": {"type": "string", "enum": ["ok", "starting", "draining"]},
            "uptime_seconds": {"type": "number"},
            "queue_depth": {"type": "integer"},
            "plugins_loaded": {"type": "integer"},
            "running": {"type": "integer"},
            "max_workers": {"type": "integer"},
            "restarts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "restarts_total": {"type": "integer"},
        }
    ),
    "Ready": _object({"status": {"const": "ready"}}),
    "NotReady": _object(
        {"error": _STRING, "status": {"type": "string", "enum": ["starting", "draining"]}}
    ),
    "OpenApi": {"type": "object", "description": "This document."},
    **PIPELINE_SCHEMAS,
    **WEBHOOK_SCHEMAS,
    **CONTROL_SCHEMAS,
    **STREAM_SCHEMAS,
    **METRICS_SCHEMAS,
    **DOCS_SCHEMAS,
    **SCHEDULE_SCHEMAS,
}

_AUTH_RESPONSES = {
    "401": {
        "description": "Missing, malformed or unknown bearer token.",
        "headers": {"WWW-Authenticate": {"schema": _STRING, "description": "A Bearer challenge."}},
        "content": {"application/json": {"schema": _ref("Error")}},
    },
    "403": {
        "description": "The token lacks the scope this operation needs.",
        "content": {"application/json": {"schema": _ref("Error")}},
    },
}
_SERVER_ERROR = {
    "description": "Internal error; the details are in the daemon's log, never in the answer.",
    "content": {"application/json": {"schema": _ref("Error")}},
}


def _version() -> str:
    try:
        return metadata.version("chamberlain")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _parameter(param: Param) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": param.name,
        "in": param.location,
        "description": param.description,
        "required": param.required or param.location == "path",
        "schema": dict(param.schema),
    }
    if param.repeatable:
        out["explode"] = True
    return out


def _required_scope(route: Route) -> Any:
    access = route.access
    if isinstance(access, Scoped):
        return access.scope
    if isinstance(access, ByCommand):
        return {"read": access.read, "write": access.write}
    return None


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
    }
    if route.description:
        op["description"] = route.description
    if route.params:
        op["parameters"] = [_parameter(p) for p in route.params]
    if route.body is not None:
        op["requestBody"] = {
            "description": route.body.description,
            "required": route.body.required,
            "content": {"application/json": {"schema": _ref(route.body.schema)}},
        }
    responses: dict[str, Any] = {}
    for spec in route.responses:
        answer: dict[str, Any] = {"description": spec.description}
        if spec.headers:
            answer["headers"] = {
                name: {"schema": _STRING, "description": text}
                for name, text in spec.headers.items()
            }
        if spec.schema is not None:
            answer["content"] = {spec.media_type: {"schema": _ref(spec.schema)}}
        responses[str(spec.status)] = answer
    if isinstance(route.access, Public):
        op["security"] = []
    else:
        op["security"] = [{SECURITY_SCHEME: []}]
        op["x-required-scope"] = _required_scope(route)
        for status, answer in _AUTH_RESPONSES.items():
            responses.setdefault(status, answer)
    responses.setdefault("500", _SERVER_ERROR)
    op["responses"] = dict(sorted(responses.items()))
    return op


def build_openapi(routes: Iterable[Route], *, title: str = "Chamberlain") -> dict[str, Any]:
    """The OpenAPI 3.1 document describing ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        methods = paths.setdefault(route.path, {})
        key = route.method.lower()
        if key in methods:
            raise ValueError(f"two routes for {route.method} {route.path}")
        methods[key] = _operation(route)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": _version(),
            "description": (
                "Chamberlain runs plugins as durable jobs. Authenticate with"
                " `Authorization: Bearer <token>`; each operation names the scope it needs"
                ' in `x-required-scope`. Errors are always JSON: `{"error": "..."}`.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": {name: dict(schema) for name, schema in SCHEMAS.items()},
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "An api.auth token. Scopes: plugin:ro, plugin:rw, jobs:ro, jobs:rw,"
                        " events:ro, events:rw, read:* (every :ro), * (everything);"
                        " x:rw implies x:ro."
                    ),
                }
            },
        },
    }


async def document(call: Call) -> Reply:
    """``GET /openapi.json``: this API's description."""
    return Reply(call.site.openapi)
