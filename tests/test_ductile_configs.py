"""Ductile's configuration files load in Chamberlain (their keys, include:, directory mode).

The files are materialized here from Python data that mirrors the structure and keys
of each file in Ductile's repository (``config.yaml``, ``config.test.yaml``, the
``config/`` directory set and the ``test/fixtures/docker/*/config`` sets); nothing is
copied. Each set is loaded the way ``chamberlain start --config DIR`` loads it
(configuration, plugin discovery and binding, routing), against stand-in plugins of
the same names, and either starts or fails for exactly the reason docs/DUCTILE.md
lists for it.
"""

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from chamberlain.config import ConfigError, load_config, parse_config
from chamberlain.config.references import check_secret_references
from chamberlain.daemon.configuration import prepare
from chamberlain.plugins.binding import bind_plugins
from chamberlain.plugins.manifest import CommandSpec, CommandType, Manifest
from chamberlain.plugins.registry import Discovery


def write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def stand_in_plugins(root: Path, *names: str) -> None:
    """Plugins with Ductile's names that declare poll and handle and do nothing."""
    for name in names:
        write(
            root / name / "manifest.yaml",
            {
                "name": name,
                "version": "1.0.0",
                "protocol": 2,
                "entrypoint": "run.sh",
                "commands": [{"name": "poll", "type": "read"}, {"name": "handle", "type": "write"}],
            },
        )
        entry = root / name / "run.sh"
        entry.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
        entry.chmod(0o755)


def errors(path: Path, environ: dict[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ or {})
    return info.value.problems


# ------------------------------------------------------------- the repository's root

#: Ductile's config.yaml: one file, routes, ${VAR} tokens and plugin settings.
CONFIG_YAML: dict[str, Any] = {
    "service": {
        "name": "ductile",
        "tick_interval": "60s",
        "log_level": "info",
        "log_format": "json",
        "dedupe_ttl": "2h",
        "job_log_retention": "168h",
    },
    "state": {"path": "./ductile.db"},
    "api": {
        "enabled": True,
        "listen": "localhost:8080",
        "auth": {"tokens": [{"token": "${DUCTILE_TOKEN_ADMIN}", "scopes": ["*"]}]},
    },
    "plugin_roots": ["./plugins"],
    "plugins": {
        "echo": {
            "enabled": True,
            "schedules": [{"every": "5m", "jitter": "30s"}],
            "retry": {"max_attempts": 3},
            "timeouts": {"poll": "30s"},
            "circuit_breaker": {"threshold": 3, "reset_after": "5m"},
            "config": None,
        },
        "jina-reader": {
            "enabled": True,
            "retry": {"max_attempts": 3},
            "timeouts": {"poll": "30s", "handle": "30s"},
            "circuit_breaker": {"threshold": 3, "reset_after": "5m"},
            "config": {},
        },
        "file_handler": {
            "enabled": True,
            "retry": {"max_attempts": 1},
            "timeouts": {"handle": "30s"},
            "config": {"allowed_write_paths": "/srv/summaries"},
        },
        "fabric": {
            "enabled": True,
            "retry": {"max_attempts": 1},
            "timeouts": {"handle": "120s"},
            "config": {"FABRIC_DEFAULT_MODEL": "${FABRIC_DEFAULT_MODEL}"},
        },
        "youtube_transcript": {
            "enabled": True,
            "retry": {"max_attempts": 2},
            "timeouts": {"handle": "60s"},
            "circuit_breaker": {"threshold": 3, "reset_after": "10m"},
            "config": {"default_language": "en", "request_timeout_seconds": 20},
        },
        "youtube_playlist": {
            "enabled": True,
            "schedules": [{"every": "30m", "jitter": "2m"}],
            "retry": {"max_attempts": 2},
            "timeouts": {"poll": "30s"},
            "circuit_breaker": {"threshold": 3, "reset_after": "10m"},
            "config": {"playlist_url": "https://youtube.com/playlist?list=x", "max_emit": 5},
        },
    },
    "routes": [
        {
            "from": "youtube_playlist",
            "event_type": "youtube.playlist_item",
            "to": "youtube_transcript",
        },
        {"from": "youtube_transcript", "event_type": "youtube.transcript", "to": "fabric"},
        {"from": "fabric", "event_type": "fabric.completed", "to": "file_handler"},
    ],
}

#: Ductile's config.test.yaml: Ductile-only scopes and plugin keys Ductile ignores.
CONFIG_TEST_YAML: dict[str, Any] = {
    "service": {
        "name": "ductile-test",
        "tick_interval": "30s",
        "log_level": "debug",
        "log_format": "json",
        "dedupe_ttl": "1h",
        "job_log_retention": "24h",
    },
    "state": {"path": "./data/ductile-test.db"},
    "api": {
        "enabled": True,
        "listen": "0.0.0.0:8080",
        "auth": {
            "tokens": [
                {"token": "${DUCTILE_TOKEN_ADMIN}", "scopes": ["*"]},
                {
                    "token": "${DUCTILE_TOKEN_READONLY}",
                    "scopes": ["plugin:ro", "job:ro", "state:ro"],
                },
            ]
        },
    },
    "plugin_roots": ["./plugins"],
    "plugins": {
        "echo": {
            "enabled": True,
            "schedules": [{"every": "5m", "jitter": "10s"}],
            "timeout": "30s",
            "max_attempts": 3,
            "circuit_breaker": {"threshold": 3, "reset_after": "2m"},
            "config": {"message": "Test environment echo - ${DUCTILE_TEST_MESSAGE}"},
        },
        "file_handler": {
            "enabled": True,
            "timeout": "30s",
            "max_attempts": 1,
            "config": {"allowed_read_paths": "/tmp", "allowed_write_paths": "/tmp"},
        },
        "fabric": {
            "enabled": False,
            "timeout": "120s",
            "max_attempts": 1,
            "config": {"FABRIC_DEFAULT_MODEL": "gpt-4"},
        },
    },
    "routes": [],
}

ENVIRON = {
    "DUCTILE_TOKEN_ADMIN": "admin-token",
    "DUCTILE_TOKEN_READONLY": "readonly-token",
    "FABRIC_DEFAULT_MODEL": "gpt-4",
    "DUCTILE_TEST_MESSAGE": "hello",
}


def test_config_yaml_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "config.yaml", CONFIG_YAML)
    stand_in_plugins(tmp_path / "plugins", *CONFIG_YAML["plugins"])
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    loaded = prepare(str(path))
    config = loaded.config
    assert config.api.auth.tokens[0].name == "token-0"
    assert config.api.auth.tokens[0].token == "admin-token"
    assert config.service.dedupe_ttl == 7200.0
    assert config.plugins["fabric"].config == {"FABRIC_DEFAULT_MODEL": "gpt-4"}
    assert config.plugins["echo"].config == {}
    assert config.plugins["echo"].schedules[0].jitter == 30.0
    assert [route.to for route in config.routes] == ["youtube_transcript", "fabric", "file_handler"]
    assert set(loaded.plugins) == set(CONFIG_YAML["plugins"])
    # Ductile's log level is honoured: the daemon logs at it unless --log-level says otherwise.
    assert config.service.log_level == "info"
    assert [w.split(":")[0] for w in config.warnings] == [
        "service.tick_interval",
        "service.log_format",
        "service.job_log_retention",
    ]


def test_config_test_yaml_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "config.test.yaml", CONFIG_TEST_YAML)
    stand_in_plugins(tmp_path / "plugins", *CONFIG_TEST_YAML["plugins"])
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    config = prepare(str(path)).config
    readonly = config.api.auth.tokens[1]
    assert (readonly.name, readonly.scopes) == ("token-1", ("plugin:ro", "jobs:ro"))
    assert config.plugins["echo"].config == {"message": "Test environment echo - hello"}
    assert config.plugins["fabric"].enabled is False
    assert (
        "plugins.*.timeout (in echo, file_handler, fabric): accepted for Ductile"
        " compatibility, no effect here: Ductile ignores it too; per-command limits are"
        " timeouts.<command>"
    ) in config.warnings
    assert (
        "api.auth.tokens[1].scopes: 'state:ro' dropped, it has no effect here: Ductile"
        " checks no such scope either"
    ) in config.warnings


# ------------------------------------------------------------ the config/ directory

#: Ductile's config/ directory: config.yaml includes the four other files.
CONFIG_DIR: dict[str, Any] = {
    "config.yaml": {
        "log_level": "info",
        "service": {"strict_mode": True},
        "state": {"path": "~/.config/ductile/ductile.db"},
        "plugin_roots": ["~/.config/ductile/plugins", "./plugins"],
        "webhooks": {"listen": "127.0.0.1:8091"},
        "include": ["api.yaml", "plugins.yaml", "pipelines.yaml", "webhooks.yaml"],
    },
    "api.yaml": {
        "api": {
            "enabled": True,
            "listen": "127.0.0.1:8081",
            "auth": {
                "tokens": [
                    {"token": "REPLACE_WITH_ADMIN_TOKEN", "scopes": ["*"]},
                    {
                        "token": "REPLACE_WITH_READONLY_TOKEN",
                        "scopes": ["plugin:ro", "job:ro", "state:ro"],
                    },
                ]
            },
        }
    },
    "plugins.yaml": {
        "plugins": {
            "fabric": {
                "enabled": True,
                "timeout": "120s",
                "max_attempts": 2,
                "config": {"FABRIC_DEFAULT_PATTERN": "summarize"},
            },
            "file_handler": {
                "enabled": True,
                "timeout": "30s",
                "max_attempts": 1,
                "config": {"allowed_read_paths": "~"},
            },
            "check_youtube": {
                "enabled": True,
                "timeout": "30s",
                "max_attempts": 1,
                "config": {
                    "field": "url",
                    "checks": [
                        {"contains": "youtu.be", "emit": "youtube.url.detected"},
                        {"default": "text.received"},
                    ],
                },
            },
            "jina-reader": {
                "enabled": True,
                "timeout": "30s",
                "max_attempts": 3,
                "circuit_breaker": {"threshold": 3, "reset_after": "5m"},
                "config": {},
            },
            "sys_exec": {
                "enabled": True,
                "timeout": "30s",
                "max_attempts": 1,
                "config": {"command": "sh -c 'echo payload=$DUCTILE_PAYLOAD_MESSAGE'"},
            },
            "folder_watch": {
                "enabled": True,
                "schedules": [{"every": "1m"}],
                "timeout": "30s",
                "max_attempts": 1,
                "config": {"watches": [{"id": "summaries", "root": "~/projects/content"}]},
            },
            "github_repo_sync": {
                "enabled": True,
                "schedules": [
                    {"id": "daily-early", "cron": "0 6 * * *", "timezone": "Australia/Sydney"}
                ],
                "timeout": "10m",
                "max_attempts": 1,
                "config": {"owner": "mattjoyce", "lookback_days": 730},
            },
            "git_repo_sync": {"enabled": True, "timeout": "5m", "max_attempts": 1},
            "repo_policy": {"enabled": True, "timeout": "2m", "max_attempts": 1},
            "changelog_microblog": {"enabled": True, "timeout": "4m", "max_attempts": 1},
            "git_commit_push": {"enabled": True, "timeout": "5m", "max_attempts": 1},
        }
    },
    "pipelines.yaml": {
        "pipelines": [
            {
                "name": "youtube-wisdom",
                "on": "youtube.url.detected",
                "steps": [
                    {"id": "transcript", "uses": "youtube_transcript"},
                    {"id": "summarize", "uses": "fabric"},
                    {"id": "write", "uses": "file_handler"},
                ],
            },
            {
                "name": "web-summarize",
                "on": "web.url.detected",
                "steps": [
                    {"id": "summarize", "uses": "fabric"},
                    {"id": "write", "uses": "file_handler"},
                ],
            },
            {
                "name": "github-repo-sync",
                "on": "github_repo_sync.repo_discovered",
                "steps": [{"id": "sync", "uses": "git_repo_sync"}],
            },
            {
                "name": "github-repo-sync-notify",
                "on": "github_repo_sync.completed",
                "steps": [{"id": "notify", "uses": "discord_notify"}],
            },
            {
                "name": "repo-maintenance",
                "on": "git_repo_sync.completed",
                "steps": [
                    {"id": "policy", "uses": "repo_policy"},
                    {"id": "changelog", "uses": "changelog_microblog"},
                    {"id": "commit", "uses": "git_commit_push"},
                ],
            },
            {
                "name": "repo-maintenance-notify",
                "on": "git_commit_push.completed",
                "steps": [{"id": "notify", "uses": "discord_notify"}],
            },
        ]
    },
    "webhooks.yaml": {
        "webhooks": {
            "endpoints": [
                {
                    "name": "example_handler",
                    "path": "/webhook/example",
                    "plugin": "sys_exec",
                    "secret_ref": "example_webhook_secret",
                    "signature_header": "X-Ductile-Signature-256",
                }
            ]
        }
    },
}


def materialize(directory: Path, files: dict[str, Any]) -> Path:
    for name, data in files.items():
        write(directory / name, data)
    return directory


def test_the_config_directory_starts_once_its_webhook_secret_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its first plugin root is under ~/.config/ductile, which must exist (in Ductile too).
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home/.config/ductile/plugins").mkdir(parents=True)
    directory = materialize(tmp_path / "config", CONFIG_DIR)
    plugins = sorted(
        {*CONFIG_DIR["plugins.yaml"]["plugins"], "youtube_transcript", "discord_notify"}
    )
    stand_in_plugins(directory / "plugins", *plugins)
    loaded = prepare(str(directory))
    config = loaded.config
    assert config.source == (directory / "config.yaml").absolute()
    assert config.api.listen == "127.0.0.1:8081"
    assert config.state.path == tmp_path / "home/.config/ductile/ductile.db"
    assert config.webhooks.listen == "127.0.0.1:8091"
    assert [p.name for p in config.pipelines][-1] == "repo-maintenance-notify"
    endpoint = config.webhooks.endpoints[0]
    assert (endpoint.plugin, endpoint.signature_header) == ("sys_exec", "X-Ductile-Signature-256")
    # Ductile's secret_ref names an entry of tokens.yaml; this set has none, so it is
    # a secret of the registry, which `chamberlain start` requires to be set.
    assert check_secret_references(config, set()) == [
        "webhooks.endpoints[0].secret: unknown secret 'example_webhook_secret'"
        " (the registry holds no secrets; add it with POST /secrets)"
    ]
    assert check_secret_references(config, {"example_webhook_secret"}) == []
    assert "service.strict_mode" in " ".join(config.warnings)
    assert "log_level: accepted" in " ".join(config.warnings)


# --------------------------------------------------- test/fixtures/docker/*/config


def docker_set(
    port: int,
    plugins: dict[str, Any],
    *,
    pipelines: list[dict[str, Any]] | None = None,
    roots: tuple[str, ...] = ("./plugins",),
    config: dict[str, Any] | None = None,
    more: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One fixture set as Ductile lays it out: config.yaml including the rest."""
    files: dict[str, Any] = {
        "config.yaml": {
            "log_level": "info",
            "service": {"strict_mode": False, **(config or {})},
            "state": {"path": "./state/ductile.db"},
            "plugin_roots": list(roots),
            "include": ["api.yaml", "plugins.yaml"],
        },
        "api.yaml": {
            "api": {
                "enabled": True,
                "listen": f"127.0.0.1:{port}",
                "auth": {"tokens": [{"token": "test-admin-token", "scopes": ["*"]}]},
            }
        },
        "plugins.yaml": {"plugins": plugins},
    }
    if pipelines is not None:
        files["config.yaml"]["include"].append("pipelines.yaml")
        files["pipelines.yaml"] = {"pipelines": pipelines}
    for name, data in (more or {}).items():
        files["config.yaml"]["include"].append(name)
        files[name] = data
    return files


def alias(base: str, **config: Any) -> dict[str, Any]:
    return {"uses": base, "enabled": True, "config": config}


def pipeline(name: str, on: str, *steps: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"name": name, "on": on, **more, "steps": list(steps)}


REPO_PLUGINS = ("../../../../../plugins",)  # the repository's plugins/ directory
ECHO = {"echo": {"enabled": True}}

#: Each set: its files, and the problems it fails with (none: it starts).
DOCKER_SETS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "api-e2e": (
        docker_set(
            18181,
            ECHO,
            pipelines=[pipeline("test-pipeline", "test.trigger", {"id": "entry", "uses": "echo"})],
        ),
        (),
    ),
    "conditional-with-route": (
        docker_set(
            18483,
            {
                "content_processor": alias(
                    "sys_exec", working_dir="./state", command=["python3", "-c", "print(1)"]
                ),
                "event_echo": alias("echo", message="conditional route sink"),
            },
            roots=REPO_PLUGINS,
            pipelines=[
                pipeline(
                    "conditional-with-route",
                    "conditional.with.request",
                    {
                        "id": "maybe_process",
                        "uses": "content_processor",
                        "if": {"path": "payload.run_processor", "op": "eq", "value": True},
                        "with": {
                            "content": "branch true for {payload.subject}",
                            "status": "{payload.status}",
                        },
                    },
                    {"id": "finished", "uses": "event_echo"},
                )
            ],
        ),
        (),
    ),
    "config-view-redaction": (
        docker_set(
            18561,
            {
                "app": {
                    **alias("echo", message="app ran", nested={"api_key": "PLAINTEXT"}),
                    "schedules": [{"every": "1h", "payload": {"token": "PLAINTEXT"}}],
                }
            },
            roots=REPO_PLUGINS,
        ),
        (),
    ),
    "context-aware-trigger-if": (
        docker_set(
            18518,
            {
                "emit_event_with_role": {
                    "enabled": True,
                    "config": {"event_type": "test.downstream.check"},
                },
                "emit_no_context": alias(
                    "emit_event_with_role", event_type="test.no_context_trigger"
                ),
                "downstream_admin": alias("echo", message="downstream_admin fired"),
                "downstream_guest": alias("echo", message="downstream_guest fired"),
                "downstream_no_context": alias("echo", message="downstream_no_context fired"),
            },
            roots=(*REPO_PLUGINS, "../plugins"),
            pipelines=[
                pipeline(
                    "upstream_emits_admin_role",
                    "test.upstream_trigger",
                    {
                        "id": "emit_admin",
                        "uses": "emit_event_with_role",
                        "baggage": {"role": "payload.role"},
                    },
                ),
                pipeline(
                    "downstream_for_admin",
                    "test.downstream.check",
                    {"uses": "downstream_admin"},
                    **{"if": {"path": "context.role", "op": "eq", "value": "admin"}},
                ),
                pipeline(
                    "downstream_for_guest",
                    "test.downstream.check",
                    {"uses": "downstream_guest"},
                    **{"if": {"path": "context.role", "op": "eq", "value": "guest"}},
                ),
                pipeline(
                    "root_with_context_predicate",
                    "test.no_context_trigger",
                    {"uses": "downstream_no_context"},
                    **{"if": {"path": "context.role", "op": "exists"}},
                ),
            ],
        ),
        (),
    ),
    "fanout-dedupe-scope": (
        docker_set(
            18562,
            {
                "emitter": alias("emit_event", event_type="work.ready"),
                "branch_a": alias("echo", message="branch a ran"),
                "branch_b": alias("echo", message="branch b ran"),
            },
            roots=(*REPO_PLUGINS, "../plugins"),
            pipelines=[
                pipeline("start-fanout", "fanout.start", {"id": "emit", "uses": "emitter"}),
                pipeline("consume-a", "work.ready", {"id": "run", "uses": "branch_a"}),
                pipeline("consume-b", "work.ready", {"id": "run", "uses": "branch_b"}),
            ],
        ),
        (),
    ),
    "fetch-plugin": (
        docker_set(18282, {"fetch": {"enabled": True, "config": {"output_format": "markdown"}}}),
        (),
    ),
    "file_handler": (
        docker_set(
            18181, {"file_handler": {"enabled": True, "config": {"allowed_read_paths": "/tmp/fh"}}}
        ),
        (),
    ),
    "file_watch": (
        docker_set(
            18181,
            {
                "file_watch": {
                    "enabled": True,
                    "config": {"watches": [{"id": "single-file", "path": "/tmp/f.txt"}]},
                    "schedules": [{"command": "poll", "every": "1s"}],
                },
                **ECHO,
            },
            config={"tick_interval": "1s"},
            pipelines=[
                pipeline("file-watch-pipeline", "file.changed", {"id": "notify", "uses": "echo"})
            ],
        ),
        (),
    ),
    "folder_watch": (
        docker_set(
            18181,
            {
                "folder_watch": {
                    "enabled": True,
                    "config": {"watches": [{"id": "test-watch", "root": "/tmp/w"}]},
                    "schedules": [{"command": "poll", "every": "1s"}],
                },
                **ECHO,
            },
            config={"tick_interval": "1s"},
            pipelines=[pipeline("watch-pipeline", "file.found", {"id": "notify", "uses": "echo"})],
        ),
        (),
    ),
    "from-plugin-scoping": (
        docker_set(
            18517,
            {
                "plugin_a": {**alias("echo", message="plugin_a"), "notify_on_complete": True},
                "plugin_b": {**alias("echo", message="plugin_b"), "notify_on_complete": True},
                "hook_scoped_to_a": alias("echo", message="a"),
                "hook_scoped_to_b": alias("echo", message="b"),
                "hook_always": alias("echo", message="always"),
            },
            roots=REPO_PLUGINS,
            pipelines=[
                {
                    "name": "hook_scoped_to_a",
                    "on-hook": "job.completed",
                    "from_plugin": "plugin_a",
                    "steps": [{"uses": "hook_scoped_to_a"}],
                },
                {
                    "name": "hook_scoped_to_b",
                    "on-hook": "job.completed",
                    "from_plugin": "plugin_b",
                    "steps": [{"uses": "hook_scoped_to_b"}],
                },
                {
                    "name": "hook_always",
                    "on-hook": "job.completed",
                    "steps": [{"uses": "hook_always"}],
                },
            ],
        ),
        (),
    ),
    "hook-route-compilation": (
        docker_set(
            18481,
            {
                "root_echo": {**alias("echo", message="source"), "notify_on_complete": True},
                "hook_echo": alias("echo", message="sink"),
            },
            pipelines=[
                {
                    "name": "hook-call-entry",
                    "on-hook": "job.completed",
                    "steps": [{"id": "dispatch", "call": "hook-call-target"}],
                },
                pipeline(
                    "hook-call-target",
                    "internal.hook.target",
                    {"id": "notify", "uses": "hook_echo"},
                ),
            ],
        ),
        (),
    ),
    "pipeline-level-if": (
        docker_set(
            18516,
            {
                "emit_event_guarded": alias("emit_event", event_type="pipeline.if.guarded"),
                "emit_event_unguarded": alias("emit_event", event_type="pipeline.if.unguarded"),
                "guarded_step": {**alias("echo", message="guarded"), "notify_on_complete": True},
                "always_step": {**alias("echo", message="always"), "notify_on_complete": True},
                "hook_step": alias("echo", message="hook"),
            },
            roots=(*REPO_PLUGINS, "../plugins"),
            pipelines=[
                pipeline(
                    "starter-guarded",
                    "starter.unused.guarded",
                    {"id": "emit", "uses": "emit_event_guarded"},
                ),
                pipeline(
                    "starter-unguarded",
                    "starter.unused.unguarded",
                    {"id": "emit", "uses": "emit_event_unguarded"},
                ),
                pipeline(
                    "pipeline-level-if-guarded",
                    "pipeline.if.guarded",
                    {"id": "run", "uses": "guarded_step"},
                    **{"if": {"path": "payload.kind", "op": "eq", "value": "workout"}},
                ),
                pipeline(
                    "pipeline-level-if-unguarded",
                    "pipeline.if.unguarded",
                    {"id": "run", "uses": "always_step"},
                ),
                {
                    "name": "hook-scoped-notify",
                    "on-hook": "job.completed",
                    "if": {"path": "payload.plugin", "op": "eq", "value": "guarded_step"},
                    "steps": [{"id": "notify", "uses": "hook_step"}],
                },
            ],
        ),
        (),
    ),
    "reload-lifecycle": (
        docker_set(
            18381,
            ECHO,
            pipelines=[pipeline("reload-smoke", "reload.smoke", {"id": "entry", "uses": "echo"})],
        ),
        (),
    ),
    "scheduler-recovery": (docker_set(18281, ECHO, pipelines=[]), ()),
    "sync-terminal-route": (
        docker_set(
            18482,
            {"step-a": {"enabled": True}, "step-b": {"enabled": True}},
            pipelines=[
                pipeline(
                    "if-sync",
                    "demo.start",
                    {
                        "id": "first",
                        "uses": "step-a",
                        "if": {"path": "payload.run_first", "op": "eq", "value": True},
                    },
                    {"id": "second", "uses": "step-b"},
                    execution_mode="synchronous",
                    timeout="5s",
                )
            ],
        ),
        (),
    ),
    "sys_exec": (
        docker_set(
            18181,
            {
                "sys_exec": {
                    "enabled": True,
                    "config": {"working_dir": "./state", "command": ["sh", "-c", "echo"]},
                }
            },
            pipelines=[
                pipeline("test-pipeline", "test.trigger", {"id": "run_shell", "uses": "sys_exec"})
            ],
        ),
        (),
    ),
    "webhook-ingress": (
        docker_set(
            18081,
            ECHO,
            pipelines=[],
            more={
                "webhooks.yaml": {
                    "webhooks": {
                        "endpoints": [
                            {
                                "path": "/webhook/github",
                                "plugin": "echo",
                                "secret_ref": "github_webhook_secret",
                                "signature_header": "X-Hub-Signature-256",
                                "max_body_size": "1MB",
                            }
                        ]
                    }
                },
                "tokens.yaml": {
                    "tokens": [
                        {
                            "name": "github_webhook_secret",
                            "key": "test-secret",
                            "scopes_file": "scopes/webhook.json",
                            "scopes_hash": "blake3:dummy",
                        }
                    ]
                },
            },
        ),
        (),
    ),
}
DOCKER_SETS["webhook-ingress"][0]["config.yaml"]["webhooks"] = {"listen": "127.0.0.1:18091"}

#: The plugins of Ductile's repository and fixture directories those sets use.
DUCTILE_PLUGINS = (
    "echo",
    "sys_exec",
    "emit_event",
    "fetch",
    "file_handler",
    "file_watch",
    "folder_watch",
    "step-a",
    "step-b",
)


@pytest.mark.parametrize("name", sorted(DOCKER_SETS))
def test_docker_fixture_sets(name: str, tmp_path: Path) -> None:
    files, expected = DOCKER_SETS[name]
    directory = materialize(tmp_path / "test/fixtures/docker" / name / "config", files)
    stand_in_plugins(tmp_path / "plugins", *DUCTILE_PLUGINS)
    stand_in_plugins(directory / "plugins", *DUCTILE_PLUGINS)
    stand_in_plugins(directory.parent / "plugins", "emit_event_with_role")
    if not expected:
        loaded = prepare(str(directory))
        assert loaded.config.api.auth.tokens[0].name == "token-0"
        configured = set(files["plugins.yaml"]["plugins"])
        assert configured <= set(loaded.plugins)
        return
    with pytest.raises(ConfigError) as info:
        prepare(str(directory))
    assert info.value.problems == tuple(expected)


def test_context_aware_trigger_if_numbers_its_steps_as_ductile_does(tmp_path: Path) -> None:
    # Its pipeline-level conditions load as written, and its steps without an id get
    # Ductile's step_1.
    files, _ = DOCKER_SETS["context-aware-trigger-if"]
    directory = materialize(
        tmp_path / "test/fixtures/docker/context-aware-trigger-if/config", files
    )
    stand_in_plugins(tmp_path / "plugins", *DUCTILE_PLUGINS)
    stand_in_plugins(directory / "plugins", *DUCTILE_PLUGINS)
    stand_in_plugins(directory.parent / "plugins", "emit_event_with_role")
    loaded = prepare(str(directory))
    gates = {p.name: p.if_ for p in loaded.config.pipelines}
    admin = gates["downstream_for_admin"]
    assert admin is not None and (admin.path, admin.op, admin.value) == (
        "context.role",
        "eq",
        "admin",
    )
    assert gates["upstream_emits_admin_role"] is None
    ids = {p.name: [s.id for s in p.steps] for p in loaded.config.pipelines}
    assert ids == {
        "upstream_emits_admin_role": ["emit_admin"],
        "downstream_for_admin": ["step_1"],
        "downstream_for_guest": ["step_1"],
        "root_with_context_predicate": ["step_1"],
    }


def test_hook_sets_load_their_hooks_and_calls(tmp_path: Path) -> None:
    # on-hook, notify_on_complete and call, as the hook fixture sets write them.
    files, _ = DOCKER_SETS["hook-route-compilation"]
    directory = materialize(tmp_path / "test/fixtures/docker/hook-route-compilation/config", files)
    stand_in_plugins(directory / "plugins", *DUCTILE_PLUGINS)
    loaded = prepare(str(directory))
    entry = loaded.config.pipelines[0]
    assert (entry.on, entry.on_hook, entry.steps[0].call) == (
        None,
        "job.completed",
        "hook-call-target",
    )
    assert loaded.plugins["root_echo"].settings.notify_on_complete is True
    assert loaded.plugins["hook_echo"].settings.notify_on_complete is False


def test_webhook_secret_ref_takes_its_key_from_tokens_yaml(tmp_path: Path) -> None:
    directory = materialize(tmp_path / "config", DOCKER_SETS["webhook-ingress"][0])
    stand_in_plugins(directory / "plugins", "echo")
    config = load_config(directory, environ={})
    endpoint = config.webhooks.endpoints[0]
    # Chamberlain's MB is 10**6 bytes, Ductile's 2**20 (see docs/DUCTILE.md).
    assert (endpoint.secret, endpoint.max_body_size) == ("test-secret", 1_000_000)
    assert config.secret_references == ()
    assert any(w.startswith("tokens[].scopes_file: accepted") for w in config.warnings)


def test_aliases_bind_the_base_manifest_under_their_own_name(tmp_path: Path) -> None:
    files = DOCKER_SETS["fanout-dedupe-scope"][0]
    directory = materialize(tmp_path / "test/fixtures/docker/fanout/config", files)
    stand_in_plugins(tmp_path / "plugins", "echo", "emit_event")
    (directory.parent / "plugins").mkdir()
    plugins = prepare(str(directory)).plugins
    assert plugins["branch_a"].manifest.directory == plugins["echo"].manifest.directory
    assert plugins["branch_a"].name == "branch_a"
    assert plugins["branch_a"].settings.config == {"message": "branch a ran"}
    assert plugins["branch_b"].settings.config == {"message": "branch b ran"}
    assert plugins["echo"].settings.config == {}


# ----------------------------------------------------------------------- loading


def test_include_reads_directories_and_nested_includes_relative_to_their_file(
    tmp_path: Path,
) -> None:
    write(tmp_path / "config.yaml", {"include": ["parts", "more/extra.yaml"]})
    write(tmp_path / "parts/a.yaml", {"api": {"listen": "127.0.0.1:9001"}})
    write(tmp_path / "parts/sub/b.yaml", {"plugin_roots": ["p2"]})
    write(tmp_path / "more/extra.yaml", {"include": ["last.yaml"], "plugin_roots": ["p3"]})
    write(tmp_path / "more/last.yaml", {"api": {"listen": "127.0.0.1:9002"}})
    config = load_config(tmp_path / "config.yaml", environ={})
    # Later files win for a value; lists are appended in reading order.
    assert config.api.listen == "127.0.0.1:9002"
    assert config.plugin_roots == (tmp_path / "p2", tmp_path / "p3")


def test_a_later_file_replaces_a_plugin_whole(tmp_path: Path) -> None:
    write(
        tmp_path / "config.yaml",
        {"plugins": {"echo": {"enabled": False, "config": {"a": 1}}}, "include": ["b.yaml"]},
    )
    write(tmp_path / "b.yaml", {"plugins": {"echo": {"config": {"b": 2}}}})
    plugin = load_config(tmp_path, environ={}).plugins["echo"]
    assert (plugin.enabled, plugin.config) == (True, {"b": 2})


def test_problems_name_the_included_file_and_yaml_path(tmp_path: Path) -> None:
    write(tmp_path / "config.yaml", {"service": {"max_workers": "x"}, "include": ["p.yaml"]})
    write(tmp_path / "p.yaml", {"plugins": {"echo": {"retyr": {}}}})
    assert errors(tmp_path) == (
        "service.max_workers: expected an integer, got 'x'",
        "in p.yaml: plugins.echo.retyr: unknown key (did you mean 'retry'?)",
    )


def test_yaml_errors_in_an_included_file_name_that_file(tmp_path: Path) -> None:
    write(tmp_path / "config.yaml", {"include": ["p.yaml"]})
    (tmp_path / "p.yaml").write_text("plugins: [\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})
    assert str(info.value).startswith(f"{tmp_path / 'p.yaml'}: invalid YAML at line 2")


def test_missing_and_circular_includes_are_errors(tmp_path: Path) -> None:
    write(tmp_path / "config.yaml", {"include": ["nope.yaml"]})
    assert errors(tmp_path) == (f"include[0]: file not found: {tmp_path / 'nope.yaml'}",)
    write(tmp_path / "config.yaml", {"include": ["b.yaml"]})
    write(tmp_path / "b.yaml", {"include": ["../" + tmp_path.name + "/config.yaml"]})
    root, b = tmp_path / "config.yaml", tmp_path / "b.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})
    assert str(info.value) == f"{b}: include[0]: {root} includes itself ({root} -> {b} -> {root})"
    # As in Ductile, a file is read once: two routes to one file are refused too.
    write(tmp_path / "config.yaml", {"include": ["b.yaml", "c.yaml"]})
    write(tmp_path / "b.yaml", {"include": ["c.yaml"]})
    write(tmp_path / "c.yaml", {})
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})
    assert str(info.value) == (
        f"{root}: include[1]: {tmp_path / 'c.yaml'} is already read (a file is read once)"
    )


def test_include_paths_are_interpolated(tmp_path: Path) -> None:
    write(tmp_path / "config.yaml", {"include": ["${PART}.yaml"]})
    write(tmp_path / "api.yaml", {"api": {"enabled": False}})
    assert load_config(tmp_path, environ={"PART": "api"}).api.enabled is False
    assert errors(tmp_path) == ("include[0]: environment variable PART is not set",)


def test_include_is_only_read_from_a_file() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"include": ["a.yaml"]}, base_dir=Path("/"), environ={})
    assert info.value.problems == (
        "include: include is only read from a file (chamberlain start --config FILE)",
    )


def test_environment_vars_include_fills_unset_variables(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# tokens\n\nexport ADMIN='from-file'\nNAME = \"svc\"\nKEPT=file\n", encoding="utf-8"
    )
    write(
        tmp_path / "config.yaml",
        {
            "environment_vars": {"include": [".env"]},
            "service": {"name": "${NAME}-${KEPT}"},
            "api": {"auth": {"tokens": [{"token": "${ADMIN}", "scopes": ["*"]}]}},
        },
    )
    config = load_config(tmp_path, environ={"KEPT": "env"})
    assert config.service.name == "svc-env"  # the environment wins, as in Ductile
    assert config.api.auth.tokens[0].token == "from-file"


def test_environment_vars_problems_name_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GOOD=1\njust words\n", encoding="utf-8")
    write(tmp_path / "config.yaml", {"environment_vars": {"include": [".env", "none"]}})
    assert errors(tmp_path) == (
        f"environment_vars.include[0]: {tmp_path / '.env'}: line 2: expected KEY=value",
    )
    write(tmp_path / "config.yaml", {"environment_vars": {"include": ["none"]}})
    assert errors(tmp_path) == (
        f"environment_vars.include[0]: {tmp_path / 'none'}: file not found",
    )
    write(tmp_path / "config.yaml", {"environment_vars": {"files": []}})
    assert errors(tmp_path) == ("environment_vars.files: unknown key (expected: include)",)


# ------------------------------------------------------------------ key by key


def parse(data: dict[str, Any]) -> Any:
    return parse_config(data, base_dir=Path("/srv"), environ={})


def problems(data: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse(data)
    return info.value.problems


def test_every_ignored_key_is_one_warning_naming_where_it_is() -> None:
    config = parse(
        {
            "tcc_paths": ["/Users/x"],
            "service": {"allow_symlinks": True, "job_queue_retention": "1h"},
            "api": {"allowed_origins": ["https://x"]},
            "plugins": {
                "a": {
                    "notify_on_complete": True,
                    "schedules": [{"every": "1h", "preferred_window": {}}],
                },
                "b": {"notify_on_complete": False},
            },
        }
    )
    assert [w.split(": ")[0] for w in config.warnings] == [
        "tcc_paths",
        "service.allow_symlinks",
        "service.job_queue_retention",
        "api.allowed_origins",
        "plugins.*.schedules[].preferred_window (in a)",
    ]
    # notify_on_complete has its effect now (on-hook pipelines): read, not warned about.
    assert [config.plugins[n].notify_on_complete for n in ("a", "b")] == [True, False]


def test_keys_in_neither_schema_stay_errors() -> None:
    assert problems({"service": {"tick_intervall": "1s"}, "plugins": {"e": {"use": "x"}}}) == (
        "service.tick_intervall: unknown key (did you mean 'sweep_interval'?)",
        "plugins.e.use: unknown key (did you mean 'uses'?)",
    )


def test_database_is_an_alias_of_state() -> None:
    assert parse({"database": {"path": "d.db"}}).state.path == Path("/srv/d.db")
    assert problems({"database": {}, "state": {}}) == (
        "database: give state or its alias database, not both",
    )


def test_a_single_schedule_and_max_outstanding_polls() -> None:
    plugin = parse(
        {"plugins": {"e": {"schedule": {"every": "1h"}, "max_outstanding_polls": 3}}}
    ).plugins["e"]
    assert [(s.every is not None, s.max_outstanding) for s in plugin.schedules] == [(True, 3)]
    plugin = parse(
        {
            "plugins": {
                "e": {
                    "schedules": [
                        {"id": "a", "every": "1h"},
                        {"id": "b", "every": "1h", "max_outstanding": 5},
                    ],
                    "max_outstanding_polls": 2,
                }
            }
        }
    ).plugins["e"]
    assert [s.max_outstanding for s in plugin.schedules] == [2, 5]
    assert parse({"plugins": {"e": {"max_outstanding_polls": 2}}}).warnings == (
        "plugins.e.max_outstanding_polls: no effect, the plugin has no schedules",
    )


def test_secret_ref_without_tokens_yaml_names_a_registry_secret() -> None:
    config = parse(
        {"webhooks": [{"path": "/hook", "plugin": "p", "secret_ref": "hook_key"}]}  # flat form
    )
    assert config.webhooks.endpoints[0].secret == "${secret:hook_key}"
    assert [r.name for r in config.secret_references] == ["hook_key"]
    assert problems(
        {
            "webhooks": {
                "endpoints": [{"path": "/h", "plugin": "p", "secret": "s", "secret_ref": "k"}]
            }
        }
    ) == ("webhooks.endpoints[0].secret_ref: give secret or secret_ref, not both",)


def test_named_tokens_and_ductile_scopes() -> None:
    tokens = parse(
        {
            "api": {
                "auth": {
                    "tokens": [
                        {"name": "ops", "token": "a", "scopes": ["jobs:rw"]},
                        {"token": "b", "scopes": ["job:rw", "system:rw"]},
                        {"token": "c", "scopes": ["system:ro", "plugin:ro"]},
                    ]
                }
            }
        }
    ).api.auth.tokens
    # system:rw guards Ductile's POST /system/reload, which admin guards here;
    # system:ro guards /config/view, which is not served: dropped.
    assert [(t.name, t.scopes) for t in tokens] == [
        ("ops", ("jobs:rw",)),
        ("token-1", ("jobs:rw", "admin")),
        ("token-2", ("plugin:ro",)),
    ]


def test_an_alias_needs_a_discovered_base_and_a_name_of_its_own(tmp_path: Path) -> None:
    echo = Manifest(
        name="echo",
        version="1",
        protocol=2,
        entrypoint=tmp_path / "run.sh",
        directory=tmp_path,
        commands=(CommandSpec(name="poll", type=CommandType.READ),),
    )
    discovery = Discovery(plugins={"echo": echo}, skipped=())
    config = parse(
        {"plugins": {"ghost": {"uses": "nothing"}, "echo": {"uses": "echo"}, "x": {"uses": "echo"}}}
    )
    with pytest.raises(ConfigError) as info:
        bind_plugins(config, discovery)
    assert info.value.problems == (
        "plugins.echo.uses: an alias must name another plugin",
        "plugins.ghost.uses: no plugin named 'nothing' was found under the plugin roots"
        " (/srv/plugins)",
    )
    other = Discovery(plugins={"echo": echo, "other": echo}, skipped=())
    with pytest.raises(ConfigError) as info:
        bind_plugins(parse({"plugins": {"other": {"uses": "echo"}}}), other)
    assert info.value.problems == (
        "plugins.other.uses: a plugin named 'other' was discovered; an alias needs a name"
        " of its own",
    )


def test_an_undiscovered_plugin_warns_and_the_rest_bind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    echo = Manifest(
        name="echo",
        version="1",
        protocol=2,
        entrypoint=tmp_path / "run.sh",
        directory=tmp_path,
        commands=(CommandSpec(name="poll", type=CommandType.READ),),
    )
    config = parse({"plugins": {"ghost": {}, "echo": {}}})
    with caplog.at_level(logging.WARNING, logger="chamberlain.plugins"):
        bound = bind_plugins(config, Discovery(plugins={"echo": echo}, skipped=()))
    assert list(bound) == ["echo"]
    assert [r.getMessage() for r in caplog.records] == [
        "plugins.ghost: no plugin named 'ghost' was found under the plugin roots"
        " (/srv/plugins); its settings are not used"
    ]
