"""The ``chamberlain`` command line.

``chamberlain start --config PATH [--listen HOST:PORT] [--allow-default-keys]``
    Run the daemon in the foreground (systemd, a terminal, a container).
    ``--listen`` overrides ``api.listen``.  The example config's development keys
    are refused on a listener other than loopback unless ``--allow-default-keys``.
``chamberlain run PLUGIN COMMAND [--payload JSON]``
    Run one job through the same Runner and print its record as JSON; exit 0 only
    when it succeeded.  Uses a throwaway in-memory store.
``chamberlain check --config PATH``
    Validate the config and the plugins it names, then exit.

Exit codes: 0 success; 1 runtime failure (another daemon holds the state, a
supervisor gave up, a ``run`` job that did not succeed); 78 (EX_CONFIG) for a bad
config, including a ``state.path`` that cannot be opened, an ``api.listen`` that
cannot be listened on, development keys on a public listener, and (``check``
only) a plugin that would be skipped, so ``RestartPreventExitStatus=78`` stops
systemd from looping on it.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from chamberlain.config import IN_MEMORY, Config, ConfigError, load_config, parse_config
from chamberlain.config.values import split_listen
from chamberlain.daemon import jsonlog
from chamberlain.daemon.instance_lock import AlreadyRunning, InstanceLock, StateUnusable
from chamberlain.daemon.systemd import Notifier
from chamberlain.daemon.tree import Daemon
from chamberlain.plugins.binding import BoundPlugin, bind_plugins
from chamberlain.plugins.registry import SkippedPlugin, discover
from chamberlain.records import NewJob
from chamberlain.routing.planner import Routing, build_routing
from chamberlain.supervision import SupervisorGaveUp
from chamberlain.web.routes import ROUTES
from chamberlain.web.serve import ListenError
from chamberlain.webhook_rules import check_endpoints

log = logging.getLogger("chamberlain.cli")

EXIT_FAILURE = 1
EXIT_CONFIG = 78

#: The placeholder keys config.example.yaml falls back on when their environment
#: variables are unset: fine for trying things out, public knowledge everywhere else.
DEFAULT_KEYS = frozenset({"dev-key-change-me", "read-only-change-me", "callback-secret-change-me"})


@attrs.frozen(kw_only=True)
class _Loaded:
    config: Config
    plugins: dict[str, BoundPlugin]
    routing: Routing
    skipped: tuple[SkippedPlugin, ...]


def _load(config_path: str | None) -> _Loaded:
    """Config, plugins and routing, every cross-check done: the daemon cannot start
    on something ``chamberlain check`` would refuse."""
    if config_path is None:
        config = parse_config({}, base_dir=Path.cwd())
    else:
        config = load_config(config_path)
    discovery = discover(config.plugin_roots, trusted_owners=config.service.trusted_plugin_owners)
    for skipped in discovery.skipped:
        log.warning(
            "plugin skipped: %s: %s",
            skipped.path,
            skipped.reason,
            extra={"component": "plugins", "path": str(skipped.path)},
        )
    plugins = bind_plugins(config, discovery)
    routing = build_routing(config.routes, config.pipelines, plugins, source=config.source)
    problems = check_endpoints(
        config.webhooks.endpoints,
        plugins,
        {p.name for p in config.pipelines},
        {route.path for route in ROUTES},
    )
    if problems:
        raise ConfigError(problems, source=config.source)
    return _Loaded(
        config=config, plugins=plugins, routing=routing, skipped=tuple(discovery.skipped)
    )


def default_keys(config: Config) -> list[str]:
    """The settings of ``config`` that hold one of :data:`DEFAULT_KEYS`."""
    found = []
    auth = config.api.auth
    if auth.api_key in DEFAULT_KEYS:
        found.append("api.auth.api_key")
    found.extend(f"api.auth.tokens.{t.name}" for t in auth.tokens if t.token in DEFAULT_KEYS)
    if config.callbacks.secret in DEFAULT_KEYS:
        found.append("callbacks.secret")
    return found


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen host) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def _listen_option(value: str) -> str:
    try:
        split_listen(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _gave_up(exc: BaseException) -> SupervisorGaveUp | None:
    """Find a SupervisorGaveUp, possibly wrapped in exception groups."""
    if isinstance(exc, SupervisorGaveUp):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _gave_up(inner)
            if found is not None:
                return found
    return None


def cmd_start(args: argparse.Namespace) -> int:
    """Run the daemon until a signal stops it."""
    loaded = _load(args.config)
    config, plugins = loaded.config, loaded.plugins
    if args.listen is not None:
        config = attrs.evolve(config, api=attrs.evolve(config.api, listen=args.listen))
    defaults = default_keys(config)
    if defaults and not is_loopback(config.api.host) and not args.allow_default_keys:
        raise ConfigError(
            [
                f"refusing to listen on {config.api.listen} with the example's development"
                f" keys ({', '.join(defaults)}): set real ones, or pass --allow-default-keys"
            ],
            source=config.source,
        )
    if defaults:
        log.warning(
            "development keys in use (%s): anyone who has read the example config has"
            " them; set real ones before this daemon is reachable from elsewhere",
            ", ".join(defaults),
            extra={"component": "root", "settings": defaults},
        )
    state = config.state.path
    # An in-memory store is private to this process: nothing to guard.
    lock = InstanceLock(state) if state != IN_MEMORY else None
    try:
        if lock is not None:
            lock.acquire()
    except AlreadyRunning as exc:
        log.error("%s", exc, extra={"component": "root"})
        print(f"chamberlain: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except StateUnusable as exc:
        # A path the daemon can never use is the config's fault: exit 78, so systemd
        # does not restart into the same error.
        raise ConfigError([f"state.path: {exc}"], source=config.source) from None
    try:
        daemon = Daemon(
            config=config,
            plugins=plugins,
            state_path=str(state),
            routing=loaded.routing,
            notifier=Notifier.from_environment(),
            freeze_heap=True,
        )
        try:
            daemon.bind()
        except ListenError as exc:
            # No restart would free the address: exit 78, once, saying so.
            log.error("%s", exc, extra={"component": "web", "listen": exc.listen})
            print(f"chamberlain: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        log.info(
            "starting %s with state %s",
            config.service.name,
            state,
            extra={"component": "root", "plugins": sorted(plugins)},
        )
        trio.run(daemon.run)
    except BaseException as exc:
        gave_up = _gave_up(exc)
        if gave_up is None:
            raise
        log.critical("%s; exiting", gave_up, exc_info=gave_up, extra={"component": "root"})
        return EXIT_FAILURE
    finally:
        if lock is not None:
            lock.release()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run one job in the foreground and print its record."""
    loaded = _load(args.config)
    config, plugins = loaded.config, loaded.plugins
    plugin = plugins.get(args.plugin)
    if plugin is None:
        print(f"chamberlain: unknown plugin {args.plugin!r}", file=sys.stderr)
        return EXIT_FAILURE
    if plugin.command(args.command) is None:
        known = ", ".join(c.name for c in plugin.manifest.commands)
        print(
            f"chamberlain: plugin {args.plugin!r} has no command {args.command!r} (has: {known})",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        print(f"chamberlain: --payload is not valid JSON: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if not isinstance(payload, dict):
        print("chamberlain: --payload must be a JSON object", file=sys.stderr)
        return EXIT_FAILURE
    event = None
    if args.command == "handle":
        event = {"type": "cli.run", "payload": payload, "source": "cli"}
    job = NewJob(
        plugin=args.plugin,
        command=args.command,
        payload=payload,
        event=event,
        submitted_by="cli",
        max_attempts=args.attempts,
        timeout=args.timeout,
    )
    daemon = Daemon(
        config=config,
        plugins=plugins,
        state_path=":memory:",
        serve_web=False,
        handle_signals=False,
        routing=loaded.routing,
        run_schedules=False,
    )

    async def main() -> dict[str, Any]:
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            await daemon.gateway.enqueue([job])
            done = await daemon.gateway.wait_job(job.id)
            await daemon.shutdown()
        assert done is not None
        return done.to_json()

    record = trio.run(main)
    print(json.dumps(record, indent=2, ensure_ascii=False))
    return 0 if record["status"] == "succeeded" else EXIT_FAILURE


def cmd_check(args: argparse.Namespace) -> int:
    """Validate config and plugins, print what would run."""
    loaded = _load(args.config)
    config, plugins = loaded.config, loaded.plugins
    for name, plugin in sorted(plugins.items()):
        commands = ", ".join(c.name for c in plugin.manifest.commands)
        print(f"{name} {plugin.manifest.version}: {commands} (parallelism {plugin.parallelism})")
    if loaded.skipped:
        # `start` runs without these; `check` is where someone looks for them.
        print(f"skipped {len(loaded.skipped)} plugins:")
        for skipped in loaded.skipped:
            print(f"  {skipped.path}: {skipped.reason}")
        print(
            f"chamberlain: {len(loaded.skipped)} plugins would be skipped; "
            f"{len(plugins)} plugins, state {config.state.path}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    print(f"config OK: {len(plugins)} plugins, state {config.state.path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (public so the docs and tests can inspect it)."""
    parser = argparse.ArgumentParser(prog="chamberlain", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)

    start = sub.add_parser("start", help="run the daemon in the foreground")
    start.add_argument("--config", "-c", required=True, help="path to the YAML config")
    start.add_argument(
        "--listen",
        type=_listen_option,
        metavar="HOST:PORT",
        help="listen here instead of the config's api.listen",
    )
    start.add_argument(
        "--allow-default-keys",
        action="store_true",
        help="start on a non-loopback listener even with the example's development keys",
    )
    start.set_defaults(func=cmd_start)

    run = sub.add_parser("run", help="run one job in the foreground and print its record")
    run.add_argument("plugin")
    run.add_argument("command")
    run.add_argument("--payload", default="{}", help="the job's payload, a JSON object")
    run.add_argument("--config", "-c", help="path to the YAML config (default: built-in defaults)")
    run.add_argument("--attempts", type=int, default=1, help="attempts before giving up")
    run.add_argument(
        "--timeout", type=float, default=None, help="seconds before the job is stopped"
    )
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate the config and plugins")
    check.add_argument("--config", "-c", required=True)
    check.set_defaults(func=cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    jsonlog.configure(args.log_level.upper())
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        log.error("%s", exc, extra={"component": "config", "problems": list(exc.problems)})
        print(f"chamberlain: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return code


if __name__ == "__main__":
    sys.exit(main())
