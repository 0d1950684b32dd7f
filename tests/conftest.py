"""Shared fixtures: above all ``daemon``, the real daemon as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import yaml

#: Every answer a test gets from a daemon is checked against its /openapi.json.
pytest_plugins = ["spec_conformance"]

REPO = Path(__file__).resolve().parent.parent
BUNDLED_PLUGINS = REPO / "plugins"
TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"

API_KEY = "test-key"
TOKENS = [
    {"name": "reader", "token": "reader-token", "scopes": ["read:*"]},
    {"name": "ro", "token": "ro-token", "scopes": ["plugin:ro"]},
    {"name": "jobsro", "token": "jobsro-token", "scopes": ["jobs:ro"]},
    {"name": "rw", "token": "rw-token", "scopes": ["plugin:rw", "jobs:rw"]},
]


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` laid over ``base``, mappings merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@attrs.define(eq=False)
class DaemonProcess:
    """A running ``chamberlain start`` and what it printed."""

    proc: trio.Process
    config_path: Path
    state_path: Path
    api_key: str = API_KEY
    base_url: str = ""
    lines: list[str] = attrs.field(factory=list)
    ready: trio.Event = attrs.field(factory=trio.Event)
    exited: trio.Event = attrs.field(factory=trio.Event)

    def stderr_lines(self) -> list[str]:
        """Every line the daemon wrote to stderr so far."""
        return list(self.lines)

    def records(self) -> list[dict[str, Any]]:
        """The JSON log records among those lines."""
        out = []
        for line in self.lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def headers(self, token: str | None = None) -> dict[str, str]:
        """An Authorization header for ``token`` (default: the api key)."""
        return {"Authorization": f"Bearer {token or self.api_key}"}

    async def pump(self) -> None:
        """Read stderr into ``lines`` and notice the ready line."""
        assert self.proc.stderr is not None
        buf = b""
        async for chunk in self.proc.stderr:
            buf += chunk
            *complete, buf = buf.split(b"\n")
            for raw in complete:
                line = raw.decode(errors="replace")
                self.lines.append(line)
                if not self.ready.is_set():
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if record.get("msg", "").startswith("ready") and record.get("urls"):
                        self.base_url = record["urls"][0]
                        self.ready.set()
        if buf:
            self.lines.append(buf.decode(errors="replace"))
        await self.proc.wait()
        self.exited.set()

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await self.wait(timeout)

    async def wait(self, timeout: float = 30.0) -> int:
        """Wait for the exit code, sending nothing."""
        with trio.fail_after(timeout):
            await self.exited.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc.returncode is None:
            self.proc.kill()


DaemonFactory = Callable[..., Awaitable[DaemonProcess]]


def base_config(tmp_path: Path) -> dict[str, Any]:
    """The config every end-to-end daemon starts from."""
    return {
        "service": {"name": "test", "max_workers": 4, "shutdown_grace": "5s"},
        "state": {"path": str(tmp_path / "state.db")},
        "plugin_roots": [str(BUNDLED_PLUGINS)],
        "api": {
            "listen": "127.0.0.1:0",
            "auth": {"api_key": API_KEY, "tokens": TOKENS},
        },
        "plugins": {"echo": {"retry": {"backoff_base": "100ms"}}},
    }


@pytest.fixture
async def daemon(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[DaemonFactory]:
    """Start real daemons: ``d = await daemon(config_extra, ready=True)``.

    Every daemon started is SIGKILLed at the end of the test if still alive.
    """
    started: list[DaemonProcess] = []

    async def start(
        config_extra: dict[str, Any] | None = None,
        *,
        wait_ready: bool = True,
        config: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> DaemonProcess:
        cfg = (
            config if config is not None else deep_merge(base_config(tmp_path), config_extra or {})
        )
        config_path = tmp_path / f"config-{len(started)}.yaml"
        config_path.write_text(yaml.safe_dump(cfg))
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "chamberlain", "start", "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        d = DaemonProcess(proc=proc, config_path=config_path, state_path=Path(cfg["state"]["path"]))
        started.append(d)
        nursery.start_soon(d.pump)
        if wait_ready:
            with trio.fail_after(30):
                async with trio.open_nursery() as race:

                    async def ready() -> None:
                        await d.ready.wait()
                        race.cancel_scope.cancel()

                    async def died() -> None:
                        await d.exited.wait()
                        raise RuntimeError(
                            "daemon exited before it was ready:\n" + "\n".join(d.lines[-30:])
                        )

                    race.start_soon(ready)
                    race.start_soon(died)
        return d

    yield start
    for d in started:
        d.kill()
        with trio.move_on_after(10):
            await d.exited.wait()


@asynccontextmanager
async def api_client(
    d: DaemonProcess, token: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of ``d``'s API, as ``token`` (default: the api key); its timeout
    outlasts a ``?wait=30s`` long poll."""
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers(token), timeout=60) as c:
        yield c


async def finished_job(c: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job, with its messages, once it has ended (a 30 s long poll; fails otherwise)."""
    r = await c.get(f"/job/{job_id}?wait=30s&include=messages")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["status"] not in ("queued", "running"), body
    return body


async def wait_for(
    predicate: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, interval: float = 0.05
) -> Any:
    """Poll ``predicate`` until it returns something truthy, within ``timeout``."""
    with trio.fail_after(timeout):
        while True:
            value = await predicate()
            if value:
                return value
            await trio.sleep(interval)


async def run_when(c: httpx.AsyncClient, run_id: str, status: str, **steps: str) -> dict[str, Any]:
    """The run (``GET /runs/{id}``) once it is in ``status`` with each named step in
    its given status; the last view seen when it never gets there."""
    last: list[dict[str, Any]] = []

    async def reached() -> dict[str, Any] | None:
        run: dict[str, Any] = (await c.get(f"/runs/{run_id}")).json()
        last[:] = [run]
        shown = {s["step_id"]: s["status"] for s in run["steps"]}
        wanted = run["status"] == status and all(shown[k] == v for k, v in steps.items())
        return run if wanted else None

    try:
        found: dict[str, Any] = await wait_for(reached)
    except trio.TooSlowError:
        raise AssertionError(f"run never reached {status} {steps}: last seen {last}") from None
    return found


def run_step(run: dict[str, Any], step_id: str) -> dict[str, Any]:
    """Step ``step_id`` of ``run`` as ``GET /runs/{id}`` shows it."""
    found: list[dict[str, Any]] = [s for s in run["steps"] if s["step_id"] == step_id]
    assert len(found) == 1, run
    return found[0]


async def finished_tree(d: DaemonProcess, job_id: str, size: int) -> dict[str, Any]:
    """The tree of ``job_id`` (``?detail=1``: jobs and notes) once it holds ``size``
    jobs, none of them queued or running."""
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers(), timeout=30) as c:

        async def done() -> dict[str, Any] | None:
            tree: dict[str, Any] = (await c.get(f"/job/{job_id}/tree?detail=1")).json()
            jobs = tree["jobs"]
            ended = all(j["status"] not in ("queued", "running") for j in jobs)
            return tree if len(jobs) >= size and ended else None

        result: dict[str, Any] = await wait_for(done, timeout=30)
        return result


def db_job(state: Path, job_id: str) -> tuple[str, int, str | None]:
    """(status, attempt, last_error) of a job, read straight from a stopped daemon's database."""
    conn = sqlite3.connect(state)
    try:
        row = conn.execute(
            "SELECT status, attempt, last_error FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
    finally:
        conn.close()
    assert row is not None
    return row[0], row[1], row[2]


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m chamberlain ARGS`` to the end and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "chamberlain", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )
