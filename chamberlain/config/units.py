"""Durations and sizes: how the configuration spells them, and back.

:func:`parse_duration` and :func:`parse_size` read the forms a config file may use
(``"1h30m"``, ``"512KiB"``); :func:`format_duration` writes a duration the way a config
file would say it, so messages quote values in the user's own terms. They have a
module of their own because code outside the configuration speaks the same syntax
(the schedule breaker's messages, the HTTP API's timeouts). It imports nothing from
chamberlain but :mod:`chamberlain.config.problems`. Importing it still runs the
package's ``__init__``, which loads the whole configuration package: a module that
package imports (:mod:`chamberlain.schedule.timing`, :mod:`chamberlain.callback_rules`)
must therefore not import this one.
"""

import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Final

from chamberlain.config.problems import describe

_DURATION_UNITS: Final[Mapping[str, float]] = {
    **dict.fromkeys(("ms", "msec", "msecs", "millisecond", "milliseconds"), 0.001),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
    **dict.fromkeys(("w", "week", "weeks"), 604800.0),
}
_BARE_NUMBER_RE: Final = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)")
_DURATION_PART_RE: Final = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]+)\s*,?")
_DURATION_HINT: Final = "use seconds or a string like '250ms', '30s', '5m', '1h30m', '1d'"


def parse_duration(value: object) -> float:
    """Return a duration in seconds.

    Accepts a non-negative int or float (seconds), or a string: a bare number of seconds
    (``"30"``, ``"1.5"``) or one or more ``<number><unit>`` parts, optionally separated
    by spaces (``"250ms"``, ``"2s"``, ``"5m"``, ``"1h30m"``, ``"1h 30m"``, ``"1.5d"``).
    Units (case-insensitive): ``ms``, ``s``, ``m``, ``h``, ``d``, ``w`` and their
    spelled-out forms (``sec``, ``min``, ``hours``, ``days``...). Raises ``ValueError``
    for negative, empty, non-finite or malformed values.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a duration, got {describe(value)}; {_DURATION_HINT}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"duration must be finite, got {value}")
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value}")
        return float(value)
    text = value.strip()
    if not text:
        raise ValueError(f"duration is empty; {_DURATION_HINT}")
    if text.startswith("-"):
        raise ValueError(f"duration must not be negative, got {value!r}")
    if _BARE_NUMBER_RE.fullmatch(text):
        return float(text)
    total = 0.0
    position = 0
    while position < len(text):
        match = _DURATION_PART_RE.match(text, position)
        if match is None:
            raise ValueError(f"invalid duration {value!r}; {_DURATION_HINT}")
        number, unit = match.groups()
        factor = _DURATION_UNITS.get(unit.lower())
        if factor is None:
            raise ValueError(f"invalid duration {value!r}: unknown unit {unit!r}; {_DURATION_HINT}")
        total += float(number) * factor
        position = match.end()
    if not math.isfinite(total):
        raise ValueError(f"duration {value!r} is too large")
    return total


_SIZE_UNITS: Final[Mapping[str, int]] = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)")
_SIZE_HINT: Final = (
    "use a number of bytes or a string like '512KiB', '1MiB', '10MB' "
    "(KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB powers of 1024)"
)


def parse_size(value: object) -> int:
    """Return a size in bytes.

    Accepts a non-negative integer (bytes) or a string ``<number><unit>`` with an
    optional space. Decimal units are powers of 1000: ``B``, ``KB``, ``MB``, ``GB``,
    ``TB`` (``"1KB"`` is 1000 bytes). Binary units are powers of 1024: ``KiB``, ``MiB``,
    ``GiB``, ``TiB`` (``"1KiB"`` is 1024 bytes). Units are case-insensitive and always
    mean bytes, never bits. Fractions are allowed when the result is a whole number of
    bytes (``"1.5KiB"`` is 1536). Raises ``ValueError`` otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a size, got {describe(value)}; {_SIZE_HINT}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"size must be a whole number of bytes, got {value}")
        value = int(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return value
    text = value.strip()
    if not text:
        raise ValueError(f"size is empty; {_SIZE_HINT}")
    if text.startswith("-"):
        raise ValueError(f"size must not be negative, got {value!r}")
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid size {value!r}; {_SIZE_HINT}")
    number, unit = match.groups()
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"invalid size {value!r}: unknown unit {unit!r}; {_SIZE_HINT}")
    try:
        size = Decimal(number) * factor
    except InvalidOperation:  # pragma: no cover - the regex only lets digits through
        raise ValueError(f"invalid size {value!r}; {_SIZE_HINT}") from None
    if size != size.to_integral_value():
        raise ValueError(f"size {value!r} is not a whole number of bytes")
    return int(size)


def format_duration(seconds: float) -> str:
    """A duration the way a config file would say it: ``90s`` -> ``1m30s``."""
    if seconds <= 0 or seconds != int(seconds):
        # Positional and exact: ``:g`` would write 1000000.5 as "1e+06s", which is
        # neither the value nor anything parse_duration reads.
        return f"{Decimal(repr(seconds)):f}s"
    parts: list[str] = []
    rest = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)
