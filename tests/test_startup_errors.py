"""Start-up errors a user can make: each is one clear line and a config exit code."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import BUNDLED_PLUGINS, DaemonFactory, run_cli

from chamberlain.config import ConfigError, load_config, parse_config
from chamberlain.config.loading import MAX_YAML_NODES
from chamberlain.store.sqlite import SqliteStore

pytestmark = pytest.mark.e2e

IS_ROOT = os.geteuid() == 0


@contextlib.contextmanager
def unwritable_directory(path: Path) -> Iterator[Path]:
    """A directory nobody can create files in: a read-only tmpfs as root, else mode 0555."""
    path.mkdir()
    if IS_ROOT:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], check=True)
        try:
            yield path
        finally:
            subprocess.run(["umount", str(path)], check=True)
    else:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)


def write_config(tmp_path: Path, **sections: object) -> Path:
    config = tmp_path / "config.yaml"
    data: dict[str, object] = {
        "state": {"path": str(tmp_path / "state.db")},
        "plugin_roots": [str(BUNDLED_PLUGINS)],
        "api": {"listen": "127.0.0.1:0"},
    }
    data.update(sections)
    config.write_text(yaml.safe_dump(data))
    return config


def modes(directory: Path, pattern: str) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.glob(pattern)}


# ------------------------------------------------------------------ state.path


def test_an_unwritable_state_path_is_one_line_and_exit_78(tmp_path: Path) -> None:
    with unwritable_directory(tmp_path / "ro") as ro:
        database = ro / "state.db"
        config = write_config(tmp_path, state={"path": str(database)})
        proc = run_cli("start", "--config", str(config))
    assert proc.returncode == 78, proc.stderr
    assert "Traceback" not in proc.stderr
    plain = [line for line in proc.stderr.splitlines() if not line.startswith("{")]
    assert len(plain) == 1, proc.stderr
    assert plain[0].startswith(f"chamberlain: {config}: state.path: cannot open {database}: ")
    assert ("Read-only file system" if IS_ROOT else "Permission denied") in plain[0]


def test_a_state_path_under_a_file_is_one_line_and_exit_78(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    config = write_config(tmp_path, state={"path": str(tmp_path / "file" / "state.db")})
    proc = run_cli("start", "--config", str(config))
    assert proc.returncode == 78, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"state.path: cannot open {tmp_path / 'file' / 'state.db'}: " in proc.stderr


async def test_a_started_daemon_keeps_its_database_private(
    daemon: DaemonFactory, tmp_path: Path
) -> None:
    old = os.umask(0o022)
    try:
        d = await daemon()
    finally:
        os.umask(old)
    files = modes(tmp_path, "state.db*")
    assert {"state.db", "state.db-wal", "state.db-shm"} <= set(files)
    assert set(files.values()) == {0o600}, files
    assert await d.stop() == 0


def test_a_store_creates_its_database_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        store = SqliteStore(tmp_path / "new" / "state.db")
    finally:
        os.umask(old)
    try:
        created = modes(tmp_path / "new", "*")
    finally:
        store.close()
    assert created == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}


def test_an_existing_database_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    database = tmp_path / "state.db"
    database.touch()
    database.chmod(0o640)
    SqliteStore(database).close()
    assert stat.S_IMODE(database.stat().st_mode) == 0o640


# ---------------------------------------------------------------- plugin_roots


@pytest.mark.parametrize("command", ["check", "start"])
def test_a_missing_plugin_root_is_a_config_error(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "no-such-dir"
    (tmp_path / "a-file").write_text("")
    config = write_config(
        tmp_path, plugin_roots=[str(BUNDLED_PLUGINS), str(missing), str(tmp_path / "a-file")]
    )
    proc = run_cli(command, "--config", str(config))
    assert proc.returncode == 78, proc.stderr
    assert f"plugin_roots[1]: {missing} does not exist" in proc.stderr
    assert f"plugin_roots[2]: {tmp_path / 'a-file'} is not a directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_empty_plugin_roots_list_is_still_allowed(tmp_path: Path) -> None:
    proc = run_cli("check", "--config", str(write_config(tmp_path, plugin_roots=[])))
    assert proc.returncode == 0, proc.stderr
    assert "config OK: 0 plugins" in proc.stdout


# ------------------------------------------------------------------- YAML bombs


def billion_laughs(levels: int = 9) -> str:
    lines = ["unknown_key:", '  l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        refs = ",".join([f"*l{level - 1}"] * 9)
        lines.append(f"  l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs())
    began = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    elapsed = time.perf_counter() - began
    assert elapsed < 0.5, elapsed
    (message,) = info.value.problems
    assert message.startswith(f"the YAML expands to more than {MAX_YAML_NODES:,} values")
    assert "aliases" in message


def test_a_recursive_yaml_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("plugins:\n  echo:\n    config: &loop {again: *loop}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (message,) = info.value.problems
    assert "refers to itself" in message


def test_yaml_nested_past_the_parsers_stack_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 600 + "]" * 600 + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == ("invalid YAML: nested too deeply",)


def test_aliases_below_the_limit_still_work(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "plugin_roots: []\n"
        "plugins:\n"
        "  a: {config: &shared {url: 'http://x', depth: 2}}\n"
        "  b: {config: *shared}\n"
    )
    config = load_config(path)
    assert config.plugins["b"].config == {"url": "http://x", "depth": 2}


# ------------------------------------------------------------------ max_workers


def test_max_workers_is_bounded() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"service": {"max_workers": 100_000_000}}, base_dir=Path("/srv"))
    assert info.value.problems == ("service.max_workers: must be at most 1024, got 100000000",)
    assert parse_config({"service": {"max_workers": 1024}}, base_dir=Path("/")).service.max_workers
