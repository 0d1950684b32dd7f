"""Evaluating a pipeline step's ``if:``, with the rules of Ductile's conditions.

A condition is ``path op value`` or a composition of conditions: ``all`` (every one
holds; stops at the first that does not), ``any`` (one holds; stops at the first
that does) and ``not``.  The rules, from Ductile's ``internal/router/conditions``:

* A missing path reads as null for every operator except ``exists``: ``eq`` is
  false (unless the value is null) and ``neq`` is true.
* ``eq``, ``neq`` (alias ``ne``) and ``in`` compare strictly by JSON type: a string
  never equals a number and ``true`` never equals ``1``; numbers compare by value.
* ``contains``, ``startswith`` and ``endswith`` compare strings case-insensitively;
  ``regex`` matches the whole string, case-sensitively.
* Operands of the wrong type (``gt`` on a string and a number, ``startswith`` on a
  number, anything but ``exists``/``eq``/``neq``/``in`` on null) are not a false
  condition but a :class:`ConditionError`: the planner records the step's job as
  failed with that reason, as Ductile fails the job.

Chamberlain keeps forms Ductile refuses: ``gt``/``gte``/``lt``/``lte`` on two
strings compare them as text; ``contains`` on a list tests membership of an item,
and on a mapping membership of a key (a list or mapping is never a key); ``in``
against a string or mapping tests substring or key membership; ``exists`` takes
``value: true`` or ``value: false``, the latter holding when the path is missing.

Besides the roots of :mod:`chamberlain.routing.templates`, a step's ``if:`` reads
``config``: the ``config`` of the step's plugin, as Ductile's
``evaluateStepCondition`` scopes it (``pluginConfigMap``).  A value holding a
``${secret:name}`` reference is not in that view (:func:`visible_config`): a
condition could otherwise test a secret's text character by character and tell it
through which steps run, so the config is refused at start-up when a condition
names such a value (:func:`secret_paths`), and reads as missing anywhere else.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from chamberlain.config import ConditionConfig
from chamberlain.config.references import MARKER
from chamberlain.routing.templates import ROOTS, TemplateError, check_path, resolve

_MISSING: Any = object()
_ORDERING = ("gt", "gte", "lt", "lte")
#: The root of a step's ``if:`` paths that names its plugin's config.
CONFIG_ROOT = "config"


class ConditionError(ValueError):
    """A condition whose operands have types its operator cannot compare."""


def evaluate(condition: ConditionConfig, scope: Mapping[str, Any]) -> bool:
    """Whether ``condition`` holds in ``scope``; :class:`ConditionError` on a type
    mismatch (see the module docstring)."""
    if condition.all_:
        return all(evaluate(c, scope) for c in condition.all_)
    if condition.any_:
        return any(evaluate(c, scope) for c in condition.any_)
    if condition.not_ is not None:
        return not evaluate(condition.not_, scope)
    assert condition.path is not None, "checked when the config was loaded"
    return _atomic(condition.path, condition.op, condition.value, scope)


def _as_template_path(path: str) -> tuple[str, str]:
    """A ``config.`` path as a path templates can read, and the scope key it reads.

    Templates know the roots of ``with:``; ``config`` is a root of ``if:`` only, as in
    Ductile, so its paths are read as ``payload`` paths of a scope whose payload is
    the config.
    """
    root, dot, rest = path.partition(".")
    if root == CONFIG_ROOT:
        return f"payload{dot}{rest}", CONFIG_ROOT
    return path, ""


def check_condition_path(path: str, *, config: bool = True) -> None:
    """Raise :class:`TemplateError` unless ``path`` is a well-formed ``if:`` path;
    ``config`` says whether the ``config`` root is allowed (a step's ``if:`` only)."""
    spelled, key = _as_template_path(path)
    try:
        check_path(spelled)
    except TemplateError:
        roots = (*ROOTS, CONFIG_ROOT) if config else ROOTS
        raise TemplateError(
            f"bad path {path!r}: expected {' | '.join(roots)} followed by .key segments"
            " (letters, digits, '_', '-'), e.g. payload.city"
        ) from None
    if key and not config:
        raise TemplateError(
            f"bad path {path!r}: config is read in a step's if only (the step's plugin's"
            " config); a pipeline's if has no plugin"
        )


def _lookup(path: str, scope: Mapping[str, Any]) -> Any:
    spelled, key = _as_template_path(path)
    try:
        if key:
            return resolve(spelled, {"payload": scope.get(key, {})})
        return resolve(path, scope)
    except TemplateError:
        return _MISSING


def _holds_secret(value: object) -> bool:
    if isinstance(value, str):
        return MARKER in value
    if isinstance(value, Mapping):
        return any(_holds_secret(item) for item in value.values())
    if isinstance(value, list):
        return any(_holds_secret(item) for item in value)
    return False


def visible_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as a step's ``if:`` sees it: every mapping entry whose value holds a
    ``${secret:`` reference (at any depth) left out, so it reads as missing."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out[key] = visible_config(value)
        elif not _holds_secret(value):
            out[key] = value
    return out


def secret_paths(condition: ConditionConfig, config: Mapping[str, Any]) -> list[str]:
    """The ``config.`` paths of ``condition`` (and the conditions it holds) that name
    a value holding a secret reference, or a mapping with one inside."""
    if condition.path is not None:
        spelled, key = _as_template_path(condition.path)
        if not key:
            return []
        try:
            found = resolve(spelled, {"payload": config})
        except TemplateError:
            return []
        return [condition.path] if _holds_secret(found) else []
    children = (*condition.all_, *condition.any_, *filter(None, (condition.not_,)))
    return [path for child in children for path in secret_paths(child, config)]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def same(left: Any, right: Any) -> bool:
    """JSON equality: types must agree (bool is not a number), numbers by value."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(same, left, right))
    return type(left) is type(right) and bool(left == right)


def _kind(value: object) -> str:
    if value is None or value is _MISSING:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"


def _mismatch(op: str, path: str, found: Any, value: Any) -> ConditionError:
    missing = " (missing)" if found is _MISSING else ""
    return ConditionError(
        f"operator {op!r} cannot compare {path}, {_article(_kind(found))}{missing},"
        f" with {value!r}, {_article(_kind(value))}"
    )


def _article(kind: str) -> str:
    return f"an {kind}" if kind == "object" else f"a {kind}"


@functools.lru_cache(maxsize=256)
def _pattern(value: str) -> re.Pattern[str]:
    return re.compile(value)


def _atomic(path: str, op: str, value: Any, scope: Mapping[str, Any]) -> bool:
    found = _lookup(path, scope)
    if op == "exists":
        return (found is not _MISSING) is (value is not False)
    # Ductile reads a missing path as null for everything but `exists`.
    actual = None if found is _MISSING else found
    if op == "eq":
        return same(actual, value)
    if op in ("ne", "neq"):
        return not same(actual, value)
    if op == "in":
        if isinstance(value, list):
            return any(same(actual, item) for item in value)
        if isinstance(value, str) and isinstance(actual, str):
            return actual in value
        if isinstance(value, Mapping) and isinstance(actual, str):
            return actual in value
        raise _mismatch(op, path, found, value)
    if op in _ORDERING:
        if _is_number(actual) and _is_number(value):
            pass
        elif not (isinstance(actual, str) and isinstance(value, str)):
            raise _mismatch(op, path, found, value)
        if op == "gt":
            return bool(actual > value)
        if op == "gte":
            return bool(actual >= value)
        if op == "lt":
            return bool(actual < value)
        return bool(actual <= value)
    if op == "contains" and isinstance(actual, list):
        return any(same(item, value) for item in actual)
    if op == "contains" and isinstance(actual, Mapping) and not isinstance(value, list | Mapping):
        return any(same(key, value) for key in actual)
    if op in ("contains", "startswith", "endswith", "regex"):
        if not (isinstance(actual, str) and isinstance(value, str)):
            raise _mismatch(op, path, found, value)
        if op == "regex":
            return _pattern(value).fullmatch(actual) is not None
        # Ductile folds with strings.ToLower; casefold would also fold "ß" to "ss".
        left, right = actual.lower(), value.lower()
        if op == "contains":
            return right in left
        if op == "startswith":
            return left.startswith(right)
        return left.endswith(right)
    raise ConditionError(f"unknown operator {op!r}")
