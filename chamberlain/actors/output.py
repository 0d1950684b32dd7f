"""Forwarding a running plugin's output to the JobStore, in batches.

The process reader hands over each stderr line through a plain callback that
only appends to a bounded buffer (:class:`~chamberlain.joblog.OutputBuffer`), so
reading the plugin's output never waits for the database.  A pump task sends what
accumulated at most every :data:`FLUSH_INTERVAL` seconds as one ``RecordOutput``
request (one row batch, one commit shared with whatever else the JobStore is
doing), and a last time when the attempt is over, before its outcome is settled:
the lines of an attempt are always stored before the status change that ends it.

Each line has the daemon's secrets (configured and registered) redacted
(:mod:`chamberlain.redaction`) before it is buffered: the process reader hands over
complete lines, so a secret that arrived split across two reads is whole again by
then.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio

from chamberlain.actors.mail import JobStoreRequest, RecordOutput
from chamberlain.actors.mailbox import RequestFailed, call
from chamberlain.joblog import OutputBuffer, OutputLimits
from chamberlain.records import MessageKind
from chamberlain.redaction import Redactor

log = logging.getLogger("chamberlain.runner")

#: Longest a line waits in the buffer: short enough to look live in a stream, long
#: enough that a chatty plugin costs a few store requests a second, not one a line.
FLUSH_INTERVAL = 0.2


@attrs.define(eq=False)
class Forwarder:
    """One attempt's output on its way to the store (made by :func:`forward_output`)."""

    store: trio.MemorySendChannel[JobStoreRequest]
    job_id: str
    now: Callable[[], float]
    interval: float
    buffer: OutputBuffer
    redactor: Redactor
    _arrived: trio.Event = attrs.field(factory=trio.Event, init=False)
    _closed: trio.Event = attrs.field(factory=trio.Event, init=False)
    #: One flush at a time, so lines reach the store in the order they were read.
    _flushing: trio.Lock = attrs.field(factory=trio.Lock, init=False)
    #: Lines were refused since the last marker: the final flush must write one.
    _marker_due: bool = attrs.field(default=False, init=False)

    def on_line(self, line: str) -> None:
        """Buffer one stderr line (the process reader's ``on_stderr_line``)."""
        self._append(line, MessageKind.STDERR)

    def on_output(self, text: str) -> None:
        """Buffer one line of an interactive plugin's output."""
        self._append(text, MessageKind.STDOUT)

    def _append(self, text: str, kind: MessageKind) -> None:
        self.buffer.append(self.redactor.text(text), self.now(), kind)
        self._arrived.set()

    async def flush(self) -> None:
        """Store what is buffered now, and return once the store has it."""
        async with self._flushing:
            if self.buffer:
                await self._send(final=False)

    def close(self) -> None:
        self._closed.set()
        self._arrived.set()

    async def pump(self) -> None:
        while True:
            await self._arrived.wait()
            # Gather for a moment: lines tend to come in bursts.
            with trio.move_on_after(self.interval):
                await self._closed.wait()
            self._arrived = trio.Event()
            final = self._closed.is_set()
            async with self._flushing:
                if self.buffer or (final and self._marker_due):
                    await self._send(final)
            if final:
                return

    async def _send(self, final: bool) -> None:
        lines, dropped = self.buffer.take()
        try:
            kept: int = await call(
                self.store,
                lambda r: RecordOutput(
                    job_id=self.job_id, lines=lines, dropped=dropped, final=final, reply=r
                ),
            )
        except RequestFailed:
            # Losing some output must never fail the job that wrote it.
            log.exception(
                "could not store %d output lines",
                len(lines),
                extra={"component": "runner", "job_id": self.job_id},
            )
            return
        if dropped or kept < len(lines):
            self._marker_due = not final


@asynccontextmanager
async def forward_output(
    store: trio.MemorySendChannel[JobStoreRequest],
    job_id: str,
    *,
    now: Callable[[], float],
    limits: OutputLimits | None = None,
    interval: float = FLUSH_INTERVAL,
    redactor: Redactor | None = None,
) -> AsyncIterator[Forwarder]:
    """Yield the :class:`Forwarder` of one attempt of ``job_id``.

    Lines are stored with ``redactor``'s secrets replaced.  Leaving the block
    flushes what is left (and the dropped-lines marker) and returns once the store
    has it; if the block raises, unsent lines are lost with the attempt.
    """
    forwarder = Forwarder(
        store=store,
        job_id=job_id,
        now=now,
        interval=interval,
        buffer=OutputBuffer(limits or OutputLimits()),
        redactor=redactor or Redactor(),
    )
    failure: BaseException | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(forwarder.pump)
        try:
            yield forwarder
        except BaseException as exc:
            # Re-raised below, outside the nursery, so the caller sees the error
            # itself rather than an exception group around it.
            failure = exc
            nursery.cancel_scope.cancel()
        else:
            forwarder.close()
    if failure is not None:
        raise failure
