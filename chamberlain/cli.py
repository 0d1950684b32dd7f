"""The ``chamberlain`` command line: ``start``, ``run``, ``check``, ``secret-key``, and the
client commands of :mod:`chamberlain.client` (``trigger``, ``job``, ``jobs`` ...; docs/CLI.md).

``start`` runs the daemon in the foreground; ``run`` runs one job through the same
Runner on a throwaway in-memory store, showing the plugin's stderr lines and the
job's status changes on stderr as they commit (read from the hub, the source the
job stream of the API reads) and printing the job's record as JSON on stdout;
``check`` validates a config and the plugins it names; ``secret-key`` prints a
fresh key for ``CHAMBERLAIN_SECRET_KEY``.

``start`` and ``check`` open the secret registry before anything runs (see
:func:`open_registry`): the key, the key check, every value unsealed into the
vault the daemon starts with, every ``${secret:name}`` of the config checked
against it.  ``run`` does too when its config refers to a registry secret: it
reads the registry of ``state.path``, read-only, so ``${secret:name}`` resolves
for it as it would for the daemon.  A wrong or unusable key, and a reference to a
secret the registry does not hold, are config errors.

The help each prints is written out here (:data:`PROGRAM_HELP` and its siblings),
examples and exit codes included, rather than taken from this docstring.  Exit
codes: 0 success; 1 runtime failure (another daemon holds the state, a supervisor
gave up, a ``run`` job that did not succeed); 2 a bad command line; 78
(EX_CONFIG) for a bad config, including a ``state.path`` that cannot be opened,
a secret key that is malformed, unsafe, missing or not the one the registry was
sealed with, an ``api.listen`` that cannot be listened on, development keys on a
public listener, and (``check`` only) a plugin that would be skipped, so
``RestartPreventExitStatus=78`` stops systemd from looping on it.

``--log-level`` and ``--log-format`` are accepted before or after the subcommand.
Without ``--log-format``, log lines are text (:mod:`chamberlain.daemon.textlog`)
when stderr is a terminal and JSON (:mod:`chamberlain.daemon.jsonlog`) otherwise.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import math
import os
import sqlite3
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import argcomplete
import attrs
import trio
from rich.console import Console
from rich.text import Text

from chamberlain.actors.gateway import Gateway
from chamberlain.client import add_client_commands
from chamberlain.config import IN_MEMORY, LOG_LEVELS, Config, ConfigError
from chamberlain.config.references import check_secret_references
from chamberlain.config.units import parse_duration
from chamberlain.config.values import split_listen
from chamberlain.daemon import jsonlog
from chamberlain.daemon.configuration import prepare
from chamberlain.daemon.instance_lock import AlreadyRunning, InstanceLock, StateUnusable
from chamberlain.daemon.jsonlog import JsonFormatter, RedactingFormatter
from chamberlain.daemon.systemd import Notifier
from chamberlain.daemon.textlog import TextFormatter
from chamberlain.daemon.tree import Daemon
from chamberlain.joblog import WAITING_TEXT
from chamberlain.loops import LoopError, parse_loop
from chamberlain.records import JobMessage, JobStatus, MessageKind, NewJob, rfc3339
from chamberlain.schedule.plan import SchedulePlan, build_plans
from chamberlain.sealing import (
    SECRET_KEY_ENV,
    KeyProblem,
    Sealer,
    WrongKey,
    key_file_path,
    load_sealer,
    new_key_text,
)
from chamberlain.store.secret_rows import SealedRegistry, read_sealed
from chamberlain.supervision import SupervisorGaveUp
from chamberlain.vault import Vault
from chamberlain.web.health import package_version
from chamberlain.web.serve import ListenError

log = logging.getLogger("chamberlain.cli")

EXIT_FAILURE = 1
EXIT_CONFIG = 78

#: The placeholder keys config.example.yaml falls back on when their environment
#: variables are unset: fine for trying things out, public knowledge everywhere else.
DEFAULT_KEYS = frozenset({"dev-key-change-me", "read-only-change-me", "callback-secret-change-me"})


@attrs.frozen(kw_only=True)
class Registry:
    """The secret registry as the daemon starts with it."""

    #: Seals what the registry is given from now on.
    sealer: Sealer
    #: Every registry value unsealed, and the config's own secrets.
    vault: Vault = attrs.field(repr=False)


def open_registry(config: Config, *, create_key: bool) -> Registry:
    """The state's key, checked, and every registry value unsealed into a vault.

    The sealed values are read straight from ``state.path``, read-only, before the
    tree starts.  The key comes from ``CHAMBERLAIN_SECRET_KEY`` or the key file
    beside the state (see :func:`chamberlain.sealing.load_sealer`); with
    ``create_key`` a missing key file is created, but never while the state holds
    secrets: they were sealed with a key that is missing, and a new one would not
    open them.  Raises :class:`ConfigError` (exit 78) for a key that is malformed,
    unsafe, missing or wrong, for a state whose secrets cannot be read, and for a
    ``${secret:name}`` of the config whose secret the registry does not hold.
    """
    state = config.state.path
    in_memory = state == IN_MEMORY
    registry = SealedRegistry()
    if not in_memory:
        try:
            registry = read_sealed(state)
        except sqlite3.Error as exc:
            raise ConfigError(
                [f"state.path: cannot read the secrets in {state}: {exc}"], source=config.source
            ) from None
    sealed_before = bool(registry.values) or registry.check is not None
    try:
        sealer = load_sealer(
            None if in_memory else state, os.environ, create=create_key and not sealed_before
        )
    except KeyProblem as exc:
        raise ConfigError([str(exc)], source=config.source) from None
    if sealer is None:
        if sealed_before:
            raise ConfigError(
                [
                    f"the secrets in {state} need the key they were sealed with: set"
                    f" {SECRET_KEY_ENV}, or restore the key file {key_file_path(state)}"
                ],
                source=config.source,
            )
        # Nothing is sealed and nothing may be created (check): no key is needed.
        sealer = Sealer.random()
    try:
        if registry.check is not None:
            sealer.verify(registry.check)
        values = {name: sealer.unseal(name, blob) for name, blob in registry.values.items()}
    except WrongKey as exc:
        raise ConfigError([f"{exc} (state {state})"], source=config.source) from None
    vault = Vault()
    vault.configure(config)
    vault.load(values)
    problems = check_secret_references(config, set(vault.names()))
    if problems:
        raise ConfigError(problems, source=config.source)
    return Registry(sealer=sealer, vault=vault)


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


def _attempts_option(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value!r}")
    return number


def _seconds_option(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not (0 < seconds < math.inf):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {value!r}")
    return seconds


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


def _apply_log_level(args: argparse.Namespace, config: Config) -> None:
    """``service.log_level``, unless ``--log-level`` was given (it wins)."""
    if args.log_level is None:
        logging.getLogger().setLevel((config.service.log_level or "info").upper())


def cmd_start(args: argparse.Namespace) -> int:
    """Run the daemon until a signal stops it."""
    loaded = prepare(args.config)
    config, plugins = loaded.config, loaded.plugins
    _apply_log_level(args, config)
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
        # After the lock: no other daemon is writing the registry while it is read.
        registry = open_registry(config, create_key=True)
        daemon = Daemon(
            config=config,
            plugins=plugins,
            state_path=str(state),
            routing=loaded.routing,
            notifier=Notifier.from_environment(),
            freeze_heap=True,
            vault=registry.vault,
            sealer=registry.sealer,
            config_path=args.config,
            file_config=loaded.config,
            config_hash=loaded.config_hash,
            log_level_pinned=args.log_level is not None,
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
    loaded = prepare(args.config)
    config, plugins = loaded.config, loaded.plugins
    _apply_log_level(args, config)
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
    problem = plugin.payload_problem(args.command, payload, path="--payload")
    if problem is not None:
        # What the API would answer 400 to: the plugin never gets input it refuses.
        print(f"chamberlain: {problem}", file=sys.stderr)
        return EXIT_FAILURE
    loop = None
    if args.loop is not None:
        try:
            # The operator at the terminal may name feedback commands: it is their machine.
            defaults = attrs.evolve(plugin.settings.loop.defaults(), trigger_feedback=True)
            if plugin.interactive(args.command):
                raise LoopError("--loop: an interactive command cannot run as a loop")
            loop = parse_loop(
                json.loads(args.loop),
                defaults=defaults,
                parse_duration=parse_duration,
                path="--loop",
            ).to_json()
        except json.JSONDecodeError as exc:
            print(f"chamberlain: --loop is not valid JSON: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        except LoopError as exc:
            print(f"chamberlain: {exc}", file=sys.stderr)
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
        loop=loop,
    )
    # The job's store is in memory; the registry it resolves ${secret:} from is the
    # state's, read-only, when the config refers to it.
    if config.secret_references:
        vault = open_registry(config, create_key=False).vault
    else:
        vault = Vault()
        vault.configure(config)
    daemon = Daemon(
        config=config,
        plugins=plugins,
        state_path=":memory:",
        serve_web=False,
        handle_signals=False,
        routing=loaded.routing,
        run_schedules=False,
        vault=vault,
    )
    show = None if args.quiet else LiveView.on(sys.stderr).show
    interactive = plugin.interactive(args.command)

    async def main() -> dict[str, Any]:
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            if interactive:
                await converse(daemon.gateway, job, show, answers=sys.stdin)
            elif show is None:
                await daemon.gateway.enqueue([job])
            else:
                await follow(daemon.gateway, job, show)
            done = await daemon.gateway.wait_job(job.id)
            await daemon.shutdown()
        assert done is not None
        return done.to_json()

    record = trio.run(main)
    print(json.dumps(record, indent=2, ensure_ascii=False))
    return 0 if record["status"] == "succeeded" else EXIT_FAILURE


async def follow(gateway: Gateway, job: NewJob, show: Callable[[JobMessage], None]) -> None:
    """Enqueue ``job`` and ``show`` each of its messages as it commits, until it ends.

    The subscription to the hub is taken before the enqueue, so the job's first
    message arrives live like every other.  A subscriber that falls a whole buffer
    behind is dropped by the hub; then what it missed is read back from the store
    and it subscribes again, the way a client of the job stream resumes.
    """
    seen = 0  # the seq of the last message shown
    enqueued = False
    while True:
        with gateway.hub.subscribe(job_id=job.id) as live:
            if not enqueued:
                await gateway.enqueue([job])
                enqueued = True
            else:
                while page := await gateway.job_messages(job.id, after_seq=seen):
                    for message in page:
                        show(message)
                        seen = message.seq
                        if message.ends_job:
                            return
            async for message in live.messages:
                if message.seq <= seen:
                    continue  # read back from the store after a drop
                show(message)
                seen = message.seq
                if message.ends_job:
                    return


async def converse(
    gateway: Gateway,
    job: NewJob,
    show: Callable[[JobMessage], None] | None,
    *,
    answers: TextIO,
) -> None:
    """Run an interactive ``job``, its user's messages read from ``answers``.

    Each time the plugin waits for input, the next line of ``answers`` is sent as a
    message; at its end (Ctrl-D on a terminal) the session is completed.  Lines
    typed ahead of a wait are sent in order, one per wait.
    """
    waits_in, waits = trio.open_memory_channel[None](math.inf)

    def show_and_answer(message: JobMessage) -> None:
        if show is not None:
            show(message)
        if message.kind is MessageKind.SYSTEM and message.text == WAITING_TEXT:
            waits_in.send_nowait(None)

    async def answer() -> None:
        async for _ in waits:
            line = await trio.to_thread.run_sync(answers.readline, abandon_on_cancel=True)
            reply = await gateway.converse(job.id, line.rstrip("\n") if line else None)
            if reply.refused is not None or not line:
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
        await follow(gateway, job, show_and_answer)
        nursery.cancel_scope.cancel()


#: How a status is drawn on a terminal; a status not named here is drawn plain.
_STATUS_STYLES = {
    JobStatus.QUEUED: "blue",
    JobStatus.RUNNING: "cyan",
    JobStatus.SUCCEEDED: "bold green",
    JobStatus.FAILED: "bold red",
    JobStatus.TIMED_OUT: "bold red",
    JobStatus.DEAD: "bold red",
    JobStatus.CANCELLED: "bold yellow",
}


def live_line(message: JobMessage) -> tuple[tuple[str, str], ...]:
    """The line ``chamberlain run`` shows for ``message``, as (text, rich style) pieces.

    A status change reads ``status: running (attempt 1) - attempt 1/1 started``;
    anything else is its kind (and a log entry's level) in brackets and its text:
    ``[stderr] a line``, ``[log warn] stale cache``.
    Joined, the texts are the plain line written when stderr is not a terminal.
    """
    if message.status is None:
        # A log entry shows its level: [log info] fetched 3 items.
        kind = (
            message.kind.value if message.level is None else f"{message.kind.value} {message.level}"
        )
        return ((f"[{kind}] ", "dim"), (message.text, ""))
    attempt = f" (attempt {message.attempt})" if message.attempt else ""
    return (
        ("status: ", "bold"),
        (message.status.value, _STATUS_STYLES.get(message.status, "")),
        (attempt, ""),
        (f" - {message.text}", "dim"),
    )


@attrs.frozen(kw_only=True)
class LiveView:
    """Writes :func:`live_line` lines to a stream: styled on a terminal, plain otherwise."""

    stream: TextIO
    #: Draws on the terminal; None when the stream is not one.
    console: Console | None

    @classmethod
    def on(cls, stream: TextIO) -> LiveView:
        """A view on ``stream``, styled when it is a terminal."""
        if not stream.isatty():
            return cls(stream=stream, console=None)
        # soft_wrap: a long line is left to the terminal to wrap, so copying it from
        # the screen gives it back whole; no markup: a plugin's text is never parsed.
        console = Console(file=stream, highlight=False, markup=False, emoji=False, soft_wrap=True)
        return cls(stream=stream, console=console)

    def show(self, message: JobMessage) -> None:
        """Write ``message``'s line now."""
        pieces = live_line(message)
        if self.console is None:
            self.stream.write("".join(text for text, _ in pieces) + "\n")
            self.stream.flush()
        else:
            self.console.print(Text.assemble(*pieces))


#: How many of a schedule's next runs ``check`` shows.
NEXT_RUNS = 3


def next_runs(plan: SchedulePlan, now: float, count: int = NEXT_RUNS) -> list[float]:
    """The next ``count`` times ``plan`` fires after ``now``, for a daemon started now
    (jitter left out; fewer for a schedule that stops)."""
    timing = plan.timing(now)
    found: list[float] = []
    at: float | None = now
    while at is not None and len(found) < count:
        at = timing.next_after(at)
        if at is not None:
            found.append(at)
    return found


def cmd_check(args: argparse.Namespace) -> int:
    """Validate config and plugins, print what would run."""
    loaded = prepare(args.config)
    config, plugins = loaded.config, loaded.plugins
    # Read-only: a check creates no key file, and runs beside a running daemon.
    registry = open_registry(config, create_key=False)
    now = time.time()
    schedules: list[dict[str, Any]] = [
        {
            "plugin": plan.plugin,
            "id": plan.id,
            "command": plan.command,
            "next_runs": [str(rfc3339(at)) for at in next_runs(plan, now)],
        }
        for plan in build_plans(plugins)
    ]
    if args.json:
        print(
            json.dumps(
                {
                    "ok": not loaded.skipped,
                    "state": str(config.state.path),
                    "plugins": [
                        {
                            "name": name,
                            "version": plugin.manifest.version,
                            "commands": [c.name for c in plugin.manifest.commands],
                            "parallelism": plugin.parallelism,
                        }
                        for name, plugin in sorted(plugins.items())
                    ],
                    "skipped": [{"path": str(s.path), "reason": s.reason} for s in loaded.skipped],
                    "schedules": schedules,
                    "secrets": len(list(registry.vault.names())),
                },
                indent=2,
            )
        )
        return EXIT_CONFIG if loaded.skipped else 0
    for name, plugin in sorted(plugins.items()):
        commands = ", ".join(c.name for c in plugin.manifest.commands)
        print(f"{name} {plugin.manifest.version}: {commands} (parallelism {plugin.parallelism})")
    if schedules:
        print("schedules (next runs if the daemon started now):")
        for schedule in schedules:
            when = ", ".join(schedule["next_runs"]) or "never again"
            print(f"  {schedule['plugin']}/{schedule['id']} ({schedule['command']}): {when}")
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
    stored = len(list(registry.vault.names()))
    if stored:
        print(f"secrets: {stored} in the registry, opened with {registry.sealer.source}")
    print(f"config OK: {len(plugins)} plugins, state {config.state.path}")
    return 0


def cmd_secret_key(args: argparse.Namespace) -> int:
    """Print a fresh secret key."""
    print(new_key_text())
    return 0


@attrs.frozen(kw_only=True)
class HelpText:
    """What ``--help`` prints for the program or one subcommand, besides its options."""

    description: str
    examples: tuple[str, ...]
    #: (exit code, when) pairs, in the order printed.
    exit_codes: tuple[tuple[int, str], ...]
    #: A subcommand's line in the program's list of commands.
    summary: str = ""

    def epilog(self) -> str:
        """The examples and the exit codes, as printed after the options."""
        lines = ["examples:", *(f"  {example}" for example in self.examples), "", "exit codes:"]
        for code, when in self.exit_codes:
            lines.extend(
                textwrap.wrap(
                    when, width=79, initial_indent=f"  {code:<4}", subsequent_indent=" " * 6
                )
            )
        return "\n".join(lines)


_BAD_COMMAND_LINE = (2, "a bad command line: an unknown option, a missing or out-of-range value")
_BAD_CONFIG = (
    EXIT_CONFIG,
    "a bad config (EX_CONFIG): the file does not load or validate, state.path cannot"
    " be opened, the secret key is malformed, open to others, missing or not the one"
    " the stored secrets were sealed with, api.listen cannot be listened on, or the"
    " example's development keys are set for a listener other than loopback",
)

PROGRAM_HELP = HelpText(
    description=(
        "Chamberlain runs plugins (executables that read one JSON request on stdin and\n"
        "write one JSON response on stdout) as durable jobs: once the HTTP API has\n"
        "accepted a job, it survives a crash of the daemon and ends in exactly one\n"
        "terminal status.  Run 'chamberlain COMMAND --help' for one command's options."
    ),
    examples=(
        "chamberlain check --config config.yaml",
        "chamberlain start --config config.yaml",
        "chamberlain run echo poll --payload '{\"n\": 1}'",
        "chamberlain --log-format json start --config config.yaml",
        "CHAMBERLAIN_TOKEN=… chamberlain trigger echo poll -p greeting=hi --wait",
    ),
    exit_codes=(
        (0, "success"),
        (
            EXIT_FAILURE,
            "a runtime failure: another daemon holds the state, a supervisor gave up, or"
            " the job of 'chamberlain run' did not succeed or names an unknown plugin or"
            " command",
        ),
        _BAD_COMMAND_LINE,
        (
            EXIT_CONFIG,
            "a bad config (EX_CONFIG), and for 'check' a plugin that would be skipped;"
            " systemd's RestartPreventExitStatus=78 keeps it from restarting into the"
            " same error",
        ),
    ),
)

START_HELP = HelpText(
    summary="run the daemon in the foreground",
    description=(
        "Run the daemon in the foreground (under systemd, in a terminal, in a container)\n"
        "until SIGTERM or SIGINT stops it.  The first signal drains: no new jobs start,\n"
        "running ones get service.shutdown_grace to finish.  A second signal stops at\n"
        "once and puts the jobs it interrupts back in the queue."
    ),
    examples=(
        "chamberlain start --config /etc/chamberlain/config.yaml",
        "chamberlain start -c config.yaml --listen 127.0.0.1:9090",
        "chamberlain start -c config.yaml --log-format json 2>daemon.log",
    ),
    exit_codes=(
        (0, "stopped by a signal, after an orderly shutdown"),
        (EXIT_FAILURE, "another daemon holds the state, or a supervisor gave up"),
        _BAD_COMMAND_LINE,
        _BAD_CONFIG,
    ),
)

RUN_HELP = HelpText(
    summary="run one job in the foreground and print its record",
    description=(
        "Run one job of PLUGIN's COMMAND through the same Runner the daemon uses, on a\n"
        "throwaway in-memory store, and print the job's record as JSON on stdout.\n"
        "While it runs, every line the plugin writes to stderr (within the job's output\n"
        "cap) and every status change is shown on stderr as it happens; --quiet turns\n"
        "that off.  stdout holds the record and nothing else, so it can be piped to jq."
    ),
    examples=(
        "chamberlain run echo poll",
        "chamberlain run echo poll --payload '{\"n\": 1}' --config config.example.yaml",
        "chamberlain run myplugin handle --payload '{\"id\": 7}' --attempts 3 --timeout 30",
        "chamberlain run echo poll --quiet | jq .result",
    ),
    exit_codes=(
        (0, "the job succeeded"),
        (
            EXIT_FAILURE,
            "the job did not succeed (it ended failed, timed_out, cancelled or dead), the"
            " plugin or the command is unknown, or --payload is not a JSON object or"
            " breaks the command's input_schema",
        ),
        _BAD_COMMAND_LINE,
        _BAD_CONFIG,
    ),
)

CHECK_HELP = HelpText(
    summary="validate the config and the plugins it names",
    description=(
        "Load and validate the config and every plugin it names, print the plugins that\n"
        "would run (version, commands, parallelism) and exit.  What 'start' would refuse,\n"
        "'check' refuses; a plugin that 'start' would skip with a warning fails 'check'."
    ),
    examples=(
        "chamberlain check --config /etc/chamberlain/config.yaml",
        "chamberlain check -c config.yaml && systemctl restart chamberlain",
    ),
    exit_codes=(
        (0, "the config is valid and every plugin on the plugin roots loads"),
        _BAD_COMMAND_LINE,
        (
            EXIT_CONFIG,
            "a bad config (EX_CONFIG), a secret key that does not open the stored"
            " secrets, or a plugin that would be skipped (listed with the reason)",
        ),
    ),
)

SECRET_KEY_HELP = HelpText(
    summary="print a fresh key for CHAMBERLAIN_SECRET_KEY",
    description=(
        "Print a fresh secret key: the URL-safe base64 of 32 random bytes, the form\n"
        "CHAMBERLAIN_SECRET_KEY and the key file (secret.key beside state.path) hold.\n"
        "The daemon seals the registry's secrets with it (AES-GCM).  Keep it where the\n"
        "daemon's environment comes from (under systemd, the EnvironmentFile of mode\n"
        "0600); without the key the stored secrets cannot be opened."
    ),
    examples=(
        "chamberlain secret-key",
        '(umask 077; echo "CHAMBERLAIN_SECRET_KEY=$(chamberlain secret-key)"'
        " >> /etc/chamberlain/env)",
    ),
    exit_codes=((0, "the key was printed"), _BAD_COMMAND_LINE),
)

LOG_FORMATS = ("text", "json")


def _logging_options(*, defaults: bool) -> argparse.ArgumentParser:
    """The options every command takes, as a parent parser.

    The program's copy holds the defaults; each subcommand's copy has none
    (``SUPPRESS``), so a value given after the subcommand overrides one given before
    it and a value given only before it is kept.
    """
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("logging options")
    group.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=None if defaults else argparse.SUPPRESS,
        help=(
            "the least severe log records written; wins over the config's"
            " service.log_level (default: that, else info)"
        ),
    )
    group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None if defaults else argparse.SUPPRESS,
        help=(
            "text: one line per record for a person; json: one object per line for"
            " journald and jq (default: text when stderr is a terminal, json otherwise)"
        ),
    )
    return options


def _subcommand(
    sub: Any, name: str, text: HelpText, options: argparse.ArgumentParser
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=text.summary,
        description=text.description,
        epilog=text.epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[options],
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (public so the docs and tests can inspect it)."""
    parser = argparse.ArgumentParser(
        prog="chamberlain",
        description=PROGRAM_HELP.description,
        epilog=PROGRAM_HELP.epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_logging_options(defaults=True)],
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"chamberlain {package_version()}",
        help="print the version and exit",
    )
    options = _logging_options(defaults=False)
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND", title="commands")

    start = _subcommand(sub, "start", START_HELP, options)
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

    run = _subcommand(sub, "run", RUN_HELP, options)
    run.add_argument("plugin", metavar="PLUGIN", help="the plugin's name")
    run.add_argument("command", metavar="COMMAND", help="one of the plugin's commands")
    run.add_argument(
        "--payload", default="{}", metavar="JSON", help="the job's payload, a JSON object"
    )
    run.add_argument("--config", "-c", help="path to the YAML config (default: built-in defaults)")
    run.add_argument(
        "--attempts",
        type=_attempts_option,
        default=1,
        metavar="N",
        help="attempts before giving up (default: 1)",
    )
    run.add_argument(
        "--timeout",
        type=_seconds_option,
        default=None,
        metavar="SECONDS",
        help=(
            "seconds an attempt may run before it is stopped (default: the command's"
            " timeout in the config, plugins.NAME.timeouts)"
        ),
    )
    run.add_argument(
        "--loop",
        default=None,
        metavar="JSON",
        help=(
            'run the command as a loop job: {"max_iterations", "completion_token",'
            ' "feedback", "iteration_timeout"}, over plugins.NAME.loop (docs/LOOPS.md)'
        ),
    )
    run.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="do not show the plugin's stderr and the status changes while the job runs",
    )
    run.set_defaults(func=cmd_run)

    check = _subcommand(sub, "check", CHECK_HELP, options)
    check.add_argument("--config", "-c", required=True, help="path to the YAML config")
    check.add_argument(
        "--json", action="store_true", help="print the plugins, schedules and problems as JSON"
    )
    check.set_defaults(func=cmd_check)

    secret_key = _subcommand(sub, "secret-key", SECRET_KEY_HELP, options)
    secret_key.set_defaults(func=cmd_secret_key)
    add_client_commands(sub, [options])
    return parser


def log_formatter(choice: str | None, stream: TextIO) -> RedactingFormatter:
    """The formatter ``--log-format`` names; without one, text on a terminal, else JSON."""
    if choice is None:
        choice = "text" if stream.isatty() else "json"
    return TextFormatter() if choice == "text" else JsonFormatter()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    # Answers a shell's completion request (and exits) when one is asked for.
    argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    jsonlog.configure(
        (args.log_level or "info").upper(),
        sys.stderr,
        formatter=log_formatter(args.log_format, sys.stderr),
    )
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        log.error("%s", exc, extra={"component": "config", "problems": list(exc.problems)})
        print(f"chamberlain: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return code


if __name__ == "__main__":
    sys.exit(main())
