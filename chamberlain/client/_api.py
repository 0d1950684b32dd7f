"""The daemon's HTTP API as the client commands use it: one request, its JSON, or an
error that knows its exit code.

Errors name the URL and what the daemon said, never the token (it travels only in
the ``Authorization`` header, which no message here prints).

``httpx`` is imported when a client is made, not with this module: the daemon's
command line imports the client commands too, and the daemon loads ``httpx`` only
when it first needs it (a callback, a relay), for its memory's sake.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ._connection import Connection
from ._exits import ExitCode

if TYPE_CHECKING:
    import httpx

__all__ = ["ApiClient", "ClientError", "ServerEvent"]


class ClientError(Exception):
    """A request that did not get what it asked for, with the exit code that says so."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


def _said(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, Mapping) and isinstance(body.get("error"), str):
        problems = body.get("problems")
        if isinstance(problems, list):
            # A refused reload: every problem, each at its YAML path.
            lines = [
                f"  {p.get('path') or '(file)'}: {p.get('message')}"
                for p in problems
                if isinstance(p, Mapping)
            ]
            return "\n".join([str(body["error"]), *lines])
        return str(body["error"])
    return response.reason_phrase


@attrs.frozen(kw_only=True)
class ServerEvent:
    """One event of a Server-Sent Events stream: its name and its JSON data."""

    event: str
    data: Any


def sse_events(lines: Iterator[str]) -> Iterator[ServerEvent]:
    """The events of an SSE stream's ``lines`` (comments and ids skipped; a frame
    ends at a blank line)."""
    name, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield ServerEvent(event=name, data=json.loads("\n".join(data)))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


@attrs.define
class ApiClient:
    """A client of one daemon; use it as a context manager."""

    connection: Connection
    #: Seconds a request may take beyond the wait it asks the daemon for.
    timeout: float = 30.0
    _http: httpx.Client = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        import httpx

        headers = {"User-Agent": "chamberlain-cli"}
        if self.connection.token:
            headers["Authorization"] = f"Bearer {self.connection.token}"
        self._http = httpx.Client(
            base_url=self.connection.url, headers=headers, timeout=self.timeout
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _refused(self, method: str, path: str, response: httpx.Response) -> ClientError:
        if response.status_code in (401, 403):
            token = self.connection
            where = "no token given" if not token.token else f"the token of {token.token_source}"
            return ClientError(
                f"{method} {path}: {response.status_code} {_said(response)} ({where})",
                ExitCode.AUTH_REFUSED,
            )
        return ClientError(
            f"{method} {path}: {response.status_code} {_said(response)}", ExitCode.FAILED
        )

    def _unreachable(self, exc: httpx.TransportError) -> ClientError:
        return ClientError(
            f"cannot reach the daemon at {self.connection.url}"
            f" ({self.connection.source}): {exc or type(exc).__name__}",
            ExitCode.UNREACHABLE,
        )

    def events(self, path: str) -> Iterator[ServerEvent]:
        """The events of the SSE stream at ``path``, as they come, until it closes."""
        import httpx

        try:
            with self._http.stream(
                "GET", path, headers={"Accept": "text/event-stream"}, timeout=None
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._refused("GET", path, response)
                yield from sse_events(response.iter_lines())
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        wait: float = 0.0,
    ) -> Any:
        """The JSON of ``method path``; :class:`ClientError` for anything but 2xx.

        ``wait``: seconds the daemon may hold the request (a long poll) before the
        usual timeout starts to count.
        """
        import httpx

        try:
            response = self._http.request(
                method,
                path,
                json=None if body is None else dict(body),
                params=None if params is None else dict(params),
                timeout=self.timeout + wait,
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise self._refused(method, path, response)
        try:
            return response.json()
        except ValueError:
            raise ClientError(
                f"{method} {path}: the daemon answered no JSON", ExitCode.FAILED
            ) from None
