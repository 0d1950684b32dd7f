"""A pytest plugin: every answer the tests get from the API is one its /openapi.json describes.

Registered from ``conftest.py``.  It records each response a test receives from
Chamberlain's HTTP API: over httpx (its transport is wrapped) from a daemon run as
a subprocess or behind hypercorn in the test's process, and through Quart's test
client from an app the test built (route-level tests: the real app before a fake
Gateway).  A response is the API's when it carries the two headers the app sets on
every answer (``X-Request-Id`` and ``X-Content-Type-Options: nosniff``); anything
else (a receiver a test runs itself, a mock transport) is left alone.  Requests
that are deliberately malformed go over raw sockets and are outside, as are the
event streams read by ``sse_client`` (raw sockets too).

After each test its answers are checked against the document of the listener or
app that gave them.  A listener's is fetched once per test, over the test's own
client right after its first answer from there (so no connection is added, and
the listener is still up); an app's is asked for once the test is over (so no
request shows in what the test counts).  Each distinct document is compiled once
per session: documents differ only by the webhook endpoints a daemon's config
adds.  The checks are schemathesis' response checks: the status is documented for
the operation, the media type is the documented one, the headers documented as
always sent are there, and a JSON body matches its schema.  An event stream is
checked for status and media type only, as is a body the test did not read to its
end.  An answer on a path the document does not describe must be either a route
the app serves outside it (the explorer's files, with a status and media type its
route declares) or a refusal (404, 405 ...) in the ``{"error": ...}`` JSON every
refusal is; so must every refusal from a listener without a document (a webhook
listener, or one that went away before its document could be fetched).

A test that received an undocumented answer fails with the method, path, status
and what is wrong; when it failed anyway, the same lines are added to its error.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from typing import Any

import attrs
import httpx
import pytest
import requests
import schemathesis
import trio
from quart.testing import QuartClient
from schemathesis import checks
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.transport import Response
from werkzeug.datastructures import Headers as WerkzeugHeaders

from chamberlain.web.routes import ROUTES

#: The headers the app puts on every answer (see chamberlain.web.app).
_MARKS = ("x-request-id", "x-content-type-options")
_STREAM = "text/event-stream"


@attrs.frozen(kw_only=True)
class Exchange:
    """One answer a test received: what was asked, and what came back."""

    method: str
    url: str
    status: int
    headers: Mapping[str, str]
    #: The whole body; None when only the head can be checked (a stream, or a body
    #: the test stopped reading).
    body: bytes | None

    @property
    def path(self) -> str:
        """The request's path, without its query."""
        return httpx.URL(self.url).path

    @property
    def media_type(self) -> str:
        """The answer's media type, without parameters."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def describe(self) -> str:
        """``GET /job/x -> 200``: how a problem names the answer."""
        return f"{self.method} {self.path} -> {self.status}"


def is_daemon_answer(headers: httpx.Headers | WerkzeugHeaders) -> bool:
    """True for an answer of Chamberlain's API (every one carries both marks).

    Both kinds of headers match names without regard to case.
    """
    return all(name in headers for name in _MARKS)


def _hidden_routes() -> dict[tuple[str, str], tuple[frozenset[int], frozenset[str]]]:
    """(method, path) -> (statuses, media types) of the routes served outside the document."""
    return {
        (route.method, route.path): (
            frozenset(r.status for r in route.responses) | {500},
            frozenset(r.media_type for r in route.responses),
        )
        for route in ROUTES
        if not route.in_spec
    }


def _error_problems(exchange: Exchange) -> list[str]:
    """What is wrong with a refusal, which must be ``{"error": "..."}`` JSON."""
    if exchange.media_type != "application/json":
        return [f"a refusal must be JSON, got {exchange.media_type or 'no media type'!r}"]
    if exchange.body is None or exchange.method == "HEAD":
        return []
    try:
        body = json.loads(exchange.body)
    except ValueError as exc:
        return [f"a refusal must be JSON: {exc}"]
    if not (isinstance(body, dict) and isinstance(body.get("error"), str)):
        return [f'a refusal must be {{"error": "..."}}, got {exchange.body[:200]!r}']
    return []


class Conformance:
    """One OpenAPI document, compiled: checks answers against it."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._schema = schemathesis.openapi.from_dict(dict(document))
        self._head_checks = [
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_headers_conformance,
        ]
        self._all_checks = [*self._head_checks, checks.response_schema_conformance]
        self._hidden = _hidden_routes()

    def problems(self, exchange: Exchange) -> list[str]:
        """What is wrong with ``exchange`` under this document (empty: nothing)."""
        # HEAD is answered by the GET route, without a body.
        method = "GET" if exchange.method == "HEAD" else exchange.method
        operation = self._schema.find_operation_by_path(method, exchange.path)
        if operation is None:
            return self._outside_problems(method, exchange)
        whole = (
            exchange.body is not None
            and exchange.method != "HEAD"
            and exchange.media_type != _STREAM
        )
        response = Response(
            status_code=exchange.status,
            headers={name: [value] for name, value in exchange.headers.items()},
            content=exchange.body if whole and exchange.body is not None else b"",
            request=requests.Request(method=exchange.method, url=exchange.url).prepare(),
            elapsed=0.0,
            verify=True,
        )
        try:
            operation.Case(
                path_parameters=_path_values(operation.path, exchange.path)
            ).validate_response(response, checks=self._all_checks if whole else self._head_checks)
        except FailureGroup as group:
            return [_failure_text(failure) for failure in group.exceptions]
        except Failure as failure:
            return [_failure_text(failure)]
        return []

    def _outside_problems(self, method: str, exchange: Exchange) -> list[str]:
        hidden = self._hidden.get((method, exchange.path))
        if hidden is not None:
            statuses, media_types = hidden
            found = []
            if exchange.status not in statuses:
                found.append(f"status {exchange.status} is not one its route declares")
            if exchange.status < 400 and exchange.media_type not in media_types:
                found.append(f"media type {exchange.media_type!r} is not one its route declares")
            if exchange.status >= 400:
                found.extend(_error_problems(exchange))
            return found
        if exchange.status >= 400:
            return _error_problems(exchange)
        return ["the document describes no such operation"]


def _path_values(template: str, path: str) -> dict[str, str]:
    """The values of ``template``'s parameters in ``path`` (``/job/{job_id}``, ``/job/x``)."""
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    found = re.fullmatch(pattern, path)
    return found.groupdict() if found is not None else {}


def _failure_text(failure: Any) -> str:
    instance_path = getattr(failure, "instance_path", None)
    if instance_path is not None:
        # A schema violation: where in the body, and which rule (the schema is long).
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in instance_path)
        named = re.search(r"Schema at (\S+?):", str(failure.message))
        rule = named.group(1) if named else "/".join(str(p) for p in failure.schema_path)
        return f"body{where}: {failure.validation_message} (schema at {rule})"
    message = " ".join(str(failure.message).split())
    return f"{failure.title}: {message[:300]}"


#: Compiled documents, by the digest of their text: one compile per document per session.
_COMPILED: dict[str, Conformance] = {}


def conformance_for(document_text: bytes) -> Conformance:
    """The compiled form of an OpenAPI document, compiled at most once per session."""
    digest = hashlib.sha256(document_text).hexdigest()
    compiled = _COMPILED.get(digest)
    if compiled is None:
        compiled = _COMPILED[digest] = Conformance(json.loads(document_text))
    return compiled


@attrs.define(eq=False)
class Recorder:
    """The answers one test received, by listener, and each listener's document."""

    exchanges: list[tuple[str, Exchange]] = attrs.field(factory=list)
    #: Listener origin (with its reload count) -> its document's text; None: it
    #: serves none (a webhook listener).
    documents: dict[str, bytes | None] = attrs.field(factory=dict)
    #: Listener origin -> reloads it answered 200 to: a reload may change the
    #: routes (webhook endpoints), so each configuration has its own document.
    reloads: dict[str, int] = attrs.field(factory=dict)
    #: In-process apps by origin, whose documents are asked for after the test.
    apps: dict[str, Any] = attrs.field(factory=dict)

    def fetch_app_documents(self) -> None:
        """Ask each app the test talked to for its document (the test is over)."""
        for origin, app in self.apps.items():
            if origin not in self.documents:
                self.documents[origin] = trio.run(_fetch_app_document, app)

    def problems(self) -> Iterator[str]:
        """One line per undocumented answer."""
        for origin, exchange in self.exchanges:
            text = self.documents.get(origin)
            if text is None:
                # No document to check against: a refusal is still an error object.
                found = _error_problems(exchange) if exchange.status >= 400 else []
            else:
                found = conformance_for(text).problems(exchange)
            for problem in found:
                yield f"{exchange.describe()}: {problem}"


_current: Recorder | None = None


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


class _RecordedStream(httpx.AsyncByteStream):
    """A response body passed through to the test, kept for the check once it closes."""

    def __init__(
        self, inner: httpx.AsyncByteStream, on_close: Callable[[bytes | None], Awaitable[None]]
    ) -> None:
        self._inner = inner
        self._on_close = on_close
        self._chunks: list[bytes] = []
        self._complete = False

    def __aiter__(self) -> _RecordedStream:
        self._iterator = self._inner.__aiter__()
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._iterator.__anext__()
        except StopAsyncIteration:
            self._complete = True
            raise
        self._chunks.append(chunk)
        return chunk

    async def aclose(self) -> None:
        await self._inner.aclose()
        await self._on_close(b"".join(self._chunks) if self._complete else None)


_original_handle = httpx.AsyncHTTPTransport.handle_async_request


async def _fetch_document(transport: httpx.AsyncHTTPTransport, origin: str) -> bytes | None:
    """``origin``'s /openapi.json, or None when it serves none."""
    request = httpx.Request("GET", f"{origin}/openapi.json")
    response = await _original_handle(transport, request)
    try:
        body = await response.aread()
    finally:
        await response.aclose()
    return body if response.status_code == 200 else None


async def _recording_handle(
    self: httpx.AsyncHTTPTransport, request: httpx.Request
) -> httpx.Response:
    response = await _original_handle(self, request)
    recorder = _current
    if recorder is None or not is_daemon_answer(response.headers):
        return response
    listener = _origin(request.url)
    origin = f"{listener}@{recorder.reloads.get(listener, 0)}"
    exchange = Exchange(
        method=request.method,
        url=str(request.url),
        status=response.status_code,
        headers=dict(response.headers.items()),
        body=None,
    )
    if exchange.media_type == _STREAM:
        recorder.exchanges.append((origin, exchange))

    async def closed(body: bytes | None) -> None:
        if exchange.media_type != _STREAM:
            encoded = response.headers.get("content-encoding", "identity") != "identity"
            whole = None if encoded else body
            recorder.exchanges.append((origin, attrs.evolve(exchange, body=whole)))
        if origin not in recorder.documents:
            try:
                recorder.documents[origin] = await _fetch_document(self, listener)
            except httpx.TransportError:
                pass  # the listener went away: asked again after its next answer
        if request.url.path == "/system/reload" and exchange.status == 200:
            recorder.reloads[listener] = recorder.reloads.get(listener, 0) + 1

    assert isinstance(response.stream, httpx.AsyncByteStream)
    response.stream = _RecordedStream(response.stream, closed)
    return response


_original_open = QuartClient.open


async def _fetch_app_document(app: Any) -> bytes | None:
    response = await _original_open(app.test_client(), "/openapi.json")
    body = await response.get_data(as_text=False)
    return body if response.status_code == 200 else None


async def _recording_open(self: QuartClient, path: str, **kwargs: Any) -> Any:
    response = await _original_open(self, path, **kwargs)
    recorder = _current
    if recorder is None or not is_daemon_answer(response.headers):
        return response
    if kwargs.get("follow_redirects"):
        # The answer is that of wherever the redirects led, which it does not say.
        return response
    origin = f"app-{id(self.app)}"
    recorder.apps[origin] = self.app
    query = kwargs.get("query_string")
    url = httpx.URL(f"http://app{path}", params=query) if query else httpx.URL(f"http://app{path}")
    recorder.exchanges.append(
        (
            origin,
            Exchange(
                method=kwargs.get("method", "GET").upper(),
                url=str(url),
                status=response.status_code,
                headers={name.lower(): value for name, value in response.headers.items()},
                body=await response.get_data(as_text=False),
            ),
        )
    )
    return response


@pytest.fixture(autouse=True, scope="session")
def _record_daemon_answers() -> Iterator[None]:
    """Route every httpx request and test-client call of the session through the recorder."""
    patch = pytest.MonkeyPatch()
    patch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", _recording_handle)
    patch.setattr(QuartClient, "open", _recording_open)
    try:
        yield
    finally:
        patch.undo()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Record the test's answers, then fail it if any is undocumented."""
    global _current
    previous, recorder = _current, Recorder()
    _current = recorder
    try:
        outcome = yield
    except Exception as exc:
        recorder.fetch_app_documents()
        problems = list(recorder.problems())
        if problems:
            exc.add_note(_report(problems))
        raise
    finally:
        _current = previous
    recorder.fetch_app_documents()
    problems = list(recorder.problems())
    if problems:
        pytest.fail(_report(problems), pytrace=False)
    return outcome


def _report(problems: list[str]) -> str:
    unique = list(dict.fromkeys(problems))
    lines = "\n".join(f"  {line}" for line in unique[:20])
    more = f"\n  ... and {len(unique) - 20} more" if len(unique) > 20 else ""
    return f"answers /openapi.json does not describe:\n{lines}{more}"
