"""The processes under test: the Chamberlain daemon, the framework floor, webhook.

Each is started as a real subprocess, the way an operator would run it, and is
ready when it says so (the daemon's ``ready`` log line, the floor's URL line,
webhook's answer on its port).  Their stderr goes to a file, not a pipe: a pipe
would need a reader thread in the benchmark process, competing for the CPUs being
measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml
from tools import PYTHON_ENV, REPO, find, missing

API_KEY = "bench-key"
ECHO = REPO / "plugins" / "echo"
START_TIMEOUT = 30.0


_SERVED = re.compile(r'"served (\d+) requests in (\d+) transactions, busy ([0-9.]+) s"')


@attrs.frozen(kw_only=True)
class StoreStatistics:
    """What the JobStore logged as it stopped."""

    requests: int
    transactions: int
    #: Seconds it spent serving transactions (thread hops and commits included).
    busy: float


def store_statistics(log: str) -> StoreStatistics | None:
    """The JobStore's statistics from a stopped daemon's log (None if it logged none)."""
    match = _SERVED.search(log)
    if match is None:
        return None
    return StoreStatistics(
        requests=int(match.group(1)), transactions=int(match.group(2)), busy=float(match.group(3))
    )


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@attrs.define(eq=False)
class Process:
    """A started server: its process, base URL and log file."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.proc.pid

    def stop(self) -> int:
        """SIGTERM, then wait; SIGKILL if it takes longer than 60 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def tail(self, lines: int = 20) -> str:
        """The end of the server's log, for error messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _readable(line: str) -> str:
    """A log line for an error message: a JSON record's message and the end of its trace."""
    try:
        record = json.loads(line)
    except ValueError:
        return line[:300]
    if not isinstance(record, dict):
        return line[:300]
    exc = str(record.get("exc", "")).strip().splitlines()
    return f"{record.get('level')}: {record.get('msg')}" + (f" ({exc[-1]})" if exc else "")


def _wait_for(proc: subprocess.Popen[bytes], log: Path, ready: Any) -> str:
    """Poll ``ready(log_text)`` until it returns the URL; fail if the process dies."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        url = ready(text)
        if url:
            return str(url)
        if proc.poll() is not None:
            tail = "\n".join(_readable(line) for line in text.splitlines()[-10:])
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready:\n{tail}")
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"server not ready within {START_TIMEOUT:g}s")


def _daemon_ready(text: str) -> str | None:
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if str(record.get("msg", "")).startswith("ready") and record.get("urls"):
            return str(record["urls"][0])
    return None


@attrs.define(eq=False)
class Daemon(Process):
    """A running ``chamberlain start``, with its state file."""

    state: Path = attrs.field(kw_only=True)
    #: The whole log, read once the daemon has stopped.
    final_log: str = attrs.field(default="", kw_only=True)

    def headers(self) -> dict[str, str]:
        """The bearer header of the all-scopes key."""
        return {"Authorization": f"Bearer {API_KEY}"}

    def get(self, path: str) -> Any:
        """GET ``path`` and decode the JSON answer."""
        request = urllib.request.Request(self.url + path, headers=self.headers())
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        """POST ``body`` as JSON to ``path``; the status and the decoded answer."""
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={**self.headers(), "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())

    def store(self) -> sqlite3.Connection:
        """A read-only connection to the daemon's store (WAL allows it while it runs)."""
        return sqlite3.connect(f"file:{self.state}?mode=ro", uri=True)


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` laid over ``base``, mappings merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def daemon_config(
    workdir: Path,
    *,
    plugin_roots: Sequence[Path] = (REPO / "plugins",),
    max_workers: int = 4,
    state: Path | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a daemon config for a benchmark into ``workdir``; return its path.

    ``extra`` is merged over the defaults section by section.
    """
    config: dict[str, Any] = {
        "service": {"name": "bench", "max_workers": max_workers, "shutdown_grace": "30s"},
        "state": {"path": str(state or workdir / "state.db")},
        "plugin_roots": [str(p) for p in plugin_roots],
        "api": {
            "listen": f"127.0.0.1:{free_port()}",
            "max_body_size": "4MiB",
            "request_timeout": "30s",
            "auth": {"api_key": API_KEY},
        },
    }
    config = _merged(config, extra or {})
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def daemon(
    workdir: Path | None = None, *, log_level: str = "info", **config: Any
) -> Iterator[Daemon]:
    """Run a daemon (see :func:`daemon_config` for ``config``) for the ``with`` block."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        path = daemon_config(workdir, **config)
        state = Path(yaml.safe_load(path.read_text())["state"]["path"])
        log = workdir / "daemon.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "chamberlain",
                    "--log-level",
                    log_level,
                    "start",
                    "--config",
                    str(path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                cwd=REPO,
                env=PYTHON_ENV,
            )
        running = Daemon(proc=proc, url="", log=log, state=state)
        try:
            running.url = _wait_for(proc, log, _daemon_ready)
            yield running
        finally:
            running.stop()
            # Kept past the temporary directory: what the daemon logged as it stopped.
            running.final_log = log.read_text(errors="replace")


def _floor_ready(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("listening "):
            return line.split()[1]
    return None


@contextlib.contextmanager
def floor() -> Iterator[Process]:
    """Run the framework floor (bench/floor_app.py) for the ``with`` block."""
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        log = Path(tmp) / "floor.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("floor_app.py")), "--serve"],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=PYTHON_ENV,
            )
        server = Process(proc=proc, url=_wait_for(proc, log, _floor_ready), log=log)
        try:
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def webhook(hooks: list[dict[str, Any]]) -> Iterator[Process]:
    """Run adnanh/webhook with ``hooks`` for the ``with`` block."""
    binary = find("webhook")
    if binary is None:
        raise FileNotFoundError(missing("webhook"))
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp:
        hooks_file = Path(tmp) / "hooks.json"
        hooks_file.write_text(json.dumps(hooks))
        port = free_port()
        log = Path(tmp) / "webhook.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [binary, "-hooks", str(hooks_file), "-ip", "127.0.0.1", "-port", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

        def ready(text: str) -> str | None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return f"http://127.0.0.1:{port}"
            return None

        server = Process(proc=proc, url=_wait_for(proc, log, ready), log=log)
        try:
            yield server
        finally:
            server.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
