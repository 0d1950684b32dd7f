"""Value parsers and the rules that attach them to record fields.

Each parser takes one raw YAML value and returns it typed, or raises
:class:`~chamberlain.config.problems.Invalid` with a message the user can act on.
``Annotated`` metadata attaches a constraint to a field type (:class:`Rule`: read it
with this parser; :class:`NonEmpty`: refuse an empty container), so
:mod:`chamberlain.config.sections` declares constraints on its fields and the
converter applies them. Kept apart from the records so the shared rules read as one
list, and apart from the converter, which only applies them.
"""

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import attrs

from chamberlain.callback_rules import parse_host_rule
from chamberlain.config.problems import Invalid, describe, describe_kind
from chamberlain.config.units import parse_duration, parse_size

VALID_SCOPES: Final[tuple[str, ...]] = (
    "plugin:ro",
    "plugin:rw",
    "jobs:ro",
    "jobs:rw",
    "events:ro",
    "events:rw",
    "secrets:ro",
    "secrets:rw",
    "mcp:ro",
    "mcp:rw",
    "repos:ro",
    "repos:rw",
    "admin",
    "*",
    "read:*",
)
"""Scopes an API token may carry."""

# Plugin and command names end up in URLs, log fields and next to file names, so they
# are kept to a conservative charset.
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

_N = TypeVar("_N", int, float)


class Interpolated(str):
    """Text that came (at least partly) from ``${VAR}`` interpolation.

    Environment variables are always strings, so numeric and boolean fields accept
    these where they reject the same text typed in quotes.
    """

    __slots__ = ()


def _quoted_hint(value: object, looks_right: bool) -> str:
    return " (remove the quotes)" if looks_right and not isinstance(value, Interpolated) else ""


_INT_RE: Final = re.compile(r"[+-]?\d+")
_TRUE_WORDS: Final = frozenset({"true", "yes", "on"})
_FALSE_WORDS: Final = frozenset({"false", "no", "off"})


def parse_int(value: object) -> int:
    """An integer field: a YAML integer, or digits that came from ``${VAR}``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Interpolated) and _INT_RE.fullmatch(value.strip()):
        return int(value)
    hint = _quoted_hint(value, isinstance(value, str) and bool(_INT_RE.fullmatch(value.strip())))
    raise Invalid(f"expected an integer, got {describe(value)}{hint}")


def parse_bool(value: object) -> bool:
    """A boolean field: a YAML boolean, or ``true``/``yes``/``on``... from ``${VAR}``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, Interpolated):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    words = _TRUE_WORDS | _FALSE_WORDS
    hint = _quoted_hint(value, isinstance(value, str) and value.strip().lower() in words)
    raise Invalid(f"expected true or false, got {describe(value)}{hint}")


def parse_str(value: object) -> str:
    """A string field: YAML text only, never a number or boolean converted to text."""
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {describe(value)}")
    return str(value)  # drops the Interpolated tag


def _parse_non_empty_str(value: object) -> str:
    text = parse_str(value)
    if not text.strip():
        raise Invalid("must not be empty")
    return text


def _parse_secret(value: object) -> str:
    # Never echo the value: a wrongly typed secret is still a secret.
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {describe_kind(value)}")
    if not value.strip():
        raise Invalid("must not be empty")
    return str(value)


def parse_path(value: object) -> Path:
    """A path field: non-empty text, with ``~`` expanded; relative paths stay relative."""
    text = parse_str(value)
    if not text.strip():
        raise Invalid("expected a path, got an empty string")
    return Path(text).expanduser()


def bounded(
    parse: Callable[[object], _N],
    *,
    minimum: _N | None = None,
    maximum: _N | None = None,
    show: Callable[[_N], str] = str,
) -> Callable[[object], _N]:
    """``parse``, then refuse a result below ``minimum`` or above ``maximum``.

    ``show`` writes the bounds and the value the way the file would (``format_duration``
    for durations), so the message reads like the config it is about.
    """

    def parse_bounded(value: object) -> _N:
        result = parse(value)
        if minimum is not None and result < minimum:
            raise Invalid(f"must be at least {show(minimum)}, got {show(result)}")
        if maximum is not None and result > maximum:
            raise Invalid(f"must be at most {show(maximum)}, got {show(result)}")
        return result

    return parse_bounded


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise Invalid(f"must be longer than zero, got {describe(value)}")
    return seconds


def name_parser(kind: str) -> Callable[[object], str]:
    """Parse names that end up in URLs and file names; ``kind`` names them in messages."""

    def parse_name(value: object) -> str:
        name = parse_str(value)
        if not _NAME_RE.fullmatch(name):
            raise Invalid(
                f"invalid {kind} {name!r}: use letters, digits, '_', '.' and '-', "
                "starting with a letter or digit"
            )
        if ".." in name:
            raise Invalid(f"invalid {kind} {name!r}: must not contain '..'")
        return name

    return parse_name


def _parse_scope(value: object) -> str:
    scope = parse_str(value)
    if scope not in VALID_SCOPES:
        raise Invalid(f"{scope!r} is not a valid scope; expected one of: {', '.join(VALID_SCOPES)}")
    return scope


def split_listen(listen: str) -> tuple[str, int]:
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
    listen = parse_str(value)
    split_listen(listen)
    return listen


def _parse_host_rule(value: object) -> str:
    text = parse_str(value)
    try:
        parse_host_rule(text)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return text


def plain(value: object) -> Any:
    """Copy a free-form YAML tree, dropping the interpolation tags."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def _parse_free_form(value: object) -> dict[str, Any]:
    # A plain dict rather than a read-only proxy: this goes to the plugin as JSON, and
    # json.dumps refuses mappingproxy.
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Invalid(f"expected a mapping, got {describe(value)}")
    result: dict[str, Any] = plain(value)
    return result


@attrs.frozen
class Rule:
    """``Annotated`` metadata: structure this field with ``parse`` instead of its type."""

    parse: Callable[[object], Any]


@attrs.frozen
class NonEmpty:
    """``Annotated`` metadata: structure this field by its type, then refuse it if empty.

    For a container whose items have rules of their own, so the converter (which
    knows how to structure the container) does the work and this only adds the check.
    """

    message: str


NonEmptyStr = Annotated[str, Rule(_parse_non_empty_str)]
Secret = Annotated[str, Rule(_parse_secret)]
PositiveInt = Annotated[int, Rule(bounded(parse_int, minimum=1))]
Duration = Annotated[float, Rule(parse_duration)]
PositiveDuration = Annotated[float, Rule(_positive_duration)]
BodySize = Annotated[int, Rule(bounded(parse_size, minimum=1))]
Listen = Annotated[str, Rule(_parse_listen)]
_Scope = Annotated[str, Rule(_parse_scope)]
HostRule = Annotated[str, Rule(_parse_host_rule)]
Scopes = Annotated[
    tuple[_Scope, ...],
    NonEmpty(f"a token needs at least one scope, such as {VALID_SCOPES[-1]!r}"),
]
PluginName = Annotated[str, Rule(name_parser("plugin name"))]
CommandName = Annotated[str, Rule(name_parser("command name"))]
FreeForm = Annotated[Mapping[str, Any], Rule(_parse_free_form)]
