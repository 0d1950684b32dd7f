"""Bad input against the real daemon: fuzzed requests, abusive bodies and headers.

* schemathesis generates requests for every operation in ``/openapi.json`` (with a
  token that may do everything), valid and invalid, and checks that none gets a
  5xx and every answer matches the documented status codes, content type, headers
  and schemas.
* Bodies that are too large, nested too deep or not UTF-8, headers that are too
  long, repeated or malformed, get a 4xx, as ``{"error": ...}`` JSON whenever the
  request reaches the application.  (A request line or header block the HTTP parser
  itself refuses is answered by hypercorn with an empty 400 and a closed connection.)
* Plugin names with ``..``, ``/`` or NUL are only ever looked up in the table of
  loaded plugins: they are 404s and never start a process.
* A refusal sent before the client finished its body does not wedge the
  connection (it used to: the next request on it hung forever).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import DaemonFactory, DaemonProcess
from figures import record

from chamberlain.web.intake import MAX_JSON_DEPTH

pytestmark = pytest.mark.e2e

BODY_LIMIT = 64 * 1024
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
#: Per operation; about 1,100 requests in all for the core API, in ~10 s.
MAX_EXAMPLES = 25
SEED = 8
#: Checks that hold for every operation.  ``positive_data_acceptance`` is left out:
#: some schema-valid values are refused for reasons a schema cannot state (a
#: timeout above that command's limit, ``since`` after ``until``).
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
)
#: Endless Server-Sent Event streams are tested by their own suite.
EXCLUDE_PATHS = r"/stream$"

SCHEMATHESIS_CONFIG = """\
# A body that breaks the schema may also be too large to read (a batch of more than
# 1,000 jobs, each with every option): 413 refuses it as surely as 400 does.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422"]

# Realistic values for the trigger route, so generated bodies reach the job logic
# (the twin route /plugin/{plugin}/{command} keeps fuzzed names).
[[operations]]
include-operation-id = "trigger"
parameters = { plugin = "echo", command = "poll" }
"""


#: A relay ingress with one peer, so its route is in the document and fuzzed too.
RELAY_INGRESS = {
    "tokens": [{"name": "relay-peer", "key": "relay-fuzz-secret"}],
    "remote_ingress": {
        "listen_path": "/ingest/peer",
        # No larger than the API's: the edge limit is the largest any route takes.
        "max_body_size": BODY_LIMIT,
        "peers": [
            {
                "name": "home",
                "enabled": True,
                "secret_ref": "relay-peer",
                "key_id": "v1",
                "accept": ["backup.ready"],
            }
        ],
    },
}


@pytest.fixture
async def api(daemon: DaemonFactory) -> DaemonProcess:
    return await daemon({"api": {"max_body_size": BODY_LIMIT}, **RELAY_INGRESS})


@pytest.mark.slow
async def test_fuzzed_requests_get_no_5xx_and_answers_match_the_schema(
    api: DaemonProcess, tmp_path: Path
) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    report = tmp_path / "report.json"
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        f"{api.base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {api.api_key}",
        "--checks",
        ",".join(CHECKS),
        "--exclude-path-regex",
        EXCLUDE_PATHS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        # One worker: parallel workers trip a CPython 3.11 bug in schemathesis's
        # code generation ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    # Run from the scratch directory: schemathesis keeps a cache where it runs.
    done = await trio.run_process(
        command, capture_stdout=True, capture_stderr=True, check=False, cwd=tmp_path
    )
    output = done.stdout.decode(errors="replace")
    summary = json.loads(report.read_text())
    assert summary["failures"] == [], output[-6000:]
    assert summary["errors"] == [], output[-6000:]
    assert done.returncode == 0, output[-6000:]
    cases = summary["test_cases"]
    assert cases["generated"] > 500
    server_errors = [line for line in api.lines if '"status": 5' in line]
    assert not server_errors, server_errors[:3]
    assert api.proc.returncode is None
    record(
        "test_bad_input::test_fuzzed_requests_get_no_5xx_and_answers_match_the_schema",
        inputs_tried=cases["generated"],
        operations=summary["operations"]["tested"],
        failures=0,
        server_errors=0,
        seed=SEED,
    )


# -- raw HTTP, for what an HTTP client library would not send ------------------------------


async def exchange(api: DaemonProcess, *requests: bytes, timeout: float = 10) -> list[bytes]:
    """Send raw requests on one connection; the raw answers (until the server closes)."""
    host, port = api.base_url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        for data in requests:
            await stream.send_all(data)
        received = b""
        with trio.move_on_after(timeout):
            while (chunk := await stream.receive_some(65536)) and received.count(
                b"HTTP/1.1 "
            ) < len(requests) + 1:
                received += chunk
                if _complete(received, len(requests)):
                    break
    return [b"HTTP/1.1 " + part for part in received.split(b"HTTP/1.1 ")[1:]]


def _complete(received: bytes, wanted: int) -> bool:
    answers = received.split(b"HTTP/1.1 ")[1:]
    if len(answers) < wanted:
        return False
    head, _, body = answers[-1].partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return status, headers, body


def request(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def auth(api: DaemonProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.api_key}"}


def json_error(answer: bytes, status: int) -> str:
    got, headers, body = parse(answer)
    assert got == status, answer[:500]
    assert headers["content-type"] == "application/json", headers
    error: str = json.loads(body)["error"]
    return error


# -- bodies ---------------------------------------------------------------------------


async def test_oversized_bodies_are_refused_before_they_are_read(api: DaemonProcess) -> None:
    async with httpx.AsyncClient(base_url=api.base_url, headers=auth(api)) as client:
        declared = await client.post("/trigger/echo/poll", content=b"x" * (BODY_LIMIT + 1))
        assert declared.status_code == 413
        assert "larger than the limit" in declared.json()["error"]
        # The rest of a body that big is not worth reading: the connection is closed.
        assert declared.headers["connection"] == "close"

        async def chunks() -> Any:
            for _ in range(BODY_LIMIT // 1024 + 8):
                yield b"{" + b" " * 1022 + b"}"

        chunked = await client.post("/trigger/echo/poll", content=chunks())
        assert chunked.status_code == 413
        assert "larger than the limit" in chunked.json()["error"]


async def test_deep_json_is_refused_with_a_400(api: DaemonProcess) -> None:
    def nested(depth: int) -> bytes:
        # The body object is one level; the payload object another.
        inner = "[" * (depth - 2) + "]" * (depth - 2)
        return ('{"payload": {"a": ' + inner + "}}").encode()

    async with httpx.AsyncClient(base_url=api.base_url, headers=auth(api)) as client:
        for depth in (MAX_JSON_DEPTH + 1, 1000, 20_000):
            r = await client.post("/trigger/echo/poll", content=nested(depth))
            assert r.status_code == 400, (depth, r.text)
            assert f"nested more than {MAX_JSON_DEPTH} levels" in r.json()["error"]
        ok = await client.post("/trigger/echo/poll", content=nested(MAX_JSON_DEPTH))
        assert ok.status_code == 202, ok.text
        job = await client.get(ok.headers["location"])
        assert job.status_code == 200  # and it can be read back


async def test_invalid_utf8_gets_a_json_400_or_404(api: DaemonProcess) -> None:
    (body,) = await exchange(
        api, request("POST", "/trigger/echo/poll", b'{"payload": {"a": "\xff\xfe"}}', auth(api))
    )
    assert json_error(body, 400) == "request body is not valid UTF-8"
    (path,) = await exchange(api, request("POST", "/trigger/%FF%FE/poll", b"", auth(api)))
    assert "unknown plugin" in json_error(path, 404)
    (job,) = await exchange(api, request("GET", "/job/%C3%28", b"", auth(api)))
    assert "unknown job" in json_error(job, 404)


# -- headers --------------------------------------------------------------------------


async def test_abusive_headers_get_4xx(api: DaemonProcess) -> None:
    async with httpx.AsyncClient(base_url=api.base_url) as client:
        long_token = await client.get("/jobs", headers={"Authorization": "Bearer " + "a" * 8000})
        assert long_token.status_code == 401
        assert "error" in long_token.json()
        not_bearer = await client.get("/jobs", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert not_bearer.status_code == 401
        assert not_bearer.json()["error"]
        many = {f"X-Filler-{i}": "v" * 40 for i in range(100)}
        crowded = await client.get("/jobs", headers={**many, **auth(api)})
        assert crowded.status_code == 200
        odd_id = await client.get("/ready", headers={"X-Request-Id": "<script>" * 40})
        assert odd_id.status_code == 200
        assert odd_id.headers["x-request-id"].isalnum()  # replaced, not echoed

    (twice,) = await exchange(
        api,
        b"GET /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
        b"Authorization: Bearer " + api.api_key.encode() + b"\r\n\r\n",
    )
    assert twice.startswith(b"HTTP/1.1 401"), twice[:200]
    json_error(twice, 401)

    # Refused by the HTTP parser before the application sees them.
    (bad_length,) = await exchange(
        api, b"POST /trigger/echo/poll HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"
    )
    assert parse(bad_length)[0] == 400
    (huge_header,) = await exchange(
        api, b"GET /ready HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n"
    )
    assert 400 <= parse(huge_header)[0] < 500
    async with httpx.AsyncClient(base_url=api.base_url) as client:
        assert (await client.get("/ready")).status_code == 200  # and the daemon is fine


async def test_a_refusal_before_the_body_arrived_leaves_the_connection_usable(
    api: DaemonProcess,
) -> None:
    """Headers first, then (once the server had its chance to answer) the body."""
    body = b'{"payload": {}}'
    host, port = api.base_url.removeprefix("http://").split(":")
    for path, status in (
        ("/trigger/nope/poll", 404),
        ("/openapi.json", 405),
        ("/trigger/echo/x", 404),
    ):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            head = request("POST", path, body, auth(api))[: -len(body)]
            await stream.send_all(head)
            # Give the server the chance to answer before the body arrives (the old
            # server did, which is what wedged the connection).
            early = b""
            with trio.move_on_after(0.3):
                early = await stream.receive_some(65536)
            await stream.send_all(body)
            await stream.send_all(request("GET", "/ready"))
            received = early
            with trio.fail_after(10):
                while not _complete(received, 2):
                    chunk = await stream.receive_some(65536)
                    assert chunk, f"connection closed after {received[:300]!r}"
                    received += chunk
        first, second = received.split(b"HTTP/1.1 ")[1:3]
        assert parse(b"HTTP/1.1 " + first)[0] == status
        assert parse(b"HTTP/1.1 " + second)[0] == 200


# -- names that look like paths -------------------------------------------------------


def refused(answer: bytes) -> bool:
    """A JSON 404 (no such plugin; or, for an encoded ``/`` the server decoded, no such
    route) or 405 (the decoded path matched a route of another method)."""
    status = parse(answer)[0]
    error = json_error(answer, status)
    return status in (404, 405) and error.startswith(("unknown plugin", "no route", "method"))


async def test_plugin_names_that_look_like_paths_never_reach_the_filesystem(
    api: DaemonProcess,
) -> None:
    names = [
        "..%2Fecho",
        "echo%2F..%2Fecho",
        "%2E%2E",
        "..%2F..%2F..%2Fbin%2Fsh",
        "%2Fbin%2Fsh",
        "echo%00",
        "%00",
        "echo%2Frun.sh",
    ]
    async with httpx.AsyncClient(base_url=api.base_url, headers=auth(api)) as client:
        before = (await client.get("/jobs", params={"limit": 1})).json()["total"]
    for name in names:
        for route in (f"/trigger/{name}/poll", f"/plugin/{name}/poll"):
            (answer,) = await exchange(api, request("POST", route, b"{}", auth(api)))
            assert refused(answer), (route, answer[:300])
        (described,) = await exchange(api, request("GET", f"/plugin/{name}", b"", auth(api)))
        assert refused(described), (name, described[:300])
    # Raw dot segments, which clients normally resolve away before sending.
    (dots,) = await exchange(api, request("POST", "/trigger/../echo/poll", b"{}", auth(api)))
    assert parse(dots)[0] == 404
    async with httpx.AsyncClient(base_url=api.base_url, headers=auth(api)) as client:
        after = (await client.get("/jobs", params={"limit": 1})).json()["total"]
    assert after == before  # no job was created, so no process was started
    assert not [line for line in api.lines if "cannot start" in line]
