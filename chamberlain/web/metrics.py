"""``GET /metrics``: the daemon's metrics in the Prometheus text format.

Needs ``jobs:ro``: the figures name plugins and commands and show the load, which
is what ``jobs:ro`` already reveals.  Prometheus sends the token with
``authorization: {credentials: ...}`` in its scrape config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chamberlain.instruments import CONTENT_TYPE, Snapshot
from chamberlain.web.auth import JOBS_RO, Scoped
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import NO_QUERY, UNAVAILABLE
from chamberlain.web.spec import ResponseSpec, Route


async def metrics(call: Call) -> Reply:
    """``GET /metrics``: counters, histograms, and the present read at scrape time."""
    health = await call.gateway.health()
    streams = call.gateway.hub.statistics()
    text = call.site.metrics.render(
        Snapshot(
            queue_depth=health.queue_depth,
            running=health.running,
            max_workers=health.max_workers,
            restarts=health.restarts,
            stream_subscribers=streams.subscribers,
            stream_drops=streams.dropped,
        )
    )
    return Reply(text, media_type=CONTENT_TYPE)


ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="metrics",
        method="GET",
        path="/metrics",
        handler=metrics,
        access=Scoped(JOBS_RO),
        summary="Metrics in the Prometheus text format",
        description=(
            "Jobs finished by plugin/command/status, job duration histogram, retries,"
            " timeouts, queue depth, running jobs, actor restarts, HTTP requests by route"
            " and status, callback attempts and stream clients. See docs/OBSERVABILITY.md."
        ),
        tag="daemon",
        responses=(
            ResponseSpec(
                status=200,
                description="The metrics.",
                schema="Metrics",
                media_type="text/plain",
            ),
            NO_QUERY,
            UNAVAILABLE,
        ),
    ),
)

#: Component schemas this route refers to (merged into the OpenAPI document).
SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "Metrics": {
        "type": "string",
        "description": "Prometheus text exposition format, version 0.0.4.",
    }
}
