"""Synchronous calls: answering an HTTP request only once a pipeline has finished.

A trigger of the ``plugin.command`` a synchronous pipeline starts from, and
``POST /pipeline/{name}`` of a synchronous pipeline, wait here for the job tree.
Waiting calls are bounded (``api.max_concurrent_sync``): a slot is taken before
anything is enqueued, so a refused call (503) leaves nothing behind, and a call
that waits longer than the pipeline's timeout (capped by ``api.max_sync_timeout``)
is answered 202 while the pipeline goes on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import trio

from chamberlain.actors.messages import Tree
from chamberlain.config import PipelineConfig
from chamberlain.model import Job, JobStatus
from chamberlain.web.errors import bad_request, unavailable
from chamberlain.web.handler import Call, Reply
from chamberlain.web.spec import Param

ASYNC_PARAM = Param(
    name="async",
    location="query",
    description=(
        "With a synchronous pipeline: `true` answers 202 at once instead of waiting"
        " for the pipeline."
    ),
    schema={"type": "boolean", "default": False},
)


def wants_async(call: Call) -> bool:
    """The ``?async=`` flag; 400 for anything but true/false/1/0."""
    values = call.query.get("async")
    if not values:
        return False
    value = values[-1].strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise bad_request(f"async must be true or false, not {values[-1]!r}")


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


def sync_slot(call: Call) -> trio.CapacityLimiter:
    """The limiter of waiting synchronous calls; take it with :func:`take_slot`."""
    return call.gateway.sync_limiter


def take_slot(call: Call) -> None:
    """Claim a synchronous-call slot, or refuse with 503 before anything is enqueued."""
    try:
        sync_slot(call).acquire_on_behalf_of_nowait(call.request_id)
    except trio.WouldBlock:
        limit = call.site.api.max_concurrent_sync
        raise unavailable(
            f"too many synchronous calls are waiting (api.max_concurrent_sync = {limit});"
            " retry later or add ?async=true",
            retry_after=1,
        ) from None


async def answer_synchronously(call: Call, root: Job, pipeline: PipelineConfig) -> Reply:
    """Wait for ``root``'s tree; 200 with the outcome, or 202 when it takes too long.

    The caller holds a slot (:func:`take_slot`); it is released here.
    """
    limit = min(pipeline.timeout, call.site.api.max_sync_timeout)
    started = time.monotonic()
    tree: Tree | None = None
    try:
        with trio.move_on_after(limit):
            tree = await call.gateway.wait_tree(root.id)
    finally:
        sync_slot(call).release_on_behalf_of(call.request_id)
    headers = {"Location": f"/job/{root.id}/tree"}
    if tree is None:
        return Reply(
            {
                "job_id": root.id,
                "status": "running",
                "timeout_exceeded": True,
                "message": (
                    f"pipeline {pipeline.name} did not finish within {limit:g}s; it goes on:"
                    f" poll /job/{root.id}/tree"
                ),
            },
            202,
            headers,
        )
    status, result, error = _outcome(tree)
    body: dict[str, Any] = {
        "job_id": root.id,
        "status": status,
        "pipeline": pipeline.name,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
        "result": result,
        "tree": [job.to_json() for job in tree.jobs],
    }
    if error is not None:
        body["error"] = error
    return Reply(body, 200, headers)
