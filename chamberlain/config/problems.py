"""How a problem with the configuration is represented and worded.

:class:`ConfigError` is what the loaders raise; :class:`Invalid` is one problem with
one value, raised by the value parsers and cross checks and collected by the
converter. ``describe`` names a value the way the user wrote it. They sit in a module
of their own, importing nothing else from chamberlain, because every other part of
the package (down to :mod:`chamberlain.config.units`) words its messages with them.
"""

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# Path segments: a str is a mapping key or field name, an int a list index.
YamlPath = tuple[str | int, ...]


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


class Invalid(ValueError):
    """A problem with one value; ``at`` extends the path below the failing field."""

    def __init__(self, message: str, *, at: YamlPath = ()) -> None:
        super().__init__(message)
        self.at = at


def describe(value: object) -> str:
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
    return describe_kind(value)


def describe_kind(value: object) -> str:
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
