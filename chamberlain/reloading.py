"""What a configuration reload changes, and which of it takes effect at once.

The daemon reloads in place (SIGHUP, ``systemctl reload``, ``POST /system/reload``)
so that a new schedule or token does not cost a drain of every running job.  This
module decides, in plain synchronous code, what a reload does with a new file that
passed every check: :func:`plan_reload` compares it with the previous one and
answers the configuration to run from now on and the list of changes the API
answers and the log records.

Live: plugins (added, removed or changed: manifest or settings, with their timeouts,
retries, parallelism and schedules), ``plugin_roots``, ``service.max_workers``,
``service.log_level``, ``service.trusted_plugin_owners``, routes, pipelines, API
tokens and scopes (``api.auth``), webhook endpoints and their secrets, callbacks.

Everything else is read at start only: a listener, the state path, the service's
name and durations, the API's limits, relay instances and ingress, workspaces,
repositories and the MCP section.  A difference there is reported as
``restart_required`` and the old value stays, so nothing half-applies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter
from typing import Any

import attrs

from chamberlain.config import Config
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.records import ChangeKind, ConfigChange
from chamberlain.schedule.plan import SchedulePlan, build_plans

#: The fields of ``service:`` a reload applies; the others need a restart.
LIVE_SERVICE = frozenset({"max_workers", "log_level", "trusted_plugin_owners"})
#: Whole sections read at start only.
START_ONLY = ("instances", "remote_ingress", "workspaces", "repositories", "mcp")


@attrs.frozen(kw_only=True)
class ReloadPlan:
    """What a reload does; see :func:`plan_reload`."""

    #: The configuration to run from now on: the new file's live parts on the
    #: running configuration.
    config: Config
    #: The plugins to run from now on, by name.
    plugins: Mapping[str, BoundPlugin]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    #: Plugins whose manifest or settings changed: their next jobs run the new one.
    changed: tuple[str, ...]
    changes: tuple[ConfigChange, ...]

    @property
    def restart_required(self) -> tuple[ConfigChange, ...]:
        """The changes that wait for a restart."""
        return tuple(c for c in self.changes if c.change is ChangeKind.RESTART_REQUIRED)


def plan_reload(
    *,
    running: Config,
    previous: Config,
    new: Config,
    plugins: Mapping[str, BoundPlugin],
    new_plugins: Mapping[str, BoundPlugin],
    webhooks_served: bool,
) -> ReloadPlan:
    """Compare the file as last loaded (``previous``) with ``new``.

    ``running`` is what the daemon runs (``previous`` with the command line's
    overrides, such as ``--listen``); the plan's config is ``running`` with the live
    parts of ``new``.  ``webhooks_served`` says whether a listener of
    ``webhooks.listen`` is up: without one, endpoints that appear under a
    ``webhooks.listen`` wait for a restart.
    """
    changes: list[ConfigChange] = []
    added = tuple(sorted(new_plugins.keys() - plugins.keys()))
    removed = tuple(sorted(plugins.keys() - new_plugins.keys()))
    changed = tuple(
        sorted(n for n in plugins.keys() & new_plugins.keys() if plugins[n] != new_plugins[n])
    )
    changes += [ConfigChange(path=f"plugins.{n}", change=ChangeKind.ADDED) for n in added]
    changes += [ConfigChange(path=f"plugins.{n}", change=ChangeKind.REMOVED) for n in removed]
    changes += [
        ConfigChange(
            path=f"plugins.{n}",
            change=ChangeKind.CHANGED,
            detail=_plugin_detail(plugins[n], new_plugins[n]),
        )
        for n in changed
    ]
    changes += _keyed(
        "plugins.{}.schedules.{}",
        {p.key: p for p in build_plans(plugins)},
        {p.key: p for p in build_plans(new_plugins)},
        same=_same_schedule,
    )
    if previous.plugin_roots != new.plugin_roots:
        changes.append(ConfigChange(path="plugin_roots", change=ChangeKind.CHANGED))
    for name in sorted(LIVE_SERVICE):
        old_value, new_value = getattr(previous.service, name), getattr(new.service, name)
        if old_value != new_value:
            detail = f"{_shown(old_value)} -> {_shown(new_value)}"
            changes.append(
                ConfigChange(path=f"service.{name}", change=ChangeKind.CHANGED, detail=detail)
            )
    if previous.routes != new.routes:
        changes.append(
            ConfigChange(
                path="routes",
                change=ChangeKind.CHANGED,
                detail=f"{len(previous.routes)} -> {len(new.routes)} routes",
            )
        )
    changes += _keyed(
        "pipelines.{}",
        {(p.name,): p for p in previous.pipelines},
        {(p.name,): p for p in new.pipelines},
    )
    if previous.api.auth != new.api.auth:
        # Never the tokens themselves: the names of those that came and went.
        old_names = {t.name for t in previous.api.auth.tokens}
        new_names = {t.name for t in new.api.auth.tokens}
        parts = [f"+{n}" for n in sorted(new_names - old_names)]
        parts += [f"-{n}" for n in sorted(old_names - new_names)]
        changes.append(
            ConfigChange(path="api.auth", change=ChangeKind.CHANGED, detail=" ".join(parts) or None)
        )
    endpoints = new.webhooks.endpoints
    hooks = _keyed(
        "webhooks.endpoints.{}",
        {(e.path,): e for e in previous.webhooks.endpoints},
        {(e.path,): e for e in endpoints},
    )
    if hooks and running.webhooks.listen is not None and not webhooks_served:
        # Their listener is opened at start only, when there are endpoints to serve.
        hooks = [_waits(c, "webhooks.listen has no listener until a restart") for c in hooks]
        endpoints = running.webhooks.endpoints
    changes += hooks
    if previous.callbacks != new.callbacks:
        changes.append(ConfigChange(path="callbacks", change=ChangeKind.CHANGED))

    changes += _start_only(previous, new, running)
    config = attrs.evolve(
        running,
        plugins=new.plugins,
        plugin_roots=new.plugin_roots,
        routes=new.routes,
        pipelines=new.pipelines,
        callbacks=new.callbacks,
        service=attrs.evolve(
            running.service, **{name: getattr(new.service, name) for name in LIVE_SERVICE}
        ),
        api=attrs.evolve(running.api, auth=new.api.auth),
        webhooks=attrs.evolve(running.webhooks, endpoints=endpoints),
        secret_references=_references(running, new, kept=_kept_sections(changes)),
        warnings=new.warnings,
    )
    return ReloadPlan(
        config=config,
        plugins=new_plugins,
        added=added,
        removed=removed,
        changed=changed,
        changes=tuple(changes),
    )


def _start_only(previous: Config, new: Config, running: Config) -> list[ConfigChange]:
    """A ``restart_required`` change for each difference a reload cannot apply.

    Differences are between the files, so an override on the command line (a
    ``--listen``) is no change; the value shown as staying is the running one.
    """
    found: list[ConfigChange] = []

    def waits(path: str, *, show: bool = True) -> None:
        # Each of these YAML paths is also the attribute path of its value.
        get = attrgetter(path)
        if get(previous) == get(new):
            return
        detail = "kept until a restart"
        if show:
            detail = (
                f"{_shown(get(running))} stays until a restart (the file says {_shown(get(new))})"
            )
        found.append(ConfigChange(path=path, change=ChangeKind.RESTART_REQUIRED, detail=detail))

    for field in attrs.fields(type(new.service)):
        if field.name not in LIVE_SERVICE:
            waits(f"service.{field.name}")
    for field in attrs.fields(type(new.api)):
        if field.name != "auth":
            waits(f"api.{field.name}")
    waits("webhooks.listen")
    waits("state.path")
    for section in START_ONLY:
        # Whole sections, which may hold secrets: named, never shown.
        waits(section, show=False)
    return found


def _kept_sections(changes: Iterable[ConfigChange]) -> frozenset[str]:
    return frozenset(
        c.path for c in changes if c.change is ChangeKind.RESTART_REQUIRED and "." not in c.path
    )


def _references(running: Config, new: Config, *, kept: frozenset[str]) -> tuple[Any, ...]:
    """The secret references in use: the new file's, and for a section kept for a
    restart its running ones too, since it still runs on them (and the next start
    will need the new file's, so neither may be deleted meanwhile)."""

    def section(path: str) -> str:
        return path.split(".", 1)[0].split("[", 1)[0]

    return (
        *new.secret_references,
        *(r for r in running.secret_references if section(r.path) in kept),
    )


def _keyed(
    pattern: str,
    old: Mapping[tuple[str, ...], Any],
    new: Mapping[tuple[str, ...], Any],
    *,
    same: Callable[[Any, Any], bool] = lambda a, b: bool(a == b),
) -> list[ConfigChange]:
    """Added, removed and changed entries of two tables keyed the same way."""
    out: list[ConfigChange] = []
    for key in sorted(new.keys() - old.keys()):
        out.append(ConfigChange(path=pattern.format(*key), change=ChangeKind.ADDED))
    for key in sorted(old.keys() - new.keys()):
        out.append(ConfigChange(path=pattern.format(*key), change=ChangeKind.REMOVED))
    for key in sorted(old.keys() & new.keys()):
        if not same(old[key], new[key]):
            out.append(ConfigChange(path=pattern.format(*key), change=ChangeKind.CHANGED))
    return out


def _same_schedule(a: SchedulePlan, b: SchedulePlan) -> bool:
    # The zone object is resolved anew on each load; its name says the same.
    return (a.config, a.zone_name, a.max_attempts, a.breaker) == (
        b.config,
        b.zone_name,
        b.max_attempts,
        b.breaker,
    )


def _plugin_detail(old: BoundPlugin, new: BoundPlugin) -> str:
    parts: list[str] = []
    if old.manifest.version != new.manifest.version:
        parts.append(f"version {old.manifest.version} -> {new.manifest.version}")
    elif old.manifest != new.manifest:
        parts.append("manifest")
    if old.settings != new.settings:
        parts.append("settings")
    if old.parallelism != new.parallelism:
        parts.append(f"parallelism {old.parallelism} -> {new.parallelism}")
    return ", ".join(parts)


def _waits(change: ConfigChange, why: str) -> ConfigChange:
    return attrs.evolve(change, change=ChangeKind.RESTART_REQUIRED, detail=why)


def _shown(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return str(value)
