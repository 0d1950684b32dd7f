"""Loading a configuration completely: the file, its plugins, routing and cross-checks.

Start-up and reload go through :func:`prepare`, so the daemon can never start on,
or reload into, something ``chamberlain check`` would refuse: every problem is
found before anything runs, each named by its YAML path.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path

import attrs

from chamberlain.actors.repository_sync import sync_plugin
from chamberlain.config import Config, ConfigError, load_config, parse_config
from chamberlain.plugins.binding import SYNC_PLUGIN, BoundPlugin, bind_plugins
from chamberlain.plugins.registry import SkippedPlugin, discover
from chamberlain.relay_rules import with_relay_plugin
from chamberlain.routing.planner import Routing, build_routing
from chamberlain.web.routes import ROUTES
from chamberlain.webhook_rules import api_route_at, check_endpoints

log = logging.getLogger("chamberlain.config")


@attrs.frozen(kw_only=True)
class Prepared:
    """A configuration with everything built from it, every cross-check passed."""

    config: Config
    plugins: dict[str, BoundPlugin]
    routing: Routing
    skipped: tuple[SkippedPlugin, ...]
    #: ``sha256:<hex>`` of the file's bytes (of nothing without a file).
    config_hash: str


def prepare(config_path: str | None) -> Prepared:
    """Config, plugins and routing of ``config_path`` (None: the defaults).

    Raises :class:`~chamberlain.config.ConfigError` with every problem found.
    Warnings and skipped plugins are logged.
    """
    if config_path is None:
        config = parse_config({}, base_dir=Path.cwd())
        raw = b""
    else:
        config = load_config(config_path)
        raw = _read(config.source)
    for warning in config.warnings:
        log.warning("config: %s", warning, extra={"component": "config"})
    discovery = discover(config.plugin_roots, trusted_owners=config.service.trusted_plugin_owners)
    for skipped in discovery.skipped:
        log.warning(
            "plugin skipped: %s: %s",
            skipped.path,
            skipped.reason,
            extra={"component": "plugins", "path": str(skipped.path)},
        )
    plugins = bind_plugins(config, discovery)
    routing = routing_of(config, runnable_plugins(config, plugins))
    problems = check_endpoints(
        config.webhooks.endpoints,
        plugins,
        {p.name for p in config.pipelines},
        {route.path for route in ROUTES},
    )
    ingress = config.remote_ingress
    if ingress is not None:
        # The ingress is served on the API listener: its POST path must be its own.
        route = api_route_at(
            f"{ingress.listen_path}/{{peer}}", {r.path for r in ROUTES if r.method == "POST"}
        )
        if route is not None:
            problems.append(
                f"remote_ingress.listen_path: {ingress.listen_path!r} makes"
                f" POST {ingress.listen_path}/<peer>, which the API route POST {route} takes"
            )
    if problems:
        raise ConfigError(problems, source=config.source)
    return Prepared(
        config=config,
        plugins=plugins,
        routing=routing,
        skipped=tuple(discovery.skipped),
        config_hash=f"sha256:{hashlib.sha256(raw).hexdigest()}",
    )


def runnable_plugins(config: Config, plugins: Mapping[str, BoundPlugin]) -> dict[str, BoundPlugin]:
    """What Runners run: ``plugins`` and the built-in ones.

    Relay steps' deliveries are jobs of the built-in ``core.relay`` (with
    ``instances``), syncs of repositories' mirrors jobs of ``core.repository``:
    each has a Runner, and is invisible to the API's plugin list and triggers.
    """
    runnable = with_relay_plugin(config, plugins)
    runnable[SYNC_PLUGIN] = sync_plugin(config)
    return runnable


def routing_of(config: Config, runnable: Mapping[str, BoundPlugin]) -> Routing:
    """``config``'s routes and pipelines over ``runnable``, checked; raises
    :class:`~chamberlain.config.ConfigError` naming each problem's YAML path."""
    return build_routing(
        config.routes,
        config.pipelines,
        runnable,
        source=config.source,
        service=config.service.name,
    )


def _read(source: Path | None) -> bytes:
    """The main file's bytes, for its hash (an included file is not part of it)."""
    if source is None:
        return b""
    try:
        return source.read_bytes()
    except OSError:
        return b""
