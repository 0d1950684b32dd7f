"""``GET /job/{job_id}`` and ``GET /jobs``: reading jobs back.

:func:`parse_job_filter` turns the query string into a :class:`JobFilter` and is
strict on purpose: a misspelt filter that was silently ignored would list every job
and look like an answer.  A listing shows each job as a summary (no payload, event
or result), all of it with ``detail=full``, or the fields ``fields=`` names
(:func:`parse_list_fields`); it pages by ``offset`` or, stable and as fast at any
depth, by the opaque cursor each page gives as ``next`` (:func:`encode_cursor`,
:func:`page_of`).  ``GET /job/{job_id}?wait=30s`` is a long poll: it answers
once the job is terminal, or at the end of the wait (at most :data:`MAX_WAIT`) with
the job as it stands.  :func:`accepted_headers` are the headers of the 202 of a
trigger or a retry, telling the client where to poll and how soon.  The module owns
these two routes, the ``Job`` schema every answer showing a job refers to, and the
listing's schemas.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs
import trio

from chamberlain.config.units import parse_duration
from chamberlain.records import Job, JobFilter, JobStatus
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
#: The longest text ``?q=`` searches for: a person types a few words, not a page.
MAX_TEXT = 200

_STATUS_VALUES = tuple(s.value for s in JobStatus)
_ONE_STATUS = f"({'|'.join(_STATUS_VALUES)})"
#: Empty filters are refused (400), so the schema says so: a client generating
#: requests from it must not expect an empty value to be accepted.
_NON_EMPTY = {"type": "string", "minLength": 1}

#: Every field of a job as the API shows it (:meth:`Job.to_json`), in that order.
JOB_PROPERTIES: Mapping[str, Mapping[str, Any]] = {
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
    "mcp_servers": {
        "description": "The MCP servers written into the job's workspace (empty: none).",
        "type": "array",
        "items": STRING,
    },
    "waiting_for_input": {
        "description": (
            "An interactive job's plugin said it waits for input, and none came since"
            " (false for any other job)."
        ),
        "type": "boolean",
    },
    "session": {
        "description": (
            "The opaque `session` of the job's last response that had one (an object,"
            " by the protocol); a follow-up (`POST /job/{id}/instruct`) is sent it."
        ),
    },
    "follows": {
        "description": "The job this one follows up (`POST /job/{id}/instruct`).",
        **NULLABLE_STRING,
    },
    "followed_by": {"description": "The follow-up made of this job.", **NULLABLE_STRING},
    "instruction": {"description": "A follow-up's prompt.", **NULLABLE_STRING},
    "loop": {
        "description": (
            "A loop job's settings {max_iterations, completion_token, feedback,"
            " iteration_timeout} (null for any other job); see docs/LOOPS.md."
        ),
        "type": ["object", "null"],
    },
    "completion_reason": {
        "description": (
            "Why a loop job ended: promise_detected, max_iterations, manual_stop,"
            " cancelled or iteration_error (null while it runs, and for other jobs)."
        ),
        **NULLABLE_STRING,
    },
    "workspace_id": {
        "description": "The kept workspace the job runs in (`GET /workspaces/{id}`).",
        **NULLABLE_STRING,
    },
    "changes": {
        "description": (
            "A job with a repository workspace: how its worktree differs from its base"
            " as its last attempt left it (null for any other job, and before it ran)."
        ),
        "oneOf": [{"$ref": "#/components/schemas/Changes"}, {"type": "null"}],
    },
    "pull_request": {
        "description": (
            "The pull request the job opened (POST /job/{id}/pull-request, or the"
            " trigger's `pull_request` as it succeeded), or `{error}` when its automatic"
            " one could not be opened; null when none was asked for."
        ),
        "type": ["object", "null"],
    },
    "run_id": {
        "description": "The run whose step it is (`GET /runs/{id}`); null outside any.",
        **NULLABLE_STRING,
    },
    "held": {
        "description": (
            "Why a queued job of a run does not run yet: paused (its run is), approval"
            " (its step awaits one), gate (the step before awaits its check or CI);"
            " null when it is not held (docs/RUNS.md)."
        ),
        "enum": ["paused", "approval", "gate", None],
    },
}

JOB_FIELDS: tuple[str, ...] = tuple(JOB_PROPERTIES)
#: The fields that can be large: what a summary leaves out, and what the store
#: reads only when one of them is asked for.
BODY_FIELDS: frozenset[str] = frozenset({"payload", "event", "result", "session", "instruction"})
#: What ``GET /jobs`` shows of each job by default.
SUMMARY_FIELDS: tuple[str, ...] = tuple(f for f in JOB_FIELDS if f not in BODY_FIELDS)
DETAIL_VALUES = ("summary", "full")

#: The query parameters of ``GET /jobs``; the route table and the parser share them.
LIST_PARAMS: tuple[Param, ...] = (
    Param(
        name="status",
        location="query",
        description=(
            "Only jobs in these statuses: comma-separated, and/or repeated"
            f" ({', '.join(_STATUS_VALUES)}). Each status is matched exactly. A job"
            " whose attempts were all used up by retryable failures (or timeouts, see"
            " `retry.on_timeout`) is `dead` and is not listed under `failed`, which"
            " holds jobs that failed without retries (`retry: false`, exit code 78);"
            " `failed,dead` lists both."
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
        name="q",
        location="query",
        description=(
            "Text search, for a person looking for a job: only jobs whose id starts with"
            " it, or whose plugin, command, submitter or last error contains it (ASCII"
            " letters in any case). It reads every job the other filters leave, so"
            " narrow by them too on a large store."
        ),
        schema={"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
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
        description=(
            "Jobs to skip, for paging. Reads through every skipped job: `after` is the"
            " fast way to page deep. Not with `after`."
        ),
        schema={"type": "integer", "minimum": 0, "default": 0},
    ),
    Param(
        name="after",
        location="query",
        description=(
            "The `next` cursor of the previous page: the jobs older than that page, with"
            " the same filters. Jobs created meanwhile do not shift it. Not with `offset`."
        ),
        schema=_NON_EMPTY,
    ),
    Param(
        name="detail",
        location="query",
        description=(
            "`summary` (the default): each job without its payload, event and result;"
            " `full`: each job as `GET /job/{job_id}` shows it. Not with `fields`."
        ),
        schema={"type": "string", "enum": list(DETAIL_VALUES), "default": "summary"},
    ),
    Param(
        name="fields",
        location="query",
        description=(
            "Only these fields of each job (`job_id` is always shown): comma-separated"
            f" and/or repeated, from {', '.join(JOB_FIELDS)}. Not with `detail`."
        ),
        schema={"type": "string", "minLength": 1, "examples": ["status,result"]},
        repeatable=True,
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


def single_param(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    """The one value of query parameter ``name`` (None when absent); 400 when it is
    given twice or empty."""
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise bad_request(f"query parameter {name!r} given more than once")
    value = values[0]
    if value == "":
        raise bad_request(f"query parameter {name!r} is empty")
    return value


def int_param(query: Mapping[str, Sequence[str]], name: str, default: int, lo: int, hi: int) -> int:
    """Query parameter ``name`` as an integer from ``lo`` to ``hi`` (``default`` when
    absent); 400 otherwise."""
    text = single_param(query, name)
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
    text = single_param(query, name)
    if text is None:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise bad_request(f"query parameter {name!r}: {exc}") from None


#: What a cursor says before it is encoded: a version, so that a later format can
#: tell an old cursor from a bad one, and the ``seq`` of the page's last job.
_CURSOR = re.compile(r"v1:(0|[1-9][0-9]{0,18})")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]{1,64}")


def encode_cursor(seq: int) -> str:
    """The opaque ``next`` cursor of a page whose last job is numbered ``seq``."""
    return base64.urlsafe_b64encode(f"v1:{seq}".encode("ascii")).rstrip(b"=").decode("ascii")


def decode_cursor(text: str) -> int:
    """The ``seq`` an :func:`encode_cursor` cursor carries; a 400 for any other text."""
    problem = bad_request(
        "query parameter 'after' is not a cursor this API gave out;"
        " pass the 'next' of the previous page as it came"
    )
    if _BASE64URL.fullmatch(text) is None:
        raise problem
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise problem from None
    match = _CURSOR.fullmatch(decoded)
    if match is None or int(match.group(1)) >= 2**63:
        raise problem
    return int(match.group(1))


def parse_list_fields(query: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """The fields each job of a ``GET /jobs`` page shows, in :data:`JOB_FIELDS` order.

    ``detail=summary`` (the default) gives :data:`SUMMARY_FIELDS`, ``detail=full``
    every field, and ``fields=`` those it names plus ``job_id``.  Raises a 400
    :class:`~chamberlain.web.errors.ApiError` for an unknown detail or field, an
    empty ``fields``, and ``fields`` given with ``detail``.
    """
    detail = single_param(query, "detail")
    values = query.get("fields", ())
    if values and detail is not None:
        # Either answer would ignore half of what was asked; say so instead.
        raise bad_request(
            "query parameters 'fields' and 'detail' do not go together:"
            " 'fields' alone picks the fields shown"
        )
    if values:
        chosen = {"job_id"}
        for value in values:
            if value == "":
                raise bad_request("query parameter 'fields' is empty")
            for part in value.split(","):
                name = part.strip()
                if name not in JOB_PROPERTIES:
                    raise bad_request(
                        f"unknown field {name!r} in query parameter 'fields';"
                        f" expected some of: {', '.join(JOB_FIELDS)}"
                    )
                chosen.add(name)
        return tuple(name for name in JOB_FIELDS if name in chosen)
    if detail is None or detail == "summary":
        return SUMMARY_FIELDS
    if detail == "full":
        return JOB_FIELDS
    raise bad_request(
        f"query parameter 'detail' must be one of: {', '.join(DETAIL_VALUES)}; got {detail!r}"
    )


def parse_job_filter(query: Mapping[str, Sequence[str]]) -> JobFilter:
    """The :class:`JobFilter` a ``GET /jobs`` query string asks for.

    Raises a 400 :class:`~chamberlain.web.errors.ApiError` for unknown parameters,
    unknown statuses, non-RFC 3339 instants, ``since`` after ``until``, limits or
    offsets out of range, a cursor this API did not give, ``after`` with ``offset``,
    and what :func:`parse_list_fields` refuses.
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
    after = single_param(query, "after")
    if after is not None and "offset" in query:
        raise bad_request(
            "query parameters 'after' and 'offset' do not go together:"
            " the cursor already says where the page starts"
        )
    fields = parse_list_fields(query)
    text = single_param(query, "q")
    if text is not None and len(text) > MAX_TEXT:
        raise bad_request(f"query parameter 'q' is longer than {MAX_TEXT} characters")
    return JobFilter(
        statuses=parse_statuses(query.get("status", ())),
        plugin=single_param(query, "plugin"),
        command=single_param(query, "command"),
        submitted_by=single_param(query, "submitted_by"),
        since=since,
        until=until,
        text=text,
        limit=int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        offset=int_param(query, "offset", 0, 0, 2**63 - 1),
        after=None if after is None else decode_cursor(after),
        bodies=not BODY_FIELDS.isdisjoint(fields),
    )


def lookahead(flt: JobFilter) -> JobFilter:
    """What to ask the store for a page: a cursor page asks for one job more.

    A page by offset learns from ``total`` whether another page follows; a page by
    cursor cannot (``total`` counts from the newest job, not from the cursor), so it
    reads one job past its end to find out.
    """
    return flt if flt.after is None else attrs.evolve(flt, limit=flt.limit + 1)


def page_of(flt: JobFilter, found: Sequence[Job], total: int) -> tuple[Sequence[Job], str | None]:
    """The jobs a page shows, out of what :func:`lookahead` found, and its ``next``.

    ``next`` is the cursor of the page after, or None when none follows.
    """
    if flt.after is None:
        shown, more = found, flt.offset + len(found) < total
    else:
        shown, more = found[: flt.limit], len(found) > flt.limit
    return shown, encode_cursor(shown[-1].seq) if more and shown else None


def next_link(query: Mapping[str, Sequence[str]], cursor: str) -> str:
    """A ``Link`` header to the page after: the same query, from ``cursor`` on."""
    pairs = [
        (name, value)
        for name, values in query.items()
        if name not in ("after", "offset")
        for value in values
    ]
    return f'</jobs?{urllib.parse.urlencode([*pairs, ("after", cursor)])}>; rel="next"'


def job_fields(job: Job, fields: Sequence[str]) -> dict[str, Any]:
    """The JSON of ``job`` with only ``fields`` (names from :data:`JOB_FIELDS`)."""
    shown = job.to_json()
    return {name: shown[name] for name in fields}


def parse_wait(query: Mapping[str, Sequence[str]]) -> float:
    """Seconds ``?wait=`` asks a ``GET /job/{job_id}`` to wait for the job's end (0: none).

    Takes what :func:`~chamberlain.config.units.parse_duration` takes (``10``,
    ``1.5``, ``30s``, ``1m``).  Raises a 400 :class:`~chamberlain.web.errors.ApiError`
    for an empty, repeated, malformed or negative value, and for one above
    :data:`MAX_WAIT`.
    """
    text = single_param(query, "wait")
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
    """``GET /jobs``: a page of jobs, newest first, with the number matching in all.

    The answer's ``next`` (and its ``Link: rel="next"`` header) is the cursor of the
    page after; ``offset`` is echoed only for a page asked by offset.
    """
    flt = parse_job_filter(call.query)
    fields = parse_list_fields(call.query)
    found, total = await call.gateway.list_jobs(lookahead(flt))
    jobs, cursor = page_of(flt, found, total)
    body: dict[str, Any] = {
        "jobs": [job_fields(job, fields) for job in jobs],
        "total": total,
        "limit": flt.limit,
    }
    if flt.after is None:
        body["offset"] = flt.offset
    body["next"] = cursor
    headers = {} if cursor is None else {"Link": next_link(call.query, cursor)}
    return Reply(body, headers=headers)


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
        description=(
            "Each job is a summary (no payload, event or result) unless `detail=full`"
            " or `fields=` says otherwise. Page on with `after=<next>` until `next` is"
            " null: a cursor costs the same at any depth, where a deep `offset` reads"
            " through every job it skips."
        ),
        tag="jobs",
        params=LIST_PARAMS,
        responses=(
            ResponseSpec(
                status=200,
                description="A page of jobs.",
                schema="JobList",
                optional_headers={
                    "Link": (
                        'The page after, as `</jobs?…&after=<next>>; rel="next"`;'
                        " absent on the last page."
                    )
                },
            ),
            ResponseSpec(
                status=400,
                description=(
                    "Unknown parameter, bad status, bad RFC 3339 instant or limit, unknown"
                    " field or detail, a cursor this API did not give, `after` with"
                    " `offset`, or `fields` with `detail`."
                ),
            ),
            UNAVAILABLE,
        ),
    ),
)

#: Component schemas these routes, and every route showing a job, refer to.
SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    # Open: JobDetail adds fields to it.
    "Job": object_schema(JOB_PROPERTIES),
    "JobSummary": {
        "description": "A job as `GET /jobs` lists it by default: no payload, event or result.",
        **object_schema({name: JOB_PROPERTIES[name] for name in SUMMARY_FIELDS}, closed=True),
    },
    "JobFields": {
        "description": "A job as `GET /jobs?fields=` lists it: `job_id` and the fields named.",
        **object_schema(JOB_PROPERTIES, required=["job_id"], closed=True),
    },
    "JobList": object_schema(
        {
            "jobs": {
                "type": "array",
                "items": {"anyOf": [ref("JobSummary"), ref("Job"), ref("JobFields")]},
                "description": (
                    "JobSummary by default, Job with `detail=full`, JobFields with `fields=`."
                ),
            },
            "total": {
                "description": "Every job the filters match, whatever the page.",
                "type": "integer",
                "minimum": 0,
            },
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            "offset": {
                "description": "The `offset` asked for (absent for a page asked with `after`).",
                "type": "integer",
                "minimum": 0,
            },
            "next": {
                "description": (
                    "Pass it as `after` for the page after, with the same filters;"
                    " null when this page is the last."
                ),
                "type": ["string", "null"],
            },
        },
        required=["jobs", "total", "limit", "next"],
        closed=True,
    ),
}


__all__ = [
    "BODY_FIELDS",
    "DEFAULT_LIMIT",
    "DETAIL_VALUES",
    "INCLUDE_PARAM",
    "JOB_FIELDS",
    "JOB_ID_PARAM",
    "JOB_PROPERTIES",
    "LIST_PARAMS",
    "MAX_LIMIT",
    "MAX_WAIT",
    "POLL_AFTER",
    "POLL_AFTER_DOC",
    "ROUTES",
    "SCHEMAS",
    "SUMMARY_FIELDS",
    "WAIT_PARAM",
    "accepted_headers",
    "decode_cursor",
    "encode_cursor",
    "get_job",
    "int_param",
    "job_fields",
    "list_jobs",
    "lookahead",
    "next_link",
    "page_of",
    "parse_include",
    "parse_job_filter",
    "parse_list_fields",
    "parse_rfc3339",
    "parse_statuses",
    "parse_wait",
    "single_param",
]
