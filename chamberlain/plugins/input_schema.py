"""Checking job payloads against the ``input_schema`` a command declares.

A manifest's ``input_schema`` is either Ductile's compact ``{field: type}`` form or
a JSON Schema; :func:`chamberlain.plugins.manifest.expand_compact_schema` turns the
first into the second.  This module compiles that JSON Schema once, when the
command is declared (:func:`compile_input_schema`), and checks payloads against it
(:class:`PayloadCheck`), answering with one plain line that names the field and the
rule it breaks: ``payload.seconds: 'abc' is not of type 'number'``.

The `jsonschema` library does the checking: the schema's ``$schema`` picks the
draft, and Draft 2020-12 is assumed when it names none.  ``format`` stays an
annotation, as the draft specifies, so ``format: uri`` documents but does not refuse.
References resolve within the schema only: nothing is ever fetched over the network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import attrs
import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema.protocols import Validator

__all__ = [
    "InvalidPayload",
    "InvalidSchema",
    "PayloadCheck",
    "compile_input_schema",
    "is_json_schema",
]

#: The draft a schema without ``$schema`` is read as.
DEFAULT_DRAFT = jsonschema.Draft202012Validator

#: Keywords that make a mapping a JSON Schema: every keyword any supported draft
#: validates with, plus the core and annotation keywords that validate nothing.
_KEYWORDS = frozenset(
    keyword
    for draft in (
        jsonschema.Draft202012Validator,
        jsonschema.Draft201909Validator,
        jsonschema.Draft7Validator,
        jsonschema.Draft6Validator,
        jsonschema.Draft4Validator,
    )
    for keyword in draft.VALIDATORS
) | {
    "$schema",
    "$id",
    "$defs",
    "$anchor",
    "$comment",
    "definitions",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
}

#: A violation message is cut here: it quotes the offending value, which may be large.
MESSAGE_LIMIT = 300


class InvalidSchema(ValueError):
    """A manifest's input_schema that no JSON Schema validator can use."""


class InvalidPayload(ValueError):
    """A payload its command's input_schema refuses; ``str()`` names field and rule."""


def is_json_schema(schema: Mapping[str, Any]) -> bool:
    """Whether ``schema`` uses any JSON Schema keyword at its top level (empty counts)."""
    return not schema or not _KEYWORDS.isdisjoint(schema)


@attrs.frozen(kw_only=True)
class PayloadCheck:
    """A compiled ``input_schema``: ask it whether a payload fits."""

    validator: Validator = attrs.field(repr=False)

    def check(self, payload: Mapping[str, Any], *, path: str = "payload") -> None:
        """Raise `InvalidPayload` if ``payload`` breaks the schema.

        The message starts with where the value sits, ``path`` being the name of the
        payload itself (``payload``, or ``jobs[3].payload`` in a batch), and goes on
        with the rule it breaks, as the library words it.  Of several violations the
        most relevant one is reported (`jsonschema.exceptions.best_match`).
        """
        error = jsonschema.exceptions.best_match(self.validator.iter_errors(payload))
        if error is None:
            return
        message = error.message
        if len(message) > MESSAGE_LIMIT:
            message = message[: MESSAGE_LIMIT - 3] + "..."
        raise InvalidPayload(f"{_where(path, error.absolute_path)}: {message}")


def compile_input_schema(schema: Mapping[str, Any]) -> PayloadCheck:
    """Compile a JSON Schema (already expanded from the compact form) once, for reuse.

    Raises `InvalidSchema` if the schema breaks its draft's metaschema (``type:
    strin``, ``required: url``), or if it is a mapping with no JSON Schema keyword at
    its top level: such a mapping would accept every payload while looking like it
    checks something, which is the mistake this refusal exists to catch.
    """
    if not is_json_schema(schema):
        raise InvalidSchema(
            "is neither the compact form (every value one of string, integer, number,"
            " boolean, object, array, null) nor a JSON Schema (no keyword such as type"
            " or properties at its top level)"
        )
    plain = dict(schema)
    draft = jsonschema.validators.validator_for(plain, default=DEFAULT_DRAFT)
    try:
        draft.check_schema(plain)
    except jsonschema.exceptions.SchemaError as exc:
        where = _where("input_schema", exc.absolute_path)
        raise InvalidSchema(f"is not a valid JSON Schema: {where}: {exc.message}") from None
    # An empty registry: a remote $ref is refused, never fetched while a request waits.
    validator = draft(plain, registry=referencing.Registry())
    # Every reference is followed now, at start-up: one that points nowhere would
    # otherwise be found by the first payload that reaches it, as a server error.
    specification = referencing.jsonschema.specification_with(
        str(plain.get("$schema", "")), default=referencing.jsonschema.DRAFT202012
    )
    root = specification.create_resource(plain)
    resolver = referencing.Registry().with_resource(_ROOT_URI, root).resolver(_ROOT_URI)
    try:
        _follow_references(plain, resolver.in_subresource(root), specification)
    except referencing.exceptions.Unresolvable as exc:
        raise InvalidSchema(f"has a reference that cannot be resolved: {exc}") from None
    return PayloadCheck(validator=validator)


#: The base URI a schema without ``$id`` is read under (nothing is fetched from it).
_ROOT_URI = "urn:chamberlain:input-schema"

#: Keywords whose values are data, not schemas: a ``$ref`` key inside is no reference.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})


class _Resolver(Protocol):
    """What this module uses of ``referencing``'s resolver (not exported by name)."""

    def lookup(self, ref: str) -> Any: ...

    def in_subresource(self, subresource: referencing.Resource[Any]) -> _Resolver: ...


def _follow_references(
    node: Any,
    resolver: _Resolver,
    specification: referencing.Specification[Any],
) -> None:
    """Look up every ``$ref`` under ``node``; raise `Unresolvable` for one that fails."""
    if isinstance(node, list):
        for item in node:
            _follow_references(item, resolver, specification)
        return
    if not isinstance(node, Mapping):
        return
    if isinstance(node.get("$id"), str):
        # A nested $id moves the base that relative references resolve against.
        resolver = resolver.in_subresource(specification.create_resource(node))
    ref = node.get("$ref")
    if isinstance(ref, str):
        resolver.lookup(ref)
    for key, value in node.items():
        if key not in _DATA_KEYWORDS:
            _follow_references(value, resolver, specification)


def _where(path: str, parts: Iterable[str | int]) -> str:
    text = path
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text
