"""The single-instance lock: no alias of the database's path takes it twice."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from conftest import DaemonFactory

from chamberlain.daemon.instance_lock import AlreadyRunning, InstanceLock

pytestmark = pytest.mark.e2e


def test_a_symlink_to_the_database_cannot_take_the_lock_again(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "state.db").symlink_to("../a/state.db")
    with InstanceLock(tmp_path / "a" / "state.db"), pytest.raises(AlreadyRunning) as info:
        InstanceLock(tmp_path / "b" / "state.db").acquire()
    message = str(info.value)
    assert f"pid {os.getpid()}" in message
    assert str((tmp_path / "a" / "state.db").resolve()) in message


def test_a_hard_link_to_the_database_cannot_take_the_lock_again(tmp_path: Path) -> None:
    first = tmp_path / "a" / "state.db"
    with InstanceLock(first):
        other = tmp_path / "b" / "state.db"
        other.parent.mkdir()
        os.link(first, other)
        with pytest.raises(AlreadyRunning):
            InstanceLock(other).acquire()


def test_the_lock_is_free_again_once_released(tmp_path: Path) -> None:
    database = tmp_path / "state.db"
    with InstanceLock(database):
        pass
    with InstanceLock(database):
        assert database.exists()


async def test_a_second_daemon_through_a_symlink_refuses_to_start(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    alias = tmp_path / "b" / "state.db"
    alias.symlink_to("../a/state.db")
    first = await daemon({"state": {"path": str(tmp_path / "a" / "state.db")}})
    second = await daemon({"state": {"path": str(alias)}}, wait_ready=False)
    assert await second.wait(timeout=30) == 1
    refusal = [line for line in second.lines if line.startswith("chamberlain: ")]
    assert refusal == [
        f"chamberlain: another chamberlain (pid {first.proc.pid}) is already running on"
        f" {(tmp_path / 'a' / 'state.db').resolve()} (given as {alias})"
    ]
    # The first one is unharmed and still the only one serving.
    async with httpx.AsyncClient(base_url=first.base_url) as client:
        assert (await client.get("/ready")).status_code == 200
    assert first.proc.returncode is None
