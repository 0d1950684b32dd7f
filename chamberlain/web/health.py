"""``GET /healthz`` and ``GET /ready``: public probes for supervisors and balancers.

``/healthz`` answers "is the daemon alive, and how is it doing" (200 whenever the
figures could be gathered, whatever the phase); ``/ready`` answers "may I send work
now" (200 only while new jobs are accepted, 503 while starting, draining or
degraded).  Degraded means the disk refuses writes: the daemon is alive and serves
reads, so ``/healthz`` stays 200 with ``"status": "degraded"`` (a supervisor must not
restart it for this), while ``/ready`` turns balancers away until writes commit
again.  ``/healthz`` also carries the two fields Ductile's clients read there:
``version`` and ``plugins_circuit_open``, and says which configuration runs
(``config_loaded_at``, ``config_hash``: a reload that succeeded changes both).  The
module owns both routes and their schemas.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any

from chamberlain.actors.gateway import Health, Lifecycle, Phase
from chamberlain.records import rfc3339
from chamberlain.web.auth import PUBLIC
from chamberlain.web.errors import error_body
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import NO_QUERY, UNAVAILABLE
from chamberlain.web.spec import STRING, ResponseSpec, Route, object_schema


def health_status(phase: Phase, degraded: str | None) -> str:
    """``/healthz``'s status: the phase, with READY split into ok and degraded."""
    if phase is not Phase.READY:
        return str(phase.value)
    return "ok" if degraded is None else "degraded"


def package_version() -> str:
    """The installed package's version; ``0.0.0`` when it runs uninstalled."""
    try:
        return metadata.version("chamberlain")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def health_body(health: Health) -> dict[str, Any]:
    """The JSON ``/healthz`` answers with; ``degraded`` (why) only while degraded."""
    body: dict[str, Any] = {
        "status": health_status(health.phase, health.degraded),
        "version": package_version(),
        "uptime_seconds": round(health.uptime_seconds, 3),
        "queue_depth": health.queue_depth,
        "plugins_loaded": health.plugins_loaded,
        "plugins_circuit_open": health.plugins_circuit_open,
        "running": health.running,
        "max_workers": health.max_workers,
        "restarts": dict(health.restarts),
        "restarts_total": health.restarts_total,
    }
    if health.config is not None:
        body["config_loaded_at"] = rfc3339(health.config.loaded_at)
        body["config_hash"] = health.config.config_hash
    if health.degraded is not None:
        body["degraded"] = health.degraded
    return body


def readiness(lifecycle: Lifecycle, degraded: str | None = None) -> Reply:
    """``/ready``'s answer for the daemon's phase and the store's ``degraded`` reason."""
    if lifecycle.accepting and degraded is not None:
        return Reply(
            error_body(
                f"chamberlain is degraded: its disk refuses writes ({degraded});"
                " not accepting jobs",
                status="degraded",
            ),
            503,
        )
    if lifecycle.accepting:
        return Reply({"status": "ready"})
    phase = lifecycle.phase.value
    reason = (
        "chamberlain is draining (shutting down)"
        if lifecycle.phase is Phase.DRAINING
        else f"chamberlain is {phase}"
    )
    return Reply(error_body(f"{reason}; not accepting jobs", status=phase), 503)


async def healthz(call: Call) -> Reply:
    """``GET /healthz``: liveness and load figures."""
    return Reply(health_body(await call.gateway.health()))


async def ready(call: Call) -> Reply:
    """``GET /ready``: 200 while accepting jobs, 503 otherwise."""
    return readiness(call.gateway.lifecycle, call.gateway.storage_problem())


ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="health",
        method="GET",
        path="/healthz",
        handler=healthz,
        access=PUBLIC,
        summary="Liveness and load figures",
        tag="daemon",
        responses=(
            ResponseSpec(status=200, description="The daemon is alive.", schema="Health"),
            NO_QUERY,
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="ready",
        method="GET",
        path="/ready",
        handler=ready,
        access=PUBLIC,
        summary="Whether new jobs are accepted",
        tag="daemon",
        responses=(
            ResponseSpec(status=200, description="Accepting jobs.", schema="Ready"),
            NO_QUERY,
            ResponseSpec(
                status=503,
                description="Starting, draining or degraded: not accepting.",
                schema="NotReady",
            ),
        ),
    ),
)

#: Component schemas these routes refer to (merged into the OpenAPI document).
SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "Health": object_schema(
        {
            "status": {"type": "string", "enum": ["ok", "degraded", "starting", "draining"]},
            "uptime_seconds": {"type": "number"},
            "queue_depth": {"type": "integer"},
            "version": {"type": "string", "description": "The package version."},
            "plugins_loaded": {"type": "integer"},
            "plugins_circuit_open": {
                "type": "integer",
                "minimum": 0,
                "description": (
                    "How many plugins have a schedule whose circuit breaker is open or"
                    " half open (each plugin counted once)."
                ),
            },
            "running": {"type": "integer"},
            "max_workers": {"type": "integer"},
            "restarts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "restarts_total": {"type": "integer"},
            "degraded": {
                "type": "string",
                "description": "Why the disk refuses writes; present only while it does.",
            },
            "config_loaded_at": {
                "type": "string",
                "format": "date-time",
                "description": "When the running configuration was loaded: the start, or"
                " the last reload that succeeded.",
            },
            "config_hash": {
                "type": "string",
                "description": "`sha256:<hex>` of the config file as loaded; compare with"
                " `sha256sum` to know whether the file changed since.",
            },
        },
        required=(
            "status",
            "version",
            "uptime_seconds",
            "queue_depth",
            "plugins_loaded",
            "plugins_circuit_open",
            "running",
            "max_workers",
            "restarts",
            "restarts_total",
        ),
    ),
    "Ready": object_schema({"status": {"const": "ready"}}),
    "NotReady": object_schema(
        {
            "error": STRING,
            "status": {"type": "string", "enum": ["starting", "draining", "degraded"]},
        }
    ),
}
