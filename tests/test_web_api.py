"""Route-level tests of the HTTP API against a fake Gateway.

The app is driven through quart-trio's test client, so every request passes the
same edges as in production (auth, body limits, error handlers, access log); only
the daemon behind the Gateway is replaced by :class:`FakeGateway`.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import attrs
import httpx
import pytest
import trio
from quart_trio import QuartTrio

from chamberlain.actors.gateway import Gateway, Health, Lifecycle, Phase, StorageFull
from chamberlain.actors.mailbox import ActorUnavailable
from chamberlain.config import ApiConfig, AuthConfig, PluginConfig, TokenConfig
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.plugins.manifest import CommandSpec, CommandType, Manifest
from chamberlain.records import Enqueued, Job, JobFilter, JobStatus, NewJob
from chamberlain.routing.planner import Routing
from chamberlain.store.run_rows import run_of
from chamberlain.vault import Vault
from chamberlain.web import dashboard
from chamberlain.web.app import create_app
from chamberlain.web.auth import Authenticated
from chamberlain.web.docs import ASSETS
from chamberlain.web.errors import ApiError
from chamberlain.web.health import package_version
from chamberlain.web.jobs import parse_job_filter, parse_rfc3339
from chamberlain.web.openapi import SCHEMAS
from chamberlain.web.routes import ROUTES
from chamberlain.web.serve import bind_address, hypercorn_config, serve_api
from chamberlain.web.trigger import (
    BODY_FIELDS,
    TriggerOptions,
    build_job,
    parse_trigger_body,
)

LIMIT = 2048
TOKENS = {
    "admin": "test-key",
    "reader": "reader-token",
    "ro": "ro-token",
    "jobsro": "jobsro-token",
    "rw": "rw-token",
}


def bearer(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


# -- the fake daemon -----------------------------------------------------------------


def make_plugin(name: str = "echo") -> BoundPlugin:
    manifest = Manifest(
        name=name,
        version="1.2.3",
        protocol=2,
        entrypoint=Path("/nonexistent") / name / "run.sh",
        directory=Path("/nonexistent") / name,
        description="Echoes.",
        commands=(
            CommandSpec(name="poll", type=CommandType.READ, description="Polls."),
            CommandSpec(
                name="handle",
                type=CommandType.WRITE,
                description="Handles.",
                input_schema={"type": "object", "properties": {"mode": {"type": "string"}}},
            ),
            CommandSpec(name="health", type=CommandType.READ),
        ),
    )
    settings = PluginConfig(timeouts={"handle": 10.0})
    return BoundPlugin(manifest=manifest, settings=settings, parallelism=2)


def job_from(new: NewJob, status: JobStatus = JobStatus.QUEUED) -> Job:
    return Job(
        id=new.id,
        plugin=new.plugin,
        command=new.command,
        payload=new.payload,
        event=new.event,
        context=new.context,
        status=status,
        attempt=0,
        max_attempts=new.max_attempts,
        submitted_by=new.submitted_by,
        timeout=new.timeout,
        dedupe_key=new.dedupe_key,
        created_at=1_700_000_000.0,
        started_at=None,
        completed_at=None,
        run_at=1_700_000_000.0,
        last_error=None,
        result=None,
        parent_job_id=None,
        source_event_id=None,
        pipeline=new.pipeline,
        step_id=new.step_id,
        # As the store does: a pipeline's step names its run.
        run_id=run_of(new),
    )


@attrs.define(eq=False)
class FakeGateway:
    """The Gateway's interface, answering from memory."""

    plugins: dict[str, BoundPlugin] = attrs.field(factory=lambda: {"echo": make_plugin()})
    lifecycle: Lifecycle = attrs.field(factory=lambda: Lifecycle(phase=Phase.READY))
    jobs: dict[str, Job] = attrs.field(factory=dict)
    enqueued: list[NewJob] = attrs.field(factory=list)
    filters: list[JobFilter] = attrs.field(factory=list)
    #: Raised by every call when set.
    fail: Exception | None = None
    #: When set, every enqueue answers that this job stands already.
    duplicate_of: Job | None = None
    #: Why the store refuses writes (the disk is full); None while it does not.
    degraded: str | None = None
    sync_limiter: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(16))
    #: The registry's secrets: none, unless a test puts some.
    vault: Vault = attrs.field(factory=Vault)

    @property
    def routing(self) -> Routing:
        return Routing(routes=(), pipelines=(), plugins=self.plugins)

    def _maybe_fail(self) -> None:
        if self.fail is not None:
            raise self.fail

    def storage_problem(self) -> str | None:
        return self.degraded

    async def enqueue(self, jobs: Sequence[NewJob]) -> tuple[Enqueued, ...]:
        self._maybe_fail()
        out = []
        for new in jobs:
            if self.duplicate_of is not None:
                out.append(Enqueued(job=self.duplicate_of, duplicate=True))
                continue
            self.enqueued.append(new)
            job = job_from(new)
            self.jobs[job.id] = job
            out.append(Enqueued(job=job))
        return tuple(out)

    async def get_job(self, job_id: str) -> Job | None:
        self._maybe_fail()
        return self.jobs.get(job_id)

    async def list_jobs(self, flt: JobFilter) -> tuple[tuple[Job, ...], int]:
        self._maybe_fail()
        self.filters.append(flt)
        jobs = list(self.jobs.values())[::-1]
        return tuple(jobs[flt.offset : flt.offset + flt.limit]), len(jobs)

    async def health(self) -> Health:
        self._maybe_fail()
        return Health(
            phase=self.lifecycle.phase,
            uptime_seconds=12.3456,
            queue_depth=3,
            running=1,
            max_workers=4,
            plugins_loaded=len(self.plugins),
            restarts={"root/jobstore": 1, "root/runners/echo": 2},
            restarts_total=3,
            degraded=self.degraded,
        )


def api_config(**overrides: Any) -> ApiConfig:
    auth = AuthConfig(
        api_key=TOKENS["admin"],
        tokens=(
            TokenConfig(name="reader", token=TOKENS["reader"], scopes=("read:*",)),
            TokenConfig(name="ro", token=TOKENS["ro"], scopes=("plugin:ro",)),
            TokenConfig(name="jobsro", token=TOKENS["jobsro"], scopes=("jobs:ro",)),
            TokenConfig(name="rw", token=TOKENS["rw"], scopes=("plugin:rw", "jobs:rw")),
        ),
    )
    return ApiConfig(**{"listen": "127.0.0.1:0", "auth": auth, "max_body_size": LIMIT, **overrides})


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def app(gateway: FakeGateway) -> QuartTrio:
    return create_app(cast(Gateway, gateway), api_config())


async def call(
    app: QuartTrio,
    method: str,
    path: str,
    *,
    who: str | None = "admin",
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any, Any]:
    """One request; returns status, parsed JSON body and headers.

    Every answer must be JSON, whatever its status: that is checked here, once.
    """
    all_headers = {**(bearer(who) if who else {}), **(headers or {})}
    response = await app.test_client().open(path, method=method, headers=all_headers, **kwargs)
    assert response.mimetype == "application/json", (response.status_code, response.mimetype)
    text = await response.get_data(as_text=True)
    assert "<html" not in text.lower()
    assert "Traceback" not in text
    return response.status_code, json.loads(text), response.headers


# -- trigger -------------------------------------------------------------------------


async def test_trigger_answers_202_once_enqueued(app: QuartTrio, gateway: FakeGateway) -> None:
    status, body, headers = await call(
        app, "POST", "/trigger/echo/poll", who="rw", json={"payload": {"a": 1}}
    )
    assert status == 202
    (new,) = gateway.enqueued
    assert body == {"job_id": new.id, "status": "queued", "plugin": "echo", "command": "poll"}
    assert headers["Location"] == f"/job/{new.id}"
    assert new.payload == {"a": 1}
    assert new.event is None
    assert new.submitted_by == "token:rw"
    assert new.max_attempts == 4  # the plugin's retry.max_attempts default
    assert new.timeout is None
    assert new.dedupe_key is None


async def test_plugin_alias_route_triggers_too(app: QuartTrio, gateway: FakeGateway) -> None:
    status, body, _ = await call(app, "POST", "/plugin/echo/poll", json={})
    assert status == 202
    assert body["job_id"] == gateway.enqueued[0].id
    assert gateway.enqueued[0].submitted_by == "api_key"


@pytest.mark.parametrize("data", [b"", b"   \n", b"{}", b'{"payload": {}}'])
async def test_trigger_body_is_optional(app: QuartTrio, gateway: FakeGateway, data: bytes) -> None:
    status, _, _ = await call(app, "POST", "/trigger/echo/poll", data=data)
    assert status == 202
    assert gateway.enqueued[-1].payload == {}


async def test_handle_wraps_the_payload_in_an_api_trigger_event(
    app: QuartTrio, gateway: FakeGateway
) -> None:
    payload = {"mode": "x", "n": [1, 2]}
    status, _, _ = await call(app, "POST", "/trigger/echo/handle", json={"payload": payload})
    assert status == 202
    (new,) = gateway.enqueued
    assert new.payload == payload
    assert new.event is not None
    event = dict(new.event)
    assert set(event) == {"type", "payload", "event_id", "source", "timestamp"}
    assert event["type"] == "api.trigger"
    assert event["payload"] == payload
    assert event["source"] == "api"
    assert uuid.UUID(event["event_id"]).version == 4
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["timestamp"])
    assert parse_rfc3339(event["timestamp"]) > 1_700_000_000


async def test_trigger_options_reach_the_job(app: QuartTrio, gateway: FakeGateway) -> None:
    status, _, _ = await call(
        app,
        "POST",
        "/trigger/echo/handle",
        json={"payload": {}, "timeout": "5s", "max_attempts": 1, "dedupe_key": "k-1"},
    )
    assert status == 202
    (new,) = gateway.enqueued
    assert new.timeout == 5.0
    assert new.max_attempts == 1
    assert new.dedupe_key == "k-1"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{", "malformed JSON"),
        (b'{"payload": {"a": NaN}}', "malformed JSON"),
        (b"\xff\xfe", "UTF-8"),
        (b"[]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b'{"payload": [1]}', "payload must be a JSON object"),
        (b'{"payload": "x"}', "payload must be a JSON object"),
        (b'{"payload": null}', "payload must be a JSON object"),
        (b'{"payload": {}, "extra": 1}', "unknown field 'extra'"),
        (b'{"timeout": 0}', "longer than zero"),
        (b'{"timeout": -1}', "negative"),
        (b'{"timeout": "0s"}', "longer than zero"),
        (b'{"timeout": "soon"}', "timeout"),
        (b'{"timeout": true}', "timeout"),
        (b'{"timeout": 1e999}', "timeout"),
        (b'{"timeout": 11}', "limit of 10s"),
        (b'{"timeout": "1m"}', "limit of 10s"),
        (b'{"max_attempts": 0}', "from 1 to 100"),
        (b'{"max_attempts": 101}', "from 1 to 100"),
        (b'{"max_attempts": "3"}', "integer"),
        (b'{"max_attempts": 2.5}', "integer"),
        (b'{"max_attempts": true}', "integer"),
        (b'{"dedupe_key": ""}', "empty"),
        (b'{"dedupe_key": "  "}', "empty"),
        (b'{"dedupe_key": 5}', "string"),
        (b'{"dedupe_key": "' + b"k" * 201 + b'"}', "200"),
    ],
)
async def test_bad_trigger_bodies_are_400(
    app: QuartTrio, gateway: FakeGateway, body: bytes, fragment: str
) -> None:
    status, answer, _ = await call(app, "POST", "/trigger/echo/handle", data=body)
    assert status == 400, answer
    assert fragment in answer["error"]
    assert gateway.enqueued == []


async def test_a_dedupe_key_of_200_characters_is_fine(app: QuartTrio) -> None:
    status, _, _ = await call(app, "POST", "/trigger/echo/poll", json={"dedupe_key": "k" * 200})
    assert status == 202


async def test_duplicate_answers_200_with_the_existing_job(
    app: QuartTrio, gateway: FakeGateway
) -> None:
    existing = job_from(
        NewJob(plugin="echo", command="poll", dedupe_key="same"), status=JobStatus.RUNNING
    )
    gateway.duplicate_of = existing
    status, body, headers = await call(
        app, "POST", "/trigger/echo/poll", json={"dedupe_key": "same"}
    )
    assert status == 200
    assert body == {
        "job_id": existing.id,
        "status": "running",
        "plugin": "echo",
        "command": "poll",
        "duplicate": True,
    }
    assert headers["Location"] == f"/job/{existing.id}"


@pytest.mark.parametrize(
    ("phase", "fragment"), [(Phase.DRAINING, "draining"), (Phase.STARTING, "starting")]
)
async def test_trigger_while_not_accepting_is_503(
    app: QuartTrio, gateway: FakeGateway, phase: Phase, fragment: str
) -> None:
    gateway.lifecycle.phase = phase
    status, body, _ = await call(app, "POST", "/trigger/echo/poll", json={})
    assert status == 503
    assert fragment in body["error"]
    assert gateway.enqueued == []


async def test_draining_still_refuses_bad_requests_first(
    app: QuartTrio, gateway: FakeGateway
) -> None:
    gateway.lifecycle.phase = Phase.DRAINING
    assert (await call(app, "POST", "/trigger/echo/poll", data=b"["))[0] == 400
    assert (await call(app, "POST", "/trigger/nope/poll", data=b"{}"))[0] == 404
    assert (await call(app, "POST", "/trigger/echo/poll", who=None))[0] == 401


async def test_actor_unavailable_is_503(app: QuartTrio, gateway: FakeGateway) -> None:
    gateway.fail = ActorUnavailable("no answer within 5s")
    for method, path in [("POST", "/trigger/echo/poll"), ("GET", "/job/x"), ("GET", "/jobs")]:
        status, body, headers = await call(app, method, path)
        assert status == 503
        assert "did not answer in time" in body["error"]
        assert headers["Retry-After"] == "1"


async def test_a_crash_in_a_handler_is_a_500_without_details(
    app: QuartTrio, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.fail = RuntimeError("secret internals /etc/passwd")
    with caplog.at_level(logging.ERROR, logger="chamberlain.web"):
        status, body, headers = await call(app, "GET", "/job/x")
    assert status == 500
    assert body == {"error": "internal error"}
    assert "secret" not in json.dumps(body)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors
    assert errors[0].exc_info is not None
    assert errors[0].__dict__["component"] == "web"
    assert errors[0].__dict__["request_id"] == headers["X-Request-Id"]


async def test_a_crash_in_a_group_is_a_500_too(app: QuartTrio, gateway: FakeGateway) -> None:
    gateway.fail = ExceptionGroup("boom", [ValueError("inner")])
    status, body, _ = await call(app, "GET", "/jobs")
    assert status == 500
    assert body == {"error": "internal error"}


# -- order of checks: 401, then 404, then 403 ----------------------------------------


async def test_unknown_plugin_or_command_is_404(app: QuartTrio) -> None:
    status, body, _ = await call(app, "POST", "/trigger/nope/poll")
    assert status == 404
    assert "unknown plugin 'nope'" in body["error"]
    status, body, _ = await call(app, "POST", "/trigger/echo/nope")
    assert status == 404
    assert "no command 'nope'" in body["error"]
    assert "poll" in body["error"]


async def test_auth_comes_before_404(app: QuartTrio) -> None:
    assert (await call(app, "POST", "/trigger/nope/poll", who=None))[0] == 401
    headers = {"Authorization": "Bearer wrong"}
    assert (await call(app, "POST", "/trigger/nope/poll", who=None, headers=headers))[0] == 401


async def test_404_comes_before_403(app: QuartTrio) -> None:
    # jobsro may trigger nothing, but an unknown plugin is still a 404.
    assert (await call(app, "POST", "/trigger/nope/poll", who="jobsro"))[0] == 404
    assert (await call(app, "POST", "/trigger/echo/nope", who="jobsro"))[0] == 404
    assert (await call(app, "POST", "/trigger/echo/poll", who="jobsro"))[0] == 403


async def test_403_comes_before_body_validation(app: QuartTrio) -> None:
    status, body, _ = await call(app, "POST", "/trigger/echo/handle", who="ro", data=b"[")
    assert status == 403
    assert "plugin:rw" in body["error"]


@pytest.mark.parametrize(
    ("who", "command", "expected"),
    [
        ("ro", "poll", 202),
        ("ro", "health", 202),
        ("ro", "handle", 403),
        ("reader", "poll", 202),
        ("reader", "handle", 403),
        ("jobsro", "poll", 403),
        ("jobsro", "handle", 403),
        ("rw", "poll", 202),
        ("rw", "handle", 202),
        ("admin", "handle", 202),
    ],
)
async def test_trigger_scopes(app: QuartTrio, who: str, command: str, expected: int) -> None:
    status, body, headers = await call(app, "POST", f"/trigger/echo/{command}", who=who)
    assert status == expected, body
    if expected == 403:
        needed = "plugin:rw" if command == "handle" else "plugin:ro"
        assert needed in body["error"]
        assert 'error="insufficient_scope"' in headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    ("who", "path", "expected"),
    [
        ("jobsro", "/jobs", 200),
        ("reader", "/jobs", 200),
        ("rw", "/jobs", 200),
        ("ro", "/jobs", 403),
        ("ro", "/job/x", 403),
        ("jobsro", "/job/x", 404),
        ("ro", "/plugins", 200),
        ("reader", "/plugins", 200),
        ("rw", "/plugins", 200),
        ("jobsro", "/plugins", 403),
        ("jobsro", "/plugin/echo", 403),
        ("ro", "/plugin/echo", 200),
    ],
)
async def test_read_route_scopes(app: QuartTrio, who: str, path: str, expected: int) -> None:
    status, body, _ = await call(app, "GET", path, who=who)
    assert status == expected, body
    if expected == 403:
        assert ("jobs:ro" if "job" in path else "plugin:ro") in body["error"]


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic dGVzdDp0ZXN0", "Bearer wrong", "Bearer test-key extra"],
)
async def test_bad_authorization_headers_are_401(app: QuartTrio, header: str) -> None:
    status, body, headers = await call(
        app, "GET", "/jobs", who=None, headers={"Authorization": header}
    )
    assert status == 401
    assert body["error"]
    assert headers["WWW-Authenticate"].startswith("Bearer")


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "echo", path)


@pytest.mark.parametrize("route", [r for r in ROUTES if not r.public], ids=lambda r: r.operation_id)
async def test_every_protected_route_refuses_without_a_valid_token(
    app: QuartTrio, gateway: FakeGateway, route: Any
) -> None:
    path = _concrete(route.path)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        status, body, answer_headers = await call(
            app, route.method, path, who=None, headers=headers, data=b"{}"
        )
        assert status == 401, (route.operation_id, headers, body)
        assert answer_headers["WWW-Authenticate"].startswith("Bearer")
    assert gateway.enqueued == []


def test_the_app_serves_exactly_the_route_table(app: QuartTrio) -> None:
    served = {
        (rule.rule, frozenset((rule.methods or set()) - {"HEAD", "OPTIONS"}))
        for rule in app.url_map.iter_rules()
    }
    assert served == {(r.rule, frozenset({r.method})) for r in ROUTES}


async def test_head_is_authenticated_like_get(app: QuartTrio) -> None:
    client = app.test_client()
    assert (await client.head("/jobs")).status_code == 401
    assert (await client.head("/jobs", headers=bearer("jobsro"))).status_code == 200


def explorer_routes() -> list[Any]:
    """The routes answering HTML, scripts and styles: the explorer's and the dashboard's."""
    return [r for r in ROUTES if r.path in {"/docs", "/ui"} or not r.in_spec]


def test_every_route_declares_an_access_rule_and_the_table_has_no_duplicates() -> None:
    keys = [(r.method, r.path) for r in ROUTES]
    assert len(keys) == len(set(keys))
    assert len({r.operation_id for r in ROUTES}) == len(ROUTES)
    public = {r.path for r in ROUTES if r.public}
    explorer = {"/docs", "/docs/", *(asset.path for asset in ASSETS)}
    discovery = {"/", "/.well-known/ai-plugin.json"}
    ui = {"/ui", *(asset.path for asset in dashboard.ASSETS)}
    assert public == {"/healthz", "/ready", "/openapi.json", *explorer, *discovery, *ui}


@pytest.mark.parametrize(
    "route",
    # The explorer's page and assets are not JSON; tests/test_docs.py covers them.
    [r for r in ROUTES if r.public and r not in explorer_routes()],
    ids=lambda r: r.operation_id,
)
async def test_public_routes_answer_without_a_token(app: QuartTrio, route: Any) -> None:
    status, _, _ = await call(app, route.method, route.path, who=None)
    assert status == 200


# -- jobs ----------------------------------------------------------------------------


async def test_get_job_returns_the_job_json(app: QuartTrio, gateway: FakeGateway) -> None:
    _, accepted, _ = await call(app, "POST", "/trigger/echo/poll", json={"payload": {"k": "v"}})
    status, body, _ = await call(app, "GET", f"/job/{accepted['job_id']}", who="jobsro")
    assert status == 200
    assert body == gateway.jobs[accepted["job_id"]].to_json()
    for field in (
        "job_id",
        "status",
        "plugin",
        "command",
        "submitted_by",
        "created_at",
        "started_at",
        "completed_at",
        "attempt",
        "max_attempts",
        "last_error",
        "result",
    ):
        assert field in body


async def test_unknown_job_is_404(app: QuartTrio) -> None:
    status, body, _ = await call(app, "GET", "/job/does-not-exist")
    assert status == 404
    assert "does-not-exist" in body["error"]


async def test_list_jobs_passes_filters_and_pages(app: QuartTrio, gateway: FakeGateway) -> None:
    for _ in range(3):
        await call(app, "POST", "/trigger/echo/poll")
    status, body, _ = await call(
        app,
        "GET",
        "/jobs?status=queued,running&status=dead&plugin=echo&command=poll"
        "&submitted_by=api_key&since=2024-01-01T00:00:00Z&until=2030-01-01T00:00:00%2B02:00"
        "&limit=2&offset=1",
    )
    assert status == 200
    assert body["total"] == 3
    assert body["limit"] == 2
    assert body["offset"] == 1
    assert len(body["jobs"]) == 2
    assert body["jobs"][0]["job_id"] == gateway.enqueued[1].id
    (flt,) = gateway.filters
    assert flt == JobFilter(
        statuses=(JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.DEAD),
        plugin="echo",
        command="poll",
        submitted_by="api_key",
        since=1704067200.0,
        until=1893448800.0,
        limit=2,
        offset=1,
        bodies=False,
    )


async def test_list_jobs_defaults(app: QuartTrio, gateway: FakeGateway) -> None:
    status, body, _ = await call(app, "GET", "/jobs")
    assert status == 200
    assert body == {"jobs": [], "total": 0, "limit": 50, "offset": 0, "next": None}
    # A summary by default: the store need not read payloads and results.
    assert gateway.filters == [JobFilter(bodies=False)]


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("status=bogus", "unknown status 'bogus'"),
        ("status=queued,", "unknown status ''"),
        ("limit=0", "'limit'"),
        ("limit=501", "'limit'"),
        ("limit=abc", "'limit'"),
        ("limit=-1", "'limit'"),
        ("offset=-1", "'offset'"),
        ("offset=1.5", "'offset'"),
        ("since=yesterday", "'since'"),
        ("since=2024-01-01", "'since'"),
        ("since=2024-01-01T00:00:00", "'since'"),
        ("until=2024-13-01T00:00:00Z", "'until'"),
        ("since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z", "later than"),
        ("plugin=a&plugin=b", "more than once"),
        ("plugin=", "empty"),
        ("bogus=1", "unknown query parameter 'bogus'"),
        ("Status=queued", "unknown query parameter 'Status'"),
    ],
)
async def test_bad_job_queries_are_400(app: QuartTrio, query: str, fragment: str) -> None:
    status, body, _ = await call(app, "GET", f"/jobs?{query}")
    assert status == 400
    assert fragment in body["error"]


def test_parse_job_filter_is_pure() -> None:
    assert parse_job_filter({}) == JobFilter(bodies=False)
    assert parse_job_filter({"status": ["dead", "dead,failed"]}).statuses == (
        JobStatus.DEAD,
        JobStatus.FAILED,
    )
    with pytest.raises(ApiError):
        parse_job_filter({"nope": ["1"]})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T00:00:00Z", 1704067200.0),
        ("2024-01-01t00:00:00z", 1704067200.0),
        ("2024-01-01 00:00:00Z", 1704067200.0),
        ("2024-01-01T01:00:00+01:00", 1704067200.0),
        ("2024-01-01T00:00:00.5Z", 1704067200.5),
        ("2024-01-01T00:00:00.123456789Z", 1704067200.123456),
    ],
)
def test_parse_rfc3339(text: str, expected: float) -> None:
    assert parse_rfc3339(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", ["", "2024-01-01", "2024-01-01T00:00Z", "2024-01-01T00:00:00", "1704067200", "now"]
)
def test_parse_rfc3339_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_rfc3339(text)


# -- the pure trigger decisions ------------------------------------------------------


def test_parse_trigger_body_defaults() -> None:
    assert parse_trigger_body(b"", max_timeout=60) == TriggerOptions()
    options = parse_trigger_body(b'{"timeout": 1.5, "max_attempts": 100}', max_timeout=60)
    assert options.timeout == 1.5
    assert options.max_attempts == 100
    assert parse_trigger_body(b'{"timeout": "1m"}', max_timeout=60).timeout == 60.0


def test_build_job_for_poll_and_handle() -> None:
    options = TriggerOptions(payload={"a": 1})
    poll = build_job(
        "echo", "poll", options, submitted_by="token:x", default_max_attempts=7, now=0.0
    )
    assert poll.event is None
    assert poll.max_attempts == 7
    handle = build_job(
        "echo",
        "handle",
        options,
        submitted_by="token:x",
        default_max_attempts=7,
        now=0.0,
        event_id="e-1",
    )
    assert handle.event == {
        "type": "api.trigger",
        "payload": {"a": 1},
        "event_id": "e-1",
        "source": "api",
        "timestamp": "1970-01-01T00:00:00.000Z",
    }
    assert handle.payload == {"a": 1}


# -- health, readiness, plugins --------------------------------------------------------


async def test_healthz(app: QuartTrio, gateway: FakeGateway) -> None:
    status, body, _ = await call(app, "GET", "/healthz", who=None)
    assert status == 200
    assert body == {
        "status": "ok",
        "version": package_version(),
        "uptime_seconds": 12.346,
        "queue_depth": 3,
        "plugins_loaded": 1,
        "plugins_circuit_open": 0,
        "running": 1,
        "max_workers": 4,
        "restarts": {"root/jobstore": 1, "root/runners/echo": 2},
        "restarts_total": 3,
    }
    gateway.lifecycle.phase = Phase.DRAINING
    status, body, _ = await call(app, "GET", "/healthz", who=None)
    assert status == 200
    assert body["status"] == "draining"


async def test_ready(app: QuartTrio, gateway: FakeGateway) -> None:
    status, body, _ = await call(app, "GET", "/ready", who=None)
    assert (status, body) == (200, {"status": "ready"})
    for phase in (Phase.STARTING, Phase.DRAINING):
        gateway.lifecycle.phase = phase
        status, body, _ = await call(app, "GET", "/ready", who=None)
        assert status == 503
        assert body["status"] == phase.value
        assert phase.value in body["error"]


async def test_a_full_disk_is_507_and_degraded(app: QuartTrio, gateway: FakeGateway) -> None:
    reason = "SQLITE_FULL: database or disk is full"
    gateway.fail = StorageFull(f"the database could not be written ({reason})")
    status, body, headers = await call(app, "POST", "/trigger/echo/poll", json={})
    assert status == 507
    assert body == {"error": f"disk full: the database could not be written ({reason})"}
    assert headers["Retry-After"] == "5"
    gateway.fail = None
    gateway.degraded = reason
    status, body, _ = await call(app, "GET", "/healthz", who=None)
    assert status == 200
    assert body["status"] == "degraded"
    assert body["degraded"] == reason
    status, body, _ = await call(app, "GET", "/ready", who=None)
    assert status == 503
    assert body["status"] == "degraded"
    assert reason in body["error"]
    gateway.degraded = None
    status, body, _ = await call(app, "GET", "/healthz", who=None)
    assert (status, body["status"], "degraded" in body) == (200, "ok", False)
    status, body, _ = await call(app, "GET", "/ready", who=None)
    assert (status, body) == (200, {"status": "ready"})


async def test_plugins_lists_command_names_as_ductile_does(app: QuartTrio) -> None:
    # Ductile's `ductile plugin list` decodes {plugins: [{name, version, description,
    # commands: [string]}]} (cmd/ductile/plugin.go pluginListResponse).
    for query in ("", "?detail=0", "?detail=false"):
        status, body, _ = await call(app, "GET", f"/plugins{query}", who="ro")
        assert status == 200, query
        assert body == {
            "plugins": [
                {
                    "name": "echo",
                    "version": "1.2.3",
                    "description": "Echoes.",
                    "commands": ["poll", "handle", "health"],
                }
            ]
        }, query


async def test_plugins_detail_must_be_a_boolean(app: QuartTrio) -> None:
    for value in ("full", "", "2"):
        status, body, _ = await call(app, "GET", f"/plugins?detail={value}", who="ro")
        assert (status, body) == (400, {"error": f"detail must be true or false, not {value!r}"})
    status, body, _ = await call(app, "GET", "/plugins?detail=1&detail=1", who="ro")
    assert (status, body) == (400, {"error": "query parameter 'detail' given more than once"})


async def test_plugins(app: QuartTrio) -> None:
    status, body, _ = await call(app, "GET", "/plugins?detail=1", who="ro")
    assert status == 200
    (echo,) = body["plugins"]
    assert echo["name"] == "echo"
    assert echo["version"] == "1.2.3"
    assert echo["description"] == "Echoes."
    assert echo["parallelism"] == 2
    commands = {c["name"]: c for c in echo["commands"]}
    assert set(commands) == {"poll", "handle", "health"}
    assert commands["handle"]["type"] == "write"
    assert commands["handle"]["timeout"] == 10.0
    assert commands["handle"]["input_schema"]["properties"]["mode"] == {"type": "string"}
    assert commands["poll"]["type"] == "read"
    assert commands["poll"]["timeout"] == 60.0
    assert commands["poll"]["input_schema"] is None
    for command in commands.values():
        assert {"name", "type", "description", "input_schema", "timeout"} <= set(command)
    status, one, _ = await call(app, "GET", "/plugin/echo", who="ro")
    assert status == 200
    assert one == echo
    status, body, _ = await call(app, "GET", "/plugin/nope", who="ro")
    assert status == 404
    assert "nope" in body["error"]


# -- HTTP-level errors -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/jobs/", "/trigger/echo", "/job/", "/job/a/b"])
async def test_unknown_routes_are_json_404(app: QuartTrio, path: str) -> None:
    status, body, _ = await call(app, "GET", path)
    assert status == 404, body
    assert "no route" in body["error"]


@pytest.mark.parametrize("path", ["//jobs", "/job//x", "/trigger//echo/poll", "/jobs//"])
async def test_odd_slashes_never_redirect(app: QuartTrio, path: str) -> None:
    # A redirect would come with an HTML body; werkzeug's slash merging is off.
    status, _, _ = await call(app, "GET", path)
    assert status in (200, 404, 405)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/trigger/echo/poll", "POST"),
        ("PUT", "/trigger/echo/poll", "POST"),
        ("DELETE", "/jobs", "GET, HEAD, POST"),
        ("POST", "/job/x", "GET, HEAD"),
        ("POST", "/healthz", "GET, HEAD"),
        ("OPTIONS", "/jobs", "GET, HEAD, POST"),
    ],
)
async def test_wrong_method_is_405_with_allow(
    app: QuartTrio, method: str, path: str, allow: str
) -> None:
    status, body, headers = await call(app, method, path)
    assert status == 405
    assert headers["Allow"] == allow
    assert allow in body["error"]


async def test_get_on_plugin_path_with_command_is_405(app: QuartTrio) -> None:
    status, _, headers = await call(app, "GET", "/plugin/echo/poll")
    assert status == 405
    assert headers["Allow"] == "POST"


async def test_413_from_content_length(app: QuartTrio, gateway: FakeGateway) -> None:
    body = b'{"payload": {"x": "' + b"x" * LIMIT + b'"}}'
    status, answer, _ = await call(
        app, "POST", "/trigger/echo/poll", data=body, headers={"Content-Length": str(len(body))}
    )
    assert status == 413
    assert str(LIMIT) in answer["error"]
    assert gateway.enqueued == []


async def test_413_from_content_length_comes_first(app: QuartTrio) -> None:
    # Not even authentication is attempted for a body that will not be read.
    status, _, _ = await call(
        app, "POST", "/trigger/echo/poll", who=None, headers={"Content-Length": str(LIMIT + 1)}
    )
    assert status == 413


async def test_a_body_exactly_at_the_limit_is_fine(app: QuartTrio) -> None:
    prefix, suffix = b'{"payload": {"x": "', b'"}}'
    body = prefix + b"x" * (LIMIT - len(prefix) - len(suffix)) + suffix
    assert len(body) == LIMIT
    status, _, _ = await call(app, "POST", "/trigger/echo/poll", data=body)
    assert status == 202


async def _streamed(app: QuartTrio, chunks: list[bytes]) -> tuple[int, Any]:
    client = app.test_client()
    async with client.request(
        "/trigger/echo/poll", method="POST", headers=bearer("admin")
    ) as connection:
        for chunk in chunks:
            await connection.send(chunk)
        await connection.send_complete()
        response = await connection.as_response()
    assert response.mimetype == "application/json"
    return response.status_code, json.loads(await response.get_data(as_text=True))


async def test_413_for_a_chunked_body_without_content_length(
    app: QuartTrio, gateway: FakeGateway
) -> None:
    chunks = [b'{"payload": {"x": "'] + [b"y" * 512] * 8 + [b'"}}']
    status, body = await _streamed(app, chunks)
    assert status == 413
    assert str(LIMIT) in body["error"]
    assert gateway.enqueued == []


async def test_a_small_chunked_body_is_read(app: QuartTrio, gateway: FakeGateway) -> None:
    status, _ = await _streamed(app, [b'{"payload"', b': {"a": ', b"1}}"])
    assert status == 202
    assert gateway.enqueued[0].payload == {"a": 1}


async def test_query_parameters_a_route_does_not_take_are_400(app: QuartTrio) -> None:
    status, body, _ = await call(app, "GET", "/healthz?x=1", who=None)
    assert status == 400
    assert "'x'" in body["error"]
    status, body, _ = await call(app, "POST", "/trigger/echo/poll?payload=1")
    assert status == 400
    # ... but for triggers only after the plugin, command and scope checks.
    assert (await call(app, "POST", "/trigger/nope/poll?x=1"))[0] == 404
    assert (await call(app, "POST", "/trigger/echo/handle?x=1", who="ro"))[0] == 403
    assert (await call(app, "GET", "/jobs?x=1", who=None))[0] == 401


# -- request ids and the access log ----------------------------------------------------


async def test_request_ids_are_echoed_or_generated(app: QuartTrio) -> None:
    _, _, headers = await call(app, "GET", "/ready", headers={"X-Request-Id": "abc-123"})
    assert headers["X-Request-Id"] == "abc-123"
    _, _, headers = await call(app, "GET", "/ready")
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-Id"])
    _, _, headers = await call(app, "GET", "/ready", headers={"X-Request-Id": "bad id\x7f" * 20})
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-Id"])
    # Errors carry it too.
    _, _, headers = await call(app, "GET", "/nope", headers={"X-Request-Id": "r-404"})
    assert headers["X-Request-Id"] == "r-404"


async def test_one_access_log_line_per_request(
    app: QuartTrio, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="chamberlain.web"):
        await call(app, "GET", "/jobs?limit=5", who="jobsro", headers={"X-Request-Id": "r-1"})
        await call(app, "GET", "/nope", who=None)
    lines = [r for r in caplog.records if r.name == "chamberlain.web" and hasattr(r, "duration_ms")]
    assert len(lines) == 2
    first, second = (r.__dict__ for r in lines)
    assert first["component"] == "web"
    assert first["method"] == "GET"
    assert first["path"] == "/jobs"
    assert first["status"] == 200
    assert first["request_id"] == "r-1"
    assert first["caller"] == "token:jobsro"
    assert isinstance(first["duration_ms"], float)
    assert second["status"] == 404
    assert lines[0].levelno == logging.INFO


async def test_security_headers(app: QuartTrio) -> None:
    _, _, headers = await call(app, "GET", "/jobs")
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_a_daemon_without_tokens_refuses_everyone(gateway: FakeGateway) -> None:
    app = create_app(cast(Gateway, gateway), ApiConfig(listen="127.0.0.1:0"))
    status, _, _ = await call(app, "GET", "/jobs")
    assert status == 401
    assert (await call(app, "GET", "/healthz", who=None))[0] == 200


# -- OpenAPI -------------------------------------------------------------------------


async def test_openapi_lists_exactly_the_route_table(app: QuartTrio) -> None:
    status, doc, _ = await call(app, "GET", "/openapi.json", who=None)
    assert status == 200
    assert doc["openapi"] == "3.1.0"
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    # The explorer's files and the redirect from /docs/ are served, not documented.
    described = [r for r in ROUTES if r.in_spec]
    assert documented == {(r.method, r.path) for r in described}
    for route in described:
        op = doc["paths"][route.path][route.method.lower()]
        assert op["operationId"] == route.operation_id
        assert {p["name"] for p in op.get("parameters", [])} == {p.name for p in route.params}
        assert "500" in op["responses"]
        if route.public:
            assert op["security"] == []
            assert "x-required-scope" not in op
        elif isinstance(route.access, Authenticated):
            # Any valid token will do: a 401 but no scope, so no 403.
            assert op["security"] == [{"bearerAuth": []}]
            assert "x-required-scope" not in op
            assert "401" in op["responses"]
            assert "403" not in op["responses"]
        else:
            assert op["security"] == [{"bearerAuth": []}]
            assert op["x-required-scope"]
            assert {"401", "403"} <= set(op["responses"])
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    trigger_op = doc["paths"]["/trigger/{plugin}/{command}"]["post"]
    assert trigger_op["x-required-scope"] == {"read": "plugin:ro", "write": "plugin:rw"}
    assert doc["paths"]["/jobs"]["get"]["x-required-scope"] == "jobs:ro"
    assert doc["paths"]["/plugins"]["get"]["x-required-scope"] == "plugin:ro"
    assert trigger_op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TriggerRequest"
    }


async def test_openapi_refs_resolve(app: QuartTrio) -> None:
    _, doc, _ = await call(app, "GET", "/openapi.json", who=None)
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(doc))
    assert refs
    assert set(refs) <= set(doc["components"]["schemas"])


def test_openapi_schemas_match_the_code() -> None:
    job = job_from(NewJob(plugin="echo", command="poll"))
    assert set(SCHEMAS["Job"]["properties"]) == set(job.to_json())
    assert set(SCHEMAS["TriggerRequest"]["properties"]) == set(BODY_FIELDS)
    assert SCHEMAS["JobStatus"]["enum"] == [s.value for s in JobStatus]


def test_every_documented_job_time_is_rfc3339() -> None:
    job = job_from(NewJob(plugin="echo", command="poll"))
    created = job.to_json()["created_at"]
    assert datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() == 1_700_000_000


# -- serving -------------------------------------------------------------------------


async def test_serve_api_reports_its_urls_and_stops_on_the_trigger(
    gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    api = api_config()
    app = create_app(cast(Gateway, gateway), api)
    stop = trio.Event()
    with caplog.at_level(logging.DEBUG):
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                urls = await nursery.start(
                    functools.partial(serve_api, app, api, shutdown_trigger=stop.wait)
                )
                (url,) = urls
                assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
                assert not url.endswith(":0")
                async with httpx.AsyncClient(base_url=url) as client:
                    ready = await client.get("/ready")
                    missing = await client.get("/nope")
                    chunked = await client.post(
                        "/trigger/echo/poll",
                        headers=bearer("rw"),
                        content=_chunks([b"x" * 1024] * 4),
                    )
                assert ready.status_code == 200
                assert ready.json() == {"status": "ready"}
                assert "server" not in ready.headers
                assert missing.status_code == 404
                assert missing.headers["content-type"] == "application/json"
                assert chunked.status_code == 413
                stop.set()
    listening = [r for r in caplog.records if r.getMessage() == f"listening on {url}"]
    assert len(listening) == 1
    assert listening[0].levelno == logging.INFO
    assert listening[0].__dict__["url"] == url
    assert listening[0].__dict__["component"] == "web"
    # hypercorn's own loggers stay silent: everything goes through chamberlain.web.
    assert not [r for r in caplog.records if r.name.startswith("hypercorn")]
    served = [r for r in caplog.records if r.__dict__.get("path") == "/ready"]
    assert len(served) == 1


async def _chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def test_bind_address() -> None:
    assert bind_address("127.0.0.1", 0) == "127.0.0.1:0"
    assert bind_address("::1", 8080) == "[::1]:8080"
    assert hypercorn_config(api_config(listen="[::1]:9000")).bind == ["[::1]:9000"]
