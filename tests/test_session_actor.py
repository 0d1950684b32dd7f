"""An interactive attempt's Session, against a fake store."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from chamberlain.actors.mail import (
    Converse,
    JobStoreRequest,
    MarkSession,
    RecordInput,
    RecordOutput,
)
from chamberlain.actors.mailbox import ReplyTo, call
from chamberlain.actors.output import forward_output
from chamberlain.actors.session import PENDING_MAX, Session
from chamberlain.plugins.conversation import Output, Waiting
from chamberlain.records import SessionRefusal, SessionReply


class FakeStore:
    """Answers the session's requests, and keeps what it was asked, in order."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[JobStoreRequest](100)
        self.log: list[tuple[str, Any]] = []
        self.running = True

    async def serve(self) -> None:
        async for request in self.receive:
            match request:
                case RecordOutput(lines=lines):
                    self.log += [("output", text) for _, text, _ in lines]
                    request.reply.send(len(lines))
                case RecordInput(message=message):
                    if self.running:
                        self.log.append(("input", message))
                    request.reply.send(self.running)
                case MarkSession(waiting=waiting):
                    self.log.append(("waiting" if waiting else "completing", None))
                    request.reply.send(self.running)
                case _:
                    raise AssertionError(f"unexpected {request!r}")


async def _offer(session: Session, message: str | None) -> SessionReply:
    send, receive = trio.open_memory_channel[Converse](1)

    async def to_session() -> None:
        async for request in receive:
            session.offer(request)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(to_session)
        answer: SessionReply = await call(
            send, lambda r: Converse(job_id="j", message=message, reply=r)
        )
        nursery.cancel_scope.cancel()
    return answer


async def test_output_is_stored_before_the_input_that_answers_it() -> None:
    store = FakeStore()
    session = Session(job_id="j", attempt=1, store=store.send, idle_timeout=60, max_duration=600)
    sent: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.serve)
        async with forward_output(store.send, "j", now=lambda: 0.0, interval=30) as forwarder:
            await nursery.start(session.serve, forwarder)
            session.on_line(Output("What is your name?"))
            session.on_line(Waiting())
            reply = await _offer(session, "Ada")
            assert reply.refused is None and reply.message_id
            sent.append(session.conversation._lines[1].receive_nowait())
            session.end()
        nursery.cancel_scope.cancel()
    # Though the forwarder would have waited 30 s, the question was stored first.
    assert store.log == [
        ("output", "What is your name?"),
        ("waiting", None),
        ("input", "Ada"),
    ]
    assert b'"message":"Ada"' in sent[0] and reply.message_id.encode() in sent[0]


async def test_a_completed_session_refuses_messages_and_completes_once() -> None:
    store = FakeStore()
    session = Session(job_id="j", attempt=1, store=store.send, idle_timeout=60, max_duration=600)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.serve)
        async with forward_output(store.send, "j", now=lambda: 0.0) as forwarder:
            await nursery.start(session.serve, forwarder)
            assert (await _offer(session, None)).refused is None
            assert (await _offer(session, None)).refused is None
            late = await _offer(session, "one more thing")
            assert late.refused is SessionRefusal.COMPLETING
            session.end()
        nursery.cancel_scope.cancel()
    assert store.log == [("completing", None)]
    assert session.conversation.closed


async def test_an_attempt_the_store_no_longer_runs_is_not_running() -> None:
    store = FakeStore()
    store.running = False
    session = Session(job_id="j", attempt=1, store=store.send, idle_timeout=60, max_duration=600)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.serve)
        async with forward_output(store.send, "j", now=lambda: 0.0) as forwarder:
            await nursery.start(session.serve, forwarder)
            reply = await _offer(session, "hello")
            session.end()
        nursery.cancel_scope.cancel()
    assert reply.refused is SessionRefusal.NOT_RUNNING
    # Nothing unstored reaches the plugin.
    with pytest.raises(trio.WouldBlock):
        session.conversation._lines[1].receive_nowait()


async def test_messages_wait_for_the_process_and_are_bounded_and_answered_at_the_end() -> None:
    store = FakeStore()
    session = Session(job_id="j", attempt=1, store=store.send, idle_timeout=60, max_duration=600)
    replies: list[trio.MemoryReceiveChannel[Any]] = []
    for n in range(PENDING_MAX + 1):
        send, receive = trio.open_memory_channel[Any](1)
        session.offer(Converse(job_id="j", message=f"m{n}", reply=ReplyTo(send)))
        replies.append(receive)
    # Before the process runs, messages wait; one too many is told to come back.
    busy = replies[-1].receive_nowait()
    assert busy == SessionReply(job_id="j", refused=SessionRefusal.BUSY)
    with pytest.raises(trio.WouldBlock):
        replies[0].receive_nowait()
    # The attempt ends before it served them: each hears it is not running.
    session.end()
    for receive in replies[:-1]:
        assert receive.receive_nowait().refused is SessionRefusal.NOT_RUNNING
    assert store.log == []
