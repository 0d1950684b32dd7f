"""Spawning a plugin on the event loop: pipes, exit status, failures, no leaked fds.

Real processes throughout; run_plugin's own behaviour on top of this is in
tests/test_process.py.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import trio

from chamberlain.plugins import spawn as spawn_module
from chamberlain.plugins.spawn import PIDFDS, PidfdProcess, spawn

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux pidfds")

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "plugin.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


async def test_a_plugin_spawned_here_talks_over_its_pipes_and_is_reaped(tmp_path: Path) -> None:
    assert PIDFDS  # the path this daemon takes on Linux
    plugin = script(tmp_path, 'read -r line; echo "out:$line:$(pwd)"; echo err >&2; exit 3\n')
    before = open_fds()
    with trio.fail_after(10):
        process = await spawn([str(plugin)], cwd=tmp_path, env=ENV)
        assert isinstance(process, PidfdProcess)
        # A new session: the plugin leads its own process group.
        assert os.getpgid(process.pid) == process.pid
        await process.stdin.send_all(b"hello\n")
        await process.stdin.aclose()
        out, err = await read_all(process.stdout), await read_all(process.stderr)
        assert await process.wait() == 3
    assert out == f"out:hello:{tmp_path}\n".encode() and err == b"err\n"
    assert process.returncode == 3
    await process.stdout.aclose()
    await process.stderr.aclose()
    assert open_fds() == before
    with pytest.raises(ChildProcessError):
        os.waitpid(process.pid, os.WNOHANG)  # noqa: ASYNC222 (WNOHANG: reaped, no zombie)


async def test_a_plugin_killed_by_a_signal_reports_it_negated(tmp_path: Path) -> None:
    plugin = script(tmp_path, "sleep 30\n")
    with trio.fail_after(10):
        process = await spawn([str(plugin)], cwd=tmp_path, env=ENV)
        os.killpg(process.pid, signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
        # Waiting again answers at once with the same status.
        assert await process.wait() == -signal.SIGKILL
    for stream in (process.stdin, process.stdout, process.stderr):
        assert stream is not None
        await stream.aclose()


async def test_a_plugin_that_cannot_start_raises_and_leaks_no_descriptor(tmp_path: Path) -> None:
    before = open_fds()
    with pytest.raises(FileNotFoundError):
        await spawn([str(tmp_path / "missing")], cwd=tmp_path, env=ENV)
    with pytest.raises(FileNotFoundError):
        await spawn(["/bin/true"], cwd=tmp_path / "no-such-dir", env=ENV)
    assert open_fds() == before


async def test_waiting_can_be_cancelled_and_resumed(tmp_path: Path) -> None:
    plugin = script(tmp_path, "read -r _\n")
    with trio.fail_after(10):
        process = await spawn([str(plugin)], cwd=tmp_path, env=ENV)
        with trio.move_on_after(0.05) as scope:
            await process.wait()
        assert scope.cancelled_caught and process.returncode is None
        await process.stdin.aclose()  # EOF: the plugin's read returns, it exits
        assert await process.wait() == 1
    await process.stdout.aclose()
    await process.stderr.aclose()


async def test_without_pidfds_trio_starts_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spawn_module, "PIDFDS", False)
    plugin = script(tmp_path, "echo fallback\n")
    with trio.fail_after(10):
        process = await spawn([str(plugin)], cwd=tmp_path, env=ENV)
        assert isinstance(process, trio.Process)
        assert process.stdout is not None
        out = await read_all(process.stdout)
        assert await process.wait() == 0
    assert out == b"fallback\n"
    for stream in (process.stdin, process.stdout, process.stderr):
        assert stream is not None
        await stream.aclose()
