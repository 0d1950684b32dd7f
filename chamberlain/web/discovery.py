"""Discovery over plain HTTP: how an agent finds every command it may call, and calls it.

Four routes, for agents and for the people who point them here:

- ``GET /`` is the index: name, version, uptime and a link to everything else,
  each with a line saying what it is (public, like ``/healthz``);
- ``GET /skills`` lists every command and pipeline the caller's token may call, each
  with its one-line description, input schema, MCP tool name and an example ``curl``
  that works as printed.  What the token may not call is left out (and counted), so
  an agent is never shown something it would then be refused.  The answer is JSON
  shaped as Ductile's gateway answers it (``internal/api/handlers.go``
  ``handleListSkills``: the same entry fields, and more), or Markdown with
  ``Accept: text/markdown`` or ``?format=markdown``;
- ``GET /plugin/{name}/openapi.json`` is one plugin's commands as an OpenAPI 3.1
  document: each command one path, its ``input_schema`` the request body's
  ``payload``, its answers those of the trigger route;
- ``GET /.well-known/ai-plugin.json`` is the plugin manifest in OpenAI's format.

What the answers hold is built by plain functions (:func:`example_payload`,
:func:`skills_listing`, :func:`skills_markdown`, :func:`plugin_openapi` ...); the
handlers only gather what those need from the request and the daemon.  Absolute
URLs are built from the request's ``Host`` (:func:`base_url`), so what an agent
copies reaches the daemon the way the agent itself did.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
import shlex
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import jsonschema
import jsonschema.validators
import referencing
import referencing.exceptions
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header
from werkzeug.routing import BaseConverter

from chamberlain.config import PipelineConfig
from chamberlain.plugins.manifest import CommandType
from chamberlain.web.agent_tools import pipeline_tool_name, tool_name
from chamberlain.web.auth import PLUGIN_RO, PLUGIN_RW, PUBLIC, Scoped, command_scope
from chamberlain.web.catalogue import NAME_PARAM, describe_plugin
from chamberlain.web.errors import bad_request, not_found
from chamberlain.web.handler import JSON, Call, Reply
from chamberlain.web.health import package_version
from chamberlain.web.intake import NO_QUERY
from chamberlain.web.spec import STRING, Param, ResponseSpec, Route, object_schema, ref

# -- the index -----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Link:
    """One place the index points to: a name, a path, and what is found there."""

    rel: str
    href: str
    description: str


LINKS: tuple[Link, ...] = (
    Link(
        rel="openapi",
        href="/openapi.json",
        description="This API as OpenAPI 3.1: every route, the scope it needs, every answer.",
    ),
    Link(rel="docs", href="/docs", description="The API explorer (Swagger UI), for people."),
    Link(
        rel="mcp",
        href="/mcp",
        description=(
            "The MCP server (streamable HTTP, bearer token): every command the token may"
            " call as a tool."
        ),
    ),
    Link(
        rel="plugins",
        href="/plugins",
        description="The loaded plugins and their commands (plugin:ro).",
    ),
    Link(
        rel="skills",
        href="/skills",
        description=(
            "Every command and pipeline the token may call, with its input schema and an"
            " example curl (plugin:ro); Markdown with Accept: text/markdown."
        ),
    ),
    Link(rel="ui", href="/ui", description="The dashboard, for people."),
    Link(rel="health", href="/healthz", description="Liveness and load figures."),
    Link(
        rel="ai_plugin",
        href="/.well-known/ai-plugin.json",
        description="The plugin manifest, in OpenAI's format.",
    ),
)

NAME = "chamberlain"
DESCRIPTION = (
    "A job gateway: plugin commands and pipelines run as durable, supervised jobs."
    " Agents: read /skills (or connect to /mcp) to find what your token may call."
)


def index_body(*, version: str, uptime_seconds: float) -> dict[str, Any]:
    """What ``GET /`` answers: who this is, and where to go next.

    ``discovery`` maps each link's name to its path, as Ductile's index does, for
    the clients that read that; ``links`` says what each one is.
    """
    return {
        "name": NAME,
        "description": DESCRIPTION,
        "version": version,
        "uptime_seconds": round(uptime_seconds, 3),
        "links": [attrs.asdict(link) for link in LINKS],
        "discovery": {link.rel: link.href for link in LINKS},
    }


# -- absolute URLs -------------------------------------------------------------------

#: A host name or an IP literal (IPv6 in brackets), and an optional port: what a
#: ``Host`` header must be to be echoed into a URL an agent will run.
_HOST = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)(?::[0-9]{1,5})?"
)


def base_url(host: str | None, forwarded_proto: str | None, fallback: str) -> str:
    """The URL this daemon was reached at, without a trailing slash.

    ``host`` is the request's ``Host`` header: the address the client used, which a
    listener on ``0.0.0.0`` cannot know otherwise.  A header that is no host name
    (or absent) gives way to ``fallback``, the listen address, so nothing a client
    sends is echoed into a command line unchecked.  ``X-Forwarded-Proto`` (from a
    TLS-terminating proxy) says whether it is https.
    """
    scheme = "http"
    if forwarded_proto is not None:
        first = forwarded_proto.split(",")[0].strip().lower()
        if first in ("http", "https"):
            scheme = first
    chosen = host.strip() if host is not None else ""
    if not _HOST.fullmatch(chosen):
        chosen = fallback
    return f"{scheme}://{chosen}"


def listen_address(host: str, port: int) -> str:
    """``host:port`` as a URL writes it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def request_base(call: Call) -> str:
    """:func:`base_url` for the request ``call`` is."""
    api = call.site.api
    return base_url(
        call.header("Host"),
        call.header("X-Forwarded-Proto"),
        listen_address(api.host, api.port),
    )


# -- example payloads ----------------------------------------------------------------

#: How deep nested schemas are followed for an example: a recursive schema ends here.
_MAX_DEPTH = 8
#: How many candidates one schema is tried with before it is left without an example.
_MAX_CANDIDATES = 64
#: How many checks one example may take in all.
_MAX_CHECKS = 5000

#: The keywords that state values, tried before anything is made up.
_STATED = ("const", "examples", "default", "enum")

#: A value of each ``format``, to show what is meant (formats are not enforced).
_FORMATS: Mapping[str, str] = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00Z",
    "duration": "PT1M",
    "email": "user@example.com",
    "idn-email": "user@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "/example",
    "iri-reference": "/example",
    "uri-template": "https://example.com/{id}",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "json-pointer": "/example",
    "relative-json-pointer": "0",
    "regex": ".*",
}

#: Keywords that make a schema without ``type`` one of a type, for sampling.
_TYPE_HINTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "object",
        (
            "properties",
            "required",
            "additionalProperties",
            "patternProperties",
            "minProperties",
            "maxProperties",
            "dependentRequired",
            "propertyNames",
        ),
    ),
    (
        "array",
        ("items", "prefixItems", "additionalItems", "minItems", "maxItems", "contains"),
    ),
    ("string", ("minLength", "maxLength", "pattern", "format")),
    ("number", ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")),
)
_EVERY_TYPE = ("string", "integer", "number", "boolean", "object", "array", "null")

_LOWER_BOUNDS = frozenset({"minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"})
_UPPER_BOUNDS = frozenset({"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"})


def _count(value: object, default: int | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _listed(value: object) -> list[Any]:
    if isinstance(value, list):
        return value
    return [] if value is None else [value]


def _same(a: Any, b: Any) -> bool:
    # JSON equality: 1 and true are different values to a schema, not to Python.
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _placeholder(name: str | None) -> str:
    return f"<{name}>" if name else "<text>"


def _merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """``a`` and ``b`` as one schema to sample (an ``allOf``, flattened).

    Only what shapes a sample is combined (properties, required, type, bounds);
    otherwise ``a``'s keyword stands.  Every sample is checked against the schema
    it was made for anyway, so a merge that is too loose costs an example, never a
    wrong one.
    """
    out = dict(a)
    for key, value in b.items():
        if key not in out:
            out[key] = value
            continue
        mine = out[key]
        if key == "properties" and isinstance(mine, Mapping) and isinstance(value, Mapping):
            merged = dict(mine)
            for name, sub in value.items():
                merged[name] = {"allOf": [merged[name], sub]} if name in merged else sub
            out[key] = merged
        elif key == "required" and isinstance(mine, list) and isinstance(value, list):
            out[key] = [*mine, *(name for name in value if name not in mine)]
        elif key == "type":
            theirs = _listed(value)
            both = [t for t in _listed(mine) if t in theirs]
            if "integer" in _listed(mine) and "number" in theirs and "integer" not in both:
                both.append("integer")
            if "number" in _listed(mine) and "integer" in theirs and "integer" not in both:
                both.append("integer")
            out[key] = both
        elif key in _LOWER_BOUNDS and _number(mine) is not None and _number(value) is not None:
            out[key] = max(mine, value)
        elif key in _UPPER_BOUNDS and _number(mine) is not None and _number(value) is not None:
            out[key] = min(mine, value)
    return out


def _types(schema: Mapping[str, Any], prefer: str | None) -> list[str]:
    """The types to sample ``schema`` as, in order: ``prefer`` first, null last."""
    given = schema.get("type")
    if given is not None:
        kinds = [kind for kind in _listed(given) if isinstance(kind, str)]
    else:
        kinds = [kind for kind, keys in _TYPE_HINTS if any(key in schema for key in keys)]
        kinds = kinds or list(_EVERY_TYPE)
    if prefer in kinds:
        kinds.remove(prefer)
        kinds.insert(0, prefer)
    return sorted(kinds, key=lambda kind: kind == "null")


def _strings(schema: Mapping[str, Any], name: str | None) -> Iterator[str]:
    seeds: list[str] = []
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        seeds.append(_FORMATS[fmt])
    seeds.extend((_placeholder(name), "example", "a", "x", "0"))
    least = _count(schema.get("minLength"), 0) or 0
    most = _count(schema.get("maxLength"), None)
    padded: list[str] = []
    for seed in seeds:
        short = max(least - len(seed), 0)
        # Padded with x, or with the seed's own last character (which a pattern
        # such as ^[0-9]+$ keeps accepting).
        padded.extend((seed + "x" * short, seed + (seed[-1:] or "x") * short))
    # What fits whole first: "<name>" cut to "<n" shows nothing.
    yield from (text for text in padded if most is None or len(text) <= most)
    if most is not None:
        yield from (text[:most] for text in padded if len(text) > most)


def _number(value: object) -> float | None:
    """``value`` when it is a finite JSON number (a boolean is none), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return None


def _numbers(schema: Mapping[str, Any], *, integer: bool) -> Iterator[int | float]:
    bounds = {
        key: _number(schema.get(key))
        for key in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")
    }
    low = bounds["minimum"] if bounds["minimum"] is not None else bounds["exclusiveMinimum"]
    high = bounds["maximum"] if bounds["maximum"] is not None else bounds["exclusiveMaximum"]
    seeds: list[float] = [0, 1]
    for bound in bounds.values():
        if bound is not None:
            seeds.extend((bound, bound + 1, bound - 1, math.floor(bound), math.ceil(bound)))
    if low is not None and high is not None:
        seeds.append((low + high) / 2)
    step = _number(schema.get("multipleOf"))
    if step is not None and step > 0:
        first = math.ceil((low if low is not None else 0) / step)
        seeds.extend((first * step, (first + 1) * step, step))
    for seed in seeds:
        if not math.isfinite(seed):
            continue
        whole = float(seed).is_integer()
        if integer and not whole:
            continue
        # 3 rather than 3.0: the same number, as a person would write it.
        yield int(seed) if whole else seed


@attrs.define(eq=False)
class _Sampler:
    """Candidate values for the schemas of one root schema, each checked against it."""

    root: Mapping[str, Any]
    #: Checks left before the search gives up: an intricate schema with no example
    #: must not hold a request up.
    budget: int = _MAX_CHECKS
    _validator: Any = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        draft = jsonschema.validators.validator_for(
            self.root, default=jsonschema.Draft202012Validator
        )
        # An empty registry: no remote $ref is ever fetched to make an example.
        self._validator = draft(self.root, registry=referencing.Registry())

    def valid(self, schema: Any, value: Any) -> bool:
        """Whether ``value`` fits ``schema`` (a part of the root, read in its context);
        False for everything once the budget is spent."""
        if self.budget <= 0:
            return False
        self.budget -= 1
        try:
            return bool(self._validator.evolve(schema=schema).is_valid(value))
        except (referencing.exceptions.Unresolvable, re.error, RecursionError):
            return False

    def first(
        self, schema: Any, name: str | None, depth: int, *, unlike: Sequence[Any] = ()
    ) -> tuple[Any] | None:
        """The first candidate ``schema`` accepts (and unlike each of ``unlike``), or None."""
        for candidate in itertools.islice(self.candidates(schema, name, depth), _MAX_CANDIDATES):
            if any(_same(candidate, other) for other in unlike):
                continue
            if self.valid(schema, candidate):
                return (candidate,)
        return None

    def candidates(
        self, schema: Any, name: str | None, depth: int, prefer: str | None = None
    ) -> Iterator[Any]:
        """Values that may fit ``schema``: the stated ones first, then made-up ones."""
        if schema is True:
            schema = {}
        if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
            return
        folded = self.fold(schema, depth)
        if folded is None:
            return
        yield from _stated(folded)
        alternatives = [
            branch
            for key in ("anyOf", "oneOf")
            if isinstance(folded.get(key), list)
            for branch in folded[key]
        ]
        if alternatives:
            rest = {k: v for k, v in folded.items() if k not in ("anyOf", "oneOf")}
            for branch in alternatives:
                if branch is False:
                    continue
                merged = self.fold({"allOf": [rest, branch]}, depth)
                if merged is not None:
                    yield from self.candidates(merged, name, depth + 1, prefer)
        for kind in _types(folded, prefer):
            yield from self._of_type(kind, folded, name, depth)

    def fold(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any] | None:
        """``schema`` with its ``$ref`` and ``allOf`` merged in; None when one is false."""
        if depth > _MAX_DEPTH:
            return None
        merged = {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
        parts: list[Any] = []
        reference = schema.get("$ref")
        if isinstance(reference, str):
            # An unresolvable reference is left out: what stands beside it is sampled.
            parts.append(self.resolve(reference))
        parts.extend(_listed(schema.get("allOf")))
        for part in parts:
            if part is False:
                return None
            if isinstance(part, Mapping):
                folded = self.fold(part, depth + 1)
                if folded is None:
                    return None
                merged = _merge(merged, folded)
        return merged

    def resolve(self, reference: str) -> Any:
        """What a local reference (``#``, ``#/$defs/x``) points to; None for another."""
        if reference == "#":
            return self.root
        if not reference.startswith("#/"):
            return None
        node: Any = self.root
        for raw in reference[2:].split("/"):
            part = urllib.parse.unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node

    def _of_type(
        self, kind: str, schema: Mapping[str, Any], name: str | None, depth: int
    ) -> Iterator[Any]:
        if kind == "object":
            yield from self._objects(schema, depth)
        elif kind == "array":
            yield from self._arrays(schema, name, depth)
        elif kind == "string":
            yield from _strings(schema, name)
        elif kind in ("integer", "number"):
            yield from _numbers(schema, integer=kind == "integer")
        elif kind == "boolean":
            yield from (True, False)
        elif kind == "null":
            yield None

    def _property_schema(
        self, schema: Mapping[str, Any], properties: Mapping[str, Any], key: str
    ) -> Any:
        if key in properties:
            return properties[key]
        patterns = schema.get("patternProperties")
        if isinstance(patterns, Mapping):
            for pattern, sub in patterns.items():
                try:
                    if re.search(pattern, key):
                        return sub
                except re.error:
                    continue
        extra = schema.get("additionalProperties", True)
        return extra if isinstance(extra, Mapping | bool) else True

    def _objects(self, schema: Mapping[str, Any], depth: int) -> Iterator[dict[str, Any]]:
        found = schema.get("properties")
        properties: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        required = [key for key in _listed(schema.get("required")) if isinstance(key, str)]
        # Optional properties the schema gives a value for show more of the command;
        # they are tried first, then the required properties alone.
        hinted = [
            key
            for key, sub in properties.items()
            if key not in required and isinstance(sub, Mapping) and any(k in sub for k in _STATED)
        ]
        attempts = [required + hinted] + ([required] if hinted else [])
        for keys in attempts:
            built = self._object(schema, properties, keys, set(required), depth)
            if built is not None:
                yield built

    def _object(
        self,
        schema: Mapping[str, Any],
        properties: Mapping[str, Any],
        keys: list[str],
        must: set[str],
        depth: int,
    ) -> dict[str, Any] | None:
        found = schema.get("dependentRequired")
        dependent: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        out: dict[str, Any] = {}
        pending = list(keys)
        while pending:
            key = pending.pop(0)
            if key in out:
                continue
            value = self.first(self._property_schema(schema, properties, key), key, depth + 1)
            if value is None:
                if key in must:
                    return None
                continue
            out[key] = value[0]
            also = [k for k in _listed(dependent.get(key)) if isinstance(k, str)]
            pending.extend(also)
            must.update(also)
        least = _count(schema.get("minProperties"), 0) or 0
        spare = (f"key{n}" for n in itertools.count(1))
        names = itertools.chain((k for k in properties if k not in out), spare)
        for key in itertools.islice(names, len(properties) + least):
            if len(out) >= least:
                break
            if key in out:
                continue
            value = self.first(self._property_schema(schema, properties, key), key, depth + 1)
            if value is not None:
                out[key] = value[0]
        return out

    def _arrays(
        self, schema: Mapping[str, Any], name: str | None, depth: int
    ) -> Iterator[list[Any]]:
        prefix_items = schema.get("prefixItems")
        items = schema.get("items", True)
        if isinstance(items, list):
            # Before draft 2020-12 a list of items is what prefixItems is now.
            prefix_items, items = items, schema.get("additionalItems", True)
        prefix = prefix_items if isinstance(prefix_items, list) else []
        if not isinstance(items, Mapping | bool):
            items = True
        least = _count(schema.get("minItems"), 0) or 0
        most = _count(schema.get("maxItems"), None)
        unique = schema.get("uniqueItems") is True
        contains = schema.get("contains")
        # One item shows what goes in; the fewest allowed is tried next.
        for size in dict.fromkeys((max(least, 1), least)):
            if most is not None and size > most:
                continue
            built: list[Any] = []
            for index in range(size):
                sub = prefix[index] if index < len(prefix) else items
                if index == 0 and isinstance(contains, Mapping | bool):
                    sub = {"allOf": [sub, contains]}
                value = self.first(sub, name, depth + 1, unlike=built if unique else ())
                if value is None:
                    break
                built.append(value[0])
            else:
                yield built


def _stated(schema: Mapping[str, Any]) -> Iterator[Any]:
    """The values ``schema`` itself states: ``const``, ``examples``, ``default``, ``enum``."""
    if "const" in schema:
        yield schema["const"]
    examples = schema.get("examples")
    if isinstance(examples, list):
        yield from examples
    if "default" in schema:
        yield schema["default"]
    enum = schema.get("enum")
    if isinstance(enum, list):
        yield from enum


def example_payload(schema: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A payload ``schema`` (a command's ``input_schema``) accepts, to show in an example.

    The values the schema states come first (``const``, ``examples``, ``default``,
    ``enum``), then a placeholder of the right type for each required property
    (``"<name>"`` for a string, a number within the bounds ...), following
    references, ``allOf``, ``anyOf`` and ``oneOf``.  Optional properties appear only
    when the schema gives them a value.  Every candidate is checked against the
    schema, as a trigger checks its payload, so an example is never one that would
    be refused; None when no candidate passes (a string ``pattern`` none of the
    placeholders meets: the manifest's ``examples`` then give one, a schema no
    object meets).  No schema accepts anything: ``{}``.
    """
    if schema is None:
        return {}
    found = _example_text(json.dumps(schema))
    return None if found is None else dict(json.loads(found))


@functools.lru_cache(maxsize=512)
def _example_text(schema_text: str) -> str | None:
    # Keyed by the schema's text: manifests change only on reload, and every
    # /skills answer asks again for each command.
    schema = json.loads(schema_text)
    sampler = _Sampler(schema)
    for candidate in itertools.islice(
        sampler.candidates(schema, None, 0, prefer="object"), _MAX_CANDIDATES
    ):
        if isinstance(candidate, dict) and sampler.valid(schema, candidate):
            return json.dumps(candidate)
    return None


# -- the skills ----------------------------------------------------------------------

MARKDOWN = "text/markdown"
FORMATS = ("json", "markdown")

FORMAT_PARAM = Param(
    name="format",
    location="query",
    description=(
        "`json` (the default) or `markdown`; without it, `Accept: text/markdown` asks for Markdown."
    ),
    schema={"type": "string", "enum": list(FORMATS)},
)

LISTED_NOTE = (
    "Only what this token may call is listed: read commands need plugin:ro, write"
    " commands and pipelines plugin:rw; `withheld` counts the rest. Set TOKEN to the"
    " token before running an example. A trigger answers 202 with a job_id;"
    " GET /job/{job_id}?wait=30s (jobs:ro) answers the job once it has ended, with"
    " its result."
)


def skills_format(values: Sequence[str] | None, accept: str | None) -> str:
    """``json`` or ``markdown``: ``?format=`` when given, else what ``Accept`` prefers.

    JSON is the default (Ductile's ``/skills`` is JSON), ``*/*`` included; an
    unknown ``format`` is a 400 naming the two there are.
    """
    if values:
        value = values[-1]
        if value not in FORMATS:
            raise bad_request(f"format must be json or markdown, not {value!r}")
        return value
    if accept:
        best = parse_accept_header(accept, MIMEAccept).best_match((JSON, MARKDOWN))
        if best == MARKDOWN:
            return "markdown"
    return "json"


def one_line(text: str) -> str:
    """The first non-blank line of ``text``, stripped."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def example_curl(url: str, payload: Mapping[str, Any]) -> str:
    """A ``curl`` command line that POSTs ``{"payload": payload}`` to ``url``.

    The token is left to the shell, ``$TOKEN`` in double quotes so that it expands;
    the URL and the body are quoted for a POSIX shell, whatever they hold.
    """
    body = json.dumps({"payload": payload})
    return (
        f"curl -sS -X POST {shlex.quote(url)}"
        ' -H "Authorization: Bearer $TOKEN"'
        " -H 'Content-Type: application/json'"
        f" -d {shlex.quote(body)}"
    )


def command_skill(
    plugin: Mapping[str, Any],
    command: Mapping[str, Any],
    *,
    base: str,
    synchronous: str | None = None,
) -> dict[str, Any]:
    """One command as ``/skills`` lists it; ``plugin`` and ``command`` as
    :func:`~chamberlain.web.catalogue.describe_plugin` describes them.

    ``synchronous`` names the synchronous pipeline a trigger of the command waits
    for, if any.
    """
    name, command_name = plugin["name"], command["name"]
    kind = CommandType(command["type"])
    endpoint = f"/plugin/{name}/{command_name}"
    payload = example_payload(command["input_schema"])
    return {
        "name": f"plugin.{name}.{command_name}",
        "kind": "plugin",
        "description": one_line(command["description"]) or f"The {command_name} command of {name}.",
        "endpoint": endpoint,
        "method": "POST",
        "tier": "READ" if kind is CommandType.READ else "WRITE",
        "type": kind.value,
        "scope": command_scope(kind),
        "plugin": name,
        "command": command_name,
        "tool": tool_name(name, command_name),
        "input_schema": command["input_schema"],
        "example_payload": payload,
        "example": None if payload is None else example_curl(base + endpoint, payload),
        "timeout_secs": command["timeout"],
        "synchronous_pipeline": synchronous,
    }


def pipeline_skill(
    pipeline: PipelineConfig, *, base: str, steps: Sequence[str] = ()
) -> dict[str, Any]:
    """One pipeline as ``/skills`` lists it: started by ``POST /pipeline/{name}``.

    ``steps`` are the ids of its steps that run a job, in order, to say what it does.
    """
    endpoint = f"/pipeline/{pipeline.name}"
    runs = f" ({' then '.join(steps)})" if steps else ""
    if pipeline.synchronous:
        answer = "answers its finished tree"
    else:
        answer = "answers its root job at once (follow it at GET /job/{job_id}/tree)"
    return {
        "name": f"pipeline.{pipeline.name}",
        "kind": "pipeline",
        "description": f"Runs pipeline {pipeline.name}{runs} on the payload; {answer}.",
        "endpoint": endpoint,
        "method": "POST",
        "tier": "WRITE",
        "scope": PLUGIN_RW,
        "pipeline": pipeline.name,
        "trigger": pipeline.on if pipeline.on is not None else pipeline.on_hook,
        "execution_mode": "synchronous" if pipeline.synchronous else "asynchronous",
        "timeout_secs": pipeline.timeout,
        "tool": pipeline_tool_name(pipeline.name) if pipeline.synchronous else None,
        "example_payload": {},
        "example": example_curl(base + endpoint, {}),
    }


def skills_listing(
    plugins: Sequence[Mapping[str, Any]],
    pipelines: Sequence[PipelineConfig],
    *,
    token: str,
    can: Callable[[str], bool],
    base: str,
    synchronous: Callable[[str, str], str | None] = lambda plugin, command: None,
    step_ids: Callable[[str], Sequence[str]] = lambda pipeline: (),
) -> dict[str, Any]:
    """What ``GET /skills`` answers for the token ``token``, whose scopes ``can`` grants.

    Every command of ``plugins`` (each as ``describe_plugin`` gives it), then every
    pipeline, except those ``can`` refuses the scope of: the trigger would refuse
    them too.  ``withheld`` counts those, so an agent knows another token would see
    more.  ``synchronous(plugin, command)`` names the synchronous pipeline a trigger
    of that command waits for; ``step_ids(pipeline)`` the steps that run a job.
    """
    skills: list[dict[str, Any]] = []
    withheld = 0
    for plugin in plugins:
        for command in plugin["commands"]:
            if not can(command_scope(CommandType(command["type"]))):
                withheld += 1
                continue
            skills.append(
                command_skill(
                    plugin,
                    command,
                    base=base,
                    synchronous=synchronous(plugin["name"], command["name"]),
                )
            )
    for pipeline in pipelines:
        if not can(PLUGIN_RW):
            withheld += 1
            continue
        skills.append(pipeline_skill(pipeline, base=base, steps=step_ids(pipeline.name)))
    return {
        "base_url": base,
        "token": token,
        "note": LISTED_NOTE,
        "withheld": withheld,
        "skills": skills,
    }


def _code(text: str) -> str:
    """``text`` as Markdown inline code, whatever backticks it holds."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") else text
    return f"{fence}{padded}{fence}"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def skills_markdown(listing: Mapping[str, Any]) -> str:
    """:func:`skills_listing` as Markdown: one section per command and pipeline."""
    lines = ["# Chamberlain skills", "", listing["note"], ""]
    lines.append(
        f"Base URL: {listing['base_url']}; token {_code(listing['token'])};"
        f" withheld (not callable with this token): {listing['withheld']}."
    )
    commands = [s for s in listing["skills"] if s["kind"] == "plugin"]
    pipelines = [s for s in listing["skills"] if s["kind"] == "pipeline"]
    if not commands and not pipelines:
        lines += ["", "Nothing here may be called with this token."]
    if commands:
        lines += ["", "## Commands"]
    for skill in commands:
        lines += [
            "",
            f"### {skill['plugin']}.{skill['command']} ({skill['type']}, {skill['scope']})",
            "",
            skill["description"],
            "",
            f"- Endpoint: `POST {skill['endpoint']}`",
            f"- MCP tool: {_code(skill['tool'])}",
        ]
        schema = skill["input_schema"]
        shown = "none (any JSON object)" if schema is None else _code(_compact(schema))
        lines.append(f"- Input schema: {shown}")
        if skill["synchronous_pipeline"] is not None:
            lines.append(
                f"- Waits for the synchronous pipeline {_code(skill['synchronous_pipeline'])}"
                " and answers its tree"
            )
        lines += _example(skill)
    if pipelines:
        lines += ["", "## Pipelines"]
    for skill in pipelines:
        lines += [
            "",
            f"### {skill['pipeline']} ({skill['execution_mode']}, {skill['scope']})",
            "",
            skill["description"],
            "",
            f"- Endpoint: `POST {skill['endpoint']}`",
        ]
        if skill["trigger"] is not None:
            lines.append(f"- Also started by: {_code(skill['trigger'])}")
        if skill["tool"] is not None:
            lines.append(f"- MCP tool: {_code(skill['tool'])}")
        lines.append(f"- Timeout: {skill['timeout_secs']:g} s")
        lines += _example(skill)
    return "\n".join(lines) + "\n"


def _example(skill: Mapping[str, Any]) -> list[str]:
    if skill["example"] is None:
        return ["", "No example could be made: write a payload that fits the input schema."]
    return ["", "```sh", skill["example"], "```"]


# -- one plugin as OpenAPI -------------------------------------------------------------

#: The trigger operation each command's operation is modelled on.
TRIGGER_PATH = "/plugin/{plugin}/{command}"
_COMPONENTS = "#/components/schemas/"
#: Keywords whose values are data: a ``$ref`` inside one is no reference.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})


class TriggeredCommand(BaseConverter):
    """A ``{command}`` of ``POST /plugin/{plugin}/{command}``: any one segment but
    ``openapi.json``.

    ``/plugin/{name}/openapi.json`` is a plugin's document; without this, its path
    would match the trigger too, so that ``Allow`` named POST there and a POST was
    answered as the trigger of a command called ``openapi.json``.  Such a command
    (the manifest rules allow the name) is still triggered at
    ``/trigger/{plugin}/openapi.json``.
    """

    regex = r"(?!openapi\.json$)[^/]+"


def payload_component(plugin: str, command: str) -> str:
    """The component name a command's input schema goes under in its plugin's document."""
    return f"{plugin}.{command}.payload"


def rebase_schema(schema: Any, pointer: str) -> Any:
    """``schema``, its local references (``#``, ``#/$defs/x``) made to point below
    ``pointer``, where it is placed in another document.

    A schema with its own ``$id`` is a resource of its own, whose references resolve
    within it wherever it sits: it is left as it is, at the top or below.
    """

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, Mapping):
            return node
        if isinstance(node.get("$id"), str):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if (
                key == "$ref"
                and isinstance(value, str)
                and (value == "#" or value.startswith("#/"))
            ):
                out[key] = pointer + value[1:]
            elif key in _DATA_KEYWORDS:
                out[key] = value
            else:
                out[key] = walk(value)
        return out

    return walk(schema)


def referenced_schemas(node: Any, schemas: Mapping[str, Any]) -> list[str]:
    """The names of ``schemas`` that ``node`` refers to, directly or through others,
    in the order of ``schemas``."""
    found: set[str] = set()
    pending = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, Mapping):
            reference = item.get("$ref")
            if isinstance(reference, str) and reference.startswith(_COMPONENTS):
                name = reference[len(_COMPONENTS) :].split("/")[0]
                if name in schemas and name not in found:
                    found.add(name)
                    pending.append(schemas[name])
            pending.extend(value for key, value in item.items() if key not in _DATA_KEYWORDS)
        elif isinstance(item, list):
            pending.extend(item)
    return [name for name in schemas if name in found]


def plugin_openapi(
    plugin: Mapping[str, Any], api: Mapping[str, Any], *, base: str
) -> dict[str, Any]:
    """An OpenAPI 3.1 document of ``plugin``'s commands (``describe_plugin``'s shape).

    ``api`` is the daemon's own ``/openapi.json``: each command's operation is its
    trigger operation (``POST /plugin/{plugin}/{command}``) with the names filled
    in, the command's input schema as the body's ``payload`` (a component of its
    own, its references rebased), the scope the command needs in
    ``x-required-scope`` and the MCP tool's name as its ``operationId``.  The
    components those refer to come along, so the document stands alone; its server
    is ``base``.
    """
    schemas: Mapping[str, Any] = api["components"]["schemas"]
    trigger = api["paths"][TRIGGER_PATH]["post"]
    request = schemas["TriggerRequest"]
    name = plugin["name"]
    paths: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for command in plugin["commands"]:
        command_name = command["name"]
        kind = CommandType(command["type"])
        scope = command_scope(kind)
        payload = request["properties"]["payload"]
        if command["input_schema"] is not None:
            component = payload_component(name, command_name)
            own[component] = rebase_schema(command["input_schema"], _COMPONENTS + component)
            payload = ref(component)
        description = command["description"] or f"The {command_name} command of {name}."
        responses = dict(trigger["responses"])
        responses["403"] = {
            **responses["403"],
            "description": f"The token lacks {scope}, which this {kind.value} command needs.",
        }
        paths[f"/plugin/{name}/{command_name}"] = {
            "post": {
                "operationId": tool_name(name, command_name),
                "summary": one_line(description),
                "description": (
                    f"{description}\n\nRuns as a durable job ({kind.value} command; needs"
                    f" `{scope}`). {trigger.get('description', '')}"
                ).strip(),
                "tags": [name],
                "parameters": [p for p in trigger.get("parameters", ()) if p["in"] != "path"],
                "requestBody": {
                    "description": "Optional; an empty body triggers with an empty payload.",
                    "required": False,
                    "content": {
                        JSON: {
                            "schema": {
                                **request,
                                "properties": {**request["properties"], "payload": payload},
                            }
                        }
                    },
                },
                "responses": responses,
                "security": trigger["security"],
                "x-required-scope": scope,
            }
        }
    used = referenced_schemas(paths, schemas)
    return {
        "openapi": api["openapi"],
        "info": {
            "title": f"Chamberlain plugin {name}",
            "version": plugin["version"],
            "description": (
                f"{plugin['description']}\n\nEach command of plugin {name}, triggered as a"
                " durable job. Authenticate with `Authorization: Bearer <token>`; each"
                " operation names the scope it needs in `x-required-scope`."
            ).strip(),
        },
        "servers": [{"url": base, "description": "This daemon, as the request reached it."}],
        "tags": [{"name": name, "description": plugin["description"]}],
        "paths": paths,
        "components": {
            "schemas": {**{n: schemas[n] for n in used}, **own},
            "securitySchemes": api["components"]["securitySchemes"],
        },
    }


# -- the OpenAI plugin manifest ----------------------------------------------------------


def ai_plugin_manifest(base: str) -> dict[str, Any]:
    """``/.well-known/ai-plugin.json``: OpenAI's plugin manifest, with Ductile's fields.

    The daemon has no contact address to give: ``contact_email`` is empty, and
    ``legal_info_url`` is the index, which says what the service is.
    """
    return {
        "schema_version": "v1",
        "name_for_human": "Chamberlain",
        "name_for_model": NAME,
        "description_for_human": "Runs plugin commands and pipelines as durable jobs.",
        "description_for_model": (
            "Discover and invoke plugin commands and pipelines. GET /skills lists every"
            " command your token may call, with its input schema and an example; GET"
            " /openapi.json is the full API, GET /plugin/{name}/openapi.json one plugin's"
            " commands. Invoke a command with POST /plugin/{name}/{command} and the body"
            ' {"payload": {...}}; it answers 202 with a job_id, and GET'
            " /job/{job_id}?wait=30s answers the job once it has ended. /mcp serves the"
            " same commands as MCP tools."
        ),
        "auth": {"type": "user_http", "authorization_type": "bearer"},
        "api": {"type": "openapi", "url": f"{base}/openapi.json"},
        "logo_url": f"{base}/favicon.ico",
        "contact_email": "",
        "legal_info_url": f"{base}/",
    }


# -- the routes --------------------------------------------------------------------------


async def index(call: Call) -> Reply:
    """``GET /``: the index."""
    return Reply(
        index_body(version=package_version(), uptime_seconds=call.gateway.lifecycle.uptime())
    )


async def list_skills(call: Call) -> Reply:
    """``GET /skills``: what the caller may call, as JSON or Markdown."""
    identity = call.require(PLUGIN_RO, action="list skills")
    form = skills_format(call.query.get("format"), call.header("Accept"))
    plugins = call.gateway.plugins
    routing = call.gateway.routing

    def synchronous(plugin: str, command: str) -> str | None:
        pipeline = routing.synchronous_for(plugin, command)
        return None if pipeline is None else pipeline.name

    listing = skills_listing(
        [describe_plugin(plugins[name]) for name in sorted(plugins)],
        routing.pipelines,
        token=identity.name,
        can=identity.can,
        base=request_base(call),
        synchronous=synchronous,
        step_ids=routing.step_ids,
    )
    headers = {"Vary": "Accept"}
    if form == "markdown":
        return Reply(
            skills_markdown(listing), headers=headers, media_type=f"{MARKDOWN}; charset=utf-8"
        )
    return Reply(listing, headers=headers)


async def plugin_document(call: Call) -> Reply:
    """``GET /plugin/{name}/openapi.json``: one plugin's commands as OpenAPI, or 404."""
    name = call.path["name"]
    plugin = call.gateway.plugins.get(name)
    if plugin is None:
        raise not_found(f"unknown plugin {name!r}")
    return Reply(
        plugin_openapi(describe_plugin(plugin), call.site.openapi, base=request_base(call))
    )


async def ai_plugin(call: Call) -> Reply:
    """``GET /.well-known/ai-plugin.json``: the plugin manifest."""
    return Reply(ai_plugin_manifest(request_base(call)))


ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="index",
        method="GET",
        path="/",
        handler=index,
        access=PUBLIC,
        summary="The index: version, uptime and where to go next",
        description=(
            "For people and agents: what this is, and a link (with what it is) to the API"
            " description, the explorer, the MCP server, the plugins, the skills and the"
            " dashboard."
        ),
        tag="discovery",
        responses=(
            ResponseSpec(status=200, description="The index.", schema="Index"),
            NO_QUERY,
        ),
    ),
    Route(
        operation_id="listSkills",
        method="GET",
        path="/skills",
        handler=list_skills,
        access=Scoped(PLUGIN_RO),
        summary="Every command and pipeline this token may call, with an example",
        description=(
            "Each with its one-line description, input schema, MCP tool name and an"
            " example curl that works as printed (with TOKEN set). Only what the token may"
            " call is listed: read commands need plugin:ro, write commands and pipelines"
            " plugin:rw; `withheld` counts the rest. JSON (entries shaped as Ductile's),"
            " or Markdown with `format=markdown` or `Accept: text/markdown`."
        ),
        tag="discovery",
        params=(FORMAT_PARAM,),
        responses=(
            ResponseSpec(
                status=200,
                description="The listing: SkillList as JSON, or as Markdown.",
                schema="SkillList",
                headers={"Vary": "Accept: the answer's form follows it."},
                alternatives={MARKDOWN: "Markdown"},
            ),
            ResponseSpec(
                status=400,
                description="`format` is not json or markdown, or is given twice, or an"
                " unknown query parameter.",
            ),
        ),
    ),
    Route(
        operation_id="getPluginOpenapi",
        method="GET",
        path="/plugin/{name}/openapi.json",
        handler=plugin_document,
        access=Scoped(PLUGIN_RO),
        summary="One plugin's commands as an OpenAPI 3.1 document",
        description=(
            "One path per command (POST /plugin/{name}/{command}), its input schema as"
            " the body's `payload`, the scope it needs in `x-required-scope`, the MCP"
            " tool's name as its operationId."
        ),
        tag="discovery",
        params=(NAME_PARAM,),
        responses=(
            ResponseSpec(status=200, description="The document.", schema="PluginOpenApi"),
            NO_QUERY,
            ResponseSpec(status=404, description="Unknown plugin."),
        ),
    ),
    Route(
        operation_id="aiPluginManifest",
        method="GET",
        path="/.well-known/ai-plugin.json",
        handler=ai_plugin,
        access=PUBLIC,
        summary="The plugin manifest, in OpenAI's format",
        tag="discovery",
        responses=(
            ResponseSpec(status=200, description="The manifest.", schema="AiPluginManifest"),
            NO_QUERY,
        ),
    ),
)

_NULLABLE_OBJECT: Mapping[str, Any] = {"type": ["object", "null"]}

#: Component schemas these routes refer to (merged into the OpenAPI document).
SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "Index": object_schema(
        {
            "name": {"const": NAME},
            "description": STRING,
            "version": {**STRING, "description": "The package version."},
            "uptime_seconds": {"type": "number", "minimum": 0},
            "links": {"type": "array", "items": ref("IndexLink")},
            "discovery": {
                "type": "object",
                "additionalProperties": STRING,
                "description": "Each link's path by its rel, as Ductile's index has them.",
            },
        }
    ),
    "IndexLink": object_schema({"rel": STRING, "href": STRING, "description": STRING}),
    "SkillList": object_schema(
        {
            "base_url": {**STRING, "description": "This daemon, as the request reached it."},
            "token": {**STRING, "description": "The name of the token the listing is for."},
            "note": STRING,
            "withheld": {
                "type": "integer",
                "minimum": 0,
                "description": "Commands and pipelines this token may not call, left out.",
            },
            "skills": {
                "type": "array",
                "items": {"oneOf": [ref("CommandSkill"), ref("PipelineSkill")]},
            },
        }
    ),
    "CommandSkill": object_schema(
        {
            "name": {**STRING, "description": "plugin.<plugin>.<command>, as Ductile names it."},
            "kind": {"const": "plugin"},
            "description": STRING,
            "endpoint": STRING,
            "method": {"const": "POST"},
            "tier": {"enum": ["READ", "WRITE"]},
            "type": {"enum": ["read", "write"]},
            "scope": {"enum": [PLUGIN_RO, PLUGIN_RW]},
            "plugin": STRING,
            "command": STRING,
            "tool": {**STRING, "description": "The command's tool on the MCP server."},
            "input_schema": _NULLABLE_OBJECT,
            "example_payload": {
                **_NULLABLE_OBJECT,
                "description": "A payload the input schema accepts; null when none was found.",
            },
            "example": {
                "type": ["string", "null"],
                "description": "A curl command sending example_payload (set TOKEN first).",
            },
            "timeout_secs": {"type": "number", "description": "The longest a job may run."},
            "synchronous_pipeline": {
                "type": ["string", "null"],
                "description": "The synchronous pipeline a trigger waits for, if any.",
            },
        },
        closed=True,
    ),
    "PipelineSkill": object_schema(
        {
            "name": {**STRING, "description": "pipeline.<name>, as Ductile names it."},
            "kind": {"const": "pipeline"},
            "description": STRING,
            "endpoint": STRING,
            "method": {"const": "POST"},
            "tier": {"const": "WRITE"},
            "scope": {"const": PLUGIN_RW},
            "pipeline": STRING,
            "trigger": {
                "type": ["string", "null"],
                "description": "What else starts it: a plugin.command, an event or a hook.",
            },
            "execution_mode": {"enum": ["synchronous", "asynchronous"]},
            "timeout_secs": {"type": "number"},
            "tool": {
                "type": ["string", "null"],
                "description": "Its tool on the MCP server (synchronous pipelines only).",
            },
            "example_payload": {"type": "object"},
            "example": STRING,
        },
        closed=True,
    ),
    "Markdown": {"type": "string", "description": "A Markdown text."},
    "PluginOpenApi": {
        "type": "object",
        "required": ["openapi", "info", "paths", "components"],
        "description": "An OpenAPI 3.1 document of one plugin's commands.",
    },
    "AiPluginManifest": object_schema(
        {
            "schema_version": {"const": "v1"},
            "name_for_human": STRING,
            "name_for_model": STRING,
            "description_for_human": STRING,
            "description_for_model": STRING,
            "auth": object_schema(
                {"type": {"const": "user_http"}, "authorization_type": {"const": "bearer"}}
            ),
            "api": object_schema({"type": {"const": "openapi"}, "url": STRING}),
            "logo_url": STRING,
            "contact_email": STRING,
            "legal_info_url": STRING,
        }
    ),
}
