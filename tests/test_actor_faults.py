"""Faults inside the actors of a running daemon, while jobs flow over HTTP.

The daemon runs in-process (real hypercorn on a free port, real plugin processes)
so a fault can be injected into one actor by patching its class: actors are slotted
attrs classes, so the patch goes on the class, and only fires while armed.  For
each actor the test checks what a user would see: the supervisor restarts it within
its intensity budget, ``/healthz`` counts the restarts, and every job submitted
before, during and after the faults succeeds.  Past the budget the daemon stops
with :class:`SupervisorGaveUp` (``chamberlain start`` turns that into exit 1 and a
critical log line, checked at the end against the real CLI).

Adding an actor: a :class:`Fault` row in :data:`FAULTS` that makes one of its
methods raise while armed.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import httpx
import pytest
import trio
import yaml
from conftest import API_KEY, run_cli, wait_for
from figures import record

from chamberlain.actors.dispatcher import Dispatcher
from chamberlain.actors.jobstore import JobStore
from chamberlain.actors.router import Router
from chamberlain.actors.runner import Runner
from chamberlain.actors.scheduler import Scheduler
from chamberlain.config import parse_config
from chamberlain.daemon.tree import Daemon
from chamberlain.plugins.binding import bind_plugins
from chamberlain.plugins.registry import discover
from chamberlain.supervision import SupervisorGaveUp

pytestmark = pytest.mark.slow

CHAOS_PLUGINS = Path(__file__).resolve().parent / "chaos_plugins"
HEADERS = {"Authorization": f"Bearer {API_KEY}"}

E = TypeVar("E", bound=BaseException)


@attrs.define
class Arm:
    """How many more times the injected fault fires."""

    shots: int = 0
    fired: int = 0
    loaded: trio.Event = attrs.field(factory=trio.Event)

    def load(self, shots: int) -> None:
        self.shots = shots
        self.loaded.set()

    def take(self) -> bool:
        if self.shots <= 0:
            return False
        self.shots -= 1
        self.fired += 1
        return True


@attrs.frozen
class Fault:
    """One actor and how to make it crash: ``patch(monkeypatch, arm)``."""

    child: str  # its key in /healthz "restarts"
    patch: Callable[[pytest.MonkeyPatch, Arm], None]
    #: Give the daemon a 1 s schedule, so the Scheduler has work while faults fire.
    #: Only where needed: its jobs would take other actors' faults.
    scheduled: bool = False


def _jobstore(monkeypatch: pytest.MonkeyPatch, arm: Arm) -> None:
    original = JobStore._serve

    async def serve(self: JobStore, batch: list[Any]) -> None:
        if arm.take():
            raise RuntimeError("injected JobStore fault")
        await original(self, batch)

    monkeypatch.setattr(JobStore, "_serve", serve)


def _dispatcher(monkeypatch: pytest.MonkeyPatch, arm: Arm) -> None:
    original = Dispatcher._handle

    def handle(self: Dispatcher, message: Any, books: Any) -> bool:
        if arm.take():
            raise RuntimeError("injected Dispatcher fault")
        return original(self, message, books)

    monkeypatch.setattr(Dispatcher, "_handle", handle)


def _runner(monkeypatch: pytest.MonkeyPatch, arm: Arm) -> None:
    original = Runner._execute
    #: The nurseries of the Runner incarnations that crashed already: two jobs
    #: running side by side in one incarnation would otherwise take both shots in
    #: one crash, and the test would count one restart for two faults.
    crashed: list[trio.Nursery] = []

    async def execute(self: Runner, *args: Any, **kwargs: Any) -> None:
        incarnation = trio.lowlevel.current_task().parent_nursery
        if not any(n is incarnation for n in crashed) and arm.take():
            assert incarnation is not None
            crashed.append(incarnation)
            raise RuntimeError("injected Runner fault")
        await original(self, *args, **kwargs)

    monkeypatch.setattr(Runner, "_execute", execute)


def _web(monkeypatch: pytest.MonkeyPatch, arm: Arm) -> None:
    import chamberlain.web.serve

    original = chamberlain.web.serve.serve_api

    async def serve_api(
        app: Any, api: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED, **kwargs: Any
    ) -> None:
        # Serve for real; once armed, a running server crashes.
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(functools.partial(original, app, api, **kwargs))
            task_status.started(urls)
            await arm.loaded.wait()
            if arm.take():
                raise RuntimeError("injected web server fault")

    monkeypatch.setattr(chamberlain.web.serve, "serve_api", serve_api)


def _scheduler(monkeypatch: pytest.MonkeyPatch, arm: Arm) -> None:
    original = Scheduler._advance

    async def advance(self: Scheduler) -> None:
        if arm.take():
            raise RuntimeError("injected Scheduler fault")
        await original(self)

    monkeypatch.setattr(Scheduler, "_advance", advance)


def _router(monkeypatch: pytest.MonkeyPatch, arm: Arm) -> None:
    original = Router._route_all

    async def route_all(self: Router) -> None:
        if arm.take():
            raise RuntimeError("injected Router fault")
        await original(self)

    monkeypatch.setattr(Router, "_route_all", route_all)


FAULTS = {
    "jobstore": Fault(child="root/jobstore", patch=_jobstore),
    "dispatcher": Fault(child="root/dispatcher", patch=_dispatcher),
    "runner": Fault(child="root/runners/healthy", patch=_runner),
    "web": Fault(child="root/web", patch=_web),
    "router": Fault(child="root/router", patch=_router),
    "scheduler": Fault(child="root/scheduler", patch=_scheduler, scheduled=True),
}


def daemon_config(tmp_path: Path, *, scheduled: bool = False) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "service": {"max_workers": 4, "shutdown_grace": "5s"},
        "state": {"path": str(tmp_path / "state.db")},
        "plugin_roots": [str(CHAOS_PLUGINS)],
        "api": {"listen": "127.0.0.1:0", "auth": {"api_key": API_KEY}},
        "plugins": {"healthy": {"retry": {"backoff_base": "50ms"}}},
    }
    if scheduled:
        cfg["plugins"]["healthy"]["schedules"] = [{"id": "tick", "command": "poll", "every": "1s"}]
    return cfg


def build_daemon(tmp_path: Path, *, scheduled: bool = False) -> Daemon:
    config = parse_config(daemon_config(tmp_path, scheduled=scheduled), base_dir=tmp_path)
    plugins = bind_plugins(config, discover(config.plugin_roots))
    return Daemon(
        config=config,
        plugins=plugins,
        state_path=str(config.state.path),
        handle_signals=False,
    )


@pytest.fixture
async def start_daemon(
    tmp_path: Path, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[..., Awaitable[Daemon]]]:
    """Start an in-process daemon serving HTTP (after the test's patches); drained at the end."""
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("CHAOS_MARKS", str(marks))
    started: list[Daemon] = []

    async def start(*, scheduled: bool = False) -> Daemon:
        d = build_daemon(tmp_path, scheduled=scheduled)
        await nursery.start(d.run)
        started.append(d)
        return d

    yield start
    for d in started:
        with trio.fail_after(30):
            await d.shutdown()


async def call(
    daemon: Daemon, method: str, path: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    """One request, retried while the actor behind it restarts.

    A restarting web server listens on a new port (the config asks for any free
    one), so each try reads the daemon's current address.
    """
    with trio.fail_after(30):
        while True:
            try:
                async with httpx.AsyncClient(
                    base_url=daemon.urls[0], headers=HEADERS, timeout=10
                ) as client:
                    r = await client.request(method, path, json=body)
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code != 503:
                return r
            await trio.sleep(0.05)


async def submit(daemon: Daemon, n: int) -> list[str]:
    ids = []
    for i in range(n):
        body = {"payload": {"sleep": 0.05, "n": i}}
        r = await call(daemon, "POST", "/trigger/healthy/poll", body)
        assert r.status_code == 202, r.text
        ids.append(r.json()["job_id"])
    return ids


async def settled(daemon: Daemon, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The jobs, once none of them is queued or running."""
    jobs: dict[str, dict[str, Any]] = {}

    async def done() -> bool:
        for job_id in ids:
            if jobs.get(job_id, {}).get("status") in (None, "queued", "running"):
                r = await call(daemon, "GET", f"/job/{job_id}")
                assert r.status_code == 200, r.text
                jobs[job_id] = r.json()
        return all(j["status"] not in ("queued", "running") for j in jobs.values())

    await wait_for(done, timeout=60, interval=0.05)
    return jobs


@pytest.mark.parametrize("actor", sorted(FAULTS))
async def test_a_crashing_actor_is_restarted_and_jobs_keep_flowing(
    start_daemon: Callable[..., Awaitable[Daemon]], monkeypatch: pytest.MonkeyPatch, actor: str
) -> None:
    fault = FAULTS[actor]
    arm = Arm()
    fault.patch(monkeypatch, arm)
    running = await start_daemon(scheduled=fault.scheduled)
    before = await submit(running, 6)
    arm.load(2)
    during = await submit(running, 12)
    await wait_for(lambda: trio.to_thread.run_sync(lambda: arm.fired == 2), timeout=30)
    after = await submit(running, 6)
    jobs = await settled(running, before + during + after)
    health = (await call(running, "GET", "/healthz")).json()
    failed = {j: (job["status"], job["last_error"]) for j, job in jobs.items()}
    failed = {j: s for j, s in failed.items() if s[0] != "succeeded"}
    assert not failed, failed
    assert health["status"] == "ok"
    assert health["restarts"][fault.child] == 2, health["restarts"]
    assert health["restarts_total"] >= 2
    record(
        f"test_actor_faults::test_a_crashing_actor_is_restarted_and_jobs_keep_flowing[{actor}]",
        actor=fault.child,
        faults=arm.fired,
        restarts=health["restarts"][fault.child],
        restarts_total=health["restarts_total"],
        jobs=len(jobs),
        lost=0,
    )


def leaves(error: BaseException, kind: type[E]) -> list[E]:
    """The exceptions of type ``kind`` anywhere inside (nested) exception groups."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner, kind)]
    return [error] if isinstance(error, kind) else []


async def test_past_the_budget_the_daemon_stops_instead_of_limping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arm = Arm()
    arm.load(1_000_000)
    _dispatcher(monkeypatch, arm)
    d = build_daemon(tmp_path)
    with pytest.raises(BaseExceptionGroup) as info, trio.fail_after(30):  # noqa: PT012
        async with trio.open_nursery() as nursery:
            await nursery.start(d.run)
            await submit(d, 1)
            await trio.sleep_forever()
    (error,) = leaves(info.value, SupervisorGaveUp)
    assert error.supervisor == "root"
    assert error.child_id == "dispatcher"
    assert arm.fired > d.root.intensity


def test_chamberlain_start_exits_1_with_a_clear_line_when_the_store_is_unusable(
    tmp_path: Path,
) -> None:
    """A fault no restart can fix ends in exit 1, not a loop: here a database written by
    a newer chamberlain, which the JobStore refuses every time it is restarted."""
    state = tmp_path / "state.db"
    conn = sqlite3.connect(state)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
    conn.execute("INSERT INTO schema_migrations VALUES (999, 0)")
    conn.commit()
    conn.close()
    config = daemon_config(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    done = run_cli("start", "--config", str(path), timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    critical = [r for r in records if r["level"] == "critical"]
    assert len(critical) == 1, done.stderr[-3000:]
    assert "supervisor 'root' gave up" in critical[0]["msg"]
    assert "jobstore" in critical[0]["msg"]
    assert "newer than this chamberlain understands" in critical[0].get("exc", "")


def test_a_file_that_is_no_database_is_refused_before_the_tree_starts(tmp_path: Path) -> None:
    """Reading the secret registry at start-up finds a corrupt state first: one plain
    line naming state.path, and exit 78, so systemd does not restart into it."""
    state = tmp_path / "state.db"
    state.write_bytes(b"this is not a SQLite database" * 100)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(daemon_config(tmp_path)))
    done = run_cli("start", "--config", str(path), timeout=120)
    assert done.returncode == 78, done.stderr[-3000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("chamberlain:")]
    assert f"state.path: cannot read the secrets in {state}: file is not a database" in line
