"""Runs: ``GET /runs`` and ``GET /runs/{run_id}``.

Every invocation of a pipeline is a run: ``POST /pipeline/{name}``, a job of its
``on`` that succeeded, an event of its ``on`` type, a webhook delivery.  Its id is
the ``pipeline_instance_id`` every job of its steps carries (``run_id`` on each
job); its steps are the pipeline's, in the config's order, each with its jobs and a
status read from them (:mod:`chamberlain.runs`).  ``GET /job/{id}/tree`` still
shows the jobs as a tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from chamberlain.records import rfc3339
from chamberlain.runs import PipelineRun, RunStatus, StepStatus
from chamberlain.web.auth import JOBS_RO, Scoped
from chamberlain.web.errors import bad_request, not_found
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import NO_QUERY, UNAVAILABLE
from chamberlain.web.jobs import int_param, single_param
from chamberlain.web.spec import Param, ResponseSpec, Route, object_schema

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
_STATUSES: Final = tuple(status.value for status in RunStatus)


def run_json(run: PipelineRun, step_ids: tuple[str, ...]) -> dict[str, Any]:
    """A run as ``GET /runs/{id}`` shows it: its steps in order, each with its jobs."""
    return {
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "status": run.status.value,
        "created_at": rfc3339(run.created_at),
        "started_at": rfc3339(run.started_at),
        "completed_at": rfc3339(run.completed_at),
        "steps": [
            {
                "step_id": step.step_id,
                "status": step.status.value,
                "job_ids": list(step.job_ids),
                "started_at": rfc3339(step.started_at),
                "completed_at": rfc3339(step.completed_at),
            }
            for step in run.steps(step_ids)
        ],
    }


def _statuses(values: tuple[str, ...] | list[str]) -> frozenset[RunStatus]:
    found: set[RunStatus] = set()
    for value in values:
        for part in value.split(","):
            try:
                found.add(RunStatus(part.strip()))
            except ValueError:
                raise bad_request(
                    f"unknown status {part.strip()!r}; expected one of: {', '.join(_STATUSES)}"
                ) from None
    return frozenset(found)


async def list_runs(call: Call) -> Reply:
    """``GET /runs``: runs, the newest first, with their steps."""
    query = call.query
    pipeline = single_param(query, "pipeline")
    statuses = _statuses(list(query.get("status", ())))
    limit = int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = int_param(query, "offset", 0, 0, 2**62)
    runs, total = await call.gateway.list_runs(
        pipeline=pipeline, statuses=statuses, limit=limit, offset=offset
    )
    routing = call.gateway.routing
    return Reply(
        {
            "runs": [run_json(run, routing.step_ids(run.pipeline)) for run in runs],
            "total": total,
        }
    )


async def get_run(call: Call) -> Reply:
    """``GET /runs/{run_id}``: one run."""
    run_id = call.path["run_id"]
    run = await call.gateway.get_run(run_id)
    if run is None:
        raise not_found(f"unknown run {run_id!r}")
    return Reply(run_json(run, call.gateway.routing.step_ids(run.pipeline)))


_TIME = {"type": ["string", "null"], "format": "date-time"}
_ONE_STATUS = "|".join(_STATUSES)

SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "Run": object_schema(
        {
            "run_id": {"type": "string"},
            "pipeline": {"type": "string"},
            "status": {"type": "string", "enum": list(_STATUSES)},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": _TIME,
            "completed_at": _TIME,
            "steps": {
                "type": "array",
                "items": object_schema(
                    {
                        "step_id": {"type": "string"},
                        "status": {
                            "type": "string",
                            "enum": [status.value for status in StepStatus],
                        },
                        "job_ids": {"type": "array", "items": {"type": "string"}},
                        "started_at": _TIME,
                        "completed_at": _TIME,
                    }
                ),
            },
        }
    ),
    "Runs": object_schema(
        {
            "runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
            "total": {"type": "integer", "minimum": 0},
        }
    ),
}

ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="listRuns",
        method="GET",
        path="/runs",
        handler=list_runs,
        access=Scoped(JOBS_RO),
        summary="Runs of pipelines, the newest first",
        description=(
            "Every invocation of a pipeline, with its steps and their jobs. See docs/RUNS.md."
        ),
        tag="pipelines",
        params=(
            Param(
                name="pipeline",
                location="query",
                description="Only runs of this pipeline.",
                schema={"type": "string", "minLength": 1},
            ),
            Param(
                name="status",
                location="query",
                description=(
                    "Only runs in these statuses: comma-separated and/or repeated"
                    f" ({', '.join(_STATUSES)})."
                ),
                schema={
                    "type": "string",
                    "pattern": f"^ *({_ONE_STATUS}) *(, *({_ONE_STATUS}) *)*$",
                },
                repeatable=True,
            ),
            Param(
                name="limit",
                location="query",
                description=f"Page size, 1 to {MAX_LIMIT}.",
                schema={
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_LIMIT,
                    "default": DEFAULT_LIMIT,
                },
            ),
            Param(
                name="offset",
                location="query",
                description="How many matching runs to skip.",
                schema={"type": "integer", "minimum": 0, "maximum": 2**62, "default": 0},
            ),
        ),
        responses=(
            ResponseSpec(status=200, description="A page of runs.", schema="Runs"),
            ResponseSpec(status=400, description="Unknown parameter, bad status, limit or offset."),
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="getRun",
        method="GET",
        path="/runs/{run_id}",
        handler=get_run,
        access=Scoped(JOBS_RO),
        summary="One run of a pipeline",
        tag="pipelines",
        params=(Param(name="run_id", location="path", description="The run's id.", required=True),),
        responses=(
            ResponseSpec(status=200, description="The run.", schema="Run"),
            NO_QUERY,
            ResponseSpec(status=404, description="Unknown run."),
            UNAVAILABLE,
        ),
    ),
)
