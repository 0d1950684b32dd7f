"""The HTTP API end to end: the real daemon as a subprocess, spoken to over HTTP.

Jobs run the bundled echo plugin.  Waits poll with a deadline (``wait_for``); nothing
sleeps for a fixed time.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import trio
from conftest import DaemonFactory, DaemonProcess, wait_for

pytestmark = pytest.mark.e2e

#: Small, so oversized bodies stay cheap to send.
BODY_LIMIT = 4096

ALL_TOKENS = {
    "admin": "test-key",
    "reader": "reader-token",
    "ro": "ro-token",
    "jobsro": "jobsro-token",
    "rw": "rw-token",
}


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ALL_TOKENS[who]}"}


def client(d: DaemonProcess, who: str | None = "admin") -> httpx.AsyncClient:
    headers = auth(who) if who is not None else {}
    return httpx.AsyncClient(base_url=d.base_url, headers=headers, timeout=10.0)


def instant(text: str) -> float:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def trigger(
    d: DaemonProcess, command: str, body: dict[str, Any] | None = None, *, who: str = "rw"
) -> str:
    async with client(d, who) as c:
        r = await c.post(f"/trigger/echo/{command}", json=body or {})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["job_id"]
    return job_id


async def wait_terminal(d: DaemonProcess, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
    async with client(d, "jobsro") as c:

        async def done() -> dict[str, Any] | None:
            r = await c.get(f"/job/{job_id}")
            assert r.status_code == 200, r.text
            job: dict[str, Any] = r.json()
            return job if job["status"] not in ("queued", "running") else None

        result: dict[str, Any] = await wait_for(done, timeout=timeout)
        return result


@pytest.fixture
async def api(daemon: DaemonFactory) -> DaemonProcess:
    """One daemon with a small body limit."""
    return await daemon({"api": {"max_body_size": BODY_LIMIT}})


# -- jobs through their life ---------------------------------------------------------


async def test_poll_job_runs_to_success_with_every_field(api: DaemonProcess) -> None:
    async with client(api, "rw") as c:
        r = await c.post("/trigger/echo/poll", json={"payload": {"k": "v"}})
    assert r.status_code == 202, r.text
    accepted = r.json()
    job_id = accepted["job_id"]
    assert accepted == {"job_id": job_id, "status": "queued", "plugin": "echo", "command": "poll"}
    assert r.headers["Location"] == f"/job/{job_id}"

    job = await wait_terminal(api, job_id)
    assert job["status"] == "succeeded", job
    assert job["job_id"] == job_id
    assert job["plugin"] == "echo"
    assert job["command"] == "poll"
    assert job["payload"] == {"k": "v"}
    assert job["submitted_by"] == "token:rw"
    assert job["attempt"] == 1
    assert job["max_attempts"] == 4
    assert job["last_error"] is None
    assert job["next_retry_at"] is None
    assert job["dedupe_key"] is None
    assert job["parent_job_id"] is None
    created, started, completed = (
        instant(job["created_at"]),
        instant(job["started_at"]),
        instant(job["completed_at"]),
    )
    assert created <= started <= completed
    result = job["result"]
    assert result["status"] == "ok"
    assert result["result"]["request"]["command"] == "poll"
    assert result["result"]["request"]["payload"] == {"k": "v"}
    assert "event" not in result["result"]["request"]
    assert [e["type"] for e in result["events"]] == ["echo.poll"]
    assert result["state_updates"]["last_job_id"] == job_id


async def test_handle_receives_the_wrapped_api_trigger_event(api: DaemonProcess) -> None:
    job_id = await trigger(api, "handle", {"payload": {"greeting": "hi"}}, who="admin")
    job = await wait_terminal(api, job_id)
    assert job["status"] == "succeeded", job
    assert job["submitted_by"] == "api_key"
    request = job["result"]["result"]["request"]
    event = request["event"]
    assert event["type"] == "api.trigger"
    # As in Ductile, the request context is merged into the event's payload...
    assert event["payload"] == {"greeting": "hi", "ductile_plugin": "echo"}
    assert request["context"] == {"ductile_plugin": "echo"}
    assert event["source"] == "api"
    assert len(event["event_id"]) == 36
    assert instant(event["timestamp"]) <= instant(job["started_at"])
    # ... and a handle job's payload is its event as stored.
    assert request["payload"] == {**event, "payload": {"greeting": "hi"}}
    assert job["payload"] == {"greeting": "hi"}  # the job's own record is what was sent


async def test_a_failing_job_with_one_attempt_ends_with_its_error(api: DaemonProcess) -> None:
    job_id = await trigger(api, "handle", {"payload": {"mode": "error"}, "max_attempts": 1})
    job = await wait_terminal(api, job_id)
    assert job["status"] in ("dead", "failed"), job
    assert job["max_attempts"] == 1
    assert job["attempt"] == 1
    assert "asked to fail" in job["last_error"]
    assert job["completed_at"] is not None


async def test_trigger_options_and_dedupe(api: DaemonProcess) -> None:
    body = {"payload": {"mode": "slow", "seconds": 1}, "timeout": "30s", "dedupe_key": "once"}
    async with client(api, "rw") as c:
        first = await c.post("/trigger/echo/handle", json=body)
        second = await c.post("/trigger/echo/handle", json=body)
    assert first.status_code == 202, first.text
    assert second.status_code == 200, second.text
    dup = second.json()
    assert dup["job_id"] == first.json()["job_id"]
    assert dup["duplicate"] is True
    assert dup["status"] in ("queued", "running", "succeeded")
    job = await wait_terminal(api, dup["job_id"])
    assert job["dedupe_key"] == "once"
    assert job["status"] == "succeeded"


# -- errors ------------------------------------------------------------------------


async def test_error_answers_are_json_with_the_right_status(api: DaemonProcess) -> None:
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("POST", "/trigger/echo/poll", {"content": b"{"}, 400, "malformed JSON"),
        ("POST", "/trigger/echo/poll", {"content": b"[1]"}, 400, "JSON object"),
        ("POST", "/trigger/echo/poll", {"json": {"payload": 3}}, 400, "payload"),
        ("POST", "/trigger/echo/poll", {"json": {"extra": 1}}, 400, "unknown field"),
        ("POST", "/trigger/echo/poll", {"json": {"timeout": "1h"}}, 400, "limit"),
        ("POST", "/trigger/echo/poll", {"json": {"max_attempts": 0}}, 400, "max_attempts"),
        ("POST", "/trigger/echo/poll", {"json": {"dedupe_key": ""}}, 400, "dedupe_key"),
        ("GET", "/jobs?status=nope", {}, 400, "unknown status"),
        ("GET", "/jobs?limit=501", {}, 400, "limit"),
        ("GET", "/jobs?since=yesterday", {}, 400, "since"),
        ("GET", "/jobs?colour=red", {}, 400, "colour"),
        ("POST", "/trigger/nope/poll", {}, 404, "unknown plugin"),
        ("POST", "/trigger/echo/nope", {}, 404, "no command"),
        ("GET", "/job/00000000-0000-4000-8000-000000000000", {}, 404, "unknown job"),
        ("GET", "/plugin/nope", {}, 404, "unknown plugin"),
        ("GET", "/no/such/route", {}, 404, "no route"),
        ("DELETE", "/jobs", {}, 405, "not allowed"),
        ("GET", "/trigger/echo/poll", {}, 405, "not allowed"),
    ]
    async with client(api) as c:
        for method, path, kwargs, status, fragment in cases:
            r = await c.request(method, path, **kwargs)
            assert r.status_code == status, (method, path, r.text)
            assert r.headers["content-type"] == "application/json", (method, path)
            assert fragment in r.json()["error"], (method, path, r.text)
            if status == 405:
                assert r.headers["Allow"]


async def test_auth_errors(api: DaemonProcess) -> None:
    async with client(api, None) as c:
        for headers in (
            {},
            {"Authorization": "Basic dGVzdDp0ZXN0"},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer not-a-token"},
        ):
            r = await c.get("/jobs", headers=headers)
            assert r.status_code == 401, headers
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert r.json()["error"]
        # Authentication comes before anything that would reveal the plugins.
        r = await c.post("/trigger/nope/poll")
        assert r.status_code == 401
    async with client(api, "ro") as c:
        r = await c.post("/trigger/echo/handle", json={})
    assert r.status_code == 403
    assert "plugin:rw" in r.json()["error"]


async def test_body_limit_by_content_length(api: DaemonProcess) -> None:
    body = b'{"payload": {"x": "' + b"x" * (BODY_LIMIT * 2) + b'"}}'
    async with client(api) as c:
        r = await c.post("/trigger/echo/poll", content=body)
    assert r.status_code == 413
    assert str(BODY_LIMIT) in r.json()["error"]


async def test_body_limit_for_a_chunked_body(api: DaemonProcess) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"payload": {"x": "'
        for _ in range(8):
            yield b"y" * 1024
        yield b'"}}'

    async with client(api) as c:
        r = await c.post("/trigger/echo/poll", content=chunks())
    assert r.status_code == 413
    assert str(BODY_LIMIT) in r.json()["error"]

    async def small() -> AsyncIterator[bytes]:
        yield b'{"payload": '
        yield b'{"chunked": true}}'

    async with client(api) as c:
        r = await c.post("/trigger/echo/poll", content=small())
    assert r.status_code == 202, r.text


async def test_draining_daemon_refuses_new_jobs(daemon: DaemonFactory) -> None:
    d = await daemon()
    # A job that outlives the signal keeps the daemon draining for a while.
    job_id = await trigger(d, "handle", {"payload": {"mode": "slow", "seconds": 4}})
    async with client(d) as c:

        async def running() -> bool:
            r = await c.get(f"/job/{job_id}")
            return bool(r.json()["status"] == "running")

        await wait_for(running)
        d.proc.send_signal(signal.SIGTERM)

        async def not_ready() -> httpx.Response | None:
            r = await c.get("/ready")
            return r if r.status_code == 503 else None

        ready = await wait_for(not_ready)
        assert ready.json()["status"] == "draining"
        r = await c.post("/trigger/echo/poll", json={})
        assert r.status_code == 503
        assert "draining" in r.json()["error"]
        health = await c.get("/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "draining"
    assert await d.stop() == 0


# -- scopes against the real server -----------------------------------------------------


SCOPE_CASES = [
    # (token, method, path, expected)
    ("ro", "POST", "/trigger/echo/poll", 202),
    ("ro", "POST", "/trigger/echo/health", 202),
    ("ro", "POST", "/trigger/echo/handle", 403),
    ("ro", "GET", "/plugins", 200),
    ("ro", "GET", "/plugin/echo", 200),
    ("ro", "GET", "/jobs", 403),
    ("reader", "POST", "/trigger/echo/poll", 202),
    ("reader", "POST", "/trigger/echo/handle", 403),
    ("reader", "GET", "/jobs", 200),
    ("reader", "GET", "/plugins", 200),
    ("jobsro", "GET", "/jobs", 200),
    ("jobsro", "GET", "/plugins", 403),
    ("jobsro", "POST", "/trigger/echo/poll", 403),
    ("rw", "POST", "/trigger/echo/handle", 202),
    ("rw", "POST", "/plugin/echo/handle", 202),
    ("rw", "GET", "/jobs", 200),
    ("rw", "GET", "/plugins", 200),
    ("admin", "POST", "/trigger/echo/handle", 202),
    ("admin", "GET", "/jobs", 200),
]


async def test_scope_rules(api: DaemonProcess) -> None:
    for who, method, path, expected in SCOPE_CASES:
        async with client(api, who) as c:
            r = await c.request(method, path, json={} if method == "POST" else None)
        assert r.status_code == expected, (who, method, path, r.text)
        if expected == 403:
            assert r.json()["error"]


async def test_public_routes_need_no_token(api: DaemonProcess) -> None:
    async with client(api, None) as c:
        health = await c.get("/healthz")
        ready = await c.get("/ready")
        doc = await c.get("/openapi.json")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok"
    assert body["plugins_loaded"] >= 1
    for field in ("uptime_seconds", "queue_depth", "running", "max_workers", "restarts_total"):
        assert isinstance(body[field], int | float), field
    assert isinstance(body["restarts"], dict)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
    assert doc.status_code == 200


# -- listing ---------------------------------------------------------------------------


async def test_job_filters(api: DaemonProcess) -> None:
    before = datetime.now().astimezone().isoformat(timespec="seconds")
    poll_id = await trigger(api, "poll", who="rw")
    handle_id = await trigger(api, "handle", who="admin")
    failing_id = await trigger(
        api, "handle", {"payload": {"mode": "fatal"}, "max_attempts": 1}, who="rw"
    )
    for job_id in (poll_id, handle_id, failing_id):
        await wait_terminal(api, job_id)

    async with client(api, "jobsro") as c:

        async def ids(query: str) -> list[str]:
            r = await c.get(f"/jobs?{query}")
            assert r.status_code == 200, (query, r.text)
            return [j["job_id"] for j in r.json()["jobs"]]

        everything = await c.get("/jobs")
        body = everything.json()
        assert body["total"] == 3
        assert body["limit"] == 50
        assert body["offset"] == 0
        # Newest first.
        assert [j["job_id"] for j in body["jobs"]] == [failing_id, handle_id, poll_id]
        assert await ids("command=poll") == [poll_id]
        assert await ids("plugin=echo&command=handle") == [failing_id, handle_id]
        assert await ids("plugin=nope") == []
        assert await ids("submitted_by=api_key") == [handle_id]
        assert await ids("submitted_by=token:rw") == [failing_id, poll_id]
        assert await ids("status=succeeded") == [handle_id, poll_id]
        assert set(await ids("status=failed,dead")) == {failing_id}
        assert await ids("limit=1") == [failing_id]
        assert await ids("limit=1&offset=1") == [handle_id]
        paged = (await c.get("/jobs?limit=1&offset=2")).json()
        assert paged["total"] == 3
        assert [j["job_id"] for j in paged["jobs"]] == [poll_id]
        assert len(await ids(f"since={before.replace('+', '%2B')}")) == 3
        assert await ids("until=2000-01-01T00:00:00Z") == []
        assert len(await ids("since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z")) == 3


# -- description and logs ----------------------------------------------------------------


async def test_openapi_document(api: DaemonProcess) -> None:
    async with client(api, None) as c:
        r = await c.get("/openapi.json")
    doc = r.json()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"]
    assert doc["paths"]
    methods = {"get", "post", "put", "patch", "delete"}
    for path, item in doc["paths"].items():
        assert item, path
        assert set(item) <= methods, path
        for op in item.values():
            assert op["responses"], path
            assert "security" in op
    assert "/trigger/{plugin}/{command}" in doc["paths"]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


async def test_plugins_listing(api: DaemonProcess) -> None:
    async with client(api, "ro") as c:
        listing = (await c.get("/plugins?detail=1")).json()
        one = (await c.get("/plugin/echo")).json()
        names = (await c.get("/plugins")).json()
    echo = next(p for p in listing["plugins"] if p["name"] == "echo")
    assert echo == one
    assert [p["name"] for p in names["plugins"]] == [p["name"] for p in listing["plugins"]]
    (short,) = (p for p in names["plugins"] if p["name"] == "echo")
    assert short["commands"] == [c["name"] for c in echo["commands"]]
    assert echo["version"]
    assert echo["parallelism"] >= 1
    commands = {c["name"]: c for c in echo["commands"]}
    assert commands["poll"]["type"] == "read"
    assert commands["handle"]["type"] == "write"
    assert commands["handle"]["input_schema"]["properties"]["mode"] == {"type": "string"}
    assert commands["handle"]["timeout"] > 0


async def test_request_ids_and_access_log(api: DaemonProcess) -> None:
    async with client(api) as c:
        r = await c.get("/jobs", headers={"X-Request-Id": "e2e-req-1"})
    assert r.headers["X-Request-Id"] == "e2e-req-1"

    def logged() -> list[dict[str, Any]]:
        return [
            rec
            for rec in api.records()
            if rec.get("component") == "web" and rec.get("request_id") == "e2e-req-1"
        ]

    async def line() -> list[dict[str, Any]]:
        return logged()

    (record,) = await wait_for(line)
    assert record["logger"] == "chamberlain.web"
    assert record["level"] == "info"
    assert record["method"] == "GET"
    assert record["path"] == "/jobs"
    assert record["status"] == 200
    assert isinstance(record["duration_ms"], int | float)
    listening = [rec for rec in api.records() if rec.get("msg", "").startswith("listening on")]
    assert listening
    assert listening[0]["url"] == api.base_url
    # hypercorn's own text logs are silenced or turned into JSON records.
    assert not [line for line in api.stderr_lines() if "Running on" in line]
    assert not [rec for rec in api.records() if rec.get("logger", "").startswith("hypercorn")]


async def test_many_triggers_at_once_are_all_committed(api: DaemonProcess) -> None:
    ids: list[str] = []

    async with client(api) as c:

        async def one() -> None:
            r = await c.post("/trigger/echo/poll", json={})
            assert r.status_code == 202
            ids.append(r.json()["job_id"])

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one)
        listed = (await c.get("/jobs?limit=500")).json()
    assert len(set(ids)) == 20
    assert set(ids) <= {j["job_id"] for j in listed["jobs"]}
