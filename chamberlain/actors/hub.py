"""The hub: committed job messages, fanned out to whoever is watching.

The JobStore publishes every message after the transaction that wrote it commits,
so a subscriber never sees something the store could still roll back.  Publishing
never blocks and never waits for a subscriber: each one has a bounded buffer, and
one whose buffer is full is dropped (its channel closed) rather than allowed to
slow the daemon.  A dropped stream's client reconnects with ``Last-Event-ID`` and
catches up from the store, so dropping loses nothing but the connection.

The hub is a plain object, not an actor: publishing is a synchronous
``send_nowait`` per subscriber, which is all an actor's mailbox would do too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import trio

from chamberlain.records import JobMessage, MessageKind

#: Room per subscriber: a whole job's capped output fits, so a burst from one job
#: (a flush of many lines) cannot by itself drop a client that keeps up.
DEFAULT_BUFFER = 2048


@attrs.frozen(kw_only=True)
class HubStatistics:
    """What the hub has done, for metrics."""

    subscribers: int
    published: int
    dropped: int


@attrs.define(eq=False)
class Subscription:
    """One subscriber: read :attr:`messages` until it ends.

    The channel ends (``EndOfChannel``) when the subscriber is dropped; then
    :attr:`dropped` is True.
    """

    job_id: str | None
    messages: trio.MemoryReceiveChannel[JobMessage]
    _send: trio.MemorySendChannel[JobMessage]
    dropped: bool = False


@attrs.define(eq=False)
class Hub:
    """Fans committed job messages out to subscribers; see the module docstring."""

    buffer: int = DEFAULT_BUFFER
    _by_job: dict[str, dict[int, Subscription]] = attrs.field(factory=dict, init=False)
    _status: dict[int, Subscription] = attrs.field(factory=dict, init=False)
    _ids: Iterator[int] = attrs.field(factory=itertools.count, init=False)
    published: int = attrs.field(default=0, init=False)
    dropped: int = attrs.field(default=0, init=False)

    @contextmanager
    def subscribe(
        self, *, job_id: str | None = None, buffer: int | None = None
    ) -> Iterator[Subscription]:
        """Receive one job's messages, or (``job_id`` None) every job's status changes.

        Subscribe *before* reading history from the store: whatever commits after
        the read then arrives here, and what arrives twice is recognised by its id.
        """
        send, receive = trio.open_memory_channel[JobMessage](buffer or self.buffer)
        subscription = Subscription(job_id=job_id, messages=receive, send=send)
        key = next(self._ids)
        table = self._status if job_id is None else self._by_job.setdefault(job_id, {})
        table[key] = subscription
        try:
            with receive:
                yield subscription
        finally:
            self._forget(job_id, key)
            send.close()

    def publish(self, message: JobMessage) -> None:
        """Hand ``message`` to its subscribers; never blocks."""
        self.published += 1
        watchers = self._by_job.get(message.job_id)
        if watchers:
            self._offer(message, message.job_id, watchers)
        # The global feed (/events/stream) carries status changes and runs' events.
        if (message.is_status or message.kind is MessageKind.RUN) and self._status:
            self._offer(message, None, self._status)

    def _offer(
        self, message: JobMessage, job_id: str | None, table: dict[int, Subscription]
    ) -> None:
        for key, subscription in list(table.items()):
            try:
                subscription._send.send_nowait(message)
            except trio.WouldBlock:
                # Too slow: drop it.  Closing the channel ends its stream once it has
                # read what is buffered; it resumes from the store on reconnect.
                subscription.dropped = True
                subscription._send.close()
                self.dropped += 1
                self._forget(job_id, key)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._forget(job_id, key)

    def _forget(self, job_id: str | None, key: int) -> None:
        if job_id is None:
            self._status.pop(key, None)
            return
        table = self._by_job.get(job_id)
        if table is not None:
            table.pop(key, None)
            if not table:
                del self._by_job[job_id]

    def statistics(self) -> HubStatistics:
        """A snapshot of the hub's figures."""
        return HubStatistics(
            subscribers=len(self._status) + sum(len(t) for t in self._by_job.values()),
            published=self.published,
            dropped=self.dropped,
        )
