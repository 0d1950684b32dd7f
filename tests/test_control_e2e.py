"""Job control and live observation end to end: the real daemon, real plugins, HTTP.

The ``observed`` test plugin writes stderr lines, waits for a file the test creates
(so a test can prove a line arrived while the job was still running), and can spawn
children that ignore SIGTERM.  Waits poll with a deadline; nothing sleeps blindly.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from conftest import (
    API_KEY,
    BUNDLED_PLUGINS,
    TOKENS,
    DaemonFactory,
    DaemonProcess,
    deep_merge,
    wait_for,
)
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from procfs import alive
from prometheus_client.parser import text_string_to_metric_families
from sse_client import Event, open_stream

from chamberlain.callback_rules import verify
from chamberlain.plugins.strays import find_job_processes

pytestmark = pytest.mark.e2e

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"
SECRET = "callback-secret"

EXTRA_TOKENS = [
    {"name": "jobsrw", "token": "jobsrw-token", "scopes": ["jobs:rw"]},
    {"name": "jobsrw-ro", "token": "jobsrw-ro-token", "scopes": ["jobs:rw", "plugin:ro"]},
    {"name": "events", "token": "events-token", "scopes": ["events:ro"]},
]


def config(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "plugin_roots": [str(BUNDLED_PLUGINS), str(E2E_PLUGINS)],
        "api": {
            "sse_keepalive": "1s",
            "auth": {"api_key": API_KEY, "tokens": [*TOKENS, *EXTRA_TOKENS]},
        },
        "plugins": {"observed": {"retry": {"backoff_base": "100ms"}}},
    }
    return deep_merge(base, extra)


def client(d: DaemonProcess, token: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=d.base_url, headers=d.headers(token), timeout=kwargs.pop("timeout", 30.0)
    )


async def trigger(
    d: DaemonProcess, payload: dict[str, Any], *, command: str = "handle", **body: Any
) -> str:
    async with client(d) as c:
        r = await c.post(f"/trigger/observed/{command}", json={"payload": payload, **body})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["job_id"]
    return job_id


async def get_job(d: DaemonProcess, job_id: str, query: str = "") -> dict[str, Any]:
    async with client(d) as c:
        r = await c.get(f"/job/{job_id}{query}")
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


async def wait_status(d: DaemonProcess, job_id: str, *statuses: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        job = await get_job(d, job_id)
        return job if job["status"] in statuses else None

    result: dict[str, Any] = await wait_for(check, timeout=30)
    return result


def stream(d: DaemonProcess, path: str, token: str | None = None, **headers: str) -> Any:
    """Follow ``path``; ``Last_Event_ID="5"`` sends a ``Last-Event-ID`` header."""
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    return open_stream(d.base_url, path, {**d.headers(token), **sent})


def texts(seen: list[Event]) -> list[str]:
    return [e.data["text"] for e in seen if e.event in ("message", "status")]


# -- live output -----------------------------------------------------------------------


async def test_stderr_lines_arrive_over_sse_while_the_job_runs(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(config())
    go = tmp_path / "go"
    job_id = await trigger(
        d, {"lines": ["first line", "second line"], "wait_for": str(go), "after": ["third line"]}
    )
    async with stream(d, f"/job/{job_id}/stream") as s:
        assert s.status == 200
        assert s.headers["content-type"].startswith("text/event-stream")
        seen = await s.read_until(lambda e: e.data.get("text") == "second line")
        # The plugin is blocked until `go` exists: these lines came while it ran.
        assert (await get_job(d, job_id))["status"] == "running"
        go.touch()
        seen += await s.read_until(lambda e: e.event == "done")
        # After done, the server closes the stream.
        assert await s.rest() == []
    assert seen[0].event == "connected"
    assert seen[0].data["job"]["job_id"] == job_id
    kinds = [(e.event, e.data.get("kind"), e.data.get("status")) for e in seen[1:-1]]
    assert kinds == [
        ("status", "system", "queued"),
        ("status", "system", "running"),
        ("message", "stderr", None),
        ("message", "stderr", None),
        ("message", "stderr", None),
        ("status", "system", "succeeded"),
    ]
    assert texts(seen)[2:5] == ["first line", "second line", "third line"]
    # Every event has an id: the job's message numbers, 1, 2, 3 ...
    assert [e.id for e in seen[1:-1]] == list(range(1, 7))
    assert seen[-1].data["job"]["status"] == "succeeded"
    assert seen[-1].id == 6


async def test_resume_with_last_event_id_loses_and_repeats_nothing(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(config())
    go = tmp_path / "go"
    job_id = await trigger(d, {"count": 40, "wait_for": str(go), "after": ["late 1", "late 2"]})
    async with stream(d, f"/job/{job_id}/stream") as s:
        first = await s.read_until(lambda e: e.data.get("text") == "line 19")
    # Disconnected: the job goes on and writes more while nobody listens.
    go.touch()
    await wait_status(d, job_id, "succeeded")
    last_id = first[-1].id
    assert last_id is not None
    async with stream(d, f"/job/{job_id}/stream", Last_Event_ID=str(last_id)) as s:
        second = await s.read_until(lambda e: e.event == "done")
    # Resuming after the very end gives the current state and done, nothing else.
    async with stream(d, f"/job/{job_id}/stream?last_event_id={second[-1].id}") as s:
        third = await s.rest()
    assert second[0].event == "connected"
    resumed = [e for e in first[1:] + second[1:-1]]
    ids = [e.id for e in resumed]
    assert ids == list(range(1, len(resumed) + 1))  # no gap, no repeat
    history = (await get_job(d, job_id, "?include=messages"))["messages"]
    assert [m["seq"] for m in history] == ids
    assert [m["text"] for m in history] == texts(resumed)
    assert [m["kind"] for m in history].count("stderr") == 42
    assert [e.event for e in third] == ["connected", "done"]


async def test_the_events_stream_resumes_across_jobs(daemon: DaemonFactory) -> None:
    d = await daemon(config())
    async with stream(d, "/events/stream?plugin=observed", "events-token") as s:
        connected = await s.read_until(lambda e: e.event == "connected")
        first_job = await trigger(d, {})
        first = await s.read_until(lambda e: e.data.get("status") == "succeeded")
    second_job = await trigger(d, {})
    await wait_status(d, second_job, "succeeded")
    resume = {"Last_Event_ID": str(first[-1].id)}
    async with stream(d, "/events/stream?plugin=observed", "events-token", **resume) as s:
        second = await s.read_until(lambda e: e.data.get("status") == "succeeded")
    assert connected[0].data["last_event_id"] == connected[0].id
    changes = [(e.data["job_id"], e.data["status"]) for e in first + second[1:]]
    assert changes == [
        (first_job, "queued"),
        (first_job, "running"),
        (first_job, "succeeded"),
        (second_job, "queued"),
        (second_job, "running"),
        (second_job, "succeeded"),
    ]
    ids = [e.id for e in first + second[1:]]
    assert ids == sorted(set(ids))  # growing, never repeated


# -- cancel and retry --------------------------------------------------------------------


async def test_cancel_stops_queued_and_running_jobs_and_leaves_no_process(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(config(plugins={"observed": {"parallelism": 1}}))
    running = await trigger(d, {"children": str(tmp_path), "hang": True})
    queued = await trigger(d, {})
    pids_file = tmp_path / "pids"

    async def pids() -> list[int] | None:
        return [int(p) for p in pids_file.read_text().split()] if pids_file.exists() else None

    plugin_pid, child_pid = await wait_for(pids)
    assert find_job_processes([running]).keys() == {plugin_pid, child_pid}
    async with client(d) as c:
        r = await c.post(f"/job/{queued}/cancel")
        assert r.status_code == 200, r.text
        assert r.json() == {"job_id": queued, "status": "cancelled", "was_running": False}
        # Both ignore SIGTERM: the answer comes after the grace and the SIGKILL.
        r = await c.post(f"/job/{running}/cancel")
        assert r.status_code == 200, r.text
        assert r.json() == {"job_id": running, "status": "cancelled", "was_running": True}
        again = await c.post(f"/job/{running}/cancel")
        unknown = await c.post("/job/no-such-job/cancel")
        reader = await c.post(
            f"/job/{running}/cancel", headers={"Authorization": "Bearer ro-token"}
        )
    assert not alive(plugin_pid)
    assert not alive(child_pid)
    assert find_job_processes([running]) == {}
    assert again.status_code == 409
    assert again.json()["status"] == "cancelled"
    assert unknown.status_code == 404
    assert reader.status_code == 403
    job = await get_job(d, running, "?include=messages")
    assert job["status"] == "cancelled"
    assert job["messages"][-1]["text"].startswith("finished: cancelled")
    assert (await get_job(d, queued))["attempt"] == 0  # it never ran


async def test_retry_creates_a_new_job_from_a_finished_one(daemon: DaemonFactory) -> None:
    d = await daemon(config())
    failed = await trigger(d, {"fail": True, "lines": ["oops"]}, max_attempts=1, timeout="20s")
    original = await wait_status(d, failed, "dead")
    async with client(d, "rw-token") as c:
        r = await c.post(f"/job/{failed}/retry", json={"max_attempts": 2})
    assert r.status_code == 202, r.text
    answer = r.json()
    new_id = answer["job_id"]
    assert answer == {
        "job_id": new_id,
        "original_job_id": failed,
        "status": "queued",
        "plugin": "observed",
        "command": "handle",
    }
    assert r.headers["Location"] == f"/job/{new_id}"
    retried = await wait_status(d, new_id, "dead")
    assert retried["payload"] == original["payload"]
    assert retried["event"] == original["event"]  # same event, same event id
    assert retried["max_attempts"] == 2
    assert retried["attempt"] == 2
    assert retried["submitted_by"] == "token:rw"


async def test_retry_refuses_running_jobs_and_tokens_that_may_not_run_the_command(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(config())
    go = tmp_path / "go"
    running = await trigger(d, {"wait_for": str(go)})
    await wait_status(d, running, "running")
    poll = await trigger(d, {}, command="poll")
    await wait_status(d, poll, "succeeded")
    async with client(d) as c:
        busy = await c.post(f"/job/{running}/retry")
        go.touch()
        await wait_status(d, running, "succeeded")
        as_jobs_only = await c.post(
            f"/job/{poll}/retry", headers={"Authorization": "Bearer jobsrw-token"}
        )
        write_as_reader = await c.post(
            f"/job/{running}/retry", headers={"Authorization": "Bearer jobsrw-ro-token"}
        )
        read_as_reader = await c.post(
            f"/job/{poll}/retry", headers={"Authorization": "Bearer jobsrw-ro-token"}
        )
        jobs_ro = await c.post(
            f"/job/{poll}/retry", headers={"Authorization": "Bearer jobsro-token"}
        )
        unknown = await c.post("/job/nope/retry")
        bad_body = await c.post(f"/job/{poll}/retry", json={"payload": {}})
    assert busy.status_code == 409
    assert busy.json()["status"] == "running"
    assert as_jobs_only.status_code == 403
    assert "plugin:ro" in as_jobs_only.json()["error"]
    assert write_as_reader.status_code == 403
    assert "plugin:rw" in write_as_reader.json()["error"]
    assert read_as_reader.status_code == 202
    assert jobs_ro.status_code == 403
    assert unknown.status_code == 404
    assert bad_body.status_code == 400


async def test_queue_lists_running_and_queued_jobs_in_order(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(config(plugins={"observed": {"parallelism": 1}}))
    go = tmp_path / "go"
    first = await trigger(d, {"wait_for": str(go)})
    await wait_status(d, first, "running")
    waiting = [await trigger(d, {}) for _ in range(3)]
    async with client(d, "jobsro-token") as c:
        r = await c.get("/queue?limit=2")
        bad = await c.get("/queue?limit=0")
    go.touch()
    assert r.status_code == 200, r.text
    queue = r.json()
    assert [j["job_id"] for j in queue["running"]] == [first]
    assert [j["job_id"] for j in queue["queued"]] == waiting[:2]
    assert queue["running_total"] == 1
    assert queue["queued_total"] == 3
    assert queue["max_workers"] == 4
    assert bad.status_code == 400


# -- callbacks -----------------------------------------------------------------------------


@attrs.define
class Receiver:
    """A callback receiver on loopback: answers ``script`` statuses in turn, then 200."""

    script: list[int] = attrs.field(factory=list)
    requests: list[tuple[dict[str, str], bytes, int]] = attrs.field(factory=list)
    url: str = ""
    changed: trio.Event = attrs.field(factory=trio.Event)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status = self.script.pop(0) if self.script else 200
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append((headers, body, status))
        self.changed.set()
        self.changed = trio.Event()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def delivered(self) -> list[tuple[dict[str, str], bytes, int]]:
        return [r for r in self.requests if 200 <= r[2] < 300]


async def start_receiver(nursery: trio.Nursery, receiver: Receiver) -> Receiver:
    cfg = HypercornConfig()
    cfg.bind = ["127.0.0.1:0"]
    cfg.accesslog = None
    cfg.errorlog = None
    urls = await nursery.start(serve, receiver, cfg)
    receiver.url = f"{urls[0]}/hook?x=1"
    return receiver


def callback_config(**extra: Any) -> dict[str, Any]:
    return config(callbacks={"secret": SECRET, "backoff_base": "100ms", **extra})


async def test_a_callback_is_signed_and_delivered_once_after_a_transient_500(
    daemon: DaemonFactory, nursery: trio.Nursery
) -> None:
    receiver = await start_receiver(nursery, Receiver(script=[500]))
    d = await daemon(callback_config())
    job_id = await trigger(d, {"lines": ["hi"]}, callback_url=receiver.url)

    async def delivered() -> dict[str, Any] | None:
        job = await get_job(d, job_id, "?include=callbacks")
        deliveries = job["callbacks"]
        return job if deliveries and deliveries[0]["state"] == "delivered" else None

    job = await wait_for(delivered, timeout=30)
    (delivery,) = job["callbacks"]
    assert delivery["attempts"] == 2
    assert delivery["last_status_code"] == 200
    assert job["callback_url"] == receiver.url
    # The delivery is final: the receiver saw one 500 and exactly one delivery.
    assert [status for _, _, status in receiver.requests] == [500, 200]
    (headers, body, _) = receiver.delivered()[0]
    assert verify(SECRET, body, headers["x-signature-256"])
    assert not verify("another secret", body, headers["x-signature-256"])
    assert headers["x-chamberlain-event"] == "job.succeeded"
    assert headers["x-chamberlain-delivery"] == delivery["delivery_id"]
    assert headers["content-type"] == "application/json"
    # The retry sent the very same body under the same delivery id.
    first_headers, first_body, _ = receiver.requests[0]
    assert first_body == body
    assert first_headers["x-chamberlain-delivery"] == headers["x-chamberlain-delivery"]
    sent = json.loads(body)
    assert set(sent) == {
        "job_id",
        "status",
        "plugin",
        "command",
        "result",
        "last_error",
        "started_at",
        "completed_at",
        "duration_ms",
    }
    assert sent["job_id"] == job_id
    assert sent["status"] == "succeeded"
    assert sent["result"]["result"] == {"job_id": job_id}
    assert isinstance(sent["duration_ms"], int)


async def test_pending_deliveries_survive_a_restart(
    daemon: DaemonFactory, nursery: trio.Nursery
) -> None:
    receiver = await start_receiver(nursery, Receiver(script=[503] * 1000))
    cfg = callback_config(max_attempts=1000, backoff_max="200ms")
    d = await daemon(cfg)
    job_id = await trigger(d, {}, callback_url=receiver.url)

    async def failing() -> bool:
        return len(receiver.requests) >= 2

    await wait_for(failing)
    assert await d.stop(signal.SIGTERM) == 0
    receiver.script.clear()  # from now on the receiver answers 200
    before = {h["x-chamberlain-delivery"] for h, _, _ in receiver.requests}
    d2 = await daemon(cfg)

    async def delivered() -> bool:
        return bool(receiver.delivered())

    await wait_for(delivered)
    (headers, body, _) = receiver.delivered()[0]
    assert {headers["x-chamberlain-delivery"]} == before
    assert json.loads(body)["job_id"] == job_id

    async def recorded() -> bool:
        # The sender records the delivery once the receiver has answered: a moment later.
        job = await get_job(d2, job_id, "?include=callbacks")
        return bool(job["callbacks"][0]["state"] == "delivered")

    await wait_for(recorded)


async def test_callback_urls_are_checked_at_the_trigger(daemon: DaemonFactory) -> None:
    d = await daemon(callback_config())
    bad = {
        "ftp://127.0.0.1/x": "http or https",
        "http://192.0.2.1/hook": "not in callbacks.allowed_hosts",
        "http://user:pw@127.0.0.1/hook": "credentials",
        "http://127.0.0.1.example.com/hook": "not in callbacks.allowed_hosts",
    }
    async with client(d) as c:
        for url, fragment in bad.items():
            r = await c.post("/trigger/observed/handle", json={"callback_url": url})
            assert r.status_code == 400, url
            assert fragment in r.json()["error"], r.json()
        ok = await c.post(
            "/trigger/observed/handle", json={"callback_url": "http://localhost:9/hook"}
        )
    assert ok.status_code == 202


async def test_without_a_secret_callbacks_are_refused(daemon: DaemonFactory) -> None:
    d = await daemon(config())
    async with client(d) as c:
        r = await c.post(
            "/trigger/observed/handle", json={"callback_url": "http://127.0.0.1:9/hook"}
        )
    assert r.status_code == 400
    assert "callbacks.secret" in r.json()["error"]


# -- metrics -------------------------------------------------------------------------------


async def test_metrics_parse_and_count_what_happened(daemon: DaemonFactory) -> None:
    d = await daemon(config())
    ids = [await trigger(d, {}, command="poll") for _ in range(3)]
    failed = await trigger(d, {"fail": True}, max_attempts=2)
    for job_id in ids:
        await wait_status(d, job_id, "succeeded")
    await wait_status(d, failed, "dead")
    async with httpx.AsyncClient(base_url=d.base_url) as c:
        anonymous = await c.get("/metrics")
    async with client(d, "jobsro-token") as c:
        await c.get(f"/job/{ids[0]}")
        r = await c.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert anonymous.status_code == 401
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    finished = "chamberlain_jobs_finished_total"
    assert value(finished, plugin="observed", command="poll", status="succeeded") == 3
    assert value(finished, plugin="observed", command="handle", status="dead") == 1
    assert value("chamberlain_job_retries_total", plugin="observed", command="handle") == 1
    count = "chamberlain_job_duration_seconds_count"
    assert value(count, plugin="observed", command="poll") == 3
    assert value("chamberlain_queue_depth") == 0
    assert value("chamberlain_jobs_running") == 0
    assert value("chamberlain_max_workers") == 4
    assert value("chamberlain_actor_restarts_total", actor="root/jobstore") == 0
    requests = "chamberlain_http_requests_total"
    assert value(requests, route="/job/{job_id}", method="GET", status="200") >= 1
    assert value(requests, route="/trigger/{plugin}/{command}", method="POST", status="202") == 4
    assert value(requests, route="/metrics", method="GET", status="401") == 1


# -- the explorer ----------------------------------------------------------------------------


async def test_docs_are_served_by_the_daemon(daemon: DaemonFactory) -> None:
    d = await daemon(config())
    async with httpx.AsyncClient(base_url=d.base_url) as c:
        page = await c.get("/docs")
        bundle = await c.get("/docs/swagger-ui-bundle.js")
        spec = await c.get("/openapi.json")
    assert page.status_code == 200
    assert "swagger-ui" in page.text
    assert bundle.status_code == 200
    assert "SwaggerUIBundle" in bundle.text
    assert "/job/{job_id}/stream" in spec.json()["paths"]
