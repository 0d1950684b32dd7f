"""What the command line writes, decided without running a job.

The lines ``chamberlain run`` shows for a job's messages, the log formatter
``--log-format`` picks, the text formatter's lines, and each subcommand's help.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path
from typing import cast

import attrs
import pytest
import trio

from chamberlain import cli
from chamberlain.actors.gateway import Gateway
from chamberlain.actors.hub import Hub
from chamberlain.daemon.jsonlog import JsonFormatter
from chamberlain.daemon.textlog import TextFormatter, text_value
from chamberlain.records import JobMessage, JobStatus, MessageKind, NewJob
from chamberlain.redaction import Redactor


def message(
    kind: MessageKind,
    text: str,
    status: JobStatus | None = None,
    attempt: int | None = None,
    *,
    seq: int = 1,
    job_id: str = "job-1",
) -> JobMessage:
    return JobMessage(
        id=seq,
        job_id=job_id,
        seq=seq,
        ts=0.0,
        kind=kind,
        text=text,
        status=status,
        attempt=attempt,
        plugin="slowpoke",
        command="poll",
    )


def plain(found: JobMessage) -> str:
    return "".join(text for text, _ in cli.live_line(found))


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


# ------------------------------------------------------------------ the live lines


def test_live_lines_name_the_kind_or_the_status() -> None:
    assert plain(message(MessageKind.STDERR, "warming up")) == "[stderr] warming up"
    assert (
        plain(message(MessageKind.SYSTEM, "attempt 1/3 started", JobStatus.RUNNING, 1))
        == "status: running (attempt 1) - attempt 1/3 started"
    )
    # Queued before any attempt: there is no attempt to name.
    assert (
        plain(message(MessageKind.SYSTEM, "queued (submitted by cli)", JobStatus.QUEUED, 0))
        == "status: queued - queued (submitted by cli)"
    )
    marker = "\u2026 3 more stderr lines dropped (over the job's output cap)"
    assert plain(message(MessageKind.SYSTEM, marker)) == f"[system] {marker}"
    entry = attrs.evolve(message(MessageKind.LOG, "stale cache"), level="warn")
    assert plain(entry) == "[log warn] stale cache"


def test_the_view_writes_plain_lines_to_a_pipe() -> None:
    stream = io.StringIO()
    view = cli.LiveView.on(stream)
    view.show(message(MessageKind.STDERR, "a [bold]tab\tand all"))
    view.show(message(MessageKind.SYSTEM, "finished: dead (x)", JobStatus.DEAD, 2))
    assert stream.getvalue() == (
        "[stderr] a [bold]tab\tand all\nstatus: dead (attempt 2) - finished: dead (x)\n"
    )


def test_the_view_styles_a_terminal_but_never_reads_markup_in_plugin_text() -> None:
    stream = Terminal()
    view = cli.LiveView.on(stream)
    long = "x" * 500
    view.show(message(MessageKind.STDERR, f"[bold]not markup[/bold] {long}"))
    view.show(message(MessageKind.SYSTEM, "finished: succeeded", JobStatus.SUCCEEDED, 1))
    written = stream.getvalue()
    assert "\x1b[" in written
    assert f"[bold]not markup[/bold] {long}" in written  # whole: not parsed, not wrapped
    assert "succeeded" in written
    assert written.count("\n") == 2


@attrs.define(eq=False)
class BurstyStore:
    """A gateway whose store commits a burst larger than the follower's buffer.

    The enqueue commits four messages at once; the hub holds two for the follower
    and drops it.  The first read back sees one more commit just before it (so that
    message arrives both live and in the history); the one that ends the job commits
    just after the second read, so it arrives live only.
    """

    job_id: str
    hub: Hub = attrs.field(factory=lambda: Hub(buffer=2))
    stored: list[JobMessage] = attrs.field(factory=list)
    reads: int = 0

    def commit(self, text: str, status: JobStatus | None = None) -> None:
        found = message(
            MessageKind.SYSTEM if status else MessageKind.STDERR,
            text,
            status,
            1 if status else None,
            seq=len(self.stored) + 1,
            job_id=self.job_id,
        )
        self.stored.append(found)
        self.hub.publish(found)

    async def enqueue(self, jobs: list[NewJob]) -> None:
        for n in range(1, 5):
            self.commit(f"line {n}")

    async def job_messages(self, job_id: str, *, after_seq: int = 0) -> tuple[JobMessage, ...]:
        self.reads += 1
        if self.reads == 1:
            self.commit("line 5")  # before this read: in it, and live as well
        found = tuple(m for m in self.stored if m.seq > after_seq)
        if self.reads == 2:
            self.commit("finished: succeeded", JobStatus.SUCCEEDED)  # after it: live only
        return found


async def test_a_follower_the_hub_drops_catches_up_from_the_store() -> None:
    job = NewJob(plugin="slowpoke", command="poll", payload={})
    store = BurstyStore(job_id=job.id)
    shown: list[JobMessage] = []
    with trio.fail_after(5):
        await cli.follow(cast(Gateway, store), job, shown.append)
    assert [m.seq for m in shown] == [1, 2, 3, 4, 5, 6]  # each once, in order
    assert store.hub.dropped == 1
    assert shown[-1].status is JobStatus.SUCCEEDED


# ------------------------------------------------------------------ log formats


def test_the_log_format_follows_the_terminal_unless_named() -> None:
    assert isinstance(cli.log_formatter(None, Terminal()), TextFormatter)
    assert isinstance(cli.log_formatter(None, io.StringIO()), JsonFormatter)
    assert isinstance(cli.log_formatter("json", Terminal()), JsonFormatter)
    assert isinstance(cli.log_formatter("text", io.StringIO()), TextFormatter)


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("chamberlain.root", logging.WARNING, __file__, 1, msg, args, None)
    made.__dict__.update(extra)
    return made


def test_a_text_line_has_time_level_logger_message_then_extras() -> None:
    line = TextFormatter().format(
        record(
            "plugin %s skipped",
            "sys_exec",
            component="plugins",
            path=Path("/x/my plugin"),
            count=3,
            urls=[],
            note='say "hi"',
        )
    )
    time_and_rest = line.split(" ", 2)
    assert len(time_and_rest[0]) == 10 and len(time_and_rest[1]) == 12  # date, hh:mm:ss.mmm
    assert time_and_rest[2] == (
        "WARNING  chamberlain.root  plugin sys_exec skipped  component=plugins"
        ' path="/x/my plugin" count=3 urls=[] note="say \\"hi\\""'
    )
    assert "\n" not in line


def test_text_values_cannot_pass_for_another_field() -> None:
    assert text_value("plain-word") == "plain-word"
    assert text_value("a=b") == '"a=b"'
    assert text_value("") == '""'
    assert text_value("\x1b[2J") == '"\\u001b[2J"'
    assert text_value({"a": [1, None]}) == '{"a":[1,null]}'
    assert text_value(True) == "true"


def test_a_text_line_carries_the_traceback_and_is_redacted() -> None:
    formatter = TextFormatter()
    formatter.redactor = Redactor.from_secrets({"api.auth.api_key": "admin-key-123"})
    try:
        raise RuntimeError("boom admin-key-123")
    except RuntimeError:
        failed = record("said %s", "admin-key-123", token="admin-key-123")
        failed.exc_info = sys.exc_info()
    text = formatter.format(failed)
    assert "admin-key-123" not in text
    first, *trace = text.split("\n")
    assert first.endswith("said [redacted:api.auth.api_key]  token=[redacted:api.auth.api_key]")
    assert trace[0] == "Traceback (most recent call last):"
    assert trace[-1] == "RuntimeError: boom [redacted:api.auth.api_key]"


def test_json_lines_keep_their_shape() -> None:
    line = json.loads(JsonFormatter().format(record("ready", component="root", urls=[])))
    assert line.keys() == {"ts", "level", "logger", "msg", "component", "urls"}
    assert line["level"] == "warning"


# ------------------------------------------------------------------ the command line


@pytest.mark.parametrize("command", ["start", "run", "check"])
def test_each_subcommand_has_written_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    written = {"start": cli.START_HELP, "run": cli.RUN_HELP, "check": cli.CHECK_HELP}[command]
    assert written.description in text
    assert "\nexamples:\n" in text
    for example in written.examples:
        assert f"\n  {example}\n" in text
    assert "\nexit codes:\n  0   " in text
    assert "\n  78  " in text
    assert "--log-format {text,json}" in text
    assert "``" not in text


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["run", "echo", "poll", "--attempts", "0"], "argument --attempts: must be a whole"),
        (["run", "echo", "poll", "--attempts", "two"], "argument --attempts: must be a whole"),
        (["run", "echo", "poll", "--timeout", "-1"], "argument --timeout: must be a number"),
        (["run", "echo", "poll", "--timeout", "inf"], "argument --timeout: must be a number"),
        (["--log-format", "xml", "check", "-c", "x"], "argument --log-format: invalid choice"),
        (["check", "-c", "x", "--log-level", "loud"], "argument --log-level: invalid choice"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert named in capsys.readouterr().err


def test_logging_options_go_before_or_after_the_subcommand() -> None:
    parse = cli.build_parser().parse_args
    assert parse(["check", "-c", "x"]).log_format is None
    # Not given: service.log_level decides (info without one).
    assert parse(["check", "-c", "x"]).log_level is None
    assert parse(["--log-format", "text", "check", "-c", "x"]).log_format == "text"
    assert parse(["check", "-c", "x", "--log-format", "text"]).log_format == "text"
    after = parse(
        ["--log-format", "text", "--log-level", "debug", "check", "-c", "x", "--log-format", "json"]
    )
    assert (after.log_format, after.log_level) == ("json", "debug")
