"""Synchronous calls at the route level: the waiting slots they hold, against a fake Gateway.

A synchronous call (a trigger of the command a synchronous pipeline starts from, or
``POST /pipeline/{name}`` of a synchronous pipeline) holds one of the
``api.max_concurrent_sync`` slots while it waits for its tree.  These tests check
that the slot is held by the call, not by anything the client sends, and that it
is given back however the call ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import attrs
import pytest
import trio
from quart_trio import QuartTrio
from test_web_api import FakeGateway, api_config, call, job_from

from chamberlain.actors.gateway import Gateway
from chamberlain.actors.mailbox import ActorUnavailable
from chamberlain.config import PipelineConfig, StepConfig
from chamberlain.records import Enqueued, JobStatus, NewJob, RoutePlan, Tree
from chamberlain.routing.planner import Routing
from chamberlain.web.app import create_app

#: A synchronous pipeline started by ``echo.poll``, by trigger or by name.
PIPELINE = PipelineConfig(
    name="greet",
    on="echo.poll",
    execution_mode="synchronous",
    timeout=30.0,
    steps=(StepConfig(id="hello", uses="echo.handle"),),
)

#: The two ways to make a synchronous call.
SYNC_CALLS = ["/trigger/echo/poll", "/pipeline/greet"]


@attrs.define(eq=False)
class PipelineGateway(FakeGateway):
    """The fake gateway with a synchronous pipeline whose trees finish on demand.

    ``wait_tree`` blocks until ``release`` is set, then answers with the root alone,
    succeeded; ``waiting`` counts the calls blocked there now.
    """

    release: trio.Event = attrs.field(factory=trio.Event)
    waiting: int = 0
    _changed: trio.Event = attrs.field(factory=trio.Event)

    @property
    def routing(self) -> Routing:
        return Routing(routes=(), pipelines=(PIPELINE,), plugins=self.plugins)

    async def enqueue_plan(self, plan: RoutePlan, *, paused: bool = False) -> tuple[Enqueued, ...]:
        return await self.enqueue(plan.jobs)

    def _count(self, delta: int) -> None:
        self.waiting += delta
        self._changed.set()
        self._changed = trio.Event()

    async def until_waiting(self, count: int) -> None:
        """Return once ``count`` calls wait for their trees."""
        while self.waiting < count:
            await self._changed.wait()

    async def wait_tree(self, root_job_id: str) -> Tree | None:
        self._maybe_fail()
        self._count(+1)
        try:
            await self.release.wait()
        finally:
            self._count(-1)
        root = attrs.evolve(self.jobs[root_job_id], status=JobStatus.SUCCEEDED, result={})
        return Tree(root_job_id=root_job_id, jobs=(root,), notes=())


@pytest.fixture
def gateway() -> PipelineGateway:
    return PipelineGateway(sync_limiter=trio.CapacityLimiter(2))


@pytest.fixture
def app(gateway: PipelineGateway) -> QuartTrio:
    return create_app(cast(Gateway, gateway), api_config(max_concurrent_sync=2))


async def concurrently(app: QuartTrio, gateway: PipelineGateway, paths: Sequence[str]) -> list[Any]:
    """Send every call at once with the same X-Request-Id and release the trees once
    all of them wait (or once one is answered early); the answers, in order."""
    answers: list[Any] = [None] * len(paths)

    async def one(index: int, path: str) -> None:
        status, body, _ = await call(
            app, "POST", path, json={}, headers={"X-Request-Id": "same-id-for-both"}
        )
        answers[index] = (status, body)
        gateway.release.set()  # an early answer (a refusal) must not leave the rest waiting

    async def release_when_all_wait() -> None:
        await gateway.until_waiting(len(paths))
        gateway.release.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as releaser:
            releaser.start_soon(release_when_all_wait)
            async with trio.open_nursery() as calls:
                for index, path in enumerate(paths):
                    calls.start_soon(one, index, path)
            releaser.cancel_scope.cancel()
    return answers


@pytest.mark.parametrize("paths", [SYNC_CALLS[:1] * 2, SYNC_CALLS[1:] * 2, SYNC_CALLS])
async def test_two_synchronous_calls_with_the_same_request_id_both_wait_and_succeed(
    app: QuartTrio, gateway: PipelineGateway, paths: list[str]
) -> None:
    answers = await concurrently(app, gateway, paths)
    for status, body in answers:
        assert status == 200, body
        assert body["status"] == "succeeded"
        assert body["pipeline"] == "greet"
    assert len({body["job_id"] for _, body in answers}) == 2
    assert gateway.sync_limiter.borrowed_tokens == 0


@pytest.mark.parametrize("path", SYNC_CALLS)
async def test_a_call_past_max_concurrent_sync_is_503_and_enqueues_nothing(
    app: QuartTrio, gateway: PipelineGateway, path: str
) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(lambda: call(app, "POST", path, json={}))
        with trio.fail_after(5):
            await gateway.until_waiting(2)
        before = len(gateway.enqueued)
        status, body, headers = await call(app, "POST", path, json={})
        assert status == 503
        assert "max_concurrent_sync" in body["error"]
        assert headers["Retry-After"] == "1"
        assert len(gateway.enqueued) == before
        gateway.release.set()
    assert gateway.sync_limiter.borrowed_tokens == 0


@pytest.mark.parametrize("path", SYNC_CALLS)
async def test_the_slot_is_given_back_when_the_enqueue_fails(
    app: QuartTrio, gateway: PipelineGateway, path: str
) -> None:
    gateway.fail = ActorUnavailable("store")
    status, _, _ = await call(app, "POST", path, json={})
    assert status == 503
    assert gateway.sync_limiter.borrowed_tokens == 0


async def test_the_slot_is_given_back_when_the_trigger_is_a_duplicate(
    app: QuartTrio, gateway: PipelineGateway
) -> None:
    gateway.duplicate_of = job_from(NewJob(plugin="echo", command="poll"))
    status, body, _ = await call(app, "POST", "/trigger/echo/poll", json={"dedupe_key": "k"})
    assert status == 200
    assert body["duplicate"] is True
    assert gateway.sync_limiter.borrowed_tokens == 0


async def test_the_slot_is_given_back_when_the_wait_times_out(
    gateway: PipelineGateway, autojump_clock: trio.abc.Clock
) -> None:
    app = create_app(
        cast(Gateway, gateway), api_config(max_concurrent_sync=2, max_sync_timeout=1.0)
    )
    status, body, headers = await call(app, "POST", "/pipeline/greet", json={})
    assert status == 202
    assert body["timeout_exceeded"] is True
    assert headers["Location"] == f"/job/{body['job_id']}/tree"
    assert headers["Retry-After"] == "1"  # it goes on: poll the tree
    assert gateway.sync_limiter.borrowed_tokens == 0
