"""Daemon configuration: YAML in, frozen attrs records out.

Loading happens in three steps, each of which reports every problem it finds with the
YAML path it belongs to, so one run of ``chamberlain`` tells the user everything that is
wrong with the file instead of one mistake per restart:

1. **YAML** is parsed with a safe loader that also rejects duplicate keys (plain PyYAML
   keeps the last one silently, which hides typos in long files).
2. **``${VAR}`` interpolation** runs over the raw tree, before any structuring. Doing it
   first means one rule covers every string in the file, including the free-form
   ``plugins.<name>.config`` mappings that no schema describes, and the typed layer
   never has to know where a string came from. A value produced by interpolation is
   text; it is tagged so that integer and boolean fields may still accept
   ``max_workers: ${WORKERS:-2}`` while rejecting a quoted ``"2"`` written by hand.
3. **Structuring** uses a single module-level cattrs converter. Keeping one converter
   means every record obeys the same rules (strict scalar types, unknown keys are
   errors, ``null`` sections mean "defaults"), and constraints that belong to a field
   (durations, sizes, minimums, name patterns) are declared on the field's type with
   ``Annotated`` so the record definitions double as the schema. cattrs' detailed
   validation gathers errors per field; they are walked here into ``path: problem``
   lines rather than cattrs' ``$.a['b']`` notation.

Relative paths are resolved against the directory of the configuration file after
structuring, so the converter itself stays free of per-file state.
"""

import functools
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from difflib import get_close_matches
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, TypeVar, get_args, get_origin

import attrs
import cattrs
import yaml
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, override

from chamberlain.callbacks import DEFAULT_ALLOWED_HOSTS, parse_host_rule
from chamberlain.schedule import timing as _timing
from chamberlain.schedule.policy import CatchUp, IfRunning

__all__ = [
    "IN_MEMORY",
    "VALID_SCOPES",
    "ApiConfig",
    "AuthConfig",
    "CallbacksConfig",
    "CircuitBreakerConfig",
    "Config",
    "ConfigError",
    "PluginConfig",
    "RetryConfig",
    "ScheduleConfig",
    "ServiceConfig",
    "StateConfig",
    "TokenConfig",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
]

IN_MEMORY: Final = Path(":memory:")
"""``state.path`` value selecting an in-memory database; never resolved against a directory."""

VALID_SCOPES: Final[tuple[str, ...]] = (
    "plugin:ro",
    "plugin:rw",
    "jobs:ro",
    "jobs:rw",
    "events:ro",
    "events:rw",
    "*",
    "read:*",
)
"""Scopes an API token may carry."""

# Plugin and command names end up in URLs, log fields and next to file names, so they
# are kept to a conservative charset.
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

_N = TypeVar("_N", int, float)

# Path segments: a str is a mapping key or field name, an int a list index.
_Path = tuple[str | int, ...]


class ConfigError(Exception):
    """The configuration could not be loaded.

    ``problems`` holds one line per problem, each starting with the YAML path it refers
    to (``plugins.echo.retry.max_attempts: must be at least 1``). ``str()`` gives a
    message ready to print, starting with the file name.
    """

    problems: tuple[str, ...]
    source: Path | None

    def __init__(self, problems: Sequence[str], *, source: Path | None = None) -> None:
        self.problems = tuple(problems)
        self.source = source
        super().__init__(self._render())

    def __reduce__(self) -> tuple[Any, ...]:
        # The default would rebuild from the rendered message alone.
        return (functools.partial(ConfigError, source=self.source), (self.problems,))

    def _render(self) -> str:
        name = str(self.source) if self.source is not None else "config"
        if len(self.problems) == 1:
            return f"{name}: {self.problems[0]}"
        lines = "".join(f"\n  {problem}" for problem in self.problems)
        return f"{name}: {len(self.problems)} problems:{lines}"


# --------------------------------------------------------------------------- values

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
        raise ValueError(f"expected a duration, got {_describe(value)}; {_DURATION_HINT}")
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
        raise ValueError(f"expected a size, got {_describe(value)}; {_SIZE_HINT}")
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


class _Interpolated(str):
    """Text that came (at least partly) from ``${VAR}`` interpolation.

    Environment variables are always strings, so numeric and boolean fields accept
    these where they reject the same text typed in quotes.
    """

    __slots__ = ()


class _Invalid(ValueError):
    """A problem with one value; ``at`` extends the path below the failing field."""

    def __init__(self, message: str, *, at: _Path = ()) -> None:
        super().__init__(message)
        self.at = at


def _describe(value: object) -> str:
    """Name a YAML value for an error message, the way the user wrote it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        text = str(value)
        return repr(text if len(text) <= 60 else text[:57] + "...")
    return _describe_kind(value)


def _describe_kind(value: object) -> str:
    """Name a value's type only, for values that must not be echoed (secrets)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _quoted_hint(value: object, looks_right: bool) -> str:
    return " (remove the quotes)" if looks_right and not isinstance(value, _Interpolated) else ""


_INT_RE: Final = re.compile(r"[+-]?\d+")
_TRUE_WORDS: Final = frozenset({"true", "yes", "on"})
_FALSE_WORDS: Final = frozenset({"false", "no", "off"})


def _parse_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, _Interpolated) and _INT_RE.fullmatch(value.strip()):
        return int(value)
    hint = _quoted_hint(value, isinstance(value, str) and bool(_INT_RE.fullmatch(value.strip())))
    raise _Invalid(f"expected an integer, got {_describe(value)}{hint}")


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, _Interpolated):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    words = _TRUE_WORDS | _FALSE_WORDS
    hint = _quoted_hint(value, isinstance(value, str) and value.strip().lower() in words)
    raise _Invalid(f"expected true or false, got {_describe(value)}{hint}")


def _parse_str(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_describe(value)}")
    return str(value)  # drops the _Interpolated tag


def _parse_non_empty_str(value: object) -> str:
    text = _parse_str(value)
    if not text.strip():
        raise _Invalid("must not be empty")
    return text


def _parse_secret(value: object) -> str:
    # Never echo the value: a wrongly typed secret is still a secret.
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_describe_kind(value)}")
    if not value.strip():
        raise _Invalid("must not be empty")
    return str(value)


def _parse_path(value: object) -> Path:
    text = _parse_str(value)
    if not text.strip():
        raise _Invalid("expected a path, got an empty string")
    return Path(text).expanduser()


def _at_least(minimum: _N, parse: Callable[[object], _N]) -> Callable[[object], _N]:
    def parse_at_least(value: object) -> _N:
        result = parse(value)
        if result < minimum:
            raise _Invalid(f"must be at least {minimum}, got {result}")
        return result

    return parse_at_least


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise _Invalid(f"must be longer than zero, got {_describe(value)}")
    return seconds


def _name_parser(kind: str) -> Callable[[object], str]:
    def parse_name(value: object) -> str:
        name = _parse_str(value)
        if not _NAME_RE.fullmatch(name):
            raise _Invalid(
                f"invalid {kind} {name!r}: use letters, digits, '_', '.' and '-', "
                "starting with a letter or digit"
            )
        if ".." in name:
            raise _Invalid(f"invalid {kind} {name!r}: must not contain '..'")
        return name

    return parse_name


def _parse_scope(value: object) -> str:
    scope = _parse_str(value)
    if scope not in VALID_SCOPES:
        raise _Invalid(
            f"{scope!r} is not a valid scope; expected one of: {', '.join(VALID_SCOPES)}"
        )
    return scope


def _split_listen(listen: str) -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port`` into its parts; raises ValueError."""
    host, colon, port_text = listen.rpartition(":")
    if not colon or not host:
        raise ValueError(f"expected host:port such as '127.0.0.1:8080', got {listen!r}")
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise ValueError(f"expected host:port such as '[::1]:8080', got {listen!r}")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"IPv6 addresses need brackets, such as '[::1]:8080', got {listen!r}")
    if any(char.isspace() for char in host):
        raise ValueError(f"host must not contain spaces, got {listen!r}")
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or int(port_text) > 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {port_text!r}")
    return host, int(port_text)


def _parse_listen(value: object) -> str:
    listen = _parse_str(value)
    _split_listen(listen)
    return listen


def _parse_host_rule(value: object) -> str:
    text = _parse_str(value)
    try:
        parse_host_rule(text)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    return text


def _parse_scopes(value: object) -> tuple[str, ...]:
    scopes: tuple[str, ...] = _converter.structure(value, tuple[_Scope, ...])
    if not scopes:
        raise _Invalid(f"a token needs at least one scope, such as {VALID_SCOPES[-1]!r}")
    return scopes


def _plain(value: object) -> Any:
    """Copy a free-form YAML tree, dropping the interpolation tags."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _parse_free_form(value: object) -> dict[str, Any]:
    # A plain dict rather than a read-only proxy: this goes to the plugin as JSON, and
    # json.dumps refuses mappingproxy.
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _Invalid(f"expected a mapping, got {_describe(value)}")
    result: dict[str, Any] = _plain(value)
    return result


@attrs.frozen
class _Rule:
    """``Annotated`` metadata: structure this field with ``parse`` instead of its type."""

    parse: Callable[[object], Any]


_NonEmptyStr = Annotated[str, _Rule(_parse_non_empty_str)]
_Secret = Annotated[str, _Rule(_parse_secret)]
_PositiveInt = Annotated[int, _Rule(_at_least(1, _parse_int))]
_Duration = Annotated[float, _Rule(parse_duration)]
_PositiveDuration = Annotated[float, _Rule(_positive_duration)]
_BodySize = Annotated[int, _Rule(_at_least(1, parse_size))]
_Listen = Annotated[str, _Rule(_parse_listen)]
_Scope = Annotated[str, _Rule(_parse_scope)]
_HostRule = Annotated[str, _Rule(_parse_host_rule)]
_Scopes = Annotated[tuple[str, ...], _Rule(_parse_scopes)]
_PluginName = Annotated[str, _Rule(_name_parser("plugin name"))]
_CommandName = Annotated[str, _Rule(_name_parser("command name"))]
_FreeForm = Annotated[Mapping[str, Any], _Rule(_parse_free_form)]

_NO_PLUGINS: Final[Mapping[str, "PluginConfig"]] = MappingProxyType({})
_NO_TIMEOUTS: Final[Mapping[str, float]] = MappingProxyType({})


# -------------------------------------------------------------------------- records


def _default_max_workers() -> int:
    # Leave one core for the daemon itself and whatever else the workstation runs.
    return max(1, (os.cpu_count() or 2) - 1)


@attrs.frozen(kw_only=True)
class ServiceConfig:
    """The ``service:`` section: daemon-wide limits and housekeeping."""

    name: _NonEmptyStr = "chamberlain"
    max_workers: _PositiveInt = attrs.field(factory=_default_max_workers)
    shutdown_grace: _Duration = 10.0
    dedupe_ttl: _Duration = 86400.0
    job_retention: _Duration = 30 * 86400.0


@attrs.frozen(kw_only=True)
class StateConfig:
    """The ``state:`` section: where the job store lives.

    A relative ``path`` is relative to the configuration file's directory; the loaders
    always return it absolute, except for :data:`IN_MEMORY`.
    """

    path: Annotated[Path, _Rule(_parse_path)] = Path("data/state.db")


@attrs.frozen(kw_only=True)
class TokenConfig:
    """One API token in ``api.auth.tokens``."""

    name: _NonEmptyStr
    token: _Secret = attrs.field(repr=False)
    scopes: _Scopes


@attrs.frozen(kw_only=True)
class AuthConfig:
    """The ``api.auth:`` section. ``api_key`` is the legacy all-scopes key."""

    api_key: _Secret | None = attrs.field(default=None, repr=False)
    tokens: tuple[TokenConfig, ...] = ()


@attrs.frozen(kw_only=True)
class ApiConfig:
    """The ``api:`` section: the HTTP listener."""

    enabled: bool = True
    listen: _Listen = "127.0.0.1:8080"
    auth: AuthConfig = attrs.field(factory=AuthConfig)
    max_body_size: _BodySize = 1024 * 1024
    # How long a request handler waits for an actor's reply before giving up.
    request_timeout: _PositiveDuration = 5.0
    # The longest a synchronous trigger waits for its pipeline, whatever the pipeline says.
    max_sync_timeout: _PositiveDuration = 300.0
    # Synchronous triggers waiting at once; more are refused with 503.
    max_concurrent_sync: _PositiveInt = 16
    # How often an idle event stream sends a keepalive comment.
    sse_keepalive: _PositiveDuration = 15.0
    # Messages an event stream may fall behind by before its client is dropped.
    sse_buffer: _PositiveInt = 2048

    @property
    def host(self) -> str:
        """The host part of ``listen``, without IPv6 brackets."""
        return _split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """The port part of ``listen``; 0 asks the OS for any free port."""
        return _split_listen(self.listen)[1]


@attrs.frozen(kw_only=True)
class CallbacksConfig:
    """The ``callbacks:`` section: POSTs to a trigger's ``callback_url`` when its job ends.

    Without a ``secret`` no callback is accepted: an unsigned callback could not be
    told apart from a forged one.
    """

    secret: _Secret | None = attrs.field(default=None, repr=False)
    allowed_hosts: tuple[_HostRule, ...] = DEFAULT_ALLOWED_HOSTS
    max_attempts: _PositiveInt = 5
    backoff_base: _Duration = 5.0
    backoff_max: _Duration = 300.0
    timeout: _PositiveDuration = 10.0


@attrs.frozen(kw_only=True)
class RetryConfig:
    """How failed jobs are retried: ``backoff_base * 2**(attempt-1)`` capped at the max."""

    max_attempts: _PositiveInt = 4
    backoff_base: _Duration = 30.0
    backoff_max: _Duration = 3600.0


# Schedules (docs/SCHEDULES.md).  The values are parsed by chamberlain.schedule.timing,
# which owns what a cron expression, a window or a weekday is.

_E = TypeVar("_E", CatchUp, IfRunning)


def _choice(kind: type[_E]) -> Callable[[object], _E]:
    names = ", ".join(member.value for member in kind)

    def parse_choice(value: object) -> _E:
        for member in kind:
            if value == member.value:
                return member
        raise _Invalid(f"expected one of: {names}; got {_describe(value)}")

    return parse_choice


def _parse_every(value: object) -> _timing.Every:
    return _timing.parse_every(value, parse_duration)


_ScheduleId = Annotated[str, _Rule(_name_parser("schedule id"))]
_Every = Annotated[_timing.Every, _Rule(_parse_every)]
_Cron = Annotated[str, _Rule(_timing.parse_cron)]
_Instant = Annotated[datetime, _Rule(_timing.parse_instant)]
_TimeZone = Annotated[str, _Rule(_timing.parse_timezone)]
_Window = Annotated[_timing.Window, _Rule(_timing.parse_window)]
_Weekday = Annotated[int, _Rule(_timing.parse_weekday)]

#: The keys that say when a schedule fires; exactly one is given.
SCHEDULE_KINDS: Final = ("every", "cron", "at", "after")


@attrs.frozen(kw_only=True)
class ScheduleConfig:
    """One entry of ``plugins.<name>.schedules``.

    ``timezone`` None means the system's zone.  A naive ``at`` is read in
    ``timezone``; ``after`` counts from the daemon's start.
    """

    id: _ScheduleId = "default"
    command: _CommandName = "poll"
    payload: _FreeForm = attrs.field(factory=dict)
    every: _Every | None = None
    cron: _Cron | None = None
    at: _Instant | None = None
    after: _Duration | None = None
    jitter: _Duration = 0.0
    timezone: _TimeZone | None = None
    only_between: _Window | None = None
    not_on: tuple[_Weekday, ...] = ()
    catch_up: Annotated[CatchUp, _Rule(_choice(CatchUp))] = CatchUp.SKIP
    if_running: Annotated[IfRunning, _Rule(_choice(IfRunning))] = IfRunning.SKIP
    max_outstanding: _PositiveInt = 1

    @property
    def kind(self) -> str:
        """Which of ``every``, ``cron``, ``at``, ``after`` is given."""
        return next(k for k in SCHEDULE_KINDS if getattr(self, k) is not None)

    @property
    def spec(self) -> str:
        """The value of :attr:`kind`, the way a config file says it."""
        if self.every is not None:
            every = self.every
            if isinstance(every, _timing.Period):
                return every.name
            return _timing.format_duration(every.seconds)
        if self.cron is not None:
            return self.cron
        if self.at is not None:
            return self.at.isoformat()
        assert self.after is not None
        return _timing.format_duration(self.after)


@attrs.frozen(kw_only=True)
class CircuitBreakerConfig:
    """``plugins.<name>.circuit_breaker``: applied to each of the plugin's commands."""

    enabled: bool = True
    threshold: _PositiveInt = 3
    reset_after: _PositiveDuration = 1800.0


@attrs.frozen(kw_only=True)
class PluginConfig:
    """One entry of ``plugins:``. ``config`` is the plugin's own, free-form settings."""

    enabled: bool = True
    config: _FreeForm = attrs.field(factory=dict)
    timeouts: Mapping[_CommandName, _PositiveDuration] = _NO_TIMEOUTS
    retry: RetryConfig = attrs.field(factory=RetryConfig)
    parallelism: _PositiveInt | None = None
    schedules: tuple[ScheduleConfig, ...] = ()
    circuit_breaker: CircuitBreakerConfig = attrs.field(factory=CircuitBreakerConfig)


_DEFAULT_PLUGIN: Final = PluginConfig()


#: Operators of a pipeline step's ``if:`` condition.
CONDITION_OPS: Final = ("eq", "ne", "gt", "gte", "lt", "lte", "contains", "in", "exists")


def _parse_op(value: object) -> str:
    op = _parse_str(value)
    if op not in CONDITION_OPS:
        raise _Invalid(f"unknown operator {op!r}; expected one of: {', '.join(CONDITION_OPS)}")
    return op


def _parse_mode(value: object) -> str:
    mode = _parse_str(value)
    if mode not in ("async", "synchronous"):
        raise _Invalid(f"expected 'async' or 'synchronous', got {mode!r}")
    return mode


def _parse_any(value: object) -> Any:
    return _plain(value)


_Any = Annotated[Any, _Rule(_parse_any)]
_PipelineName = Annotated[str, _Rule(_name_parser("pipeline name"))]
_StepId = Annotated[str, _Rule(_name_parser("step id"))]


@attrs.frozen(kw_only=True)
class RouteConfig:
    """One entry of ``routes:``: events of ``event_type`` from plugin ``from`` go to ``to``.

    ``to`` is ``plugin`` (its ``handle`` command) or ``plugin.command``.
    """

    source: _PluginName  # the YAML key is ``from``
    event_type: _NonEmptyStr
    to: _NonEmptyStr


@attrs.frozen(kw_only=True)
class ConditionConfig:
    """A step's ``if:``: the step runs only when ``path op value`` holds."""

    path: _NonEmptyStr
    op: Annotated[str, _Rule(_parse_op)] = "eq"
    value: _Any = None


@attrs.frozen(kw_only=True)
class StepConfig:
    """One step of a pipeline (YAML keys ``with`` and ``if`` hold ``with_`` and ``if_``)."""

    id: _StepId
    uses: _NonEmptyStr
    with_: _FreeForm | None = None
    if_: ConditionConfig | None = None
    baggage: _FreeForm = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class PipelineConfig:
    """One entry of ``pipelines:``; see docs/PIPELINES.md."""

    name: _PipelineName
    on: _NonEmptyStr
    execution_mode: Annotated[str, _Rule(_parse_mode)] = "async"
    timeout: _PositiveDuration = 60.0
    steps: tuple[StepConfig, ...]

    @property
    def synchronous(self) -> bool:
        """True when a trigger of ``on`` waits for the whole tree."""
        return self.execution_mode == "synchronous"


def _parse_webhook_path(value: object) -> str:
    path = _parse_str(value)
    if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", path) or "/../" in f"{path}/":
        raise _Invalid(
            "expected an absolute URL path like /hooks/github (letters, digits, ._~-),"
            f" got {path!r}"
        )
    return path


def _parse_webhook_kind(value: object) -> str:
    kind = _parse_str(value)
    if kind not in ("github", "gitlab", "hmac"):
        raise _Invalid(f"expected github, gitlab or hmac, got {kind!r}")
    return kind


@attrs.frozen(kw_only=True)
class WebhookEndpointConfig:
    """One entry of ``webhooks.endpoints``: a signed inbound URL that starts a job.

    Exactly one of ``plugin`` (running ``command``) and ``pipeline``.
    """

    path: Annotated[str, _Rule(_parse_webhook_path)]
    plugin: _PluginName | None = None
    pipeline: _PipelineName | None = None
    command: _CommandName = "handle"
    secret: _Secret = attrs.field(repr=False)
    kind: Annotated[str, _Rule(_parse_webhook_kind)] = "hmac"
    #: hmac only: the header holding ``sha256=<hex>`` (the prefix is optional).
    signature_header: _NonEmptyStr = "X-Signature-256"
    #: Where the event type comes from (defaults per kind); hmac without one uses
    #: ``webhook.<last path segment>``.
    event_type_header: _NonEmptyStr | None = None
    #: hmac only: the header naming the delivery, for replay protection.
    delivery_header: _NonEmptyStr = "X-Delivery-Id"
    max_body_size: _BodySize = 1024 * 1024


@attrs.frozen(kw_only=True)
class WebhooksConfig:
    """The ``webhooks:`` section.  ``listen`` serves them on a listener of their own."""

    listen: _Listen | None = None
    endpoints: tuple[WebhookEndpointConfig, ...] = ()


def _check_webhooks(webhooks: WebhooksConfig) -> None:
    problems: list[Exception] = []
    seen: dict[str, int] = {}
    for index, endpoint in enumerate(webhooks.endpoints):
        if (endpoint.plugin is None) == (endpoint.pipeline is None):
            problems.append(
                _Invalid("exactly one of plugin and pipeline is required", at=("endpoints", index))
            )
        if endpoint.path in seen:
            problems.append(
                _Invalid(
                    f"duplicate path {endpoint.path!r} (also endpoints[{seen[endpoint.path]}])",
                    at=("endpoints", index, "path"),
                )
            )
        seen.setdefault(endpoint.path, index)
    if problems:
        raise ClassValidationError("invalid webhooks section", problems, WebhooksConfig)


#: YAML keys that are Python keywords, by record and attribute.
_RENAMED: Final[Mapping[type, Mapping[str, str]]] = {
    RouteConfig: {"source": "from"},
    StepConfig: {"with_": "with", "if_": "if"},
}


@attrs.frozen(kw_only=True)
class Config:
    """The whole, validated configuration, with every path absolute.

    ``source`` is the absolute path of the file it came from (None when parsed from
    data); ``base_dir`` is the directory relative paths were resolved against.
    """

    service: ServiceConfig = attrs.field(factory=ServiceConfig)
    state: StateConfig
    plugin_roots: tuple[Path, ...]
    api: ApiConfig = attrs.field(factory=ApiConfig)
    plugins: Mapping[str, PluginConfig] = _NO_PLUGINS
    routes: tuple[RouteConfig, ...] = ()
    pipelines: tuple[PipelineConfig, ...] = ()
    callbacks: CallbacksConfig = attrs.field(factory=CallbacksConfig)
    webhooks: WebhooksConfig = attrs.field(factory=WebhooksConfig)
    source: Path | None = None
    base_dir: Path

    def plugin_config(self, name: str) -> PluginConfig:
        """Settings for plugin ``name``; defaults when ``plugins:`` does not mention it."""
        return self.plugins.get(name, _DEFAULT_PLUGIN)


@attrs.frozen(kw_only=True)
class _Document:
    """The file's top level, exactly as written; :class:`Config` adds what it implies."""

    service: ServiceConfig = attrs.field(factory=ServiceConfig)
    state: StateConfig = attrs.field(factory=StateConfig)
    plugin_roots: tuple[Annotated[Path, _Rule(_parse_path)], ...] = (Path("plugins"),)
    api: ApiConfig = attrs.field(factory=ApiConfig)
    plugins: Mapping[_PluginName, PluginConfig] = _NO_PLUGINS
    routes: tuple[RouteConfig, ...] = ()
    pipelines: tuple[PipelineConfig, ...] = ()
    callbacks: CallbacksConfig = attrs.field(factory=CallbacksConfig)
    webhooks: WebhooksConfig = attrs.field(factory=WebhooksConfig)


def _check_auth(auth: AuthConfig) -> None:
    problems: list[Exception] = []
    first_by_name: dict[str, int] = {}
    first_by_token: dict[str, int] = {}
    for index, token in enumerate(auth.tokens):
        if token.name in first_by_name:
            first = first_by_name[token.name]
            problems.append(
                _Invalid(
                    f"duplicate token name {token.name!r} (also tokens[{first}])",
                    at=("tokens", index, "name"),
                )
            )
        else:
            first_by_name[token.name] = index
        if token.token in first_by_token:
            problems.append(
                _Invalid(
                    f"same token value as tokens[{first_by_token[token.token]}]; "
                    "every token must be unique",
                    at=("tokens", index, "token"),
                )
            )
        else:
            first_by_token[token.token] = index
        if auth.api_key is not None and token.token == auth.api_key:
            problems.append(
                _Invalid(
                    "same value as api_key; a token must differ from the all-scopes key",
                    at=("tokens", index, "token"),
                )
            )
    if problems:
        raise ClassValidationError("invalid auth section", problems, AuthConfig)


def _check_retry(retry: RetryConfig) -> None:
    if retry.backoff_max < retry.backoff_base:
        raise _Invalid(
            f"must be at least backoff_base ({retry.backoff_base:g}s), got {retry.backoff_max:g}s",
            at=("backoff_max",),
        )


def _check_schedule(schedule: ScheduleConfig) -> None:
    problems: list[Exception] = []
    given = [key for key in SCHEDULE_KINDS if getattr(schedule, key) is not None]
    if len(given) != 1:
        got = f"; got {' and '.join(given)}" if given else ""
        problems.append(_Invalid(f"exactly one of {', '.join(SCHEDULE_KINDS)} is required{got}"))
    recurring = schedule.every is not None or schedule.cron is not None
    if len(given) == 1 and not recurring:
        for key in ("only_between", "not_on"):
            if getattr(schedule, key):
                problems.append(
                    _Invalid(
                        f"applies to recurring schedules (every, cron), not to {given[0]}",
                        at=(key,),
                    )
                )
    if len(set(schedule.not_on)) == len(_timing.WEEKDAY_NAMES):
        problems.append(
            _Invalid("excludes every day of the week, so it would never run", at=("not_on",))
        )
    every = schedule.every
    if isinstance(every, _timing.Interval) and schedule.jitter >= every.seconds:
        problems.append(
            _Invalid(
                f"must be shorter than the interval ({_timing.format_duration(every.seconds)})",
                at=("jitter",),
            )
        )
    if not problems and recurring:
        rule = schedule.every if schedule.every is not None else schedule.cron
        assert rule is not None
        zone, _ = _timing.resolve_zone(schedule.timezone)
        timing = _timing.recurring(
            rule, zone=zone, window=schedule.only_between, not_on=frozenset(schedule.not_on)
        )
        if timing.next_after(time.time()) is None:
            problems.append(
                _Invalid(
                    f"never runs: no instant of {given[0]} {schedule.spec!r} falls inside"
                    " only_between and outside not_on"
                )
            )
    if problems:
        raise ClassValidationError("invalid schedule", problems, ScheduleConfig)


def _check_schedule_ids(plugin: PluginConfig) -> None:
    problems: list[Exception] = []
    first: dict[str, int] = {}
    for index, schedule in enumerate(plugin.schedules):
        if schedule.id in first:
            problems.append(
                _Invalid(
                    f"duplicate schedule id {schedule.id!r} (also schedules[{first[schedule.id]}]);"
                    " give each schedule of a plugin its own id",
                    at=("schedules", index, "id"),
                )
            )
        else:
            first[schedule.id] = index
    if problems:
        raise ClassValidationError("invalid schedules", problems, PluginConfig)


# Checks that span several fields; they run once every field is valid on its own.
_POST_CHECKS: Final[Mapping[type, Callable[[Any], None]]] = {
    AuthConfig: _check_auth,
    RetryConfig: _check_retry,
    ScheduleConfig: _check_schedule,
    PluginConfig: _check_schedule_ids,
    WebhooksConfig: _check_webhooks,
}


# ------------------------------------------------------------------------ converter

_converter: Final = cattrs.Converter(forbid_extra_keys=True)
_Hook = Callable[[Any, Any], Any]


class _KeyNote(str):
    """Names the mapping key an error belongs to (cattrs' note cannot tell 1 from [1])."""

    key: object

    def __new__(cls, key: object) -> "_KeyNote":
        note = super().__new__(cls, f"Structuring mapping @ key {key!r}")
        note.key = key
        return note


def _noted(exc: Exception, note: str) -> Exception:
    exc.add_note(note)
    return exc


def _rule_of(tp: Any) -> _Rule | None:
    if get_origin(tp) is not Annotated:
        return None
    return next((meta for meta in tp.__metadata__ if isinstance(meta, _Rule)), None)


def _make_rule_hook(tp: Any) -> _Hook:
    rule = _rule_of(tp)
    assert rule is not None
    parse = rule.parse
    return lambda value, _: parse(value)


def _is_attrs_class(tp: Any) -> bool:
    return isinstance(tp, type) and attrs.has(tp)


def _make_attrs_hook(cl: type) -> _Hook:
    renamed = {attr: override(rename=key) for attr, key in _RENAMED.get(cl, {}).items()}
    inner: _Hook = make_dict_structure_fn(cl, _converter, **renamed)  # type: ignore[arg-type]
    check = _POST_CHECKS.get(cl)

    def structure(value: object, _: object) -> Any:
        if value is None:  # an empty section (`service:`) means "all defaults"
            value = {}
        if not isinstance(value, Mapping):
            raise _Invalid(f"expected a mapping, got {_describe(value)}")
        result = inner(value, cl)
        if check is not None:
            check(result)
        return result

    return structure


def _is_homogeneous_tuple(tp: Any) -> bool:
    args = get_args(tp)
    return get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def _make_tuple_hook(tp: Any) -> _Hook:
    item_type = get_args(tp)[0]
    item_hook = _converter.get_structure_hook(item_type)

    def structure(value: object, _: object) -> tuple[Any, ...]:
        if value is None:
            return ()
        # Iterating a string or mapping "works" in Python and would give nonsense.
        if not isinstance(value, list | tuple):
            raise _Invalid(f"expected a list, got {_describe(value)}")
        items: list[Any] = []
        errors: list[Exception] = []
        for index, raw in enumerate(value):
            try:
                items.append(item_hook(raw, item_type))
            except Exception as exc:
                note = IterableValidationNote(f"Structuring item @ index {index}", index, item_type)
                errors.append(_noted(exc, note))
        if errors:
            raise IterableValidationError("invalid list", errors, tp)
        return tuple(items)

    return structure


def _is_mapping(tp: Any) -> bool:
    return get_origin(tp) is Mapping


def _make_mapping_hook(tp: Any) -> _Hook:
    key_type, value_type = get_args(tp)
    key_hook = _converter.get_structure_hook(key_type)
    value_hook = _converter.get_structure_hook(value_type)

    def structure(value: object, _: object) -> Mapping[Any, Any]:
        if value is None:
            return MappingProxyType({})
        if not isinstance(value, Mapping):
            raise _Invalid(f"expected a mapping, got {_describe(value)}")
        result: dict[Any, Any] = {}
        errors: list[Exception] = []
        for raw_key, raw_value in value.items():
            # Check the key and the value both, so a bad name does not hide a bad body.
            errors_before = len(errors)
            try:
                key = key_hook(raw_key, key_type)
            except Exception as exc:
                errors.append(_noted(exc, _KeyNote(raw_key)))
            try:
                item = value_hook(raw_value, value_type)
            except Exception as exc:
                errors.append(_noted(exc, _KeyNote(raw_key)))
            if len(errors) == errors_before:
                result[key] = item
        if errors:
            raise IterableValidationError("invalid mapping", errors, tp)
        return MappingProxyType(result)

    return structure


_converter.register_structure_hook(str, lambda value, _: _parse_str(value))
_converter.register_structure_hook(int, lambda value, _: _parse_int(value))
_converter.register_structure_hook(bool, lambda value, _: _parse_bool(value))
_converter.register_structure_hook(Path, lambda value, _: _parse_path(value))
_converter.register_structure_hook_factory(_is_attrs_class, _make_attrs_hook)
_converter.register_structure_hook_factory(_is_homogeneous_tuple, _make_tuple_hook)
_converter.register_structure_hook_factory(_is_mapping, _make_mapping_hook)
_converter.register_structure_hook_factory(lambda tp: _rule_of(tp) is not None, _make_rule_hook)


def _render_path(path: _Path) -> str:
    text = ""
    for segment in path:
        if isinstance(segment, int):
            text += f"[{segment}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", segment):
            text += f".{segment}" if text else segment
        else:
            text += f"[{segment!r}]"
    return text


def _note_segments(exc: BaseException) -> _Path:
    for note in getattr(exc, "__notes__", ()):
        if isinstance(note, AttributeValidationNote):
            return (note.name,)
        if isinstance(note, _KeyNote):
            return (str(note.key),)
        if isinstance(note, IterableValidationNote):
            return (note.index,) if isinstance(note.index, int) else (str(note.index),)
    return ()


def _unknown_key_message(key: object, allowed: Sequence[str]) -> str:
    close = get_close_matches(str(key), allowed, n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (expected one of: {', '.join(sorted(allowed))})"


def _walk(exc: BaseException, path: _Path) -> Iterator[tuple[_Path, str, bool]]:
    """Turn a (possibly nested) structuring error into ``(path, problem, about_value)``.

    ``about_value`` is False for problems with the key itself (unknown keys), which
    stand whatever the value holds.
    """
    if isinstance(exc, BaseValidationError):
        # Name keys as written in YAML (``from``), not as the attribute (``source``).
        cl = getattr(exc, "cl", None)
        renamed = _RENAMED.get(cl, {}) if isinstance(cl, type) else {}
        for sub in exc.exceptions:
            segments = tuple(
                renamed.get(s, s) if isinstance(s, str) else s for s in _note_segments(sub)
            )
            yield from _walk(sub, (*path, *segments))
    elif isinstance(exc, ForbiddenExtraKeysError):
        renamed = _RENAMED.get(exc.cl, {})
        allowed = [renamed.get(field.name, field.name) for field in attrs.fields(exc.cl)]
        for key in sorted(exc.extra_fields, key=str):
            yield (*path, str(key)), _unknown_key_message(key, allowed), False
    elif isinstance(exc, KeyError):
        yield path, "required key is missing", False
    elif isinstance(exc, _Invalid):
        yield (*path, *exc.at), str(exc), True
    else:
        yield path, str(exc) or type(exc).__name__, True


# -------------------------------------------------------------------- interpolation

_INTERPOLATION_RE: Final = re.compile(
    r"""
      \$\$\{                                   # escaped: a literal ${
    | \$\{ (?P<name>[A-Za-z_][A-Za-z0-9_]*)
           (?: :- (?P<default>[^}]*) )? \}     # ${NAME} or ${NAME:-default}
    | \$\{                                     # any other ${ is malformed
    """,
    re.VERBOSE,
)


def _interpolate(
    node: object, path: _Path, environ: Mapping[str, str], problems: list[tuple[_Path, str]]
) -> object:
    """Substitute ``${VAR}`` in every string value of ``node``; keys are left alone."""
    if isinstance(node, str):
        return _interpolate_string(node, path, environ, problems)
    if isinstance(node, Mapping):
        return {
            key: _interpolate(value, (*path, str(key)), environ, problems)
            for key, value in node.items()
        }
    if isinstance(node, list | tuple):
        return [
            _interpolate(value, (*path, index), environ, problems)
            for index, value in enumerate(node)
        ]
    return node


def _interpolate_string(
    text: str, path: _Path, environ: Mapping[str, str], problems: list[tuple[_Path, str]]
) -> str:
    if "${" not in text:
        return text
    before = len(problems)
    substituted = False

    def replace(match: re.Match[str]) -> str:
        nonlocal substituted
        if match.group() == "$${":
            return "${"
        name, default = match["name"], match["default"]
        if name is None:
            snippet = text[match.start() : match.start() + 20]
            problems.append(
                (
                    path,
                    f"invalid reference {snippet!r}: expected ${{NAME}} or "
                    "${NAME:-default} (write $${ for a literal ${)",
                )
            )
            return match.group()
        if default is not None and "${" in default:
            problems.append((path, f"${{{name}:-...}}: a default cannot contain ${{...}}"))
            return match.group()
        value = environ.get(name)
        if default is not None and not value:
            value = default
        if value is None:
            problems.append((path, f"environment variable {name} is not set"))
            return match.group()
        substituted = True
        return value

    result = _INTERPOLATION_RE.sub(replace, text)
    if len(problems) > before:
        return text
    return _Interpolated(result) if substituted else result


# -------------------------------------------------------------------------- loading


class _Loader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys instead of keeping the last one.

    Mapping keys are always text: YAML 1.1 reads a bare ``on``/``off``/``yes``/``no``
    as a boolean, which would turn a pipeline's ``on:`` key into ``True``.  Values
    keep YAML 1.1's reading (``enabled: no`` is false).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        for key_node, _ in node.value:
            if (
                isinstance(key_node, yaml.ScalarNode)
                and key_node.tag == "tag:yaml.org,2002:bool"
                and not key_node.style
            ):
                key_node.tag = "tag:yaml.org,2002:str"
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # unhashable key: the base class reports it properly
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first defined at line {first.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        text = f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
        context = exc.context_mark
        if exc.context and context is not None and context.line != mark.line:
            text += f" ({exc.context} at line {context.line + 1}, column {context.column + 1})"
        return text
    return f"invalid YAML: {exc}"


def _resolve(path: Path, base_dir: Path) -> Path:
    if path == IN_MEMORY or path.is_absolute():
        return path
    return base_dir / path


def parse_config(
    data: object,
    *,
    base_dir: Path,
    environ: Mapping[str, str] | None = None,
    source: Path | None = None,
) -> Config:
    """Validate already-parsed YAML ``data`` and build a :class:`Config`.

    ``None`` (an empty document) gives all defaults. ``${VAR}`` references are filled
    from ``environ`` (default: ``os.environ``). Relative paths are resolved against
    ``base_dir``. ``source`` is only used in messages and as ``Config.source``. Raises
    :class:`ConfigError` listing every problem found.
    """
    environ = os.environ if environ is None else environ
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            [f"the top level must be a mapping, got {_describe(data)}"], source=source
        )
    interpolation_problems: list[tuple[_Path, str]] = []
    tree = _interpolate(data, (), environ, interpolation_problems)
    problems = list(interpolation_problems)
    document: _Document | None = None
    try:
        document = _converter.structure(tree, _Document)
    except Exception as exc:
        # A value whose interpolation failed still holds its raw "${...}" text; its
        # type errors would only repeat the problem already reported.
        unresolved = {path for path, _ in interpolation_problems}
        problems.extend(
            (path, message)
            for path, message, about_value in _walk(exc, ())
            if not (about_value and any(path[: len(bad)] == bad for bad in unresolved))
        )
    if problems or document is None:
        rendered = [
            f"{_render_path(path)}: {message}" if path else message for path, message in problems
        ]
        raise ConfigError(rendered, source=source)

    base_dir = base_dir.absolute()
    return Config(
        service=document.service,
        state=StateConfig(path=_resolve(document.state.path, base_dir)),
        plugin_roots=tuple(_resolve(root, base_dir) for root in document.plugin_roots),
        api=document.api,
        plugins=document.plugins,
        routes=document.routes,
        pipelines=document.pipelines,
        callbacks=document.callbacks,
        webhooks=document.webhooks,
        source=source,
        base_dir=base_dir,
    )


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read, interpolate and validate the YAML configuration file at ``path``.

    Relative paths inside the file are resolved against the file's directory. Raises
    :class:`ConfigError` (whose message starts with ``path``) if the file is missing or
    unreadable, is not valid YAML (the message names the line), or does not validate.
    """
    given = Path(path)
    try:
        text = given.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(["file not found"], source=given) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not valid UTF-8 ({exc.reason})"], source=given) from None
    except OSError as exc:
        raise ConfigError([exc.strerror or str(exc)], source=given) from None
    try:
        data = yaml.load(text, Loader=_Loader)  # _Loader derives from SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc)], source=given) from None
    absolute = given.absolute()
    try:
        config = parse_config(data, base_dir=absolute.parent, environ=environ, source=absolute)
    except ConfigError as exc:
        # Name the file the way the user did in messages.
        raise ConfigError(exc.problems, source=given) from None
    return config
