"""``GET /job/{id}?wait=``: a long poll that answers when the job ends, or at the deadline.

Route-level tests drive the app against a fake Gateway whose ``wait_job`` resolves
when a test finishes the job, on trio's autojump clock, so waits of many seconds
take none.  The end-to-end tests run the real daemon: a job that sleeps a second is
answered ``succeeded`` about a second after the trigger, not at the end of the wait;
and the 202 of a trigger and of a retry tells the client where and when to poll.
"""

from __future__ import annotations

import time
from typing import Any, cast

import attrs
import httpx
import pytest
import trio
from conftest import DaemonFactory, DaemonProcess
from quart_trio import QuartTrio
from test_web_api import FakeGateway, api_config, call, job_from

from chamberlain.actors.gateway import Gateway
from chamberlain.records import Job, JobStatus, NewJob
from chamberlain.web.app import create_app
from chamberlain.web.jobs import MAX_WAIT, POLL_AFTER


@attrs.define(eq=False)
class WaitingGateway(FakeGateway):
    """The fake gateway whose ``wait_job`` parks until :meth:`finish` ends the job."""

    ended: dict[str, trio.Event] = attrs.field(factory=dict)
    waits: int = 0

    def add(self, status: JobStatus) -> Job:
        new = NewJob(plugin="echo", command="poll", payload={}, submitted_by="api_key")
        job = job_from(new, status)
        self.jobs[job.id] = job
        self.ended[job.id] = trio.Event()
        return job

    def finish(self, job_id: str, status: JobStatus = JobStatus.SUCCEEDED) -> None:
        self.jobs[job_id] = attrs.evolve(self.jobs[job_id], status=status)
        self.ended[job_id].set()

    def move(self, job_id: str, status: JobStatus) -> None:
        """Change a job's status without ending it."""
        self.jobs[job_id] = attrs.evolve(self.jobs[job_id], status=status)

    async def wait_job(self, job_id: str) -> Job | None:
        self.waits += 1
        if job_id not in self.jobs:
            return None
        await self.ended[job_id].wait()
        return self.jobs[job_id]


@pytest.fixture
def gateway() -> WaitingGateway:
    return WaitingGateway()


@pytest.fixture
def app(gateway: WaitingGateway) -> QuartTrio:
    return create_app(cast(Gateway, gateway), api_config())


async def timed_get(app: QuartTrio, path: str) -> tuple[int, Any, float]:
    """GET ``path`` as the jobs:ro token; status, body and the (mock) seconds it took."""
    start = trio.current_time()
    status, body, _ = await call(app, "GET", path, who="jobsro")
    return status, body, trio.current_time() - start


async def test_a_wait_is_answered_when_the_job_ends(
    app: QuartTrio, gateway: WaitingGateway, autojump_clock: trio.abc.Clock
) -> None:
    job = gateway.add(JobStatus.RUNNING)

    async def end_later() -> None:
        await trio.sleep(7)
        gateway.finish(job.id)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(end_later)
        status, body, took = await timed_get(app, f"/job/{job.id}?wait=30s")
    assert status == 200
    assert body["job_id"] == job.id
    assert body["status"] == "succeeded"
    # Answered when the job ended, not at the deadline.
    assert 7 <= took < 8


async def test_a_wait_ends_at_the_deadline_with_the_job_as_it_stands(
    app: QuartTrio, gateway: WaitingGateway, autojump_clock: trio.abc.Clock
) -> None:
    job = gateway.add(JobStatus.QUEUED)

    async def start_later() -> None:
        await trio.sleep(1)
        gateway.move(job.id, JobStatus.RUNNING)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(start_later)
        status, body, took = await timed_get(app, f"/job/{job.id}?wait=5")
    assert status == 200
    # The state at the deadline, not the one read before the wait began.
    assert body["status"] == "running"
    assert 5 <= took < 6
    # The waiter left: nothing keeps waiting on the job's end.
    assert not gateway.ended[job.id].statistics().tasks_waiting


async def test_a_terminal_job_is_answered_at_once(
    app: QuartTrio, gateway: WaitingGateway, autojump_clock: trio.abc.Clock
) -> None:
    job = gateway.add(JobStatus.FAILED)
    status, body, took = await timed_get(app, f"/job/{job.id}?wait=60s")
    assert (status, body["status"], took) == (200, "failed", 0)
    assert gateway.waits == 0


@pytest.mark.parametrize("query", ["", "?wait=0", "?wait=0s"])
async def test_no_wait_answers_at_once(
    app: QuartTrio, gateway: WaitingGateway, autojump_clock: trio.abc.Clock, query: str
) -> None:
    job = gateway.add(JobStatus.RUNNING)
    status, body, took = await timed_get(app, f"/job/{job.id}{query}")
    assert (status, body["status"], took) == (200, "running", 0)
    assert gateway.waits == 0


async def test_an_unknown_job_is_404_without_waiting(
    app: QuartTrio, gateway: WaitingGateway, autojump_clock: trio.abc.Clock
) -> None:
    status, body, took = await timed_get(app, "/job/nope?wait=30s")
    assert (status, took) == (404, 0)
    assert "unknown job" in body["error"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("wait=abc", "invalid duration 'abc'"),
        ("wait=-1", "must not be negative"),
        ("wait=-5s", "must not be negative"),
        ("wait=61s", "at most 60s"),
        ("wait=2m", "at most 60s"),
        ("wait=inf", "'wait'"),
        ("wait=", "is empty"),
        ("wait=1s&wait=2s", "more than once"),
    ],
)
async def test_bad_waits_are_refused(
    app: QuartTrio, gateway: WaitingGateway, query: str, expected: str
) -> None:
    job = gateway.add(JobStatus.RUNNING)
    status, body, _ = await call(app, "GET", f"/job/{job.id}?{query}", who="jobsro")
    assert status == 400, body
    assert "wait" in body["error"]
    assert expected in body["error"]
    assert gateway.waits == 0


async def test_the_spec_documents_wait_and_the_poll_headers(app: QuartTrio) -> None:
    status, spec, _ = await call(app, "GET", "/openapi.json", who=None)
    assert status == 200
    get_job = spec["paths"]["/job/{job_id}"]["get"]
    (wait,) = [p for p in get_job["parameters"] if p["name"] == "wait"]
    assert wait["in"] == "query"
    assert f"{MAX_WAIT:g}s" in wait["description"]
    for path in ("/trigger/{plugin}/{command}", "/job/{job_id}/retry", "/pipeline/{name}"):
        headers = spec["paths"][path]["post"]["responses"]["202"]["headers"]
        assert set(headers) >= {"Location", "Retry-After"}, path
    assert "Retry-After" in spec["paths"]["/jobs"]["post"]["responses"]["202"]["headers"]


async def test_a_batch_202_says_how_soon_to_poll(app: QuartTrio) -> None:
    jobs = [{"plugin": "echo", "command": "poll", "payload": {}}]
    status, _, headers = await call(app, "POST", "/jobs", json={"jobs": jobs})
    assert status == 202
    assert headers["Retry-After"] == str(POLL_AFTER)


# -- the real daemon ---------------------------------------------------------------


def client(d: DaemonProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=d.base_url, headers={"Authorization": f"Bearer {d.api_key}"}, timeout=30.0
    )


@pytest.mark.e2e
async def test_a_long_poll_answers_when_the_real_job_ends(daemon: DaemonFactory) -> None:
    d = await daemon()
    async with client(d) as c:
        r = await c.post("/trigger/echo/handle", json={"payload": {"mode": "slow", "seconds": 1}})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        assert r.headers["Location"] == f"/job/{job_id}"
        assert r.headers["Retry-After"] == str(POLL_AFTER)
        start = time.monotonic()
        r = await c.get(f"/job/{job_id}?wait=10s")
        took = time.monotonic() - start
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "succeeded", job
    # After the job's second of sleep, and long before the wait's end.
    assert 0.9 <= took < 5, took


@pytest.mark.e2e
async def test_a_long_poll_of_a_job_that_outlasts_it_answers_running(
    daemon: DaemonFactory,
) -> None:
    d = await daemon()
    async with client(d) as c:
        r = await c.post("/trigger/echo/handle", json={"payload": {"mode": "slow", "seconds": 5}})
        job_id = r.json()["job_id"]
        start = time.monotonic()
        r = await c.get(f"/job/{job_id}?wait=1s")
        took = time.monotonic() - start
        assert r.status_code == 200, r.text
        assert r.json()["status"] in ("queued", "running")
        assert 0.9 <= took < 4, took
        # The retry of the finished job is a 202 with the same poll headers.
        r = await c.get(f"/job/{job_id}?wait=10s")
        assert r.json()["status"] == "succeeded", r.text
        r = await c.post(f"/job/{job_id}/retry")
    assert r.status_code == 202, r.text
    new_id = r.json()["job_id"]
    assert r.headers["Location"] == f"/job/{new_id}"
    assert r.headers["Retry-After"] == str(POLL_AFTER)
