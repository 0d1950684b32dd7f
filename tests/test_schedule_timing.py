"""When schedules fire: intervals, cron in time zones across DST, windows, weekdays, jitter.

Pure functions, no clock: every instant is built from a wall time in a named zone
and the answers are read back as wall times, so each expectation reads like the
documentation it checks.
"""

from __future__ import annotations

import itertools
from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from chamberlain.schedule.timing import (
    Interval,
    Once,
    Period,
    Timing,
    Window,
    jitter_offset,
    jump_instant,
    local_zone,
    parse_cron,
    parse_instant,
    parse_timezone,
    parse_weekday,
    parse_window,
    recurring,
)

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")


def at(zone: ZoneInfo, text: str, fold: int = 0) -> float:
    """The instant of a wall time (``2024-03-10 02:30``) in ``zone``."""
    return datetime.fromisoformat(text).replace(tzinfo=zone, fold=fold).timestamp()


def show(zone: ZoneInfo, t: float | None) -> str | None:
    """An instant as wall time with its offset: ``2024-03-10T03:00-04:00``."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, zone).isoformat(timespec="minutes")


def series(timing: Timing, start: float, count: int) -> list[float]:
    out: list[float] = []
    t = start
    for _ in range(count):
        nxt = timing.next_after(t)
        assert nxt is not None
        out.append(nxt)
        t = nxt
    return out


def cron(expression: str, zone: ZoneInfo, **filters: object) -> Timing:
    return recurring(expression, zone=zone, **filters)  # type: ignore[arg-type]


def between(timing: Timing, zone: ZoneInfo, start: str, end: str) -> list[str | None]:
    """Every fire from ``start`` (excluded) to ``end`` (included), as wall times."""
    stop = at(zone, end)
    out: list[str | None] = []
    t = at(zone, start)
    while True:
        nxt = timing.next_after(t)
        if nxt is None or nxt > stop:
            return out
        out.append(show(zone, nxt))
        t = nxt


# -- every: elapsed-time intervals ------------------------------------------------------------


def test_an_interval_fires_on_whole_multiples_since_the_epoch() -> None:
    five = Timing(rule=Interval(300.0))
    start = at(UTC, "2024-05-01 10:02:17")
    assert [show(UTC, t) for t in series(five, start, 3)] == [
        "2024-05-01T10:05+00:00",
        "2024-05-01T10:10+00:00",
        "2024-05-01T10:15+00:00",
    ]
    # Strictly after and strictly before an instant that is itself a fire.
    on = at(UTC, "2024-05-01 10:05")
    assert five.next_after(on) == on + 300
    assert five.last_before(on) == on - 300


def test_an_interval_counts_elapsed_time_through_a_dst_change() -> None:
    hourly = Timing(rule=Interval(3600.0), zone=NEW_YORK)
    fires = series(hourly, at(NEW_YORK, "2024-11-03 00:30"), 4)
    # Wall time repeats 01:00-02:00; an interval runs through both, an hour apart.
    assert [show(NEW_YORK, t) for t in fires] == [
        "2024-11-03T01:00-04:00",
        "2024-11-03T01:00-05:00",
        "2024-11-03T02:00-05:00",
        "2024-11-03T03:00-05:00",
    ]


def test_named_periods_are_cron_expressions_on_the_wall_clock() -> None:
    assert Period("hourly").expression == "0 * * * *"
    assert Period("daily").expression == "0 0 * * *"
    weekly = recurring(Period("weekly"), zone=BERLIN)
    # Mondays at midnight, as in ISO 8601 and systemd.
    assert show(BERLIN, weekly.next_after(at(BERLIN, "2024-05-01 12:00"))) == (
        "2024-05-06T00:00+02:00"
    )
    monthly = recurring(Period("monthly"), zone=BERLIN)
    assert show(BERLIN, monthly.next_after(at(BERLIN, "2024-05-01 00:00"))) == (
        "2024-06-01T00:00+02:00"
    )


# -- cron in a time zone, across DST ----------------------------------------------------------


def test_cron_reads_the_wall_clock_of_its_zone() -> None:
    nine = cron("0 9 * * 1-5", BERLIN)
    # Friday evening -> Monday 09:00 local, in summer time.
    assert show(BERLIN, nine.next_after(at(BERLIN, "2024-05-03 18:00"))) == (
        "2024-05-06T09:00+02:00"
    )
    # ... and in winter time the same wall time is another UTC instant.
    assert show(UTC, nine.next_after(at(BERLIN, "2024-01-05 18:00"))) == "2024-01-08T08:00+00:00"


def test_new_york_spring_forward_a_skipped_daily_time_runs_at_the_jump() -> None:
    daily = cron("30 2 * * *", NEW_YORK)
    assert between(daily, NEW_YORK, "2024-03-09 12:00", "2024-03-11 12:00") == [
        "2024-03-10T03:00-04:00",  # 02:30 does not exist that night: runs as the clocks jump
        "2024-03-11T02:30-04:00",
    ]


def test_new_york_spring_forward_skipped_times_coalesce_into_one_run() -> None:
    halves = cron("*/30 1-3 * * *", NEW_YORK)
    assert between(halves, NEW_YORK, "2024-03-10 00:00", "2024-03-10 04:00") == [
        "2024-03-10T01:00-05:00",
        "2024-03-10T01:30-05:00",
        "2024-03-10T03:00-04:00",  # 02:00, 02:30 and 03:00 are one run
        "2024-03-10T03:30-04:00",
    ]


def test_new_york_fall_back_a_repeated_daily_time_runs_once() -> None:
    daily = cron("30 1 * * *", NEW_YORK)
    assert between(daily, NEW_YORK, "2024-11-02 12:00", "2024-11-04 12:00") == [
        "2024-11-03T01:30-04:00",  # the first 01:30 only
        "2024-11-04T01:30-05:00",
    ]


def test_hourly_keeps_real_time_cadence_across_both_changes() -> None:
    hourly = recurring(Period("hourly"), zone=NEW_YORK)
    spring = between(hourly, NEW_YORK, "2024-03-10 00:00", "2024-03-11 00:00")
    fall = between(hourly, NEW_YORK, "2024-11-03 00:00", "2024-11-04 00:00")
    assert len(spring) == 23
    assert len(fall) == 25
    assert fall[:4] == [
        "2024-11-03T01:00-04:00",
        "2024-11-03T01:00-05:00",  # the repeated hour runs again
        "2024-11-03T02:00-05:00",
        "2024-11-03T03:00-05:00",
    ]
    assert spring[:3] == [
        "2024-03-10T01:00-05:00",
        "2024-03-10T03:00-04:00",
        "2024-03-10T04:00-04:00",
    ]


def test_berlin_spring_forward_and_fall_back() -> None:
    daily = cron("30 2 * * *", BERLIN)
    assert between(daily, BERLIN, "2024-03-30 12:00", "2024-04-01 12:00") == [
        "2024-03-31T03:00+02:00",
        "2024-04-01T02:30+02:00",
    ]
    assert between(daily, BERLIN, "2024-10-26 12:00", "2024-10-28 12:00") == [
        "2024-10-27T02:30+02:00",
        "2024-10-28T02:30+01:00",
    ]
    quarter = cron("*/15 * * * *", BERLIN)
    fall = between(quarter, BERLIN, "2024-10-27 01:50", "2024-10-27 03:10")
    # Every quarter of the repeated hour, twice: 4 + 4 + the 03:00 and the rest.
    assert fall.count("2024-10-27T02:15+02:00") == 1
    assert fall.count("2024-10-27T02:15+01:00") == 1
    times = [datetime.fromisoformat(f).timestamp() for f in fall if f]
    assert {b - a for a, b in itertools.pairwise(times)} == {900.0}


@pytest.mark.parametrize(
    ("expression", "zone", "start"),
    [
        ("30 2 * * *", NEW_YORK, "2024-03-08 00:00"),
        ("*/20 * * * *", NEW_YORK, "2024-03-10 00:10"),
        ("*/20 * * * *", NEW_YORK, "2024-11-03 00:10"),
        ("0 1-3 * * *", NEW_YORK, "2024-11-02 00:00"),
        ("45 2 * * *", BERLIN, "2024-10-25 00:00"),
        ("0 * * * *", BERLIN, "2024-03-30 20:00"),
    ],
)
def test_searching_back_finds_exactly_the_fires_searching_forward_found(
    expression: str, zone: ZoneInfo, start: str
) -> None:
    timing = cron(expression, zone)
    forward = series(timing, at(zone, start), 40)
    backward: list[float] = []
    t = forward[-1] + 1
    for _ in forward:
        found = timing.last_before(t)
        assert found is not None
        backward.append(found)
        t = found
    assert backward[::-1] == forward


def test_jump_instant_is_where_the_clocks_jump() -> None:
    assert show(NEW_YORK, jump_instant(datetime(2024, 3, 10, 2, 30), NEW_YORK)) == (
        "2024-03-10T03:00-04:00"
    )


# -- windows and weekdays ---------------------------------------------------------------------


def test_only_between_keeps_fires_from_start_up_to_but_not_including_end() -> None:
    office = recurring(Interval(1800.0), zone=BERLIN, window=parse_window("09:00-10:30"))
    assert between(office, BERLIN, "2024-05-02 08:00", "2024-05-03 09:40") == [
        "2024-05-02T09:00+02:00",
        "2024-05-02T09:30+02:00",
        "2024-05-02T10:00+02:00",
        "2024-05-03T09:00+02:00",
        "2024-05-03T09:30+02:00",
    ]


def test_a_window_may_wrap_past_midnight() -> None:
    night = recurring(Period("hourly"), zone=BERLIN, window=parse_window("22:00-02:00"))
    assert between(night, BERLIN, "2024-05-02 12:00", "2024-05-03 12:00") == [
        "2024-05-02T22:00+02:00",
        "2024-05-02T23:00+02:00",
        "2024-05-03T00:00+02:00",
        "2024-05-03T01:00+02:00",
    ]
    assert night.allowed(at(BERLIN, "2024-05-03 01:59"))
    assert not night.allowed(at(BERLIN, "2024-05-03 02:00"))


def test_not_on_skips_whole_days_in_the_schedule_zone() -> None:
    weekdays = recurring(
        Period("daily"),
        zone=NEW_YORK,
        not_on=frozenset({parse_weekday("sat"), parse_weekday("Sunday")}),
    )
    # Friday 2024-05-03 -> Monday.
    assert show(NEW_YORK, weekdays.next_after(at(NEW_YORK, "2024-05-03 12:00"))) == (
        "2024-05-06T00:00-04:00"
    )
    assert show(NEW_YORK, weekdays.last_before(at(NEW_YORK, "2024-05-06 00:00"))) == (
        "2024-05-03T00:00-04:00"
    )


def test_windows_and_weekdays_are_jumped_over_not_stepped_through() -> None:
    # An every-second schedule limited to one hour on weekdays: reaching Monday
    # morning from Friday evening must not step through 60 hours of seconds.
    tight = recurring(
        Interval(1.0),
        zone=BERLIN,
        window=parse_window("09:00-10:00"),
        not_on=frozenset({0, 6}),
    )
    calls = 0
    rule = tight.rule

    class Counting:
        def after(self, t: float) -> float | None:
            nonlocal calls
            calls += 1
            return rule.after(t)

        def before(self, t: float) -> float | None:
            nonlocal calls
            calls += 1
            return rule.before(t)

    counted = Timing(rule=Counting(), zone=BERLIN, window=tight.window, not_on=tight.not_on)
    found = counted.next_after(at(BERLIN, "2024-05-03 18:00"))
    assert show(BERLIN, found) == "2024-05-06T09:00+02:00"
    assert calls < 10


def test_a_cron_that_never_meets_its_window_never_fires() -> None:
    never = cron("0 3 * * *", BERLIN, window=parse_window("09:00-17:00"))
    assert never.next_after(at(BERLIN, "2024-05-01 00:00")) is None


def test_recent_lists_the_latest_fires_oldest_first_and_says_when_there_were_more() -> None:
    minutes = Timing(rule=Interval(60.0))
    start, end = at(UTC, "2024-05-01 00:00"), at(UTC, "2024-05-08 00:00")
    found, more = minutes.recent(after=start, upto=end, limit=3)
    assert [show(UTC, t) for t in found] == [
        "2024-05-07T23:58+00:00",
        "2024-05-07T23:59+00:00",
        "2024-05-08T00:00+00:00",  # upto is included
    ]
    assert more
    found, more = minutes.recent(after=end - 120, upto=end, limit=3)
    assert len(found) == 2
    assert not more


def test_a_one_shot_fires_once() -> None:
    once = Timing(rule=Once(at(UTC, "2025-06-01 09:00")))
    assert once.next_after(at(UTC, "2025-06-01 08:00")) == at(UTC, "2025-06-01 09:00")
    assert once.next_after(at(UTC, "2025-06-01 09:00")) is None
    assert once.last_before(at(UTC, "2025-06-01 09:00")) is None


# -- jitter ---------------------------------------------------------------------------------


def test_jitter_is_bounded_and_reproducible() -> None:
    nominal = at(UTC, "2024-05-01 10:00")
    offsets = [
        jitter_offset(f"echo/s{i}", nominal, 30.0, seed="daemon", room=None) for i in range(200)
    ]
    assert all(0.0 <= o < 30.0 for o in offsets)
    # Spread out: schedules sharing an instant do not all start together.
    assert max(offsets) - min(offsets) > 20.0
    again = [
        jitter_offset(f"echo/s{i}", nominal, 30.0, seed="daemon", room=None) for i in range(200)
    ]
    assert again == offsets
    other_seed = [
        jitter_offset(f"echo/s{i}", nominal, 30.0, seed="other", room=None) for i in range(200)
    ]
    assert other_seed != offsets


def test_jitter_never_reaches_the_next_fire() -> None:
    nominal = at(UTC, "2024-05-01 10:00")
    for i in range(100):
        offset = jitter_offset(f"k{i}", nominal, 600.0, seed="s", room=45.0)
        assert 0.0 <= offset < 45.0
    assert jitter_offset("k", nominal, 0.0, seed="s", room=None) == 0.0


# -- parsing --------------------------------------------------------------------------------


def test_parse_window() -> None:
    assert parse_window("9:00 - 17:30") == Window(start=time(9), end=time(17, 30))
    assert str(parse_window("22:00-06:00")) == "22:00-06:00"
    for bad in ("9-17", "24:00-01:00", "10:00-10:00", "10:60-11:00", 900):
        with pytest.raises(ValueError, match=r"HH:MM|time of day|empty"):
            parse_window(bad)


def test_parse_weekday() -> None:
    assert [parse_weekday(d) for d in ("sun", "Mon", "tuesday", 3, "4", "fri", "SAT")] == [
        0,
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    for bad in (7, -1, "mo", "someday", True, 1.5):
        with pytest.raises(ValueError, match="weekday"):
            parse_weekday(bad)


def test_parse_cron() -> None:
    assert parse_cron("  */5   *  * * 1-5 ") == "*/5 * * * 1-5"
    with pytest.raises(ValueError, match="five fields"):
        parse_cron("* * * * * *")
    with pytest.raises(ValueError, match="five fields"):
        parse_cron("@daily")
    with pytest.raises(ValueError, match="invalid cron expression"):
        parse_cron("61 * * * *")
    with pytest.raises(ValueError, match="never run"):
        parse_cron("0 0 30 2 *")


def test_parse_timezone_suggests_a_close_name() -> None:
    assert parse_timezone("Europe/Berlin") == "Europe/Berlin"
    with pytest.raises(ValueError, match="did you mean 'Europe/Berlin'"):
        parse_timezone("Europe/Berln")


def test_parse_instant() -> None:
    assert parse_instant("2025-06-01T09:00:00Z") == datetime.fromisoformat(
        "2025-06-01T09:00:00+00:00"
    )
    assert parse_instant("2025-06-01 09:00").tzinfo is None
    for bad in ("2025-06-01", "tomorrow", 12):
        with pytest.raises(ValueError, match="date and time"):
            parse_instant(bad)


def test_local_zone_follows_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    zone, name = local_zone()
    assert name == "Asia/Kolkata"
    assert (
        datetime(2024, 1, 1, tzinfo=zone).utcoffset()
        == datetime(2024, 1, 1, tzinfo=ZoneInfo("Asia/Kolkata")).utcoffset()
    )
