"""Server-Sent Events: the wire format, and the two streams built on the hub.

A stream follows the rule that makes ``Last-Event-ID`` resume exact:

1. subscribe to the hub first, so whatever commits from now on is buffered;
2. replay the store's history after the id the client already has;
3. then pass on live messages, skipping any whose id was already sent.

Every message committed after the replay's read arrives live, and every message
committed before it is in the history, so nothing is lost; a message in both is
recognised by its id, so nothing repeats.  Ids only grow: per job (``seq``) for
``/job/{id}/stream``, globally (``id``) for ``/events/stream``.

The generators here depend only on :class:`Feed` (the gateway's reading methods),
so the resume rules are tested without a daemon.
"""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import Any, Protocol

import trio

from chamberlain.actors.hub import Hub
from chamberlain.records import Job, JobMessage, JobStatus, MessageKind, QueueView

MEDIA_TYPE = "text/event-stream"

#: How long a browser's EventSource waits before reconnecting, in milliseconds.
RETRY_MS = 2000

#: Messages read from the store per replay request.
REPLAY_PAGE = 500

#: The largest id a client may present (SQLite's largest integer).
MAX_EVENT_ID = 2**63 - 1

#: Response headers every stream carries: no caching, no proxy buffering.
STREAM_HEADERS: Mapping[str, str] = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}

KEEPALIVE = b": keepalive\n\n"


def frame(event: str, data: Any, *, event_id: int | None = None, retry: int | None = None) -> bytes:
    """One event in the SSE wire format.

    ``data`` is sent as JSON; JSON text holds no raw newline, but each line would
    get its own ``data:`` field if it did, as the format requires.
    """
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    if retry is not None:
        lines.append(f"retry: {retry}")
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_plain)
    lines.extend(f"data: {part}" for part in text.split("\n"))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def _plain(value: object) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def parse_event_id(text: str | None, *, name: str = "Last-Event-ID") -> int | None:
    """The id a client resumes after; None when it gave none.  ValueError when bad."""
    if text is None or text.strip() == "":
        return None
    value = text.strip()
    if not value.isdigit() or not value.isascii() or int(value) > MAX_EVENT_ID:
        raise ValueError(f"{name} must be a non-negative integer event id, got {text[:40]!r}")
    return int(value)


class Feed(Protocol):
    """What the streams read: the gateway's methods of the same names."""

    hub: Hub

    async def get_job(self, job_id: str) -> Job | None: ...

    async def job_messages(
        self, job_id: str, *, after_seq: int = 0, limit: int = ...
    ) -> tuple[JobMessage, ...]: ...

    async def status_changes(
        self,
        *,
        after_id: int,
        plugin: str | None = None,
        statuses: tuple[JobStatus, ...] = (),
        limit: int = ...,
    ) -> tuple[JobMessage, ...]: ...

    async def queue(self, limit: int) -> QueueView: ...


def job_frame(message: JobMessage) -> bytes:
    """A job message on ``/job/{id}/stream``: ``status`` for status changes, else ``message``."""
    kind = "status" if message.is_status else "message"
    return frame(kind, message.to_event(), event_id=message.seq)


class _Idle(enum.Enum):
    #: Nothing arrived within the keepalive interval.
    KEEPALIVE = "keepalive"
    #: The hub dropped the subscriber: it read too slowly.
    DROPPED = "dropped"


async def _next(
    messages: trio.MemoryReceiveChannel[JobMessage], keepalive: float
) -> JobMessage | _Idle:
    """The next live message, or why there is none."""
    with trio.move_on_after(keepalive):
        try:
            return await messages.receive()
        except trio.EndOfChannel:
            return _Idle.DROPPED
    return _Idle.KEEPALIVE


async def job_stream(
    feed: Feed,
    job_id: str,
    *,
    after: int,
    keepalive: float,
    buffer: int | None = None,
) -> AsyncIterator[bytes]:
    """``/job/{id}/stream``: connected, replay after ``after``, live, then done.

    Ends after ``event: done`` once the job is terminal, or when the client reads
    too slowly to keep its buffer from filling (it resumes with ``Last-Event-ID``).
    """
    with feed.hub.subscribe(job_id=job_id, buffer=buffer) as subscription:
        job = await feed.get_job(job_id)
        if job is None:
            return
        yield frame("connected", {"job": job.to_json()}, event_id=after, retry=RETRY_MS)
        cursor = after
        ended = False
        while True:
            page = await feed.job_messages(job_id, after_seq=cursor, limit=REPLAY_PAGE)
            for message in page:
                yield job_frame(message)
                cursor = message.seq
                ended = ended or message.ends_job
            if len(page) < REPLAY_PAGE:
                break
        # A job that was already terminal when we subscribed has all of its messages
        # in the history, even if the client had seen them all before.
        ended = ended or job.status.terminal
        while not ended:
            item = await _next(subscription.messages, keepalive)
            if item is _Idle.DROPPED:
                return
            if item is _Idle.KEEPALIVE:
                yield KEEPALIVE
                continue
            if item.seq <= cursor:
                continue  # already replayed
            yield job_frame(item)
            cursor = item.seq
            ended = item.ends_job
        final = await feed.get_job(job_id)
        yield frame("done", {"job": (final or job).to_json()}, event_id=cursor)


def status_filter(
    plugin: str | None, statuses: Collection[JobStatus]
) -> Callable[[JobMessage], bool]:
    """Whether a status change (or a run's event) passes the ``plugin`` and ``status``
    filters: a run's event passes when no status is asked for."""
    wanted = frozenset(statuses)

    def passes(message: JobMessage) -> bool:
        if plugin is not None and message.plugin != plugin:
            return False
        if message.kind is MessageKind.RUN:
            return not wanted
        return not wanted or message.status in wanted

    return passes


async def status_stream(
    feed: Feed,
    *,
    after: int | None,
    plugin: str | None,
    statuses: tuple[JobStatus, ...],
    keepalive: float,
    buffer: int | None = None,
) -> AsyncIterator[bytes]:
    """``/events/stream``: every job's status changes, filtered; never ends by itself.

    Without ``after`` it starts at the present: history is replayed only for a
    client that resumes.
    """
    passes = status_filter(plugin, statuses)
    with feed.hub.subscribe(buffer=buffer) as subscription:
        view = await feed.queue(0)
        cursor = view.last_message_id if after is None else after
        state = {
            "queued": view.queued_total,
            "running": view.running_total,
            "last_event_id": cursor,
        }
        yield frame("connected", state, event_id=cursor, retry=RETRY_MS)
        if after is not None:
            while True:
                page = await feed.status_changes(
                    after_id=cursor, plugin=plugin, statuses=statuses, limit=REPLAY_PAGE
                )
                for message in page:
                    yield frame(_event_name(message), message.to_event(), event_id=message.id)
                    cursor = message.id
                if len(page) < REPLAY_PAGE:
                    break
        while True:
            item = await _next(subscription.messages, keepalive)
            if item is _Idle.DROPPED:
                return
            if item is _Idle.KEEPALIVE:
                yield KEEPALIVE
                continue
            if item.id <= cursor or not passes(item):
                continue
            yield frame(_event_name(item), item.to_event(), event_id=item.id)
            cursor = item.id


def _event_name(message: JobMessage) -> str:
    """``status`` for a job's status change, ``run`` for a run's event."""
    return "run" if message.kind is MessageKind.RUN else "status"
