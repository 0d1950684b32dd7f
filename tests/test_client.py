"""The client's decisions without a daemon: where it connects, what a payload is,
what each ending exits with."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from chamberlain.cli import build_parser
from chamberlain.client import (
    DEFAULT_URL,
    ClientError,
    Connection,
    ConnectionError,
    ExitCode,
    exit_for_status,
    profile_path,
    resolve,
)
from chamberlain.client._commands import _Output, parse_payload


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("succeeded", 0),
        ("failed", 1),
        ("dead", 1),
        ("timed_out", 3),
        ("cancelled", 4),
        ("running", 3),
        ("queued", 3),
    ],
)
def test_a_job_s_ending_is_its_exit_code(status: str, code: int) -> None:
    assert exit_for_status(status) == code


def write_profiles(home: Path, text: str, mode: int = 0o600) -> Path:
    path = profile_path({"HOME": str(home)})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_command_line_then_the_environment_then_a_profile_then_the_default(
    tmp_path: Path,
) -> None:
    env = {"HOME": str(tmp_path)}
    assert resolve(url=None, token=None, profile=None, config=None, environ=env) == Connection(
        url=DEFAULT_URL, token=None, source="default", token_source="none"
    )
    write_profiles(tmp_path, '[default]\nurl = "http://profile:1"\ntoken = "p-token"\n')
    found = resolve(url=None, token=None, profile=None, config=None, environ=env)
    assert (found.url, found.token, found.source) == (
        "http://profile:1",
        "p-token",
        "profile default",
    )
    env |= {"CHAMBERLAIN_URL": "http://env:2/", "CHAMBERLAIN_TOKEN": "e-token"}
    found = resolve(url=None, token=None, profile=None, config=None, environ=env)
    assert (found.url, found.token, found.token_source) == (
        "http://env:2",
        "e-token",
        "the environment",
    )
    found = resolve(url="http://flag:3", token=None, profile=None, config=None, environ=env)
    # Each is taken where it is first given: the URL from the flag, the token from the environment.
    assert (found.url, found.token) == ("http://flag:3", "e-token")
    assert "e-token" not in repr(found)


def test_a_daemon_s_config_gives_its_listen_address_and_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "api:\n  listen: 0.0.0.0:9191\n  auth:\n    api_key: config-key\nplugin_roots: []\n"
    )
    found = resolve(
        url=None, token=None, profile=None, config=str(config), environ={"HOME": str(tmp_path)}
    )
    assert (found.url, found.token) == ("http://127.0.0.1:9191", "config-key")
    config.write_text("api:\n  listen: '[::]:9192'\nplugin_roots: []\n")
    found = resolve(
        url=None, token=None, profile=None, config=str(config), environ={"HOME": str(tmp_path)}
    )
    assert (found.url, found.token) == ("http://[::1]:9192", None)


@pytest.mark.parametrize(
    ("text", "mode", "said"),
    [
        ('[default]\ntoken = "t"\n', 0o640, "open to others (mode 0640); run: chmod 600"),
        ("[default\n", 0o600, "not TOML"),
        ('[default]\nuser = "me"\n', 0o600, "default.user: unknown key; expected url or token"),
        ("[default]\nurl = 3\n", 0o600, "default.url must be a non-empty string"),
        ('default = "x"\n', 0o600, "default must be a table of url and token"),
    ],
)
def test_a_bad_profile_file_is_named_with_what_is_wrong(
    tmp_path: Path, text: str, mode: int, said: str
) -> None:
    path = write_profiles(tmp_path, text, mode)
    with pytest.raises(ConnectionError) as info:
        resolve(url=None, token=None, profile=None, config=None, environ={"HOME": str(tmp_path)})
    assert str(info.value).startswith(str(path)) and said in str(info.value)


def test_a_profile_without_a_token_may_be_read_by_others(tmp_path: Path) -> None:
    write_profiles(tmp_path, '[default]\nurl = "http://shared:1"\n', 0o644)
    found = resolve(
        url=None, token=None, profile=None, config=None, environ={"HOME": str(tmp_path)}
    )
    assert (found.url, found.token) == ("http://shared:1", None)


def test_a_named_profile_must_exist(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "CHAMBERLAIN_PROFILE": "work"}
    with pytest.raises(ConnectionError, match="no such file, so no profile 'work'"):
        resolve(url=None, token=None, profile=None, config=None, environ=env)


@pytest.mark.parametrize(
    ("pairs", "payload", "expected"),
    [
        (
            ["path=/home", "keep:=7", "tags:=[1, 2]", "eq=a=b"],
            None,
            {"path": "/home", "keep": 7, "tags": [1, 2], "eq": "a=b"},
        ),
        (["url=http://x/?a:=b"], None, {"url": "http://x/?a:=b"}),
        ([], '{"a": {"b": null}}', {"a": {"b": None}}),
        ([], None, {}),
    ],
)
def test_a_payload_from_pairs_or_json(
    pairs: list[str], payload: str | None, expected: object
) -> None:
    assert parse_payload(pairs, payload) == expected


def test_a_bad_payload_is_a_usage_error() -> None:
    with pytest.raises(ClientError) as info:
        parse_payload(["=x"], None)
    assert info.value.code is ExitCode.USAGE


def test_what_a_job_said_is_shown_as_it_is_never_as_markup() -> None:
    shown = io.StringIO()
    out = _Output(argparse.Namespace(), shown, io.StringIO())
    out.fields({"job_id": "j1", "last_error": "[red]disk[/red] full"}, ("job_id", "last_error"))
    out.table([{"job_id": "j2", "last_error": "[bold]x"}], ("job_id", "last_error"))
    text = shown.getvalue()
    assert "[red]disk[/red] full" in text and "[bold]x" in text


@pytest.mark.parametrize("limit", ["0", "501", "ten"])
def test_a_page_size_the_api_would_refuse_is_a_usage_error(
    limit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["jobs", "--limit", limit])
    assert info.value.code == ExitCode.USAGE
    assert "argument --limit: " in capsys.readouterr().err


def test_a_daemon_config_that_does_not_load_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("api:\n  listen: nowhere\n")
    with pytest.raises(ConnectionError) as info:
        resolve(url=None, token=None, profile=None, config=str(config), environ={})
    assert str(info.value).startswith("--config: ") and "api.listen" in str(info.value)
