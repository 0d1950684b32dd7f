"""The Scheduler's records: what it keeps durably, and what it reports.

:class:`ScheduleBook` and :class:`BreakerBook` are rows of the ``schedules`` and
``circuit_breakers`` tables (migration 0002).  :class:`ScheduleStatus` is one
schedule as ``GET /schedules`` shows it.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from chamberlain.schedule.breaker import Breaker, BreakerPolicy
from chamberlain.schedule.policy import Fire

ScheduleKey = tuple[str, str]
"""(plugin, schedule id): schedule ids are unique per plugin."""

BreakerKey = tuple[str, str]
"""(plugin, command): the unit a circuit breaker guards."""


@attrs.frozen(kw_only=True)
class ScheduleBook:
    """What the Scheduler remembers about one schedule across restarts."""

    plugin: str
    id: str
    #: The timing as configured; when it changes the book starts afresh, so a new
    #: timing never "catches up" on instants of the old one.
    spec: str
    #: Instants before this were never this schedule's to run.
    tracked_since: float
    #: The nominal instant of the last fire handled (run, skipped or missed): the
    #: point from which missed fires are counted after a restart.
    last_fire_at: float | None = None
    #: When a job was last enqueued, and which.
    last_run_at: float | None = None
    last_job_id: str | None = None
    last_status: str | None = None
    #: The last fire that did not run, and why.
    last_skip_at: float | None = None
    last_skip_reason: str | None = None
    #: Fires waiting for room (``if_running: queue | cancel``, and catch-up runs).
    owed: tuple[Fire, ...] = ()

    @property
    def key(self) -> ScheduleKey:
        """(plugin, id)."""
        return (self.plugin, self.id)

    @property
    def watermark(self) -> float:
        """Fires after this instant have not been handled yet."""
        return self.tracked_since if self.last_fire_at is None else self.last_fire_at


@attrs.frozen(kw_only=True)
class BreakerBook:
    """A circuit breaker's state, as stored."""

    plugin: str
    command: str
    breaker: Breaker = attrs.field(factory=Breaker)

    @property
    def key(self) -> BreakerKey:
        """(plugin, command)."""
        return (self.plugin, self.command)


@attrs.frozen(kw_only=True)
class StoredSchedules:
    """Everything the Scheduler loads when it starts."""

    books: Mapping[ScheduleKey, ScheduleBook]
    breakers: Mapping[BreakerKey, BreakerBook]


@attrs.frozen(kw_only=True)
class BreakerStatus:
    """A breaker as the API shows it."""

    command: str
    breaker: Breaker
    policy: BreakerPolicy

    @property
    def probe_at(self) -> float | None:
        """When an open breaker lets a probe through."""
        return self.breaker.probe_at(self.policy)


@attrs.frozen(kw_only=True)
class ScheduleStatus:
    """One schedule as ``GET /schedules`` shows it."""

    plugin: str
    id: str
    command: str
    #: ``every``, ``cron``, ``at`` or ``after``.
    kind: str
    #: The value of that key as configured (``5m``, ``daily``, ``0 9 * * 1-5`` ...).
    spec: str
    timezone: str
    only_between: str | None
    not_on: tuple[str, ...]
    jitter: float
    catch_up: str
    if_running: str
    max_outstanding: int
    #: When the next run starts (jitter included); None when it never will again.
    next_run: float | None
    book: ScheduleBook
    breaker: BreakerStatus
    #: True while the daemon drains: nothing is enqueued any more.
    paused: bool = False
