"""Loop jobs: ``GET /job/{id}/iterations``, ``POST /job/{id}/stop``.

A loop is started by a trigger's ``loop`` (:mod:`chamberlain.web.trigger`); these
routes show its iterations and stop it.  A stop is recorded in the store and read
by the loop after every iteration, so it takes effect as soon as the iteration
under way ends: the loop runs no more and ends ``succeeded`` (``manual_stop``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chamberlain.loops import CompletionReason
from chamberlain.records import Iteration, Job
from chamberlain.web.auth import JOBS_RO, JOBS_RW, Scoped
from chamberlain.web.errors import JobConflict, not_found
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import DISK_FULL, NO_QUERY, UNAVAILABLE
from chamberlain.web.jobs import JOB_ID_PARAM
from chamberlain.web.spec import ResponseSpec, Route


def history(job: Job, iterations: tuple[Iteration, ...]) -> dict[str, Any]:
    """The answer of ``GET /job/{id}/iterations``."""
    assert job.loop is not None
    return {
        "job_id": job.id,
        "status": job.status.value,
        "current_iteration": iterations[-1].number if iterations else 0,
        "max_iterations": job.loop["max_iterations"],
        "completion_reason": job.completion_reason,
        "stop_requested": job.loop_stop,
        "iterations": [iteration.to_json() for iteration in iterations],
    }


async def _loop_job(call: Call) -> Job:
    job_id = call.path["job_id"]
    job = await call.gateway.get_job(job_id)
    if job is None:
        raise not_found(f"unknown job {job_id!r}")
    if job.loop is None:
        raise JobConflict(f"job {job_id} is not a loop job", status=job.status.value)
    return job


async def get_iterations(call: Call) -> Reply:
    """``GET /job/{job_id}/iterations``: a loop job's iterations, as they stand."""
    job = await _loop_job(call)
    return Reply(history(job, await call.gateway.iterations(job.id)))


async def stop(call: Call) -> Reply:
    """``POST /job/{job_id}/stop``: no more iterations after the one under way."""
    job = await _loop_job(call)
    if job.status.terminal:
        raise JobConflict(
            f"job {job.id} is already {job.status.value}; only a queued or running loop"
            " can be stopped",
            status=job.status.value,
        )
    stopped = await call.gateway.stop_loop(job.id)
    if stopped is None or not stopped.loop_stop:
        # It ended between the two reads.
        status = job.status.value if stopped is None else stopped.status.value
        raise JobConflict(f"job {job.id} has ended", status=status)
    return Reply({"job_id": job.id, "status": "stopping"}, 202)


_FEEDBACK_RESULT = {
    "type": "object",
    "properties": {
        "command": {"type": "array", "items": {"type": "string"}},
        "exit_code": {
            "type": ["integer", "null"],
            "description": "null when it did not exit by itself (stopped at its timeout).",
        },
        "passed": {"type": "boolean", "description": "It exited 0."},
        "output_tail": {"type": "string", "description": "The end of its stdout and stderr."},
    },
    "required": ["command", "exit_code", "passed", "output_tail"],
}

SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "Iterations": {
        "type": "object",
        "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "status": {"$ref": "#/components/schemas/JobStatus"},
            "current_iteration": {
                "type": "integer",
                "minimum": 0,
                "description": "The last iteration started (0 before the first).",
            },
            "max_iterations": {"type": "integer", "minimum": 1},
            "completion_reason": {
                "type": ["string", "null"],
                "enum": [*(reason.value for reason in CompletionReason), None],
                "description": "Why the loop ended; null while it runs.",
            },
            "stop_requested": {"type": "boolean"},
            "iterations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "number": {"type": "integer", "minimum": 1},
                        "runs": {
                            "type": "integer",
                            "minimum": 1,
                            "description": "Runs started: a failure or a crash runs it again.",
                        },
                        "started_at": {"type": "string", "format": "date-time"},
                        "completed_at": {
                            "type": ["string", "null"],
                            "format": "date-time",
                            "description": "null while it runs (or after a failed run).",
                        },
                        "exit_code": {"type": ["integer", "null"]},
                        "error": {"type": ["string", "null"]},
                        "promise_detected": {"type": "boolean"},
                        "output_summary": {"type": ["string", "null"]},
                        "feedback_results": {"type": "array", "items": _FEEDBACK_RESULT},
                    },
                    "required": [
                        "number",
                        "started_at",
                        "completed_at",
                        "exit_code",
                        "error",
                        "promise_detected",
                        "output_summary",
                        "feedback_results",
                    ],
                },
            },
        },
        "required": [
            "job_id",
            "current_iteration",
            "max_iterations",
            "completion_reason",
            "iterations",
        ],
    },
    "Stopping": {
        "type": "object",
        "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "status": {"const": "stopping"},
        },
        "required": ["job_id", "status"],
    },
}

_NOT_A_LOOP = ResponseSpec(
    status=409,
    description="The job is not a loop job (or, for a stop, has ended); its status is in the body.",
    schema="Conflict",
)

ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="getIterations",
        method="GET",
        path="/job/{job_id}/iterations",
        handler=get_iterations,
        access=Scoped(JOBS_RO),
        summary="A loop job's iterations",
        description=(
            "Every iteration started so far, with its result's summary, whether it said"
            " it was complete, and its feedback commands' results. Iterations are stored"
            " as they finish; each is a job message too (streamed over SSE)."
        ),
        tag="jobs",
        params=(JOB_ID_PARAM,),
        responses=(
            ResponseSpec(status=200, description="The iterations.", schema="Iterations"),
            NO_QUERY,
            ResponseSpec(status=404, description="Unknown job."),
            _NOT_A_LOOP,
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="stopLoop",
        method="POST",
        path="/job/{job_id}/stop",
        handler=stop,
        access=Scoped(JOBS_RW),
        summary="Stop a loop job after its current iteration",
        description=(
            "The iteration under way finishes; no more run, and the job ends `succeeded`"
            " with `completion_reason: manual_stop`. To kill the iteration under way,"
            " cancel the job instead."
        ),
        tag="jobs",
        params=(JOB_ID_PARAM,),
        responses=(
            ResponseSpec(
                status=202,
                description="The loop stops once the iteration under way ends.",
                schema="Stopping",
            ),
            NO_QUERY,
            ResponseSpec(status=404, description="Unknown job."),
            _NOT_A_LOOP,
            UNAVAILABLE,
            DISK_FULL,
        ),
    ),
)
