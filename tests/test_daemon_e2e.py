"""The real daemon as a subprocess: crash recovery, draining, the instance lock."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml
from conftest import DaemonFactory, DaemonProcess, db_job, run_cli, wait_for
from procfs import alive

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"

pytestmark = pytest.mark.e2e


def with_resumable(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "plugin_roots": [str(Path(__file__).resolve().parent.parent / "plugins"), str(E2E_PLUGINS)]
    }
    cfg.update(extra or {})
    return cfg


async def trigger(d: DaemonProcess, plugin: str, command: str, payload: dict[str, Any]) -> str:
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as client:
        r = await client.post(f"/trigger/{plugin}/{command}", json={"payload": payload})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["job_id"]
    return job_id


async def get_job(d: DaemonProcess, job_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as client:
        r = await client.get(f"/job/{job_id}")
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


async def wait_status(
    d: DaemonProcess, job_id: str, *statuses: str, timeout: float = 20
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        job = await get_job(d, job_id)
        return job if job["status"] in statuses else None

    result: dict[str, Any] = await wait_for(check, timeout=timeout)
    return result


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return int(text) if text else None


async def test_sigkill_mid_job_is_recovered_at_the_next_start(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(with_resumable())
    job_id = await trigger(d, "resumable", "poll", {"dir": str(tmp_path)})
    await wait_status(d, job_id, "running")
    pid = await wait_for(lambda: trio.to_thread.run_sync(read_pid, tmp_path / job_id))
    d.kill()
    assert await d.stop() == -signal.SIGKILL
    assert db_job(d.state_path, job_id)[0] == "running"

    again = await daemon(with_resumable())
    job = await wait_status(again, job_id, "succeeded")
    assert job["attempt"] == 2  # the interrupted attempt counted
    # The old process did not survive into the new attempt: the new start killed it.
    assert not alive(pid)
    messages = [r["msg"] for r in again.records() if r.get("job_id") == job_id]
    assert any("found running at start-up" in m for m in messages)
    assert any(f"killed pid {pid}" in m for m in messages)
    assert await again.stop() == 0


async def test_sigterm_drains_running_jobs_then_exits_zero(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(with_resumable({"service": {"shutdown_grace": "3s", "max_workers": 4}}))
    quick = await trigger(d, "echo", "poll", {"mode": "slow", "seconds": 1})
    stuck = await trigger(d, "resumable", "poll", {"dir": str(tmp_path)})
    await wait_status(d, quick, "running")
    await wait_status(d, stuck, "running")
    pid = await wait_for(lambda: trio.to_thread.run_sync(read_pid, tmp_path / stuck))
    began = trio.current_time()
    d.proc.send_signal(signal.SIGTERM)

    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as client:

        async def refusing() -> bool:
            r = await client.get("/ready")
            return r.status_code == 503

        await wait_for(refusing, timeout=2)
        r = await client.post("/trigger/echo/poll", json={})
        assert r.status_code == 503
        assert "error" in r.json()

    assert await d.wait() == 0
    took = trio.current_time() - began
    assert took < 3 + 5 + 5  # grace + kill grace + slack
    assert not alive(pid)
    assert db_job(d.state_path, quick)[0] == "succeeded", "\n".join(d.lines)
    status, attempt, error = db_job(d.state_path, stuck)
    assert (status, attempt) == ("queued", 0)
    assert error == "interrupted by shutdown"
    # ... and the next start runs it.
    again = await daemon(with_resumable())
    await wait_status(again, stuck, "succeeded")
    assert await again.stop() == 0


async def test_a_second_signal_stops_at_once(daemon: DaemonFactory, tmp_path: Path) -> None:
    d = await daemon(with_resumable({"service": {"shutdown_grace": "60s"}}))
    job_id = await trigger(d, "resumable", "poll", {"dir": str(tmp_path)})
    await wait_status(d, job_id, "running")
    pid = await wait_for(lambda: trio.to_thread.run_sync(read_pid, tmp_path / job_id))
    d.proc.send_signal(signal.SIGTERM)
    await wait_for(
        lambda: trio.to_thread.run_sync(lambda: any("draining" in line for line in d.lines))
    )
    began = trio.current_time()
    d.proc.send_signal(signal.SIGTERM)
    await d.wait(timeout=10)
    assert trio.current_time() - began < 5
    assert not alive(pid)


async def test_a_second_daemon_on_the_same_state_exits_1(daemon: DaemonFactory) -> None:
    first = await daemon()
    second = await daemon(wait_ready=False)
    assert await second.wait(timeout=20) == 1
    assert any("already running" in line for line in second.lines)
    # The first one is unharmed.
    async with httpx.AsyncClient(base_url=first.base_url) as client:
        assert (await client.get("/ready")).status_code == 200


def test_config_errors_exit_78_naming_the_path(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"service": {"max_workers": "many"}, "plugins": {"nope": {}}}))
    proc = run_cli("start", "--config", str(config), timeout=60)
    assert proc.returncode == 78
    assert "service.max_workers" in proc.stderr


def test_a_plugins_entry_for_an_undiscovered_plugin_is_a_warning(tmp_path: Path) -> None:
    # As in Ductile, a configured plugin that is not on this machine does not stop
    # the daemon, as in Ductile; it used to be a configuration error.
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"plugin_roots": [str(E2E_PLUGINS)], "plugins": {"ghost": {}}})
    )
    proc = run_cli("check", "--config", str(config), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "plugins.ghost: no plugin named 'ghost' was found" in proc.stderr


def test_run_prints_the_job_and_exits_by_its_status(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parent.parent
    ok = run_cli("run", "echo", "poll", "--payload", '{"n": 7}', timeout=60, cwd=repo)
    assert ok.returncode == 0, ok.stderr
    record = yaml.safe_load(ok.stdout)  # JSON is YAML
    assert record["status"] == "succeeded"
    assert record["result"]["result"]["request"]["payload"] == {"n": 7}
    failed = run_cli("run", "echo", "poll", "--payload", '{"mode": "error"}', cwd=repo)
    assert failed.returncode == 1
    assert yaml.safe_load(failed.stdout)["status"] == "dead"
