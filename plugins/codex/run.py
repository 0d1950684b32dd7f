#!/usr/bin/env python3
"""codex: the OpenAI Codex CLI (`codex exec`) behind the gateway (Ductile protocol v2).

Commands:
  run     one prompt (payload.prompt), answered when the agent is done; its messages
          and actions are stderr lines (live job messages)
  health  finds the binary and asks it for its version

Configuration (the daemon's plugin config, never the job payload):
  binary               the CLI, a name looked up on PATH or a path (default "codex")
  model                --model
  sandbox              --sandbox: read-only | workspace-write | danger-full-access
  skip_git_repo_check  pass --skip-git-repo-check (default true: a job's workspace
                       directory is never a Git repository)
  extra_args           more arguments (a list of strings), before the prompt
  cwd                  the directory the agent works in when the job has no kept
                       workspace (context.workspace, which wins); default: the
                       attempt's workspace_dir when it has one, else the plugin directory

The CLI runs as
  codex exec --json [--model M] [--sandbox S] [--skip-git-repo-check] [extra_args]
             [resume <thread_id>] -- <prompt>
(the order the official TypeScript SDK uses) without a shell, with stdin at EOF (the
CLI reads a piped stdin to its end before starting), in the plugin's process group.
A follow-up (request.follow_up) sends follow_up.prompt and resumes
follow_up.session.thread_id.

The response's result holds the last agent message's text, the token usage summed
over the turns, the thread_id and the count of items by type; its session is
{"thread_id": ...}. Standard library only, so it runs on any python3.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import datetime, timezone
from typing import Any

EXIT_CONFIG = 78  # sysexits.h EX_CONFIG: retrying cannot help until the config changes
PLUGIN = "codex"
PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
SANDBOXES = ("read-only", "workspace-write", "danger-full-access")
DEADLINE_MARGIN = 2.0  # stop the CLI this much before the job deadline, and answer
STOP_GRACE = 5.0
VERSION_TIMEOUT = 5.0
# datetime.UTC only exists from Python 3.11; this script runs on whatever python3 is.
UTC = timezone.utc  # noqa: UP017


class ConfigError(Exception):
    pass


def main() -> int:
    try:
        request = json.loads(sys.stdin.buffer.read())
    except ValueError as exc:
        return answer({"status": "error", "error": f"{PLUGIN}: bad request: {exc}"}, 1)
    if not isinstance(request, dict):
        return answer({"status": "error", "error": f"{PLUGIN}: request is not an object"}, 1)
    command = str(request.get("command") or "")
    try:
        settings = parse_config(request.get("config"))
    except ConfigError as exc:
        return answer(
            {"status": "error", "error": f"{PLUGIN}: invalid config: {exc}", "retry": False},
            EXIT_CONFIG,
        )
    binary = find_binary(settings["binary"])
    if binary is None:
        return answer(
            {
                "status": "error",
                "error": f"{PLUGIN}: cannot find {settings['binary']!r} (not on PATH)",
                "retry": False,
            },
            EXIT_CONFIG,
        )
    if command == "health":
        return answer(health(binary, settings), 0)
    if command != "run":
        return answer(
            {"status": "error", "error": f"{PLUGIN}: unknown command {command!r}", "retry": False},
            0,
        )

    payload = request.get("payload")
    payload = payload if isinstance(payload, dict) else {}
    prompt = payload.get("prompt")
    thread_id = None
    follow_up = request.get("follow_up")
    if isinstance(follow_up, dict):
        prompt = follow_up.get("prompt") or prompt
        previous = follow_up.get("session")
        if isinstance(previous, dict) and isinstance(previous.get("thread_id"), str):
            thread_id = previous["thread_id"]
        else:
            note(
                f"[{PLUGIN}] job {follow_up.get('job_id')} left no thread to resume;"
                " starting a new one"
            )
    if not isinstance(prompt, str) or not prompt:
        return answer(
            {"status": "error", "error": f"{PLUGIN}: payload.prompt is required", "retry": False},
            0,
        )

    workspace = request.get("workspace_dir")
    workspace = workspace if isinstance(workspace, str) and workspace else None
    # The job's kept workspace (it asked for one: context.workspace) is where the work
    # is; else config.cwd; else an attempt's own directory; else the plugin's.
    kept = (request.get("context") or {}).get("workspace")
    kept = kept if isinstance(kept, str) and kept else None
    cwd = kept or settings["cwd"] or workspace or PLUGIN_DIR
    argv = build_argv(binary, settings, prompt, thread_id)
    timeout = time_left(request.get("deadline_at"))
    return answer(execute(argv, cwd, timeout, thread_id), 0)


def parse_config(config: object) -> dict[str, Any]:
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError("config must be a mapping")
    settings: dict[str, Any] = {
        "binary": optional_str(config, "binary") or "codex",
        "model": optional_str(config, "model"),
        "sandbox": optional_str(config, "sandbox"),
        "cwd": optional_str(config, "cwd"),
        "extra_args": [],
    }
    if settings["sandbox"] is not None and settings["sandbox"] not in SANDBOXES:
        raise ConfigError(f"sandbox must be one of {', '.join(SANDBOXES)}")
    extra = config.get("extra_args")
    if extra is not None:
        if not isinstance(extra, list) or not all(isinstance(item, str) for item in extra):
            raise ConfigError("extra_args must be a list of strings")
        settings["extra_args"] = list(extra)
    skip = config.get("skip_git_repo_check", True)
    if not isinstance(skip, bool):
        raise ConfigError("skip_git_repo_check must be a boolean")
    settings["skip_git_repo_check"] = skip
    if settings["cwd"] is not None and not os.path.isdir(settings["cwd"]):
        raise ConfigError(f"cwd {settings['cwd']!r} is not a directory")
    return settings


def optional_str(config: dict[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{key} must be a string")
    return value or None


def find_binary(name: str) -> str | None:
    if os.sep in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name)


def build_argv(
    binary: str, settings: dict[str, Any], prompt: str, thread_id: str | None
) -> list[str]:
    argv = [binary, "exec", "--json"]
    if settings["model"]:
        argv += ["--model", settings["model"]]
    if settings["sandbox"]:
        argv += ["--sandbox", settings["sandbox"]]
    if settings["skip_git_repo_check"]:
        argv.append("--skip-git-repo-check")
    argv += settings["extra_args"]
    if thread_id:
        argv += ["resume", thread_id]
    # "--": a prompt starting with "-" is still the prompt.
    return [*argv, "--", prompt]


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
        "result": {
            "binary": binary,
            "version": version,
            "model": settings["model"],
            "sandbox": settings["sandbox"],
        },
    }


class Events:
    """What the CLI's JSONL said, folded into the answer, with live stderr lines."""

    def __init__(self) -> None:
        self.thread_id: str | None = None
        self.text: str | None = None
        self.usage: dict[str, int] = {}
        self.items: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []
        self.turns_completed = 0
        self.turn_failed: str | None = None

    def line(self, line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            if line.strip():
                note(line)
            return
        kind = event.get("type")
        if kind == "thread.started":
            self.thread_id = event.get("thread_id") or self.thread_id
            note(f"[{PLUGIN}] thread {self.thread_id}")
        elif kind in ("item.started", "item.completed"):
            item = event.get("item")
            if isinstance(item, dict):
                self.item(kind, item)
        elif kind == "turn.completed":
            self.turns_completed += 1
            usage = event.get("usage")
            if isinstance(usage, dict):
                for key, value in usage.items():
                    if isinstance(value, int) and not isinstance(value, bool):
                        self.usage[key] = self.usage.get(key, 0) + value
        elif kind == "turn.failed":
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            self.turn_failed = str(message or "turn failed")
            note(f"[{PLUGIN}] turn failed: {self.turn_failed}")
        elif kind == "error":
            message = str(event.get("message") or "error")
            self.errors.append(message)
            note(f"[{PLUGIN}] error: {message}")

    def item(self, kind: str, item: dict[str, Any]) -> None:
        item_type = str(item.get("type") or "?")
        if kind == "item.started":
            if item_type == "command_execution":
                note(f"[exec] {item.get('command')}")
            elif item_type == "mcp_tool_call":
                note(f"[mcp] {item.get('server')}.{item.get('tool')}")
            return
        self.items[item_type] += 1
        text = item.get("text")
        if item_type == "agent_message" and isinstance(text, str):
            self.text = text
            note(text)
        elif item_type == "reasoning" and isinstance(text, str) and text.strip():
            note(f"[reasoning] {text.strip().splitlines()[0][:200]}")
        elif item_type == "command_execution":
            note(f"[exec] exit {item.get('exit_code')}: {item.get('command')}")
        elif item_type == "file_change":
            changes = item.get("changes")
            paths = [
                f"{change.get('kind')} {change.get('path')}"
                for change in (changes if isinstance(changes, list) else [])
                if isinstance(change, dict)
            ]
            note(f"[patch] {item.get('status')}: {', '.join(paths)}")
        elif item_type == "web_search":
            note(f"[search] {item.get('query')}")
        elif item_type == "error":
            message = str(item.get("message") or "")
            note(f"[error] {message}")


def execute(argv: list[str], cwd: str, timeout: float | None, resume: str | None) -> dict[str, Any]:
    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        return {
            "status": "error",
            "error": f"{PLUGIN}: cannot run {argv[0]!r} in {cwd}: {exc.strerror or exc}",
            "retry": False,
        }
    assert process.stdout is not None and process.stderr is not None
    stderr_tail: collections.deque[str] = collections.deque(maxlen=20)

    def relay_stderr(stream: Any) -> None:
        for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if line.strip():
                stderr_tail.append(line.strip())
            note(line)

    relay = threading.Thread(target=relay_stderr, args=(process.stderr,), daemon=True)
    relay.start()
    events = Events()
    timer_fired = threading.Event()

    def stop() -> None:
        timer_fired.set()
        note(f"[{PLUGIN}] the job deadline is near: stopping codex")
        process.terminate()
        killer = threading.Timer(STOP_GRACE, process.kill)
        killer.daemon = True
        killer.start()

    timer = threading.Timer(timeout, stop) if timeout is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    for raw in process.stdout:
        events.line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    returncode = process.wait()
    if timer is not None:
        timer.cancel()
    relay.join(2.0)

    response: dict[str, Any] = {"status": "ok"}
    if events.thread_id:
        response["session"] = {"thread_id": events.thread_id}
        if resume and events.thread_id != resume:
            note(f"[{PLUGIN}] codex did not resume thread {resume}: it started {events.thread_id}")
    response["result"] = {
        "text": events.text,
        "usage": events.usage,
        "thread_id": events.thread_id,
        "items": dict(events.items),
        "exit_code": returncode,
    }
    response["events"] = [
        {
            "type": "codex.result",
            "payload": {
                "thread_id": events.thread_id,
                "ok": returncode == 0 and events.turn_failed is None,
                "usage": events.usage,
                "items": dict(events.items),
            },
        }
    ]
    tail = stderr_tail[-1][:200] if stderr_tail else ""
    if timer_fired.is_set():
        response["status"] = "error"
        response["error"] = f"{PLUGIN}: codex stopped at the job deadline"
    elif events.turn_failed is not None:
        response["status"] = "error"
        response["error"] = f"codex: {events.turn_failed}"
    elif events.errors and not events.turns_completed:
        response["status"] = "error"
        response["error"] = f"codex: {events.errors[-1]}"
    elif returncode != 0:
        response["status"] = "error"
        if returncode < 0:
            reason = f"codex killed by signal {-returncode}"
        else:
            reason = f"codex exited with code {returncode}"
        response["error"] = reason + (f": {tail}" if tail else "")
    elif not events.turns_completed:
        response["status"] = "error"
        response["error"] = "codex exited without completing a turn" + (f": {tail}" if tail else "")
    return response


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


stderr_lock = threading.Lock()


def note(text: str) -> None:
    with stderr_lock:
        sys.stderr.write(text.rstrip("\n") + "\n")
        sys.stderr.flush()


def answer(response: dict[str, Any], code: int) -> int:
    sys.stdout.write(json.dumps(response, separators=(",", ":"), ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
