"""The schedules of the loaded plugins, compiled once from the configuration.

A :class:`SchedulePlan` holds everything about one schedule that does not change while the
daemon runs: its timing, policies, breaker settings, and how to build its jobs.
The parts that do change (the books) are kept next to it by the engine
(:mod:`chamberlain.schedule.engine`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any

import attrs

from chamberlain.config import ScheduleConfig
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.records import NewJob, StoredEvent, rfc3339
from chamberlain.schedule.books import BreakerKey, ScheduleKey
from chamberlain.schedule.breaker import BreakerPolicy
from chamberlain.schedule.policy import Fire
from chamberlain.schedule.timing import (
    Once,
    Timing,
    Window,
    describe_days,
    instants_of,
    jump_instant,
    recurring,
    resolve_zone,
)

#: What scheduled jobs show as ``submitted_by``.
SUBMITTED_BY = "scheduler"
#: The event a scheduled ``handle`` job receives its payload in.
EVENT_TYPE = "schedule.fired"


@attrs.frozen(kw_only=True, eq=False)
class SchedulePlan:
    """One configured schedule of a loaded plugin."""

    plugin: str
    config: ScheduleConfig
    zone: tzinfo
    #: The zone's name (the system's zone reports what it resolved to).
    zone_name: str
    max_attempts: int
    breaker: BreakerPolicy

    @property
    def id(self) -> str:
        """The schedule's id, unique within its plugin."""
        return self.config.id

    @property
    def command(self) -> str:
        """The command its jobs run."""
        return self.config.command

    @property
    def key(self) -> ScheduleKey:
        """(plugin, id)."""
        return (self.plugin, self.config.id)

    @property
    def breaker_key(self) -> BreakerKey:
        """(plugin, command): the breaker this schedule answers to."""
        return (self.plugin, self.config.command)

    @property
    def fingerprint(self) -> str:
        """Everything that decides *when* it fires; a change restarts its books."""
        c = self.config
        return (
            f"{c.kind}={c.spec} tz={self.zone_name} window={c.only_between or '-'}"
            f" not_on={describe_days(sorted(set(c.not_on))) or '-'}"
        )

    def timing(self, started_at: float) -> Timing:
        """Its timing; ``after`` schedules count from ``started_at``."""
        c = self.config
        if c.every is not None:
            return recurring(c.every, zone=self.zone, window=c.only_between, not_on=_days(c))
        if c.cron is not None:
            return recurring(c.cron, zone=self.zone, window=c.only_between, not_on=_days(c))
        if c.at is not None:
            return Timing(rule=Once(_instant(c.at, self.zone)), zone=self.zone)
        assert c.after is not None
        return Timing(rule=Once(started_at + c.after), zone=self.zone)

    def job(self, fire: Fire, *, now: float) -> NewJob:
        """The job one fire enqueues.

        Its context tells the plugin which run it is (``scheduled_for``) and whether
        it is a catch-up; a ``handle`` job gets its payload in a ``schedule.fired``
        event, as handle commands expect an event.
        """
        c = self.config
        context = {
            "schedule": {
                "plugin": self.plugin,
                "id": c.id,
                "scheduled_for": rfc3339(fire.nominal),
                "fired_at": rfc3339(now),
                "catch_up": fire.late,
            }
        }
        event: Mapping[str, Any] | None = None
        event_id: str | None = None
        if c.command == "handle":
            event_id = str(uuid.uuid4())
            event = StoredEvent(
                event_id=event_id,
                job_id="",
                type=EVENT_TYPE,
                source=SUBMITTED_BY,
                payload=dict(c.payload),
                dedupe_key=None,
                created_at=now,
            ).envelope()
        return NewJob(
            plugin=self.plugin,
            command=c.command,
            payload=dict(c.payload),
            event=event,
            source_event_id=event_id,
            context=context,
            submitted_by=SUBMITTED_BY,
            max_attempts=self.max_attempts,
            schedule_id=c.id,
        )


def _days(config: ScheduleConfig) -> frozenset[int]:
    return frozenset(config.not_on)


def _instant(moment: datetime, zone: tzinfo) -> float:
    if moment.tzinfo is not None:
        return moment.timestamp()
    found = instants_of(moment, zone)
    return found[0] if found else jump_instant(moment, zone)


def window_text(window: Window | None) -> str | None:
    """``only_between`` as configured."""
    return None if window is None else str(window)


def build_plans(plugins: Mapping[str, BoundPlugin]) -> tuple[SchedulePlan, ...]:
    """The schedules of every loaded plugin, in plugin then config order."""
    plans: list[SchedulePlan] = []
    for name, plugin in sorted(plugins.items()):
        settings = plugin.settings
        policy = BreakerPolicy(
            enabled=settings.circuit_breaker.enabled,
            threshold=settings.circuit_breaker.threshold,
            reset_after=settings.circuit_breaker.reset_after,
        )
        for schedule in settings.schedules:
            zone, zone_name = resolve_zone(schedule.timezone)
            plans.append(
                SchedulePlan(
                    plugin=name,
                    config=schedule,
                    zone=zone,
                    zone_name=zone_name,
                    max_attempts=plugin.max_attempts,
                    breaker=policy,
                )
            )
    return tuple(plans)
