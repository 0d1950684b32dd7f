"""Who is calling and what they may do: bearer tokens and scopes.

Everything here is plain, synchronous logic so every rule has a unit test:

- :func:`grants` decides whether a set of scopes covers a required scope;
- :func:`parse_bearer` extracts the token from an ``Authorization`` header;
- :class:`TokenTable` maps a presented token to an :class:`Identity` in constant time;
- :func:`authenticate` and :func:`authorize` turn the answers into 401 and 403.

Scopes: ``plugin:ro`` (trigger read commands), ``plugin:rw`` (any command),
``jobs:ro``, ``jobs:rw``, ``events:ro``, ``events:rw``, ``secrets:ro`` (the
registry's names and hints, never a value), ``secrets:rw`` (register, rotate and
delete secrets), ``mcp:ro`` and ``mcp:rw`` (read, and change, the MCP server
registry), ``repos:ro`` and ``repos:rw``, ``admin`` (reload the configuration);
``x:rw`` implies ``x:ro``,
``read:*`` grants every ``:ro`` scope and ``*`` grants everything.  The legacy
``api.auth.api_key`` holds ``*``.

A route declares its access (:data:`Access`): :class:`Public` (no token),
:class:`Authenticated` (any valid token), :class:`Scoped` (a token holding one
scope) or :class:`ByCommand` (the triggered command's type decides the scope).

Check order for a protected route: authentication first (401), then the resource
(404; only the trigger route has a resource that decides its scope), then the scope
(403).  An anonymous caller therefore learns nothing about which plugins exist.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

import attrs

from chamberlain.config import AuthConfig
from chamberlain.plugins.manifest import CommandType
from chamberlain.web.errors import ApiError

__all__ = [
    "ADMIN",
    "ALL",
    "AUTHENTICATED",
    "EVENTS_RO",
    "EVENTS_RW",
    "JOBS_RO",
    "JOBS_RW",
    "MCP_RO",
    "MCP_RW",
    "PLUGIN_RO",
    "PLUGIN_RW",
    "PUBLIC",
    "READ_ALL",
    "SECRETS_RO",
    "SECRETS_RW",
    "Access",
    "Authenticated",
    "ByCommand",
    "Identity",
    "Public",
    "Scoped",
    "TokenTable",
    "authenticate",
    "authorize",
    "command_scope",
    "grants",
    "parse_bearer",
]

ALL = "*"
READ_ALL = "read:*"
PLUGIN_RO = "plugin:ro"
PLUGIN_RW = "plugin:rw"
JOBS_RO = "jobs:ro"
JOBS_RW = "jobs:rw"
EVENTS_RO = "events:ro"
EVENTS_RW = "events:rw"
#: The secret registry: its metadata (``ro``), its writes (``rw``); no scope reads values.
SECRETS_RO = "secrets:ro"
SECRETS_RW = "secrets:rw"
#: The MCP server registry: reading it (``ro``; it holds references, never values)
#: and changing it (``rw``).
MCP_RO = "mcp:ro"
MCP_RW = "mcp:rw"
#: The repositories: reading them (``ro``; never a credential) and adding, removing
#: and syncing them (``rw``).
REPOS_RO = "repos:ro"
REPOS_RW = "repos:rw"
#: Changing the daemon itself (``POST /system/reload``): only ``*`` implies it.
ADMIN = "admin"

#: The name the legacy all-scopes key is known by, in logs and ``submitted_by``.
LEGACY_NAME = "api_key"

REALM = "chamberlain"


def grants(scopes: Iterable[str], required: str) -> bool:
    """True when holding ``scopes`` allows what needs ``required``.

    ``*`` grants everything; a scope grants itself; ``read:*`` grants every ``:ro``
    scope; ``x:rw`` grants ``x:ro``.  Nothing else is implied: ``read:*`` never grants
    a ``:rw`` scope, and ``plugin:rw`` says nothing about ``jobs:ro``.
    """
    held = frozenset(scopes)
    if ALL in held or required in held:
        return True
    resource, colon, level = required.partition(":")
    if not colon or level != "ro":
        return False
    return READ_ALL in held or f"{resource}:rw" in held


def command_scope(kind: CommandType) -> str:
    """The scope needed to trigger a command of type ``kind``."""
    return PLUGIN_RO if kind is CommandType.READ else PLUGIN_RW


# -- what a route requires ---------------------------------------------------------


@attrs.frozen
class Public:
    """The route needs no token (health, readiness, the API description, the explorer
    and the dashboard's files)."""


@attrs.frozen
class Authenticated:
    """The route needs a valid token, whatever its scopes (``GET /whoami``).

    For what every caller may ask about itself: refusing a token here for lacking a
    scope would leave a client no way to learn which scopes it holds.
    """


@attrs.frozen
class Scoped:
    """The route needs a token holding ``scope``."""

    scope: str


@attrs.frozen(kw_only=True)
class ByCommand:
    """The route triggers a command: the command's type decides the scope.

    The scope is only known once the plugin and command are resolved, so the
    handler checks it (after answering 404 for unknown ones).
    """

    read: str = PLUGIN_RO
    write: str = PLUGIN_RW

    def scope_for(self, kind: CommandType) -> str:
        """The scope needed for a command of type ``kind``."""
        return self.read if kind is CommandType.READ else self.write


Access = Public | Authenticated | Scoped | ByCommand
PUBLIC = Public()
AUTHENTICATED = Authenticated()


# -- identities and tokens -----------------------------------------------------------


@attrs.frozen(kw_only=True)
class Identity:
    """An authenticated caller."""

    name: str
    scopes: frozenset[str]
    #: True for the legacy ``api.auth.api_key``.
    legacy: bool = False

    @property
    def submitted_by(self) -> str:
        """What jobs this caller submits record as their origin."""
        return LEGACY_NAME if self.legacy else f"token:{self.name}"

    def can(self, required: str) -> bool:
        """True when this caller holds a scope that grants ``required``."""
        return grants(self.scopes, required)


def _digest(raw: bytes) -> bytes:
    # Comparing fixed-length digests keeps the comparison time independent of the
    # configured tokens' lengths as well as of their contents.
    return hashlib.sha256(raw).digest()


def _raw(token: str) -> bytes:
    # Header values arrive decoded as latin-1, which maps bytes one to one; encoding
    # back recovers what the client sent, so a UTF-8 token in the config still matches.
    try:
        return token.encode("latin-1")
    except UnicodeEncodeError:
        return token.encode("utf-8")


@attrs.frozen
class _Entry:
    digest: bytes = attrs.field(repr=False)
    identity: Identity


@attrs.frozen
class TokenTable:
    """The configured tokens, looked up in constant time."""

    entries: tuple[_Entry, ...] = ()

    @classmethod
    def from_config(cls, auth: AuthConfig) -> TokenTable:
        """The tokens of ``api.auth``: the legacy key (if any) first, then ``tokens``."""
        entries: list[_Entry] = []
        if auth.api_key is not None:
            entries.append(
                _Entry(
                    _digest(auth.api_key.encode("utf-8")),
                    Identity(name=LEGACY_NAME, scopes=frozenset({ALL}), legacy=True),
                )
            )
        for token in auth.tokens:
            entries.append(
                _Entry(
                    _digest(token.token.encode("utf-8")),
                    Identity(name=token.name, scopes=frozenset(token.scopes)),
                )
            )
        return cls(tuple(entries))

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, token: str) -> Identity | None:
        """The identity ``token`` belongs to, or None.

        Every configured token is compared, with no early exit, so the time taken
        does not reveal whether or which entry matched.
        """
        presented = _digest(_raw(token))
        found: Identity | None = None
        for entry in self.entries:
            match = hmac.compare_digest(presented, entry.digest)
            if match and found is None:
                found = entry.identity
        return found


def parse_bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None.

    The scheme is case-insensitive (RFC 7235) and may be followed by one or more
    spaces (RFC 6750's ``1*SP``); the token must be non-empty and contain no spaces.
    Anything else (no header, another scheme, ``Bearer`` alone) gives None.
    """
    if header is None:
        return None
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


def _challenge(error: str | None = None, **params: str) -> str:
    fields = [f'realm="{REALM}"']
    if error is not None:
        fields.append(f'error="{error}"')
    fields.extend(f'{key}="{value}"' for key, value in params.items())
    return "Bearer " + ", ".join(fields)


def authenticate(header: str | None, tokens: TokenTable) -> Identity:
    """The caller presenting ``header``; raises a 401 :class:`ApiError` otherwise."""
    if header is None or not header.strip():
        raise ApiError(
            401,
            "authentication required: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": _challenge()},
        )
    token = parse_bearer(header)
    if token is None:
        raise ApiError(
            401,
            "malformed Authorization header: expected 'Bearer <token>'",
            headers={"WWW-Authenticate": _challenge("invalid_request")},
        )
    identity = tokens.lookup(token)
    if identity is None:
        raise ApiError(
            401, "invalid token", headers={"WWW-Authenticate": _challenge("invalid_token")}
        )
    return identity


def authorize(identity: Identity, required: str, *, action: str) -> None:
    """Raise a 403 :class:`ApiError` unless ``identity`` holds ``required``.

    ``action`` completes "needed to ..." in the message, so the client learns both
    the scope to ask for and why.
    """
    if not identity.can(required):
        raise ApiError(
            403,
            f"token {identity.name!r} lacks the scope {required!r} needed to {action}",
            headers={"WWW-Authenticate": _challenge("insufficient_scope", scope=required)},
        )
