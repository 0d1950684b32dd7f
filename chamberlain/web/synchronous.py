"""Synchronous calls: answering an HTTP request only once a pipeline has finished.

A trigger of the ``plugin.command`` a synchronous pipeline starts from, and
``POST /pipeline/{name}`` of a synchronous pipeline, wait here for the job tree.
Waiting calls are bounded (``api.max_concurrent_sync``): a call holds a slot
(:func:`sync_slot`, an async context manager) from before anything is enqueued,
so a refused call (503) leaves nothing behind, until it is answered, whichever
way.  A call that waits longer than the pipeline's timeout (capped by
``api.max_sync_timeout``) is answered 202 while the pipeline goes on.  The schemas
of those two answers (``SyncResult``, ``SyncTimeout``) and their wording in the
route table live here, next to the code that builds them, for both routes to name.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from chamberlain.config import PipelineConfig
from chamberlain.records import Job, JobStatus, Tree
from chamberlain.web.errors import unavailable
from chamberlain.web.handler import Call, Reply
from chamberlain.web.jobs import POLL_AFTER
from chamberlain.web.spec import STRING, Param, ResponseSpec, object_schema, ref

ASYNC_PARAM = Param(
    name="async",
    location="query",
    description=(
        "With a synchronous pipeline: `true` answers 202 at once instead of waiting"
        " for the pipeline."
    ),
    schema={"type": "boolean", "default": False},
)


NULLABLE_RUN: Mapping[str, Any] = {"type": ["string", "null"]}

#: Component schemas of the two answers of a synchronous call (merged into the OpenAPI
#: document); the routes that make such calls name them next to their own.
SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "SyncResult": object_schema(
        {
            "job_id": {"type": "string", "format": "uuid", "description": "The root job."},
            "run_id": {**NULLABLE_RUN, "description": "The pipeline's run (GET /runs/{id})."},
            "status": {
                **ref("JobStatus"),
                "description": "succeeded, or the status of the first job that did not.",
            },
            "pipeline": STRING,
            "duration_ms": {"type": "number", "description": "How long the call waited."},
            "result": {"description": "The last job's result, when every job succeeded."},
            "error": {**STRING, "description": "The error of the first job that did not succeed."},
            "tree": {"type": "array", "items": ref("Job")},
        },
        required=("job_id", "run_id", "status", "pipeline", "duration_ms", "result", "tree"),
    ),
    "SyncTimeout": object_schema(
        {
            "job_id": {"type": "string", "format": "uuid", "description": "The root job."},
            "run_id": {**NULLABLE_RUN, "description": "The pipeline's run (GET /runs/{id})."},
            "status": {"const": "running"},
            "timeout_exceeded": {"const": True},
            "message": STRING,
        }
    ),
}

#: What a call that waited adds to its route's 200 and 202.
SYNC_DONE_DOC = (
    " With a synchronous pipeline (unless `?async=true`): the finished tree (SyncResult),"
    " whatever its outcome; `status` says it."
)
SYNC_TIMEOUT_DOC = (
    " With a synchronous pipeline: it did not finish within its timeout (capped by"
    " api.max_sync_timeout) and goes on (SyncTimeout); poll the tree at Location."
)
#: The 503 of a route that may wait for a synchronous pipeline.
SYNC_UNAVAILABLE = ResponseSpec(
    status=503,
    description=(
        "The daemon is starting or draining, too many synchronous calls are waiting"
        " (api.max_concurrent_sync), or the store did not answer in time."
    ),
    optional_headers={"Retry-After": "Seconds to wait; absent while draining."},
)


def wants_async(call: Call) -> bool:
    """The ``?async=`` flag (see :meth:`Call.flag`: a bad value is a 400).

    Every route that takes the flag asks, whether or not a pipeline would wait: a
    misspelt flag that is ignored today would change the answer once the pipeline
    becomes synchronous.
    """
    return call.flag("async")


def _outcome(tree: Tree) -> tuple[str, Any, str | None]:
    """(status, result, error) of a finished tree.

    The tree succeeded when every job did; its result is the last job's result (in
    a pipeline, the last step's).  Otherwise the first job that did not succeed
    gives the status and the error.
    """
    for job in tree.jobs:
        if job.status is not JobStatus.SUCCEEDED:
            return job.status.value, None, job.last_error
    last: Job = tree.jobs[-1]
    response = last.result if isinstance(last.result, Mapping) else {}
    return JobStatus.SUCCEEDED.value, response.get("result", last.result), None


@asynccontextmanager
async def sync_slot(call: Call) -> AsyncIterator[None]:
    """Hold one of the ``api.max_concurrent_sync`` slots for the block; 503 when none is free.

    Enter it before enqueueing, so a refused call leaves nothing behind; the slot is
    given back however the block ends.
    """
    limiter = call.gateway.sync_limiter
    # A borrower of its own: anything the client sends (its X-Request-Id) may be sent
    # by two calls at once, and trio refuses a borrower that already holds a token.
    borrower = object()
    try:
        limiter.acquire_on_behalf_of_nowait(borrower)
    except trio.WouldBlock:
        limit = call.site.api.max_concurrent_sync
        raise unavailable(
            f"too many synchronous calls are waiting (api.max_concurrent_sync = {limit});"
            " retry later or add ?async=true",
            retry_after=1,
        ) from None
    try:
        yield
    finally:
        limiter.release_on_behalf_of(borrower)


async def answer_synchronously(call: Call, root: Job, pipeline: PipelineConfig) -> Reply:
    """Wait for ``root``'s tree; 200 with the outcome, or 202 when it takes too long.

    Called inside :func:`sync_slot`, which the caller entered before enqueueing.
    """
    limit = min(pipeline.timeout, call.site.api.max_sync_timeout)
    started = time.monotonic()
    tree: Tree | None = None
    with trio.move_on_after(limit):
        tree = await call.gateway.wait_tree(root.id)
    headers = {"Location": f"/job/{root.id}/tree"}
    if tree is None:
        return Reply(
            {
                "job_id": root.id,
                "run_id": root.run_id,
                "status": "running",
                "timeout_exceeded": True,
                "message": (
                    f"pipeline {pipeline.name} did not finish within {limit:g}s; it goes on:"
                    f" poll /job/{root.id}/tree"
                ),
            },
            202,
            {**headers, "Retry-After": str(POLL_AFTER)},
        )
    status, result, error = _outcome(tree)
    body: dict[str, Any] = {
        "job_id": root.id,
        # The root may be the job whose success started the pipeline: the run is its
        # steps'.
        "run_id": next((job.run_id for job in tree.jobs if job.run_id), None),
        "status": status,
        "pipeline": pipeline.name,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
        "result": result,
        "tree": [job.to_json() for job in tree.jobs],
    }
    if error is not None:
        body["error"] = error
    return Reply(body, 200, headers)
