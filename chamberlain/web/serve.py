"""Serving the app with hypercorn inside the daemon's own nursery.

hypercorn's HTTP/1.1 machinery (its ``TCPServer`` and h11 protocol) serves every
connection, but the accept loop is ours, for two reasons (docs/UPSTREAM.md has the
upstream reproduction):

- Under quart-trio, hypercorn closes a connection from inside the request's task,
  which quart-trio cancels as soon as the response is out.  The close was cancelled
  with it: ``Connection: close`` and HTTP/1.0 requests were answered and never
  closed, and keep-alive connections never timed out.  :class:`_Guard` shields the
  last message of each response, with a time limit, so the close (or the keep-alive
  timer) happens.
- hypercorn has no cap on connections.  Each accepted connection is registered in a
  :class:`~chamberlain.web.admission.ConnectionTable` of ``api.max_connections``;
  over the cap the connection that has waited on its client the longest is dropped,
  or, when every connection is busy answering, the new one gets a minimal 503.

Like hypercorn's trio ``serve``, this installs no signal handlers, which is what lets
the daemon's root own SIGINT/SIGTERM and decide the shutdown order.  hypercorn's own
logging is redirected: its access log is off (the app writes one structured line per
request) and its error log goes to the ``chamberlain.web`` logger as JSON like every
other record.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.logging import Logger as HypercornLogger
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    ConnectionState,
    ResponseSummary,
    Scope,
    WWWScope,
)
from hypercorn.utils import parse_socket_addr, repr_socket_addr, wrap_app

from chamberlain import jsoncodec
from chamberlain.config import ApiConfig
from chamberlain.web.admission import ConnectionTable, Peer
from chamberlain.web.errors import error_body

log = logging.getLogger("chamberlain.web")

#: How long in-flight requests may finish once the server is told to stop.
GRACEFUL_TIMEOUT = 5.0
#: How long the end of a response may take: its last bytes, then closing the
#: connection or arming its keep-alive timer.  It is shielded from the request's end.
FINISH_TIMEOUT = 5.0
#: How long a refused connection's 503 and close may take.
REFUSAL_TIMEOUT = 1.0
#: The least time between two warnings that connections are being dropped or refused.
PRESSURE_LOG_INTERVAL = 10.0

_REFUSAL_BODY = jsoncodec.dumps_bytes(error_body("too many connections; try again shortly")) + b"\n"
#: The whole answer to a connection over the cap: no request is read for it.
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: application/json\r\n"
    + f"content-length: {len(_REFUSAL_BODY)}\r\n".encode()
    + b"retry-after: 1\r\n"
    b"cache-control: no-store\r\n"
    b"connection: close\r\n\r\n" + _REFUSAL_BODY
)


class _ServerLog(HypercornLogger):
    """hypercorn's logger interface, writing to ``chamberlain.web``."""

    def __init__(self, config: HypercornConfig) -> None:
        # The base class would attach stream handlers to hypercorn's own loggers;
        # none are wanted, so it is deliberately not called.
        self.access_log_format = config.access_log_format
        self.access_logger = None
        self.error_logger = None

    def _emit(
        self, level: int, message: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        extra = {"component": "web", **(kwargs.pop("extra", None) or {})}
        log.log(level, message, *args, extra=extra, **kwargs)

    async def access(
        self, request: WWWScope, response: ResponseSummary, request_time: float
    ) -> None:
        """Dropped: the app logs every request itself, with more context."""

    async def critical(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Log at CRITICAL."""
        self._emit(logging.CRITICAL, message, args, kwargs)

    async def error(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Log at ERROR."""
        self._emit(logging.ERROR, message, args, kwargs)

    async def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Log at WARNING."""
        self._emit(logging.WARNING, message, args, kwargs)

    async def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Log at DEBUG: hypercorn's INFO lines ("Running on ...") repeat our own."""
        self._emit(logging.DEBUG, message, args, kwargs)

    async def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Log at DEBUG."""
        self._emit(logging.DEBUG, message, args, kwargs)

    async def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Log at ERROR with the current exception."""
        kwargs.setdefault("exc_info", True)
        self._emit(logging.ERROR, message, args, kwargs)

    async def log(self, level: int, message: str, *args: Any, **kwargs: Any) -> None:
        """Log at ``level``."""
        self._emit(level, message, args, kwargs)


def bind_address(host: str, port: int) -> str:
    """hypercorn's bind syntax for ``host``/``port``; IPv6 hosts need brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ListenError(Exception):
    """A listener that cannot be opened; its message is one line for a person."""

    def __init__(self, listen: str, reason: str) -> None:
        super().__init__(f"cannot listen on {listen}: {reason}")
        self.listen = listen
        self.reason = reason


def open_listener(api: ApiConfig) -> socket.socket:
    """A socket bound to ``api.listen`` and listening, or :class:`ListenError`.

    Opened before anything else starts, so a taken port is one plain error at
    start-up rather than a listener crashing in a loop; :func:`serve_api` then
    serves on it, across restarts of the web layer, without binding again.
    """
    family = socket.AF_INET6 if ":" in api.host else socket.AF_INET
    try:
        sock = socket.create_server(
            (api.host, api.port), family=family, backlog=HypercornConfig.backlog
        )
    except OSError as exc:
        # create_server appends the address to strerror; the errno's text is enough.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ListenError(api.listen, reason[:1].lower() + reason[1:]) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def hypercorn_config(api: ApiConfig) -> HypercornConfig:
    """The hypercorn settings for ``api``."""
    config = HypercornConfig()
    config.bind = [bind_address(api.host, api.port)]
    config.accesslog = None
    config.errorlog = None
    config.logger_class = _ServerLog
    # The server's name and version are nobody's business.
    config.include_server_header = False
    config.graceful_timeout = GRACEFUL_TIMEOUT
    # Also the time a new connection has to send its first request's headers: the
    # timer runs from the accept until the headers are in.
    config.keep_alive_timeout = api.keep_alive_timeout
    # hypercorn's read_timeout is not set: it limits the silence between any two reads,
    # so it would also end an event stream or a synchronous trigger whose client is
    # quietly waiting.  Bodies are timed by the app (api.read_timeout), headers by the
    # keep-alive timer above.
    return config


def _peer(address: object) -> Peer | None:
    if isinstance(address, (tuple, list)) and len(address) >= 2:
        return (str(address[0]), int(address[1]))
    return None


class _Guard:
    """ASGI middleware: tells the table what each request is doing, and finishes
    every response out of reach of the request's cancellation."""

    def __init__(self, app: ASGIFramework, table: ConnectionTable[trio.CancelScope]) -> None:
        self.app = app
        self.table = table

    async def __call__(
        self,
        scope: Scope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
    ) -> None:
        peer = _peer(scope.get("client")) if scope["type"] == "http" else None
        if peer is None:
            await self.app(scope, receive, send)
            return
        table = self.table

        async def tracked_receive() -> ASGIReceiveEvent:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                table.answering(peer)
            return message

        async def finishing_send(message: ASGISendEvent) -> None:
            if message["type"] != "http.response.body" or message.get("more_body", False):
                await send(message)
                return
            table.answered(peer)
            # This send closes the connection or re-arms its keep-alive timer, inside
            # hypercorn; quart-trio cancels the request as soon as the bytes are out,
            # which used to cancel that too.
            with trio.CancelScope(
                shield=True, deadline=trio.current_time() + FINISH_TIMEOUT
            ) as finishing:
                await send(message)
            if finishing.cancelled_caught:
                handle = table.handle(peer)
                if handle is not None:
                    handle.cancel()

        await self.app(scope, tracked_receive, finishing_send)


@attrs.define
class _Pressure:
    """Rate-limited warnings that the connection cap is being hit."""

    table: ConnectionTable[trio.CancelScope]
    last: float = -PRESSURE_LOG_INTERVAL
    reported: tuple[int, int] = (0, 0)

    def note(self) -> None:
        now = trio.current_time()
        counts = (self.table.evicted, self.table.refused)
        if now - self.last < PRESSURE_LOG_INTERVAL or counts == self.reported:
            return
        self.last, self.reported = now, counts
        log.warning(
            "api.max_connections (%d) reached: %d idle connections dropped, %d refused so far",
            self.table.limit,
            counts[0],
            counts[1],
            extra={
                "component": "web",
                "max_connections": self.table.limit,
                "connections_dropped": counts[0],
                "connections_refused": counts[1],
            },
        )


async def _refuse(stream: trio.SocketStream) -> None:
    with trio.move_on_after(REFUSAL_TIMEOUT):
        try:
            await stream.send_all(REFUSAL)
            await stream.send_eof()
            # Read what the client already sent, so that closing does not reset the
            # connection before the client has read the 503.
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


class _Connection(TCPServer):
    """hypercorn's connection server, which lets go of a connection its client closed."""

    async def _read_data(self) -> None:
        await super()._read_data()
        # The client is gone (or the connection closed): hypercorn's keep-alive timer
        # would otherwise hold the socket open for api.keep_alive_timeout more.
        await self.idle_task.stop()


@attrs.define
class _Server:
    """One listener's connections: admitted, served by hypercorn, closed."""

    app: Any
    config: HypercornConfig
    context: WorkerContext
    state: dict[str, Any]
    table: ConnectionTable[trio.CancelScope]
    pressure: _Pressure

    async def accept(self, listeners: list[trio.SocketListener], connections: trio.Nursery) -> None:
        """Accept connections on ``listeners`` until cancelled, each served in ``connections``."""
        await trio.serve_listeners(self.connection, listeners, handler_nursery=connections)

    async def connection(self, stream: trio.SocketStream) -> None:
        """Serve one accepted connection, and always close it."""
        try:
            try:
                peer = _peer(parse_socket_addr(stream.socket.family, stream.socket.getpeername()))
            except OSError:
                peer = None  # gone before it was looked at
            if peer is None:
                return
            with trio.CancelScope() as scope:
                admission = self.table.admit(peer, scope)
                if admission.evict is not None:
                    admission.evict.cancel()
                if admission.evict is not None or not admission.admitted:
                    self.pressure.note()
                if not admission.admitted:
                    await _refuse(stream)
                    return
                try:
                    await _Connection(
                        self.app,
                        self.config,
                        self.context,
                        ConnectionState(self.state.copy()),
                        # hypercorn tells a plain stream from a TLS one at run time.
                        cast(Any, stream),
                    )
                finally:
                    self.table.release(peer, scope)
        finally:
            # hypercorn's own close is skipped when its task is cancelled (an evicted
            # connection, a shutdown); closing a socket stream does not block.
            with trio.CancelScope(shield=True, deadline=trio.current_time() + REFUSAL_TIMEOUT):
                await stream.aclose()


async def _stop_when(trigger: Callable[[], Awaitable[None]], scope: trio.CancelScope) -> None:
    await trigger()
    scope.cancel()


async def serve_api(
    app: ASGIFramework,
    api: ApiConfig,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    listener: socket.socket | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``api.listen`` until cancelled or ``shutdown_trigger`` returns.

    ``listener`` is a socket from :func:`open_listener`, which stays open (its
    opener closes it); without one, a socket is opened here and closed on return.
    Reports the bound URLs (``["http://127.0.0.1:PORT"]``; the real port when
    ``listen`` asks for port 0) through ``task_status`` once connections are
    accepted, so ``await nursery.start(serve_api, app, api)`` returns them.  Once
    told to stop, requests in flight get :data:`GRACEFUL_TIMEOUT` to finish.
    """
    config = hypercorn_config(api)
    table: ConnectionTable[trio.CancelScope] = ConnectionTable(api.max_connections)
    asgi = wrap_app(_Guard(app, table), config.wsgi_max_body_size, "asgi")
    # The steps of hypercorn's trio worker_serve, with the accept loop replaced.
    state: dict[str, Any] = {}
    lifespan = Lifespan(asgi, config, state)
    context = WorkerContext(None)
    server = _Server(
        app=asgi,
        config=config,
        context=context,
        state=state,
        table=table,
        pressure=_Pressure(table),
    )
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        own = listener is None
        sock = open_listener(api) if listener is None else listener
        try:
            async with trio.open_nursery() as connections:
                # A duplicate, because trio closes its listeners when serving ends,
                # and a handed-over socket must outlive this server.
                listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock.dup()))]
                urls = [f"http://{repr_socket_addr(sock.family, sock.getsockname())}"]
                for url in urls:
                    log.info("listening on %s", url, extra={"component": "web", "url": url})
                task_status.started(urls)
                try:
                    async with trio.open_nursery() as accepting:
                        if shutdown_trigger is not None:
                            accepting.start_soon(
                                _stop_when, shutdown_trigger, accepting.cancel_scope
                            )
                        accepting.start_soon(server.accept, listeners, connections)
                finally:
                    # Idle connections close now, busy ones after their response, and
                    # whatever is left is cancelled once the grace is over.
                    await context.terminated.set()
                    connections.cancel_scope.deadline = (
                        trio.current_time() + config.graceful_timeout
                    )
        finally:
            if own:
                sock.close()
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
