"""Request/reply over trio memory channels.

A request carries its own reply address: a fresh channel with a buffer of one.  The
actor answers with ``send_nowait`` and ignores a caller that went away, so a
cancelled HTTP request can never block an actor.  The caller waits with a deadline,
so an actor that is restarting or wedged turns into :class:`ActorUnavailable`
rather than a hung client.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs
import trio

T = TypeVar("T")
M = TypeVar("M")


class ActorUnavailable(Exception):
    """The actor did not answer before the deadline (restarting, overloaded, gone)."""


class RequestFailed(Exception):
    """The actor handled the request and failed; ``__cause__`` holds the reason."""


@attrs.frozen
class _Failure:
    error: Exception


class ReplyTo(Generic[T]):
    """Where an actor sends the answer to one request.  Never blocks the actor."""

    __slots__ = ("_channel",)

    def __init__(self, channel: trio.MemorySendChannel[Any]) -> None:
        self._channel = channel

    def send(self, value: T) -> None:
        """Answer the request; a caller that stopped waiting is ignored."""
        self._put(value)

    def fail(self, error: Exception) -> None:
        """Answer with an error, re-raised in the caller as :class:`RequestFailed`."""
        self._put(_Failure(error))

    def _put(self, item: object) -> None:
        try:
            self._channel.send_nowait(item)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.WouldBlock):
            # The caller gave up (its receive end is closed) or was already answered.
            pass


async def call(
    mailbox: trio.MemorySendChannel[M],
    build: Callable[[ReplyTo[T]], M],
    *,
    # Not a plain deadline (ASYNC109): running out of time is an answer of its own,
    # ActorUnavailable, which the web layer turns into a 503.
    timeout: float | None = None,  # noqa: ASYNC109
) -> T:
    """Send the request ``build(reply_to)`` to ``mailbox`` and wait for its answer.

    ``timeout`` bounds both the wait for room in the mailbox and the wait for the
    answer; when it passes, :class:`ActorUnavailable` is raised.
    """
    send, receive = trio.open_memory_channel[Any](1)
    with receive:
        # Closing our receive end on the way out turns a late answer into a no-op.
        with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
            await mailbox.send(build(ReplyTo(send)))
            answer = await receive.receive()
    if scope.cancelled_caught:
        raise ActorUnavailable(f"no answer within {timeout:g}s")
    if isinstance(answer, _Failure):
        raise RequestFailed(str(answer.error)) from answer.error
    return answer  # type: ignore[no-any-return]
