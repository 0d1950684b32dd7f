"""``${secret:name}`` in a configuration: where it may appear, what is recorded, what is refused."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from chamberlain.config import (
    Config,
    ConfigError,
    SecretReference,
    check_secret_references,
    parse_config,
)
from chamberlain.redaction import configured_secrets

BASE = Path("/srv/chamberlain")


def parse(data: object, env: Mapping[str, str] | None = None) -> Config:
    return parse_config(data, base_dir=BASE, environ=env or {})


def problems(data: object, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse(data, env)
    return info.value.problems


def endpoint(secret: str) -> dict[str, Any]:
    return {"path": "/hooks/gh", "plugin": "echo", "kind": "github", "secret": secret}


ALLOWED: dict[str, Any] = {
    "plugins": {
        "gh": {
            "config": {
                "token": "${secret:github_token}",
                "header": "Bearer ${secret:github_token}",
                "nested": {"list": ["plain", {"deep": "${secret:deep.one}"}]},
            },
            "env": {"API_TOKEN": "${secret:api-token}"},
        }
    },
    "webhooks": {"endpoints": [endpoint("${secret:hook}")]},
    "callbacks": {"secret": "${secret:callback_key}"},
}


def test_references_are_left_as_written_and_their_paths_recorded() -> None:
    config = parse(ALLOWED)
    gh = config.plugins["gh"]
    # Not substituted: the value is resolved when a job starts.
    assert gh.config["token"] == "${secret:github_token}"
    assert gh.config["header"] == "Bearer ${secret:github_token}"
    assert gh.config["nested"] == {"list": ["plain", {"deep": "${secret:deep.one}"}]}
    assert gh.env == {"API_TOKEN": "${secret:api-token}"}
    assert config.webhooks.endpoints[0].secret == "${secret:hook}"
    assert config.callbacks.secret == "${secret:callback_key}"
    assert set(config.secret_references) == {
        SecretReference(path="plugins.gh.config.token", name="github_token"),
        SecretReference(path="plugins.gh.config.header", name="github_token"),
        SecretReference(path="plugins.gh.config.nested.list[1].deep", name="deep.one"),
        SecretReference(path="plugins.gh.env.API_TOKEN", name="api-token"),
        SecretReference(path="webhooks.endpoints[0].secret", name="hook"),
        SecretReference(path="callbacks.secret", name="callback_key"),
    }


def test_a_config_without_references_records_none() -> None:
    assert parse({"plugins": {"gh": {"config": {"token": "literal"}}}}).secret_references == ()


PLACES = (
    "plugins.<name>.config, plugins.<name>.env.<name>, webhooks.endpoints[i].secret,"
    " callbacks.secret, instances[i].secret, remote_ingress.peers[i].secret,"
    " repositories.<name>.token"
)


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"api": {"auth": {"api_key": "${secret:x}"}}}, "api.auth.api_key"),
        (
            {"api": {"auth": {"tokens": [{"name": "t", "token": "${secret:x}", "scopes": ["*"]}]}}},
            "api.auth.tokens[0].token",
        ),
        ({"service": {"name": "${secret:x}"}}, "service.name"),
        # A schedule's payload is stored with every job it starts, for all to read.
        (
            {"plugins": {"gh": {"schedules": [{"every": "1h", "payload": {"t": "${secret:x}"}}]}}},
            "plugins.gh.schedules[0].payload.t",
        ),
        (
            {"plugins": {"gh": {"env_passthrough": ["${secret:x}"]}}},
            "plugins.gh.env_passthrough[0]",
        ),
        (
            {"webhooks": {"endpoints": [{**endpoint("s3cret"), "path": "/${secret:x}"}]}},
            "webhooks.endpoints[0].path",
        ),
    ],
)
def test_a_reference_anywhere_else_is_refused_with_its_path(
    data: dict[str, Any], path: str
) -> None:
    assert f"{path}: ${{secret:x}}: a secret may only be used in {PLACES}" in problems(data)


@pytest.mark.parametrize("name", ["9lives", "has space", "", "a/b", "x" * 65, "_under"])
def test_a_malformed_name_is_refused(name: str) -> None:
    found = problems({"plugins": {"gh": {"config": {"token": f"${{secret:{name}}}"}}}})
    assert len(found) == 1, found
    assert found[0].startswith(f"plugins.gh.config.token: invalid secret name {name!r}: ")


def test_an_unclosed_reference_says_what_was_expected() -> None:
    (found,) = problems({"plugins": {"gh": {"config": {"token": "${secret:github"}}}})
    assert found == (
        "plugins.gh.config.token: invalid reference '${secret:github': expected"
        " ${secret:name} (write $${ for a literal ${)"
    )


def test_an_escaped_reference_is_kept_for_resolution_to_unescape() -> None:
    config = parse(
        {
            "plugins": {"gh": {"config": {"doc": "$${secret:x} and $${HOME}"}}},
            "service": {"name": "$${secret:x}"},
        }
    )
    # Where secrets are taken, resolution takes the escape out (see test_vault.py);
    # elsewhere the loader does, as for every other $${.
    assert config.plugins["gh"].config["doc"] == "$${secret:x} and ${HOME}"
    assert config.service.name == "${secret:x}"
    assert config.secret_references == ()


def test_environment_text_is_never_a_reference() -> None:
    config = parse(
        {"plugins": {"gh": {"config": {"from_env": "${TOKEN}"}}}},
        env={"TOKEN": "abc${secret:github}def"},
    )
    assert config.plugins["gh"].config["from_env"] == "abc$${secret:github}def"
    assert config.secret_references == ()


def test_interpolation_and_references_mix_in_one_string() -> None:
    config = parse(
        {"plugins": {"gh": {"config": {"url": "https://${HOST}/?t=${secret:github}"}}}},
        env={"HOST": "example.com"},
    )
    assert config.plugins["gh"].config["url"] == "https://example.com/?t=${secret:github}"
    assert config.secret_references == (
        SecretReference(path="plugins.gh.config.url", name="github"),
    )


def test_unknown_secrets_are_named_with_their_yaml_paths() -> None:
    config = parse(ALLOWED)
    known = ["github_token", "hook", "zeta"]
    assert check_secret_references(config, known) == [
        f"{path}: unknown secret {name!r} (the registry holds: github_token, hook, zeta)"
        for path, name in [
            ("plugins.gh.config.nested.list[1].deep", "deep.one"),
            ("plugins.gh.env.API_TOKEN", "api-token"),
            ("callbacks.secret", "callback_key"),
        ]
    ]
    assert (
        check_secret_references(
            config, ["github_token", "hook", "deep.one", "api-token", "callback_key"]
        )
        == []
    )


def test_an_empty_registry_says_how_to_add_a_secret() -> None:
    config = parse({"callbacks": {"secret": "${secret:callback_key}"}})
    assert check_secret_references(config, []) == [
        "callbacks.secret: unknown secret 'callback_key' (the registry holds no secrets;"
        " add it with POST /secrets)"
    ]


def test_a_reference_is_not_a_configured_secret_value() -> None:
    config = parse(
        {
            "api": {"auth": {"api_key": "admin-key-123"}},
            "webhooks": {"endpoints": [endpoint("${secret:hook}")]},
            "callbacks": {"secret": "plain-callback-secret"},
        }
    )
    # The reference text would be redacted wherever a config was quoted; the
    # registry's value is redacted under its own name instead.
    assert configured_secrets(config) == {
        "api.auth.api_key": "admin-key-123",
        "callbacks.secret": "plain-callback-secret",
    }
