"""``GET /job/{job_id}`` and ``GET /jobs``: reading jobs back.

:func:`parse_job_filter` turns the query string into a :class:`JobFilter` and is
strict on purpose: a misspelt filter that was silently ignored would list every job
and look like an answer.  ``GET /job/{job_id}?wait=30s`` is a long poll: it answers
once the job is terminal, or at the end of the wait (at most :data:`MAX_WAIT`) with
the job as it stands.  :func:`accepted_headers` are the headers of the 202 of a
trigger or a retry, telling the client where to poll and how soon.  The module owns
these two routes and the ``Job`` schema every answer showing a job refers to.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import trio

from chamberlain.config.units import parse_duration
from chamberlain.records import JobFilter, JobStatus
from chamberlain.web.auth import JOBS_RO, Scoped
from chamberlain.web.errors import bad_request, not_found
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import UNAVAILABLE
from chamberlain.web.spec import (
    NULLABLE_STRING,
    NULLABLE_TIME,
    STRING,
    Param,
    ResponseSpec,
    Route,
    object_schema,
    ref,
)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

_STATUS_VALUES = tuple(s.value for s in JobStatus)
_ONE_STATUS = f"({'|'.join(_STATUS_VALUES)})"
#: Empty filters are refused (400), so the schema says so: a client generating
#: requests from it must not expect an empty value to be accepted.
_NON_EMPTY = {"type": "string", "minLength": 1}

#: The query parameters of ``GET /jobs``; the route table and the parser share them.
LIST_PARAMS: tuple[Param, ...] = (
    Param(
        name="status",
        location="query",
        description=(
            "Only jobs in these statuses: comma-separated, and/or repeated"
            f" ({', '.join(_STATUS_VALUES)})."
        ),
        schema={
            "type": "string",
            "pattern": f"^ *{_ONE_STATUS} *(, *{_ONE_STATUS} *)*$",
            "examples": ["queued,running"],
        },
        repeatable=True,
    ),
    Param(
        name="plugin", location="query", description="Only jobs of this plugin.", schema=_NON_EMPTY
    ),
    Param(
        name="command",
        location="query",
        description="Only jobs of this command.",
        schema=_NON_EMPTY,
    ),
    Param(
        name="submitted_by",
        location="query",
        description="Only jobs submitted by this origin (``token:<name>``, ``api_key`` ...).",
        schema=_NON_EMPTY,
    ),
    Param(
        name="since",
        location="query",
        description="Only jobs created at or after this instant (RFC 3339).",
        schema={"type": "string", "format": "date-time"},
    ),
    Param(
        name="until",
        location="query",
        description="Only jobs created before this instant (RFC 3339).",
        schema={"type": "string", "format": "date-time"},
    ),
    Param(
        name="limit",
        location="query",
        description=f"Page size, 1 to {MAX_LIMIT}.",
        schema={"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    ),
    Param(
        name="offset",
        location="query",
        description="Jobs to skip, for paging.",
        schema={"type": "integer", "minimum": 0, "default": 0},
    ),
)

INCLUDE_VALUES = ("messages", "callbacks")

INCLUDE_PARAM = Param(
    name="include",
    location="query",
    description=(
        "Add to the job: `messages` (its stderr lines and system messages, in order) and/or"
        " `callbacks` (its callback_url and every delivery). Comma-separated and/or repeated."
    ),
    schema={"type": "string", "examples": ["messages", "messages,callbacks"]},
    repeatable=True,
)

#: The longest ``GET /job/{job_id}?wait=`` may wait, in seconds.  Longer waits are
#: refused (400) rather than cut short: a client asking for 5 minutes would
#: otherwise take a 60 s answer for a finished wait.  It stays below the idle
#: limits proxies commonly apply to a silent request.
MAX_WAIT = 60.0

#: The ``Retry-After`` of a 202 that created a job: seconds before a first poll is
#: worth making (a long poll may be made at once).
POLL_AFTER = 1
#: How the OpenAPI document describes that header.
POLL_AFTER_DOC = f"Seconds before a first poll is worth making ({POLL_AFTER})."

WAIT_PARAM = Param(
    name="wait",
    location="query",
    description=(
        "Long poll: answer as soon as the job is terminal, or after this long with the job"
        " as it stands (200 either way; `status` tells which). Seconds or a duration such"
        f" as `30s`, at most {MAX_WAIT:g}s; `0` or absent answers at once."
    ),
    schema={"type": "string", "examples": ["30s", "10"]},
)

JOB_ID_PARAM = Param(
    name="job_id",
    location="path",
    description="The job's id, as returned by the trigger.",
    required=True,
)

# RFC 3339 date-time: full date, full time, mandatory offset.  ``fromisoformat``
# alone would also take a bare date or a naive time, which are not instants.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.(\d+))?(?:[Zz]|[+-]\d{2}:\d{2})"
)
_INT = re.compile(r"[0-9]+")


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of an RFC 3339 date-time; raises ValueError otherwise."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an RFC 3339 date-time such as 2024-05-01T12:00:00Z")
    normal = text.upper().replace("Z", "+00:00")
    fraction = match.group(1)
    if fraction is not None and len(fraction) > 6:
        # Python reads at most microseconds; finer digits cannot change the result.
        normal = normal.replace("." + fraction.upper(), "." + fraction[:6], 1)
    try:
        return datetime.fromisoformat(normal).timestamp()
    except ValueError:
        raise ValueError(f"{text!r} is not a valid date-time") from None


def _single(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise bad_request(f"query parameter {name!r} given more than once")
    value = values[0]
    if value == "":
        raise bad_request(f"query parameter {name!r} is empty")
    return value


def _int(query: Mapping[str, Sequence[str]], name: str, default: int, lo: int, hi: int) -> int:
    text = _single(query, name)
    if text is None:
        return default
    if not _INT.fullmatch(text) or not lo <= int(text) <= hi:
        bounds = f"from {lo} to {hi}" if hi < 2**63 else f"of at least {lo}"
        raise bad_request(f"query parameter {name!r} must be an integer {bounds}, got {text!r}")
    return int(text)


def parse_statuses(values: Sequence[str]) -> tuple[JobStatus, ...]:
    """Statuses from ``status`` query values: comma-separated and/or repeated; 400 if unknown."""
    found: list[JobStatus] = []
    for value in values:
        for part in value.split(","):
            name = part.strip()
            try:
                status = JobStatus(name)
            except ValueError:
                raise bad_request(
                    f"unknown status {name!r}; expected one of: {', '.join(_STATUS_VALUES)}"
                ) from None
            if status not in found:
                found.append(status)
    return tuple(found)


def _instant(query: Mapping[str, Sequence[str]], name: str) -> float | None:
    text = _single(query, name)
    if text is None:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise bad_request(f"query parameter {name!r}: {exc}") from None


def parse_job_filter(query: Mapping[str, Sequence[str]]) -> JobFilter:
    """The :class:`JobFilter` a ``GET /jobs`` query string asks for.

    Raises a 400 :class:`~chamberlain.web.errors.ApiError` for unknown parameters,
    unknown statuses, non-RFC 3339 instants, ``since`` after ``until``, and limits or
    offsets out of range.
    """
    known = {p.name for p in LIST_PARAMS}
    unknown = sorted(set(query) - known)
    if unknown:
        raise bad_request(
            f"unknown query parameter {unknown[0]!r}; expected: {', '.join(sorted(known))}"
        )
    since = _instant(query, "since")
    until = _instant(query, "until")
    if since is not None and until is not None and since > until:
        raise bad_request("query parameter 'since' is later than 'until'")
    return JobFilter(
        statuses=parse_statuses(query.get("status", ())),
        plugin=_single(query, "plugin"),
        command=_single(query, "command"),
        submitted_by=_single(query, "submitted_by"),
        since=since,
        until=until,
        limit=_int(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        offset=_int(query, "offset", 0, 0, 2**63 - 1),
    )


def parse_wait(query: Mapping[str, Sequence[str]]) -> float:
    """Seconds ``?wait=`` asks a ``GET /job/{job_id}`` to wait for the job's end (0: none).

    Takes what :func:`~chamberlain.config.units.parse_duration` takes (``10``,
    ``1.5``, ``30s``, ``1m``).  Raises a 400 :class:`~chamberlain.web.errors.ApiError`
    for an empty, repeated, malformed or negative value, and for one above
    :data:`MAX_WAIT`.
    """
    text = _single(query, "wait")
    if text is None:
        return 0.0
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise bad_request(f"query parameter 'wait': {exc}") from None
    if not math.isfinite(seconds) or seconds > MAX_WAIT:
        raise bad_request(
            f"query parameter 'wait' may be at most {MAX_WAIT:g}s, got {text!r};"
            " poll again to wait longer"
        )
    return seconds


def accepted_headers(job_id: str) -> dict[str, str]:
    """The headers of a 202 that created ``job_id``: where to poll it, and how soon."""
    return {"Location": f"/job/{job_id}", "Retry-After": str(POLL_AFTER)}


def parse_include(values: Sequence[str]) -> frozenset[str]:
    """What ``?include=`` asks to add to a job: comma-separated and/or repeated."""
    found = {part.strip() for value in values for part in value.split(",")}
    unknown = sorted(found - set(INCLUDE_VALUES))
    if unknown:
        raise bad_request(
            f"unknown include {unknown[0]!r}; expected one of: {', '.join(INCLUDE_VALUES)}"
        )
    return frozenset(found)


async def get_job(call: Call) -> Reply:
    """``GET /job/{job_id}``: one job, or 404; ``?include=messages,callbacks`` adds those.

    With ``?wait=`` a job that is not terminal yet is answered once it is, or at the
    end of the wait as it stands then.
    """
    job_id = call.path["job_id"]
    include = parse_include(call.query.get("include", ()))
    wait = parse_wait(call.query)
    job = await call.gateway.get_job(job_id)
    if job is None:
        raise not_found(f"unknown job {job_id!r}")
    if wait > 0 and not job.status.terminal:
        settled = None
        with trio.move_on_after(wait):
            # Parked in the JobStore until the job ends; a waiter that leaves at the
            # deadline is forgotten there.
            settled = await call.gateway.wait_job(job_id)
        # At the deadline, the job as it stands now, not as it stood before the wait.
        job = settled if settled is not None else await call.gateway.get_job(job_id)
        if job is None:
            raise not_found(f"unknown job {job_id!r}")
    body = job.to_json()
    if "messages" in include:
        messages = await call.gateway.job_messages(job_id)
        body["messages"] = [message.to_json() for message in messages]
    if "callbacks" in include:
        callbacks = await call.gateway.callbacks(job_id)
        body["callback_url"] = callbacks.url
        body["callbacks"] = [delivery.to_json() for delivery in callbacks.deliveries]
    return Reply(body)


async def list_jobs(call: Call) -> Reply:
    """``GET /jobs``: a page of jobs, newest first, with the number matching in all."""
    flt = parse_job_filter(call.query)
    jobs, total = await call.gateway.list_jobs(flt)
    return Reply(
        {
            "jobs": [job.to_json() for job in jobs],
            "total": total,
            "limit": flt.limit,
            "offset": flt.offset,
        }
    )


ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="getJob",
        method="GET",
        path="/job/{job_id}",
        handler=get_job,
        access=Scoped(JOBS_RO),
        summary="One job: status, timings, attempts, result",
        description=(
            "With `?wait=` (a long poll) the answer comes as soon as the job is terminal,"
            f" or at the end of the wait (at most {MAX_WAIT:g}s) with the job as it stands;"
            " a job already terminal is answered at once."
        ),
        tag="jobs",
        params=(JOB_ID_PARAM, INCLUDE_PARAM, WAIT_PARAM),
        responses=(
            ResponseSpec(status=200, description="The job.", schema="JobDetail"),
            ResponseSpec(
                status=400,
                description=(
                    "An unknown include or query parameter, or a `wait` that is not a"
                    f" duration from 0 to {MAX_WAIT:g}s."
                ),
            ),
            ResponseSpec(status=404, description="Unknown job."),
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="listJobs",
        method="GET",
        path="/jobs",
        handler=list_jobs,
        access=Scoped(JOBS_RO),
        summary="Jobs, newest first, filtered and paged",
        tag="jobs",
        params=LIST_PARAMS,
        responses=(
            ResponseSpec(status=200, description="A page of jobs.", schema="JobList"),
            ResponseSpec(
                status=400,
                description="Unknown parameter, bad status, bad RFC 3339 instant or limit.",
            ),
            UNAVAILABLE,
        ),
    ),
)

#: Component schemas these routes, and every route showing a job, refer to.
SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "Job": object_schema(
        {
            "job_id": {"type": "string", "format": "uuid"},
            "status": ref("JobStatus"),
            "plugin": STRING,
            "command": STRING,
            "payload": {"type": "object"},
            "event": {
                "description": "The event a handle job received (null for other commands).",
                "type": ["object", "null"],
            },
            "submitted_by": STRING,
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": NULLABLE_TIME,
            "completed_at": NULLABLE_TIME,
            "next_retry_at": NULLABLE_TIME,
            "attempt": {"type": "integer", "minimum": 0},
            "max_attempts": {"type": "integer", "minimum": 1},
            "last_error": NULLABLE_STRING,
            "result": {
                "description": (
                    "The plugin's response {status, result, error, events, state_updates,"
                    " logs}, or its raw output when that was not valid JSON."
                )
            },
            "dedupe_key": NULLABLE_STRING,
            "parent_job_id": NULLABLE_STRING,
            "source_event_id": NULLABLE_STRING,
            "root_job_id": {
                "description": "The first job of this job's pipeline or event tree.",
                "type": ["string", "null"],
            },
            "pipeline": {"description": "The pipeline this job is a step of.", **NULLABLE_STRING},
            "step_id": {"description": "Its step in that pipeline.", **NULLABLE_STRING},
            "schedule_id": {
                "description": "The schedule (of this plugin) that enqueued the job.",
                **NULLABLE_STRING,
            },
        }
    ),
    "JobList": object_schema(
        {
            "jobs": {"type": "array", "items": ref("Job")},
            "total": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            "offset": {"type": "integer", "minimum": 0},
        }
    ),
}


__all__ = [
    "DEFAULT_LIMIT",
    "INCLUDE_PARAM",
    "JOB_ID_PARAM",
    "LIST_PARAMS",
    "MAX_LIMIT",
    "MAX_WAIT",
    "POLL_AFTER",
    "POLL_AFTER_DOC",
    "ROUTES",
    "SCHEMAS",
    "WAIT_PARAM",
    "accepted_headers",
    "get_job",
    "list_jobs",
    "parse_include",
    "parse_job_filter",
    "parse_rfc3339",
    "parse_statuses",
    "parse_wait",
]
