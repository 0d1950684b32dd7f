"""Paths and templates of the pipeline DSL: ``{payload.city}`` in ``with:`` and ``baggage:``.

A path names a value in a step's *scope*: ``payload`` (the input event's payload),
``event`` (the whole input event: ``type``, ``event_id``, ``source`` ...) and
``context`` (the pipeline context).  Segments are keys, or list indexes written as
numbers: ``payload.items.0.name``.

In ``with:`` a string that is exactly one ``{path}`` takes the value with its type
(a number stays a number); a string mixing text and ``{path}`` references is
interpolated (non-strings rendered as JSON); ``{{`` and ``}}`` are literal braces.
Everything here is pure, so the same code validates a config at start-up and
renders a payload at run time; :mod:`chamberlain.routing.conditions` reads ``if:``
paths with :func:`resolve`.

``baggage:`` also takes Ductile's form (:func:`claim_baggage`): a value that is a
bare path (``repo.name: payload.repo_name``) claims the value at that path, a
dotted key writes a nested map, and ``from:`` with ``namespace:`` imports a whole
object under a name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from chamberlain.plugins.envelope import BaggageConflict, set_path

ROOTS = ("payload", "event", "context")
#: What a step with ``approval:`` may read besides: the decision that let it run
#: (``{approval.inputs.x}``, ``{approval.by}``, ``{approval.comment}``).
APPROVAL_ROOTS = (*ROOTS, "approval")

_SEGMENT = r"[A-Za-z0-9_-]+"


def _path_re(roots: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(rf"^(?:{'|'.join(roots)})(?:\.{_SEGMENT})*$")


_PATH_RE = _path_re(ROOTS)
_APPROVAL_PATH_RE = _path_re(APPROVAL_ROOTS)
# One reference inside a template; doubled braces are escapes, handled around it.
_REFERENCE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


class TemplateError(ValueError):
    """A path or template that cannot work, or a path missing from the input."""


def check_path(path: str, *, approval: bool = False) -> None:
    """Raise :class:`TemplateError` unless ``path`` is well formed (``approval``: it may
    also start at ``approval``, in a step that has one)."""
    roots, pattern = (APPROVAL_ROOTS, _APPROVAL_PATH_RE) if approval else (ROOTS, _PATH_RE)
    # fullmatch: with match, ``$`` would accept a trailing newline that no key has.
    if not pattern.fullmatch(path):
        raise TemplateError(
            f"bad path {path!r}: expected {' | '.join(roots)} followed by .key segments"
            " (letters, digits, '_', '-'), e.g. payload.city"
        )


def resolve(path: str, scope: Mapping[str, Any]) -> Any:
    """The value at ``path`` in ``scope``; :class:`TemplateError` when it is absent."""
    check_path(path, approval="approval" in scope)
    value: Any = scope
    walked: list[str] = []
    for segment in path.split("."):
        walked.append(segment)
        if isinstance(value, Mapping) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            raise TemplateError(f"{{{path}}}: the input has no {'.'.join(walked)}")
    return value


def _references(template: str) -> list[str]:
    return [m.group(1) for m in _REFERENCE.finditer(template) if m.group(1) is not None]


def check_template(value: Any, *, approval: bool = False) -> list[str]:
    """Problems with every ``{path}`` in ``value`` (strings, lists, mappings);
    ``approval``: paths may start at ``approval`` (see :func:`check_path`)."""
    problems: list[str] = []
    if isinstance(value, str):
        stripped = _REFERENCE.sub("", value)
        if "{" in stripped or "}" in stripped:
            problems.append(f"unbalanced brace in {value!r} (write {{{{ or }}}} for a literal)")
        for path in _references(value):
            try:
                check_path(path.strip(), approval=approval)
            except TemplateError as exc:
                problems.append(str(exc))
    elif isinstance(value, Mapping):
        for item in value.values():
            problems.extend(check_template(item, approval=approval))
    elif isinstance(value, list):
        for item in value:
            problems.extend(check_template(item, approval=approval))
    return problems


def render(value: Any, scope: Mapping[str, Any]) -> Any:
    """``value`` with every ``{path}`` filled from ``scope``; see the module docstring."""
    if isinstance(value, Mapping):
        return {key: render(item, scope) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, scope) for item in value]
    if not isinstance(value, str):
        return value
    whole = _REFERENCE.fullmatch(value)
    if whole is not None and whole.group(1) is not None:
        return resolve(whole.group(1).strip(), scope)

    def substitute(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return match.group()[0]  # "{{" -> "{", "}}" -> "}"
        found = resolve(match.group(1).strip(), scope)
        return found if isinstance(found, str) else json.dumps(found, ensure_ascii=False)

    return _REFERENCE.sub(substitute, value)


#: The keys of a ``baggage:`` map that import a whole object rather than name a value.
BULK_KEYS = ("from", "namespace")


def _is_bare_path(value: object) -> bool:
    return isinstance(value, str) and _PATH_RE.fullmatch(value.strip()) is not None


def check_baggage(spec: Mapping[str, Any]) -> list[str]:
    """Problems with a ``baggage:`` map: its paths, its keys, and ``from``/``namespace``."""
    problems: list[str] = []
    if "namespace" in spec and "from" not in spec:
        problems.append("namespace: needs from: (the object to import under it)")
    if "from" in spec:
        source = spec["from"]
        if not _is_bare_path(source):
            problems.append(
                f"from: expected a path such as payload or payload.meta, got {source!r}"
            )
        if not isinstance(spec.get("namespace"), str) or not str(spec["namespace"]).strip():
            problems.append("from: needs namespace: (the key to import the object under)")
    for key, value in spec.items():
        if key in BULK_KEYS:
            continue
        if any(not part.strip() for part in str(key).split(".")):
            problems.append(f"{key}: a baggage key has no empty segments (write a.b, not a..b)")
        if _is_bare_path(value):
            continue
        problems.extend(f"{key}: {p}" for p in check_template(value))
    return problems


def evaluate(value: Any, scope: Mapping[str, Any]) -> Any:
    """One value of Ductile's expression form: a bare path takes the value at that path
    with its type (absent: :class:`TemplateError`), anything else is a template
    filled by :func:`render`. ``baggage:`` values and a relay step's ``with:`` and
    ``dedupe_key`` are read this way."""
    if _is_bare_path(value):
        return resolve(value.strip(), scope)
    return render(value, scope)


def claim_baggage(spec: Mapping[str, Any], scope: Mapping[str, Any]) -> dict[str, Any]:
    """The values a step's ``baggage:`` claims, as a nested map.

    A bare path takes the value at that path with its type (absent: an error, as in
    Ductile); any other value is a template filled by :func:`render`. Dotted keys
    nest (``repo.name`` writes ``{"repo": {"name": ...}}``); ``from`` and
    ``namespace`` put the object at ``from`` under ``namespace``. Raises
    :class:`TemplateError` for a missing path or a non-object ``from``.
    """
    claims: dict[str, Any] = {}
    try:
        if "from" in spec:
            source = resolve(str(spec["from"]).strip(), scope)
            if not isinstance(source, Mapping):
                raise TemplateError(f"from: {spec['from']} is not an object")
            set_path(claims, str(spec["namespace"]).strip(), dict(source))
        for key in sorted(k for k in spec if k not in BULK_KEYS):
            set_path(claims, key.strip(), evaluate(spec[key], scope))
    except BaggageConflict as exc:
        raise TemplateError(str(exc)) from exc
    return claims
