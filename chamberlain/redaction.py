"""Redacting secrets from what jobs leave behind: results, messages, logs, error bodies.

Plugins never see the daemon's secrets in their environment
(:mod:`chamberlain.plugins.environment`), but one may still come across a token (a
misconfigured plugin config, a service that echoes it back), and a plugin given a
registry secret may print it; whatever a plugin prints ends up readable by anyone
with a read-only token.  So every value of :func:`configured_secrets` and of the
secret registry is replaced by ``[redacted:<name>]`` wherever job data enters the
store (the outcome, stderr lines), in every log line and in API error bodies.
:class:`chamberlain.vault.Vault` builds the daemon's redactor from both and builds
it again whenever a registry value changes.

A :class:`Redactor` is one compiled alternation of the values, longest first, so
where two secrets start at the same place the longer one is hidden whole; where they
overlap otherwise, the replacement covers both.  A plain substring search per value
comes first and decides whether there is anything to replace at all, and without
any secret nothing is done.  Stderr is redacted per complete line, after the process
reader has joined the reads it arrived in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from chamberlain.config import Config
from chamberlain.config.references import MARKER
from chamberlain.plugins.protocol import RAW_OUTPUT_MAX, Outcome

#: The shortest start of a secret hidden where a text was cut off: shorter ones give
#: nothing away, and would hide innocent text too often.
MIN_PARTIAL: Final = 4

# What truncation in this code base appends to a cut text.
_ELLIPSIS: Final = "\u2026"


def configured_secrets(config: Config) -> dict[str, str]:
    """Every secret ``config`` holds, by the name a redaction shows: name -> value.

    A setting that holds a ``${secret:name}`` reference is left out: the text is not
    a value, and the registry's value is redacted under its own name.
    """
    secrets: dict[str, str] = {}
    auth = config.api.auth
    if auth.api_key is not None:
        secrets["api.auth.api_key"] = auth.api_key
    for token in auth.tokens:
        secrets[f"api.auth.tokens[{token.name}]"] = token.token
    for endpoint in config.webhooks.endpoints:
        secrets[f"webhooks.endpoints[{endpoint.path}].secret"] = endpoint.secret
    if config.callbacks.secret is not None:
        secrets["callbacks.secret"] = config.callbacks.secret
    for name, repository in config.repositories.items():
        if repository.token is not None:
            secrets[f"repositories.{name}.token"] = repository.token
    return {name: value for name, value in secrets.items() if MARKER not in value}


def _label(names: list[str]) -> str:
    return f"[redacted:{', '.join(names)}]"


@attrs.frozen
class Redactor:
    """Replaces secret values with ``[redacted:<name>]``; the default one replaces nothing.

    Build it with :meth:`from_secrets` or :meth:`from_config`.
    """

    # Neither is in the repr: both hold the very values this class exists to hide.
    _pattern: re.Pattern[str] | None = attrs.field(default=None, repr=False)
    #: value (or its JSON-escaped form) -> the name of the first secret with that value.
    _names: Mapping[str, str] = attrs.field(factory=dict, repr=False)

    @classmethod
    def from_secrets(cls, secrets: Mapping[str, str]) -> Redactor:
        """A redactor for ``secrets`` (name -> value); empty values are ignored."""
        return cls.from_pairs(secrets.items())

    @classmethod
    def from_pairs(cls, secrets: Iterable[tuple[str, str]]) -> Redactor:
        """A redactor for ``(name, value)`` pairs, where one name may have several values.

        Where two names share a value, the first pair's name is shown.  Empty values
        are ignored.
        """
        names: dict[str, str] = {}
        for name, value in secrets:
            if value:
                names.setdefault(value, name)
        if not names:
            return cls()
        # A value holding quotes, backslashes or control characters looks different
        # inside JSON text, which is what :meth:`data` searches first.
        for value, name in list(names.items()):
            names.setdefault(json.dumps(value, ensure_ascii=False)[1:-1], name)
        # Longest first: alternation takes the first alternative that matches.
        ordered = sorted(names, key=len, reverse=True)
        return cls(re.compile("|".join(map(re.escape, ordered))), names)

    @classmethod
    def from_config(cls, config: Config) -> Redactor:
        """A redactor for every secret of ``config``."""
        return cls.from_secrets(configured_secrets(config))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str, *, cut: bool = False) -> str:
        """``text`` with every secret replaced.

        ``cut`` says the text was cut off at its end (perhaps marked with an ellipsis):
        then a start of a secret found there, at least :data:`MIN_PARTIAL` characters
        long, is replaced too.
        """
        pattern = self._pattern
        if pattern is None or (not cut and not self.finds(text)):
            return text
        pieces: list[str] = []
        position = 0
        match = pattern.search(text)
        while match is not None:
            start, end = match.span()
            names = [self._names[match.group()]]
            # A secret starting inside this match may reach beyond it: cover it too.
            inner = start + 1
            while inner < end:
                other = pattern.match(text, inner)
                if other is not None:
                    end = max(end, other.end())
                    name = self._names[other.group()]
                    if name not in names:
                        names.append(name)
                inner += 1
            pieces.append(text[position:start])
            pieces.append(_label(names))
            position = end
            match = pattern.search(text, position)
        if position == 0 and not cut:
            return text
        pieces.append(text[position:])
        result = "".join(pieces)
        return self._hide_partial(result) if cut else result

    def _hide_partial(self, text: str) -> str:
        body, ellipsis = (
            (text[: -len(_ELLIPSIS)], _ELLIPSIS) if text.endswith(_ELLIPSIS) else (text, "")
        )
        best: tuple[int, str] | None = None
        for value, name in self._names.items():
            for size in range(min(len(value) - 1, len(body)), MIN_PARTIAL - 1, -1):
                if body.endswith(value[:size]):
                    if best is None or size > best[0]:
                        best = (size, name)
                    break
        if best is None:
            return text
        size, name = best
        return f"{body[:-size]}{_label([name])}{ellipsis}"

    def data(self, value: Any) -> Any:
        """A JSON-like ``value`` with every string in it (keys too) redacted.

        Mappings come back as dicts and sequences as lists, but only when something
        in them had to change; otherwise ``value`` itself is returned.  Objects that
        are not JSON are left as they are.  The search runs once over the value's
        JSON text (fast, and nothing more is done when it finds nothing); only a value
        holding a secret is walked, without recursion, so no nesting depth makes it
        fail.
        """
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        try:
            if not self.finds(json.dumps(value, ensure_ascii=False, default=str)):
                return value
        except (RecursionError, TypeError):
            pass  # too deep for the encoder, or keys JSON has no form for: walk it
        except ValueError:
            return value  # circular: it cannot be written out anyway
        root: list[Any] = [None]
        stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]
        while stack:
            item, target, key = stack.pop()
            if isinstance(item, str):
                target[key] = self.text(item)
            elif isinstance(item, Mapping):
                copy: dict[Any, Any] = {}
                target[key] = copy
                for name, inner in item.items():
                    new_name = self.text(name) if isinstance(name, str) else name
                    copy[new_name] = None
                    stack.append((inner, copy, new_name))
            elif isinstance(item, list | tuple):
                items: list[Any] = [None] * len(item)
                target[key] = items
                stack.extend((inner, items, index) for index, inner in enumerate(item))
            else:
                target[key] = item
        return root[0]

    def finds(self, text: str) -> bool:
        """True when ``text`` holds a secret, as itself or JSON-escaped."""
        # A substring search per value beats the alternation by far when nothing is
        # there, which is nearly always.
        return any(value in text for value in self._names)


def redact_outcome(outcome: Outcome, redactor: Redactor) -> Outcome:
    """``outcome`` with every secret taken out of what the store keeps of it."""
    if not redactor:
        return outcome
    response = outcome.response
    if response is not None:
        response = attrs.evolve(
            response,
            result=redactor.data(response.result),
            error=None if response.error is None else redactor.text(response.error),
            events=tuple(redactor.data(event) for event in response.events),
            state_updates=redactor.data(response.state_updates),
            logs=tuple(redactor.data(entry) for entry in response.logs),
            session=None if response.session is None else redactor.data(response.session),
        )
    error, raw = outcome.error, outcome.raw_output
    if error is not None:
        # An error quoting the plugin's stderr cuts that line short with an ellipsis.
        error = redactor.text(error, cut=error.endswith(_ELLIPSIS))
    if raw is not None:
        # A cut may split a UTF-8 sequence, whose replacement takes 3 bytes.
        cut = len(raw.encode("utf-8", errors="replace")) >= RAW_OUTPUT_MAX - 3
        raw = redactor.text(raw, cut=cut)
    return attrs.evolve(
        outcome,
        error=error,
        response=response,
        raw_output=raw,
        stderr_tail=redactor.text(outcome.stderr_tail),
        loop=None if outcome.loop is None else redactor.data(outcome.loop),
    )
