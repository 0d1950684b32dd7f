"""``GET /schedules`` and ``POST /schedules/{plugin}/{id}/reset`` against a fake Gateway."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import attrs
import pytest
from quart_trio import QuartTrio

from chamberlain.actors.gateway import Gateway, Lifecycle, Phase
from chamberlain.actors.mailbox import ActorUnavailable
from chamberlain.config import ApiConfig, AuthConfig, PluginConfig, TokenConfig
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.plugins.manifest import CommandSpec, CommandType, Manifest
from chamberlain.records import JobStatus
from chamberlain.schedule.books import BreakerStatus, ScheduleBook, ScheduleStatus
from chamberlain.schedule.breaker import Breaker, BreakerPolicy, BreakerState, Transition
from chamberlain.schedule.policy import Fire
from chamberlain.web.app import create_app
from chamberlain.web.openapi import SCHEMAS
from chamberlain.web.routes import ROUTES
from chamberlain.web.schedules import ROUTES as SCHEDULE_ROUTES
from chamberlain.web.schedules import breaker_json, schedule_json

T0 = 1_714_557_600.0  # 2024-05-01T10:00:00Z
TOKENS = {"admin": "k", "ro": "ro-t", "jobsro": "jobsro-t", "rw": "rw-t", "reader": "reader-t"}


def bearer(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def api_config() -> ApiConfig:
    return ApiConfig(
        listen="127.0.0.1:0",
        auth=AuthConfig(
            api_key=TOKENS["admin"],
            tokens=(
                TokenConfig(name="ro", token=TOKENS["ro"], scopes=("plugin:ro",)),
                TokenConfig(name="jobsro", token=TOKENS["jobsro"], scopes=("jobs:ro",)),
                TokenConfig(name="rw", token=TOKENS["rw"], scopes=("jobs:rw",)),
                TokenConfig(name="reader", token=TOKENS["reader"], scopes=("read:*",)),
            ),
        ),
    )


def echo() -> BoundPlugin:
    manifest = Manifest(
        name="echo",
        version="1",
        protocol=2,
        entrypoint=Path("/nonexistent/echo/run.sh"),
        directory=Path("/nonexistent/echo"),
        commands=(CommandSpec(name="poll", type=CommandType.READ),),
    )
    return BoundPlugin(manifest=manifest, settings=PluginConfig(), parallelism=1)


def status(**changes: Any) -> ScheduleStatus:
    opened = Breaker(
        state=BreakerState.OPEN,
        failures=3,
        opened_at=T0,
        transitions=(
            Transition(
                source=BreakerState.CLOSED,
                target=BreakerState.OPEN,
                reason="3 consecutive scheduled runs failed",
                at=T0,
            ),
        ),
    )
    base = ScheduleStatus(
        plugin="echo",
        id="tick",
        command="poll",
        kind="cron",
        spec="*/5 * * * *",
        timezone="Europe/Berlin",
        only_between="09:00-17:00",
        not_on=("sat", "sun"),
        jitter=30.0,
        catch_up="run_once",
        if_running="queue",
        max_outstanding=1,
        next_run=T0 + 300,
        book=ScheduleBook(
            plugin="echo",
            id="tick",
            spec="cron=*/5 * * * *",
            tracked_since=T0 - 3600,
            last_fire_at=T0,
            last_run_at=T0 - 300,
            last_job_id="job-1",
            last_status=JobStatus.FAILED.value,
            last_skip_at=T0,
            last_skip_reason="circuit breaker for echo/poll is open",
            owed=(Fire(T0 - 60),),
        ),
        breaker=BreakerStatus(
            command="poll", breaker=opened, policy=BreakerPolicy(reset_after=600.0)
        ),
    )
    return attrs.evolve(base, **changes)


@attrs.define(eq=False)
class FakeGateway:
    """Just what the schedule routes use."""

    plugins: dict[str, BoundPlugin] = attrs.field(factory=lambda: {"echo": echo()})
    lifecycle: Lifecycle = attrs.field(factory=lambda: Lifecycle(phase=Phase.READY))
    schedules: tuple[ScheduleStatus, ...] = attrs.field(factory=lambda: (status(),))
    resets: list[tuple[str, str, str]] = attrs.field(factory=list)
    fail: Exception | None = None

    async def list_schedules(self) -> tuple[ScheduleStatus, ...]:
        if self.fail is not None:
            raise self.fail
        return self.schedules

    async def reset_breaker(
        self, plugin: str, schedule_id: str, *, by: str
    ) -> ScheduleStatus | None:
        if self.fail is not None:
            raise self.fail
        self.resets.append((plugin, schedule_id, by))
        for s in self.schedules:
            if (s.plugin, s.id) == (plugin, schedule_id):
                closed = s.breaker.breaker.reset(now=T0 + 1, reason=f"reset by {by}")
                return attrs.evolve(s, breaker=attrs.evolve(s.breaker, breaker=closed))
        return None


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def app(gateway: FakeGateway) -> QuartTrio:
    return create_app(cast(Gateway, gateway), api_config(), routes=SCHEDULE_ROUTES)


async def call(
    app: QuartTrio,
    method: str,
    path: str,
    *,
    who: str | None = "admin",
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    all_headers = {**(bearer(who) if who else {}), **(headers or {})}
    response = await app.test_client().open(path, method=method, headers=all_headers, **kwargs)
    assert response.mimetype == "application/json"
    return response.status_code, json.loads(await response.get_data(as_text=True))


async def test_list_shows_every_field(app: QuartTrio) -> None:
    code, body = await call(app, "GET", "/schedules", who="jobsro")
    assert code == 200
    (s,) = body["schedules"]
    assert s == {
        "plugin": "echo",
        "id": "tick",
        "command": "poll",
        "kind": "cron",
        "spec": "*/5 * * * *",
        "timezone": "Europe/Berlin",
        "only_between": "09:00-17:00",
        "not_on": ["sat", "sun"],
        "jitter": 30.0,
        "catch_up": "run_once",
        "if_running": "queue",
        "max_outstanding": 1,
        "next_run": "2024-05-01T10:05:00.000Z",
        "last_run": "2024-05-01T09:55:00.000Z",
        "last_job_id": "job-1",
        "last_status": "failed",
        "last_skipped": {
            "scheduled_for": "2024-05-01T10:00:00.000Z",
            "reason": "circuit breaker for echo/poll is open",
        },
        "waiting": 1,
        "paused": False,
        "breaker": {
            "command": "poll",
            "state": "open",
            "failures": 3,
            "enabled": True,
            "threshold": 3,
            "reset_after": 600.0,
            "opened_at": "2024-05-01T10:00:00.000Z",
            "probe_at": "2024-05-01T10:10:00.000Z",
            "probe_job_id": None,
            "transitions": [
                {
                    "from": "closed",
                    "to": "open",
                    "reason": "3 consecutive scheduled runs failed",
                    "at": "2024-05-01T10:00:00.000Z",
                }
            ],
        },
    }


async def test_a_schedule_that_will_not_run_again_has_no_next_run(
    app: QuartTrio, gateway: FakeGateway
) -> None:
    gateway.schedules = (status(next_run=None, kind="at", spec="2024-05-01T09:00:00+00:00"),)
    _, body = await call(app, "GET", "/schedules")
    assert body["schedules"][0]["next_run"] is None


@pytest.mark.parametrize(
    ("who", "expected"), [("jobsro", 200), ("reader", 200), ("rw", 200), ("ro", 403), (None, 401)]
)
async def test_listing_needs_jobs_ro(app: QuartTrio, who: str | None, expected: int) -> None:
    code, body = await call(app, "GET", "/schedules", who=who)
    assert code == expected
    if expected != 200:
        assert "error" in body


async def test_listing_takes_no_query(app: QuartTrio) -> None:
    code, body = await call(app, "GET", "/schedules?plugin=echo")
    assert code == 400
    assert "unknown query parameter 'plugin'" in body["error"]


async def test_reset_closes_the_breaker_and_records_who(
    app: QuartTrio, gateway: FakeGateway
) -> None:
    code, body = await call(
        app, "POST", "/schedules/echo/tick/reset", who="rw", json={"reason": "disk replaced"}
    )
    assert code == 200
    assert gateway.resets == [("echo", "tick", "token:rw: disk replaced")]
    assert body["breaker"]["state"] == "closed"
    assert body["breaker"]["transitions"][-1]["reason"] == "reset by token:rw: disk replaced"


async def test_reset_without_a_body(app: QuartTrio, gateway: FakeGateway) -> None:
    code, _ = await call(app, "POST", "/schedules/echo/tick/reset")
    assert code == 200
    assert gateway.resets == [("echo", "tick", "api_key")]


@pytest.mark.parametrize(("who", "expected"), [("jobsro", 403), ("reader", 403), (None, 401)])
async def test_reset_needs_jobs_rw(
    app: QuartTrio, gateway: FakeGateway, who: str | None, expected: int
) -> None:
    code, _ = await call(app, "POST", "/schedules/echo/tick/reset", who=who)
    assert code == expected
    assert gateway.resets == []


async def test_reset_of_something_unknown_is_404(app: QuartTrio) -> None:
    code, body = await call(app, "POST", "/schedules/nope/tick/reset")
    assert (code, body) == (404, {"error": "unknown plugin 'nope'"})
    code, body = await call(app, "POST", "/schedules/echo/nope/reset")
    assert (code, body) == (404, {"error": "plugin 'echo' has no schedule 'nope'"})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[]", "request body must be a JSON object"),
        (b"{", "malformed JSON"),
        (b'{"why": "x"}', "unknown field 'why'"),
        (b'{"reason": ""}', "reason must be a non-empty string"),
        (b'{"reason": 5}', "reason must be a non-empty string"),
        (json.dumps({"reason": "x" * 201}).encode(), "longer than 200"),
    ],
)
async def test_reset_refuses_a_bad_body(
    app: QuartTrio, gateway: FakeGateway, data: bytes, message: str
) -> None:
    code, body = await call(
        app,
        "POST",
        "/schedules/echo/tick/reset",
        data=data,
        headers={"Content-Type": "application/json"},
    )
    assert code == 400
    assert message in body["error"]
    assert gateway.resets == []


async def test_a_scheduler_that_does_not_answer_is_503(
    app: QuartTrio, gateway: FakeGateway
) -> None:
    gateway.fail = ActorUnavailable("no answer within 5s")
    code, body = await call(app, "GET", "/schedules")
    assert code == 503
    assert "did not answer" in body["error"]


def test_the_routes_are_registered_and_documented() -> None:
    served = {(r.method, r.path): r for r in ROUTES}
    assert served[("GET", "/schedules")].access.scope == "jobs:ro"  # type: ignore[attr-defined]
    reset = served[("POST", "/schedules/{plugin}/{id}/reset")]
    assert reset.access.scope == "jobs:rw"  # type: ignore[attr-defined]
    assert set(SCHEMAS["Schedule"]["properties"]) == set(schedule_json(status()))
    assert set(SCHEMAS["Breaker"]["properties"]) == set(breaker_json(status().breaker))
    assert {"ScheduleList", "BreakerTransition", "BreakerReset"} <= set(SCHEMAS)
