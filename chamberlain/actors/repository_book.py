"""The repositories jobs may have worktrees of: the config's and those added at run time.

One book is shared by everything that looks a repository up by name (the Gateway,
each Runner, the syncs and the pull requests), so a repository added through the
API is usable by the next trigger without a restart, and one removed is gone for
all of them at once.  The config's entries are fixed; the others are loaded from
the store when it opens and changed after each write commits, on the trio thread,
so a reader never sees half a change.  Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Literal

import attrs

from chamberlain.config import RepositoryConfig
from chamberlain.config.references import REFERENCE
from chamberlain.repositories import default_api_url, derive_forge, parse_remote

__all__ = ["RepositoryBook", "Source", "forge_of"]

#: Where an entry comes from: ``repositories:`` of the config, or ``POST /repositories``.
Source = Literal["config", "api"]


@attrs.define(eq=False)
class RepositoryBook(Mapping[str, RepositoryConfig]):
    """Every repository by name: a mapping, the config's entries and the added ones."""

    configured: Mapping[str, RepositoryConfig] = attrs.field(factory=dict)
    _added: dict[str, RepositoryConfig] = attrs.field(factory=dict, init=False)

    def __getitem__(self, name: str) -> RepositoryConfig:
        found = self.configured.get(name)
        return found if found is not None else self._added[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self.configured, *self._added}))

    def __len__(self) -> int:
        return len({*self.configured, *self._added})

    def source(self, name: str) -> Source | None:
        """Where ``name`` comes from; None when it is unknown."""
        if name in self.configured:
            return "config"
        return "api" if name in self._added else None

    def loaded(self, added: Iterable[tuple[str, RepositoryConfig]]) -> None:
        """The store opened: these are the repositories added through the API."""
        self._added = {name: config for name, config in added if name not in self.configured}

    def add(self, name: str, config: RepositoryConfig) -> None:
        """An added repository's row committed."""
        self._added[name] = config

    def remove(self, name: str) -> None:
        """An added repository's row was deleted."""
        self._added.pop(name, None)

    def references(self, secret: str) -> list[str]:
        """Where the added repositories use ``secret`` (``repositories[<name>].token``).

        The config's own references are the config's to report.
        """
        return [
            f"repositories[{name}].token"
            for name, config in sorted(self._added.items())
            if config.token is not None and _names(config.token, secret)
        ]


def _names(text: str, secret: str) -> bool:
    return any(match["secret"] == secret for match in REFERENCE.finditer(text))


def forge_of(config: RepositoryConfig) -> tuple[str, str | None, str | None]:
    """``config``'s forge, ``owner/name`` on it and API root: given, else derived from its URL."""
    remote = parse_remote(config.url)
    forge = config.forge or derive_forge(remote)
    return forge, config.forge_repo or remote.forge_repo, config.api_url or default_api_url(forge)
