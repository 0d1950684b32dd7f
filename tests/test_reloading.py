"""The reload planner: which differences between two files apply at once, which wait
for a restart, and which configuration the daemon runs from then on."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from conftest import deep_merge

from chamberlain.config import Config, parse_config
from chamberlain.plugins.binding import BoundPlugin, bind_plugins
from chamberlain.plugins.registry import discover
from chamberlain.records import ChangeKind
from chamberlain.reloading import ReloadPlan, plan_reload

#: The file every test starts from; each test lays its differences over it.
BASE: dict[str, Any] = {"service": {"max_workers": 2}, "plugins": {"echo": {}}}

ROUTE = {"from": "echo", "event_type": "echo.poll", "to": "echo.handle"}
HOOK = {"path": "/hooks/gh", "plugin": "echo", "secret": "hook-secret-value"}


def pipeline(name: str, uses: str = "echo.handle") -> dict[str, Any]:
    return {"name": name, "on": f"manual.{name}", "steps": [{"id": "only", "uses": uses}]}


def write_plugin(root: Path, name: str, *, version: str = "1.0.0") -> None:
    """A plugin that declares poll and handle; nothing runs it here."""
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": name,
        "version": version,
        "protocol": 2,
        "entrypoint": "run.sh",
        "commands": [{"name": "poll", "type": "read"}, {"name": "handle", "type": "write"}],
    }
    (directory / "manifest.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    entry = directory / "run.sh"
    entry.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    entry.chmod(0o755)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A plugin root holding ``echo`` and ``other``."""
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "echo")
    write_plugin(plugins, "other")
    return plugins


def load(root: Path, extra: dict[str, Any]) -> tuple[Config, dict[str, BoundPlugin]]:
    """BASE with ``extra`` laid over it, and its plugins, as a start or reload loads them."""
    data = deep_merge({**BASE, "plugin_roots": [str(root)]}, extra)
    config = parse_config(data, base_dir=root.parent)
    discovery = discover(config.plugin_roots, trusted_owners=config.service.trusted_plugin_owners)
    return config, bind_plugins(config, discovery)


def plan(
    root: Path,
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    webhooks_served: bool = True,
    running: Config | None = None,
    meanwhile: Callable[[], None] = lambda: None,
) -> ReloadPlan:
    """The plan of reloading from file ``old`` (run as ``running``, default as is) to
    ``new``; ``meanwhile`` changes the plugin root between the two loads."""
    previous, plugins = load(root, old)
    meanwhile()
    loaded, new_plugins = load(root, new)
    return plan_reload(
        running=running or previous,
        previous=previous,
        new=loaded,
        plugins=plugins,
        new_plugins=new_plugins,
        webhooks_served=webhooks_served,
    )


def changes(p: ReloadPlan) -> dict[str, tuple[ChangeKind, str | None]]:
    """Each change's (kind, detail) by its path; a path listed twice is a failure."""
    found = {c.path: (c.change, c.detail) for c in p.changes}
    assert len(found) == len(p.changes), p.changes
    return found


def shown(p: ReloadPlan) -> str:
    """Everything the API answers and the log records about the plan."""
    return json.dumps([c.to_json() for c in p.changes])


# ------------------------------------------------------------------- no difference


def test_the_same_file_again_changes_nothing(root: Path) -> None:
    rich = {
        "service": {"log_level": "info"},
        "plugins": {"echo": {"schedules": [{"id": "tick", "every": "5m"}]}},
        "routes": [ROUTE],
        "pipelines": [pipeline("greet")],
        "webhooks": {"endpoints": [HOOK]},
        "api": {"auth": {"tokens": [{"name": "a", "token": "tok-a", "scopes": ["jobs:ro"]}]}},
        "workspaces": {"ttl": "1d"},
    }
    p = plan(root, rich, rich)
    assert p.changes == ()
    assert p.restart_required == ()
    assert (p.added, p.removed, p.changed) == ((), (), ())
    assert p.config == load(root, rich)[0]


# ------------------------------------------------------------------------ plugins


def test_a_plugin_new_under_the_roots_is_added(root: Path) -> None:
    p = plan(root, {}, {}, meanwhile=lambda: write_plugin(root, "late"))
    assert p.added == ("late",)
    assert (p.removed, p.changed) == ((), ())
    assert changes(p) == {"plugins.late": (ChangeKind.ADDED, None)}
    assert sorted(p.plugins) == ["echo", "late", "other"]


def test_a_plugin_disabled_in_the_file_is_removed(root: Path) -> None:
    p = plan(root, {}, {"plugins": {"other": {"enabled": False}}})
    assert p.removed == ("other",)
    assert (p.added, p.changed) == ((), ())
    assert changes(p) == {"plugins.other": (ChangeKind.REMOVED, None)}
    assert sorted(p.plugins) == ["echo"]


def test_a_timeout_change_changes_the_plugin_and_reaches_its_binding(root: Path) -> None:
    p = plan(root, {}, {"plugins": {"echo": {"timeouts": {"poll": "5s"}}}})
    assert p.changed == ("echo",)
    assert changes(p) == {"plugins.echo": (ChangeKind.CHANGED, "settings")}
    assert p.plugins["echo"].timeout_for("poll") == 5.0
    assert p.config.plugins["echo"].timeouts["poll"] == 5.0


def test_a_parallelism_change_shows_both_values(root: Path) -> None:
    p = plan(root, {}, {"plugins": {"echo": {"parallelism": 1}}})
    assert p.changed == ("echo",)
    assert changes(p) == {"plugins.echo": (ChangeKind.CHANGED, "settings, parallelism 2 -> 1")}
    assert p.plugins["echo"].parallelism == 1


def test_a_new_manifest_version_is_named(root: Path) -> None:
    p = plan(root, {}, {}, meanwhile=lambda: write_plugin(root, "echo", version="1.1.0"))
    assert p.changed == ("echo",)
    assert changes(p) == {"plugins.echo": (ChangeKind.CHANGED, "version 1.0.0 -> 1.1.0")}
    assert p.plugins["echo"].manifest.version == "1.1.0"


# ---------------------------------------------------------------------- schedules


def test_schedules_added_removed_and_changed_are_listed_each_at_its_path(root: Path) -> None:
    old = {
        "plugins": {
            "echo": {
                "schedules": [
                    {"id": "kept", "every": "5m"},
                    {"id": "retimed", "every": "5m"},
                    {"id": "dropped", "every": "1h"},
                ]
            }
        }
    }
    new = {
        "plugins": {
            "echo": {
                "schedules": [
                    {"id": "kept", "every": "5m"},
                    {"id": "retimed", "every": "10m"},
                    {"id": "fresh", "cron": "0 3 * * *"},
                ]
            }
        }
    }
    found = changes(plan(root, old, new))
    assert found == {
        "plugins.echo": (ChangeKind.CHANGED, "settings"),
        "plugins.echo.schedules.fresh": (ChangeKind.ADDED, None),
        "plugins.echo.schedules.dropped": (ChangeKind.REMOVED, None),
        "plugins.echo.schedules.retimed": (ChangeKind.CHANGED, None),
    }


def test_a_schedule_of_a_removed_plugin_is_removed_with_it(root: Path) -> None:
    old = {"plugins": {"other": {"schedules": [{"id": "tick", "every": "5m"}]}}}
    new = {"plugins": {"other": {"enabled": False, "schedules": [{"id": "tick", "every": "5m"}]}}}
    assert changes(plan(root, old, new)) == {
        "plugins.other": (ChangeKind.REMOVED, None),
        "plugins.other.schedules.tick": (ChangeKind.REMOVED, None),
    }


# ------------------------------------------------------------------------ service


def test_max_workers_applies_and_shows_both_values(root: Path) -> None:
    p = plan(root, {}, {"service": {"max_workers": 4}})
    found = changes(p)
    assert found["service.max_workers"] == (ChangeKind.CHANGED, "2 -> 4")
    assert p.config.service.max_workers == 4
    # Their parallelism follows max_workers, as a start with the new file would set it.
    assert found["plugins.echo"] == (ChangeKind.CHANGED, "parallelism 2 -> 4")
    assert p.plugins["echo"].parallelism == 4
    assert p.restart_required == ()


def test_log_level_applies_and_shows_both_values(root: Path) -> None:
    p = plan(root, {"service": {"log_level": "info"}}, {"service": {"log_level": "debug"}})
    assert changes(p) == {"service.log_level": (ChangeKind.CHANGED, "info -> debug")}
    assert p.config.service.log_level == "debug"


# ------------------------------------------------------------ routes and pipelines


def test_routes_applied_with_their_count(root: Path) -> None:
    p = plan(root, {}, {"routes": [ROUTE]})
    assert changes(p) == {"routes": (ChangeKind.CHANGED, "0 -> 1 routes")}
    assert p.config.routes == load(root, {"routes": [ROUTE]})[0].routes
    assert len(p.config.routes) == 1


def test_pipelines_added_removed_and_changed_by_name(root: Path) -> None:
    old = {"pipelines": [pipeline("kept"), pipeline("edited"), pipeline("dropped")]}
    new = {
        "pipelines": [pipeline("kept"), pipeline("edited", uses="other.handle"), pipeline("new")]
    }
    p = plan(root, old, new)
    assert changes(p) == {
        "pipelines.new": (ChangeKind.ADDED, None),
        "pipelines.dropped": (ChangeKind.REMOVED, None),
        "pipelines.edited": (ChangeKind.CHANGED, None),
    }
    assert [x.name for x in p.config.pipelines] == ["kept", "edited", "new"]


# ----------------------------------------------------------------------- api.auth


def test_tokens_that_came_and_went_are_named_never_shown(root: Path) -> None:
    old = {
        "api": {
            "auth": {
                "api_key": "old-key-value",
                "tokens": [
                    {"name": "gone", "token": "gone-token-value", "scopes": ["jobs:ro"]},
                    {"name": "kept", "token": "kept-token-value", "scopes": ["jobs:ro"]},
                ],
            }
        }
    }
    new = {
        "api": {
            "auth": {
                "api_key": "new-key-value",
                "tokens": [
                    {"name": "kept", "token": "rotated-token-value", "scopes": ["jobs:ro"]},
                    {"name": "fresh", "token": "fresh-token-value", "scopes": ["jobs:rw"]},
                ],
            }
        }
    }
    p = plan(root, old, new)
    assert changes(p) == {"api.auth": (ChangeKind.CHANGED, "+fresh -gone")}
    # The new tokens are the ones checked from now on.
    assert p.config.api.auth == load(root, new)[0].api.auth
    text = shown(p)
    for secret in ("old-key-value", "new-key-value", "gone-token-value", "kept-token-value"):
        assert secret not in text
    assert "rotated-token-value" not in text and "fresh-token-value" not in text


def test_a_rotated_token_changes_auth_without_a_detail(root: Path) -> None:
    old = {"api": {"auth": {"tokens": [{"name": "t", "token": "before-value", "scopes": ["*"]}]}}}
    new = {"api": {"auth": {"tokens": [{"name": "t", "token": "after-value", "scopes": ["*"]}]}}}
    p = plan(root, old, new)
    assert changes(p) == {"api.auth": (ChangeKind.CHANGED, None)}
    assert p.config.api.auth.tokens[0].token == "after-value"
    assert "before-value" not in shown(p) and "after-value" not in shown(p)


def test_a_start_only_section_holding_a_secret_is_named_not_shown(root: Path) -> None:
    def repository(token: str) -> dict[str, Any]:
        return {"repositories": {"app": {"url": "https://github.com/acme/app.git", "token": token}}}

    p = plan(root, repository("ghp_before_value"), repository("ghp_after_value"))
    assert changes(p) == {"repositories": (ChangeKind.RESTART_REQUIRED, "kept until a restart")}
    assert p.config.repositories["app"].token == "ghp_before_value"
    assert "ghp_before_value" not in shown(p) and "ghp_after_value" not in shown(p)


def test_secrets_in_use_are_what_runs_and_what_the_next_start_needs(root: Path) -> None:
    def file(repository_secret: str, plugin_secret: str) -> dict[str, Any]:
        return {
            "repositories": {
                "app": {
                    "url": "https://github.com/acme/app.git",
                    "token": f"${{secret:{repository_secret}}}",
                }
            },
            "plugins": {"echo": {"config": {"key": f"${{secret:{plugin_secret}}}"}}},
        }

    p = plan(root, file("repo_old", "echo_old"), file("repo_new", "echo_new"))
    # The kept section still runs on its old secret and will start on the new one:
    # both are in use (DELETE /secrets refuses either); the live plugin settings
    # use only the new one.
    assert {(r.path, r.name) for r in p.config.secret_references} == {
        ("repositories.app.token", "repo_old"),
        ("repositories.app.token", "repo_new"),
        ("plugins.echo.config.key", "echo_new"),
    }


# ----------------------------------------------------------------------- webhooks


def test_a_webhook_endpoint_on_the_api_listener_is_added_live(root: Path) -> None:
    p = plan(root, {}, {"webhooks": {"endpoints": [HOOK]}}, webhooks_served=False)
    assert changes(p) == {"webhooks.endpoints./hooks/gh": (ChangeKind.ADDED, None)}
    assert [e.path for e in p.config.webhooks.endpoints] == ["/hooks/gh"]
    assert "hook-secret-value" not in shown(p)


def test_a_webhook_endpoint_added_where_a_listener_is_up_is_added_live(root: Path) -> None:
    old = {"webhooks": {"listen": "127.0.0.1:9100", "endpoints": [HOOK]}}
    second = {**HOOK, "path": "/hooks/second"}
    new = {"webhooks": {"listen": "127.0.0.1:9100", "endpoints": [HOOK, second]}}
    p = plan(root, old, new, webhooks_served=True)
    assert changes(p) == {"webhooks.endpoints./hooks/second": (ChangeKind.ADDED, None)}
    assert [e.path for e in p.config.webhooks.endpoints] == ["/hooks/gh", "/hooks/second"]


def test_webhook_endpoints_without_their_listener_wait_for_a_restart(root: Path) -> None:
    # The listener of webhooks.listen opens at start, and only with endpoints to serve.
    old = {"webhooks": {"listen": "127.0.0.1:9100"}}
    new = {"webhooks": {"listen": "127.0.0.1:9100", "endpoints": [HOOK]}}
    p = plan(root, old, new, webhooks_served=False)
    waits = (ChangeKind.RESTART_REQUIRED, "webhooks.listen has no listener until a restart")
    assert changes(p) == {"webhooks.endpoints./hooks/gh": waits}
    assert [c.path for c in p.restart_required] == ["webhooks.endpoints./hooks/gh"]
    assert p.config.webhooks.endpoints == ()
    assert p.config.webhooks.listen == "127.0.0.1:9100"


# ----------------------------------------------------------------- restart required


def test_start_only_settings_are_reported_and_keep_their_running_values(
    root: Path, tmp_path: Path
) -> None:
    new = {
        "service": {"name": "renamed", "max_workers": 3},
        "api": {"listen": "127.0.0.1:9999"},
        "state": {"path": str(tmp_path / "elsewhere.db")},
        "workspaces": {"ttl": "1d"},
    }
    previous = load(root, {})[0]
    p = plan(root, {}, new)
    found = changes(p)
    assert found["service.name"] == (
        ChangeKind.RESTART_REQUIRED,
        "chamberlain stays until a restart (the file says renamed)",
    )
    assert found["api.listen"] == (
        ChangeKind.RESTART_REQUIRED,
        "127.0.0.1:8080 stays until a restart (the file says 127.0.0.1:9999)",
    )
    kind, detail = found["state.path"]
    assert kind is ChangeKind.RESTART_REQUIRED
    assert detail == (
        f"{previous.state.path} stays until a restart (the file says {tmp_path / 'elsewhere.db'})"
    )
    # Whole sections are named only: they may hold secrets.
    assert found["workspaces"] == (ChangeKind.RESTART_REQUIRED, "kept until a restart")
    assert sorted(c.path for c in p.restart_required) == [
        "api.listen",
        "service.name",
        "state.path",
        "workspaces",
    ]
    assert p.config.service.name == "chamberlain"
    assert p.config.api.listen == "127.0.0.1:8080"
    assert p.config.state == previous.state
    assert p.config.workspaces == previous.workspaces
    # The live part of the same file still applies.
    assert found["service.max_workers"] == (ChangeKind.CHANGED, "2 -> 3")
    assert p.config.service.max_workers == 3


def test_a_listen_override_is_no_change_and_stays(root: Path) -> None:
    previous = load(root, {})[0]
    # As ``--listen`` leaves it: the running config differs from its file in api.listen.
    running = attrs.evolve(previous, api=attrs.evolve(previous.api, listen="127.0.0.1:0"))
    p = plan(root, {}, {"service": {"max_workers": 3}}, running=running)
    assert "api.listen" not in changes(p)
    assert p.restart_required == ()
    assert p.config.api.listen == "127.0.0.1:0"
    assert p.config.service.max_workers == 3
    assert plan(root, {}, {}, running=running).changes == ()


def test_a_listen_the_file_changes_under_an_override_shows_the_running_one(root: Path) -> None:
    previous = load(root, {})[0]
    running = attrs.evolve(previous, api=attrs.evolve(previous.api, listen="127.0.0.1:0"))
    p = plan(root, {}, {"api": {"listen": "127.0.0.1:9999"}}, running=running)
    assert changes(p) == {
        "api.listen": (
            ChangeKind.RESTART_REQUIRED,
            "127.0.0.1:0 stays until a restart (the file says 127.0.0.1:9999)",
        )
    }
    assert p.config.api.listen == "127.0.0.1:0"
