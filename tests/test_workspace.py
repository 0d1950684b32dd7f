"""A job's workspace (chamberlain.plugins.workspace): private, and gone after the attempt."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from chamberlain.plugins.workspace import (
    TEMP_PREFIX,
    WORKSPACE_VARIABLE,
    Workspaces,
    check_entry_name,
    remove_tree,
    workspace_environment,
    workspace_root,
)

JOB = "0b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    # The modes must not depend on the daemon's umask, in either direction.
    old = os.umask(0o000)
    try:
        yield
    finally:
        os.umask(old)


def test_the_root_is_beside_the_database(tmp_path: Path) -> None:
    assert (
        workspace_root(str(tmp_path / "state" / "db.sqlite")) == tmp_path / "state" / "workspaces"
    )
    assert workspace_root(":memory:") is None


def test_a_workspace_is_private_whatever_the_umask(tmp_path: Path, loose_umask: None) -> None:
    workspaces = Workspaces(tmp_path / "workspaces")
    path = workspaces.create(JOB, {".mcp.json": b'{"mcpServers": {}}\n'})
    assert path == tmp_path / "workspaces" / JOB
    assert mode(path) == 0o700
    assert mode(tmp_path / "workspaces") == 0o700
    assert mode(path / ".mcp.json") == 0o600
    assert (path / ".mcp.json").read_bytes() == b'{"mcpServers": {}}\n'
    assert workspace_environment(path) == {WORKSPACE_VARIABLE: str(path)}
    assert workspace_environment(None) == {}


def test_what_an_earlier_attempt_left_is_replaced(tmp_path: Path) -> None:
    workspaces = Workspaces(tmp_path / "workspaces")
    first = workspaces.create(JOB, {".mcp.json": b"old"})
    (first / "artifact.txt").write_text("from attempt 1")
    second = workspaces.create(JOB, {".mcp.json": b"new"})
    assert second == first
    assert sorted(p.name for p in second.iterdir()) == [".mcp.json"]
    assert (second / ".mcp.json").read_bytes() == b"new"


def test_in_memory_state_gets_a_temporary_directory(tmp_path: Path) -> None:
    workspaces = Workspaces()
    path = workspaces.create(JOB, {".mcp.json": b"{}"})
    try:
        assert path.name.startswith(f"{TEMP_PREFIX}{JOB}-")
        assert mode(path) == 0o700 and mode(path / ".mcp.json") == 0o600
    finally:
        workspaces.remove(path)
    assert not path.exists()
    # Nothing of it survives to be swept: there is no root.
    assert workspaces.sweep() == []


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "a\x00b"])
def test_a_name_that_could_climb_out_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="is not a safe file name"):
        check_entry_name(name)
    with pytest.raises(ValueError, match="is not a safe file name"):
        Workspaces(tmp_path).create(name, {"f": b""})
    with pytest.raises(ValueError, match="is not a safe file name"):
        Workspaces(tmp_path).create(JOB, {name: b""})
    assert list(tmp_path.iterdir()) == []


def test_removal_copes_with_what_a_plugin_leaves(tmp_path: Path) -> None:
    workspaces = Workspaces(tmp_path / "workspaces")
    path = workspaces.create(JOB, {".mcp.json": b"{}"})
    outside = tmp_path / "keep"
    outside.mkdir()
    (outside / "precious").write_text("mine")
    locked = path / "out" / "deeper"
    locked.mkdir(parents=True)
    (locked / "file").write_text("x")
    (path / "link").symlink_to(outside, target_is_directory=True)
    locked.chmod(0o500)
    (path / "out").chmod(0o000)
    workspaces.remove(path)
    assert not path.exists()
    # The link was removed, never followed.
    assert (outside / "precious").read_text() == "mine"
    assert mode(outside) != 0o000
    remove_tree(path)  # already gone: fine


def test_sweep_removes_what_no_running_job_owns(tmp_path: Path) -> None:
    workspaces = Workspaces(tmp_path / "workspaces")
    assert workspaces.sweep() == []  # no root yet
    for job in ("a", "b", "c"):
        workspaces.create(job, {".mcp.json": b"{}"})
    (tmp_path / "workspaces" / "stray-file").write_text("x")
    assert workspaces.sweep(keep={"b"}) == ["a", "c", "stray-file"]
    assert sorted(p.name for p in (tmp_path / "workspaces").iterdir()) == ["b"]
