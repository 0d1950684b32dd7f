#!/usr/bin/env python3
"""claude_code: Claude Code (the `claude` CLI) behind the gateway (Ductile protocol v2).

Commands:
  run      one prompt (payload.prompt), answered when the agent is done; its text and
           tool calls are stderr lines (live job messages)
  session  interactive: the prompt (optional) and then every message the user sends
           are turns of one conversation, until the user completes the session
  health   finds the binary and asks it for its version

Configuration (the daemon's plugin config, never the job payload):
  binary           the CLI, a name looked up on PATH or a path (default "claude")
  model            --model
  max_turns        --max-turns (a positive integer)
  permission_mode  --permission-mode (default, acceptEdits, plan, bypassPermissions...)
  allowed_tools    --allowedTools, a list of strings such as "Bash(git diff:*)"
  extra_args       more arguments, a list of strings, passed as they are
  cwd              the directory the agent works in when the job has no kept
                   workspace (context.workspace, which wins); default: the
                   attempt's workspace_dir when it has one, else the plugin directory

The CLI runs as
  claude --print --input-format stream-json --output-format stream-json --verbose
         [--model M] [--max-turns N] [--permission-mode P] [--allowedTools A,B]
         [--mcp-config <workspace_dir>/.mcp.json] [--resume=<session_id>] [extra_args]
without a shell, in the plugin's process group (so the daemon's SIGTERM/SIGKILL of
the group reaches it). Each prompt or user message is one stdin line
{"type": "user", "message": {"role": "user", "content": <text>}, ...}, as the Claude
Agent SDK writes it. A follow-up (request.follow_up) sends follow_up.prompt and
resumes follow_up.session.session_id; a retried session (request.transcript) replays
the prompt and the user's earlier messages, one turn each, before waiting again.

The response's result holds the last turn's text, num_turns, total_cost_usd, usage,
session_id and subtype; its session is {"session_id": ...}, so a follow-up can resume
the conversation.

A loop job (a `run` request with `iteration`, see docs/LOOPS.md) runs one iteration:
a fresh CLI run (no --resume of the previous iteration; a follow-up loop still resumes
follow_up.session), whose prompt is the payload's (or follow_up's) prompt, a blank
line, and a section built from request.iteration:

  Iteration <n> of <max>.

  Feedback on iteration <k>:            (the last previous iteration's commands, if any)
  - <argv, shell-quoted>: passed|failed (exit code <c>|no exit code)
      <its output_tail, each line indented 4 spaces, cut to its last 4096 characters>

  When the task is complete, end your reply with a line containing only: <token>
                                        (only when completion_token is set)

The response's result is then the agent's final text as a string (or null), so the
gateway's completion rule (the last non-empty line is the token) applies; the summary
(subtype, num_turns, total_cost_usd, usage, duration_ms, session_id, exchanges, with
the iteration's number and attempt) is the claude_code.result event's payload, and
session is {"session_id": ...} as always. The plugin never answers "complete" itself.
`session` ignores `iteration`.

Standard library only, so it runs on any python3.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import shlex
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any

EXIT_CONFIG = 78  # sysexits.h EX_CONFIG: retrying cannot help until the config changes
PLUGIN = "claude_code"
PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
# Stop the CLI this much before the job deadline, so the job still gets our answer
# (with the session id, for a follow-up) rather than the daemon's SIGTERM.
DEADLINE_MARGIN = 2.0
STOP_GRACE = 5.0  # after SIGTERM, before SIGKILL
# After the user completes a session the gateway waits its kill grace (5 s) for our
# response: a turn still running by then is stopped, and we answer with what we have.
COMPLETE_GRACE = 2.5
COMPLETE_STOP_GRACE = 1.0
VERSION_TIMEOUT = 5.0
# A feedback command's output_tail is kept to its end, this long, in an iteration's prompt
# (the gateway caps it too).
OUTPUT_TAIL_LIMIT = 4096
TOOL_SUMMARY_KEYS = ("command", "file_path", "path", "pattern", "url", "query", "description")
# datetime.UTC only exists from Python 3.11; this script runs on whatever python3 is.
UTC = timezone.utc  # noqa: UP017


class ConfigError(Exception):
    pass


class Channel:
    """Where the plugin's lines go: stdout lines of the interactive protocol, or stderr."""

    def __init__(self, interactive: bool) -> None:
        self.interactive = interactive
        self.lock = threading.Lock()

    def _stdout(self, document: dict[str, Any]) -> None:
        line = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
        with self.lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def note(self, text: str) -> None:
        """A line for people following the job: stderr, in both modes."""
        with self.lock:
            sys.stderr.write(text.rstrip("\n") + "\n")
            sys.stderr.flush()

    def say(self, text: str) -> None:
        """What the agent says: an output line (interactive) or stderr lines."""
        if self.interactive:
            self._stdout({"type": "output", "text": text})
        else:
            self.note(text)

    def waiting(self) -> None:
        if self.interactive:
            self._stdout({"type": "waiting"})

    def answer(self, response: dict[str, Any], code: int = 0) -> int:
        if self.interactive:
            response = {"type": "response", **response}
        self._stdout(response)
        return code


def main() -> int:
    request = read_request()
    if not isinstance(request, dict):
        return Channel(False).answer(
            {"status": "error", "error": f"{PLUGIN}: bad request: {request}", "retry": False}, 1
        )
    channel = Channel(request.get("interactive") is True)
    command = str(request.get("command") or "")
    try:
        settings = parse_config(request.get("config"))
        binary = find_binary(settings["binary"])
    except ConfigError as exc:
        return channel.answer(
            {"status": "error", "error": f"{PLUGIN}: invalid config: {exc}", "retry": False},
            EXIT_CONFIG,
        )
    if binary is None:
        return channel.answer(
            {
                "status": "error",
                "error": f"{PLUGIN}: cannot find {settings['binary']!r} (not on PATH)",
                "retry": False,
            },
            EXIT_CONFIG,
        )
    if command == "health":
        return channel.answer(health(binary, settings))
    if command not in ("run", "session"):
        return channel.answer(
            {"status": "error", "error": f"{PLUGIN}: unknown command {command!r}", "retry": False}
        )
    try:
        job = Job(request, settings, binary, channel, session=command == "session")
    except ConfigError as exc:
        return channel.answer(
            {"status": "error", "error": f"{PLUGIN}: invalid config: {exc}", "retry": False},
            EXIT_CONFIG,
        )
    except ValueError as exc:
        return channel.answer({"status": "error", "error": f"{PLUGIN}: {exc}", "retry": False})
    return job.run()


class LineReader:
    """Lines of a file descriptor, read with os.read.

    Not sys.stdin: a thread blocked in a buffered read holds the buffer's lock, and
    the interpreter aborts when it exits while another thread holds it.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self.eof = False

    def readline(self) -> bytes:
        """The next line with its newline; the rest without one at EOF; b"" after it."""
        start = 0
        while not self.eof:
            end = self.buffer.find(b"\n", start)
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                return line
            start = len(self.buffer)
            chunk = os.read(self.fd, 65536)
            if chunk:
                self.buffer += chunk
            else:
                self.eof = True
        end = self.buffer.find(b"\n")
        cut = len(self.buffer) if end < 0 else end + 1
        line = bytes(self.buffer[:cut])
        del self.buffer[:cut]
        return line

    def read_rest(self) -> bytes:
        chunks = [bytes(self.buffer)]
        self.buffer.clear()
        while not self.eof:
            chunk = os.read(self.fd, 65536)
            if chunk:
                chunks.append(chunk)
            else:
                self.eof = True
        return b"".join(chunks)


GATEWAY = LineReader(0)


def read_request() -> Any:
    """The first stdin line is the request (interactive commands get more lines after it)."""
    first = GATEWAY.readline()
    try:
        return json.loads(first)
    except ValueError:
        pass
    # Not a line on its own: a plain v2 request may span lines, and stdin ends after it.
    try:
        return json.loads(first + GATEWAY.read_rest())
    except ValueError as exc:
        return str(exc)


def parse_config(config: object) -> dict[str, Any]:
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError("config must be a mapping")
    settings: dict[str, Any] = {
        "binary": optional_str(config, "binary") or "claude",
        "model": optional_str(config, "model"),
        "permission_mode": optional_str(config, "permission_mode"),
        "cwd": optional_str(config, "cwd"),
        "allowed_tools": str_list(config, "allowed_tools"),
        "extra_args": str_list(config, "extra_args"),
    }
    max_turns = config.get("max_turns")
    if max_turns is not None and (
        isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns <= 0
    ):
        raise ConfigError("max_turns must be a positive integer")
    settings["max_turns"] = max_turns
    if settings["cwd"] is not None and not os.path.isdir(settings["cwd"]):
        raise ConfigError(f"cwd {settings['cwd']!r} is not a directory")
    return settings


def optional_str(config: dict[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{key} must be a string")
    return value or None


def str_list(config: dict[str, Any], key: str) -> list[str]:
    value = config.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{key} must be a list of strings")
    return list(value)


def find_binary(name: str) -> str | None:
    if os.sep in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name)


def health(binary: str, settings: dict[str, Any]) -> dict[str, Any]:
    version = None
    try:
        done = subprocess.run(
            [binary, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=VERSION_TIMEOUT,
            check=False,
        )
        version = done.stdout.decode("utf-8", errors="replace").strip() or None
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {
        "status": "ok",
        "result": {"binary": binary, "version": version, "model": settings["model"]},
    }


class Job:
    """One attempt: the CLI, the conversation relayed to it, and the answer."""

    def __init__(
        self,
        request: dict[str, Any],
        settings: dict[str, Any],
        binary: str,
        channel: Channel,
        *,
        session: bool,
    ) -> None:
        self.channel = channel
        self.session = session
        self.pending: collections.deque[str] = collections.deque()

        payload = request.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        follow_up = request.get("follow_up")
        follow_up = follow_up if isinstance(follow_up, dict) else None
        prompt = payload.get("prompt")
        resume = None
        if follow_up is not None:
            prompt = follow_up.get("prompt") or prompt
            previous = follow_up.get("session")
            if isinstance(previous, dict) and isinstance(previous.get("session_id"), str):
                resume = previous["session_id"]
            else:
                channel.note(
                    f"[{PLUGIN}] job {follow_up.get('job_id')} left no session to resume;"
                    " starting a new conversation"
                )
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError("payload.prompt must be a string")
        if not prompt and not session:
            raise ValueError("payload.prompt is required")
        iteration = request.get("iteration")
        self.iteration: dict[str, Any] | None = None
        if iteration is not None and not session:
            if not isinstance(iteration, dict):
                raise ValueError("iteration must be an object")
            number = iteration.get("number")
            if isinstance(number, bool) or not isinstance(number, int):
                raise ValueError("iteration.number must be an integer")
            self.iteration = iteration
            prompt = f"{prompt}\n\n{iteration_section(iteration)}"
            attempt = iteration.get("attempt")
            channel.note(
                f"[{PLUGIN}] iteration {number} of {iteration.get('max')}"
                + (f", attempt {attempt}" if isinstance(attempt, int) and attempt > 1 else "")
            )
        if prompt:
            self.pending.append(prompt)
        transcript = request.get("transcript") or []
        if not isinstance(transcript, list):
            raise ValueError("transcript must be a list")
        for entry in transcript:
            if isinstance(entry, dict) and isinstance(entry.get("message"), str):
                self.pending.append(entry["message"])
        if transcript:
            channel.note(
                f"[{PLUGIN}] attempt resumed: replaying the prompt and"
                f" {len(transcript)} earlier inputs"
            )

        workspace = request.get("workspace_dir")
        workspace = workspace if isinstance(workspace, str) and workspace else None
        # The job's kept workspace (it asked for one: context.workspace) is where the work
        # is; else config.cwd; else an attempt's own directory; else the plugin's.
        kept = (request.get("context") or {}).get("workspace")
        kept = kept if isinstance(kept, str) and kept else None
        self.cwd = kept or settings["cwd"] or workspace or PLUGIN_DIR
        self.argv = [
            binary,
            "--print",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
        ]
        if settings["model"]:
            self.argv += ["--model", settings["model"]]
        if settings["max_turns"]:
            self.argv += ["--max-turns", str(settings["max_turns"])]
        if settings["permission_mode"]:
            self.argv += ["--permission-mode", settings["permission_mode"]]
        if settings["allowed_tools"]:
            self.argv += ["--allowedTools", ",".join(settings["allowed_tools"])]
        if workspace and os.path.isfile(os.path.join(workspace, ".mcp.json")):
            self.argv += ["--mcp-config", os.path.join(workspace, ".mcp.json")]
        if resume:
            # The = form: a value starting with "-" cannot be read as another flag.
            self.argv.append(f"--resume={resume}")
        self.argv += settings["extra_args"]

        self.deadline = time_left(request.get("deadline_at"))
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.busy = False
        self.closing = not session  # run: nothing more will come after the prompt
        self.complete_by: float | None = None
        self.idle_announced = False
        self.sent = 0
        self.results: list[dict[str, Any]] = []
        self.session_id: str | None = resume
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.process: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ the CLI

    def run(self) -> int:
        try:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            return self.channel.answer(
                {
                    "status": "error",
                    "error": f"{PLUGIN}: cannot run {self.argv[0]!r} in {self.cwd}:"
                    f" {exc.strerror or exc}",
                    "retry": False,
                },
                EXIT_CONFIG,
            )
        readers = [
            threading.Thread(target=self.read_stdout, daemon=True),
            threading.Thread(target=self.read_stderr, daemon=True),
        ]
        if self.session:
            readers.append(threading.Thread(target=self.read_gateway, daemon=True))
        for reader in readers:
            reader.start()
        stopped = self.loop()
        process = self.process
        try:
            process.wait(timeout=COMPLETE_STOP_GRACE if stopped == "completed" else STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        readers[1].join(2.0)
        return self.channel.answer(self.response(process.returncode, stopped))

    def loop(self) -> str | None:
        """Relay until the CLI's stdout ends.

        Returns why the CLI was stopped, if it was: ``deadline`` (the job's deadline
        was near) or ``completed`` (the user completed the session and the agent did
        not finish in time); None when it ended by itself.
        """
        assert self.process is not None
        self.next_turn()
        stop_at = None if self.deadline is None else time.monotonic() + self.deadline
        stopped: str | None = None
        killed_at: float | None = None
        grace = STOP_GRACE
        while True:
            now = time.monotonic()
            timers = [t for t in (stop_at, self.complete_by) if t is not None]
            if killed_at is not None:
                timers = [killed_at + grace]
            timeout = max(0.0, min(timers) - now) if timers else None
            try:
                kind, value = self.events.get(timeout=timeout)
            except queue.Empty:
                if killed_at is None:
                    if stop_at is not None and time.monotonic() >= stop_at:
                        stopped = "deadline"
                        self.channel.note(f"[{PLUGIN}] the job deadline is near: stopping claude")
                    else:
                        stopped, grace = "completed", COMPLETE_STOP_GRACE
                        self.channel.note(
                            f"[{PLUGIN}] the session was completed: stopping the turn under way"
                        )
                    self.process.terminate()
                    killed_at = time.monotonic()
                    continue
                if self.process.poll() is None:
                    self.process.kill()
                return stopped
            if kind == "cli_eof":
                return stopped
            if kind == "cli":
                self.on_cli_line(value)
            elif kind == "input":
                if self.closing:
                    self.channel.note(f"[{PLUGIN}] input after complete ignored")
                    continue
                self.pending.append(value)
                self.next_turn()
            elif kind == "complete":
                self.closing = True
                self.complete_by = time.monotonic() + COMPLETE_GRACE
                self.next_turn()

    def next_turn(self) -> None:
        """Send the next pending message when the agent is idle; else say we wait."""
        if self.busy:
            return
        if self.pending:
            self.send(self.pending.popleft())
            if self.closing and not self.pending:
                self.close_stdin()
            return
        if self.closing:
            self.close_stdin()
        elif not self.idle_announced:
            self.idle_announced = True
            self.channel.waiting()

    def send(self, text: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        line = {
            "type": "user",
            "message": {"role": "user", "content": text},
            "parent_tool_use_id": None,
            "session_id": "default",  # what the Agent SDK sends; the CLI keeps its own
        }
        data = (json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        self.busy = True
        self.idle_announced = False
        self.sent += 1
        try:
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the CLI is gone; its exit shows on stdout's end

    def close_stdin(self) -> None:
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass

    def on_cli_line(self, line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            if line.strip():
                self.channel.note(line)
            return
        kind = event.get("type")
        if isinstance(event.get("session_id"), str) and event["session_id"]:
            self.session_id = event["session_id"]
        if kind == "system" and event.get("subtype") == "init":
            self.channel.note(
                f"[{PLUGIN}] session {event.get('session_id')} model {event.get('model')}"
                f" in {event.get('cwd')}"
            )
        elif kind == "assistant":
            message = event.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            for block in content if isinstance(content, list) else []:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "text" and block.get("text"):
                    self.channel.say(str(block["text"]))
                elif block.get("type") in ("tool_use", "server_tool_use"):
                    self.channel.say(tool_line(block))
        elif kind == "result":
            self.results.append(event)
            self.busy = False
            if not self.channel.interactive:
                self.channel.note(result_line(event))
            self.next_turn()

    # ------------------------------------------------------------------ readers

    def read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            self.events.put(("cli", raw.decode("utf-8", errors="replace").rstrip("\r\n")))
        self.events.put(("cli_eof", None))

    def read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if line.strip():
                self.stderr_tail.append(line.strip())
            self.channel.note(line)

    def read_gateway(self) -> None:
        while True:
            raw = GATEWAY.readline()
            if not raw:
                break
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            if message.get("type") == "input" and isinstance(message.get("message"), str):
                self.events.put(("input", message["message"]))
            elif message.get("type") == "complete":
                self.events.put(("complete", None))
                return
        self.events.put(("complete", None))

    # ------------------------------------------------------------------ the answer

    def response(self, returncode: int, stopped: str | None) -> dict[str, Any]:
        response: dict[str, Any] = {"status": "ok"}
        if self.session_id:
            response["session"] = {"session_id": self.session_id}
        last = self.results[-1] if self.results else None
        if last is not None:
            summary = {
                "text": last.get("result"),
                "subtype": last.get("subtype"),
                "num_turns": last.get("num_turns"),
                "total_cost_usd": last.get("total_cost_usd"),
                "usage": last.get("usage"),
                "duration_ms": last.get("duration_ms"),
                "session_id": last.get("session_id") or self.session_id,
                "exchanges": len(self.results),
            }
            response["result"] = summary
            response["events"] = [
                {
                    "type": "claude_code.result",
                    "payload": {
                        "session_id": summary["session_id"],
                        "subtype": summary["subtype"],
                        "is_error": bool(last.get("is_error")),
                        "num_turns": summary["num_turns"],
                        "total_cost_usd": summary["total_cost_usd"],
                        "exchanges": summary["exchanges"],
                    },
                }
            ]
        if stopped == "deadline":
            response["status"] = "error"
            response["error"] = f"{PLUGIN}: claude stopped at the job deadline"
        elif stopped == "completed":
            # The user ended the session mid-turn: what the agent finished stands.
            if last is None:
                response["result"] = {
                    "text": None,
                    "session_id": self.session_id,
                    "exchanges": 0,
                }
        elif last is not None and last.get("is_error"):
            response["status"] = "error"
            response["error"] = f"claude: {result_error(last)}"
            # A failed API call comes as subtype "success" and may pass; max turns,
            # a budget or an unknown session will not.
            response["retry"] = last.get("subtype") == "success"
        elif last is None and (returncode != 0 or self.sent):
            response["status"] = "error"
            if returncode < 0:
                reason = f"claude killed by signal {-returncode}"
            elif returncode:
                reason = f"claude exited with code {returncode}"
            else:
                reason = "claude exited without a result"
            tail = self.stderr_tail[-1][:200] if self.stderr_tail else ""
            response["error"] = reason + (f": {tail}" if tail else "")
        elif last is None:
            response["result"] = {"text": None, "session_id": self.session_id, "exchanges": 0}
        if self.iteration is not None:
            self.as_iteration(response, last)
        return response

    def as_iteration(self, response: dict[str, Any], last: dict[str, Any] | None) -> None:
        """A loop iteration's answer: the final text as the result, the summary an event.

        The gateway decides whether the iteration completed the loop from a string
        result (its last non-empty line being the token), so the text must be it.
        """
        summary = response.get("result")
        summary = summary if isinstance(summary, dict) else {}
        text = summary.get("text")
        response["result"] = text if isinstance(text, str) else None
        assert self.iteration is not None
        payload = {key: value for key, value in summary.items() if key != "text"}
        payload["session_id"] = payload.get("session_id") or self.session_id
        payload["is_error"] = bool(last is not None and last.get("is_error"))
        payload["iteration"] = self.iteration.get("number")
        payload["attempt"] = self.iteration.get("attempt")
        response["events"] = [{"type": "claude_code.result", "payload": payload}]


def iteration_section(iteration: dict[str, Any]) -> str:
    """What a loop iteration's prompt ends with (see the module docstring)."""
    parts = [f"Iteration {iteration.get('number')} of {iteration.get('max')}."]
    previous = iteration.get("previous")
    last = previous[-1] if isinstance(previous, list) and previous else None
    feedback = last.get("feedback") if isinstance(last, dict) else None
    results = [item for item in feedback if isinstance(item, dict)] if feedback else []
    if isinstance(last, dict) and results:
        lines = [f"Feedback on iteration {last.get('number')}:"]
        for item in results:
            code = item.get("exit_code")
            exit_text = (
                f"exit code {code}"
                if isinstance(code, int) and not isinstance(code, bool)
                else "no exit code"
            )
            verdict = "passed" if item.get("passed") is True else "failed"
            lines.append(f"- {command_text(item.get('command'))}: {verdict} ({exit_text})")
            tail = item.get("output_tail")
            tail = tail if isinstance(tail, str) else ""
            if len(tail) > OUTPUT_TAIL_LIMIT:
                tail = "\u2026" + tail[-(OUTPUT_TAIL_LIMIT - 1) :]
            for line in tail.strip("\n").splitlines():
                lines.append(f"    {line.rstrip()}" if line.strip() else "")
        parts.append("\n".join(lines))
    token = iteration.get("completion_token")
    if isinstance(token, str) and token.strip():
        parts.append(
            "When the task is complete, end your reply with a line containing only:"
            f" {token.strip()}"
        )
    return "\n\n".join(parts)


def command_text(command: object) -> str:
    """A feedback command's argv as one line (shell-quoted, for reading, never run)."""
    if isinstance(command, list) and all(isinstance(arg, str) for arg in command):
        return shlex.join(command)
    return str(command)


def tool_line(block: dict[str, Any]) -> str:
    name = block.get("name") or "?"
    arguments = block.get("input")
    detail = ""
    if isinstance(arguments, dict):
        for key in TOOL_SUMMARY_KEYS:
            if isinstance(arguments.get(key), str) and arguments[key]:
                detail = arguments[key].splitlines()[0] if arguments[key].strip() else ""
                break
    if len(detail) > 120:
        detail = detail[:117] + "..."
    return f"[tool] {name}" + (f": {detail}" if detail else "")


def result_line(event: dict[str, Any]) -> str:
    parts = [f"[result] {event.get('subtype')}"]
    if event.get("is_error"):
        parts.append("error")
    if event.get("num_turns") is not None:
        parts.append(f"{event['num_turns']} turns")
    cost = event.get("total_cost_usd")
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        parts.append(f"${cost:.4f}")
    return ", ".join(parts)


def result_error(event: dict[str, Any]) -> str:
    text = event.get("result")
    if isinstance(text, str) and text.strip():
        return text.strip()[:500]
    errors = event.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(str(error) for error in errors)[:500]
    return str(event.get("subtype") or "error")


def time_left(deadline: object) -> float | None:
    if not isinstance(deadline, str):
        return None
    try:
        moment = datetime.fromisoformat(deadline.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds() - DEADLINE_MARGIN)


if __name__ == "__main__":
    sys.exit(main())
