"""``GET /schedules`` and ``POST /schedules/{plugin}/{id}/reset``.

The first answers "what will run when, what ran last, and is anything held back";
the second closes a circuit breaker by hand once the operator has fixed what made
it open.  Both go through the Gateway to the Scheduler actor.
"""

from __future__ import annotations

from typing import Any

from chamberlain.records import JobStatus, rfc3339
from chamberlain.schedule.books import BreakerStatus, ScheduleStatus
from chamberlain.schedule.breaker import BreakerState
from chamberlain.web.auth import JOBS_RO, JOBS_RW, Scoped
from chamberlain.web.errors import bad_request, not_found
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import NO_QUERY, UNAVAILABLE, decode_json_object
from chamberlain.web.spec import (
    NULLABLE_STRING,
    NULLABLE_TIME,
    STRING,
    BodySpec,
    Param,
    ResponseSpec,
    Route,
    object_schema,
    ref,
)

#: The longest ``reason`` a reset may record.
REASON_MAX = 200


def breaker_json(status: BreakerStatus) -> dict[str, Any]:
    """A circuit breaker as the API shows it."""
    breaker, policy = status.breaker, status.policy
    return {
        "command": status.command,
        "state": breaker.state.value,
        "failures": breaker.failures,
        "enabled": policy.enabled,
        "threshold": policy.threshold,
        "reset_after": policy.reset_after,
        "opened_at": rfc3339(breaker.opened_at),
        "probe_at": rfc3339(status.probe_at),
        "probe_job_id": breaker.probe_job_id,
        "transitions": [
            {
                "from": step.source.value,
                "to": step.target.value,
                "reason": step.reason,
                "at": rfc3339(step.at),
            }
            for step in breaker.transitions
        ],
    }


def schedule_json(status: ScheduleStatus) -> dict[str, Any]:
    """One schedule as the API shows it."""
    book = status.book
    skipped = None
    if book.last_skip_reason is not None:
        skipped = {"scheduled_for": rfc3339(book.last_skip_at), "reason": book.last_skip_reason}
    return {
        "plugin": status.plugin,
        "id": status.id,
        "command": status.command,
        "kind": status.kind,
        "spec": status.spec,
        "timezone": status.timezone,
        "only_between": status.only_between,
        "not_on": list(status.not_on),
        "jitter": status.jitter,
        "catch_up": status.catch_up,
        "if_running": status.if_running,
        "max_outstanding": status.max_outstanding,
        "next_run": rfc3339(status.next_run),
        "last_run": rfc3339(book.last_run_at),
        "last_job_id": book.last_job_id,
        "last_status": book.last_status,
        "last_skipped": skipped,
        "waiting": len(book.owed),
        "paused": status.paused,
        "breaker": breaker_json(status.breaker),
    }


async def list_schedules(call: Call) -> Reply:
    """``GET /schedules``: every schedule of the loaded plugins."""
    found = await call.gateway.list_schedules()
    return Reply({"schedules": [schedule_json(s) for s in found]})


async def reset_breaker(call: Call) -> Reply:
    """``POST /schedules/{plugin}/{id}/reset``: close the schedule's circuit breaker."""
    plugin, schedule_id = call.path["plugin"], call.path["id"]
    body = decode_json_object(await call.read_body())
    unknown = sorted(set(body) - {"reason"})
    if unknown:
        raise bad_request(f"unknown field {unknown[0]!r} in the request body; expected: reason")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or not reason.strip()):
        raise bad_request("reason must be a non-empty string")
    if reason is not None and len(reason) > REASON_MAX:
        raise bad_request(f"reason is longer than {REASON_MAX} characters")
    assert call.identity is not None  # a protected route
    by = call.identity.submitted_by + (f": {reason.strip()}" if reason else "")
    if plugin not in call.gateway.plugins:
        raise not_found(f"unknown plugin {plugin!r}")
    found = await call.gateway.reset_breaker(plugin, schedule_id, by=by)
    if found is None:
        raise not_found(f"plugin {plugin!r} has no schedule {schedule_id!r}")
    return Reply(schedule_json(found))


_PLUGIN = Param(name="plugin", location="path", description="The plugin's name.", required=True)
_ID = Param(
    name="id", location="path", description="The schedule's id within its plugin.", required=True
)

ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="listSchedules",
        method="GET",
        path="/schedules",
        handler=list_schedules,
        access=Scoped(JOBS_RO),
        summary="Schedules: next run, last run, circuit breaker",
        description=(
            "Every schedule of the loaded plugins. `next_run` includes jitter and is null"
            " for a schedule that will not run again; `last_status` is the status of the"
            " last job it enqueued; `last_skipped` says why the last run that did not"
            " happen did not (missed while down, if_running, an open breaker)."
        ),
        tag="schedules",
        responses=(
            ResponseSpec(status=200, description="Every schedule.", schema="ScheduleList"),
            NO_QUERY,
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="resetScheduleBreaker",
        method="POST",
        path="/schedules/{plugin}/{id}/reset",
        handler=reset_breaker,
        access=Scoped(JOBS_RW),
        summary="Close the circuit breaker a schedule answers to",
        description=(
            "Breakers guard a (plugin, command): resetting one closes it for every schedule"
            " running that command. The transition is recorded with the caller's name and"
            " the optional reason."
        ),
        tag="schedules",
        params=(_PLUGIN, _ID),
        body=BodySpec(schema="BreakerReset", description='Optional: {reason: "..."}.'),
        responses=(
            ResponseSpec(
                status=200, description="The schedule, breaker closed.", schema="Schedule"
            ),
            ResponseSpec(status=400, description="A malformed body or a query parameter."),
            ResponseSpec(status=404, description="Unknown plugin or schedule."),
            UNAVAILABLE,
        ),
    ),
)

_STATES = [s.value for s in BreakerState]


#: Component schemas these routes refer to (merged into the OpenAPI document).
SCHEMAS: dict[str, Any] = {
    "BreakerReset": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": REASON_MAX}},
    },
    "BreakerTransition": object_schema(
        {
            "from": {"type": "string", "enum": _STATES},
            "to": {"type": "string", "enum": _STATES},
            "reason": STRING,
            "at": {"type": "string", "format": "date-time"},
        }
    ),
    "Breaker": object_schema(
        {
            "command": STRING,
            "state": {"type": "string", "enum": _STATES},
            "failures": {"type": "integer", "minimum": 0},
            "enabled": {"type": "boolean"},
            "threshold": {"type": "integer", "minimum": 1},
            "reset_after": {"type": "number", "description": "Seconds."},
            "opened_at": NULLABLE_TIME,
            "probe_at": {"description": "When an open breaker lets a probe run.", **NULLABLE_TIME},
            "probe_job_id": NULLABLE_STRING,
            "transitions": {
                "type": "array",
                "items": ref("BreakerTransition"),
            },
        }
    ),
    "Schedule": object_schema(
        {
            "plugin": STRING,
            "id": STRING,
            "command": STRING,
            "kind": {"type": "string", "enum": ["every", "cron", "at", "after"]},
            "spec": {"description": "The value of `kind` as configured.", **STRING},
            "timezone": STRING,
            "only_between": NULLABLE_STRING,
            "not_on": {"type": "array", "items": STRING},
            "jitter": {"type": "number", "description": "Seconds."},
            "catch_up": {"type": "string", "enum": ["skip", "run_once", "run_all"]},
            "if_running": {"type": "string", "enum": ["skip", "queue", "cancel"]},
            "max_outstanding": {"type": "integer", "minimum": 1},
            "next_run": NULLABLE_TIME,
            "last_run": NULLABLE_TIME,
            "last_job_id": NULLABLE_STRING,
            "last_status": {
                "type": ["string", "null"],
                "enum": [*[s.value for s in JobStatus], None],
            },
            "last_skipped": {
                "type": ["object", "null"],
                "properties": {"scheduled_for": NULLABLE_TIME, "reason": STRING},
            },
            "waiting": {
                "type": "integer",
                "minimum": 0,
                "description": "Runs held back until a job of this schedule finishes.",
            },
            "paused": {"type": "boolean", "description": "True while the daemon drains."},
            "breaker": ref("Breaker"),
        }
    ),
    "ScheduleList": object_schema({"schedules": {"type": "array", "items": ref("Schedule")}}),
}
