"""The secrets a running daemon knows, in the clear, in memory only.

The registry (``/secrets``) keeps each value sealed in the store
(:mod:`chamberlain.sealing`); the :class:`Vault` holds the values unsealed, for the
life of the process, because every job may need them: ``${secret:name}`` in a
plugin's config or environment is resolved when the job starts
(:meth:`Vault.resolve`, :meth:`Vault.resolve_tree`), a webhook secret when a delivery
is checked and the callback secret when a callback is signed, so a rotation takes
effect for the next use without a restart.  The syntax and the places a reference
may appear belong to :mod:`chamberlain.config.references`; the vault knows where the
configuration uses each secret (:meth:`Vault.references_to`), and so can anything
else that uses them and tells it (:meth:`Vault.add_reference_source`).

The vault also owns the daemon's :class:`~chamberlain.redaction.Redactor`: the
configured tokens and secrets, every registry value, and every value a secret had
earlier in this process's life (rotated away or deleted), because a job started
before the change still holds it.  It is rebuilt whenever a value changes, and
whoever redacts (the Runners, the log formatter, the API's error bodies) reads
:attr:`Vault.redactor` each time, or is told of the new one through
:meth:`Vault.on_change`.  Everything here runs on the trio thread; a reader in a
worker thread only ever reads the attribute, which is replaced whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from chamberlain.config import Config
from chamberlain.config.references import MARKER, REFERENCE, SecretReference
from chamberlain.redaction import Redactor, configured_secrets

#: How many of a secret's former values stay redacted (newest first kept).
FORMER_VALUES_KEPT = 8

__all__ = ["FORMER_VALUES_KEPT", "UnknownSecret", "Vault"]


class UnknownSecret(LookupError):
    """A ``${secret:name}`` whose secret the registry does not hold."""

    def __init__(self, name: str, places: Iterable[str] = ()) -> None:
        where = ", ".join(places)
        super().__init__(
            f"secret {name!r} is not in the registry"
            + (f" (referenced by {where})" if where else "")
        )
        self.name = name


@attrs.define(eq=False)
class Vault:
    """Registry values by name, and the redactor that hides them and the configured ones."""

    #: The secrets the config itself holds (``configured_secrets``): name -> value.
    configured: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    #: Where the configuration names a registry secret (``Config.secret_references``).
    references: tuple[SecretReference, ...] = ()
    _values: dict[str, str] = attrs.field(factory=dict, init=False, repr=False)
    #: Values secrets no longer have, still redacted: value -> the secret's name.
    _former: dict[str, str] = attrs.field(factory=dict, init=False, repr=False)
    _listeners: list[Callable[[Redactor], None]] = attrs.field(factory=list, init=False)
    _sources: list[Callable[[str], Iterable[str]]] = attrs.field(factory=list, init=False)
    redactor: Redactor = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.redactor = self._build()

    def _build(self) -> Redactor:
        # A registry secret is shown by its own name: [redacted:github_token].  Pairs,
        # not one mapping: a registry name may equal a configured one, and a name may
        # have had several values.
        return Redactor.from_pairs(
            [*self._values.items(), *self.configured.items(), *_swapped(self._former)]
        )

    def _changed(self) -> None:
        self.redactor = self._build()
        for listener in self._listeners:
            listener(self.redactor)

    def _retire(self, name: str, value: str | None) -> None:
        if value is None:
            return
        self._former.pop(value, None)
        self._former[value] = name
        # A daemon that runs for years, rotating a secret every hour, must not grow
        # its redaction pattern without end: the newest few former values of each
        # secret are what a job still running can hold.
        kept = [v for v, n in self._former.items() if n == name]
        for stale in kept[:-FORMER_VALUES_KEPT]:
            del self._former[stale]

    def configure(self, config: Config) -> None:
        """Take ``config``'s own secrets and its references (the daemon does, at start)."""
        self.configured = configured_secrets(config)
        self.references = config.secret_references
        self._changed()

    def on_change(self, listener: Callable[[Redactor], None]) -> None:
        """Call ``listener`` with the new redactor now, and after every change."""
        self._listeners.append(listener)
        listener(self.redactor)

    def load(self, values: Mapping[str, str]) -> None:
        """Replace every registry value (at start-up, from the store)."""
        for name, old in self._values.items():
            if values.get(name) != old:
                self._retire(name, old)
        self._values = dict(values)
        self._changed()

    def put(self, name: str, value: str) -> None:
        """A secret was created or rotated (call once the store has committed it)."""
        old = self._values.get(name)
        if old != value:
            self._retire(name, old)
        self._values[name] = value
        self._changed()

    def remove(self, name: str) -> None:
        """A secret was deleted (once the store has committed it)."""
        old = self._values.pop(name, None)
        if old is not None:
            self._retire(name, old)
            self._changed()

    def get(self, name: str) -> str | None:
        """The value of registry secret ``name``, or None if there is none."""
        return self._values.get(name)

    def names(self) -> Iterable[str]:
        """The names of the registry's secrets."""
        return self._values.keys()

    # ---------------------------------------------------------------- references

    def resolve(self, text: str) -> str:
        """``text`` with each ``${secret:name}`` replaced by the secret's value now.

        ``$${secret:`` gives the literal ``${secret:``.  Raises :class:`UnknownSecret`
        for a name the registry does not hold.
        """
        if MARKER not in text:
            return text
        return REFERENCE.sub(self._substitute, text)

    def _substitute(self, match: re.Match[str]) -> str:
        name = match["secret"]
        if name is None:
            return MARKER  # the escape
        value = self._values.get(name)
        if value is None:
            raise UnknownSecret(name, self.references_to(name))
        return value

    def resolve_tree(self, value: Any) -> Any:
        """A JSON-like ``value`` with :meth:`resolve` applied to every string in it.

        Keys are left alone.  Containers come back as dicts and lists where a string
        in them changed, and as themselves otherwise; so does ``value``.
        """
        if isinstance(value, str):
            return self.resolve(value)
        if isinstance(value, Mapping):
            changed = False
            items: dict[Any, Any] = {}
            for key, inner in value.items():
                items[key] = resolved = self.resolve_tree(inner)
                changed = changed or resolved is not inner
            return items if changed else value
        if isinstance(value, list | tuple):
            resolved_items = [self.resolve_tree(inner) for inner in value]
            if any(new is not old for new, old in zip(resolved_items, value, strict=True)):
                return resolved_items
            return value
        return value

    def add_reference_source(self, source: Callable[[str], Iterable[str]]) -> None:
        """Have :meth:`references_to` also ask ``source`` where a secret is used.

        ``source(name)`` answers, synchronously and on the trio thread, the places
        outside the configuration that use the secret ``name`` (such as a registered
        MCP server's environment), each as the registry's 409 should name it.
        """
        self._sources.append(source)

    def references_to(self, name: str) -> list[str]:
        """Where secret ``name`` is used: YAML paths of the configuration, then the rest.

        Empty when nothing uses it, so it may be deleted.
        """
        places = [ref.path for ref in self.references if ref.name == name]
        for source in self._sources:
            places.extend(source(name))
        return places


def _swapped(former: Mapping[str, str]) -> Iterable[tuple[str, str]]:
    return ((name, value) for value, name in former.items())
