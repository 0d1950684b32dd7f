"""``GET /job-logs`` and ``GET /scheduler/jobs``: read-only answers shaped as Ductile's.

Ductile's CLI and skill files read these two routes; Chamberlain serves them from
what it already keeps, so a Ductile client works unchanged.  ``/job-logs`` lists
finished jobs (Ductile keeps one log row per finished attempt; Chamberlain keeps
the job, so a job shows once, as its last attempt ended).  ``/scheduler/jobs`` is
the Ductile view of ``GET /schedules``.  Where the two daemons cannot agree the
difference is in docs/DUCTILE.md; Chamberlain's own routes (``/jobs``,
``/schedules``) carry more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from chamberlain.records import TERMINAL_STATUSES, Job, JobFilter, JobStatus, rfc3339
from chamberlain.schedule.books import ScheduleStatus
from chamberlain.web.auth import JOBS_RO, Scoped
from chamberlain.web.errors import bad_request
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import NO_QUERY, UNAVAILABLE
from chamberlain.web.jobs import parse_rfc3339
from chamberlain.web.spec import STRING, Param, ResponseSpec, Route, object_schema, ref

#: Ductile's page size and its largest.
DEFAULT_LIMIT = 50
MAX_LIMIT = 200

#: Ductile's shorthands for statuses, besides the statuses' own names.
STATUS_ALIASES: Mapping[str, JobStatus] = {
    "pending": JobStatus.QUEUED,
    "ok": JobStatus.SUCCEEDED,
    "error": JobStatus.FAILED,
}

_TEXT = "Matched exactly; an empty value is ignored, as Ductile does."

#: A blank value, which Ductile's handlers read as "not given" (and so does this one).
_BLANK: Mapping[str, Any] = {"type": "string", "maxLength": 0}


def _or_blank(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """``schema``, or a blank value: ``?to=`` is no bound at all, as in Ductile."""
    return {"anyOf": [dict(schema), dict(_BLANK)]}


LOG_PARAMS: tuple[Param, ...] = (
    Param(name="job_id", location="query", description=f"Only this job. {_TEXT}"),
    Param(name="plugin", location="query", description=f"Only jobs of this plugin. {_TEXT}"),
    Param(name="command", location="query", description=f"Only jobs of this command. {_TEXT}"),
    Param(
        name="submitted_by",
        location="query",
        description=f"Only jobs submitted by this token name. {_TEXT}",
    ),
    Param(
        name="status",
        location="query",
        description=(
            "Only jobs in this status: a status name, or Ductile's `pending` (queued),"
            " `ok` (succeeded), `error` (failed).  Only finished jobs have logs, so"
            " `queued` and `running` list nothing."
        ),
    ),
    Param(
        name="from",
        location="query",
        description="Only jobs created at or after this RFC 3339 time (Ductile: completed).",
        schema=_or_blank({"type": "string", "format": "date-time"}),
    ),
    Param(
        name="to",
        location="query",
        description=(
            "Only jobs created before this RFC 3339 time (Ductile: completed, at or before)."
        ),
        schema=_or_blank({"type": "string", "format": "date-time"}),
    ),
    Param(
        name="limit",
        location="query",
        description=f"How many logs (1 to {MAX_LIMIT}; default {DEFAULT_LIMIT}).",
        schema=_or_blank({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
    ),
    Param(
        name="include_result",
        location="query",
        description="`true` adds each job's `result`.",
    ),
    Param(
        name="query",
        location="query",
        description=(
            "Ductile's text search over error, stderr and result.  Not supported: any"
            " non-empty value is refused with 400."
        ),
        schema=_BLANK,
    ),
)


def _value(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    # The app refuses a repeated parameter; Ductile trims and treats blank as absent.
    values = query.get(name, ())
    text = values[0].strip() if values else ""
    return text or None


def log_status(text: str) -> JobStatus:
    """The status a ``/job-logs`` ``status`` value names; 400 for an unknown one."""
    name = text.strip().lower()
    if name in STATUS_ALIASES:
        return STATUS_ALIASES[name]
    try:
        return JobStatus(name)
    except ValueError:
        expected = [*STATUS_ALIASES, *(s.value for s in JobStatus)]
        raise bad_request(
            f"query parameter 'status': unknown status {text!r}; expected one of:"
            f" {', '.join(expected)}"
        ) from None


def _instant(query: Mapping[str, Sequence[str]], name: str) -> float | None:
    text = _value(query, name)
    if text is None:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise bad_request(f"query parameter {name!r}: {exc}") from None


def parse_log_query(query: Mapping[str, Sequence[str]]) -> tuple[str | None, JobFilter, bool]:
    """A ``/job-logs`` query string as (job id, filter, include results); 400 if bad.

    The filter's statuses are the finished ones asked for, and empty when only
    unfinished ones were: nothing can match then.
    """
    if _value(query, "query") is not None:
        raise bad_request(
            "query parameter 'query' (text search) is not supported; filter by job_id,"
            " plugin, command, status, submitted_by, from or to"
        )
    limit = DEFAULT_LIMIT
    raw_limit = _value(query, "limit")
    if raw_limit is not None:
        digits = raw_limit.lstrip("0")
        # Checked as text first: int() takes non-ASCII digits and refuses very long ones.
        if not (raw_limit.isascii() and raw_limit.isdigit()) or not digits:
            raise bad_request(
                f"query parameter 'limit' must be a positive integer, got {raw_limit!r}"
            )
        if len(digits) > 3 or int(digits) > MAX_LIMIT:
            raise bad_request(f"query parameter 'limit' must be <= {MAX_LIMIT}, got {raw_limit!r}")
        limit = int(digits)
    finished = tuple(sorted(TERMINAL_STATUSES, key=lambda s: s.value))
    raw_status = _value(query, "status")
    if raw_status is not None:
        wanted = log_status(raw_status)
        finished = (wanted,) if wanted in TERMINAL_STATUSES else ()
    since, until = _instant(query, "from"), _instant(query, "to")
    if since is not None and until is not None and since > until:
        raise bad_request("query parameter 'from' is later than 'to'")
    include = (_value(query, "include_result") or "").lower() == "true"
    flt = JobFilter(
        statuses=finished,
        plugin=_value(query, "plugin"),
        command=_value(query, "command"),
        submitted_by=_value(query, "submitted_by"),
        since=since,
        until=until,
        limit=limit,
        bodies=include,
    )
    return _value(query, "job_id"), flt, include


def job_matches(job: Job, flt: JobFilter) -> bool:
    """True when ``job`` passes every filter of ``flt`` (the page aside)."""
    fields = ((flt.plugin, job.plugin), (flt.command, job.command))
    if any(wanted is not None and wanted != actual for wanted, actual in fields):
        return False
    if flt.submitted_by is not None and flt.submitted_by != job.submitted_by:
        return False
    if flt.since is not None and job.created_at < flt.since:
        return False
    if flt.until is not None and job.created_at >= flt.until:
        return False
    return job.status in flt.statuses


def log_item(job: Job, *, include_result: bool) -> dict[str, Any]:
    """One finished job as a Ductile job log row."""
    item: dict[str, Any] = {
        "job_id": job.id,
        # Ductile names a log row after the job and the attempt that wrote it.
        "log_id": f"{job.id}-{job.attempt}",
        "plugin": job.plugin,
        "command": job.command,
        "status": job.status.value,
        "attempt": job.attempt,
        "submitted_by": job.submitted_by,
        "created_at": rfc3339(job.created_at),
        # A job cancelled before it ran has no completion time of its own; Ductile's
        # field is never absent, so its creation stands in.
        "completed_at": rfc3339(
            job.completed_at if job.completed_at is not None else job.created_at
        ),
    }
    if job.last_error is not None:
        item["last_error"] = job.last_error
    if include_result and job.result is not None:
        item["result"] = job.result
    return item


async def list_job_logs(call: Call) -> Reply:
    """``GET /job-logs``: finished jobs, newest first, as Ductile lists its job logs."""
    job_id, flt, include = parse_log_query(call.query)
    if job_id is not None:
        job = await call.gateway.get_job(job_id)
        found = (job,) if job is not None and job_matches(job, flt) else ()
        jobs, total = found[: flt.limit], len(found)
    elif not flt.statuses:
        jobs, total = (), 0
    else:
        jobs, total = await call.gateway.list_jobs(flt)
    return Reply({"logs": [log_item(j, include_result=include) for j in jobs], "total": total})


def scheduler_job(status: ScheduleStatus) -> dict[str, Any]:
    """One schedule as a Ductile scheduler entry.

    Chamberlain refuses an invalid schedule when it loads the configuration, so
    every entry is ``scheduled`` and none carries Ductile's ``reason``.
    """
    item: dict[str, Any] = {
        "plugin": status.plugin,
        "schedule_id": status.id,
        "command": status.command,
        "mode": status.kind,
        "status": "scheduled",
    }
    if status.timezone:
        item["timezone"] = status.timezone
    if status.next_run is not None:
        item["next_run_at"] = rfc3339(status.next_run)
    return item


def scheduler_jobs(statuses: Iterable[ScheduleStatus]) -> list[dict[str, Any]]:
    """Every schedule as Ductile lists them: by plugin name, each plugin's in order."""
    return [scheduler_job(s) for s in sorted(statuses, key=lambda s: s.plugin)]


async def list_scheduler_jobs(call: Call) -> Reply:
    """``GET /scheduler/jobs``: the schedules, as Ductile shows them."""
    return Reply({"jobs": scheduler_jobs(await call.gateway.list_schedules())})


ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="listJobLogs",
        method="GET",
        path="/job-logs",
        handler=list_job_logs,
        access=Scoped(JOBS_RO),
        summary="Finished jobs, as Ductile lists its job logs",
        description=(
            "For Ductile's clients.  One row per finished job, newest first; `total`"
            " counts every match.  `from`/`to` bound the creation time, and a job shows"
            " once, as its last attempt ended; `GET /jobs` is the fuller listing."
        ),
        tag="ductile",
        params=LOG_PARAMS,
        responses=(
            ResponseSpec(status=200, description="The matching logs.", schema="JobLogList"),
            ResponseSpec(status=400, description="A query parameter is malformed or unsupported."),
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="listSchedulerJobs",
        method="GET",
        path="/scheduler/jobs",
        handler=list_scheduler_jobs,
        access=Scoped(JOBS_RO),
        summary="Schedules, as Ductile lists its scheduler entries",
        description=(
            "For Ductile's clients.  `next_run_at` is the run the scheduler will start"
            " (jitter included), absent for a schedule that will not run again;"
            " `GET /schedules` is the fuller view."
        ),
        tag="ductile",
        responses=(
            ResponseSpec(status=200, description="Every schedule.", schema="SchedulerJobList"),
            NO_QUERY,
            UNAVAILABLE,
        ),
    ),
)

_TIME: Mapping[str, Any] = {"type": "string", "format": "date-time"}

#: Component schemas these routes refer to (merged into the OpenAPI document).
SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "JobLog": object_schema(
        {
            "job_id": STRING,
            "log_id": {**STRING, "description": "`<job_id>-<attempt>`, as Ductile names it."},
            "plugin": STRING,
            "command": STRING,
            "status": ref("JobStatus"),
            "attempt": {"type": "integer"},
            "submitted_by": STRING,
            "created_at": _TIME,
            "completed_at": _TIME,
            "last_error": {**STRING, "description": "Present when the job failed."},
            "result": {"description": "The job's result; only with `include_result=true`."},
        },
        required=(
            "job_id",
            "log_id",
            "plugin",
            "command",
            "status",
            "attempt",
            "submitted_by",
            "created_at",
            "completed_at",
        ),
        closed=True,
    ),
    "JobLogList": object_schema(
        {"logs": {"type": "array", "items": ref("JobLog")}, "total": {"type": "integer"}},
        closed=True,
    ),
    "SchedulerJob": object_schema(
        {
            "plugin": STRING,
            "schedule_id": STRING,
            "command": STRING,
            "mode": {"type": "string", "enum": ["every", "cron", "at", "after"]},
            "status": {"const": "scheduled"},
            "timezone": STRING,
            "next_run_at": _TIME,
        },
        required=("plugin", "schedule_id", "command", "mode", "status"),
        closed=True,
    ),
    "SchedulerJobList": object_schema(
        {"jobs": {"type": "array", "items": ref("SchedulerJob")}}, closed=True
    ),
}
