"""``plugins.<name>.schedules`` and ``circuit_breaker``: every problem named by its YAML path."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import pytest
from fakes import fake_plugin

from chamberlain.config import ConfigError, load_config, parse_config
from chamberlain.plugins.binding import bind_plugins
from chamberlain.plugins.registry import Discovery
from chamberlain.schedule.plan import build_plans
from chamberlain.schedule.policy import CatchUp, IfRunning
from chamberlain.schedule.timing import Interval, Period, Window


def schedules(*items: Mapping[str, Any], **plugin: Any) -> dict[str, Any]:
    return {"plugins": {"echo": {"schedules": list(items), **plugin}}}


def problems(data: object) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=Path("/cfg"), environ={})
    return info.value.problems


def test_defaults_and_every_key(tmp_path: Path) -> None:
    cfg = parse_config(
        schedules(
            {"every": "5m"},
            {
                "id": "office",
                "command": "handle",
                "payload": {"n": 1},
                "cron": "0 9 * * 1-5",
                "jitter": "30s",
                "timezone": "Europe/Berlin",
                "only_between": "08:00-18:00",
                "not_on": ["sat", 0],
                "catch_up": "run_all",
                "if_running": "queue",
                "max_outstanding": 2,
            },
            circuit_breaker={"threshold": 5, "reset_after": "10m"},
        ),
        base_dir=tmp_path,
    )
    plugin = cfg.plugins["echo"]
    default, office = plugin.schedules
    assert (default.id, default.command, default.payload) == ("default", "poll", {})
    assert default.every == Interval(300.0)
    assert (default.catch_up, default.if_running, default.max_outstanding) == (
        CatchUp.SKIP,
        IfRunning.SKIP,
        1,
    )
    assert default.timezone is None  # the system's zone
    assert (default.kind, default.spec) == ("every", "5m")
    assert office.cron == "0 9 * * 1-5"
    assert office.only_between == Window(start=time(8), end=time(18))
    assert office.not_on == (6, 0)
    assert office.jitter == 30.0
    assert (office.catch_up, office.if_running, office.max_outstanding) == (
        CatchUp.RUN_ALL,
        IfRunning.QUEUE,
        2,
    )
    assert (plugin.circuit_breaker.threshold, plugin.circuit_breaker.reset_after) == (5, 600.0)
    assert plugin.circuit_breaker.enabled


def test_breaker_defaults() -> None:
    cb = parse_config({"plugins": {"echo": {}}}, base_dir=Path("/cfg")).plugins["echo"]
    assert (cb.circuit_breaker.threshold, cb.circuit_breaker.reset_after) == (3, 1800.0)


@pytest.mark.parametrize(
    ("every", "expected"),
    [("hourly", Period("hourly")), ("Daily", Period("daily")), (90, Interval(90.0))],
)
def test_every_takes_periods_and_durations(every: object, expected: object) -> None:
    cfg = parse_config(schedules({"every": every}), base_dir=Path("/cfg"))
    assert cfg.plugins["echo"].schedules[0].every == expected


def test_exactly_one_timing_key_is_required_and_the_path_says_which_schedule() -> None:
    assert problems(schedules({"every": "1m"}, {"command": "poll", "id": "x"})) == (
        "plugins.echo.schedules[1]: exactly one of every, cron, at, after is required",
    )
    assert problems(schedules({"every": "1m", "cron": "* * * * *"})) == (
        "plugins.echo.schedules[0]: exactly one of every, cron, at, after is required;"
        " got every and cron",
    )


def test_every_value_problem_is_reported_at_once() -> None:
    found = problems(
        schedules(
            {
                "cron": "* * * *",
                "timezone": "Mars/Olympus",
                "only_between": "9-17",
                "not_on": ["someday", 8],
                "jitter": "soon",
                "catch_up": "all",
                "if_running": "wait",
                "max_outstanding": 0,
                "every_": 1,
            },
            {"every": "500ms", "id": "fast"},
            {"at": "tomorrow", "id": "when"},
        )
    )
    text = "\n".join(found)
    for path in (
        "plugins.echo.schedules[0].cron: a standard cron expression has five fields",
        "plugins.echo.schedules[0].timezone: unknown time zone 'Mars/Olympus'",
        'plugins.echo.schedules[0].only_between: expected "HH:MM-HH:MM"',
        "plugins.echo.schedules[0].not_on[0]: expected a weekday name",
        "plugins.echo.schedules[0].not_on[1]: weekday numbers run from 0 (Sunday) to 6",
        "plugins.echo.schedules[0].jitter: invalid duration 'soon'",
        "plugins.echo.schedules[0].catch_up: expected one of: skip, run_once, run_all; got 'all'",
        "plugins.echo.schedules[0].if_running: expected one of: skip, queue, cancel; got 'wait'",
        "plugins.echo.schedules[0].max_outstanding: must be at least 1",
        "plugins.echo.schedules[0].every_: unknown key (did you mean 'every'?)",
        "plugins.echo.schedules[1].every: must be at least 1s",
        "plugins.echo.schedules[2].at: expected a date and time",
    ):
        assert path in text, (path, found)


def test_schedule_ids_are_unique_per_plugin() -> None:
    assert problems(schedules({"every": "1m"}, {"every": "2m"})) == (
        "plugins.echo.schedules[1].id: duplicate schedule id 'default' (also schedules[0]);"
        " give each schedule of a plugin its own id",
    )
    # The same id under two plugins is fine.
    parse_config(
        {
            "plugins": {
                "a": {"schedules": [{"every": "1m"}]},
                "b": {"schedules": [{"every": "1m"}]},
            }
        },
        base_dir=Path("/cfg"),
    )


def test_windows_and_weekdays_belong_to_recurring_schedules() -> None:
    assert problems(schedules({"at": "2030-01-01 09:00", "only_between": "08:00-10:00"})) == (
        "plugins.echo.schedules[0].only_between: applies to recurring schedules (every, cron),"
        " not to at",
    )
    assert problems(schedules({"after": "10s", "not_on": ["sun"]})) == (
        "plugins.echo.schedules[0].not_on: applies to recurring schedules (every, cron),"
        " not to after",
    )


def test_a_schedule_that_can_never_run_is_refused() -> None:
    assert problems(schedules({"every": "1h", "not_on": list(range(7))})) == (
        "plugins.echo.schedules[0].not_on: excludes every day of the week, so it would never run",
    )
    (found,) = problems(schedules({"cron": "0 3 * * *", "only_between": "09:00-17:00"}))
    assert found.startswith("plugins.echo.schedules[0]: never runs")
    assert problems(schedules({"cron": "0 0 31 2 *"})) == (
        "plugins.echo.schedules[0].cron: '0 0 31 2 *' matches no date, so it would never run",
    )


def test_jitter_must_be_shorter_than_the_interval() -> None:
    assert problems(schedules({"every": "1m", "jitter": "1m"})) == (
        "plugins.echo.schedules[0].jitter: must be shorter than the interval (1m)",
    )


def test_circuit_breaker_errors_name_their_path() -> None:
    assert problems(
        {"plugins": {"echo": {"circuit_breaker": {"threshold": 0, "reset_after": 0, "x": 1}}}}
    ) == (
        "plugins.echo.circuit_breaker.threshold: must be at least 1, got 0",
        "plugins.echo.circuit_breaker.reset_after: must be longer than zero, got 0",
        "plugins.echo.circuit_breaker.x: unknown key (expected one of: enabled, reset_after,"
        " threshold)",
    )


def test_yaml_timestamps_and_naive_times_in_the_schedule_zone(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "plugin_roots: []\n"
        "plugins:\n"
        "  echo:\n"
        "    schedules:\n"
        "      - {id: utc, at: 2030-06-01T09:00:00Z}\n"
        "      - {id: local, at: '2030-06-01 09:00', timezone: America/New_York}\n",
        encoding="utf-8",
    )
    cfg = load_config(path)
    utc, local = cfg.plugins["echo"].schedules
    assert local.at == datetime(2030, 6, 1, 9)  # naive: read in its timezone
    assert utc.at == datetime(2030, 6, 1, 9, tzinfo=UTC)
    manifest = fake_plugin(tmp_path, "echo")
    plugins = bind_plugins(cfg, Discovery(plugins={"echo": manifest}, skipped=()))
    plans = {p.id: p for p in build_plans(plugins)}
    assert (
        plans["utc"].timing(0.0).next_after(0.0) == datetime(2030, 6, 1, 9, tzinfo=UTC).timestamp()
    )
    # 09:00 in New York in June is 13:00 UTC.
    assert plans["local"].timing(0.0).next_after(0.0) == (
        datetime(2030, 6, 1, 13, tzinfo=UTC).timestamp()
    )


def test_a_schedule_must_name_a_command_its_plugin_declares(tmp_path: Path) -> None:
    cfg = parse_config(
        schedules({"every": "1m"}, {"id": "typo", "every": "1m", "command": "pol"}),
        base_dir=tmp_path,
    )
    manifest = fake_plugin(tmp_path, "echo")
    with pytest.raises(ConfigError) as info:
        bind_plugins(cfg, Discovery(plugins={"echo": manifest}, skipped=()))
    assert info.value.problems == (
        "plugins.echo.schedules[1].command: plugin 'echo' has no command 'pol'"
        " (it has: poll, handle)",
    )


def test_after_counts_from_the_start(tmp_path: Path) -> None:
    cfg = parse_config(schedules({"after": "90s"}), base_dir=tmp_path)
    manifest = fake_plugin(tmp_path, "echo")
    (plan,) = build_plans(bind_plugins(cfg, Discovery(plugins={"echo": manifest}, skipped=())))
    assert plan.config.spec == "1m30s"
    assert plan.timing(1000.0).next_after(0.0) == 1090.0
