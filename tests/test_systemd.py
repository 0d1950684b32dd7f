"""sd_notify: what the daemon tells systemd, read off a real datagram socket.

systemd is not needed to test the protocol: it is one datagram of ``KEY=value``
lines sent to ``$NOTIFY_SOCKET``.  The end-to-end test binds such a socket (in the
abstract namespace, as systemd does) and starts the real daemon with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
from conftest import DaemonFactory, base_config, wait_for

from chamberlain.cli import EXIT_CONFIG
from chamberlain.config import ServiceConfig, parse_config, parse_duration
from chamberlain.daemon.systemd import Notifier, message, socket_address, watchdog_interval
from chamberlain.plugins.process import Limits

CHAOS_PLUGINS = Path(__file__).resolve().parent / "chaos_plugins"


async def bound_socket(address: str | bytes) -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await sock.bind(address)
    return sock


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[tuple[str, trio.socket.SocketType]]:
    """A datagram socket in the abstract namespace, and its ``$NOTIFY_SOCKET`` form."""
    name = f"chamberlain-test-{uuid.uuid4().hex}"
    sock = await bound_socket(b"\0" + name.encode())
    with sock:
        yield "@" + name, sock


async def next_message(sock: trio.socket.SocketType, timeout: float = 10) -> dict[str, str]:
    with trio.fail_after(timeout):
        data = await sock.recv(4096)
    return dict(line.split("=", 1) for line in data.decode().splitlines())


# -- the protocol ------------------------------------------------------------------------


def test_socket_addresses() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abstract/name") == b"\0abstract/name"
    assert socket_address("@") is None
    assert socket_address("vsock:2:1234") is None
    assert socket_address("relative/path") is None


def test_watchdog_interval_is_half_of_what_systemd_asks() -> None:
    pid = os.getpid()
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(pid)}, pid) == 0.1
    assert watchdog_interval({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}, pid) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, pid) is None
    assert watchdog_interval({}, pid) is None


def test_messages_are_key_value_lines_with_values_on_one_line() -> None:
    assert message(READY="1", STATUS="two\nlines") == b"READY=1\nSTATUS=two lines"


def test_the_variables_are_taken_out_of_the_environment() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "HOME": "/root"}
    notifier = Notifier.from_environment(env)
    assert env == {"HOME": "/root"}  # plugin processes cannot speak for the daemon
    assert notifier.address == b"\0x"
    assert notifier.watchdog == 0.5


def test_without_systemd_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.ready("ready") is False
    assert Notifier.from_environment({"NOTIFY_SOCKET": "vsock:1:2"}).enabled is False


async def test_notifications_arrive_as_one_datagram(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    sock = await bound_socket(path)
    with sock:
        notifier = Notifier(address=path)
        assert notifier.ready("ready: 3 plugins")
        assert notifier.stopping("draining")
        assert await next_message(sock) == {"READY": "1", "STATUS": "ready: 3 plugins"}
        assert await next_message(sock) == {"STOPPING": "1", "STATUS": "draining"}
    assert notifier.sent == 2


def test_a_vanished_socket_is_not_an_error(tmp_path: Path) -> None:
    notifier = Notifier(address=str(tmp_path / "gone"))
    assert notifier.status("hello") is False
    assert notifier.status("again") is False
    assert notifier.failed == 2


async def test_the_watchdog_pings_at_its_interval(
    listener: tuple[str, trio.socket.SocketType],
) -> None:
    name, sock = listener
    notifier = Notifier(address=b"\0" + name[1:].encode(), watchdog=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.keep_alive)
        for _ in range(3):
            assert await next_message(sock) == {"WATCHDOG": "1"}
        nursery.cancel_scope.cancel()


# -- the real daemon ------------------------------------------------------------------


@pytest.mark.e2e
async def test_the_daemon_notifies_ready_watchdog_reloading_and_stopping(
    daemon: DaemonFactory,
    tmp_path: Path,
    listener: tuple[str, trio.socket.SocketType],
) -> None:
    name, sock = listener
    config = base_config(tmp_path)
    config["plugin_roots"] = [str(CHAOS_PLUGINS)]
    config["plugins"] = {"healthy": {}}
    d = await daemon(config=config, env={"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "400000"})

    received: list[dict[str, str]] = []

    async def collect() -> None:
        while True:
            received.append(await next_message(sock, timeout=30))

    def seen(key: str) -> int:
        return sum(1 for m in received if key in m)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        await wait_for(lambda: trio.to_thread.run_sync(lambda: seen("READY") == 1))
        ready = next(m for m in received if "READY" in m)
        loaded = sum(1 for p in CHAOS_PLUGINS.iterdir() if (p / "manifest.yaml").exists())
        assert ready["STATUS"] == f"ready: {loaded} plugins"
        async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers()) as client:
            assert (await client.get("/ready")).status_code == 200
            r = await client.post("/trigger/healthy/poll", json={})
            job_id = r.json()["job_id"]

            async def result() -> dict[str, str | None] | None:
                job = (await client.get(f"/job/{job_id}")).json()
                return job["result"]["result"]["env"] if job["status"] == "succeeded" else None

            env = await wait_for(result)
        # systemd's variables are the daemon's alone.
        assert env == {"NOTIFY_SOCKET": None, "WATCHDOG_USEC": None, "CHAMBERLAIN_JOB_ID": job_id}

        # Half of 0.4 s: a few pings arrive within a second.
        await wait_for(lambda: trio.to_thread.run_sync(lambda: seen("WATCHDOG") >= 3), timeout=5)

        # systemctl reload (ExecReload sends SIGHUP): RELOADING=1 with the monotonic
        # clock, then READY=1 again once the new configuration is in effect.
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        d.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: trio.to_thread.run_sync(lambda: seen("READY") == 2))
        reloading = next(m for m in received if "RELOADING" in m)
        assert reloading["RELOADING"] == "1"
        assert int(reloading["MONOTONIC_USEC"]) >= before
        assert received.index(reloading) < max(i for i, m in enumerate(received) if "READY" in m)

        d.proc.send_signal(signal.SIGTERM)
        await wait_for(lambda: trio.to_thread.run_sync(lambda: seen("STOPPING") == 1))
        assert await d.wait() == 0
        nursery.cancel_scope.cancel()
    stopping = next(m for m in received if "STOPPING" in m)
    assert stopping["STATUS"].startswith("draining")
    assert received.index(ready) < received.index(stopping)


# -- the unit file ------------------------------------------------------------------------

DEPLOY = Path(__file__).resolve().parent.parent / "docs" / "deploy"
UNITS = {
    "system": (DEPLOY / "chamberlain.service", "/opt/chamberlain/.venv/bin/chamberlain"),
    "user": (DEPLOY / "chamberlain-user.service", "%h/chamberlain/.venv/bin/chamberlain"),
}


def unit_settings(unit: Path) -> dict[str, str]:
    settings = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    return settings


@pytest.mark.parametrize("kind", sorted(UNITS))
def test_systemctl_reload_sends_the_daemon_sighup(kind: str) -> None:
    settings = unit_settings(UNITS[kind][0])
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    # The main process notifies RELOADING=1 and READY=1 itself.
    assert settings["NotifyAccess"] == "main"


@pytest.mark.parametrize("kind", sorted(UNITS))
def test_the_unit_waits_longer_than_a_full_drain(kind: str) -> None:
    settings = unit_settings(UNITS[kind][0])
    assert settings["Type"] == "notify"
    assert settings["KillMode"] == "mixed"
    assert settings["RestartPreventExitStatus"] == "78"
    assert EXIT_CONFIG == 78
    drain = ServiceConfig().shutdown_grace + Limits().kill_grace
    assert parse_duration(settings["TimeoutStopSec"]) > drain
    # The watchdog pings at half the interval: it must be far above one ping's delay.
    assert parse_duration(settings["WatchdogSec"]) >= 10
    # Where the config's  state.path: ${STATE_DIRECTORY}/state.db  points.
    assert settings["StateDirectory"] == "chamberlain"


def test_the_user_unit_runs_as_its_user_at_boot() -> None:
    settings = unit_settings(UNITS["user"][0])
    assert "User" not in settings
    assert settings["WantedBy"] == "default.target"


def test_a_state_path_under_the_state_directory_is_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    config = parse_config({"state": {"path": "${STATE_DIRECTORY}/state.db"}}, base_dir=Path("/etc"))
    assert config.state.path == tmp_path / "state" / "state.db"


def verify_unit(tmp_path: Path, kind: str, text: str) -> list[str]:
    """What ``systemd-analyze verify`` says about ``text`` as a unit of ``kind``."""
    executable = UNITS[kind][1]
    tmp_path.mkdir(exist_ok=True)
    unit = tmp_path / "chamberlain.service"
    # Point ExecStart at something that exists, so only the unit's syntax is judged.
    true = shutil.which("true") or "/bin/true"
    unit.write_text(text.replace(executable, true))
    env = dict(os.environ)
    scope = []
    if kind == "user":
        # A user manager needs a runtime directory, even only to read a unit.
        runtime = tmp_path / "run"
        runtime.mkdir(mode=0o700)
        env["XDG_RUNTIME_DIR"] = str(runtime)
        scope = ["--user"]
    done = subprocess.run(
        ["systemd-analyze", *scope, "verify", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert "Failed to initialize manager" not in done.stderr, done.stderr
    return [line for line in done.stderr.splitlines() if str(unit.name) in line]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("kind", sorted(UNITS))
def test_systemd_accepts_the_unit(tmp_path: Path, kind: str) -> None:
    text = UNITS[kind][0].read_text()
    assert verify_unit(tmp_path, kind, text) == []
    # The same check does see a mistake.
    broken = verify_unit(tmp_path / "broken", kind, text.replace("KillMode=mixed", "KillMode=mixd"))
    assert any("mixd" in line for line in broken)
