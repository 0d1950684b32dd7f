"""An interactive attempt's session: a user's messages in, the plugin's words out.

The Runner makes one :class:`Session` for each attempt of an interactive command
and serves it while the process runs.  What the plugin writes arrives from the
process reader (:meth:`Session.on_line`, never blocking): output goes to the
attempt's :class:`~chamberlain.actors.output.Forwarder`, a ``waiting`` line is
recorded in the store.  What users send arrives as
:class:`~chamberlain.actors.mail.Converse` requests (:meth:`Session.offer`).  One
task (:meth:`Session.serve`) takes both in the order they came, so:

* a message is stored (a ``user_input`` message, committed) before the plugin is
  handed it and before the user is answered: a crash after the answer loses
  nothing, and the transcript of the next attempt holds it;
* the output read before a message or a wait is stored before it, so a stream
  shows the question, then the wait, then the answer;
* a complete is stored too (the next attempt of a crashed session is completed
  as well), then the ``complete`` line is sent and stdin closed.

Requests still waiting when the attempt ends are answered ``not_running``.
"""

from __future__ import annotations

import logging
import math
from typing import Final

import attrs
import trio

from chamberlain.actors.mail import Converse, JobStoreRequest, MarkSession, RecordInput
from chamberlain.actors.mailbox import RequestFailed, call
from chamberlain.actors.output import Forwarder
from chamberlain.plugins.conversation import (
    Line,
    Output,
    Text,
    Waiting,
    input_line,
    new_message_id,
)
from chamberlain.plugins.process import Conversation
from chamberlain.records import SessionRefusal, SessionReply

log = logging.getLogger("chamberlain.runner")

#: Messages that may wait for the session's task at once; past this a sender is
#: told ``busy`` (503) rather than queue without bound.
PENDING_MAX: Final = 32


@attrs.define(eq=False)
class Session:
    """One interactive attempt's session; see the module docstring.

    Made when the Runner is handed the attempt, so a message that comes before the
    process starts waits for it; served once the process runs.
    """

    job_id: str
    attempt: int
    store: trio.MemorySendChannel[JobStoreRequest]
    idle_timeout: float
    max_duration: float
    conversation: Conversation = attrs.field(init=False)
    _forwarder: Forwarder | None = attrs.field(default=None, init=False)
    _items: tuple[
        trio.MemorySendChannel[Converse | Waiting], trio.MemoryReceiveChannel[Converse | Waiting]
    ] = attrs.field(
        factory=lambda: trio.open_memory_channel[Converse | Waiting](math.inf), init=False
    )
    _pending: int = attrs.field(default=0, init=False)
    _ended: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self.conversation = Conversation(
            on_line=self.on_line, idle_timeout=self.idle_timeout, max_duration=self.max_duration
        )

    def on_line(self, line: Line) -> None:
        """A line the plugin wrote (the conversation's ``on_line``)."""
        match line:
            case Output(text=text) | Text(text=text):
                assert self._forwarder is not None, "lines come only while served"
                self._forwarder.on_output(text)
            case Waiting():
                self._put(line)

    def offer(self, request: Converse) -> None:
        """Take a user's message or complete; answered once it is served."""
        if self._ended:
            request.reply.send(SessionReply(job_id=self.job_id, refused=SessionRefusal.NOT_RUNNING))
            return
        if request.message is not None and self._pending >= PENDING_MAX:
            request.reply.send(SessionReply(job_id=self.job_id, refused=SessionRefusal.BUSY))
            return
        self._pending += 1
        self._put(request)

    def _put(self, item: Converse | Waiting) -> None:
        try:
            self._items[0].send_nowait(item)
        except trio.ClosedResourceError:
            if isinstance(item, Converse):
                self._refuse(item, SessionRefusal.NOT_RUNNING)

    async def serve(
        self,
        forwarder: Forwarder,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve the session, its output going to ``forwarder``, until :meth:`end`.

        Started (``nursery.start``) once lines may be handed over.  The request being
        served when the session ends is finished first: once a message is stored its
        sender hears so.
        """
        self._forwarder = forwarder
        task_status.started()
        try:
            async for item in self._items[1]:
                if isinstance(item, Waiting):
                    await self._waiting()
                    continue
                self._pending -= 1
                try:
                    if item.message is None:
                        await self._complete(item)
                    else:
                        await self._deliver(item, item.message)
                except RequestFailed as failed:
                    # The store refused it (a full disk): the user hears why, and the
                    # plugin was handed nothing that is not stored.
                    cause = failed.__cause__
                    item.reply.fail(cause if isinstance(cause, Exception) else failed)
        finally:
            self.end()

    def end(self) -> None:
        """Take no more requests, and answer those still waiting ``not_running``."""
        self._ended = True
        self._items[0].close()
        while True:
            try:
                item = self._items[1].receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            if isinstance(item, Converse):
                self._refuse(item, SessionRefusal.NOT_RUNNING)

    def _refuse(self, request: Converse, why: SessionRefusal) -> None:
        request.reply.send(SessionReply(job_id=self.job_id, refused=why))

    async def _flush(self) -> None:
        if self._forwarder is not None:
            await self._forwarder.flush()

    async def _waiting(self) -> None:
        await self._flush()
        try:
            await call(
                self.store,
                lambda r: MarkSession(
                    job_id=self.job_id, attempt=self.attempt, waiting=True, reply=r
                ),
            )
        except RequestFailed:
            # Only what GET /job shows is missing; the session itself goes on.
            log.exception(
                "could not record that the job waits for input",
                extra={"component": "runner", "job_id": self.job_id},
            )

    async def _deliver(self, request: Converse, message: str) -> None:
        if self.conversation.closed:
            # Completed by the user, or the plugin already answered: its end is near.
            completing = self.conversation.completed
            self._refuse(
                request, SessionRefusal.COMPLETING if completing else SessionRefusal.NOT_RUNNING
            )
            return
        await self._flush()
        message_id = new_message_id()
        stored: bool = await call(
            self.store,
            lambda r: RecordInput(
                job_id=self.job_id,
                attempt=self.attempt,
                message_id=message_id,
                message=message,
                reply=r,
            ),
        )
        if not stored:
            self._refuse(request, SessionRefusal.NOT_RUNNING)
            return
        self.conversation.send(input_line(message, message_id))
        request.reply.send(SessionReply(job_id=self.job_id, message_id=message_id))

    async def _complete(self, request: Converse) -> None:
        if not self.conversation.closed:
            await self._flush()
            await call(
                self.store,
                lambda r: MarkSession(
                    job_id=self.job_id, attempt=self.attempt, waiting=False, reply=r
                ),
            )
            self.conversation.complete()
        # Completing twice, or a session that already answered: the end is under way.
        request.reply.send(SessionReply(job_id=self.job_id))
