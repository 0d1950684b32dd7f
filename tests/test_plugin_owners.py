"""Who may own a plugin: the daemon's user, root, or an owner the config trusts.

Real files chowned to another uid, so these need root; they skip otherwise.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
import yaml
from conftest import run_cli
from test_manifest import make_plugin

from chamberlain.config import ConfigError, parse_config
from chamberlain.plugins.registry import discover

STRANGER = 4242  # a uid no test file belongs to

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def world_writable_root(tmp_path: Path) -> Path:
    root = tmp_path / "shared"
    root.mkdir()
    root.chmod(0o1777)
    return root


def chown_tree(path: Path, uid: int) -> None:
    for item in (path, *path.rglob("*")):
        os.chown(item, uid, -1)


@needs_root
def test_a_plugin_directory_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    root = world_writable_root(tmp_path)
    make_plugin(root, "mine")
    foreign = make_plugin(root, "foreign")
    chown_tree(foreign.parent, STRANGER)
    discovery = discover([root])
    assert list(discovery.plugins) == ["mine"]
    (skipped,) = discovery.skipped
    assert skipped.path == foreign
    assert skipped.reason == (
        f"plugin directory {foreign.parent} is owned by uid {STRANGER}, neither root nor"
        f" the daemon's user (uid 0); list the owner in service.trusted_plugin_owners"
        " to load it"
    )


@needs_root
def test_an_entrypoint_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    manifest = make_plugin(world_writable_root(tmp_path), "swapped")
    os.chown(manifest.parent / "run.sh", STRANGER, -1)
    (skipped,) = discover([manifest.parent.parent]).skipped
    assert skipped.reason.startswith(f"entrypoint 'run.sh' is owned by uid {STRANGER}, ")


@needs_root
def test_a_manifest_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    manifest = make_plugin(world_writable_root(tmp_path), "relabelled")
    os.chown(manifest, STRANGER, -1)
    (skipped,) = discover([manifest.parent.parent]).skipped
    assert skipped.reason.startswith(f"manifest {manifest} is owned by uid {STRANGER}, ")


@needs_root
def test_a_trusted_owner_is_loaded(tmp_path: Path) -> None:
    root = world_writable_root(tmp_path)
    chown_tree(make_plugin(root, "foreign").parent, STRANGER)
    discovery = discover([root], trusted_owners=frozenset({STRANGER}))
    assert list(discovery.plugins) == ["foreign"]
    assert discovery.skipped == ()


@needs_root
def test_the_daemon_refuses_and_the_config_allows_by_name(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    root = world_writable_root(tmp_path)
    chown_tree(make_plugin(root, "foreign").parent, nobody)
    config = tmp_path / "config.yaml"
    base = {"state": {"path": str(tmp_path / "state.db")}, "plugin_roots": [str(root)]}
    config.write_text(yaml.safe_dump(base))
    refused = run_cli("check", "--config", str(config))
    # `check` lists what `start` would skip, and fails on it.
    assert refused.returncode == 78, refused.stderr
    assert "skipped 1 plugins:" in refused.stdout
    assert f"is owned by uid {nobody}" in refused.stdout
    assert f"is owned by uid {nobody}" in refused.stderr
    config.write_text(yaml.safe_dump({**base, "service": {"trusted_plugin_owners": ["nobody"]}}))
    allowed = run_cli("check", "--config", str(config))
    assert allowed.returncode == 0, allowed.stderr
    assert "config OK: 1 plugins" in allowed.stdout


def test_trusted_plugin_owners_takes_uids_and_user_names() -> None:
    config = parse_config(
        {"service": {"trusted_plugin_owners": [1234, "root"]}}, base_dir=Path("/srv")
    )
    assert config.service.trusted_plugin_owners == (1234, 0)
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"service": {"trusted_plugin_owners": ["no-such-user-here", -1, True]}},
            base_dir=Path("/srv"),
        )
    assert info.value.problems == (
        "service.trusted_plugin_owners[0]: no user named 'no-such-user-here'",
        "service.trusted_plugin_owners[1]: a uid must be at least 0, got -1",
        "service.trusted_plugin_owners[2]: expected a uid or a user name, got true",
    )
