"""The plugin environment: which daemon variables pass, and the config that adds to them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chamberlain.config import ConfigError, parse_config
from chamberlain.plugins.environment import check_variable_name, inherits, job_environment

DAEMON = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/var/lib/chamberlain",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "LC_TIME": "en_GB.UTF-8",
    "TZ": "Europe/London",
    "TMPDIR": "/tmp/c",
    "USER": "chamberlain",
    "CHAMBERLAIN_API_KEY": "admin-key",
    "SECRET_THING": "s3cret",
    "NOTIFY_SOCKET": "/run/systemd/notify",
    "AWS_SECRET_ACCESS_KEY": "aws",
    "LCX": "not a locale variable",
    "GITHUB_TOKEN": "ghp",
}


def test_only_the_allow_list_and_locale_variables_are_inherited() -> None:
    passed = {name for name in DAEMON if inherits(name)}
    assert passed == {"PATH", "HOME", "LANG", "LC_ALL", "LC_TIME", "TZ", "TMPDIR", "USER"}


def test_passthrough_lets_named_variables_through_and_no_others() -> None:
    assert inherits("GITHUB_TOKEN", ("GITHUB_TOKEN",))
    assert not inherits("SECRET_THING", ("GITHUB_TOKEN",))


def test_a_job_environment_holds_the_allow_list_and_the_job_variables() -> None:
    env = job_environment("job-1", "echo", environ=DAEMON)
    assert env == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/var/lib/chamberlain",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "LC_TIME": "en_GB.UTF-8",
        "TZ": "Europe/London",
        "TMPDIR": "/tmp/c",
        "USER": "chamberlain",
        "CHAMBERLAIN_JOB_ID": "job-1",
        "CHAMBERLAIN_PLUGIN": "echo",
    }


def test_env_wins_over_inherited_and_passed_values_and_job_variables_win_over_all() -> None:
    env = job_environment(
        "job-1",
        "echo",
        env={"TZ": "UTC", "GITHUB_TOKEN": "from-config", "EXTRA": "x", "CHAMBERLAIN_JOB_ID": "x"},
        passthrough=("GITHUB_TOKEN", "SECRET_THING", "UNSET"),
        environ=DAEMON,
    )
    assert env["TZ"] == "UTC"
    assert env["GITHUB_TOKEN"] == "from-config"
    assert env["SECRET_THING"] == "s3cret"
    assert env["EXTRA"] == "x"
    assert "UNSET" not in env
    assert env["CHAMBERLAIN_JOB_ID"] == "job-1"
    assert "CHAMBERLAIN_API_KEY" not in env


def test_the_default_is_this_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_THING", "s3cret")
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    env = job_environment("j", "p")
    assert env["TZ"] == "Asia/Tokyo"
    assert "SECRET_THING" not in env


@pytest.mark.parametrize("name", ["A", "_x", "GITHUB_TOKEN", "lower_9"])
def test_portable_names_are_valid(name: str) -> None:
    assert check_variable_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("9LIVES", "invalid environment variable name '9LIVES'"),
        ("A-B", "invalid environment variable name 'A-B'"),
        ("A=B", "invalid environment variable name 'A=B'"),
        ("", "invalid environment variable name ''"),
        ("CHAMBERLAIN_JOB_ID", "CHAMBERLAIN_JOB_ID: CHAMBERLAIN_* variables are reserved"),
        ("CHAMBERLAIN_API_KEY", "CHAMBERLAIN_API_KEY: CHAMBERLAIN_* variables are reserved"),
    ],
)
def test_bad_and_reserved_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        check_variable_name(name)


def parse(plugin: dict[str, Any], environ: dict[str, str] | None = None) -> Any:
    config = parse_config({"plugins": {"p": plugin}}, base_dir=Path("/cfg"), environ=environ or {})
    return config.plugins["p"]


def problems(plugin: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse(plugin)
    return info.value.problems


def test_env_and_env_passthrough_are_read_from_the_plugin_entry() -> None:
    plugin = parse(
        {"env": {"GREETING": "hi", "TOKEN": "${T}", "EMPTY": ""}, "env_passthrough": ["A", "B"]},
        environ={"T": "t-1"},
    )
    assert dict(plugin.env) == {"GREETING": "hi", "TOKEN": "t-1", "EMPTY": ""}
    assert plugin.env_passthrough == ("A", "B")


def test_env_and_env_passthrough_default_to_nothing() -> None:
    plugin = parse({})
    assert dict(plugin.env) == {}
    assert plugin.env_passthrough == ()


@pytest.mark.parametrize(
    ("plugin", "expected"),
    [
        ({"env": ["A"]}, "plugins.p.env: expected a mapping, got a list"),
        ({"env": {"A": 1}}, "plugins.p.env.A: expected a string, got 1"),
        (
            {"env": {"1A": "x"}},
            "plugins.p.env.1A: invalid environment variable name '1A': use letters, digits"
            " and '_', not starting with a digit",
        ),
        (
            {"env": {"CHAMBERLAIN_PLUGIN": "x"}},
            "plugins.p.env.CHAMBERLAIN_PLUGIN: CHAMBERLAIN_PLUGIN: CHAMBERLAIN_* variables are"
            " reserved for the daemon",
        ),
        ({"env_passthrough": "A"}, "plugins.p.env_passthrough: expected a list, got 'A'"),
        ({"env_passthrough": [3]}, "plugins.p.env_passthrough[0]: expected a string, got 3"),
        (
            {"env_passthrough": ["OK", "A B"]},
            "plugins.p.env_passthrough[1]: invalid environment variable name 'A B': use"
            " letters, digits and '_', not starting with a digit",
        ),
    ],
)
def test_bad_entries_are_reported_with_their_yaml_path(
    plugin: dict[str, Any], expected: str
) -> None:
    assert problems(plugin) == (expected,)
