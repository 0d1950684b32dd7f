"""Joining what was discovered on disk with what the operator configured.

A manifest says what a plugin *is*; the ``plugins.<name>`` config says how this
daemon runs it.  :func:`bind_plugins` joins the two once at start-up, so every later
question ("how long may ``poll`` run?", "how many in parallel?") has one answer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from chamberlain.config import Config, ConfigError, PluginConfig
from chamberlain.plugins.input_schema import InvalidPayload
from chamberlain.plugins.manifest import CommandSpec, CommandType, Manifest
from chamberlain.plugins.registry import Discovery
from chamberlain.retry import RetryPolicy

log = logging.getLogger("chamberlain.plugins")

#: Per-command timeouts when the config names none, in seconds.
DEFAULT_TIMEOUTS: Mapping[str, float] = {
    "poll": 60.0,
    "handle": 120.0,
    "health": 10.0,
    "init": 30.0,
}
DEFAULT_TIMEOUT = 60.0
#: The built-in plugin whose jobs carry relay steps' deliveries (chamberlain.relay_rules);
#: it is bound from the config, not discovered, so its settings warn of nothing.
RELAY_PLUGIN = "core.relay"
#: The built-in plugin whose jobs fetch repositories' mirrors
#: (chamberlain.actors.repository_sync); bound likewise.
SYNC_PLUGIN = "core.repository"


@attrs.frozen(kw_only=True)
class BoundPlugin:
    """A discovered plugin with its effective settings."""

    manifest: Manifest
    settings: PluginConfig
    #: How many of its jobs may run at once.
    parallelism: int

    @property
    def name(self) -> str:
        """The plugin's name."""
        return self.manifest.name

    def command(self, name: str) -> CommandSpec | None:
        """The manifest's declaration of ``name``, or None if it has no such command."""
        return self.manifest.command(name)

    def payload_problem(
        self, command: str, payload: Mapping[str, Any], *, path: str = "payload"
    ) -> str | None:
        """Why ``payload`` breaks the ``input_schema`` of ``command``, or None if it fits.

        For the jobs the daemon makes itself (routes, pipeline steps, webhooks), which
        have no client to answer 400 to: such a job is stored failed with this reason
        instead of handing the plugin input it declared it cannot take.
        """
        spec = self.command(command)
        if spec is None:
            return None
        try:
            spec.check_payload(payload, path=path)
        except InvalidPayload as exc:
            return f"{self.name}/{command}: input_schema refuses the payload: {exc}"
        return None

    def timeout_for(self, command: str) -> float:
        """The longest a ``command`` job may run before it is stopped."""
        return self.settings.timeouts.get(command, DEFAULT_TIMEOUTS.get(command, DEFAULT_TIMEOUT))

    def timeout_limit(self, command: str) -> float:
        """The longest timeout a trigger of ``command`` may ask for: the command's own,
        or for an interactive one (whose timeout is its idle timeout) ``max_duration``."""
        if self.interactive(command):
            return self.settings.max_duration
        return self.timeout_for(command)

    def interactive(self, command: str) -> bool:
        """True when ``command`` speaks the interactive protocol."""
        spec = self.command(command)
        return spec is not None and spec.interactive

    @property
    def retry_policy(self) -> RetryPolicy:
        """How failed attempts of this plugin's jobs are spaced."""
        retry = self.settings.retry
        return RetryPolicy(
            backoff_base=retry.backoff_base,
            backoff_max=retry.backoff_max,
            retry_timeouts=retry.on_timeout,
        )

    @property
    def max_attempts(self) -> int:
        """Attempts a job gets unless its trigger asks for fewer or more."""
        return self.settings.retry.max_attempts


def builtin_plugin(
    config: Config, name: str, command: str, *, description: str, parallelism: int
) -> BoundPlugin:
    """A plugin of the daemon's own (``core.relay``, ``core.repository``): one write
    command whose jobs run in the daemon, not as a process.

    It is bound from the config, not discovered: ``plugins.<name>`` tunes it like any
    plugin (``retry``, ``timeouts.<command>``, and ``parallelism``, which overrides
    the default given).  Its manifest's paths are this module's, never run.
    """
    here = Path(__file__).resolve()
    manifest = Manifest(
        name=name,
        version="1",
        protocol=2,
        entrypoint=here,
        directory=here.parent,
        description=description,
        commands=(CommandSpec(name=command, type=CommandType.WRITE),),
    )
    settings = config.plugin_config(name)
    return BoundPlugin(
        manifest=manifest, settings=settings, parallelism=settings.parallelism or parallelism
    )


def bind_plugins(config: Config, discovery: Discovery) -> dict[str, BoundPlugin]:
    """Join config and discovery into the plugins this daemon will run.

    A ``plugins:`` entry with ``uses: <base>`` is an alias: the base plugin's manifest
    bound a second time under the entry's name. A ``plugins:`` entry naming a plugin
    that was not discovered is left out with a warning, as Ductile does (a plugin
    directory may be missing on one machine only). Configuration errors are a plugin
    root that does not exist or is not a directory, an alias whose base was not
    discovered, or whose name is taken, a schedule naming a command its plugin's
    manifest does not declare, and a schedule whose payload breaks that command's
    ``input_schema``.  Plugins that are disabled, or whose manifest requires config
    keys the operator did not set, are left out with a log line: one bad plugin never
    stops the daemon.
    """
    unusable = {root.path: root.reason for root in discovery.unusable_roots}
    problems = [
        f"plugin_roots[{index}]: {root} {unusable[root]}"
        for index, root in enumerate(config.plugin_roots)
        if root in unusable
    ]
    roots = ", ".join(str(r) for r in config.plugin_roots)
    manifests = dict(discovery.plugins)
    for name, entry in sorted(config.plugins.items()):
        if entry.uses is None:
            continue
        if entry.uses == name:
            problems.append(f"plugins.{name}.uses: an alias must name another plugin")
        elif name in discovery.plugins:
            problems.append(
                f"plugins.{name}.uses: a plugin named {name!r} was discovered; an alias"
                " needs a name of its own"
            )
        elif entry.uses not in discovery.plugins:
            problems.append(
                f"plugins.{name}.uses: no plugin named {entry.uses!r} was found under the"
                f" plugin roots ({roots})"
            )
        else:
            manifests[name] = attrs.evolve(discovery.plugins[entry.uses], name=name)
    if problems:
        raise ConfigError(problems, source=config.source)
    for name in sorted(set(config.plugins) - set(manifests) - {RELAY_PLUGIN, SYNC_PLUGIN}):
        log.warning(
            "plugins.%s: no plugin named %r was found under the plugin roots (%s); its"
            " settings are not used",
            name,
            name,
            roots,
            extra={"component": "plugins", "plugin": name},
        )
    unknown = [
        f"plugins.{name}.schedules[{index}].command: plugin {name!r} has no command"
        f" {schedule.command!r} (it has: {', '.join(c.name for c in manifest.commands)})"
        for name, manifest in sorted(manifests.items())
        for index, schedule in enumerate(config.plugin_config(name).schedules)
        if manifest.command(schedule.command) is None
    ]
    if unknown:
        raise ConfigError(unknown, source=config.source)
    # A schedule's payload is fixed in the config: one that breaks its command's
    # input_schema would fail every run, so it is refused now, where it is written.
    refused: list[str] = []
    for name, manifest in sorted(manifests.items()):
        for index, schedule in enumerate(config.plugin_config(name).schedules):
            spec = manifest.command(schedule.command)
            assert spec is not None, "checked above"
            try:
                spec.check_payload(
                    schedule.payload, path=f"plugins.{name}.schedules[{index}].payload"
                )
            except InvalidPayload as exc:
                refused.append(str(exc))
    if refused:
        raise ConfigError(refused, source=config.source)
    bound: dict[str, BoundPlugin] = {}
    for name, manifest in sorted(manifests.items()):
        settings = config.plugins.get(name, PluginConfig())
        extra = {"component": "plugins", "plugin": name}
        if not settings.enabled:
            log.info("plugin %s is disabled in the config; not loaded", name, extra=extra)
            continue
        absent = [k for k in manifest.config_keys_required if k not in settings.config]
        if absent:
            log.warning(
                "plugin %s skipped: its manifest requires config keys %s, missing from"
                " plugins.%s.config",
                name,
                ", ".join(absent),
                name,
                extra=extra,
            )
            continue
        for command in sorted(settings.timeouts):
            spec = manifest.command(command)
            if spec is not None and spec.interactive:
                log.warning(
                    "plugins.%s.timeouts.%s does not apply: %s is interactive, its idle"
                    " timeout is plugins.%s.interactive_timeout",
                    name,
                    command,
                    command,
                    name,
                    extra=extra,
                )
        if settings.parallelism is not None:
            parallelism = settings.parallelism
        elif not manifest.concurrency_safe:
            parallelism = 1
        else:
            parallelism = config.service.max_workers
        bound[name] = BoundPlugin(manifest=manifest, settings=settings, parallelism=parallelism)
    return bound
