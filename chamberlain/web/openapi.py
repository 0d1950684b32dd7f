"""The OpenAPI 3.1 description of the API, generated from the route table.

:func:`build_openapi` reads the same :class:`~chamberlain.web.spec.Route` records the
app is built from: paths, methods, parameters, bodies, responses and who may call
what.  Routes that are no operation of the API (the explorer's files, the favicon,
the redirect from ``/docs/``: ``in_spec=False``) are served but left out.  Protected
operations carry the bearer security requirement and the scope they need in
``x-required-scope`` (a string, or for the trigger routes an object mapping the
command type to its scope).  :data:`SCHEMAS` gathers the component schemas each
feature module declares next to its routes; this module adds only the shared ones
(the error shape, a job's status), the document's own and its route,
``GET /openapi.json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from chamberlain.records import JobStatus
from chamberlain.web import (
    batch,
    catalogue,
    control,
    dashboard,
    discovery,
    docs,
    ductile_views,
    facts,
    health,
    jobs,
    loop_jobs,
    mcp_registry,
    metrics,
    pipelines,
    pull_requests,
    relay_ingress,
    repositories,
    runs,
    schedules,
    secret_registry,
    sessions,
    streams,
    synchronous,
    system,
    trigger,
    webhooks,
    workspaces,
)
from chamberlain.web.auth import PUBLIC, Authenticated, ByCommand, Public, Scoped
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import NO_QUERY
from chamberlain.web.spec import STRING, Param, ResponseSpec, Route, check_table, ref

OPENAPI_VERSION = "3.1.0"
SECURITY_SCHEME = "bearerAuth"

#: Schemas every part of the document refers to: the error shape, a job's status.
_SHARED_SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "Error": {
        "type": "object",
        "properties": {"error": STRING},
        "required": ["error"],
        "description": "Every non-2xx answer has this shape; some add fields.",
    },
    "JobStatus": {"type": "string", "enum": [s.value for s in JobStatus]},
}

#: The schema of this module's own route.
_DOCUMENT_SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "OpenApi": {"type": "object", "description": "This document."},
}


def merge_schemas(*parts: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The named schemas of every part, in order; a name two parts define is an error."""
    merged: dict[str, Mapping[str, Any]] = {}
    for part in parts:
        for name, schema in part.items():
            if name in merged:
                raise ValueError(f"schema {name!r} is defined twice")
            merged[name] = schema
    return merged


#: Named schemas under ``components.schemas``; routes refer to them by name.  Each
#: feature module owns the schemas of its routes; the order is the document's.
SCHEMAS: Mapping[str, Mapping[str, Any]] = merge_schemas(
    _SHARED_SCHEMAS,
    trigger.SCHEMAS,
    batch.SCHEMAS,
    jobs.SCHEMAS,
    catalogue.SCHEMAS,
    facts.SCHEMAS,
    health.SCHEMAS,
    _DOCUMENT_SCHEMAS,
    pipelines.SCHEMAS,
    runs.SCHEMAS,
    synchronous.SCHEMAS,
    webhooks.SCHEMAS,
    relay_ingress.SCHEMAS,
    control.SCHEMAS,
    sessions.SCHEMAS,
    loop_jobs.SCHEMAS,
    workspaces.SCHEMAS,
    repositories.SCHEMAS,
    pull_requests.SCHEMAS,
    streams.SCHEMAS,
    metrics.SCHEMAS,
    docs.SCHEMAS,
    schedules.SCHEMAS,
    ductile_views.SCHEMAS,
    secret_registry.SCHEMAS,
    mcp_registry.SCHEMAS,
    discovery.SCHEMAS,
    system.SCHEMAS,
    dashboard.SCHEMAS,
)

_AUTH_RESPONSES = {
    "401": {
        "description": "Missing, malformed or unknown bearer token.",
        "headers": {
            "WWW-Authenticate": {
                "schema": STRING,
                "description": "A Bearer challenge.",
                "required": True,
            }
        },
        "content": {"application/json": {"schema": ref("Error")}},
    },
    "403": {
        "description": "The token lacks the scope this operation needs.",
        "headers": {
            "WWW-Authenticate": {
                "schema": STRING,
                "description": "A Bearer challenge: insufficient_scope, naming the scope.",
                "required": True,
            }
        },
        "content": {"application/json": {"schema": ref("Error")}},
    },
}
_SERVER_ERROR = {
    "description": "Internal error; the details are in the daemon's log, never in the answer.",
    "content": {"application/json": {"schema": ref("Error")}},
}


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


def _response(spec: ResponseSpec) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": spec.description}
    headers = {
        **{
            name: {"schema": STRING, "description": text, "required": True}
            for name, text in spec.headers.items()
        },
        **{
            name: {"schema": STRING, "description": text}
            for name, text in spec.optional_headers.items()
        },
    }
    if headers:
        answer["headers"] = headers
    if isinstance(spec.schema, str):
        answer["content"] = {spec.media_type: {"schema": ref(spec.schema)}}
    elif spec.schema is not None:
        answer["content"] = {spec.media_type: {"schema": {"oneOf": [ref(s) for s in spec.schema]}}}
    for media_type, schema in spec.alternatives.items():
        answer.setdefault("content", {})[media_type] = (
            {} if schema is None else {"schema": ref(schema)}
        )
    return answer


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
            "content": {"application/json": {"schema": ref(route.body.schema)}},
        }
    responses = {str(spec.status): _response(spec) for spec in route.responses}
    if isinstance(route.access, Public):
        op["security"] = []
    elif isinstance(route.access, Authenticated):
        # Any valid token: no scope to name, so no 403 either.
        op["security"] = [{SECURITY_SCHEME: []}]
        responses.setdefault("401", _AUTH_RESPONSES["401"])
    else:
        op["security"] = [{SECURITY_SCHEME: []}]
        op["x-required-scope"] = _required_scope(route)
        for status, answer in _AUTH_RESPONSES.items():
            responses.setdefault(status, answer)
    responses.setdefault("500", _SERVER_ERROR)
    op["responses"] = dict(sorted(responses.items()))
    return op


def build_openapi(routes: Iterable[Route], *, title: str = "Chamberlain") -> dict[str, Any]:
    """The OpenAPI 3.1 document describing ``routes``.

    The whole table is checked (:func:`~chamberlain.web.spec.check_table`), routes
    left out of the document included, since the app serves them all.
    """
    table = tuple(routes)
    check_table(table)
    paths: dict[str, dict[str, Any]] = {}
    for route in table:
        if route.in_spec:
            paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": health.package_version(),
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
                        " events:ro, events:rw, mcp:ro, mcp:rw, read:* (every :ro),"
                        " * (everything);"
                        " x:rw implies x:ro."
                    ),
                }
            },
        },
    }


async def document(call: Call) -> Reply:
    """``GET /openapi.json``: this API's description."""
    return Reply(call.site.openapi)


ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="openapi",
        method="GET",
        path="/openapi.json",
        handler=document,
        access=PUBLIC,
        summary="This API description (OpenAPI 3.1)",
        tag="daemon",
        responses=(
            ResponseSpec(status=200, description="The document.", schema="OpenApi"),
            NO_QUERY,
        ),
    ),
)
