"""Pipelines over HTTP: start one by hand, list them, read a job's whole tree.

``POST /pipeline/{name}`` starts a pipeline (waiting for it when it is synchronous,
see :mod:`chamberlain.web.synchronous`); ``GET /job/{id}/tree`` shows every job a
root set in motion: an array of jobs, the shape Ductile's gateway answers
(``internal/api/handlers.go`` ``handleGetJobTree``), or with ``?detail=1`` an
object that adds the root and the steps that were skipped; ``GET /pipelines``
lists them.  The module owns these routes and their schemas.
"""

from __future__ import annotations

from typing import Any

from chamberlain.records import Tree, rfc3339
from chamberlain.web.auth import JOBS_RO, PLUGIN_RO, PLUGIN_RW, Scoped
from chamberlain.web.errors import bad_request, not_found
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import (
    BAD_DETAIL,
    DISK_FULL,
    NO_QUERY,
    UNAVAILABLE,
    decode_json_object,
    not_accepting,
    refuse_unknown_fields,
)
from chamberlain.web.jobs import JOB_ID_PARAM, POLL_AFTER, POLL_AFTER_DOC
from chamberlain.web.spec import STRING, BodySpec, Param, ResponseSpec, Route, object_schema, ref
from chamberlain.web.synchronous import (
    ASYNC_PARAM,
    SYNC_DONE_DOC,
    SYNC_TIMEOUT_DOC,
    SYNC_UNAVAILABLE,
    answer_synchronously,
    sync_slot,
    wants_async,
)


def tree_json(tree: Tree) -> dict[str, Any]:
    """A tree as the API shows it."""
    return {
        "root_job_id": tree.root_job_id,
        "jobs": [job.to_json() for job in tree.jobs],
        "notes": [{**note, "created_at": rfc3339(note.get("created_at"))} for note in tree.notes],
    }


async def start_pipeline(call: Call) -> Reply:
    """``POST /pipeline/{name}``: run the pipeline on the posted payload."""
    name = call.path["name"]
    routing = call.gateway.routing
    pipeline = routing.pipeline(name)
    if pipeline is None:
        raise not_found(f"unknown pipeline {name!r}")
    identity = call.require(PLUGIN_RW, action=f"start pipeline {name}")
    call.check_query()
    synchronous = not wants_async(call) and pipeline.synchronous
    body = decode_json_object(await call.read_body())
    refuse_unknown_fields(body, ("payload", "start"))
    payload = body.get("payload", {})
    if not isinstance(payload, dict):
        raise bad_request("payload must be a JSON object")
    start = body.get("start", "now")
    if start not in ("now", "paused"):
        raise bad_request(f"start must be 'now' or 'paused', not {start!r}")
    paused = start == "paused"
    if paused:
        # A paused run has nothing to wait for: it is answered at once.
        synchronous = False
    refusal = not_accepting(call.gateway.lifecycle)
    if refusal is not None:
        raise refusal
    plan = routing.start(pipeline, payload, submitted_by=identity.submitted_by, now=call.site.now())
    if not plan.jobs:
        return Reply(
            {"pipeline": name, "status": "skipped", "message": "every step's if: was false"}, 200
        )
    if synchronous:
        # Hold a waiting slot before enqueueing, so a refusal (503) leaves nothing behind.
        async with sync_slot(call):
            enqueued = await call.gateway.enqueue_plan(plan)
            return await answer_synchronously(call, enqueued[0].job, pipeline)
    enqueued = await call.gateway.enqueue_plan(plan, paused=paused)
    root = enqueued[0].job
    return Reply(
        {"job_id": root.id, "run_id": root.run_id, "status": root.status.value, "pipeline": name},
        202,
        {"Location": f"/job/{root.id}/tree", "Retry-After": str(POLL_AFTER)},
    )


async def job_tree(call: Call) -> Reply:
    """``GET /job/{job_id}/tree``: every job of the tree the job belongs to.

    An array of jobs in creation order; ``?detail=1`` gives :func:`tree_json`.
    """
    call.check_query()
    detail = call.flag("detail")
    tree = await call.gateway.get_tree(call.path["job_id"])
    if tree is None:
        raise not_found(f"unknown job {call.path['job_id']!r}")
    if detail:
        return Reply(tree_json(tree), 200)
    return Reply([job.to_json() for job in tree.jobs], 200)


async def list_pipelines(call: Call) -> Reply:
    """``GET /pipelines``: the configured pipelines and their steps."""
    call.check_query()
    return Reply(
        {
            "pipelines": [
                {
                    "name": p.name,
                    "on": p.on,
                    "execution_mode": p.execution_mode,
                    "timeout": p.timeout,
                    # The trigger's gates: which plugin's events, and on what condition.
                    "from_plugin": p.from_plugin,
                    "if": None if p.if_ is None else p.if_.as_data(),
                    "steps": [
                        {
                            "id": s.id,
                            "uses": s.uses,
                            "with": s.with_,
                            "if": None if s.if_ is None else s.if_.as_data(),
                        }
                        for s in p.steps
                    ],
                }
                for p in call.gateway.routing.pipelines
            ]
        },
        200,
    )


_NAME = Param(name="name", location="path", description="The pipeline's name.", required=True)

_TREE_DETAIL = Param(
    name="detail",
    location="query",
    description=(
        "`1` (or `true`): an object, `{root_job_id, jobs, notes}`, whose `notes` say"
        " which steps were skipped and why (JobTree). Without it (or `0`, `false`):"
        " the array of jobs, as Ductile's gateway answers (JobTreeList)."
    ),
    schema={"type": "boolean", "default": False},
)

ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="startPipeline",
        method="POST",
        path="/pipeline/{name}",
        handler=start_pipeline,
        access=Scoped(PLUGIN_RW),
        summary="Start a pipeline on a payload",
        description=(
            "Step one receives the payload in an event typed as the pipeline's `on`"
            " (`api.pipeline.trigger` for an on-hook pipeline). A synchronous"
            " pipeline answers when its tree has finished (200), or 202 when that takes"
            " longer than its timeout (capped by api.max_sync_timeout)."
        ),
        tag="pipelines",
        params=(_NAME, ASYNC_PARAM),
        body=BodySpec(schema="PipelineRequest", description="Optional: {payload: {...}, start}."),
        responses=(
            ResponseSpec(
                status=200,
                description=(
                    "Nothing to run: every step's `if:` was false (PipelineSkipped)."
                    + SYNC_DONE_DOC
                ),
                schema=("SyncResult", "PipelineSkipped"),
                optional_headers={"Location": "The tree's URL; absent when nothing ran."},
            ),
            ResponseSpec(
                status=202,
                description="Started (PipelineStarted)." + SYNC_TIMEOUT_DOC,
                schema=("PipelineStarted", "SyncTimeout"),
                headers={"Location": "The tree's URL.", "Retry-After": POLL_AFTER_DOC},
            ),
            ResponseSpec(status=400, description="Malformed body or query."),
            ResponseSpec(status=404, description="Unknown pipeline."),
            SYNC_UNAVAILABLE,
            DISK_FULL,
        ),
    ),
    Route(
        operation_id="listPipelines",
        method="GET",
        path="/pipelines",
        handler=list_pipelines,
        access=Scoped(PLUGIN_RO),
        summary="The configured pipelines",
        tag="pipelines",
        responses=(
            ResponseSpec(status=200, description="Pipelines.", schema="PipelineList"),
            NO_QUERY,
        ),
    ),
    Route(
        operation_id="getJobTree",
        method="GET",
        path="/job/{job_id}/tree",
        handler=job_tree,
        access=Scoped(JOBS_RO),
        summary="Every job of the tree a job belongs to",
        description=(
            "Every job of the tree the job belongs to, in creation order: an array"
            " (JobTreeList), or with `detail=1` an object that adds the skipped steps"
            " (JobTree)."
        ),
        tag="jobs",
        params=(JOB_ID_PARAM, _TREE_DETAIL),
        responses=(
            ResponseSpec(
                status=200,
                description="The tree: JobTreeList, or JobTree with `detail=1`.",
                schema=("JobTreeList", "JobTree"),
            ),
            BAD_DETAIL,
            ResponseSpec(status=404, description="Unknown job."),
            UNAVAILABLE,
        ),
    ),
)

#: Component schemas these routes refer to (merged into the OpenAPI document).
SCHEMAS: dict[str, Any] = {
    "PipelineRequest": {
        "type": "object",
        "properties": {
            "payload": {"type": "object"},
            "start": {
                "enum": ["now", "paused"],
                "description": (
                    "paused: the run starts paused, its first jobs held until"
                    " POST /runs/{id}/resume (answered at once, even when synchronous)."
                ),
            },
        },
        "additionalProperties": False,
    },
    "PipelineStarted": object_schema(
        {
            "job_id": {"type": "string", "format": "uuid", "description": "The root job."},
            "run_id": {"type": "string", "description": "The run it started (GET /runs/{id})."},
            "status": ref("JobStatus"),
            "pipeline": STRING,
        }
    ),
    "PipelineSkipped": object_schema(
        {"pipeline": STRING, "status": {"const": "skipped"}, "message": STRING}
    ),
    "JobTreeList": {
        "type": "array",
        "items": ref("Job"),
        "description": "Every job of the tree, in creation order.",
    },
    "JobTree": {
        "type": "object",
        "properties": {
            "root_job_id": {"type": "string"},
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
            "notes": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["root_job_id", "jobs", "notes"],
    },
    "PipelineList": {
        "type": "object",
        "properties": {"pipelines": {"type": "array", "items": {"type": "object"}}},
        "required": ["pipelines"],
    },
}
