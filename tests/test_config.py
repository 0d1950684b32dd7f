"""Tests for chamberlain.config: the messages here are the ones users read."""

import json
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from chamberlain.config import (
    IN_MEMORY,
    VALID_SCOPES,
    ApiConfig,
    Config,
    ConfigError,
    PluginConfig,
    RetryConfig,
    ServiceConfig,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE = Path("/srv/chamberlain")


def parse(data: object, env: Mapping[str, str] | None = None) -> Config:
    return parse_config(data, base_dir=BASE, environ=env or {})


def problems(data: object, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse(data, env)
    return info.value.problems


def problem(data: object, env: Mapping[str, str] | None = None) -> str:
    found = problems(data, env)
    assert len(found) == 1, found
    return found[0]


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def token(name: str = "t", value: object = "secret", scopes: object = None) -> dict[str, Any]:
    return {"name": name, "token": value, "scopes": ["jobs:ro"] if scopes is None else scopes}


# ----------------------------------------------------------------------- defaults


@pytest.mark.parametrize("data", [None, {}])
def test_empty_document_gives_all_defaults(data: object) -> None:
    config = parse(data)
    assert config.service == ServiceConfig()
    assert config.service.name == "chamberlain"
    assert config.service.shutdown_grace == 10.0
    assert config.service.dedupe_ttl == 86400.0
    assert config.service.job_retention == 30 * 86400.0
    assert config.state.path == BASE / "data" / "state.db"
    assert config.plugin_roots == (BASE / "plugins",)
    assert config.api == ApiConfig()
    assert config.api.enabled is True
    assert config.api.listen == "127.0.0.1:8080"
    assert (config.api.host, config.api.port) == ("127.0.0.1", 8080)
    assert config.api.max_body_size == 1024 * 1024
    assert config.api.request_timeout == 5.0
    assert config.api.auth.api_key is None
    assert config.api.auth.tokens == ()
    assert dict(config.plugins) == {}
    assert config.source is None
    assert config.base_dir == BASE


def test_default_max_workers_leaves_one_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert parse({}).service.max_workers == 7
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert parse({}).service.max_workers == 1
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert parse({}).service.max_workers == 1


def test_empty_file_is_valid(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing configured yet\n")
    config = load_config(path, environ={})
    assert config.service == ServiceConfig()
    assert config.source == path
    assert config.base_dir == tmp_path


def test_empty_sections_mean_defaults() -> None:
    config = parse({"service": None, "api": {"auth": None}, "plugins": {"echo": None}})
    assert config.service == ServiceConfig()
    assert config.plugins["echo"] == PluginConfig()


def test_plugin_defaults() -> None:
    plugin = parse({"plugins": {"echo": {}}}).plugins["echo"]
    assert plugin.enabled is True
    assert plugin.config == {}
    assert dict(plugin.timeouts) == {}
    assert plugin.retry == RetryConfig(max_attempts=4, backoff_base=30.0, backoff_max=3600.0)
    assert plugin.parallelism is None


def test_plugin_config_falls_back_to_defaults() -> None:
    config = parse({"plugins": {"echo": {"parallelism": 2}}})
    assert config.plugin_config("echo").parallelism == 2
    assert config.plugin_config("unlisted") == PluginConfig()


# ------------------------------------------------------------- durations and sizes


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (10, 10.0),
        (2.5, 2.5),
        ("30", 30.0),
        ("1.5", 1.5),
        ("250ms", 0.25),
        ("2s", 2.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1d", 86400.0),
        ("1.5d", 129600.0),
        ("2w", 1209600.0),
        ("1m30s500ms", 90.5),
        ("10 seconds", 10.0),
        ("2 hours", 7200.0),
        ("5MIN", 300.0),
        ("  3s  ", 3.0),
    ],
)
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "duration is empty"),
        ("   ", "duration is empty"),
        (-1, "duration must not be negative, got -1"),
        ("-5s", "duration must not be negative, got '-5s'"),
        ("abc", "invalid duration 'abc'"),
        ("5x", "invalid duration '5x': unknown unit 'x'"),
        ("1h30", "invalid duration '1h30'"),
        ("s", "invalid duration 's'"),
        (True, "expected a duration, got true"),
        (None, "expected a duration, got null"),
        ([1], "expected a duration, got a list"),
        (float("inf"), "duration must be finite"),
        (float("nan"), "duration must be finite"),
    ],
)
def test_parse_duration_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_duration(value)


def test_parse_duration_error_shows_accepted_forms() -> None:
    with pytest.raises(ValueError, match=r"like '250ms', '30s', '5m', '1h30m', '1d'"):
        parse_duration("soon")


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (1234, 1234),
        (2048.0, 2048),
        ("100", 100),
        ("100B", 100),
        ("1KB", 1000),
        ("1kb", 1000),
        ("10MB", 10_000_000),
        ("2GB", 2_000_000_000),
        ("1KiB", 1024),
        ("512KiB", 512 * 1024),
        ("1MiB", 1024 * 1024),
        ("1 MiB", 1024 * 1024),
        ("1GiB", 1024**3),
        ("1.5KiB", 1536),
        ("1.5KB", 1500),
    ],
)
def test_parse_size_accepts(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "size is empty"),
        (-1, "size must not be negative, got -1"),
        ("-1KB", "size must not be negative, got '-1KB'"),
        ("1M", "invalid size '1M': unknown unit 'M'"),
        ("big", "invalid size 'big'"),
        ("1.1B", "size '1.1B' is not a whole number of bytes"),
        (1.5, "size must be a whole number of bytes, got 1.5"),
        (True, "expected a size, got true"),
        ({}, "expected a size, got a mapping"),
    ],
)
def test_parse_size_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_size(value)


def test_size_error_explains_units() -> None:
    with pytest.raises(ValueError, match=r"KB, MB, GB, TB are powers of 1000; KiB"):
        parse_size("3 bytes please")


def test_duration_fields_accept_every_form() -> None:
    config = parse(
        {
            "service": {
                "shutdown_grace": "1m30s",
                "dedupe_ttl": 60,
                "job_retention": "7d",
            },
            "api": {"request_timeout": "250ms"},
            "plugins": {
                "echo": {
                    "timeouts": {"poll": "30s", "run": 1.5},
                    "retry": {"backoff_base": "5s", "backoff_max": "1h"},
                }
            },
        }
    )
    assert config.service.shutdown_grace == 90.0
    assert config.service.dedupe_ttl == 60.0
    assert config.service.job_retention == 7 * 86400.0
    assert config.api.request_timeout == 0.25
    echo = config.plugins["echo"]
    assert dict(echo.timeouts) == {"poll": 30.0, "run": 1.5}
    assert (echo.retry.backoff_base, echo.retry.backoff_max) == (5.0, 3600.0)


def test_bad_duration_field_names_path() -> None:
    assert problem({"service": {"dedupe_ttl": "forever"}}).startswith(
        "service.dedupe_ttl: invalid duration 'forever'"
    )


def test_size_field() -> None:
    assert parse({"api": {"max_body_size": "512KiB"}}).api.max_body_size == 512 * 1024
    assert parse({"api": {"max_body_size": 10}}).api.max_body_size == 10
    assert problem({"api": {"max_body_size": 0}}) == "api.max_body_size: must be at least 1, got 0"
    assert problem({"api": {"max_body_size": "1M"}}).startswith(
        "api.max_body_size: invalid size '1M': unknown unit 'M'"
    )


# ------------------------------------------------------------------- interpolation


def test_interpolation_from_environment() -> None:
    config = parse(
        {"service": {"name": "cham-${SITE}"}, "api": {"auth": {"api_key": "${KEY}"}}},
        env={"SITE": "lab", "KEY": "k-123"},
    )
    assert config.service.name == "cham-lab"
    assert config.api.auth.api_key == "k-123"
    # The tag that lets env text become numbers must not leak into the records.
    assert type(config.service.name) is str
    assert type(config.api.auth.api_key) is str


def test_interpolation_defaults() -> None:
    data = {"service": {"name": "${NAME:-fallback}"}}
    assert parse(data).service.name == "fallback"
    assert parse(data, env={"NAME": ""}).service.name == "fallback"
    assert parse(data, env={"NAME": "given"}).service.name == "given"
    assert parse({"service": {"name": "a${EMPTY:-}b"}}).service.name == "ab"


def test_set_but_empty_variable_without_default_is_empty() -> None:
    assert parse({"plugins": {"p": {"config": {"x": "[${V}]"}}}}, env={"V": ""}).plugins[
        "p"
    ].config == {"x": "[]"}


def test_unset_variable_names_path_and_variable() -> None:
    assert (
        problem({"api": {"auth": {"api_key": "${CHAMBERLAIN_API_KEY}"}}})
        == "api.auth.api_key: environment variable CHAMBERLAIN_API_KEY is not set"
    )


def test_unset_variable_is_reported_once_not_also_as_type_error() -> None:
    # The raw "${W}" would not be an integer either; that echo would only confuse.
    assert problem({"service": {"max_workers": "${W}"}}) == (
        "service.max_workers: environment variable W is not set"
    )


def test_every_unset_variable_is_reported() -> None:
    assert problems({"service": {"name": "${A}-${B}"}, "state": {"path": "${C}"}}) == (
        "service.name: environment variable A is not set",
        "service.name: environment variable B is not set",
        "state.path: environment variable C is not set",
    )


def test_escaped_dollar_brace_is_literal() -> None:
    config = parse(
        {"plugins": {"sh": {"config": {"script": "echo $${HOME} $$HOME $HOME ${X}"}}}},
        env={"X": "x", "HOME": "/root"},
    )
    assert config.plugins["sh"].config["script"] == "echo ${HOME} $$HOME $HOME x"


def test_interpolation_inside_plugin_config_and_tokens() -> None:
    config = parse(
        {
            "api": {"auth": {"tokens": [token(value="${TOKEN}", scopes=["${SCOPE:-jobs:ro}"])]}},
            "plugins": {"echo": {"config": {"nested": {"list": ["${A}", 1, {"deep": "${B:-b}"}]}}}},
        },
        env={"TOKEN": "from-env", "A": "a"},
    )
    assert config.api.auth.tokens[0].token == "from-env"
    assert config.api.auth.tokens[0].scopes == ("jobs:ro",)
    plugin_config = config.plugins["echo"].config
    assert plugin_config == {"nested": {"list": ["a", 1, {"deep": "b"}]}}
    # The plugin receives this as JSON; interpolated values must be plain strings.
    assert type(plugin_config["nested"]["list"][0]) is str
    assert json.loads(json.dumps(plugin_config)) == plugin_config


def test_unset_variable_inside_plugin_config_and_token() -> None:
    assert problems(
        {
            "api": {"auth": {"tokens": [token(), token(name="u", value="${T}")]}},
            "plugins": {"echo": {"config": {"list": ["ok", "${MISSING}"]}}},
        }
    ) == (
        "api.auth.tokens[1].token: environment variable T is not set",
        "plugins.echo.config.list[1]: environment variable MISSING is not set",
    )


def test_keys_are_never_interpolated() -> None:
    config = parse({"plugins": {"echo": {"config": {"${KEY}": "v"}}}}, env={"KEY": "k"})
    assert config.plugins["echo"].config == {"${KEY}": "v"}


def test_interpolated_numbers_and_booleans_are_converted() -> None:
    config = parse(
        {
            "service": {"max_workers": "${WORKERS:-3}"},
            "api": {"enabled": "${API:-false}"},
            "plugins": {"echo": {"enabled": "${ON}", "parallelism": "${PAR}"}},
        },
        env={"ON": "yes", "PAR": " 2 "},
    )
    assert config.service.max_workers == 3
    assert config.api.enabled is False
    assert config.plugins["echo"].enabled is True
    assert config.plugins["echo"].parallelism == 2


def test_interpolated_garbage_is_still_a_type_error() -> None:
    assert problems(
        {"service": {"max_workers": "${W}"}, "api": {"enabled": "${E}"}},
        env={"W": "many", "E": "maybe"},
    ) == (
        "service.max_workers: expected an integer, got 'many'",
        "api.enabled: expected true or false, got 'maybe'",
    )


@pytest.mark.parametrize(
    "text", ["${UNCLOSED", "${}", "${1ABC}", "${A-default}", "${A:default}", "${A B}"]
)
def test_malformed_reference(text: str) -> None:
    found = problem({"service": {"name": text}})
    assert found.startswith("service.name: invalid reference '")
    assert found.endswith("expected ${NAME} or ${NAME:-default} (write $${ for a literal ${)")


def test_nested_default_is_rejected() -> None:
    assert problem({"service": {"name": "${A:-${B}}"}}) == (
        "service.name: ${A:-...}: a default cannot contain ${...}"
    )


def test_environ_defaults_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAMBERLAIN_TEST_NAME", "from-os")
    config = parse_config({"service": {"name": "${CHAMBERLAIN_TEST_NAME}"}}, base_dir=BASE)
    assert config.service.name == "from-os"


# -------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"schedules": {}},
            "schedules: unknown key (expected one of: api, callbacks, instances, mcp, pipelines,"
            " plugin_roots, plugins, remote_ingress, repositories, routes, service, state,"
            " webhooks, workspaces)",
        ),
        ({"servce": {}}, "servce: unknown key (did you mean 'service'?)"),
        ({"service": {"max_worker": 2}}, "service.max_worker: unknown key (did you mean"),
        ({"state": {"file": "x"}}, "state.file: unknown key (expected one of: path)"),
        ({"plugins": {"echo": {"retyr": {}}}}, "plugins.echo.retyr: unknown key"),
        (
            {"plugins": {"echo": {"retry": {"attempts": 2}}}},
            "plugins.echo.retry.attempts: unknown key (did you mean 'max_attempts'?)",
        ),
        (
            {"api": {"auth": {"tokens": [token(), {**token(name="b", value="v"), "role": "x"}]}}},
            "api.auth.tokens[1].role: unknown key (expected one of: name, scopes, token)",
        ),
        ({"api": {"auth": {"key": "x"}}}, "api.auth.key: unknown key"),
    ],
)
def test_unknown_keys_name_their_path(data: object, expected: str) -> None:
    assert problem(data).startswith(expected)


@pytest.mark.parametrize("section", ["schedules", "jobs"])
def test_sections_not_built_yet_are_unknown(section: str) -> None:
    assert problem({section: []}).startswith(f"{section}: unknown key")


def test_plugin_config_is_free_form() -> None:
    data = {"anything": {"goes": [1, 2.5, True, None]}, "here": "yes"}
    assert parse({"plugins": {"echo": {"config": data}}}).plugins["echo"].config == data


# ------------------------------------------------------------------ many problems


def test_all_problems_are_collected() -> None:
    found = problems(
        {
            "service": {"max_workers": "abc", "shutdown_grace": "-1s"},
            "api": {"listen": "nowhere", "auth": {"api_key": ""}},
            "plugins": {
                "echo": {"retry": {"max_attempts": 0}, "retyr": 1},
                "bad name": {},
            },
            "schedules": [],
        }
    )
    assert found == (
        "service.max_workers: expected an integer, got 'abc'",
        "service.shutdown_grace: duration must not be negative, got '-1s'",
        "api.listen: expected host:port such as '127.0.0.1:8080', got 'nowhere'",
        "api.auth.api_key: must not be empty",
        "plugins.echo.retry.max_attempts: must be at least 1, got 0",
        "plugins.echo.retyr: unknown key (did you mean 'retry'?)",
        "plugins['bad name']: invalid plugin name 'bad name': use letters, digits, '_', '.' "
        "and '-', starting with a letter or digit",
        "schedules: unknown key (expected one of: api, callbacks, instances, mcp, pipelines,"
        " plugin_roots, plugins, remote_ingress, repositories, routes, service, state,"
        " webhooks, workspaces)",
    )


def test_error_message_lists_problems_under_the_file_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "service:\n  max_workers: abc\nplugins:\n  echo:\n    retry:\n      max_attempts: 0\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == (
        f"{path}: 2 problems:\n"
        "  service.max_workers: expected an integer, got 'abc'\n"
        "  plugins.echo.retry.max_attempts: must be at least 1, got 0"
    )
    assert info.value.source == path


def test_single_problem_message_is_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"service": {"max_workers": 0}}, base_dir=BASE, source=Path("c.yaml"))
    assert str(info.value) == "c.yaml: service.max_workers: must be at least 1, got 0"


def test_error_without_source_says_config() -> None:
    with pytest.raises(ConfigError, match=r"^config: service.name: must not be empty$"):
        parse({"service": {"name": " "}})


def test_config_error_survives_pickling() -> None:
    error = ConfigError(["a: b", "c: d"], source=Path("x.yaml"))
    copy = pickle.loads(pickle.dumps(error))
    assert copy.problems == ("a: b", "c: d")
    assert copy.source == Path("x.yaml")
    assert str(copy) == str(error)


# --------------------------------------------------------------------- type errors


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"service": []}, "service: expected a mapping, got a list"),
        ({"service": "fast"}, "service: expected a mapping, got 'fast'"),
        ({"plugins": ["echo"]}, "plugins: expected a mapping, got a list"),
        ({"plugins": {"echo": 1}}, "plugins.echo: expected a mapping, got 1"),
        (
            {"plugins": {"echo": {"config": ["x"]}}},
            "plugins.echo.config: expected a mapping, got a list",
        ),
        (
            {"plugins": {"echo": {"timeouts": 5}}},
            "plugins.echo.timeouts: expected a mapping, got 5",
        ),
        ({"plugin_roots": "./plugins"}, "plugin_roots: expected a list, got './plugins'"),
        ({"plugin_roots": [1]}, "plugin_roots[0]: expected a string, got 1"),
        ({"state": {"path": ""}}, "state.path: expected a path, got an empty string"),
        (
            {"api": {"auth": {"tokens": {"name": "x"}}}},
            "api.auth.tokens: expected a list, got a mapping",
        ),
        ({"api": {"auth": {"tokens": ["x"]}}}, "api.auth.tokens[0]: expected a mapping, got 'x'"),
        ({"api": {"listen": 8080}}, "api.listen: expected a string, got 8080"),
        ({"service": {"name": None}}, "service.name: expected a string, got null"),
        ({"service": {"name": 5}}, "service.name: expected a string, got 5"),
        (
            {"service": {"max_workers": "abc"}},
            "service.max_workers: expected an integer, got 'abc'",
        ),
        ({"service": {"max_workers": True}}, "service.max_workers: expected an integer, got true"),
        ({"service": {"max_workers": 2.5}}, "service.max_workers: expected an integer, got 2.5"),
        (
            {"service": {"max_workers": "4"}},
            "service.max_workers: expected an integer, got '4' (remove the quotes)",
        ),
        ({"service": {"max_workers": None}}, "service.max_workers: expected an integer, got null"),
        ({"api": {"enabled": 1}}, "api.enabled: expected true or false, got 1"),
        (
            {"api": {"enabled": "yes"}},
            "api.enabled: expected true or false, got 'yes' (remove the quotes)",
        ),
        ({"api": {"enabled": "sure"}}, "api.enabled: expected true or false, got 'sure'"),
        (
            {"plugins": {"echo": {"parallelism": 1.5}}},
            "plugins.echo.parallelism: expected an integer, got 1.5",
        ),
    ],
)
def test_type_errors_are_readable(data: object, expected: str) -> None:
    assert problem(data) == expected


def test_integral_float_is_an_integer() -> None:
    assert parse({"service": {"max_workers": 2.0}}).service.max_workers == 2


def test_yaml_booleans_are_booleans(tmp_path: Path) -> None:
    path = write(tmp_path, "api:\n  enabled: no\nplugins:\n  echo:\n    enabled: off\n")
    config = load_config(path, environ={})
    assert config.api.enabled is False
    assert config.plugins["echo"].enabled is False


def test_secrets_are_not_echoed_in_type_errors() -> None:
    assert problem({"api": {"auth": {"api_key": 123456}}}) == (
        "api.auth.api_key: expected a string, got an integer"
    )
    assert problem({"api": {"auth": {"tokens": [token(value=987654)]}}}) == (
        "api.auth.tokens[0].token: expected a string, got an integer"
    )


def test_missing_required_token_keys() -> None:
    # A token without a name gets one (Ductile's tokens have none); scopes stay required.
    assert problems({"api": {"auth": {"tokens": [{"token": "abc"}]}}}) == (
        "api.auth.tokens[0].scopes: required key is missing",
    )
    assert problems({"api": {"auth": {"tokens": [{"name": "a", "scopes": ["*"]}]}}}) == (
        "api.auth.tokens[0].token: required key is missing",
    )


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        parse(["service"])
    assert info.value.problems == ("the top level must be a mapping, got a list",)
    assert problem("just text") == "the top level must be a mapping, got 'just text'"


# ---------------------------------------------------------------------- validation


def test_max_workers_at_least_one() -> None:
    assert parse({"service": {"max_workers": 1}}).service.max_workers == 1
    assert problem({"service": {"max_workers": 0}}) == (
        "service.max_workers: must be at least 1, got 0"
    )
    assert problem({"service": {"max_workers": -3}}) == (
        "service.max_workers: must be at least 1, got -3"
    )


def test_parallelism_at_least_one_when_given() -> None:
    assert parse({"plugins": {"e": {"parallelism": None}}}).plugins["e"].parallelism is None
    assert parse({"plugins": {"e": {"parallelism": 3}}}).plugins["e"].parallelism == 3
    assert problem({"plugins": {"e": {"parallelism": 0}}}) == (
        "plugins.e.parallelism: must be at least 1, got 0"
    )


def test_max_attempts_at_least_one() -> None:
    retry = parse({"plugins": {"e": {"retry": {"max_attempts": 1}}}}).plugins["e"].retry
    assert retry.max_attempts == 1
    assert problem({"plugins": {"e": {"retry": {"max_attempts": 0}}}}) == (
        "plugins.e.retry.max_attempts: must be at least 1, got 0"
    )


def test_backoff_max_not_below_base() -> None:
    assert problem({"plugins": {"e": {"retry": {"backoff_base": "1h", "backoff_max": "5m"}}}}) == (
        "plugins.e.retry.backoff_max: must be at least backoff_base (3600s), got 300s"
    )


def test_shutdown_grace_may_be_zero_but_not_negative() -> None:
    assert parse({"service": {"shutdown_grace": 0}}).service.shutdown_grace == 0.0
    assert problem({"service": {"shutdown_grace": -1}}) == (
        "service.shutdown_grace: duration must not be negative, got -1"
    )


def test_request_timeout_must_be_positive() -> None:
    assert problem({"api": {"request_timeout": "0s"}}) == (
        "api.request_timeout: must be longer than zero, got '0s'"
    )


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:8080", "127.0.0.1", 8080),
        ("0.0.0.0:0", "0.0.0.0", 0),
        ("localhost:65535", "localhost", 65535),
        ("[::1]:8080", "::1", 8080),
        ("[::]:0", "::", 0),
    ],
)
def test_listen_accepts(listen: str, host: str, port: int) -> None:
    api = parse({"api": {"listen": listen}}).api
    assert api.listen == listen
    assert (api.host, api.port) == (host, port)


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("8080", "expected host:port such as '127.0.0.1:8080', got '8080'"),
        (":8080", "expected host:port such as '127.0.0.1:8080', got ':8080'"),
        ("localhost:", "port must be a number from 0 to 65535, got ''"),
        ("localhost:http", "port must be a number from 0 to 65535, got 'http'"),
        ("localhost:65536", "port must be a number from 0 to 65535, got '65536'"),
        ("localhost:-1", "port must be a number from 0 to 65535, got '-1'"),
        ("::1:8080", "IPv6 addresses need brackets, such as '[::1]:8080', got '::1:8080'"),
        ("[::1:8080", "expected host:port such as '[::1]:8080', got '[::1:8080'"),
        ("[]:80", "expected host:port such as '[::1]:8080', got '[]:80'"),
        ("my host:80", "host must not contain spaces, got 'my host:80'"),
    ],
)
def test_listen_rejects(listen: str, expected: str) -> None:
    assert problem({"api": {"listen": listen}}) == f"api.listen: {expected}"


def test_tokens() -> None:
    auth = parse(
        {
            "api": {
                "auth": {
                    "api_key": "master",
                    "tokens": [
                        token("reader", "r-secret", ["read:*"]),
                        token("ops", "o-secret", ["jobs:rw", "plugin:rw"]),
                    ],
                }
            }
        }
    ).api.auth
    assert auth.api_key == "master"
    assert [(t.name, t.token, t.scopes) for t in auth.tokens] == [
        ("reader", "r-secret", ("read:*",)),
        ("ops", "o-secret", ("jobs:rw", "plugin:rw")),
    ]


def test_secrets_stay_out_of_repr() -> None:
    auth = parse(
        {"api": {"auth": {"api_key": "master-secret", "tokens": [token(value="tok-secret")]}}}
    ).api.auth
    assert "master-secret" not in repr(auth)
    assert "tok-secret" not in repr(auth)


@pytest.mark.parametrize("scope", VALID_SCOPES)
def test_every_valid_scope(scope: str) -> None:
    tokens = parse({"api": {"auth": {"tokens": [token(scopes=[scope])]}}}).api.auth.tokens
    assert tokens[0].scopes == (scope,)


def test_invalid_scope_lists_valid_ones() -> None:
    assert problem({"api": {"auth": {"tokens": [token(scopes=["jobs:ro", "root"])]}}}) == (
        "api.auth.tokens[0].scopes[1]: 'root' is not a valid scope; expected one of: "
        "plugin:ro, plugin:rw, jobs:ro, jobs:rw, events:ro, events:rw, secrets:ro,"
        " secrets:rw, mcp:ro, mcp:rw, repos:ro, repos:rw, admin, *, read:*"
    )


def test_token_needs_a_scope() -> None:
    assert problem({"api": {"auth": {"tokens": [token(scopes=[])]}}}) == (
        "api.auth.tokens[0].scopes: a token needs at least one scope, such as 'read:*'"
    )
    assert problem({"api": {"auth": {"tokens": [token(scopes="read:*")]}}}) == (
        "api.auth.tokens[0].scopes: expected a list, got 'read:*'"
    )


def test_token_name_and_value_must_not_be_empty() -> None:
    assert problems({"api": {"auth": {"tokens": [token(name="", value="  ")]}}}) == (
        "api.auth.tokens[0].name: must not be empty",
        "api.auth.tokens[0].token: must not be empty",
    )


def test_empty_token_from_environment_is_an_error() -> None:
    data = {"api": {"auth": {"tokens": [token(value="${TOKEN}")]}}}
    assert problem(data, env={"TOKEN": ""}) == "api.auth.tokens[0].token: must not be empty"


def test_api_key_must_not_be_empty() -> None:
    assert problem({"api": {"auth": {"api_key": ""}}}) == "api.auth.api_key: must not be empty"
    assert parse({"api": {"auth": {"api_key": None}}}).api.auth.api_key is None


def test_token_names_and_values_must_be_unique() -> None:
    assert problems(
        {
            "api": {
                "auth": {
                    "api_key": "master",
                    "tokens": [
                        token("a", "one"),
                        token("b", "two"),
                        token("a", "three"),
                        token("c", "one"),
                        token("d", "master"),
                    ],
                }
            }
        }
    ) == (
        "api.auth.tokens[2].name: duplicate token name 'a' (also tokens[0])",
        "api.auth.tokens[3].token: same token value as tokens[0]; every token must be unique",
        "api.auth.tokens[4].token: same value as api_key; a token must differ from the "
        "all-scopes key",
    )


@pytest.mark.parametrize("name", ["echo", "sys_exec", "my-plugin", "v2.tool", "0day", "A"])
def test_valid_plugin_names(name: str) -> None:
    assert name in parse({"plugins": {name: {}}}).plugins


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "bad name",
            "plugins['bad name']: invalid plugin name 'bad name': use letters, digits, "
            "'_', '.' and '-', starting with a letter or digit",
        ),
        ("-dash", "plugins.-dash: invalid plugin name '-dash': use letters"),
        (".hidden", "plugins['.hidden']: invalid plugin name '.hidden': use letters"),
        ("a/b", "plugins['a/b']: invalid plugin name 'a/b': use letters"),
        ("a..b", "plugins['a..b']: invalid plugin name 'a..b': must not contain '..'"),
        ("", "plugins['']: invalid plugin name '': use letters"),
    ],
)
def test_invalid_plugin_names(name: str, expected: str) -> None:
    assert problem({"plugins": {name: {}}}).startswith(expected)


def test_non_string_plugin_name() -> None:
    assert problem({"plugins": {42: {}}}) == "plugins.42: expected a string, got 42"


def test_bad_plugin_name_does_not_hide_bad_settings() -> None:
    assert problems({"plugins": {"a b": {"parallelism": 0}}}) == (
        "plugins['a b']: invalid plugin name 'a b': use letters, digits, '_', '.' and '-', "
        "starting with a letter or digit",
        "plugins['a b'].parallelism: must be at least 1, got 0",
    )


def test_timeouts() -> None:
    timeouts = (
        parse({"plugins": {"e": {"timeouts": {"poll": "30s", "sync.all": 5}}}})
        .plugins["e"]
        .timeouts
    )
    assert dict(timeouts) == {"poll": 30.0, "sync.all": 5.0}
    assert problems(
        {"plugins": {"e": {"timeouts": {"poll": 0, "bad cmd": "1s", "x..y": "1s"}}}}
    ) == (
        "plugins.e.timeouts.poll: must be longer than zero, got 0",
        "plugins.e.timeouts['bad cmd']: invalid command name 'bad cmd': use letters, digits, "
        "'_', '.' and '-', starting with a letter or digit",
        "plugins.e.timeouts['x..y']: invalid command name 'x..y': must not contain '..'",
    )
    assert problem({"plugins": {"e": {"timeouts": {"poll": "soon"}}}}).startswith(
        "plugins.e.timeouts.poll: invalid duration 'soon'"
    )


# -------------------------------------------------------------------------- paths


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    path = write(
        config_dir,
        "state:\n  path: ./db/jobs.db\nplugin_roots:\n  - ./plugins\n  - ../shared\n  - /opt/p\n",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path, environ={})
    assert config.state.path == config_dir / "db" / "jobs.db"
    assert config.plugin_roots == (
        config_dir / "plugins",
        config_dir / ".." / "shared",
        Path("/opt/p"),
    )
    assert config.base_dir == config_dir
    assert config.source == path


def test_relative_config_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "{}\n")
    monkeypatch.chdir(tmp_path)
    config = load_config("config.yaml", environ={})
    assert config.source == tmp_path / "config.yaml"
    assert config.state.path == tmp_path / "data" / "state.db"
    assert config.plugin_roots == (tmp_path / "plugins",)


def test_memory_state_path_is_kept() -> None:
    assert parse({"state": {"path": ":memory:"}}).state.path == IN_MEMORY == Path(":memory:")


def test_home_directory_is_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    assert parse({"plugin_roots": ["~/plugins"]}).plugin_roots == (Path("/home/someone/plugins"),)


def test_path_from_environment() -> None:
    config = parse({"state": {"path": "${DATA:-/var/lib/ch}/state.db"}})
    assert config.state.path == Path("/var/lib/ch/state.db")


# --------------------------------------------------------------------------- files


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: file not found"


def test_directory_without_config_yaml(tmp_path: Path) -> None:
    # A directory is read as Ductile's directory mode: its config.yaml.
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: a directory was given, but it holds no config.yaml"


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "service:\n  name: x\n  max_workers: [1, 2\napi: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert message.startswith(f"{path}: invalid YAML at line 4, column 4:")
    assert "while parsing a flow sequence at line 3, column 16" in message


def test_yaml_indentation_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "service:\n  name: x\n bad: 1\n")
    with pytest.raises(ConfigError, match=r": invalid YAML at line 3, column 2: "):
        load_config(path, environ={})


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "plugins:\n  echo: {}\n  sys_exec: {}\n  echo:\n    enabled: false\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == (
        f"{path}: invalid YAML at line 4, column 3: duplicate key 'echo' (first defined at line 2)"
    )


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "plugins:\n"
        "  base: &base {parallelism: 2, retry: {max_attempts: 2}}\n"
        "  echo:\n"
        "    <<: *base\n"
        "    parallelism: 1\n",
    )
    echo = load_config(path, environ={}).plugins["echo"]
    assert (echo.parallelism, echo.retry.max_attempts) == (1, 2)


def test_file_errors_name_the_file_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "service:\n  max_workers: 0\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("config.yaml", environ={})
    assert str(info.value) == "config.yaml: service.max_workers: must be at least 1, got 0"
    assert info.value.source == Path("config.yaml")


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"service:\n  name: \xff\n")
    with pytest.raises(ConfigError, match=r": not valid UTF-8"):
        load_config(path)


# ------------------------------------------------------------------------- records


def test_records_are_frozen() -> None:
    config = parse({"plugins": {"echo": {"timeouts": {"poll": 1}}}})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.service.max_workers = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.plugins["new"] = PluginConfig()  # type: ignore[index]
    with pytest.raises(TypeError):
        config.plugins["echo"].timeouts["poll"] = 2.0  # type: ignore[index]


def test_records_can_be_built_directly() -> None:
    config = Config(state=parse({}).state, plugin_roots=(), base_dir=BASE)
    assert config.service == ServiceConfig()
    assert config.plugin_config("echo") == PluginConfig()


# ------------------------------------------------------------------------- example


def test_example_config_loads() -> None:
    config = load_config(REPO_ROOT / "config.example.yaml", environ={})
    assert config.service.name == "chamberlain"
    assert config.service.max_workers == 2
    assert config.service.shutdown_grace == 10.0
    assert config.state.path == REPO_ROOT / "data" / "state.db"
    assert config.plugin_roots == (REPO_ROOT / "plugins",)
    assert config.api.enabled is True
    assert (config.api.host, config.api.port) == ("127.0.0.1", 8080)
    assert config.api.auth.api_key == "dev-key-change-me"
    (reader,) = config.api.auth.tokens
    assert (reader.name, reader.token, reader.scopes) == (
        "reader",
        "read-only-change-me",
        ("read:*",),
    )
    echo = config.plugins["echo"]
    assert echo.config == {"message": "hello"}
    assert dict(echo.timeouts) == {"poll": 30.0}
    assert (echo.retry.max_attempts, echo.retry.backoff_base) == (3, 5.0)
    sys_exec = config.plugins["sys_exec"]
    assert sys_exec.config == {"command": ["uname", "-a"]}
    assert sys_exec.parallelism == 1
    (greet,) = config.pipelines
    look, approved = greet.steps
    assert (look.uses, approved.uses) == ("sys_exec.handle", "echo.handle")
    assert approved.approval is not None
    assert (approved.approval.timeout, approved.approval.on_timeout) == (3600.0, "reject")


def test_example_config_takes_secrets_from_environment() -> None:
    config = load_config(
        REPO_ROOT / "config.example.yaml",
        environ={"CHAMBERLAIN_API_KEY": "prod-key", "CHAMBERLAIN_READ_TOKEN": "prod-read"},
    )
    assert config.api.auth.api_key == "prod-key"
    assert config.api.auth.tokens[0].token == "prod-read"


def test_a_bare_on_key_stays_a_key(tmp_path: Path) -> None:
    # YAML 1.1 would read the key `on` as the boolean true.
    path = write(
        tmp_path,
        "plugins:\n  echo:\n    enabled: off\n"
        "pipelines:\n  - name: p\n    on: echo.poll\n    steps: [{id: s, uses: echo}]\n",
    )
    config = load_config(path, environ={})
    assert config.pipelines[0].on == "echo.poll"
    assert config.plugins["echo"].enabled is False


def test_the_mcp_section_has_safe_defaults() -> None:
    mcp = parse_config({}, base_dir=BASE).mcp
    assert (mcp.enabled, mcp.call_timeout, mcp.allowed_hosts, mcp.allowed_origins) == (
        True,
        30.0,
        (),
        (),
    )
    custom = parse_config(
        {"mcp": {"call_timeout": "90s", "allowed_hosts": ["gw.lan:*"]}}, base_dir=BASE
    ).mcp
    assert (custom.call_timeout, custom.allowed_hosts) == (90.0, ("gw.lan:*",))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"call_timeout": "0s"}, "mcp.call_timeout: must be longer than zero, got '0s'"),
        ({"allowed_hosts": [""]}, "mcp.allowed_hosts[0]: must not be empty"),
        ({"allowed_origins": "x"}, "mcp.allowed_origins: expected a list, got 'x'"),
        ({"enabled": "maybe"}, "mcp.enabled: expected true or false, got 'maybe'"),
    ],
)
def test_a_bad_mcp_value_names_its_path(data: dict[str, Any], expected: str) -> None:
    assert problem({"mcp": data}) == expected
