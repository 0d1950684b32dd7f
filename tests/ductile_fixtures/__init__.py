"""Shared fixtures for the Ductile golden tests: plugin writers, one daemon per module,
a discord webhook mock, request normalization and waiting on recorded requests.

Every plugin written here records the exact request it read from stdin, one JSON
line per request, in ``<records>/<plugin>.jsonl``, so a test can compare what
Chamberlain sent with what Ductile's dispatcher would have sent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Generator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
import yaml

REPO = Path(__file__).resolve().parents[2]
API_KEY = "ductile-test-key"

#: Placeholders for the values a request carries that change from run to run.
JOB_ID = "<job_id>"
DEADLINE = "<deadline_at>"
EVENT_ID = "<event_id>"
TIMESTAMP = "<timestamp>"
INSTANCE = "<pipeline_instance_id>"


# -- plugins -----------------------------------------------------------------------------

#: Appended to every plugin script: records the request before anything else runs.
_RECORD = """
import fcntl as _fcntl
import json as _json
import sys as _sys


def read_request(record_path):
    request = _json.load(_sys.stdin)
    with open(record_path, "a", encoding="utf-8") as out:
        _fcntl.flock(out, _fcntl.LOCK_EX)
        out.write(_json.dumps(request) + "\\n")
    return request
"""


def write_plugin(
    root: Path,
    name: str,
    body: str,
    *,
    records: Path,
    commands: list[dict[str, Any]] | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write plugin ``name`` under ``root``: a Ductile manifest and a Python entrypoint.

    ``body`` is the script after the recording prelude; it finds its request with
    ``request = read_request(RECORD)`` and prints one JSON response.
    """
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "manifest_spec": "ductile.plugin",
        "manifest_version": 1,
        "name": name,
        "version": "0.1.0",
        "protocol": 2,
        "entrypoint": "run.py",
        "description": f"Test stand-in {name}",
        "commands": commands
        or [
            {"name": "poll", "type": "write"},
            {"name": "handle", "type": "write"},
            {"name": "health", "type": "read"},
        ],
        **(manifest_extra or {}),
    }
    (directory / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    record = records / f"{name}.jsonl"
    script = (
        f"#!{sys.executable}\n"
        + _RECORD
        + f"\nRECORD = {str(record)!r}\n"
        + textwrap.dedent(body).lstrip("\n")
    )
    entry = directory / "run.py"
    entry.write_text(script)
    entry.chmod(0o755)
    return directory


def write_recorder(
    root: Path,
    name: str,
    *,
    records: Path,
    responses: Mapping[str, Mapping[str, Any]] | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
) -> Path:
    """A recording stand-in: it answers with ``payload.respond`` when the request's
    top-level payload has one (else ``event.payload.respond``), else with
    ``responses[command]``, else with ``{"status": "ok", "result": "<name> <command>"}``."""
    body = f"""
    import json
    request = read_request(RECORD)
    payload = request.get("payload")
    event_payload = (request.get("event") or {{}}).get("payload")
    responses = json.loads({json.dumps(json.dumps(responses or {}))})
    if isinstance(payload, dict) and "respond" in payload:
        response = payload["respond"]
    elif isinstance(event_payload, dict) and "respond" in event_payload:
        response = event_payload["respond"]
    else:
        command = request.get("command")
        response = responses.get(command, {{"status": "ok", "result": "{name} " + command}})
    print(json.dumps(response))
    """
    return write_plugin(root, name, body, records=records, manifest_extra=manifest_extra)


def read_records(records: Path, name: str) -> list[dict[str, Any]]:
    """Every request plugin ``name`` has read so far, oldest first."""
    path = records / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- normalization -----------------------------------------------------------------------

_VOLATILE = {
    "job_id": JOB_ID,
    "deadline_at": DEADLINE,
    "event_id": EVENT_ID,
    "timestamp": TIMESTAMP,
}


def instance_id(request: Mapping[str, Any]) -> str | None:
    """The pipeline instance id a request's context carries, if any."""
    context = request.get("context")
    if not isinstance(context, Mapping):
        return None
    found = context.get("ductile_pipeline_instance_id")
    return found if isinstance(found, str) else None


def normalize(request: Mapping[str, Any]) -> dict[str, Any]:
    """``request`` with its volatile values replaced by placeholders.

    ``job_id``, ``deadline_at``, ``event_id`` and ``timestamp`` (at any depth) keep
    their keys, so a missing one still shows; the pipeline instance id is replaced
    wherever it appears (the context and, merged from it, ``event.payload``).
    """
    instance = instance_id(request)

    def walk(value: Any, key: str | None) -> Any:
        if key in _VOLATILE and isinstance(value, str):
            return _VOLATILE[key]
        if isinstance(value, Mapping):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, None) for v in value]
        if instance is not None and value == instance:
            return INSTANCE
        return value

    out: dict[str, Any] = walk(request, None)
    return out


# -- one daemon per module ---------------------------------------------------------------


def base_config(tmp: Path, plugin_roots: list[Path]) -> dict[str, Any]:
    """The Chamberlain settings every daemon of these modules starts from."""
    return {
        "service": {"name": "ductile-golden", "max_workers": 4, "shutdown_grace": "5s"},
        "state": {"path": str(tmp / "state.db")},
        "plugin_roots": [str(root) for root in plugin_roots],
        "api": {"listen": "127.0.0.1:0", "auth": {"api_key": API_KEY}},
    }


@attrs.define(eq=False)
class SharedDaemon:
    """A ``chamberlain start`` shared by the tests of one module."""

    proc: subprocess.Popen[bytes]
    base_url: str = ""
    lines: list[str] = attrs.field(factory=list)
    ready: threading.Event = attrs.field(factory=threading.Event)
    reader: threading.Thread | None = None

    def client(self) -> httpx.AsyncClient:
        """An API client with the daemon's key."""
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
        )

    def pump(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            if not self.ready.is_set():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("msg", "").startswith("ready") and record.get("urls"):
                    self.base_url = record["urls"][0]
                    self.ready.set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.reader is not None:
            self.reader.join(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def start_daemon(
    tmp: Path, config: Mapping[str, Any], *, env: Mapping[str, str] | None = None
) -> SharedDaemon:
    """Start a daemon with ``config`` and wait (at most 30 s) until it is ready."""
    config_path = tmp / "config.yaml"
    config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    proc = subprocess.Popen(
        [sys.executable, "-m", "chamberlain", "start", "--config", str(config_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )
    daemon = SharedDaemon(proc=proc)
    daemon.reader = threading.Thread(target=daemon.pump, daemon=True)
    daemon.reader.start()
    if not daemon.ready.wait(timeout=30):
        daemon.stop()
        raise RuntimeError("daemon did not get ready:\n" + "\n".join(daemon.lines[-40:]))
    return daemon


@attrs.define(eq=False)
class Waiter:
    """Waits on recorded requests, giving up early once the daemon has gone idle."""

    daemon: SharedDaemon
    records: Path

    async def requests(
        self, name: str, count: int, *, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """The first ``count`` requests of ``name``; fails (naming every job that did
        not succeed) when they do not come before the daemon has nothing left to do."""
        idle = 0
        with trio.move_on_after(timeout):
            async with self.daemon.client() as c:
                while True:
                    found = read_records(self.records, name)
                    if len(found) >= count:
                        return found[:count]
                    busy = await c.get("/jobs", params={"status": "queued,running"})
                    idle = idle + 1 if busy.json()["total"] == 0 else 0
                    if idle >= 6:
                        break
                    await trio.sleep(0.25)
        raise AssertionError(
            f"{name} read {len(read_records(self.records, name))} requests, expected"
            f" {count}; {await self.unfinished()}"
        )

    async def job(self, job_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """Job ``job_id`` once it is terminal."""
        async with self.daemon.client() as c:
            r = await c.get(f"/job/{job_id}", params={"wait": f"{timeout:g}s"})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def tree_job(self, job_id: str, step_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """The terminal job of step ``step_id`` in ``job_id``'s tree (``GET
        /job/{id}/tree``), once the router has made it and it has ended."""
        with trio.fail_after(timeout):
            async with self.daemon.client() as c:
                while True:
                    r = await c.get(f"/job/{job_id}/tree")
                    assert r.status_code == 200, r.text
                    found = [j for j in r.json() if j["step_id"] == step_id]
                    if found and found[0]["completed_at"] is not None:
                        job: dict[str, Any] = found[0]
                        return job
                    await trio.sleep(0.05)

    async def unfinished(self) -> str:
        """The jobs that did not succeed, for a failure message."""
        async with self.daemon.client() as c:
            r = await c.get("/jobs", params={"detail": "full", "limit": "50"})
        lines = [
            f"{j['plugin']}.{j['command']} {j['status']}: {j.get('last_error')}"
            for j in r.json()["jobs"]
            if j["status"] != "succeeded"
        ]
        return "jobs not succeeded: " + ("; ".join(lines) or "none")


async def trigger(
    daemon: SharedDaemon, path: str, body: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """POST ``path`` (a Ductile client's call) and return the answer's JSON."""
    async with daemon.client() as c:
        r = await (c.post(path) if body is None else c.post(path, json=dict(body)))
    assert r.status_code in (200, 202), r.text
    answer: dict[str, Any] = r.json()
    return answer


# -- a discord webhook ---------------------------------------------------------------------


@attrs.define(eq=False)
class DiscordMock:
    """A local stand-in for discord's incoming webhook: keeps every JSON body posted."""

    server: ThreadingHTTPServer
    posts: list[dict[str, Any]]
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/api/webhooks/1/token"


@attrs.define(eq=False)
class _Handler:
    posts: list[dict[str, Any]]

    def handler(self) -> type[BaseHTTPRequestHandler]:
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                posts.append(json.loads(self.rfile.read(length) or b"null"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def discord_mock() -> Generator[DiscordMock, None, None]:
    """Serve a discord webhook mock on 127.0.0.1 until the generator is closed."""
    posts: list[dict[str, Any]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler(posts).handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield DiscordMock(server=server, posts=posts, thread=thread)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# -- git -----------------------------------------------------------------------------------


def git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run git and return its stdout; raises on failure."""
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.org",
}


def bare_repo(tmp: Path, name: str, commits: list[tuple[str, Mapping[str, str]]]) -> Path:
    """A bare repository ``<tmp>/remote/<name>.git`` on branch main with ``commits``
    (message, files written) made through a scratch clone."""
    remote = tmp / "remote" / f"{name}.git"
    remote.parent.mkdir(parents=True, exist_ok=True)
    git("init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    work = tmp / "seed" / name
    work.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    for message, files in commits:
        for path, text in files.items():
            (work / path).write_text(text)
        git("add", "--all", cwd=work)
        git("commit", "--quiet", "-m", message, cwd=work, env=GIT_IDENTITY)
    git("remote", "add", "origin", str(remote), cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    return remote
