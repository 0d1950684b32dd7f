"""The supervisor's decisions, as plain synchronous code.

Nothing here awaits or reads a clock: callers pass the time in. That keeps the rules
testable one by one and keeps the async layer down to "stop these, sleep, start those".
"""

from __future__ import annotations

from collections import deque

import attrs

from ._child_spec import Restart, Strategy

# 2.0**1000 still fits in a float, and no sane backoff_initial makes the product
# smaller than backoff_max after that many doublings; capping the exponent keeps a
# child that has been restarted thousands of times from overflowing the arithmetic.
_MAX_DOUBLINGS = 1000


def backoff_delay(consecutive: int, *, initial: float, maximum: float) -> float:
    """Seconds to wait before the ``consecutive``-th restart in a row of one child.

    ``initial * 2**(consecutive - 1)``, capped at ``maximum``; no wait for 0.
    """
    if consecutive <= 0:
        return 0.0
    return min(maximum, initial * 2.0 ** min(consecutive - 1, _MAX_DOUBLINGS))


def should_restart(restart: Restart, *, crashed: bool) -> bool:
    """Whether a child that exited by itself is started again, by its restart type."""
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return crashed
    return False


def affected_siblings(strategy: Strategy, failed: int, count: int) -> list[int]:
    """Indices of the siblings that go down with child ``failed``, in start order.

    ``count`` is the number of children; indices are positions in start order.
    """
    if strategy is Strategy.ONE_FOR_ONE:
        return []
    if strategy is Strategy.ONE_FOR_ALL:
        return [index for index in range(count) if index != failed]
    return list(range(failed + 1, count))


@attrs.define(eq=False)
class RestartIntensity:
    """A sliding window over the supervisor's recent restarts.

    The limit is supervisor-wide, as in OTP: several children crashing in turn are as
    much a sign that restarting does not help as one child crashing repeatedly.
    A restart at time ``t`` stays in the window while ``now - t < period``.
    """

    intensity: int
    period: float
    _recent: deque[tuple[float, str]] = attrs.field(factory=deque, init=False)

    def record(self, now: float, child_id: str) -> bool:
        """Note a restart of ``child_id`` at ``now``.

        Returns True if that makes more than ``intensity`` restarts within the
        window, i.e. if the supervisor should give up instead of restarting.
        """
        self._recent.append((now, child_id))
        while now - self._recent[0][0] >= self.period:
            self._recent.popleft()
        return len(self._recent) > self.intensity

    @property
    def restarts(self) -> int:
        """How many restarts are in the window as of the last :meth:`record`."""
        return len(self._recent)

    def only_child(self) -> str | None:
        """The id of the child behind every restart in the window, if it is just one."""
        ids = {child_id for _, child_id in self._recent}
        return ids.pop() if len(ids) == 1 else None


def split_failure(exc: BaseException) -> tuple[Exception | None, BaseException | None]:
    """Split what a child raised into ``(crash, escaping)``.

    ``crash`` is the part that counts as a crash: ordinary exceptions only.
    ``escaping`` is everything else (``trio.Cancelled``, ``KeyboardInterrupt``, ...),
    which must keep propagating. A group is split leaf by leaf, because a Cancelled
    hidden inside a group is still a cancellation: swallowing it would let code that
    was cancelled carry on as if it had not been.
    """
    if isinstance(exc, Exception):
        return exc, None
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(Exception)
    return None, exc
