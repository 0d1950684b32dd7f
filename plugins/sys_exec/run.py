#!/usr/bin/env python3
"""sys_exec: run the configured command without a shell (Ductile protocol v2).

Configuration (the daemon's plugin config, never the job payload):
  command           list of strings, or a string split with shell-like quoting
  cwd               working directory (default: the plugin directory)
  env               extra environment variables (mapping of strings)
  timeout_seconds   upper bound on the run; the job deadline always applies too
  max_output        bytes of stdout and of stderr kept, from the end (default 64 KiB)
  retry_on_failure  whether a nonzero exit should be retried (default false)

The payload reaches the command as CHAMBERLAIN_PAYLOAD_<KEY> environment variables,
with CHAMBERLAIN_JOB_ID and CHAMBERLAIN_COMMAND. Standard library only, so it runs
on any python3.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from datetime import datetime, timezone
from typing import Any

EXIT_CONFIG = 78  # sysexits.h EX_CONFIG: retrying cannot help until the config changes
DEFAULT_MAX_OUTPUT = 64 * 1024
# Stop this much before the job deadline, so we still answer before the daemon's
# SIGTERM and the job records the command's own outcome.
DEADLINE_MARGIN = 1.0
MIN_TIMEOUT = 0.1
# datetime.UTC only exists from Python 3.11; this script runs on whatever python3 is.
UTC = timezone.utc  # noqa: UP017


class ConfigError(Exception):
    pass


def main() -> int:
    try:
        request = json.loads(sys.stdin.read())
    except ValueError as exc:
        return answer({"status": "error", "error": f"sys_exec: bad request: {exc}"}, 1)
    if not isinstance(request, dict):
        return answer({"status": "error", "error": "sys_exec: request is not an object"}, 1)

    job_command = str(request.get("command") or "")
    config = request.get("config") or {}
    try:
        if not isinstance(config, dict):
            raise ConfigError("config must be a mapping")
        argv = parse_command(config.get("command"))
        cwd = optional_str(config, "cwd")
        extra_env = parse_env(config.get("env"))
        max_output = positive_int(config, "max_output", DEFAULT_MAX_OUTPUT)
        retry = config.get("retry_on_failure", False)
        if not isinstance(retry, bool):
            raise ConfigError("retry_on_failure must be a boolean")
        cap = config.get("timeout_seconds")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float))):
            raise ConfigError("timeout_seconds must be a number")
    except ConfigError as exc:
        return answer(
            {"status": "error", "error": f"sys_exec: invalid config: {exc}", "retry": False},
            EXIT_CONFIG,
        )

    if job_command == "health":
        return answer({"status": "ok", "result": {"command": argv, "cwd": cwd}}, 0)

    env = dict(os.environ)
    env.update(extra_env)
    env.update(payload_env(request))
    env["CHAMBERLAIN_JOB_ID"] = str(request.get("job_id") or "")
    env["CHAMBERLAIN_COMMAND"] = job_command

    timeout = time_left(request.get("deadline_at"))
    if cap is not None:
        timeout = cap if timeout is None else min(timeout, cap)
    if timeout is not None:
        timeout = max(timeout, MIN_TIMEOUT)

    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        # A missing or non-executable program will not appear by retrying.
        return answer(
            {
                "status": "error",
                "error": f"sys_exec: cannot run {argv[0]!r}: {exc.strerror or exc}",
                "retry": False,
            },
            EXIT_CONFIG,
        )

    out = Tail(process.stdout, max_output)
    err = Tail(process.stderr, max_output)
    timed_out = False
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        process.kill()
        returncode = process.wait()
    # A command that left a background child holding its pipes must not hang us.
    out.join(2.0)
    err.join(2.0)

    stdout, stderr = out.text(), err.text()
    result = {
        "exit_code": returncode,
        "stdout": stdout,
        "stderr": stderr,
        "truncated": out.truncated or err.truncated,
    }
    response: dict[str, Any] = {
        "status": "ok" if returncode == 0 and not timed_out else "error",
        "result": result,
        "retry": retry,
        "events": [
            {
                "type": "sys_exec.completed",
                "payload": {
                    "exit_code": returncode,
                    "stdout": stdout,
                    "stderr": stderr,
                    "command": argv,
                },
            }
        ],
        "logs": [{"level": "info", "message": f"{argv[0]} exited with {returncode}"}],
    }
    if timed_out:
        response["error"] = f"command timed out after {timeout:g}s"
    elif returncode < 0:
        response["error"] = f"command killed by signal {-returncode}"
    elif returncode != 0:
        last = last_line(stderr)
        response["error"] = f"command exited with code {returncode}" + (f": {last}" if last else "")
    return answer(response, 0)


def parse_command(value: object) -> list[str]:
    if value is None:
        raise ConfigError("command is required")
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"command: {exc}") from None
    elif isinstance(value, list) and all(isinstance(part, str) for part in value):
        argv = list(value)
    else:
        raise ConfigError("command must be a list of strings or a string")
    if not argv or not argv[0]:
        raise ConfigError("command is empty")
    return argv


def optional_str(config: dict[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{key} must be a string")
    return value or None


def positive_int(config: dict[str, Any], key: str, default: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key} must be a positive integer")
    return value


def parse_env(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError("env must be a mapping of strings to strings")
    return dict(value)


def payload_env(request: dict[str, Any]) -> dict[str, str]:
    """CHAMBERLAIN_PAYLOAD_<KEY> for each payload key.

    A ``handle`` job's input is its event's payload (as Ductile sends it, with the
    request context merged in); any other command's is the request's ``payload``.
    """
    payload: dict[str, Any] = {}
    event = request.get("event")
    if request.get("command") == "handle" and isinstance(event, dict):
        source = event.get("payload")
    else:
        source = request.get("payload")
    if isinstance(source, dict):
        payload.update(source)

    env = {}
    for key, value in payload.items():
        name = "CHAMBERLAIN_PAYLOAD_" + re.sub(r"[^A-Z0-9]", "_", str(key).upper())
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        if "\x00" in text:
            continue  # the environment cannot carry NUL bytes
        env[name] = text
    return env


def time_left(deadline: object) -> float | None:
    if not isinstance(deadline, str):
        return None
    try:
        moment = datetime.fromisoformat(deadline.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - datetime.now(UTC)).total_seconds() - DEADLINE_MARGIN


class Tail:
    """Drains a pipe in a thread, keeping only the last ``limit`` bytes."""

    def __init__(self, stream: Any, limit: int) -> None:
        self.limit = limit
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.truncated = False
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream: Any) -> None:
        with stream:
            for chunk in iter(lambda: stream.read1(65536), b""):
                self.chunks.append(chunk)
                self.size += len(chunk)
                while self.chunks and self.size - len(self.chunks[0]) >= self.limit:
                    self.size -= len(self.chunks.popleft())
                    self.truncated = True

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def text(self) -> str:
        data = b"".join(list(self.chunks))
        if len(data) > self.limit:
            self.truncated = True
            data = data[-self.limit :]
        return data.decode("utf-8", errors="replace")


def last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:200]
    return ""


def answer(response: dict[str, Any], code: int) -> int:
    sys.stdout.write(json.dumps(response, separators=(",", ":"), ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
