"""Fakes for driving the actor tree on a mock clock.

:class:`FakePlugins` stands in for plugin processes: it follows instructions in each
job's payload and records what it saw.  Used with trio's MockClock (autojump), a job
that "runs" for an hour takes no real time.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from chamberlain.config import parse_config
from chamberlain.daemon.tree import Daemon
from chamberlain.plugins.binding import bind_plugins
from chamberlain.plugins.manifest import CommandSpec, CommandType, Manifest
from chamberlain.plugins.process import Limits, ProcessControl
from chamberlain.plugins.protocol import Outcome, OutcomeKind, ProcessResult, TerminationReason
from chamberlain.plugins.registry import Discovery
from chamberlain.records import Job, JobStatus, NewJob

EPOCH = 1_700_000_000.0


def clock_now() -> float:
    """Wall time that follows the mock clock, so backoffs elapse on autojump."""
    return EPOCH + trio.current_time()


def answered(
    response: dict[str, Any],
    *,
    timeout: float,
    duration: float = 0.0,
    terminated: TerminationReason | None = None,
) -> ProcessResult:
    """A plugin process that wrote ``response`` on stdout and exited 0."""
    return ProcessResult(
        exit_code=0,
        signal=None,
        stdout=json.dumps(response).encode(),
        stdout_overflow=False,
        stderr_tail=b"",
        stderr_truncated=False,
        terminated=terminated,
        timeout=timeout,
        duration=duration,
    )


@attrs.define
class FakePlugins:
    """Stands in for plugin processes; behaviour comes from the payload.

    payload keys: ``sleep`` (seconds), ``fail_until`` (fail retryably while the
    attempt number is below it), ``fatal`` (fail with retry: false), ``emit`` (events
    to answer with), ``result`` (the result to answer with), ``reemit`` (emit the event received),
    ``stderr`` (lines written to stderr before the sleep), ``logs`` (the response's
    ``logs`` list, also when it fails). A ``handle`` job reads them from
    ``event.payload``, as Ductile's plugins do; any other command from ``payload``.
    """

    running: Counter[str] = attrs.field(factory=Counter)
    peak: Counter[str] = attrs.field(factory=Counter)
    peak_total: int = 0
    attempts: Counter[str] = attrs.field(factory=Counter)
    started_at: dict[str, list[float]] = attrs.field(factory=dict)
    requests: list[dict[str, Any]] = attrs.field(factory=list)

    async def execute(
        self,
        *,
        entrypoint: Path,
        cwd: Path,
        request: bytes,
        timeout: float,
        limits: Limits,
        control: ProcessControl,
        env: dict[str, str],
        plugin: str,
        on_stderr_line: Callable[[str], None] | None = None,
    ) -> ProcessResult:
        req = json.loads(request)
        self.requests.append(req)
        job_id, payload = req["job_id"], req.get("payload") or {}
        if req["command"] == "handle" and isinstance(req.get("event"), dict):
            payload = req["event"].get("payload") or {}
        plugin = cwd.name
        self.attempts[job_id] += 1
        self.started_at.setdefault(job_id, []).append(trio.current_time())
        self.running[plugin] += 1
        self.peak[plugin] = max(self.peak[plugin], self.running[plugin])
        self.peak_total = max(self.peak_total, sum(self.running.values()))
        start = trio.current_time()
        for line in payload.get("stderr", ()):
            if on_stderr_line is not None:
                on_stderr_line(line)
        try:
            terminated = None
            with trio.move_on_after(min(float(payload.get("sleep", 0)), timeout)):
                await control._wait_requested()
                terminated = control.reason
            if terminated is None and float(payload.get("sleep", 0)) > timeout:
                terminated = TerminationReason.TIMEOUT
            if self.attempts[job_id] < int(payload.get("fail_until", 0)):
                response: dict[str, Any] = {"status": "error", "error": "not yet"}
            elif payload.get("fatal"):
                response = {"status": "error", "error": "never", "retry": False}
            else:
                response = {
                    "status": "ok",
                    "result": payload.get("result", {"attempt": self.attempts[job_id]}),
                    "events": payload.get("emit", []),
                }
                if payload.get("reemit") and req.get("event"):
                    event = req["event"]
                    response["events"] = [{"type": event["type"], "payload": event["payload"]}]
            if "state_updates" in payload:
                response["state_updates"] = payload["state_updates"]
            if "logs" in payload:
                response["logs"] = payload["logs"]
            return answered(
                response,
                timeout=timeout,
                duration=trio.current_time() - start,
                terminated=terminated,
            )
        finally:
            self.running[plugin] -= 1


def fake_plugin(
    tmp_path: Path,
    name: str,
    *,
    concurrency_safe: bool = True,
    handle_schema: Mapping[str, Any] | None = None,
) -> Manifest:
    """A manifest with ``poll`` and ``handle``; ``handle_schema`` is handle's input_schema."""
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    return Manifest(
        name=name,
        version="1",
        protocol=2,
        entrypoint=Path("/bin/true"),
        directory=directory,
        concurrency_safe=concurrency_safe,
        commands=(
            CommandSpec(name="poll", type=CommandType.READ),
            CommandSpec(name="handle", type=CommandType.WRITE, input_schema=handle_schema),
        ),
    )


def make_daemon(
    tmp_path: Path,
    fake: FakePlugins,
    *,
    config: dict[str, Any] | None = None,
    manifests: tuple[Manifest, ...] = (),
    plugins: tuple[str, ...] = ("a", "b"),
    serve_web: bool = False,
) -> Daemon:
    """A daemon of fake plugins on the fake clock; ``serve_web``: with its HTTP API
    (then the config's ``api`` must enable it)."""
    base = {"service": {"max_workers": 3}, "api": {"enabled": False}}
    cfg = parse_config({**base, **(config or {})}, base_dir=tmp_path)
    found = manifests or tuple(fake_plugin(tmp_path, name) for name in plugins)
    plugins = bind_plugins(cfg, Discovery(plugins={m.name: m for m in found}, skipped=()))
    return Daemon(
        config=cfg,
        plugins=plugins,
        state_path=str(tmp_path / "state.db"),
        serve_web=serve_web,
        handle_signals=False,
        # Autojump would move the clock on while a worker thread runs SQL.
        store_offload=False,
        now=clock_now,
        execute=fake.execute,
    )


async def submit(daemon: Daemon, *jobs: NewJob) -> list[str]:
    enqueued = await daemon.gateway.enqueue(jobs)
    return [e.job.id for e in enqueued]


async def finish(daemon: Daemon, ids: list[str]) -> list[Job]:
    done = []
    for jid in ids:
        with trio.fail_after(3600):
            job = await daemon.gateway.wait_job(jid)
        assert job is not None
        done.append(job)
    return done


def stored_job(**changes: object) -> Job:
    """A running job as the store would hold it; ``changes`` override any field."""
    job = Job(
        id="j1",
        plugin="echo",
        command="poll",
        payload={},
        event=None,
        context={},
        status=JobStatus.RUNNING,
        attempt=1,
        max_attempts=3,
        submitted_by="api",
        timeout=None,
        dedupe_key=None,
        created_at=EPOCH,
        started_at=EPOCH + 1,
        completed_at=None,
        run_at=EPOCH,
        last_error=None,
        result=None,
        parent_job_id=None,
        source_event_id=None,
    )
    return attrs.evolve(job, **changes)  # type: ignore[arg-type]


def succeeded_outcome() -> Outcome:
    """What a plugin that answered ok with nothing else leaves a Runner to settle."""
    return Outcome(
        kind=OutcomeKind.SUCCEEDED,
        retryable=False,
        error=None,
        response=None,
        raw_output=None,
        exit_code=0,
        signal=None,
        stderr_tail="",
    )
