"""The real ``chamberlain`` command, as a person at a terminal and a script see it.

``chamberlain run`` runs under a pseudo-terminal (its stderr is the terminal, as in
an author's shell) with a plugin that writes a line to stderr and then waits for
the test to release it: the line must be on the terminal while the job still runs.
With pipes instead, the same lines come out plain and the log lines stay JSON;
``--log-format`` overrides that choice from before or after the subcommand.
"""

from __future__ import annotations

import codecs
import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

pytestmark = pytest.mark.e2e

#: Every wait on the command is bounded by this, in seconds.
DEADLINE = 60.0

#: The escape sequences rich styles text with (SGR), and the carriage returns the
#: terminal adds before each newline.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

#: One text log line: local time, level, logger, message, then key=value extras.
TEXT_LOG = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +"
    r"chamberlain\.\w+  \S.*$"
)

PLUGIN = """\
#!{python}
import json, os, sys, time

request = json.load(sys.stdin)
release = request["payload"].get("release")
print("warming up", file=sys.stderr, flush=True)
# Its own deadline, so a test that fails before releasing it leaves nothing behind.
give_up = time.monotonic() + 120
while release and not os.path.exists(release):
    if time.monotonic() > give_up:
        sys.exit(3)
    time.sleep(0.01)
print("cooling down", file=sys.stderr, flush=True)
print(json.dumps({{"status": "ok", "result": {{"released": bool(release)}}}}))
"""

MANIFEST = """\
name: slowpoke
version: 1.0.0
protocol: 2
entrypoint: run.py
commands: [poll]
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose only plugin is ``slowpoke`` (see :data:`PLUGIN`)."""
    root = tmp_path / "plugins"
    plugin = root / "slowpoke"
    plugin.mkdir(parents=True)
    for directory in (root, plugin):
        directory.chmod(0o755)
    entry = plugin / "run.py"
    entry.write_text(PLUGIN.format(python=sys.executable))
    entry.chmod(0o755)
    (plugin / "manifest.yaml").write_text(MANIFEST)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"plugin_roots": [str(root)]}))
    return path


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # The terminal's own answer decides; nothing in the test runner's environment.
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS", "LINES"):
        env.pop(name, None)
    env["TERM"] = "xterm-256color"
    return env


def screen(raw: str) -> str:
    """What a person reads on the terminal: no escape sequences, plain newlines."""
    return _ANSI.sub("", raw).replace("\r\n", "\n")


@attrs.define(eq=False)
class Session:
    """``chamberlain ARGS`` with stdin and stderr on a pseudo-terminal, stdout a pipe."""

    proc: subprocess.Popen[bytes]
    terminal: int
    raw: str = ""
    stdout: bytes = b""
    _decoder: codecs.IncrementalDecoder = attrs.field(
        factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _open: set[int] = attrs.field(factory=set)

    @property
    def seen(self) -> str:
        """The terminal so far, as :func:`screen` shows it."""
        return screen(self.raw)

    def _pump(self, deadline: float) -> None:
        """Read whatever arrives before ``deadline``; raise if nothing more ever will."""
        assert self.proc.stdout is not None
        if not self._open:
            raise AssertionError(f"the command closed its output; terminal:\n{self.seen}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"out of time; terminal:\n{self.seen}")
        ready, _, _ = select.select(sorted(self._open), [], [], left)
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: every holder of the terminal's other side is gone
                chunk = b""
            if not chunk:
                self._open.discard(fd)
            elif fd == self.terminal:
                self.raw += self._decoder.decode(chunk)
            else:
                self.stdout += chunk

    def wait_for(self, text: str, *, timeout: float = DEADLINE) -> None:
        """Read the terminal until ``text`` is on it, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            self._pump(deadline)

    def finish(self, *, timeout: float = DEADLINE) -> int:
        """Read everything to the end and return the exit code."""
        deadline = time.monotonic() + timeout
        while self._open:
            self._pump(deadline)
        return self.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Any]:
    """Start ``chamberlain ARGS`` on a pseudo-terminal: ``session = terminal(*args)``."""
    sessions: list[Session] = []

    def start(*args: str) -> Session:
        master, slave = os.openpty()
        # A size as a real window has, so nothing rests on a fallback for width 0.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "chamberlain", *args],
                stdin=slave,
                stdout=subprocess.PIPE,
                stderr=slave,
                env=_environment(),
                cwd=tmp_path,
            )
        finally:
            os.close(slave)
        assert proc.stdout is not None
        session = Session(proc=proc, terminal=master)
        session._open.update({master, proc.stdout.fileno()})
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        if session.proc.poll() is None:
            session.proc.kill()
            session.proc.wait(timeout=DEADLINE)
        assert session.proc.stdout is not None
        session.proc.stdout.close()
        os.close(session.terminal)


def run_piped(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``chamberlain ARGS`` with stdout and stderr both pipes, to the end."""
    return subprocess.run(
        [sys.executable, "-m", "chamberlain", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
        cwd=cwd,
        env=_environment(),
    )


def released_payload(tmp_path: Path, *, already: bool) -> tuple[Path, str]:
    release = tmp_path / "release"
    if already:
        release.touch()
    return release, json.dumps({"release": str(release)})


def test_run_shows_the_plugins_stderr_on_the_terminal_while_the_job_runs(
    config: Path, tmp_path: Path, terminal: Any
) -> None:
    release, payload = released_payload(tmp_path, already=False)
    session = terminal("run", "slowpoke", "poll", "--config", str(config), "--payload", payload)
    try:
        session.wait_for("status: running (attempt 1)")
        session.wait_for("[stderr] warming up")
        # Still running, held by the file the test has not created: the line was
        # shown as it happened, not collected at the end.
        assert session.proc.poll() is None
        assert "succeeded" not in session.seen
        assert "cooling down" not in session.seen
        # On a terminal the lines are styled, and the log lines are text, not JSON.
        assert "\x1b[" in session.raw
        logs = [
            line
            for line in session.seen.splitlines()
            if line and not line.startswith(("[", "status: "))
        ]
        assert any(TEXT_LOG.match(line) and "ready: 1 plugins" in line for line in logs), logs
        assert all(TEXT_LOG.match(line) for line in logs), logs
        assert not any(line.startswith("{") for line in session.seen.splitlines())
    finally:
        release.touch()
    assert session.finish() == 0, session.seen
    after = session.seen
    assert after.index("[stderr] warming up") < after.index("[stderr] cooling down")
    assert after.index("[stderr] cooling down") < after.index("status: succeeded (attempt 1)")
    # stdout is the record and nothing else.
    record = json.loads(session.stdout)
    assert record["status"] == "succeeded"
    assert record["result"]["result"] == {"released": True}


def test_run_into_pipes_writes_plain_lines_and_json_logs(config: Path, tmp_path: Path) -> None:
    _, payload = released_payload(tmp_path, already=True)
    proc = run_piped(
        "run", "slowpoke", "poll", "--config", str(config), "--payload", payload, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "succeeded"
    assert "\x1b" not in proc.stderr
    lines = proc.stderr.splitlines()
    live = [line for line in lines if not line.startswith("{")]
    assert live == [
        "status: queued - queued (submitted by cli)",
        "status: running (attempt 1) - attempt 1/1 started",
        "[stderr] warming up",
        "[stderr] cooling down",
        "status: succeeded (attempt 1) - finished: succeeded",
    ]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records
    assert all({"ts", "level", "logger", "msg"} <= record.keys() for record in records)
    assert any(record["msg"].startswith("ready") for record in records)


def test_log_format_text_before_the_subcommand_and_quiet(config: Path, tmp_path: Path) -> None:
    _, payload = released_payload(tmp_path, already=True)
    proc = run_piped(
        "--log-format",
        "text",
        "run",
        "slowpoke",
        "poll",
        "--quiet",
        "--config",
        str(config),
        "--payload",
        payload,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "succeeded"
    lines = proc.stderr.splitlines()
    assert lines
    # Text although stderr is a pipe; nothing of the job's stream with --quiet.
    assert all(TEXT_LOG.match(line) for line in lines), lines
    ready = next(line for line in lines if "ready: 1 plugins" in line)
    assert ready.endswith("component=root urls=[] webhook_urls=[]"), ready
    assert not any("warming up" in line or "status:" in line for line in lines)


def test_log_format_json_after_the_subcommand_on_a_terminal(
    config: Path, tmp_path: Path, terminal: Any
) -> None:
    _, payload = released_payload(tmp_path, already=True)
    session = terminal(
        "run", "slowpoke", "poll", "--config", str(config), "--payload", payload,
        "--log-format", "json",
    )  # fmt: skip
    assert session.finish() == 0, session.seen
    lines = session.seen.splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(record["msg"].startswith("ready") for record in records), lines
    assert not any(TEXT_LOG.match(line) for line in lines)
    # The job's own lines are shown all the same.
    assert "[stderr] warming up" in lines


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    proc = run_piped("--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"chamberlain {metadata.version('chamberlain')}\n"


def test_help_is_written_for_people(tmp_path: Path) -> None:
    proc = run_piped("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "Chamberlain runs plugins" in text
    assert "examples:\n  chamberlain check --config config.yaml\n" in text
    assert "exit codes:\n  0   success\n" in text
    assert "\n  78  a bad config (EX_CONFIG)" in text
    for command in ("start", "run", "check"):
        assert re.search(rf"^    {command} +\S", text, re.MULTILINE), text
    assert "``" not in text
    assert textwrap.dedent(text) == text  # not an indented docstring


def test_run_answers_an_interactive_command_from_its_stdin(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    plugins = Path(__file__).resolve().parent / "e2e_plugins"
    path.write_text(yaml.safe_dump({"plugin_roots": [str(plugins)]}))
    done = subprocess.run(
        [sys.executable, "-m", "chamberlain", "run", "asker", "ask", "--config", str(path)],
        input="Ada\nblue\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["result"]["result"] == {"answers": ["Ada", "blue"], "resumed": 0}
    # One line per wait, then the end of stdin completes the session.
    shown = [line for line in done.stderr.splitlines() if line.startswith("[")]
    assert shown[shown.index("[user_input] Ada") - 1] == "[system] waiting for input"
    assert shown.index("[user_input] Ada") < shown.index("[stdout] noted: Ada")
    assert shown.index("[stdout] noted: Ada") < shown.index("[user_input] blue")
    assert "[system] completing: the user ended the session" in shown


def test_run_runs_a_loop_job_and_refuses_a_bad_loop(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    plugins = Path(__file__).resolve().parent / "e2e_plugins"
    path.write_text(yaml.safe_dump({"plugin_roots": [str(plugins)]}))
    argv = [sys.executable, "-m", "chamberlain", "run", "looper", "work", "--config", str(path)]
    loop = {"completion_token": "DONE", "feedback": [{"command": ["echo", "checked"]}]}
    done = subprocess.run(
        [*argv, "--payload", '{"complete_at": 2}', "--loop", json.dumps(loop)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["completion_reason"] == "promise_detected"
    (first, _) = record["result"]["loop"]["iterations"]
    assert first["feedback_results"][0]["output_tail"] == "checked"
    shown = [line for line in done.stderr.splitlines() if line.startswith("[")]
    # An iteration's stderr comes between its start and its end.
    start = shown.index("[system] iteration 1/5 started")
    assert shown[start + 1] == "[stderr] looper: iteration 1 of 5, run 1"
    assert shown[start + 2] == "[system] iteration 1/5 finished: not complete"
    bad = subprocess.run(
        [*argv, "--loop", '{"max_iterations": 0}'],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode != 0
    assert "--loop.max_iterations must be an integer from 1 to 100, got 0" in bad.stderr
