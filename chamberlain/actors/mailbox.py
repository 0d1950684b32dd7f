"""Request/reply over trio memory channels.

A request carries its own reply address: a fresh channel with a buffer of one.  The
actor answers with ``send_nowait`` and ignores a caller that went away, so a
cancelled HTTP request can never block an actor.  The caller waits with a deadline,
so an actor that is restarting or wedged turns into :class:`ActorUnavailable`
rather than a hung client.

An actor that answers later (a job or a tree once it finishes) parks replies in
:class:`Waiters`, which forgets the callers that went away, so callers that give
up cannot make it grow without bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import attrs
import trio

T = TypeVar("T")
M = TypeVar("M")
K = TypeVar("K", bound=Hashable)


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

    @property
    def abandoned(self) -> bool:
        """True once the caller stopped waiting: nobody can read an answer any more."""
        return self._channel.statistics().open_receive_channels == 0

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


@attrs.define(eq=False)
class Waiters(Generic[K, T]):
    """Replies parked under a key until their answer exists.

    Replies whose caller went away are swept out whenever the count has doubled
    since the last sweep (and on :meth:`prune`), so the parked replies stay within
    twice the live ones (or :attr:`floor`) at the cost of amortised O(1) per
    :meth:`add`.
    """

    #: Below this many parked replies no sweep is made.
    floor: int = 64
    _by_key: dict[K, list[ReplyTo[T]]] = attrs.field(factory=dict, init=False)
    _count: int = attrs.field(default=0, init=False)
    _sweep_at: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._sweep_at = self.floor

    def __len__(self) -> int:
        """How many replies are parked."""
        return self._count

    def keys(self) -> set[K]:
        """The keys that have at least one parked reply."""
        return set(self._by_key)

    def add(self, key: K, reply: ReplyTo[T]) -> None:
        """Park ``reply`` under ``key``."""
        self._by_key.setdefault(key, []).append(reply)
        self._count += 1
        if self._count > self._sweep_at:
            self.prune()

    def pop(self, key: K) -> list[ReplyTo[T]]:
        """Take every reply parked under ``key`` (none: an empty list)."""
        replies = self._by_key.pop(key, [])
        self._count -= len(replies)
        return replies

    def prune(self) -> int:
        """Forget the replies whose caller went away; returns how many were dropped."""
        before = self._count
        for key, replies in list(self._by_key.items()):
            live = [reply for reply in replies if not reply.abandoned]
            if live:
                self._by_key[key] = live
            else:
                del self._by_key[key]
            self._count -= len(replies) - len(live)
        self._sweep_at = max(self.floor, 2 * self._count)
        return before - self._count


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
