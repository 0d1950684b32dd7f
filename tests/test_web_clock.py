"""The web layer tells time by the daemon's clock, never by the wall clock directly.

Every handler that stamps what it creates (a trigger's ``api.trigger`` event, a
batch's events, the event a pipeline is started by hand with, a webhook delivery's
event) reads the clock the app was built with, the one the daemon hands every
actor; an app built with a fixed clock stamps exactly that instant.
"""

from __future__ import annotations

import time
from typing import Any, cast

import attrs
import pytest
from quart_trio import QuartTrio
from test_web_api import FakeGateway, api_config, call

from chamberlain.actors.gateway import Gateway
from chamberlain.config import PipelineConfig, StepConfig, WebhookEndpointConfig, WebhooksConfig
from chamberlain.records import Enqueued, Job, NewJob, RoutePlan, rfc3339
from chamberlain.routing.planner import Routing
from chamberlain.web.app import create_app
from chamberlain.web.jobs import parse_rfc3339
from chamberlain.web.webhooks import webhook_routes

#: Long ago enough that no wall clock can produce it by accident.
FROZEN = 1_234_567_890.25
STAMP = "2009-02-13T23:31:30.250Z"

PIPELINE = PipelineConfig(
    name="relay",
    on="echo.poll",
    steps=(StepConfig(id="first", uses="echo.handle"),),
)
SECRET = "hook-secret"
HOOKS = WebhooksConfig(
    endpoints=(
        WebhookEndpointConfig(path="/hooks/job", plugin="echo", secret=SECRET, kind="gitlab"),
        WebhookEndpointConfig(path="/hooks/pipe", pipeline="relay", secret=SECRET, kind="gitlab"),
    )
)


def frozen_clock() -> float:
    return FROZEN


@attrs.define(eq=False)
class PlanningGateway(FakeGateway):
    """The fake gateway with an async pipeline, remembering every plan it stores."""

    plans: list[RoutePlan] = attrs.field(factory=list)

    @property
    def routing(self) -> Routing:
        return Routing(routes=(), pipelines=(PIPELINE,), plugins=self.plugins)

    async def enqueue_plan(self, plan: RoutePlan, *, paused: bool = False) -> tuple[Enqueued, ...]:
        self.plans.append(plan)
        return await self.enqueue(plan.jobs)

    async def enqueue_webhook(
        self, endpoint: str, delivery_id: str | None, plan: RoutePlan
    ) -> tuple[Job | None, bool]:
        self.plans.append(plan)
        (enqueued,) = await self.enqueue(plan.jobs[:1])
        return enqueued.job, False


@pytest.fixture
def gateway() -> PlanningGateway:
    return PlanningGateway()


@pytest.fixture
def app(gateway: PlanningGateway) -> QuartTrio:
    return create_app(cast(Gateway, gateway), api_config(), now=frozen_clock)


def stamped(new: NewJob) -> str:
    assert new.event is not None
    timestamp: str = new.event["timestamp"]
    return timestamp


def test_the_frozen_instant_is_far_from_now() -> None:
    # Guards the tests below: a stamp of FROZEN cannot come from the wall clock.
    assert time.time() - FROZEN > 365 * 86400
    assert rfc3339(FROZEN) == STAMP


async def test_a_trigger_stamps_its_event_by_the_daemon_clock(
    app: QuartTrio, gateway: PlanningGateway
) -> None:
    status, body, _ = await call(app, "POST", "/trigger/echo/handle", json={"payload": {"a": 1}})
    assert status == 202, body
    (new,) = gateway.enqueued
    assert stamped(new) == STAMP


async def test_a_batch_stamps_every_event_by_the_daemon_clock(
    app: QuartTrio, gateway: PlanningGateway
) -> None:
    jobs = [{"plugin": "echo", "command": "handle", "payload": {"n": n}} for n in range(3)]
    status, body, _ = await call(app, "POST", "/jobs", json={"jobs": jobs})
    assert status == 202, body
    assert [stamped(new) for new in gateway.enqueued] == [STAMP] * 3


async def test_a_pipeline_started_by_hand_is_stamped_by_the_daemon_clock(
    app: QuartTrio, gateway: PlanningGateway
) -> None:
    status, body, _ = await call(app, "POST", "/pipeline/relay", json={"payload": {"x": 1}})
    assert status == 202, body
    (plan,) = gateway.plans
    (first,) = plan.jobs
    assert first.event is not None
    assert first.event["type"] == "echo.poll"  # the pipeline's on, as in Ductile
    assert stamped(first) == STAMP


@pytest.mark.parametrize("path", ["/hooks/job", "/hooks/pipe"])
async def test_a_webhook_delivery_is_stamped_by_the_daemon_clock(
    gateway: PlanningGateway, path: str
) -> None:
    app = create_app(
        cast(Gateway, gateway), api_config(), routes=webhook_routes(HOOKS), now=frozen_clock
    )
    headers: dict[str, Any] = {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Push Hook"}
    status, body, _ = await call(app, "POST", path, who=None, headers=headers, json={"ref": "x"})
    assert status == 202, body
    (plan,) = gateway.plans
    assert stamped(plan.jobs[0]) == STAMP


async def test_without_a_clock_the_app_tells_wall_time(gateway: PlanningGateway) -> None:
    app = create_app(cast(Gateway, gateway), api_config())
    before = time.time()
    status, _, _ = await call(app, "POST", "/trigger/echo/handle", json={})
    assert status == 202
    assert before - 1 <= parse_rfc3339(stamped(gateway.enqueued[0])) <= time.time() + 1
