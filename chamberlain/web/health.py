"""``GET /healthz`` and ``GET /ready``: public probes for supervisors and balancers.

``/healthz`` answers "is the daemon alive, and how is it doing" (200 whenever the
figures could be gathered, whatever the phase); ``/ready`` answers "may I send work
now" (200 only while new jobs are accepted, 503 while starting or draining).
"""

from __future__ import annotations

from typing import Any

from chamberlain.actors.gateway import Health, Lifecycle, Phase
from chamberlain.web.errors import error_body
from chamberlain.web.handler import Call, Reply


def health_body(health: Health) -> dict[str, Any]:
    """The JSON ``/healthz`` answers with."""
    return {
        "status": "ok" if health.phase is Phase.READY else health.phase.value,
        "uptime_seconds": round(health.uptime_seconds, 3),
        "queue_depth": health.queue_depth,
        "plugins_loaded": health.plugins_loaded,
        "running": health.running,
        "max_workers": health.max_workers,
        "restarts": dict(health.restarts),
        "restarts_total": health.restarts_total,
    }


def readiness(lifecycle: Lifecycle) -> Reply:
    """``/ready``'s answer for the daemon's current phase."""
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
    return readiness(call.gateway.lifecycle)
