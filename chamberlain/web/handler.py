"""What a route handler receives and returns.

Handlers take a :class:`Call` (the parsed request plus the daemon's handles) and
return a :class:`Reply` (a JSON body, a status, headers).  They never touch Quart's
request globals, so they read like plain functions and the app alone owns the
translation to and from HTTP.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from chamberlain.actors.gateway import Gateway
from chamberlain.callback_rules import CallbackRules
from chamberlain.config import ApiConfig
from chamberlain.instruments import Metrics
from chamberlain.plugins.manifest import CommandType
from chamberlain.web.auth import Access, ByCommand, Identity, TokenTable, authorize
from chamberlain.web.errors import ApiError, bad_request

if TYPE_CHECKING:
    from chamberlain.web.spec import Route

_EMPTY: Mapping[str, str] = MappingProxyType({})
_NO_ROUTES: Mapping[str, Route] = MappingProxyType({})


@attrs.frozen(kw_only=True)
class Site:
    """Everything shared by all requests of one app."""

    gateway: Gateway
    api: ApiConfig
    tokens: TokenTable
    #: The OpenAPI document, generated once from the route table the app serves.
    openapi: Mapping[str, Any]
    metrics: Metrics = attrs.field(factory=Metrics)
    #: What a trigger's callback_url is checked against.
    callbacks: CallbackRules = attrs.field(factory=CallbackRules)
    #: The daemon's clock (epoch seconds), the one its actors are given: whatever a
    #: handler stamps (events, plans) is stamped by it, so a daemon run on a fake
    #: clock stamps fake times everywhere.
    now: Callable[[], float] = time.time
    #: The routes served now, by operation id: a reload may add webhook endpoints
    #: and take some away (a rule once added stays, and answers 404 without its route).
    routes: Mapping[str, Route] = _NO_ROUTES


@attrs.frozen(kw_only=True)
class Call:
    """One request, as a handler sees it."""

    site: Site
    access: Access
    #: The authenticated caller; None only on public routes.
    identity: Identity | None
    #: Path parameters by name (``plugin``, ``job_id`` ...).
    path: Mapping[str, str]
    #: Query parameters, every value of each; already checked against the route's.
    query: Mapping[str, Sequence[str]]
    request_id: str
    #: What is wrong with the query string (a parameter the route does not take, a
    #: repeated one), raised by :meth:`check_query` once authorization has passed.
    query_error: ApiError | None = None
    #: Reads the whole body, enforcing ``api.max_body_size`` (413) while reading.
    read_body: Callable[[], Awaitable[bytes]]
    #: The request's headers (one value per name).
    headers: Mapping[str, str] = _EMPTY
    #: A request header by name (case-insensitive), or None.
    header: Callable[[str], str | None] = lambda name: None

    @property
    def gateway(self) -> Gateway:
        """The daemon."""
        return self.site.gateway

    def check_query(self) -> None:
        """Raise the 400 for a query string the route does not accept, if any."""
        if self.query_error is not None:
            raise self.query_error

    def flag(self, name: str) -> bool:
        """The boolean query parameter ``name``: False when absent.

        ``true``, ``1`` and ``yes`` are true, ``false``, ``0`` and ``no`` false (any
        case); anything else, the empty value included, is a 400 naming the
        parameter: a misspelt flag taken as false would answer another question.
        """
        values = self.query.get(name)
        if not values:
            return False
        value = values[-1].strip().lower()
        if value in ("true", "1", "yes"):
            return True
        if value in ("false", "0", "no"):
            return False
        raise bad_request(f"{name} must be true or false, not {values[-1]!r}")

    def require(self, scope: str, *, action: str) -> Identity:
        """The caller, once it is known to hold ``scope``; 403 otherwise."""
        if self.identity is None:
            # A public route asking for a scope is a bug in the route table.
            raise RuntimeError(f"scope {scope!r} checked on a route without authentication")
        authorize(self.identity, scope, action=action)
        return self.identity

    def require_command(self, kind: CommandType, *, action: str) -> Identity:
        """The caller, once it may trigger a command of type ``kind``; 403 otherwise."""
        if not isinstance(self.access, ByCommand):
            raise RuntimeError("command scopes checked on a route that does not trigger commands")
        return self.require(self.access.scope_for(kind), action=action)


#: The media type of every answer that does not say otherwise.
JSON = "application/json"


@attrs.frozen
class Reply:
    """A handler's answer: a JSON-serialisable body, its status and extra headers.

    With another ``media_type`` the body is sent as it is (``str`` or ``bytes``):
    the metrics text, the API explorer's page and assets.
    """

    body: Any
    status: int = 200
    headers: Mapping[str, str] = _EMPTY
    media_type: str = JSON


@attrs.frozen(kw_only=True)
class StreamReply:
    """An answer sent while it is produced (Server-Sent Events).

    Every check that can refuse the request happens before a handler returns one
    of these, so a stream that starts is a 200 and errors stay JSON.
    """

    chunks: AsyncIterator[bytes]
    media_type: str
    headers: Mapping[str, str] = _EMPTY


Handler = Callable[[Call], Awaitable[Reply | StreamReply]]
