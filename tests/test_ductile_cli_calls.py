"""Ductile's CLI against the real daemon: each HTTP call it makes, made as it makes it.

Go modules cannot be fetched here, so the CLI is not built; each test sends the
request its source (Ductile's ``cmd/ductile``) builds, and checks that every field
the CLI decodes is in the answer with the type its Go struct declares.  Go's
``encoding/json`` fails the whole decode when a field has the wrong type (a
command given as an object where ``[]string`` is declared) and ``time.Time``
accepts RFC 3339 only, so those are what :func:`decodes_as` checks.

* ``ductile plugin list`` (``cmd/ductile/plugin.go`` ``runPluginList``): ``GET
  /plugins``, no token, into ``pluginListResponse``.
* ``ductile plugin run`` (``runPluginRun``): ``POST /plugin/{name}/{command}``
  (command ``poll`` by default) with ``Authorization: Bearer``; with a payload, the
  body ``{"payload": ...}`` and ``Content-Type: application/json``, without one no
  body at all; 200 or 202 into ``triggerResponse``.
* ``ductile job inspect`` reads Ductile's SQLite database directly, which
  Chamberlain does not have; its API form is ``ductile api /job/<id>`` and ``ductile
  api /job/<id>/tree`` (``cmd/ductile/api.go``: GET with the bearer token, any
  status under 400 is success), whose answers Ductile's gateway builds from
  ``JobStatusResponse`` and ``[]JobResultData`` (``internal/api/types.go``).
* ``ductile system reload --api-url`` (``cmd/ductile/system_state.go``
  ``runSystemReload``): ``POST /system/reload`` with the bearer token and no body;
  200 into ``api.ReloadResponse`` (``status``, ``reloaded_at``, ``message``); anything
  else is a failure the CLI prints with the body.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
import yaml
from conftest import DaemonFactory, DaemonProcess, wait_for

pytestmark = pytest.mark.e2e

#: What Go's net/http client sends of its own accord.
GO_HEADERS = {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}

#: Every echo.poll event starts echo.handle: a tree of two jobs.
CONFIG = {"routes": [{"from": "echo", "event_type": "echo.poll", "to": "echo.handle"}]}

#: Go's time.Time.UnmarshalJSON: RFC 3339, fractional seconds optional.
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")

STRING, NULLABLE_STRING, STRINGS = "string", "*string", "[]string"
TIME, RAW = "*time.Time", "json.RawMessage"


def decodes_as(value: Any, fields: dict[str, str]) -> None:
    """Assert that ``value`` decodes into a Go struct with these fields (name -> Go type).

    Every field must be present (Go would decode a missing one as its zero value,
    which the CLI would print); a pointer field may be null.
    """
    assert isinstance(value, dict), value
    for name, kind in fields.items():
        assert name in value, f"{name} missing from {value}"
        got = value[name]
        if kind == STRING:
            assert isinstance(got, str), (name, got)
        elif kind == NULLABLE_STRING:
            assert got is None or isinstance(got, str), (name, got)
        elif kind == STRINGS:
            assert isinstance(got, list), (name, got)
            assert all(isinstance(item, str) for item in got), (name, got)
        elif kind == TIME:
            assert got is None or (isinstance(got, str) and _RFC3339.fullmatch(got)), (name, got)
        else:
            assert kind == RAW, kind


PLUGIN_SUMMARY = {"name": STRING, "version": STRING, "description": STRING, "commands": STRINGS}
TRIGGER_RESPONSE = {"job_id": STRING, "status": STRING, "plugin": STRING, "command": STRING}
JOB_STATUS = {
    "job_id": STRING,
    "status": STRING,
    "plugin": STRING,
    "command": STRING,
    "result": RAW,
    "started_at": TIME,
    "completed_at": TIME,
}
JOB_RESULT_DATA = {
    "job_id": STRING,
    "parent_job_id": NULLABLE_STRING,
    "plugin": STRING,
    "command": STRING,
    "status": STRING,
    "result": RAW,
    "last_error": NULLABLE_STRING,
    "started_at": TIME,
    "completed_at": TIME,
}


def go_client(d: DaemonProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=d.base_url, headers=GO_HEADERS, timeout=15.0)


async def plugin_run(
    d: DaemonProcess, name: str, *, command: str = "poll", payload: str | None = None
) -> httpx.Response:
    """``ductile plugin run <name> [--command] [--payload]`` with ``--api-key rw-token``."""
    headers = {"Authorization": "Bearer rw-token"}
    content = b""
    if payload is not None:
        # json.Marshal(triggerRequest{Payload: raw}): the payload as given, compacted.
        compact = json.dumps(json.loads(payload), separators=(",", ":"))
        content = b'{"payload":' + compact.encode() + b"}"
        headers["Content-Type"] = "application/json"
    async with go_client(d) as c:
        return await c.post(f"/plugin/{name}/{command}", content=content, headers=headers)


async def ductile_api_get(d: DaemonProcess, endpoint: str) -> httpx.Response:
    """``ductile api <endpoint>``: GET with the first configured token, no body."""
    async with go_client(d) as c:
        return await c.get(endpoint, headers={"Authorization": "Bearer jobsro-token"})


async def test_plugin_list_without_a_token_is_refused_as_ductile_refuses_it(
    daemon: DaemonFactory,
) -> None:
    # runPluginList sends no Authorization header.  Ductile's gateway serves
    # /plugins behind its auth middleware too (internal/api/server.go;
    # TestHandleListPlugins_NoAuth expects 401), so the command fails against both.
    d = await daemon()
    async with go_client(d) as c:
        r = await c.get("/plugins")
    assert r.status_code == 401
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["error"]


async def test_plugin_list_decodes_the_listing(daemon: DaemonFactory) -> None:
    # What `ductile plugin list` decodes, fetched as `ductile api /plugins` does.
    d = await daemon()
    async with go_client(d) as c:
        r = await c.get("/plugins", headers={"Authorization": "Bearer ro-token"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"plugins"}
    assert [p["name"] for p in body["plugins"]] == sorted(p["name"] for p in body["plugins"])
    for plugin in body["plugins"]:
        decodes_as(plugin, PLUGIN_SUMMARY)
    (echo,) = (p for p in body["plugins"] if p["name"] == "echo")
    assert echo["version"] == "0.1.0"
    assert echo["commands"] == ["poll", "handle", "health"]


async def test_plugin_run_without_a_payload(daemon: DaemonFactory) -> None:
    d = await daemon()
    r = await plugin_run(d, "echo")
    assert r.status_code in (200, 202), r.text
    body = r.json()
    decodes_as(body, TRIGGER_RESPONSE)
    assert (body["status"], body["plugin"], body["command"]) == ("queued", "echo", "poll")


async def test_plugin_run_with_a_payload(daemon: DaemonFactory) -> None:
    d = await daemon()
    r = await plugin_run(d, "echo", command="handle", payload='{ "mode": "slow", "seconds": 0 }')
    assert r.status_code in (200, 202), r.text
    body = r.json()
    decodes_as(body, TRIGGER_RESPONSE)
    assert (body["status"], body["plugin"], body["command"]) == ("queued", "echo", "handle")
    job = (await ductile_api_get(d, f"/job/{body['job_id']}")).json()
    assert job["event"]["type"] == "api.trigger"
    assert job["event"]["payload"] == {"mode": "slow", "seconds": 0}


async def test_plugin_run_errors_are_printed_from_json(daemon: DaemonFactory) -> None:
    # Any status but 200 and 202 makes the CLI print "API error (<status>): <body>".
    d = await daemon()
    r = await plugin_run(d, "nope")
    assert r.status_code == 404
    assert r.json() == {"error": "unknown plugin 'nope'"}


async def test_job_inspect_through_the_api(daemon: DaemonFactory) -> None:
    d = await daemon(CONFIG)
    root = (await plugin_run(d, "echo")).json()["job_id"]

    async def settled() -> list[dict[str, Any]] | None:
        r = await ductile_api_get(d, f"/job/{root}/tree")
        assert r.status_code == 200, r.text
        tree: list[dict[str, Any]] = r.json()
        done = len(tree) == 2 and all(j["status"] == "succeeded" for j in tree)
        return tree if done else None

    tree = await wait_for(settled, timeout=30)
    for job in tree:
        decodes_as(job, JOB_RESULT_DATA)
    first, child = tree
    assert (first["job_id"], first["parent_job_id"]) == (root, None)
    assert (child["plugin"], child["command"]) == ("echo", "handle")
    assert child["parent_job_id"] == root
    assert child["result"]["status"] == "ok"

    r = await ductile_api_get(d, f"/job/{root}")
    assert r.status_code == 200, r.text
    job = r.json()
    decodes_as(job, JOB_STATUS)
    assert (job["job_id"], job["status"], job["plugin"], job["command"]) == (
        root,
        "succeeded",
        "echo",
        "poll",
    )
    assert job["result"]["status"] == "ok"
    assert job["started_at"] <= job["completed_at"]

    # The object form Chamberlain had, and its notes, on request.
    r = await ductile_api_get(d, f"/job/{child['job_id']}/tree?detail=1")
    assert r.status_code == 200, r.text
    detail = r.json()
    assert detail["root_job_id"] == root
    assert detail["jobs"] == tree
    assert detail["notes"] == []


async def test_system_reload_answers_what_the_cli_prints(daemon: DaemonFactory) -> None:
    d = await daemon()
    config = yaml.safe_load(d.config_path.read_text())
    config["plugins"]["herald"] = {"uses": "echo"}
    d.config_path.write_text(yaml.safe_dump(config))
    async with go_client(d) as c:
        r = await c.post("/system/reload", headers={"Authorization": "Bearer test-key"})
        # 200 into api.ReloadResponse: "Reloaded at <reloaded_at>", then the message.
        assert r.status_code == 200, r.text
        answer = r.json()
        decodes_as(answer, {"status": STRING, "reloaded_at": STRING, "message": STRING})
        assert answer["status"] == "ok"
        assert _RFC3339.fullmatch(answer["reloaded_at"])
        assert answer["message"] == "1 change applied"

        config["service"]["max_workers"] = 0
        d.config_path.write_text(yaml.safe_dump(config))
        r = await c.post("/system/reload", headers={"Authorization": "Bearer test-key"})
    # Anything but 200: the CLI prints "Reload failed (422): <body>" and exits 1.
    assert r.status_code == 422
    assert "service.max_workers" in r.text
