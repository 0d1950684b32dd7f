"""Discovery over plain HTTP: an agent finds every command it may call, and calls it.

The builders are tested directly: the example payload of every bundled command and
of schemas chosen to be awkward is one the trigger's own check accepts; the skills
listing leaves out what a token may not call; the per-plugin OpenAPI documents are
valid OpenAPI and their payload schemas still mean what the manifest said.  Then the
real daemon: the index and the manifest answer anyone, the rest only a token; a
read-only token is shown no write command; and the example curls, run by a shell as
printed, start jobs that succeed.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import httpx
import jsonschema
import openapi_spec_validator
import pytest
import referencing
import referencing.jsonschema
import trio
from conftest import BUNDLED_PLUGINS, TOKENS, DaemonFactory, api_client, finished_job
from test_web_api import FakeGateway, api_config
from werkzeug.exceptions import MethodNotAllowed

from chamberlain.actors.gateway import Gateway
from chamberlain.config import PipelineConfig, PluginConfig, StepConfig
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.plugins.manifest import CommandSpec, CommandType, Manifest, load_manifest
from chamberlain.web.app import create_app
from chamberlain.web.auth import grants
from chamberlain.web.catalogue import describe_plugin
from chamberlain.web.discovery import (
    LINKS,
    ai_plugin_manifest,
    base_url,
    example_curl,
    example_payload,
    index_body,
    payload_component,
    plugin_openapi,
    rebase_schema,
    skills_format,
    skills_listing,
    skills_markdown,
)
from chamberlain.web.errors import ApiError
from chamberlain.web.openapi import build_openapi
from chamberlain.web.routes import ROUTES

DOCUMENT = build_openapi(ROUTES)
BASE = "http://gw.example:8080"


def bundled() -> list[BoundPlugin]:
    return [
        BoundPlugin(
            manifest=load_manifest(path / "manifest.yaml"), settings=PluginConfig(), parallelism=1
        )
        for path in sorted(BUNDLED_PLUGINS.iterdir())
        if (path / "manifest.yaml").exists()
    ]


def accepted_by_trigger(schema: Mapping[str, Any], payload: Any) -> bool:
    """Whether the trigger's own check (the command's compiled input_schema) takes it."""
    spec = CommandSpec(name="c", type=CommandType.READ, input_schema=schema)
    try:
        spec.check_payload(payload)
    except ValueError:
        return False
    return True


def declared(name: str) -> jsonschema.protocols.Validator:
    """A validator of the component schema ``name`` of the daemon's /openapi.json."""
    root = {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]}
    return jsonschema.Draft202012Validator(root)


# -- example payloads ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plugin", "command"),
    [(p.name, c.name) for p in bundled() for c in p.manifest.commands],
)
def test_every_bundled_command_has_an_example_its_trigger_accepts(
    plugin: str, command: str
) -> None:
    (bound,) = [p for p in bundled() if p.name == plugin]
    spec = bound.command(command)
    assert spec is not None
    described = {c["name"]: c for c in describe_plugin(bound)["commands"]}
    example = example_payload(described[command]["input_schema"])
    assert example is not None
    spec.check_payload(example)
    for name in (spec.input_schema or {}).get("required", ()):
        assert name in example


REFERENCES = "references into $defs, nested and recursive"
TRICKY: dict[str, dict[str, Any]] = {
    "a required string of some length": {
        "type": "object",
        "required": ["prompt"],
        "properties": {"prompt": {"type": "string", "minLength": 12}},
    },
    REFERENCES: {
        "type": "object",
        "required": ["tree", "count"],
        "properties": {"tree": {"$ref": "#/$defs/node"}, "count": {"$ref": "#/$defs/positive"}},
        "$defs": {
            "positive": {"type": "integer", "exclusiveMinimum": 0},
            "node": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
            },
        },
    },
    "oneOf whose branches exclude each other": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"a": {}, "b": {}},
        "oneOf": [
            {"required": ["a"], "properties": {"a": {"type": "boolean"}}},
            {"required": ["b"], "properties": {"b": {"type": "null"}}},
        ],
    },
    "anyOf where only the last branch can be met": {
        "type": "object",
        "anyOf": [
            {"required": ["x"], "properties": {"x": False}},
            {"required": ["y"], "properties": {"y": {"type": "integer", "minimum": 3}}},
        ],
    },
    "allOf that splits required from properties": {
        "allOf": [
            {"type": "object", "required": ["x", "y"]},
            {"properties": {"x": {"type": "integer", "minimum": 10}}},
            {"properties": {"y": {"type": "string", "format": "date-time"}}},
        ]
    },
    "bounds and a multiple": {
        "type": "object",
        "required": ["n", "f"],
        "properties": {
            "n": {"type": "integer", "minimum": 5, "maximum": 7, "multipleOf": 3},
            "f": {"type": "number", "exclusiveMinimum": 1.5, "exclusiveMaximum": 1.75},
        },
    },
    "patterns, met by the examples the manifest states": {
        "type": "object",
        "required": ["id", "code"],
        "properties": {
            "id": {"type": "string", "pattern": "^[a-z]{3}-\\d{2}$", "examples": ["abc-12"]},
            "code": {
                "type": "string",
                "pattern": "^(?:foo|bar)[0-9a-f]{8}$",
                "examples": ["nope", "foo0123abcd"],
            },
        },
    },
    "arrays: a tuple, unique items, contains": {
        "type": "object",
        "required": ["pair", "tags", "has_five"],
        "properties": {
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "minItems": 2,
                "items": False,
            },
            "tags": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 3,
                "uniqueItems": True,
            },
            "has_five": {"type": "array", "items": {"type": "integer"}, "contains": {"const": 5}},
        },
    },
    "dependentRequired, minProperties, patternProperties": {
        "type": "object",
        "required": ["a", "S_name"],
        "minProperties": 4,
        "dependentRequired": {"a": ["b"]},
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "patternProperties": {"^S_": {"type": "string", "maxLength": 3}},
        "additionalProperties": {"type": "boolean"},
    },
    "a nullable string no longer than two": {
        "type": "object",
        "required": ["x"],
        "properties": {"x": {"type": ["null", "string"], "maxLength": 2}},
    },
    "draft-07 with definitions": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "required": ["a"],
        "properties": {"a": {"$ref": "#/definitions/small"}},
        "definitions": {"small": {"type": "number", "exclusiveMinimum": 1.5, "maximum": 2}},
    },
    "draft-04 with a boolean exclusiveMinimum": {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "required": ["a"],
        "properties": {"a": {"type": "integer", "minimum": 3, "exclusiveMinimum": True}},
    },
    "no type at the top": {"required": ["q"], "properties": {"q": {"enum": [1, "one"]}}},
}


@pytest.mark.parametrize("schema", TRICKY.values(), ids=TRICKY.keys())
def test_an_awkward_schema_still_gets_an_example_its_trigger_accepts(
    schema: dict[str, Any],
) -> None:
    example = example_payload(schema)
    assert example is not None
    assert accepted_by_trigger(schema, example), example


def test_the_values_a_schema_states_are_used_and_required_strings_are_named() -> None:
    schema = {
        "type": "object",
        "required": ["level", "kind", "prompt"],
        "properties": {
            "level": {"enum": ["low", "high"]},
            "kind": {"const": "k"},
            "prompt": {"type": "string"},
            "mode": {"type": "string", "default": "fast"},
            "colour": {"type": "string", "examples": ["teal"]},
            "extra": {"type": "string"},
        },
    }
    # Optional properties appear only when the schema gives them a value.
    assert example_payload(schema) == {
        "level": "low",
        "kind": "k",
        "prompt": "<prompt>",
        "mode": "fast",
        "colour": "teal",
    }


def test_a_stated_example_is_used_only_when_the_schema_accepts_it() -> None:
    schema = {
        "type": "object",
        "required": ["n"],
        "properties": {"n": {"type": "integer"}},
        "examples": [{"n": "not a number"}, {"n": 42}],
    }
    assert example_payload(schema) == {"n": 42}


def test_no_schema_takes_an_empty_payload() -> None:
    assert example_payload(None) == {}


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string"},
        {"type": "object", "required": ["x"], "properties": {"x": False}},
        {"type": "object", "required": ["self"], "properties": {"self": {"$ref": "#"}}},
        {
            "type": "object",
            "required": ["x"],
            "properties": {"x": {"type": "string", "pattern": "^a$", "minLength": 2}},
        },
        {
            "type": "object",
            "required": ["id"],
            "properties": {"id": {"type": "string", "pattern": "^[a-z]{3}-\\d{2}$"}},
        },
    ],
    ids=[
        "not an object",
        "a property nothing fits",
        "endless recursion",
        "no string fits",
        "a pattern with no example stated",
    ],
)
def test_a_schema_nothing_can_meet_gets_no_example(schema: dict[str, Any]) -> None:
    assert example_payload(schema) is None


# -- the example curl and the base URL ---------------------------------------------------


def test_the_example_curl_sends_the_payload_whatever_it_holds() -> None:
    payload = {"text": 'it\'s $HOME `and` "quotes"', "n": 1}
    argv = shlex.split(example_curl(f"{BASE}/plugin/echo/handle", payload))
    assert argv[:4] == ["curl", "-sS", "-X", "POST"]
    assert argv[4] == f"{BASE}/plugin/echo/handle"
    assert json.loads(argv[argv.index("-d") + 1]) == {"payload": payload}
    # The token is the shell's to expand: it is in double quotes, not single.
    assert '"Authorization: Bearer $TOKEN"' in example_curl(BASE, payload)


@pytest.mark.parametrize(
    ("host", "proto", "expected"),
    [
        ("gw.example:8080", None, "http://gw.example:8080"),
        ("[::1]:9000", None, "http://[::1]:9000"),
        ("gw.example", "https", "https://gw.example"),
        ("gw.example", "HTTPS, http", "https://gw.example"),
        ("gw.example", "gopher", "http://gw.example"),
        (None, None, "http://127.0.0.1:8080"),
        ("evil.example/'; rm -rf ~", None, "http://127.0.0.1:8080"),
        ("", None, "http://127.0.0.1:8080"),
    ],
)
def test_the_base_url_is_the_host_the_client_used_when_it_is_a_host(
    host: str | None, proto: str | None, expected: str
) -> None:
    assert base_url(host, proto, "127.0.0.1:8080") == expected


@pytest.mark.parametrize(
    ("values", "accept", "expected"),
    [
        (None, None, "json"),
        (None, "*/*", "json"),
        (None, "text/markdown", "markdown"),
        (None, "text/markdown, application/json;q=0.5", "markdown"),
        (None, "application/json, text/markdown;q=0.9", "json"),
        (None, "text/*", "markdown"),
        (("markdown",), "application/json", "markdown"),
        (("json",), "text/markdown", "json"),
    ],
)
def test_the_form_of_skills_follows_format_then_accept(
    values: tuple[str, ...] | None, accept: str | None, expected: str
) -> None:
    assert skills_format(values, accept) == expected


def test_an_unknown_format_is_400_naming_the_two_there_are() -> None:
    with pytest.raises(ApiError) as refused:
        skills_format(("yaml",), None)
    assert refused.value.status == 400
    assert "json or markdown" in refused.value.message


# -- the skills listing -------------------------------------------------------------------

PIPELINES = (
    PipelineConfig(
        name="both",
        on="echo.health",
        execution_mode="synchronous",
        steps=(StepConfig(id="one", uses="echo.handle"), StepConfig(id="two", uses="echo.poll")),
    ),
    PipelineConfig(name="later", on="manual.later", steps=(StepConfig(uses="echo.handle"),)),
)


def listing_for(scopes: set[str]) -> dict[str, Any]:
    return skills_listing(
        [describe_plugin(p) for p in bundled()],
        PIPELINES,
        token="t",
        can=lambda scope: grants(scopes, scope),
        base=BASE,
        synchronous=lambda p, c: "both" if (p, c) == ("echo", "health") else None,
        step_ids=lambda name: ("one", "two") if name == "both" else ("step_1",),
    )


def every_command() -> list[tuple[str, str, str]]:
    return [(p.name, c.name, c.type.value) for p in bundled() for c in p.manifest.commands]


def test_a_read_only_token_is_shown_every_read_command_and_nothing_else() -> None:
    listing = listing_for({"plugin:ro"})
    declared("SkillList").validate(listing)
    shown = {(s["plugin"], s["command"]) for s in listing["skills"]}
    reads = {(p, c) for p, c, kind in every_command() if kind == "read"}
    assert shown == reads
    assert all(s["kind"] == "plugin" and s["scope"] == "plugin:ro" for s in listing["skills"])
    assert listing["withheld"] == len(every_command()) - len(reads) + len(PIPELINES)
    assert "plugin:rw" in listing["note"]


def test_a_token_that_may_write_is_shown_everything_with_examples() -> None:
    listing = listing_for({"plugin:rw"})
    declared("SkillList").validate(listing)
    assert listing["withheld"] == 0
    commands = [s for s in listing["skills"] if s["kind"] == "plugin"]
    assert [(s["plugin"], s["command"]) for s in commands] == [
        (p, c) for p, c, _ in every_command()
    ]
    for skill in commands:
        assert skill["tool"] == f"{skill['plugin']}__{skill['command']}"
        assert skill["endpoint"] == f"/plugin/{skill['plugin']}/{skill['command']}"
        argv = shlex.split(skill["example"])
        assert argv[4] == BASE + skill["endpoint"]
        sent = json.loads(argv[argv.index("-d") + 1])
        assert sent == {"payload": skill["example_payload"]}
        if skill["input_schema"] is not None:
            assert accepted_by_trigger(skill["input_schema"], sent["payload"])
    (health,) = [s for s in commands if (s["plugin"], s["command"]) == ("echo", "health")]
    assert health["synchronous_pipeline"] == "both"
    pipelines = {s["pipeline"]: s for s in listing["skills"] if s["kind"] == "pipeline"}
    assert pipelines["both"]["execution_mode"] == "synchronous"
    assert pipelines["both"]["tool"] == "pipeline__both"
    assert "(one then two)" in pipelines["both"]["description"]
    assert pipelines["later"]["execution_mode"] == "asynchronous"
    assert pipelines["later"]["tool"] is None
    assert shlex.split(pipelines["later"]["example"])[4] == f"{BASE}/pipeline/later"


def test_a_command_without_an_example_says_so_rather_than_show_a_refused_one() -> None:
    manifest = Manifest(
        name="strict",
        version="1",
        protocol=2,
        entrypoint=Path("/nonexistent/run"),
        directory=Path("/nonexistent"),
        commands=(
            CommandSpec(
                name="go",
                type=CommandType.READ,
                input_schema={
                    "type": "object",
                    "required": ["x"],
                    "properties": {"x": {"type": "string", "pattern": "^a$", "minLength": 2}},
                },
            ),
        ),
    )
    plugin = BoundPlugin(manifest=manifest, settings=PluginConfig(), parallelism=1)
    listing = skills_listing(
        [describe_plugin(plugin)], (), token="t", can=lambda scope: True, base=BASE
    )
    declared("SkillList").validate(listing)
    (skill,) = listing["skills"]
    assert skill["example_payload"] is None
    assert skill["example"] is None
    assert "No example could be made" in skills_markdown(listing)


def test_the_markdown_shows_each_listed_example_and_nothing_withheld() -> None:
    listing = listing_for({"plugin:ro"})
    text = skills_markdown(listing)
    for skill in listing["skills"]:
        assert skill["example"] in text
        assert f"`{skill['tool']}`" in text
    assert "## Pipelines" not in text
    writes = [f"{p}.{c} " for p, c, kind in every_command() if kind == "write"]
    assert not [w for w in writes if f"### {w}" in text]
    assert f"withheld (not callable with this token): {listing['withheld']}" in text


# -- the per-plugin OpenAPI document ----------------------------------------------------------

AWKWARD = Manifest(
    name="awkward",
    version="2.0.0",
    protocol=2,
    entrypoint=Path("/nonexistent/run"),
    directory=Path("/nonexistent"),
    description="Schemas with references.",
    commands=(
        CommandSpec(name="tree", type=CommandType.WRITE, input_schema=TRICKY[REFERENCES]),
        CommandSpec(
            name="old",
            type=CommandType.READ,
            input_schema=TRICKY["draft-07 with definitions"],
        ),
        CommandSpec(name="free", type=CommandType.READ),
    ),
)


def documents() -> list[BoundPlugin]:
    return [*bundled(), BoundPlugin(manifest=AWKWARD, settings=PluginConfig(), parallelism=1)]


@pytest.mark.parametrize("plugin", documents(), ids=lambda p: p.name)
def test_each_plugin_document_is_valid_openapi_with_a_path_per_command(
    plugin: BoundPlugin,
) -> None:
    document = plugin_openapi(describe_plugin(plugin), DOCUMENT, base=BASE)
    openapi_spec_validator.validate(document)
    declared("PluginOpenApi").validate(document)
    assert document["servers"] == [
        {"url": BASE, "description": document["servers"][0]["description"]}
    ]
    assert set(document["paths"]) == {
        f"/plugin/{plugin.name}/{c.name}" for c in plugin.manifest.commands
    }
    for spec in plugin.manifest.commands:
        operation = document["paths"][f"/plugin/{plugin.name}/{spec.name}"]["post"]
        assert operation["operationId"] == f"{plugin.name}__{spec.name}"
        assert operation["x-required-scope"] == (
            "plugin:ro" if spec.type is CommandType.READ else "plugin:rw"
        )
        assert {"200", "202", "400", "401", "403", "404"} <= set(operation["responses"])
        assert operation["security"] == [{"bearerAuth": []}]
        assert operation["x-required-scope"] in operation["responses"]["403"]["description"]


def payload_validator(document: dict[str, Any], plugin: str, command: str) -> Any:
    """A validator of the body schema of one command, read in its document (so its
    references resolve there, as an OpenAPI tool resolves them)."""
    resource = referencing.Resource.from_contents(
        document, default_specification=referencing.jsonschema.DRAFT202012
    )
    registry = referencing.Registry().with_resource("urn:doc", resource)
    parts = ["paths", f"/plugin/{plugin}/{command}", "post", "requestBody", "content"]
    parts += ["application/json", "schema"]
    pointer = "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)
    return jsonschema.Draft202012Validator({"$ref": f"urn:doc#{pointer}"}, registry=registry)


def test_a_plugin_document_s_body_schema_means_what_the_manifest_said() -> None:
    document = plugin_openapi(describe_plugin(documents()[-1]), DOCUMENT, base=BASE)
    tree = payload_validator(document, "awkward", "tree")
    good = {"tree": {"name": "a", "children": [{"name": "b"}]}, "count": 1}
    assert tree.is_valid({"payload": good, "dedupe_key": "once"})
    # The rebased references still reach $defs: a bad child or count is refused.
    assert not tree.is_valid({"payload": {**good, "count": 0}})
    assert not tree.is_valid({"payload": {"tree": {"name": "a", "children": [{}]}, "count": 1}})
    # As the trigger refuses unknown options, so does the documented body.
    assert not tree.is_valid({"payload": good, "colour": "red"})
    old = payload_validator(document, "awkward", "old")
    assert old.is_valid({"payload": {"a": 2}})
    assert not old.is_valid({"payload": {"a": 1}})
    free = payload_validator(document, "awkward", "free")
    assert free.is_valid({"payload": {"anything": [1, 2]}})
    assert payload_component("awkward", "free") not in document["components"]["schemas"]


def test_a_plugin_document_s_path_is_no_trigger_of_a_command() -> None:
    # Else Allow would name POST there, and a POST would trigger "openapi.json".
    urls = create_app(cast(Gateway, FakeGateway()), api_config()).url_map.bind("gw.example")
    with pytest.raises(MethodNotAllowed) as refused:
        urls.match("/plugin/echo/openapi.json", method="POST")
    assert set(refused.value.valid_methods or ()) == {"GET", "HEAD"}
    assert urls.match("/plugin/echo/openapi.json", method="GET")[0] == "getPluginOpenapi"
    assert urls.match("/plugin/echo/poll", method="POST")[0] == "triggerPlugin"
    assert urls.match("/trigger/echo/openapi.json", method="POST")[0] == "trigger"


def test_a_schema_with_its_own_id_is_left_as_it_is() -> None:
    schema = {"$id": "urn:x", "$ref": "#/$defs/a", "$defs": {"a": {"type": "string"}}}
    assert rebase_schema(schema, "#/components/schemas/p") == schema
    plain = {"items": {"$ref": "#/$defs/a"}, "default": {"$ref": "#/not/a/reference"}}
    assert rebase_schema(plain, "#/components/schemas/p") == {
        "items": {"$ref": "#/components/schemas/p/$defs/a"},
        "default": {"$ref": "#/not/a/reference"},
    }


# -- the index and the manifest ---------------------------------------------------------------


def test_the_index_links_everything_an_agent_needs_with_a_line_each() -> None:
    body = index_body(version="1.2.3", uptime_seconds=12.34567)
    declared("Index").validate(body)
    assert body["uptime_seconds"] == 12.346
    hrefs = {link["href"]: link["description"] for link in body["links"]}
    assert {"/openapi.json", "/docs", "/mcp", "/plugins", "/skills", "/ui"} <= set(hrefs)
    assert all(hrefs.values())
    assert body["discovery"] == {link.rel: link.href for link in LINKS}


def test_the_manifest_points_at_this_daemon_s_openapi_document() -> None:
    manifest = ai_plugin_manifest(BASE)
    declared("AiPluginManifest").validate(manifest)
    assert manifest["api"] == {"type": "openapi", "url": f"{BASE}/openapi.json"}
    assert manifest["auth"] == {"type": "user_http", "authorization_type": "bearer"}
    assert manifest["logo_url"].startswith(BASE)


# -- the real daemon ----------------------------------------------------------------------------

pipeline_config: dict[str, Any] = {
    "plugins": {"sys_exec": {"config": {"command": ["true"]}}},
    "pipelines": [
        {
            "name": "both",
            "on": "echo.health",
            "execution_mode": "synchronous",
            "timeout": "20s",
            "steps": [{"id": "one", "uses": "echo.handle"}],
        },
        {"name": "later", "on": "manual.later", "steps": [{"uses": "echo.handle"}]},
    ],
}

RO_TOKEN = next(str(t["token"]) for t in TOKENS if t["name"] == "ro")
RW_TOKEN = next(str(t["token"]) for t in TOKENS if t["name"] == "rw")


@pytest.mark.e2e
async def test_the_daemon_serves_discovery_to_those_it_should(daemon: DaemonFactory) -> None:
    d = await daemon(pipeline_config)
    async with httpx.AsyncClient(base_url=d.base_url) as anonymous:
        index = await anonymous.get("/")
        assert index.status_code == 200
        assert index.json()["name"] == "chamberlain"
        assert index.json()["uptime_seconds"] >= 0
        assert index.json()["version"] == (await anonymous.get("/healthz")).json()["version"]
        manifest = await anonymous.get("/.well-known/ai-plugin.json")
        assert manifest.status_code == 200
        assert manifest.json()["api"]["url"] == f"{d.base_url}/openapi.json"
        assert (await anonymous.get(manifest.json()["api"]["url"])).status_code == 200
        for path in ("/skills", "/plugin/echo/openapi.json", "/plugin/nope/openapi.json"):
            refused = await anonymous.get(path)
            assert refused.status_code == 401, path
            assert refused.json()["error"]
    async with api_client(d) as admin:
        plugins = (await admin.get("/plugins?detail=1")).json()["plugins"]
        writes = {
            (p["name"], c["name"]) for p in plugins for c in p["commands"] if c["type"] == "write"
        }
        assert writes
        everything = (await admin.get("/skills")).json()
        assert everything["withheld"] == 0
        listed = {
            (s["plugin"], s["command"]) for s in everything["skills"] if s["kind"] == "plugin"
        }
        assert listed == {(p["name"], c["name"]) for p in plugins for c in p["commands"]}
        assert {s["pipeline"] for s in everything["skills"] if s["kind"] == "pipeline"} == {
            "both",
            "later",
        }
        for plugin in plugins:
            document = await admin.get(f"/plugin/{plugin['name']}/openapi.json")
            assert document.status_code == 200
            openapi_spec_validator.validate(document.json())
            assert document.json()["servers"][0]["url"] == d.base_url
        unknown = await admin.get("/plugin/nope/openapi.json")
        assert unknown.status_code == 404
        assert "nope" in unknown.json()["error"]
    async with api_client(d, RO_TOKEN) as reader:
        shown = (await reader.get("/skills")).json()
        names = {(s["plugin"], s["command"]) for s in shown["skills"] if s["kind"] == "plugin"}
        assert names and not names & writes
        assert not [s for s in shown["skills"] if s["kind"] == "pipeline"]
        assert shown["withheld"] == len(writes) + 2
        as_text = await reader.get("/skills", headers={"Accept": "text/markdown"})
        assert as_text.headers["content-type"].startswith("text/markdown")
        assert as_text.text == (await reader.get("/skills?format=markdown")).text
        for skill in shown["skills"]:
            assert skill["example"] in as_text.text
        assert (await reader.get("/skills?format=yaml")).status_code == 400


async def run_example(example: str, token: str) -> dict[str, Any]:
    """Run ``example`` with a POSIX shell as printed, ``TOKEN`` set; its JSON answer."""
    done = await trio.run_process(
        ["sh", "-c", example], env={**os.environ, "TOKEN": token}, capture_stdout=True
    )
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


@pytest.mark.e2e
async def test_each_example_curl_runs_as_printed_and_its_job_succeeds(
    daemon: DaemonFactory,
) -> None:
    d = await daemon(pipeline_config)
    async with api_client(d, RW_TOKEN) as writer:
        skills = {s["name"]: s for s in (await writer.get("/skills")).json()["skills"]}
        for name in ("plugin.echo.poll", "plugin.echo.handle", "plugin.sys_exec.handle"):
            answer = await run_example(skills[name]["example"], RW_TOKEN)
            assert answer["status"] == "queued", answer
            job = await finished_job(writer, answer["job_id"])
            assert job["status"] == "succeeded", job
        # A command a synchronous pipeline starts from answers with the finished tree.
        tree = await run_example(skills["plugin.echo.health"]["example"], RW_TOKEN)
        assert tree["pipeline"] == "both"
        assert tree["status"] == "succeeded", tree
        started = await run_example(skills["pipeline.later"]["example"], RW_TOKEN)
        assert started["pipeline"] == "later"
        job = await finished_job(writer, started["job_id"])
        assert job["status"] == "succeeded", job
