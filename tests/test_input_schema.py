"""Payloads checked against their command's ``input_schema``, from unit to daemon.

The unit tests pin the compact form's translation and the wording of a refusal;
the route tests drive the real app against the fake Gateway of :mod:`test_web_api`
(a refused payload is a 400 naming field and rule, and nothing is enqueued); the
e2e tests ask the real daemon, whose bundled echo plugin declares ``seconds: number``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import attrs
import httpx
import pytest
from conftest import DaemonFactory, DaemonProcess, run_cli
from quart_trio import QuartTrio
from test_web_api import FakeGateway, api_config, call, make_plugin

from chamberlain.actors.gateway import Gateway
from chamberlain.plugins.input_schema import (
    InvalidPayload,
    InvalidSchema,
    compile_input_schema,
    is_json_schema,
)
from chamberlain.plugins.manifest import CommandSpec, CommandType, expand_compact_schema
from chamberlain.web.app import create_app

# -- the compact form ----------------------------------------------------------------


def test_the_compact_form_becomes_an_object_schema_of_optional_typed_fields() -> None:
    compact = {"seconds": "number", "mode": "string", "tags": "array", "dry": "boolean"}
    assert expand_compact_schema(compact) == {
        "type": "object",
        "properties": {
            "seconds": {"type": "number"},
            "mode": {"type": "string"},
            "tags": {"type": "array"},
            "dry": {"type": "boolean"},
        },
    }


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"seconds": {"type": "number"}}},
        {"properties": {"seconds": {"type": "number"}}},
        {"$schema": "https://json-schema.org/draft/2020-12/schema"},
        {},
    ],
)
def test_a_json_schema_is_used_as_it_is(schema: dict[str, Any]) -> None:
    assert expand_compact_schema(schema) == schema
    assert is_json_schema(schema)


# -- refusals ------------------------------------------------------------------------


def spec(input_schema: dict[str, Any]) -> CommandSpec:
    return CommandSpec(
        name="handle", type=CommandType.WRITE, input_schema=expand_compact_schema(input_schema)
    )


def refusal(schema: dict[str, Any], payload: dict[str, Any], path: str = "payload") -> str:
    with pytest.raises(InvalidPayload) as info:
        spec(schema).check_payload(payload, path=path)
    return str(info.value)


def test_a_compact_field_of_the_wrong_type_is_named_with_its_rule() -> None:
    assert (
        refusal({"seconds": "number"}, {"seconds": "abc"})
        == "payload.seconds: 'abc' is not of type 'number'"
    )


def test_the_compact_form_allows_absent_and_extra_fields() -> None:
    check = spec({"seconds": "number", "mode": "string"})
    check.check_payload({})
    check.check_payload({"seconds": 1.5, "other": [1, 2]})
    check.check_payload({"seconds": 3})


def test_a_boolean_is_not_a_number() -> None:
    assert refusal({"seconds": "number"}, {"seconds": True}).startswith("payload.seconds: True")


@pytest.mark.parametrize(
    ("schema", "payload", "message"),
    [
        pytest.param(
            {"type": "object", "required": ["url"]},
            {},
            "payload: 'url' is a required property",
            id="required",
        ),
        pytest.param(
            {
                "type": "object",
                "properties": {"items": {"type": "array", "items": {"type": "integer"}}},
            },
            {"items": [1, "two"]},
            "payload.items[1]: 'two' is not of type 'integer'",
            id="array-index",
        ),
        pytest.param(
            {"type": "object", "properties": {"depth": {"type": "integer", "minimum": 1}}},
            {"depth": 0},
            "payload.depth: 0 is less than the minimum of 1",
            id="minimum",
        ),
        pytest.param(
            {"type": "object", "additionalProperties": False, "properties": {"a": {}}},
            {"a": 1, "b": 2},
            "payload: Additional properties are not allowed ('b' was unexpected)",
            id="closed",
        ),
    ],
)
def test_full_json_schema_refusals_name_where_and_why(
    schema: dict[str, Any], payload: dict[str, Any], message: str
) -> None:
    assert refusal(schema, payload) == message


def test_the_path_names_the_payload_given() -> None:
    assert refusal({"seconds": "number"}, {"seconds": "x"}, "jobs[3].payload") == (
        "jobs[3].payload.seconds: 'x' is not of type 'number'"
    )


def test_a_huge_offending_value_is_cut_short() -> None:
    message = refusal({"name": "integer"}, {"name": "x" * 10_000})
    assert message.startswith("payload.name: 'xxx")
    assert len(message) < 400
    assert message.endswith("...")


def test_format_is_an_annotation_only() -> None:
    spec({"type": "object", "properties": {"u": {"format": "uri"}}}).check_payload(
        {"u": "not a uri"}
    )


def test_a_schema_is_compiled_once_when_the_command_is_declared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compiled: list[object] = []
    real = compile_input_schema

    def counting(schema: Any) -> Any:
        compiled.append(schema)
        return real(schema)

    monkeypatch.setattr("chamberlain.plugins.manifest.compile_input_schema", counting)
    command = spec({"seconds": "number"})
    for _ in range(5):
        command.check_payload({"seconds": 1})
    assert len(compiled) == 1


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ({"type": "strin"}, "is not a valid JSON Schema: input_schema.type: "),
        ({"url": "uri"}, "is neither the compact form"),
        ({"$ref": "https://example.invalid/schema.json"}, "cannot be resolved"),
        # Reached only by a payload that has the field: found now all the same, not
        # by the first client as a server error.
        (
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
            "'/$defs/missing' does not exist",
        ),
        (
            {"properties": {"a": {"prefixItems": [{"$ref": "https://example.invalid/x"}]}}},
            "cannot be resolved",
        ),
    ],
)
def test_schemas_no_validator_can_use_are_refused(schema: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidSchema) as info:
        compile_input_schema(schema)
    assert fragment in str(info.value)


def test_references_that_resolve_are_followed_from_their_base() -> None:
    nested = compile_input_schema(
        {
            "$id": "https://schemas.test/root",
            "properties": {
                "a": {
                    # Relative references below resolve against this $id, not the root's.
                    "$id": "https://schemas.test/a",
                    "$defs": {"n": {"type": "integer"}},
                    "properties": {"b": {"$ref": "#/$defs/n"}},
                }
            },
        }
    )
    nested.check({"a": {"b": 1}})
    with pytest.raises(InvalidPayload, match=r"payload\.a\.b: 'x' is not of type 'integer'"):
        nested.check({"a": {"b": "x"}})
    # A "$ref" key inside data (const, enum, ...) is a value, not a reference.
    constant = compile_input_schema({"properties": {"a": {"const": {"$ref": "#/nowhere"}}}})
    constant.check({"a": {"$ref": "#/nowhere"}})


# -- through the app -----------------------------------------------------------------


def seconds_plugin_gateway() -> FakeGateway:
    plugin = make_plugin()
    commands = tuple(
        attrs.evolve(c, input_schema=expand_compact_schema({"seconds": "number"}))
        if c.name in ("handle", "poll")
        else c
        for c in plugin.manifest.commands
    )
    plugin = attrs.evolve(plugin, manifest=attrs.evolve(plugin.manifest, commands=commands))
    return FakeGateway(plugins={"echo": plugin})


@pytest.fixture
def gateway() -> FakeGateway:
    return seconds_plugin_gateway()


@pytest.fixture
def app(gateway: FakeGateway) -> QuartTrio:
    return create_app(cast(Gateway, gateway), api_config())


@pytest.mark.parametrize("route", ["/trigger/echo/handle", "/plugin/echo/poll"])
async def test_a_violating_trigger_is_400_and_nothing_is_enqueued(
    app: QuartTrio, gateway: FakeGateway, route: str
) -> None:
    status, body, _ = await call(app, "POST", route, json={"payload": {"seconds": "abc"}})
    assert status == 400, body
    assert body["error"] == "payload.seconds: 'abc' is not of type 'number'"
    assert gateway.enqueued == []


async def test_a_fitting_trigger_is_202(app: QuartTrio, gateway: FakeGateway) -> None:
    status, body, _ = await call(
        app, "POST", "/trigger/echo/handle", json={"payload": {"seconds": 2.5}}
    )
    assert status == 202, body
    (new,) = gateway.enqueued
    assert new.payload == {"seconds": 2.5}
    # handle's schema is about the payload, not the api.trigger event around it.
    assert new.event is not None
    assert new.event["payload"] == {"seconds": 2.5}


async def test_a_command_without_a_schema_takes_any_payload(
    app: QuartTrio, gateway: FakeGateway
) -> None:
    status, body, _ = await call(
        app, "POST", "/trigger/echo/health", json={"payload": {"seconds": "abc"}}
    )
    assert status == 202, body


async def test_a_violating_batch_job_refuses_the_batch_naming_its_index(
    app: QuartTrio, gateway: FakeGateway
) -> None:
    ok = {"plugin": "echo", "command": "handle", "payload": {"seconds": 1}}
    bad = {"plugin": "echo", "command": "handle", "payload": {"seconds": "abc"}}
    status, body, _ = await call(app, "POST", "/jobs", json={"jobs": [ok, ok, ok, bad]})
    assert status == 400, body
    assert body["error"] == "jobs[3].payload.seconds: 'abc' is not of type 'number'"
    assert gateway.enqueued == []

    status, body, _ = await call(app, "POST", "/jobs", json={"jobs": [ok, ok]})
    assert status == 202, body
    assert len(gateway.enqueued) == 2


async def test_the_openapi_400_mentions_schema_violations(app: QuartTrio) -> None:
    status, spec_doc, _ = await call(app, "GET", "/openapi.json")
    assert status == 200
    for path in ("/trigger/{plugin}/{command}", "/jobs"):
        described = spec_doc["paths"][path]["post"]["responses"]["400"]["description"]
        assert "input_schema" in described, (path, described)


# -- the real daemon -----------------------------------------------------------------


def test_the_bundled_echo_plugin_declares_seconds_a_number() -> None:
    # The e2e tests below rely on it.
    manifest = (Path(__file__).resolve().parent.parent / "plugins/echo/manifest.yaml").read_text()
    assert "seconds: number" in manifest


@pytest.mark.e2e
async def test_the_daemon_refuses_a_payload_breaking_the_manifest(
    daemon: DaemonFactory,
) -> None:
    d: DaemonProcess = await daemon()
    headers = {"Authorization": "Bearer test-key"}
    async with httpx.AsyncClient(base_url=d.base_url, headers=headers, timeout=10.0) as c:
        r = await c.post("/trigger/echo/handle", json={"payload": {"seconds": "abc"}})
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "payload.seconds: 'abc' is not of type 'number'"

        bad = {"plugin": "echo", "command": "handle", "payload": {"seconds": "abc"}}
        ok = {"plugin": "echo", "command": "handle", "payload": {"seconds": 0}}
        r = await c.post("/jobs", json={"jobs": [ok, bad]})
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "jobs[1].payload.seconds: 'abc' is not of type 'number'"

        r = await c.get("/jobs")
        assert r.status_code == 200, r.text
        assert r.json()["jobs"] == []

        r = await c.post("/trigger/echo/handle", json={"payload": {"seconds": 0}})
        assert r.status_code == 202, r.text

        r = await c.get("/plugins?detail=1")
        (echo,) = (p for p in r.json()["plugins"] if p["name"] == "echo")
        (handle,) = (cmd for cmd in echo["commands"] if cmd["name"] == "handle")
        assert handle["input_schema"]["properties"]["seconds"] == {"type": "number"}


def test_chamberlain_run_refuses_a_payload_breaking_the_manifest() -> None:
    config = Path(__file__).resolve().parent.parent / "config.example.yaml"
    done = run_cli(
        "run", "echo", "handle", "--payload", '{"seconds": "abc"}', "--config", str(config)
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().endswith(
        "chamberlain: echo/handle: input_schema refuses the payload:"
        " --payload.seconds: 'abc' is not of type 'number'"
    )
