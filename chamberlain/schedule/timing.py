"""When a schedule fires: rules, time zones, windows, weekdays and jitter.

Instants are POSIX seconds (floats), as everywhere in the daemon.  Wall-clock
questions (cron fields, ``only_between``, ``not_on``) are answered in the
schedule's IANA time zone, and the two places where wall time and real time part
ways are decided once, here:

* ``every: <duration>`` counts **elapsed time**: fires fall on whole multiples of
  the interval since the Unix epoch (``every: 5m`` fires at :00, :05, ...), so a
  DST change neither skips nor doubles a run.
* ``cron`` (and ``every: hourly | daily | weekly | monthly``, which are cron
  expressions) reads **wall time**.  When the clocks spring forward, a wall time
  that does not exist fires once, at the instant the clocks jump (a daily 02:30 job
  runs at 03:00 that day); several such times coalesce into that one run.  When
  the clocks fall back, a wall time that happens twice fires once, the first time.
  An expression whose hour field is ``*`` (it runs every hour) is the exception,
  as in Vixie cron: it keeps its real-time cadence, so skipped wall times are just
  skipped and repeated ones run twice (``hourly`` runs 23 or 25 times on those days).

Windows (``only_between``) and weekdays (``not_on``) filter the instants a rule
produces; they never move a run.  The search jumps over excluded stretches instead
of stepping through them, so an every-second schedule limited to office hours costs
a handful of steps, not a night's worth.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta, tzinfo
from difflib import get_close_matches
from functools import cache
from typing import Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import attrs
from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

#: Cron-style weekday numbers: 0 is Sunday.
WEEKDAY_NAMES: Final = (
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
)

#: ``every:`` names and the cron expressions they stand for.  Weekly is Monday,
#: as in ISO 8601 and systemd (cron's ``@weekly`` is Sunday).
PERIODS: Final = {
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "weekly": "0 0 * * 1",
    "monthly": "0 0 1 * *",
}

#: The shortest ``every:`` interval: each run is a process, and a schedule
#: that wants sub-second cadence wants a long-running plugin instead.
MIN_INTERVAL: Final = 1.0

#: Cron instants are whole seconds; "at or after t" is "after t minus this".
_RESOLUTION: Final = 1e-3
#: No real time zone shifts by more than this at one transition (the largest are
#: two hours), so a search that reaches this far around an instant sees every
#: wall time a transition can repeat.
_SHIFT: Final = timedelta(hours=3)
#: Bounds on the searches, so a schedule that can never fire ends the search.
_MAX_JUMPS: Final = 4000
_MAX_CRON_STEPS: Final = 2000


# -- values the configuration holds ---------------------------------------------------


@attrs.frozen
class Interval:
    """``every: <duration>``: instants at whole multiples of ``seconds`` since the epoch."""

    seconds: float

    def after(self, t: float) -> float:
        """The first instant strictly after ``t``."""
        step = self.seconds
        candidate = (math.floor(t / step) + 1) * step
        while candidate <= t:  # float rounding near a multiple
            candidate += step
        return candidate

    def before(self, t: float) -> float:
        """The last instant strictly before ``t``."""
        step = self.seconds
        candidate = (math.ceil(t / step) - 1) * step
        while candidate >= t:
            candidate -= step
        return candidate


@attrs.frozen
class Period:
    """``every: hourly | daily | weekly | monthly``: a named cron expression."""

    name: str

    @property
    def expression(self) -> str:
        """The cron expression it stands for."""
        return PERIODS[self.name]


Every = Interval | Period


@attrs.frozen
class Window:
    """``only_between: "HH:MM-HH:MM"``: from ``start`` (included) to ``end`` (excluded).

    When ``end`` is not after ``start`` the window wraps past midnight
    (``22:00-06:00``); ``18:00-00:00`` runs to the end of the day.
    """

    start: time
    end: time

    @property
    def wraps(self) -> bool:
        """True when the window runs past midnight."""
        return self.end <= self.start

    def contains(self, moment: time) -> bool:
        """Whether a wall-clock time of day falls inside the window."""
        if self.wraps:
            return moment >= self.start or moment < self.end
        return self.start <= moment < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


# -- parsing (the configuration loader calls these; they raise ValueError) ---------------

_WINDOW_RE: Final = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")
_CRON_FIELDS: Final = ("minute", "hour", "day of month", "month", "day of week")


def parse_every(value: object, to_seconds: Callable[[object], float]) -> Every:
    """``every:``: a period name, or a duration of at least :data:`MIN_INTERVAL`.

    ``to_seconds`` reads anything else as a duration (the configuration loader
    passes its own parser, which owns the duration syntax and its messages).
    """
    if isinstance(value, str) and value.strip().lower() in PERIODS:
        return Period(value.strip().lower())
    seconds = to_seconds(value)
    if seconds < MIN_INTERVAL:
        raise ValueError(
            f"must be at least {MIN_INTERVAL:g}s, got {value!r}; or one of: {', '.join(PERIODS)}"
        )
    return Interval(seconds)


def parse_cron(value: object) -> str:
    """A standard five-field cron expression, checked and with its spacing normalised."""
    if not isinstance(value, str):
        raise ValueError(f"expected a cron expression as a string, got {type(value).__name__}")
    fields = value.split()
    hint = f"a standard cron expression has five fields ({', '.join(_CRON_FIELDS)})"
    if len(fields) != 5:
        raise ValueError(f"{hint}; {value!r} has {len(fields)}")
    expression = " ".join(fields)
    try:
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"{expression!r} matches no date, so it would never run") from None
    except (CroniterBadCronError, CroniterError, ValueError, KeyError) as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}; {hint}") from None
    return expression


def parse_window(value: object) -> Window:
    """``"HH:MM-HH:MM"`` in 24-hour time; may wrap past midnight."""
    text = value if isinstance(value, str) else None
    match = _WINDOW_RE.fullmatch(text) if text is not None else None
    if match is None:
        raise ValueError(f'expected "HH:MM-HH:MM" such as "09:00-17:30", got {value!r}')
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(f"{value!r} is not a time of day from 00:00 to 23:59")
    window = Window(start=time(h1, m1), end=time(h2, m2))
    if window.start == window.end:
        raise ValueError(f"{value!r} is empty; the start and end must differ")
    return window


def parse_weekday(value: object) -> int:
    """A weekday name (``mon``, ``Monday``) or a cron number from 0 (Sunday) to 6."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 6:
            return value
        raise ValueError(f"weekday numbers run from 0 (Sunday) to 6 (Saturday), got {value}")
    if isinstance(value, str):
        word = value.strip().lower()
        if word.isdigit():
            return parse_weekday(int(word))
        for number, name in enumerate(WEEKDAY_NAMES):
            if len(word) >= 3 and name.startswith(word):
                return number
    raise ValueError(
        f"expected a weekday name (mon, tuesday ...) or a number from 0 (Sunday) to 6,"
        f" got {value!r}"
    )


def weekday_name(number: int) -> str:
    """The short name of a cron weekday number: 0 -> ``sun``."""
    return WEEKDAY_NAMES[number][:3]


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def parse_timezone(value: object) -> str:
    """An IANA time zone name such as ``Europe/Berlin`` or ``UTC``."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected an IANA time zone name such as 'Europe/Berlin', got {value!r}")
    name = value.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        close = get_close_matches(name, sorted(_zone_names()), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else " (an IANA name such as 'UTC')"
        raise ValueError(f"unknown time zone {name!r}{hint}") from None
    return name


def parse_instant(value: object) -> datetime:
    """``at:``: an ISO 8601 date and time; without an offset it is read in the schedule's zone.

    YAML hands timestamps over as ``datetime`` already; strings are parsed here.
    """
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        text = value.strip()
        if "T" in text.upper() or " " in text:
            try:
                return datetime.fromisoformat(text)
            except ValueError:
                pass
    raise ValueError(
        f"expected a date and time such as '2025-06-01T09:00:00+02:00' or '2025-06-01 09:00',"
        f" got {value!r}"
    )


def local_zone() -> tuple[tzinfo, str]:
    """The system's time zone and its name: ``$TZ``, else ``/etc/localtime``, else UTC."""
    configured = os.environ.get("TZ", "").lstrip(":")
    if configured:
        try:
            return ZoneInfo(configured), configured
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            name = target.split("zoneinfo/", 1)[1]
            return ZoneInfo(name), name
        with open("/etc/localtime", "rb") as data:
            return ZoneInfo.from_file(data, key="localtime"), "localtime"
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    return ZoneInfo("UTC"), "UTC"


def resolve_zone(name: str | None) -> tuple[tzinfo, str]:
    """The zone called ``name``; None means the system's zone (as cron does)."""
    if name is None:
        return local_zone()
    return ZoneInfo(name), name


# -- wall time ---------------------------------------------------------------------------


def wall(t: float, zone: tzinfo) -> datetime:
    """The naive wall-clock time at instant ``t`` in ``zone``."""
    return datetime.fromtimestamp(t, zone).replace(tzinfo=None)


def instants_of(moment: datetime, zone: tzinfo) -> tuple[float, ...]:
    """Every instant whose wall time is ``moment``: usually one, two when the clocks
    fall back over it, none when they spring forward over it."""
    found = {
        moment.replace(tzinfo=zone, fold=fold).timestamp()
        for fold in (0, 1)
        if wall(moment.replace(tzinfo=zone, fold=fold).timestamp(), zone) == moment
    }
    return tuple(sorted(found))


def jump_instant(moment: datetime, zone: tzinfo) -> float:
    """For a wall time the clocks sprang forward over: the instant they jumped."""
    # PEP 495: for a skipped time, fold=1 reads it with the offset after the jump
    # (an instant before it) and fold=0 with the offset before (an instant after).
    lo = math.floor(moment.replace(tzinfo=zone, fold=1).timestamp())
    hi = math.ceil(moment.replace(tzinfo=zone, fold=0).timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if wall(mid, zone) > moment:
            hi = mid
        else:
            lo = mid
    return float(hi)


def _first_at(moment: datetime, zone: tzinfo, *, after: float) -> float | None:
    """The first instant after ``after`` whose wall time is ``moment`` (or, when the
    clocks skip ``moment``, the instant they jump over it)."""
    found = [s for s in instants_of(moment, zone) if s > after]
    if found:
        return found[0]
    if not instants_of(moment, zone):
        jumped = jump_instant(moment, zone)
        return jumped if jumped > after else None
    return None


def _last_at(moment: datetime, zone: tzinfo, *, upto: float) -> float | None:
    """The last instant at or before ``upto`` whose wall time is ``moment`` (or the
    jump over it)."""
    found = [s for s in instants_of(moment, zone) if s <= upto]
    if found:
        return found[-1]
    if not instants_of(moment, zone):
        jumped = jump_instant(moment, zone)
        return jumped if jumped <= upto else None
    return None


def _near_transition(t: float, zone: tzinfo) -> bool:
    span = _SHIFT.total_seconds()
    try:
        before = datetime.fromtimestamp(t - span, zone).utcoffset()
        after = datetime.fromtimestamp(t + span, zone).utcoffset()
    except (OverflowError, OSError, ValueError):
        return False
    return before != after


# -- rules ------------------------------------------------------------------------------


class Rule(Protocol):
    """Produces a schedule's instants, before windows and weekdays filter them."""

    def after(self, t: float) -> float | None:
        """The first instant strictly after ``t``, or None when there is none."""

    def before(self, t: float) -> float | None:
        """The last instant strictly before ``t``, or None when there is none."""


@attrs.frozen
class Once:
    """A single instant: ``at:``, or ``after:`` once the daemon's start is known."""

    at: float

    def after(self, t: float) -> float | None:
        """``at`` when it is after ``t``."""
        return self.at if self.at > t else None

    def before(self, t: float) -> float | None:
        """``at`` when it is before ``t``."""
        return self.at if self.at < t else None


@attrs.frozen(kw_only=True, eq=False)
class Cron:
    """A five-field cron expression read on the wall clock of ``zone``."""

    expression: str
    zone: tzinfo

    @property
    def hourly(self) -> bool:
        """True when the expression runs every hour: it keeps real-time cadence."""
        return self.expression.split()[1] in ("*", "*/1")

    def _instants(self, moment: datetime) -> tuple[float, ...]:
        found = instants_of(moment, self.zone)
        if self.hourly:
            return found
        if not found:
            return (jump_instant(moment, self.zone),)
        return found[:1]

    def after(self, t: float) -> float | None:
        """The first instant strictly after ``t``."""
        here = wall(t, self.zone)
        # Only near a transition can a later instant have an earlier wall time.
        near = _near_transition(t, self.zone)
        steps = croniter(self.expression, here - _SHIFT if near else here)
        best: float | None = None
        for _ in range(_MAX_CRON_STEPS):
            try:
                moment: datetime = steps.get_next(datetime)
            except CroniterBadDateError:
                return best
            later = [s for s in self._instants(moment) if s > t]
            if later and (best is None or later[0] < best):
                best = later[0]
            if best is not None and (not near or moment > here + _SHIFT):
                return best
        return best

    def before(self, t: float) -> float | None:
        """The last instant strictly before ``t``."""
        here = wall(t, self.zone)
        near = _near_transition(t, self.zone)
        steps = croniter(self.expression, here + _SHIFT if near else here)
        best: float | None = None
        for _ in range(_MAX_CRON_STEPS):
            try:
                moment: datetime = steps.get_prev(datetime)
            except CroniterBadDateError:
                return best
            earlier = [s for s in self._instants(moment) if s < t]
            if earlier and (best is None or earlier[-1] > best):
                best = earlier[-1]
            if best is not None and (not near or moment < here - _SHIFT):
                return best
        return best


# -- timing: a rule with its filters ------------------------------------------------------


@attrs.frozen(kw_only=True, eq=False)
class Timing:
    """A schedule's instants: those of ``rule`` inside ``window`` and not on ``not_on``."""

    rule: Rule
    zone: tzinfo = UTC
    window: Window | None = None
    #: Cron weekday numbers (0 = Sunday) on which nothing runs.
    not_on: frozenset[int] = frozenset()

    def allowed(self, t: float) -> bool:
        """Whether the filters let an instant through."""
        return self._leap_forward(t) is None

    def next_after(self, t: float) -> float | None:
        """The first instant strictly after ``t`` that passes the filters."""
        candidate = self.rule.after(t)
        for _ in range(_MAX_JUMPS):
            if candidate is None:
                return None
            resume = self._leap_forward(candidate)
            if resume is None:
                return candidate
            candidate = self.rule.after(max(resume - _RESOLUTION, candidate))
        return None

    def last_before(self, t: float) -> float | None:
        """The last instant strictly before ``t`` that passes the filters."""
        candidate = self.rule.before(t)
        for _ in range(_MAX_JUMPS):
            if candidate is None:
                return None
            resume = self._leap_back(candidate)
            if resume is None:
                return candidate
            candidate = self.rule.before(min(resume, candidate))
        return None

    def recent(self, *, after: float, upto: float, limit: int) -> tuple[tuple[float, ...], bool]:
        """The last ``limit`` instants in ``(after, upto]``, oldest first, and whether
        older ones in that span were left out.

        Searching backwards keeps this cheap however long the span: a daemon that
        was down for a month looks at ``limit`` instants, not a month of them.
        """
        found: list[float] = []
        candidate = self.last_before(upto + _RESOLUTION)
        while candidate is not None and candidate > after and len(found) <= limit:
            found.append(candidate)
            candidate = self.last_before(candidate)
        more = len(found) > limit
        return tuple(reversed(found[:limit])), more

    def _leap_forward(self, t: float) -> float | None:
        """None when ``t`` passes the filters, else an instant after ``t`` before which
        nothing can pass (the next midnight, or the next window opening)."""
        here = wall(t, self.zone)
        if (here.isoweekday() % 7) in self.not_on:
            midnight = datetime.combine(here.date() + timedelta(days=1), time())
            found = _first_at(midnight, self.zone, after=t)
            return t + 1.0 if found is None else found
        window = self.window
        if window is None or window.contains(here.time()):
            return None
        day = here.date()
        if not window.wraps and here.time() >= window.end:
            day += timedelta(days=1)
        opening = datetime.combine(day, window.start)
        found = _first_at(opening, self.zone, after=t)
        return t + 1.0 if found is None else found

    def _leap_back(self, t: float) -> float | None:
        """None when ``t`` passes the filters, else an instant at or before ``t`` after
        which nothing can pass (the midnight starting ``t``'s day, or the last
        window closing)."""
        here = wall(t, self.zone)
        if (here.isoweekday() % 7) in self.not_on:
            midnight = datetime.combine(here.date(), time())
            found = _last_at(midnight, self.zone, upto=t)
            return t - 1.0 if found is None else found
        window = self.window
        if window is None or window.contains(here.time()):
            return None
        day = here.date()
        if not window.wraps and here.time() < window.start:
            day -= timedelta(days=1)
        closing = datetime.combine(day, window.end)
        found = _last_at(closing, self.zone, upto=t)
        return t - 1.0 if found is None else found


def recurring(
    rule: Every | str,
    *,
    zone: tzinfo,
    window: Window | None = None,
    not_on: frozenset[int] = frozenset(),
) -> Timing:
    """The timing of an ``every`` (an :data:`Every`) or ``cron`` (an expression) schedule."""
    if isinstance(rule, Interval):
        return Timing(rule=rule, zone=zone, window=window, not_on=not_on)
    expression = rule.expression if isinstance(rule, Period) else rule
    return Timing(
        rule=Cron(expression=expression, zone=zone), zone=zone, window=window, not_on=not_on
    )


def jitter_offset(
    key: str, nominal: float, jitter: float, *, seed: str, room: float | None
) -> float:
    """How long after ``nominal`` this run starts: in ``[0, min(jitter, room))``.

    The offset is a function of ``seed``, the schedule and the instant, so it is
    reproducible (the same run gets the same delay after a restart) while
    schedules that share an instant spread out.  ``room`` is the time to the
    schedule's next instant: jitter never pushes a run past the next one.
    """
    if jitter <= 0:
        return 0.0
    span = jitter if room is None else max(0.0, min(jitter, room))
    return random.Random(f"{seed}|{key}|{nominal!r}").random() * span


def describe_days(days: Sequence[int]) -> str:
    """``not_on`` as the short names: ``sat, sun``."""
    return ", ".join(weekday_name(d) for d in sorted(days))
