"""The client commands: each asks the daemon over HTTP and shows the answer.

A command returns its exit code (:class:`ExitCode`); output goes to stdout (a table
on a terminal, the API's JSON unchanged with ``--json``, only the job id with
``-q``), progress and errors to stderr.  Colour follows the terminal: none when
stdout is no TTY or ``NO_COLOR`` is set (rich's own rule).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from chamberlain.config.units import parse_duration

from ._api import ApiClient, ClientError
from ._connection import ConnectionError, resolve
from ._exits import ExitCode, exit_for_status

__all__ = ["TERMINAL", "parse_payload", "run_client_command", "wait_job"]

#: Job statuses that end a job.
TERMINAL = frozenset({"succeeded", "failed", "dead", "timed_out", "cancelled"})

#: Seconds one long poll of ``GET /job/{id}?wait=`` asks for (the API's longest is 60).
_POLL = 30.0

#: The columns ``jobs`` and ``queue`` show.
_JOB_COLUMNS = ("job_id", "status", "plugin", "command", "attempt", "created_at", "last_error")


def parse_payload(
    pairs: Sequence[str], payload: str | None, *, flags: tuple[str, str] = ("-p", "--payload")
) -> dict[str, Any]:
    """The payload ``-p key=value`` (a string) / ``-p key:=JSON`` pairs, or ``--payload
    JSON`` / ``--payload @file.json`` give; :class:`ClientError` (usage) if bad.
    ``flags`` names the two options in messages (``-i`` and ``--inputs`` for approve)."""
    pair_flag, whole_flag = flags
    if pairs and payload is not None:
        raise ClientError(f"give {pair_flag} pairs or {whole_flag}, not both", ExitCode.USAGE)
    if payload is not None:
        text = payload
        if payload.startswith("@"):
            try:
                text = Path(payload[1:]).read_text()
            except OSError as exc:
                raise ClientError(
                    f"{whole_flag} {payload}: {exc.strerror}", ExitCode.USAGE
                ) from None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ClientError(f"{whole_flag}: not JSON: {exc}", ExitCode.USAGE) from None
        if not isinstance(value, dict):
            raise ClientError(f"{whole_flag} must be a JSON object", ExitCode.USAGE)
        return value
    found: dict[str, Any] = {}
    for pair in pairs:
        key, json_sep, rest = pair.partition(":=")
        if json_sep and "=" not in key:
            try:
                found[key] = json.loads(rest)
            except ValueError as exc:
                raise ClientError(
                    f"{pair_flag} {pair}: not JSON after :=: {exc}", ExitCode.USAGE
                ) from None
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ClientError(
                f"{pair_flag} {pair}: expected key=value or key:=JSON", ExitCode.USAGE
            )
        found[key] = value
    return found


def _duration(value: str | None, option: str) -> float:
    if value is None:
        return math.inf
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ClientError(f"{option} {value}: {exc}", ExitCode.USAGE) from None


def wait_job(
    api: ApiClient,
    job_id: str,
    *,
    timeout: float,
    on_poll: Callable[[Mapping[str, Any]], None] = lambda job: None,
    clock: Callable[[], float] = time.monotonic,
    poll: float = _POLL,
) -> dict[str, Any]:
    """The job once it ended, or as it stands when ``timeout`` seconds passed; long
    polls of ``GET /job/{id}?wait=`` of ``poll`` seconds at most (the first one
    answers at once), each shown to ``on_poll``."""
    deadline = clock() + timeout
    first = True
    while True:
        left = deadline - clock()
        wait = 0.0 if first else max(0.0, min(poll, left))
        first = False
        job: dict[str, Any] = api.call(
            "GET", f"/job/{job_id}", params={"wait": f"{wait:.3f}"}, wait=wait
        )
        on_poll(job)
        if job.get("status") in TERMINAL or clock() >= deadline:
            return job


class _Output:
    """Where a command writes: the data on stdout, progress on stderr."""

    def __init__(self, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> None:
        self.json = bool(getattr(args, "json", False))
        self.quiet = bool(getattr(args, "quiet", False))
        self.out = Console(file=stdout, highlight=False, soft_wrap=True)
        self.err = Console(file=stderr, highlight=False, soft_wrap=True)
        self.raw = stdout

    def data(self, value: Any) -> None:
        """The API's JSON, unchanged."""
        self.raw.write(json.dumps(value, indent=2 if self.out.is_terminal else None) + "\n")

    def table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
        table = Table(*columns, box=None, pad_edge=False, header_style="bold")
        for row in rows:
            # Text, not markup: a job's output may hold "[red]" or any bracket.
            table.add_row(*(Text(_cell(row.get(column))) for column in columns))
        self.out.print(table)

    def answer(
        self, value: Mapping[str, Any], keys: Sequence[str], *, quiet: str | None = None
    ) -> None:
        """A one-object answer: its JSON (``--json``); with ``-q`` its ``quiet`` field
        alone (nothing without one, its ``keys`` when it lacks that field); else its
        ``keys`` as a grid."""
        if self.json:
            self.data(value)
        elif not self.quiet:
            self.fields(value, keys)
        elif quiet is not None:
            shown = value.get(quiet)
            if shown is not None:
                self.raw.write(f"{shown}\n")
            else:
                self.fields(value, keys)

    def listing(
        self,
        answer: Mapping[str, Any],
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str],
        *,
        ids: str,
        summary: str | None = None,
    ) -> None:
        """A list answer: its JSON, each row's ``ids`` field (``-q``), or a table of
        ``rows`` with ``summary`` under it on stderr."""
        if self.json:
            self.data(answer)
        elif self.quiet:
            self.raw.writelines(f"{row[ids]}\n" for row in rows)
        else:
            self.table(rows, columns)
            if summary is not None:
                self.err.print(summary, markup=False)

    def fields(self, value: Mapping[str, Any], keys: Sequence[str]) -> None:
        table = Table.grid(padding=(0, 2))
        for key in keys:
            if key in value and value[key] is not None:
                table.add_row(Text(key, style="bold"), Text(_cell(value[key])))
        self.out.print(table)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


_JOB_FIELDS = (
    "job_id",
    "status",
    "plugin",
    "command",
    "attempt",
    "max_attempts",
    "submitted_by",
    "created_at",
    "started_at",
    "completed_at",
    "next_retry_at",
    "last_error",
    "run_id",
    "result",
)


def _show_job(out: _Output, job: Mapping[str, Any]) -> None:
    out.answer(job, _JOB_FIELDS, quiet="job_id")


def _filters(args: argparse.Namespace, *keys: str) -> dict[str, str | int]:
    """The query of a listing: its ``--limit``, and each of ``keys`` that was given."""
    params: dict[str, str | int] = {"limit": args.limit}
    params.update({key: getattr(args, key) for key in keys if getattr(args, key)})
    return params


def _waited(out: _Output, api: ApiClient, job_id: str, timeout: float) -> int:
    """Wait for a job with a live status line on a terminal; its exit code."""
    started = time.monotonic()
    live = out.err.is_terminal and not out.quiet and not out.json
    if live:
        with out.err.status(f"{job_id}: waiting") as status:

            def show(job: Mapping[str, Any]) -> None:
                elapsed = time.monotonic() - started
                status.update(f"{job_id}: {job.get('status')}  {elapsed:.0f}s")

            # Short polls, so the line's status and seconds stay current.
            job = wait_job(api, job_id, timeout=timeout, on_poll=show, poll=1.0)
    else:
        job = wait_job(api, job_id, timeout=timeout)
    _show_job(out, job)
    code = exit_for_status(str(job.get("status")))
    if code is ExitCode.TIMED_OUT and job.get("status") not in TERMINAL:
        out.err.print(f"chamberlain: {job_id} is still {job.get('status')} after the --timeout")
    return code


def _message_line(message: Mapping[str, Any]) -> str:
    """One message of a job as ``logs`` prints it: time, kind, text."""
    ts = str(message.get("ts", ""))
    clock = ts[11:23] if len(ts) >= 23 else ts
    return f"{clock} {message.get('kind', '?'):<10} {message.get('text', '')}"


def _followed(out: _Output, api: ApiClient, job_id: str) -> int:
    """Stream a job's messages as they come until it ends; its exit code."""
    job: Mapping[str, Any] | None = None
    for event in api.events(f"/job/{job_id}/stream"):
        if event.event in ("message", "status"):
            if out.json:
                out.raw.write(json.dumps(event.data) + "\n")
            elif not out.quiet:
                out.raw.write(_message_line(event.data) + "\n")
            out.raw.flush()
        elif event.event == "done":
            job = event.data.get("job")
            break
    if job is None:
        raise ClientError(f"the stream of {job_id} closed before the job ended", ExitCode.FAILED)
    if out.json:
        out.data(job)
    elif out.quiet:
        out.raw.write(f"{job_id}\n")
    else:
        out.err.print(f"{job_id}: {job.get('status')}", markup=False)
    return exit_for_status(str(job.get("status")))


def cmd_logs(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    if args.follow:
        return _followed(out, api, args.job_id)
    job = api.call("GET", f"/job/{args.job_id}", params={"include": "messages"})
    messages = job.get("messages", [])
    if out.json:
        out.data(messages)
    else:
        out.raw.writelines(_message_line(message) + "\n" for message in messages)
    return ExitCode.SUCCEEDED


def cmd_trigger(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    payload = parse_payload(args.param or (), args.payload)
    timeout = _duration(args.timeout, "--timeout")
    answer = api.call("POST", f"/trigger/{args.plugin}/{args.command}", body={"payload": payload})
    job_id = answer.get("job_id")
    if args.follow and isinstance(job_id, str):
        return _followed(out, api, job_id)
    if not args.wait or not isinstance(job_id, str):
        out.answer(answer, ("job_id", "status", "plugin", "command", "duplicate"), quiet="job_id")
        return ExitCode.SUCCEEDED
    return _waited(out, api, job_id, timeout)


def cmd_job(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    if args.follow:
        return _followed(out, api, args.job_id)
    if args.wait:
        return _waited(out, api, args.job_id, _duration(args.timeout, "--timeout"))
    _show_job(out, api.call("GET", f"/job/{args.job_id}"))
    return ExitCode.SUCCEEDED


def cmd_jobs(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    answer = api.call("GET", "/jobs", params=_filters(args, "status", "plugin", "since"))
    jobs = answer["jobs"]
    summary = f"{len(jobs)} of {answer['total']} jobs"
    out.listing(answer, jobs, _JOB_COLUMNS, ids="job_id", summary=summary)
    return ExitCode.SUCCEEDED


def cmd_cancel(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    answer = api.call("POST", f"/job/{args.job_id}/cancel")
    out.answer(answer, ("job_id", "status", "was_running"))
    return ExitCode.SUCCEEDED


def cmd_retry(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    answer = api.call("POST", f"/job/{args.job_id}/retry")
    if args.wait:
        return _waited(out, api, answer["job_id"], _duration(args.timeout, "--timeout"))
    keys = ("job_id", "original_job_id", "status", "plugin", "command")
    out.answer(answer, keys, quiet="job_id")
    return ExitCode.SUCCEEDED


def cmd_queue(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    answer = api.call("GET", "/queue", params=_filters(args))
    summary = (
        f"{answer['running_total']} running (of {answer['max_workers']} workers),"
        f" {answer['queued_total']} queued"
    )
    rows = [*answer["running"], *answer["queued"]]
    out.listing(answer, rows, _JOB_COLUMNS[:-1], ids="job_id", summary=summary)
    return ExitCode.SUCCEEDED


def cmd_health(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    answer = api.call("GET", "/healthz")
    out.answer(answer, tuple(answer))
    return ExitCode.SUCCEEDED if answer.get("status") == "ok" else ExitCode.FAILED


def cmd_reload(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    answer = api.call("POST", "/system/reload")
    if out.json:
        out.data(answer)
        return ExitCode.SUCCEEDED
    changes = answer.get("changes", [])
    if changes and not out.quiet:
        out.table(changes, ("path", "change", "detail"))
    waiting = sum(1 for c in changes if c.get("change") == "restart_required")
    summary = f"reloaded {answer.get('config_hash')}: {len(changes) or 'no'} changes"
    if waiting:
        summary += f", {waiting} waiting for a restart"
    out.err.print(summary, markup=False)
    return ExitCode.SUCCEEDED


def cmd_message(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    answer = api.call("POST", f"/job/{args.job_id}/message", body={"message": args.text})
    out.answer(answer, ("job_id", "message_sent", "message_id"))
    return ExitCode.SUCCEEDED


def cmd_complete(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    answer = api.call("POST", f"/job/{args.job_id}/complete")
    if args.wait:
        return _waited(out, api, args.job_id, _duration(args.timeout, "--timeout"))
    out.answer(answer, ("job_id", "status"))
    return ExitCode.SUCCEEDED


def cmd_plugins(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    if args.name:
        plugin = api.call("GET", f"/plugin/{args.name}")
        if out.json:
            out.data(plugin)
            return ExitCode.SUCCEEDED
        out.fields(plugin, ("name", "version", "description", "parallelism"))
        commands = [
            {**command, "input": "yes" if command.get("input_schema") else ""}
            for command in plugin.get("commands", [])
        ]
        out.table(commands, ("name", "type", "description", "timeout", "input"))
        return ExitCode.SUCCEEDED
    answer = api.call("GET", "/plugins")
    rows = [
        {**plugin, "commands": ", ".join(plugin.get("commands", []))}
        for plugin in answer["plugins"]
    ]
    out.listing(answer, rows, ("name", "version", "commands", "description"), ids="name")
    return ExitCode.SUCCEEDED


def cmd_schedules(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    if args.reset:
        plugin, sep, schedule = args.reset.partition("/")
        if not sep or not plugin or not schedule:
            raise ClientError(f"--reset {args.reset}: expected PLUGIN/ID", ExitCode.USAGE)
        body = {"reason": args.reason} if args.reason else {}
        answer = api.call("POST", f"/schedules/{plugin}/{schedule}/reset", body=body)
        out.answer(answer, ("plugin", "id", "command", "next_run", "breaker"))
        return ExitCode.SUCCEEDED
    answer = api.call("GET", "/schedules")
    if out.json:
        out.data(answer)
        return ExitCode.SUCCEEDED
    rows = [
        {
            **s,
            "breaker": (s.get("breaker") or {}).get("state"),
        }
        for s in answer["schedules"]
    ]
    out.table(
        rows, ("plugin", "id", "command", "kind", "spec", "next_run", "last_status", "breaker")
    )
    return ExitCode.SUCCEEDED


def cmd_pipeline(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    payload = parse_payload(args.param or (), args.payload)
    body: dict[str, Any] = {"payload": payload}
    if args.paused:
        body["start"] = "paused"
    answer = api.call("POST", f"/pipeline/{args.name}", body=body)
    out.answer(answer, ("run_id", "job_id", "pipeline", "status"), quiet="run_id")
    return ExitCode.SUCCEEDED


_RUN_COLUMNS = ("run_id", "pipeline", "status", "created_at", "completed_at")


def cmd_runs(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    if args.run_id:
        run = api.call("GET", f"/runs/{args.run_id}")
        if out.json:
            out.data(run)
            return ExitCode.SUCCEEDED
        out.fields(run, _RUN_COLUMNS)
        steps = [
            {
                **step,
                "jobs": len(step["job_ids"]),
                "decision": ((step.get("approval") or {}).get("decision") or {}).get("decision"),
            }
            for step in run["steps"]
        ]
        out.table(steps, ("step_id", "status", "jobs", "decision", "completed_at"))
        return ExitCode.SUCCEEDED
    answer = api.call("GET", "/runs", params=_filters(args, "pipeline", "status"))
    runs = answer["runs"]
    summary = f"{len(runs)} of {answer['total']} runs"
    out.listing(answer, runs, _RUN_COLUMNS, ids="run_id", summary=summary)
    return ExitCode.SUCCEEDED


#: The actions of ``POST /runs/{id}/<action>`` (docs/RUNS.md).
RUN_ACTIONS = ("pause", "resume", "cancel", "run-next-step", "retry-latest")


def cmd_run_action(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    if args.stop_running and args.action != "pause":
        raise ClientError("--stop-running belongs to pause", ExitCode.USAGE)
    body = {"stop_running": True} if args.stop_running else None
    answer = api.call("POST", f"/runs/{args.run_id}/{args.action}", body=body)
    out.answer(answer, ("run_id", "status", "message"))
    return ExitCode.SUCCEEDED


def cmd_run_events(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
    params: dict[str, str | int] = {"limit": args.limit}
    if args.kind:
        params["kind"] = args.kind
    answer = api.call("GET", f"/runs/{args.run_id}/events", params=params)
    columns = ("at", "kind", "actor", "step_id", "text")
    out.listing(answer, answer["events"], columns, ids="id")
    return ExitCode.SUCCEEDED


def _decide(word: str) -> Callable[[argparse.Namespace, ApiClient, _Output], int]:
    def decide(args: argparse.Namespace, api: ApiClient, out: _Output) -> int:
        body: dict[str, Any] = {}
        if args.comment:
            body["comment"] = args.comment
        if word == "approve":
            inputs = parse_payload(args.input or (), args.inputs, flags=("-i", "--inputs"))
            if inputs:
                body["inputs"] = inputs
        answer = api.call("POST", f"/runs/{args.run_id}/steps/{args.step_id}/{word}", body=body)
        if out.json:
            out.data(answer)
        elif not out.quiet:
            out.err.print(answer["message"], markup=False)
            out.fields(answer["approval"], ("decision", "by", "at", "comment", "inputs"))
        return ExitCode.SUCCEEDED

    return decide


cmd_approve = _decide("approve")
cmd_reject = _decide("reject")


Command = Callable[[argparse.Namespace, ApiClient, _Output], int]


def run_client_command(
    command: Command,
    args: argparse.Namespace,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run a client command: resolve the connection, ask, show; its exit code."""
    out = _Output(args, stdout or sys.stdout, stderr or sys.stderr)
    # httpx logs every request at INFO: the command's own output says what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        connection = resolve(
            url=args.url, token=args.token, profile=args.profile, config=args.config
        )
        with ApiClient(connection) as api:
            return command(args, api, out)
    except ConnectionError as exc:
        out.err.print(f"chamberlain: {exc}", markup=False)
        return ExitCode.USAGE
    except ClientError as exc:
        out.err.print(f"chamberlain: {exc}", markup=False)
        return exc.code
