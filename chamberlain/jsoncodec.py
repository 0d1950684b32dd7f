"""Compact JSON encoding for the hot paths: orjson, with the standard library behind it.

A job is encoded many times on its way through the daemon (its payload and
context into the store, the plugin's response, the API answers, a log line per
step).  orjson encodes 5-15 times faster than :func:`json.dumps`; see
docs/PERFORMANCE.md for what that is worth per job.

The output is what the standard library produced here with ``separators=(",",
":"), ensure_ascii=False``: compact, UTF-8, every JSON value the same (only a float's
exponent may be spelt ``1e-8`` rather than ``1e-08``).  Two corners differ, both
outside JSON:

- integers beyond 64 bits, which orjson refuses, are handed to :func:`json.dumps`
  (so they are encoded exactly, as before);
- ``NaN`` and ``Infinity`` become ``null``, where the standard library wrote the
  bare tokens ``NaN``/``Infinity`` that no JSON parser accepts.

Decoding is :func:`loads`, the standard library's parser behind the rules JSON
from outside must follow (orjson reads integers beyond 64 bits as floats, which
would silently change a payload's numbers).  Whatever it accepts, :func:`dumps_bytes`
can write and every JSON reader can read back: it refuses lone surrogates (which
no UTF-8 encoder can write), nesting deeper than a limit, integers too long to
convert, and, unless told otherwise, duplicate keys and numbers that are not
finite (``NaN``, or ``1e400``, which overflows to infinity), in the spirit of
I-JSON (RFC 7493).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import orjson

__all__ = ["MAX_JSON_DEPTH", "JsonRefused", "dumps", "dumps_bytes", "json_kind", "loads"]

#: How deep JSON from outside (a request body, a webhook delivery) may nest.  Every
#: layer a payload passes through (the store, the plugin's request, the API's
#: answers) encodes it recursively, so a bound at the door keeps all of them far
#: from Python's recursion limit.
MAX_JSON_DEPTH = 64

# Keys that are not strings (ints, None ...) are written as strings, as json.dumps does.
_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps_bytes(value: Any, *, default: Callable[[Any], Any] | None = None) -> bytes:
    """``value`` as compact UTF-8 JSON.

    ``default`` is called for objects JSON has no type for and returns one it has
    (or raises TypeError), as with :func:`json.dumps`.
    """
    try:
        return orjson.dumps(value, default=default, option=_OPTIONS)
    except orjson.JSONEncodeError:
        # An integer beyond 64 bits, or an object ``default`` refused: the standard
        # library encodes the former and raises its usual TypeError for the latter.
        text = json.dumps(value, default=default, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8")


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """``value`` as compact JSON text; see :func:`dumps_bytes`."""
    return dumps_bytes(value, default=default).decode("utf-8")


def json_kind(value: object) -> str:
    """What a decoded JSON value is, in JSON's words, for error messages.

    ``a string``, ``an array``, ``null`` ...: the words a client or a plugin author
    knows, rather than Python's type names.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class JsonRefused(ValueError):
    """Well-formed JSON that :func:`loads` refuses; the message says what, and where."""


#: A lone surrogate can only come from a ``\\uD800``-``\\uDFFF`` escape: the text
#: itself is decoded from UTF-8, which has none.  Strings are inspected only when
#: the text holds such an escape (a valid pair holds two).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

#: Keys shown bare in a path (``payload.city``); any other is quoted (``payload["a b"]``).
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}")

_SHOWN_MAX = 40

# A place in the document: (parent place, key or index), None for the top level.
_Place = tuple[Any, str | int] | None


def loads(
    text: str,
    *,
    max_depth: int,
    unique_keys: bool = True,
    finite_numbers: bool = True,
) -> Any:
    """The JSON value in ``text``, or :class:`JsonRefused` saying why it is refused.

    Refused: arrays and objects nested more than ``max_depth`` levels (the outermost
    is level 1); a lone surrogate in a string or a key, named by its path
    (``payload.items[3]``); an integer of more digits than Python converts; with
    ``unique_keys``, an object naming a key twice; with ``finite_numbers``,
    ``NaN``/``Infinity`` and numbers that overflow a 64-bit float.  Text that is not
    JSON at all raises :class:`json.JSONDecodeError` (a ValueError too).
    """
    try:
        value = json.loads(
            text,
            parse_constant=_refuse_constant if finite_numbers else None,
            object_pairs_hook=_unique_object if unique_keys else None,
        )
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise JsonRefused(f"nested more than {max_depth} levels deep") from None
    except JsonRefused:
        raise
    except ValueError:
        # The parser's only other ValueError: an integer longer than
        # sys.get_int_max_str_digits(), worded with a hint meant for programmers.
        raise JsonRefused(
            f"integer too long: more than {sys.get_int_max_str_digits()} digits"
        ) from None
    _inspect(
        value,
        max_depth=max_depth,
        finite_numbers=finite_numbers,
        strings=_SURROGATE_ESCAPE.search(text) is not None,
    )
    return value


def _refuse_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON; Python accepts them unless told not to, and
    # no other JSON reader could read them back.
    raise JsonRefused(f"{name} is not valid JSON")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JsonRefused(f"duplicate key {_shown(key)} in an object")
            seen.add(key)
    return obj


def _inspect(value: Any, *, max_depth: int, finite_numbers: bool, strings: bool) -> None:
    """Refuse what :func:`loads` refuses after parsing.

    Iterative on purpose: a recursive walk would fail on the very input it checks.
    """
    if strings and isinstance(value, str):
        _check_string(value, None, key=False)
    if finite_numbers and isinstance(value, float) and not math.isfinite(value):
        raise JsonRefused("number at the top level is out of range (beyond a 64-bit float)")
    stack: list[tuple[Any, int, _Place]] = [(value, 1, None)]
    while stack:
        item, depth, place = stack.pop()
        if isinstance(item, dict):
            entries: Any = item.items()
        elif isinstance(item, list):
            entries = enumerate(item)
        else:
            continue
        if depth > max_depth:
            raise JsonRefused(f"nested more than {max_depth} levels deep")
        for key, child in entries:
            if strings and isinstance(key, str):
                _check_string(key, place, key=True)
            if isinstance(child, dict | list):
                stack.append((child, depth + 1, (place, key)))
            elif strings and isinstance(child, str):
                _check_string(child, (place, key), key=False)
            elif finite_numbers and isinstance(child, float) and not math.isfinite(child):
                where = _path((place, key))
                raise JsonRefused(f"number at {where} is out of range (beyond a 64-bit float)")


def _check_string(text: str, place: _Place, *, key: bool) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        surrogate = f"a lone surrogate (U+{ord(text[exc.start]):04X})"
        if key:
            where = "the top-level object" if place is None else _path(place)
            raise JsonRefused(f"{surrogate} in a key of {where} is not valid Unicode") from None
        raise JsonRefused(f"{surrogate} at {_path(place)} is not valid Unicode") from None


def _path(place: _Place) -> str:
    """``payload.items[3]`` for a place; ``the top level`` for the document itself."""
    steps: list[str] = []
    while place is not None:
        place, step = place
        if isinstance(step, int):
            steps.append(f"[{step}]")
        elif _PLAIN_KEY.fullmatch(step):
            steps.append(f".{step}")
        else:
            steps.append(f"[{_shown(step)}]")
    if not steps:
        return "the top level"
    return "".join(reversed(steps)).lstrip(".")


def _shown(key: str) -> str:
    """A key as JSON text, ASCII only (so a message can never hold a lone surrogate)."""
    if len(key) > _SHOWN_MAX:
        key = key[: _SHOWN_MAX - 1] + "…"
    return json.dumps(key)
