"""``${secret:name}``: where a configuration names a secret of the registry.

A reference is not filled in when the file is read.  The registry's values can
change while the daemon runs (``PUT /secrets/{name}`` rotates one), so the text
stays in the value as written and is resolved each time it is used: when a job
starts (its plugin's ``config`` and ``env``), when a webhook delivery is checked,
when a relay delivery is signed or checked, when a callback is signed
(:meth:`chamberlain.vault.Vault.resolve`).  The loader
records each reference's YAML path in ``Config.secret_references``, which tells the
registry where a secret is in use and lets start-up name every unknown secret with
its path (:func:`check_secret_references`).

References are allowed only in :data:`SECRET_PLACES`; anywhere else the value would
be used as written, so the loader refuses it.  Inside those places ``$${secret:``
is the literal text ``${secret:``: resolution, not the loader, takes that escape
out, so what the loader leaves there never turns into a reference later.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Final

import attrs

from chamberlain import sealing
from chamberlain.config.problems import YamlPath

if TYPE_CHECKING:
    from chamberlain.config.sections import Config

#: The text of one reference.  The name part takes anything up to the brace, so that a
#: malformed name is reported as one rather than as a stray ``${``.
REFERENCE_PATTERN: Final = r"\$\{secret:(?P<secret>[^}]*)\}"

#: ``$${secret:`` (the escape) or a reference; what resolution substitutes.
REFERENCE: Final = re.compile(rf"\$\$\{{secret:|{REFERENCE_PATTERN}")

#: Where a literal ``${secret:`` is written as ``$${secret:``.
ESCAPED: Final = "$${secret:"
#: What marks a string that may hold a reference (or its escape).
MARKER: Final = "${secret:"


class _Any(enum.Enum):
    KEY = enum.auto()  # one mapping key
    INDEX = enum.auto()  # one list index
    BELOW = enum.auto()  # anything below, at any depth


#: The YAML paths whose strings may hold ``${secret:name}``, in the order messages
#: list them.  A setting that takes a secret in a later release is one more entry.
SECRET_PLACES: Final[tuple[tuple[str | _Any, ...], ...]] = (
    ("plugins", _Any.KEY, "config", _Any.BELOW),
    ("plugins", _Any.KEY, "env", _Any.KEY),
    ("webhooks", "endpoints", _Any.INDEX, "secret"),
    ("callbacks", "secret"),
    ("instances", _Any.INDEX, "secret"),
    ("remote_ingress", "peers", _Any.INDEX, "secret"),
    ("repositories", _Any.KEY, "token"),
)


def _show(place: Sequence[str | _Any]) -> str:
    text = ""
    for segment in place:
        if segment is _Any.INDEX:
            text += "[i]"
        elif segment is _Any.KEY:
            text += ".<name>"
        elif isinstance(segment, str):
            text += f".{segment}" if text else segment
    return text


#: :data:`SECRET_PLACES` as messages name them.
SECRET_PLACES_SHOWN: Final = ", ".join(_show(place) for place in SECRET_PLACES)


def _matches(place: Sequence[str | _Any], path: YamlPath) -> bool:
    for index, wanted in enumerate(place):
        if wanted is _Any.BELOW:
            return len(path) > index
        if index >= len(path):
            return False
        got = path[index]
        if wanted is _Any.KEY:
            fits = isinstance(got, str)
        elif wanted is _Any.INDEX:
            fits = isinstance(got, int)
        else:
            fits = got == wanted
        if not fits:
            return False
    return len(path) == len(place)


def takes_secrets(path: YamlPath) -> bool:
    """True when the string at ``path`` may hold ``${secret:name}``."""
    return any(_matches(place, path) for place in SECRET_PLACES)


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a secret (the registry's rule), or None when it can."""
    problem = sealing.name_problem(name)
    return None if problem is None else f"invalid secret name {name!r}: {problem}"


@attrs.frozen(kw_only=True)
class SecretReference:
    """One ``${secret:name}`` of the configuration: the YAML path that holds it."""

    #: As messages write it: ``plugins.github.config.token``.
    path: str
    name: str


def check_secret_references(config: Config, names: Collection[str]) -> list[str]:
    """A problem for each reference of ``config`` to a secret not among ``names``.

    Each names the YAML path, the secret, and the secrets the registry holds, so one
    run of ``chamberlain check`` shows every one.  Empty when all are known.
    """
    unknown = [ref for ref in config.secret_references if ref.name not in names]
    if not unknown:
        return []
    if names:
        known = f"the registry holds: {', '.join(sorted(names))}"
    else:
        known = "the registry holds no secrets; add it with POST /secrets"
    return [f"{ref.path}: unknown secret {ref.name!r} ({known})" for ref in unknown]
