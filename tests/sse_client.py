"""A small Server-Sent Events client for tests, on a plain TCP stream.

It speaks HTTP/1.1 with ``Connection: close`` and decodes the chunked body
itself, and it is built from plain methods rather than async generators: a test
may hang up in the middle of a stream (that is the point of resuming) without
leaving half-read generators behind.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import attrs
import trio


@attrs.frozen
class Event:
    """One event as a client sees it."""

    event: str
    data: Any
    id: int | None


@attrs.define(eq=False)
class EventStream:
    """The events of one response; ``status`` and ``headers`` are its head."""

    stream: trio.SocketStream
    status: int = 0
    headers: dict[str, str] = attrs.field(factory=dict)
    comments: list[str] = attrs.field(factory=list)
    _raw: bytes = b""
    _buffer: bytes = b""
    _eof: bool = False
    _chunked: bool = False

    async def _receive(self) -> bool:
        chunk = await self.stream.receive_some(65536)
        self._raw += chunk
        return bool(chunk)

    async def _raw_line(self) -> str | None:
        while b"\r\n" not in self._raw:
            if not await self._receive():
                return None
        line, _, self._raw = self._raw.partition(b"\r\n")
        return line.decode("latin-1")

    async def _fill(self) -> bool:
        """Move more of the body into the buffer; False at its end."""
        if self._eof:
            return False
        if not self._chunked:
            if not self._raw and not await self._receive():
                self._eof = True
                return False
            self._buffer, self._raw = self._buffer + self._raw, b""
            return True
        size_line = await self._raw_line()
        size = int(size_line.split(";")[0], 16) if size_line else 0
        if size == 0:
            self._eof = True
            return False
        while len(self._raw) < size + 2:
            if not await self._receive():
                self._eof = True
                return False
        self._buffer += self._raw[:size]
        self._raw = self._raw[size + 2 :]
        return True

    async def _line(self) -> str | None:
        while b"\n" not in self._buffer:
            if not await self._fill():
                if not self._buffer:
                    return None
                self._buffer += b"\n"
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8").removesuffix("\r")

    async def read_head(self) -> None:
        status_line = await self._raw_line()
        assert status_line is not None, "no response"
        self.status = int(status_line.split()[1])
        while (line := await self._raw_line()) not in ("", None):
            assert line is not None
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self._chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"

    async def body(self) -> str:
        """The rest of the response, for answers that are not streams."""
        lines = []
        while (line := await self._line()) is not None:
            lines.append(line)
        return "\n".join(lines)

    async def next(self) -> Event | None:
        """The next event (comments are collected in ``comments``); None at the end."""
        name, data, event_id = "message", [], None
        while True:
            line = await self._line()
            if line is None:
                return None
            if line == "":
                if data:
                    return Event(name, json.loads("\n".join(data)), event_id)
                name, data, event_id = "message", [], None
            elif line.startswith(":"):
                self.comments.append(line)
            else:
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)
                elif field == "id":
                    event_id = int(value)

    async def read_until(self, done: Callable[[Event], bool]) -> list[Event]:
        """Events up to and including the first that ``done`` accepts."""
        seen: list[Event] = []
        while (event := await self.next()) is not None:
            seen.append(event)
            if done(event):
                return seen
        raise AssertionError(f"the stream ended early after {seen}")

    async def rest(self) -> list[Event]:
        """Every event until the server closes the stream."""
        seen = []
        while (event := await self.next()) is not None:
            seen.append(event)
        return seen


@asynccontextmanager
async def open_stream(
    base_url: str, path: str, headers: Mapping[str, str] | None = None, *, timeout: float = 30.0
) -> AsyncIterator[EventStream]:
    """GET ``path`` and read its head; hangs up when the block ends.

    The whole block must finish within ``timeout``: a test waiting for an event
    that never comes fails instead of hanging.
    """
    url = urlsplit(base_url)
    assert url.hostname is not None and url.port is not None
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream(url.hostname, url.port)
        async with stream:
            lines = [f"GET {path} HTTP/1.1", f"Host: {url.netloc}", "Connection: close"]
            lines.append("Accept: text/event-stream")
            lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
            await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
            events = EventStream(stream)
            await events.read_head()
            yield events
