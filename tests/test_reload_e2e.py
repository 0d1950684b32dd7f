"""Configuration reload against the real daemon: SIGHUP and ``POST /system/reload``.

Each test starts ``chamberlain start`` on a file, rewrites the file, reloads, and
checks what a user sees: new schedules firing, removed plugins' queued jobs dead,
running jobs untouched, revoked tokens refused, a broken file refused with every
problem while the old configuration serves on, and no job lost to a run of reloads.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml
from conftest import (
    API_KEY,
    DaemonFactory,
    DaemonProcess,
    api_client,
    base_config,
    deep_merge,
    finished_job,
    wait_for,
)

pytestmark = pytest.mark.e2e


def rewrite(d: DaemonProcess, config: dict[str, Any]) -> None:
    """Replace the daemon's config file, as an operator editing it would."""
    d.config_path.write_text(yaml.safe_dump(config))


async def reload(c: httpx.AsyncClient, *, status: int = 200) -> dict[str, Any]:
    """``POST /system/reload``; its answer, once it has the status expected."""
    r = await c.post("/system/reload")
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


async def reloaded_by_signal(d: DaemonProcess, c: httpx.AsyncClient, reloads: int) -> None:
    """SIGHUP, then wait until the daemon has applied reload number ``reloads``."""
    d.proc.send_signal(signal.SIGHUP)

    def applied() -> bool:
        done = [r for r in d.records() if r.get("msg", "").startswith("configuration reloaded")]
        return len(done) >= reloads

    await wait_for(lambda: trio.to_thread.run_sync(applied))


async def trigger(c: httpx.AsyncClient, plugin: str, **payload: Any) -> str:
    r = await c.post(f"/trigger/{plugin}/poll", json={"payload": payload})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["job_id"]
    return job_id


async def status_of(c: httpx.AsyncClient, job_id: str) -> str:
    status: str = (await c.get(f"/job/{job_id}")).json()["status"]
    return status


async def until_status(c: httpx.AsyncClient, job_id: str, wanted: str) -> None:
    async def reached() -> bool:
        return await status_of(c, job_id) == wanted

    await wait_for(reached)


def changes_by_path(report: dict[str, Any]) -> dict[str, str]:
    return {change["path"]: change["change"] for change in report["changes"]}


async def test_a_plugin_and_its_schedule_added_by_sighup_fire(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    config = base_config(tmp_path)
    d = await daemon(config=config)
    async with api_client(d) as c:
        r = await c.post("/trigger/ticker/poll", json={})
        assert r.status_code == 404, r.text
        before = (await c.get("/healthz")).json()

        config = deep_merge(
            config,
            {"plugins": {"ticker": {"uses": "echo", "schedules": [{"id": "tick", "every": "1s"}]}}},
        )
        rewrite(d, config)
        await reloaded_by_signal(d, c, 1)

        async def fired() -> list[dict[str, Any]]:
            jobs: list[dict[str, Any]] = (await c.get("/jobs?plugin=ticker")).json()["jobs"]
            return [j for j in jobs if j["status"] == "succeeded"]

        ran = await wait_for(fired)
        assert ran[0]["submitted_by"].startswith("schedule"), ran[0]
        schedules = (await c.get("/schedules")).json()["schedules"]
        assert {(s["plugin"], s["id"]) for s in schedules} >= {("ticker", "tick")}
        # Triggered by hand too, now that it exists.
        assert (await c.post("/trigger/ticker/poll", json={})).status_code == 202

        after = (await c.get("/healthz")).json()
        assert after["plugins_loaded"] == before["plugins_loaded"] + 1
        assert after["config_loaded_at"] > before["config_loaded_at"]
        written = hashlib.sha256(d.config_path.read_bytes()).hexdigest()
        assert after["config_hash"] == f"sha256:{written}" != before["config_hash"]
    reloaded = [r for r in d.records() if r.get("msg", "").startswith("configuration reloaded")]
    assert {"path": "plugins.ticker", "change": "added"} in reloaded[0]["changes"]
    assert {"path": "plugins.ticker.schedules.tick", "change": "added"} in reloaded[0]["changes"]
    assert await d.stop() == 0


async def test_removing_a_plugin_buries_its_queued_jobs_and_lets_the_running_one_finish(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    config = deep_merge(
        base_config(tmp_path), {"plugins": {"doomed": {"uses": "echo", "parallelism": 1}}}
    )
    d = await daemon(config=config)
    async with api_client(d) as c:
        running = await trigger(c, "doomed", mode="slow", seconds=2)
        await until_status(c, running, "running")
        queued = [await trigger(c, "doomed") for _ in range(3)]
        assert {await status_of(c, j) for j in queued} == {"queued"}

        del config["plugins"]["doomed"]
        rewrite(d, config)
        report = await reload(c)
        assert changes_by_path(report)["plugins.doomed"] == "removed"

        for job_id in queued:
            job = (await c.get(f"/job/{job_id}")).json()
            assert job["status"] == "dead", job
            assert job["last_error"] == "plugin removed by reload"
        # In flight when it was removed: it finishes as it began.
        assert (await finished_job(c, running))["status"] == "succeeded"
        r = await c.post("/trigger/doomed/poll", json={})
        assert r.status_code == 404, r.text
        plugins = (await c.get("/plugins")).json()["plugins"]
        assert "doomed" not in {p["name"] for p in plugins}

        async def runner_gone() -> bool:
            restarts = (await c.get("/healthz")).json()["restarts"]
            return "root/runners/doomed" not in restarts

        await wait_for(runner_gone)
        # The name given back later is a plugin again, with a Runner of its own.
        config["plugins"]["doomed"] = {"uses": "echo"}
        rewrite(d, config)
        assert changes_by_path(await reload(c))["plugins.doomed"] == "added"
        again = await trigger(c, "doomed")
        assert (await finished_job(c, again))["status"] == "succeeded"
    assert await d.stop() == 0


async def test_a_new_timeout_and_retry_policy_reach_the_next_job_not_the_running_one(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    config = deep_merge(base_config(tmp_path), {"plugins": {"echo": {"timeouts": {"poll": "20s"}}}})
    d = await daemon(config=config)
    async with api_client(d) as c:
        first = await trigger(c, "echo", mode="slow", seconds=3)
        await until_status(c, first, "running")

        config["plugins"]["echo"]["timeouts"]["poll"] = "1s"
        config["plugins"]["echo"]["retry"]["on_timeout"] = False
        rewrite(d, config)
        report = await reload(c)
        assert changes_by_path(report)["plugins.echo"] == "changed"

        second = await trigger(c, "echo", mode="slow", seconds=3)
        assert (await finished_job(c, first))["status"] == "succeeded"
        assert (await finished_job(c, second))["status"] == "timed_out"
    assert await d.stop() == 0


async def test_a_revoked_token_is_refused_from_the_next_request(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    config = base_config(tmp_path)
    d = await daemon(config=config)
    async with api_client(d, "rw-token") as rw, api_client(d) as admin:
        assert (await rw.get("/jobs")).status_code == 200
        # Reloading needs the admin scope, which only * carries.
        r = await rw.post("/system/reload")
        assert r.status_code == 403, r.text
        assert "admin" in r.json()["error"]

        config["api"]["auth"]["tokens"] = [
            t for t in config["api"]["auth"]["tokens"] if t["name"] != "rw"
        ]
        config["api"]["auth"]["tokens"].append(
            {"name": "newcomer", "token": "new-token", "scopes": ["jobs:ro"]}
        )
        rewrite(d, config)
        report = await reload(admin)
        change = next(ch for ch in report["changes"] if ch["path"] == "api.auth")
        assert change == {"path": "api.auth", "change": "changed", "detail": "+newcomer -rw"}
        assert "new-token" not in json.dumps(report)

        r = await rw.get("/jobs")
        assert r.status_code == 401, r.text
        async with api_client(d, "new-token") as newcomer:
            assert (await newcomer.get("/jobs")).status_code == 200
    assert await d.stop() == 0


async def test_a_broken_file_is_refused_with_every_problem_and_the_old_config_serves(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    config = base_config(tmp_path)
    d = await daemon(config=config)
    async with api_client(d) as c:
        before = (await c.get("/healthz")).json()
        broken = copy.deepcopy(config)
        broken["service"]["max_workers"] = 0
        broken["plugins"]["echo"]["schedules"] = [{"id": "tick", "command": "nope", "every": "1h"}]
        broken["plugins"]["ghost"] = {"uses": "echo"}
        broken["api"]["auth"]["tokens"] = []
        rewrite(d, broken)

        refused = await reload(c, status=422)
        paths = {p["path"] for p in refused["problems"]}
        assert "service.max_workers" in paths, refused
        assert "nothing was changed" in refused["error"]
        assert all(p["message"] for p in refused["problems"])

        # Everything as before: tokens, plugins, the loaded configuration.
        async with api_client(d, "rw-token") as rw:
            assert (await rw.get("/jobs")).status_code == 200
        job = await trigger(c, "echo")
        assert (await finished_job(c, job))["status"] == "succeeded"
        after = (await c.get("/healthz")).json()
        assert after["config_hash"] == before["config_hash"]
        assert after["config_loaded_at"] == before["config_loaded_at"]
        assert after["max_workers"] == before["max_workers"]

        # SIGHUP with the same file: refused too, logged with the paths, still up.
        d.proc.send_signal(signal.SIGHUP)

        def logged() -> dict[str, Any] | None:
            for record in d.records():
                if record.get("msg", "").startswith("configuration reload refused"):
                    return record
            return None

        record = await wait_for(lambda: trio.to_thread.run_sync(logged))
        assert any(p.startswith("service.max_workers") for p in record["problems"]), record
        assert (await c.get("/healthz")).status_code == 200

        # A file that starts the daemon but breaks a restart-only setting applies the
        # rest and says what waits.
        later = deep_merge(config, {"service": {"max_workers": 2, "name": "renamed"}})
        rewrite(d, later)
        report = await reload(c)
        shown = changes_by_path(report)
        assert shown["service.max_workers"] == "changed"
        assert shown["service.name"] == "restart_required"
        assert (await c.get("/healthz")).json()["max_workers"] == 2
    assert d.proc.returncode is None
    assert await d.stop() == 0


async def test_twenty_reloads_under_trigger_load_lose_no_job(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    config = deep_merge(base_config(tmp_path), {"plugins": {"spare": {"uses": "echo"}}})
    variants = [
        config,
        deep_merge(
            config,
            {
                "service": {"max_workers": 2},
                "plugins": {
                    "echo": {"parallelism": 1, "timeouts": {"poll": "30s"}},
                    "spare": {"schedules": [{"id": "tick", "every": "1s"}]},
                },
            },
        ),
    ]
    d = await daemon(config=config)
    triggered: list[str] = []
    async with api_client(d) as c:

        async def load(until: trio.Event) -> None:
            while not until.is_set():
                r = await c.post("/trigger/echo/poll", json={"payload": {"n": len(triggered)}})
                assert r.status_code == 202, r.text
                triggered.append(r.json()["job_id"])
                await trio.sleep(0.01)

        done = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(load, done)
            for n in range(20):
                rewrite(d, variants[(n + 1) % 2])
                if n % 2:
                    await reloaded_by_signal(d, c, n + 1)
                else:
                    await reload(c)
            done.set()
        assert (await c.get("/healthz")).json()["max_workers"] == 4
        assert len(triggered) >= 20
        for job_id in triggered:
            assert (await finished_job(c, job_id))["status"] == "succeeded"
    assert await d.stop() == 0


def signed(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def test_a_webhook_endpoint_added_by_reload_accepts_signed_deliveries(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    config = base_config(tmp_path)
    d = await daemon(config=config)
    body = json.dumps({"ref": "main"}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Signature": signed(body, "hook-secret"),
    }
    async with httpx.AsyncClient(base_url=d.base_url, timeout=30) as anonymous:
        assert (await anonymous.post("/hooks/ci", content=body, headers=headers)).status_code == 404
        config["webhooks"] = {
            "endpoints": [
                {
                    "path": "/hooks/ci",
                    "plugin": "echo",
                    "kind": "hmac",
                    "secret": "hook-secret",
                    "signature_header": "X-Signature",
                }
            ]
        }
        rewrite(d, config)
        async with api_client(d) as c:
            report = await reload(c)
            assert changes_by_path(report)["webhooks.endpoints./hooks/ci"] == "added"
            r = await anonymous.post("/hooks/ci", content=body, headers=headers)
            assert r.status_code == 202, r.text
            assert (await finished_job(c, r.json()["job_id"]))["status"] == "succeeded"
            wrong = {**headers, "X-Signature": signed(body, "other")}
            assert (
                await anonymous.post("/hooks/ci", content=body, headers=wrong)
            ).status_code == 403

            # Removed again: gone from the next request on.
            del config["webhooks"]
            rewrite(d, config)
            assert changes_by_path(await reload(c))["webhooks.endpoints./hooks/ci"] == "removed"
            r = await anonymous.post("/hooks/ci", content=body, headers=headers)
            assert r.status_code == 404, r.text
    assert API_KEY not in json.dumps(report)
    assert await d.stop() == 0


async def test_service_log_level_applies_at_once(daemon: DaemonFactory, tmp_path: Path) -> None:
    config = base_config(tmp_path)
    d = await daemon(config=config)
    async with api_client(d) as c:
        config["service"]["log_level"] = "WARN"  # as Ductile's configs write it
        rewrite(d, config)
        assert changes_by_path(await reload(c))["service.log_level"] == "changed"
        quiet_from = len(d.records())
        job = await trigger(c, "echo")
        assert (await finished_job(c, job))["status"] == "succeeded"

        config["service"]["log_level"] = "info"
        rewrite(d, config)
        await reload(c)

        def back() -> list[dict[str, Any]] | None:
            later = d.records()[quiet_from:]
            done = any(r.get("msg", "").startswith("configuration reloaded") for r in later)
            return later if done else None

        later = await wait_for(lambda: trio.to_thread.run_sync(back))
        # While at warning, the job's info lines were not written.
        quiet = later[: next(i for i, r in enumerate(later) if "reloaded" in r.get("msg", ""))]
        assert not any(r.get("job_id") == job for r in quiet), quiet
        assert all(r["level"] in ("warning", "error", "critical") for r in quiet), quiet
    assert await d.stop() == 0
