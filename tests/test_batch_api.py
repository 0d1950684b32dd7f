"""``POST /jobs``, the batch trigger, at the route level against a fake Gateway.

The app is the real one (auth, body limits, error handlers); only the daemon
behind the Gateway is the fake of :mod:`test_web_api`, here also counting how many
enqueues (one per commit in the real JobStore) a request made.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, cast

import attrs
import pytest
from quart_trio import QuartTrio
from test_web_api import FakeGateway, api_config, call, job_from

from chamberlain.actors.gateway import Gateway, Phase
from chamberlain.actors.mailbox import ActorUnavailable
from chamberlain.config import CallbacksConfig
from chamberlain.records import Enqueued, JobStatus, NewJob
from chamberlain.web.app import create_app
from chamberlain.web.batch import MAX_BATCH_JOBS
from chamberlain.web.trigger import EVENT_TYPE


@attrs.define(eq=False)
class CountingGateway(FakeGateway):
    """The fake gateway, remembering the size of every enqueue."""

    calls: list[int] = attrs.field(factory=list)

    async def enqueue(self, jobs: Sequence[NewJob]) -> tuple[Enqueued, ...]:
        self.calls.append(len(jobs))
        return await super().enqueue(jobs)


@pytest.fixture
def gateway() -> CountingGateway:
    return CountingGateway()


@pytest.fixture
def app(gateway: CountingGateway) -> QuartTrio:
    # Room for a full batch of small jobs.
    return create_app(cast(Gateway, gateway), api_config(max_body_size=256 * 1024))


def poll(**extra: Any) -> dict[str, Any]:
    return {"plugin": "echo", "command": "poll", **extra}


# -- accepted ------------------------------------------------------------------------


async def test_a_batch_is_one_enqueue_answered_with_every_id_in_order(
    app: QuartTrio, gateway: CountingGateway
) -> None:
    jobs = [poll(payload={"n": n}) for n in range(5)]
    status, body, _ = await call(app, "POST", "/jobs", who="rw", json={"jobs": jobs})
    assert status == 202, body
    assert gateway.calls == [5]
    assert [new.payload for new in gateway.enqueued] == [{"n": n} for n in range(5)]
    assert body == {
        "jobs": [
            {"job_id": new.id, "plugin": "echo", "command": "poll", "status": "queued"}
            for new in gateway.enqueued
        ]
    }
    assert len({entry["job_id"] for entry in body["jobs"]}) == 5
    assert all(new.submitted_by == "token:rw" for new in gateway.enqueued)


async def test_a_full_batch_of_1000_is_accepted(app: QuartTrio, gateway: CountingGateway) -> None:
    status, body, _ = await call(
        app, "POST", "/jobs", json={"jobs": [poll() for _ in range(MAX_BATCH_JOBS)]}
    )
    assert status == 202
    assert gateway.calls == [MAX_BATCH_JOBS]
    assert len(body["jobs"]) == MAX_BATCH_JOBS


async def test_batch_jobs_are_built_like_single_triggers(
    app: QuartTrio, gateway: CountingGateway
) -> None:
    jobs = [
        {"plugin": "echo", "command": "handle", "payload": {"a": 1}},
        {"plugin": "echo", "command": "handle", "payload": {"a": 2}},
        poll(timeout="5s", max_attempts=1, dedupe_key="k-1"),
        poll(),
    ]
    status, _, _ = await call(app, "POST", "/jobs", json={"jobs": jobs})
    assert status == 202
    first, second, with_options, plain = gateway.enqueued
    for new, n in ((first, 1), (second, 2)):
        assert new.event is not None
        assert new.event["type"] == EVENT_TYPE
        assert new.event["payload"] == {"a": n}
        assert new.source_event_id == new.event["event_id"]
        assert uuid.UUID(new.source_event_id).version == 4
    assert first.source_event_id != second.source_event_id
    assert (with_options.timeout, with_options.max_attempts, with_options.dedupe_key) == (
        5.0,
        1,
        "k-1",
    )
    # The plugin's retry.max_attempts applies when the job names none.
    assert (plain.timeout, plain.max_attempts, plain.dedupe_key, plain.event) == (
        None,
        4,
        None,
        None,
    )


async def test_a_standing_dedupe_key_is_listed_as_a_duplicate(
    app: QuartTrio, gateway: CountingGateway
) -> None:
    existing = job_from(NewJob(plugin="echo", command="poll"), status=JobStatus.RUNNING)
    gateway.duplicate_of = existing
    status, body, _ = await call(app, "POST", "/jobs", json={"jobs": [poll(dedupe_key="k")]})
    assert status == 202
    assert body == {
        "jobs": [
            {
                "job_id": existing.id,
                "plugin": "echo",
                "command": "poll",
                "status": "running",
                "duplicate": True,
            }
        ]
    }


async def test_callback_urls_are_checked_like_a_single_triggers(gateway: CountingGateway) -> None:
    jobs = [poll(), poll(callback_url="http://127.0.0.1:9000/done")]
    app = create_app(cast(Gateway, gateway), api_config(max_body_size=65536))
    status, body, _ = await call(app, "POST", "/jobs", json={"jobs": jobs})
    assert status == 400
    assert body["error"].startswith("jobs[1].callback_url: callbacks are not enabled")
    assert gateway.calls == []

    callbacks = CallbacksConfig(secret="s3cret")
    app = create_app(cast(Gateway, gateway), api_config(max_body_size=65536), callbacks=callbacks)
    status, body, _ = await call(app, "POST", "/jobs", json={"jobs": jobs})
    assert status == 202, body
    assert [new.callback_url for new in gateway.enqueued] == [None, "http://127.0.0.1:9000/done"]


# -- refused: nothing is enqueued ------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "jobs is required"),
        (b"{", "malformed JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"jobs": {}}', "jobs must be a list"),
        (b'{"jobs": []}', "jobs is empty"),
        (b'{"jobs": [], "extra": 1}', "unknown field 'extra'"),
        (b'{"jobs": [{"plugin": "echo", "command": "poll"}, 3]}', "jobs[1] must be a JSON object"),
    ],
)
async def test_bad_batch_bodies_are_400(
    app: QuartTrio, gateway: CountingGateway, data: bytes, fragment: str
) -> None:
    status, body, _ = await call(app, "POST", "/jobs", data=data)
    assert status == 400, body
    assert fragment in body["error"]
    assert gateway.calls == []


async def test_more_than_1000_jobs_is_400(app: QuartTrio, gateway: CountingGateway) -> None:
    jobs = [poll() for _ in range(MAX_BATCH_JOBS + 1)]
    status, body, _ = await call(app, "POST", "/jobs", json={"jobs": jobs})
    assert status == 400
    assert "1001 jobs" in body["error"]
    assert "at most 1000" in body["error"]
    assert gateway.calls == []


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ({"command": "poll"}, "jobs[3].plugin is required"),
        ({"plugin": "echo"}, "jobs[3].command is required"),
        ({"plugin": 7, "command": "poll"}, "jobs[3].plugin must be a non-empty string"),
        ({"plugin": "nope", "command": "poll"}, "jobs[3].plugin: unknown plugin 'nope'"),
        ({"plugin": "echo", "command": "nope"}, "jobs[3].command: plugin 'echo' has no command"),
        (poll(payload=[1]), "jobs[3].payload must be a JSON object, not an array"),
        (poll(timeout=0), "jobs[3].timeout must be longer than zero"),
        (poll(timeout="soon"), "jobs[3].timeout: "),
        (poll(timeout=61), "jobs[3].timeout 61s is longer than this command's limit of 60s"),
        (poll(max_attempts=0), "jobs[3].max_attempts must be from 1 to 100"),
        (poll(dedupe_key=""), "jobs[3].dedupe_key must not be empty"),
        (poll(extra=1), "unknown field 'extra' in jobs[3]"),
    ],
)
async def test_an_invalid_job_refuses_the_whole_batch_naming_its_index(
    app: QuartTrio, gateway: CountingGateway, bad: dict[str, Any], fragment: str
) -> None:
    jobs = [poll(), poll(), poll(), bad, poll()]
    status, body, _ = await call(app, "POST", "/jobs", json={"jobs": jobs})
    assert status == 400, body
    assert fragment in body["error"]
    assert gateway.calls == []
    assert gateway.enqueued == []


async def test_the_first_invalid_job_is_the_one_named(app: QuartTrio) -> None:
    jobs = [poll(), poll(timeout=0), poll(max_attempts=0)]
    status, body, _ = await call(app, "POST", "/jobs", json={"jobs": jobs})
    assert status == 400
    assert body["error"].startswith("jobs[1].timeout")


async def test_a_body_over_the_limit_is_413(gateway: CountingGateway) -> None:
    app = create_app(cast(Gateway, gateway), api_config())
    jobs = [poll(payload={"pad": "x" * 100}) for _ in range(50)]
    status, body, _ = await call(app, "POST", "/jobs", json={"jobs": jobs})
    assert status == 413
    assert "larger than the limit" in body["error"]
    assert gateway.calls == []


async def test_a_query_string_is_400(app: QuartTrio, gateway: CountingGateway) -> None:
    status, body, _ = await call(
        app, "POST", "/jobs", json={"jobs": [poll()]}, query_string={"x": "1"}
    )
    assert status == 400
    assert "unknown query parameter 'x'" in body["error"]
    assert gateway.calls == []


# -- scopes: each job needs the scope of its command's type ----------------------------


@pytest.mark.parametrize(
    ("who", "commands", "expected"),
    [
        ("ro", ["poll", "health"], 202),
        ("reader", ["poll"], 202),
        ("rw", ["poll", "handle"], 202),
        ("admin", ["handle"], 202),
        ("ro", ["poll", "poll", "handle"], 403),
        ("reader", ["handle"], 403),
        ("jobsro", ["poll"], 403),
    ],
)
async def test_batch_scopes_follow_each_command(
    app: QuartTrio, gateway: CountingGateway, who: str, commands: list[str], expected: int
) -> None:
    jobs = [{"plugin": "echo", "command": c} for c in commands]
    status, body, headers = await call(app, "POST", "/jobs", who=who, json={"jobs": jobs})
    assert status == expected, body
    if expected == 403:
        index = next(i for i, c in enumerate(commands) if c == "handle" or who == "jobsro")
        assert f"(jobs[{index}])" in body["error"]
        assert ("plugin:rw" if commands[index] == "handle" else "plugin:ro") in body["error"]
        assert 'error="insufficient_scope"' in headers["WWW-Authenticate"]
        assert gateway.calls == []
    else:
        assert gateway.calls == [len(jobs)]


async def test_no_token_is_401(app: QuartTrio, gateway: CountingGateway) -> None:
    status, _, headers = await call(app, "POST", "/jobs", who=None, json={"jobs": [poll()]})
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert gateway.calls == []


# -- the daemon's state --------------------------------------------------------------


@pytest.mark.parametrize("phase", [Phase.DRAINING, Phase.STARTING])
async def test_a_batch_while_not_accepting_is_503(
    app: QuartTrio, gateway: CountingGateway, phase: Phase
) -> None:
    gateway.lifecycle.phase = phase
    status, body, _ = await call(app, "POST", "/jobs", json={"jobs": [poll()]})
    assert status == 503
    assert phase.value in body["error"]
    assert gateway.calls == []


async def test_a_store_that_does_not_answer_is_503(
    app: QuartTrio, gateway: CountingGateway
) -> None:
    gateway.fail = ActorUnavailable("no answer within 5s")
    status, body, headers = await call(app, "POST", "/jobs", json={"jobs": [poll()]})
    assert status == 503
    assert "did not answer in time" in body["error"]
    assert headers["Retry-After"] == "1"


# -- documented --------------------------------------------------------------------------


async def test_the_batch_route_is_in_the_openapi_document(app: QuartTrio) -> None:
    status, doc, _ = await call(app, "GET", "/openapi.json", who=None)
    assert status == 200
    op = doc["paths"]["/jobs"]["post"]
    assert op["operationId"] == "submitJobs"
    assert op["x-required-scope"] == {"read": "plugin:ro", "write": "plugin:rw"}
    assert op["security"] == [{"bearerAuth": []}]
    assert {"202", "400", "401", "403", "413", "503"} <= set(op["responses"])
    request = doc["components"]["schemas"]["BatchRequest"]
    assert request["properties"]["jobs"]["maxItems"] == MAX_BATCH_JOBS
    item = request["properties"]["jobs"]["items"]["properties"]
    trigger = doc["components"]["schemas"]["TriggerRequest"]["properties"]
    assert set(item) == {"plugin", "command", *trigger}
    assert "get" in doc["paths"]["/jobs"]
