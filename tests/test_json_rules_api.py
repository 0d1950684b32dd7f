"""Every JSON body follows the same rules, whichever route receives it.

Through the app against a fake Gateway: a trigger, a batch, a pipeline start, a
breaker reset and a webhook delivery all refuse, with a 400 naming the field, what
the JSON decoder refuses (a lone surrogate, a duplicate key, a number that
overflows, an integer too long to convert), and nothing is enqueued.  ``?async=``
is checked wherever a route takes it, whether or not a pipeline would wait.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import cast

import attrs
import pytest
from quart_trio import QuartTrio
from test_web_api import FakeGateway, api_config, call

from chamberlain.actors.gateway import Gateway
from chamberlain.config import PipelineConfig, StepConfig, WebhookEndpointConfig, WebhooksConfig
from chamberlain.records import Enqueued, Job, RoutePlan
from chamberlain.routing.planner import Routing
from chamberlain.web.app import create_app
from chamberlain.web.routes import ROUTES
from chamberlain.web.webhooks import webhook_routes

SECRET = "s3cret"
HOOK = WebhookEndpointConfig(path="/hooks/build", plugin="echo", secret=SECRET)
#: A pipeline that does not wait: ``?async=`` changes nothing for it, and is checked anyway.
LATER = PipelineConfig(
    name="later", on="echo.handle", steps=(StepConfig(id="one", uses="echo.poll"),)
)


@attrs.define(eq=False)
class WideGateway(FakeGateway):
    """The fake gateway with an asynchronous pipeline and webhook deliveries."""

    @property
    def routing(self) -> Routing:
        return Routing(routes=(), pipelines=(LATER,), plugins=self.plugins)

    async def enqueue_plan(self, plan: RoutePlan, *, paused: bool = False) -> tuple[Enqueued, ...]:
        return await self.enqueue(plan.jobs)

    async def enqueue_webhook(
        self, path: str, delivery_id: str | None, plan: RoutePlan
    ) -> tuple[Job | None, bool]:
        (enqueued,) = await self.enqueue(plan.jobs)
        return enqueued.job, False


@pytest.fixture
def gateway() -> WideGateway:
    return WideGateway()


@pytest.fixture
def app(gateway: WideGateway) -> QuartTrio:
    routes = (*ROUTES, *webhook_routes(WebhooksConfig(endpoints=(HOOK,))))
    return create_app(cast(Gateway, gateway), api_config(max_body_size=64 * 1024), routes=routes)


def signed(body: bytes) -> dict[str, str]:
    mac = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature-256": f"sha256={mac}", "Content-Type": "application/json"}


LONG_INT = b"1" * 4301

#: (body, fragments the 400 must hold): one for each rule, at several depths.
REFUSED: Sequence[tuple[bytes, Sequence[str]]] = [
    (b'{"payload": {"x": "\\ud800"}}', ("lone surrogate (U+D800)", "at payload.x")),
    (b'{"payload": {"\\udfff": 1}}', ("lone surrogate (U+DFFF)", "in a key of payload")),
    (b'{"dedupe_key": "a\\ud83d"}', ("lone surrogate (U+D83D)", "at dedupe_key")),
    (b'{"payload": {"list": [1, "\\udc00"]}}', ("at payload.list[1]",)),
    (b'{"\\ud800": 1}', ("in a key of the top-level object",)),
    (b'{"payload": {"n": 1e400}}', ("payload.n", "out of range")),
    (b'{"payload": {"n": -1e400}}', ("payload.n", "out of range")),
    (b'{"payload": {"a": 1, "a": 2}}', ('duplicate key "a"',)),
    (b'{"payload": {}, "payload": {"a": 2}}', ('duplicate key "payload"',)),
    (b'{"payload": {"n": ' + LONG_INT + b"}}", ("integer too long", "4300 digits")),
]


@pytest.mark.parametrize(("body", "fragments"), REFUSED)
async def test_a_trigger_body_the_decoder_refuses_is_400(
    app: QuartTrio, gateway: WideGateway, body: bytes, fragments: Sequence[str]
) -> None:
    status, answer, _ = await call(app, "POST", "/trigger/echo/poll", data=body)
    assert status == 400, answer
    for fragment in fragments:
        assert fragment in answer["error"]
    assert "set_int_max_str_digits" not in answer["error"]
    assert gateway.enqueued == []


async def test_a_surrogate_pair_is_a_character_and_is_accepted(
    app: QuartTrio, gateway: WideGateway
) -> None:
    status, answer, _ = await call(
        app, "POST", "/trigger/echo/poll", data=b'{"payload": {"x": "\\ud83d\\ude00"}}'
    )
    assert status == 202, answer
    assert gateway.enqueued[0].payload == {"x": "\U0001f600"}


async def test_an_integer_of_4300_digits_is_still_accepted(
    app: QuartTrio, gateway: WideGateway
) -> None:
    status, answer, _ = await call(
        app, "POST", "/trigger/echo/poll", data=b'{"payload": {"n": ' + b"7" * 4300 + b"}}"
    )
    assert status == 202, answer
    assert gateway.enqueued[0].payload == {"n": int("7" * 4300)}


@pytest.mark.parametrize(
    ("job", "fragment"),
    [
        (
            b'{"plugin": "echo", "command": "poll", "payload": {"k": "\\ud800"}}',
            "jobs[3].payload.k",
        ),
        (b'{"plugin": "echo", "command": "poll", "dedupe_key": "\\udbff"}', "jobs[3].dedupe_key"),
        (
            b'{"plugin": "echo", "command": "poll", "payload": {"\\ud800": 1}}',
            "key of jobs[3].payload",
        ),
        (b'{"plugin": "echo", "command": "poll", "payload": {"f": 1e999}}', "jobs[3].payload.f"),
        (b'{"plugin": "echo", "command": "poll", "plugin": "echo"}', 'duplicate key "plugin"'),
    ],
)
async def test_a_batch_names_the_job_and_field_the_decoder_refuses(
    app: QuartTrio, gateway: WideGateway, job: bytes, fragment: str
) -> None:
    fine = b'{"plugin": "echo", "command": "poll"}'
    body = b'{"jobs": [' + b", ".join([fine, fine, fine, job]) + b"]}"
    status, answer, _ = await call(app, "POST", "/jobs", data=body)
    assert status == 400, answer
    assert fragment in answer["error"]
    assert gateway.enqueued == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/pipeline/later", b'{"payload": {"a": "\\ud800"}}'),
        ("/pipeline/later", b'{"payload": {"a": 1, "a": 1}}'),
        ("/schedules/echo/nightly/reset", b'{"reason": "\\ud800"}'),
        ("/schedules/echo/nightly/reset", b'{"reason": "x", "reason": "y"}'),
    ],
)
async def test_other_json_bodies_follow_the_same_rules(
    app: QuartTrio, gateway: WideGateway, path: str, body: bytes
) -> None:
    status, answer, _ = await call(app, "POST", path, data=body)
    assert status == 400, answer
    assert "malformed JSON in request body" in answer["error"]
    assert gateway.enqueued == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"commit": "\\ud800"}', "at commit"),
        (b'{"a": 1, "a": 2}', 'duplicate key "a"'),
        (b'{"n": 1e400}', "out of range"),
        (b'{"n": ' + LONG_INT + b"}", "integer too long"),
        (b"[" * 5000 + b"]" * 5000, "nested more than 64 levels"),
    ],
)
async def test_a_signed_webhook_delivery_follows_the_same_rules(
    app: QuartTrio, gateway: WideGateway, body: bytes, fragment: str
) -> None:
    status, answer, _ = await call(
        app, "POST", HOOK.path, who=None, data=body, headers=signed(body)
    )
    assert status == 400, answer
    assert fragment in answer["error"]
    assert gateway.enqueued == []
    # The signature still comes first: an unsigned delivery learns nothing of its body.
    status, answer, _ = await call(app, "POST", HOOK.path, who=None, data=body)
    assert (status, answer) == (403, {"error": "forbidden"})


async def test_a_webhook_body_that_is_not_json_is_still_kept_as_text(
    app: QuartTrio, gateway: WideGateway
) -> None:
    body = b"plain text, {not json"
    status, answer, _ = await call(
        app, "POST", HOOK.path, who=None, data=body, headers=signed(body)
    )
    assert status == 202, answer
    assert gateway.enqueued[0].payload == {"body": "plain text, {not json"}


@pytest.mark.parametrize("value", ["banana", "", "2", "truee"])
@pytest.mark.parametrize("path", ["/trigger/echo/poll", "/plugin/echo/poll", "/pipeline/later"])
async def test_a_bad_async_flag_is_400_even_where_nothing_would_wait(
    app: QuartTrio, gateway: WideGateway, path: str, value: str
) -> None:
    status, answer, _ = await call(app, "POST", f"{path}?async={value}", json={})
    assert status == 400, answer
    assert "async must be true or false" in answer["error"]
    assert gateway.enqueued == []


@pytest.mark.parametrize("value", ["true", "false", "1", "0", "yes", "no", "TRUE"])
async def test_a_good_async_flag_is_accepted_where_nothing_would_wait(
    app: QuartTrio, gateway: WideGateway, value: str
) -> None:
    status, answer, _ = await call(app, "POST", f"/trigger/echo/poll?async={value}", json={})
    assert status == 202, answer


async def test_the_async_flag_comes_after_the_scope_check(app: QuartTrio) -> None:
    # The trigger's order stands: 404, 403, then the query string.
    status, _, _ = await call(app, "POST", "/trigger/echo/handle?async=banana", who="ro")
    assert status == 403
    status, _, _ = await call(app, "POST", "/trigger/nope/poll?async=banana")
    assert status == 404
