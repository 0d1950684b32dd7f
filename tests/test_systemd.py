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
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
from conftest import DaemonFactory, base_config, wait_for

from chamberlain.cli import EXIT_CONFIG
from chamberlain.config import ServiceConfig, parse_duration
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
async def test_the_daemon_notifies_ready_watchdog_and_stopping(
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

        d.proc.send_signal(signal.SIGTERM)
        await wait_for(lambda: trio.to_thread.run_sync(lambda: seen("STOPPING") == 1))
        assert await d.wait() == 0
        nursery.cancel_scope.cancel()
    stopping = next(m for m in received if "STOPPING" in m)
    assert stopping["STATUS"].startswith("draining")
    assert received.index(ready) < received.index(stopping)


# -- the unit file ------------------------------------------------------------------------

UNIT = Path(__file__).resolve().parent.parent / "docs" / "deploy" / "chamberlain.service"


def unit_settings() -> dict[str, str]:
    settings = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    return settings


def test_the_unit_waits_longer_than_a_full_drain() -> None:
    settings = unit_settings()
    assert settings["Type"] == "notify"
    assert settings["KillMode"] == "mixed"
    assert settings["RestartPreventExitStatus"] == "78"
    assert EXIT_CONFIG == 78
    drain = ServiceConfig().shutdown_grace + Limits().kill_grace
    assert parse_duration(settings["TimeoutStopSec"]) > drain
    # The watchdog pings at half the interval: it must be far above one ping's delay.
    assert parse_duration(settings["WatchdogSec"]) >= 10


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / "chamberlain.service"
    # Point ExecStart at something that exists, so only the unit's syntax is judged.
    true = shutil.which("true") or "/bin/true"
    unit.write_text(UNIT.read_text().replace("/opt/chamberlain/.venv/bin/chamberlain", true))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    problems = [line for line in done.stderr.splitlines() if str(unit.name) in line]
    assert not problems, done.stderr
