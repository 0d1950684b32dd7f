"""Starting and stopping the real daemon as a new user does: a taken port, a plugin
``check`` skips, the example's development keys, and Ctrl-C pressed twice."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import yaml
from conftest import (
    BUNDLED_PLUGINS,
    REPO,
    DaemonFactory,
    DaemonProcess,
    base_config,
    db_job,
    deep_merge,
    run_cli,
    wait_for,
)

from chamberlain.cli import DEFAULT_KEYS, default_keys, is_loopback
from chamberlain.config import load_config

E2E_PLUGINS = Path(__file__).resolve().parent / "e2e_plugins"

pytestmark = pytest.mark.e2e


def write_config(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def plain_lines(stderr: str) -> list[str]:
    """What a person reads on stderr: the lines that are not JSON log records."""
    return [line for line in stderr.splitlines() if not line.startswith("{")]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 held by a plain listening socket for the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# ------------------------------------------------------------------ a taken port


def test_a_taken_port_is_one_line_and_exit_78(tmp_path: Path, taken_port: int) -> None:
    config = write_config(
        tmp_path, {**base_config(tmp_path), "api": {"listen": f"127.0.0.1:{taken_port}"}}
    )
    began = time.monotonic()
    proc = run_cli("start", "--config", str(config))
    took = time.monotonic() - began
    assert proc.returncode == 78, proc.stderr
    assert plain_lines(proc.stderr) == [
        f"chamberlain: cannot listen on 127.0.0.1:{taken_port}: address already in use"
    ]
    assert "crashed" not in proc.stderr and "Traceback" not in proc.stderr
    # No retries: the time of a start that stops at once, not of a supervisor giving up.
    assert took < 4.0, took


def test_a_taken_webhooks_port_is_refused_the_same_way(tmp_path: Path, taken_port: int) -> None:
    data = {
        **base_config(tmp_path),
        "webhooks": {
            "listen": f"127.0.0.1:{taken_port}",
            "endpoints": [
                {"path": "/hook", "plugin": "echo", "kind": "github", "secret": "s3cret"}
            ],
        },
    }
    proc = run_cli("start", "--config", str(write_config(tmp_path, data)))
    assert proc.returncode == 78, proc.stderr
    assert plain_lines(proc.stderr) == [
        f"chamberlain: cannot listen on 127.0.0.1:{taken_port}: address already in use"
    ]


async def start_process(config: Path, *args: str) -> DaemonProcess:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "chamberlain", "start", "--config", str(config), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return DaemonProcess(proc=proc, config_path=config, state_path=config.parent / "state.db")


async def test_listen_overrides_the_configs_address(
    tmp_path: Path, taken_port: int, nursery: trio.Nursery
) -> None:
    # The config names the taken port; --listen moves the daemon elsewhere.
    data = {**base_config(tmp_path)}
    data["api"] = {**data["api"], "listen": f"127.0.0.1:{taken_port}"}
    d = await start_process(write_config(tmp_path, data), "--listen", "127.0.0.1:0")
    nursery.start_soon(d.pump)
    try:
        with trio.fail_after(30):
            await d.ready.wait()
        assert d.base_url.startswith("http://127.0.0.1:")
        assert d.base_url != f"http://127.0.0.1:{taken_port}"
        assert await d.stop() == 0
    finally:
        d.kill()


def test_a_malformed_listen_option_is_a_usage_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, base_config(tmp_path))
    proc = run_cli("start", "--config", str(config), "--listen", "8080")
    assert proc.returncode == 2
    assert "--listen" in proc.stderr and "host:port" in proc.stderr


# ------------------------------------------------------------------ check


def broken_plugin_root(tmp_path: Path) -> Path:
    root = tmp_path / "more_plugins"
    (root / "broken").mkdir(parents=True)
    (root / "broken" / "manifest.yaml").write_text("name: broken\nversion: [\n")
    return root


def test_check_lists_a_skipped_plugin_and_exits_78(tmp_path: Path) -> None:
    root = broken_plugin_root(tmp_path)
    data = {**base_config(tmp_path), "plugin_roots": [str(BUNDLED_PLUGINS), str(root)]}
    proc = run_cli("check", "--config", str(write_config(tmp_path, data)))
    assert proc.returncode == 78, proc.stdout + proc.stderr
    assert "config OK" not in proc.stdout
    lines = proc.stdout.splitlines()
    at = lines.index("skipped 1 plugins:")
    assert lines[at + 1].startswith(f"  {root / 'broken' / 'manifest.yaml'}: "), lines
    assert any(line.startswith("echo ") for line in lines)  # the good ones still listed
    assert "1 plugins would be skipped" in proc.stderr


def test_check_of_good_plugins_still_says_ok(tmp_path: Path) -> None:
    proc = run_cli("check", "--config", str(write_config(tmp_path, base_config(tmp_path))))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "config OK: " in proc.stdout


def test_check_lists_each_schedule_s_next_runs(tmp_path: Path) -> None:
    data = deep_merge(
        base_config(tmp_path),
        {
            "plugins": {
                "echo": {
                    "schedules": [
                        {
                            "id": "daily",
                            "command": "health",
                            "cron": "0 3 * * *",
                            "timezone": "UTC",
                        },
                        {"id": "once", "command": "poll", "at": "2000-01-01T00:00:00Z"},
                    ]
                }
            }
        },
    )
    config = str(write_config(tmp_path, data))
    proc = run_cli("check", "--config", config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    at = lines.index("schedules (next runs if the daemon started now):")
    daily = lines[at + 1]
    assert daily.startswith("  echo/daily (health): ")
    runs = daily.split(": ", 1)[1].split(", ")
    assert len(runs) == 3 and all(r.endswith("T03:00:00.000Z") for r in runs)
    assert lines[at + 2] == "  echo/once (poll): never again"

    shown = run_cli("check", "--config", config, "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["ok"] is True and report["skipped"] == []
    assert [(s["id"], len(s["next_runs"])) for s in report["schedules"]] == [
        ("daily", 3),
        ("once", 0),
    ]
    assert report["schedules"][0]["next_runs"] == runs
    assert "echo" in [p["name"] for p in report["plugins"]]


async def test_start_runs_without_a_skipped_plugin(daemon: DaemonFactory, tmp_path: Path) -> None:
    root = broken_plugin_root(tmp_path)
    d = await daemon({"plugin_roots": [str(BUNDLED_PLUGINS), str(root)]})
    skipped = [r for r in d.records() if r.get("msg", "").startswith("plugin skipped")]
    assert len(skipped) == 1
    assert await d.stop() == 0


# ------------------------------------------------------------------ development keys


def test_the_example_configs_placeholders_are_the_default_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith("CHAMBERLAIN_"):
            monkeypatch.delenv(name)
    config = load_config(REPO / "config.example.yaml")
    assert default_keys(config) == [
        "api.auth.api_key",
        "api.auth.tokens.reader",
        "callbacks.secret",
    ]
    monkeypatch.setenv("CHAMBERLAIN_API_KEY", "a-real-one")
    monkeypatch.setenv("CHAMBERLAIN_READ_TOKEN", "another")
    monkeypatch.setenv("CHAMBERLAIN_CALLBACK_SECRET", "and-a-third")
    assert default_keys(load_config(REPO / "config.example.yaml")) == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.org", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def with_default_key(tmp_path: Path, listen: str) -> dict[str, Any]:
    data = base_config(tmp_path)
    data["api"] = {"listen": listen, "auth": {"api_key": "dev-key-change-me"}}
    assert "dev-key-change-me" in DEFAULT_KEYS
    return data


async def test_development_keys_on_loopback_start_with_one_warning(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon(config=with_default_key(tmp_path, "127.0.0.1:0"))
    warnings = [r for r in d.records() if "development keys" in r.get("msg", "")]
    assert len(warnings) == 1, d.lines
    assert warnings[0]["level"] == "warning"
    assert "api.auth.api_key" in warnings[0]["msg"]
    assert await d.stop() == 0


async def test_real_keys_start_without_the_warning(daemon: DaemonFactory) -> None:
    d = await daemon()
    assert not [r for r in d.records() if "development keys" in r.get("msg", "")]
    assert await d.stop() == 0


def test_development_keys_on_a_public_listener_are_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, with_default_key(tmp_path, "0.0.0.0:0"))
    proc = run_cli("start", "--config", str(config))
    assert proc.returncode == 78, proc.stderr
    [line] = plain_lines(proc.stderr)
    assert "refusing to listen on 0.0.0.0:0" in line
    assert "api.auth.api_key" in line and "--allow-default-keys" in line
    assert "dev-key-change-me" not in line


async def test_development_keys_on_a_public_listener_start_when_allowed(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    config = write_config(tmp_path, with_default_key(tmp_path, "0.0.0.0:0"))
    d = await start_process(config, "--allow-default-keys")
    nursery.start_soon(d.pump)
    try:
        with trio.fail_after(30):
            await d.ready.wait()
        assert len([r for r in d.records() if "development keys" in r.get("msg", "")]) == 1
        assert await d.stop() == 0
    finally:
        d.kill()


# ------------------------------------------------------------------ Ctrl-C twice


async def test_a_double_sigint_gives_the_attempt_back(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    import httpx

    extra = {
        "service": {"shutdown_grace": "60s"},
        "plugin_roots": [str(BUNDLED_PLUGINS), str(E2E_PLUGINS)],
    }
    d = await daemon(extra)
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as client:
        r = await client.post("/trigger/resumable/poll", json={"payload": {"dir": str(tmp_path)}})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        # The plugin writes its pid once it runs its first attempt (and then hangs).
        await wait_for(lambda: trio.to_thread.run_sync((tmp_path / job_id).exists))
        assert (await client.get(f"/job/{job_id}")).json()["attempt"] == 1

    d.proc.send_signal(signal.SIGINT)
    await wait_for(lambda: trio.to_thread.run_sync(lambda: any("draining" in x for x in d.lines)))
    began = trio.current_time()
    d.proc.send_signal(signal.SIGINT)
    await d.wait(timeout=15)
    assert trio.current_time() - began < 5
    assert db_job(d.state_path, job_id) == ("queued", 0, "interrupted by shutdown")

    again = await daemon(extra)
    async with httpx.AsyncClient(base_url=again.base_url, headers=again.headers()) as client:

        async def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = (await client.get(f"/job/{job_id}")).json()
            return job if job["status"] == "succeeded" else None

        job = await wait_for(finished)
        messages = (await client.get(f"/job/{job_id}?include=messages")).json()["messages"]
    assert job["attempt"] == 1  # what counts as its first attempt
    assert "interrupted" in json.dumps(messages), messages
    assert not any("found running at start-up" in r.get("msg", "") for r in again.records())
    assert await again.stop() == 0
