"""The app factory: the route table turned into a Quart (trio) application.

:func:`create_app` is the only place that knows about Quart.  It registers each
route of the table with the access rule the route declares, and installs the
edges every request passes through:

- request ids (``X-Request-Id`` echoed when sane, generated otherwise) and one
  access-log line per request on the ``chamberlain.web`` logger;
- the body limit, checked on ``Content-Length`` before anything else and again
  while reading, for chunked bodies that declare no length;
- error handlers that turn *every* failure (ours, werkzeug's 404/405/413, actors
  that do not answer, a disk that refuses writes, bugs) into ``{"error": "..."}``
  JSON.  Quart is configured so that nothing escapes to its HTML error pages and no
  traceback reaches a client;
- every error body has the daemon's secrets redacted (the vault's redactor), in one
  place whatever produced it, because a message may quote what a client sent.

Check order on a protected route: 401 (token), then 403 for routes with a fixed
scope, then 400 for query strings the route does not take, then the handler (which
for triggers adds 404 before its own 403; see :mod:`chamberlain.web.trigger`).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
import trio
from quart import Response, g, has_app_context, has_request_context, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.routing import BaseConverter

from chamberlain import jsoncodec
from chamberlain.actors.gateway import Gateway, StorageFull
from chamberlain.actors.mailbox import ActorUnavailable
from chamberlain.callback_rules import AllowList, CallbackRules
from chamberlain.config import ApiConfig, AuthConfig, CallbacksConfig
from chamberlain.instruments import Metrics
from chamberlain.redaction import Redactor
from chamberlain.web.auth import ByCommand, Identity, Scoped, TokenTable, authenticate, authorize
from chamberlain.web.dashboard import DASHBOARD, SECURITY_HEADERS
from chamberlain.web.discovery import TriggeredCommand
from chamberlain.web.errors import ApiError, bad_request, disk_full, error_body, too_large
from chamberlain.web.handler import JSON, Call, Site, StreamReply
from chamberlain.web.openapi import build_openapi
from chamberlain.web.repositories import RepositoryName
from chamberlain.web.routes import ROUTES
from chamberlain.web.spec import Route

log = logging.getLogger("chamberlain.web")

#: The URL converters routes may name for a path parameter (``Route.converters``).
CONVERTERS: Mapping[str, type[BaseConverter]] = {
    "repository": RepositoryName,
    "plugin_command": TriggeredCommand,
}

#: How long sending one response may take.
RESPONSE_TIMEOUT = 60.0
#: How long a refusal waits for the rest of a body it did not need before it gives up
#: on keeping the connection alive (see :func:`body_received`); never longer than
#: ``api.read_timeout``.
DRAIN_TIMEOUT = 2.0

# Request ids are echoed into headers and logs, so only tame ones are kept.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

ViewFunction = Callable[..., Awaitable[Response]]


class ApiApp(QuartTrio):
    """QuartTrio with its unhandled-exception log sent to ``chamberlain.web``, and the
    :class:`Site` its routes are served with (the MCP server calls them too)."""

    site: Site

    def reconfigure(
        self,
        *,
        auth: AuthConfig,
        callbacks: CallbacksConfig | None,
        routes: Sequence[Route],
    ) -> None:
        """Serve the next requests with new tokens, callback rules and ``routes``.

        A reload calls this.  Requests in flight finish with the site they began
        with; a route no longer in ``routes`` answers 404 from now on (werkzeug
        keeps a rule once added, so its view looks the route up each time).
        """
        for route in routes:
            if route.operation_id not in self.site.routes:
                self._add(route)
        self.config["MAX_CONTENT_LENGTH"] = _body_ceiling(self.site.api, routes)
        self.site = attrs.evolve(
            self.site,
            tokens=_tokens(auth),
            callbacks=_callback_rules(callbacks),
            routes={route.operation_id: route for route in routes},
            openapi=build_openapi(routes),
        )

    def _add(self, route: Route) -> None:
        self.add_url_rule(
            route.rule,
            endpoint=route.operation_id,
            view_func=_view(route, self),
            methods=[route.method],
            provide_automatic_options=False,
        )

    def log_exception(self, exception_info: Any) -> None:
        """Log an exception that escaped every handler, with its traceback."""
        where = f" on {request.method} {request.path}" if has_request_context() else ""
        log.error("unhandled error%s", where, exc_info=exception_info, extra=_extra())


def _extra() -> dict[str, Any]:
    out: dict[str, Any] = {"component": "web"}
    if has_app_context():
        request_id = g.get("request_id")
        if request_id is not None:
            out["request_id"] = request_id
    return out


def _json_default(value: object) -> Any:
    # Records hold read-only mappings; JSON only knows dicts.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response: the only kind this API sends."""
    data = jsoncodec.dumps_bytes(body, default=_json_default) + b"\n"
    return Response(data, status=status, headers=dict(headers or {}), mimetype="application/json")


def request_id_for(header: str | None) -> str:
    """The client's ``X-Request-Id`` when it is tame, else a fresh one."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


async def read_body(limit: int, within: float) -> bytes:
    """The current request's body, refusing more than ``limit`` bytes (413).

    ``Content-Length`` is checked before reading; the running total is checked as
    chunks arrive, which is what stops a chunked body that declared no length.  A
    body that has not fully arrived ``within`` seconds is answered 408 (and
    the connection closed, see :func:`body_received`).
    """
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit)
    data = bytearray()
    with trio.move_on_after(within) as deadline:
        async for chunk in request.body:
            data += chunk
            if len(data) > limit:
                raise too_large(limit)
    if deadline.cancelled_caught:
        raise ApiError(408, f"the request body did not arrive within {within:g}s")
    return bytes(data)


async def body_received(within: float) -> bool:
    """Wait (at most ``within`` seconds) until the current request's body has arrived.

    A refusal (401, 404, 405, 413 ...) is often decided before the client has sent
    its body.  A response sent before the body is complete ends the connection
    (hypercorn cannot read the next request past an unread body).  Waiting for the
    body (within ``api.max_body_size``, which the body object enforces) lets the
    connection be reused instead.  False when the body is too large or too slow; the
    caller then says ``Connection: close``, and the connection is closed once the
    response is out (see :mod:`chamberlain.web.serve`, which makes sure it is: under
    quart-trio that close used to be cancelled, leaving the client hanging).
    """
    with trio.move_on_after(within):
        try:
            await request.body
        except HTTPException:
            return False  # over the size limit: not worth reading
        return True
    return False


def stream_response(reply: StreamReply) -> Response:
    """A response sent while ``reply.chunks`` produces it, for as long as it does."""
    response = Response(
        reply.chunks, status=200, headers=dict(reply.headers), content_type=reply.media_type
    )
    # A stream lasts as long as its client wants: no RESPONSE_TIMEOUT.
    response.timeout = None
    return response


def open_call(
    route: Route,
    site: Site,
    identity: Identity | None,
    *,
    path: Mapping[str, str],
    query: Mapping[str, Sequence[str]],
    request_id: str,
    read_body: Callable[[], Awaitable[bytes]],
    headers: Mapping[str, str] | None = None,
    header: Callable[[str], str | None] = lambda name: None,
) -> Call:
    """The :class:`Call` ``route``'s handler gets from ``identity`` (authenticated
    already, None on a public route), once the checks before the handler pass.

    A scoped route's scope is checked (403), then its query (400); a trigger route
    checks its query itself, after resolving the command and its scope.  The MCP
    server's tool calls come through here too, so a tool is refused exactly as the
    route it stands for would be.
    """
    # Authenticated routes need no scope: the token checked already is enough.
    if identity is not None and isinstance(route.access, Scoped):
        authorize(identity, route.access.scope, action=f"call {route.method} {route.path}")
    problem = route.query_problem(query)
    call = Call(
        site=site,
        access=route.access,
        identity=identity,
        path=path,
        query=query,
        request_id=request_id,
        query_error=None if problem is None else bad_request(problem),
        read_body=read_body,
        headers={} if headers is None else headers,
        header=header,
    )
    if not isinstance(route.access, ByCommand):
        call.check_query()
    return call


def _view(route: Route, app: ApiApp) -> ViewFunction:
    operation_id = route.operation_id

    async def view(**path: str) -> Response:
        # The site as it is now: a reload may have changed the tokens or this route.
        site = app.site
        served = site.routes.get(operation_id)
        if served is None:
            raise NotFound()
        limit = served.body_limit or site.api.max_body_size
        identity = None
        if not served.public:
            identity = authenticate(request.headers.get("Authorization"), site.tokens)
            g.caller = identity.submitted_by
        call = open_call(
            served,
            site,
            identity,
            path=path,
            query={key: tuple(request.args.getlist(key)) for key in request.args},
            request_id=g.request_id,
            read_body=lambda: read_body(limit, site.api.read_timeout),
            headers=dict(request.headers),
            header=request.headers.get,
        )
        reply = await served.handler(call)
        if isinstance(reply, StreamReply):
            return stream_response(reply)
        if reply.media_type != JSON:
            return Response(
                reply.body,
                status=reply.status,
                headers=dict(reply.headers),
                content_type=reply.media_type,
            )
        return json_response(reply.body, reply.status, reply.headers)

    view.__name__ = route.operation_id
    view.__doc__ = route.summary
    return view


def _install_edges(app: QuartTrio, drain: float) -> None:
    @app.before_request
    async def begin() -> None:
        g.started = time.perf_counter()
        g.request_id = request_id_for(request.headers.get("X-Request-Id"))
        g.caller = None
        length = request.content_length
        # As a reload left it (a webhook endpoint may take larger bodies).
        limit: int = app.config["MAX_CONTENT_LENGTH"]
        if length is not None and length > limit:
            # Refused before authentication or routing, so an oversized body is
            # never read.
            raise too_large(limit)

    @app.after_request
    async def finish(response: Response) -> Response:
        if not await body_received(drain):
            # The client is told to close, and the connection is closed after this.
            response.headers["Connection"] = "close"
        request_id = g.get("request_id") or request_id_for(None)
        response.headers["X-Request-Id"] = request_id
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        if request.path == DASHBOARD or request.path.startswith(f"{DASHBOARD}/"):
            # Also on what the dashboard's routes refuse (a 400, a 404 under /ui).
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
        started = g.get("started")
        duration_ms = (
            round((time.perf_counter() - started) * 1000, 1) if started is not None else None
        )
        log.info(
            "%s %s %d %sms",
            request.method,
            request.path,
            response.status_code,
            duration_ms,
            extra={
                "component": "web",
                "request_id": request_id,
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": duration_ms,
                "caller": g.get("caller"),
            },
        )
        return response


def _install_error_handlers(app: QuartTrio) -> None:
    @app.errorhandler(ApiError)
    async def on_api_error(error: ApiError) -> Response:
        return json_response(error.body(), error.status, error.headers)

    @app.errorhandler(HTTPException)
    async def on_http_error(error: HTTPException) -> Response:
        # Quart and werkzeug raise these for routing (404, 405), body limits (413),
        # slow bodies (408) and as the wrapper of a crash (500).
        status = error.code or 500
        headers: dict[str, str] = {}
        if isinstance(error, MethodNotAllowed):
            allowed = sorted(error.valid_methods or ())
            headers["Allow"] = ", ".join(allowed)
            message = (
                f"method {request.method} is not allowed on {request.path};"
                f" allowed: {', '.join(allowed)}"
            )
        elif isinstance(error, NotFound):
            message = f"no route for {request.method} {request.path}"
        elif isinstance(error, RequestEntityTooLarge):
            message = too_large(app.config["MAX_CONTENT_LENGTH"]).message
        elif status >= 500:
            message = "internal error"
        else:
            message = (error.description or error.name or "request refused").strip()
        return json_response(error_body(message), status, headers)

    @app.errorhandler(ActorUnavailable)
    async def on_unavailable(error: ActorUnavailable) -> Response:
        log.warning(
            "%s %s: the daemon did not answer in time (%s)",
            request.method,
            request.path,
            error,
            extra=_extra(),
        )
        return json_response(
            error_body(f"the daemon did not answer in time ({error}); try again shortly"),
            503,
            {"Retry-After": "1"},
        )

    @app.errorhandler(StorageFull)
    async def on_storage_full(error: StorageFull) -> Response:
        refusal = disk_full(str(error))
        return json_response(refusal.body(), refusal.status, refusal.headers)

    @app.errorhandler(Exception)
    async def on_crash(error: Exception) -> Response:
        log.error(
            "unhandled error on %s %s",
            request.method,
            request.path,
            exc_info=error,
            extra=_extra(),
        )
        return json_response(error_body("internal error"), 500)


def _install_redaction(app: QuartTrio, redactor: Callable[[], Redactor]) -> None:
    @app.after_request
    async def redact_error(response: Response) -> Response:
        # Error bodies only: every other answer comes from data redacted as it was
        # stored, and a stream's body cannot be read here.
        if response.status_code < 400 or response.mimetype != JSON:
            return response
        current = redactor()
        if not current:
            return response
        text = await response.get_data(as_text=True)
        if not current.finds(text):
            return response
        redacted = current.data(json.loads(text))
        response.set_data(jsoncodec.dumps_bytes(redacted, default=_json_default) + b"\n")
        return response


def _install_metrics(app: ApiApp, metrics: Metrics) -> None:
    @app.after_request
    async def count(response: Response) -> Response:
        # The route's template, not the path: one series per route, however many
        # job ids pass through it.  Paths that match no route share one series.
        rule = request.url_rule
        served = app.site.routes.get(rule.endpoint) if rule is not None else None
        route = served.path if served is not None else "unmatched"
        metrics.http_request(route, request.method, response.status_code)
        return response


def _tokens(auth: AuthConfig) -> TokenTable:
    tokens = TokenTable.from_config(auth)
    if not len(tokens):
        log.warning(
            "api.auth configures no api_key and no tokens: every protected route answers 401",
            extra={"component": "web"},
        )
    return tokens


def _callback_rules(callbacks: CallbacksConfig | None) -> CallbackRules:
    if callbacks is None:
        return CallbackRules()
    return CallbackRules(
        allow=AllowList.from_entries(callbacks.allowed_hosts),
        enabled=callbacks.secret is not None,
    )


def _body_ceiling(api: ApiConfig, routes: Sequence[Route]) -> int:
    """The first check, before routing, lets through the largest any route accepts;
    each route then holds its body to its own limit."""
    return max(api.max_body_size, *(route.body_limit or 0 for route in routes))


def create_app(
    gateway: Gateway,
    api: ApiConfig,
    *,
    routes: Sequence[Route] = ROUTES,
    metrics: Metrics | None = None,
    callbacks: CallbacksConfig | None = None,
    now: Callable[[], float] = time.time,
    redactor: Callable[[], Redactor] = Redactor,
) -> ApiApp:
    """The HTTP API of the daemon behind ``gateway``, configured by ``api``.

    ``routes`` defaults to the route table; the same routes are served and described
    by ``/openapi.json``.  ``metrics`` is the daemon's (a fresh set when None); the
    app counts its requests there and ``/metrics`` renders it.  ``callbacks`` says
    which ``callback_url`` a trigger may give (None: none).  ``now`` is the daemon's
    clock; handlers stamp what they create by it.  ``redactor`` gives the daemon's
    redactor as it is now (the vault's); error bodies are redacted with it.
    """
    site = Site(
        gateway=gateway,
        api=api,
        tokens=_tokens(api.auth),
        openapi=build_openapi(routes),
        metrics=metrics if metrics is not None else Metrics(),
        callbacks=_callback_rules(callbacks),
        now=now,
        routes={route.operation_id: route for route in routes},
    )
    limit = _body_ceiling(api, routes)

    app = ApiApp(__name__, static_folder=None, template_folder=None)
    app.site = site
    app.config.update(
        # No debug pages, no propagation to the server, no HTML: every error goes
        # through the JSON handlers below.
        DEBUG=False,
        PROPAGATE_EXCEPTIONS=False,
        TRAP_HTTP_EXCEPTIONS=False,
        TRAP_BAD_REQUEST_ERRORS=False,
        # OPTIONS would otherwise answer 200 on every route, bypassing the table.
        PROVIDE_AUTOMATIC_OPTIONS=False,
        MAX_CONTENT_LENGTH=limit,
        BODY_TIMEOUT=api.read_timeout,
        RESPONSE_TIMEOUT=RESPONSE_TIMEOUT,
    )
    # werkzeug answers a doubled slash with a redirect, whose body is HTML; with
    # merging off such paths simply match or 404.  (Trailing-slash redirects cannot
    # happen either: a path ending in "/" is served only beside its slash-less twin,
    # see spec.check_table.)
    app.url_map.merge_slashes = False
    app.url_map.converters.update(CONVERTERS)

    for route in routes:
        app._add(route)
    _install_edges(app, min(DRAIN_TIMEOUT, api.read_timeout))
    _install_metrics(app, site.metrics)
    _install_redaction(app, redactor)
    _install_error_handlers(app)
    return app
