"""The answers Ductile's clients read: ``/healthz``'s extra fields, ``/job-logs`` and
``/scheduler/jobs``, through the app against a fake Gateway.

The field names and query parameters are those of Ductile's ``internal/api``
(``HealthzResponse``, ``JobLogListResponse``, ``SchedulerJobsResponse`` and the
``handleListJobLogs`` parser).
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, cast

import attrs
import pytest
from quart_trio import QuartTrio
from test_schedules_api import status as schedule_status
from test_web_api import FakeGateway, api_config, call, job_from

from chamberlain.actors.gateway import Gateway, plugins_circuit_open
from chamberlain.records import Job, JobFilter, JobStatus, NewJob
from chamberlain.schedule.books import ScheduleStatus
from chamberlain.schedule.breaker import Breaker, BreakerState
from chamberlain.web.app import create_app
from chamberlain.web.ductile_views import job_matches, log_item, parse_log_query


def finished(job_id: str, status: JobStatus = JobStatus.SUCCEEDED, **changes: Any) -> Job:
    new = NewJob(id=job_id, plugin="echo", command="poll", payload={}, submitted_by="ci")
    job = job_from(new, status)
    done = {"attempt": 2, "completed_at": job.created_at + 5, "result": {"ok": True}}
    return attrs.evolve(job, **{**done, **changes})


def with_breaker(plugin: str, state: BreakerState, schedule_id: str = "tick") -> ScheduleStatus:
    base = schedule_status(plugin=plugin, id=schedule_id)
    breaker = Breaker(state=state, failures=0)
    return attrs.evolve(base, breaker=attrs.evolve(base.breaker, breaker=breaker))


@attrs.define(eq=False)
class DuctileGateway(FakeGateway):
    schedules: tuple[ScheduleStatus, ...] = ()

    async def list_schedules(self) -> tuple[ScheduleStatus, ...]:
        return self.schedules


@pytest.fixture
def gateway() -> DuctileGateway:
    return DuctileGateway()


@pytest.fixture
def app(gateway: DuctileGateway) -> QuartTrio:
    return create_app(cast(Gateway, gateway), api_config())


# -- /healthz ----------------------------------------------------------------------


async def test_healthz_names_the_installed_version(app: QuartTrio) -> None:
    _, body, _ = await call(app, "GET", "/healthz", who=None)
    assert body["version"] == metadata.version("chamberlain")


def test_a_plugin_with_an_open_or_half_open_breaker_counts_once() -> None:
    schedules = (
        with_breaker("a", BreakerState.OPEN, "one"),
        with_breaker("a", BreakerState.OPEN, "two"),
        with_breaker("b", BreakerState.HALF_OPEN),
        with_breaker("c", BreakerState.CLOSED),
    )
    assert plugins_circuit_open(schedules) == 2
    assert plugins_circuit_open(()) == 0


# -- /job-logs ---------------------------------------------------------------------


async def test_job_logs_shows_finished_jobs_as_ductile_rows(
    app: QuartTrio, gateway: DuctileGateway
) -> None:
    gateway.jobs["j1"] = finished("j1", JobStatus.FAILED, last_error="boom")
    code, body, _ = await call(app, "GET", "/job-logs", who="jobsro")
    assert code == 200
    assert body == {
        "logs": [
            {
                "job_id": "j1",
                "log_id": "j1-2",
                "plugin": "echo",
                "command": "poll",
                "status": "failed",
                "attempt": 2,
                "submitted_by": "ci",
                "created_at": "2023-11-14T22:13:20.000Z",
                "completed_at": "2023-11-14T22:13:25.000Z",
                "last_error": "boom",
            }
        ],
        "total": 1,
    }
    # Only finished jobs have logs, and results stay out unless asked for.
    (flt,) = gateway.filters
    assert set(flt.statuses) == {s for s in JobStatus if s.terminal}
    assert flt.bodies is False


async def test_job_logs_passes_ductile_s_filters_on(
    app: QuartTrio, gateway: DuctileGateway
) -> None:
    gateway.jobs["j1"] = finished("j1")
    query = (
        "plugin=echo&command=poll&submitted_by=ci&status=ok&limit=7&include_result=true"
        "&from=2023-11-14T00:00:00Z&to=2023-11-15T00:00:00Z"
    )
    code, body, _ = await call(app, "GET", f"/job-logs?{query}", who="jobsro")
    assert code == 200
    assert body["logs"][0]["result"] == {"ok": True}
    (flt,) = gateway.filters
    assert (flt.plugin, flt.command, flt.submitted_by) == ("echo", "poll", "ci")
    assert (flt.statuses, flt.limit, flt.bodies) == ((JobStatus.SUCCEEDED,), 7, True)
    assert flt.since == 1_699_920_000.0 and flt.until == 1_700_006_400.0


async def test_job_logs_by_job_id_checks_the_other_filters(
    app: QuartTrio, gateway: DuctileGateway
) -> None:
    gateway.jobs["j1"] = finished("j1")
    _, body, _ = await call(app, "GET", "/job-logs?job_id=j1", who="jobsro")
    assert [row["job_id"] for row in body["logs"]] == ["j1"]
    _, body, _ = await call(app, "GET", "/job-logs?job_id=j1&plugin=other", who="jobsro")
    assert body == {"logs": [], "total": 0}
    _, body, _ = await call(app, "GET", "/job-logs?job_id=nope", who="jobsro")
    assert body == {"logs": [], "total": 0}


async def test_unfinished_statuses_list_nothing(app: QuartTrio, gateway: DuctileGateway) -> None:
    gateway.jobs["q"] = job_from(
        NewJob(id="q", plugin="echo", command="poll", payload={}, submitted_by="ci")
    )
    for status in ("pending", "queued", "running"):
        code, body, _ = await call(app, "GET", f"/job-logs?status={status}", who="jobsro")
        assert (code, body) == (200, {"logs": [], "total": 0})
    _, body, _ = await call(app, "GET", "/job-logs?job_id=q", who="jobsro")
    assert body["logs"] == []


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("limit=0", "'limit'"),
        ("limit=201", "'limit'"),
        ("limit=ten", "'limit'"),
        ("limit=%C2%B2", "'limit'"),
        ("limit=" + "9" * 5000, "'limit'"),
        ("limit=-3", "'limit'"),
        ("status=finished", "'status'"),
        ("from=yesterday", "'from'"),
        ("from=2024-01-02T00:00:00Z&to=2024-01-01T00:00:00Z", "'from'"),
        ("query=timeout", "'query'"),
        ("offset=5", "'offset'"),
    ],
)
async def test_job_logs_refuses_a_bad_query_naming_the_parameter(
    app: QuartTrio, query: str, names: str
) -> None:
    code, body, _ = await call(app, "GET", f"/job-logs?{query}", who="jobsro")
    assert code == 400
    assert names in body["error"]


@pytest.mark.parametrize(("who", "expected"), [(None, 401), ("ro", 403), ("jobsro", 200)])
async def test_ductile_routes_need_jobs_ro(app: QuartTrio, who: str | None, expected: int) -> None:
    for path in ("/job-logs", "/scheduler/jobs"):
        code, _, _ = await call(app, "GET", path, who=who)
        assert code == expected, path


def test_blank_parameters_are_absent_as_in_ductile() -> None:
    job_id, flt, include = parse_log_query({"plugin": ["  "], "job_id": [""], "limit": [" "]})
    assert (job_id, flt.plugin, flt.limit, include) == (None, None, 50, False)


def test_job_matches_applies_every_filter() -> None:
    job = finished("j1")
    everything = tuple(JobStatus)
    assert job_matches(job, JobFilter(statuses=everything))
    assert not job_matches(job, JobFilter(statuses=(JobStatus.FAILED,)))
    assert not job_matches(job, JobFilter(statuses=everything, command="other"))
    assert not job_matches(job, JobFilter(statuses=everything, submitted_by="someone"))
    assert not job_matches(job, JobFilter(statuses=everything, since=job.created_at + 1))
    assert not job_matches(job, JobFilter(statuses=everything, until=job.created_at))


def test_a_job_cancelled_before_it_ran_completes_when_it_was_created() -> None:
    job = finished("j1", JobStatus.CANCELLED, completed_at=None)
    assert log_item(job, include_result=False)["completed_at"] == "2023-11-14T22:13:20.000Z"


# -- /scheduler/jobs ---------------------------------------------------------------


async def test_scheduler_jobs_lists_schedules_by_plugin(
    app: QuartTrio, gateway: DuctileGateway
) -> None:
    gateway.schedules = (
        schedule_status(plugin="zeta"),
        schedule_status(plugin="alpha", kind="every", spec="5m", timezone="", next_run=None),
    )
    code, body, _ = await call(app, "GET", "/scheduler/jobs", who="jobsro")
    assert code == 200
    assert body == {
        "jobs": [
            {
                "plugin": "alpha",
                "schedule_id": "tick",
                "command": "poll",
                "mode": "every",
                "status": "scheduled",
            },
            {
                "plugin": "zeta",
                "schedule_id": "tick",
                "command": "poll",
                "mode": "cron",
                "status": "scheduled",
                "timezone": "Europe/Berlin",
                "next_run_at": "2024-05-01T10:05:00.000Z",
            },
        ]
    }


async def test_scheduler_jobs_takes_no_query(app: QuartTrio) -> None:
    code, body, _ = await call(app, "GET", "/scheduler/jobs?plugin=echo", who="jobsro")
    assert code == 400
    assert "'plugin'" in body["error"]
