"""The client commands' command line: their options and help, added to ``chamberlain``'s."""

from __future__ import annotations

import argparse
import functools
from typing import Any

from ._commands import (
    cmd_cancel,
    cmd_health,
    cmd_job,
    cmd_jobs,
    cmd_queue,
    cmd_retry,
    cmd_trigger,
    run_client_command,
)

__all__ = ["CLIENT_COMMANDS", "add_client_commands"]

_EXIT_HELP = """exit codes:
  0   succeeded (a job waited for succeeded; any other command: answered)
  1   the job failed or is dead, or the daemon refused the request (404, 409, 400)
  2   a bad command line, payload or client.toml
  3   the job timed out, or --timeout passed while it still ran
  4   the job was cancelled
  5   the daemon cannot be reached
  6   the daemon refused the token (401, 403)
"""

_CONNECTION_HELP = """connection: --url/--token, else CHAMBERLAIN_URL/CHAMBERLAIN_TOKEN, else
a profile of ~/.config/chamberlain/client.toml (--profile, CHAMBERLAIN_PROFILE or
[default]; mode 0600 when it holds a token), else the daemon of --config."""


def _connection_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("connection")
    group.add_argument("--url", help="the daemon's API, e.g. http://127.0.0.1:8080")
    group.add_argument("--token", help="an API token (prefer CHAMBERLAIN_TOKEN or a profile)")
    group.add_argument("--profile", help="a profile of client.toml")
    group.add_argument(
        "--config", "-c", help="the daemon's config: its api.listen and api_key are used"
    )
    output = options.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="print the API's JSON answer unchanged")
    output.add_argument("--quiet", "-q", action="store_true", help="print only the job id(s)")
    return options


def _waiting(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait", "-w", action="store_true", help="wait for the job to end; exit as it ended"
    )
    parser.add_argument(
        "--timeout", metavar="D", help="with --wait: give up after D (30s, 5m); exit 3"
    )


#: Each client command: its name, one line of help, and its examples.
CLIENT_COMMANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "trigger": (
        "enqueue a job of a plugin's command on the daemon",
        (
            "chamberlain trigger echo poll -p greeting=hi --wait",
            "chamberlain trigger backup handle -p path=/home -p keep:=7 --wait --timeout 1h",
            "chamberlain trigger echo handle --payload @payload.json -q",
        ),
    ),
    "job": ("show one job", ("chamberlain job 3f0c… --wait", "chamberlain job 3f0c… --json")),
    "jobs": (
        "list jobs, newest first",
        ("chamberlain jobs --status failed,dead --plugin backup", "chamberlain jobs -q"),
    ),
    "cancel": ("cancel a queued or running job", ("chamberlain cancel 3f0c…",)),
    "retry": ("run a finished job again", ("chamberlain retry 3f0c… --wait",)),
    "queue": ("show the running and queued jobs", ("chamberlain queue",)),
    "health": ("show the daemon's health; exit 1 unless ok", ("chamberlain health --json",)),
}


def _add(sub: Any, name: str, options: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    summary, examples = CLIENT_COMMANDS[name]
    epilog = "examples:\n" + "".join(f"  {e}\n" for e in examples)
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=f"{summary[0].upper()}{summary[1:]}.\n\n{_CONNECTION_HELP}",
        epilog=f"{epilog}\n{_EXIT_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=options,
    )
    return parser


def add_client_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the client commands to ``chamberlain``'s subcommands ``sub``; each sets
    ``func`` to a callable of the parsed arguments that returns the exit code."""
    options = [*parents, _connection_options()]

    def bind(parser: argparse.ArgumentParser, command: Any) -> None:
        parser.set_defaults(func=functools.partial(run_client_command, command))

    trigger = _add(sub, "trigger", options)
    trigger.add_argument("plugin", metavar="PLUGIN")
    trigger.add_argument("command", metavar="COMMAND")
    trigger.add_argument(
        "-p",
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="a payload field: key=text, or key:=JSON (repeatable)",
    )
    trigger.add_argument("--payload", metavar="JSON", help="the payload: a JSON object, or @file")
    _waiting(trigger)
    bind(trigger, cmd_trigger)

    job = _add(sub, "job", options)
    job.add_argument("job_id", metavar="ID")
    _waiting(job)
    bind(job, cmd_job)

    jobs = _add(sub, "jobs", options)
    jobs.add_argument("--status", help="comma-separated statuses (failed,dead)")
    jobs.add_argument("--plugin", help="only this plugin's jobs")
    jobs.add_argument("--since", metavar="RFC3339", help="created at or after this time")
    jobs.add_argument("--limit", type=int, default=50, help="at most this many (1-500)")
    bind(jobs, cmd_jobs)

    cancel = _add(sub, "cancel", options)
    cancel.add_argument("job_id", metavar="ID")
    bind(cancel, cmd_cancel)

    retry = _add(sub, "retry", options)
    retry.add_argument("job_id", metavar="ID")
    _waiting(retry)
    bind(retry, cmd_retry)

    queue = _add(sub, "queue", options)
    queue.add_argument("--limit", type=int, default=100, help="at most this many of each (1-500)")
    bind(queue, cmd_queue)

    health = _add(sub, "health", options)
    bind(health, cmd_health)
