"""The check that holds every answer of the test suite to /openapi.json, itself checked.

:mod:`spec_conformance` fails a test that received an answer the document does not
describe.  Here the validator is given answers built by hand, some the document
describes and some it does not, to show that each kind of drift is reported
(naming method, path, status and what is wrong) and that documented answers pass;
the test hook is driven to show that a report fails the test; one test against the
real daemon shows its answers are recorded and checked against the document it
serves, and one against an app built in the test shows the same for the test
client, with the app's document asked for only once the test is over.  The
document itself is pinned where the issue found it wrong: the trigger's answers
when a synchronous pipeline waits.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, cast

import attrs
import httpx
import pytest
import spec_conformance
import trio
from conftest import DaemonFactory
from spec_conformance import Conformance, Exchange, Recorder, conformance_for
from test_web_api import FakeGateway, api_config, bearer

from chamberlain.actors.gateway import Gateway
from chamberlain.web.app import create_app
from chamberlain.web.openapi import build_openapi
from chamberlain.web.routes import ROUTES

DOCUMENT = json.dumps(build_openapi(ROUTES)).encode()
ORIGIN = "http://127.0.0.1:8080"
JOB_ID = str(uuid.uuid4())


@pytest.fixture(scope="module")
def conformance() -> Conformance:
    return conformance_for(DOCUMENT)


def answer(
    method: str,
    path: str,
    status: int,
    body: Any = None,
    *,
    media_type: str = "application/json",
    raw: bytes | None = None,
    **headers: str,
) -> Exchange:
    """An answer as the recorder keeps it; ``Retry_After=`` sends ``Retry-After``."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    return Exchange(
        method=method,
        url=f"{ORIGIN}{path}",
        status=status,
        headers={
            "content-type": media_type,
            **{name.replace("_", "-").lower(): value for name, value in headers.items()},
        },
        body=data,
    )


ACCEPTED = answer(
    "POST",
    "/trigger/echo/poll",
    202,
    {"job_id": JOB_ID, "status": "queued", "plugin": "echo", "command": "poll"},
    Location=f"/job/{JOB_ID}",
    Retry_After="1",
)


def sync_result(**changes: Any) -> dict[str, Any]:
    return {
        "job_id": JOB_ID,
        "run_id": "run-1",
        "status": "succeeded",
        "pipeline": "three",
        "duration_ms": 12.5,
        "result": {"ok": True},
        "tree": [],
        **changes,
    }


SYNC_TIMEOUT = {
    "job_id": JOB_ID,
    # A trigger's own job starts no run: its steps do.
    "run_id": None,
    "status": "running",
    "timeout_exceeded": True,
    "message": "pipeline three did not finish within 1s; it goes on",
}


# -- answers the document describes ----------------------------------------------------


@pytest.mark.parametrize(
    "exchange",
    [
        pytest.param(ACCEPTED, id="trigger-202"),
        pytest.param(
            answer("POST", "/trigger/echo/poll", 200, sync_result(), Location="/job/x/tree"),
            id="trigger-sync-200",
        ),
        pytest.param(
            answer(
                "POST",
                "/plugin/echo/poll",
                200,
                sync_result(status="failed", result=None, error="boom"),
                Location="/job/x/tree",
            ),
            id="trigger-sync-200-failed",
        ),
        pytest.param(
            answer(
                "POST",
                "/trigger/echo/poll",
                202,
                SYNC_TIMEOUT,
                Location="/job/x/tree",
                Retry_After="1",
            ),
            id="trigger-sync-timeout",
        ),
        pytest.param(
            answer(
                "POST",
                "/pipeline/three",
                200,
                {"pipeline": "three", "status": "skipped", "message": "every step's if: was false"},
            ),
            id="pipeline-skipped",
        ),
        pytest.param(
            answer("GET", "/job/x/stream", 200, media_type="text/event-stream", raw=b"data: ["),
            id="stream-head-only",
        ),
        pytest.param(answer("HEAD", "/healthz", 200, raw=b""), id="head-no-body"),
        pytest.param(answer("GET", "/nope", 404, {"error": "no route"}), id="unknown-path-404"),
        pytest.param(
            answer("DELETE", "/jobs", 405, {"error": "not allowed"}, Allow="GET"),
            id="wrong-method-405",
        ),
        pytest.param(
            answer("GET", "/docs/explorer.js", 200, media_type="text/javascript", raw=b"//"),
            id="explorer-file",
        ),
        pytest.param(
            answer("GET", "/docs/", 308, {"location": "../docs"}, Location="../docs"),
            id="docs-slash-redirect",
        ),
    ],
)
def test_a_documented_answer_passes(conformance: Conformance, exchange: Exchange) -> None:
    assert conformance.problems(exchange) == []


# -- drift, each kind reported ---------------------------------------------------------


@pytest.mark.parametrize(
    ("exchange", "fragments"),
    [
        pytest.param(
            attrs.evolve(ACCEPTED, status=201),
            ["Undocumented status code", "201"],
            id="undocumented-status",
        ),
        pytest.param(
            answer(
                "POST", "/trigger/echo/poll", 202, json.loads(ACCEPTED.body or b""), Location="/"
            ),
            ["Retry-After"],
            id="missing-header",
        ),
        pytest.param(
            attrs.evolve(ACCEPTED, headers={**ACCEPTED.headers, "content-type": "text/html"}),
            ["Content-Type", "text/html"],
            id="wrong-media-type",
        ),
        pytest.param(
            answer("GET", f"/job/{JOB_ID}", 200, {"job_id": 7}),
            ['"status" is a required property', "body.job_id: 7 is not of type"],
            id="body-breaks-schema",
        ),
        pytest.param(
            answer("POST", "/trigger/echo/poll", 200, sync_result(tree=None), Location="/"),
            ["body"],
            id="sync-result-breaks-schema",
        ),
        pytest.param(
            answer("GET", "/job/x/stream", 200, media_type="application/json", raw=b"{}"),
            ["Content-Type"],
            id="stream-of-the-wrong-type",
        ),
        pytest.param(
            answer("GET", "/nope", 404, media_type="text/html", raw=b"<h1>Not Found</h1>"),
            ["a refusal must be JSON"],
            id="html-404-outside",
        ),
        pytest.param(
            answer("GET", "/nope", 405, {"detail": "no"}),
            ['a refusal must be {"error": "..."}'],
            id="405-without-error",
        ),
        pytest.param(
            answer("GET", "/nope", 200, {"ok": True}),
            ["the document describes no such operation"],
            id="success-outside",
        ),
        pytest.param(
            answer("GET", "/favicon.ico", 200, media_type="text/html", raw=b"<svg/>"),
            ["media type 'text/html' is not one its route declares"],
            id="explorer-file-of-the-wrong-type",
        ),
        pytest.param(
            answer("GET", "/favicon.ico", 302, media_type="image/svg+xml", raw=b""),
            ["status 302 is not one its route declares"],
            id="explorer-file-with-an-undeclared-status",
        ),
    ],
)
def test_each_kind_of_drift_is_reported(
    conformance: Conformance, exchange: Exchange, fragments: list[str]
) -> None:
    problems = "\n".join(conformance.problems(exchange))
    for fragment in fragments:
        assert fragment in problems


def test_a_report_names_method_path_and_status() -> None:
    recorder = Recorder(
        exchanges=[(ORIGIN, attrs.evolve(ACCEPTED, status=201))],
        documents={ORIGIN: DOCUMENT},
    )
    (line,) = recorder.problems()
    assert line.startswith("POST /trigger/echo/poll -> 201: Undocumented status code")


def test_without_a_document_only_refusals_are_checked() -> None:
    # A webhook listener serves no document: its refusals are still error objects.
    html = answer("POST", "/hooks/build", 404, media_type="text/html", raw=b"<p>no</p>")
    recorder = Recorder(
        exchanges=[(ORIGIN, html), (ORIGIN, answer("POST", "/hooks/build", 202, {"job_id": "x"}))],
        documents={ORIGIN: None},
    )
    assert [line.split(":")[0] for line in recorder.problems()] == ["POST /hooks/build -> 404"]


def test_a_document_is_compiled_once() -> None:
    assert conformance_for(DOCUMENT) is conformance_for(bytes(DOCUMENT))


# -- the hook --------------------------------------------------------------------------


def _recorded(recorder: Recorder | None) -> Recorder:
    assert recorder is not None
    return recorder


def test_a_test_that_got_an_undocumented_answer_fails() -> None:
    outer = spec_conformance._current
    hook = spec_conformance.pytest_runtest_call(cast(pytest.Item, None))
    next(hook)
    inner = _recorded(spec_conformance._current)
    assert inner is not outer
    inner.exchanges.append((ORIGIN, attrs.evolve(ACCEPTED, status=201)))
    inner.documents[ORIGIN] = DOCUMENT
    with pytest.raises(pytest.fail.Exception, match=r"POST /trigger/echo/poll -> 201"):
        hook.send(None)
    # This test's own answers go on being recorded.
    assert spec_conformance._current is outer


def test_a_failing_test_gets_the_report_added_to_its_error() -> None:
    hook = spec_conformance.pytest_runtest_call(cast(pytest.Item, None))
    next(hook)
    inner = _recorded(spec_conformance._current)
    inner.exchanges.append((ORIGIN, answer("GET", "/nope", 404, media_type="text/html", raw=b"")))
    inner.documents[ORIGIN] = DOCUMENT
    with pytest.raises(AssertionError, match="the test's own failure") as caught:
        hook.throw(AssertionError("the test's own failure"))
    assert any(
        "GET /nope -> 404: a refusal must be JSON" in note for note in caught.value.__notes__
    )


def test_a_test_with_documented_answers_passes() -> None:
    hook = spec_conformance.pytest_runtest_call(cast(pytest.Item, None))
    next(hook)
    inner = _recorded(spec_conformance._current)
    inner.exchanges.append((ORIGIN, ACCEPTED))
    inner.documents[ORIGIN] = DOCUMENT
    with pytest.raises(StopIteration):
        hook.send(None)


# -- against the daemon ------------------------------------------------------------------


@pytest.mark.e2e
async def test_answers_of_the_daemon_are_recorded_and_checked_against_its_document(
    daemon: DaemonFactory,
) -> None:
    d = await daemon()
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as c:
        accepted = await c.post("/trigger/echo/poll", json={})
        page = await c.get("/docs/", follow_redirects=True)
        icon = await c.get("/favicon.ico")
        missing = await c.get("/nope")
    assert accepted.status_code == 202
    assert [r.status_code for r in page.history] == [308]
    assert page.status_code == 200 and page.url.path == "/docs"
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert missing.status_code == 404
    recorder = _recorded(spec_conformance._current)
    seen = {(e.method, e.path, e.status) for _, e in recorder.exchanges}
    assert seen >= {
        ("POST", "/trigger/echo/poll", 202),
        ("GET", "/docs/", 308),
        ("GET", "/docs", 200),
        ("GET", "/favicon.ico", 200),
        ("GET", "/nope", 404),
    }
    document = recorder.documents[f"{d.base_url}@0"]
    assert document is not None
    assert json.loads(document)["openapi"] == "3.1.0"
    assert list(recorder.problems()) == []
    # The same answer with a status the daemon's document does not give is reported.
    (origin, trigger) = next(
        (origin, e) for origin, e in recorder.exchanges if e.path == "/trigger/echo/poll"
    )
    drifted = Recorder(
        exchanges=[(origin, attrs.evolve(trigger, status=201))], documents=recorder.documents
    )
    assert [line.split(":")[0] for line in drifted.problems()] == ["POST /trigger/echo/poll -> 201"]

    # A reload may change the routes (webhook endpoints): what follows it is checked
    # against the document the daemon serves from then on.
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as c:
        assert (await c.post("/system/reload")).status_code == 200
        assert (await c.get("/healthz")).status_code == 200
    origins = [origin for origin, e in recorder.exchanges if e.path == "/healthz"]
    assert origins == [f"{d.base_url}@1"]
    assert recorder.documents[f"{d.base_url}@1"] is not None


def test_answers_of_an_app_are_recorded_and_its_document_asked_for_after_the_test() -> None:
    app = create_app(cast(Gateway, FakeGateway()), api_config())

    async def ask() -> int:
        response = await app.test_client().get("/jobs", headers=bearer("jobsro"))
        return response.status_code

    assert trio.run(ask) == 200
    recorder = _recorded(spec_conformance._current)
    ((origin, exchange),) = [(o, e) for o, e in recorder.exchanges if e.path == "/jobs"]
    assert (exchange.method, exchange.status) == ("GET", 200)
    # Nothing is asked of the app while the test runs: its access log and metrics
    # show only the test's own requests.
    assert origin not in recorder.documents
    recorder.fetch_app_documents()
    document = recorder.documents[origin]
    assert document is not None and json.loads(document)["openapi"] == "3.1.0"
    assert list(recorder.problems()) == []


# -- the document, where the issue found it wrong ---------------------------------------------


def test_the_trigger_documents_the_answers_of_a_synchronous_pipeline() -> None:
    doc = json.loads(DOCUMENT)
    for path in ("/trigger/{plugin}/{command}", "/plugin/{plugin}/{command}"):
        responses = doc["paths"][path]["post"]["responses"]
        done = responses["200"]["content"]["application/json"]["schema"]
        assert done == {
            "oneOf": [
                {"$ref": "#/components/schemas/TriggerDuplicate"},
                {"$ref": "#/components/schemas/SyncResult"},
            ]
        }
        waiting = responses["202"]["content"]["application/json"]["schema"]
        assert waiting == {
            "oneOf": [
                {"$ref": "#/components/schemas/TriggerAccepted"},
                {"$ref": "#/components/schemas/SyncTimeout"},
            ]
        }
        assert {name: h["required"] for name, h in responses["202"]["headers"].items()} == {
            "Location": True,
            "Retry-After": True,
        }
        assert "api.max_concurrent_sync" in responses["503"]["description"]
    timeout = doc["components"]["schemas"]["SyncTimeout"]
    assert timeout["properties"]["timeout_exceeded"] == {"const": True}
