"""The client commands' command line: their options and help, added to ``chamberlain``'s."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

from ._commands import (
    RUN_ACTIONS,
    cmd_approve,
    cmd_cancel,
    cmd_complete,
    cmd_health,
    cmd_job,
    cmd_jobs,
    cmd_logs,
    cmd_message,
    cmd_pipeline,
    cmd_plugins,
    cmd_queue,
    cmd_reject,
    cmd_reload,
    cmd_retry,
    cmd_run_action,
    cmd_run_events,
    cmd_runs,
    cmd_schedules,
    cmd_trigger,
    run_client_command,
)
from ._completion import SHELLS, commands_of, job_ids, plugin_names, run_ids, shell_code
from ._mcp_bridge import cmd_mcp

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


def _connection_options(*, output: bool = True) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("connection")
    group.add_argument("--url", help="the daemon's API, e.g. http://127.0.0.1:8080")
    group.add_argument("--token", help="an API token (prefer CHAMBERLAIN_TOKEN or a profile)")
    group.add_argument("--profile", help="a profile of client.toml")
    group.add_argument(
        "--config", "-c", help="the daemon's config: its api.listen and api_key are used"
    )
    if not output:
        return options
    shown = options.add_argument_group("output")
    shown.add_argument("--json", action="store_true", help="print the API's JSON answer unchanged")
    shown.add_argument("--quiet", "-q", action="store_true", help="print only the job id(s)")
    return options


def _waiting(parser: argparse.ArgumentParser, *, follow: bool = True) -> None:
    parser.add_argument(
        "--wait", "-w", action="store_true", help="wait for the job to end; exit as it ended"
    )
    if follow:
        parser.add_argument(
            "--follow",
            "-f",
            action="store_true",
            help="stream the job's messages as they come until it ends; exit as it ended",
        )
    parser.add_argument(
        "--timeout", metavar="D", help="with --wait: give up after D (30s, 5m); exit 3"
    )


def _limit(value: str) -> int:
    """A page size the API takes (1-500), refused here as a usage error otherwise."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if not 1 <= number <= 500:
        raise argparse.ArgumentTypeError(f"must be 1-500, got {number}")
    return number


def _completes(action: argparse.Action, completer: Any) -> None:
    # argcomplete reads the completer off the action: argparse has no field for it.
    action.completer = completer  # type: ignore[attr-defined]


def cmd_completion(args: argparse.Namespace) -> int:
    """Print the shell code that completes ``chamberlain`` in ``args.shell``."""
    sys.stdout.write(shell_code(args.shell))
    return 0


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
    "logs": (
        "show a job's messages (stderr lines, logs, status changes)",
        ("chamberlain logs 3f0c…", "chamberlain logs 3f0c… --follow"),
    ),
    "cancel": ("cancel a queued or running job", ("chamberlain cancel 3f0c…",)),
    "message": (
        "send a running interactive job a message",
        ("chamberlain message 3f0c… 'Ada Lovelace'",),
    ),
    "complete": (
        "complete a running interactive job's session",
        ("chamberlain complete 3f0c… --wait",),
    ),
    "retry": ("run a finished job again", ("chamberlain retry 3f0c… --wait",)),
    "queue": ("show the running and queued jobs", ("chamberlain queue",)),
    "health": ("show the daemon's health; exit 1 unless ok", ("chamberlain health --json",)),
    "reload": (
        "reload the daemon's config file in place; exit 1, listing every problem, if refused",
        ("chamberlain reload", "chamberlain reload --json"),
    ),
    "plugins": (
        "list the plugins, or show one with its commands",
        ("chamberlain plugins", "chamberlain plugins echo --json"),
    ),
    "schedules": (
        "list the schedules, or close one's circuit breaker",
        ("chamberlain schedules", "chamberlain schedules --reset backup/nightly --reason fixed"),
    ),
    "pipeline": (
        "start a pipeline: a run",
        ("chamberlain pipeline deploy -p version=1.4.2", "chamberlain pipeline deploy --paused"),
    ),
    "runs": (
        "list runs of pipelines, or show one with its steps",
        ("chamberlain runs --status awaiting_approval", "chamberlain runs 7c2e… --json"),
    ),
    "run-action": (
        "pause, resume or cancel a run, run its next step, or retry its latest",
        (
            "chamberlain run-action 7c2e… pause --stop-running",
            "chamberlain run-action 7c2e… retry-latest",
        ),
    ),
    "run-events": (
        "show a run's events log: state changes, actions, approvals, checks, CI",
        ("chamberlain run-events 7c2e… --kind approval,ci",),
    ),
    "approve": (
        "approve a run's step that awaits approval",
        ("chamberlain approve 7c2e… ship --comment go -i environment=staging",),
    ),
    "completion": (
        "print the shell code that completes chamberlain's commands, options and names",
        (
            'eval "$(chamberlain completion bash)"     # in ~/.bashrc',
            'eval "$(chamberlain completion zsh)"      # in ~/.zshrc, after compinit',
        ),
    ),
    "reject": (
        "reject a run's step that awaits approval: the run fails",
        ("chamberlain reject 7c2e… ship --comment 'not today'",),
    ),
    "mcp": (
        "serve the daemon's MCP tools on stdin and stdout, for clients that speak only stdio",
        (
            'chamberlain mcp --url http://127.0.0.1:8080 --token "$CHAMBERLAIN_TOKEN"',
            "CHAMBERLAIN_PROFILE=work chamberlain mcp",
        ),
    ),
}


def _add(
    sub: Any, name: str, options: list[argparse.ArgumentParser], *, asks: bool = True
) -> argparse.ArgumentParser:
    """The subparser of ``name``; ``asks``: it talks to a daemon (connection options,
    the client's exit codes)."""
    summary, examples = CLIENT_COMMANDS[name]
    epilog = "examples:\n" + "".join(f"  {e}\n" for e in examples)
    description = f"{summary[0].upper()}{summary[1:]}."
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=f"{description}\n\n{_CONNECTION_HELP}" if asks else description,
        epilog=f"{epilog}\n{_EXIT_HELP}" if asks else epilog,
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
    _completes(trigger.add_argument("plugin", metavar="PLUGIN"), plugin_names)
    _completes(trigger.add_argument("command", metavar="COMMAND"), commands_of)
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
    _completes(job.add_argument("job_id", metavar="ID"), job_ids)
    _waiting(job)
    bind(job, cmd_job)

    jobs = _add(sub, "jobs", options)
    jobs.add_argument("--status", help="comma-separated statuses (failed,dead)")
    jobs.add_argument("--plugin", help="only this plugin's jobs")
    jobs.add_argument("--since", metavar="RFC3339", help="created at or after this time")
    jobs.add_argument("--limit", type=_limit, default=50, help="at most this many (1-500)")
    bind(jobs, cmd_jobs)

    logs = _add(sub, "logs", options)
    _completes(logs.add_argument("job_id", metavar="ID"), job_ids)
    logs.add_argument(
        "--follow", "-f", action="store_true", help="go on as messages come, until the job ends"
    )
    bind(logs, cmd_logs)

    cancel = _add(sub, "cancel", options)
    _completes(cancel.add_argument("job_id", metavar="ID"), job_ids)
    bind(cancel, cmd_cancel)

    message = _add(sub, "message", options)
    _completes(message.add_argument("job_id", metavar="ID"), job_ids)
    message.add_argument("text", metavar="TEXT", help="the message, one line")
    bind(message, cmd_message)

    complete = _add(sub, "complete", options)
    _completes(complete.add_argument("job_id", metavar="ID"), job_ids)
    _waiting(complete, follow=False)
    bind(complete, cmd_complete)

    retry = _add(sub, "retry", options)
    _completes(retry.add_argument("job_id", metavar="ID"), job_ids)
    _waiting(retry, follow=False)
    bind(retry, cmd_retry)

    queue = _add(sub, "queue", options)
    queue.add_argument(
        "--limit", type=_limit, default=100, help="at most this many of each (1-500)"
    )
    bind(queue, cmd_queue)

    health = _add(sub, "health", options)
    bind(health, cmd_health)

    reload = _add(sub, "reload", options)
    bind(reload, cmd_reload)

    plugins = _add(sub, "plugins", options)
    _completes(
        plugins.add_argument("name", metavar="NAME", nargs="?", help="one plugin"), plugin_names
    )
    bind(plugins, cmd_plugins)

    schedules = _add(sub, "schedules", options)
    schedules.add_argument("--reset", metavar="PLUGIN/ID", help="close this schedule's breaker")
    schedules.add_argument("--reason", help="with --reset: why, for its record")
    bind(schedules, cmd_schedules)

    pipeline = _add(sub, "pipeline", options)
    pipeline.add_argument("name", metavar="NAME")
    pipeline.add_argument(
        "-p", "--param", action="append", metavar="KEY=VALUE", help="a payload field (repeatable)"
    )
    pipeline.add_argument("--payload", metavar="JSON", help="the payload: a JSON object, or @file")
    pipeline.add_argument(
        "--paused", action="store_true", help="start the run paused (resume it with the API)"
    )
    bind(pipeline, cmd_pipeline)

    runs = _add(sub, "runs", options)
    _completes(runs.add_argument("run_id", metavar="RUN", nargs="?", help="one run"), run_ids)
    runs.add_argument("--pipeline", help="only this pipeline's runs")
    runs.add_argument("--status", help="comma-separated statuses (awaiting_approval,blocked)")
    runs.add_argument("--limit", type=_limit, default=50, help="at most this many (1-500)")
    bind(runs, cmd_runs)

    act = _add(sub, "run-action", options)
    _completes(act.add_argument("run_id", metavar="RUN"), run_ids)
    act.add_argument("action", choices=RUN_ACTIONS)
    act.add_argument(
        "--stop-running", action="store_true", help="pause only: stop the running step too"
    )
    bind(act, cmd_run_action)

    run_events = _add(sub, "run-events", options)
    _completes(run_events.add_argument("run_id", metavar="RUN"), run_ids)
    run_events.add_argument("--kind", help="comma-separated kinds (approval,ci,action)")
    run_events.add_argument(
        "--limit", type=int, default=500, help="at most this many, the oldest first (1-5000)"
    )
    bind(run_events, cmd_run_events)

    bridge = _add(sub, "mcp", [*parents, _connection_options(output=False)])
    bridge.set_defaults(func=cmd_mcp)

    completion = _add(sub, "completion", list(parents), asks=False)
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(func=cmd_completion)

    for word, command in (("approve", cmd_approve), ("reject", cmd_reject)):
        decide = _add(sub, word, options)
        _completes(decide.add_argument("run_id", metavar="RUN"), run_ids)
        decide.add_argument("step_id", metavar="STEP")
        decide.add_argument("--comment", help="why, for the run's record")
        if word == "approve":
            decide.add_argument(
                "-i",
                "--input",
                action="append",
                metavar="KEY=VALUE",
                help="an approval input: key=text or key:=JSON (repeatable)",
            )
            decide.add_argument(
                "--inputs", metavar="JSON", help="the inputs: a JSON object, or @file"
            )
        bind(decide, command)
