"""``/mcp``: the gateway as an MCP server, over streamable HTTP.

Built on the official ``mcp`` SDK's low-level server and its streamable HTTP
session manager (anyio code, which runs under trio).  :class:`McpEndpoint` owns
both; the daemon enters :meth:`McpEndpoint.running` in the web actor's nursery, so
every MCP session is a task of the daemon's tree and ends with it.
:class:`McpMount` puts the endpoint in front of the Quart app as plain ASGI: a
request for ``/mcp`` goes to the endpoint, anything else to the app.

What an agent sees is :mod:`chamberlain.web.agent_tools`' catalogue, and every tool
call is answered by the HTTP route it stands for (:func:`chamberlain.web.app.open_call`),
so a tool checks its scope, its payload and the daemon's state exactly as the API
does.  A request passes, in order:

1. the DNS-rebinding check: its ``Host`` must be the listener's, a loopback name or
   one of ``mcp.allowed_hosts``, and its ``Origin`` (when a browser sends one) one
   of ``mcp.allowed_origins`` or loopback's (421 or 403 otherwise, as JSON);
2. bearer authentication with the API's tokens (401, as the API answers);
3. the SDK's session handling, which binds a session to the token that opened it.

Tools are listed only when the token holds the scope they need; a tool called
anyway is refused with a JSON-RPC error (``-32003``), and an unknown one with
``-32602``, never with a crash.  What goes wrong with the call itself (a payload
the command's schema refuses, a job that fails) is a tool error (``isError``), which
an agent reads and acts on.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
import trio
from mcp import types
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.exceptions import McpError
from pydantic import AnyUrl
from starlette.requests import Request

from chamberlain import jsoncodec
from chamberlain.actors.gateway import StorageFull
from chamberlain.actors.mailbox import ActorUnavailable
from chamberlain.config import ApiConfig, McpConfig
from chamberlain.records import Job
from chamberlain.redaction import Redactor
from chamberlain.web.agent_tools import (
    AgentTool,
    Catalogue,
    CommandTarget,
    PipelineTarget,
    RouteCall,
    ToolArgumentError,
    build_catalogue,
    route_call,
)
from chamberlain.web.app import open_call, request_id_for
from chamberlain.web.auth import JOBS_RO, PLUGIN_RO, Identity, authenticate
from chamberlain.web.errors import ApiError, error_body, too_large
from chamberlain.web.handler import Reply, Site, StreamReply
from chamberlain.web.health import package_version
from chamberlain.web.spec import Route

__all__ = [
    "FORBIDDEN",
    "PATH",
    "RESOURCE_NOT_FOUND",
    "McpEndpoint",
    "McpMount",
    "McpStatistics",
    "ToolAnswer",
    "job_answer",
    "pipeline_answer",
    "quiet_sdk_logs",
    "security_settings",
]

log = logging.getLogger("chamberlain.web")

#: Where the server is mounted.
PATH = "/mcp"
#: The JSON-RPC error of a call the token may not make (a server-defined code).
FORBIDDEN = -32003
#: The JSON-RPC error of a resource that does not exist (the code MCP's spec uses).
RESOURCE_NOT_FOUND = -32002
#: How long telling one session that the tools changed may take.
NOTIFY_TIMEOUT = 5.0
#: The jobs ``resources/list`` shows, newest first.
RECENT_JOBS = 50

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")

_INSTRUCTIONS = (
    "Chamberlain runs plugins as durable jobs. Each tool named <plugin>__<command>"
    " triggers a command and answers its job's result, or the job_id of a job still"
    " running when the call times out: get_job answers it later. pipeline__<name>"
    " runs a synchronous pipeline. Resources job://<id> and plugin://<name> describe"
    " a job (with its messages) and a plugin."
)


class _SessionEnd(logging.Filter):
    """Drops the SDK's traceback for a session's event stream closed by the session's
    own end (a client's DELETE): every session that ends normally logs one."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (
            record.getMessage() == "Error in standalone SSE writer"
            and isinstance(error, anyio.ClosedResourceError)
        )


def quiet_sdk_logs() -> None:
    """Keep the SDK's records to warnings and errors that say something: its INFO
    lines (one per message) would drown the daemon's own log."""
    sdk = logging.getLogger("mcp")
    if sdk.level == logging.NOTSET:
        sdk.setLevel(logging.WARNING)
    transport = logging.getLogger("mcp.server.streamable_http")
    if not any(isinstance(f, _SessionEnd) for f in transport.filters):
        transport.addFilter(_SessionEnd())


def security_settings(mcp: McpConfig, api: ApiConfig) -> TransportSecuritySettings:
    """The ``Host`` and ``Origin`` values ``/mcp`` accepts.

    Loopback's names always, the listener's own address unless it is a wildcard
    (a wildcard listener is reached under names only its operator knows: they go in
    ``mcp.allowed_hosts``), and what the config adds.  Each host is accepted with any
    port, and bare (a ``Host`` of port 80 carries none).
    """
    names = list(_LOOPBACK_HOSTS)
    host = api.host
    if host not in _WILDCARD_HOSTS:
        names.append(f"[{host}]" if ":" in host else host)
    hosts: list[str] = []
    for name in names:
        hosts.extend((name, f"{name}:*"))
    origins = [
        f"{scheme}://{name}{port}"
        for name in names
        for scheme in ("http", "https")
        for port in ("", ":*")
    ]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*dict.fromkeys([*hosts, *mcp.allowed_hosts])],
        allowed_origins=[*dict.fromkeys([*origins, *mcp.allowed_origins])],
    )


# -- answers -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ToolAnswer:
    """What a tool call answers: its structured content, and whether it is an error."""

    structured: Mapping[str, Any]
    is_error: bool = False
    #: The text for clients that read no structured content; the JSON when None.
    text: str | None = None

    def result(self) -> types.CallToolResult:
        """The MCP result: the text (or JSON) and the structured content."""
        text = self.text if self.text is not None else jsoncodec.dumps(dict(self.structured))
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)],
            structuredContent=dict(self.structured),
            isError=self.is_error,
        )


def _still_running(job_id: str, status: str, waited: float, **more: Any) -> ToolAnswer:
    return ToolAnswer(
        structured={
            "job_id": job_id,
            "status": status,
            **more,
            "message": (
                f"not finished after {waited:g}s; it goes on: call get_job with"
                f" job_id {job_id} (its wait argument long-polls)"
            ),
        }
    )


def job_answer(job: Mapping[str, Any], *, waited: float) -> ToolAnswer:
    """A command tool's answer for its job as the API shows it (``Job.to_json``).

    Succeeded: the job's result.  Failed, timed out, cancelled or dead: a tool error
    with the job's ``last_error``.  Not finished: its id and status, to poll.
    """
    job_id, status = str(job["job_id"]), str(job["status"])
    if status in ("queued", "running"):
        return _still_running(job_id, status, waited)
    # A job keeps its plugin's whole response; what the command answered is its
    # ``result`` (as a synchronous pipeline's answer has it too).
    response = job.get("result")
    result = response.get("result") if isinstance(response, Mapping) else response
    if status == "succeeded":
        return ToolAnswer(structured={"job_id": job_id, "status": status, "result": result})
    error = job.get("last_error") or status
    return ToolAnswer(
        structured={"job_id": job_id, "status": status, "error": error, "result": result},
        is_error=True,
        text=f"job {job_id} {status}: {error}",
    )


def pipeline_answer(body: Mapping[str, Any], status: int, *, waited: float) -> ToolAnswer:
    """A pipeline tool's answer for ``POST /pipeline/{name}``'s synchronous answer.

    A finished tree is its outcome (a tool error unless every job succeeded); a
    tree still running past the wait (202) is its ids, to poll.
    """
    if status == 202:
        return _still_running(
            str(body["job_id"]), str(body["status"]), waited, run_id=body.get("run_id")
        )
    if body.get("status") in ("succeeded", "skipped"):
        return ToolAnswer(structured=body)
    error = body.get("error") or body.get("status")
    return ToolAnswer(
        structured=body,
        is_error=True,
        text=f"pipeline {body.get('pipeline')} {body.get('status')}: {error}",
    )


# -- who is calling -------------------------------------------------------------------


class _Caller(AuthenticatedUser):
    """The token behind a request, where the SDK looks for it: it binds each session to
    the token that opened it, by name."""

    def __init__(self, identity: Identity) -> None:
        super().__init__(
            AccessToken(token="", client_id=identity.name, scopes=sorted(identity.scopes))
        )
        self.token_identity = identity


async def _send_json(send: Any, status: int, body: Any, headers: Mapping[str, str]) -> None:
    payload = jsoncodec.dumps_bytes(body) + b"\n"
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
        *(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in headers.items()
        ),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


# -- the endpoint ---------------------------------------------------------------------


class _Server(Server[Any, Request]):
    """The SDK's server, saying that its tool list may change."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            NotificationOptions(tools_changed=True), experimental_capabilities
        )


@attrs.frozen(kw_only=True)
class McpStatistics:
    """What the MCP server is doing now, and has done."""

    #: HTTP requests to ``/mcp`` being answered (an open event stream is one).
    requests_in_flight: int
    #: Event streams open: sessions that hear the server's notifications.
    event_streams: int
    #: Tool calls answered since the server started, errors included.
    tool_calls: int


@attrs.define
class McpEndpoint:
    """The MCP server of one app: its tools, resources and sessions.

    ``site`` and ``routes`` are the app's, so tool calls are answered by its
    handlers; ``redactor`` gives the redactor of now, that errors go through.
    """

    site: Site
    routes: Sequence[Route]
    config: McpConfig
    redactor: Callable[[], Redactor] = Redactor
    _by_id: dict[str, Route] = attrs.field(init=False)
    _server: _Server = attrs.field(init=False)
    _manager: StreamableHTTPSessionManager | None = attrs.field(default=None, init=False)
    _security: TransportSecurityMiddleware = attrs.field(init=False)
    _catalogue: Catalogue | None = attrs.field(default=None, init=False)
    #: The plugins and routing the catalogue was built from: another object in
    #: either place (a reload's) builds it again.
    _built_from: tuple[object, object] | None = attrs.field(default=None, init=False)
    #: The sessions that listed tools: the ones told when the list changes.
    _listing: weakref.WeakSet[ServerSession] = attrs.field(factory=weakref.WeakSet, init=False)
    _offered: tuple[tuple[str, str], ...] = attrs.field(default=(), init=False)
    _in_flight: int = attrs.field(default=0, init=False)
    _streams: int = attrs.field(default=0, init=False)
    _tool_calls: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        quiet_sdk_logs()
        self._by_id = {route.operation_id: route for route in self.routes}
        self._security = TransportSecurityMiddleware(security_settings(self.config, self.site.api))
        server = _Server("chamberlain", version=package_version(), instructions=_INSTRUCTIONS)
        handlers = server.request_handlers
        handlers[types.ListToolsRequest] = self._list_tools
        handlers[types.CallToolRequest] = self._call_tool
        handlers[types.ListResourcesRequest] = self._list_resources
        handlers[types.ListResourceTemplatesRequest] = self._list_templates
        handlers[types.ReadResourceRequest] = self._read_resource
        self._server = server

    # -- lifecycle -----------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Serve sessions for the block: each is a task under it, cancelled at its end.

        A new SDK manager each time, since one runs only once: a web actor restarted
        by its supervisor serves new sessions (the old ones' ids answer 404, and
        their clients start again, as the protocol has them do).
        """
        # Each answer as plain JSON rather than an event stream of one event: the
        # server sends nothing else within a request (notifications take the
        # session's own stream), and a stream closed after its one answer costs the
        # client its connection each time (docs/PERFORMANCE.md, MCP tool calls).
        manager = StreamableHTTPSessionManager(
            app=self._server, security_settings=None, json_response=True
        )
        async with manager.run():
            self._manager = manager
            self._offered = self.catalogue().fingerprint()
            try:
                yield
            finally:
                self._manager = None

    def catalogue(self) -> Catalogue:
        """The tools as the daemon's plugins and pipelines stand now."""
        gateway = self.site.gateway
        built = self._built_from
        if (
            self._catalogue is None
            or built is None
            or built[0] is not gateway.plugins
            or built[1] is not gateway.routing
        ):
            catalogue = build_catalogue(
                gateway.plugins,
                gateway.routing.pipelines,
                self.routes,
                self.site.openapi.get("components", {}).get("schemas", {}),
                step_ids=gateway.routing.step_ids,
            )
            for problem in catalogue.problems:
                log.warning("mcp: %s", problem, extra={"component": "web"})
            self._catalogue, self._built_from = catalogue, (gateway.plugins, gateway.routing)
        return self._catalogue

    async def tools_changed(self) -> int:
        """Tell every session that listed tools that the list changed, if it did.

        Whatever changes the loaded plugins or pipelines calls this once they are
        in place.  Returns how many sessions were told.
        """
        now = self.catalogue().fingerprint()
        if now == self._offered:
            return 0
        self._offered = now
        told = 0
        for session in list(self._listing):
            # A client that does not read its stream must not hold up the others.
            with trio.move_on_after(NOTIFY_TIMEOUT):
                try:
                    await session.send_tool_list_changed()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    self._listing.discard(session)
                    continue
                told += 1
        return told

    # -- HTTP ----------------------------------------------------------------------

    def statistics(self) -> McpStatistics:
        """The server's figures now."""
        return McpStatistics(
            requests_in_flight=self._in_flight,
            event_streams=self._streams,
            tool_calls=self._tool_calls,
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Answer one HTTP request for ``/mcp``."""
        started = time.perf_counter()
        status: list[int] = []
        streaming = False

        async def watching_send(message: Any) -> None:
            nonlocal streaming
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
                if scope.get("method") == "GET" and status[0] == 200:
                    # A GET answered 200 is the session's stream of notifications.
                    streaming = True
                    self._streams += 1
            await send(message)

        caller = None
        self._in_flight += 1
        try:
            caller = await self._admit(scope, receive, watching_send)
            if caller is not None:
                manager = self._manager
                if manager is None:
                    await _send_json(
                        watching_send,
                        503,
                        error_body("the MCP server is starting"),
                        {"Retry-After": "1"},
                    )
                else:
                    await manager.handle_request({**scope, "user": caller}, receive, watching_send)
        finally:
            self._in_flight -= 1
            if streaming:
                self._streams -= 1
            if status:
                self.site.metrics.http_request(PATH, str(scope.get("method")), status[0])
            log.info(
                "%s %s %s %sms",
                scope.get("method"),
                PATH,
                status[0] if status else "-",
                round((time.perf_counter() - started) * 1000, 1),
                extra={
                    "component": "web",
                    "method": scope.get("method"),
                    "path": PATH,
                    "status": status[0] if status else None,
                    "caller": None if caller is None else caller.token_identity.submitted_by,
                },
            )

    async def _admit(self, scope: Any, receive: Any, send: Any) -> _Caller | None:
        """The caller, once the request passed the host check and authentication;
        None once it has been answered with a refusal."""
        refusal = await self._security.validate_request(Request(scope, receive), is_post=False)
        if refusal is not None:
            reason = bytes(refusal.body).decode("utf-8", "replace")
            message = (
                f"{reason}: /mcp accepts only the listener's and loopback's hosts and"
                " origins and those of mcp.allowed_hosts and mcp.allowed_origins"
            )
            await _send_json(send, refusal.status_code, error_body(message), {})
            return None
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", ())
        }
        try:
            identity = authenticate(headers.get("authorization"), self.site.tokens)
        except ApiError as refused:
            await _send_json(send, refused.status, refused.body(), refused.headers)
            return None
        return _Caller(identity)

    # -- the protocol's requests ---------------------------------------------------

    def _identity(self) -> Identity:
        request = self._server.request_context.request
        user = None if request is None else request.scope.get("user")
        if not isinstance(user, _Caller):
            # Every request reaches the server through _admit, which sets it.
            raise McpError(types.ErrorData(code=types.INVALID_REQUEST, message="unauthenticated"))
        return user.token_identity

    async def _list_tools(self, request: types.ListToolsRequest | None) -> types.ServerResult:
        identity = self._identity()
        self._listing.add(self._server.request_context.session)
        tools = [
            types.Tool(
                name=tool.name,
                title=tool.title,
                description=tool.description,
                inputSchema=dict(tool.input_schema),
                annotations=types.ToolAnnotations(
                    title=tool.title,
                    readOnlyHint=tool.read_only,
                    destructiveHint=tool.name == "cancel_job",
                    openWorldHint=isinstance(tool.target, CommandTarget | PipelineTarget),
                ),
            )
            for tool in self.catalogue().offered(identity.can)
        ]
        return types.ServerResult(types.ListToolsResult(tools=tools))

    async def _call_tool(self, request: types.CallToolRequest) -> types.ServerResult:
        identity = self._identity()
        name = request.params.name
        tool = self.catalogue().get(name)
        if tool is None:
            self.site.metrics.mcp_tool_call("?", "refused")
            raise McpError(
                types.ErrorData(code=types.INVALID_PARAMS, message=f"unknown tool {name!r}")
            )
        if not identity.can(tool.scope):
            self.site.metrics.mcp_tool_call(name, "refused")
            raise McpError(
                types.ErrorData(
                    code=FORBIDDEN,
                    message=(
                        f"token {identity.name!r} lacks the scope {tool.scope!r}"
                        f" needed to call {name}"
                    ),
                )
            )
        started = time.monotonic()
        try:
            answer = await self._answer(tool, request.params.arguments or {}, identity)
        except McpError:
            self.site.metrics.mcp_tool_call(name, "refused")
            raise
        self._tool_calls += 1
        self.site.metrics.mcp_tool_call(name, "error" if answer.is_error else "ok")
        log.info(
            "mcp tool %s: %s",
            name,
            "error" if answer.is_error else "ok",
            extra={
                "component": "web",
                "tool": name,
                "caller": identity.submitted_by,
                "is_error": answer.is_error,
                "job_id": answer.structured.get("job_id"),
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return types.ServerResult(answer.result())

    async def _answer(
        self, tool: AgentTool, arguments: Mapping[str, Any], identity: Identity
    ) -> ToolAnswer:
        """Call ``tool``; what the route refuses is a tool error naming why."""
        started = trio.current_time()
        limit = self.config.call_timeout
        try:
            call = route_call(tool, arguments, self._by_id)
            if isinstance(tool.target, PipelineTarget):
                # The pipeline's own wait, cut to what the call may take.
                api = attrs.evolve(
                    self.site.api, max_sync_timeout=min(self.site.api.max_sync_timeout, limit)
                )
                reply = await self._invoke(call, identity, site=attrs.evolve(self.site, api=api))
                return pipeline_answer(reply.body, reply.status, waited=limit)
            reply = await self._invoke(call, identity)
            if not isinstance(tool.target, CommandTarget):
                # Every action's route answers a JSON object: the structured content.
                # A refusal answered rather than raised (a reload's 422 with its
                # problems) is a tool error all the same.
                return ToolAnswer(structured=reply.body, is_error=reply.status >= 400)
            job_id = str(reply.body["job_id"])
            job: Job | None = None
            with trio.move_on_at(started + limit):
                job = await self.site.gateway.wait_job(job_id)
            if job is None:
                job = await self.site.gateway.get_job(job_id)
            if job is None:  # deleted by retention meanwhile: only its id is left
                return _still_running(job_id, str(reply.body["status"]), limit)
            return job_answer(job.to_json(), waited=limit)
        except ToolArgumentError as wrong:
            return self._error(str(wrong))
        except ApiError as refused:
            if refused.status in (401, 403):
                raise McpError(
                    types.ErrorData(code=FORBIDDEN, message=self._redact(refused.message))
                ) from None
            return self._error(refused.message, status=refused.status)
        except ActorUnavailable as busy:
            return self._error(f"the daemon is busy: {busy}; try again shortly", status=503)
        except StorageFull as full:
            return self._error(f"the daemon's disk refuses writes: {full}", status=507)

    def _redact(self, text: str) -> str:
        return str(self.redactor().text(text))

    def _error(self, message: str, *, status: int = 400) -> ToolAnswer:
        message = self._redact(message)
        return ToolAnswer(
            structured={"error": message, "status": status}, is_error=True, text=message
        )

    async def _invoke(
        self, call: RouteCall, identity: Identity, *, site: Site | None = None
    ) -> Reply:
        """``call``'s route answered for ``identity``, as the app would answer it."""
        route = self._by_id[call.operation_id]
        site = self.site if site is None else site
        body = b"" if call.body is None else jsoncodec.dumps_bytes(dict(call.body))
        limit = route.body_limit or site.api.max_body_size
        if len(body) > limit:
            raise too_large(limit)

        async def read_body() -> bytes:
            return body

        prepared = open_call(
            route,
            site,
            identity,
            path=call.path,
            query=call.query,
            request_id=request_id_for(None),
            read_body=read_body,
            headers={"content-type": "application/json"},
        )
        reply = await route.handler(prepared)
        if isinstance(reply, StreamReply):  # no tool stands for a stream
            raise RuntimeError(f"route {route.operation_id} answered a stream to a tool")
        return reply

    # -- resources -----------------------------------------------------------------

    async def _list_resources(self, request: types.ListResourcesRequest) -> types.ServerResult:
        identity = self._identity()
        resources: list[types.Resource] = []
        if identity.can(PLUGIN_RO):
            plugins = self.site.gateway.plugins
            resources.extend(
                types.Resource(
                    uri=AnyUrl(f"plugin://{name}"),
                    name=f"plugin {name}",
                    description=plugins[name].manifest.description or None,
                    mimeType="application/json",
                )
                for name in sorted(plugins)
            )
        if identity.can(JOBS_RO):
            reply = await self._resource_reply(
                RouteCall(operation_id="listJobs", query={"limit": (str(RECENT_JOBS),)}), identity
            )
            resources.extend(
                types.Resource(
                    uri=AnyUrl(f"job://{job['job_id']}"),
                    name=f"job {job['job_id']}",
                    description=f"{job['plugin']}.{job['command']}: {job['status']}",
                    mimeType="application/json",
                )
                for job in reply.body.get("jobs", ())
            )
        return types.ServerResult(types.ListResourcesResult(resources=resources))

    async def _list_templates(
        self, request: types.ListResourceTemplatesRequest
    ) -> types.ServerResult:
        identity = self._identity()
        templates: list[types.ResourceTemplate] = []
        if identity.can(JOBS_RO):
            templates.append(
                types.ResourceTemplate(
                    uriTemplate="job://{job_id}",
                    name="job",
                    description=(
                        "A job as GET /job/{job_id}?include=messages shows it:"
                        " its status, result and messages."
                    ),
                    mimeType="application/json",
                )
            )
        if identity.can(PLUGIN_RO):
            templates.append(
                types.ResourceTemplate(
                    uriTemplate="plugin://{name}",
                    name="plugin",
                    description="A plugin's manifest: its commands, their types and input schemas.",
                    mimeType="application/json",
                )
            )
        return types.ServerResult(types.ListResourceTemplatesResult(resourceTemplates=templates))

    async def _read_resource(self, request: types.ReadResourceRequest) -> types.ServerResult:
        identity = self._identity()
        uri = str(request.params.uri)
        scheme, _, rest = uri.partition("://")
        key = rest.strip("/")
        if scheme == "job" and key:
            call = RouteCall(
                operation_id="getJob", path={"job_id": key}, query={"include": ("messages",)}
            )
        elif scheme == "plugin" and key:
            call = RouteCall(operation_id="getPlugin", path={"name": key})
        else:
            raise McpError(
                types.ErrorData(
                    code=RESOURCE_NOT_FOUND,
                    message=f"unknown resource {uri!r}: the resources are job://<id> and plugin://<name>",
                )
            )
        reply = await self._resource_reply(call, identity)
        return types.ServerResult(
            types.ReadResourceResult(
                contents=[
                    types.TextResourceContents(
                        uri=request.params.uri,
                        mimeType="application/json",
                        text=jsoncodec.dumps(reply.body),
                    )
                ]
            )
        )

    async def _resource_reply(self, call: RouteCall, identity: Identity) -> Reply:
        """A route's answer for a resource; its refusals as JSON-RPC errors."""
        try:
            return await self._invoke(call, identity)
        except ApiError as refused:
            code = {401: FORBIDDEN, 403: FORBIDDEN, 404: RESOURCE_NOT_FOUND}.get(
                refused.status, types.INVALID_PARAMS
            )
            raise McpError(
                types.ErrorData(code=code, message=self._redact(refused.message))
            ) from None
        except (ActorUnavailable, StorageFull) as busy:
            raise McpError(
                types.ErrorData(code=types.INTERNAL_ERROR, message=f"the daemon is busy: {busy}")
            ) from None


@attrs.frozen
class McpMount:
    """ASGI: ``/mcp`` to the endpoint, everything else (lifespan too) to the app."""

    app: Any
    endpoint: McpEndpoint

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Route one ASGI connection."""
        if scope["type"] == "http" and scope.get("path") == PATH:
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)
