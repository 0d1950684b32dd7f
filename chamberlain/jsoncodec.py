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

Decoding stays with :func:`json.loads`: orjson reads integers beyond 64 bits as
floats, which would silently change a payload's numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["dumps", "dumps_bytes", "json_kind"]

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
